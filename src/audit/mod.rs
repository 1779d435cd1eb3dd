//! The audit log: an append-only, hash-chained SQLite record of every action steward performs.

pub mod chain;
pub mod checkpoint;
pub mod fingerprint;
pub mod query;
pub mod store;
pub mod writer;

pub use chain::Event;
pub use store::{AuditError, AuditStore, RunInfo};
pub use writer::{AuditTarget, AuditWriter};
