//! `steward schedule list|cancel|run`: the changes waiting in the audit log for their time (timed changes taken
//! back, `h.schedule(…)`), and carrying out the due ones through the pipeline. A restore reads the log first: an
//! account changed since (by anyone, for another reason) is left alone, and said so.

use crate::audit::query::{item_key, Filter};
use crate::audit::vocab::Status;
use crate::audit::AuditStore;
use crate::backends::{Action, Op};
use crate::cli::ScheduleCommand;
use crate::context::Context;
use crate::dispatch::timed::{SCHEDULE_DONE_OP, SCHEDULE_OP};
use crate::error::{ErrorKind, UsageError};
use crate::output;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::HashSet;

/// A change waiting for its time: its id (the `schedule` note's sequence number) and what it will do.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub id: i64,
    pub profile: String,
    pub op: Op,
    pub target: String,
    pub at: DateTime<Utc>,
    pub params: Value,
    pub run: i64,
}

impl Scheduled {
    fn reason(&self) -> String {
        self.params.get("reason").and_then(Value::as_str).unwrap_or_default().to_string()
    }

    fn row(&self) -> Value {
        json!({"id": self.id, "at": crate::dates::rfc3339(self.at), "profile": self.profile, "op": self.op.name(),
               "target": self.target, "group": self.params.get("group"), "role": self.params.get("role"),
               "reason": self.reason(), "run": self.run})
    }
}

/// What one `run` came to.
#[derive(Debug, Default)]
pub struct Ran {
    pub done: usize,
    pub left_alone: usize,
    pub failed: usize,
    pub waiting: usize,
}

pub fn run(ctx: &Context, sub: &ScheduleCommand) -> anyhow::Result<()> {
    match sub {
        ScheduleCommand::List => {
            let rows: Vec<Value> = pending(ctx)?.iter().map(Scheduled::row).collect();
            output::print_value(&Value::Array(rows), ctx.output);
            Ok(())
        }
        ScheduleCommand::Cancel { id } => {
            let Some(s) = pending(ctx)?.into_iter().find(|s| s.id == *id) else {
                return Err(UsageError::new(format!(
                    "no scheduled change {id} is waiting; `steward schedule list` shows them"
                ))
                .into());
            };
            close(ctx, &s, "cancelled", Status::Cancelled, "cancelled by a person")?;
            output::line(&format!(
                "cancelled: {} {} on {} at {}",
                s.op.name(),
                s.target,
                s.profile,
                crate::dates::rfc3339(s.at)
            ));
            Ok(())
        }
        ScheduleCommand::Run => {
            let ran = run_due(ctx)?;
            output::line(&summary(&ran));
            match ran.failed {
                0 => Ok(()),
                failed => Err(crate::error::BulkFailures { failed }.into()),
            }
        }
    }
}

/// `scheduled: 2 done, 1 left alone, 0 failed, 3 waiting`.
pub fn summary(ran: &Ran) -> String {
    format!(
        "scheduled: {} done, {} left alone, {} failed, {} waiting",
        ran.done, ran.left_alone, ran.failed, ran.waiting
    )
}

/// Every scheduled change not yet done, left alone or cancelled, soonest first.
pub fn pending(ctx: &Context) -> anyhow::Result<Vec<Scheduled>> {
    if !ctx.audit_target.exists() {
        return Ok(Vec::new());
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let closed: HashSet<i64> = store
        .list(&Filter { op: Some(SCHEDULE_DONE_OP.into()), ..Default::default() })?
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.event.params).ok()?.get("id")?.as_i64())
        .collect();
    let mut out: Vec<Scheduled> = store
        .list(&Filter { op: Some(SCHEDULE_OP.into()), ..Default::default() })?
        .into_iter()
        .filter(|r| {
            r.event.mode == "live" && r.event.status == Status::Pending.as_str() && !closed.contains(&r.event.seq)
        })
        .filter_map(|r| {
            let params: Value = serde_json::from_str(&r.event.params).ok()?;
            let op = Op::from_name(params.get("op")?.as_str()?)?;
            let at = DateTime::parse_from_rfc3339(params.get("at")?.as_str()?).ok()?.with_timezone(&Utc);
            Some(Scheduled {
                id: r.event.seq,
                profile: r.event.profile,
                op,
                target: r.event.target,
                at,
                params,
                run: r.event.run_id,
            })
        })
        .collect();
    out.sort_by_key(|s| (s.at, s.id));
    Ok(out)
}

