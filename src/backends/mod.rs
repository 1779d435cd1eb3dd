//! Backends: one module per service, each turning an `Action` into requests and the answers into steward values.
//! A backend never audits, prompts or throttles on its own: dispatch does that once for all of them.

mod csv_stream;
pub mod ghes_report;
pub mod github;
pub mod holdings;
pub mod model;
pub mod scim;
pub mod synapse;
pub mod terraform;
pub mod transactionlink;
pub mod travis;

use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::redact::SecretString;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

/// Every operation steward knows. One name means one thing on every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Whoami,
    ListUsers,
    GetUser,
    CreateUser,
    RenameUser,
    DeleteUser,
    Suspend,
    Unsuspend,
    Promote,
    Demote,
    CreateImpersonationToken,
    DeleteImpersonationToken,
    ListKeys,
    DeleteKey,
    ListTokens,
    DeleteToken,
    RateLimit,
    Activity,
    Reset2fa,
    Impersonate,
    Unimpersonate,
    SetRole,
    UpdateProfile,
    Roles,
    ListGroups,
    Members,
    AddToGroup,
    RemoveFromGroup,
    ListSessions,
    DeleteSession,
    Api,
}

/// What an operation is, declared once: the properties dispatch, undo and the script layer ask of it.
pub struct Verb {
    pub op: Op,
    pub name: &'static str,
    /// Changes state on the service: needs a durable intent, is skipped in dry run.
    pub changes: When,
    /// Destroys something or takes a privilege away: asks for confirmation unless `--yes`.
    pub destructive: When,
    /// Takes access or privilege from its target, or acts as it: never on a protected account or the caller's
    /// own, however the target is named. Granting (promote, unsuspend) is not guarded.
    pub guarded: bool,
    /// The operation that undoes this one, where there is one.
    pub inverse: Option<Op>,
    /// The bulk form (`suspend_all`), for the ones that have one.
    pub bulk: Option<&'static str>,
    /// Which account a change reaches, for dispatch to resolve and decide on.
    pub reaches: Reaches,
}

/// Where a kind of service's activity dates come from, for `activity` and for anything that decides "inactive"
/// on them (reports, `suspend_inactive`, policies). Unknown is never inactive: a service without sign-in dates
/// refuses to call anyone inactive, and says why.
#[derive(Clone, Copy, Debug)]
pub enum ActivitySource {
    /// Dates of use (sign-ins, requests): `what` they are, and who the listing cannot show, if anyone.
    Seen { what: &'static str, misses: Option<&'static str> },
    /// Dates the record changed, which are not use: listed as such, never read as inactivity.
    Changes { what: &'static str },
    /// None at all: why.
    Nothing { why: &'static str },
}

impl ActivitySource {
    /// What a script or a plan reads: `#{source, sign_ins, misses}` (`misses`, `why` only where they apply).
    pub fn describe(&self) -> Value {
        match self {
            ActivitySource::Seen { what, misses } => json!({"source": what, "sign_ins": true, "misses": misses}),
            ActivitySource::Changes { what } => json!({"source": what, "sign_ins": false, "misses": null,
                "why": "these dates say when the record changed, not when the person used the service: steward never calls anyone inactive on them"}),
            ActivitySource::Nothing { why } => json!({"source": null, "sign_ins": false, "misses": null, "why": why}),
        }
    }

    /// The refusal for asking "who is inactive" where the dates cannot tell.
    pub fn refuses_inactivity(&self, kind: &str) -> Option<ApiError> {
        let why = match self {
            ActivitySource::Seen { .. } => return None,
            ActivitySource::Changes { what } => format!("{kind} reports no sign-ins, only {what}: when a record changed is not when its person was last active, so steward calls no one inactive on it"),
            ActivitySource::Nothing { why } => format!("{kind} has no activity data: {why}"),
        };
        Some(ApiError::new(ErrorKind::Unsupported, why).with_hint(
            "plan inactivity on a service that records sign-ins (github, synapse, travis), or list the users and decide by another column",
        ))
    }
}

/// `activity(#{since, status})`'s question, read once for every service that answers it from dates of use:
/// `active` (seen on or after `since`), `inactive` (not seen since `since`, never seen included), `never`, `all`.
#[derive(Clone, Copy, Debug)]
pub struct ActivityQuery {
    pub status: &'static str,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

impl ActivityQuery {
    pub fn read(opts: &Value) -> Result<Self, ApiError> {
        let since = opts
            .get("since")
            .and_then(Value::as_str)
            .map(|s| crate::dates::parse_date(s).map_err(|e| ApiError::invalid(format!("since: {e}"))))
            .transpose()?;
        let asked = opts.get("status").and_then(Value::as_str).unwrap_or("all");
        let status = ["active", "inactive", "never", "all"].into_iter().find(|s| *s == asked).ok_or_else(|| {
            ApiError::invalid(format!("status {asked:?}: use \"active\", \"inactive\", \"never\" or \"all\""))
        })?;
        if since.is_none() && matches!(status, "active" | "inactive") {
            return Err(ApiError::invalid(format!(
                "activity(#{{status: \"{status}\"}}) needs a date: activity(#{{since: \"2025-02-21\", status: \"{status}\"}})"
            )));
        }
        Ok(ActivityQuery { status, since })
    }

    /// Does a user last seen at `seen` (`None`: never) answer the question?
    pub fn wants(&self, seen: Option<chrono::DateTime<chrono::Utc>>) -> bool {
        match (self.status, seen, self.since) {
            ("all", _, _) => true,
            ("never", seen, _) => seen.is_none(),
            ("active", Some(t), Some(s)) => t >= s,
            ("inactive", Some(t), Some(s)) => t < s,
            ("inactive", None, _) => true,
            _ => false,
        }
    }
}

/// A kind of identifier a person is known by across services (`Backend::finds_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// An email address: shared by a person's accounts wherever the services record it.
    Email,
    /// A login, user name or id as this service writes it (a name given for this service).
    Login,
    /// A login on the version-control server (GHES) that this service mirrors (Travis signs people in with it).
    VcsLogin,
}

impl IdKind {
    pub fn words(self) -> &'static str {
        match self {
            IdKind::Email => "email",
            IdKind::Login => "login",
            IdKind::VcsLogin => "GHES login",
        }
    }
}

/// Which account an operation's change reaches: the one its target names, the owner of the key, token or session
/// its target names, or none (a new user, a raw `api()` path, the caller's own session).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaches {
    Nothing,
    User,
    Credential,
}

