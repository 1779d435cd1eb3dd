//! GitHub Enterprise Server emulation: the site-admin user API under `/api/v3`, written from seed 001 and
//! GitHub's GHES 3.22 description (status codes, bodies, `since` + Link pagination, 202 rename, no self-suspend).

// Handlers bail out with a ready `Response` as the error, the usual axum shape; its size does not matter here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

mod orgs;

pub const ADMIN_TOKEN: &str = "ghp_sandboxAdminToken000000000000000001";
pub const USER_TOKEN: &str = "ghp_sandboxUserToken0000000000000000002";
const DOCS: &str = "https://docs.github.com/enterprise-server@3.22/rest";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GhUser {
    pub id: u64,
    pub login: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub site_admin: bool,
    pub suspended_at: Option<String>,
    pub ldap_dn: Option<String>,
    /// When the account was last active (Unix seconds); `None`: never. What the all-users report says.
    pub last_active: Option<u64>,
}

#[derive(Default)]
pub struct Ghes {
    users: BTreeMap<u64, GhUser>,
    /// lower-cased login → id (GitHub logins are case-insensitive)
    logins: std::collections::HashMap<String, u64>,
    next_user_id: u64,
    /// token → user id
    tokens: BTreeMap<String, u64>,
    keys: BTreeMap<u64, Value>,
    pats: BTreeMap<u64, Value>,
    impersonation: BTreeMap<u64, Value>,
    next_auth_id: u64,
    pub base: String,
    /// Requests per hour `/rate_limit` reports; None = rate limiting disabled (the GHES default).
    pub rate_limit_per_hour: Option<u64>,
    /// Whether the all-users report has been generated (the first request for it is answered 202).
    report_ready: bool,
    /// Organisations by id (the order they were made, as `/organizations` pages them).
    orgs: BTreeMap<u64, orgs::Org>,
}

