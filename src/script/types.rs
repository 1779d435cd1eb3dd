//! Values crossing the Rhai boundary: the `Handle` type, JSON ↔ Dynamic, and errors as catchable maps.

use crate::backends::model::{Raw, User};
use crate::dispatch::{ActionError, Connection};
use crate::error::ErrorKind;
use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;

/// What `connect(profile)` returns; every admin verb is a method on it.
#[derive(Clone)]
pub struct Handle {
    pub conn: Arc<Connection>,
}

impl Handle {
    pub fn describe(&self) -> String {
        format!("Handle({}: {} at {})", self.conn.profile, self.conn.backend.kind(), self.conn.backend.base_url())
    }
}

pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// A service's own JSON record (`u.raw`), kept as JSON rather than converted field by field: a user list
/// of 10,000 records would otherwise hold 300,000 script values that nobody reads, and every engine size
/// check would walk them all. Scripts read it like a map: `u.raw.ldap_dn`, `u.raw["site_admin"]`.
#[derive(Clone, Debug)]
pub enum RawJson {
    Tree(Arc<Value>),
    /// The JSON text as the service sent it (a record of a listing walked with `h.users()`), parsed when read.
    Text(Box<RawValue>),
    /// The JSON text, LZ4-compressed against a dictionary (the first record of the same listing, which shares
    /// its keys and URL prefixes): how a list of many records keeps each one. A GHES user is about 4 KB as a
    /// tree, 1 KB as text, 0.4 KB packed alone and 0.1 KB packed against its listing's first record.
    Packed {
        dict: Arc<[u8]>,
        bytes: Box<[u8]>,
    },
}

impl RawJson {
    pub fn new(value: Value) -> Self {
        RawJson::Tree(Arc::new(value))
    }

