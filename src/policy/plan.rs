//! Who a policy reaches, at which stage, and why: pure, from the facts `cmd::policy` gathers (each profile's
//! accounts with their dates of use, who is left alone and why), so every rule is unit-tested without a server.

use super::{Spec, StageAction};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One account as its service's activity listing shows it.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    pub profile: String,
    /// What a change addresses it by (its login).
    pub login: String,
    pub admin: bool,
    /// `None`: its listing does not say; the planner asks for it to be read before deciding (`take_unsettled`).
    pub suspended: Option<bool>,
    pub last_active: Option<DateTime<Utc>>,
    pub created: Option<DateTime<Utc>>,
    /// Where a warning about it reaches the person.
    pub email: Option<String>,
    /// Warned by this policy since it was last active (a warning is given once per idle spell).
    pub warned: bool,
}

/// A change the plan makes, and the numbers behind it. Recorded as a row, `[profile, account, action, idle_days,
/// after_days, last_active, email]`: a plan of 190,000 steps is a record of ~17 MB, not ~45 (a plan recorded as
/// objects, with its `why` written out, still reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "StepRow", from = "StepRecord")]
pub struct Step {
    pub profile: String,
    pub account: String,
    pub action: StageAction,
    /// Days since last active (or since creation, for an account never active).
    pub idle_days: i64,
    /// The day the step's stage starts.
    pub after_days: u32,
    pub last_active: Option<DateTime<Utc>>,
    /// The account's e-mail, where the policy writes to the person or their manager about this stage.
    pub email: Option<String>,
}

impl Step {
    /// Why the step is in the plan, in words: how long the account is idle, and the stage's day.
    pub fn why(&self) -> String {
        let days = self.idle_days;
        let since = match self.last_active {
            Some(_) => format!("idle {days} days"),
            None => format!("never active, made {days} days ago"),
        };
        format!("{since}; the {} stage starts at {} days{}", self.action.name(), self.after_days, lasting(self.action))
    }
}

type StepRow = (String, String, StageAction, i64, u32, Option<String>, Option<String>);

impl From<Step> for StepRow {
    fn from(s: Step) -> StepRow {
        let last_active = s.last_active.map(crate::dates::rfc3339);
        (s.profile, s.account, s.action, s.idle_days, s.after_days, last_active, s.email)
    }
}

/// A recorded time (RFC 3339); one that does not read is left out, as it was never a time.
fn time(text: Option<String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&text?).ok().map(|t| t.with_timezone(&Utc))
}

/// A step as the log holds it: a row, or an object (plans recorded before steps were rows).
#[derive(Deserialize)]
#[serde(untagged)]
enum StepRecord {
    Row(StepRow),
    Object {
        profile: String,
        account: String,
        action: StageAction,
        idle_days: i64,
        last_active: Option<String>,
        #[serde(default)]
        why: String,
        #[serde(default)]
        email: Option<String>,
    },
}

impl From<StepRecord> for Step {
    fn from(r: StepRecord) -> Step {
        match r {
            StepRecord::Row((profile, account, action, idle_days, after_days, last_active, email)) => {
                Step { profile, account, action, idle_days, after_days, last_active: time(last_active), email }
            }
            StepRecord::Object { profile, account, action, idle_days, last_active, why, email } => {
                // Its stage's day, as its `why` said it ("… starts at 90 days").
                let after = why.split("starts at ").nth(1).and_then(|t| t.split(' ').next()?.parse().ok());
                let after_days = after.unwrap_or(0);
                Step { profile, account, action, idle_days, after_days, last_active: time(last_active), email }
            }
        }
    }
}

/// An account the policy reaches but leaves alone, and why (an exception, a grace, unknown activity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftAlone {
    pub profile: String,
    pub account: String,
    pub why: String,
}

/// Per profile: how many accounts the listing showed, and how many days idle they are (for the histogram).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileSummary {
    pub accounts: usize,
    pub never_active: usize,
    pub changes: usize,
    /// Idle days in buckets of 30 (`0-29`, `30-59`, …, `360+`) → accounts.
    pub idle_histogram: BTreeMap<String, usize>,
    /// Who the listing cannot show (Travis: members never active), when someone.
    pub misses: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub policy: String,
    pub policy_sha256: String,
    pub made_at: String,
    pub steps: Vec<Step>,
    pub left_alone: Vec<LeftAlone>,
    pub profiles: BTreeMap<String, ProfileSummary>,
    /// Why a guard stops this plan from being applied, when one does.
    pub halted: Option<String>,
    /// SHA-256 over the policy's text and the steps: what `apply --plan` names and checks.
    pub digest: String,
    /// Who made it (`user@host`): an approval must come from someone else.
    #[serde(default)]
    pub planned_by: String,
}

