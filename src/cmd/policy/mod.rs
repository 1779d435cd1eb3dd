//! `steward policy check|plan|apply|run --due`: gathers what a policy needs (each profile's accounts with their
//! dates of use; the accounts it spares, resolved), lets `policy::plan` decide, records the plan, and applies a
//! recorded plan through the one pipeline.

use crate::audit::vocab::Status;
use crate::audit::AuditStore;
use crate::cli::PolicyCommand;
use crate::context::Context;
use crate::error::{Halted, UsageError};
use crate::output;
use crate::policy::plan::{self, Plan};
use crate::policy::Policy;
use chrono::Utc;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

mod apply;
mod gather;

use apply::apply;
use gather::gather;

/// The audit log's names for a recorded plan, its approval by a second admin, its application, a warning given
/// to an account, and a notification delivered (or not).
const PLAN_OP: &str = "policy_plan";
const APPROVAL_OP: &str = "policy_approval";
const APPLIED_OP: &str = "policy_applied";
const WARNED_OP: &str = "policy_warned";
const NOTIFY_OP: &str = "notify";

pub fn run(ctx: &Context, sub: &PolicyCommand) -> anyhow::Result<()> {
    match sub {
        PolicyCommand::Check { policy } => {
            let p = Policy::load(&locate(policy, None)?).map_err(|e| UsageError::new(e.to_string()))?;
            check_directory(&p)?;
            output::line(&format!(
                "{}: ok ({} profiles, {} stages)",
                p.path.display(),
                p.spec.profiles.len(),
                p.spec.stages.len()
            ));
            Ok(())
        }
        PolicyCommand::Plan { policy, dir, html } => {
            let p = load(policy, dir.as_deref())?;
            if let Some(path) = html {
                crate::files::check_writable(path).map_err(|e| UsageError::new(e.to_string()))?;
            }
            let plan = plan_and_record(ctx, &p)?;
            show(ctx, &plan);
            if let Some(path) = html {
                let first = p.spec.stages.iter().map(|s| s.get_ref().after_days).min();
                std::fs::write(path, crate::output::plan_page::page(&plan, first))
                    .map_err(|e| UsageError::new(format!("cannot write {}: {e}", path.display())))?;
                output::note(&format!("page: {}", path.display()));
            }
            match plan.halted {
                Some(why) => Err(Halted { why }.into()),
                None => Ok(()),
            }
        }
        PolicyCommand::Apply { policy, plan, dir } => {
            let p = load(policy, dir.as_deref())?;
            let plan = match plan {
                Some(digest) => recorded_plan(ctx, &p, digest)?,
                None => plan_and_record(ctx, &p)?,
            };
            apply(ctx, &p, &plan, false)
        }
        PolicyCommand::Approve { policy, plan, dir } => {
            let p = load(policy, dir.as_deref())?;
            approve(ctx, &p, plan)
        }
        PolicyCommand::Run { due: _, dir } => run_due(ctx, &dir.clone().unwrap_or_else(default_dir)),
    }
}

/// The policy's `[directory]`, if it has one, is a CSV with the columns it names.
fn check_directory(p: &Policy) -> anyhow::Result<()> {
    match directory(p) {
        Ok(_) => Ok(()),
        Err(why) => Err(UsageError::new(format!("{}: {why}", p.path.display())).into()),
    }
}

/// The policy's `[directory]`: its file, found to have the columns the policy names (`None`: it has none).
/// `policy check` and the managers' notices read it through this one check.
fn directory(p: &Policy) -> Result<Option<(PathBuf, &crate::policy::Directory)>, String> {
    let (Some(path), Some(dir)) = (p.spec.directory_file(&p.path), p.spec.directory.as_ref()) else { return Ok(None) };
    let dir = dir.get_ref();
    let header = crate::output::csv::header(&path).map_err(|e| format!("the [directory]: {e}"))?;
    match [&dir.email, &dir.manager].into_iter().find(|column| !header.contains(column)) {
        Some(column) => Err(format!(
            "the [directory] {} has no column {column:?} (it has {}); name its columns with email = and manager =",
            path.display(),
            header.join(", ")
        )),
        None => Ok(Some((path, dir))),
    }
}

fn default_dir() -> PathBuf {
    dirs::config_dir().unwrap_or_else(|| PathBuf::from(".")).join("steward").join("policies")
}

