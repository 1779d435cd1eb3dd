//! SCIM 2.0 (RFC 7643 schemas, RFC 7644 protocol): any service that provisions users through SCIM (GitHub
//! Enterprise with SCIM provisioning, Slack, Zoom, Atlassian, AWS IAM Identity Center…). What the server supports is
//! read once per connection from `/ServiceProviderConfig` and `/ResourceTypes`, and steward adapts: PATCH or a PUT
//! of the whole resource, `If-Match` where ETags are announced, `/Bulk` within its announced limits.
//! Suspension is `active = false`; admin rights are membership of the profile's `admin_group`.

use super::model::{Account, Raw, User};
use super::{unsupported, Action, Backend, ClientShape, Op, UserPages};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, HttpClient, Paging, Request};
use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// What steward knows of this kind of service, for the registry (`backends::ALL`).
pub const KIND: super::Kind = super::Kind {
    name: "scim",
    supported: SUPPORTED,
    client: CLIENT_SHAPE,
    words: &[],
    check: super::check_settings::<Settings>,
    keys: super::keys_of::<Settings>,
    token_envs: &[],
    build: |client, profile, config, _extra_tokens| {
        let settings =
            super::settings::<Settings>(config).map_err(|k| ApiError::invalid(format!("{}: {}", k.key, k.message)))?;
        Ok(std::sync::Arc::new(Scim::new(client, profile, settings)))
    },
    activity: super::ActivitySource::Changes { what: "meta.lastModified (when each record last changed)" },
};

pub const CLIENT_SHAPE: ClientShape = ClientShape {
    auth_prefix: "Bearer ",
    default_headers: &[("accept", "application/scim+json, application/json")],
    content_type: "application/scim+json",
    error_message,
    token_value: super::token_as_is,
    // SCIM sets no rate limit of its own; a service's 429s are obeyed when they come.
    default_rate_limit: None,
    token_shapes: &[],
    rate_limit_refusal: super::no_rate_limit_refusal,
};

/// SCIM paging (RFC 7644 §3.4.2.4): `startIndex`/`count`, until `totalResults`.
const LIST_PAGING: Paging =
    Paging::StartIndex { param: "startIndex", items: "/Resources", start: "/startIndex", total: "/totalResults" };

/// A scim profile's own keys.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The group (displayName or id) whose members are this service's administrators: promote adds to it,
    /// demote removes from it, and a user record's `admin` says whether they are in it.
    pub admin_group: Option<String>,
    /// The userName of the token's account, for a server without `/Me` (whoami, and never acting on yourself).
    pub identity: Option<String>,
    /// Send bulk jobs as `/Bulk` requests where the server announces it (default true).
    #[serde(default = "yes")]
    pub bulk: bool,
    /// Users per page when listing (the server may send fewer).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

impl super::KindSettings for Settings {
    fn validate(&self) -> Result<(), super::KeyProblem> {
        match self.page_size {
            0 => Err(super::KeyProblem::new("page_size", "must be at least 1", "page_size = 100 suits most servers")),
            _ => Ok(()),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_page_size() -> usize {
    100
}

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
    Op::ListGroups,
    Op::Members,
    Op::AddToGroup,
    Op::RemoveFromGroup,
    Op::Api,
];

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// Lookups and state reads in flight at once when a bulk request needs its users' ids.
const LOOKUP_CONCURRENCY: usize = 8;
/// Operations per `/Bulk` request even when the server allows more: one lost answer settles at most this many.
const MAX_BULK_OPERATIONS: usize = 200;
/// How often a membership change sent as a whole member list is read again after a 412 before it fails.
const MEMBERSHIP_CONFLICT_RETRIES: usize = 5;

/// `{"schemas": [...Error], "status": "400", "scimType": "invalidFilter", "detail": "…"}` (RFC 7644 §3.12).
pub fn error_message(body: &Value) -> Option<String> {
    let detail = body.get("detail").and_then(Value::as_str).filter(|d| !d.is_empty());
    let kind = body.get("scimType").and_then(Value::as_str).filter(|t| !t.is_empty());
    match (kind, detail) {
        (Some(k), Some(d)) => Some(format!("{k}: {d}")),
        (None, Some(d)) => Some(d.to_string()),
        (Some(k), None) => Some(k.to_string()),
        (None, None) => None,
    }
}

/// What the server said it supports (RFC 7643 §5), with the endpoints its resource types name.
#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    pub patch: bool,
    pub etag: bool,
    /// `None`: the server does not filter (users are then found by id only).
    pub filter_max: Option<usize>,
    /// `(maxOperations, maxPayloadSize)` when `/Bulk` is supported.
    pub bulk: Option<(usize, usize)>,
    pub users: String,
    pub groups: String,
    /// The User schema lets `active` be written (true unless `/Schemas` says otherwise): suspension needs it.
    pub active_writable: bool,
}

impl Capabilities {
    /// From the `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas` answers; a server that serves none is
    /// assumed to do the least (PUT, no ETags, no bulk) but to filter, which looking users up by name needs.
    pub fn read(config: Option<&Value>, types: Option<&Value>, schemas: Option<&Value>) -> Capabilities {
        let supported = |key: &str| {
            config.and_then(|c| c.pointer(&format!("/{key}/supported"))).and_then(Value::as_bool).unwrap_or(false)
        };
        let number = |pointer: &str| config.and_then(|c| c.pointer(pointer)).and_then(Value::as_u64);
        let filter_max = match config {
            None => Some(100),
            Some(_) if supported("filter") => Some(number("/filter/maxResults").unwrap_or(100).max(1) as usize),
            Some(_) => None,
        };
        let bulk = supported("bulk").then(|| {
            (
                number("/bulk/maxOperations").unwrap_or(1) as usize,
                number("/bulk/maxPayloadSize").unwrap_or(1 << 20) as usize,
            )
        });
        let endpoint = |name: &str, default: &str| {
            let types = types.and_then(|t| t.get("Resources").and_then(Value::as_array).or(t.as_array()));
            types
                .and_then(|ts| ts.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name)))
                .and_then(|t| t.get("endpoint").and_then(Value::as_str))
                .map(|e| e.trim_matches('/').to_string())
                .filter(|e| !e.is_empty() && !e.contains(".."))
                .unwrap_or_else(|| default.to_string())
        };
        let listed =
            |v: Option<&Value>| v.and_then(|v| v.get("Resources").and_then(Value::as_array).or(v.as_array())).cloned();
        let user_schema = listed(schemas)
            .and_then(|s| s.into_iter().find(|s| s.get("id").and_then(Value::as_str) == Some(USER_SCHEMA)));
        let active_writable = match user_schema.as_ref().and_then(|s| s.get("attributes")).and_then(Value::as_array) {
            None => true,
            Some(attributes) => attributes.iter().any(|a| {
                a.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case("active"))
                    && !matches!(a.get("mutability").and_then(Value::as_str), Some("readOnly" | "immutable"))
            }),
        };
        Capabilities {
            patch: supported("patch"),
            etag: supported("etag"),
            filter_max,
            bulk,
            users: endpoint("User", "Users"),
            groups: endpoint("Group", "Groups"),
            active_writable,
        }
    }
}