    /// The record as JSON. Text that came as JSON can still fail to parse: a record nested deeper than 128
    /// levels is listed (its fields read, its text kept) but not turned into a tree.
    pub fn value(&self) -> ScriptResult<std::borrow::Cow<'_, Value>> {
        match self {
            RawJson::Tree(v) => Ok(std::borrow::Cow::Borrowed(v.as_ref())),
            RawJson::Text(t) => parse_raw(t.get().as_bytes()).map(std::borrow::Cow::Owned),
            RawJson::Packed { .. } => parse_raw(&self.unpacked()).map(std::borrow::Cow::Owned),
        }
    }

    /// A packed record's text (what was packed came out of the compressor, so it unpacks).
    fn unpacked(&self) -> Vec<u8> {
        match self {
            RawJson::Packed { dict, bytes } => {
                lz4_flex::block::decompress_size_prepended_with_dict(bytes, dict).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    pub fn get(&mut self, key: &str) -> ScriptResult<Dynamic> {
        Ok(self.parsed()?.get(key).cloned().map(to_dynamic).unwrap_or(Dynamic::UNIT))
    }

    /// The record as JSON, text parsed once and kept so (packed records stay packed).
    fn parsed(&mut self) -> ScriptResult<std::borrow::Cow<'_, Value>> {
        if let RawJson::Text(t) = self {
            *self = RawJson::new(parse_raw(t.get().as_bytes())?);
        }
        self.value()
    }

    pub fn keys(&mut self) -> ScriptResult<rhai::Array> {
        let value = self.parsed()?;
        Ok(value.as_object().map(|o| o.keys().map(|k| Dynamic::from(k.clone())).collect()).unwrap_or_default())
    }

    /// The record's JSON text, as it came where it was kept as text, but with escapes written out: text a
    /// service escaped (a secret spelt `\u0067hp_…`) is then what redaction sees, as it would in a tree.
    pub fn text(&mut self) -> String {
        let text = match self {
            RawJson::Tree(v) => return v.to_string(),
            RawJson::Text(t) => t.get().to_string(),
            RawJson::Packed { .. } => String::from_utf8_lossy(&self.unpacked()).into_owned(),
        };
        match text.contains('\\') {
            true => serde_json::from_str::<Value>(&text).map(|v| v.to_string()).unwrap_or(text),
            false => text,
        }
    }
}

fn parse_raw(text: &[u8]) -> ScriptResult<Value> {
    serde_json::from_slice(text).map_err(|e| {
        invalid(format!(
            "the service's record (raw) cannot be read as a tree: {e}; its text is u.raw.to_string(), and the \
             common fields (u.login, u.id, …) were read"
        ))
    })
}

/// JSON to a script value; objects under a `raw` key stay JSON (see `RawJson`).
pub fn to_dynamic(value: Value) -> Dynamic {
    convert(value, None)
}

/// Turns the records of one listing into script values compactly: the texts every record repeats (its kind, its
/// profile, the names in `unknown`) held once and, for records kept by the thousand (`list_users`), each `raw`
/// packed.
#[derive(Default)]
pub struct RecordPacker {
    shared: Vec<rhai::ImmutableString>,
    dict: Option<Arc<[u8]>>,
    /// A walk's records come and go a page at a time: packing each `raw` would cost time and save nothing.
    unpacked: bool,
}

impl RecordPacker {
    /// For records a walk hands out one by one (`h.users()`): texts shared, `raw` left as it came.
    pub fn walking() -> Self {
        RecordPacker { unpacked: true, ..RecordPacker::default() }
    }

    fn pack(&mut self, raw: &Raw) -> RawJson {
        let text = match raw {
            Raw::Text(t) => std::borrow::Cow::Borrowed(t.get().as_bytes()),
            Raw::Tree(v) => std::borrow::Cow::Owned(serde_json::to_vec(v).unwrap_or_default()),
        };
        let dict = self.dict.get_or_insert_with(|| text.as_ref().into()).clone();
        let bytes = lz4_flex::block::compress_prepend_size_with_dict(&text, &dict).into_boxed_slice();
        RawJson::Packed { dict, bytes }
    }

    pub fn user(&mut self, user: User) -> Dynamic {
        convert_user(user, self)
    }

    /// The text, held once for the listing (a few distinct ones: a short list searched beats hashing each).
    fn share(&mut self, text: &str) -> Dynamic {
        if let Some(held) = self.shared.iter().find(|held| held.as_str() == text) {
            return held.clone().into();
        }
        let held = rhai::ImmutableString::from(text);
        if self.shared.len() < MAX_SHARED {
            self.shared.push(held.clone());
        }
        held.into()
    }

    fn share_all(&mut self, texts: &[&str]) -> Dynamic {
        Dynamic::from_array(texts.iter().map(|t| self.share(t)).collect())
    }
}

/// How many distinct repeated texts a listing holds once (its kind, its profile, the names in `unknown`).
const MAX_SHARED: usize = 16;

/// Keys whose values repeat across the records of one listing.
const REPEATED: [&str; 3] = ["kind", "profile", "unknown"];

/// A normalized user to the script map `convert(user.into_value())` would make, without the JSON in between.
fn convert_user(user: User, packer: &mut RecordPacker) -> Dynamic {
    let text = |t: Option<String>| t.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let flag = |b: Option<bool>| b.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    // Made from all its common fields at once, in key order, so the map is built rather than searched per key.
    let unknown = (!user.unknown.is_empty()).then(|| packer.share_all(user.unknown));
    let mut map: Map = [
        ("admin", flag(user.admin)),
        ("email", text(user.email)),
        ("id", convert(user.id, None)),
        ("kind", packer.share(&user.kind)),
        ("last_active", text(user.last_active)),
        ("login", user.login.into()),
        ("name", text(user.name)),
        ("profile", packer.share(&user.profile)),
        ("raw", raw_to_dynamic(user.raw, Some(&mut *packer))),
        ("suspended", flag(user.suspended)),
    ]
    .into_iter()
    .chain(unknown.map(|u| ("unknown", u)))
    .map(|(k, v)| (k.into(), v))
    .collect();
    for (k, v) in user.extra {
        let v = entry(&k, v, Some(&mut *packer));
        map.insert(k.into(), v);
    }
    Dynamic::from_map(map)
}

/// A record's `raw`: an object stays JSON (packed in a listing held whole), anything else is converted.
fn raw_to_dynamic(raw: Raw, packer: Option<&mut RecordPacker>) -> Dynamic {
    match (raw, packer) {
        (raw, Some(p)) if !p.unpacked && raw.is_object() => Dynamic::from(p.pack(&raw)),
        (Raw::Text(t), _) if t.get().trim_start().starts_with('{') => Dynamic::from(RawJson::Text(t)),
        (Raw::Tree(v @ Value::Object(_)), _) => Dynamic::from(RawJson::new(v)),
        (raw, p) => convert(raw.into_value(), p),
    }
}

/// One field of a record: `raw` as above, the texts every record of a listing repeats held once.
fn entry(key: &str, value: Value, packer: Option<&mut RecordPacker>) -> Dynamic {
    match (key, value, packer) {
        ("raw", v @ Value::Object(_), p) => raw_to_dynamic(Raw::Tree(v), p),
        (key, Value::String(text), Some(p)) if REPEATED.contains(&key) => p.share(&text),
        (key, Value::Array(items), Some(p)) if REPEATED.contains(&key) => Dynamic::from_array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => p.share(&text),
                    other => convert(other, None),
                })
                .collect(),
        ),
        (_, v, p) => convert(v, p),
    }
}

