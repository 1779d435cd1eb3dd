//! The steward binary: parse, run, pick the exit code.

use clap::Parser;
use std::process::ExitCode;

/// The stack steward runs on. Rhai walks nested script data recursively (size checks, printing, dropping), so
/// an array nested 10,000 deep overflowed the main thread's 8 MB and aborted the process with no run end. This
/// is address space reserved, not memory used; what a script can nest within its CPU budget fits in it.
const STACK_BYTES: usize = 1 << 30;

fn main() -> ExitCode {
    steward::harden_process();
    let cli = steward::cli::Cli::parse();
    let on_big_stack =
        std::thread::Builder::new().name("steward".into()).stack_size(STACK_BYTES).spawn(move || run(cli));
    match on_big_stack {
        Ok(thread) => thread.join().unwrap_or_else(|_| ExitCode::from(101)),
        Err(e) => {
            eprintln!("steward: cannot reserve its stack ({e})");
            ExitCode::from(2)
        }
    }
}

fn run(cli: steward::cli::Cli) -> ExitCode {
    match steward::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = steward::exit_code(&err);
            // Script errors, verification reports and failed bulk items were reported where they happened.
            if !steward::error::already_reported(&err) {
                steward::output::note(&format!("error: {err:#}"));
            }
            ExitCode::from(code)
        }
    }
}
