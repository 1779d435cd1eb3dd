//! One file per subcommand. Each takes the `Context` and returns `anyhow::Result`; `run()` picks the exit code.

pub mod audit;
pub mod completions;
pub mod eval;
pub mod profiles;
pub mod run;
pub mod runs;
pub mod sandbox;
pub mod shell;
pub mod undo;

use crate::context::Context;
use crate::script::bridge::Host;
use crate::script::watchdog::Watchdog;
use crate::script::{engine, Session};
use rhai::{Dynamic, Map};
use std::path::Path;
use std::rc::Rc;

/// A script session wired to this run's dispatcher and profiles, with `ARGS` set from `--arg` pairs.
pub fn session(ctx: &Context, args: &[(String, String)], script_dir: Option<&Path>) -> Session {
    let host = Rc::new(Host {
        runtime: ctx.runtime.handle().clone(),
        dispatcher: ctx.dispatcher.clone(),
        connections: ctx.connections.clone(),
        audit_path: ctx.audit_path.clone(),
    });
    let watchdog = Rc::new(Watchdog::new(ctx.interrupt.clone(), ctx.script_budgets.clone()));
    let engine = engine::build(host, watchdog.clone(), script_dir);
    let mut map = Map::new();
    for (k, v) in args {
        map.insert(k.as_str().into(), Dynamic::from(v.clone()));
    }
    Session::new(engine, watchdog, map)
}
