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
