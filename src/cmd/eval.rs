//! `steward eval 'EXPR'`: one expression, its value printed as a table, JSON or CSV.

use crate::cli::EvalArgs;
use crate::context::Context;
use crate::error::{Interrupted, ScriptFailed};
use crate::output;
use crate::script::{diagnostic, types};

pub fn run(ctx: &Context, args: &EvalArgs) -> anyhow::Result<()> {
    let mut session = super::session(ctx, &args.args, None);
    match session.eval(&args.expr, Some("eval")) {
        Ok(value) => {
            if !value.is_unit() {
                match types::to_json(&value) {
                    Ok(json) => output::print_value(&json, ctx.output),
                    Err(_) => output::line(&value.to_string()),
                }
            }
            super::after_stop(ctx, "eval")
        }
        Err(err) => {
            // A script stopped midway (Ctrl-C, --timeout, a limit) after acting is worth a line in the log.
            if ctx.dispatcher.run_id().is_some() {
                ctx.runtime.block_on(ctx.dispatcher.script_aborted(&crate::script::types::describe_error(&err)));
            }
            output::note(&diagnostic::render(&err, &args.expr, "eval"));
            if ctx.interrupt.by_ctrl_c() {
                Err(Interrupted.into())
            } else {
                Err(ScriptFailed.into())
            }
        }
    }
}