/// A SCIM filter's string literal (RFC 7644 §3.4.2.2: JSON string rules).
fn quoted(value: &str) -> String {
    Value::String(value.to_string()).to_string()
}

/// The filter `list_users` sends for steward's filter keys (and a `filter` passed through), all of them joined
/// with `and`; `admin` is answered from the admin group instead.
pub fn filter_expression(params: &Value) -> Result<Option<String>, ApiError> {
    let mut parts = Vec::new();
    let Some(map) = params.as_object() else { return Ok(None) };
    for (key, value) in map {
        let text = || {
            value
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::invalid(format!("list_users: {key} must be text")))
        };
        match key.as_str() {
            "filter" => parts.push(format!("({})", text()?)),
            "q" => {
                let q = quoted(text()?);
                parts.push(format!(
                    "(userName co {q} or emails.value co {q} or displayName co {q} or name.formatted co {q})"
                ))
            }
            "email" => parts.push(format!("emails.value eq {}", quoted(text()?))),
            "login" => parts.push(format!("userName eq {}", quoted(text()?))),
            "suspended" => match value.as_bool() {
                Some(s) => parts.push(format!("active eq {}", !s)),
                None => return Err(ApiError::invalid("list_users: suspended must be true or false")),
            },
            "admin" | "detail" => {}
            other => {
                return Err(ApiError::invalid(format!("list_users: {other:?} is not a filter of a scim profile"))
                    .with_hint("use q, login, email, suspended, admin, or filter: \"<a SCIM filter>\""))
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(" and ")))
}

pub struct Scim {
    http: HttpClient,
    profile: String,
    settings: Settings,
    caps: tokio::sync::OnceCell<Capabilities>,
    /// The admin group's id, once found.
    admin_group_id: tokio::sync::OnceCell<String>,
    /// name key → the resource as last read (id and version), for the change that follows a lookup.
    seen: Mutex<HashMap<String, Value>>,
    /// group id → the one writer of its whole member list at a time (servers without PATCH).
    group_writers: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl Scim {
    pub fn new(http: HttpClient, profile: &str, settings: Settings) -> Self {
        Scim {
            http,
            profile: profile.to_string(),
            settings,
            caps: tokio::sync::OnceCell::new(),
            admin_group_id: tokio::sync::OnceCell::new(),
            seen: Mutex::new(HashMap::new()),
            group_writers: Mutex::new(HashMap::new()),
        }
    }

    /// What the server supports, read once per connection.
    async fn caps(&self) -> Result<&Capabilities, ApiError> {
        self.caps
            .get_or_try_init(|| async {
                let config = self.optional(Request::new(Method::GET, "ServiceProviderConfig")).await?;
                let types = self.optional(Request::new(Method::GET, "ResourceTypes")).await?;
                let schemas = self.optional(Request::new(Method::GET, "Schemas")).await?;
                Ok::<_, ApiError>(Capabilities::read(config.as_ref(), types.as_ref(), schemas.as_ref()))
            })
            .await
    }

    /// The body of a discovery read, or `None` where the server does not serve it (a bad token is an error).
    async fn optional(&self, req: Request) -> Result<Option<Value>, ApiError> {
        match self.http.send(&req).await {
            Ok(resp) => Ok(Some(resp.body)),
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Invalid) => Ok(None),
            Err(e) if e.status == Some(501) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn user(&self, r: &Value, admins: Option<&HashSet<String>>) -> User {
        let text = |p: &str| r.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let id = text("/id").unwrap_or_default();
        let emails = r.get("emails").and_then(Value::as_array);
        let email = emails
            .and_then(|es| es.iter().find(|e| e.get("primary").and_then(Value::as_bool) == Some(true)).or(es.first()))
            .and_then(|e| e.get("value").and_then(Value::as_str))
            .map(str::to_string);
        let given = [text("/name/givenName"), text("/name/familyName")].into_iter().flatten().collect::<Vec<_>>();
        let name = text("/name/formatted")
            .or_else(|| text("/displayName"))
            .or_else(|| (!given.is_empty()).then(|| given.join(" ")));
        User {
            id: json!(id),
            login: text("/userName").unwrap_or_default(),
            email,
            name,
            admin: admins.map(|a| a.contains(&id)),
            suspended: r.get("active").and_then(Value::as_bool).map(|a| !a),
            // SCIM has no sign-in time; `last_modified` says when the record last changed.
            last_active: None,
            kind: "scim".into(),
            profile: self.profile.clone(),
            raw: Raw::Tree(r.clone()),
            extra: vec![
                ("external_id".into(), json!(text("/externalId"))),
                ("last_modified".into(), json!(text("/meta/lastModified"))),
            ],
            unknown: &[],
        }
    }

    fn users_path(&self, caps: &Capabilities, id: &str) -> String {
        format!("{}/{}", caps.users, segment(id))
    }

    /// Every page of a listing at `path` (`startIndex`/`count`, until `totalResults`).
    async fn list_all(&self, path: &str, filter: Option<&str>) -> Result<Vec<Value>, ApiError> {
        self.http.list(self.list_request(path, filter).await?, LIST_PAGING).await
    }

    /// The first page's request of a listing at `path`, within what the server said it can do.
    async fn list_request(&self, path: &str, filter: Option<&str>) -> Result<Request, ApiError> {
        let caps = self.caps().await?;
        if filter.is_some() && caps.filter_max.is_none() {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                "this SCIM server does not filter (its ServiceProviderConfig says filter.supported: false)",
            ));
        }
        let count = self.settings.page_size.min(caps.filter_max.unwrap_or(usize::MAX));
        let mut req = Request::new(Method::GET, path).query("startIndex", 1).query("count", count);
        if let Some(f) = filter {
            req = req.query("filter", f);
        }
        Ok(req)
    }