/// A policy named by its file, or by its name in the policies directory.
fn locate(name: &str, dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let as_path = PathBuf::from(name);
    if as_path.exists() {
        return Ok(as_path);
    }
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_dir);
    let in_dir = dir.join(format!("{name}.toml"));
    match in_dir.exists() {
        true => Ok(in_dir),
        false => Err(UsageError::new(format!("no policy {name:?}: neither a file nor {}", in_dir.display())).into()),
    }
}

fn load(name: &str, dir: Option<&Path>) -> anyhow::Result<Policy> {
    Policy::load(&locate(name, dir)?).map_err(|e| UsageError::new(e.to_string()).into())
}

/// Makes the plan and records it (digest, steps, what was spared) in the audit log.
fn plan_and_record(ctx: &Context, policy: &Policy) -> anyhow::Result<Plan> {
    let now = Utc::now();
    let facts = gather(ctx, policy, now)?;
    let mut planner = plan::Planner::new(&policy.name, &policy.sha256, &policy.spec, now, &facts.misses);
    facts.read_accounts(ctx, &mut |c| planner.add(&c, &|c| facts.spared(c)))?;
    for c in facts.settle(ctx, planner.take_unsettled())? {
        planner.add(&c, &|c| facts.spared(c));
    }
    let mut plan = planner.finish();
    plan.planned_by = who(ctx);
    let status = if plan.halted.is_some() { Status::Refused } else { Status::Observed };
    let why = plan.halted.clone().unwrap_or_default();
    ctx.runtime.block_on(ctx.dispatcher.record_note(PLAN_OP, &policy.name, &plan, status, &why))?;
    Ok(plan)
}

/// The plan recorded for `policy` whose digest starts with `digest` (12 characters at least), read from the
/// verified log and checked against its own steps and the policy file as it is now.
fn recorded_plan(ctx: &Context, policy: &Policy, digest: &str) -> anyhow::Result<Plan> {
    if digest.len() < 12 {
        return Err(UsageError::new("--plan needs 12 or more characters of the digest `policy plan` printed").into());
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let filter = crate::audit::query::Filter {
        op: Some(PLAN_OP.into()),
        target: Some(policy.name.clone()),
        ..Default::default()
    };
    let plan = store
        .list(&filter)?
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Plan>(&r.event.params).ok())
        .find(|p| p.digest.starts_with(digest))
        .ok_or_else(|| {
            UsageError::new(format!(
                "no plan {digest} of policy {} in the audit log; `steward policy plan {}` makes one",
                policy.name, policy.name
            ))
        })?;
    if plan::digest(&plan.policy_sha256, &plan.steps) != plan.digest {
        return Err(UsageError::new(format!("plan {digest}: its steps do not match its digest; plan again")).into());
    }
    if plan.policy_sha256 != policy.sha256 {
        return Err(UsageError::new(format!(
            "plan {digest} was made from another version of {}: plan again with the file as it is now",
            policy.path.display()
        ))
        .into());
    }
    Ok(plan)
}

/// The plan on the terminal: its steps (as a table, CSV or JSON), then a summary per profile on stderr.
fn show(ctx: &Context, plan: &Plan) {
    let columns = ["profile", "account", "action", "idle_days", "last_active", "why"];
    let rows = plan.steps.iter().map(|s| json!({"profile": s.profile, "account": s.account, "action": s.action.name(), "idle_days": s.idle_days, "last_active": s.last_active.map(crate::dates::rfc3339), "why": s.why()}));
    output::print_rows(&columns, rows, ctx.output);
    for (profile, s) in &plan.profiles {
        output::note(&format!(
            "{profile}: {} accounts, {} never active, {} changes planned",
            s.accounts, s.never_active, s.changes
        ));
        if let Some(m) = &s.misses {
            output::note(&format!("warning: {profile}: not in this plan: {m}"));
        }
    }
    for l in &plan.left_alone {
        output::note(&format!("left alone: {} on {}: {}", l.account, l.profile, l.why));
    }
    match &plan.halted {
        Some(why) => {
            output::note(&format!("plan {} of policy {}: HALTED by a guard: {why}", plan.short_digest(), plan.policy))
        }
        None => output::note(&format!(
            "plan {} of policy {}: {} changes; apply it with `steward policy apply {} --plan {}`",
            plan.short_digest(),
            plan.policy,
            plan.steps.len(),
            plan.policy,
            plan.short_digest()
        )),
    }
}