/// When a property holds: never, always, or by the HTTP method an `api()` call names.
#[derive(Clone, Copy)]
pub enum When {
    Never,
    Always,
    Method(fn(&str) -> bool),
}

fn is_write(method: &str) -> bool {
    !method.eq_ignore_ascii_case("GET")
}

fn is_delete(method: &str) -> bool {
    method.eq_ignore_ascii_case("DELETE")
}

/// Every operation, in the order of `Op` (a test holds them together).
#[rustfmt::skip]
pub const VERBS: &[Verb] = &[
    Verb { op: Op::Whoami, name: "whoami", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::ListUsers, name: "list_users", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::GetUser, name: "get_user", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::CreateUser, name: "create_user", changes: When::Always, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::RenameUser, name: "rename_user", changes: When::Always, destructive: When::Never, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::DeleteUser, name: "delete_user", changes: When::Always, destructive: When::Always, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::Suspend, name: "suspend", changes: When::Always, destructive: When::Never, guarded: true, inverse: Some(Op::Unsuspend), bulk: Some("suspend_all"), reaches: Reaches::User },
    Verb { op: Op::Unsuspend, name: "unsuspend", changes: When::Always, destructive: When::Never, guarded: false, inverse: Some(Op::Suspend), bulk: Some("unsuspend_all"), reaches: Reaches::User },
    Verb { op: Op::Promote, name: "promote", changes: When::Always, destructive: When::Never, guarded: false, inverse: Some(Op::Demote), bulk: Some("promote_all"), reaches: Reaches::User },
    Verb { op: Op::Demote, name: "demote", changes: When::Always, destructive: When::Always, guarded: true, inverse: Some(Op::Promote), bulk: Some("demote_all"), reaches: Reaches::User },
    Verb { op: Op::CreateImpersonationToken, name: "create_impersonation_token", changes: When::Always, destructive: When::Never, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::DeleteImpersonationToken, name: "delete_impersonation_token", changes: When::Always, destructive: When::Always, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::ListKeys, name: "list_keys", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::DeleteKey, name: "delete_key", changes: When::Always, destructive: When::Always, guarded: false, inverse: None, bulk: None, reaches: Reaches::Credential },
    Verb { op: Op::ListTokens, name: "list_tokens", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::DeleteToken, name: "delete_token", changes: When::Always, destructive: When::Always, guarded: false, inverse: None, bulk: None, reaches: Reaches::Credential },
    Verb { op: Op::RateLimit, name: "rate_limit", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::Activity, name: "activity", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::Reset2fa, name: "reset_2fa", changes: When::Always, destructive: When::Never, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::Impersonate, name: "impersonate", changes: When::Always, destructive: When::Never, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::Unimpersonate, name: "unimpersonate", changes: When::Always, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::SetRole, name: "set_role", changes: When::Always, destructive: When::Never, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::UpdateProfile, name: "update_profile", changes: When::Always, destructive: When::Never, guarded: true, inverse: None, bulk: None, reaches: Reaches::User },
    Verb { op: Op::Roles, name: "roles", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::ListGroups, name: "list_groups", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::Members, name: "members", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::AddToGroup, name: "add_to_group", changes: When::Always, destructive: When::Never, guarded: false, inverse: Some(Op::RemoveFromGroup), bulk: None, reaches: Reaches::User },
    Verb { op: Op::RemoveFromGroup, name: "remove_from_group", changes: When::Always, destructive: When::Always, guarded: true, inverse: Some(Op::AddToGroup), bulk: None, reaches: Reaches::User },
    Verb { op: Op::ListSessions, name: "list_sessions", changes: When::Never, destructive: When::Never, guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
    Verb { op: Op::DeleteSession, name: "delete_session", changes: When::Always, destructive: When::Always, guarded: false, inverse: None, bulk: None, reaches: Reaches::Credential },
    Verb { op: Op::Api, name: "api", changes: When::Method(is_write), destructive: When::Method(is_delete), guarded: false, inverse: None, bulk: None, reaches: Reaches::Nothing },
];

impl When {
    fn holds(self, params: &Value) -> bool {
        match self {
            When::Never => false,
            When::Always => true,
            When::Method(test) => test(api_method(params)),
        }
    }
}

impl Op {
    pub fn verb(self) -> &'static Verb {
        &VERBS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.verb().name
    }

    pub fn from_name(name: &str) -> Option<Op> {
        VERBS.iter().find(|v| v.name == name).map(|v| v.op)
    }

    pub fn is_mutation(self, params: &Value) -> bool {
        self.verb().changes.holds(params)
    }

    pub fn is_destructive(self, params: &Value) -> bool {
        self.verb().destructive.holds(params)
    }

    pub fn guards_target(self) -> bool {
        self.verb().guarded
    }

    pub fn bulk_name(self) -> Option<&'static str> {
        self.verb().bulk
    }

    pub fn inverse(self) -> Option<Op> {
        self.verb().inverse
    }

    /// The account a change of this operation reaches (`Nothing` for what changes nothing).
    pub fn reaches(self, params: &Value) -> Reaches {
        match self.is_mutation(params) {
            true => self.verb().reaches,
            false => Reaches::Nothing,
        }
    }
}

