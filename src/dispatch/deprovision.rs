//! `deprovision`: take away everything a person holds on one profile, with evidence. Per person: resolve the name
//! to the account → refuse a protected one or the caller's own → snapshot (recorded) → plan (the backend's
//! cascade) → one confirmation for the whole job → each step through the one audited pipeline → read back and
//! verify (recorded). A failing step never stops the next one, nor the next person.

use super::people::{Finding, IdentityMap};
use super::{Connection, Dispatcher};
use crate::audit::vocab::{Mode as EventMode, Phase, Status};
use crate::audit::Event;
use crate::backends::holdings::{Cascade, Snapshot, Step, Wishes};
use crate::backends::{Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::redact::redact;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The audit log's name for deprovisioning's own rows (snapshots, verification, refusals).
const OP: &str = "deprovision";

/// A person's status where the service was searched by identifiers it can search, and none named an account.
pub const NO_ACCOUNT: &str = "no account";
/// A person's status where no identifier known for them is one the service can search.
pub const COULD_NOT_CHECK: &str = "could not check";

/// What became of one step of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub op: &'static str,
    pub target: String,
    pub says: String,
    pub reversible: bool,
    /// ok, noop, failed, refused, cancelled or dry-run.
    pub status: String,
    pub error: Option<String>,
    pub http_status: Option<u16>,
    /// The sequence number of the step's intent in the audit log.
    pub audit_seq: Option<i64>,
    /// When the step ended (RFC 3339) and how long it took.
    pub at: Option<String>,
    pub ms: Option<u64>,
    /// The earlier run of the job that made it (a resumed run's page lists them); none for this run's.
    pub run: Option<i64>,
}

/// What deprovisioning did to one person on one profile: before → steps → after.
#[derive(Clone, Debug, Serialize)]
pub struct PersonReport {
    /// The name as given (a login, an email, an id).
    pub person: String,
    pub profile: String,
    pub kind: &'static str,
    /// The account's name on the service, once found.
    pub account: Option<String>,
    /// How the account was found (`email ann@example.com (from ghes)`, `login ann`).
    pub found_by: Option<String>,
    /// Where there is no account: the identifiers it was looked up by.
    pub checked: Vec<String>,
    /// done, partial, failed, nothing to do, dry-run, protected, refused, no account, could not check, skipped
    /// or cancelled.
    pub status: String,
    pub before: Option<Snapshot>,
    pub after: Option<Snapshot>,
    pub steps: Vec<StepReport>,
    /// In a resumed job: what the earlier runs did to this account, with the run that did it.
    pub earlier_steps: Vec<StepReport>,
    /// The account the profile's token acts as, and the token's fingerprint (never the token).
    pub acting_as: Option<String>,
    pub token_fingerprint: String,
    /// Why (the job's reason).
    pub reason: String,
    /// Whether reading back showed everything planned in place (None when nothing was done).
    pub verified: Option<bool>,
    /// What could not be done, or is still there, and why.
    pub problems: Vec<String>,
    /// What the service cannot take away through its API.
    pub caveats: Vec<String>,
    /// Set when the whole profile failed (unreachable, not planned): why, in its error's words.
    pub profile_error: Option<String>,
}

impl PersonReport {
    fn new(conn: &Connection, person: &str, reason: &str) -> Self {
        let mut r = Self::blank(person, &conn.profile, conn.backend.kind());
        let identity = conn.known_identity();
        r.acting_as = (!identity.is_empty()).then_some(identity);
        r.token_fingerprint = conn.token.fingerprint.clone();
        r.reason = reason.to_string();
        r
    }

    fn blank(person: &str, profile: &str, kind: &'static str) -> Self {
        PersonReport {
            person: person.to_string(),
            profile: profile.to_string(),
            kind,
            account: None,
            found_by: None,
            checked: Vec::new(),
            status: String::new(),
            before: None,
            after: None,
            steps: Vec::new(),
            earlier_steps: Vec::new(),
            acting_as: None,
            token_fingerprint: String::new(),
            reason: String::new(),
            verified: None,
            problems: Vec::new(),
            caveats: Vec::new(),
            profile_error: None,
        }
    }

    fn ended(mut self, status: &str, problem: Option<String>) -> Self {
        self.status = status.to_string();
        self.problems.extend(problem);
        self
    }
}

/// One person in the job, as far as they got.
struct Person {
    report: PersonReport,
    /// The name the service resolves (the input, or the login its email led to).
    name: Option<String>,
    /// The stable id of the account that name resolved to: every step is decided, claimed and keyed on it.
    account: String,
    /// What a request that changes the account names it by, as every other path addresses it (so a later
    /// single call finds what this job recorded: a role held before a termination).
    address: String,
    /// Found through a link (another service's record, the identity map), not by the name given: the
    /// confirmation says how, so a wrong link is seen before anything changes.
    linked: bool,
    plan: Cascade,
}

