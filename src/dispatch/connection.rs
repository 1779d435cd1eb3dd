//! A live profile as dispatch sees it: its backend, what guards its actions (its protected entries, the token's
//! own account, resolved once), how the log names its token; and the error a script is told of an action.

use super::Guard;
use crate::backends::{Action, Backend};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;

/// How the audit log names the acting token: where it came from, and its keyed hash (never the token).
#[derive(Clone, Debug, Default)]
pub struct TokenRecord {
    pub source: String,
    pub fingerprint: String,
}

/// A live profile: its backend plus what dispatch needs to guard and record its actions.
pub struct Connection {
    pub profile: String,
    pub backend: Arc<dyn Backend>,
    pub protected: Vec<String>,
    pub token: TokenRecord,
    pub concurrency: usize,
    identity: tokio::sync::OnceCell<String>,
    guard: tokio::sync::OnceCell<Guard>,
}

impl Connection {
    pub fn new(
        profile: &str,
        backend: Arc<dyn Backend>,
        protected: Vec<String>,
        token: TokenRecord,
        concurrency: usize,
    ) -> Self {
        Connection {
            profile: profile.to_string(),
            backend,
            protected,
            token,
            concurrency,
            identity: tokio::sync::OnceCell::new(),
            guard: tokio::sync::OnceCell::new(),
        }
    }

    /// The login the token acts as, asked once per connection.
    pub async fn identity(&self) -> Result<&str, ApiError> {
        self.identity.get_or_try_init(|| self.backend.identity()).await.map(String::as_str)
    }

    pub(crate) fn known_identity(&self) -> String {
        self.identity.get().cloned().unwrap_or_default()
    }

    /// The accounts this connection never takes access from, resolved once: the caller's own and each
    /// protected entry, with every name the service knows them by.
    pub async fn guard(&self) -> Result<&Guard, ApiError> {
        self.guard.get_or_try_init(|| Guard::resolve(self)).await
    }
}

/// The error a script sees: the service's complaint plus where it happened.
#[derive(Clone, Debug)]
pub struct ActionError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    pub status: Option<u16>,
    pub profile: String,
    pub op: String,
    pub target: Option<String>,
}

impl ActionError {
    pub(crate) fn new(e: ApiError, conn: &Connection, op: &str, target: Option<String>) -> Self {
        ActionError {
            kind: e.kind,
            message: e.message,
            hint: e.hint,
            status: e.status,
            profile: conn.profile.clone(),
            op: op.to_string(),
            target,
        }
    }

    pub(crate) fn from_api(e: ApiError, conn: &Connection, action: &Action) -> Self {
        Self::new(e, conn, action.op.name(), action.target.clone())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "message": self.to_string(),
            "status": self.status,
            "profile": self.profile,
            "op": self.op,
            "target": self.target,
        })
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(t) = &self.target {
            write!(f, " {t}")?;
        }
        write!(f, " on {}: {}", self.profile, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ActionError {}