    /// The users a filter finds, on one page (lookups expect one or two).
    async fn search(&self, filter: &str) -> Result<Vec<Value>, ApiError> {
        let caps = self.caps().await?;
        let req = Request::new(Method::GET, caps.users.clone()).query("filter", filter).query("count", 2);
        let body = self.http.send(&req).await?.body;
        Ok(body.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// The user `target` names (its userName, an email, its externalId or its id), read now. A name two
    /// accounts answer to (one's userName, another's email) is an error naming both, never a pick.
    async fn find(&self, target: &str) -> Result<Value, ApiError> {
        let caps = self.caps().await?;
        let target = target.trim();
        if caps.filter_max.is_some() {
            // userName first, alone: most names are userNames, and servers answer `userName eq` fastest (an
            // `or` of three clauses took scim2-server three times as long); then the other names, together, when
            // nothing has that userName or the name could be someone else's email.
            let q = quoted(target);
            let mut found = self.search(&format!("userName eq {q}")).await?;
            if found.is_empty() || target.contains('@') {
                for r in self.search(&format!("emails.value eq {q} or externalId eq {q}")).await? {
                    if !found.iter().any(|f| f.get("id") == r.get("id")) {
                        found.push(r);
                    }
                }
            }
            match found.len() {
                0 => {}
                1 => return Ok(self.remember(target, found.into_iter().next().unwrap_or_default())),
                _ => {
                    let text = |u: &'_ Value, k: &str| u.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                    let who = found.iter().map(|u| (text(u, "userName"), text(u, "id"))).collect();
                    return Err(super::ambiguous(target, who, "name the user by its userName or SCIM id"));
                }
            }
        }
        let req = Request::new(Method::GET, self.users_path(caps, target));
        match self.http.send(&req).await {
            Ok(resp) => Ok(self.remember(target, resp.body)),
            Err(e) if e.kind == ErrorKind::NotFound => Err(ApiError {
                message: format!("no user {target:?} on this SCIM server (by userName, email, externalId or id)"),
                ..e
            }),
            Err(e) => Err(e),
        }
    }

    /// Keeps a resource just read under the name it was read by and its id (a change addresses it by id).
    fn remember(&self, target: &str, resource: Value) -> Value {
        let mut seen = self.seen.lock();
        if let Ok(id) = id_of(&resource) {
            seen.insert(self.name_key(&id), resource.clone());
        }
        seen.insert(self.name_key(target), resource.clone());
        resource
    }

    /// The resource a change acts on: the one just read for it (its version is what `If-Match` sends), else read now.
    async fn take(&self, target: &str) -> Result<Value, ApiError> {
        let cached = {
            let mut seen = self.seen.lock();
            let r = seen.remove(&self.name_key(target));
            // Taken once: the same record kept under its other name would carry a version about to be stale.
            if let Some(id) = r.as_ref().and_then(|r| r.get("id")) {
                seen.retain(|_, kept| kept.get("id") != Some(id));
            }
            r
        };
        match cached {
            Some(r) => Ok(r),
            None => self.find(target).await,
        }
    }

    fn if_match(&self, caps: &Capabilities, req: Request, resource: &Value) -> Request {
        match resource.pointer("/meta/version").and_then(Value::as_str).filter(|_| caps.etag) {
            Some(version) => req.header("if-match", version),
            None => req,
        }
    }

    /// Sets `active` (PATCH where supported, else a PUT of the whole resource); the answer as a change result.
    async fn set_active(&self, action: &Action, active: bool) -> Result<Value, ApiError> {
        let caps = self.caps().await?;
        require_active(caps)?;
        let target = action.target()?;
        let resource = self.take(target).await?;
        let id = id_of(&resource)?;
        let path = self.users_path(caps, &id);
        let req = match caps.patch {
            true => Request::new(Method::PATCH, path)
                .json(json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": active}]})),
            false => Request::new(Method::PUT, path).json(replaced(&resource, "active", json!(active))),
        };
        let resp = self.http.send(&self.if_match(caps, req, &resource)).await.map_err(|e| conflict_hint(e, target))?;
        Ok(json!({"ok": true, "op": action.op.name(), "target": target, "id": id, "http_status": resp.status}))
    }

    /// The group `name` names (displayName or id), read now.
    async fn group(&self, name: &str) -> Result<Value, ApiError> {
        let caps = self.caps().await?;
        if caps.filter_max.is_some() {
            let req = Request::new(Method::GET, caps.groups.clone())
                .query("filter", format!("displayName eq {}", quoted(name)));
            let body = self.http.send(&req).await?.body;
            if let Some(g) = body.get("Resources").and_then(Value::as_array).and_then(|r| r.first()) {
                return Ok(g.clone());
            }
        }
        let req = Request::new(Method::GET, format!("{}/{}", caps.groups, segment(name)));
        self.http.send(&req).await.map(|r| r.body).map_err(|e| match e.kind {
            ErrorKind::NotFound => {
                ApiError { message: format!("no group {name:?} on this SCIM server (by displayName or id)"), ..e }
            }
            _ => e,
        })
    }

    /// The admin group as it is now (its id is looked up once).
    async fn admin_group(&self) -> Result<Value, ApiError> {
        let name = self.settings.admin_group.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unsupported,
                "this scim profile names no admin group, so steward cannot tell or change who is an admin",
            )
            .with_hint("set admin_group = \"<the displayName of the administrators' group>\" in the profile")
        })?;
        let caps = self.caps().await?;
        let id = self.admin_group_id.get_or_try_init(|| async { id_of(&self.group(name).await?) }).await?;
        Ok(self.http.send(&Request::new(Method::GET, format!("{}/{}", caps.groups, segment(id)))).await?.body)
    }