impl Plan {
    /// The digest's first 16 characters: how people name a plan (`apply --plan` takes 12 or more).
    pub fn short_digest(&self) -> &str {
        self.digest.get(..16).unwrap_or(&self.digest)
    }
}

/// The plan `spec` makes of `accounts` at `now`; `left_alone(candidate)` says why one is spared, if it is
/// (resolved exclusions, exceptions, restored accounts: the caller resolves names, this decides on them).
pub fn make(
    name: &str,
    policy_sha256: &str,
    spec: &Spec,
    now: DateTime<Utc>,
    accounts: &[Candidate],
    misses: &BTreeMap<String, String>,
    left_alone: &dyn Fn(&Candidate) -> Option<String>,
) -> Plan {
    let mut planner = Planner::new(name, policy_sha256, spec, now, misses);
    for c in accounts {
        planner.add(c, left_alone);
    }
    planner.finish()
}

/// A plan made an account at a time, as a listing arrives (a million accounts are never held): what the guards
/// need is counted on the way.
pub struct Planner<'a> {
    plan: Plan,
    spec: &'a Spec,
    now: DateTime<Utc>,
    /// Per profile: accounts a step changes, administrators (not suspended), and those of them a step changes.
    counts: BTreeMap<String, GuardCounts>,
    /// Accounts whose listing does not say whether they are suspended, where it matters (a stage reaches them,
    /// or they are administrators the guard counts): read each, then `add` it again.
    unsettled: Vec<Candidate>,
}

#[derive(Default)]
struct GuardCounts {
    changed: usize,
    admins: usize,
    admins_changed: usize,
}

impl<'a> Planner<'a> {
    pub fn new(
        name: &str,
        policy_sha256: &str,
        spec: &'a Spec,
        now: DateTime<Utc>,
        misses: &BTreeMap<String, String>,
    ) -> Self {
        let mut plan = Plan {
            policy: name.to_string(),
            policy_sha256: policy_sha256.to_string(),
            made_at: crate::dates::rfc3339(now),
            steps: Vec::new(),
            left_alone: Vec::new(),
            profiles: BTreeMap::new(),
            halted: None,
            digest: String::new(),
            planned_by: String::new(),
        };
        for p in &spec.profiles {
            let summary = plan.profiles.entry(p.clone()).or_default();
            summary.misses = misses.get(p).cloned();
        }
        Planner { plan, spec, now, counts: BTreeMap::new(), unsettled: Vec::new() }
    }

    /// One account of a listing: its steps, or why it is spared (`left_alone`), and what the guards count.
    pub fn add(&mut self, c: &Candidate, left_alone: &dyn Fn(&Candidate) -> Option<String>) {
        let in_scope = self.spec.scope.takes(c.admin, c.email.as_deref());
        if c.suspended.is_none() && (c.admin || in_scope && self.reaches(c)) {
            self.unsettled.push(c.clone());
            return;
        }
        let before = self.plan.steps.len();
        if in_scope {
            plan_account(&mut self.plan, self.spec, c, self.now, left_alone);
        }
        let changed = self.plan.steps[before..].iter().any(|s| s.action.op().is_some());
        let counts = match self.counts.get_mut(&c.profile) {
            Some(counts) => counts,
            None => self.counts.entry(c.profile.clone()).or_default(),
        };
        let admin = c.admin && c.suspended != Some(true);
        counts.changed += usize::from(changed);
        counts.admins += usize::from(admin);
        counts.admins_changed += usize::from(admin && changed);
    }

    /// The accounts `add` could not decide on until each is read (whether it is suspended), taken: settle
    /// each and `add` it again before `finish`.
    pub fn take_unsettled(&mut self) -> Vec<Candidate> {
        std::mem::take(&mut self.unsettled)
    }

    /// Whether a stage could reach `c` by its days idle (unknown idleness reaches none).
    fn reaches(&self, c: &Candidate) -> bool {
        let first = self.spec.stages.iter().map(|s| s.get_ref().after_days).min().unwrap_or(u32::MAX);
        idle_days(c, self.now).is_some_and(|d| d >= i64::from(first))
    }