fn api_method(params: &Value) -> &str {
    params.get("method").and_then(Value::as_str).unwrap_or("GET")
}

/// What a change came to, as the service answered it.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Done (or, for a read, answered): the service's answer.
    Done(Value),
    /// The service said the target already was in the state asked for; nothing changed. Its words.
    Already(String),
}

/// One admin operation as dispatch sees it.
#[derive(Clone, Debug)]
pub struct Action {
    pub op: Op,
    /// The user, key or token acted on (a login, an id).
    pub target: Option<String>,
    /// Operation parameters (`reason`, `scopes`, filters), never secrets.
    pub params: Value,
}

impl Action {
    pub fn new(op: Op, target: Option<String>, params: Value) -> Self {
        Action { op, target, params }
    }

    pub fn target(&self) -> Result<&str, ApiError> {
        self.target
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::invalid(format!("{} needs a target (a user login or id)", self.op.name())))
    }

    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }
}

/// A service steward can administer. Object-safe so profiles of any kind sit in one registry.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The profile `kind` this backend serves (`github`).
    fn kind(&self) -> &'static str;

    /// The operations this backend implements; dispatch refuses the others with a clear error.
    fn supported(&self) -> &'static [Op];

    /// Whether its `delete_user` deactivates (the account stays, locked out for good: Synapse) rather than
    /// deletes. What a policy's deactivate and delete stages are checked against.
    fn deletion_deactivates(&self) -> bool {
        false
    }

    /// The service's base URL, recorded in the audit log.
    fn base_url(&self) -> String;

    /// Performs the action and returns its result as JSON (users are normalized `model::User` records).
    async fn execute(&self, action: &Action) -> Result<Value, ApiError>;

    /// The users `filter` asks for, normalized, a page at a time: what `list_users` collects on services that
    /// stream and `h.users()` reads lazily (`hold` says which). By default the whole `list_users` answer is one
    /// page.
    fn users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        let _ = hold;
        Box::pin(futures::stream::once(async move {
            match self.execute(&Action::new(Op::ListUsers, None, filter.clone())).await? {
                Value::Array(users) => Ok(users.into_iter().map(model::User::from_value).collect()),
                other => {
                    Err(ApiError::invalid(format!("list_users gave {}, not a list", crate::http::json_type(&other))))
                }
            }
        }))
    }

    /// Performs a change and says what it came to: done, or (where the service answers so) already in the
    /// state asked for, nothing changed. Dispatch sends every change through this.
    async fn settle(&self, action: &Action) -> Result<Outcome, ApiError> {
        self.execute(action).await.map(Outcome::Done)
    }

    /// Is `target` already in the state `op` would put it in? `Some(true)`: nothing to do (a noop);
    /// `Some(false)`: it needs the change; `None`: this backend cannot tell. Read afresh (how a change whose
    /// answer was lost is settled); a missing target is an error. `params` are the action's. By default: the account, resolved now, and its
    /// state (`state_of`).
    async fn state(&self, op: Op, target: &str, params: &Value) -> Result<Option<bool>, ApiError> {
        account_state(self, op, target, params).await
    }

    /// Is `account` already in the state `op` would put it in, by the record `lookup` read? (A service whose
    /// records do not say it asks for more: TransactionLink's roles, a SCIM admin group, the membership of the
    /// group `params` name.)
    async fn state_of(&self, op: Op, account: &model::Account, params: &Value) -> Result<Option<bool>, ApiError> {
        let _ = params;
        Ok(record_state(op, &account.record))
    }

    /// A group's members (the group as `group_id` names it), each handed to `each` as it is read: what
    /// reconciling a group of 100,000 holds once. By default `members`' answer, read whole.
    async fn members_of(&self, group: &str, each: &mut (dyn FnMut(model::Member) + Send)) -> Result<(), ApiError> {
        let listed = self.execute(&Action::new(Op::Members, None, json!({ "group": group }))).await?;
        let Value::Array(listed) = listed else {
            return Err(ApiError::invalid(format!("the members of {group} came as something other than a list")));
        };
        listed.into_iter().filter_map(model::Member::of_value).for_each(each);
        Ok(())
    }

    /// The stable id of the group `name` names (a SCIM group's id, a room's id), read from the service now: what
    /// a membership change is decided, recorded and undone on, however the script named the group.
    async fn group_id(&self, name: &str) -> Result<String, ApiError> {
        Ok(name.trim().to_string())
    }

    /// Why `target` cannot name a user on this service, if it cannot (checked before any request, so a
    /// spreadsheet formula or a stray cell in a CSV never reaches a URL).
    fn invalid_target(&self, target: &str) -> Option<String> {
        // `.` and `..` would climb the URL path they are put in (`users/..` is the collection).
        let bad = matches!(target.trim(), "" | "." | "..") || target.chars().any(|c| c.is_control() || c == '/');
        bad.then(|| format!("{target:?} is not a user name"))
    }

    /// Whether this service can look a person up by this kind of identifier, so that not finding them by it
    /// means they have no account here (an email on a service that records none cannot say so).
    fn finds_by(&self, kind: IdKind) -> bool {
        kind != IdKind::VcsLogin
    }

    /// Why not finding a person here does not show they have no account, where it does not (Travis lists only
    /// members who were ever active). `None`: a lookup that finds no one means there is no such account.
    fn misses_hide_accounts(&self) -> Option<&'static str> {
        None
    }

    /// The columns a CSV row may name its user by, in order of preference.
    fn target_keys(&self) -> &'static [&'static str] {
        &["login", "username", "user", "id", "user_id", "vcs_id"]
    }

    /// How many targets of `op` one request may carry, for services with native bulk endpoints (Travis, a SCIM
    /// server announcing `/Bulk`: asked of the server, hence async).
    async fn batch_size(&self, _op: Op) -> Option<usize> {
        None
    }

    /// Performs the same operation on many targets in as few requests as the service allows; one result per
    /// action, in order. Only called when `batch_size` says the operation has a bulk form.
    async fn execute_batch(&self, op: Op, actions: &[Action]) -> Vec<Result<Value, ApiError>> {
        let _ = op;
        actions.iter().map(|_| Err(ApiError::invalid("this service has no bulk endpoint"))).collect()
    }

    /// Reads what the action will need to be undone, before its intent is written, so the audit log keeps
    /// it (TransactionLink: the role a user had before termination). Returned keys join the action's params.
    async fn prepare(&self, _action: &Action) -> Result<Option<Value>, ApiError> {
        Ok(None)
    }

    /// The account `name` designates, read from the service now: its stable id, every name it answers to, the
    /// address a change names it by, and its record. `Ok(None)`: the service has no such account. `params` are
    /// the action's (a Travis `vcs_type` says the name is a VCS id). Every decision rests on what this returns,
    /// checked by `resolve`; protected entries and the caller's identity are resolved with it too, once per
    /// connection. A name that two accounts answer to is an error naming both, never a pick.
    async fn lookup(&self, name: &str, params: &Value) -> Result<Option<model::Account>, ApiError> {
        let _ = params;
        resolve_by_get_user(self, name).await
    }

    /// A name as the service compares names: by default without case (logins, emails, ids).
    fn name_key(&self, name: &str) -> String {
        name.trim().to_lowercase()
    }

    /// Whether a `lookup` that finds nobody proves the service has no such account. Travis's activity listing
    /// leaves out members who were never active, so there it does not: a protected name it cannot find stops
    /// guarded work rather than protect nobody.
    fn lookup_is_exhaustive(&self) -> bool {
        true
    }

    /// The account `name` reaches without asking the service, where its requests address accounts by a form of
    /// the name itself (GHES: the login; Travis: the number): what a job that reads nothing first
    /// (`precheck: false`) decides on. `None`: only the service can say (then it is asked).
    fn offline_account(&self, _name: &str, _params: &Value) -> Option<model::Account> {
        None
    }

    /// Whether `account` answers to `name` by the service's own comparison (`name_key`): a lookup's answer
    /// that does not is another account than the one asked for.
    fn answers_to(&self, account: &model::Account, name: &str) -> bool {
        let key = self.name_key(name);
        account.names.iter().map(String::as_str).chain(account.ids()).any(|n| self.name_key(n) == key)
    }

    /// The stable id of the account a key, token or session deletion takes from, as the service shows it now,
    /// whatever owner the script named; not found when the service has no such credential.
    async fn owner_of(&self, action: &Action) -> Result<String, ApiError> {
        Err(ApiError::new(
            crate::error::ErrorKind::Unsupported,
            format!("{} cannot tell whose {} this is", self.kind(), action.op.name()),
        ))
    }

    /// The account behind `target` and what it holds (keys, tokens, sessions, groups, 2FA), read for
    /// deprovisioning; by default only the user record.
    async fn snapshot(&self, target: &str) -> Result<holdings::Snapshot, ApiError> {
        holdings::user_snapshot(self, target).await
    }

    /// Reads ahead, in as few requests as the service allows, what looking up these names will need (a job
    /// naming hundreds of people lists the users once instead of searching for each). Fresh reads: what was
    /// remembered of these names is dropped first.
    async fn warm(&self, _names: &[String]) -> Result<(), ApiError> {
        Ok(())
    }

    /// `snapshot` of many accounts, one result each in order; a service that lists credentials for everyone at
    /// once (GHES) reads that listing once for all of them.
    async fn snapshots(&self, targets: &[String]) -> Vec<Result<holdings::Snapshot, ApiError>> {
        let mut out = Vec::with_capacity(targets.len());
        for chunk in targets.chunks(8) {
            out.extend(futures::future::join_all(chunk.iter().map(|t| self.snapshot(t))).await);
        }
        out
    }

    /// The steps that take everything `snap` shows away, in the order this service needs.
    fn cascade(&self, snap: &holdings::Snapshot, wishes: &holdings::Wishes) -> holdings::Cascade {
        holdings::standard_cascade(self, snap, wishes)
    }

    /// Every account with its dates of use, compact, each handed to `each` (a policy's planning): by default
    /// `activity` of all, each record read down to what planning needs. How many accounts there were.
    async fn activity_seen(&self, each: &mut (dyn FnMut(model::Seen) + Send)) -> Result<usize, ApiError> {
        let all = self.execute(&Action::new(Op::Activity, None, json!({"since": ALL_TIME, "status": "all"}))).await?;
        let records = all.as_array().map(Vec::as_slice).unwrap_or_default();
        records.iter().for_each(|u| each(model::Seen::of_user(u)));
        Ok(records.len())
    }

    /// The login of the account the token belongs to.
    async fn identity(&self) -> Result<String, ApiError> {
        let me = self.execute(&Action::new(Op::Whoami, None, Value::Null)).await?;
        Ok(me.get("login").and_then(Value::as_str).unwrap_or_default().to_string())
    }
}