    async fn admins(&self) -> Result<Option<HashSet<String>>, ApiError> {
        if self.settings.admin_group.is_none() {
            return Ok(None);
        }
        Ok(Some(members(&self.admin_group().await?)))
    }

    /// Adds `user_id` to the group or removes it. With PATCH, one operation naming the member
    /// (`members[value eq "…"]`): it needs no version of the group, so a job's concurrent changes of one group
    /// never conflict. Without PATCH the whole member list is sent (PUT): one writer per group at a time, the
    /// group read afresh under it, and a 412 (someone else changed the group) reads it again and retries while
    /// the change is still needed. The answer: the HTTP status and how many conflicts were retried.
    async fn change_membership(&self, group: &Value, user_id: &str, add: bool) -> Result<(u16, usize), ApiError> {
        let caps = self.caps().await?;
        let gid = id_of(group)?;
        let path = format!("{}/{}", caps.groups, segment(&gid));
        let name = group.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string();
        if caps.patch {
            let op = match add {
                true => json!({"op": "add", "path": "members", "value": [{"value": user_id}]}),
                false => json!({"op": "remove", "path": format!("members[value eq {}]", quoted(user_id))}),
            };
            let req = Request::new(Method::PATCH, path).json(json!({"schemas": [PATCH_SCHEMA], "Operations": [op]}));
            return Ok((self.http.send(&req).await.map_err(|e| conflict_hint(e, &name))?.status, 0));
        }
        let writer = self.group_writers.lock().entry(gid).or_default().clone();
        let _one_at_a_time = writer.lock().await;
        let mut conflicts = 0;
        loop {
            let group = self.http.send(&Request::new(Method::GET, path.clone())).await?.body;
            let mut list: Vec<Value> = group.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
            let present = list.iter().any(|m| m.get("value").and_then(Value::as_str) == Some(user_id));
            if present == add {
                // Someone else made the change meanwhile: nothing left to send.
                return Ok((200, conflicts));
            }
            list.retain(|m| m.get("value").and_then(Value::as_str) != Some(user_id));
            if add {
                list.push(json!({"value": user_id}));
            }
            let req = Request::new(Method::PUT, path.clone()).json(replaced(&group, "members", Value::Array(list)));
            match self.http.send(&self.if_match(caps, req, &group)).await {
                Ok(resp) => return Ok((resp.status, conflicts)),
                Err(e) if e.status == Some(412) && conflicts < MEMBERSHIP_CONFLICT_RETRIES => conflicts += 1,
                Err(e) => return Err(conflict_hint(e, &name)),
            }
        }
    }

    async fn membership(&self, action: &Action, group: Value) -> Result<Value, ApiError> {
        let target = action.target()?;
        let user = self.take(target).await?;
        let id = id_of(&user)?;
        let add = matches!(action.op, Op::Promote | Op::AddToGroup);
        let (status, conflicts) = self.change_membership(&group, &id, add).await?;
        let name = group.get("displayName").cloned().unwrap_or(Value::Null);
        let mut answer = json!({"ok": true, "op": action.op.name(), "target": target, "id": id, "group": name, "http_status": status});
        if conflicts > 0 {
            answer["reconciled"] =
                json!(format!("the group changed under this change {conflicts} time(s) (412); read again and retried"));
        }
        Ok(answer)
    }

