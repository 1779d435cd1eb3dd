//! Organisations and teams as GHES's groups. A group is named `org` (an organisation: roles `admin`, `member`)
//! or `org/team` (a team in it, by slug or by its one name: roles `maintainer`, `member`); it is known by
//! `org/slug` in lower case, as GHES compares them. `add_to_group` with a role the member already has is a noop,
//! with another role it changes the role (and undo gives the old one back).

use super::Github;
use crate::backends::{group_of, Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, Paging, Request};
use reqwest::Method;
use serde_json::{json, Value};

/// A group as GHES addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Group {
    Org(String),
    Team { org: String, team: String },
}

impl Group {
    /// `org` or `org/team`, as a script or a log names it (a team part may be its name, spaces and all).
    pub(super) fn parse(name: &str) -> Result<Group, ApiError> {
        let name = name.trim();
        let bad = || {
            ApiError::invalid(format!(
                "{name:?} is not a GHES group: name an organisation (\"acme\") or a team in it (\"acme/engineering\")"
            ))
        };
        let (org, team) = match name.split_once('/') {
            Some((org, team)) => (org.trim(), Some(team.trim())),
            None => (name, None),
        };
        let org_ok = !org.is_empty() && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !org_ok {
            return Err(bad());
        }
        match team {
            None => Ok(Group::Org(org.to_ascii_lowercase())),
            Some(t) if t.is_empty() || t.contains('/') || t.chars().any(char::is_control) => Err(bad()),
            Some(t) => Ok(Group::Team { org: org.to_ascii_lowercase(), team: t.to_string() }),
        }
    }

    /// The roles a member can have here, the default first.
    pub(super) fn roles(&self) -> [&'static str; 2] {
        match self {
            Group::Org(_) => ["member", "admin"],
            Group::Team { .. } => ["member", "maintainer"],
        }
    }

    fn membership_path(&self, login: &str) -> String {
        match self {
            Group::Org(org) => format!("orgs/{}/memberships/{}", segment(org), segment(login)),
            Group::Team { org, team } => {
                format!("orgs/{}/teams/{}/memberships/{}", segment(org), segment(team), segment(login))
            }
        }
    }

    fn members_path(&self) -> String {
        match self {
            Group::Org(org) => format!("orgs/{}/members", segment(org)),
            Group::Team { org, team } => format!("orgs/{}/teams/{}/members", segment(org), segment(team)),
        }
    }

    /// The role a change asks for, checked against the roles the group has; `None`: the default.
    fn role_asked(&self, params: &Value) -> Result<Option<String>, ApiError> {
        let Some(role) = params.get("role").and_then(Value::as_str).map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let role = role.to_ascii_lowercase();
        match self.roles().contains(&role.as_str()) {
            true => Ok(Some(role)),
            false => Err(ApiError::invalid(format!(
                "role {role:?}: a GHES {} member is \"{}\" or \"{}\"",
                if matches!(self, Group::Org(_)) { "organisation" } else { "team" },
                self.roles()[0],
                self.roles()[1]
            ))),
        }
    }
}