    pub fn finish(mut self) -> Plan {
        let plan = &mut self.plan;
        for step in plan.steps.iter().filter(|s| s.action.op().is_some()) {
            if let Some(s) = plan.profiles.get_mut(&step.profile) {
                s.changes += 1;
            }
        }
        plan.halted = guard(self.spec, &self.counts, plan);
        plan.digest = digest(&plan.policy_sha256, &plan.steps);
        self.plan
    }
}

/// One account's part of the plan: counted in its profile's summary, then its due steps, or why it is spared.
fn plan_account(
    plan: &mut Plan,
    spec: &Spec,
    c: &Candidate,
    now: DateTime<Utc>,
    left_alone: &dyn Fn(&Candidate) -> Option<String>,
) {
    let summary = plan.profiles.entry(c.profile.clone()).or_default();
    summary.accounts += 1;
    summary.never_active += usize::from(c.last_active.is_none());
    let idle = idle_days(c, now);
    *summary.idle_histogram.entry(idle_bucket(idle)).or_default() += 1;
    let spare = |why: String| LeftAlone { profile: c.profile.clone(), account: c.login.clone(), why };
    if let Some(why) = unknown_idleness(c, idle, i64::from(spec.grace.new_account_days)) {
        if !due_actions(spec, c, i64::MAX).is_empty() {
            plan.left_alone.push(spare(why));
        }
        return;
    }
    let days = idle.unwrap_or_default();
    let due = due_actions(spec, c, days);
    if due.is_empty() {
        return;
    }
    if let Some(why) = left_alone(c) {
        plan.left_alone.push(spare(why));
        return;
    }
    for (action, after_days) in due {
        plan.steps.push(Step {
            profile: c.profile.clone(),
            account: c.login.clone(),
            action,
            idle_days: days,
            after_days,
            last_active: c.last_active,
            // Only where the policy writes to the person or their manager about this stage: a plan holds what its
            // policy uses.
            email: c.email.clone().filter(|_| spec.needs_address(action)),
        });
    }
}

/// Days since `c` was last active, or (never active) since it was made; `None` when neither is known.
fn idle_days(c: &Candidate, now: DateTime<Utc>) -> Option<i64> {
    c.last_active.or(c.created).map(|t| (now - t).num_days().max(0))
}

/// What a reader of the plan must know of a step that cannot be taken back.
fn lasting(action: StageAction) -> &'static str {
    match action {
        StageAction::Deactivate | StageAction::Delete => " (cannot be undone)",
        _ => "",
    }
}

/// The idle histogram's bucket for `idle` days: 30-day spans, then "360+"; "never" where it is unknown.
fn idle_bucket(idle: Option<i64>) -> String {
    match idle {
        Some(d) if d >= 360 => "360+".to_string(),
        Some(d) => format!("{:03}-{:03}", d / 30 * 30, d / 30 * 30 + 29),
        None => "never".to_string(),
    }
}

/// Why an account never active cannot be called inactive yet: its creation is unknown (unknown is never
/// inactive), or it is within the grace for new accounts. `None`: its idleness is known.
fn unknown_idleness(c: &Candidate, idle: Option<i64>, grace: i64) -> Option<String> {
    match (c.last_active, idle) {
        (None, None) => Some(
            "never active, and the service does not say when the account was made: unknown is never inactive"
                .to_string(),
        ),
        (None, Some(age)) if age < grace => {
            Some(format!("never active, made {age} days ago (grace for new accounts: {grace} days)"))
        }
        _ => None,
    }
}

/// The stage actions `c` has reached and still needs: each stage whose day has come, unless the account is
/// already that way (suspended; not an admin). A warning is given once per idle spell, and not when a change
/// is due anyway (the change's own notice tells).
fn due_actions(spec: &Spec, c: &Candidate, idle: i64) -> Vec<(StageAction, u32)> {
    let reached: Vec<(StageAction, u32)> = spec
        .stages
        .iter()
        .map(|s| s.get_ref())
        .filter(|s| idle >= i64::from(s.after_days))
        .filter(|s| match s.action {
            StageAction::Suspend => c.suspended != Some(true),
            StageAction::Demote => c.admin,
            StageAction::Warn => c.suspended != Some(true) && !c.warned,
            // Still listed, so not yet deactivated or deleted (a deactivated Synapse account is not listed).
            StageAction::Deactivate | StageAction::Delete => true,
        })
        .map(|s| (s.action, s.after_days))
        .collect();
    match reached.iter().any(|(a, _)| a.op().is_some()) {
        true => reached.into_iter().filter(|(a, _)| a.op().is_some()).collect(),
        false => reached,
    }
}

