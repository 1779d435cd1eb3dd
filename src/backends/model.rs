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
    pub fn into_value(self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
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
