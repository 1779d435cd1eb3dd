//! The bridge from synchronous Rhai to the async world: every admin call blocks on the shared runtime here,
//! and nowhere else.

use super::types::{action_error, to_dynamic, ScriptResult};
use crate::backends::{Action, Op};
use crate::context::Connections;
use crate::dispatch::{Connection, Dispatcher};
use rhai::Dynamic;
use serde_json::Value;
use std::sync::Arc;

/// What registered functions need from the running steward.
pub struct Host {
    pub runtime: tokio::runtime::Handle,
    pub dispatcher: Arc<Dispatcher>,
    pub connections: Arc<Connections>,
}

impl Host {
    /// Sends one action through dispatch and waits for it (Ctrl-C cancels it inside dispatch).
    pub fn perform(
        &self,
        conn: &Connection,
        op: Op,
        target: Option<String>,
        params: Value,
    ) -> ScriptResult<Dynamic> {
        let action = Action::new(op, target, params);
        match self.runtime.block_on(self.dispatcher.perform(conn, action)) {
            Ok(value) => Ok(to_dynamic(value)),
            Err(e) => Err(action_error(e)),
        }
    }
}
