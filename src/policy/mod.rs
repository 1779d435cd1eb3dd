//! Policies: lifecycle rules kept in a TOML file ("suspend at 90 days idle, never the break-glass accounts, halt
//! past a quarter of the users") that steward plans, records and applies through the one pipeline, by hand or
//! unattended (`steward policy run --due`). This module reads and checks the file; `plan` decides who is at
//! which stage; `cmd::policy` gathers the facts and acts.

pub mod plan;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One policy file, checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes: a plan names the policy text it was made from.
    pub sha256: String,
    pub spec: Spec,
}

/// The file's contents (every key documented in the README's policy section).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The profiles it covers; each must have activity data (GHES, Synapse, Travis).
    pub profiles: Vec<String>,
    /// May `steward policy run --due` act on it with no one to ask (its guards are its limits)?
    #[serde(default)]
    pub unattended: bool,
    /// May a stage delete accounts? Never by default: a deleted account cannot be restored.
    #[serde(default)]
    pub allow_delete: bool,
    /// Must a second admin approve each plan (`steward policy approve`) before it is applied?
    #[serde(default)]
    pub require_approval: bool,
    /// How often `run --due` runs it: `1d`, `12h` (default `1d`).
    #[serde(default = "one_day")]
    pub every: String,
    #[serde(default, rename = "stage")]
    pub stages: Vec<Spanned<Stage>>,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub grace: Grace,
    #[serde(default, rename = "exception")]
    pub exceptions: Vec<Spanned<Exception>>,
    #[serde(default)]
    pub guard: Guard,
    #[serde(default, rename = "notify")]
    pub notify: Vec<Spanned<Notify>>,
    /// Where each person's manager is written (an HR export), for notifies with `manager = true`.
    pub directory: Option<Spanned<Directory>>,
}

/// A CSV of people (an HR export): the column with each person's e-mail (matched to an account's e-mail, any
/// case) and the column with their manager's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// The file, relative to the policy file.
    pub file: PathBuf,
    #[serde(default = "email_column")]
    pub email: String,
    #[serde(default = "manager_column")]
    pub manager: String,
}

fn email_column() -> String {
    "email".into()
}

fn manager_column() -> String {
    "manager_email".into()
}

fn one_day() -> String {
    "1d".into()
}

/// A step accounts reach after so many days without activity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub action: StageAction,
    pub after_days: u32,
}

/// In the order they are applied: a warning first; an administrator is demoted before being suspended (GHES
/// will not suspend a site admin); the account is suspended before it is deactivated or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageAction {
    /// Tell the person (and the channels): no change to the account.
    Warn,
    Demote,
    Suspend,
    /// Deactivate the account where the service deactivates (Matrix Synapse: locked out for good, every token
    /// revoked; the account stays).
    Deactivate,
    /// Delete the account where the service deletes: never by default (`allow_delete = true`), never undone.
    Delete,
}

impl StageAction {
    /// The change it makes (`None`: a warning changes nothing). Deactivating and deleting are both the
    /// service's `delete_user`: which one a service does is checked against its kind (`fits`).
    pub fn op(self) -> Option<crate::backends::Op> {
        match self {
            StageAction::Warn => None,
            StageAction::Demote => Some(crate::backends::Op::Demote),
            StageAction::Suspend => Some(crate::backends::Op::Suspend),
            StageAction::Deactivate | StageAction::Delete => Some(crate::backends::Op::DeleteUser),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StageAction::Warn => "warn",
            StageAction::Demote => "demote",
            StageAction::Suspend => "suspend",
            StageAction::Deactivate => "deactivate",
            StageAction::Delete => "delete",
        }
    }

    /// Whether `backend` does what this stage says, and if not, why (said before anything is read: a
    /// deactivation is not a deletion, nor the other way round).
    pub fn fits(self, backend: &dyn crate::backends::Backend) -> Result<(), String> {
        self.fits_service(backend.kind(), backend.supported(), backend.deletion_deactivates())
    }

