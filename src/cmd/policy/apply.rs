//! Acting on a plan: each account read again (one listing per profile) and one active or spared since left
//! alone; the changes sent through the one pipeline; then the people and channels the policy names told, each
//! delivery recorded, a failed one reported without failing the work.

use super::gather::gather;
use super::{APPLIED_OP, NOTIFY_OP, WARNED_OP};
use crate::audit::vocab::Status;
use crate::backends::{Action, Op};
use crate::context::Context;
use crate::dispatch::BulkItem;
use crate::error::{Halted, UsageError};
use crate::notify::NotifyError;
use crate::output;
use crate::policy::plan::{Candidate, Plan, Step};
use crate::policy::{Notify, NotifyKind, Policy, StageAction};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// Acts on `plan`: each account read again (one listing per profile) and left alone if it was active since the
/// plan, is gone, or is spared since; the changes sent through the pipeline, asked about once (or accepted by the
/// policy's own declaration when `unattended`); then the warnings and notices delivered.
pub(super) fn apply(ctx: &Context, policy: &Policy, plan: &Plan, unattended: bool) -> anyhow::Result<()> {
    if !ready(ctx, policy, plan, unattended)? {
        return Ok(());
    }
    let drift = read_again(ctx, policy, plan)?;
    let mut jobs: BTreeMap<(String, StageAction), Vec<(BulkItem, &Step)>> = BTreeMap::new();
    let mut warnings: Vec<&Step> = Vec::new();
    let mut results = Vec::new();
    for step in &plan.steps {
        if let Some(why) = drift.get(&(step.profile.as_str(), step.account.as_str())).cloned().flatten() {
            results.push(json!({"profile": step.profile, "target": step.account, "op": step.action.name(), "status": "skipped", "error": why}));
            continue;
        }
        if step.action.op().is_none() {
            warnings.push(step);
            continue;
        }
        let reason = format!("policy {}: {} (plan {})", policy.name, step.why(), plan.short_digest());
        let params = serde_json::Map::from_iter([("reason".to_string(), json!(reason))]);
        let item = BulkItem { target: Some(step.account.clone()), params, ..Default::default() };
        jobs.entry((step.profile.clone(), step.action)).or_default().push((item, step));
    }
    let changes: usize = jobs.values().map(Vec::len).sum();
    let mut conns = Vec::new();
    for ((profile, action), items) in jobs {
        let conn = ctx.connections.connect(Some(&profile)).map_err(|e| UsageError::new(e.to_string()))?;
        conns.push((action, items, conn));
    }
    confirm(ctx, &format!("policy {} plan {}", policy.name, plan.short_digest()), &conns, warnings.len(), unattended)?;
    // What happened to each step, for the notices: the changes that were made, and every warning due.
    let mut told: Vec<&Step> = warnings.clone();
    for (action, items, conn) in conns {
        let op = action.op().ok_or_else(|| anyhow::anyhow!("a warning is not a change"))?;
        let (items, steps): (Vec<BulkItem>, Vec<&Step>) = items.into_iter().unzip();
        let done = ctx.runtime.block_on(ctx.dispatcher.perform_all(&conn, op, items, json!({})))?;
        for (r, step) in done.into_iter().zip(steps) {
            if matches!(r.status, crate::dispatch::ItemStatus::Ok) {
                told.push(step);
            }
            let mut v = serde_json::to_value(&r)?;
            v["profile"] = json!(conn.profile);
            v["op"] = json!(action.name());
            results.push(v);
        }
    }
    if !ctx.dispatcher.mode().dry_run {
        tell(ctx, policy, plan, &told)?;
    }
    let applied = json!({"digest": plan.digest, "changes": changes, "warnings": warnings.len()});
    ctx.runtime.block_on(ctx.dispatcher.record_note(APPLIED_OP, &policy.name, &applied, Status::Ok, ""))?;
    if !unattended {
        output::print_value(&Value::Array(results), ctx.output);
    }
    Ok(())
}

/// Whether `plan` may be acted on: not halted by its guard, approved where the policy asks for it, and with
/// something to do (`false`: nothing to do, said).
fn ready(ctx: &Context, policy: &Policy, plan: &Plan, unattended: bool) -> anyhow::Result<bool> {
    if let Some(why) = &plan.halted {
        if !unattended {
            super::show(ctx, plan);
        }
        return Err(Halted { why: why.clone() }.into());
    }
    if policy.spec.require_approval && !super::approved(ctx, policy, plan)? {
        return Err(UsageError::new(format!(
            "policy {} needs each plan approved by a second admin: `steward policy approve {} --plan {}` (not by {})",
            policy.name,
            policy.name,
            plan.short_digest(),
            plan.planned_by
        ))
        .into());
    }
    if plan.steps.is_empty() {
        output::note(&format!("policy {}: nothing to do", policy.name));
        return Ok(false);
    }
    Ok(true)
}

