//! Organisations and teams, from GitHub's GHES description: `/organizations` (paged by `since`), an
//! organisation's members and memberships (roles `admin`/`member`), its teams, a team's members and memberships
//! (roles `maintainer`/`member`). GHES adds people directly (no e-mailed invitation to accept), so a membership
//! set here is `active` at once; a user added to a team who was not in its organisation becomes a member of it.

#![allow(clippy::result_large_err)]

use super::{
    caller, err, no_content, not_found, paged, paged_by, simple_user, since_paged, GhUser, Ghes, Paging, Shared,
};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CREATED: &str = "2024-01-15T09:00:00Z";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Org {
    pub id: u64,
    pub login: String,
    /// user id → `admin` or `member`
    pub members: BTreeMap<u64, String>,
    /// slug → team
    pub teams: BTreeMap<String, Team>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Team {
    pub id: u64,
    pub name: String,
    pub slug: String,
    /// user id → `maintainer` or `member`
    pub members: BTreeMap<u64, String>,
}

/// The organisations a seeded instance starts with: `acme` (teams Engineering and Ops) and `labs` (Research),
/// their members drawn from the first seeded users, the site admin an owner of both.
pub fn seed(g: &mut Ghes) {
    let id_of = |g: &Ghes, login: &str| g.logins.get(login).copied();
    let admin = id_of(g, "admin");
    let users: Vec<u64> = (1..=25).filter_map(|i| id_of(g, &format!("user{i:04}"))).collect();
    let pick = |from: usize, to: usize| users.iter().skip(from - 1).take(to + 1 - from).copied().collect::<Vec<_>>();
    let mut next_team = 1;
    for (org_id, login, members, teams) in [
        (1, "acme", pick(1, 15), vec![("Engineering", "engineering", pick(1, 12)), ("Ops", "ops", pick(10, 15))]),
        (2, "labs", pick(20, 25), vec![("Research", "research", pick(20, 22))]),
    ] {
        let mut org = Org { id: org_id, login: login.into(), ..Default::default() };
        org.members.extend(admin.map(|a| (a, "admin".to_string())));
        org.members.extend(members.iter().map(|m| (*m, "member".to_string())));
        for (name, slug, people) in teams {
            let mut team = Team { id: next_team, name: name.into(), slug: slug.into(), members: BTreeMap::new() };
            next_team += 1;
            for (n, m) in people.iter().enumerate() {
                team.members.insert(*m, if n == 0 { "maintainer" } else { "member" }.to_string());
            }
            org.teams.insert(slug.into(), team);
        }
        if !members.is_empty() || admin.is_some() {
            g.orgs.insert(org_id, org);
        }
    }
}

impl Ghes {
    /// acme/engineering (and acme) hold the first `n` demo users, the first of them its maintainer.
    pub fn grow_engineering(&mut self, n: usize) {
        let ids: Vec<u64> = (1..=n).filter_map(|i| self.logins.get(&format!("user{i:04}")).copied()).collect();
        let Some(acme) = self.orgs.get_mut(&1) else { return };
        let Some(team) = acme.teams.get_mut("engineering") else { return };
        for (k, id) in ids.iter().enumerate() {
            acme.members.entry(*id).or_insert_with(|| "member".into());
            team.members.insert(*id, if k == 0 { "maintainer" } else { "member" }.to_string());
        }
    }

    fn org(&self, login: &str) -> Option<&Org> {
        self.orgs.values().find(|o| o.login.eq_ignore_ascii_case(login))
    }

    fn org_mut(&mut self, login: &str) -> Option<&mut Org> {
        self.orgs.values_mut().find(|o| o.login.eq_ignore_ascii_case(login))
    }

    /// A user leaving an organisation leaves its teams too.
    pub(super) fn forget_member(&mut self, user: u64) {
        for org in self.orgs.values_mut() {
            org.members.remove(&user);
            org.teams.values_mut().for_each(|t| {
                t.members.remove(&user);
            });
        }
    }
}

fn org_simple(base: &str, o: &Org) -> Value {
    let url = format!("{base}/orgs/{}", o.login);
    json!({
        "login": o.login, "id": o.id, "node_id": format!("MDEyOk9yZ2FuaXphdGlvbj{}", o.id), "url": url,
        "repos_url": format!("{url}/repos"), "events_url": format!("{url}/events"), "hooks_url": format!("{url}/hooks"),
        "issues_url": format!("{url}/issues"), "members_url": format!("{url}/members{{/member}}"),
        "public_members_url": format!("{url}/public_members{{/member}}"),
        "avatar_url": format!("{base}/avatars/o/{}", o.id), "description": null,
    })
}

fn org_full(base: &str, o: &Org) -> Value {
    let mut v = org_simple(base, o);
    let more = json!({
        "html_url": format!("{base}/{}", o.login), "has_organization_projects": true, "has_repository_projects": true,
        "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0, "type": "Organization",
        "created_at": CREATED, "updated_at": CREATED, "archived_at": null,
    });
    if let (Some(o), Value::Object(m)) = (v.as_object_mut(), more) {
        o.extend(m);
    }
    v
}

fn team_json(base: &str, o: &Org, t: &Team, full: bool) -> Value {
    let url = format!("{base}/orgs/{}/teams/{}", o.login, t.slug);
    let mut v = json!({
        "id": t.id, "node_id": format!("MDQ6VGVhbT{}", t.id), "url": url, "html_url": format!("{base}/orgs/{}/teams/{}", o.login, t.slug),
        "name": t.name, "slug": t.slug, "description": null, "privacy": "closed", "notification_setting": "notifications_enabled",
        "permission": "pull", "members_url": format!("{url}/members{{/member}}"), "repositories_url": format!("{url}/repos"),
        "parent": null, "type": "organization",
    });
    if full {
        v["created_at"] = json!(CREATED);
        v["updated_at"] = json!(CREATED);
        v["members_count"] = json!(t.members.len());
        v["repos_count"] = json!(0);
        v["organization"] = org_full(base, o);
    }
    v
}

/// Who may read an organisation: a site admin or one of its members.
fn reader(g: &Ghes, headers: &HeaderMap, org: &Org) -> Result<GhUser, Response> {
    let me = caller(g, headers)?;
    match me.site_admin || org.members.contains_key(&me.id) {
        true => Ok(me),
        false => Err(not_found()),
    }
}

/// Who may change an organisation's memberships: a site admin or one of its owners.
fn owner(g: &Ghes, headers: &HeaderMap, org: &Org) -> Result<GhUser, Response> {
    let me = reader(g, headers, org)?;
    if me.suspended_at.is_some() {
        return Err(err(StatusCode::FORBIDDEN, "Sorry. Your account was suspended."));
    }
    match me.site_admin || org.members.get(&me.id).map(String::as_str) == Some("admin") {
        true => Ok(me),
        false => Err(err(StatusCode::FORBIDDEN, "You must be an admin to do that.")),
    }
}

#[derive(Deserialize, Default)]
struct RoleQuery {
    role: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

#[derive(Deserialize, Default)]
struct RoleBody {
    role: Option<String>,
}

async fn list_orgs(State(s): State<Shared>, headers: HeaderMap, Query(p): Query<Paging>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(r) = caller(&g, &headers) {
        return r;
    }
    since_paged(&g.base, "organizations", &g.orgs, &p, |o| org_simple(&g.base, o))
}

async fn get_org(State(s): State<Shared>, headers: HeaderMap, Path(org): Path<String>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = g.org(&org) else { return not_found() };
    match reader(&g, &headers, o) {
        Ok(_) => Json(org_full(&g.base, o)).into_response(),
        Err(r) => r,
    }
}

/// The users of `members` whose role `wanted` asks for (`all`, or one role), as simple users, paged.
fn members_page(g: &Ghes, path: &str, members: &BTreeMap<u64, String>, q: &RoleQuery, roles: [&str; 2]) -> Response {
    let wanted = q.role.as_deref().unwrap_or("all");
    if wanted != "all" && !roles.contains(&wanted) {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let listed: Vec<u64> =
        members.iter().filter(|(_, role)| wanted == "all" || role.as_str() == wanted).map(|(id, _)| *id).collect();
    let path = match &q.role {
        Some(role) => format!("{path}?role={role}"),
        None => path.to_string(),
    };
    paged_by(&g.base, &path, listed.len(), &q.paging, |range| {
        listed[range].iter().filter_map(|id| g.users.get(id)).map(|u| simple_user(&g.base, u)).collect()
    })
}

async fn org_members(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(q): Query<RoleQuery>,
) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = g.org(&org) else { return not_found() };
    if let Err(r) = reader(&g, &headers, o) {
        return r;
    }
    members_page(&g, &format!("orgs/{}/members", o.login), &o.members, &q, ["admin", "member"])
}

fn org_membership(g: &Ghes, o: &Org, u: &GhUser, role: &str) -> Value {
    json!({
        "url": format!("{}/orgs/{}/memberships/{}", g.base, o.login, u.login), "state": "active", "role": role,
        "organization_url": format!("{}/orgs/{}", g.base, o.login), "organization": org_simple(&g.base, o),
        "user": simple_user(&g.base, u),
    })
}

/// The organisation and user a membership path names (the caller allowed to read it, or with `write` to change
/// it), or the answer GHES gives: the organisation without its members (a copy of 100,000 of them per request
/// would be the whole cost), the user, and the role they hold in it.
fn org_and_user(
    g: &Ghes,
    headers: &HeaderMap,
    (org, login): (&str, &str),
    write: bool,
) -> Result<(Org, GhUser, Option<String>), Response> {
    let o = g.org(org).ok_or_else(not_found)?;
    let u = g.by_login(login).ok_or_else(not_found)?;
    match write {
        true => owner(g, headers, o)?,
        false => reader(g, headers, o)?,
    };
    Ok((o.shallow(), u.clone(), o.members.get(&u.id).cloned()))
}

impl Org {
    /// Its id and login only.
    fn shallow(&self) -> Org {
        Org { id: self.id, login: self.login.clone(), ..Default::default() }
    }
}

impl Team {
    /// Its id, name and slug only.
    fn shallow(&self) -> Team {
        Team { id: self.id, name: self.name.clone(), slug: self.slug.clone(), members: BTreeMap::new() }
    }
}

async fn get_org_membership(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, login)): Path<(String, String)>,
) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    match org_and_user(&g, &headers, (&org, &login), false) {
        Ok((o, u, Some(role))) => Json(org_membership(&g, &o, &u, &role)).into_response(),
        Ok((_, _, None)) => not_found(),
        Err(r) => r,
    }
}