/// How many days ago seeded user `i` (`user0001` is 1) was last active; `None`: never. Every tenth user from
/// the third was never active; the rest spread over 0–199 days, so "inactive for 90 days" is a real share.
pub fn days_idle(i: usize) -> Option<u64> {
    (i % 10 != 3).then_some(((i * 7) % 200) as u64)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A seed user from `--seed users.json` (steward's own `list_users` JSON works as is).
#[derive(Deserialize)]
pub struct SeedUser {
    pub login: String,
    pub email: Option<String>,
    pub name: Option<String>,
    #[serde(default, alias = "site_admin")]
    pub admin: Option<bool>,
    #[serde(default)]
    pub suspended: Option<bool>,
    /// RFC 3339 (`2026-01-01T00:00:00Z`) or a date; absent: never active.
    #[serde(default)]
    pub last_active: Option<String>,
}

const CREATED: &str = "2024-01-15T09:00:00Z";

impl Ghes {
    /// What a rehearsal spanning processes keeps (`crate::Saved`): the users, their keys and tokens.
    pub fn saved(&self) -> Value {
        json!({
            "users": self.users, "tokens": self.tokens, "keys": self.keys, "pats": self.pats,
            "impersonation": self.impersonation, "next_user_id": self.next_user_id, "next_auth_id": self.next_auth_id,
            "orgs": self.orgs,
        })
    }

    /// Puts back what `saved` kept (the base URL and rate limit stay this start's).
    pub fn restore(&mut self, saved: &Value) -> Result<(), serde_json::Error> {
        let field = |k: &str| saved.get(k).cloned().unwrap_or(Value::Null);
        self.users = serde_json::from_value(field("users"))?;
        self.tokens = serde_json::from_value(field("tokens"))?;
        self.keys = serde_json::from_value(field("keys"))?;
        self.pats = serde_json::from_value(field("pats"))?;
        self.impersonation = serde_json::from_value(field("impersonation"))?;
        self.next_user_id = serde_json::from_value(field("next_user_id"))?;
        self.next_auth_id = serde_json::from_value(field("next_auth_id"))?;
        // Saved before organisations were emulated: the seeded ones stay.
        if let orgs @ Value::Object(_) = field("orgs") {
            self.orgs = serde_json::from_value(orgs)?;
        }
        self.logins = self.users.values().map(|u| (u.login.to_lowercase(), u.id)).collect();
        Ok(())
    }

    pub fn seeded(users: usize, seed: Option<Vec<SeedUser>>) -> Self {
        let mut g = Ghes { next_user_id: 1, next_auth_id: 1, ..Default::default() };
        let admin = g.add("admin", Some("admin@example.com"), Some("Site Admin"), true);
        g.users.get_mut(&admin).expect("just added").last_active = Some(unix_now());
        g.tokens.insert(ADMIN_TOKEN.to_string(), admin);
        match seed {
            Some(list) => {
                for s in list {
                    if s.login == "admin" {
                        continue;
                    }
                    let id = g.add(&s.login, s.email.as_deref(), s.name.as_deref(), s.admin.unwrap_or(false));
                    let u = g.users.get_mut(&id).expect("just added");
                    if s.suspended == Some(true) {
                        u.suspended_at = Some(CREATED.to_string());
                    }
                    u.last_active = s.last_active.as_deref().and_then(crate::parse_time);
                }
            }
            None => {
                for i in 1..=users {
                    let login = format!("user{i:04}");
                    let email = format!("{login}@example.com");
                    let name = format!("Demo User {i}");
                    let id = g.add(&login, Some(&email), Some(&name), i % 50 == 0);
                    let u = g.users.get_mut(&id).expect("just added");
                    if i % 25 == 0 {
                        u.suspended_at = Some(CREATED.to_string());
                    }
                    u.last_active = days_idle(i).map(|days| unix_now().saturating_sub(days * 86_400));
                }
                let ldap = g.add("ldap-user", Some("ldap-user@example.com"), Some("Directory User"), false);
                g.users.get_mut(&ldap).expect("just added").ldap_dn =
                    Some("uid=ldap-user,ou=people,dc=example,dc=com".into());
            }
        }
        if let Some(first) = g.users.values().find(|u| u.login != "admin" && u.ldap_dn.is_none()).map(|u| u.id) {
            g.tokens.insert(USER_TOKEN.to_string(), first);
        }
        // A few SSH keys and personal access tokens to list and delete; the admin's own token is PAT 1.
        g.pats.insert(1, pat(1, "steward admin token", admin, "admin"));
        let ids: Vec<(u64, String)> =
            g.users.values().filter(|u| u.login != "admin").take(6).map(|u| (u.id, u.login.clone())).collect();
        for (n, (uid, login)) in ids.iter().enumerate() {
            let key_id = n as u64 + 1;
            g.keys.insert(key_id, key(key_id, *uid, login));
            let pat_id = n as u64 + 2;
            g.pats.insert(pat_id, pat(pat_id, &format!("{login} laptop"), *uid, login));
        }
        g.next_auth_id = 100;
        orgs::seed(&mut g);
        g
    }

    fn add(&mut self, login: &str, email: Option<&str>, name: Option<&str>, site_admin: bool) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        self.logins.insert(login.to_lowercase(), id);
        self.users.insert(
            id,
            GhUser {
                id,
                login: login.to_string(),
                email: email.map(str::to_string),
                name: name.map(str::to_string),
                site_admin,
                suspended_at: None,
                ldap_dn: None,
                last_active: None,
            },
        );
        id
    }

    /// A person's GHES account (`Options::people`); its id.
    pub fn add_person(&mut self, login: &str, email: Option<&str>, site_admin: bool) -> u64 {
        let id = self.add(login, email, Some(&format!("Person {login}")), site_admin);
        // People offboarded in tests were at work yesterday.
        self.users.get_mut(&id).expect("just added").last_active = Some(unix_now().saturating_sub(86_400));
        id
    }

    /// The user was active now; `false` when there is no such user.
    pub fn mark_active(&mut self, login: &str) -> bool {
        let now = unix_now();
        self.by_login_mut(login).map(|u| u.last_active = Some(now)).is_some()
    }

    fn by_login(&self, login: &str) -> Option<&GhUser> {
        self.logins.get(&login.to_lowercase()).and_then(|id| self.users.get(id))
    }

    fn by_login_mut(&mut self, login: &str) -> Option<&mut GhUser> {
        let id = *self.logins.get(&login.to_lowercase())?;
        self.users.get_mut(&id)
    }

    /// Renames keep the login index in step with the users.
    fn set_login(&mut self, id: u64, new_login: String) {
        if let Some(u) = self.users.get_mut(&id) {
            self.logins.remove(&u.login.to_lowercase());
            self.logins.insert(new_login.to_lowercase(), id);
            u.login = new_login;
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(u) = self.users.remove(&id) {
            self.logins.remove(&u.login.to_lowercase());
        }
        self.forget_member(id);
        self.tokens.retain(|_, uid| *uid != id);
    }

    /// The users as steward would seed them again, for `/_sandbox/state` comparisons.
    pub fn snapshot(&self) -> Value {
        Value::Array(
            self.users
                .values()
                .map(|u| json!({"id": u.id, "login": u.login, "email": u.email, "site_admin": u.site_admin, "suspended_at": u.suspended_at}))
                .collect(),
        )
    }
}

fn pat(id: u64, note: &str, user_id: u64, login: &str) -> Value {
    json!({
        "id": id,
        "url": format!("https://ghes.example.com/api/v3/authorizations/{id}"),
        "app": {"name": note, "url": "https://docs.github.com/enterprise-server@3.22/rest/enterprise-admin/users", "client_id": "00000000000000000000"},
        "token": "",
        "hashed_token": format!("{:064x}", id * 7919),
        "token_last_eight": format!("{:08x}", id * 31),
        "note": note,
        "note_url": null,
        "created_at": CREATED,
        "updated_at": CREATED,
        "scopes": ["repo", "user"],
        "fingerprint": null,
        "expires_at": null,
        "user": {"login": login, "id": user_id},
    })
}

fn key(id: u64, user_id: u64, login: &str) -> Value {
    json!({
        "id": id,
        "key": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{id:08}sandbox {login}"),
        "user_id": user_id,
        "repository_id": null,
        "url": format!("https://ghes.example.com/api/v3/user/keys/{id}"),
        "title": format!("{login}'s laptop"),
        "read_only": false,
        "verified": true,
        "created_at": CREATED,
        "added_by": login,
        "last_used": null,
        "enabled": true,
    })
}

pub type Shared = Arc<Mutex<Ghes>>;

fn err(status: StatusCode, message: &str) -> Response {
    let body = json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()});
    (status, Json(body)).into_response()
}

