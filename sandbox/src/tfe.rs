//! Terraform Enterprise emulation: the admin users API under `/api/v2` (JSON:API documents, `page[number]`/
//! `page[size]` with `meta.pagination`, `status-counts`, the action POSTs with their 400s, 422 on deleting a sole
//! organization owner, 404 for non-admins), written from seeds 002/004 and specs/terraform.md.

// Handlers bail out with a ready `Response` as the error, the usual axum shape; its size does not matter here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

mod teams;

pub const ADMIN_TOKEN: &str = "sandboxAdmin0001.atlasv1.sandboxTokenForTheTerraformEnterpriseEmulation";
pub const USER_TOKEN: &str = "sandboxUser00002.atlasv1.sandboxTokenForAnOrdinaryTerraformEnterpriseUser";
const MEDIA: &str = "application/vnd.api+json";

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TfUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub admin: bool,
    pub suspended: bool,
    pub service_account: bool,
    pub two_factor: bool,
    pub organizations: Vec<String>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Tfe {
    /// id → user, in creation order by id
    users: BTreeMap<String, TfUser>,
    tokens: HashMap<String, String>,
    /// organization → its owners' ids
    owners: BTreeMap<String, Vec<String>>,
    /// admin id → the user they impersonate
    impersonating: HashMap<String, String>,
    /// User API tokens (`at-…`), in creation order: what `/admin/user-tokens` lists and deletes.
    user_tokens: BTreeMap<String, UserToken>,
    /// Organisations' teams by id (saved before teams were emulated: none).
    #[serde(default)]
    teams: BTreeMap<String, teams::TfTeam>,
}

/// A user API token's metadata; `secret` is the bearer value it authenticates with, when the sandbox knows one.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UserToken {
    pub user_id: String,
    pub description: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub secret: Option<String>,
}

pub type Shared = Arc<Mutex<Tfe>>;

/// TFE ids look like `user-ZL4MsEKnd6iTigTb`: a prefix and 16 base-62 characters, here derived from the number.
fn user_id(n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995;
    let mut out = String::from("user-");
    for _ in 0..16 {
        out.push(ALPHABET[(x % 62) as usize] as char);
        x /= 62;
        if x == 0 {
            x = (n as u64 + 7).wrapping_mul(0x2545_F491_4F6C_DD1D);
        }
    }
    out
}

