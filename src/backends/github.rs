//! GitHub Enterprise Server: the site-admin user API under `/api/v3` (seed 001, GitHub's GHES 3.22 description).

mod orgs;

use super::holdings::{self, Holding, HoldingKind, Snapshot};
use super::model::{Raw, User};
use super::{unsupported, Action, Backend, ClientShape, Op, UserPages};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, HttpClient, Paging, Request};
use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// What steward knows of this kind of service, for the registry (`backends::ALL`).
pub const KIND: super::Kind = super::Kind {
    name: "github",
    supported: SUPPORTED,
    client: CLIENT_SHAPE,
    words: &[],
    check: super::check_settings::<super::NoSettings>,
    keys: super::keys_of::<super::NoSettings>,
    token_envs: &[],
    build: |client, profile, _config, extra_tokens| {
        let token = extra_tokens.into_iter().find(|(purpose, _)| *purpose == "main").map(|(_, t)| t);
        Ok(std::sync::Arc::new(Github::new(client, profile).with_token(token)))
    },
    activity: super::ActivitySource::Seen {
        what: "last_active in the site-admin all-users report (/stafftools/reports/all_users.csv)",
        misses: None,
    },
};

/// GitHub's secondary rate limit is a 403 whose message says so (docs.github.com, "secondary rate limits").
fn secondary_rate_limit(status: u16, message: Option<&str>) -> bool {
    status == 403 && message.is_some_and(|m| m.to_ascii_lowercase().contains("rate limit"))
}

pub const CLIENT_SHAPE: ClientShape = ClientShape {
    auth_prefix: "token ",
    // GitHub prefers its own media type; plain JSON as the second choice keeps strict validators content.
    default_headers: &[
        ("accept", "application/vnd.github+json, application/json;q=0.9"),
        ("x-github-api-version", "2022-11-28"),
    ],
    content_type: "application/json",
    error_message,
    // GHES has no limit unless its admin sets one; the profile's rate_limit is the place to match it.
    token_value: super::token_as_is,
    default_rate_limit: None,
    token_shapes: &[r"\bgh[pousr]_[A-Za-z0-9_]{8,}", r"\bgithub_pat_[A-Za-z0-9_]{8,}"],
    rate_limit_refusal: secondary_rate_limit,
};

const SUPPORTED: &[Op] = &[
    Op::Whoami,
    Op::ListUsers,
    Op::GetUser,
    Op::CreateUser,
    Op::RenameUser,
    Op::DeleteUser,
    Op::Suspend,
    Op::Unsuspend,
    Op::Promote,
    Op::Demote,
    Op::CreateImpersonationToken,
    Op::DeleteImpersonationToken,
    Op::ListKeys,
    Op::DeleteKey,
    Op::ListTokens,
    Op::DeleteToken,
    Op::RateLimit,
    Op::Activity,
    Op::ListGroups,
    Op::Members,
    Op::AddToGroup,
    Op::RemoveFromGroup,
    Op::Api,
];

/// Lists of at most this many users are read in detail unless `detail: false` says otherwise.
const DETAIL_UNASKED: usize = 100;

/// How many single-user reads run at once when a list needs per-user detail (suspension state).
const DETAIL_CONCURRENCY: usize = 8;

/// Where a users listing stands: its pages, and the users held back while it may still end short.
struct UserWalk<'a> {
    pages: crate::http::Pages<'a>,
    held: Vec<User>,
    holding: bool,
}

/// The fields of a GHES user record steward reads; any of them missing, null or of another type is not there.
#[derive(Default, Deserialize)]
struct Fields {
    id: Option<Value>,
    login: Option<Value>,
    email: Option<Value>,
    name: Option<Value>,
    site_admin: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    /// Whether the record has a `suspended_at` that is not null (`None`: it has none at all, as in a listing).
    #[serde(default, deserialize_with = "set_or_null")]
    suspended_at: Option<bool>,
}

impl Fields {
    fn of_value(record: &Value) -> Fields {
        Fields::deserialize(record).unwrap_or_default()
    }

