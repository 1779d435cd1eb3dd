//! TransactionLink: organization users (seed 003, specs/transactionlink.*). The organization token (`tot_…`) is
//! sent raw in `Authorization`. Users are addressed by UUID; a login/email is resolved through the user list.
//! Suspend = terminate; unsuspend = reinstate with the role the user had, which `prepare` reads before the
//! termination so the audit log keeps it.

use super::model::{Raw, User};
use super::{unsupported, Action, Backend, ClientShape, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, HttpClient, Paging, Request};
use async_trait::async_trait;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;

/// What steward knows of this kind of service, for the registry (`backends::ALL`).
pub const KIND: super::Kind = super::Kind {
    name: "transactionlink",
    supported: SUPPORTED,
    client: CLIENT_SHAPE,
    words: &[
        ("terminate", "suspend"),
        ("reinstate", "unsuspend"),
        ("set_role", ""),
        ("update_profile", ""),
        ("roles", ""),
    ],
    check: super::check_settings::<Settings>,
    keys: super::keys_of::<Settings>,
    token_envs: &[],
    build: |client, profile, config, _extra_tokens| {
        let settings =
            super::settings::<Settings>(config).map_err(|k| ApiError::invalid(format!("{}: {}", k.key, k.message)))?;
        Ok(std::sync::Arc::new(TransactionLink::new(client, profile, settings)))
    },
    activity: super::ActivitySource::Nothing { why: "its user API records no sign-in or last-use date" },
};

/// A transactionlink profile's own keys: the role names `promote` and `demote` set.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_admin_role")]
    pub admin_role: String,
    #[serde(default = "default_member_role")]
    pub member_role: String,
}

impl super::KindSettings for Settings {}

fn default_admin_role() -> String {
    "admin".into()
}

fn default_member_role() -> String {
    "member".into()
}

pub const CLIENT_SHAPE: ClientShape = ClientShape {
    auth_prefix: "",
    default_headers: &[("accept", "application/json")],
    content_type: "application/json",
    error_message,
    // No published limit: a modest default that adapts to 429s like every other budget.
    token_value: super::token_as_is,
    default_rate_limit: Some(10.0),
    token_shapes: &[r"\btot_[A-Za-z0-9_\-]{8,}"],
    rate_limit_refusal: super::no_rate_limit_refusal,
};

const SUPPORTED: &[Op] = &[
    Op::Whoami,
    Op::ListUsers,
    Op::GetUser,
    Op::Suspend,
    Op::Unsuspend,
    Op::Promote,
    Op::Demote,
    Op::Reset2fa,
    Op::SetRole,
    Op::UpdateProfile,
    Op::Roles,
    Op::Api,
];

const PAGE_SIZE: usize = 100;

/// `{"fingerprint": "...", "errors": [{"code", "message"}]}`; support asks for the fingerprint, so it stays.
pub fn error_message(body: &Value) -> Option<String> {
    let errors = body.get("errors")?.as_array()?;
    let text: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            format!("{code}: {message}").trim_matches([':', ' ']).to_string()
        })
        .collect();
    let mut out = text.join("; ");
    if let Some(fp) = body.get("fingerprint").and_then(Value::as_str) {
        out.push_str(&format!(" (fingerprint {fp})"));
    }
    Some(out)
}

pub struct TransactionLink {
    http: HttpClient,
    profile: String,
    admin_role: String,
    member_role: String,
    /// role name → id, read once.
    roles: tokio::sync::OnceCell<Vec<Value>>,
    /// lower-cased id or email → the user, from the latest read (a bulk precheck, then the action).
    seen: Mutex<HashMap<String, Value>>,
    /// email → id, learned once (an id never changes).
    ids: Mutex<HashMap<String, String>>,
    /// `seen` holds the whole organization as listed since the last change: an email it lacks has no user.
    complete: std::sync::atomic::AtomicBool,
    /// Emails the latest listing showed on more than one user: lower-cased email → those users' ids.
    shared: Mutex<HashMap<String, Vec<String>>>,
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

impl TransactionLink {
    pub fn new(http: HttpClient, profile: &str, settings: Settings) -> Self {
        TransactionLink {
            http,
            profile: profile.to_string(),
            admin_role: settings.admin_role,
            member_role: settings.member_role,
            roles: tokio::sync::OnceCell::new(),
            seen: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            complete: std::sync::atomic::AtomicBool::new(false),
            shared: Mutex::new(HashMap::new()),
        }
    }

