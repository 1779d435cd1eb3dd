//! Values crossing the Rhai boundary: the `Handle` type, JSON ↔ Dynamic, and errors as catchable maps.

use crate::dispatch::{ActionError, Connection};
use crate::error::ErrorKind;
use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde_json::Value;
use std::sync::Arc;

/// What `connect(profile)` returns; every admin verb is a method on it.
#[derive(Clone)]
pub struct Handle {
    pub conn: Arc<Connection>,
}

impl Handle {
    pub fn describe(&self) -> String {
        format!(
            "Handle({}: {} at {})",
            self.conn.profile,
            self.conn.backend.kind(),
            self.conn.backend.base_url()
        )
    }
}

pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

pub fn to_dynamic(value: Value) -> ScriptResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

pub fn to_json(value: &Dynamic) -> ScriptResult<Value> {
    rhai::serde::from_dynamic::<Value>(value)
}

/// A script error as a map, so `catch (e) { e.kind }` works: `#{kind, message, status, profile, op, target}`.
pub fn error_map(kind: ErrorKind, message: String) -> Box<EvalAltResult> {
    let mut map = Map::new();
    map.insert("kind".into(), kind.as_str().into());
    map.insert("message".into(), message.into());
    map.insert("status".into(), Dynamic::UNIT);
    map.insert("profile".into(), Dynamic::UNIT);
    map.insert("op".into(), Dynamic::UNIT);
    map.insert("target".into(), Dynamic::UNIT);
    EvalAltResult::ErrorRuntime(map.into(), Position::NONE).into()
}

pub fn action_error(err: ActionError) -> Box<EvalAltResult> {
    let value = to_dynamic(err.to_json()).unwrap_or_else(|_| err.to_string().into());
    EvalAltResult::ErrorRuntime(value, Position::NONE).into()
}

pub fn invalid(message: impl Into<String>) -> Box<EvalAltResult> {
    error_map(ErrorKind::Invalid, message.into())
}

/// A target given as a string or a number (`suspend("bob")`, `delete_token(42)`).
pub fn target_text(value: &Dynamic) -> ScriptResult<String> {
    if value.is_string() {
        Ok(value.clone().into_string().unwrap_or_default())
    } else if value.is_int() {
        Ok(value.as_int().unwrap_or_default().to_string())
    } else if let Some(map) = value.read_lock::<Map>() {
        // A user record from list_users/get_user can be passed back as it is.
        map.get("login")
            .filter(|l| l.is_string())
            .map(|l| l.to_string())
            .ok_or_else(|| invalid("the user map has no login"))
    } else {
        Err(invalid(format!(
            "expected a login or id, got {}",
            value.type_name()
        )))
    }
}

/// The text of an uncaught script error: our error maps print as `kind: message`, others as Rhai says.
pub fn describe_error(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(value, _) => match value.read_lock::<Map>() {
            Some(map) if map.contains_key("kind") && map.contains_key("message") => {
                format!("{}: {}", map["kind"], map["message"])
            }
            _ => format!("{value}"),
        },
        EvalAltResult::ErrorTerminated(_, _) => "cancelled by Ctrl-C".to_string(),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) if !name.is_empty() => {
            format!("in function {name}: {}", describe_error(inner))
        }
        EvalAltResult::ErrorInModule(name, inner, _) => {
            format!("in module {name}: {}", describe_error(inner))
        }
        other => {
            let mut text = other.to_string();
            // Rhai appends " (line L, position P)"; the caller shows the place itself.
            if let Some(i) = text.rfind(" (line ") {
                text.truncate(i);
            }
            text
        }
    }
}

/// The innermost position of an error (where to put the caret).
pub fn error_position(err: &EvalAltResult) -> Position {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos)
        | EvalAltResult::ErrorInModule(_, inner, pos) => {
            let p = error_position(inner);
            if p.is_none() {
                *pos
            } else {
                p
            }
        }
        other => other.position(),
    }
}

/// Did the engine stop the script because Ctrl-C was pressed?
pub fn is_terminated(err: &EvalAltResult) -> bool {
    match err {
        EvalAltResult::ErrorTerminated(_, _) => true,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => is_terminated(inner),
        _ => false,
    }
}
