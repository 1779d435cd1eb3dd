//! Organisations' teams as Terraform Enterprise's groups. A team is named `org/team` (its name in that
//! organisation) or by its id (`team-…`), and known by its id. Members are users of the team's organisation,
//! added and removed by user id (`/teams/:id/relationships/users`); teams have no roles for their members.

use super::{Terraform, USER_PAGING};
use crate::backends::model::Member;
use crate::backends::{group_of, Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, Request};
use reqwest::Method;
use serde_json::{json, Value};

impl Terraform {
    /// The team `name` names, read now: by its id, or `org/team` by the organisation's one team of that name.
    pub(super) async fn team_id(&self, name: &str) -> Result<String, ApiError> {
        let name = name.trim();
        if name.starts_with("team-") && !name.contains('/') {
            let team = self.team(name).await?;
            return Ok(team.pointer("/data/id").and_then(Value::as_str).unwrap_or(name).to_string());
        }
        let Some((org, team)) =
            name.split_once('/').filter(|(o, t)| !o.is_empty() && !t.is_empty() && !t.contains('/'))
        else {
            return Err(ApiError::invalid(format!(
                "{name:?} is not a Terraform team: name it as \"organization/team\" or by its id (team-…)"
            )));
        };
        let req = Request::new(Method::GET, format!("organizations/{}/teams", segment(org)))
            .query("filter[names]", team)
            .query("page[size]", 100);
        let found = self.http.list(req, USER_PAGING).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => ApiError { message: format!("no organization {org:?} here ({})", e.message), ..e },
            _ => e,
        })?;
        let named: Vec<&Value> =
            found.iter().filter(|t| t.pointer("/attributes/name").and_then(Value::as_str) == Some(team)).collect();
        match named.as_slice() {
            [one] => one
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::invalid(format!("the team {name} was listed with no id"))),
            [] => {
                Err(ApiError::new(ErrorKind::NotFound, format!("no team {team:?} in organization {org}"))
                    .with_status(404))
            }
            _ => Err(ApiError::new(
                ErrorKind::Conflict,
                format!("{} teams of {org} are named {team:?}; name one by its id", named.len()),
            )),
        }
    }

    /// The team with its users (`include=users`).
    async fn team(&self, id: &str) -> Result<Value, ApiError> {
        let req = Request::new(Method::GET, format!("teams/{}", segment(id))).query("include", "users");
        self.http.send(&req).await.map(|r| r.body).map_err(|e| match e.kind {
            ErrorKind::NotFound => ApiError { message: format!("no team {id} here ({})", e.message), ..e },
            _ => e,
        })
    }

    /// A team's members: each user's id and username.
    pub(super) async fn each_member(&self, name: &str, each: &mut (dyn FnMut(Member) + Send)) -> Result<(), ApiError> {
        let team = self.team(&self.team_id(name).await?).await?;
        for u in team.get("included").and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = u.get("id").and_then(Value::as_str) else { continue };
            let login = u.pointer("/attributes/username").and_then(Value::as_str).unwrap_or(id);
            each(Member { id: id.to_string(), login: login.to_string(), role: None });
        }
        Ok(())
    }

    /// `list_groups`: every organisation's teams, named `org/team`.
    pub(super) async fn list_teams(&self) -> Result<Value, ApiError> {
        let orgs = Request::new(Method::GET, "admin/organizations").query("page[size]", 100);
        let mut out = Vec::new();
        for org in self.http.list(orgs, USER_PAGING).await? {
            let Some(org) = org.get("id").and_then(Value::as_str) else { continue };
            let req =
                Request::new(Method::GET, format!("organizations/{}/teams", segment(org))).query("page[size]", 100);
            for t in self.http.list(req, USER_PAGING).await? {
                let name = t.pointer("/attributes/name").and_then(Value::as_str).unwrap_or_default();
                out.push(json!({
                    "id": t.get("id"), "name": format!("{org}/{name}"), "kind": "team",
                    "members": t.pointer("/attributes/users-count"), "profile": self.profile,
                }));
            }
        }
        Ok(Value::Array(out))
    }

    /// Whether the user `id` is in the team `params` name.
    pub(super) async fn in_team(&self, op: Op, id: &str, params: &Value) -> Result<Option<bool>, ApiError> {
        let team = self.team(&self.team_id(&group_of(&Action::new(op, None, params.clone()))?).await?).await?;
        let users = team.pointer("/data/relationships/users/data").and_then(Value::as_array);
        let member = users.into_iter().flatten().any(|u| u.get("id").and_then(Value::as_str) == Some(id));
        Ok(Some(member == (op == Op::AddToGroup)))
    }

    /// `add_to_group` and `remove_from_group`: the user (by id) into or out of the team.
    pub(super) async fn set_team_membership(&self, action: &Action) -> Result<Value, ApiError> {
        let team = self.team_id(&group_of(action)?).await?;
        let user = self.id_of(action).await?;
        let method = if action.op == Op::AddToGroup { Method::POST } else { Method::DELETE };
        let req = Request::new(method, format!("teams/{}/relationships/users", segment(&team)))
            .json(json!({"data": [{"type": "users", "id": user}]}));
        let resp = self.http.send(&req).await.map_err(|e| match e.status {
            Some(404) => e.with_hint("a team takes only members of its organization: invite them to it first"),
            _ => e,
        })?;
        Ok(
            json!({"ok": true, "op": action.op.name(), "target": action.target, "group": team, "http_status": resp.status}),
        )
    }
}
