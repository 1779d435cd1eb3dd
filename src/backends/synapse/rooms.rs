//! Rooms as Synapse's groups: `list_groups` lists the server's rooms, `add_to_group` joins a local user to a room
//! (the admin API's join, which needs the server admin in the room with the power to invite), and
//! `remove_from_group` kicks them (the client API, as the server admin, who needs the power to kick there). A
//! room is named by its id (`!abc…`, or `!abc:server` before room version 12), its alias (`#ops:server`) or its
//! exact name when one room has it.

use super::Synapse;
use crate::backends::{Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, Paging, Request};
use reqwest::Method;
use serde_json::{json, Value};

/// The hint for kicks the server paces: how an admin doing bulk room work lifts their own limit.
const KICKS_PACED: &str = "Synapse paces the server admin's own room events (rc_message); for bulk room changes lift \
     the admin's limit: h.api(\"POST\", \"_synapse/admin/v1/users/<your admin id>/override_ratelimit\", #{messages_per_second: 0, burst_count: 0})";

/// `from` is an offset into the rooms and `total_rooms` their count; `next_batch` is absent on the last page.
const ROOM_PAGING: Paging =
    Paging::Offsets { param: "from", items: "/rooms", next: "/next_batch", total: "/total_rooms" };

/// What a room is without the power the admin API's join and a kick need.
const NEEDS_POWER: &str = "the server admin must be in the room with the power to invite and kick (Synapse's admin API makes a user a room admin: POST /_synapse/admin/v1/rooms/<room>/make_room_admin)";

impl Synapse {
    /// Every room on the server: id, name, alias, joined members.
    pub(super) async fn list_rooms(&self) -> Result<Value, ApiError> {
        let rooms = self.rooms().await?;
        Ok(Value::Array(
            rooms
                .iter()
                .map(|r| {
                    json!({"id": r.get("room_id"), "name": r.get("name"), "alias": r.get("canonical_alias"),
                           "members": r.get("joined_members"),
                           "profile": self.profile, "raw": r})
                })
                .collect(),
        ))
    }

    async fn rooms(&self) -> Result<Vec<Value>, ApiError> {
        let first = Request::new(Method::GET, "_synapse/admin/v1/rooms").query("from", 0).query("limit", 100);
        self.http.list(first, ROOM_PAGING).await
    }

    /// The room a name reaches: an id as it is, an alias through the directory, a name only when exactly one
    /// room has it (two rooms of one name are refused, naming both).
    pub(super) async fn room_id(&self, name: &str) -> Result<String, ApiError> {
        let name = name.trim();
        // Room versions 12 and later name a room by its hash alone (`!abc…`), earlier ones as `!abc:server`.
        if name.starts_with('!') && name.len() > 1 {
            return Ok(name.to_string());
        }
        if name.starts_with('#') && name.contains(':') {
            let path = format!("_matrix/client/v3/directory/room/{}", segment(name));
            let found = self.http.send(&Request::new(Method::GET, path)).await.map_err(|e| match e.status {
                Some(404) => {
                    ApiError::new(ErrorKind::NotFound, format!("no room has the alias {name}")).with_status(404)
                }
                _ => e,
            })?;
            return found
                .body
                .get("room_id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::invalid(format!("the directory answered for {name} with no room_id")));
        }
        let rooms = self.rooms().await?;
        let named: Vec<&str> = rooms
            .iter()
            .filter(|r| r.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|r| r.get("room_id").and_then(Value::as_str))
            .collect();
        match named.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(ApiError::new(ErrorKind::NotFound, format!("no room is named {name:?} on this server"))
                .with_status(404)),
            many => Err(ApiError::invalid(format!(
                "{} rooms are named {name:?} ({}): name the one meant by its id",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// The Matrix ids joined to `room` (its id).
    async fn joined(&self, room: &str) -> Result<Vec<String>, ApiError> {
        let path = format!("_synapse/admin/v1/rooms/{}/members", segment(room));
        let body = self.http.send(&Request::new(Method::GET, path)).await?.body;
        let members = body.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(members.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
    }

    /// Whether `user` (a Matrix id) is joined to `room` (its id).
    pub(super) async fn in_room(&self, room: &str, user: &str) -> Result<bool, ApiError> {
        Ok(self.joined(room).await?.iter().any(|m| m == user))
    }

    /// `members(room)`: who is joined to the room the action names.
    pub(super) async fn room_members(&self, action: &Action) -> Result<Value, ApiError> {
        let room = self.room_id(&crate::backends::group_of(action)?).await?;
        let joined = self.joined(&room).await?;
        Ok(Value::Array(joined.iter().map(|m| json!({"id": m, "login": m, "profile": self.profile})).collect()))
    }

    /// `add_to_group` and `remove_from_group` of the user `id` (resolved), to the room the action names.
    pub(super) async fn membership(&self, action: &Action, id: Option<&str>) -> Result<Value, ApiError> {
        let user = id.ok_or_else(|| ApiError::invalid(format!("{} needs a user", action.op.name())))?;
        let room = self.room_id(&crate::backends::group_of(action)?).await?;
        let add = action.op == Op::AddToGroup;
        let status = self.set_membership(&room, user, add, action.param_str("reason")).await?;
        Ok(json!({"ok": true, "op": action.op.name(), "target": action.target, "group": room, "http_status": status}))
    }

    /// Joins `user` to `room` (add) or kicks them from it (remove), saying what it takes when the server admin
    /// lacks the power there.
    pub(super) async fn set_membership(
        &self,
        room: &str,
        user: &str,
        add: bool,
        reason: Option<&str>,
    ) -> Result<u16, ApiError> {
        let req = match add {
            true => Request::new(Method::POST, format!("_synapse/admin/v1/join/{}", segment(room)))
                .json(json!({"user_id": user})),
            false => {
                let mut body = json!({"user_id": user});
                if let Some(r) = reason {
                    body["reason"] = json!(r);
                }
                Request::new(Method::POST, format!("_matrix/client/v3/rooms/{}/kick", segment(room))).json(body)
            }
        };
        match self.http.send(&req).await {
            Ok(resp) => Ok(resp.status),
            // Refused: because the membership already is as asked (read, not guessed from the message), or for
            // want of power.
            Err(e) if e.status == Some(403) && self.in_room(room, user).await.ok() == Some(add) => {
                let already = if add { "already in" } else { "not in" };
                Err(ApiError::new(ErrorKind::Conflict, format!("{user} is {already} room {room}; nothing changed"))
                    .with_status(403))
            }
            Err(e) if e.status == Some(403) => Err(e.with_hint(NEEDS_POWER)),
            // A kick is the admin's own room event, paced by the server (rc_message, 0.2/s by default).
            Err(e) if e.status == Some(429) && !add => Err(e.with_hint(KICKS_PACED)),
            Err(e) if e.status == Some(404) => {
                Err(ApiError { message: format!("no room {room} on this server ({})", e.message), ..e })
            }
            Err(e) => Err(e),
        }
    }
}