fn is_slug(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Github {
    /// The group as GHES knows it (`acme`, `acme/engineering`), read now: an organisation that exists, a team
    /// by its slug or its one name (two teams of one name are refused, naming both).
    pub(super) async fn group_key(&self, name: &str) -> Result<String, ApiError> {
        match Group::parse(name)? {
            Group::Org(org) => {
                let found = self.send(Request::new(Method::GET, format!("orgs/{}", segment(&org)))).await;
                let body = found.map_err(|e| named_404(e, format!("no organisation {org:?} on this server")))?;
                let login = body.get("login").and_then(Value::as_str).unwrap_or(&org);
                Ok(login.to_ascii_lowercase())
            }
            Group::Team { org, team } => {
                if is_slug(&team) {
                    let path = format!("orgs/{}/teams/{}", segment(&org), segment(&team));
                    match self.send(Request::new(Method::GET, path)).await {
                        Ok(body) => return Ok(format!("{org}/{}", slug_of(&body, &team))),
                        Err(e) if e.kind != ErrorKind::NotFound => return Err(e),
                        Err(_) => {}
                    }
                }
                let teams = self.teams_of(&org).await?;
                let named: Vec<&Value> = teams
                    .iter()
                    .filter(|t| t.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(&team)))
                    .collect();
                match named.as_slice() {
                    [one] => Ok(format!("{org}/{}", slug_of(one, &team))),
                    [] => Err(ApiError::new(ErrorKind::NotFound, format!("no team {team:?} in organisation {org}"))
                        .with_status(404)),
                    many => Err(ApiError::new(
                        ErrorKind::Conflict,
                        format!(
                            "{} teams of {org} are named {team:?} ({}); name one by its slug",
                            many.len(),
                            many.iter().map(|t| slug_of(t, "?")).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
        }
    }

    async fn teams_of(&self, org: &str) -> Result<Vec<Value>, ApiError> {
        let req = Request::new(Method::GET, format!("orgs/{}/teams", segment(org))).query("per_page", 100);
        self.http
            .list(req, Paging::LinkHeader)
            .await
            .map_err(|e| named_404(e, format!("no organisation {org:?} on this server")))
    }

    /// `list_groups`: every organisation and every team in each.
    pub(super) async fn list_groups(&self) -> Result<Value, ApiError> {
        let orgs = self
            .http
            .list(Request::new(Method::GET, "organizations").query("per_page", 100), Paging::LinkHeader)
            .await?;
        let mut groups = Vec::new();
        for org in &orgs {
            let Some(login) = org.get("login").and_then(Value::as_str) else { continue };
            let key = login.to_ascii_lowercase();
            groups.push(json!({"id": key, "name": login, "kind": "organization", "profile": self.profile}));
            for team in self.teams_of(login).await? {
                let name = team.get("name").and_then(Value::as_str).unwrap_or_default();
                let id = format!("{key}/{}", slug_of(&team, name));
                groups.push(json!({"id": id, "name": name, "kind": "team", "profile": self.profile}));
            }
        }
        Ok(Value::Array(groups))
    }

    /// `members(group)`: each member's login (its id here, in lower case) and role.
    pub(super) async fn group_members(&self, action: &Action) -> Result<Value, ApiError> {
        let mut out = Vec::new();
        self.each_member(&group_of(action)?, &mut |m| {
            out.push(json!({"id": m.id, "login": m.login, "role": m.role, "profile": self.profile}))
        })
        .await?;
        Ok(Value::Array(out))
    }

    /// A group's members, one listing per role, a page at a time, each member read down to its login (a team
    /// of 100,000 is never held as records).
    pub(super) async fn each_member(
        &self,
        name: &str,
        each: &mut (dyn FnMut(crate::backends::model::Member) + Send),
    ) -> Result<(), ApiError> {
        let group = Group::parse(&self.group_key(name).await?)?;
        for role in group.roles() {
            let req = Request::new(Method::GET, group.members_path()).query("role", role).query("per_page", 100);
            let mut pages = self.http.pages(req, Paging::LinkHeader, crate::http::Hold::Walked);
            while let Some(page) = pages.next_page().await? {
                for m in page {
                    let Some(login) = m.get("login").and_then(Value::as_str) else { continue };
                    let id = login.to_ascii_lowercase();
                    each(crate::backends::model::Member { id, login: login.to_string(), role: Some(role.to_string()) });
                }
            }
        }
        Ok(())
    }

    /// The role `login` has in `group` now; `None`: not a member.
    pub(super) async fn role_in(&self, group: &Group, login: &str) -> Result<Option<String>, ApiError> {
        match self.send(Request::new(Method::GET, group.membership_path(login))).await {
            Ok(m) => Ok(Some(m.get("role").and_then(Value::as_str).unwrap_or("member").to_string())),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `login` is already as `op` would leave it in the group `params` name: a member with the role
    /// asked (any role when none is asked), or not a member.
    pub(super) async fn membership_state(&self, op: Op, login: &str, params: &Value) -> Result<Option<bool>, ApiError> {
        let group = Group::parse(&group_of(&Action::new(op, None, params.clone()))?)?;
        let asked = group.role_asked(params)?;
        let role = self.role_in(&group, login).await?;
        Ok(Some(match op {
            Op::AddToGroup => role.is_some_and(|r| asked.as_ref().is_none_or(|a| *a == r)),
            _ => role.is_none(),
        }))
    }

    /// What undoing a membership change needs: the role the member had (`prior_role`), if they were one.
    pub(super) async fn prior_role(&self, action: &Action) -> Result<Option<Value>, ApiError> {
        if action.params.get("prior_role").is_some() {
            return Ok(None);
        }
        let group = Group::parse(&group_of(action)?)?;
        Ok(self.role_in(&group, action.target()?).await?.map(|role| json!({"prior_role": role})))
    }

    /// `add_to_group` (with a role: `admin`/`member` in an organisation, `maintainer`/`member` in a team) and
    /// `remove_from_group`.
    pub(super) async fn set_membership(&self, action: &Action) -> Result<Value, ApiError> {
        let group = Group::parse(&group_of(action)?)?;
        let path = group.membership_path(action.target()?);
        if action.op == Op::RemoveFromGroup {
            return self.change(Request::new(Method::DELETE, path), action).await;
        }
        let role = group.role_asked(&action.params)?.unwrap_or_else(|| group.roles()[0].to_string());
        let resp = self.http.send(&Request::new(Method::PUT, path).json(json!({ "role": role }))).await?;
        Ok(json!({
            "ok": true, "op": action.op.name(), "target": action.target, "group": group_of(action)?,
            "role": resp.body.get("role").cloned().unwrap_or(json!(role)),
            "state": resp.body.get("state").cloned().unwrap_or(Value::Null), "http_status": resp.status,
        }))
    }
}

fn slug_of(team: &Value, fallback: &str) -> String {
    team.get("slug").and_then(Value::as_str).unwrap_or(fallback).to_ascii_lowercase()
}

fn named_404(e: ApiError, said: String) -> ApiError {
    match e.kind {
        ErrorKind::NotFound => ApiError { message: format!("{said} ({})", e.message), ..e },
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_an_organisation_or_a_team_in_one() {
        assert_eq!(Group::parse(" Acme ").unwrap(), Group::Org("acme".into()));
        assert_eq!(
            Group::parse("Acme/Core Platform").unwrap(),
            Group::Team { org: "acme".into(), team: "Core Platform".into() }
        );
        for bad in ["", "/eng", "acme/", "a/b/c", "ac me", "../x", "acme/\u{7}"] {
            assert!(Group::parse(bad).is_err(), "{bad:?} was taken for a group");
        }
    }

    #[test]
    fn roles_are_checked_against_the_kind_of_group() {
        let org = Group::Org("acme".into());
        let team = Group::Team { org: "acme".into(), team: "eng".into() };
        assert_eq!(org.role_asked(&json!({"role": "Admin"})).unwrap().as_deref(), Some("admin"));
        assert_eq!(team.role_asked(&json!({})).unwrap(), None);
        assert!(team.role_asked(&json!({"role": "admin"})).unwrap_err().message.contains("maintainer"));
        assert!(org.role_asked(&json!({"role": "maintainer"})).is_err());
    }
}
