//! TransactionLink emulation: organization users, roles, terminate/reinstate and MFA reset under
//! `/organizations`, written from seed 003 and specs/transactionlink.* (organization tokens sent raw in
//! `Authorization`; Spring-style pages; `{"fingerprint", "errors":[{code, message}]}` errors; 403 per permission).

// Handlers bail out with a ready `Response` as the error, the usual axum shape; its size does not matter here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Tokens with both permissions, without `can_reset_2fa`, and without `can_manage_users`.
pub const ADMIN_TOKEN: &str = "tot_sandboxAdminTokenWithEveryPermission000000000000001";
pub const NO_MFA_TOKEN: &str = "tot_sandboxTokenWithoutCanReset2fa00000000000000000002";
pub const READ_ONLY_TOKEN: &str = "tot_sandboxTokenWithoutCanManageUsers000000000000003";

const ORG_ID: &str = "0b6f1c1e-0000-4000-8000-000000000001";
pub const ROLE_OWNER: &str = "7a0c0000-0000-4000-8000-00000000000a";
pub const ROLE_ADMIN: &str = "7a0c0000-0000-4000-8000-00000000000b";
pub const ROLE_MEMBER: &str = "7a0c0000-0000-4000-8000-00000000000c";

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TlUser {
    pub id: String,
    pub email: String,
    pub role_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub status: String,
    pub mfa: bool,
}

#[derive(Default)]
pub struct Tl {
    users: BTreeMap<String, TlUser>,
    /// token → (can_manage_users, can_reset_2fa)
    tokens: HashMap<&'static str, (bool, bool)>,
}

pub type Shared = Arc<Mutex<Tl>>;

pub fn user_id(n: usize) -> String {
    format!("5e1d0000-0000-4000-8000-{n:012}")
}

impl Tl {
    /// What a rehearsal spanning processes keeps (`crate::Saved`): the users.
    pub fn saved(&self) -> Value {
        json!({"users": self.users})
    }

    /// Puts back the users `saved` kept (the tokens are this start's, the same every time).
    pub fn restore(&mut self, saved: &Value) -> Result<(), serde_json::Error> {
        self.users = serde_json::from_value(saved.get("users").cloned().unwrap_or(Value::Null))?;
        Ok(())
    }

    /// A person's TransactionLink account by email (`Options::people`).
    pub fn add_person(&mut self, email: &str, admin: bool) {
        let u = TlUser {
            id: user_id(50_000 + self.users.len()),
            email: email.to_string(),
            role_id: if admin { ROLE_ADMIN } else { ROLE_MEMBER }.to_string(),
            first_name: None,
            last_name: None,
            title: None,
            status: "ACTIVE".into(),
            mfa: true,
        };
        self.users.insert(u.id.clone(), u);
    }

    pub fn seeded(n: usize) -> Self {
        let mut t = Tl::default();
        for i in 1..=n {
            let role = if i == 1 {
                ROLE_OWNER
            } else if i % 50 == 0 {
                ROLE_ADMIN
            } else {
                ROLE_MEMBER
            };
            let u = TlUser {
                id: user_id(i),
                email: format!("tluser{i:04}@example.com"),
                role_id: role.to_string(),
                first_name: Some(format!("First{i}")),
                last_name: Some(format!("Last{i}")),
                title: Some("Analyst".to_string()),
                status: if i % 25 == 0 && i % 50 != 0 { "TERMINATED" } else { "ACTIVE" }.into(),
                mfa: i % 2 == 0,
            };
            t.users.insert(u.id.clone(), u);
        }
        t.tokens.insert(ADMIN_TOKEN, (true, true));
        t.tokens.insert(NO_MFA_TOKEN, (true, false));
        t.tokens.insert(READ_ONLY_TOKEN, (false, true));
        t
    }

    pub fn snapshot(&self) -> Value {
        Value::Array(
            self.users
                .values()
                .map(|u| json!({"id": u.id, "email": u.email, "roleId": u.role_id, "status": u.status, "mfa": u.mfa}))
                .collect(),
        )
    }
}

static FINGERPRINT: AtomicU64 = AtomicU64::new(1);

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let fingerprint = format!("fp-{:08x}", FINGERPRINT.fetch_add(1, Ordering::Relaxed));
    (status, Json(json!({"fingerprint": fingerprint, "errors": [{"code": code, "message": message}]}))).into_response()
}

/// The raw `tot_` token must carry the permission the operation needs.
fn permit(t: &Tl, headers: &HeaderMap, need_reset_2fa: bool) -> Result<(), Response> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    if token.starts_with("Bearer ") {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "Pass the organization token without the Bearer prefix.",
        ));
    }
    let Some((manage, reset)) = t.tokens.get(token) else {
        return Err(error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "The organization token is missing or invalid."));
    };
    if need_reset_2fa && !reset {
        return Err(error(StatusCode::FORBIDDEN, "FORBIDDEN", "The token lacks the can_reset_2fa permission."));
    }
    if !need_reset_2fa && !manage {
        return Err(error(StatusCode::FORBIDDEN, "FORBIDDEN", "The token lacks the can_manage_users permission."));
    }
    Ok(())
}