/// Why the guards halt `plan`, if they do: too large a share of a profile, too many changes, too few admins left.
fn guard(spec: &Spec, counts: &BTreeMap<String, GuardCounts>, plan: &Plan) -> Option<String> {
    let g = &spec.guard;
    let mut reasons = Vec::new();
    for (profile, s) in &plan.profiles {
        let Some(c) = counts.get(profile) else { continue };
        if s.accounts > 0 && c.changed as f64 > g.max_share * s.accounts as f64 {
            reasons.push(format!(
                "{profile}: {} of {} accounts ({:.0} %) would change, more than max_share {:.0} %",
                c.changed,
                s.accounts,
                100.0 * c.changed as f64 / s.accounts as f64,
                100.0 * g.max_share
            ));
        }
        let kept = c.admins - c.admins_changed;
        if kept < g.min_admins && kept < c.admins {
            reasons.push(format!(
                "{profile}: {kept} administrators would be left, fewer than min_admins {}",
                g.min_admins
            ));
        }
    }
    let changes = plan.steps.iter().filter(|s| s.action.op().is_some()).count();
    if let Some(max) = g.max_count.filter(|m| changes > *m) {
        reasons.push(format!("{changes} changes, more than max_count {max}"));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// SHA-256 over the policy's text digest and every step (profile, account, action), in order.
pub fn digest(policy_sha256: &str, steps: &[Step]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(policy_sha256.as_bytes());
    for s in steps {
        h.update(format!("\n{}\t{}\t{}", s.profile, s.account, s.action.name()).as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Grace, Guard, Scope, Stage};

    fn spec(stages: &[(StageAction, u32)]) -> Spec {
        let text = stages
            .iter()
            .map(|(a, d)| format!("[[stage]]\naction = \"{}\"\nafter_days = {d}\n", a.name()))
            .collect::<String>();
        let parsed: Spec = toml::from_str(&format!("profiles = [\"p\"]\n{text}")).unwrap();
        Spec {
            scope: Scope::default(),
            grace: Grace::default(),
            guard: Guard { max_share: 1.0, ..Guard::default() },
            ..parsed
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn user(login: &str, idle: Option<i64>) -> Candidate {
        Candidate {
            profile: "p".into(),
            login: login.into(),
            suspended: Some(false),
            last_active: idle.map(|d| now() - chrono::Duration::days(d)),
            ..Default::default()
        }
    }

    fn plan_of(spec: &Spec, accounts: &[Candidate]) -> Plan {
        make("t", "sha", spec, now(), accounts, &BTreeMap::new(), &|_| None)
    }

    #[test]
    fn each_account_gets_the_stages_it_has_reached_and_still_needs() {
        let s = spec(&[(StageAction::Demote, 60), (StageAction::Suspend, 90)]);
        let admin = Candidate { admin: true, ..user("boss", Some(95)) };
        let gone = Candidate { suspended: Some(true), ..user("gone", Some(400)) };
        let p = plan_of(&s, &[user("fresh", Some(10)), user("idle", Some(89)), user("dormant", Some(90)), admin, gone]);
        let steps: Vec<(&str, &str)> = p.steps.iter().map(|s| (s.account.as_str(), s.action.name())).collect();
        assert_eq!(steps, [("dormant", "suspend"), ("boss", "demote"), ("boss", "suspend")]);
        assert!(p.steps[0].why().contains("idle 90 days; the suspend stage starts at 90 days"), "{:?}", p.steps[0]);
        assert_eq!(p.profiles["p"].accounts, 5);
        assert_eq!(p.profiles["p"].idle_histogram["090-119"], 2);
    }

    #[test]
    fn never_active_accounts_count_from_creation_and_unknown_is_never_inactive() {
        let s = spec(&[(StageAction::Suspend, 90)]);
        let made = |days: i64| Some(now() - chrono::Duration::days(days));
        let old = Candidate { created: made(200), ..user("old", None) };
        let new = Candidate { created: made(3), ..user("new", None) };
        let p = plan_of(&s, &[old, new, user("unknown", None)]);
        assert_eq!(p.steps.iter().map(|s| s.account.as_str()).collect::<Vec<_>>(), ["old"]);
        assert!(p.steps[0].why().starts_with("never active, made 200 days ago"));
        let spared: Vec<&str> = p.left_alone.iter().map(|l| l.why.as_str()).collect();
        assert!(
            spared[0].contains("grace for new accounts") && spared[1].contains("unknown is never inactive"),
            "{spared:?}"
        );
    }

    #[test]
    fn what_the_caller_spares_is_listed_with_its_reason_and_not_changed() {
        let s = spec(&[(StageAction::Suspend, 90)]);
        let p =
            make("t", "sha", &s, now(), &[user("alice", Some(120)), user("bob", Some(120))], &BTreeMap::new(), &|c| {
                (c.login == "alice").then(|| "exception until 2027-01-31: sabbatical".to_string())
            });
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.left_alone[0].account, "alice");
    }

    #[test]
    fn guards_halt_a_plan_past_its_share_count_or_admins() {
        let mut s = spec(&[(StageAction::Suspend, 90)]);
        s.guard.max_share = 0.25;
        let accounts: Vec<Candidate> =
            (0..10).map(|i| user(&format!("u{i}"), Some(if i < 4 { 100 } else { 5 }))).collect();
        let p = plan_of(&s, &accounts);
        assert!(p
            .halted
            .as_deref()
            .unwrap()
            .contains("p: 4 of 10 accounts (40 %) would change, more than max_share 25 %"));
        s.guard.max_share = 0.5;
        assert_eq!(plan_of(&s, &accounts).halted, None);
        s.guard.max_count = Some(3);
        assert!(plan_of(&s, &accounts).halted.unwrap().contains("4 changes, more than max_count 3"));
        s.guard.max_count = None;
        let admins =
            [Candidate { admin: true, ..user("a1", Some(100)) }, Candidate { admin: true, ..user("a2", Some(5)) }];
        s.guard.min_admins = 2;
        s.guard.max_share = 1.0;
        assert!(plan_of(&s, &admins)
            .halted
            .unwrap()
            .contains("1 administrators would be left, fewer than min_admins 2"));
    }

    #[test]
    fn a_scope_of_admins_only_or_none_is_what_the_plan_counts_and_changes() {
        let mut s = spec(&[(StageAction::Suspend, 90)]);
        let accounts =
            [Candidate { admin: true, ..user("boss", Some(100)) }, user("dev", Some(100)), user("new", Some(1))];
        s.scope.admins = crate::policy::Admins::Only;
        let p = plan_of(&s, &accounts);
        assert_eq!((p.steps.len(), p.steps[0].account.as_str(), p.profiles["p"].accounts), (1, "boss", 1));
        s.scope.admins = crate::policy::Admins::Exclude;
        let p = plan_of(&s, &accounts);
        assert_eq!((p.steps.len(), p.steps[0].account.as_str(), p.profiles["p"].accounts), (1, "dev", 2));
    }

    #[test]
    fn later_stages_deactivate_or_delete_after_the_suspension_and_say_they_last() {
        let s = spec(&[(StageAction::Suspend, 90), (StageAction::Delete, 180)]);
        let accounts = [
            Candidate { suspended: Some(true), ..user("old", Some(200)) },
            user("older", Some(300)),
            user("idle", Some(100)),
        ];
        let p = plan_of(&s, &accounts);
        let steps: Vec<(&str, StageAction)> = p.steps.iter().map(|st| (st.account.as_str(), st.action)).collect();
        assert_eq!(
            steps,
            [
                ("old", StageAction::Delete),
                ("older", StageAction::Suspend),
                ("older", StageAction::Delete),
                ("idle", StageAction::Suspend)
            ]
        );
        assert!(
            p.steps[0].why().ends_with("the delete stage starts at 180 days (cannot be undone)"),
            "{:?}",
            p.steps[0]
        );
        assert!(!p.steps[3].why().contains("undone"));
    }

    #[test]
    fn a_stage_fits_only_a_service_that_does_what_it_says() {
        use crate::backends::Op;
        let all = [Op::Suspend, Op::Demote, Op::DeleteUser];
        assert!(StageAction::Deactivate.fits_service("synapse", &all, true).is_ok());
        assert!(StageAction::Deactivate.fits_service("github", &all, false).unwrap_err().contains("no deactivation"));
        assert!(StageAction::Delete.fits_service("github", &all, false).is_ok());
        let deletes = StageAction::Delete.fits_service("synapse", &all, true);
        assert!(deletes.unwrap_err().contains("write a deactivate stage"));
        let travis = StageAction::Delete.fits_service("travis", &[Op::Suspend], false);
        assert!(travis.unwrap_err().contains("cannot delete"));
        assert!(StageAction::Suspend.fits_service("travis", &[Op::Suspend], false).is_ok());
        assert!(StageAction::Warn.fits_service("travis", &[], false).is_ok());
    }

    #[test]
    fn a_scope_of_domains_takes_only_accounts_known_to_be_at_them() {
        let mut s = spec(&[(StageAction::Suspend, 90)]);
        let at =
            |login: &str, email: Option<&str>| Candidate { email: email.map(str::to_string), ..user(login, Some(100)) };
        let accounts = [
            at("ann", Some("ann@Contractors.Example.com")),
            at("bob", Some("bob@example.com")),
            at("cy", None),
            at("dee", Some("dee@contractors.example.com.evil.test")),
            at("eve", Some("contractors.example.com")),
        ];
        s.scope.domains = vec!["@contractors.example.com".into()];
        let p = plan_of(&s, &accounts);
        assert_eq!(p.steps.iter().map(|st| st.account.as_str()).collect::<Vec<_>>(), ["ann"]);
        assert_eq!(p.profiles["p"].accounts, 1, "the share is of the accounts in scope");
        s.scope.domains.clear();
        assert_eq!(plan_of(&s, &accounts).steps.len(), 5);
    }

    #[test]
    fn a_step_is_recorded_as_a_row_and_a_step_recorded_as_an_object_still_reads() {
        let mut s = spec(&[(StageAction::Suspend, 90)]);
        let x = [Candidate { email: Some("x@example.com".into()), ..user("x", Some(100)) }];
        assert_eq!(plan_of(&s, &x).steps[0].email, None, "no notify writes to the person: no address is kept");
        let person: Spec = toml::from_str(
            "profiles = [\"p\"]\n[[notify]]\nkind = \"email\"\nperson = true\non = [\"suspend\"]\nsmtp = \"smtp+plain://127.0.0.1:25\"\n",
        )
        .unwrap();
        s.notify = person.notify;
        let p = plan_of(&s, &x);
        let text = serde_json::to_string(&p.steps).unwrap();
        assert_eq!(text, r#"[["p","x","suspend",100,90,"2026-08-28T12:00:00Z","x@example.com"]]"#);
        assert_eq!(serde_json::from_str::<Vec<Step>>(&text).unwrap(), p.steps);
        let old = r#"[{"profile":"p","account":"x","action":"suspend","idle_days":100,"last_active":"2026-08-28T12:00:00Z","why":"idle 100 days; the suspend stage starts at 90 days","email":"x@example.com"}]"#;
        let read: Vec<Step> = serde_json::from_str(old).unwrap();
        assert_eq!(read, p.steps);
        assert_eq!(read[0].why(), "idle 100 days; the suspend stage starts at 90 days");
    }

    #[test]
    fn an_account_whose_listing_does_not_say_it_is_suspended_is_read_before_it_is_decided_on() {
        let s = spec(&[(StageAction::Suspend, 90)]);
        let unknown = |login: &str, idle: i64| Candidate { suspended: None, ..user(login, Some(idle)) };
        let mut planner = Planner::new("t", "sha", &s, now(), &BTreeMap::new());
        let boss = Candidate { admin: true, ..unknown("boss", 5) };
        for c in [unknown("idle", 100), unknown("gone", 120), unknown("fresh", 5), boss] {
            planner.add(&c, &|_| None);
        }
        let unsettled = planner.take_unsettled();
        let names: Vec<&str> = unsettled.iter().map(|c| c.login.as_str()).collect();
        assert_eq!(names, ["idle", "gone", "boss"], "reached by a stage, or an administrator the guard counts");
        for mut c in unsettled {
            c.suspended = Some(c.login == "gone");
            planner.add(&c, &|_| None);
        }
        let p = planner.finish();
        assert_eq!(p.steps.iter().map(|s| s.account.as_str()).collect::<Vec<_>>(), ["idle"]);
        assert_eq!(p.profiles["p"].accounts, 4, "each account counted once");
    }

    #[test]
    fn the_digest_names_the_policy_text_and_every_step() {
        let s = spec(&[(StageAction::Suspend, 90)]);
        let a = plan_of(&s, &[user("x", Some(100))]);
        let b = plan_of(&s, &[user("y", Some(100))]);
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest, digest("sha", &a.steps));
        assert_ne!(a.digest, digest("other policy text", &a.steps));
        let _ = Stage { action: StageAction::Suspend, after_days: 90 };
    }
}