impl Person {
    /// A person with nothing planned: their report already says why.
    fn unplanned(report: PersonReport) -> Person {
        Person {
            report,
            name: None,
            account: String::new(),
            address: String::new(),
            linked: false,
            plan: Cascade::default(),
        }
    }
}

/// The account `finding` found for a person (with the name the service resolves and whether a link led to
/// it), their report saying how; or none, their report ended saying why, in words an auditor can use.
fn found(
    finding: Finding,
    report: &mut PersonReport,
    item: &super::BulkItem,
    conn: &Connection,
    given: &str,
) -> Option<(crate::backends::model::Account, String, bool)> {
    let (status, why) = match finding {
        Finding::Found { account, name, by } => {
            report.found_by = Some(by.describe());
            return Some((account, name, by.from != super::people::GIVEN));
        }
        Finding::Failed(e) if item.error.is_some() => ("failed", e.message),
        Finding::Failed(e) => ("failed", format!("could not look {given:?} up: {e}")),
        Finding::Refused(e) => ("refused", e.to_string()),
        Finding::NoAccount { checked } => {
            let why = format!("no account on {} (checked by {})", conn.profile, checked.join(", "));
            report.checked = checked;
            (NO_ACCOUNT, why)
        }
        Finding::CouldNotCheck { needs } => (COULD_NOT_CHECK, needs),
    };
    report.status = status.to_string();
    report.problems.push(why);
    None
}

/// One profile's part of a deprovisioning job, planned and not yet acted on.
struct Planned<'c> {
    conn: &'c Connection,
    people: Vec<Person>,
    dry_run: bool,
}

/// What a deprovisioning job takes from its options: the reason, the wishes, dry run.
fn options(params: &Value, dry_run: bool) -> Result<(Wishes, bool), ApiError> {
    let reason = params.get("reason").and_then(Value::as_str).map(str::trim).filter(|r| !r.is_empty());
    let Some(reason) = reason else {
        return Err(ApiError::invalid(
            "deprovision needs a reason, for the services' audit logs and ours: deprovision_all(people, #{reason: \"left the company\"})",
        ));
    };
    let flag = |k: &str| params.get(k).and_then(Value::as_bool).unwrap_or(false);
    let wishes = Wishes { reason: reason.to_string(), deactivate: flag("deactivate"), reset_2fa: flag("reset_2fa") };
    Ok((wishes, dry_run || flag("dry_run")))
}

impl Dispatcher {
    /// Deprovisions every person named in `items` on `conn`'s profile; one report per person, in input order.
    pub async fn deprovision_all(
        &self,
        conn: &Connection,
        items: Vec<super::BulkItem>,
        params: Value,
    ) -> Result<Vec<PersonReport>, super::ActionError> {
        let fail = |e: ApiError| super::ActionError::new(e, conn, OP, None);
        let (wishes, dry_run) = options(&params, self.mode.dry_run).map_err(fail)?;
        let map = IdentityMap::from_rows(params.get("identity_map")).map_err(fail)?;
        let mut findings = self.identify(&[conn], &items, &map).await.map_err(fail)?;
        let findings = findings.pop().unwrap_or(Ok(Vec::new())).map_err(fail)?;
        let planned = self.plan(conn, &items, findings, &wishes, dry_run).await.map_err(fail)?;
        self.confirm_plans(&[&planned]).map_err(fail)?;
        let reports = self.carry_out(planned).await;
        self.flag_found_nowhere(&reports);
        Ok(reports)
    }

    /// Deprovisions the same people on several profiles at once: each profile planned concurrently, one
    /// confirmation for all of them, then every profile's steps concurrently (each within its own limits). A
    /// profile that cannot be reached or planned gives each person a report saying why; the others go on.
    pub async fn deprovision_everywhere(
        &self,
        conns: &[(String, Result<&Connection, ApiError>)],
        items: Vec<super::BulkItem>,
        params: Value,
    ) -> Result<Vec<PersonReport>, ApiError> {
        let (wishes, dry_run) = options(&params, self.mode.dry_run)?;
        let map = IdentityMap::from_rows(params.get("identity_map"))?;
        self.refuse_when_stopped()?;
        // Who each person is, on every reachable profile at once (what one service knows finds them on another).
        let reachable: Vec<&Connection> = conns.iter().filter_map(|(_, c)| c.as_ref().ok().copied()).collect();
        let mut findings: HashMap<String, Result<Vec<Finding>, ApiError>> =
            reachable.iter().map(|c| c.profile.clone()).zip(self.identify(&reachable, &items, &map).await?).collect();
        let plans = futures::future::join_all(conns.iter().map(|(name, conn)| {
            let (items, wishes) = (&items, &wishes);
            let found = findings.remove(name).unwrap_or(Ok(Vec::new()));
            async move {
                let conn = conn.as_ref().map_err(|e| (name.clone(), e.clone()))?;
                let found = found.map_err(|e| (name.clone(), e))?;
                self.plan(conn, items, found, wishes, dry_run).await.map_err(|e| (name.clone(), e))
            }
        }))
        .await;
        let ready: Vec<&Planned> = plans.iter().filter_map(|p| p.as_ref().ok()).collect();
        self.confirm_plans(&ready)?;
        let mut out = Vec::new();
        let mut runs = Vec::new();
        for plan in plans {
            match plan {
                Ok(planned) => runs.push(self.carry_out(planned)),
                Err((profile, e)) => out.push((profile, e)),
            }
        }
        let done = futures::future::join_all(runs).await;
        // Reports in profile order; a failed profile's people say why, in the words of its error.
        let mut reports = Vec::new();
        let mut done = done.into_iter();
        for (name, conn) in conns {
            if let Some((_, e)) = out.iter().find(|(p, _)| p == name) {
                let kind = conn.as_ref().map(|c| c.backend.kind()).unwrap_or("");
                for item in &items {
                    let mut r = PersonReport::blank(item.target.as_deref().unwrap_or_default(), name, kind)
                        .ended(e.kind.as_str(), Some(e.to_string()));
                    r.profile_error = Some(e.to_string());
                    reports.push(r);
                }
                self.bulk_failed.fetch_add(items.len(), Ordering::SeqCst);
            } else if let Some(rs) = done.next() {
                reports.extend(rs);
            }
        }
        self.flag_found_nowhere(&reports);
        Ok(reports)
    }