/// The jobs' changes as one question (or, `unattended`, accepted by the policy's own declaration).
fn confirm(ctx: &Context, what: &str, conns: &[Job], warnings: usize, unattended: bool) -> anyhow::Result<()> {
    let changes: usize = conns.iter().map(|(_, items, _)| items.len()).sum();
    if unattended {
        ctx.dispatcher.accept_declared_plan(changes);
        return Ok(());
    }
    let mut lines: Vec<String> =
        conns.iter().map(|(a, items, c)| format!("  {} {} accounts on {}", a.name(), items.len(), c.profile)).collect();
    if warnings > 0 {
        lines.push(format!("  warn {warnings} accounts (no change to them)"));
    }
    let question = format!("{}\n{what}: {changes} changes. Go ahead?", lines.join("\n"));
    Ok(ctx.dispatcher.confirm_plan(&question, what, changes)?)
}

/// One profile's changes of one stage: the items and the plan steps they come from, and the connection.
type Job<'p> = (StageAction, Vec<(BulkItem, &'p Step)>, std::sync::Arc<crate::dispatch::Connection>);

/// Each planned account read again now (one listing per profile, as it arrives): why its steps are not taken
/// after all, if they are not: it is gone, was active since the plan, or is spared since (an exception added, a
/// person's restore).
fn read_again<'p>(ctx: &Context, policy: &Policy, plan: &'p Plan) -> anyhow::Result<Drift<'p>> {
    let fresh = gather(ctx, policy, Utc::now())?;
    // profile → login → (last active as planned, why not taken): gone until the listing shows it.
    let mut accounts: HashMap<&str, HashMap<&str, Planned>> = HashMap::new();
    for step in &plan.steps {
        let gone = Some("no longer listed".to_string());
        accounts.entry(&step.profile).or_default().insert(&step.account, (step.last_active, gone));
    }
    fresh.read_accounts(ctx, &mut |c: Candidate| {
        let Some((planned_at, why)) =
            accounts.get_mut(c.profile.as_str()).and_then(|logins| logins.get_mut(c.login.as_str()))
        else {
            return;
        };
        *why = match c.last_active > *planned_at {
            true => Some(format!(
                "active since the plan (last active {})",
                c.last_active.map(crate::dates::rfc3339).unwrap_or_default()
            )),
            false => fresh.spared(&c),
        };
    })?;
    Ok(accounts
        .into_iter()
        .flat_map(|(profile, logins)| logins.into_iter().map(move |(login, (_, why))| ((profile, login), why)))
        .collect())
}

/// An account as the plan saw it (last active) and why its steps are not taken now, if they are not.
type Planned = (Option<DateTime<Utc>>, Option<String>);

/// (profile, account) → why a plan's steps for it are not taken, if they are not.
type Drift<'p> = HashMap<(&'p str, &'p str), Option<String>>;