    /// The users `params` asks for, page by page (the admin group read once, first).
    fn stream_users<'a>(&'a self, params: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        let walk = async move {
            let caps = self.caps().await?;
            let filter = filter_expression(params)?;
            let first = self.list_request(&caps.users, filter.as_deref()).await?;
            let admins = self.admins().await?;
            let wanted_admin = params.get("admin").and_then(Value::as_bool);
            if wanted_admin.is_some() && admins.is_none() {
                self.admin_group().await?;
            }
            let admins = std::sync::Arc::new(admins);
            let pages = stream::try_unfold(self.http.pages(first, LIST_PAGING, hold), move |mut pages| {
                let admins = admins.clone();
                async move {
                    let Some(raw) = pages.next_page().await? else { return Ok(None) };
                    let users = raw
                        .iter()
                        .map(|r| self.user(r, admins.as_ref().as_ref()))
                        .filter(|u| wanted_admin.is_none_or(|w| u.admin == Some(w)))
                        .collect();
                    Ok(Some((users, pages)))
                }
            });
            Ok::<_, ApiError>(pages)
        };
        Box::pin(stream::once(walk).try_flatten())
    }

    async fn list_users(&self, params: &Value) -> Result<Value, ApiError> {
        Ok(Value::Array(super::collect_users(self.stream_users(params, crate::http::Hold::Whole)).await?))
    }

    /// `activity(#{since, status})` from `meta.lastModified`: when each record last changed, which is all SCIM
    /// tells (not a sign-in). Users whose record changed since the date are "active"; nobody is "inactive".
    async fn activity(&self, opts: &Value) -> Result<Value, ApiError> {
        let since = opts
            .get("since")
            .and_then(Value::as_str)
            .map(|s| crate::dates::parse_date(s).map_err(|e| ApiError::invalid(e.to_string())))
            .transpose()?;
        let status = opts.get("status").and_then(Value::as_str).unwrap_or("all");
        // A record's last change is not its person's last sign-in: nobody is called inactive on it.
        if matches!(status, "inactive" | "never") {
            if let Some(refusal) = KIND.activity.refuses_inactivity("scim") {
                return Err(refusal);
            }
        }
        if !matches!(status, "active" | "all") {
            return Err(ApiError::invalid(format!("status {status:?}: use \"active\" or \"all\"")));
        }
        let caps = self.caps().await?;
        let raw = self.list_all(&caps.users, None).await?;
        let changed = |r: &Value| {
            r.pointer("/meta/lastModified")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        };
        let users = raw
            .iter()
            .filter(|r| match (status, since, changed(r)) {
                ("all", _, _) | ("active", None, _) => true,
                ("active", Some(s), Some(t)) => t >= s,
                _ => false,
            })
            .map(|r| {
                let mut u = self.user(r, None).into_value();
                u["activity_means"] =
                    json!("meta.lastModified: when the record last changed (SCIM reports no sign-ins)");
                u
            })
            .collect();
        Ok(Value::Array(users))
    }

    async fn create_user(&self, action: &Action) -> Result<Value, ApiError> {
        let caps = self.caps().await?;
        let p = &action.params;
        let text = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let login = text("login").or(text("userName")).or(action.target.as_deref()).ok_or_else(|| {
            ApiError::invalid(
                "create_user needs a login: create_user(#{login: \"alice\", email: \"alice@example.com\"})",
            )
        })?;
        let mut body = json!({"schemas": [USER_SCHEMA], "userName": login, "active": p.get("active").and_then(Value::as_bool).unwrap_or(true)});
        if let Some(email) = text("email") {
            body["emails"] = json!([{"value": email, "primary": true, "type": "work"}]);
        }
        let mut name = serde_json::Map::new();
        for (from, to) in [("name", "formatted"), ("given_name", "givenName"), ("family_name", "familyName")] {
            if let Some(v) = text(from) {
                name.insert(to.into(), json!(v));
            }
        }
        if !name.is_empty() {
            body["name"] = Value::Object(name);
        }
        for (from, to) in [("name", "displayName"), ("external_id", "externalId"), ("password", "password")] {
            if let Some(v) = text(from) {
                body[to] = json!(v);
            }
        }
        let resp = self.http.send(&Request::new(Method::POST, caps.users.clone()).json(body)).await?;
        let mut user = self.user(&resp.body, None).into_value();
        user["http_status"] = json!(resp.status);
        Ok(user)
    }

    async fn list_groups(&self) -> Result<Value, ApiError> {
        let caps = self.caps().await?;
        let groups = self.list_all(&caps.groups, None).await?;
        Ok(Value::Array(
            groups
                .iter()
                .map(|g| {
                    json!({"id": g.get("id"), "name": g.get("displayName"), "members": members(g).len(),
                           "external_id": g.get("externalId"), "profile": self.profile, "raw": g})
                })
                .collect(),
        ))
    }

    /// One `/Bulk` request per chunk that fits the server's announced limits; one result per action, in order.
    async fn bulk_set_active(&self, actions: &[Action], active: bool) -> Vec<Result<Value, ApiError>> {
        let caps = match self.caps().await.and_then(|c| require_active(c).map(|_| c)) {
            Ok(c) => c.clone(),
            Err(e) => return actions.iter().map(|_| Err(e.clone())).collect(),
        };
        let (_, max_payload) = caps.bulk.unwrap_or((1, 1 << 20));
        let targets: Vec<String> = actions.iter().map(|a| a.target.clone().unwrap_or_default()).collect();
        let resources: Vec<Result<Value, ApiError>> = stream::iter(targets)
            .map(|t| async move { self.take(&t).await })
            .buffered(LOOKUP_CONCURRENCY)
            .collect()
            .await;
        let mut results: Vec<Option<Result<Value, ApiError>>> = vec![None; actions.len()];
        let mut ops: Vec<(usize, String, Value)> = Vec::new();
        for (i, r) in resources.into_iter().enumerate() {
            let resource = match r.and_then(|r| id_of(&r).map(|id| (id, r))) {
                Ok(pair) => pair,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            let (id, resource) = resource;
            let mut op = json!({"method": "PATCH", "bulkId": format!("b{i}"), "path": format!("/{}", self.users_path(&caps, &id)),
                                "data": {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": active}]}});
            if let Some(v) = resource.pointer("/meta/version").and_then(Value::as_str).filter(|_| caps.etag) {
                op["version"] = json!(v);
            }
            ops.push((i, id, op));
        }
        // Split so no request passes maxPayloadSize (with room for the envelope).
        let mut chunks: Vec<Vec<(usize, String, Value)>> = vec![Vec::new()];
        let mut size = 0;
        for op in ops {
            let len = op.2.to_string().len() + 1;
            if size + len + 200 > max_payload && chunks.last().is_some_and(|c| !c.is_empty()) {
                chunks.push(Vec::new());
                size = 0;
            }
            size += len;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(op);
            }
        }
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            let body = json!({"schemas": [BULK_SCHEMA], "Operations": chunk.iter().map(|(_, _, op)| op.clone()).collect::<Vec<_>>()});
            let answer = self.http.send(&Request::new(Method::POST, "Bulk").json(body)).await;
            let answers = match answer {
                Ok(resp) => resp.body.get("Operations").and_then(Value::as_array).cloned().unwrap_or_default(),
                Err(e) => {
                    for (i, _, _) in &chunk {
                        results[*i] = Some(Err(e.clone()));
                    }
                    continue;
                }
            };
            for (i, id, _) in chunk {
                let bulk_id = format!("b{i}");
                let answer = answers
                    .iter()
                    .find(|a| a.get("bulkId").and_then(Value::as_str) == Some(bulk_id.as_str()))
                    .or_else(|| {
                        answers.iter().find(|a| {
                            a.get("location").and_then(Value::as_str).is_some_and(|l| l.ends_with(&format!("/{id}")))
                        })
                    });
                let target = actions[i].target.clone().unwrap_or_default();
                results[i] = Some(bulk_outcome(answer, &actions[i], &target, &id));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ApiError::invalid("the /Bulk answer left this operation out"))))
            .collect()
    }
}