/// The group a membership change names (`h.add_to_group(user, "group")`).
pub fn group_of(action: &Action) -> Result<String, ApiError> {
    let name = action.param_str("group").map(str::trim).filter(|g| !g.is_empty());
    name.map(str::to_string).ok_or_else(|| {
        ApiError::invalid(format!("{} needs a group: h.{}(user, \"group name\")", action.op.name(), action.op.name()))
    })
}

/// The day before any account: activity "since" it is everyone's (what a policy's planning reads).
pub const ALL_TIME: &str = "2000-01-01";

/// Pages of normalized users, as `Backend::users` yields them.
pub type UserPages<'a> = futures::stream::BoxStream<'a, Result<Vec<model::User>, ApiError>>;

/// The whole of a `users` stream, for `list_users` on services that stream.
pub async fn collect_users(mut pages: UserPages<'_>) -> Result<Vec<Value>, ApiError> {
    use futures::StreamExt;
    let mut users = Vec::new();
    while let Some(page) = pages.next().await {
        users.extend(page?.into_iter().map(model::User::into_value));
    }
    Ok(users)
}

/// `lookup` through the service's own user lookup (`get_user`), where it has one.
pub async fn resolve_by_get_user<B: Backend + ?Sized>(
    backend: &B,
    name: &str,
) -> Result<Option<model::Account>, ApiError> {
    if !backend.supported().contains(&Op::GetUser) {
        return Ok(None);
    }
    let user = backend.execute(&Action::new(Op::GetUser, Some(name.to_string()), Value::Null)).await;
    Ok(found(user)?.map(|u| model::Account::of_user(&u)))
}