    fn user(&self, r: &Value) -> User {
        let text = |p: &str| r.pointer(p).and_then(Value::as_str).map(str::to_string);
        let name =
            [text("/profile/firstName"), text("/profile/lastName")].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let role_id = text("/roleId");
        let role_name = role_id.as_deref().and_then(|id| self.role_name(id));
        User {
            id: r.get("id").cloned().unwrap_or(Value::Null),
            login: text("/email").unwrap_or_default(),
            email: text("/email"),
            name: (!name.is_empty()).then_some(name),
            admin: role_name.as_deref().map(|n| n == self.admin_role || n == "owner"),
            // The documented schema shows no status; the live service's `status` is read when present.
            suspended: text("/status").map(|s| s.eq_ignore_ascii_case("TERMINATED")),
            last_active: text("/lastLoginDateTime").or_else(|| text("/profile/lastLoginDateTime")),
            kind: "transactionlink".into(),
            profile: self.profile.clone(),
            raw: Raw::Tree(r.clone()),
            extra: vec![
                ("role_id".into(), json!(role_id)),
                ("role".into(), json!(role_name)),
                ("title".into(), json!(text("/profile/title"))),
            ],
            unknown: &[],
        }
    }

    fn role_name(&self, id: &str) -> Option<String> {
        self.roles
            .get()?
            .iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            .and_then(|r| r.get("name")?.as_str().map(str::to_string))
    }

    async fn roles(&self) -> Result<&Vec<Value>, ApiError> {
        self.roles
            .get_or_try_init(|| async {
                let body =
                    self.http.send(&Request::new(Method::GET, "organizations/roles")).await.map_err(explain)?.body;
                Ok(body.as_array().cloned().unwrap_or_default())
            })
            .await
    }

