//! The bridge from synchronous Rhai to the async world: every admin call blocks on the shared runtime here,
//! and nowhere else.

use super::types::{action_error, to_dynamic, ScriptResult};
use crate::backends::{Action, Op};
use crate::connections::Connections;
use crate::dispatch::{BulkItem, Connection, Dispatcher};
use rhai::Dynamic;
use serde_json::Value;
use std::sync::Arc;

/// What registered functions need from the running steward.
pub struct Host {
    pub runtime: tokio::runtime::Handle,
    pub dispatcher: Arc<Dispatcher>,
    pub connections: Arc<Connections>,
    /// The audit log `audit(filter)` reads.
    pub audit_path: std::path::PathBuf,
}

impl Host {
    /// Sends one action through dispatch and waits for it (Ctrl-C cancels it inside dispatch).
    pub fn perform(&self, conn: &Connection, op: Op, target: Option<String>, params: Value) -> ScriptResult<Dynamic> {
        let action = Action::new(op, target, params);
        match self.runtime.block_on(self.dispatcher.perform(conn, action)) {
            Ok(value) => Ok(to_dynamic(value)),
            Err(e) => Err(action_error(e)),
        }
    }

    /// Sends a bulk action and waits for every item; one result map per item.
    pub fn perform_all(&self, conn: &Connection, op: Op, items: Vec<BulkItem>, params: Value) -> ScriptResult<Dynamic> {
        match self.runtime.block_on(self.dispatcher.perform_all(conn, op, items, params)) {
            Ok(results) => Ok(to_dynamic(serde_json::to_value(results).unwrap_or_default())),
            Err(e) => Err(action_error(e)),
        }
    }
}