/// Tells what `told` holds (warnings due, changes made) to each notify the policy names for those stages: the
/// person (e-mail, one message each) and the channels (one message each, listing them all). Every delivery is
/// recorded; an account's warning counts as given once someone was told of it.
fn tell(ctx: &Context, policy: &Policy, plan: &Plan, told: &[&Step]) -> anyhow::Result<()> {
    let scale = crate::http::retry::RetryPolicy::in_use().time_scale;
    let mut warned: Vec<&Step> = Vec::new();
    for n in policy.spec.notify.iter().map(|n| n.get_ref()) {
        let steps: Vec<&Step> = told.iter().copied().filter(|s| n.tells(s.action)).collect();
        if steps.is_empty() {
            continue;
        }
        // The person, about their own account.
        if n.kind == NotifyKind::Email && n.person {
            for step in &steps {
                let Some(address) = &step.email else {
                    output::note(&format!(
                        "policy {}: {} on {} has no e-mail address to tell",
                        policy.name, step.account, step.profile
                    ));
                    continue;
                };
                let message = about_one(policy, n, step);
                let result = deliver_email(ctx, n, std::slice::from_ref(address), &message, scale);
                let ok = record(ctx, policy, plan, &format!("email {address}"), std::slice::from_ref(step), result)?;
                if ok && step.action == StageAction::Warn {
                    warned.push(step);
                }
            }
        }
        // Each manager, about their people: one message each.
        if n.kind == NotifyKind::Email && n.manager {
            let managers = match managers_of(policy, &steps) {
                Ok(managers) => managers,
                Err(e) => {
                    record(ctx, policy, plan, "their managers", &steps, Err(e))?;
                    Vec::new()
                }
            };
            for (manager, theirs) in managers {
                let message = to_manager(policy, n, &theirs);
                let result = deliver_email(ctx, n, std::slice::from_ref(&manager), &message, scale);
                if record(ctx, policy, plan, &format!("email {manager} (manager)"), &theirs, result)? {
                    warned.extend(theirs.iter().filter(|s| s.action == StageAction::Warn));
                }
            }
        }
        // The channels, about everyone at once.
        let message = summary(policy, plan, &steps);
        let result = match n.kind {
            NotifyKind::Email if n.to.is_empty() => continue,
            NotifyKind::Email => deliver_email(ctx, n, &n.to, &message, scale),
            NotifyKind::Webhook => deliver_webhook(ctx, n, &message, scale),
            NotifyKind::Matrix => deliver_matrix(ctx, n, plan, &message),
        };
        if record(ctx, policy, plan, &n.label(), &steps, result)? {
            warned.extend(steps.iter().filter(|s| s.action == StageAction::Warn));
        }
    }
    warned.sort_by_key(|s| (&s.profile, &s.account));
    warned.dedup_by_key(|s| (&s.profile, &s.account));
    for step in warned {
        let params = json!({"profile": step.profile, "account": step.account, "plan": plan.digest});
        ctx.runtime.block_on(ctx.dispatcher.record_note(WARNED_OP, &policy.name, &params, Status::Ok, ""))?;
    }
    Ok(())
}

/// The message about one account, from the notify's template or the default.
fn about_one(policy: &Policy, n: &Notify, step: &Step) -> crate::notify::Message {
    let template = n.template.as_deref().unwrap_or("{account} on {profile}: {action} ({why}), by policy {policy}");
    let text = template
        .replace("{account}", &step.account)
        .replace("{profile}", &step.profile)
        .replace("{action}", step.action.name())
        .replace("{why}", &step.why())
        .replace("{policy}", &policy.name);
    crate::notify::Message {
        subject: format!("{}: {} on {}", step.action.name(), step.account, step.profile),
        text,
        details: json!({"policy": policy.name, "account": step.account, "profile": step.profile, "action": step.action.name()}),
    }
}

/// Each manager the policy's directory names for the accounts of `steps` (by the account's e-mail, any case),
/// with their people's steps; an account with no e-mail, or no manager in the directory, is said.
fn managers_of<'s>(policy: &Policy, steps: &[&'s Step]) -> Result<Vec<(String, Vec<&'s Step>)>, NotifyError> {
    let (path, dir) = match super::directory(policy) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(NotifyError::Setup("the policy has no [directory]".into())),
        Err(why) => return Err(NotifyError::Setup(why)),
    };
    let mut manager_of: HashMap<String, String> = HashMap::new();
    crate::output::csv::read_rows(&path, |row| {
        let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty());
        if let (Some(person), Some(manager)) = (text(&dir.email), text(&dir.manager)) {
            manager_of.insert(person.to_lowercase(), manager.to_string());
        }
    })
    .map_err(|e| NotifyError::Setup(format!("the directory: {e}")))?;
    let mut by_manager: BTreeMap<String, Vec<&Step>> = BTreeMap::new();
    for step in steps {
        match step.email.as_deref().map(|e| manager_of.get(&e.trim().to_lowercase())) {
            Some(Some(manager)) => by_manager.entry(manager.clone()).or_default().push(step),
            found => output::note(&format!(
                "policy {}: {} on {} {}, so no manager is told",
                policy.name,
                step.account,
                step.profile,
                match found {
                    None => "has no e-mail address".to_string(),
                    Some(_) => format!("is not in the directory {}", path.display()),
                }
            )),
        }
    }
    Ok(by_manager.into_iter().collect())
}

/// The message to a manager about their people: a line each, from the notify's template.
fn to_manager(policy: &Policy, n: &Notify, theirs: &[&Step]) -> crate::notify::Message {
    let lines: Vec<String> = theirs.iter().map(|s| about_one(policy, n, s).text).collect();
    crate::notify::Message {
        subject: format!("steward policy {}: {} of your people", policy.name, theirs.len()),
        text: format!("steward policy {} for the people you manage:\n{}", policy.name, lines.join("\n")),
        details: json!({"policy": policy.name, "changes": changes_of(theirs)}),
    }
}

