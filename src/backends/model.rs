//! The normalized records every backend returns, so scripts read `u.login` and `u.suspended` on any service.

use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// `#{id, login, email, name, admin, suspended, last_active, kind, profile, raw}`, then what the service adds
/// (`extra`, in order). A field the service does not report is `()` in Rhai (null in JSON), never a guess.
#[derive(Clone, Debug, Default)]
pub struct User {
    pub id: Value,
    pub login: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: Option<bool>,
    pub suspended: Option<bool>,
    pub last_active: Option<String>,
    pub kind: Cow<'static, str>,
    pub profile: String,
    /// The service's own JSON, untouched.
    pub raw: Raw,
    /// The service's own fields after the common ones (`role`, `deactivated`, …).
    pub extra: Vec<(String, Value)>,
    /// The common fields this record cannot say (a GHES listing knows no email): tables and CSVs show `?`.
    pub unknown: &'static [&'static str],
}

/// One account's dates of use, compact: what a policy over a million accounts holds instead of their records
/// (`Backend::activity_seen`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub login: String,
    pub email: Option<String>,
    pub admin: bool,
    /// `None`: the listing does not say (Synapse's says it only in each user's own record).
    pub suspended: Option<bool>,
    /// `None`: never active.
    pub last_active: Option<chrono::DateTime<chrono::Utc>>,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

impl Seen {
    /// From a normalized user record (`last_active` and `created_at` in RFC 3339).
    pub fn of_user(u: &Value) -> Seen {
        let time = |k: &str| {
            u.get(k)
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        };
        Seen {
            login: u.get("login").and_then(Value::as_str).unwrap_or_default().to_string(),
            email: u.get("email").and_then(Value::as_str).filter(|e| e.contains('@')).map(str::to_string),
            admin: u.get("admin").and_then(Value::as_bool).unwrap_or(false),
            suspended: u.get("suspended").and_then(Value::as_bool),
            last_active: time("last_active"),
            created: time("created_at"),
        }
    }
}

/// The service's own record of a user: parsed, or still the JSON text it came in (a listing of a million users
/// reads a few fields of each and builds no tree of the rest unless a script asks).
#[derive(Clone, Debug)]
pub enum Raw {
    Tree(Value),
    Text(Box<RawValue>),
}

impl Default for Raw {
    fn default() -> Self {
        Raw::Tree(Value::Null)
    }
}

impl Raw {
    /// The record parsed (text that came as JSON parses again; were it somehow not to, it reads as null).
    pub fn into_value(self) -> Value {
        match self {
            Raw::Tree(v) => v,
            Raw::Text(t) => serde_json::from_str(t.get()).unwrap_or(Value::Null),
        }
    }

    pub fn is_object(&self) -> bool {
        match self {
            Raw::Tree(v) => v.is_object(),
            Raw::Text(t) => t.get().trim_start().starts_with('{'),
        }
    }
}

impl User {
    /// The record as JSON, its `raw` moved in, not copied (a listing makes one per user).
    pub fn into_value(self) -> Value {
        let text = |t: Option<String>| t.map(Value::String).unwrap_or(Value::Null);
        let flag = |b: Option<bool>| b.map(Value::Bool).unwrap_or(Value::Null);
        let mut map = serde_json::Map::with_capacity(10 + self.extra.len());
        map.insert("id".into(), self.id);
        map.insert("login".into(), Value::String(self.login));
        map.insert("email".into(), text(self.email));
        map.insert("name".into(), text(self.name));
        map.insert("admin".into(), flag(self.admin));
        map.insert("suspended".into(), flag(self.suspended));
        map.insert("last_active".into(), text(self.last_active));
        map.insert("kind".into(), Value::String(self.kind.into_owned()));
        map.insert("profile".into(), Value::String(self.profile));
        map.insert("raw".into(), self.raw.into_value());
        map.extend(self.extra);
        if !self.unknown.is_empty() {
            map.insert("unknown".into(), self.unknown.iter().map(|k| Value::from(*k)).collect());
        }
        Value::Object(map)
    }

    /// A normalized record as JSON (what `into_value` made, or a service's list answer) back into its parts;
    /// `from_value(u.into_value())` is `u`, its `raw` parsed.
    pub fn from_value(value: Value) -> User {
        let mut user = User::default();
        let Value::Object(map) = value else {
            user.raw = Raw::Tree(value);
            return user;
        };
        let text = |v: Value| match v {
            Value::String(s) => Some(s),
            _ => None,
        };
        for (key, v) in map {
            match key.as_str() {
                "id" => user.id = v,
                "login" => user.login = text(v).unwrap_or_default(),
                "email" => user.email = text(v),
                "name" => user.name = text(v),
                "admin" => user.admin = v.as_bool(),
                "suspended" => user.suspended = v.as_bool(),
                "last_active" => user.last_active = text(v),
                "kind" => user.kind = Cow::Owned(text(v).unwrap_or_default()),
                "profile" => user.profile = text(v).unwrap_or_default(),
                "raw" => user.raw = Raw::Tree(v),
                _ => user.extra.push((key, v)),
            }
        }
        user
    }

