//! Terraform Enterprise: the admin users API under `/api/v2` (JSON:API; seeds 002 and 004, specs/terraform.md).
//!
//! TFE acts on user ids (`user-…`) and has no single-user endpoint, so a login or email is resolved with
//! `GET /admin/users?q=…` (exactly one match required); the resolution is remembered for the action that follows.

mod teams;

use super::holdings::{self, Holding, HoldingKind, Snapshot};
use super::model::{Raw, User};
use super::{unsupported, Action, Backend, ClientShape, Op, UserPages};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, HttpClient, Paging, Request};
use crate::redact::SecretString;
use async_trait::async_trait;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;

/// What steward knows of this kind of service, for the registry (`backends::ALL`).
pub const KIND: super::Kind = super::Kind {
    name: "terraform",
    supported: SUPPORTED,
    client: CLIENT_SHAPE,
    words: &[
        ("grant_admin", "promote"),
        ("revoke_admin", "demote"),
        ("disable_two_factor", "reset_2fa"),
        ("impersonate", ""),
        ("unimpersonate", ""),
    ],
    check: super::check_settings::<Settings>,
    keys: super::keys_of::<Settings>,
    token_envs: &[("session cookie", "session_cookie_env"), ("csrf", "csrf_token_env")],
    build: |client, profile, _config, extra_tokens| {
        Ok(std::sync::Arc::new(Terraform::new(client, profile, Session::from_tokens(extra_tokens))))
    },
    activity: super::ActivitySource::Nothing { why: "its admin users API records no sign-in or last-use date" },
};

/// TFE's JSON:API paging: page numbers, with the page count in `meta.pagination` (so pages after the first are
/// asked for together).
pub(super) const USER_PAGING: Paging = Paging::Numbered {
    param: "page[number]",
    items: "/data",
    next: "/meta/pagination/next-page",
    pages: "/meta/pagination/total-pages",
};

/// A terraform profile's own keys. Impersonation needs a browser session: the environment variables holding
/// the `_atlas_session_data` cookie and the `X-CSRF-Token` of a signed-in site admin.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub session_cookie_env: Option<String>,
    pub csrf_token_env: Option<String>,
}

impl super::KindSettings for Settings {
    fn validate(&self) -> Result<(), super::KeyProblem> {
        match (&self.session_cookie_env, &self.csrf_token_env) {
            (Some(_), None) => Err(super::KeyProblem::new(
                "csrf_token_env",
                "a browser session needs its X-CSRF-Token too",
                "set csrf_token_env, or remove session_cookie_env",
            )),
            (None, Some(_)) => Err(super::KeyProblem::new(
                "session_cookie_env",
                "a browser session needs its cookie too",
                "set session_cookie_env, or remove csrf_token_env",
            )),
            _ => Ok(()),
        }
    }
}

pub const CLIENT_SHAPE: ClientShape = ClientShape {
    auth_prefix: "Bearer ",
    default_headers: &[("accept", "application/vnd.api+json")],
    content_type: "application/vnd.api+json",
    error_message,
    // TFE allows 30 requests/s per user; two thirds of it leaves room for the admin's other tools (go-tfe does the same).
    token_value: super::token_as_is,
    default_rate_limit: Some(20.0),
    token_shapes: &[r"\b[A-Za-z0-9]{8,}\.atlasv1\.[A-Za-z0-9_\-]{8,}"],
    rate_limit_refusal: super::no_rate_limit_refusal,
};

const SUPPORTED: &[Op] = &[
    Op::Whoami,
    Op::ListUsers,
    Op::GetUser,
    Op::DeleteUser,
    Op::Suspend,
    Op::Unsuspend,
    Op::Promote,
    Op::Demote,
    Op::Reset2fa,
    Op::ListTokens,
    Op::DeleteToken,
    Op::Impersonate,
    Op::Unimpersonate,
    Op::ListGroups,
    Op::Members,
    Op::AddToGroup,
    Op::RemoveFromGroup,
    Op::Api,
];

const PAGE_SIZE: usize = 100;

/// Above this many names, one listing of every user is cheaper than a search for each.
const WARM_FROM: usize = 3;