    /// `fits`, for a service of `kind` that can do `supported` and whose deletion does or does not deactivate.
    fn fits_service(self, kind: &str, supported: &[crate::backends::Op], deactivates: bool) -> Result<(), String> {
        let Some(op) = self.op() else { return Ok(()) };
        match self {
            StageAction::Deactivate if !deactivates => Err(format!(
                "{kind} has no deactivation (its accounts are suspended, or deleted by a delete stage with \
                 allow_delete = true)"
            )),
            StageAction::Delete if deactivates => {
                Err(format!("{kind} deactivates accounts rather than deleting them: write a deactivate stage"))
            }
            _ if !supported.contains(&op) => Err(format!("{kind} cannot {} accounts", self.name())),
            _ => Ok(()),
        }
    }
}

/// Where a policy tells what it did: a webhook, e-mail, or a Matrix room.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub kind: NotifyKind,
    /// The stages it tells about (`warn`, `demote`, `suspend`, `deactivate`, `delete`; default: every one).
    #[serde(default)]
    pub on: Vec<StageAction>,
    /// webhook: the environment variable holding its URL (a webhook URL is a secret).
    pub url_env: Option<String>,
    /// email: `smtp://host:587` (STARTTLS), `smtps://host:465`, or `smtp+plain://127.0.0.1:25` (a local relay).
    pub smtp: Option<String>,
    pub from: Option<String>,
    /// email: addresses that get every message (an ops list).
    #[serde(default)]
    pub to: Vec<String>,
    /// email: also write to each account's own address (a warning reaches the person it is about).
    #[serde(default)]
    pub person: bool,
    /// email: also write to each account's manager (the policy's `[directory]`), one message listing their people.
    #[serde(default)]
    pub manager: bool,
    pub user: Option<String>,
    pub password_env: Option<String>,
    /// matrix: the Synapse profile whose token posts, and the room (`!id:server`) it posts in.
    pub profile: Option<String>,
    pub room: Option<String>,
    /// The text about one account: `{account}`, `{profile}`, `{action}`, `{why}`, `{policy}` are filled in.
    pub template: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    Webhook,
    Email,
    Matrix,
}

impl Spec {
    /// Whether an e-mail notify writes to the person or their manager about `action` (so the plan keeps each
    /// account's address: the person's, and what the directory finds their manager by).
    pub fn needs_address(&self, action: StageAction) -> bool {
        let notifies = self.notify.iter().map(|n| n.get_ref());
        notifies.filter(|n| n.kind == NotifyKind::Email && n.tells(action)).any(|n| n.person || n.manager)
    }

    /// The directory's file: as written if absolute, else beside the policy file at `policy_path`.
    pub fn directory_file(&self, policy_path: &Path) -> Option<PathBuf> {
        let file = &self.directory.as_ref()?.get_ref().file;
        Some(match file.is_absolute() {
            true => file.clone(),
            false => policy_path.parent().unwrap_or(Path::new(".")).join(file),
        })
    }
}

impl Notify {
    /// Does it tell about `action`?
    pub fn tells(&self, action: StageAction) -> bool {
        self.on.is_empty() || self.on.contains(&action)
    }

    /// How the audit log names it: `webhook OPS_HOOK`, `email ops@x, person`, `matrix !room:server`.
    pub fn label(&self) -> String {
        match self.kind {
            NotifyKind::Webhook => format!("webhook {}", self.url_env.as_deref().unwrap_or("?")),
            NotifyKind::Email => {
                let mut to = self.to.clone();
                if self.person {
                    to.push("the person".into());
                }
                if self.manager {
                    to.push("their managers".into());
                }
                format!("email {}", to.join(", "))
            }
            NotifyKind::Matrix => format!("matrix {}", self.room.as_deref().unwrap_or("?")),
        }
    }
}