    /// A person matched on no service at all (a typo in the HR list, or accounts no identifier reached) is
    /// not offboarded, whatever the rest did: the run ends with exit code 3, and the evidence says so.
    fn flag_found_nowhere(&self, reports: &[PersonReport]) {
        let nowhere = found_nowhere(reports);
        self.bulk_failed.fetch_add(nowhere.len(), Ordering::SeqCst);
    }

    /// Steps 1–3 for one profile: who each name is (and whether they may be touched at all), what each holds
    /// (recorded before anything changes), what is left in doubt by an earlier run (settled), and the plan (a
    /// dry run records it and stops there).
    async fn plan<'c>(
        &self,
        conn: &'c Connection,
        items: &[super::BulkItem],
        findings: Vec<Finding>,
        wishes: &Wishes,
        dry_run: bool,
    ) -> Result<Planned<'c>, ApiError> {
        self.refuse_when_stopped()?;
        let guard = self.unless_stopped(conn.guard()).await?;
        let mut people = self.find_people(conn, items, findings, guard, &wishes.reason).await?;
        let names: Vec<String> = people.iter().filter_map(|p| p.name.clone()).collect();
        let mut snaps = self.unless_stopped(async { Ok(conn.backend.snapshots(&names).await) }).await?;
        snaps.reverse();
        let mut observed = Vec::new();
        for p in people.iter_mut().filter(|p| p.name.is_some()) {
            match snaps.pop() {
                Some(Ok(snap)) => {
                    p.plan = conn.backend.cascade(&snap, wishes);
                    for step in &mut p.plan.steps {
                        keyed_on(&mut step.action, &p.account);
                        if step.action.target.as_deref() == Some(snap.target.as_str()) {
                            step.action.target = Some(p.address.clone());
                        }
                    }
                    p.report.account = Some(snap.target.clone());
                    p.report.caveats = p.plan.caveats.clone();
                    observed.push(self.note(conn, &snap.target, Status::Observed, json!({"before": snap}), ""));
                    p.report.before = Some(snap);
                }
                Some(Err(e)) => {
                    p.name = None;
                    p.report.status = "failed".to_string();
                    p.report.problems.push(format!("could not read the account: {e}"));
                }
                None => p.name = None,
            }
        }
        self.recorder.record(observed).await?;
        self.settle_open_intents(conn, &people).await?;
        self.earlier_steps(conn, &mut people)?;
        if dry_run {
            let mut events = Vec::new();
            for p in people.iter_mut().filter(|p| p.name.is_some()) {
                for step in &p.plan.steps {
                    let a = &step.action;
                    let mut e =
                        self.recorder.event(conn, a.op, a.target.as_deref(), &a.params, Phase::Outcome, Status::DryRun);
                    e.mode = EventMode::DryRun.as_str().to_string();
                    events.push(e);
                    p.report.steps.push(step_report(step, "dry-run", None, None));
                }
                p.report.status = if p.plan.steps.is_empty() { "nothing to do" } else { "dry-run" }.to_string();
            }
            self.recorder.record(events).await?;
        }
        Ok(Planned { conn, people, dry_run })
    }

    /// Steps 4–5 for one profile: every person's steps (people concurrently, each person's steps in the
    /// service's order; what an earlier run of the job finished is not sent again), then reading back.
    async fn carry_out(&self, planned: Planned<'_>) -> Vec<PersonReport> {
        let Planned { conn, mut people, dry_run } = planned;
        if dry_run {
            return people.into_iter().map(|p| p.report).collect();
        }
        let guard = match self.unless_stopped(conn.guard()).await {
            Ok(guard) => guard,
            Err(e) => {
                return people.into_iter().map(|p| p.report.ended("failed", Some(e.to_string()))).collect();
            }
        };
        let acted: Vec<(usize, Vec<StepReport>)> = match conn.backend.batch_size(Op::Suspend).await {
            Some(size) if size > 1 => self.act_batched(conn, guard, &people, size).await,
            _ => {
                stream::iter(people.iter().enumerate().filter(|(_, p)| p.name.is_some()))
                    .map(|(i, p)| async move { (i, self.act(conn, guard, &p.plan.steps).await) })
                    .buffer_unordered(conn.concurrency.max(1))
                    .collect()
                    .await
            }
        };
        self.recorder.flush().await;
        for (i, reports) in acted {
            people[i].report.steps = reports;
        }

        let names: Vec<String> = people.iter().filter_map(|p| p.report.account.clone()).collect();
        let mut after = conn.backend.snapshots(&names).await;
        after.reverse();
        let mut verified = Vec::new();
        for p in people.iter_mut().filter(|p| p.report.account.is_some()) {
            let target = p.report.account.clone().unwrap_or_default();
            match after.pop() {
                Some(Ok(snap)) => {
                    p.report.problems.extend(remaining(&p.plan, &snap));
                    let ok = p.report.problems.is_empty();
                    p.report.verified = Some(ok);
                    let params = json!({"after": snap, "verified": ok, "problems": p.report.problems});
                    verified.push(self.note(conn, &target, Status::Observed, params, ""));
                    p.report.after = Some(snap);
                }
                Some(Err(e)) => {
                    p.report.verified = Some(false);
                    p.report.problems.push(format!("could not read the account back: {e}"));
                }
                None => {}
            }
            p.report.status = person_status(&p.report).to_string();
        }
        self.recorder.record_after(verified).await;
        // Like a failed bulk item, a person left half done makes the run end with exit code 3.
        let unfinished =
            people.iter().filter(|p| matches!(p.report.status.as_str(), "failed" | "partial" | "refused")).count();
        self.bulk_failed.fetch_add(unfinished, Ordering::SeqCst);
        people.into_iter().map(|p| p.report).collect()
    }

    /// Each person's account on this profile as `identify` found it, with the protected, the caller's own and
    /// duplicates decided. What could not be found or checked is said per person, in words an auditor can use.
    async fn find_people(
        &self,
        conn: &Connection,
        items: &[super::BulkItem],
        findings: Vec<Finding>,
        guard: &super::Guard,
        reason: &str,
    ) -> Result<Vec<Person>, ApiError> {
        let backend = conn.backend.as_ref();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut people = Vec::with_capacity(items.len());
        let mut refused = Vec::new();
        for (item, finding) in items.iter().zip(findings) {
            let given = item.target.clone().unwrap_or_default();
            let mut report = PersonReport::new(conn, &given, reason);
            let Some((account, name, linked)) = found(finding, &mut report, item, conn, &given) else {
                people.push(Person::unplanned(report));
                continue;
            };
            let name = match name.is_empty() {
                true => account.address.clone(),
                false => name,
            };
            // Decided on the account the service resolved, so an email or an id reaches no protected account.
            if let Some(why) = guard.refusal(backend, &account) {
                let mut e = self.note(conn, &name, Status::Refused, json!({"person": given}), &why.message);
                e.phase = Phase::Outcome.as_str().to_string();
                refused.push(e);
                people.push(Person::unplanned(
                    report.ended("protected", Some(format!("refused: {} ({})", why.message, why.hint))),
                ));
                continue;
            }
            if let Some(first) = seen.get(&account.id) {
                let why = format!("the same account as {first:?}, deprovisioned once");
                people.push(Person::unplanned(report.ended("skipped", Some(why))));
                continue;
            }
            seen.insert(account.id.clone(), given.clone());
            people.push(Person {
                report,
                name: Some(name),
                account: account.id,
                address: account.address,
                linked,
                plan: Cascade::default(),
            });
        }
        self.recorder.record(refused).await?;
        Ok(people)
    }

    /// A resumed job first settles what its earlier runs left in flight on this profile: a step planned again was
    /// not applied (this run sends it); one the service shows done was (its answer was lost). Each is settled
    /// against its intent as recorded (its target, and its params: what undo needs, like a role held before).
    async fn settle_open_intents(&self, conn: &Connection, people: &[Person]) -> Result<(), ApiError> {
        let planned: std::collections::HashSet<(&str, String)> = people
            .iter()
            .flat_map(|p| p.plan.steps.iter())
            .map(|s| (s.action.op.name(), step_key(&s.action)))
            .collect();
        let mut events = Vec::new();
        for ((profile, op_name, key), seq) in &self.earlier.open {
            let Some(op) = Op::from_name(op_name).filter(|_| *profile == conn.profile) else { continue };
            if self.recorder.is_settled(*seq) {
                continue;
            }
            let Some(intent) = self.recorder.earlier_event(*seq)? else { continue };
            let params: Value = serde_json::from_str(&intent.params).unwrap_or(Value::Null);
            let planned = planned.contains(&(op_name.as_str(), key.clone()));
            let state = self.unless_stopped(conn.backend.state(op, &intent.target, &params)).await.ok().flatten();
            let (status, why) = match (state, planned) {
                (Some(true), _) => (Status::Ok, super::SETTLED_APPLIED),
                (Some(false), true) => (Status::Cancelled, super::SETTLED_RESENT),
                (Some(false), false) => (Status::Cancelled, "settled at resume: it had not been applied"),
                // Unlistable (GHES impersonation tokens): sent again, which a deletion tolerates.
                (None, true) => (
                    Status::Cancelled,
                    "settled at resume: the service cannot show whether it was applied; this run sends it again",
                ),
                (None, false) => continue,
            };
            events.extend(self.recorder.settle_once(conn, (op, &intent.target, &params, *seq), status, why));
        }
        self.recorder.record(events).await.map(|_| ())
    }

    /// In a resumed job, what its earlier runs did to each person's account on this profile (settled at this
    /// resume included), so the page says what was done and when, not "nothing to do".
    fn earlier_steps(&self, conn: &Connection, people: &mut [Person]) -> Result<(), ApiError> {
        let Some(run) = self.run_info.resumed_from else { return Ok(()) };
        let mut history = self.recorder.job_outcomes(run, &conn.profile)?;
        // What this resume settled is an earlier run's step: it is listed under the run that sent it.
        let this_run = self.run_id();
        for e in history.iter_mut().filter(|e| Some(e.run_id) == this_run) {
            if let Some(intent) = e.intent_seq.map(|s| self.recorder.earlier_event(s)).transpose()?.flatten() {
                e.run_id = intent.run_id;
            }
        }
        history.retain(|e| Some(e.run_id) != this_run);
        for p in people.iter_mut().filter(|p| p.name.is_some()) {
            for e in history.iter().filter(|e| matches!(e.status.as_str(), "ok" | "noop")) {
                let params: Value = serde_json::from_str(&e.params).unwrap_or(Value::Null);
                let whose = ["account", "owner_id"].iter().find_map(|k| params.get(*k).and_then(Value::as_str));
                let Some(op) = Op::from_name(&e.op).filter(|_| whose == Some(p.account.as_str())) else { continue };
                p.report.earlier_steps.push(StepReport {
                    op: op.name(),
                    target: e.target.clone(),
                    says: params
                        .get("title")
                        .and_then(Value::as_str)
                        .map(|t| format!("{} {t:?}", op.name()))
                        .unwrap_or_else(|| op.name().to_string()),
                    reversible: op.inverse().is_some(),
                    status: e.status.clone(),
                    error: (!e.error.is_empty()).then(|| e.error.clone()),
                    http_status: e.http_status.map(|s| s as u16),
                    audit_seq: Some(e.intent_seq.unwrap_or(e.seq)),
                    at: Some(e.ts.clone()),
                    ms: e.duration_ms.map(|m| m as u64),
                    run: Some(e.run_id),
                });
            }
        }
        Ok(())
    }

    /// One question for every plan of the job (steps that cannot be undone ask, as every destructive
    /// operation does; so does a job larger than max_changes); the answer counts for each of their steps.
    fn confirm_plans(&self, plans: &[&Planned]) -> Result<(), ApiError> {
        let live: Vec<&&Planned> = plans.iter().filter(|p| !p.dry_run).collect();
        let all = || live.iter().flat_map(|p| p.people.iter()).flat_map(|p| p.plan.steps.iter());
        let steps = all().count();
        if steps == 0 {
            return Ok(());
        }
        let irreversible = all().filter(|s| !s.reversible).count();
        let asks = all().any(|s| s.action.op.is_destructive(&s.action.params)) || steps > self.mode.max_changes;
        if asks && !self.mode.assume_yes {
            let who: std::collections::BTreeSet<&str> = live
                .iter()
                .flat_map(|p| p.people.iter())
                .filter(|p| !p.plan.steps.is_empty())
                .map(|p| p.report.person.as_str())
                .collect();
            let profiles: Vec<&str> = live.iter().map(|p| p.conn.profile.as_str()).collect();
            let question = format!(
                "{}deprovision {} people on {}: {steps} steps, {irreversible} of them cannot be undone (deleting keys, \
                 tokens, sessions, memberships, deactivating). Go ahead?",
                plan_text(&live),
                who.len(),
                profiles.join(", ")
            );
            self.ask_job(&question, format!("deprovisioning has {irreversible} steps that cannot be undone"))?;
            self.budget.confirmed.store(true, Ordering::SeqCst);
        }
        if self.mode.assume_yes || asks {
            self.budget.changes.fetch_add(steps, Ordering::SeqCst);
            Ok(())
        } else {
            self.spend(steps)
        }
    }

    /// One person's steps, in order, each through intent → request → outcome; a failed step does not stop the
    /// rest (a key is worth deleting even when the suspension failed).
    async fn act(&self, conn: &Connection, guard: &super::Guard, steps: &[Step]) -> Vec<StepReport> {
        let mut reports = Vec::with_capacity(steps.len());
        for step in steps {
            if let Some(settled) = self.screen(conn, guard, step).await {
                reports.push(settled);
                continue;
            }
            let started = Instant::now();
            let (seq, result) = self.execute_recorded_at(conn, &observed(step)).await;
            reports.push(report_of(step, seq, &result, started));
        }
        reports
    }

    /// Where the service takes many suspensions in one request (Travis, a SCIM server with /Bulk): each
    /// person's steps before the suspension, then every suspension in requests of `size`, then the rest. The
    /// order within each person's plan is kept.
    async fn act_batched(
        &self,
        conn: &Connection,
        guard: &super::Guard,
        people: &[Person],
        size: usize,
    ) -> Vec<(usize, Vec<StepReport>)> {
        let at = |p: &Person| p.plan.steps.iter().position(|s| s.action.op == Op::Suspend);
        let live: Vec<(usize, &Person)> = people.iter().enumerate().filter(|(_, p)| p.name.is_some()).collect();
        let phase = |part: fn(&[Step], Option<usize>) -> &[Step]| {
            stream::iter(live.iter().copied())
                .map(move |(i, p)| async move { (i, self.act(conn, guard, part(&p.plan.steps, at(p))).await) })
                .buffer_unordered(conn.concurrency.max(1))
                .collect::<Vec<_>>()
        };
        let before = phase(|steps, at| &steps[..at.unwrap_or(steps.len())]).await;
        let mut reports: HashMap<usize, Vec<StepReport>> = before.into_iter().collect();
        let mut suspensions: Vec<(usize, &Step)> = Vec::new();
        for (i, p) in &live {
            let Some(step) = at(p).map(|k| &p.plan.steps[k]) else { continue };
            match self.screen(conn, guard, step).await {
                Some(settled) => reports.entry(*i).or_default().push(settled),
                None => suspensions.push((*i, step)),
            }
        }
        for chunk in suspensions.chunks(size) {
            let actions: Vec<Action> = chunk.iter().map(|(_, step)| observed(step)).collect();
            let started = Instant::now();
            let outcomes = self.execute_batch_recorded_at(conn, Op::Suspend, &actions, None).await;
            for ((i, step), (seq, result)) in chunk.iter().zip(outcomes) {
                reports.entry(*i).or_default().push(report_of(step, seq, &result, started));
            }
        }
        let after = phase(|steps, at| at.map(|k| &steps[k + 1..]).unwrap_or(&[])).await;
        for (i, rest) in after {
            reports.entry(i).or_default().extend(rest);
        }
        reports.into_iter().collect()
    }

    /// A step settled without a request, if it is: the run was stopped, an earlier run of the job did it, its
    /// target is no name (a server listed it), or the guard refuses the account it takes from.
    async fn screen(&self, conn: &Connection, guard: &super::Guard, step: &Step) -> Option<StepReport> {
        if self.interrupt.is_raised() || self.audit_failed() {
            let why = format!("{}: not sent", self.interrupt.reason());
            return Some(step_report(step, "cancelled", Some(why), None));
        }
        let key = (conn.profile.clone(), step.action.op.name().to_string(), step_key(&step.action));
        if let Some(run) = self.earlier.done.get(&key) {
            return Some(step_report(step, "noop", Some(format!("already done in run {run}")), None));
        }
        // What a server listed becomes a URL segment: the same check as any target a script gives.
        if let Some(why) = step.action.target.as_deref().and_then(|t| conn.backend.invalid_target(t.trim())) {
            return Some(step_report(step, "failed", Some(why), None));
        }
        // The same guard as every other path, on the account the step takes something from (the person's,
        // resolved when they were found).
        let owner = step.action.param_str("account").or(step.action.param_str("owner_id")).unwrap_or_default();
        let takes = super::guard::takes_from(step.action.op, &step.action.params);
        if let Some(why) = guard.refusal_of_id(owner).filter(|_| takes) {
            self.recorder.refusal(conn, &step.action, &why.message).await;
            return Some(step_report(step, "refused", Some(why.message.clone()), None));
        }
        None
    }

    /// Records where a run's evidence report went, with each file's SHA-256, so the log links to it.
    pub async fn evidence_written(&self, files: Value) -> Result<(), super::ActionError> {
        let e = Event {
            op: "evidence".into(),
            params: files.to_string(),
            mode: EventMode::of(self.mode.dry_run).as_str().into(),
            phase: Phase::Note.as_str().into(),
            status: Status::Ok.as_str().into(),
            ..Default::default()
        };
        self.recorder.record(vec![e]).await.map(|_| ()).map_err(|e| super::ActionError {
            kind: e.kind,
            message: e.message,
            hint: e.hint,
            status: e.status,
            profile: String::new(),
            op: "write_evidence".into(),
            target: None,
        })
    }

    /// A row of deprovisioning's own (a snapshot, a verification, a refusal) naming the account.
    fn note(&self, conn: &Connection, target: &str, status: Status, params: Value, error: &str) -> Event {
        let mut e = self.recorder.event(conn, Op::GetUser, Some(target), &params, Phase::Note, status);
        e.op = OP.to_string();
        e.error = redact(error);
        e.claim = String::new();
        e
    }
}

