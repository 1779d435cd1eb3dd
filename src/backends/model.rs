//! The normalized records every backend returns, so scripts read `u.login` and `u.suspended` on any service.

use serde::Serialize;
use serde_json::Value;

/// `#{id, login, email, name, admin, suspended, last_active, kind, profile, raw}`.
/// A field the service does not report is `()` in Rhai (null in JSON), never a guess.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: Value,
    pub login: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: Option<bool>,
    pub suspended: Option<bool>,
    pub last_active: Option<String>,
    pub kind: &'static str,
    pub profile: String,
    /// The service's own JSON, untouched.
    pub raw: Value,
}

impl User {
    /// The record as JSON, its `raw` moved in, not copied (a listing makes one per user).
    pub fn into_value(self) -> Value {
        let text = |t: Option<String>| t.map(Value::String).unwrap_or(Value::Null);
        let flag = |b: Option<bool>| b.map(Value::Bool).unwrap_or(Value::Null);
        let mut map = serde_json::Map::with_capacity(10);
        map.insert("id".into(), self.id);
        map.insert("login".into(), Value::String(self.login));
        map.insert("email".into(), text(self.email));
        map.insert("name".into(), text(self.name));
        map.insert("admin".into(), flag(self.admin));
        map.insert("suspended".into(), flag(self.suspended));
        map.insert("last_active".into(), text(self.last_active));
        map.insert("kind".into(), Value::String(self.kind.into()));
        map.insert("profile".into(), Value::String(self.profile));
        map.insert("raw".into(), self.raw);
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_as_json_is_what_serde_would_write() {
        let user = User {
            id: Value::from(7),
            login: "ann".into(),
            email: Some("ann@example.com".into()),
            name: None,
            admin: Some(false),
            suspended: None,
            last_active: Some("2026-01-01T00:00:00Z".into()),
            kind: "github",
            profile: "ghes".into(),
            raw: serde_json::json!({"login": "ann", "site_admin": false}),
        };
        let by_serde = serde_json::to_value(&user).unwrap();
        let by_hand = user.into_value();
        assert_eq!(by_hand, by_serde);
        let keys: Vec<&String> = by_hand.as_object().unwrap().keys().collect();
        let serde_keys: Vec<&String> = by_serde.as_object().unwrap().keys().collect();
        assert_eq!(keys, serde_keys, "the same order too");
    }
}

/// One account as the service knows it: its stable id and every name it answers to, each as `Backend::name_key`
/// gives it. Protection and self-checks compare these, never the string a script passed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    pub id: String,
    pub names: Vec<String>,
}

impl Account {
    /// The id, login and email of a normalized user record (and a Travis `vcs_id`), lower-cased.
    pub fn of_user(user: &Value) -> Account {
        let text = |k: &str| match user.get(k) {
            Some(Value::String(s)) => Some(s.trim().to_lowercase()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let id = text("id").unwrap_or_default();
        let names =
            ["id", "login", "email", "vcs_id"].iter().filter_map(|k| text(k)).filter(|n| !n.is_empty()).collect();
        Account { id, names }
    }
}