/// The steps a message tells of, for machines (a webhook's or a mail's details).
fn changes_of(steps: &[&Step]) -> Vec<Value> {
    steps
        .iter()
        .map(|s| json!({"profile": s.profile, "account": s.account, "action": s.action.name(), "why": s.why()}))
        .collect()
}

/// The message about every account of a run, for a channel: a line each (the first 50), and the counts.
fn summary(policy: &Policy, plan: &Plan, steps: &[&Step]) -> crate::notify::Message {
    const SHOWN: usize = 50;
    let mut lines: Vec<String> = steps
        .iter()
        .take(SHOWN)
        .map(|s| format!("{} {} on {}: {}", s.action.name(), s.account, s.profile, s.why()))
        .collect();
    if steps.len() > SHOWN {
        lines.push(format!("… and {} more (steward audit list --op policy_plan)", steps.len() - SHOWN));
    }
    let text = format!(
        "steward policy {} (plan {}): {} accounts\n{}",
        policy.name,
        plan.short_digest(),
        steps.len(),
        lines.join("\n")
    );
    crate::notify::Message {
        subject: format!("steward policy {}: {} accounts", policy.name, steps.len()),
        text,
        details: json!({"policy": policy.name, "plan": plan.digest, "changes": changes_of(steps)}),
    }
}

fn secret_from_env(var: &str) -> Result<crate::redact::SecretString, NotifyError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => {
            crate::redact::remember(&v);
            Ok(crate::redact::SecretString::from(v.trim().to_string()))
        }
        _ => Err(NotifyError::Setup(format!("the environment variable {var} is not set"))),
    }
}

fn deliver_webhook(
    ctx: &Context,
    n: &Notify,
    message: &crate::notify::Message,
    scale: f64,
) -> Result<u32, NotifyError> {
    let url = secret_from_env(n.url_env.as_deref().unwrap_or_default())?;
    ctx.runtime.block_on(crate::notify::webhook(&url, message, scale))
}

fn deliver_email(
    ctx: &Context,
    n: &Notify,
    to: &[String],
    message: &crate::notify::Message,
    scale: f64,
) -> Result<u32, NotifyError> {
    let url = url::Url::parse(n.smtp.as_deref().unwrap_or_default()).map_err(|e| NotifyError::Setup(e.to_string()))?;
    let password = n.password_env.as_deref().map(secret_from_env).transpose()?;
    let smtp = crate::notify::Smtp { url, from: n.from.clone().unwrap_or_default(), user: n.user.clone(), password };
    ctx.runtime.block_on(crate::notify::email(&smtp, to, message, scale))
}

/// A room message through the Synapse profile's own connection (`api`, audited like every request); the plan's
/// digest is the transaction id, so a retried send is one message.
fn deliver_matrix(
    ctx: &Context,
    n: &Notify,
    plan: &Plan,
    message: &crate::notify::Message,
) -> Result<u32, NotifyError> {
    let (profile, room) = (n.profile.as_deref().unwrap_or_default(), n.room.as_deref().unwrap_or_default());
    let conn = ctx.connections.connect(Some(profile)).map_err(|e| NotifyError::Setup(e.to_string()))?;
    let path = format!(
        "_matrix/client/v3/rooms/{}/send/m.room.message/steward-{}",
        crate::http::segment(room),
        plan.short_digest()
    );
    let params = json!({"method": "PUT", "path": path, "body": {"msgtype": "m.text", "body": message.text}});
    ctx.runtime
        .block_on(ctx.dispatcher.perform(&conn, Action::new(Op::Api, None, params)))
        .map(|_| 1)
        .map_err(|e| NotifyError::Room(e.to_string()))
}

/// Records one delivery (to whom, about which accounts, how it went) and says on the terminal when it failed;
/// whether it was delivered.
fn record(
    ctx: &Context,
    policy: &Policy,
    plan: &Plan,
    to: &str,
    steps: &[&Step],
    result: Result<u32, NotifyError>,
) -> anyhow::Result<bool> {
    let about: Vec<String> =
        steps.iter().map(|s| format!("{} {} on {}", s.action.name(), s.account, s.profile)).collect();
    let (status, why, tries) = match &result {
        Ok(tries) => (Status::Ok, String::new(), *tries),
        Err(e) => (Status::Failed, e.to_string(), 0),
    };
    if let Err(e) = &result {
        output::note(&format!("warning: policy {}: could not tell {to}: {e}", policy.name));
    }
    let params = json!({"policy": policy.name, "plan": plan.digest, "to": to, "about": about, "tries": tries});
    ctx.runtime.block_on(ctx.dispatcher.record_note(NOTIFY_OP, &policy.name, &params, status, &why))?;
    Ok(result.is_ok())
}