async fn set_org_membership(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, login)): Path<(String, String)>,
    body: Option<Json<RoleBody>>,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let (o, u) = match org_and_user(&g, &headers, (&org, &login), true) {
        Ok((o, u, _)) => (o, u),
        Err(r) => return r,
    };
    let role = body.and_then(|Json(b)| b.role).unwrap_or_else(|| "member".into());
    if !["admin", "member"].contains(&role.as_str()) {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    if let Some(o) = g.org_mut(&org) {
        o.members.insert(u.id, role.clone());
    }
    Json(org_membership(&g, &o, &u, &role)).into_response()
}

async fn remove_org_membership(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, login)): Path<(String, String)>,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let u = match org_and_user(&g, &headers, (&org, &login), true) {
        Ok((_, u, _)) => u,
        Err(r) => return r,
    };
    let Some(o) = g.org_mut(&org) else { return not_found() };
    if o.members.remove(&u.id).is_none() {
        return not_found();
    }
    o.teams.values_mut().for_each(|t| {
        t.members.remove(&u.id);
    });
    no_content()
}

async fn list_teams(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(p): Query<Paging>,
) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = g.org(&org) else { return not_found() };
    if let Err(r) = reader(&g, &headers, o) {
        return r;
    }
    let teams: Vec<Value> = o.teams.values().map(|t| team_json(&g.base, o, t, false)).collect();
    paged(&g.base, &format!("orgs/{}/teams", o.login), teams, &p)
}