/// The plan as the person asked to confirm it reads it: one line per account, each step marked when it cannot be
/// undone; long plans are cut short (`--dry-run` and the evidence show all of it).
fn plan_text(plans: &[&&Planned]) -> String {
    const SHOWN: usize = 20;
    let lines: Vec<String> = plans
        .iter()
        .flat_map(|p| p.people.iter().map(move |person| (p.conn.profile.as_str(), person)))
        .filter(|(_, person)| !person.plan.steps.is_empty())
        .map(|(profile, person)| {
            let steps: Vec<String> = person
                .plan
                .steps
                .iter()
                .map(|s| if s.reversible { s.says.clone() } else { format!("{} [cannot be undone]", s.says) })
                .collect();
            // How an account was found, when it was not by the name given: a link the person confirming can check.
            let how = match (person.linked, person.report.found_by.as_deref()) {
                (true, Some(by)) => format!(" [found by {by}]"),
                _ => String::new(),
            };
            let account = person.report.account.as_deref().unwrap_or_default();
            format!("  {profile} {account}{how}: {}", steps.join(" · "))
        })
        .collect();
    let mut text: String = lines.iter().take(SHOWN).map(|l| format!("{l}\n")).collect();
    if lines.len() > SHOWN {
        text.push_str(&format!("  … and {} more accounts (--dry-run lists every step)\n", lines.len() - SHOWN));
    }
    text
}

