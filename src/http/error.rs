//! `ApiError`: one failed request, turned from an HTTP status and the service's error body into an error kind.

use crate::error::ErrorKind;
use std::fmt;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// HTTP status, when the server answered at all.
    pub status: Option<u16>,
    pub message: String,
    /// What the admin can do about it; printed after the message.
    pub hint: Option<String>,
    /// The server asked us to wait this long before trying again.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { kind, status: None, message: message.into(), hint: None, retry_after: None }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An error for a status and the `message` a JSON error body carried (if any).
    pub fn from_response(status: u16, service_message: Option<String>) -> Self {
        let kind = ErrorKind::from_status(status);
        let message = match service_message {
            Some(m) if !m.is_empty() => format!("HTTP {status}: {m}"),
            _ => format!("HTTP {status}"),
        };
        let hint = match kind {
            ErrorKind::Unauthorized => Some("check the profile's token (is it expired or revoked?)".to_string()),
            ErrorKind::Forbidden => Some("the token's account lacks the permission this needs".to_string()),
            ErrorKind::RateLimited => {
                Some("the server's rate limit was hit; lower the profile's rate_limit".to_string())
            }
            ErrorKind::Unavailable => Some("the service failed; try again later".to_string()),
            _ => None,
        };
        ApiError { kind, status: Some(status), message: crate::redact::redact(&message), hint, retry_after: None }
    }

    pub fn unsupported(op: &str, kind: &str, supported: &[&str]) -> Self {
        ApiError::new(
            ErrorKind::Unsupported,
            format!("{op} is not supported by {kind} (supported: {})", supported.join(", ")),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Invalid, message)
    }

    /// A request that never got an HTTP answer (connect failure, timeout, reset).
    pub fn transport(err: &reqwest::Error) -> Self {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "connection failed"
        };
        // reqwest's Display names the URL, never headers; redact anyway in case a token sits in a query.
        let detail = crate::redact::redact(&error_chain(err));
        ApiError::new(ErrorKind::Unavailable, format!("{what}: {detail}"))
            .with_hint("check the profile's url and that the service is up (raise `timeout` for slow servers)")
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}