fn not_found() -> Response {
    err(StatusCode::NOT_FOUND, "Not Found")
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn simple_user(base: &str, u: &GhUser) -> Value {
    let url = format!("{base}/users/{}", u.login);
    json!({
        "login": u.login, "id": u.id, "node_id": format!("MDQ6VXNlcj{}", u.id),
        "avatar_url": format!("{base}/avatars/u/{}", u.id), "gravatar_id": "",
        "url": url, "html_url": format!("{base}/{}", u.login),
        "followers_url": format!("{url}/followers"), "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"), "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"), "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"), "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"), "type": "User", "site_admin": u.site_admin,
        "user_view_type": "public",
    })
}

/// The full user object GHES returns to a site admin, `suspended_at` and `ldap_dn` included.
fn full_user(base: &str, u: &GhUser) -> Value {
    let mut v = simple_user(base, u);
    let extra = json!({
        "name": u.name, "company": null, "blog": "", "location": null, "email": u.email, "hireable": null,
        "bio": null, "twitter_username": null, "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
        "created_at": CREATED, "updated_at": CREATED, "suspended_at": u.suspended_at, "ldap_dn": u.ldap_dn,
        "user_view_type": "private",
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// Who is calling: `Authorization: token X` or `Bearer X`.
fn caller(g: &Ghes, headers: &HeaderMap) -> Result<GhUser, Response> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = value.strip_prefix("token ").or_else(|| value.strip_prefix("Bearer ")).unwrap_or("").trim();
    if token.is_empty() {
        return Err(err(StatusCode::UNAUTHORIZED, "Requires authentication"));
    }
    g.tokens
        .get(token)
        .and_then(|id| g.users.get(id))
        .cloned()
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "Bad credentials"))
}