    /// A role given as an id or a name, as its id.
    async fn role_id(&self, role: &str) -> Result<String, ApiError> {
        if is_uuid(role) {
            return Ok(role.to_string());
        }
        let roles = self.roles().await?;
        roles
            .iter()
            .find(|r| r.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(role)))
            .and_then(|r| r.get("id")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                let names: Vec<&str> = roles.iter().filter_map(|r| r.get("name")?.as_str()).collect();
                ApiError::invalid(format!("no role named {role:?} (roles: {})", names.join(", ")))
            })
    }

    async fn all_users(&self) -> Result<Vec<Value>, ApiError> {
        let req = Request::new(Method::GET, "organizations/users").query("page", 0).query("size", PAGE_SIZE);
        let paging = Paging::PageOfTotal { param: "page", items: "/content", number: "/number", total: "/totalPages" };
        self.http.list(req, paging).await.map_err(explain)
    }

    /// The user an id or an email names.
    async fn find(&self, target: &str) -> Result<Value, ApiError> {
        self.find_in(target, false).await
    }

    /// `find`; with `trust_listing`, an email absent from the listing `warm` just read is nobody's without
    /// listing again. Every other lookup lists again on a miss, so a user added since is found.
    async fn find_in(&self, target: &str, trust_listing: bool) -> Result<Value, ApiError> {
        let key = target.to_lowercase();
        let shared = || self.shared.lock().get(&key).cloned();
        let ambiguous = |ids: Vec<String>| {
            let who = ids.into_iter().map(|id| (target.to_string(), id)).collect();
            super::ambiguous(target, who, "name the user by its id")
        };
        if let Some(ids) = shared() {
            return Err(ambiguous(ids));
        }
        if let Some(u) = self.seen.lock().get(&key) {
            return Ok(u.clone());
        }
        let user = if is_uuid(target) {
            let path = format!("organizations/users/{}", segment(target));
            self.http.send(&Request::new(Method::GET, path)).await.map_err(explain)?.body
        } else {
            // One listing answers for every email in it: a job naming many people by email lists once.
            if !(trust_listing && self.complete.load(std::sync::atomic::Ordering::SeqCst)) {
                self.remember_all().await?;
            }
            if let Some(ids) = shared() {
                return Err(ambiguous(ids));
            }
            let listed = self.seen.lock().get(&key).cloned();
            listed.ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("no user with email {target:?} in this organization"))
                    .with_status(404)
            })?
        };
        self.seen.lock().insert(key, user.clone());
        Ok(user)
    }

    /// The organization's users `filter` asks for (`q` in email or name, `suspended`, `admin`), from one listing.
    async fn list_users(&self, filter: &Value) -> Result<Value, ApiError> {
        let q = filter.get("q").and_then(Value::as_str).map(str::to_lowercase);
        let suspended = filter.get("suspended").and_then(Value::as_bool);
        let admin = filter.get("admin").and_then(Value::as_bool);
        let users: Vec<Value> = self
            .all_users()
            .await?
            .iter()
            .map(|u| self.user(u).into_value())
            .filter(|u| {
                q.as_ref().is_none_or(|q| {
                    ["email", "name"]
                        .iter()
                        .any(|k| u.get(*k).and_then(Value::as_str).is_some_and(|v| v.to_lowercase().contains(q)))
                })
            })
            .filter(|u| suspended.is_none_or(|s| u.get("suspended").and_then(Value::as_bool) == Some(s)))
            .filter(|u| admin.is_none_or(|a| u.get("admin").and_then(Value::as_bool) == Some(a)))
            .collect();
        Ok(Value::Array(users))
    }

    /// Lists the organization and keeps each user under its email and its id.
    async fn remember_all(&self) -> Result<(), ApiError> {
        let users = self.all_users().await?;
        let mut by_email: HashMap<String, Vec<String>> = HashMap::new();
        let mut seen = self.seen.lock();
        for u in users {
            let id = u.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(email) = u.get("email").and_then(Value::as_str) {
                by_email.entry(email.to_lowercase()).or_default().push(id);
            }
            for key in ["email", "id"] {
                if let Some(k) = u.get(key).and_then(Value::as_str) {
                    seen.insert(k.to_lowercase(), u.clone());
                }
            }
        }
        by_email.retain(|_, ids| ids.len() > 1);
        *self.shared.lock() = by_email;
        self.complete.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The user changed: every name its remembered record is kept under is dropped.
    fn forget(&self, target: &str) {
        self.complete.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut seen = self.seen.lock();
        let id = seen.get(&target.to_lowercase()).and_then(|u| u.get("id").cloned());
        seen.remove(&target.to_lowercase());
        if let Some(id) = id {
            seen.retain(|_, u| u.get("id") != Some(&id));
        }
    }

    async fn id_of(&self, action: &Action) -> Result<String, ApiError> {
        let target = action.target()?;
        if is_uuid(target) {
            return Ok(target.to_string());
        }
        // An email's id does not change with the user's state: kept apart from the records a change forgets.
        if let Some(id) = self.ids.lock().get(&target.to_lowercase()) {
            return Ok(id.clone());
        }
        let u = self.find(target).await?;
        let id = u
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid("the user record has no id"))?;
        self.ids.lock().insert(target.to_lowercase(), id.clone());
        Ok(id)
    }

    /// A user-changing request; its answer (the user, or nothing) becomes the result.
    async fn change(&self, action: &Action, req: Request) -> Result<Value, ApiError> {
        let resp = self.http.send(&req).await.map_err(explain);
        self.forget(action.target.as_deref().unwrap_or_default());
        let resp = resp?;
        let mut out = if resp.body.is_object() { self.user(&resp.body).into_value() } else { json!({}) };
        if let Some(o) = out.as_object_mut() {
            o.insert("ok".into(), json!(true));
            o.insert("http_status".into(), json!(resp.status));
        }
        Ok(out)
    }

    async fn set_role(&self, action: &Action, role: &str) -> Result<Value, ApiError> {
        let (id, role_id) = (self.id_of(action).await?, self.role_id(role).await?);
        let req = Request::new(Method::PUT, format!("organizations/users/{}/role", segment(&id)))
            .json(json!({"roleId": role_id}));
        self.change(action, req).await
    }
}

/// 403 names the missing permission; 404 may also mean a token of another organization.
fn explain(e: ApiError) -> ApiError {
    match e.status {
        Some(403) => {
            let hint = if e.message.contains("can_reset_2fa") {
                "the organization token needs the can_reset_2fa permission"
            } else {
                "the organization token needs the can_manage_users permission (reset_2fa needs can_reset_2fa)"
            };
            e.with_hint(hint)
        }
        _ => e,
    }
}

/// "already terminated" / "not terminated" are the service saying nothing needs doing.
fn already(e: &ApiError) -> bool {
    e.status == Some(400) && (e.message.contains("ALREADY_TERMINATED") || e.message.contains("NOT_TERMINATED"))
}

