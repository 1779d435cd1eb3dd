//! `steward profiles list|show|test`: what is configured, and whether its token works.

use crate::backends::{Action, Op};
use crate::cli::ProfilesCommand;
use crate::context::Context;
use crate::error::UsageError;
use crate::output;
use serde_json::{json, Value};

pub fn run(ctx: &Context, cmd: &ProfilesCommand) -> anyhow::Result<()> {
    match cmd {
        ProfilesCommand::List => {
            let rows: Vec<Value> = ctx.connections.names().iter().filter_map(|n| describe(ctx, n)).collect();
            let source = ctx.config.source.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default();
            match rows.is_empty() {
                true => {
                    output::note(&format!("no profiles configured{source}; see README.md (Config), or try --sandbox"))
                }
                false if !source.is_empty() => output::note(&format!("profiles{source}")),
                false => {}
            }
            output::print_value(&Value::Array(rows), ctx.output);
        }
        ProfilesCommand::Names => {
            // Shells expand what completion offers (`compgen -W` runs `$(…)`): only plain names are offered.
            for name in ctx.connections.names().iter().filter(|n| plain_name(n)) {
                output::line(name);
            }
        }
        ProfilesCommand::Show { name } => {
            let row = describe(ctx, name).ok_or_else(|| {
                UsageError::new(format!("no profile named {name:?}; `steward profiles list` shows them"))
            })?;
            output::print_value(&row, ctx.output);
        }
        ProfilesCommand::Test { name, all: false } => {
            let row = test(ctx, name.as_deref())?;
            output::print_value(&row, ctx.output);
        }
        ProfilesCommand::Test { all: true, .. } => {
            let mut failed = 0;
            let rows: Vec<Value> = ctx
                .connections
                .names()
                .iter()
                .map(|n| {
                    test(ctx, Some(n)).unwrap_or_else(|e| {
                        failed += 1;
                        json!({"profile": n, "verdict": format!("FAILED: {e}")})
                    })
                })
                .collect();
            output::print_value(&Value::Array(rows), ctx.output);
            if failed > 0 {
                return Err(crate::error::ScriptFailed.into());
            }
        }
    }
    Ok(())
}

/// Tries a profile's token the way its service allows: whoami where there is one, else a read the token's
/// permission covers (Travis: one page of the activity listing).
fn test(ctx: &Context, name: Option<&str>) -> anyhow::Result<Value> {
    let conn = ctx.connections.connect(name).map_err(|e| UsageError::new(e.to_string()))?;
    let mut row = json!({
        "profile": conn.profile,
        "kind": conn.backend.kind(),
        "url": conn.backend.base_url(),
        "token_source": conn.token.source,
        "token_fingerprint": conn.token.fingerprint,
    });
    if !conn.backend.supported().contains(&Op::Whoami) {
        let read = Action::new(Op::Activity, None, json!({"since": "today", "status": "active"}));
        ctx.runtime.block_on(ctx.dispatcher.perform(&conn, read))?;
        row["verdict"] = json!(format!(
            "ok: the token can read {}'s activity listing (a suspend token cannot be tried without suspending someone)",
            conn.backend.kind()
        ));
        return Ok(row);
    }
    let me = match ctx.runtime.block_on(ctx.dispatcher.perform(&conn, Action::new(Op::Whoami, None, Value::Null))) {
        Ok(me) => me,
        // A token that is nobody's own (a SCIM provisioning token on a server without /Me): tried by the first
        // page of the users it can read.
        Err(e) if e.kind == crate::error::ErrorKind::Unsupported => return first_page(ctx, conn, row, &e.message),
        Err(e) => return Err(e.into()),
    };
    let admin = me.get("admin").and_then(Value::as_bool);
    row["identity"] = me.get("login").cloned().unwrap_or(Value::Null);
    row["admin"] = json!(admin);
    row["verdict"] = json!(match admin {
        Some(true) => "ok: the token is a site administrator's",
        Some(false) => "the token works but is NOT an administrator's: admin operations will be refused",
        None => "ok: the token works",
    });
    Ok(row)
}

/// A token with no identity of its own, tried by reading the first page of users: the verdict says it works
/// and why no identity or rights are shown.
fn first_page(
    ctx: &Context,
    conn: std::sync::Arc<crate::dispatch::Connection>,
    mut row: Value,
    why: &str,
) -> anyhow::Result<Value> {
    let hold = crate::http::Hold::Walked;
    let mut pages = ctx
        .dispatcher
        .stream_users(ctx.runtime.handle(), conn.clone(), json!({}), hold)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(Err(e)) = ctx.runtime.block_on(pages.recv()) {
        return Err(e.into());
    }
    row["identity"] = Value::Null;
    row["verdict"] = json!(format!(
        "ok: the token can read {}'s users; it is no person's ({why}), so steward cannot tell its rights",
        conn.profile
    ));
    Ok(row)
}

fn describe(ctx: &Context, name: &str) -> Option<Value> {
    let e = ctx.connections.entry(name)?;
    let p = &e.profile;
    let (rate_limit, rate_limit_from) = crate::backends::rate_limit(p);
    Some(json!({
        "profile": name,
        "kind": p.kind,
        "url": p.url,
        "token_source": if e.preset_token.is_some() { "sandbox".to_string() } else { tokens(p) },
        "default": ctx.connections.default_name() == Some(name),
        "concurrency": p.concurrency.unwrap_or(4),
        "rate_limit": rate_limit,
        "rate_limit_from": rate_limit_from,
        "timeout": p.timeout.unwrap_or(30),
        "protected": p.protected,
        // The kind's own keys (role names, a group, names of environment variables: never a secret itself).
        "settings": serde_json::to_value(&p.settings).unwrap_or(Value::Null),
    }))
}

/// Where each of a profile's tokens comes from, and whether that environment variable is set right now.
fn tokens(p: &crate::config::Profile) -> String {
    let state = |var: &str| match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => "set",
        _ => "NOT SET",
    };
    let mut out = vec![match &p.token_env {
        Some(var) => format!("env:{var} ({})", state(var)),
        None => p.token_source(),
    }];
    for (purpose, _, var) in crate::connections::token_vars(p) {
        out.push(format!("{purpose}: env:{var} ({})", state(var)));
    }
    out.join(", ")
}

/// A profile name a shell takes as it is: letters, digits, `-`, `_`, `.`.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}
