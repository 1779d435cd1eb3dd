//! Travis CI Enterprise emulation (API v3): `/org/{id}/user_activity`, `/org/{id}/suspend|unsuspend` and the
//! instance-wide `/users/suspend|unsuspend`, with travis-api's auth parsing (`org.token ORG:SECRET`, one
//! permission per token, the org in the token must match the path; `internal APP:TOKEN` for `/users/*`), its
//! error envelope, `@pagination` and `bulk_change_result` (specs/travis.md).

// Handlers bail out with a ready `Response` as the error, the usual axum shape; its size does not matter here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub const ORG_ID: &str = "89";
pub const ACTIVITY_TOKEN: &str = "89:sandboxActivityTokenSecret0001";
pub const SUSPEND_TOKEN: &str = "89:sandboxSuspendTokenSecret00002";
pub const INTERNAL_TOKEN: &str = "steward-app:sandboxInternalAppToken03";

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TravisUser {
    pub id: u64,
    pub login: String,
    pub vcs_id: u64,
    pub member: bool,
    pub suspended: bool,
    /// Days before now of the last activity; None = never active.
    pub idle_days: Option<i64>,
}

#[derive(Default)]
pub struct Travis {
    users: BTreeMap<u64, TravisUser>,
    /// "ORG:SECRET" → permission
    tokens: HashMap<&'static str, &'static str>,
}

pub type Shared = Arc<Mutex<Travis>>;

impl Travis {
    /// What a rehearsal spanning processes keeps (`crate::Saved`): the users.
    pub fn saved(&self) -> Value {
        json!({"users": self.users})
    }

    /// Puts back the users `saved` kept (the tokens are this start's, the same every time).
    pub fn restore(&mut self, saved: &Value) -> Result<(), serde_json::Error> {
        self.users = serde_json::from_value(saved.get("users").cloned().unwrap_or(Value::Null))?;
        Ok(())
    }

    /// A member signed in with a GHES login, its VCS id that GHES user's id (`Options::people`).
    pub fn add_person(&mut self, login: &str, vcs_id: u64) {
        let id = 50_000 + self.users.len() as u64;
        let user =
            TravisUser { id, login: login.to_string(), vcs_id, member: true, suspended: false, idle_days: Some(3) };
        self.users.insert(id, user);
    }

    pub fn seeded(n: usize) -> Self {
        let mut t = Travis::default();
        for i in 1..=n as u64 {
            let idle = match i % 10 {
                0 => None,
                k => Some((k as i64) * 60),
            };
            t.users.insert(
                i,
                TravisUser {
                    id: i,
                    login: format!("traviuser{i:04}"),
                    vcs_id: 100_000 + i,
                    member: i % 17 != 0,
                    suspended: false,
                    idle_days: idle,
                },
            );
        }
        t.tokens.insert(ACTIVITY_TOKEN, "activity");
        t.tokens.insert(SUSPEND_TOKEN, "suspend");
        t
    }

    pub fn snapshot(&self) -> Value {
        Value::Array(
            self.users
                .values()
                .map(|u| json!({"id": u.id, "login": u.login, "suspended": u.suspended, "member": u.member}))
                .collect(),
        )
    }
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, Json(json!({"@type": "error", "error_type": error_type, "error_message": message}))).into_response()
}

fn denied() -> Response {
    error(StatusCode::FORBIDDEN, "insufficient_access", "operation requires the permission this token lacks")
}

/// travis-api's `org.token` check: `ORG:SECRET` with the permission, and the org must be the one in the path.
fn org_token(t: &Travis, headers: &HeaderMap, org: &str, permission: &str) -> Result<(), Response> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").trim().trim_matches('"');
    let Some((kind, payload)) = value.split_once(' ') else {
        return Err(error(StatusCode::FORBIDDEN, "login_required", "login required"));
    };
    if kind != "org.token" {
        return Err(error(StatusCode::FORBIDDEN, "wrong_credentials", "access denied"));
    }
    let token_org = payload.split(':').next().unwrap_or("");
    match t.tokens.get(payload) {
        None => Err(error(StatusCode::FORBIDDEN, "wrong_credentials", "access denied")),
        Some(_) if token_org != org => Err(denied()),
        Some(p) if *p != permission => Err(denied()),
        Some(_) => Ok(()),
    }
}

fn user_json(u: &TravisUser) -> Value {
    let last = u.idle_days.map(|d| {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(d as u64 * 86_400);
        let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        crate::ghes_time(secs)
    });
    json!({
        "@type": "user", "@representation": "standard", "id": u.id, "login": u.login, "name": format!("Travis User {}", u.id),
        "github_id": u.vcs_id, "vcs_id": u.vcs_id.to_string(), "vcs_type": "GithubUser", "email": null,
        "avatar_url": null, "is_syncing": false, "synced_at": null, "last_activity_at": last, "suspended": u.suspended,
    })
}

