//! `steward eval 'EXPR'`: one expression, its value printed as a table, JSON or CSV.

use crate::cli::EvalArgs;
use crate::context::Context;
use crate::error::{Interrupted, ScriptFailed};
use crate::output;
use crate::script::{diagnostic, types};

pub fn run(ctx: &Context, args: &EvalArgs) -> anyhow::Result<()> {
    let mut session = super::session(ctx, &args.args, None);
    match session.eval(&args.expr, Some("eval")) {
        Ok(value) if value.is_unit() => Ok(()),
        Ok(value) => {
            match types::to_json(&value) {
                Ok(json) => output::print_value(&json, ctx.output),
                Err(_) => output::line(&value.to_string()),
            }
            Ok(())
        }
        Err(err) => {
            output::note(&diagnostic::render(&err, &args.expr, "eval"));
            if ctx.interrupt.is_raised() {
                Err(Interrupted.into())
            } else {
                Err(ScriptFailed.into())
            }
        }
    }
}