fn convert(value: Value, mut packer: Option<&mut RecordPacker>) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().map(Dynamic::from_float).unwrap_or(Dynamic::UNIT),
        },
        Value::String(s) => s.into(),
        Value::Array(items) => {
            Dynamic::from_array(items.into_iter().map(|v| convert(v, packer.as_deref_mut())).collect())
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let v = entry(&k, v, packer.as_deref_mut());
                out.insert(k.into(), v);
            }
            Dynamic::from_map(out)
        }
    }
}

/// How deeply nested a script value may be to leave the script (as JSON, a table, a CSV cell or a request body):
/// far beyond any real record, and well within the stack.
pub const MAX_NESTING: usize = 512;

/// A script value to JSON, for output, CSV and request bodies.
pub fn to_json(value: &Dynamic) -> ScriptResult<Value> {
    to_json_within(value, MAX_NESTING)
}

fn to_json_within(value: &Dynamic, depth: usize) -> ScriptResult<Value> {
    let Some(depth) = depth.checked_sub(1) else {
        return Err(invalid(format!(
            "the value is nested more than {MAX_NESTING} levels deep (arrays or maps inside each other); \
             steward takes no deeper data"
        )));
    };
    let to_json = |v: &Dynamic| to_json_within(v, depth);
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return Ok(serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null));
    }
    if value.is_string() || value.is_char() {
        return Ok(Value::String(value.to_string()));
    }
    if let Some(array) = value.read_lock::<rhai::Array>() {
        return array.iter().map(to_json).collect::<ScriptResult<Vec<_>>>().map(Value::Array);
    }
    if let Some(map) = value.read_lock::<Map>() {
        let mut out = serde_json::Map::new();
        for (k, v) in map.iter() {
            out.insert(k.to_string(), to_json(v)?);
        }
        return Ok(Value::Object(out));
    }
    if let Some(raw) = value.read_lock::<RawJson>() {
        return Ok(raw.value()?.into_owned());
    }
    if let Some(h) = value.read_lock::<Handle>() {
        return Ok(Value::String(h.describe()));
    }
    if let Some(users) = value.read_lock::<super::listing::Users>() {
        return Ok(Value::String(users.describe()));
    }
    Ok(Value::String(value.to_string()))
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
    EvalAltResult::ErrorRuntime(to_dynamic(err.to_json()), Position::NONE).into()
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
        Err(invalid(format!("expected a login or id, got {}", value.type_name())))
    }
}