fn site_admin(g: &Ghes, headers: &HeaderMap) -> Result<GhUser, Response> {
    let me = caller(g, headers)?;
    if me.suspended_at.is_some() {
        return Err(err(StatusCode::FORBIDDEN, "Sorry. Your account was suspended."));
    }
    if !me.site_admin {
        return Err(err(StatusCode::FORBIDDEN, "Must have admin rights to perform this action."));
    }
    Ok(me)
}

/// The optional JSON body; bad JSON is GitHub's 400.
fn body(bytes: &Bytes) -> Result<Option<Value>, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Value>(bytes)
        .map(|v| if v.is_null() { None } else { Some(v) })
        .map_err(|_| err(StatusCode::BAD_REQUEST, "Problems parsing JSON"))
}

fn validation_failed(field: &str, code: &str) -> Response {
    let body = json!({
        "message": "Validation Failed",
        "errors": [{"resource": "User", "code": code, "field": field}],
        "documentation_url": format!("{DOCS}/enterprise-admin/users#create-a-user"),
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// GitHub keeps only alphanumerics and single hyphens (`octo_cat` becomes `octo-cat`).
fn normalize_login(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

#[derive(Deserialize, Default)]
struct Paging {
    since: Option<String>,
    per_page: Option<String>,
    page: Option<String>,
}

fn per_page(p: &Paging) -> Result<usize, Response> {
    match &p.per_page {
        None => Ok(30),
        Some(s) => {
            s.parse::<usize>().map(|n| n.clamp(1, 100)).map_err(|_| err(StatusCode::BAD_REQUEST, "Invalid per_page"))
        }
    }
}

fn link(url: String) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")) {
        h.insert("link", v);
    }
    h
}

async fn list_users(State(s): State<Shared>, headers: HeaderMap, Query(p): Query<Paging>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = caller(&g, &headers) {
        return r;
    }
    since_paged(&g.base, "users", &g.users, &p, |u| simple_user(&g.base, u))
}

/// A listing paged by `since` (the last id seen) with a Link header, as `/users` and `/organizations` are.
fn since_paged<T>(
    base: &str,
    path: &str,
    all: &BTreeMap<u64, T>,
    p: &Paging,
    render: impl Fn(&T) -> Value,
) -> Response {
    let since: u64 = match p.since.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return err(StatusCode::BAD_REQUEST, "Invalid since"),
    };
    let n = match per_page(p) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let page: Vec<(u64, &T)> = all.range(since + 1..).take(n).map(|(id, t)| (*id, t)).collect();
    let more = page.last().is_some_and(|(last, _)| all.range(last + 1..).next().is_some());
    let body: Vec<Value> = page.iter().map(|(_, t)| render(t)).collect();
    let headers = match (more, page.last()) {
        (true, Some((last, _))) => link(format!("{base}/{path}?since={last}&per_page={n}")),
        _ => HeaderMap::new(),
    };
    (headers, Json(Value::Array(body))).into_response()
}

async fn get_user(State(s): State<Shared>, headers: HeaderMap, Path(login): Path<String>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let me = match caller(&g, &headers) {
        Ok(me) => me,
        Err(r) => return r,
    };
    match g.by_login(&login) {
        Some(u) if me.site_admin || u.id == me.id => Json(full_user(&g.base, u)).into_response(),
        Some(u) => Json(simple_user(&g.base, u)).into_response(),
        None => not_found(),
    }
}

async fn whoami(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    match caller(&g, &headers) {
        Ok(me) => Json(full_user(&g.base, &me)).into_response(),
        Err(r) => r,
    }
}

/// PUT/DELETE `/users/{username}/suspended`.
async fn set_suspended(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(login): Path<String>,
    method: axum::http::Method,
    bytes: Bytes,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let me = match site_admin(&g, &headers) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let reason = match body(&bytes) {
        Ok(b) => b.and_then(|b| b.get("reason").cloned()),
        Err(r) => return r,
    };
    if reason.as_ref().is_some_and(|r| !r.is_string()) {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.\n\nFor 'properties/reason', is not a string.");
    }
    let suspend = method == axum::http::Method::PUT;
    let Some(u) = g.by_login_mut(&login) else {
        return not_found();
    };
    if u.ldap_dn.is_some() {
        return err(
            StatusCode::FORBIDDEN,
            "Active Directory LDAP-authenticated users cannot be suspended or unsuspended through the API.",
        );
    }
    if suspend && u.id == me.id {
        return err(StatusCode::FORBIDDEN, "You cannot suspend yourself.");
    }
    if suspend {
        if u.suspended_at.is_none() {
            u.suspended_at = Some(now());
        }
    } else {
        u.suspended_at = None;
    }
    no_content()
}

/// PUT/DELETE `/users/{username}/site_admin`.
async fn set_site_admin(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(login): Path<String>,
    method: axum::http::Method,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let me = match site_admin(&g, &headers) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let promote = method == axum::http::Method::PUT;
    let Some(u) = g.by_login_mut(&login) else {
        return not_found();
    };
    if !promote && u.id == me.id {
        return err(StatusCode::FORBIDDEN, "You cannot demote yourself.");
    }
    u.site_admin = promote;
    no_content()
}

async fn create_user(State(s): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    let b = match body(&bytes) {
        Ok(Some(b)) => b,
        Ok(None) => return err(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        Err(r) => return r,
    };
    let Some(raw_login) = b.get("login").and_then(Value::as_str) else {
        return validation_failed("login", "missing_field");
    };
    let login = normalize_login(raw_login);
    if login.is_empty() {
        return validation_failed("login", "invalid");
    }
    let email = b.get("email").and_then(Value::as_str);
    if g.by_login(&login).is_some() {
        return validation_failed("login", "already_exists");
    }
    if let Some(e) = email {
        if g.users.values().any(|u| u.email.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(e))) {
            return validation_failed("email", "already_exists");
        }
    }
    let id = g.add(&login, email, None, false);
    if b.get("suspended").and_then(Value::as_bool) == Some(true) {
        g.users.get_mut(&id).expect("just added").suspended_at = Some(now());
    }
    let u = g.users[&id].clone();
    (StatusCode::CREATED, Json(simple_user(&g.base, &u))).into_response()
}

async fn rename_user(State(s): State<Shared>, headers: HeaderMap, Path(login): Path<String>, bytes: Bytes) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    let new_login = match body(&bytes) {
        Ok(Some(b)) => match b.get("login").and_then(Value::as_str) {
            Some(l) => normalize_login(l),
            None => return validation_failed("login", "missing_field"),
        },
        Ok(None) => return err(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        Err(r) => return r,
    };
    if g.by_login(&new_login).is_some_and(|u| !u.login.eq_ignore_ascii_case(&login)) {
        return validation_failed("login", "already_exists");
    }
    let Some(id) = g.by_login(&login).map(|u| u.id) else {
        return not_found();
    };
    // The real server renames in a background job; the sandbox finishes it before answering.
    g.set_login(id, new_login);
    let body = json!({"message": "Job queued to rename user. It may take a few minutes to complete.", "url": format!("{}/user/{id}", g.base)});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

async fn delete_user(State(s): State<Shared>, headers: HeaderMap, Path(login): Path<String>) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let me = match site_admin(&g, &headers) {
        Ok(me) => me,
        Err(r) => return r,
    };
    let Some(id) = g.by_login(&login).map(|u| u.id) else {
        return not_found();
    };
    if id == me.id {
        return err(StatusCode::FORBIDDEN, "You cannot delete your own account.");
    }
    g.remove(id);
    no_content()
}

async fn create_impersonation(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(login): Path<String>,
    bytes: Bytes,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    let scopes = match body(&bytes) {
        Ok(Some(b)) => match b.get("scopes") {
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.clone(),
            _ => {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\n\"scopes\" is required and must be an array of strings.",
                )
            }
        },
        Ok(None) => return err(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        Err(r) => return r,
    };
    let Some(u) = g.by_login(&login).cloned() else {
        return not_found();
    };
    if let Some(existing) = g.impersonation.get(&u.id) {
        if existing["scopes"] == Value::Array(scopes.clone()) {
            let mut shown = existing.clone();
            shown["token"] = json!("");
            return (StatusCode::OK, Json(shown)).into_response();
        }
    }
    let id = g.next_auth_id;
    g.next_auth_id += 1;
    let token = format!("ghp_sandboxImpersonation{id:016}");
    let mut auth = pat(id, "impersonation token", u.id, &u.login);
    auth["scopes"] = Value::Array(scopes);
    auth["token"] = json!(token);
    auth["token_last_eight"] = json!(&token[token.len() - 8..]);
    g.tokens.insert(token, u.id);
    g.impersonation.insert(u.id, auth.clone());
    (StatusCode::CREATED, Json(auth)).into_response()
}

async fn delete_impersonation(State(s): State<Shared>, headers: HeaderMap, Path(login): Path<String>) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    let Some(uid) = g.by_login(&login).map(|u| u.id) else {
        return not_found();
    };
    if let Some(auth) = g.impersonation.remove(&uid) {
        let token = auth["token"].as_str().unwrap_or_default().to_string();
        g.tokens.remove(&token);
    }
    no_content()
}

