//! Matrix Synapse: the homeserver admin API (`/_synapse/admin/…`), as observed on Synapse 1.163.2
//! (specs/synapse-and-prism.md). Users are Matrix ids (`@alice:example.org`); a bare `alice` means a local user.
//! Traps handled here: `creation_ts` is ms in lists and s in the single GET; `suspended` is only in the single GET;
//! whois answers 200 for users that do not exist.

use super::model::{Raw, User};
use super::{unsupported, Action, Backend, ClientShape, Op, UserPages};
use crate::http::error::ApiError;
use crate::http::{segment, HttpClient, Paging, Request};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};

mod rooms;

/// What steward knows of this kind of service, for the registry (`backends::ALL`).
pub const KIND: super::Kind = super::Kind {
    name: "synapse",
    supported: SUPPORTED,
    client: CLIENT_SHAPE,
    words: &[],
    check: super::check_settings::<super::NoSettings>,
    keys: super::keys_of::<super::NoSettings>,
    token_envs: &[],
    build: |client, profile, _config, _extra_tokens| Ok(std::sync::Arc::new(Synapse::new(client, profile))),
    activity: super::ActivitySource::Seen {
        what: "last_seen_ts: the last request from any of the user's devices",
        misses: None,
    },
};

pub const CLIENT_SHAPE: ClientShape = ClientShape {
    auth_prefix: "Bearer ",
    default_headers: &[("accept", "application/json")],
    content_type: "application/json",
    error_message,
    token_value: super::token_as_is,
    // The admin API is not rate limited; Synapse's own M_LIMIT_EXCEEDED answers are obeyed when they come.
    default_rate_limit: None,
    token_shapes: &[r"\bsyt_[A-Za-z0-9_\-]{8,}"],
    rate_limit_refusal: super::no_rate_limit_refusal,
};

const SUPPORTED: &[Op] = &[
    Op::Whoami,
    Op::ListUsers,
    Op::GetUser,
    Op::CreateUser,
    Op::DeleteUser,
    Op::Suspend,
    Op::Unsuspend,
    Op::Promote,
    Op::Demote,
    Op::Activity,
    Op::ListSessions,
    Op::DeleteSession,
    Op::ListGroups,
    Op::Members,
    Op::AddToGroup,
    Op::RemoveFromGroup,
    Op::Api,
];

const PAGE: usize = 100;
/// Single-user reads in flight when a list needs each user's own record.
/// `from` is an offset into the list and `total` its length (so pages after the first are asked for together);
/// `next_token` is a string, and absent (not null) on the last page.
const USER_PAGING: Paging = Paging::Offsets { param: "from", items: "/users", next: "/next_token", total: "/total" };

const DETAIL_CONCURRENCY: usize = 8;

/// `{"errcode": "M_…", "error": "…"}`.
pub fn error_message(body: &Value) -> Option<String> {
    let code = body.get("errcode").and_then(Value::as_str);
    let text = body.get("error").and_then(Value::as_str);
    match (code, text) {
        (Some(c), Some(t)) => Some(format!("{c}: {t}")),
        (Some(c), None) => Some(c.to_string()),
        (None, Some(t)) => Some(t.to_string()),
        _ => None,
    }
}

pub struct Synapse {
    http: HttpClient,
    profile: String,
    /// The server name bare localparts belong to, from the token's own user id.
    server_name: tokio::sync::OnceCell<String>,
}

fn ms_to_rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

impl Synapse {
    pub fn new(http: HttpClient, profile: &str) -> Self {
        Synapse { http, profile: profile.to_string(), server_name: tokio::sync::OnceCell::new() }
    }

