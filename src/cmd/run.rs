//! `steward run FILE.rhai`: runs a script; errors print as `file:line:col` with a caret.

use crate::audit::query::ScriptRun;
use crate::cli::RunArgs;
use crate::context::Context;
use crate::error::{Interrupted, ScriptFailed, ScriptUsage, UsageError};
use crate::output;
use crate::script::diagnostic;
use sha2::{Digest, Sha256};

/// `steward run [SCRIPT] --help`: the script's declared --args (read from its source, never run), or the
/// command's own help.
pub fn help(args: &RunArgs) -> anyhow::Result<()> {
    let Some(file) = &args.file else {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        cli.build();
        if let Some(run) = cli.find_subcommand_mut("run") {
            // A closed pipe (`| head`) is not an error here.
            let _ = run.clone().bin_name("steward run").print_long_help();
        }
        return Ok(());
    };
    let (name, source) = match stock_named(file)? {
        Some((stock, source)) => (stock.to_string(), source.to_string()),
        None => (
            file.display().to_string(),
            std::fs::read_to_string(file)
                .map_err(|e| UsageError::new(format!("cannot read the script {}: {e}", file.display())))?,
        ),
    };
    output::line(&crate::script::arguments::usage(&name, &source));
    Ok(())
}

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<()> {
    let file = args.file.clone().unwrap_or_default();
    if let Some(run) = ctx.dispatcher.resumed_from() {
        output::note(&format!(
            "resuming run {run}: what it finished is skipped, what it left in flight is checked first"
        ));
    }
    // `-` reads the script from standard input (a heredoc, a pipe); its imports are looked up in the current
    // directory.
    let from_stdin = file.as_os_str() == "-";
    let stock = stock_named(&file)?;
    let source = match (from_stdin, stock) {
        (true, _) => std::io::read_to_string(std::io::stdin())
            .map_err(|e| UsageError::new(format!("cannot read the script from standard input: {e}")))?,
        (false, Some((_, source))) => source.to_string(),
        (false, None) => std::fs::read_to_string(&file)
            .map_err(|e| UsageError::new(format!("cannot read the script {}: {e}", file.display())))?,
    };
    let sha256 = hex::encode(Sha256::digest(source.as_bytes()));
    if let Some(run) = ctx.dispatcher.resumed_from() {
        same_job(ctx, run, &sha256, &args.args)?;
    }
    let name = match (from_stdin, stock) {
        (true, _) => "<stdin>".to_string(),
        (false, Some((stock, _))) => format!("stock:{stock}"),
        (false, None) => file.display().to_string(),
    };
    ctx.dispatcher.describe_script(&name, &sha256);
    let here = std::path::PathBuf::from(".");
    // A stock script imports only the stdlib; a file may import its neighbours.
    let dir = match (from_stdin, stock) {
        (true, _) => Some(here.as_path()),
        (false, Some(_)) => None,
        (false, None) => file.parent().filter(|d| !d.as_os_str().is_empty()),
    };
    let mut session = super::session(ctx, &args.args, dir);
    match session.eval(&source, Some(&name)) {
        Ok(_) if args.resume.is_some() && !ctx.interrupt.is_raised() => {
            let connect = |profile: &str| ctx.connections.connect(Some(profile)).ok();
            ctx.runtime.block_on(ctx.dispatcher.settle_the_rest(&connect))?;
            super::after_stop(ctx, &name)
        }
        Ok(_) => super::after_stop(ctx, &name),
        Err(err) => {
            // A script stopped midway (Ctrl-C, --timeout, a limit) after acting is worth a line in the log.
            if ctx.dispatcher.run_id().is_some() {
                ctx.runtime.block_on(ctx.dispatcher.script_aborted(&crate::script::types::describe_error(&err)));
            }
            // A usage error is about the command line, not a line of the script: no caret into the source.
            let usage = crate::script::types::thrown_kind(&err).as_deref() == Some("usage");
            match usage {
                true => output::note(&format!(
                    "{name}: {}",
                    crate::script::types::describe_error(crate::script::types::innermost(&err))
                )),
                false => output::note(&diagnostic::render(&err, &source, &name)),
            }
            if ctx.interrupt.by_ctrl_c() {
                Err(Interrupted.into())
            } else if usage {
                Err(ScriptUsage.into())
            } else {
                Err(ScriptFailed.into())
            }
        }
    }
}