    /// Read straight from the text; a record serde refuses as it stands (a key twice) is read as a tree.
    fn of_text(record: &RawValue) -> Fields {
        serde_json::from_str(record.get())
            .or_else(|_| serde_json::from_str::<Value>(record.get()).map(|v| Fields::of_value(&v)))
            .unwrap_or_default()
    }
}

/// A user from the fields read of its record, and the record.
fn user_of(profile: &str, fields: Fields, raw: Raw) -> User {
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    // A listing's record does not say these: mark them unknown (tables and CSV show `?`), not empty.
    let unknown: &[&str] = match fields.suspended_at {
        None => &["email", "name", "suspended"],
        Some(_) => &[],
    };
    User {
        id: fields.id.unwrap_or(Value::Null),
        login: text(fields.login).unwrap_or_default(),
        email: text(fields.email),
        name: text(fields.name),
        admin: fields.site_admin.as_ref().and_then(Value::as_bool),
        // `suspended_at` is only in full user objects GHES returns to site admins; a list says nothing of it.
        suspended: fields.suspended_at,
        last_active: None,
        kind: "github".into(),
        profile: profile.to_string(),
        raw,
        extra: Vec::new(),
        unknown,
    }
}

fn set_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Some(Option::<serde::de::IgnoredAny>::deserialize(d)?.is_some()))
}

pub struct Github {
    http: HttpClient,
    profile: String,
    /// The profile's token, for the one resource that takes it as a password (the all-users report).
    token: Option<crate::redact::SecretString>,
}