    async fn me(&self) -> Result<String, ApiError> {
        let body = self.http.send(&Request::new(Method::GET, "_matrix/client/v3/account/whoami")).await?.body;
        body.get("user_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid("whoami returned no user_id"))
    }

    /// This homeserver's name (the part after `:` in its users' ids), from the token's own id, asked once.
    async fn server_name(&self) -> Result<&str, ApiError> {
        let server = self
            .server_name
            .get_or_try_init(|| async {
                let me = self.me().await?;
                Ok::<_, ApiError>(me.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default())
            })
            .await?;
        Ok(server.as_str())
    }

    /// `alice` or `@alice` → `@alice:<server>`; a full Matrix id is kept (`invalid_target` checked the grammar).
    async fn user_id(&self, target: &str) -> Result<String, ApiError> {
        if let Some(email) = super::email_of(target) {
            return self.user_of_email(&email).await?.ok_or_else(|| {
                ApiError::new(crate::error::ErrorKind::NotFound, format!("no user has the email {email} here"))
                    .with_status(404)
            });
        }
        match MatrixName::parse(target) {
            Some(MatrixName::Full(id)) => Ok(id.to_string()),
            Some(MatrixName::Local(local)) => Ok(format!("@{local}:{}", self.server_name().await?)),
            None => Err(ApiError::invalid(format!("{target:?} is not a Matrix user id"))),
        }
    }

    /// The Matrix id of the account an email is bound to (Synapse stores emails in lower case), if any.
    async fn user_of_email(&self, email: &str) -> Result<Option<String>, ApiError> {
        let path = format!("_synapse/admin/v1/threepid/email/users/{}", segment(email));
        match self.http.send(&Request::new(Method::GET, path)).await {
            Ok(r) => Ok(r.body.get("user_id").and_then(Value::as_str).map(str::to_string)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A user record; `created_in_seconds` because the single GET says seconds where lists say milliseconds.
    fn user(&self, u: &Value, created_in_seconds: bool) -> User {
        let text = |k: &str| u.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let id = text("name").unwrap_or_default();
        let email = u
            .get("threepids")
            .and_then(Value::as_array)
            .and_then(|t| t.iter().find(|p| p.get("medium").and_then(Value::as_str) == Some("email")))
            .and_then(|p| p.get("address").and_then(Value::as_str))
            .map(str::to_string);
        let flag = |k: &str| u.get(k).and_then(|v| v.as_bool().or_else(|| v.as_i64().map(|n| n != 0)));
        let created =
            u.get("creation_ts").and_then(Value::as_i64).map(|t| if created_in_seconds { t * 1000 } else { t });
        User {
            id: json!(id),
            login: id.clone(),
            email,
            name: text("displayname"),
            admin: flag("admin"),
            suspended: flag("suspended"),
            last_active: u.get("last_seen_ts").and_then(Value::as_i64).and_then(ms_to_rfc3339),
            kind: "synapse".into(),
            profile: self.profile.clone(),
            raw: Raw::Tree(u.clone()),
            extra: vec![
                ("deactivated".into(), json!(flag("deactivated"))),
                ("locked".into(), json!(flag("locked"))),
                ("created_at".into(), json!(created.and_then(ms_to_rfc3339))),
            ],
            unknown: &[],
        }
    }

    async fn get_raw(&self, id: &str) -> Result<Value, ApiError> {
        let req = Request::new(Method::GET, format!("_synapse/admin/v2/users/{}", segment(id)));
        Ok(self.http.send(&req).await.map_err(|e| not_found(e, id))?.body)
    }

    /// Every page of the user list: `from`/`limit`, until `next_token` is absent.
    async fn list_raw(&self, filter: &Value, order_by: Option<(&str, &str)>) -> Result<Vec<Value>, ApiError> {
        let mut out = self.http.list(Self::users_request(filter, order_by), USER_PAGING).await?;
        Self::keep_admins_asked(&mut out, filter);
        Ok(out)
    }

    fn users_request(filter: &Value, order_by: Option<(&str, &str)>) -> Request {
        // v2 leaves deactivated users out unless asked; v3 reads `deactivated` as "only these".
        let deactivated = filter.get("deactivated").and_then(Value::as_bool);
        let version = if deactivated.is_some() { "v3" } else { "v2" };
        let mut req =
            Request::new(Method::GET, format!("_synapse/admin/{version}/users")).query("from", 0).query("limit", PAGE);
        let guests = filter.get("guests").and_then(Value::as_bool).unwrap_or(false);
        req = req.query("guests", guests);
        if let Some(d) = deactivated {
            req = req.query("deactivated", d);
        }
        if let Some(q) = filter.get("q").and_then(Value::as_str) {
            req = req.query("name", q);
        }
        if filter.get("admin").and_then(Value::as_bool) == Some(true) {
            req = req.query("admins", true);
        }
        if let Some((key, dir)) = order_by {
            req = req.query("order_by", key).query("dir", dir);
        }
        req
    }

    /// `admins=true` is a server filter; "not an admin" is not, so it is applied here.
    fn keep_admins_asked(users: &mut Vec<Value>, filter: &Value) {
        if filter.get("admin").and_then(Value::as_bool) == Some(false) {
            users.retain(|u| {
                u.get("admin").and_then(|v| v.as_bool().or_else(|| v.as_i64().map(|n| n != 0))) != Some(true)
            });
        }
    }

    /// The users `filter` asks for, page by page; a `suspended` filter reads each user's own record.
    fn stream_users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        let pages = self.http.pages(Self::users_request(filter, None), USER_PAGING, hold);
        Box::pin(stream::try_unfold(pages, move |mut pages| async move {
            let Some(mut raw) = pages.next_page().await? else { return Ok(None) };
            Self::keep_admins_asked(&mut raw, filter);
            Ok(Some((self.page_of_users(raw, filter).await?, pages)))
        }))
    }

    async fn page_of_users(&self, raw: Vec<Value>, filter: &Value) -> Result<Vec<User>, ApiError> {
        let Some(wanted) = filter.get("suspended").and_then(Value::as_bool) else {
            return Ok(raw.iter().map(|u| self.user(u, false)).collect());
        };
        // `suspended` is only in each user's own record: read them, a few at a time.
        let ids: Vec<String> =
            raw.iter().filter_map(|u| u.get("name").and_then(Value::as_str).map(str::to_string)).collect();
        let full: Vec<Result<Value, ApiError>> = stream::iter(ids)
            .map(|id| async move { self.get_raw(&id).await })
            .buffered(DETAIL_CONCURRENCY)
            .collect()
            .await;
        let mut users = Vec::new();
        for u in full {
            let u = u?;
            if u.get("suspended").and_then(Value::as_bool).unwrap_or(false) == wanted {
                users.push(self.user(&u, true));
            }
        }
        Ok(users)
    }

    async fn list_users(&self, filter: &Value) -> Result<Value, ApiError> {
        Ok(Value::Array(super::collect_users(self.stream_users(filter, crate::http::Hold::Whole)).await?))
    }

    /// `activity(#{since, status})`: users by last seen; `activity(#{user})`: one user's sessions (whois).
    async fn activity(&self, opts: &Value) -> Result<Value, ApiError> {
        if let Some(target) = opts.get("user").and_then(Value::as_str) {
            let id = self.user_id(target).await?;
            // whois answers 200 for a user that does not exist: ask for the user first.
            let user = self.get_raw(&id).await?;
            let whois = self
                .http
                .send(&Request::new(Method::GET, format!("_synapse/admin/v1/whois/{}", segment(&id))))
                .await?
                .body;
            let connections: Vec<Value> = whois
                .get("devices")
                .and_then(Value::as_object)
                .map(|d| {
                    d.iter()
                        .flat_map(|(device, v)| {
                            let sessions = v.get("sessions").and_then(Value::as_array).cloned().unwrap_or_default();
                            sessions.into_iter().flat_map(move |s| {
                                let device = device.clone();
                                s.get("connections").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().map(move |c| {
                                    json!({"device": device, "ip": c.get("ip"), "user_agent": c.get("user_agent"),
                                           "last_seen": c.get("last_seen").and_then(Value::as_i64).and_then(ms_to_rfc3339)})
                                })
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut out = self.user(&user, true).into_value();
            out["connections"] = Value::Array(connections);
            return Ok(out);
        }
        let query = super::ActivityQuery::read(opts)?;
        let raw = self.list_raw(opts, Some(("last_seen_ts", "b"))).await?;
        let users = raw
            .iter()
            .filter(|u| {
                let seen =
                    u.get("last_seen_ts").and_then(Value::as_i64).and_then(chrono::DateTime::from_timestamp_millis);
                query.wants(seen)
            })
            .map(|u| self.user(u, false).into_value())
            .collect();
        Ok(Value::Array(users))
    }

    /// A user's devices (each a logged-in session with its access token): `GET …/users/<id>/devices`.
    async fn devices(&self, user_id: &str) -> Result<Vec<Value>, ApiError> {
        let req = Request::new(Method::GET, format!("_synapse/admin/v2/users/{}/devices", segment(user_id)));
        let body = self.http.send(&req).await.map_err(|e| not_found(e, user_id))?.body;
        Ok(body.get("devices").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    async fn change(&self, action: &Action, req: Request) -> Result<Value, ApiError> {
        let id = action.target.clone().unwrap_or_default();
        let resp = self.http.send(&req).await.map_err(|e| not_found(e, &id))?;
        Ok(json!({"ok": true, "op": action.op.name(), "target": action.target, "http_status": resp.status}))
    }
}

fn not_found(e: ApiError, id: &str) -> ApiError {
    if e.status == Some(404) {
        ApiError { message: format!("no user {id} on this homeserver ({})", e.message), ..e }
    } else if e.status == Some(403) {
        e.with_hint("the token must belong to a server admin (synapse: `admin: true`)")
    } else {
        e
    }
}

/// A name as a Matrix user: a full id (`@alice:example.org`) or a localpart (`alice`, `@alice`).
#[derive(Debug, PartialEq)]
enum MatrixName<'a> {
    Full(&'a str),
    Local(&'a str),
}

impl<'a> MatrixName<'a> {
    /// The name's form, or `None` when no Matrix user can have it (`@@alice`, `a:b` without `@`, spaces).
    fn parse(name: &'a str) -> Option<MatrixName<'a>> {
        let name = name.trim();
        let local_ok =
            |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_graphic() && !matches!(c, ':' | '@' | '/'));
        match name.strip_prefix('@') {
            Some(rest) => match rest.split_once(':') {
                Some((local, server)) => (local_ok(local)
                    && !server.is_empty()
                    && server.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '@' | '/')))
                .then_some(MatrixName::Full(name)),
                None => local_ok(rest).then_some(MatrixName::Local(rest)),
            },
            None => local_ok(name).then_some(MatrixName::Local(name)),
        }
    }
}

#[async_trait]
impl Backend for Synapse {
    fn kind(&self) -> &'static str {
        "synapse"
    }

    /// `delete_user` is Synapse's deactivation (`_synapse/admin/v1/deactivate`).
    fn deletion_deactivates(&self) -> bool {
        true
    }

    fn supported(&self) -> &'static [Op] {
        SUPPORTED
    }

    fn base_url(&self) -> String {
        self.http.base_url().to_string()
    }

    async fn identity(&self) -> Result<String, ApiError> {
        self.me().await
    }

    /// `@alice:server`, `@alice` and `alice` are one Matrix user here; a user of another server is nobody here.
    fn invalid_target(&self, target: &str) -> Option<String> {
        (MatrixName::parse(target).is_none() && super::email_of(target).is_none()).then(|| {
            format!(
                "{target:?} is not a Matrix user id (@localpart:server, or a localpart: no second @, no : in it, no \
                 spaces or control characters) nor an email"
            )
        })
    }

    /// A Matrix account, read by its full id (an email is looked up among the accounts' third-party ids first);
    /// it answers to that id and to its localpart, each without case (Synapse keeps localparts lower-case).
    async fn lookup(&self, name: &str, _params: &Value) -> Result<Option<super::model::Account>, ApiError> {
        let id = match super::email_of(name) {
            Some(email) => match self.user_of_email(&email).await? {
                Some(id) => id,
                None => return Ok(None),
            },
            None => self.user_id(name).await?,
        };
        if id.split_once(':').map(|(_, server)| server) != Some(self.server_name().await?) {
            return Ok(None);
        }
        let raw = match self.get_raw(&id).await {
            Ok(raw) => raw,
            // Synapse answers 404 for no such user, 400 for an id it will not look up.
            Err(e) if matches!(e.status, Some(404 | 400)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut account = super::model::Account::of_user(&self.user(&raw, true).into_value()).by_id();
        if let Some(local) = account.id.strip_prefix('@').and_then(|id| id.split(':').next()) {
            account.names.push(local.to_string());
        }
        Ok(Some(account))
    }

    /// A room named by alias or by its one name is its room id.
    async fn group_id(&self, name: &str) -> Result<String, ApiError> {
        self.room_id(name).await
    }

    /// A membership is in place when the room (read now) lists the account as joined; the rest as every service
    /// reads it.
    async fn state_of(
        &self,
        op: Op,
        account: &super::model::Account,
        params: &Value,
    ) -> Result<Option<bool>, ApiError> {
        if !matches!(op, Op::AddToGroup | Op::RemoveFromGroup) {
            return Ok(super::record_state(op, &account.record));
        }
        let room = self.room_id(&super::group_of(&Action::new(op, None, params.clone()))?).await?;
        let joined = self.in_room(&room, &account.id).await?;
        Ok(Some(joined == (op == Op::AddToGroup)))
    }

    fn answers_to(&self, account: &super::model::Account, name: &str) -> bool {
        if let Some(email) = super::email_of(name) {
            // One of the emails bound to the account, as its record reads them.
            let bound = account.record.pointer("/raw/threepids").and_then(Value::as_array).into_iter().flatten();
            return bound
                .filter(|t| t.get("medium").and_then(Value::as_str) == Some("email"))
                .filter_map(|t| t.get("address").and_then(Value::as_str))
                .any(|a| a.to_lowercase() == email);
        }
        let asked = match MatrixName::parse(name) {
            Some(MatrixName::Full(id)) => id.to_lowercase(),
            Some(MatrixName::Local(local)) => local.to_lowercase(),
            None => return false,
        };
        account.names.iter().any(|n| n.to_lowercase() == asked)
    }

    /// A device is addressed under its owner (`users/<id>/devices/<device>`): the owner named with it,
    /// resolved now, is whose it is.
    async fn owner_of(&self, action: &Action) -> Result<String, ApiError> {
        action.target()?;
        let owner = action
            .param_str("owner")
            .ok_or_else(|| ApiError::invalid("delete_session needs the user too: delete_session(user, device_id)"))?;
        Ok(super::resolve(self, owner, &Value::Null).await?.id)
    }

    /// The user, and their devices as sessions (display name, last seen; never the access token).
    async fn snapshot(&self, target: &str) -> Result<super::holdings::Snapshot, ApiError> {
        use super::holdings::{Holding, HoldingKind, Snapshot};
        let id = self.user_id(target).await?;
        let mut snap = Snapshot::of_user(&self.user(&self.get_raw(&id).await?, true).into_value());
        snap.holdings = self
            .devices(&id)
            .await?
            .iter()
            .map(|d| Holding {
                kind: HoldingKind::Session,
                id: d.get("device_id").and_then(Value::as_str).unwrap_or_default().to_string(),
                title: d.get("display_name").and_then(Value::as_str).unwrap_or("(unnamed device)").to_string(),
                fingerprint: None,
                created: None,
                last_used: d.get("last_seen_ts").and_then(Value::as_i64).and_then(ms_to_rfc3339),
            })
            .collect();
        Ok(snap)
    }

    /// Suspend (or, when asked, deactivate: irreversible, and it revokes every token) and log every device out.
    fn cascade(&self, snap: &super::holdings::Snapshot, wishes: &super::holdings::Wishes) -> super::holdings::Cascade {
        let mut plan = super::holdings::standard_cascade(self, snap, wishes);
        if wishes.deactivate && snap.flag("deactivated") != Some(true) {
            plan.steps.push(super::holdings::Step {
                action: Action::new(Op::DeleteUser, Some(snap.target.clone()), json!({"erase": false})),
                reversible: false,
                says: "deactivate the account (Synapse cannot reactivate it with its password or tokens)".into(),
            });
        }
        plan
    }

    fn users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        self.stream_users(filter, hold)
    }

    /// Every local user a page at a time (as `activity` lists them: deactivated ones left out), each straight
    /// into what planning holds.
    async fn activity_seen(&self, each: &mut (dyn FnMut(super::model::Seen) + Send)) -> Result<usize, ApiError> {
        let first = Self::users_request(&Value::Null, Some(("last_seen_ts", "b")));
        let mut pages = self.http.pages(first, USER_PAGING, crate::http::Hold::Walked);
        let mut seen = 0;
        while let Some(page) = pages.next_page().await? {
            seen += page.len();
            page.iter().for_each(|u| each(super::model::Seen::of_user(&self.user(u, false).into_value())));
        }
        Ok(seen)
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        if action.op == Op::DeleteSession {
            // The target is a device; its owner comes with it.
            let owner = action.param_str("owner").ok_or_else(|| {
                ApiError::invalid("delete_session needs the user too: delete_session(user, device_id)")
            })?;
            let owner = self.user_id(owner).await?;
            let path = format!("_synapse/admin/v2/users/{}/devices/{}", segment(&owner), segment(action.target()?));
            return self.change(action, Request::new(Method::DELETE, path)).await;
        }
        // A raw api() path and a new user's login are not users to look up.
        let id = match &action.target {
            Some(t) if !t.is_empty() && !matches!(action.op, Op::Api | Op::CreateUser) => Some(self.user_id(t).await?),
            _ => None,
        };
        let id_path = |prefix: &str, suffix: &str| -> Result<String, ApiError> {
            let id = id.as_deref().ok_or_else(|| ApiError::invalid(format!("{} needs a user id", action.op.name())))?;
            Ok(format!("{prefix}{}{suffix}", segment(id)))
        };
        match action.op {
            Op::Whoami => {
                let me = self.me().await?;
                Ok(self.user(&self.get_raw(&me).await?, true).into_value())
            }
            Op::ListUsers => self.list_users(&action.params).await,
            Op::GetUser => Ok(self.user(&self.get_raw(id.as_deref().unwrap_or_default()).await?, true).into_value()),
            Op::CreateUser => {
                let login = action.param_str("login").or(action.param_str("user_id")).or(action.target.as_deref()).ok_or_else(|| {
                    ApiError::invalid("create_user needs a login: create_user(#{login: \"alice\", password: \"…\", displayname: \"Alice\"})")
                })?;
                let uid = self.user_id(login).await?;
                let mut body = serde_json::Map::new();
                for key in ["password", "displayname", "admin", "user_type"] {
                    if let Some(v) = action.params.get(key) {
                        body.insert(key.into(), v.clone());
                    }
                }
                if let Some(email) = action.param_str("email") {
                    body.insert("threepids".into(), json!([{"medium": "email", "address": email}]));
                }
                let req = Request::new(Method::PUT, format!("_synapse/admin/v2/users/{}", segment(&uid)))
                    .json(Value::Object(body));
                let resp = self.http.send(&req).await?;
                let mut user = self.user(&resp.body, true).into_value();
                user["http_status"] = json!(resp.status);
                Ok(user)
            }
            Op::Suspend | Op::Unsuspend => {
                let req = Request::new(Method::PUT, id_path("_synapse/admin/v1/suspend/", "")?)
                    .json(json!({"suspend": action.op == Op::Suspend}));
                self.change(action, req).await
            }
            Op::Promote | Op::Demote => {
                let req = Request::new(Method::PUT, id_path("_synapse/admin/v1/users/", "/admin")?)
                    .json(json!({"admin": action.op == Op::Promote}));
                self.change(action, req).await
            }
            Op::DeleteUser => {
                // Synapse deactivates: the account stays, locked out; `erase` also forgets its messages.
                let erase = action.params.get("erase").and_then(Value::as_bool).unwrap_or(false);
                let req = Request::new(Method::POST, id_path("_synapse/admin/v1/deactivate/", "")?)
                    .json(json!({"erase": erase}));
                self.change(action, req).await
            }
            Op::Activity => self.activity(&action.params).await,
            Op::ListGroups => self.list_rooms().await,
            Op::Members => self.room_members(action).await,
            Op::AddToGroup | Op::RemoveFromGroup => self.membership(action, id.as_deref()).await,
            Op::ListSessions => Ok(Value::Array(self.devices(id.as_deref().unwrap_or_default()).await?)),
            Op::Api => super::api(&self.http, action).await,
            other => Err(unsupported(self, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn matrix_names_are_full_ids_or_localparts_and_nothing_else() {
        for (name, form) in [
            ("@alice:example.org", Some(MatrixName::Full("@alice:example.org"))),
            (" @alice:example.org ", Some(MatrixName::Full("@alice:example.org"))),
            ("@alice", Some(MatrixName::Local("alice"))),
            ("alice", Some(MatrixName::Local("alice"))),
            ("a.b_c=d-e+f", Some(MatrixName::Local("a.b_c=d-e+f"))),
            ("@@alice", None),
            ("@@alice:example.org", None),
            ("al@ice", None),
            ("alice:example.org", None),
            ("@:example.org", None),
            ("@alice:", None),
            ("@", None),
            ("", None),
            ("al ice", None),
            ("alicé", None),
            ("a/b", None),
        ] {
            assert_eq!(MatrixName::parse(name), form, "{name:?}");
        }
    }

    #[test]
    fn errors_read_matrix_envelopes() {
        assert_eq!(
            error_message(&json!({"errcode": "M_NOT_FOUND", "error": "User not found"})).as_deref(),
            Some("M_NOT_FOUND: User not found")
        );
    }

    #[test]
    fn milliseconds_become_rfc3339() {
        assert_eq!(ms_to_rfc3339(1_795_559_164_000).as_deref(), Some("2026-11-24T22:26:04Z"));
    }

    #[test]
    fn the_error_kind_of_a_matrix_404_is_not_found() {
        let e = not_found(ApiError::from_response(404, Some("M_NOT_FOUND: User not found".into())), "@x:h");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("@x:h"));
    }
}
