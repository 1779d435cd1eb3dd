//! steward: a scriptable admin shell for the user accounts of enterprise services.
//!
//! Crate map, top to bottom: each layer uses only the ones below it (no module imports one above it, and there
//! are no cycles).
//! - `cmd` (one file per subcommand), `repl` (the shell), `context` (one run put together: config, the log,
//!   connections, the dispatcher, the engine), `cli` (clap types)
//! - `script`: the Rhai engine, its limits, the registered functions and the sync→async bridge
//! - `output`: tables, JSON, CSV, evidence and plan pages
//! - `connections`: profiles connected on first use; `prompt`: the terminal's answers to dispatch's questions
//! - `policy`: lifecycle rules read from TOML and planned (pure; `cmd::policy` gathers the facts and acts)
//! - `dispatch`: the one path every action takes: resolve the account a change reaches, decide (guard, state,
//!   confirmation, dry run, budget), then a durable intent, the request, the outcome (`recorder` talks to `audit`)
//! - `backends`: one module per service, turning actions into requests
//! - `config`: the config file, profiles and where their secrets come from
//! - `turns`: the team's shared rate budget, one schedule per service instance in the team database (an `http` rate
//!   budget's turns kept by `audit::team`'s database)
//! - `http`: auth, retries, rate budget, pagination — no particular service
//! - `notify`: webhooks and e-mail, tried again and reported, never failing the work they tell about
//! - `audit`: the append-only, hash-chained log (SQLite for one admin, PostgreSQL for a team); `invocation`: who
//!   runs what, as the log records it
//! - plumbing every layer may use: `redact` (the secret type and redaction of everything shown or kept), `error`,
//!   `dates`, `files`, `inputs` (files a run reads, pinned by digest), `interrupt`, `secret_cmd`, `memory`,
//!   `suggest`

// No function over about 80 lines (clippy.toml).
#![warn(clippy::too_many_lines)]

pub mod audit;
pub mod backends;
pub mod cli;
pub(crate) mod cmd;
pub mod config;
pub(crate) mod connections;
pub(crate) mod context;
pub(crate) mod dates;
pub(crate) mod dispatch;
pub mod error;
pub(crate) mod files;
pub mod http;
pub(crate) mod inputs;
pub(crate) mod interrupt;
pub(crate) mod invocation;
#[cfg(test)]
mod layers;
pub(crate) mod memory;
pub(crate) mod notify;
pub mod output;
pub mod policy;
pub(crate) mod prompt;
pub mod redact;
pub(crate) mod repl;
pub mod script;
pub(crate) mod secret_cmd;
pub(crate) mod suggest;
pub mod turns;

use cli::{Cli, Command};
use context::Context;
use invocation::shell_quote;
use std::sync::Arc;

/// No core dumps of this process: one would hold every token it loaded, in a file anyone with the disk can read.
pub fn harden_process() {
    #[cfg(unix)]
    {
        let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: setrlimit reads the struct it is given and changes only this process's limit.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    }
}

/// Runs one invocation; the error (if any) decides the exit code in `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Before anything can print: every service's token shapes are hidden from all output.
    backends::register_token_shapes();
    init_logging(cli.global.verbose);
    let command = cli.command.unwrap_or(Command::Shell);
    // Commands that need no config, profiles or audit log.
    match &command {
        Command::Completions { shell } => return cmd::completions::run(*shell),
        Command::Run(args) if args.help => return cmd::run::help(args),
        Command::Scripts { name } => {
            use std::io::IsTerminal;
            let stdout_is_tty = std::io::stdout().is_terminal();
            let format =
                cli.global.format.unwrap_or(if stdout_is_tty { output::Format::Table } else { output::Format::Json });
            return cmd::scripts::run(name.as_deref(), output::OutputSettings { format, stdout_is_tty });
        }
        Command::Sandbox(args) => {
            if args.help {
                print!("{}", cli::SandboxArgs::help_text());
                return Ok(());
            }
            refuse_global_options("sandbox", &cli.global)?;
            return cmd::sandbox::run(args);
        }
        _ => {}
    }
    let resume = match &command {
        Command::Run(args) => args.resume.clone(),
        _ => None,
    };
    // For `audit`, --profile filters the log, which may hold profiles today's config no longer has.
    let mut global = cli.global;
    let audit_profile = match &command {
        Command::Audit(_) => global.profile.take(),
        _ => None,
    };
    let prompt = Arc::new(prompt::TerminalPrompt::default());
    let ctx = Context::new(&global, invocation::run_info(), prompt.clone(), resume)?;
    prompt.stops(ctx.interrupt.clone());
    let result = match &command {
        Command::Shell => cmd::shell::run(&ctx),
        Command::Run(args) => cmd::run::run(&ctx, args),
        Command::Eval(args) => cmd::eval::run(&ctx, args),
        Command::Audit(sub) => cmd::audit::run(&ctx, audit_profile.as_deref(), sub),
        Command::Profiles(sub) => cmd::profiles::run(&ctx, sub),
        Command::Runs { sub, limit, all } => cmd::runs::run(&ctx, sub, *limit, *all),
        Command::Undo { run } => cmd::undo::run(&ctx, run),
        Command::Policy(sub) => cmd::policy::run(&ctx, sub),
        Command::Schedule(sub) => cmd::schedule::run(&ctx, sub),
        Command::Completions { .. } | Command::Sandbox(_) | Command::Scripts { .. } => Ok(()),
    };
    // Failed bulk items were reported as they happened; they still make the exit status 3.
    let result = match (result, ctx.dispatcher.bulk_failures()) {
        (Ok(()), 0) => Ok(()),
        (Ok(()), failed) => Err(error::BulkFailures { failed }.into()),
        (err, _) => err,
    };
    let code = match &result {
        Ok(()) => 0,
        Err(e) => i32::from(exit_code(e)),
    };
    if let (Some(run), true) = (ctx.dispatcher.run_id(), ctx.interrupt.is_raised() || ctx.dispatcher.audit_failed()) {
        output::note(&crate::redact::redact_loaded(&stopped_hint(run, &command, ctx.dispatcher.audit_failed())));
    }
    ctx.dispatcher.finish(code);
    ctx.keep_sandbox_state();
    result
}

