//! The audit log: an append-only, hash-chained record of every action steward performs, in a SQLite file for one
//! admin or a PostgreSQL database for a team.

pub mod chain;
pub mod checkpoint;
pub mod db;
pub mod fingerprint;
pub mod keyfile;
pub mod liveness;
pub mod push;
pub mod query;
pub mod signing;
pub mod store;
pub mod team;
pub mod vocab;
pub mod writer;

pub use chain::Event;

/// A file kept beside the audit log: `<db><suffix>` (`audit.db.checkpoint`, `audit.db.key`, run locks).
pub fn beside(db: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}
/// The file a path names, symlinks followed (SQLite keeps `-wal` beside the real file, not beside a link);
/// for a log not made yet, its directory's real path and its name.
pub fn real_path(db: &std::path::Path) -> std::path::PathBuf {
    if let Ok(real) = std::fs::canonicalize(db) {
        return real;
    }
    match (
        db.parent().and_then(|d| std::fs::canonicalize(if d.as_os_str().is_empty() { ".".as_ref() } else { d }).ok()),
        db.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => db.to_path_buf(),
    }
}

pub use store::{AuditError, AuditStore, Busy, RunInfo};
pub use writer::{AuditTarget, AuditWriter};
