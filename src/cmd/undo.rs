//! `steward undo RUN`: puts back what a run's job (the run, the run it resumed, its resumes) changed, as a new audited run with the usual dry-run and
//! confirmation rules. Only successful, reversible changes count: a noop changed nothing, so nothing is undone.

use crate::audit::runref::RunRef;
use crate::audit::AuditStore;
use crate::backends::Op;
use crate::context::Context;
use crate::dispatch::BulkItem;
use crate::error::UsageError;
use crate::output;
use serde_json::{json, Value};

pub fn run(ctx: &Context, named: &RunRef) -> anyhow::Result<()> {
    if !ctx.audit_target.exists() {
        return Err(UsageError::new(format!("no audit log at {}; nothing to undo", ctx.audit_target)).into());
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let run = crate::context::found_run(&store, named)?;
    let Some(job) = store.job_of(run)? else {
        return Err(UsageError::new(format!("there is no run {run}; `steward audit list` shows the runs")).into());
    };
    // A run and its resumes are one job: undo puts back what all of them changed, whichever was named.
    if job.runs.len() > 1 {
        let mut runs = job.runs.clone();
        runs.sort_unstable();
        let runs: Vec<String> = runs.iter().map(i64::to_string).collect();
        output::note(&format!(
            "run {run} is part of job {} (runs {}): undoing the whole job",
            job.first,
            runs.join(", ")
        ));
    }
    let changes = store.reversible_changes(&job.runs)?;
    let lost = store.irreversible_changes(&job.runs)?;
    drop(store);
    if !lost.is_empty() {
        output::note(&format!(
            "cannot be restored by steward ({} changes; recreate them by hand if they are wanted back): {}",
            lost.len(),
            lost.iter().map(|(p, op, t, params)| describe_lost(p, op, t, params)).collect::<Vec<_>>().join("; ")
        ));
    }
    let seen = observed_only(changes, run);
    let plan = reversal(&seen);
    if plan.is_empty() {
        output::note(&format!("run {run} made no reversible change that still stands; nothing to undo"));
        return Ok(());
    }
    // The whole reversal is planned and asked about once, before the first change (every profile connected
    // first, so one that cannot be reached stops nothing halfway).
    let mut jobs = Vec::new();
    for ((profile, op), targets) in plan {
        let conn = ctx.connections.connect(Some(&profile)).map_err(|e| UsageError::new(e.to_string()))?;
        jobs.push((profile, op, targets, conn));
    }
    let changes: usize = jobs.iter().map(|(_, _, targets, _)| targets.len()).sum();
    let question = format!("{}undo job {}: {changes} changes. Go ahead?", plan_text(&jobs), job.first);
    let parts: Vec<String> =
        jobs.iter().map(|(profile, op, targets, _)| format!("{} {} on {profile}", op.name(), targets.len())).collect();
    let what = format!("undo of job {} ({})", job.first, parts.join(", "));
    ctx.dispatcher.confirm_plan(&question, &what, changes)?;
    let mut all = Vec::new();
    for (profile, op, targets, conn) in jobs {
        let items = targets
            .into_iter()
            .map(|t| BulkItem { target: Some(t.target), params: t.carried, ..Default::default() })
            .collect();
        let params = json!({ "reason": format!("steward undo of run {run}") });
        let results = ctx.runtime.block_on(ctx.dispatcher.perform_all(&conn, op, items, params))?;
        for r in results {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["profile"] = json!(profile);
            v["op"] = json!(op.name());
            all.push(v);
        }
    }
    output::print_value(&Value::Array(all), ctx.output);
    // Stopped (Ctrl-C: 130, `--timeout`: a failure) like any other run, not "some items failed".
    super::after_stop(ctx, &format!("undo of job {}", job.first))
}

/// The changes whose state before was observed: undo puts back only what was seen before the change; a target
/// changed blind is left alone, and named.
fn observed_only(changes: Vec<(String, String, String, String)>, run: i64) -> Vec<(String, String, String, String)> {
    // Undo puts back only what was seen before the change; a target changed blind is left alone, and named.
    let key = |target: &str, params: &str| {
        crate::audit::query::item_key(target, &serde_json::from_str(params).unwrap_or_default())
    };
    let blind: Vec<(String, String, String)> = changes
        .iter()
        .filter(|(_, _, _, params)| prior_unobserved(params))
        .map(|(profile, _, target, params)| (profile.clone(), key(target, params), target.clone()))
        .collect();
    let seen: Vec<_> = changes
        .into_iter()
        .filter(|(p, _, t, params)| !blind.iter().any(|(bp, bk, _)| bp == p && *bk == key(t, params)))
        .collect();
    if !blind.is_empty() {
        let mut names: Vec<String> = blind.iter().map(|(p, _, t)| format!("{t} on {p}")).collect();
        names.sort();
        names.dedup();
        output::note(&format!(
            "not undone: {} (their state before run {run} changed them was not observed, so steward cannot tell \
             what to put back; check them by hand)",
            names.join(", ")
        ));
    }
    seen
}

/// The reversal as the person asked to confirm it reads it: one line per profile and operation, long lists cut
/// short (`--dry-run` shows every item).
fn plan_text<C>(jobs: &[(String, Op, Vec<Undone>, C)]) -> String {
    const SHOWN: usize = 10;
    let mut text = String::new();
    for (profile, op, targets, _) in jobs {
        let mut named = targets.iter().take(SHOWN).map(Undone::describe).collect::<Vec<_>>().join(", ");
        if targets.len() > SHOWN {
            named.push_str(&format!(" … and {} more", targets.len() - SHOWN));
        }
        text.push_str(&format!("  {} on {profile}: {named}\n", op.name()));
    }
    text
}

/// An irreversible change in words: `delete_key 7 ("mona's laptop", of mona) on ghes`.
fn describe_lost(profile: &str, op: &str, target: &str, params: &str) -> String {
    let params: Value = serde_json::from_str(params).unwrap_or_default();
    let said = |k: &str| params.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let detail: Vec<String> = [
        said("title").map(|t| format!("{t:?}")),
        said("owner").map(|o| format!("of {o}")),
        said("group").map(|g| format!("group {g}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    match detail.is_empty() {
        true => format!("{op} {target} on {profile}"),
        false => format!("{op} {target} ({}) on {profile}", detail.join(", ")),
    }
}

/// A change made without reading the target first (`precheck: false`, a service that cannot tell): its
/// params say `prior_observed: false`. Rows from before steward recorded this say nothing and count as seen.
fn prior_unobserved(params: &str) -> bool {
    serde_json::from_str::<Value>(params).ok().and_then(|p| p.get("prior_observed").and_then(Value::as_bool))
        == Some(false)
}

/// One change of the reversal: the account's address, and what the change back needs of the one it undoes (a
/// membership's group, and the role to give back).
#[derive(Clone, Debug, PartialEq)]
struct Undone {
    target: String,
    carried: serde_json::Map<String, Value>,
}

impl Undone {
    fn of(target: &str, params: &Value, role: Option<&str>) -> Self {
        let mut carried = serde_json::Map::new();
        if let Some(group) = params.get("group").filter(|g| !g.is_null()) {
            carried.insert("group".into(), group.clone());
        }
        if let Some(role) = role {
            carried.insert("role".into(), json!(role));
        }
        Undone { target: target.to_string(), carried }
    }

    /// `alice`, or `alice (group acme/eng)`.
    fn describe(&self) -> String {
        match self.carried.get("group").and_then(Value::as_str) {
            Some(group) => format!("{} (group {group})", self.target),
            None => self.target.clone(),
        }
    }
}

/// A recorded change as the reversal reads it.
struct Change {
    op: Op,
    /// The role a membership change asked for (`add_to_group(u, g, #{role})`).
    role: Option<String>,
    /// The role the member had before it, where the service has roles (`prior_role`, kept by `prepare`).
    prior_role: Option<String>,
}

impl Change {
    fn of(op: Op, params: &Value) -> Self {
        let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_string);
        Change { op, role: text("role"), prior_role: text("prior_role") }
    }
}

/// What puts one account (one membership) back as it was before the run's first change to it, given that
/// change and the run's last: nothing when the run put it back itself.
fn due(first: &Change, last: &Change) -> Option<(Op, Option<String>)> {
    if !matches!(first.op, Op::AddToGroup | Op::RemoveFromGroup) {
        // Successful toggles alternate: the same first and last change means an odd number of them, so the
        // state moved; different ones mean the run put it back itself.
        return (first.op == last.op).then(|| last.op.inverse()).flatten().map(|op| (op, None));
    }
    match (&first.prior_role, first.op, last.op) {
        // A member before, with a role: a member with that role again (a join without a role gives the default).
        (Some(role), _, Op::AddToGroup) if last.role.as_deref().unwrap_or("member") == role => None,
        (Some(role), _, _) => Some((Op::AddToGroup, Some(role.clone()))),
        (None, first, last) if first == last => first.inverse().map(|op| (op, None)),
        _ => None,
    }
}

/// The changes that put each account back: per (profile, account, kind of change), the run's first change tells
/// the state before it and the last one the state after; when they differ, the change back is due. An account
/// is its stable id as recorded (`params.account`), however each change named it, and a membership is one
/// account in one group (recorded by the group's id); the reversal names it by the address its last change
/// reached.
fn reversal(changes: &[(String, String, String, String)]) -> Vec<((String, Op), Vec<Undone>)> {
    let family = |op: Op| match op {
        Op::Suspend | Op::Unsuspend => "suspension",
        Op::AddToGroup | Op::RemoveFromGroup => "membership",
        _ => "admin",
    };
    // (profile, kind of change, account) → the first change, the last one, its address and params.
    type Changed<'a> = ((String, &'a str, String), Change, Change, (String, Value));
    let mut first_last: Vec<Changed> = Vec::new();
    for (profile, op, target, params) in changes {
        let Some(op) = Op::from_name(op) else { continue };
        let params: Value = serde_json::from_str(params).unwrap_or_default();
        let key = (profile.clone(), family(op), crate::audit::query::item_key(target, &params));
        match first_last.iter_mut().find(|(k, _, _, _)| *k == key) {
            Some(entry) => (entry.2, entry.3) = (Change::of(op, &params), (target.clone(), params)),
            None => first_last.push((key, Change::of(op, &params), Change::of(op, &params), (target.clone(), params))),
        }
    }
    let mut plan: Vec<((String, Op), Vec<Undone>)> = Vec::new();
    for ((profile, _, _), first, last, (target, params)) in first_last {
        let Some((op, role)) = due(&first, &last) else { continue };
        let undone = Undone::of(&target, &params, role.as_deref());
        match plan.iter_mut().find(|((p, o), _)| *p == profile && *o == op) {
            Some((_, targets)) => targets.push(undone),
            None => plan.push(((profile, op), vec![undone])),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: &str, target: &str) -> (String, String, String, String) {
        ("ghes".into(), op.into(), target.into(), "{}".into())
    }

    #[test]
    fn each_change_is_reversed_once_and_grouped_by_operation() {
        let plan = reversal(&[change("suspend", "a"), change("suspend", "b"), change("promote", "c")]);
        assert_eq!(
            plan,
            vec![
                (("ghes".into(), Op::Unsuspend), vec![undone("a"), undone("b")]),
                (("ghes".into(), Op::Demote), vec![undone("c")])
            ]
        );
    }

    #[test]
    fn a_change_the_run_itself_took_back_needs_nothing() {
        let plan = reversal(&[change("suspend", "a"), change("unsuspend", "a")]);
        assert!(plan.is_empty(), "{plan:?}");
    }

    fn undone(target: &str) -> Undone {
        Undone::of(target, &json!({}), None)
    }

    fn membership(op: &str, group: &str, params: Value) -> (String, String, String, String) {
        let mut p = json!({"account": "u1", "group": group});
        p.as_object_mut().unwrap().extend(params.as_object().cloned().unwrap_or_default());
        ("ghes".into(), op.into(), "mona".into(), p.to_string())
    }

    #[test]
    fn a_membership_is_one_account_in_one_group_and_comes_back_with_its_role() {
        let plan = reversal(&[
            membership("remove_from_group", "acme/eng", json!({"prior_role": "maintainer"})),
            membership("remove_from_group", "acme/ops", json!({"prior_role": "member"})),
            membership("add_to_group", "acme/ops", json!({})),
            change("suspend", "mona"),
        ]);
        let back = &plan.iter().find(|((_, op), _)| *op == Op::AddToGroup).expect("memberships given back").1;
        assert_eq!(back.len(), 1, "ops was left and joined again: only eng is due: {back:?}");
        assert_eq!(back[0].describe(), "mona (group acme/eng)");
        assert_eq!(back[0].carried.get("role"), Some(&json!("maintainer")));
        assert!(plan.iter().any(|((_, op), _)| *op == Op::Unsuspend), "suspension is undone on its own: {plan:?}");
    }

    #[test]
    fn a_role_changed_is_given_back_and_a_join_is_taken_back() {
        let promoted = membership("add_to_group", "acme", json!({"role": "admin", "prior_role": "member"}));
        let joined = membership("add_to_group", "labs", json!({"role": "admin"}));
        let plan = reversal(&[promoted, joined]);
        let role_back = plan.iter().find(|((_, op), _)| *op == Op::AddToGroup).expect("the old role").1.clone();
        assert_eq!(
            (role_back[0].describe(), role_back[0].carried["role"].clone()),
            ("mona (group acme)".into(), json!("member"))
        );
        let left = plan.iter().find(|((_, op), _)| *op == Op::RemoveFromGroup).expect("the join taken back").1.clone();
        assert_eq!(left[0].describe(), "mona (group labs)");
        // Changed and changed back within the run: nothing to do.
        let twice = reversal(&[
            membership("add_to_group", "acme", json!({"role": "admin", "prior_role": "member"})),
            membership("add_to_group", "acme", json!({"role": "member", "prior_role": "admin"})),
        ]);
        assert!(twice.is_empty(), "{twice:?}");
    }

    #[test]
    fn suspension_and_admin_rights_are_independent() {
        let plan = reversal(&[change("suspend", "a"), change("demote", "a")]);
        assert_eq!(plan.len(), 2);
    }
}