/// The step's action as sent: the snapshot saw the state before it, so undo may rely on it.
fn observed(step: &Step) -> Action {
    let mut action = step.action.clone();
    if action.op.inverse().is_some() && action.params.is_object() {
        action.params["prior_observed"] = json!(true);
    }
    action
}

/// What a sent step came to.
fn report_of(step: &Step, seq: Option<i64>, result: &Result<Value, ApiError>, started: Instant) -> StepReport {
    let mut report = match result {
        Ok(v) if super::is_noop(v) => {
            step_report(step, "noop", v.get("note").and_then(Value::as_str).map(str::to_string), seq)
        }
        Ok(v) => {
            let mut r = step_report(step, "ok", None, seq);
            r.http_status = v.get("http_status").and_then(Value::as_u64).map(|s| s as u16);
            r
        }
        Err(e) => {
            let status = match e.kind {
                ErrorKind::Cancelled => "cancelled",
                ErrorKind::InDoubt => "in doubt",
                _ => "failed",
            };
            let mut r = step_report(step, status, Some(redact(&e.to_string())), seq);
            r.http_status = e.status;
            r
        }
    };
    report.ms = Some(started.elapsed().as_millis() as u64);
    report
}

fn step_report(step: &Step, status: &str, error: Option<String>, seq: Option<i64>) -> StepReport {
    let live = !matches!(status, "dry-run" | "cancelled" | "refused");
    StepReport {
        op: step.action.op.name(),
        target: step.action.target.clone().unwrap_or_default(),
        says: step.says.clone(),
        reversible: step.reversible,
        status: status.to_string(),
        error,
        http_status: None,
        audit_seq: seq,
        at: live.then(|| crate::dates::rfc3339(chrono::Utc::now())),
        ms: None,
        run: None,
    }
}