/// The organisation and team a team path names (the slug compared as GHES does, without case).
fn org_team<'a>(g: &'a Ghes, org: &str, slug: &str) -> Result<(&'a Org, &'a Team), Response> {
    let o = g.org(org).ok_or_else(not_found)?;
    let t = o.teams.get(&slug.to_ascii_lowercase()).ok_or_else(not_found)?;
    Ok((o, t))
}

async fn get_team(State(s): State<Shared>, headers: HeaderMap, Path((org, slug)): Path<(String, String)>) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let (o, t) = match org_team(&g, &org, &slug) {
        Ok(found) => found,
        Err(r) => return r,
    };
    match reader(&g, &headers, o) {
        Ok(_) => Json(team_json(&g.base, o, t, true)).into_response(),
        Err(r) => r,
    }
}

async fn team_members(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, slug)): Path<(String, String)>,
    Query(q): Query<RoleQuery>,
) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let (o, t) = match org_team(&g, &org, &slug) {
        Ok(found) => found,
        Err(r) => return r,
    };
    if let Err(r) = reader(&g, &headers, o) {
        return r;
    }
    members_page(&g, &format!("orgs/{}/teams/{}/members", o.login, t.slug), &t.members, &q, ["maintainer", "member"])
}

fn team_membership(g: &Ghes, o: &Org, t: &Team, u: &GhUser, role: &str) -> Value {
    json!({"url": format!("{}/orgs/{}/teams/{}/memberships/{}", g.base, o.login, t.slug, u.login), "role": role, "state": "active"})
}