    /// The value of `key` as `into_value` would give it, `None` where that is null or missing (for those who read
    /// one field of many records; never `raw`).
    pub fn field(&self, key: &str) -> Option<Value> {
        let text = |t: &Option<String>| t.clone().map(Value::String);
        match key {
            "id" => Some(self.id.clone()),
            "login" => Some(Value::String(self.login.clone())),
            "email" => text(&self.email),
            "name" => text(&self.name),
            "admin" => self.admin.map(Value::Bool),
            "suspended" => self.suspended.map(Value::Bool),
            "last_active" => text(&self.last_active),
            "kind" => Some(Value::String(self.kind.to_string())),
            "profile" => Some(Value::String(self.profile.clone())),
            _ => self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        }
    }
}

/// One account as the service answered a lookup for it: what every decision about a change compares (resolve,
/// then decide), never the string a script passed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    /// The service's stable id for it, as the service writes it: guard, claims, duplicates, done-sets and undo
    /// compare this and nothing else.
    pub id: String,
    /// Other stable ids the service addresses it by (Travis: its VCS id as `vcs:<type>:<n>`).
    pub aliases: Vec<String>,
    /// Every name it answers to, as the service wrote them (`Backend::answers_to` compares them its own way).
    pub names: Vec<String>,
    /// What a request that changes it names it by: the id where the service's paths take ids, the login as the
    /// service spells it where they take logins (GHES).
    pub address: String,
    /// The normalized user record the lookup read (`Value::Null` when the service showed none).
    pub record: Value,
}

impl Account {
    /// An account as a normalized user record describes it: its id, its id, login and email (and Travis's
    /// `vcs_id`) as names, addressed by its login (or its id where it has none).
    pub fn of_user(user: &Value) -> Account {
        let text = |k: &str| match user.get(k) {
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let id = text("id").unwrap_or_default();
        let names: Vec<String> =
            ["id", "login", "email", "vcs_id"].iter().filter_map(|k| text(k)).filter(|n| !n.is_empty()).collect();
        let address = text("login").filter(|l| !l.is_empty()).unwrap_or_else(|| id.clone());
        Account { id, aliases: Vec::new(), names, address, record: user.clone() }
    }

    /// The same account addressed by its id (services whose paths take ids).
    pub fn by_id(mut self) -> Account {
        self.address = self.id.clone();
        self
    }

    /// The account without its record, once what it says is decided on: a job keeps one per item, and a record
    /// (the service's JSON) is a thousand times larger than what deciding needs later (its ids, names and
    /// login, for messages).
    pub fn without_record(mut self) -> Account {
        let login = self.record.get("login").cloned();
        self.record = match login {
            Some(login) => serde_json::json!({ "login": login }),
            None => Value::Null,
        };
        self
    }

    /// Every stable id it has: the id, then the aliases.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(String::as_str)).filter(|i| !i.is_empty())
    }

    /// How to name it in a message: its login (or address) and, where that differs, its id.
    pub fn describe(&self) -> String {
        let login = self.record.get("login").and_then(Value::as_str).filter(|l| !l.is_empty());
        let name = login.unwrap_or(&self.address);
        match name == self.id || self.id.is_empty() {
            true => name.to_string(),
            false => format!("{name} (id {})", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> User {
        User {
            id: Value::from(7),
            login: "ann".into(),
            email: Some("ann@example.com".into()),
            name: None,
            admin: Some(false),
            suspended: None,
            last_active: Some("2026-01-01T00:00:00Z".into()),
            kind: "github".into(),
            profile: "ghes".into(),
            raw: Raw::Text(RawValue::from_string(r#"{"login": "ann", "site_admin": false}"#.into()).unwrap()),
            extra: vec![("role".into(), serde_json::json!("owner"))],
            unknown: &["suspended"],
        }
    }

    #[test]
    fn a_record_as_json_has_the_common_fields_first_then_the_services() {
        let value = ann().into_value();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        let expected = [
            "id",
            "login",
            "email",
            "name",
            "admin",
            "suspended",
            "last_active",
            "kind",
            "profile",
            "raw",
            "role",
            "unknown",
        ];
        assert_eq!(keys, expected);
        assert_eq!(value["raw"], serde_json::json!({"login": "ann", "site_admin": false}), "the text parsed");
        assert_eq!(value["name"], Value::Null);
        assert_eq!(value["unknown"], serde_json::json!(["suspended"]));
    }

    #[test]
    fn a_record_read_back_from_json_is_the_same_record() {
        let value = ann().into_value();
        let back = User::from_value(value.clone());
        assert!(matches!(back.raw, Raw::Tree(_)));
        assert_eq!(back.into_value(), value);
        for key in ["id", "login", "email", "admin", "kind", "role"] {
            assert_eq!(ann().field(key).as_ref(), value.get(key), "{key}");
        }
        assert_eq!(ann().field("name"), None);
    }
}

/// A member of a group as `members` lists it: the account's stable id, its login, its role where the service
/// has roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub login: String,
    pub role: Option<String>,
}

impl Member {
    /// One entry of a `members` answer, its strings moved out (`None`: no id).
    pub fn of_value(entry: Value) -> Option<Member> {
        let Value::Object(mut m) = entry else { return None };
        let mut take = |k: &str| match m.remove(k) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let id = take("id")?;
        let login = take("login").unwrap_or_else(|| id.clone());
        Some(Member { id, login, role: take("role") })
    }
}