/// What reading back shows is still in place of what the plan took away.
fn remaining(plan: &Cascade, after: &Snapshot) -> Vec<String> {
    let mut problems = Vec::new();
    let planned = |op: Op| plan.steps.iter().any(|s| s.action.op == op);
    if planned(Op::Suspend) && after.flag("suspended") == Some(false) {
        problems.push("still not suspended".to_string());
    }
    if planned(Op::Demote) && after.flag("admin") == Some(true) {
        problems.push("still an administrator".to_string());
    }
    if planned(Op::Reset2fa) && after.two_factor == Some(true) {
        problems.push("two-factor authentication is still on".to_string());
    }
    if planned(Op::DeleteUser) && after.flag("deactivated") == Some(false) {
        problems.push("still not deactivated".to_string());
    }
    for h in &after.holdings {
        problems.push(format!("{} {:?} ({}) is still there", h.kind.words(), h.title, h.id));
    }
    problems
}

/// The people of a job (as given) found on no service: neither an account nor a refusal anywhere.
pub fn found_nowhere(reports: &[PersonReport]) -> Vec<&str> {
    let mut people: Vec<(&str, bool)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for r in reports {
        let here = matched(&r.status, r.account.is_some() || r.found_by.is_some());
        match at.get(r.person.as_str()) {
            Some(&i) => people[i].1 |= here,
            None => {
                at.insert(&r.person, people.len());
                people.push((&r.person, here));
            }
        }
    }
    people.into_iter().filter(|(_, m)| !m).map(|(p, _)| p).collect()
}