fn resource(u: &TlUser) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "idpId": null,
        "roleId": u.role_id,
        "status": u.status,
        "profile": {"firstName": u.first_name, "lastName": u.last_name, "title": u.title, "mfaEnabled": u.mfa},
        "createdDateTime": "2025-01-15T09:00:00Z",
    })
}

fn uuid_ok(id: &str) -> bool {
    id.len() == 36
        && id
            .chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn find<'a>(t: &'a mut Tl, id: &str) -> Result<&'a mut TlUser, Response> {
    if !uuid_ok(id) {
        return Err(error(StatusCode::BAD_REQUEST, "INVALID_ID", "userId must be a UUID."));
    }
    t.users
        .get_mut(id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "USER_NOT_FOUND", "No such user in the organization."))
}

async fn list(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    let page: usize = match q.get("page").map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", "page must be a non-negative integer.")
        }
    };
    let size: usize = q.get("size").and_then(|s| s.parse().ok()).unwrap_or(20).clamp(1, 100);
    let total = t.users.len();
    let content: Vec<Value> = t.users.values().skip(page * size).take(size).map(resource).collect();
    Json(json!({"content": content, "totalElements": total, "totalPages": total.div_ceil(size), "size": size, "number": page})).into_response()
}

async fn one(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    match find(&mut t, &id) {
        Ok(u) => Json(resource(u)).into_response(),
        Err(r) => r,
    }
}

fn body(bytes: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(bytes)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "INVALID_BODY", "The request body is not valid JSON."))
}

fn role_in(body: &Value) -> Result<String, Response> {
    let role = body.get("roleId").and_then(Value::as_str).unwrap_or("");
    if ![ROLE_OWNER, ROLE_ADMIN, ROLE_MEMBER].contains(&role) {
        return Err(error(StatusCode::BAD_REQUEST, "INVALID_ROLE", "roleId must name a role of the organization."));
    }
    Ok(role.to_string())
}

async fn profile(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    let b = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let u = match find(&mut t, &id) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let field = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    if b.get("firstName").is_some() {
        u.first_name = field("firstName");
    }
    if b.get("lastName").is_some() {
        u.last_name = field("lastName");
    }
    if b.get("title").is_some() {
        u.title = field("title");
    }
    Json(resource(u)).into_response()
}

async fn role(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    let role = match body(&bytes).and_then(|b| role_in(&b)) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match find(&mut t, &id) {
        Ok(u) => {
            u.role_id = role;
            Json(resource(u)).into_response()
        }
        Err(r) => r,
    }
}

async fn terminate(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    match find(&mut t, &id) {
        Ok(u) if u.status == "TERMINATED" => {
            error(StatusCode::BAD_REQUEST, "USER_ALREADY_TERMINATED", "The user is already terminated.")
        }
        Ok(u) if u.role_id == ROLE_OWNER => {
            error(StatusCode::BAD_REQUEST, "OWNER_CANNOT_BE_TERMINATED", "The organization owner cannot be terminated.")
        }
        Ok(u) => {
            u.status = "TERMINATED".into();
            Json(resource(u)).into_response()
        }
        Err(r) => r,
    }
}

async fn reinstate(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>, bytes: Bytes) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    let role = match body(&bytes).and_then(|b| role_in(&b)) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match find(&mut t, &id) {
        Ok(u) if u.status != "TERMINATED" => {
            error(StatusCode::BAD_REQUEST, "USER_NOT_TERMINATED", "The user is not terminated.")
        }
        Ok(u) => {
            u.status = "ACTIVE".into();
            u.role_id = role;
            Json(resource(u)).into_response()
        }
        Err(r) => r,
    }
}

async fn reset_mfa(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, true) {
        return r;
    }
    match find(&mut t, &id) {
        Ok(u) => {
            u.mfa = false;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

async fn roles(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = permit(&t, &headers, false) {
        return r;
    }
    let role = |id: &str, name: &str| json!({"id": id, "name": name, "organizationId": ORG_ID});
    Json(json!([role(ROLE_OWNER, "owner"), role(ROLE_ADMIN, "admin"), role(ROLE_MEMBER, "member")])).into_response()
}

pub fn routes(state: Shared) -> Router {
    Router::new()
        .route("/organizations/users", get(list))
        .route("/organizations/users/{id}", get(one))
        .route("/organizations/users/{id}/profile", put(profile))
        .route("/organizations/users/{id}/role", put(role))
        .route("/organizations/users/{id}/terminate", post(terminate))
        .route("/organizations/users/{id}/reinstate", post(reinstate))
        .route("/organizations/users/{id}/reset-mfa", post(reset_mfa))
        .route("/organizations/roles", get(roles))
        .with_state(state)
}
