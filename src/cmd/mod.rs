//! One file per subcommand. Each takes the `Context` and returns `anyhow::Result`; `run()` picks the exit code.

pub mod audit;
pub mod completions;
pub mod eval;
pub mod policy;
pub mod profiles;
pub mod run;
pub mod runs;
pub mod sandbox;
pub mod schedule;
pub mod scripts;
pub mod shell;
pub mod undo;

use crate::context::Context;
use crate::script::bridge::Host;
use crate::script::watchdog::Watchdog;
use crate::script::{engine, Session};
use rhai::{Dynamic, Map};
use std::path::Path;
use std::rc::Rc;

/// How a script that ran to its end still ends when the run was stopped (a bulk job handed it its results
/// within a grace, and it wrote them down): Ctrl-C is exit 130, a budget (`--timeout`) a script failure.
pub fn after_stop(ctx: &Context, name: &str) -> anyhow::Result<()> {
    if ctx.interrupt.by_ctrl_c() {
        return Err(crate::error::Interrupted.into());
    }
    if ctx.interrupt.is_raised() {
        crate::output::note(&format!("{name}: {}", ctx.interrupt.reason()));
        return Err(crate::error::ScriptFailed.into());
    }
    Ok(())
}

/// A script session wired to this run's dispatcher and profiles, with `ARGS` set from `--arg` pairs.
pub fn session(ctx: &Context, args: &[(String, String)], script_dir: Option<&Path>) -> Session {
    let host = Rc::new(Host {
        runtime: ctx.runtime.handle().clone(),
        dispatcher: ctx.dispatcher.clone(),
        connections: ctx.connections.clone(),
        audit_target: ctx.audit_target.clone(),
    });
    let watchdog = Rc::new(Watchdog::new(ctx.interrupt.clone(), ctx.script_budgets.clone()));
    let engine = engine::build(host, watchdog.clone(), script_dir);
    let mut map = Map::new();
    for (k, v) in args {
        map.insert(k.as_str().into(), Dynamic::from(v.clone()));
    }
    Session::new(engine, watchdog, map)
}