#[async_trait]
impl Backend for TransactionLink {
    fn kind(&self) -> &'static str {
        "transactionlink"
    }

    fn supported(&self) -> &'static [Op] {
        SUPPORTED
    }

    fn base_url(&self) -> String {
        self.http.base_url().to_string()
    }

    /// The user and their MFA state (`profile.mfaEnabled`); TransactionLink lists no keys or tokens.
    async fn snapshot(&self, target: &str) -> Result<super::holdings::Snapshot, ApiError> {
        // From what `warm`/`snapshots` just read (one listing for everyone), not a fresh listing per person.
        let user = self.user(&self.find(target).await?).into_value();
        let mut snap = super::holdings::Snapshot::of_user(&user);
        snap.two_factor = user.pointer("/raw/profile/mfaEnabled").and_then(Value::as_bool);
        Ok(snap)
    }

    /// An account by email or id, from the remembered listing when `warm` read one (else `find` lists);
    /// addressed by its id.
    /// People sign in by email; there is no login (an id, a UUID, is the account's own).
    fn finds_by(&self, kind: super::IdKind) -> bool {
        kind == super::IdKind::Email
    }

    async fn lookup(&self, name: &str, _params: &Value) -> Result<Option<super::model::Account>, ApiError> {
        // A UUID is the same in any case (RFC 4122); TransactionLink writes them in lower case.
        let name = if is_uuid(name.trim()) { name.trim().to_ascii_lowercase() } else { name.to_string() };
        Ok(super::found(self.find_in(&name, true).await)?
            .map(|u| super::model::Account::of_user(&self.user(&u).into_value()).by_id()))
    }

    /// A UUID is an account's own id, in lower case.
    fn offline_account(&self, name: &str, _params: &Value) -> Option<super::model::Account> {
        let id = name.trim().to_ascii_lowercase();
        is_uuid(&id).then(|| super::model::Account {
            id: id.clone(),
            names: vec![name.trim().to_string()],
            address: id,
            ..Default::default()
        })
    }

    /// An MFA reset is applied when the record (read now) says MFA is off; the rest as every service does.
    async fn state(&self, op: Op, target: &str, params: &Value) -> Result<Option<bool>, ApiError> {
        if op != Op::Reset2fa {
            return super::account_state(self, op, target, params).await;
        }
        let account = super::resolve(self, target, params).await?;
        Ok(account.record.pointer("/raw/profile/mfaEnabled").and_then(Value::as_bool).map(|on| !on))
    }

    /// Suspension is the record's status; admin rights are its role, compared with the role promote/demote set.
    async fn state_of(
        &self,
        op: Op,
        account: &super::model::Account,
        _params: &Value,
    ) -> Result<Option<bool>, ApiError> {
        if !matches!(op, Op::Promote | Op::Demote) {
            return Ok(super::record_state(op, &account.record));
        }
        let want = if op == Op::Promote { &self.admin_role } else { &self.member_role };
        let want = self.role_id(want).await?;
        Ok(account.record.pointer("/raw/roleId").and_then(Value::as_str).map(|r| r == want))
    }

    /// Names given by email are found in one fresh listing of the organization, not one listing each.
    async fn warm(&self, names: &[String]) -> Result<(), ApiError> {
        for n in names {
            self.forget(n);
        }
        match names.iter().any(|n| !is_uuid(n)) {
            true => self.remember_all().await,
            false => Ok(()),
        }
    }

    /// Every account from one fresh listing of the organization (not one per email).
    async fn snapshots(&self, targets: &[String]) -> Vec<Result<super::holdings::Snapshot, ApiError>> {
        if let Err(e) = self.warm(targets).await {
            return targets.iter().map(|_| Err(e.clone())).collect();
        }
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            out.push(self.snapshot(t).await);
        }
        out
    }

    /// Terminate (steward records the role first, so reinstate gives it back) and reset MFA; never demote
    /// first, which would lose the role reinstatement restores.
    fn cascade(&self, snap: &super::holdings::Snapshot, wishes: &super::holdings::Wishes) -> super::holdings::Cascade {
        let wishes = super::holdings::Wishes { reset_2fa: true, ..wishes.clone() };
        let mut plan = super::holdings::standard_cascade(self, snap, &wishes);
        plan.steps.retain(|s| s.action.op != Op::Demote);
        plan
    }

    async fn prepare(&self, action: &Action) -> Result<Option<Value>, ApiError> {
        if action.op != Op::Suspend {
            return Ok(None);
        }
        // Terminating drops the role; keep it so an unsuspend can give it back.
        let u = self.find(action.target()?).await?;
        let role_id = u.get("roleId").and_then(Value::as_str).map(str::to_string);
        let _ = self.roles().await;
        let role = role_id.as_deref().and_then(|id| self.role_name(id));
        Ok(Some(json!({"previous_role_id": role_id, "previous_role": role})))
    }

    async fn identity(&self) -> Result<String, ApiError> {
        // An organization token has no user of its own: say so, and prove it works by reading the roles.
        self.roles().await?;
        Ok("(organization token)".to_string())
    }

    async fn settle(&self, action: &Action) -> Result<super::Outcome, ApiError> {
        match self.execute(action).await {
            Err(e) if matches!(action.op, Op::Suspend | Op::Unsuspend) && already(&e) => {
                Ok(super::Outcome::Already(e.message))
            }
            other => other.map(super::Outcome::Done),
        }
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        let _ = self.roles().await;
        match action.op {
            Op::Whoami => {
                let roles = self.roles().await?.clone();
                Ok(
                    json!({"login": "(organization token)", "admin": Value::Null, "kind": "transactionlink", "profile": self.profile, "roles": roles}),
                )
            }
            Op::Roles => Ok(Value::Array(self.roles().await?.clone())),
            Op::ListUsers => self.list_users(&action.params).await,
            Op::GetUser => {
                let target = action.target()?;
                self.forget(target);
                Ok(self.user(&self.find(target).await?).into_value())
            }
            Op::UpdateProfile => {
                let id = self.id_of(action).await?;
                let mut body = serde_json::Map::new();
                for (ours, theirs) in [("first_name", "firstName"), ("last_name", "lastName"), ("title", "title")] {
                    if let Some(v) = action.params.get(ours).or_else(|| action.params.get(theirs)) {
                        body.insert(theirs.into(), v.clone());
                    }
                }
                if body.is_empty() {
                    return Err(ApiError::invalid("update_profile needs at least one of first_name, last_name, title"));
                }
                let req = Request::new(Method::PUT, format!("organizations/users/{}/profile", segment(&id)))
                    .json(Value::Object(body));
                self.change(action, req).await
            }
            Op::SetRole => {
                let role = action
                    .param_str("role")
                    .ok_or_else(|| ApiError::invalid("set_role needs a role id or name: set_role(id, \"admin\")"))?;
                self.set_role(action, role).await
            }
            Op::Promote => self.set_role(action, &self.admin_role.clone()).await,
            Op::Demote => self.set_role(action, &self.member_role.clone()).await,
            Op::Suspend => {
                let id = self.id_of(action).await?;
                self.change(
                    action,
                    Request::new(Method::POST, format!("organizations/users/{}/terminate", segment(&id))),
                )
                .await
            }
            Op::Unsuspend => {
                let role =
                    action.param_str("role").or_else(|| action.param_str("previous_role_id")).ok_or_else(|| {
                        ApiError::invalid(
                            "steward did not record this user's role before termination, so it cannot give it back",
                        )
                        .with_hint("name the role: unsuspend(id, #{role: \"member\"}) or reinstate(id, \"member\")")
                    })?;
                let (id, role_id) = (self.id_of(action).await?, self.role_id(role).await?);
                let req = Request::new(Method::POST, format!("organizations/users/{}/reinstate", segment(&id)))
                    .json(json!({"roleId": role_id}));
                self.change(action, req).await
            }
            Op::Reset2fa => {
                let id = self.id_of(action).await?;
                self.change(
                    action,
                    Request::new(Method::POST, format!("organizations/users/{}/reset-mfa", segment(&id))),
                )
                .await
            }
            Op::Api => super::api(&self.http, action).await,
            other => Err(unsupported(self, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_code_message_and_fingerprint() {
        let body = json!({"fingerprint": "fp-1", "errors": [{"code": "FORBIDDEN", "message": "no can_reset_2fa"}]});
        assert_eq!(error_message(&body).as_deref(), Some("FORBIDDEN: no can_reset_2fa (fingerprint fp-1)"));
    }

    #[test]
    fn uuids_are_told_from_emails() {
        assert!(is_uuid("5e1d0000-0000-4000-8000-000000000001"));
        assert!(!is_uuid("ann@example.com"));
        assert!(!is_uuid("5e1d0000x0000-4000-8000-000000000001"));
    }
}