/// The account a change to `name` will reach, as the server answered a lookup for it: the one function every
/// path resolves its targets with (the single call, a job, deprovisioning, undo, a resume, the guard's own
/// entries). A name no account of this service can have is `invalid` before anything is sent; an answer that is
/// another account than the one asked for (by the service's own comparison of names) is refused and named.
pub async fn resolve<B: Backend + ?Sized>(backend: &B, name: &str, params: &Value) -> Result<model::Account, ApiError> {
    let name = name.trim();
    if let Some(why) = backend.invalid_target(name) {
        return Err(ApiError::invalid(why));
    }
    let Some(account) = backend.lookup(name, params).await? else {
        return Err(ApiError::new(crate::error::ErrorKind::NotFound, format!("no user {name:?} on this service"))
            .with_status(404));
    };
    if !backend.answers_to(&account, name) {
        return Err(ApiError::invalid(format!(
            "the server answered a lookup for {name} with {}, another account; nothing was sent",
            account.describe()
        ))
        .with_hint("the service or something between steward and it is not answering for the name asked; check it"));
    }
    if account.id.is_empty() || account.address.is_empty() {
        return Err(ApiError::invalid(format!("the server's record for {name} has no id; nothing was sent")));
    }
    Ok(account)
}

/// `Backend::state`'s usual way: the account resolved now, and its state.
pub async fn account_state<B: Backend + ?Sized>(
    backend: &B,
    op: Op,
    target: &str,
    params: &Value,
) -> Result<Option<bool>, ApiError> {
    if op == Op::DeleteUser {
        // Gone is done; so is an account the service keeps but has deactivated (Synapse).
        return match resolve(backend, target, params).await {
            Ok(account) => Ok(Some(account.record.get("deactivated").and_then(Value::as_bool).unwrap_or(false))),
            Err(e) if e.kind == crate::error::ErrorKind::NotFound => Ok(Some(true)),
            Err(e) => Err(e),
        };
    }
    if op.inverse().is_none() {
        return Ok(None);
    }
    let account = resolve(backend, target, params).await?;
    backend.state_of(op, &account, params).await
}

/// Whether a normalized user record is in the state `op` puts users in (`None`: the record does not say).
pub fn record_state(op: Op, record: &Value) -> Option<bool> {
    let (key, on) = match op {
        Op::Suspend => ("suspended", true),
        Op::Unsuspend => ("suspended", false),
        Op::Promote => ("admin", true),
        Op::Demote => ("admin", false),
        _ => return None,
    };
    record.get(key).and_then(Value::as_bool).map(|v| v == on)
}

/// The error for a name more than one account answers to: each named (`login (id)`), and nothing sent. A guess
/// could take access from the wrong person.
pub fn ambiguous(name: &str, accounts: Vec<(String, String)>, hint: &str) -> ApiError {
    let who: Vec<String> = accounts.iter().map(|(login, id)| format!("{login} ({id})")).collect();
    ApiError::new(
        crate::error::ErrorKind::Conflict,
        format!("{name:?} names more than one account here: {}; nothing was sent", who.join(", ")),
    )
    .with_hint(hint.to_string())
}

/// `name` as an email address, lower-cased, when it is one: something@domain.tld, printable, with no `:` or `/`
/// (which no Matrix id, login or path segment can be mistaken for). The one test of "is this an email" that
/// finding people and addressing them by email share.
pub fn email_of(name: &str) -> Option<String> {
    let name = name.trim();
    let (local, domain) = name.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.contains('@')
        && name.chars().all(|c| c.is_ascii_graphic() && !matches!(c, ':' | '/'));
    ok.then(|| name.to_lowercase())
}