/// GitHub's error body: `{"message": "...", "errors": [...], "documentation_url": "..."}`.
pub fn error_message(body: &Value) -> Option<String> {
    let message = body.get("message")?.as_str()?.to_string();
    let details: Vec<String> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| match e {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => {
                        let field = o.get("field").and_then(Value::as_str).unwrap_or("");
                        let code = o.get("code").and_then(Value::as_str).unwrap_or("");
                        let msg = o.get("message").and_then(Value::as_str);
                        Some(msg.map(str::to_string).unwrap_or_else(|| format!("{field} {code}").trim().to_string()))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(if details.is_empty() { message } else { format!("{message}: {}", details.join("; ")) })
}

impl Github {
    pub fn new(http: HttpClient, profile: &str) -> Self {
        Github { http, profile: profile.to_string(), token: None }
    }

    pub fn with_token(mut self, token: Option<crate::redact::SecretString>) -> Self {
        self.token = token;
        self
    }

    /// GHES's all-users report (`ghes_report`), read as the token's own login.
    async fn report_rows(&self, each: &mut (dyn FnMut(super::ghes_report::Row) + Send)) -> Result<usize, ApiError> {
        let token = self.token.as_ref().ok_or_else(|| {
            ApiError::new(ErrorKind::Unauthorized, "the all-users report needs the profile's token, and it has none")
        })?;
        let me = self.send(Request::new(Method::GET, "user")).await?;
        let login = me
            .get("login")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("GHES did not say whose token this is (GET /user has no login)"))?;
        super::ghes_report::fetch_rows(&self.http, login, token, each).await
    }

    /// `activity(#{since, status})` and `activity(#{user})`, from the all-users report.
    async fn activity(&self, opts: &Value) -> Result<Value, ApiError> {
        let mut rows = Vec::new();
        self.report_rows(&mut |row| rows.push(row)).await?;
        if let Some(name) = opts.get("user").and_then(Value::as_str) {
            // Resolve, then decide: the account the name reaches, matched to its row by login (GHES's canonical
            // form, without case) or id, never by the string given.
            let account = self
                .lookup(name, &Value::Null)
                .await?
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no user {name:?} on this service")))?;
            let id =
                account.aliases.iter().find_map(|a| a.strip_prefix("user_id:")).and_then(|i| i.parse::<u64>().ok());
            let row = rows
                .into_iter()
                .find(|r| r.login.to_ascii_lowercase() == account.id || (id.is_some() && r.id == id))
                .ok_or_else(|| {
                    ApiError::new(ErrorKind::NotFound, format!("{name:?} is not in GHES's all-users report")).with_hint(
                        "GHES regenerates the report from time to time; an account made since is not in it yet",
                    )
                })?;
            return Ok(row.into_user(&self.profile).into_value());
        }
        let query = super::ActivityQuery::read(opts)?;
        Ok(Value::Array(
            rows.into_iter()
                .filter(|r| query.wants(r.last_active))
                .map(|r| r.into_user(&self.profile).into_value())
                .collect(),
        ))
    }

    /// A user record the service sent as JSON (its own record of one user).
    fn user(&self, raw: Value) -> User {
        user_of(&self.profile, Fields::of_value(&raw), Raw::Tree(raw))
    }

    async fn send(&self, req: Request) -> Result<Value, ApiError> {
        Ok(self.http.send(&req).await?.body)
    }

    /// Sends a state change that answers 204, returning a small confirmation record.
    async fn change(&self, req: Request, action: &Action) -> Result<Value, ApiError> {
        let resp = self.http.send(&req).await?;
        Ok(json!({"ok": true, "op": action.op.name(), "target": action.target, "http_status": resp.status}))
    }

    /// Every user page by page, a page's filters applied. Suspension, email and name are only on each user's
    /// own record: read when asked (`detail: true`, or a `suspended` filter), and unasked for a listing that
    /// ends within 100 users (the admins, a search), so its columns are never blank for want of a read.
    fn stream_users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        let asked = |k: &str| filter.get(k).and_then(Value::as_bool);
        let (detail, suspended) = (asked("detail"), asked("suspended"));
        // A listing's records carry no email: a search for one reads each record (slow on a large appliance, but
        // never a false "nobody has it").
        let email_q = filter.get("q").and_then(Value::as_str).filter(|q| q.contains('@')).map(str::to_lowercase);
        let each_in_detail = detail == Some(true) || suspended.is_some() || email_q.is_some();
        let walk = UserWalk {
            pages: self.http.pages(Request::new(Method::GET, "users").query("per_page", 100), Paging::LinkHeader, hold),
            held: Vec::new(),
            holding: detail.is_none() && suspended.is_none(),
        };
        Box::pin(futures::stream::try_unfold(walk, move |mut walk| {
            let email_q = email_q.clone();
            async move {
                loop {
                    let Some(raw) = walk.pages.next_texts().await? else {
                        // The end: what was held back is a short listing, read in detail.
                        if walk.held.is_empty() {
                            return Ok(None);
                        }
                        let held = self.with_detail(std::mem::take(&mut walk.held)).await?;
                        return Ok(Some((held, walk)));
                    };
                    let mut users = self.page_of_users(raw, filter, email_q.is_none());
                    if each_in_detail {
                        users = self.with_detail(users).await?;
                        if let Some(wanted) = suspended {
                            users.retain(|u| u.suspended.unwrap_or(false) == wanted);
                        }
                        if let Some(q) = &email_q {
                            users.retain(|u| {
                                [Some(&u.login), u.email.as_ref(), u.name.as_ref()]
                                    .into_iter()
                                    .any(|v| v.is_some_and(|v| v.to_lowercase().contains(q.as_str())))
                            });
                        }
                    } else if walk.holding {
                        walk.held.extend(users);
                        if walk.held.len() <= DETAIL_UNASKED {
                            continue;
                        }
                        // Longer than a short listing: no detail unasked; what was held goes out as it is.
                        walk.holding = false;
                        users = std::mem::take(&mut walk.held);
                    }
                    return Ok(Some((users, walk)));
                }
            }
        }))
    }

    /// A page of the listing, each record read for the fields steward knows and kept as the text it came in,
    /// with the filters the list endpoint cannot apply: users only (not organizations), `q` in login, email or
    /// name (unless `with_q` is false: an email is searched in each user's own record), `admin`.
    fn page_of_users(&self, raw: Vec<Box<RawValue>>, filter: &Value, with_q: bool) -> Vec<User> {
        let q = filter.get("q").and_then(Value::as_str).map(str::to_lowercase).filter(|_| with_q);
        let admin = filter.get("admin").and_then(Value::as_bool);
        let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_lowercase);
        raw.into_iter()
            .filter_map(|record| {
                let fields = Fields::of_text(&record);
                let is_user = fields.kind.as_ref().and_then(Value::as_str).unwrap_or("User") == "User";
                let found = match &q {
                    Some(q) => [&fields.login, &fields.email, &fields.name]
                        .into_iter()
                        .any(|v| text(v).is_some_and(|v| v.contains(q.as_str()))),
                    None => true,
                };
                let admin_ok = admin.is_none_or(|a| fields.site_admin.as_ref().and_then(Value::as_bool) == Some(a));
                (is_user && found && admin_ok).then(|| user_of(&self.profile, fields, Raw::Text(record)))
            })
            .collect()
    }

    async fn list_users(&self, filter: &Value) -> Result<Value, ApiError> {
        Ok(Value::Array(super::collect_users(self.stream_users(filter, crate::http::Hold::Whole)).await?))
    }

    /// Each user's own record, a few at a time, in order.
    async fn with_detail(&self, users: Vec<User>) -> Result<Vec<User>, ApiError> {
        use futures::StreamExt;
        futures::stream::iter(users)
            .map(|u| async move {
                let record = self.send(Request::new(Method::GET, format!("users/{}", segment(&u.login)))).await?;
                Ok(self.user(record))
            })
            .buffered(DETAIL_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Every public key or personal access token on the instance (`admin/keys`, `admin/tokens`).
    async fn listing(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        self.http.list(Request::new(Method::GET, path).query("per_page", 100), Paging::LinkHeader).await
    }

    /// The instance's SSH keys and personal access tokens: listed, or one deleted by its id.
    async fn credentials(&self, action: &Action) -> Result<Value, ApiError> {
        match action.op {
            Op::ListKeys => Ok(Value::Array(self.listing("admin/keys").await?)),
            Op::DeleteKey => {
                let path = format!("admin/keys/{}", segment(action.target()?));
                self.change(Request::new(Method::DELETE, path), action).await
            }
            Op::ListTokens => Ok(Value::Array(self.listing("admin/tokens").await?)),
            Op::DeleteToken => {
                let id = action.target()?;
                // The spec types token_id as an integer; say so here rather than as a server 404.
                if id.parse::<u64>().is_err() {
                    return Err(ApiError::invalid(format!("delete_token needs a numeric token id, got {id:?}")));
                }
                self.change(Request::new(Method::DELETE, format!("admin/tokens/{id}")), action).await
            }
            other => Err(unsupported(self, other)),
        }
    }

    /// The key or token (`op` says which listing) whose listed id is `id`, as the instance lists it now.
    async fn credential(&self, op: Op, id: &str) -> Result<Option<Value>, ApiError> {
        let path = if op == Op::DeleteKey { "admin/keys" } else { "admin/tokens" };
        Ok(self.listing(path).await?.into_iter().find(|v| id_text(v) == id.trim()))
    }

    /// What each user holds, from one listing of every key and every token on the instance.
    fn holdings_of(user: &Value, keys: &[Value], tokens: &[Value]) -> Vec<Holding> {
        let id = user.get("id").and_then(Value::as_u64);
        let login = user.get("login").and_then(Value::as_str).unwrap_or_default().to_lowercase();
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut out = Vec::new();
        for k in keys.iter().filter(|k| id.is_some() && k.get("user_id").and_then(Value::as_u64) == id) {
            out.push(Holding {
                kind: HoldingKind::SshKey,
                id: id_text(k),
                title: text(k, "title").unwrap_or_default(),
                fingerprint: text(k, "key").and_then(|line| holdings::ssh_fingerprint(&line)),
                created: text(k, "created_at"),
                last_used: text(k, "last_used"),
            });
        }
        let owner_of = |t: &Value| {
            let u = t.get("user");
            let by_id = u.and_then(|u| u.get("id")).and_then(Value::as_u64);
            let by_login = u.and_then(|u| u.get("login")).and_then(Value::as_str).map(str::to_lowercase);
            (by_id.is_some() && by_id == id) || (by_id.is_none() && by_login.as_deref() == Some(login.as_str()))
        };
        for t in tokens.iter().filter(|t| owner_of(t)) {
            out.push(Holding {
                kind: HoldingKind::Token,
                id: id_text(t),
                title: text(t, "note")
                    .or_else(|| t.pointer("/app/name").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default(),
                fingerprint: text(t, "fingerprint"),
                created: text(t, "created_at"),
                last_used: text(t, "last_used_at"),
            });
        }
        out
    }

    async fn rate_limit(&self) -> Result<Value, ApiError> {
        match self.send(Request::new(Method::GET, "rate_limit")).await {
            // GHES answers 404 when the site admin has not enabled rate limiting (the default).
            Err(e) if e.status == Some(404) => Ok(json!({"enabled": false})),
            Ok(body) => {
                let mut out = body.get("resources").cloned().unwrap_or(body);
                if let Some(o) = out.as_object_mut() {
                    o.insert("enabled".into(), Value::Bool(true));
                }
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }
}

fn reason_body(action: &Action) -> Option<Value> {
    action.param_str("reason").filter(|r| !r.is_empty()).map(|r| json!({ "reason": r }))
}

#[async_trait]
impl Backend for Github {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn supported(&self) -> &'static [Op] {
        SUPPORTED
    }

    fn base_url(&self) -> String {
        self.http.base_url().to_string()
    }

    /// GitHub logins: letters, digits and single hyphens, at most 39 characters, not starting with a hyphen.
    fn invalid_target(&self, target: &str) -> Option<String> {
        let ok = !target.is_empty()
            && target.len() <= 39
            && !target.starts_with('-')
            && !target.contains("--")
            && target.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        (!ok).then(|| format!("{target:?} is not a GitHub login (letters, digits and single hyphens, at most 39)"))
    }

    /// GHES addresses every admin path by login and compares logins without case (ASCII only, as
    /// `invalid_target` holds them): an account's canonical id is its login in lower case, and its numeric id
    /// (what key listings name owners by) is an alias.
    async fn lookup(&self, name: &str, _params: &Value) -> Result<Option<super::model::Account>, ApiError> {
        let Some(mut account) = super::resolve_by_get_user(self, name).await? else { return Ok(None) };
        if !account.id.is_empty() {
            account.aliases.push(format!("user_id:{}", account.id));
        }
        account.id = account.address.to_ascii_lowercase();
        Ok(Some(account))
    }

    /// The report's rows, straight into what planning holds (no record of each is built).
    async fn activity_seen(&self, each: &mut (dyn FnMut(super::model::Seen) + Send)) -> Result<usize, ApiError> {
        self.report_rows(&mut |row| each(row.into_seen())).await
    }

    /// A login is its own canonical form (see `lookup`), so a job that reads nothing first still decides on it.
    fn offline_account(&self, name: &str, _params: &Value) -> Option<super::model::Account> {
        let login = name.trim();
        self.invalid_target(login).is_none().then(|| super::model::Account {
            id: login.to_ascii_lowercase(),
            names: vec![login.to_string()],
            address: login.to_string(),
            ..Default::default()
        })
    }

    async fn state(&self, op: Op, target: &str, params: &Value) -> Result<Option<bool>, ApiError> {
        // A key or token is removed when the instance no longer lists it (how a resume settles a lost answer).
        match op {
            Op::DeleteKey | Op::DeleteToken => Ok(Some(self.credential(op, target).await?.is_none())),
            _ => super::account_state(self, op, target, params).await,
        }
    }

    /// A membership is read from the organisation or team (its role too); the rest from the user's record.
    async fn state_of(
        &self,
        op: Op,
        account: &super::model::Account,
        params: &Value,
    ) -> Result<Option<bool>, ApiError> {
        match op {
            Op::AddToGroup | Op::RemoveFromGroup => self.membership_state(op, &account.address, params).await,
            _ => Ok(super::record_state(op, &account.record)),
        }
    }

    async fn members_of(
        &self,
        group: &str,
        each: &mut (dyn FnMut(super::model::Member) + Send),
    ) -> Result<(), ApiError> {
        self.each_member(group, each).await
    }

    /// An organisation or team, by the name GHES knows it by.
    async fn group_id(&self, name: &str) -> Result<String, ApiError> {
        self.group_key(name).await
    }

    /// A membership change keeps the role the member had, for undo.
    async fn prepare(&self, action: &Action) -> Result<Option<Value>, ApiError> {
        match action.op {
            Op::AddToGroup | Op::RemoveFromGroup => self.prior_role(action).await,
            _ => Ok(None),
        }
    }

    /// A key's `user_id`, a token's `user.id` (or, where a server left the id out, its login resolved now).
    async fn owner_of(&self, action: &Action) -> Result<String, ApiError> {
        let target = action.target()?;
        let listed = self.credential(action.op, target).await?.ok_or_else(|| {
            let what = if action.op == Op::DeleteKey { "key" } else { "token" };
            ApiError::new(ErrorKind::NotFound, format!("no {what} {target:?} on this server (by its listed id)"))
                .with_status(404)
        })?;
        let owner = match action.op {
            Op::DeleteKey => listed.get("user_id").cloned(),
            _ => listed.pointer("/user/id").cloned(),
        };
        match owner {
            Some(Value::Number(n)) => Ok(format!("user_id:{n}")),
            _ => match listed.pointer("/user/login").and_then(Value::as_str) {
                Some(login) => Ok(super::resolve(self, login, &Value::Null).await?.id),
                None => Err(ApiError::invalid(format!(
                    "the server lists {} {target} with no owner, so steward cannot tell whose it is; nothing was sent",
                    action.op.name()
                ))),
            },
        }
    }

    async fn snapshot(&self, target: &str) -> Result<Snapshot, ApiError> {
        let mut all = self.snapshots(&[target.to_string()]).await;
        all.pop().unwrap_or_else(|| Err(ApiError::invalid("no snapshot")))
    }

    /// One listing of every key and token for all the accounts, then each account's own record.
    async fn snapshots(&self, targets: &[String]) -> Vec<Result<Snapshot, ApiError>> {
        let listings = futures::future::try_join(self.listing("admin/keys"), self.listing("admin/tokens")).await;
        let (keys, tokens) = match listings {
            Ok(both) => both,
            Err(e) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out = Vec::with_capacity(targets.len());
        for chunk in targets.chunks(DETAIL_CONCURRENCY) {
            let reads = chunk.iter().map(|t| holdings::user_snapshot(self, t));
            for read in futures::future::join_all(reads).await {
                out.push(read.map(|mut snap| {
                    snap.holdings = Self::holdings_of(&snap.user, &keys, &tokens);
                    // GHES deletes a user's impersonation tokens on request but has no way to list them.
                    snap.unlisted.push(HoldingKind::ImpersonationToken.words().to_string());
                    snap
                }));
            }
        }
        out
    }

    fn users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        self.stream_users(filter, hold)
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        let user_path =
            |suffix: &str| -> Result<String, ApiError> { Ok(format!("users/{}{suffix}", segment(action.target()?))) };
        let admin_path = |suffix: &str| -> Result<String, ApiError> {
            Ok(format!("admin/users/{}{suffix}", segment(action.target()?)))
        };
        match action.op {
            Op::Whoami => Ok(self.user(self.send(Request::new(Method::GET, "user")).await?).into_value()),
            Op::Activity => self.activity(&action.params).await,
            Op::ListUsers => self.list_users(&action.params).await,
            Op::GetUser => Ok(self.user(self.send(Request::new(Method::GET, user_path("")?)).await?).into_value()),
            Op::CreateUser => {
                let login = action.param_str("login").or(action.target.as_deref()).ok_or_else(|| {
                    ApiError::invalid(
                        "create_user needs a login: create_user(#{login: \"mona\", email: \"mona@example.com\"})",
                    )
                })?;
                let mut body = json!({ "login": login });
                if let Some(email) = action.param_str("email") {
                    body["email"] = json!(email);
                }
                if let Some(s) = action.params.get("suspended").and_then(Value::as_bool) {
                    body["suspended"] = json!(s);
                }
                let created = self.send(Request::new(Method::POST, "admin/users").json(body)).await?;
                Ok(self.user(created).into_value())
            }
            Op::RenameUser => {
                let new_login = action.param_str("login").ok_or_else(|| {
                    ApiError::invalid("rename_user needs the new login: rename_user(\"old\", \"new\")")
                })?;
                let body = json!({ "login": new_login });
                // 202: GHES renames in a background job.
                self.send(Request::new(Method::PATCH, admin_path("")?).json(body)).await
            }
            Op::DeleteUser => self.change(Request::new(Method::DELETE, admin_path("")?), action).await,
            Op::Suspend | Op::Unsuspend => {
                let method = if action.op == Op::Suspend { Method::PUT } else { Method::DELETE };
                let mut req = Request::new(method, user_path("/suspended")?);
                if let Some(body) = reason_body(action) {
                    req = req.json(body);
                }
                self.change(req, action).await.map_err(explain_ldap)
            }
            Op::Promote => self.change(Request::new(Method::PUT, user_path("/site_admin")?), action).await,
            Op::Demote => self.change(Request::new(Method::DELETE, user_path("/site_admin")?), action).await,
            Op::CreateImpersonationToken => {
                let scopes = action.params.get("scopes").cloned().unwrap_or_else(|| json!([]));
                if !scopes.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(ApiError::invalid(
                        "scopes must be an array of strings, e.g. [\"repo\", \"read:user\"]",
                    ));
                }
                let req = Request::new(Method::POST, admin_path("/authorizations")?).json(json!({ "scopes": scopes }));
                self.send(req).await
            }
            Op::DeleteImpersonationToken => {
                self.change(Request::new(Method::DELETE, admin_path("/authorizations")?), action).await
            }
            Op::ListKeys | Op::DeleteKey | Op::ListTokens | Op::DeleteToken => self.credentials(action).await,
            Op::RateLimit => self.rate_limit().await,
            Op::ListGroups => self.list_groups().await,
            Op::Members => self.group_members(action).await,
            Op::AddToGroup | Op::RemoveFromGroup => self.set_membership(action).await,
            Op::Api => super::api(&self.http, action).await,
            other => Err(unsupported(self, other)),
        }
    }
}

/// A listed resource's id as text (a number, or whatever string a server sent; never its JSON quoting).
fn id_text(resource: &Value) -> String {
    match resource.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A 403 on suspend/unsuspend is most often Active Directory LDAP sync: the seed says so, and so do we.
fn explain_ldap(err: ApiError) -> ApiError {
    if err.kind == ErrorKind::Forbidden {
        err.with_hint(
            "GHES refuses this for users synced from Active Directory LDAP, and for tokens that are not a site admin's; \
             suspend LDAP users in the directory instead",
        )
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secondary_limit_403_is_a_rate_limit_and_a_plain_403_is_not() {
        assert!(secondary_rate_limit(403, Some("You have exceeded a secondary rate limit")));
        assert!(!secondary_rate_limit(403, Some("Must have admin rights")));
        assert!(!secondary_rate_limit(404, Some("rate limit")));
    }

    #[test]
    fn a_record_read_from_its_text_is_the_record_read_from_its_tree() {
        for text in [
            r#"{"login": "ann", "id": 7, "type": "User", "site_admin": true, "email": "", "x": [[{"y": 1}]]}"#,
            r#"{"login": "bob", "id": 8, "suspended_at": null, "name": "Bob B", "email": "bob@example.com"}"#,
            r#"{"login": "cy", "id": "9", "suspended_at": "2026-01-01T00:00:00Z", "site_admin": "yes"}"#,
            // A key twice (serde refuses it in a struct): read as a tree, the last one wins as there.
            r#"{"login": "first", "login": "dee", "id": 10}"#,
            // Of other types than expected, or not a record at all: nothing is read from them.
            r#"{"login": 11, "id": null, "email": ["e@x"], "type": {"t": 1}}"#,
            r#"["not", "a", "record"]"#,
            r#""text""#,
        ] {
            let raw = RawValue::from_string(text.to_string()).unwrap();
            let tree: Value = serde_json::from_str(text).unwrap();
            let by_text = user_of("ghes", Fields::of_text(&raw), Raw::Text(raw)).into_value();
            let by_tree = user_of("ghes", Fields::of_value(&tree), Raw::Tree(tree)).into_value();
            assert_eq!(by_text, by_tree, "{text}");
        }
        let read = |text: &str| Fields::of_text(&RawValue::from_string(text.to_string()).unwrap()).suspended_at;
        assert_eq!(read(r#"{"login": "a"}"#), None, "a listing's record says nothing of suspension");
        assert_eq!(read(r#"{"suspended_at": null}"#), Some(false));
        assert_eq!(read(r#"{"suspended_at": "2026-01-01T00:00:00Z"}"#), Some(true));
    }
}