/// Suspension is `active = false`: a server whose User schema has no writable `active` cannot suspend.
fn require_active(caps: &Capabilities) -> Result<(), ApiError> {
    match caps.active_writable {
        true => Ok(()),
        false => Err(ApiError::new(
            ErrorKind::Unsupported,
            "this SCIM server's User schema has no writable `active` attribute, so it cannot suspend",
        )
        .with_hint("delete_user removes the account instead (it asks first)")),
    }
}

/// One operation's outcome in a `/Bulk` answer (its `status` is a string of the HTTP status).
fn bulk_outcome(answer: Option<&Value>, action: &Action, target: &str, id: &str) -> Result<Value, ApiError> {
    let Some(answer) = answer else {
        return Err(ApiError::invalid(format!(
            "the /Bulk answer says nothing of {target}; read it before trying again"
        )));
    };
    let status = match answer.get("status") {
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid(format!("the /Bulk answer for {target} has no status")))?;
    if (200..300).contains(&status) {
        return Ok(json!({"ok": true, "op": action.op.name(), "target": target, "id": id, "http_status": status}));
    }
    let message = answer.get("response").and_then(error_message);
    Err(conflict_hint(ApiError::from_response(status, message), target))
}

/// The ids of a group's members.
fn members(group: &Value) -> HashSet<String> {
    group
        .get("members")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A resource's id, as a path segment may carry it: an id of `.` or `..` would climb the URL it is put in.
fn id_of(resource: &Value) -> Result<String, ApiError> {
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    match id.trim() {
        "" => Err(ApiError::invalid("the SCIM server sent a resource without an id")),
        "." | ".." => Err(ApiError::invalid(format!(
            "the SCIM server sent a resource whose id is {id:?}, which steward does not put in a URL"
        ))),
        _ if id.chars().any(char::is_control) => {
            Err(ApiError::invalid("the SCIM server sent an id with control characters"))
        }
        _ => Ok(id.to_string()),
    }
}

/// The resource with one attribute replaced, as a PUT sends it (without the read-only `meta`).
fn replaced(resource: &Value, key: &str, value: Value) -> Value {
    let mut body = resource.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("meta");
        o.insert(key.to_string(), value);
    }
    body
}

/// A 412 means someone changed the resource since steward read it: say so, rather than "precondition failed".
fn conflict_hint(e: ApiError, target: &str) -> ApiError {
    match e.status {
        Some(412) => ApiError {
            message: format!(
                "{target} changed on the server after steward read it, so nothing was changed ({})",
                e.message
            ),
            ..e
        }
        .with_hint("read it again and decide anew; steward sends If-Match so no one's change is overwritten"),
        _ => e,
    }
}