impl Tfe {
    /// What a rehearsal spanning processes keeps (`crate::Saved`): all of it.
    pub fn saved(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn restore(&mut self, saved: &Value) -> Result<(), serde_json::Error> {
        let seeded_teams = std::mem::take(&mut self.teams);
        *self = serde_json::from_value(saved.clone())?;
        // Saved before teams were emulated: the seeded ones.
        if saved.get("teams").is_none() {
            self.teams = seeded_teams;
        }
        Ok(())
    }

    /// A person's Terraform account (`Options::people`).
    pub fn add_person(&mut self, username: &str, email: &str) {
        let u = TfUser {
            id: user_id(50_000 + self.users.len()),
            username: username.to_string(),
            email: email.to_string(),
            admin: false,
            suspended: false,
            service_account: false,
            two_factor: false,
            organizations: vec!["shared".to_string()],
        };
        self.users.insert(u.id.clone(), u);
    }

    pub fn seeded(n: usize) -> Self {
        let mut t = Tfe::default();
        let mut add = |i: usize, username: String, admin: bool| {
            let orgs = if i == 0 {
                vec!["platform".to_string()]
            } else {
                vec![format!("org-{}", i % 7), "shared".to_string()]
            };
            let u = TfUser {
                id: user_id(i),
                email: format!("{username}@example.com"),
                username,
                admin,
                suspended: i > 0 && i.is_multiple_of(25),
                service_account: i > 0 && i.is_multiple_of(40),
                two_factor: i.is_multiple_of(3),
                organizations: orgs,
            };
            t.users.insert(u.id.clone(), u);
        };
        add(0, "admin".to_string(), true);
        for i in 1..=n {
            add(i, format!("tfuser{i:04}"), i % 50 == 0);
        }
        // Every org-K is owned by the first two of its members, so tfuser0001..0007 are sole owners of nothing
        // and tfuser0003 alone owns "solo-3".
        let ids: Vec<(String, String)> = t.users.values().map(|u| (u.id.clone(), u.username.clone())).collect();
        for (id, name) in &ids {
            if name == "tfuser0003" {
                t.owners.insert("solo-3".into(), vec![id.clone()]);
                if let Some(u) = t.users.get_mut(id) {
                    u.organizations.push("solo-3".into());
                }
            }
        }
        let admin = ids.iter().find(|(_, n)| n == "admin").map(|(i, _)| i.clone()).unwrap_or_default();
        t.tokens.insert(ADMIN_TOKEN.into(), admin.clone());
        if let Some((id, _)) = ids.iter().find(|(_, n)| n == "tfuser0001") {
            t.tokens.insert(USER_TOKEN.into(), id.clone());
        }
        // Demo user tokens: the admin's own, tfuser0001's (the one USER_TOKEN is), and one or two for the next
        // few users, so deprovisioning has something to find and delete.
        let add_token = |t: &mut Tfe, user: &str, description: &str, secret: Option<&str>| {
            let n = t.user_tokens.len() + 1;
            let id = format!("at-{}", &user_id(10_000 + n)["user-".len()..]);
            let token = UserToken {
                user_id: user.to_string(),
                description: Some(description.to_string()),
                created_at: "2024-01-15T09:00:00.000Z".into(),
                last_used_at: n.is_multiple_of(2).then(|| "2026-11-01T12:00:00.000Z".to_string()),
                secret: secret.map(str::to_string),
            };
            t.user_tokens.insert(id, token);
        };
        add_token(&mut t, &admin, "steward admin token", Some(ADMIN_TOKEN));
        let mut by_name: Vec<&(String, String)> = ids.iter().filter(|(_, n)| n.starts_with("tfuser")).collect();
        by_name.sort_by(|a, b| a.1.cmp(&b.1));
        for (i, (id, name)) in by_name.into_iter().take(6).enumerate() {
            let secret = (name == "tfuser0001").then_some(USER_TOKEN);
            add_token(&mut t, id, &format!("{name} laptop"), secret);
            if i % 2 == 0 {
                add_token(&mut t, id, &format!("{name} CI"), None);
            }
        }
        teams::seed(&mut t);
        t
    }

    pub fn snapshot(&self) -> Value {
        Value::Array(
            self.users
                .values()
                .map(|u| json!({"id": u.id, "username": u.username, "is-admin": u.admin, "is-suspended": u.suspended, "two-factor": u.two_factor}))
                .collect(),
        )
    }
}

fn errors(status: StatusCode, title: &str, detail: Option<&str>) -> Response {
    let mut e = json!({"status": status.as_u16().to_string(), "title": title});
    if let Some(d) = detail {
        e["detail"] = json!(d);
    }
    let mut resp = (status, Json(json!({"errors": [e]}))).into_response();
    resp.headers_mut().insert("content-type", MEDIA.parse().expect("static header"));
    resp
}

fn not_found() -> Response {
    errors(StatusCode::NOT_FOUND, "not found", None)
}

fn doc(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert("content-type", MEDIA.parse().expect("static header"));
    resp
}

fn resource(u: &TfUser) -> Value {
    json!({
        "id": u.id,
        "type": "users",
        "attributes": {
            "username": u.username,
            "email": u.email,
            "avatar-url": format!("https://www.gravatar.com/avatar/{}?s=100&d=mm", u.id),
            "is-admin": u.admin,
            "is-suspended": u.suspended,
            "is-service-account": u.service_account,
            "two-factor": {"enabled": u.two_factor, "verified": u.two_factor},
        },
        "relationships": {"organizations": {"data": u.organizations.iter().map(|o| json!({"id": o, "type": "organizations"})).collect::<Vec<_>>()}},
        "links": {"self": format!("/api/v2/users/{}", u.username)},
    })
}

/// The caller, by `Authorization: Bearer TOKEN`: 401 without a valid token, 404 for a non-admin (TFE hides the
/// admin API from everyone else).
fn admin(t: &Tfe, headers: &HeaderMap) -> Result<TfUser, Response> {
    let me = caller(t, headers)?;
    if !me.admin {
        return Err(not_found());
    }
    Ok(me)
}

fn caller(t: &Tfe, headers: &HeaderMap) -> Result<TfUser, Response> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = value.strip_prefix("Bearer ").unwrap_or("").trim();
    t.tokens
        .get(token)
        .and_then(|id| t.users.get(id))
        .cloned()
        .ok_or_else(|| errors(StatusCode::UNAUTHORIZED, "unauthorized", None))
}