async fn get_team_membership(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, slug, login)): Path<(String, String, String)>,
) -> Response {
    let g = s.lock().unwrap_or_else(|e| e.into_inner());
    let (o, t) = match org_team(&g, &org, &slug) {
        Ok(found) => found,
        Err(r) => return r,
    };
    if let Err(r) = reader(&g, &headers, o) {
        return r;
    }
    let Some(u) = g.by_login(&login) else { return not_found() };
    match t.members.get(&u.id) {
        Some(role) => Json(team_membership(&g, o, t, u, role)).into_response(),
        None => not_found(),
    }
}

async fn set_team_membership(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, slug, login)): Path<(String, String, String)>,
    body: Option<Json<RoleBody>>,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let (o, t) = match org_team(&g, &org, &slug) {
        Ok((o, t)) => match owner(&g, &headers, o) {
            Ok(_) => (o.shallow(), t.shallow()),
            Err(r) => return r,
        },
        Err(r) => return r,
    };
    let Some(u) = g.by_login(&login).cloned() else { return not_found() };
    let role = body.and_then(|Json(b)| b.role).unwrap_or_else(|| "member".into());
    if !["maintainer", "member"].contains(&role.as_str()) {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    if let Some(org) = g.org_mut(&org) {
        org.members.entry(u.id).or_insert_with(|| "member".into());
        if let Some(team) = org.teams.get_mut(&t.slug) {
            team.members.insert(u.id, role.clone());
        }
    }
    Json(team_membership(&g, &o, &t, &u, &role)).into_response()
}

async fn remove_team_membership(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((org, slug, login)): Path<(String, String, String)>,
) -> Response {
    let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
    let t = match org_team(&g, &org, &slug) {
        Ok((o, t)) => match owner(&g, &headers, o) {
            Ok(_) => t.shallow(),
            Err(r) => return r,
        },
        Err(r) => return r,
    };
    let Some(u) = g.by_login(&login).cloned() else { return not_found() };
    let removed = g.org_mut(&org).and_then(|o| o.teams.get_mut(&t.slug)).and_then(|t| t.members.remove(&u.id));
    match removed {
        Some(_) => no_content(),
        None => not_found(),
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/organizations", get(list_orgs))
        .route("/orgs/{org}", get(get_org))
        .route("/orgs/{org}/members", get(org_members))
        .route(
            "/orgs/{org}/memberships/{username}",
            get(get_org_membership).put(set_org_membership).delete(remove_org_membership),
        )
        .route("/orgs/{org}/teams", get(list_teams))
        .route("/orgs/{org}/teams/{team_slug}", get(get_team))
        .route("/orgs/{org}/teams/{team_slug}/members", get(team_members))
        .route(
            "/orgs/{org}/teams/{team_slug}/memberships/{username}",
            get(get_team_membership).put(set_team_membership).delete(remove_team_membership),
        )
}