/// Page-based listing (`page`, `per_page`) with a Link header, for keys and tokens.
fn paged(base: &str, path: &str, items: Vec<Value>, p: &Paging) -> Response {
    paged_by(base, path, items.len(), p, |range| items[range].to_vec())
}

/// `paged` over `total` items of which only the page asked for is rendered (`render` gets its range): a team of
/// 100,000 is not turned into JSON for every page of it.
fn paged_by(
    base: &str,
    path: &str,
    total: usize,
    p: &Paging,
    render: impl FnOnce(std::ops::Range<usize>) -> Vec<Value>,
) -> Response {
    let n = match per_page(p) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let page: usize = match p.page.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        _ => return err(StatusCode::BAD_REQUEST, "Invalid page"),
    };
    let start = ((page - 1) * n).min(total);
    let body = render(start..(start + n).min(total));
    let headers = if start + n < total {
        let joint = if path.contains('?') { '&' } else { '?' };
        link(format!("{base}/{path}{joint}page={}&per_page={n}", page + 1))
    } else {
        HeaderMap::new()
    };
    (headers, Json(Value::Array(body))).into_response()
}

async fn list_keys(State(s): State<Shared>, headers: HeaderMap, Query(p): Query<Paging>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    paged(&g.base, "admin/keys", g.keys.values().cloned().collect(), &p)
}