/// JSON:API errors: `{"errors":[{"status","title","detail"}]}` (status a string or a number).
pub fn error_message(body: &Value) -> Option<String> {
    let errors = body.get("errors")?.as_array()?;
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let title = e.get("title").and_then(Value::as_str).unwrap_or("");
            match e.get("detail").and_then(Value::as_str) {
                Some(d) if !title.is_empty() => format!("{title}: {d}"),
                Some(d) => d.to_string(),
                None => title.to_string(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A signed-in browser session, which impersonation needs (TFE refuses API tokens for it).
pub struct Session {
    cookie: SecretString,
    csrf: SecretString,
}

impl Session {
    /// The session from the profile's `session cookie` and `csrf` credentials, when it names both.
    pub fn from_tokens(tokens: Vec<(&'static str, SecretString)>) -> Option<Session> {
        let take = |purpose: &str| tokens.iter().find(|(p, _)| *p == purpose).map(|(_, t)| t.clone());
        take("session cookie").zip(take("csrf")).map(|(cookie, csrf)| Session { cookie, csrf })
    }
}

pub struct Terraform {
    http: HttpClient,
    profile: String,
    session: Option<Session>,
    /// login, email or id (lower-cased) → the user resource, from the latest search.
    resolved: Mutex<HashMap<String, Value>>,
    /// `resolved` holds every user as listed since the last change: a name it lacks has no user.
    complete: std::sync::atomic::AtomicBool,
}

impl Terraform {
    pub fn new(http: HttpClient, profile: &str, session: Option<Session>) -> Self {
        Terraform {
            http,
            profile: profile.to_string(),
            session,
            resolved: Mutex::new(HashMap::new()),
            complete: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn user(&self, resource: &Value) -> User {
        let attr = |k: &str| resource.pointer(&format!("/attributes/{k}"));
        let text = |k: &str| attr(k).and_then(Value::as_str).map(str::to_string);
        let organizations: Vec<Value> = resource
            .pointer("/relationships/organizations/data")
            .and_then(Value::as_array)
            .map(|orgs| orgs.iter().filter_map(|o| o.get("id").cloned()).collect())
            .unwrap_or_default();
        User {
            id: resource.get("id").cloned().unwrap_or(Value::Null),
            login: text("username").unwrap_or_default(),
            email: text("email"),
            name: None,
            admin: attr("is-admin").and_then(Value::as_bool),
            suspended: attr("is-suspended").and_then(Value::as_bool),
            last_active: None,
            kind: "terraform".into(),
            profile: self.profile.clone(),
            raw: Raw::Tree(resource.clone()),
            extra: vec![
                ("service_account".into(), attr("is-service-account").cloned().unwrap_or(Value::Null)),
                (
                    "two_factor".into(),
                    attr("two-factor").and_then(|t| t.get("enabled")).cloned().unwrap_or(Value::Null),
                ),
                ("organizations".into(), Value::Array(organizations)),
                ("avatar_url".into(), attr("avatar-url").cloned().unwrap_or(Value::Null)),
            ],
            unknown: &[],
        }
    }

    /// Every page of `GET /admin/users` with these query parameters, until `meta.pagination.next-page` is null.
    async fn list_resources(&self, query: &[(&str, String)]) -> Result<Vec<Value>, ApiError> {
        self.list_pages(query, PAGE_SIZE).await
    }

    async fn list_pages(&self, query: &[(&str, String)], page_size: usize) -> Result<Vec<Value>, ApiError> {
        let (req, paging) = Self::users_request(query, page_size);
        self.http.list(req, paging).await.map_err(not_admin_hint)
    }

    fn users_request(query: &[(&str, String)], page_size: usize) -> (Request, Paging) {
        let mut req = Request::new(Method::GET, "admin/users").query("page[size]", page_size).query("page[number]", 1);
        for (k, v) in query {
            req = req.query(k, v);
        }
        // An out-of-range page is 200 with no data, so only `next-page` ends the walk.
        (req, USER_PAGING)
    }

    /// The users `filter` asks for, page by page (TFE filters on the server).
    fn stream_users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(q) = filter.get("q").and_then(Value::as_str) {
            query.push(("q", q.to_string()));
        }
        for (key, param) in [("admin", "filter[admin]"), ("suspended", "filter[suspended]")] {
            if let Some(b) = filter.get(key).and_then(Value::as_bool) {
                query.push((param, b.to_string()));
            }
        }
        if filter.get("include").and_then(Value::as_str) == Some("organizations") {
            query.push(("include", "organizations".to_string()));
        }
        // `page_size` (1–100) is for tuning and tests; 100 is the most TFE is known to allow.
        let size =
            filter.get("page_size").and_then(Value::as_u64).map(|n| n.clamp(1, 100) as usize).unwrap_or(PAGE_SIZE);
        let (req, paging) = Self::users_request(&query, size);
        Box::pin(futures::stream::try_unfold(self.http.pages(req, paging, hold), move |mut pages| async move {
            let Some(raw) = pages.next_page().await.map_err(not_admin_hint)? else { return Ok(None) };
            Ok(Some((raw.iter().map(|r| self.user(r)).collect(), pages)))
        }))
    }

    async fn list_users(&self, filter: &Value) -> Result<Value, ApiError> {
        Ok(Value::Array(super::collect_users(self.stream_users(filter, crate::http::Hold::Whole)).await?))
    }

    /// The one user a login, email or id names (TFE's search matches usernames and emails, not ids). With
    /// `trust_listing`, a name absent from the listing `warm` just read is nobody's without another search; every
    /// other lookup searches on a miss, so a user created since is found.
    async fn lookup(&self, target: &str, trust_listing: bool) -> Result<Value, ApiError> {
        let key = target.to_lowercase();
        if let Some(r) = self.resolved.lock().get(&key) {
            return Ok(r.clone());
        }
        let is_id = target.starts_with("user-");
        if trust_listing && self.complete.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::new(ErrorKind::NotFound, format!("no user {target:?} on this Terraform Enterprise"))
                .with_status(404));
        }
        let candidates = if is_id {
            // An id is found only in the whole listing: keep every record of it, so a job by ids lists once.
            let all = self.list_resources(&[]).await?;
            let mut kept = self.resolved.lock();
            for r in &all {
                if let Some(id) = r.get("id").and_then(Value::as_str) {
                    kept.insert(id.to_lowercase(), r.clone());
                }
            }
            all
        } else {
            self.list_resources(&[("q", target.to_string())]).await?
        };
        let matches: Vec<&Value> = candidates
            .iter()
            .filter(|r| {
                let attr =
                    |k: &str| r.pointer(&format!("/attributes/{k}")).and_then(Value::as_str).map(str::to_lowercase);
                r.get("id").and_then(Value::as_str) == Some(target)
                    || attr("username") == Some(key.clone())
                    || attr("email") == Some(key.clone())
            })
            .collect();
        match matches.as_slice() {
            [one] => {
                let r = (*one).clone();
                self.resolved.lock().insert(key, r.clone());
                Ok(r)
            }
            [] => Err(ApiError::new(ErrorKind::NotFound, format!("no user {target:?} on this Terraform Enterprise"))
                .with_status(404)
                .with_hint(
                    "search by username, email or user id; a token that is not a site admin's also sees nobody",
                )),
            many => {
                let text = |r: &Value, p: &str| r.pointer(p).and_then(Value::as_str).unwrap_or("?").to_string();
                let who = many.iter().map(|r| (text(r, "/attributes/username"), text(r, "/id"))).collect();
                Err(super::ambiguous(target, who, "name the user by its user id"))
            }
        }
    }

    async fn id_of(&self, action: &Action) -> Result<String, ApiError> {
        // A change comes addressed by the id dispatch resolved: used as it is, with no second read.
        let target = action.target()?;
        if target.starts_with("user-") {
            return Ok(target.to_string());
        }
        let r = self.lookup(target, false).await?;
        r.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid("the user record has no id"))
    }

    /// `POST /admin/users/:id/actions/<name>`: no body; 400 means the user already is in that state.
    async fn user_action(&self, action: &Action, name: &str) -> Result<Value, ApiError> {
        let id = self.id_of(action).await?;
        let req = Request::new(Method::POST, format!("admin/users/{}/actions/{name}", segment(&id)));
        let resp = self.http.send(&req).await.map_err(|e| {
            self.forget(action);
            not_admin_hint(e)
        })?;
        self.forget(action);
        let mut user = resp.body.get("data").map(|d| self.user(d).into_value()).unwrap_or_else(|| json!({}));
        if let Some(o) = user.as_object_mut() {
            o.insert("http_status".into(), json!(resp.status));
            o.insert("ok".into(), json!(true));
        }
        Ok(user)
    }

    /// The state changed, so the remembered resource is stale, under every name it was remembered by.
    fn forget(&self, action: &Action) {
        self.complete.store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = &action.target {
            let mut kept = self.resolved.lock();
            let id = kept.remove(&t.to_lowercase()).and_then(|r| r.get("id").cloned()).unwrap_or(json!(t));
            kept.retain(|_, r| r.get("id") != Some(&id));
        }
    }

    /// Every user API token on the installation (`GET /admin/user-tokens`, site admins only), all pages.
    async fn user_tokens(&self) -> Result<Vec<Value>, ApiError> {
        let req =
            Request::new(Method::GET, "admin/user-tokens").query("page[size]", PAGE_SIZE).query("page[number]", 1);
        let paging = USER_PAGING;
        self.http.list(req, paging).await.map_err(not_admin_hint)
    }

    /// A token resource as steward shows it: id, owner, description and dates (TFE never returns the secret).
    fn token(resource: &Value) -> Value {
        let attr = |k: &str| resource.pointer(&format!("/attributes/{k}")).cloned().unwrap_or(Value::Null);
        json!({
            "id": resource.get("id").cloned().unwrap_or(Value::Null),
            "user_id": resource.pointer("/relationships/user/data/id").cloned().unwrap_or(Value::Null),
            "description": attr("description"),
            "created_at": attr("created-at"),
            "last_used_at": attr("last-used-at"),
            "expired_at": attr("expired-at"),
        })
    }

    fn holdings_of(user_id: &str, tokens: &[Value]) -> Vec<Holding> {
        tokens
            .iter()
            .map(Self::token)
            .filter(|t| t["user_id"].as_str() == Some(user_id))
            .map(|t| Holding {
                kind: HoldingKind::Token,
                id: t["id"].as_str().unwrap_or_default().to_string(),
                title: t["description"].as_str().unwrap_or("(no description)").to_string(),
                fingerprint: None,
                created: t["created_at"].as_str().map(str::to_string),
                last_used: t["last_used_at"].as_str().map(str::to_string),
            })
            .collect()
    }

    async fn impersonation(&self, action: &Action) -> Result<Value, ApiError> {
        let Some(session) = &self.session else {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!("{} on Terraform Enterprise needs a signed-in browser session; TFE refuses API tokens for it", action.op.name()),
            )
            .with_hint("set session_cookie_env and csrf_token_env in the profile to the variables holding the _atlas_session_data cookie and X-CSRF-Token of a site admin's session"));
        };
        let req = match action.op {
            Op::Impersonate => {
                let reason = action.param_str("reason").filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                    ApiError::invalid(
                        "impersonate needs a reason (TFE records it): impersonate(\"alice\", \"ticket 1234\")",
                    )
                })?;
                let id = self.id_of(action).await?;
                Request::new(Method::POST, format!("admin/users/{}/actions/impersonate", segment(&id)))
                    .json(json!({"reason": reason}))
            }
            _ => Request::new(Method::POST, "admin/users/actions/unimpersonate"),
        };
        let cookie = SecretString::from(format!(
            "_atlas_session_data={}",
            crate::redact::ExposeSecret::expose_secret(&session.cookie)
        ));
        let req = req.secret_header("cookie", cookie).secret_header("x-csrf-token", session.csrf.clone());
        let resp = self.http.send(&req).await.map_err(not_admin_hint)?;
        Ok(json!({"ok": true, "op": action.op.name(), "target": action.target, "http_status": resp.status}))
    }
}

