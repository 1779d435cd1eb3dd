//! Deprovisioning: `h.deprovision(person, opts)`, `h.deprovision_all(people, opts)` and `write_evidence(reports,
//! path)`, the report a reviewer reads.

use crate::http::error::ApiError;
use crate::redact::redact;
use crate::script::bridge::Host;
use crate::script::docs::FnDoc;
use crate::script::types::{action_error, bulk_items, invalid, to_dynamic, to_json, Handle, ScriptResult};
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{json, Value};
use std::rc::Rc;

pub const DOCS: &[FnDoc] = &[
    FnDoc { name: "deprovision", signature: "h.deprovision(person, #{reason, deactivate, reset_2fa, dry_run})", summary: "Takes away everything a person holds on this service, in the order it needs: admin rights, suspension, impersonation tokens, SSH keys, API tokens, sessions, groups (and 2FA or deactivation where asked). Snapshot before, one confirmation for the steps that cannot be undone (or --yes), each step audited, read back after. Returns #{person, account, status, before, after, steps, verified, problems, caveats}. `person` is a login, email or id.", example: r#"connect("github").deprovision("user0001", #{reason: "left the company"}).status"#, method: true },
    FnDoc { name: "deprovision_all", signature: "h.deprovision_all(people, #{reason, …})", summary: "deprovision for many people (logins, emails, ids, user maps or CSV rows), concurrently within the profile's limits; one report each, in order. Protected accounts and your own are refused by every name they answer to.", example: r#"connect("github").deprovision_all(["user0002", "user0003@example.com"], #{reason: "left", dry_run: true}).map(|r| r.status)"#, method: true },
    FnDoc { name: "deprovision_everywhere", signature: "deprovision_everywhere(people, #{reason, profiles, …})", summary: "deprovision_all on several profiles at once (`profiles`: names, default every configured profile): each planned concurrently, one confirmation for all, then each profile's steps concurrently within its own limits. A profile that cannot be reached gives each person a report saying why; the others go on. Reports in profile order.", example: r#"deprovision_everywhere(["user0005"], #{reason: "left", profiles: ["github", "terraform"]}).map(|r| `${r.profile}: ${r.status}`)"#, method: false },
    FnDoc { name: "write_evidence", signature: "write_evidence(reports, path)", summary: "Writes the reports of deprovision/deprovision_all as PATH.json and a self-contained PATH.html (who ran it, as whom, why; per person: each service, how the account was found, before → after, each step's time, outcome and audit sequence number), and records both files' SHA-256 in the audit log. Returns #{json, html, summary} (summary: people, accounts, by_status, found_nowhere, could_not_check).", example: r#"write_evidence(connect("github").deprovision_all(["user0004"], #{reason: "left"}), "evidence").html"#, method: false },
];

pub fn register(engine: &mut Engine, host: Rc<Host>) {
    let h = host.clone();
    engine.register_fn(
        "deprovision",
        move |handle: &mut Handle, person: Dynamic, opts: Map| -> ScriptResult<Dynamic> {
            let all = deprovision_all(&h, handle, vec![person], opts)?;
            Ok(all.into_array().ok().and_then(|mut a| a.pop()).unwrap_or(Dynamic::UNIT))
        },
    );
    let h = host.clone();
    engine.register_fn("deprovision_all", move |handle: &mut Handle, people: Array, opts: Map| {
        deprovision_all(&h, handle, people, opts)
    });
    let h = host.clone();
    engine.register_fn("deprovision_everywhere", move |people: Array, opts: Map| {
        deprovision_everywhere(&h, people, opts)
    });
    let h = host;
    engine.register_fn("write_evidence", move |reports: Array, path: &str| write_evidence(&h, reports, path));
}

/// `deprovision_everywhere(people, opts)`: every named profile (default: all), each connected or said why not.
fn deprovision_everywhere(host: &Host, people: Array, opts: Map) -> ScriptResult<Dynamic> {
    let mut params = to_json(&opts.into())?;
    let names: Vec<String> = match params.get("profiles").and_then(Value::as_array) {
        Some(list) => list.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect(),
        None => host.connections.names(),
    };
    if let Some(p) = params.as_object_mut() {
        p.remove("profiles");
    }
    let conns: Vec<(String, Result<std::sync::Arc<crate::dispatch::Connection>, ApiError>)> = names
        .into_iter()
        .map(|n| {
            let conn = host.connections.connect(Some(&n)).map_err(|e| ApiError::invalid(e.to_string()));
            (n, conn)
        })
        .collect();
    let borrowed: Vec<(String, Result<&crate::dispatch::Connection, ApiError>)> =
        conns.iter().map(|(n, c)| (n.clone(), c.as_ref().map(|c| c.as_ref()).map_err(Clone::clone))).collect();
    let items = people_items(&people);
    match host.runtime.block_on(host.dispatcher.deprovision_everywhere(&borrowed, items, params)) {
        Ok(reports) => Ok(to_dynamic(serde_json::to_value(reports).unwrap_or_default())),
        Err(e) => Err(crate::script::types::error_map(e.kind, e.to_string())),
    }
}

/// The people of `deprovision_everywhere` as bulk items, each named by its email where it has one.
fn people_items(people: &Array) -> Vec<crate::dispatch::BulkItem> {
    // Across services a person's email is the name they share; a row without one is named by its login or id.
    // Every other name the row gives is an identifier too (`also`): a service that cannot search the email
    // may find them by their login.
    let keys = ["email", "login", "username", "user", "id", "user_id", "vcs_id"];
    let mut items = bulk_items(people, &keys);
    for (item, person) in items.iter_mut().zip(people) {
        let Some(row) = person.read_lock::<rhai::Map>() else { continue };
        let also: Vec<Value> = keys
            .iter()
            .filter_map(|k| row.get(*k).filter(|v| !v.is_unit()).map(|v| v.to_string().trim().to_string()))
            .filter(|v| !v.is_empty() && Some(v) != item.target.as_ref())
            .map(Value::String)
            .collect();
        if !also.is_empty() {
            item.params.insert("also".into(), Value::Array(also));
        }
    }
    items
}

/// `write_evidence(reports, path)`: the JSON and HTML a reviewer reads, their digests recorded in the log.
fn write_evidence(host: &Host, reports: Array, path: &str) -> ScriptResult<Map> {
    let reports: Vec<Value> = reports.iter().map(to_json).collect::<ScriptResult<_>>()?;
    let (json_path, html_path) = crate::output::evidence::paths(std::path::Path::new(path));
    let info = host.dispatcher.run_info();
    let provenance = crate::output::evidence::Provenance {
        run: host.dispatcher.run_id(),
        resumed_from: info.resumed_from,
        os_user: info.os_user.clone(),
        host: info.host.clone(),
        command: info.command.clone(),
        generated_at: crate::dates::rfc3339(chrono::Utc::now()),
    };
    let doc = crate::output::evidence::document(&reports, &provenance);
    // Scrubbed like every CSV cell and printed line: a report may carry whatever a script put in it.
    let json_text = redact(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    let html_text = redact(&crate::output::evidence::html(&doc));
    for (p, text) in [(&json_path, &json_text), (&html_path, &html_text)] {
        crate::files::write(p, text).map_err(|e| invalid(format!("cannot write {}: {e}", p.display())))?;
    }
    let files = json!({
        "json": json_path.display().to_string(), "json_sha256": sha256(&json_text),
        "html": html_path.display().to_string(), "html_sha256": sha256(&html_text),
    });
    host.runtime.block_on(host.dispatcher.evidence_written(files.clone())).map_err(action_error)?;
    let mut out = Map::new();
    out.insert("json".into(), json_path.display().to_string().into());
    out.insert("html".into(), html_path.display().to_string().into());
    // The counts a script prints (people, accounts, who was found nowhere, what could not be checked),
    // computed once here rather than by the script walking every report for every person.
    out.insert("summary".into(), to_dynamic(doc["summary"].clone()));
    Ok(out)
}

fn deprovision_all(host: &Host, handle: &Handle, people: Array, opts: Map) -> ScriptResult<Dynamic> {
    let params = to_json(&opts.into())?;
    // Any name a person goes by will do: the service's own keys first, then an email.
    let mut keys: Vec<&str> = handle.conn.backend.target_keys().to_vec();
    keys.push("email");
    let items = bulk_items(&people, &keys);
    match host.runtime.block_on(host.dispatcher.deprovision_all(&handle.conn, items, params)) {
        Ok(reports) => Ok(to_dynamic(serde_json::to_value(reports).unwrap_or_default())),
        Err(e) => Err(action_error(e)),
    }
}

fn sha256(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
