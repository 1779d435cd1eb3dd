//! The interactive shell: a rustyline editor over one Rhai session; `:commands` are matched before Rhai sees
//! the line; results print as tables; Ctrl-C cancels the line or the running call, Ctrl-D leaves.

mod helper;
pub mod input;

use crate::context::Context;
use crate::output;
use crate::redact::redact;
use crate::script::{self, diagnostic, docs, Session};
use helper::{StewardHelper, COMMANDS};
use input::is_incomplete;
use rhai::Dynamic;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

fn history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("steward").join("history"))
}

pub fn run(ctx: &Context, mut session: Session) -> anyhow::Result<()> {
    let config = Config::builder().auto_add_history(false).max_history_size(10_000)?.build();
    let mut editor: Editor<StewardHelper, DefaultHistory> = Editor::with_config(config)?;
    let variables = Rc::new(RefCell::new(Vec::new()));
    let handles = Rc::new(RefCell::new(std::collections::HashMap::new()));
    let profile_kinds = ctx
        .connections
        .names()
        .into_iter()
        .filter_map(|n| ctx.connections.entry(&n).map(|e| (n, e.profile.kind.clone())))
        .collect();
    editor.set_helper(Some(StewardHelper {
        profiles: ctx.connections.names(),
        profile_kinds,
        default_profile: ctx.connections.default_name().map(str::to_string),
        variables: variables.clone(),
        handles: handles.clone(),
    }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    banner(ctx);
    // A statement still open (a block, a string, a trailing `else` or operator) continues on the next line,
    // under a prompt that says so.
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() { "steward> " } else { "     ...> " };
        match editor.readline(prompt) {
            Ok(line) if line.trim().is_empty() && pending.is_empty() => continue,
            Ok(line) => {
                let trimmed = line.trim();
                if pending.is_empty() && trimmed.starts_with(':') {
                    remember(&mut editor, history.as_deref(), &line);
                    if !command(ctx, &session, trimmed) {
                        break;
                    }
                    continue;
                }
                pending.push_str(&line);
                pending.push('\n');
                if is_incomplete(&pending) {
                    continue;
                }
                let source = std::mem::take(&mut pending);
                remember(&mut editor, history.as_deref(), source.trim_end());
                ctx.interrupt.reset();
                match session.eval(&source, None) {
                    Ok(value) => show(ctx, value),
                    Err(err) => output::note(&diagnostic::render(&err, &source, "input")),
                }
                ctx.interrupt.reset();
                *variables.borrow_mut() = session.variables();
                *handles.borrow_mut() = session.handles();
            }
            // Ctrl-C drops what was being typed, continuation lines included.
            Err(ReadlineError::Interrupted) => pending.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Adds an entry to the history and appends it to the history file at once (rustyline keeps the file 0600), so
/// a killed session (a closed terminal, kill -9) keeps what was typed. History never holds a pasted token.
fn remember(editor: &mut Editor<StewardHelper, DefaultHistory>, path: Option<&std::path::Path>, entry: &str) {
    let _ = editor.add_history_entry(redact(entry));
    if let Some(path) = path {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.append_history(path);
    }
}

fn banner(ctx: &Context) {
    let names = ctx.connections.names();
    let profiles = if names.is_empty() {
        "no profiles configured (try --sandbox)".to_string()
    } else {
        format!("profiles: {}", names.join(", "))
    };
    output::note(&format!("steward {} — {profiles}. :help for help, Ctrl-D to leave.", env!("CARGO_PKG_VERSION")));
    if ctx.sandbox.is_some() {
        output::note("sandbox: try  connect(\"github\").list_users()");
    }
}

fn show(ctx: &Context, value: Dynamic) {
    if value.is_unit() {
        return;
    }
    match script::types::to_json(&value) {
        Ok(json) => output::print_value(&json, ctx.output),
        Err(_) => output::line(&value.to_string()),
    }
}

/// Runs a `:command`; false means leave.
fn command(ctx: &Context, session: &Session, line: &str) -> bool {
    let mut words = line.split_whitespace();
    match (words.next().unwrap_or(""), words.next()) {
        (":quit" | ":exit" | ":q", _) => return false,
        (":help", None) => {
            output::line("Commands:");
            for (c, what) in COMMANDS {
                output::line(&format!("  {c:<10} {what}"));
            }
            output::line(
                "Functions (`:help NAME` for details; methods are called on a handle, h = connect(\"profile\")):",
            );
            for d in docs::all() {
                output::line(&format!("  {:<28} {}", d.name, d.summary));
            }
        }
        (":help", Some(name)) => match docs::find(name.trim_start_matches("h.")) {
            Some(d) => output::line(&docs::render(d)),
            None => output::note(&format!("no function named {name}; :help lists them all")),
        },
        (":profiles", _) => {
            let rows: Vec<serde_json::Value> = ctx
                .connections
                .names()
                .iter()
                .filter_map(|n| ctx.connections.entry(n).map(|e| (n, e)))
                .map(|(n, e)| serde_json::json!({"profile": n, "kind": e.profile.kind, "url": e.profile.url, "default": ctx.connections.default_name() == Some(n.as_str())}))
                .collect();
            output::print_value(&serde_json::Value::Array(rows), ctx.output);
        }
        (":vars", _) => {
            for line in session.variable_summaries() {
                output::line(&format!("  {line}"));
            }
        }
        (other, _) => output::note(&format!("unknown command {other}; :help lists the commands")),
    }
    true
}