/// The stock script `file` names, when it names one and no file: a bare name (`bulk_suspend`, or with `.rhai`)
/// that is not a file here. A bare name that is neither is refused with the stock script meant.
fn stock_named(file: &std::path::Path) -> anyhow::Result<Option<(&'static str, &'static str)>> {
    let text = file.to_string_lossy();
    let bare = file.components().count() == 1 && !text.contains(['/', '\\']);
    if !bare || file.exists() || text == "-" {
        return Ok(None);
    }
    match crate::script::stock::find(&text) {
        Some(found) => Ok(Some(found)),
        None => {
            let names = crate::script::stock::STOCK.iter().map(|(n, _)| *n);
            let meant = crate::suggest::closest(text.strip_suffix(".rhai").unwrap_or(&text), names)
                .map(|n| format!("; did you mean {n}?"))
                .unwrap_or_default();
            Err(UsageError::new(format!(
                "no script {text}: not a file here, nor a stock script{meant} (`steward scripts` lists them)"
            ))
            .into())
        }
    }
}

/// A resume continues the same job: the same script (by its SHA-256, wherever it lies now) with the same
/// arguments on the same default profile. Anything else would "finish" a job with other work (an unsuspend script resuming a suspension).
fn same_job(ctx: &Context, run: i64, sha256: &str, args: &[(String, String)]) -> anyhow::Result<()> {
    let store = crate::audit::AuditStore::open_verified_target(&ctx.audit_target)?;
    let Some(ScriptRun { path, sha256: recorded_sha, command, default_profile }) = store.run_script(run)? else {
        // A job stopped before it recorded anything did nothing: it starts from the beginning.
        output::note(&format!("run {run} is not in the audit log (it stopped before recording anything): starting the job from the beginning"));
        return Ok(());
    };
    let Some(recorded_sha) = recorded_sha else {
        return Err(UsageError::new(format!(
            "run {run} ran no script (it was an eval or the REPL); only a script run can be resumed"
        ))
        .into());
    };
    if recorded_sha != sha256 {
        return Err(UsageError::new(format!(
            "run {run} ran {} (sha256 {}…), and this script is different (sha256 {}…): a resume must run the same \
             script; to do other work, start a new run",
            path.unwrap_or_default(),
            &recorded_sha[..12.min(recorded_sha.len())],
            &sha256[..12]
        ))
        .into());
    }
    // The same script on another profile is other work: `connect()` would act on other accounts.
    let now = ctx.connections.default_name();
    if let Some(recorded) = default_profile.filter(|p| Some(p.as_str()) != now) {
        return Err(UsageError::new(format!(
            "run {run} acted on profile {recorded} by default, and this one would act on {}: a resume must use the \
             same profile (check --profile, STEWARD_PROFILE and default_profile in the config)",
            now.unwrap_or("none")
        ))
        .into());
    }
    let recorded = recorded_args(&command);
    let given: Vec<String> = args.iter().map(|(k, v)| recorded_form(k, v)).collect();
    let mut differs: Vec<String> = given.iter().filter(|a| !recorded.contains(a)).cloned().collect();
    differs.extend(recorded.iter().filter(|a| !given.contains(a)).map(|a| format!("{a} (missing now)")));
    if !differs.is_empty() {
        return Err(UsageError::new(format!(
            "run {run} had other arguments; a resume must be given the same ones (differs: {})",
            differs.join(", ")
        ))
        .into());
    }
    // The files the job read (CSV inputs, imported modules) must be the same files.
    crate::inputs::expect(store.inputs_of_job(run)?).map_err(|e| UsageError::new(format!("run {run}: {e}")))?;
    Ok(())
}

/// `key=value` as the audit log's command line keeps it (a secret-looking key's value left out).
fn recorded_form(key: &str, value: &str) -> String {
    match crate::redact::looks_secret(key) {
        true => format!("{key}=[REDACTED]"),
        false => crate::redact::redact(&format!("{key}={value}")),
    }
}

/// The `--arg` pairs of a recorded command line.
fn recorded_args(command: &str) -> Vec<String> {
    let words = crate::invocation::shell_words(command);
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if let Some(pair) = w.strip_prefix("--arg=") {
            out.push(pair.to_string());
        } else if w == "--arg" {
            if let Some(pair) = words.get(i + 1) {
                out.push(pair.clone());
            }
        }
    }
    out
}