async fn delete_key(State(s): State<Shared>, headers: HeaderMap, Path(key_ids): Path<String>) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    match key_ids.parse::<u64>().ok().and_then(|id| g.keys.remove(&id)) {
        Some(_) => no_content(),
        None => not_found(),
    }
}

async fn list_tokens(State(s): State<Shared>, headers: HeaderMap, Query(p): Query<Paging>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    paged(&g.base, "admin/tokens", g.pats.values().cloned().collect(), &p)
}

async fn delete_token(State(s): State<Shared>, headers: HeaderMap, Path(token_id): Path<String>) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = site_admin(&g, &headers) {
        return r;
    }
    let Ok(id) = token_id.parse::<u64>() else {
        return not_found();
    };
    if id == 1 {
        return err(StatusCode::FORBIDDEN, "This personal access token is in use and cannot be deleted.");
    }
    match g.pats.remove(&id) {
        Some(_) => no_content(),
        None => not_found(),
    }
}

async fn rate_limit(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = caller(&g, &headers) {
        return r;
    }
    match g.rate_limit_per_hour {
        // Rate limiting is off by default on GHES, and then this endpoint is 404.
        None => not_found(),
        Some(per_hour) => {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() + 3600)
                .unwrap_or(0);
            let core = json!({"limit": per_hour, "remaining": per_hour, "reset": reset, "used": 0});
            Json(json!({"resources": {"core": core, "search": {"limit": 30, "remaining": 30, "reset": reset, "used": 0}}, "rate": core})).into_response()
        }
    }
}

fn now() -> String {
    crate::ghes_time(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    )
}

