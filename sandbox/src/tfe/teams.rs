//! Organisations' teams, from the Terraform Enterprise API docs (Teams, Team Membership, Admin Organizations):
//! `/admin/organizations`, an organisation's teams (`filter[names]`, paged), a team (`include=users`), and its
//! members added and removed by user id (`/teams/:id/relationships/users`, 204). Only a member of the team's
//! organisation can join it (the docs: they must have accepted its invitation); anyone else is not found.

#![allow(clippy::result_large_err)]

use super::{admin, doc, errors, not_found, page, resource, user_id, Shared, Tfe};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TfTeam {
    pub id: String,
    pub name: String,
    pub organization: String,
    /// Member user ids, in the order they joined.
    pub users: Vec<String>,
}

/// The seeded teams: in `shared`, owners (the admin and tfuser0001) and developers (tfuser0001–0010); in
/// `org-1`, deployers (its first member).
pub fn seed(t: &mut Tfe) {
    let id_of = |t: &Tfe, name: &str| t.users.values().find(|u| u.username == name).map(|u| u.id.clone());
    let named = |t: &Tfe, names: Vec<String>| names.iter().filter_map(|n| id_of(t, n)).collect::<Vec<_>>();
    let developers = named(t, (1..=10).map(|i| format!("tfuser{i:04}")).collect());
    let owners = named(t, vec!["admin".into(), "tfuser0001".into()]);
    let deployer = t.users.values().find(|u| u.organizations.iter().any(|o| o == "org-1")).map(|u| u.id.clone());
    for (n, (org, name, users)) in [
        ("shared", "owners", owners),
        ("shared", "developers", developers),
        ("org-1", "deployers", deployer.into_iter().collect()),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("team-{}", &user_id(90_000 + n)["user-".len()..]);
        t.teams.insert(id.clone(), TfTeam { id, name: name.into(), organization: org.into(), users });
    }
}

fn team_resource(team: &TfTeam) -> Value {
    json!({
        "id": team.id,
        "type": "teams",
        "attributes": {"name": team.name, "users-count": team.users.len(), "visibility": "secret"},
        "relationships": {
            "organization": {"data": {"id": team.organization, "type": "organizations"}},
            "users": {"data": team.users.iter().map(|u| json!({"id": u, "type": "users"})).collect::<Vec<_>>()},
        },
        "links": {"self": format!("/api/v2/teams/{}", team.id)},
    })
}

async fn admin_organizations(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    let mut orgs: Vec<&String> = t.users.values().flat_map(|u| u.organizations.iter()).collect();
    orgs.sort();
    orgs.dedup();
    let items = orgs
        .into_iter()
        .map(|o| json!({"id": o, "type": "organizations", "attributes": {"name": o, "email": format!("{o}@example.com")}}))
        .collect();
    doc(StatusCode::OK, page(items, &q))
}

async fn org_teams(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    if !t.users.values().any(|u| u.organizations.contains(&org)) {
        return not_found();
    }
    let names: Option<Vec<&str>> = q.get("filter[names]").map(|n| n.split(',').collect());
    let items = t
        .teams
        .values()
        .filter(|team| team.organization == org)
        .filter(|team| names.as_ref().is_none_or(|n| n.contains(&team.name.as_str())))
        .map(team_resource)
        .collect();
    doc(StatusCode::OK, page(items, &q))
}

async fn show_team(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    let Some(team) = t.teams.get(&id) else { return not_found() };
    let mut body = json!({"data": team_resource(team)});
    if q.get("include").is_some_and(|i| i.split(',').any(|x| x == "users")) {
        body["included"] = team.users.iter().filter_map(|u| t.users.get(u)).map(resource).collect();
    }
    doc(StatusCode::OK, body)
}

/// `POST` (add) or `DELETE` (remove) `/teams/:id/relationships/users` with `{"data": [{"type": "users", "id"}]}`.
async fn team_users(
    State(s): State<Shared>,
    method: axum::http::Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut t = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = admin(&t, &headers) {
        return r;
    }
    let Some(org) = t.teams.get(&id).map(|team| team.organization.clone()) else { return not_found() };
    let doc_in: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(entries) = doc_in.get("data").and_then(Value::as_array) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "invalid attribute", Some("data must be an array of users"));
    };
    let mut ids = Vec::new();
    for e in entries {
        let (Some("users"), Some(user)) = (e.get("type").and_then(Value::as_str), e.get("id").and_then(Value::as_str))
        else {
            return errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid attribute",
                Some("each entry is {type: users, id}"),
            );
        };
        // Only a member of the team's organisation can be in the team.
        if !t.users.get(user).is_some_and(|u| u.organizations.contains(&org)) {
            return not_found();
        }
        ids.push(user.to_string());
    }
    if let Some(team) = t.teams.get_mut(&id) {
        if method == axum::http::Method::POST {
            for u in ids {
                if !team.users.contains(&u) {
                    team.users.push(u);
                }
            }
        } else {
            team.users.retain(|u| !ids.contains(u));
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/organizations", get(admin_organizations))
        .route("/organizations/{org}/teams", get(org_teams))
        .route("/teams/{id}", get(show_team))
        .route("/teams/{id}/relationships/users", axum::routing::post(team_users).delete(team_users))
}