#[async_trait]
impl Backend for Scim {
    fn kind(&self) -> &'static str {
        "scim"
    }

    fn supported(&self) -> &'static [Op] {
        SUPPORTED
    }

    fn base_url(&self) -> String {
        self.http.base_url().to_string()
    }

    /// `/Me` where the server serves it, else the profile's `identity`, else nobody: a provisioning token is
    /// usually an application's, not a person's, so there is no own account to keep steward off.
    async fn identity(&self) -> Result<String, ApiError> {
        match self.execute(&Action::new(Op::Whoami, None, Value::Null)).await {
            Ok(me) => Ok(me.get("login").and_then(Value::as_str).unwrap_or_default().to_string()),
            Err(e) if e.kind == ErrorKind::Unsupported => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// A group named by displayName or id is its id.
    async fn group_id(&self, name: &str) -> Result<String, ApiError> {
        id_of(&self.group(name.trim()).await?)
    }

    /// A SCIM account answers to its id, userName, every email and its externalId; a change addresses it by id.
    async fn lookup(&self, name: &str, _params: &Value) -> Result<Option<Account>, ApiError> {
        if name.trim().is_empty() {
            return Ok(None);
        }
        let r = match self.find(name).await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut names: Vec<String> = ["/id", "/userName", "/externalId"]
            .iter()
            .filter_map(|p| r.pointer(p).and_then(Value::as_str).map(str::to_string))
            .collect();
        let emails = r.get("emails").and_then(Value::as_array).cloned().unwrap_or_default();
        names.extend(emails.iter().filter_map(|e| e.get("value").and_then(Value::as_str)).map(str::to_string));
        names.retain(|n| !n.trim().is_empty());
        let id = id_of(&r)?;
        let record = self.user(&r, None).into_value();
        Ok(Some(Account { id: id.clone(), aliases: Vec::new(), names, address: id, record }))
    }

    /// Names compare as SCIM servers compare userNames (RFC 7643 `caseExact: false`) and as people type them:
    /// Unicode compatibility-normalised (NFKC: `jose\u0301` is `josé`, fullwidth letters and the Kelvin sign
    /// are their plain forms), then without case.
    fn name_key(&self, name: &str) -> String {
        scim_key(name)
    }

    /// Admin rights are membership of the admin group, and a membership is the group's member list, read now:
    /// how a resume settles a removal whose answer was lost rather than send it again (a second removal finds
    /// no member: 400).
    async fn state_of(&self, op: Op, account: &Account, params: &Value) -> Result<Option<bool>, ApiError> {
        match op {
            Op::Promote | Op::Demote => {
                let is_admin = members(&self.admin_group().await?).contains(&account.id);
                Ok(Some(is_admin == (op == Op::Promote)))
            }
            Op::AddToGroup | Op::RemoveFromGroup => {
                let action = Action::new(op, None, params.clone());
                let member = members(&self.group(&super::group_of(&action)?).await?).contains(&account.id);
                Ok(Some(member == (op == Op::AddToGroup)))
            }
            _ => Ok(super::record_state(op, &account.record)),
        }
    }

    async fn snapshot(&self, target: &str) -> Result<super::holdings::Snapshot, ApiError> {
        let mut all = self.snapshots(&[target.to_string()]).await;
        all.pop().unwrap_or_else(|| Err(ApiError::invalid("no snapshot")))
    }

    /// Each account and the groups it is a member of (the admin group aside: demote takes that one), from one
    /// listing of every group.
    async fn snapshots(&self, targets: &[String]) -> Vec<Result<super::holdings::Snapshot, ApiError>> {
        use super::holdings::{Holding, HoldingKind};
        let groups = match self.caps().await {
            Ok(caps) => self.list_all(&caps.groups.clone(), None).await,
            Err(e) => Err(e),
        };
        let groups = match groups {
            Ok(groups) => groups,
            Err(e) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        let admin_id = self.admin_group_id.get().cloned();
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            out.push(super::holdings::user_snapshot(self, t).await.map(|mut snap| {
                let id = snap.user.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                snap.holdings = groups
                    .iter()
                    .filter(|g| members(g).contains(&id))
                    .filter(|g| admin_id.is_none() || g.get("id").and_then(Value::as_str) != admin_id.as_deref())
                    .filter(|g| {
                        let name = g.get("displayName").and_then(Value::as_str);
                        name.is_none() || name != self.settings.admin_group.as_deref()
                    })
                    .map(|g| Holding {
                        kind: HoldingKind::Group,
                        id: g.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                        title: g.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string(),
                        fingerprint: None,
                        created: None,
                        last_used: None,
                    })
                    .collect();
                snap
            }));
        }
        out
    }

    async fn batch_size(&self, op: Op) -> Option<usize> {
        if !self.settings.bulk || !matches!(op, Op::Suspend | Op::Unsuspend) {
            return None;
        }
        let (max_ops, _) = self.caps().await.ok()?.bulk?;
        Some(max_ops.clamp(1, MAX_BULK_OPERATIONS))
    }

    async fn execute_batch(&self, op: Op, actions: &[Action]) -> Vec<Result<Value, ApiError>> {
        self.bulk_set_active(actions, op == Op::Unsuspend).await
    }

    fn users<'a>(&'a self, filter: &'a Value, hold: crate::http::Hold) -> UserPages<'a> {
        self.stream_users(filter, hold)
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        match action.op {
            Op::Whoami => {
                if let Some(me) =
                    self.optional(Request::new(Method::GET, "Me")).await?.filter(|me| me.get("id").is_some())
                {
                    return Ok(self.user(&me, self.admins().await?.as_ref()).into_value());
                }
                let name = self.settings.identity.as_deref().ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::Unsupported,
                        "this SCIM server has no /Me, and the profile names no identity",
                    )
                    .with_hint("set identity = \"<your userName>\" in the profile, if the token is a person's")
                })?;
                let r = self.find(name).await?;
                Ok(self.user(&r, self.admins().await?.as_ref()).into_value())
            }
            Op::ListUsers => self.list_users(&action.params).await,
            Op::GetUser => {
                let r = self.find(action.target()?).await?;
                Ok(self.user(&r, self.admins().await?.as_ref()).into_value())
            }
            Op::CreateUser => self.create_user(action).await,
            Op::Suspend | Op::Unsuspend => self.set_active(action, action.op == Op::Unsuspend).await,
            Op::DeleteUser => {
                let caps = self.caps().await?;
                let target = action.target()?;
                let r = self.take(target).await?;
                let req = self.if_match(caps, Request::new(Method::DELETE, self.users_path(caps, &id_of(&r)?)), &r);
                let resp = self.http.send(&req).await.map_err(|e| conflict_hint(e, target))?;
                Ok(
                    json!({"ok": true, "op": "delete_user", "target": target, "id": r.get("id"), "http_status": resp.status}),
                )
            }
            Op::Promote | Op::Demote => {
                let group = self.admin_group().await?;
                self.membership(action, group).await
            }
            Op::AddToGroup | Op::RemoveFromGroup => {
                let group = self.group(&super::group_of(action)?).await?;
                self.membership(action, group).await
            }
            Op::ListGroups => self.list_groups().await,
            Op::Members => {
                let group = self.group(&super::group_of(action)?).await?;
                let listed = group.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
                Ok(Value::Array(
                    listed
                        .iter()
                        .map(|m| json!({"id": m.get("value"), "login": m.get("display"), "profile": self.profile}))
                        .collect(),
                ))
            }
            Op::Activity => self.activity(&action.params).await,
            Op::Api => super::api(&self.http, action).await,
            other => Err(unsupported(self, other)),
        }
    }
}