/// Who the policy looks at.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Accounts never touched (break-glass, service accounts): names, each resolved to its account.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Administrators: `include` them (the default), `exclude` them, or look at `only` them.
    #[serde(default)]
    pub admins: Admins,
    /// Only accounts whose e-mail is at one of these domains (`contractors.example.com`; any case). An account
    /// whose service does not say its e-mail is then out of scope: unknown is never in scope.
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admins {
    #[default]
    Include,
    Exclude,
    Only,
}

impl Scope {
    /// Whether an account, an administrator or not, with this e-mail if its service says one, is the policy's
    /// to look at.
    pub fn takes(&self, admin: bool, email: Option<&str>) -> bool {
        let role = match self.admins {
            Admins::Include => true,
            Admins::Exclude => !admin,
            Admins::Only => admin,
        };
        role && (self.domains.is_empty() || email.and_then(domain_of).is_some_and(|d| self.at_domain(&d)))
    }

    fn at_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.trim().trim_start_matches('@').eq_ignore_ascii_case(domain))
    }
}

/// The domain of an e-mail (what follows its last `@`), if it has one.
fn domain_of(email: &str) -> Option<String> {
    let (local, domain) = email.trim().rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Time an account is left alone for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grace {
    /// An account a person unsuspended or promoted (steward's audit log) within this many days is left alone.
    #[serde(default = "seven")]
    pub restored_days: u32,
    /// An account never active is counted idle from its creation, once it is this many days old; where the
    /// service does not say when it was made, it is left alone (unknown is never inactive).
    #[serde(default = "thirty")]
    pub new_account_days: u32,
}

fn seven() -> u32 {
    7
}

fn thirty() -> u32 {
    30
}

impl Default for Grace {
    fn default() -> Self {
        Grace { restored_days: seven(), new_account_days: thirty() }
    }
}

/// One account left alone until a date, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub account: String,
    /// The profile it is on (default: every profile of the policy).
    pub profile: Option<String>,
    /// `YYYY-MM-DD`: the exception ends at the start of that day (UTC).
    pub until: String,
    pub reason: String,
}

/// Limits that halt a run rather than let it act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// The largest share of a profile's accounts in scope one run may change (default 0.25).
    #[serde(default = "quarter")]
    pub max_share: f64,
    /// The most changes one run may make across the policy (default: no limit beyond the share).
    pub max_count: Option<usize>,
    /// Administrators (not suspended) each profile keeps after the run (default 1).
    #[serde(default = "one")]
    pub min_admins: usize,
}

fn quarter() -> f64 {
    0.25
}

fn one() -> usize {
    1
}

impl Default for Guard {
    fn default() -> Self {
        Guard { max_share: quarter(), max_count: None, min_admins: one() }
    }
}

/// A policy file that cannot be used: the file, the line where known, what is wrong and what to write.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Policy {
    /// Reads and checks the policy at `path`: syntax, unknown keys, and whether its rules make sense.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let fail = |line: Option<usize>, message: String| PolicyError { path: path.to_path_buf(), line, message };
        let bytes = std::fs::read(path).map_err(|e| fail(None, format!("cannot read it: {e}")))?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| fail(None, "it is not UTF-8 text".into()))?;
        let spec: Spec = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start));
            fail(line, e.message().to_string())
        })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string();
        check(&spec, &text).map_err(|(at, message)| fail(at.map(|a| line_of(&text, a)), message))?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        Ok(Policy { name, path: path.to_path_buf(), sha256, spec })
    }
}