async fn list(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    let flag = |k: &str| match q.get(k).map(String::as_str) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let (fadmin, fsusp) = (flag("filter[admin]"), flag("filter[suspended]"));
    let needle = q.get("q").map(|s| s.to_lowercase());
    let size: usize = q.get("page[size]").and_then(|v| v.parse().ok()).unwrap_or(20).clamp(1, 100);
    let number: usize = q.get("page[number]").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let matching: Vec<&TfUser> = t
        .users
        .values()
        .filter(|u| {
            needle.as_ref().is_none_or(|n| u.username.to_lowercase().contains(n) || u.email.to_lowercase().contains(n))
        })
        .filter(|u| fadmin.is_none_or(|a| u.admin == a))
        .filter(|u| fsusp.is_none_or(|s| u.suspended == s))
        .collect();
    let total = matching.len();
    let pages = total.div_ceil(size).max(1);
    let data: Vec<Value> = matching.iter().skip((number - 1) * size).take(size).map(|u| resource(u)).collect();
    let mut body = json!({
        "data": data,
        "links": {
            "self": format!("/api/v2/admin/users?page%5Bnumber%5D={number}&page%5Bsize%5D={size}"),
            "first": format!("/api/v2/admin/users?page%5Bnumber%5D=1&page%5Bsize%5D={size}"),
            "prev": if number > 1 { json!(format!("/api/v2/admin/users?page%5Bnumber%5D={}&page%5Bsize%5D={size}", number - 1)) } else { Value::Null },
            "next": if number < pages { json!(format!("/api/v2/admin/users?page%5Bnumber%5D={}&page%5Bsize%5D={size}", number + 1)) } else { Value::Null },
            "last": format!("/api/v2/admin/users?page%5Bnumber%5D={pages}&page%5Bsize%5D={size}"),
        },
        "meta": {
            "pagination": {
                "current-page": number,
                "prev-page": if number > 1 { json!(number - 1) } else { Value::Null },
                "next-page": if number < pages { json!(number + 1) } else { Value::Null },
                "total-pages": pages,
                "total-count": total,
            },
            "status-counts": {
                "total": t.users.len(),
                "suspended": t.users.values().filter(|u| u.suspended).count(),
                "admin": t.users.values().filter(|u| u.admin).count(),
            },
        },
    });
    if q.get("include").is_some_and(|i| i.split(',').any(|x| x == "organizations")) {
        let mut orgs: Vec<&String> = matching.iter().flat_map(|u| u.organizations.iter()).collect();
        orgs.sort();
        orgs.dedup();
        body["included"] =
            orgs.iter().map(|o| json!({"id": o, "type": "organizations", "attributes": {"name": o}})).collect();
    }
    doc(StatusCode::OK, body)
}

/// `GET /admin/user-tokens`: every user token (JSON:API `authentication-tokens`, paged like the user list).
async fn list_user_tokens(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    let data: Vec<Value> = t
        .user_tokens
        .iter()
        .map(|(id, tok)| {
            json!({
                "id": id,
                "type": "authentication-tokens",
                "attributes": {"created-at": tok.created_at, "last-used-at": tok.last_used_at, "description": tok.description, "token": null, "expired-at": null},
                "relationships": {"created-by": {"data": null}, "user": {"data": {"id": tok.user_id, "type": "users"}}},
            })
        })
        .collect();
    doc(StatusCode::OK, page(data, &q))
}

/// A JSON:API page of `items` (`page[number]`, `page[size]`, `meta.pagination`).
fn page(items: Vec<Value>, q: &HashMap<String, String>) -> Value {
    let size: usize = q.get("page[size]").and_then(|v| v.parse().ok()).unwrap_or(20).clamp(1, 100);
    let number: usize = q.get("page[number]").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let total = items.len();
    let pages = total.div_ceil(size).max(1);
    let data: Vec<Value> = items.into_iter().skip((number - 1) * size).take(size).collect();
    json!({
        "data": data,
        "meta": {"pagination": {
            "current-page": number,
            "prev-page": if number > 1 { json!(number - 1) } else { Value::Null },
            "next-page": if number < pages { json!(number + 1) } else { Value::Null },
            "total-pages": pages,
            "total-count": total,
        }},
    })
}