/// `GET /stafftools/reports/all_users.csv` (GHES "Accessing reports for your instance"): HTTP Basic with a site
/// admin's login and token. Signed out, GHES sends the browser to sign in (302); a non-admin is told nothing is
/// there (404). The first request starts the report and is answered 202; later ones get the CSV, made afresh.
async fn all_users_report(State(state): State<Shared>, headers: HeaderMap) -> Response {
    use base64::Engine as _;
    let mut g = state.lock().unwrap_or_else(|e| e.into_inner());
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let me = basic.and_then(|pair| {
        let (login, token) = pair.split_once(':')?;
        let user = g.tokens.get(token).and_then(|id| g.users.get(id))?;
        user.login.eq_ignore_ascii_case(login).then(|| user.clone())
    });
    let Some(me) = me else {
        return (StatusCode::FOUND, [("location", "/login?return_to=%2Fstafftools%2Freports")], "").into_response();
    };
    if !me.site_admin || me.suspended_at.is_some() {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    if !g.report_ready {
        g.report_ready = true;
        return (StatusCode::ACCEPTED, "").into_response();
    }
    let now = unix_now();
    let mut csv = String::from("created_at,id,login,email,role,suspended?,last_logged_ip,repos,ssh_keys,org_memberships,dormant?,last_active,raw_login,2fa_enabled?\n");
    for u in g.users.values() {
        let dormant = u.last_active.is_none_or(|t| now.saturating_sub(t) >= 90 * 86_400);
        let last_active = u.last_active.map(crate::ghes_time).unwrap_or_default();
        let role = if u.site_admin { "admin" } else { "user" };
        csv.push_str(&format!(
            "{CREATED},{},{},{},{role},{},,0,0,0,{dormant},{last_active},{},false\n",
            u.id,
            u.login,
            u.email.as_deref().unwrap_or(""),
            u.suspended_at.is_some(),
            u.login,
        ));
    }
    ([("content-type", "text/csv; charset=utf-8")], csv).into_response()
}

/// Routes outside the API: the site-admin reports, at the instance's root.
pub fn root_routes(state: Shared) -> Router {
    Router::new().route("/stafftools/reports/all_users.csv", get(all_users_report)).with_state(state)
}

pub fn routes(state: Shared) -> Router {
    Router::new()
        .route("/users", get(list_users))
        .route("/users/{username}", get(get_user))
        .route("/user", get(whoami))
        .route("/users/{username}/suspended", put(set_suspended).delete(set_suspended))
        .route("/users/{username}/site_admin", put(set_site_admin).delete(set_site_admin))
        .route("/admin/users", post(create_user))
        .route("/admin/users/{username}", axum::routing::patch(rename_user).delete(delete_user))
        .route("/admin/users/{username}/authorizations", post(create_impersonation).delete(delete_impersonation))
        .route("/admin/keys", get(list_keys))
        .route("/admin/keys/{key_ids}", delete(delete_key))
        .route("/admin/tokens", get(list_tokens))
        .route("/admin/tokens/{token_id}", delete(delete_token))
        .route("/rate_limit", get(rate_limit))
        .merge(orgs::routes())
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_normalized_like_github_does() {
        assert_eq!(normalize_login("octo_cat"), "octo-cat");
        assert_eq!(normalize_login("a__b--c_"), "a-b-c");
        assert_eq!(normalize_login("monalisa"), "monalisa");
    }

    #[test]
    fn dates_are_rfc3339_and_round_trip() {
        assert_eq!(crate::ghes_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(crate::days_from_civil(2023, 11, 14), 1_700_000_000 / 86_400);
        assert_eq!(crate::civil_from_days(crate::days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn the_seed_has_admins_suspended_users_and_an_ldap_user() {
        let g = Ghes::seeded(100, None);
        assert_eq!(g.users.len(), 102);
        assert_eq!(g.users.values().filter(|u| u.suspended_at.is_some()).count(), 4);
        assert!(g.by_login("ldap-user").unwrap().ldap_dn.is_some());
        assert!(g.by_login("user0050").unwrap().site_admin);
    }
}