/// A lookup's answer with "no such account" as `None` rather than an error: what `resolve` reports.
pub fn found<T>(lookup: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
    match lookup {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == crate::error::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `api(method, path, body)` escape hatch: any request under the profile's URL, the same on every service.
pub async fn api(http: &crate::http::HttpClient, action: &Action) -> Result<Value, ApiError> {
    let method = action.param_str("method").unwrap_or("GET").to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::invalid(format!("api: {method:?} is not an HTTP method")))?;
    let path = action.param_str("path").ok_or_else(|| ApiError::invalid("api needs a path"))?;
    let mut req = crate::http::Request::new(method, path);
    if let Some(body) = action.params.get("body").filter(|b| !b.is_null()) {
        req = req.json(body.clone());
    }
    Ok(http.send(&req).await?.body)
}

pub fn unsupported(backend: &dyn Backend, op: Op) -> ApiError {
    // Activity a service does not keep: say why, not only that it is missing.
    if let (Op::Activity, Some(kind)) = (op, kind(backend.kind())) {
        if let Some(refusal) = kind.activity.refuses_inactivity(backend.kind()) {
            return refusal;
        }
    }
    let names: Vec<&str> = backend.supported().iter().map(|op| op.name()).collect();
    ApiError::unsupported(op.name(), backend.kind(), &names)
}

/// Where `kind`'s activity dates come from (`Nothing` for a kind steward does not know).
pub fn activity_source(kind_name: &str) -> ActivitySource {
    kind(kind_name)
        .map(|k| k.activity)
        .unwrap_or(ActivitySource::Nothing { why: "steward does not know this kind of service" })
}

/// A kind of service, declared once by its module: its name, what it supports, how to speak to it, its own
/// profile keys, how to build its backend. Adding a service adds one entry to `ALL`.
pub struct Kind {
    pub name: &'static str,
    /// The operations its handles offer (the common ones it has, and its own words).
    pub supported: &'static [Op],
    pub client: ClientShape,
    pub build: BuildFn,
    /// Reads a profile's own keys into this kind's typed settings (`check_settings::<Settings>`): a key it does
    /// not take, a missing one or a wrong value is a problem naming the key.
    pub check: fn(&crate::config::Profile) -> Result<(), KeyProblem>,
    /// The names of this kind's own keys (`keys_of::<Settings>`), for hints.
    pub keys: fn() -> &'static [&'static str],
    /// Keys naming an environment variable that holds a credential for one purpose: (purpose, key). Each set
    /// one is read when the profile connects and handed to `build` under its purpose.
    pub token_envs: &'static [(&'static str, &'static str)],
    /// Verbs in this service's own words, callable on its handles only: (word, the common verb it is, or "").
    pub words: &'static [(&'static str, &'static str)],
    /// Where its activity dates come from (or why it has none).
    pub activity: ActivitySource,
}

/// The kind whose own word `word` is, and the common verb it stands for ("" when there is none).
pub fn word_owner(word: &str) -> Option<(&'static Kind, &'static str)> {
    ALL.iter().find_map(|k| k.words.iter().find(|(w, _)| *w == word).map(|(_, common)| (*k, *common)))
}

/// A key a profile lacks or has wrong: the key, what is wrong, and what to write.
#[derive(Debug)]
pub struct KeyProblem {
    pub key: String,
    pub message: String,
    pub hint: String,
}

impl KeyProblem {
    pub fn new(key: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        KeyProblem { key: key.to_string(), message: message.into(), hint: hint.into() }
    }
}

/// A kind's own profile keys as one typed value (serde, `deny_unknown_fields`).
pub trait KindSettings: serde::de::DeserializeOwned {
    /// What the values must satisfy beyond their types.
    fn validate(&self) -> Result<(), KeyProblem> {
        Ok(())
    }
}

/// The settings of a kind that has no keys of its own.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl KindSettings for NoSettings {}

/// The names of the keys `S` reads.
pub fn keys_of<S: KindSettings>() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<S>()
}

/// `p`'s own keys read as `S`, or the problem with them, naming the key and the keys this kind takes.
pub fn settings<S: KindSettings>(p: &crate::config::Profile) -> Result<S, KeyProblem> {
    let kind = &p.kind;
    let keys = keys_of::<S>();
    if let Some(unknown) = p.settings.keys().find(|k| !keys.contains(&k.as_str())) {
        let known: Vec<&str> = crate::config::COMMON_KEYS.iter().chain(keys).copied().collect();
        let guess = crate::suggest::closest(unknown, known.iter().copied())
            .map(|g| format!("did you mean {g}? "))
            .unwrap_or_default();
        let own = match keys.is_empty() {
            true => "none".to_string(),
            false => keys.join(", "),
        };
        return Err(KeyProblem::new(
            unknown,
            format!("a {kind} profile has no key {unknown:?}"),
            format!(
                "{guess}keys every profile takes: {}; a {kind} profile's own keys: {own}",
                crate::config::COMMON_KEYS.join(", ")
            ),
        ));
    }
    let read =
        |table: toml::Table| toml::Value::Table(table).try_into::<S>().map_err(|e| e.message().trim().to_string());
    let read = read(p.settings.clone()).map_err(|text| {
        // serde names a missing key but not the key of a wrong value: that one is the key whose absence changes
        // the complaint.
        let named = keys.iter().find(|k| text.contains(&format!("`{k}`"))).copied();
        let culprit = || {
            p.settings.keys().find(|k| {
                let mut without = p.settings.clone();
                without.remove(*k);
                read(without).err().as_ref() != Some(&text)
            })
        };
        let key = named.or_else(|| culprit().map(String::as_str)).unwrap_or("settings");
        let (message, _) = crate::config::in_plain_words(&text);
        KeyProblem::new(
            key,
            message,
            format!("a {kind} profile's own keys: {}; the README's config section explains each", keys.join(", ")),
        )
    })?;
    read.validate()?;
    Ok(read)
}

/// `Kind::check` for a kind whose settings are `S`.
pub fn check_settings<S: KindSettings>(p: &crate::config::Profile) -> Result<(), KeyProblem> {
    settings::<S>(p).map(|_| ())
}

/// Every profile names a known kind and has what that kind needs; the error names the file, line, profile and key.
pub fn check_config(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
    for (name, p) in &config.profiles {
        let Some(kind) = kind(&p.kind) else {
            let (message, hint) =
                (format!("{:?} is not a known kind", p.kind), format!("use one of: {}", kind_names().join(", ")));
            return Err(crate::config::ConfigError::in_profile(config, name, "kind", message, hint));
        };
        (kind.check)(p).map_err(|k| crate::config::ConfigError::in_profile(config, name, &k.key, k.message, k.hint))?;
    }
    Ok(())
}