/// Exit code for an error returned by `run()`, chosen by its type, never by its text (here, at the edge, where
/// every layer's error types are known).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<error::UsageError>().is_some()
        || err.downcast_ref::<error::ScriptUsage>().is_some()
        || err.downcast_ref::<crate::config::ConfigError>().is_some()
    {
        2
    } else if err.downcast_ref::<error::BulkFailures>().is_some() {
        3
    } else if err.downcast_ref::<error::Interrupted>().is_some() {
        130
    } else if err.downcast_ref::<error::Halted>().is_some() {
        4
    } else {
        1
    }
}

/// Global options that would do nothing for `command` are refused, naming them, rather than ignored.
fn refuse_global_options(command: &str, global: &cli::GlobalArgs) -> anyhow::Result<()> {
    let given: Vec<&str> = [
        ("--sandbox", global.sandbox),
        ("--dry-run", global.dry_run),
        ("--yes", global.yes),
        ("--timeout", global.timeout.is_some()),
        ("--format", global.format.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    match given.is_empty() {
        true => Ok(()),
        false => Err(error::UsageError::new(format!(
            "{} do{} not apply to `steward {command}` (it serves the emulated services; see `steward {command} --help`)",
            given.join(", "),
            if given.len() == 1 { "es" } else { "" }
        ))
        .into()),
    }
}

/// What to do about a run that was stopped (Ctrl-C, --timeout, its audit log out of reach) before its end,
/// naming its id.
fn stopped_hint(run: i64, command: &Command, log_lost: bool) -> String {
    let when = match log_lost {
        true => " (its audit log could not record); once the log is reachable again",
        false => ";",
    };
    match command {
        Command::Run(args) => {
            let file = args.file.as_deref().map(|f| f.display().to_string()).unwrap_or_default();
            let mut line = vec!["steward".to_string(), "run".into(), shell_quote(&file)];
            for (k, v) in &args.args {
                // A secret is never printed: the person types it again.
                let v = if crate::redact::looks_secret(k) { "<the same value>" } else { v.as_str() };
                line.extend(["--arg".into(), shell_quote(&format!("{k}={v}"))]);
            }
            format!(
                "run {run} stopped before its end{when} finish it with `{} --resume {run}`, or reverse what it did \
                 with `steward undo {run}`",
                line.join(" ")
            )
        }
        // An undo is finished by undoing the same job again: what it already put back reads as already so.
        Command::Undo { run: job } => {
            format!("this undo (run {run}) stopped before its end{when} `steward undo {job}` again puts back the rest")
        }
        _ => format!("run {run} stopped before its end{when} `steward undo {run}` reverses what it did"),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("steward={level},steward_sandbox={level}")));
    // Colour only for a person at a terminal who has not asked for none (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_env_filter(filter)
        .with_writer(|| crate::redact::Redacting(std::io::stderr()))
        .with_target(false)
        .try_init();
}