/// The 1-based line of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// What the rules must be, beyond their types: (byte offset where known, what is wrong).
fn check(spec: &Spec, text: &str) -> Result<(), Problem> {
    let key = |k: &str| text.find(&format!("\n{k}")).map(|i| i + 1).or_else(|| text.starts_with(k).then_some(0));
    if spec.profiles.is_empty() {
        return Err((key("profiles"), "profiles is empty: name the profiles the policy covers".into()));
    }
    let count = spec.every.get(..spec.every.len().saturating_sub(1)).and_then(|n| n.trim().parse::<u32>().ok());
    if !spec.every.ends_with(['d', 'h']) || count.is_none_or(|n| n == 0) {
        return Err((
            key("every"),
            format!("every = {:?}: write a number of days or hours (\"1d\", \"12h\")", spec.every),
        ));
    }
    if spec.stages.is_empty() {
        return Err((
            None,
            "the policy has no [[stage]]: add one, e.g. [[stage]] action = \"suspend\" after_days = 90".into(),
        ));
    }
    check_stages(spec)?;
    if !(spec.guard.max_share > 0.0 && spec.guard.max_share <= 1.0) {
        return Err((
            key("max_share"),
            format!("max_share = {}: a share between 0 and 1 (0.25 is a quarter)", spec.guard.max_share),
        ));
    }
    check_notify(spec)?;
    if let Some(bad) = spec.scope.domains.iter().find(|d| {
        let d = d.trim().trim_start_matches('@');
        d.is_empty() || d.contains(['@', ' ', '*', '/']) || !d.contains('.')
    }) {
        return Err((
            key("domains"),
            format!("domains: {bad:?} is not a domain: write the part after the @, e.g. \"contractors.example.com\""),
        ));
    }
    let warns = spec.stages.iter().any(|s| s.get_ref().action == StageAction::Warn);
    if warns && !spec.notify.iter().any(|n| n.get_ref().tells(StageAction::Warn)) {
        let at = spec.stages.iter().find(|s| s.get_ref().action == StageAction::Warn).map(|s| s.span().start);
        return Err((at, "a warn stage tells people, so the policy needs a [[notify]] that tells about warn".into()));
    }
    check_exceptions(spec)?;
    Ok(())
}

/// A rule's problem: the byte offset where it is written, if known, and what is wrong.
type Problem = (Option<usize>, String);

/// Each stage acts on accounts idle 30 days or more, later than the stage before it.
fn check_stages(spec: &Spec) -> Result<(), Problem> {
    let mut last: Option<(u32, StageAction)> = None;
    for stage in &spec.stages {
        let (at, s) = (stage.span().start, stage.get_ref());
        if s.after_days < 30 {
            return Err((
                Some(at),
                format!(
                    "after_days = {}: a stage acts on accounts idle 30 days or more (a shorter time catches holidays)",
                    s.after_days
                ),
            ));
        }
        if let Some((days, action)) = last {
            if s.after_days <= days {
                return Err((
                    Some(at),
                    format!(
                        "this stage's after_days ({}) must come after the one before it ({days}, {})",
                        s.after_days,
                        action.name()
                    ),
                ));
            }
        }
        if s.action == StageAction::Delete && !spec.allow_delete {
            return Err((
                Some(at),
                "a delete stage deletes accounts for good: write allow_delete = true at the top of the policy \
                 if that is meant (or suspend, or deactivate where the service deactivates)"
                    .into(),
            ));
        }
        last = Some((s.after_days, s.action));
    }
    Ok(())
}

