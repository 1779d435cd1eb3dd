//! The interactive shell: a rustyline editor over one Rhai session; `:commands` are matched before Rhai sees
//! the line; results print as tables; Ctrl-C cancels the line or the running call, Ctrl-D leaves.

mod helper;
pub mod input;

use crate::context::Context;
use crate::http::redact::redact;
use crate::output;
use crate::script::{self, diagnostic, docs, Session};
use helper::{StewardHelper, COMMANDS};
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
    loop {
        match editor.readline("steward> ") {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => {
                // History must never hold a token someone pasted; it is saved line by line, so a killed
                // session (a closed terminal, kill -9) keeps what was typed.
                let _ = editor.add_history_entry(redact(&line));
                if let Some(h) = &history {
                    save_history(&mut editor, h);
                }
                let trimmed = line.trim();
                if trimmed.starts_with(':') {
                    if !command(ctx, &session, trimmed) {
                        break;
                    }
                    continue;
                }
                ctx.interrupt.reset();
                match session.eval(&line, None) {
                    Ok(value) => show(ctx, value),
                    Err(err) => output::note(&diagnostic::render(&err, &line, "input")),
                }
                ctx.interrupt.reset();
                *variables.borrow_mut() = session.variables();
                *handles.borrow_mut() = session.handles();
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Appends the newest line to the history file (rustyline keeps it 0600), making its directory on first use.
fn save_history(editor: &mut Editor<StewardHelper, DefaultHistory>, path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = editor.append_history(path);
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
        (":vars", _) => output::line(&session.variables().join(", ")),
        (other, _) => output::note(&format!("unknown command {other}; :help lists the commands")),
    }
    true
}
