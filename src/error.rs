//! Error kinds shared by every layer, the errors `run()` reports, and the exit code each one maps to.

use std::fmt;

/// What went wrong, in the words scripts match on (`e.kind == "not_found"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    Unauthorized,
    Conflict,
    Invalid,
    RateLimited,
    Unavailable,
    Unsupported,
    Protected,
    Cancelled,
    /// Sent, and the run was stopped before the answer came: it may have been applied. The log keeps its intent
    /// open; a resume reads the account and settles it.
    InDoubt,
    /// Another steward process is changing the same account right now.
    Busy,
    /// steward's own audit log could not record the action, so nothing was sent.
    Audit,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Protected => "protected",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::InDoubt => "in_doubt",
            ErrorKind::Busy => "busy",
            ErrorKind::Audit => "audit",
        }
    }

    /// The kind an HTTP status means when the service says nothing more specific.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 | 410 => ErrorKind::NotFound,
            // 412: the resource changed since it was read (an If-Match that no longer holds).
            409 | 412 | 422 => ErrorKind::Conflict,
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::Invalid,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mistake in how steward was invoked or configured: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError { message: message.into() }
    }
}

/// A script ended with an error that has already been printed: exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("the script failed")]
pub struct ScriptFailed;

/// A script refused how it was called (`throw #{kind: "usage", …}`: a missing `--arg`), already printed: exit
/// code 2, as for steward's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("the script was called wrongly")]
pub struct ScriptUsage;

/// The audit log failed verification: exit code 1, after the report was printed.
#[derive(Debug, thiserror::Error)]
#[error("the audit log failed verification")]
pub struct AuditBroken;

/// Whether the error was reported where it happened (a script's error, a verification report), so `main`
/// prints nothing more.
pub fn already_reported(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ScriptFailed>().is_some()
        || err.downcast_ref::<ScriptUsage>().is_some()
        || err.downcast_ref::<AuditBroken>().is_some()
        || err.downcast_ref::<BulkFailures>().is_some()
        || err.downcast_ref::<Interrupted>().is_some()
}

/// Ctrl-C stopped the work: exit code 130, as a shell reports SIGINT.
#[derive(Debug, thiserror::Error)]
#[error("cancelled by Ctrl-C")]
pub struct Interrupted;

/// A policy's guard stopped a run before it acted (too large a share, too many changes, too few admins): exit
/// code 4, so monitoring tells "halted, look at it" from "failed" and from "done".
#[derive(Debug, thiserror::Error)]
#[error("halted by a guard: {why}")]
pub struct Halted {
    pub why: String,
}

/// Some items of a bulk job failed; they and the summary were printed: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{failed} bulk items failed (see the results above)")]
pub struct BulkFailures {
    pub failed: usize,
}