/// TFE answers 404 both for an unknown user and for a token that is not a site admin's: say both.
fn not_admin_hint(e: ApiError) -> ApiError {
    if e.status == Some(404) {
        e.with_hint("either there is no such user, or the token is not a site administrator's (TFE hides the admin API from others)")
    } else {
        e
    }
}

/// TFE's 400 on a user action (suspend, unsuspend, grant/revoke admin, disable 2FA) means "already in that state".
fn already(op: Op, e: &ApiError) -> bool {
    e.status == Some(400) && matches!(op, Op::Suspend | Op::Unsuspend | Op::Promote | Op::Demote | Op::Reset2fa)
}

#[async_trait]
impl Backend for Terraform {
    fn kind(&self) -> &'static str {
        "terraform"
    }

    fn supported(&self) -> &'static [Op] {
        SUPPORTED
    }

    fn base_url(&self) -> String {
        self.http.base_url().to_string()
    }

    async fn snapshot(&self, target: &str) -> Result<Snapshot, ApiError> {
        let mut all = self.snapshots(&[target.to_string()]).await;
        all.pop().unwrap_or_else(|| Err(ApiError::invalid("no snapshot")))
    }

    /// An account by login, email or id, trusting the listing `warm` read for a job (see `lookup`); addressed
    /// by its id, as every admin path takes it.
    async fn lookup(&self, name: &str, _params: &Value) -> Result<Option<super::model::Account>, ApiError> {
        Ok(super::found(self.lookup(name, true).await)?
            .map(|r| super::model::Account::of_user(&self.user(&r).into_value()).by_id()))
    }

    /// A team, by `org/team` or its id, is its id.
    async fn group_id(&self, name: &str) -> Result<String, ApiError> {
        self.team_id(name).await
    }

    async fn members_of(
        &self,
        group: &str,
        each: &mut (dyn FnMut(super::model::Member) + Send),
    ) -> Result<(), ApiError> {
        self.each_member(group, each).await
    }

    /// A membership is the team's user list, read now; the rest from the user's record.
    async fn state_of(
        &self,
        op: Op,
        account: &super::model::Account,
        params: &Value,
    ) -> Result<Option<bool>, ApiError> {
        match op {
            Op::AddToGroup | Op::RemoveFromGroup => self.in_team(op, &account.id, params).await,
            _ => Ok(super::record_state(op, &account.record)),
        }
    }

    /// A user id (`user-…`) is the account's own id, as every admin path takes it.
    fn offline_account(&self, name: &str, _params: &Value) -> Option<super::model::Account> {
        let id = name.trim();
        (id.starts_with("user-") && id.len() > 5 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then(
            || super::model::Account {
                id: id.to_string(),
                names: vec![id.to_string()],
                address: id.to_string(),
                ..Default::default()
            },
        )
    }

    /// A user API token's owner, from the installation's listing of them.
    async fn owner_of(&self, action: &Action) -> Result<String, ApiError> {
        let target = action.target()?.trim();
        let listed = self.user_tokens().await?;
        let token = listed.iter().find(|t| t.get("id").and_then(Value::as_str) == Some(target)).ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no user API token {target:?} on this Terraform Enterprise"))
                .with_status(404)
        })?;
        Self::token(token)["user_id"].as_str().map(str::to_string).ok_or_else(|| {
            ApiError::invalid(format!("the server lists token {target} with no owner; nothing was sent"))
        })
    }

    /// Many names are found in one listing of every user (pages of 100) rather than one search each.
    async fn warm(&self, names: &[String]) -> Result<(), ApiError> {
        let mut kept = self.resolved.lock().clone();
        for n in names {
            kept.remove(&n.to_lowercase());
        }
        if names.len() <= WARM_FROM {
            // Those names are read afresh by search: the rest of the listing no longer speaks for everyone.
            self.complete.store(false, std::sync::atomic::Ordering::SeqCst);
            *self.resolved.lock() = kept;
            return Ok(());
        }
        for r in self.list_resources(&[]).await? {
            let attr = |k: &str| r.pointer(&format!("/attributes/{k}")).and_then(Value::as_str).map(str::to_lowercase);
            for key in [r.get("id").and_then(Value::as_str).map(str::to_lowercase), attr("username"), attr("email")]
                .into_iter()
                .flatten()
            {
                kept.insert(key, r.clone());
            }
        }
        *self.resolved.lock() = kept;
        self.complete.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// One listing of every user token for all the accounts, then each account's record (2FA included).
    async fn snapshots(&self, targets: &[String]) -> Vec<Result<Snapshot, ApiError>> {
        if let Err(e) = self.warm(targets).await {
            return targets.iter().map(|_| Err(e.clone())).collect();
        }
        let tokens = match self.user_tokens().await {
            Ok(tokens) => tokens,
            Err(e) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            out.push(holdings::user_snapshot(self, t).await.map(|mut snap| {
                let id = snap.user.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                snap.holdings = Self::holdings_of(&id, &tokens);
                snap.two_factor = snap.user.get("two_factor").and_then(Value::as_bool);
                snap
            }));
        }
        out
    }

    async fn state(&self, op: Op, target: &str, params: &Value) -> Result<Option<bool>, ApiError> {
        if op == Op::DeleteToken {
            let listed = self.user_tokens().await?;
            return Ok(Some(!listed.iter().any(|t| t.get("id").and_then(Value::as_str) == Some(target))));
        }
        super::account_state(self, op, target, params).await
    }

    async fn settle(&self, action: &Action) -> Result<super::Outcome, ApiError> {
        match self.execute(action).await {
            Err(e) if already(action.op, &e) => Ok(super::Outcome::Already(e.message)),
            other => other.map(super::Outcome::Done),
        }
    }

    fn users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        self.stream_users(filter, hold)
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        match action.op {
            Op::Whoami => {
                let body = self.http.send(&Request::new(Method::GET, "account/details")).await?.body;
                Ok(self.user(body.get("data").unwrap_or(&Value::Null)).into_value())
            }
            Op::ListUsers => self.list_users(&action.params).await,
            Op::GetUser => Ok(self.user(&self.lookup(action.target()?, false).await?).into_value()),
            Op::DeleteUser => {
                let id = self.id_of(action).await?;
                let resp = self
                    .http
                    .send(&Request::new(Method::DELETE, format!("admin/users/{}", segment(&id))))
                    .await
                    .map_err(|e| {
                        if e.status == Some(422) {
                            let hint = "give those organizations another owner (or delete them), then delete the user";
                            ApiError { kind: ErrorKind::Conflict, ..e }.with_hint(hint)
                        } else {
                            not_admin_hint(e)
                        }
                    })?;
                self.forget(action);
                Ok(
                    json!({"ok": true, "op": "delete_user", "target": action.target, "id": id, "http_status": resp.status}),
                )
            }
            Op::ListGroups => self.list_teams().await,
            Op::Members => {
                let mut out = Vec::new();
                self.each_member(&super::group_of(action)?, &mut |m| {
                    out.push(json!({"id": m.id, "login": m.login, "profile": self.profile}))
                })
                .await?;
                Ok(Value::Array(out))
            }
            Op::AddToGroup | Op::RemoveFromGroup => self.set_team_membership(action).await,
            Op::Suspend => self.user_action(action, "suspend").await,
            Op::Unsuspend => self.user_action(action, "unsuspend").await,
            Op::Promote => self.user_action(action, "grant_admin").await,
            Op::Demote => self.user_action(action, "revoke_admin").await,
            Op::Reset2fa => self.user_action(action, "disable_two_factor").await,
            Op::ListTokens => Ok(Value::Array(self.user_tokens().await?.iter().map(Self::token).collect())),
            Op::DeleteToken => {
                let id = action.target()?;
                let resp = self
                    .http
                    .send(&Request::new(Method::DELETE, format!("admin/user-tokens/{}", segment(id))))
                    .await
                    .map_err(not_admin_hint)?;
                Ok(json!({"ok": true, "op": "delete_token", "target": id, "http_status": resp.status}))
            }
            Op::Impersonate | Op::Unimpersonate => self.impersonation(action).await,
            Op::Api => super::api(&self.http, action).await,
            other => Err(unsupported(self, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_api_errors_read_with_string_or_number_status() {
        let body = json!({"errors": [{"status": 429, "title": "Too many requests", "detail": "30 per second"}]});
        assert_eq!(error_message(&body).as_deref(), Some("Too many requests: 30 per second"));
        assert_eq!(
            error_message(&json!({"errors": [{"status": "404", "title": "not found"}]})).as_deref(),
            Some("not found")
        );
        assert_eq!(error_message(&json!({"message": "x"})), None);
    }

    #[test]
    fn a_400_on_an_action_is_already_in_that_state() {
        let e = ApiError::from_response(400, Some("User is already suspended.".into()));
        assert!(already(Op::Suspend, &e));
        assert!(!already(Op::DeleteUser, &e), "a 400 elsewhere is an error");
        assert!(!already(Op::Suspend, &ApiError::from_response(404, None)));
    }
}
