//! The audit log: an append-only, hash-chained record of every action steward performs, in a SQLite file for one
//! admin or a PostgreSQL database for a team.

pub mod chain;
pub mod checkpoint;
pub mod claim;
pub mod db;
pub mod fingerprint;
pub mod keyfile;
mod known;
pub mod liveness;
pub mod machine;
pub mod push;
pub mod query;
pub mod runref;
pub mod seal_check;
pub mod signing;
pub mod store;
pub mod team;
pub mod vocab;
pub mod whole;
pub mod writer;

pub use chain::Event;

/// A file kept beside the audit log: `<db><suffix>` (`audit.db.checkpoint`, `audit.db.key`, run locks).
pub fn beside(db: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

pub use store::{AuditError, AuditStore, Busy, RunInfo};
pub use writer::{AuditTarget, AuditWriter};
