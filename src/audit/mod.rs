//! The audit log: an append-only, hash-chained SQLite record of every action steward performs.

pub mod chain;
pub mod query;
pub mod store;

pub use chain::Event;
pub use store::{AuditError, AuditStore, RunInfo};
