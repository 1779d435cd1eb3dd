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
            if rows.is_empty() {
                output::note(&format!(
                    "no profiles configured{}; see README.md (Config), or try --sandbox",
                    ctx.config.source.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
                ));
            }
            output::print_value(&Value::Array(rows), ctx.output);
        }
        ProfilesCommand::Show { name } => {
            let row = describe(ctx, name).ok_or_else(|| {
                UsageError::new(format!("no profile named {name:?}; `steward profiles list` shows them"))
            })?;
            output::print_value(&row, ctx.output);
        }
        ProfilesCommand::Test { name } => {
            let conn = ctx.connections.connect(name.as_deref()).map_err(UsageError::new)?;
            let me = ctx.runtime.block_on(ctx.dispatcher.perform(&conn, Action::new(Op::Whoami, None, Value::Null)))?;
            let admin = me.get("admin").and_then(Value::as_bool);
            output::print_value(
                &json!({
                    "profile": conn.profile,
                    "kind": conn.backend.kind(),
                    "url": conn.backend.base_url(),
                    "identity": me.get("login"),
                    "admin": admin,
                    "token_source": conn.token.source,
                    "token_fingerprint": conn.token.fingerprint,
                    "verdict": match admin {
                        Some(true) => "ok: the token is a site administrator's",
                        Some(false) => "the token works but is NOT an administrator's: admin operations will be refused",
                        None => "ok: the token works",
                    },
                }),
                ctx.output,
            );
        }
    }
    Ok(())
}

fn describe(ctx: &Context, name: &str) -> Option<Value> {
    let e = ctx.connections.entry(name)?;
    let p = &e.profile;
    Some(json!({
        "profile": name,
        "kind": p.kind,
        "url": p.url,
        "token_source": if e.preset_token.is_some() { "sandbox".to_string() } else { p.token_source() },
        "default": ctx.connections.default_name() == Some(name),
        "concurrency": p.concurrency.unwrap_or(4),
        "rate_limit": p.rate_limit,
        "timeout": p.timeout.unwrap_or(30),
        "protected": p.protected,
    }))
}