/// `DELETE /admin/user-tokens/:id`: 204, and the token no longer authenticates.
async fn delete_user_token(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    match t.user_tokens.remove(&id) {
        Some(tok) => {
            if let Some(secret) = tok.secret {
                t.tokens.remove(&secret);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

async fn remove(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    if !t.users.contains_key(&id) {
        return not_found();
    }
    let sole: Vec<String> =
        t.owners.iter().filter(|(_, o)| o.len() == 1 && o[0] == id).map(|(name, _)| name.clone()).collect();
    if !sole.is_empty() {
        let detail = format!("user is the sole owner of the following organizations: {}", sole.join(", "));
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable entity", Some(&detail));
    }
    t.users.remove(&id);
    t.tokens.retain(|_, uid| *uid != id);
    t.user_tokens.retain(|_, tok| tok.user_id != id);
    StatusCode::NO_CONTENT.into_response()
}

async fn action(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    let me = match admin(&t, &headers) {
        Ok(me) => me,
        Err(r) => return r,
    };
    if action == "impersonate" {
        return impersonate(&mut t, &me, &id, &body, &headers);
    }
    let Some(u) = t.users.get_mut(&id) else { return not_found() };
    let refuse = |detail: &str| errors(StatusCode::BAD_REQUEST, "bad request", Some(detail));
    match action.as_str() {
        "suspend" if u.suspended => return refuse("User is already suspended."),
        "suspend" => u.suspended = true,
        "unsuspend" if !u.suspended => return refuse("User is not suspended."),
        "unsuspend" => u.suspended = false,
        "grant_admin" if u.admin => return refuse("User is already an administrator."),
        "grant_admin" if u.service_account => {
            return errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable entity",
                Some("Service accounts cannot be administrators."),
            )
        }
        "grant_admin" => u.admin = true,
        "revoke_admin" if !u.admin => return refuse("User is not an administrator."),
        "revoke_admin" => u.admin = false,
        "disable_two_factor" if !u.two_factor => {
            return refuse("User does not have two-factor authentication enabled.")
        }
        "disable_two_factor" => u.two_factor = false,
        _ => return not_found(),
    }
    let body = json!({"data": resource(u)});
    doc(StatusCode::OK, body)
}

/// Impersonation needs a browser session (cookie + CSRF token); an API token alone is refused, as TFE does.
fn impersonate(t: &mut Tfe, me: &TfUser, id: &str, body: &Bytes, headers: &HeaderMap) -> Response {
    let session =
        headers.get("cookie").and_then(|v| v.to_str().ok()).is_some_and(|c| c.contains("_atlas_session_data="));
    if !session || headers.get("x-csrf-token").is_none() {
        return errors(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some("Impersonation requires a browser session; API tokens cannot impersonate."),
        );
    }
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("reason").and_then(Value::as_str).map(str::to_string));
    if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return errors(StatusCode::BAD_REQUEST, "bad request", Some("A reason for impersonation is required."));
    }
    if t.impersonating.contains_key(&me.id) {
        return errors(StatusCode::FORBIDDEN, "forbidden", Some("Client is already impersonating another user."));
    }
    match t.users.get(id) {
        None => not_found(),
        Some(u) if u.service_account || u.id == me.id => {
            errors(StatusCode::FORBIDDEN, "forbidden", Some("User cannot be impersonated."))
        }
        Some(u) => {
            t.impersonating.insert(me.id.clone(), u.id.clone());
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut().insert(
                "set-cookie",
                "_atlas_session_data=impersonating; Path=/; HttpOnly".parse().expect("static header"),
            );
            resp
        }
    }
}

async fn unimpersonate(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    let me = match admin(&t, &headers) {
        Ok(me) => me,
        Err(r) => return r,
    };
    if t.impersonating.remove(&me.id).is_none() {
        return errors(StatusCode::BAD_REQUEST, "bad request", Some("Client is not in an impersonation session."));
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn account(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    match caller(&t, &headers) {
        Ok(me) => doc(StatusCode::OK, json!({"data": resource(&me)})),
        Err(r) => r,
    }
}

pub fn routes(state: Shared) -> Router {
    Router::new()
        .route("/admin/users", get(list))
        .route("/admin/users/{id}", delete(remove))
        .route("/admin/users/{id}/actions/{action}", post(action))
        .route("/admin/users/actions/unimpersonate", post(unimpersonate))
        .route("/admin/user-tokens", get(list_user_tokens))
        .route("/admin/user-tokens/{id}", delete(delete_user_token))
        .route("/account/details", get(account))
        .merge(teams::routes())
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_tfe_ids_and_are_distinct() {
        let ids: std::collections::HashSet<String> = (0..2000).map(user_id).collect();
        assert_eq!(ids.len(), 2000);
        assert!(user_id(1).starts_with("user-") && user_id(1).len() == 21);
    }
}