/// Whether a person's report on one service matched them there: an account was found (even one refused, or two
/// an identifier named), rather than none, none checkable, or no answer.
pub fn matched(status: &str, found: bool) -> bool {
    found || !matches!(status, NO_ACCOUNT | COULD_NOT_CHECK | "failed")
}

/// A person's status from their steps (an earlier run's of the job count) and the verification.
fn person_status(r: &PersonReport) -> &'static str {
    let failed = r.steps.iter().any(|s| matches!(s.status.as_str(), "failed" | "refused" | "cancelled" | "in doubt"));
    let done = r.steps.iter().chain(&r.earlier_steps).any(|s| s.status == "ok");
    match (failed, done, r.verified) {
        (false, false, Some(true)) => "nothing to do",
        (false, _, Some(true)) => "done",
        (true, true, _) | (false, _, _) => "partial",
        (true, false, _) => "failed",
    }
}

/// Marks a step with the account it reaches: a user step's `account` (what claims, done-sets and undo key on),
/// a key's, token's or session's `owner_id` (what the guard decides on).
fn keyed_on(action: &mut Action, account: &str) {
    if !action.params.is_object() {
        action.params = json!({});
    }
    let key = match action.op.reaches(&action.params) {
        crate::backends::Reaches::Credential => "owner_id",
        _ => "account",
    };
    action.params[key] = json!(account);
}