/// A name as SCIM compares userNames (`Backend::name_key`): NFKC, then without case, then NFKC again (lower-casing
/// can leave a string no longer normalised).
fn scim_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfkc().collect::<String>().to_lowercase().nfkc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_unicode_normalised_and_without_case() {
        for (a, b) in [
            ("jose\u{301}", "josé"),
            ("JOSÉ", "josé"),
            ("ｊｏｓé", "josé"),
            ("\u{212A}ate", "kate"),
            (" Kate ", "kate"),
            ("ﬁona", "fiona"),
        ] {
            assert_eq!(scim_key(a), scim_key(b), "{a:?} {b:?}");
        }
        assert_ne!(scim_key("jose"), scim_key("josé"));
        assert_ne!(scim_key("kate1"), scim_key("kate"));
    }

    #[test]
    fn errors_read_the_scim_error_body() {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400", "scimType": "invalidFilter", "detail": "bad op"});
        assert_eq!(error_message(&body).as_deref(), Some("invalidFilter: bad op"));
        assert_eq!(
            error_message(&json!({"status": "404", "detail": "User 'x' not found"})).as_deref(),
            Some("User 'x' not found")
        );
    }

    #[test]
    fn capabilities_come_from_the_service_provider_config() {
        let config = json!({"patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
                            "filter": {"supported": true, "maxResults": 200}, "etag": {"supported": true}});
        let types =
            json!({"Resources": [{"name": "User", "endpoint": "/People"}, {"name": "Group", "endpoint": "/Groups"}]});
        let caps = Capabilities::read(Some(&config), Some(&types), None);
        assert_eq!(
            caps,
            Capabilities {
                patch: true,
                etag: true,
                filter_max: Some(200),
                bulk: Some((1000, 1048576)),
                users: "People".into(),
                groups: "Groups".into(),
                active_writable: true
            }
        );
        let bare = Capabilities::read(Some(&json!({"patch": {"supported": false}})), None, None);
        assert!(!bare.patch && !bare.etag && bare.bulk.is_none() && bare.filter_max.is_none());
        assert_eq!(bare.users, "Users");
        // An endpoint that climbs out of the base is not followed.
        let odd = Capabilities::read(None, Some(&json!([{"name": "User", "endpoint": "/../admin"}])), None);
        assert_eq!(odd.users, "Users");
        // A User schema without a writable `active` cannot suspend; one that does not say keeps it.
        let schemas =
            |active: Value| json!({"Resources": [{"id": USER_SCHEMA, "attributes": [{"name": "userName"}, active]}]});
        let read_only =
            Capabilities::read(None, None, Some(&schemas(json!({"name": "active", "mutability": "readOnly"}))));
        assert!(!read_only.active_writable);
        assert_eq!(require_active(&read_only).unwrap_err().kind, ErrorKind::Unsupported);
        assert!(Capabilities::read(None, None, Some(&schemas(json!({"name": "active"})))).active_writable);
        assert!(!Capabilities::read(None, None, Some(&schemas(json!({"name": "title"})))).active_writable);
    }

    #[test]
    fn steward_filters_become_one_scim_filter_with_quoted_values() {
        let f = filter_expression(&json!({"suspended": true, "email": "a\"b@x"})).unwrap().unwrap();
        assert!(
            f.contains("active eq false") && f.contains(r#"emails.value eq "a\"b@x""#) && f.contains(" and "),
            "{f}"
        );
        let f = filter_expression(&json!({"filter": "title pr", "q": "ann"})).unwrap().unwrap();
        assert!(f.contains("(title pr)") && f.contains(r#"userName co "ann""#), "{f}");
        assert_eq!(filter_expression(&json!({"admin": true})).unwrap(), None);
        assert_eq!(filter_expression(&json!({"colour": "red"})).unwrap_err().kind, ErrorKind::Invalid);
    }

    #[test]
    fn an_id_that_would_climb_the_url_is_refused() {
        assert_eq!(id_of(&json!({"id": "2819c223"})).unwrap(), "2819c223");
        for bad in [json!({}), json!({"id": ""}), json!({"id": ".."}), json!({"id": "."}), json!({"id": "a\nb"})] {
            assert!(id_of(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bulk_answer_settles_each_operation_by_its_own_status() {
        let action = Action::new(Op::Suspend, Some("ann".into()), Value::Null);
        assert!(bulk_outcome(Some(&json!({"status": "200"})), &action, "ann", "1").is_ok());
        let e = bulk_outcome(Some(&json!({"status": "412", "response": {"detail": "changed"}})), &action, "ann", "1")
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.contains("changed on the server"), "{}", e.message);
        let e = bulk_outcome(Some(&json!({"status": "404"})), &action, "ann", "1").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(bulk_outcome(None, &action, "ann", "1").is_err());
    }
}