async fn activity(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = org_token(&t, &headers, &org, "activity") {
        return r;
    }
    let parse = |k: &str, default: usize| -> Result<usize, Response> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| error(StatusCode::BAD_REQUEST, "wrong_params", &format!("{k} must be an integer"))),
        }
    };
    let (limit, offset) = match (parse("limit", 100), parse("offset", 0)) {
        (Ok(l), Ok(o)) => (if l == 0 || l > 100 { 100 } else { l }, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let date = q.get("date").cloned().unwrap_or_default();
    let days_since = match chrono_days_since(&date) {
        Some(d) => d,
        None if date.is_empty() => 1,
        None => return error(StatusCode::BAD_REQUEST, "wrong_params", "date must be yyyy-mm-dd"),
    };
    let inactive = q.get("status").map(String::as_str) == Some("inactive");
    // Active: last activity after the date; inactive: before it; never active: in neither list.
    let matching: Vec<&TravisUser> = t
        .users
        .values()
        .filter(|u| u.member)
        .filter(|u| match u.idle_days {
            None => false,
            Some(idle) => {
                if inactive {
                    idle > days_since
                } else {
                    idle < days_since
                }
            }
        })
        .collect();
    let count = matching.len();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).map(|u| user_json(u)).collect();
    let href = |o: usize| json!({"@href": format!("/org/{org}/user_activity?limit={limit}&offset={o}"), "offset": o, "limit": limit});
    let is_last = offset + limit >= count;
    Json(json!({
        "@type": "users", "@href": format!("/org/{org}/user_activity"), "@representation": "standard",
        "@pagination": {
            "limit": limit, "offset": offset, "count": count, "is_first": offset == 0, "is_last": is_last,
            "next": if is_last { Value::Null } else { href(offset + limit) },
            "prev": if offset == 0 { Value::Null } else { href(offset.saturating_sub(limit)) },
            "first": href(0), "last": href(count.saturating_sub(1) / limit * limit),
        },
        "users": page,
    }))
    .into_response()
}

/// Days between a `yyyy-mm-dd` date and today (positive in the past).
fn chrono_days_since(date: &str) -> Option<i64> {
    let mut parts = date.split('-').map(str::parse::<i64>);
    let (y, m, d) = (parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = crate::days_from_civil(y, m as u32, d as u32);
    let today = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64 / 86_400;
    Some(today - days)
}

fn ids_from(body: &Bytes, t: &Travis) -> Result<Vec<u64>, Response> {
    let b: Value =
        serde_json::from_slice(body).map_err(|_| error(StatusCode::BAD_REQUEST, "wrong_params", "wrong parameters"))?;
    let numbers =
        |k: &str| b.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect::<Vec<u64>>());
    let ids = if let Some(ids) = numbers("user_ids") {
        ids
    } else if let Some(vcs) = numbers("vcs_ids") {
        // VCS ids become Travis ids; ones that match nobody are dropped silently, as travis-api does.
        vcs.iter().filter_map(|v| t.users.values().find(|u| u.vcs_id == *v).map(|u| u.id)).collect()
    } else {
        return Err(error(StatusCode::BAD_REQUEST, "wrong_params", "wrong parameters"));
    };
    if ids.is_empty() && numbers("vcs_ids").is_none() {
        return Err(error(StatusCode::BAD_REQUEST, "wrong_params", "missing user ids"));
    }
    Ok(ids)
}

fn bulk(t: &mut Travis, ids: Vec<u64>, suspend: bool, org_only: bool) -> Response {
    let (mut changed, mut skipped) = (Vec::new(), Vec::new());
    for id in ids {
        match t.users.get_mut(&id) {
            Some(u) if u.member || !org_only => {
                u.suspended = suspend;
                changed.push(id);
            }
            _ => skipped.push(id),
        }
    }
    Json(json!({"@type": "bulk_change_result", "@representation": "standard", "changed": changed, "skipped": skipped}))
        .into_response()
}

async fn org_suspend(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, verb)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = org_token(&t, &headers, &org, "suspend") {
        return r;
    }
    let suspend = match verb.as_str() {
        "suspend" => true,
        "unsuspend" => false,
        _ => return error(StatusCode::NOT_FOUND, "not_found", "resource not found (or insufficient access)"),
    };
    match ids_from(&body, &t) {
        Ok(ids) => bulk(&mut t, ids, suspend, true),
        Err(r) => r,
    }
}

async fn users_suspend(State(s): State<Shared>, headers: HeaderMap, Path(verb): Path<String>, body: Bytes) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if value.strip_prefix("internal ") != Some(INTERNAL_TOKEN) {
        return error(StatusCode::FORBIDDEN, "insufficient_access", "only the internal application may do this");
    }
    let suspend = verb == "suspend";
    match ids_from(&body, &t) {
        Ok(ids) => bulk(&mut t, ids, suspend, false),
        Err(r) => r,
    }
}

async fn whoami(headers: HeaderMap) -> Response {
    let _ = headers;
    error(StatusCode::FORBIDDEN, "login_required", "login required")
}

pub fn routes(state: Shared) -> Router {
    Router::new()
        .route("/org/{org}/user_activity", get(activity))
        .route("/org/{org}/{verb}", post(org_suspend))
        .route("/users/{verb}", post(users_suspend))
        .route("/user", get(whoami))
        .with_state(state)
}