/// What a step is known by across a job's runs (`audit::query::item_key`).
fn step_key(action: &Action) -> String {
    crate::audit::query::item_key(action.target.as_deref().unwrap_or_default(), &action.params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::holdings::{Holding, HoldingKind};

    fn snap(user: Value, holdings: Vec<Holding>) -> Snapshot {
        let mut s = Snapshot::of_user(&user);
        s.holdings = holdings;
        s
    }

    fn plan(ops: &[Op]) -> Cascade {
        let mut c = Cascade::default();
        for op in ops {
            c.push(*op, "mona", json!({}), op.name().into());
        }
        c
    }

    #[test]
    fn reading_back_names_everything_still_in_place() {
        let key = Holding {
            kind: HoldingKind::SshKey,
            id: "7".into(),
            title: "laptop".into(),
            fingerprint: None,
            created: None,
            last_used: None,
        };
        let after = snap(json!({"login": "mona", "admin": true, "suspended": false}), vec![key]);
        let problems = remaining(&plan(&[Op::Demote, Op::Suspend]), &after);
        assert_eq!(
            problems,
            ["still not suspended", "still an administrator", "SSH key \"laptop\" (7) is still there"]
        );
        let clean = snap(json!({"login": "mona", "admin": false, "suspended": true}), vec![]);
        assert!(remaining(&plan(&[Op::Demote, Op::Suspend]), &clean).is_empty());
        // What the service does not say (a null) is not claimed to be a problem, nor fine: it is just not read.
        assert!(remaining(&plan(&[Op::Suspend]), &snap(json!({"login": "mona"}), vec![])).is_empty());
    }

    #[test]
    fn a_person_is_done_only_when_every_step_went_through_and_reading_back_agrees() {
        let step = |status: &str| StepReport {
            op: "suspend",
            target: "mona".into(),
            says: String::new(),
            reversible: true,
            status: status.into(),
            error: None,
            http_status: None,
            audit_seq: None,
            at: None,
            ms: None,
            run: None,
        };
        let report = |steps: Vec<StepReport>, verified: Option<bool>| {
            let mut r = PersonReport {
                person: "mona".into(),
                profile: "p".into(),
                kind: "github",
                account: None,
                found_by: None,
                checked: vec![],
                earlier_steps: vec![],
                acting_as: None,
                token_fingerprint: String::new(),
                reason: String::new(),
                status: String::new(),
                before: None,
                after: None,
                steps,
                verified,
                problems: vec![],
                caveats: vec![],
                profile_error: None,
            };
            r.status = person_status(&r).into();
            r.status
        };
        assert_eq!(report(vec![step("ok"), step("noop")], Some(true)), "done");
        assert_eq!(report(vec![], Some(true)), "nothing to do");
        assert_eq!(report(vec![step("ok")], Some(false)), "partial");
        assert_eq!(report(vec![step("ok"), step("failed")], Some(true)), "partial");
        assert_eq!(report(vec![step("failed")], Some(false)), "failed");
        assert_eq!(report(vec![step("refused")], None), "failed");
    }
}
