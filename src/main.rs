//! The steward binary: parse, run, pick the exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = steward::cli::Cli::parse();
    match steward::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = steward::error::exit_code(&err);
            // Script errors and failed bulk items were reported where they happened.
            if code == 2
                || (code == 1
                    && err.downcast_ref::<steward::error::ScriptFailed>().is_none()
                    && err.downcast_ref::<steward::cmd::audit::AuditBroken>().is_none())
            {
                steward::output::note(&format!("error: {err:#}"));
            }
            ExitCode::from(code)
        }
    }
}