/// Makes a backend from its HTTP client, the profile's name and settings, and the extra tokens it names.
pub type BuildFn = fn(
    crate::http::HttpClient,
    &str,
    &crate::config::Profile,
    Vec<(&'static str, SecretString)>,
) -> Result<Arc<dyn Backend>, ApiError>;

/// Every kind of service steward speaks to.
pub const ALL: &[&Kind] =
    &[&github::KIND, &terraform::KIND, &transactionlink::KIND, &travis::KIND, &synapse::KIND, &scim::KIND];

/// The kind a profile names, if steward knows it.
pub fn kind(name: &str) -> Option<&'static Kind> {
    ALL.iter().copied().find(|k| k.name == name)
}

/// The names of every kind, for messages.
pub fn kind_names() -> Vec<&'static str> {
    ALL.iter().map(|k| k.name).collect()
}

/// The requests per second a profile keeps to, and where that comes from: its own `rate_limit`, else its kind's
/// default (below the service's documented limit), else none (the pace is learned from the server's answers).
pub fn rate_limit(p: &crate::config::Profile) -> (Option<f64>, &'static str) {
    match (p.rate_limit, kind(&p.kind).and_then(|k| k.client.default_rate_limit)) {
        (Some(own), _) => (Some(own), "the profile's rate_limit"),
        (None, Some(default)) => (Some(default), "this kind's default (set rate_limit to change it)"),
        (None, None) => (None, "none set: paced by the server's answers (429s, rate headers)"),
    }
}

/// The backend for profile `name`: an HTTP client shaped for its kind (auth, headers, rate, timeouts) under it.
pub fn connect(
    name: &str,
    p: &crate::config::Profile,
    token: Option<SecretString>,
    extra_tokens: Vec<(&'static str, SecretString)>,
    on_pause: Option<crate::http::PauseObserver>,
    retry: crate::http::retry::RetryPolicy,
    shared_turns: Option<&crate::http::budget::TurnsFactory>,
) -> Result<Arc<dyn Backend>, ApiError> {
    let kind = kind(&p.kind).ok_or_else(|| {
        ApiError::invalid(format!("kind {:?} is not known (known kinds: {})", p.kind, kind_names().join(", ")))
    })?;
    let shape = &kind.client;
    // A backend that must present the token another way for one resource (GHES's reports take Basic) gets it.
    let mut extra_tokens = extra_tokens;
    if let Some(t) = &token {
        extra_tokens.push(("main", t.clone()));
    }
    let base_url = url::Url::parse(&p.url).map_err(|e| ApiError::invalid(format!("url {:?}: {e}", p.url)))?;
    let settings = crate::http::ClientSettings {
        shared_turns: shared_turns.map(|make| make(&base_url)),
        base_url,
        auth: token.map(|token| {
            let token = (shape.token_value)(p, token);
            std::sync::Arc::new(crate::http::auth::StaticToken::new(shape.auth_prefix, &token))
                as std::sync::Arc<dyn crate::http::auth::Credentials>
        }),
        timeout: std::time::Duration::from_secs(p.timeout.unwrap_or(30)),
        ca_file: p.ca_file.clone(),
        insecure: p.insecure,
        rate_limit: rate_limit(p).0,
        concurrency: p.concurrency.unwrap_or(4),
        retry,
        default_headers: shape.default_headers.to_vec(),
        content_type: shape.content_type,
        on_pause,
        limits: p.limits(),
        link_origin: p.link_origin.as_deref().and_then(|o| url::Url::parse(o).ok()),
        rate_limit_refusal: shape.rate_limit_refusal,
    };
    let client = crate::http::HttpClient::new(settings, shape.error_message)?;
    (kind.build)(client, name, p, extra_tokens)
}

/// How a kind of service wants to be spoken to: auth prefix, default headers, where its error text sits.
pub struct ClientShape {
    pub auth_prefix: &'static str,
    pub default_headers: &'static [(&'static str, &'static str)],
    pub content_type: &'static str,
    pub error_message: crate::http::ErrorMessageFn,
    /// Requests per second when the profile sets no `rate_limit` (below the service's documented limit).
    pub default_rate_limit: Option<f64>,
    /// The token as the Authorization header carries it after the prefix (Travis: `org_id:secret`).
    pub token_value: fn(&crate::config::Profile, SecretString) -> SecretString,
    /// Regular expressions for the shapes of this service's tokens, so text of that shape is hidden from any
    /// output even when steward never loaded that token (`register_token_shapes`).
    pub token_shapes: &'static [&'static str],
    /// Whether a refusal (status, the service's message) is the service's rate limit rather than a denial
    /// (GitHub's secondary limit is a 403 that says so); 429 and exhausted rate headers are known to `http`.
    pub rate_limit_refusal: crate::http::RateLimitRefusalFn,
}

/// Hides every kind's token shapes from all output from now on; called once at start.
pub fn register_token_shapes() {
    for kind in ALL {
        if let Err(e) = crate::redact::add_token_shapes(kind.client.token_shapes) {
            tracing::error!("the token shapes of {} do not compile: {e}", kind.name);
        }
    }
}

/// A service whose refusals are never its rate limit.
pub fn no_rate_limit_refusal(_status: u16, _message: Option<&str>) -> bool {
    false
}

