//! `steward run FILE.rhai`: runs a script; errors print as `file:line:col` with a caret.

use crate::cli::RunArgs;
use crate::context::Context;
use crate::error::{Interrupted, ScriptFailed, UsageError};
use crate::output;
use crate::script::diagnostic;
use sha2::{Digest, Sha256};

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<()> {
    if let Some(run) = args.resume {
        output::note(&format!(
            "resuming run {run}: what it finished is skipped, what it left in flight is checked first"
        ));
    }
    let source = std::fs::read_to_string(&args.file)
        .map_err(|e| UsageError::new(format!("cannot read the script {}: {e}", args.file.display())))?;
    ctx.dispatcher.describe_script(&args.file.display().to_string(), &hex::encode(Sha256::digest(source.as_bytes())));
    let dir = args.file.parent().filter(|d| !d.as_os_str().is_empty());
    let mut session = super::session(ctx, &args.args, dir);
    let name = args.file.display().to_string();
    match session.eval(&source, Some(&name)) {
        Ok(_) => Ok(()),
        Err(err) => {
            // A script stopped midway (Ctrl-C, --timeout, a limit) after acting is worth a line in the log.
            if ctx.dispatcher.run_id().is_some() {
                ctx.runtime.block_on(ctx.dispatcher.script_aborted(&crate::script::types::describe_error(&err)));
            }
            output::note(&diagnostic::render(&err, &source, &name));
            if ctx.interrupt.by_ctrl_c() {
                Err(Interrupted.into())
            } else {
                Err(ScriptFailed.into())
            }
        }
    }
}