/// Who this process runs as, the way runs are shown: `user@host`.
fn who(ctx: &Context) -> String {
    let info = ctx.dispatcher.run_info();
    format!("{}@{}", info.os_user, info.host)
}

/// `policy approve`: a second admin's approval of a recorded plan, put on record.
fn approve(ctx: &Context, policy: &Policy, digest: &str) -> anyhow::Result<()> {
    let plan = recorded_plan(ctx, policy, digest)?;
    if plan.halted.is_some() {
        return Err(Halted {
            why: format!("plan {} was halted by a guard; it cannot be approved", plan.short_digest()),
        }
        .into());
    }
    let me = who(ctx);
    if me == plan.planned_by {
        return Err(UsageError::new(format!(
            "you ({me}) made plan {}: another admin approves it (from their own account)",
            plan.short_digest()
        ))
        .into());
    }
    let params = json!({"digest": plan.digest, "approver": me, "planned_by": plan.planned_by});
    ctx.runtime.block_on(ctx.dispatcher.record_note(APPROVAL_OP, &policy.name, &params, Status::Ok, ""))?;
    output::line(&format!("plan {} of policy {} approved by {me}", plan.short_digest(), policy.name));
    Ok(())
}

/// The recorded notes `op` about `policy` whose parameters carry `digest`.
fn notes_about(ctx: &Context, policy: &Policy, op: &str, digest: &str) -> anyhow::Result<Vec<Value>> {
    if !ctx.audit_target.exists() {
        return Ok(Vec::new());
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let filter =
        crate::audit::query::Filter { op: Some(op.into()), target: Some(policy.name.clone()), ..Default::default() };
    Ok(store
        .list(&filter)?
        .into_iter()
        .filter(|r| r.event.mode == "live")
        .filter_map(|r| serde_json::from_str::<Value>(&r.event.params).ok())
        .filter(|p| p.get("digest").and_then(Value::as_str) == Some(digest))
        .collect())
}

/// Whether someone other than its maker approved `plan`.
fn approved(ctx: &Context, policy: &Policy, plan: &Plan) -> anyhow::Result<bool> {
    let approvals = notes_about(ctx, policy, APPROVAL_OP, &plan.digest)?;
    Ok(approvals.iter().any(|a| a.get("approver").and_then(Value::as_str).is_some_and(|who| who != plan.planned_by)))
}

/// The newest approved plan of `policy` not yet applied, if any (what an unattended run applies).
fn approved_unapplied(ctx: &Context, policy: &Policy) -> anyhow::Result<Option<Plan>> {
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let filter = crate::audit::query::Filter {
        op: Some(PLAN_OP.into()),
        target: Some(policy.name.clone()),
        ..Default::default()
    };
    let plans: Vec<Plan> = store
        .list(&filter)?
        .into_iter()
        .filter(|r| r.event.mode == "live")
        .filter_map(|r| serde_json::from_str::<Plan>(&r.event.params).ok())
        .collect();
    drop(store);
    for plan in plans.into_iter().rev() {
        let current =
            plan.policy_sha256 == policy.sha256 && plan::digest(&plan.policy_sha256, &plan.steps) == plan.digest;
        if current
            && plan.halted.is_none()
            && approved(ctx, policy, &plan)?
            && notes_about(ctx, policy, APPLIED_OP, &plan.digest)?.is_empty()
        {
            return Ok(Some(plan));
        }
    }
    Ok(None)
}

/// `policy run --due`: every unattended policy whose `every` has passed since its last plan, one at a time under
/// a lock beside the audit log (a double-fired cron acts once), then one summary line.
fn run_due(ctx: &Context, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| UsageError::new(format!("cannot read the policies directory {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    // What waits for its time goes first (a 4-hour admin grant taken back is due whatever the policies say).
    let scheduled = crate::cmd::schedule::run_due(ctx)?;
    let (mut applied, mut halted, mut failed, mut not_due, mut awaiting) = (Vec::new(), Vec::new(), Vec::new(), 0, 0);
    for file in files {
        let policy = match Policy::load(&file) {
            Ok(p) => p,
            Err(e) => {
                output::note(&format!("error: {e}"));
                failed.push(file.display().to_string());
                continue;
            }
        };
        if !policy.spec.unattended {
            output::note(&format!(
                "{}: not unattended (unattended = true declares it may act with no one to ask); skipped",
                policy.name
            ));
            continue;
        }
        let lock = match claim(ctx, &policy)? {
            Some(lock) => lock,
            None => {
                output::note(&format!("{}: another runner is applying it; skipped", policy.name));
                continue;
            }
        };
        let result = due_work(ctx, &policy);
        drop(lock);
        match result {
            Ok(Turn::Applied) => applied.push(policy.name),
            Ok(Turn::Awaiting) => awaiting += 1,
            Ok(Turn::NotDue) => not_due += 1,
            Err(e) if e.downcast_ref::<Halted>().is_some() => halted.push(policy.name),
            Err(e) if e.downcast_ref::<crate::error::Interrupted>().is_some() => return Err(e),
            Err(e) => {
                output::note(&format!("error: policy {}: {e:#}", policy.name));
                failed.push(policy.name);
            }
        }
    }
    let ran_any = scheduled.done + scheduled.left_alone + scheduled.failed > 0;
    output::line(&format!(
        "policies: {} applied, {} halted by a guard{}, {} failed, {not_due} not due{}{}",
        applied.len(),
        halted.len(),
        if halted.is_empty() { String::new() } else { format!(" ({})", halted.join(", ")) },
        failed.len(),
        if awaiting > 0 { format!(", {awaiting} awaiting approval") } else { String::new() },
        if ran_any { format!("; {}", crate::cmd::schedule::summary(&scheduled)) } else { String::new() }
    ));
    if scheduled.failed > 0 && failed.is_empty() && halted.is_empty() {
        return Err(crate::error::BulkFailures { failed: scheduled.failed }.into());
    }
    if !failed.is_empty() {
        return Err(crate::error::ScriptFailed.into());
    }
    if !halted.is_empty() {
        return Err(Halted { why: halted.join(", ") }.into());
    }
    Ok(())
}

/// What an unattended run did with one policy.
enum Turn {
    Applied,
    Awaiting,
    NotDue,
}

/// One policy's turn in `run --due`, under its claim. A policy that needs approvals applies its newest approved
/// plan, or (when due) makes one for a second admin to approve; any other is planned and applied when due. The
/// plan and the results are in the audit log; the terminal gets the summary line (and any halt).
fn due_work(ctx: &Context, policy: &Policy) -> anyhow::Result<Turn> {
    if policy.spec.require_approval {
        if let Some(plan) = approved_unapplied(ctx, policy)? {
            apply(ctx, policy, &plan, true)?;
            return Ok(Turn::Applied);
        }
    }
    if !is_due(ctx, policy)? {
        return Ok(Turn::NotDue);
    }
    let plan = plan_and_record(ctx, policy)?;
    if let Some(why) = &plan.halted {
        output::note(&format!("{}: plan {} HALTED by a guard: {why}", policy.name, plan.short_digest()));
        return Err(Halted { why: why.clone() }.into());
    }
    if policy.spec.require_approval {
        output::note(&format!("{}: plan {} awaits approval by a second admin", policy.name, plan.short_digest()));
        return Ok(Turn::Awaiting);
    }
    apply(ctx, policy, &plan, true)?;
    Ok(Turn::Applied)
}

/// Due when no plan of it was recorded within its `every`.
fn is_due(ctx: &Context, policy: &Policy) -> anyhow::Result<bool> {
    if !ctx.audit_target.exists() {
        return Ok(true);
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let since = Utc::now() - crate::policy::every(&policy.spec);
    let filter = crate::audit::query::Filter {
        op: Some(PLAN_OP.into()),
        target: Some(policy.name.clone()),
        since: Some(crate::dates::rfc3339(since)),
        ..Default::default()
    };
    Ok(store.list(&filter)?.iter().all(|r| r.event.mode != "live"))
}

/// This process's claim on running `policy` now (see `audit::claim`); `None` when another runner holds it.
fn claim(ctx: &Context, policy: &Policy) -> anyhow::Result<Option<crate::audit::claim::Claim>> {
    Ok(crate::audit::claim::claim(&ctx.audit_target, &ctx.audit_path, &format!("policy-{}", policy.name))?)
}