/// Most services take the token as it is.
pub fn token_as_is(_profile: &crate::config::Profile, token: SecretString) -> SecretString {
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(text: &str) -> Result<(), crate::config::ConfigError> {
        let config = crate::config::Config::parse(text, std::path::Path::new("/etc/steward.toml")).expect("parses");
        check_config(&config)
    }

    #[test]
    fn the_verbs_table_lists_each_operation_once_in_its_place() {
        for (i, verb) in VERBS.iter().enumerate() {
            assert_eq!(verb.op as usize, i, "{} is out of place", verb.name);
            assert_eq!(Op::from_name(verb.name), Some(verb.op));
            if let Some(inverse) = verb.inverse {
                assert_eq!(inverse.inverse(), Some(verb.op), "{} and its inverse undo each other", verb.name);
            }
            if verb.guarded || !matches!(verb.destructive, When::Never) {
                assert!(!matches!(verb.changes, When::Never), "{} guards or asks but changes nothing", verb.name);
            }
            // What guards its target reaches a user; what changes nothing reaches nobody.
            if verb.guarded {
                assert_eq!(verb.reaches, Reaches::User, "{}", verb.name);
            }
            if matches!(verb.changes, When::Never) {
                assert_eq!(verb.reaches, Reaches::Nothing, "{}", verb.name);
            }
        }
        assert_eq!(VERBS.len(), Op::Api as usize + 1);
        let api = |m: &str| json!({"method": m, "path": "x"});
        assert!(!Op::Api.is_mutation(&api("GET")) && Op::Api.is_mutation(&api("post")));
        assert!(Op::Api.is_destructive(&api("DELETE")) && !Op::Api.is_destructive(&api("PUT")));
        assert_eq!(Op::DeleteKey.reaches(&Value::Null), Reaches::Credential);
        assert_eq!(Op::Api.reaches(&api("DELETE")), Reaches::Nothing, "a raw path names no account");
    }

    #[test]
    fn every_kinds_token_shapes_hide_its_tokens() {
        register_token_shapes();
        for token in [
            "ghp_abcdefghijklmnop1234",
            "github_pat_11AAAAAAA0abcdefghij",
            "abcdefgh12345678.atlasv1.abcdefghijklmnopqrstuv",
            "tot_abcdef123456",
            "org.token 42:s3cr3tvalue",
            "syt_YWRtaW4_abcdefghij",
        ] {
            let out = crate::redact::redact(&format!("failed with {token} here"));
            assert!(!out.contains(token) && out.contains("[REDACTED]"), "{token} survived: {out}");
        }
        assert_eq!(crate::redact::redact("user octocat not found"), "user octocat not found");
    }

    #[test]
    fn an_unknown_kind_lists_the_known_ones() {
        let e = checked("[profiles.x]\nkind = \"gitlab\"\nurl = \"https://h\"\n").unwrap_err();
        assert!(e.to_string().contains("[profiles.x] kind"), "{e}");
        assert!(ALL.iter().all(|k| e.hint.contains(k.name)), "{}", e.hint);
    }

    #[test]
    fn each_own_word_belongs_to_one_service_and_names_a_real_common_verb() {
        let mut seen = std::collections::HashSet::new();
        for kind in ALL {
            for (word, common) in kind.words {
                assert!(seen.insert(*word), "{word} is claimed by two services");
                assert!(common.is_empty() || Op::from_name(common).is_some(), "{word} stands for {common:?}");
            }
        }
        assert_eq!(word_owner("terminate").map(|(k, c)| (k.name, c)), Some(("transactionlink", "suspend")));
        assert!(word_owner("suspend").is_none(), "a common verb is nobody's own word");
    }

    #[test]
    fn a_kind_checks_its_own_keys() {
        let e = checked("[profiles.t]\nkind = \"travis\"\nurl = \"https://h\"\n").unwrap_err();
        assert!(e.to_string().contains("[profiles.t] org_id"), "{e}");
        checked("[profiles.t]\nkind = \"travis\"\nurl = \"https://h\"\norg_id = \"89\"\n").expect("complete");
    }

    #[test]
    fn a_key_of_another_kind_or_a_typo_names_its_line_and_the_keys_this_kind_takes() {
        let e = checked("[profiles.g]\nkind = \"github\"\nurl = \"https://h\"\norg_id = \"89\"\n").unwrap_err();
        assert!(e.to_string().contains("[profiles.g] org_id (line 4): a github profile has no key"), "{e}");
        assert!(e.hint.contains("own keys: none") && e.hint.contains("token_env"), "{}", e.hint);
        let e =
            checked("[profiles.t]\nkind = \"transactionlink\"\nurl = \"https://h\"\nadmin_rol = \"x\"\n").unwrap_err();
        assert!(e.hint.starts_with("did you mean admin_role?"), "{}", e.hint);
        assert!(e.hint.contains("admin_role, member_role"), "{}", e.hint);
        let e = checked("[profiles.g]\nkind = \"github\"\nurl = \"https://h/api/v3\"\ntokn_env = \"X\"\n").unwrap_err();
        assert!(e.to_string().contains("/etc/steward.toml: [profiles.g] tokn_env (line 4)"), "{e}");
        assert!(e.hint.starts_with("did you mean token_env?"), "{}", e.hint);
        let e = checked("[profiles.t]\nkind = \"travis\"\nurl = \"https://h\"\norg_id = 89\n").unwrap_err();
        assert!(
            e.to_string().contains("[profiles.t] org_id (line 4): ") && e.to_string().contains("text in double quotes"),
            "{e}"
        );
    }

    #[test]
    fn every_common_key_is_a_field_of_every_profile() {
        let text = "[profiles.x]\nkind = \"github\"\nurl = \"https://h\"\n";
        let config = crate::config::Config::parse(text, std::path::Path::new("c")).expect("parses");
        let p = &config.profiles["x"];
        assert!(p.settings.is_empty());
        for key in crate::config::COMMON_KEYS {
            let value = match *key {
                "kind" | "url" | "token_env" | "token_cmd" | "token" | "ca_file" | "link_origin" => "\"v\"",
                "insecure" => "true",
                "protected" => "[]",
                "rate_limit" => "1.0",
                _ => "1",
            };
            let text = format!("[profiles.x]\nkind = \"github\"\nurl = \"https://h\"\n{key} = {value}\n");
            let text = text.replacen(&format!("{key} = \"v\"\n"), "", usize::from(*key == "kind" || *key == "url"));
            let parsed: toml::Table = toml::from_str(&text).expect("toml");
            let p: crate::config::Profile = parsed["profiles"]["x"].clone().try_into().expect("reads");
            assert!(p.settings.is_empty(), "{key} landed in a kind's settings");
        }
    }
}