/// Bulk input: logins, ids, user maps or CSV rows (`read_csv` rows carry `_line`, and `_error` when malformed).
/// `keys` are the columns that may name the user, in the backend's order of preference.
pub fn bulk_items(items: &rhai::Array, keys: &[&str]) -> Vec<crate::dispatch::BulkItem> {
    items
        .iter()
        .enumerate()
        .map(|(i, value)| {
            if let Some(map) = value.read_lock::<Map>() {
                return bulk_item(
                    |k: &str| {
                        map.get(k).filter(|v| !v.is_unit()).map(|v| v.to_string()).filter(|s| !s.trim().is_empty())
                    },
                    keys,
                );
            }
            let mut item = crate::dispatch::BulkItem::default();
            match target_text(value) {
                Ok(t) if !t.trim().is_empty() => item.target = Some(t.trim().to_string()),
                Ok(_) => item.error = Some("an empty login".to_string()),
                Err(_) => {
                    item.error = Some(format!("item {} is a {}, not a login or user map", i + 1, value.type_name()))
                }
            }
            item
        })
        .collect()
}

/// One bulk item from a row's fields by name (a script map, a CSV line, a user record); `text` gives a field's
/// non-blank text. `_line` and `_error` are the CSV line number and what was wrong with it.
pub fn bulk_item(text: impl Fn(&str) -> Option<String>, keys: &[&str]) -> crate::dispatch::BulkItem {
    let mut item = crate::dispatch::BulkItem {
        line: text("_line").and_then(|l| l.trim().parse().ok()),
        error: text("_error"),
        ..Default::default()
    };
    if let Some(reason) = text("reason") {
        item.params.insert("reason".into(), reason.into());
    }
    let key = keys.iter().find(|k| text(k).is_some());
    item.target = key.and_then(|k| text(k)).map(|t| t.trim().to_string());
    // A VCS id (Travis) is another numbering than the service's own: say which.
    if key == Some(&"vcs_id") {
        item.params.insert("vcs_type".into(), text("vcs_type").unwrap_or_else(|| "github".into()).into());
    }
    // A row that failed before it named a user (an email nobody has) is still shown by what it gave; with its
    // error set it is never sent.
    if item.target.is_none() && item.error.is_some() {
        item.target = text("email").map(|e| e.trim().to_string());
    }
    if item.target.is_none() && item.error.is_none() {
        item.error = Some(if text("email").is_some() {
            "this row has only an email; look the user up first (users::find_by_email)".to_string()
        } else {
            format!("the row names no user (expected one of: {})", keys.join(", "))
        });
    }
    item
}

/// The error where it was raised, under the function calls and imports it passed through.
pub fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) => {
            innermost(inner)
        }
        other => other,
    }
}