/// Each notification has what its kind needs to be delivered.
fn check_notify(spec: &Spec) -> Result<(), Problem> {
    for n in &spec.notify {
        let (at, n) = (n.span().start, n.get_ref());
        let missing = |what: &str| Err((Some(at), format!("a {:?} notify needs {what}", n.kind).to_lowercase()));
        match n.kind {
            NotifyKind::Webhook if n.url_env.is_none() => return missing("url_env (the variable holding its URL)"),
            NotifyKind::Email if n.smtp.is_none() || n.from.is_none() => return missing("smtp and from"),
            NotifyKind::Email if n.to.is_empty() && !n.person && !n.manager => {
                return missing("to = [addresses], person = true or manager = true")
            }
            NotifyKind::Email if n.manager && spec.directory.is_none() => {
                return Err((
                    Some(at),
                    "manager = true needs a [directory] saying where managers are written: file = \"people.csv\" \
                     (with columns email and manager_email)"
                        .into(),
                ))
            }
            _ if n.manager && n.kind != NotifyKind::Email => {
                return Err((Some(at), "manager = true is for an email notify (a manager is told by e-mail)".into()))
            }
            NotifyKind::Email if url::Url::parse(n.smtp.as_deref().unwrap_or_default()).is_err() => {
                return Err((
                    Some(at),
                    format!("smtp = {:?}: write smtp://host:port", n.smtp.as_deref().unwrap_or_default()),
                ));
            }
            NotifyKind::Matrix if n.profile.is_none() || n.room.is_none() => {
                return missing("profile (a synapse profile) and room")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each exception ends on a day, gives a reason, and names one of the policy's profiles.
fn check_exceptions(spec: &Spec) -> Result<(), Problem> {
    for exception in &spec.exceptions {
        let (at, e) = (exception.span().start, exception.get_ref());
        if chrono::NaiveDate::parse_from_str(&e.until, "%Y-%m-%d").is_err() {
            return Err((Some(at), format!("until = {:?}: write the day the exception ends, YYYY-MM-DD", e.until)));
        }
        if e.reason.trim().is_empty() {
            return Err((Some(at), format!("the exception for {:?} needs a reason", e.account)));
        }
        if let Some(p) = e.profile.as_ref().filter(|p| !spec.profiles.contains(p)) {
            return Err((
                Some(at),
                format!("profile {p:?} is not one of the policy's profiles ({})", spec.profiles.join(", ")),
            ));
        }
    }
    Ok(())
}

/// `every` as a duration.
pub fn every(spec: &Spec) -> chrono::Duration {
    let n: i64 = spec.every[..spec.every.len() - 1].trim().parse().unwrap_or(1);
    match spec.every.ends_with('h') {
        true => chrono::Duration::hours(n),
        false => chrono::Duration::days(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Policy, PolicyError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dormant.toml");
        std::fs::write(&path, text).unwrap();
        Policy::load(&path)
    }

    const GOOD: &str = "profiles = [\"ghes\"]\nunattended = true\n\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n\n[scope]\nexclude = [\"breakglass\"]\n\n[[exception]]\naccount = \"alice\"\nuntil = \"2027-01-31\"\nreason = \"sabbatical\"\n";

    #[test]
    fn a_good_policy_reads_with_its_defaults() {
        let p = load(GOOD).unwrap();
        assert_eq!((p.name.as_str(), p.spec.guard.max_share, p.spec.grace.restored_days), ("dormant", 0.25, 7));
        assert_eq!(every(&p.spec), chrono::Duration::days(1));
        assert_eq!(p.sha256.len(), 64);
    }

    #[test]
    fn mistakes_name_the_line_and_what_to_write() {
        for (text, line, says) in [
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_day = 90\n", Some(4), "unknown field `after_day`"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"erase\"\nafter_days = 90\n", Some(3), "unknown variant `erase`"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"delete\"\nafter_days = 90\n", Some(2), "allow_delete = true"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 7\n", Some(2), "30 days or more"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"demote\"\nafter_days = 90\n[[stage]]\naction = \"suspend\"\nafter_days = 60\n", Some(5), "must come after"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[[exception]]\naccount = \"a\"\nuntil = \"soon\"\nreason = \"x\"\n", Some(5), "YYYY-MM-DD"),
            ("profiles = []\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n", Some(1), "profiles is empty"),
            ("profiles = [\"ghes\"]\n", None, "no [[stage]]"),
            ("profiles = [\"ghes\"]\n[guard]\nmax_share = 2.5\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n", Some(3), "between 0 and 1"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[scope]\ndomains = [\"*@x.com\"]\n", Some(6), "not a domain"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[[notify]]\nkind = \"email\"\nsmtp = \"smtp://m:587\"\nfrom = \"s@x\"\nmanager = true\n", Some(5), "manager = true needs a [directory]"),
            ("profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[[notify]]\nkind = \"webhook\"\nurl_env = \"H\"\nmanager = true\n[directory]\nfile = \"p.csv\"\n", Some(5), "manager = true is for an email notify"),
        ] {
            let e = load(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert!(e.to_string().contains("dormant.toml"), "{e}");
        }
    }
}
