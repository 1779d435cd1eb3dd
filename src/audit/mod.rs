//! The audit log: an append-only, hash-chained SQLite record of every action steward performs.

pub mod chain;
pub mod checkpoint;
pub mod fingerprint;
pub mod keyfile;
pub mod query;
pub mod signing;
pub mod store;
pub mod writer;

pub use chain::Event;

/// A file kept beside the audit log: `<db><suffix>` (`audit.db.checkpoint`, `audit.db.key`, run locks).
pub fn beside(db: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}
pub use store::{AuditError, AuditStore, RunInfo};
pub use writer::{AuditTarget, AuditWriter};