/// The `kind` of the map a script threw (`throw #{kind: "usage", message}`), however deep in functions and
/// modules it was thrown.
pub fn thrown_kind(err: &EvalAltResult) -> Option<String> {
    match innermost(err) {
        EvalAltResult::ErrorRuntime(value, _) => {
            value.read_lock::<Map>().and_then(|m| m.get("kind").map(|k| k.to_string()))
        }
        _ => None,
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
        EvalAltResult::ErrorTerminated(why, _) => why.to_string(),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) if !name.is_empty() => {
            format!("in function {name}: {}", describe_error(inner))
        }
        EvalAltResult::ErrorInModule(name, inner, _) => {
            format!("in module {name}: {}", describe_error(inner))
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => not_found(signature),
        // `if u.suspended` on a record that does not say: () is "missing or unknown", which deserves words.
        EvalAltResult::ErrorMismatchDataType(expected, actual, _) if actual == "()" => format!(
            "expected {expected}, found () (missing or unknown): a field is () when the service did not say; on \
             GHES, a listing of over 100 users has no suspended, email or name unless list_users(#{{detail: true}})"
        ),
        EvalAltResult::ErrorTooManyOperations(_) => "the script ran past the engine's limit of operations (it stops \
             loops that never end); check the loop's condition, or split the work into smaller scripts"
            .to_string(),
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

/// A call to a function that does not exist, or not with these arguments: what there is, and `:help`.
fn not_found(signature: &str) -> String {
    let name = signature.split([' ', '(']).next().unwrap_or(signature);
    if let Some(doc) = super::docs::find(name) {
        return format!("{name} cannot be called like this ({signature}); it is called {}", doc.signature);
    }
    match crate::suggest::closest(name, super::docs::all().map(|d| d.name)) {
        Some(near) => format!("there is no function {name}; did you mean {near}? (:help lists every function)"),
        None => format!("there is no function {name} ({signature}); :help lists every function"),
    }
}

/// Where in `file` to put the caret: the innermost position that is in that file.
pub fn error_position(err: &EvalAltResult, file: &str) -> Position {
    match err {
        // Raised inside an imported module: its lines are not this file's, so the caret goes where this file
        // called into it (or imported it).
        EvalAltResult::ErrorInFunctionCall(_, source, _, pos) if !source.is_empty() && source != file => *pos,
        EvalAltResult::ErrorInModule(_, _, pos) => *pos,
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos) => {
            let p = error_position(inner, file);
            if p.is_none() {
                *pos
            } else {
                p
            }
        }
        other => other.position(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<User> {
        let text = |t: &str| Raw::Text(RawValue::from_string(t.to_string()).unwrap());
        let listed = User {
            id: Value::from(7),
            login: "ann".into(),
            admin: Some(false),
            kind: "github".into(),
            profile: "ghes".into(),
            raw: text(r#"{"login": "ann", "id": 7, "ldap_dn": "cn=ann"}"#),
            unknown: &["email", "name", "suspended"],
            ..User::default()
        };
        let full = User {
            id: Value::from("u-1"),
            login: "bob".into(),
            email: Some("bob@example.com".into()),
            name: Some("Bob".into()),
            suspended: Some(true),
            last_active: Some("2026-01-01T00:00:00Z".into()),
            kind: "terraform".into(),
            profile: "tfe".into(),
            raw: Raw::Tree(serde_json::json!({"id": "u-1", "attributes": {"username": "bob"}})),
            extra: vec![("organizations".into(), serde_json::json!(["o1"])), ("two_factor".into(), Value::Null)],
            ..User::default()
        };
        let odd = User { raw: text("[1, 2]"), ..User::default() };
        vec![listed, full, odd]
    }

    #[test]
    fn a_user_becomes_the_script_map_its_json_would() {
        for packer in [RecordPacker::walking(), RecordPacker::default()].iter_mut() {
            for user in users() {
                let expected = to_json(&to_dynamic(user.clone().into_value())).unwrap();
                let made = packer.user(user);
                assert_eq!(to_json(&made).unwrap(), expected);
                let map = made.cast::<Map>();
                let raw = &map["raw"];
                // An object stays JSON (packed only in a listing held whole); anything else is converted.
                assert_eq!(raw.is::<RawJson>(), expected["raw"].is_object(), "{expected}");
            }
        }
    }

    #[test]
    fn a_record_kept_as_text_is_read_like_a_map() {
        let mut raw = RawJson::Text(RawValue::from_string(r#"{"ldap_dn": "cn=ann", "n": 2}"#.into()).unwrap());
        assert_eq!(raw.text(), r#"{"ldap_dn": "cn=ann", "n": 2}"#, "its text as it came");
        assert_eq!(raw.get("ldap_dn").unwrap().into_string().unwrap(), "cn=ann");
        assert_eq!(raw.get("n").unwrap().as_int().unwrap(), 2);
        assert!(raw.get("missing").unwrap().is_unit());
        assert_eq!(raw.keys().unwrap().len(), 2);
    }
}
