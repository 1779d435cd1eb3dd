//! `audit(filter)`: the audit log, queryable from scripts and the REPL.

use crate::audit::query::Filter;
use crate::audit::AuditStore;
use crate::dates::parse_date;
use crate::script::bridge::Host;
use crate::script::docs::FnDoc;
use crate::script::types::{invalid, to_dynamic, ScriptResult};
use rhai::{Array, Engine, Map};
use std::rc::Rc;

pub const DOCS: &[FnDoc] = &[FnDoc {
    name: "audit",
    signature: "audit() / audit(#{since, until, profile, op, target, token_fp, run, user, host, pending, limit})",
    summary: "Events of the audit log (oldest first): who did what, where, when, with what result.",
    example: r#"audit(#{op: "suspend", limit: 5}).map(|e| e.status)"#,
    method: false,
}];

pub fn register(engine: &mut Engine, host: Rc<Host>) {
    let h = host.clone();
    engine.register_fn("audit", move || query(&h, Map::new()));
    let h = host;
    engine.register_fn("audit", move |filter: Map| query(&h, filter));
}

fn query(host: &Host, filter: Map) -> ScriptResult<Array> {
    if !host.audit_target.exists() {
        return Ok(Array::new());
    }
    let text = |k: &str| filter.get(k).filter(|v| !v.is_unit()).map(|v| v.to_string());
    let time = |k: &str| -> ScriptResult<Option<String>> {
        text(k)
            .map(|t| {
                parse_date(&t)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .map_err(|e| invalid(e.to_string()))
            })
            .transpose()
    };
    let int = |k: &str| filter.get(k).and_then(|v| v.as_int().ok());
    let f = Filter {
        since: time("since")?,
        until: time("until")?,
        profile: text("profile"),
        op: text("op"),
        target: text("target"),
        token_fp: text("token_fp"),
        run: int("run"),
        os_user: text("user"),
        host: text("host"),
        seq: None,
        since_seq: None,
        pending: filter.get("pending").and_then(|v| v.as_bool().ok()).unwrap_or(false),
        limit: int("limit").map(|n| n.max(0) as usize),
    };
    let store = AuditStore::open_target(&host.audit_target).map_err(|e| invalid(e.to_string()))?;
    let rows = store.list(&f).map_err(|e| invalid(e.to_string()))?;
    Ok(rows.into_iter().map(|r| to_dynamic(serde_json::to_value(r).unwrap_or_default())).collect())
}
