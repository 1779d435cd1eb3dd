//! `steward runs` and `steward runs show N`: what each invocation did, the job it belongs to, and how it
//! ended, so the run ids `--resume` and `undo` take are easy to find.

use crate::audit::liveness::RunLocks;
use crate::audit::query::{Filter, RunSummary};
use crate::audit::AuditStore;
use crate::cli::RunsCommand;
use crate::context::Context;
use crate::error::UsageError;
use crate::output;
use serde_json::{json, Value};

/// The operations that change nothing: their outcomes are reads, left out of a run's counts.
fn reads() -> Vec<&'static str> {
    crate::backends::VERBS
        .iter()
        .filter(|v| matches!(v.changes, crate::backends::When::Never))
        .map(|v| v.name)
        .collect()
}

/// `limit`: `steward runs --limit N`, the same as `runs list --limit N`; `all`: runs that only read too.
pub fn run(ctx: &Context, cmd: &Option<RunsCommand>, limit: Option<usize>, all: bool) -> anyhow::Result<()> {
    if !ctx.audit_target.exists() {
        output::note(&format!("no runs yet: the audit log {} does not exist", ctx.audit_target));
        return Ok(());
    }
    let store = AuditStore::open_target(&ctx.audit_target)?;
    // A listing makes no file: without a lock file, no run is alive.
    let locks = RunLocks::open_existing(&ctx.audit_path).ok().flatten();
    let alive = |run: i64| match store.held_elsewhere(run) {
        Ok(Some(team)) => team,
        _ => locks.as_ref().is_some_and(|l| l.held_elsewhere(run).unwrap_or(false)),
    };
    match cmd {
        None | Some(RunsCommand::List { .. }) => {
            let (limit, all) = match cmd {
                Some(RunsCommand::List { limit, all: listed_all }) => (*limit, *listed_all || all),
                _ => (limit.unwrap_or(20), all),
            };
            let rows: Vec<Value> =
                store.runs(limit, None, &reads(), all)?.iter().map(|r| row(r, alive(r.run))).collect();
            output::print_value(&Value::Array(rows), ctx.output);
        }
        Some(RunsCommand::Show { run: named }) => {
            let run = &crate::context::found_run(&store, named)?;
            let Some(summary) = store.runs(1, Some(*run), &reads(), true)?.pop() else {
                return Err(UsageError::new(format!("there is no run {run}; `steward runs` lists them")).into());
            };
            let job = store.job_of(*run)?.map(|j| j.runs).unwrap_or_default();
            let mut shown = row(&summary, alive(*run));
            shown["command"] = json!(summary.command);
            shown["who"] = json!(summary.who);
            shown["job_runs"] = json!(job.iter().rev().collect::<Vec<_>>());
            let outcomes: Vec<Value> = store
                .list(&Filter { run: Some(*run), ..Default::default() })?
                .into_iter()
                .filter(|r| r.event.phase == "outcome" && !r.event.target.is_empty())
                .map(|r| {
                    json!({"seq": r.event.seq, "profile": r.event.profile, "op": r.event.op, "target": r.event.target,
                           "status": r.event.status, "error": r.event.error})
                })
                .collect();
            // On a terminal, the run and then its items as two tables; for machines, one object.
            match ctx.output.format {
                crate::cli::Format::Table => {
                    output::print_value(&shown, ctx.output);
                    output::print_value(&Value::Array(outcomes), ctx.output);
                }
                _ => {
                    shown["items"] = json!(outcomes);
                    output::print_value(&shown, ctx.output);
                }
            }
        }
    }
    Ok(())
}

/// One line of `steward runs`.
fn row(r: &RunSummary, alive: bool) -> Value {
    let status = match (r.exit_status, alive) {
        (Some(0), _) => "ok".to_string(),
        (Some(code), _) => format!("exit {code}"),
        (None, true) => "running".to_string(),
        // No end recorded and nobody at work on it: killed, or the machine went down.
        (None, false) => "stopped".to_string(),
    };
    let mut what = r.script.clone().unwrap_or_else(|| "(eval or REPL)".to_string());
    if let Some((log, n)) = r.pushed_from.as_deref().and_then(|o| o.split_once(' ')) {
        what.push_str(&format!(" [pushed: run {n} of log {log}, `pushed:{n}`]"));
    }
    let mut outcomes: Vec<String> = [
        ("ok", r.ok),
        ("noop", r.noop),
        ("failed", r.failed),
        ("refused", r.refused),
        ("skipped", r.skipped),
        ("cancelled", r.cancelled),
        ("dry-run", r.dry_run),
        ("pending", r.pending),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(s, n)| format!("{s} {n}"))
    .collect();
    if outcomes.is_empty() {
        outcomes.push("nothing".into());
    }
    json!({
        "run": r.run,
        "job": r.job,
        "started": r.started,
        "ended": r.ended,
        "status": status,
        "script": what,
        "profiles": r.profiles,
        "outcomes": outcomes.join(", "),
    })
}