/// Carries out every due scheduled change, under a claim (`audit::claim`: two runners at once act once).
pub fn run_due(ctx: &Context) -> anyhow::Result<Ran> {
    let mut ran = Ran::default();
    let Some(lock) = crate::audit::claim::claim(&ctx.audit_target, &ctx.audit_path, "schedules")? else {
        output::note("scheduled changes: another runner is carrying them out now");
        return Ok(ran);
    };
    let now = Utc::now();
    let all = pending(ctx)?;
    // Each was asked about (or declared) when it was made: the run that carries it out asks no one.
    ctx.dispatcher.accept_declared_plan(all.iter().filter(|s| s.at <= now).count());
    for s in all {
        if s.at > now {
            ran.waiting += 1;
            continue;
        }
        if let Some(why) = changed_since(ctx, &s)? {
            output::note(&format!("left alone: {} {} on {}: {why}", s.op.name(), s.target, s.profile));
            close(ctx, &s, "left alone", Status::Skipped, &why)?;
            ran.left_alone += 1;
            continue;
        }
        let conn = match ctx.connections.connect(Some(&s.profile)) {
            Ok(conn) => conn,
            Err(e) => {
                output::note(&format!("error: scheduled {} {} on {}: {e}", s.op.name(), s.target, s.profile));
                ran.failed += 1;
                continue;
            }
        };
        let mut params = json!({"reason": format!("scheduled (id {}, run {}): {}", s.id, s.run, s.reason())});
        for key in crate::dispatch::timed::CARRIED {
            if let Some(v) = s.params.get(key).filter(|v| !v.is_null()) {
                params[key] = v.clone();
            }
        }
        match ctx.runtime.block_on(ctx.dispatcher.perform(&conn, Action::new(s.op, Some(s.target.clone()), params))) {
            Ok(_) => {
                close(ctx, &s, "done", Status::Ok, "")?;
                ran.done += 1;
            }
            // A service that did not answer, or a run stopped: it stays waiting, for the next run.
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::Unavailable
                        | ErrorKind::RateLimited
                        | ErrorKind::Cancelled
                        | ErrorKind::InDoubt
                        | ErrorKind::Busy
                ) =>
            {
                output::note(&format!("still waiting: {} {} on {}: {e}", s.op.name(), s.target, s.profile));
                ran.failed += 1;
            }
            Err(e) => {
                output::note(&format!("error: scheduled {} {} on {}: {e}", s.op.name(), s.target, s.profile));
                close(ctx, &s, "failed", Status::Failed, &e.to_string())?;
                ran.failed += 1;
            }
        }
    }
    drop(lock);
    Ok(ran)
}

/// Why a restore must not happen: the account was changed since the change it takes back (by anyone, for any
/// reason), as the log shows, in the same respect (suspension, or admin rights).
fn changed_since(ctx: &Context, s: &Scheduled) -> anyhow::Result<Option<String>> {
    let Some(after) = s.params.get("after_seq").and_then(Value::as_i64) else { return Ok(None) };
    // The account (and, for a membership, the group) as `item_key` names it.
    let account = item_key(&s.target, &s.params);
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let mut newest: Option<crate::audit::Event> = None;
    for op in [Some(s.op), s.op.inverse()].into_iter().flatten() {
        let filter = Filter {
            profile: Some(s.profile.clone()),
            op: Some(op.name().into()),
            since_seq: Some(after),
            ..Default::default()
        };
        for r in store.list(&filter)? {
            let e = r.event;
            let params: Value = serde_json::from_str(&e.params).unwrap_or_default();
            let same = item_key(&e.target, &params) == account;
            let counts =
                same && e.phase == "outcome" && e.status == "ok" && e.mode == "live" && e.intent_seq != Some(after);
            if counts && newest.as_ref().is_none_or(|n| n.seq < e.seq) {
                newest = Some(e);
            }
        }
    }
    // The newest change since says best why the account is as it is now.
    Ok(newest.map(|e| format!("changed since: {} by run {} at {}", e.op, e.run_id, e.ts)))
}

/// Records what became of a scheduled change.
fn close(ctx: &Context, s: &Scheduled, what: &str, status: Status, why: &str) -> anyhow::Result<()> {
    let params = json!({"id": s.id, "profile": s.profile, "op": s.op.name(), "outcome": what});
    ctx.runtime.block_on(ctx.dispatcher.record_note(SCHEDULE_DONE_OP, &s.target, &params, status, why))?;
    Ok(())
}
