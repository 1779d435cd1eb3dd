//! The evidence of a deprovisioning run, for a reviewer: one JSON document and one self-contained HTML page (per
//! person: each service, before → after, each step with its time, outcome and audit sequence number, what could
//! not be done and why). Pure rendering of the reports `deprovision_all` returned; no secrets are in them.

use super::html::esc;
use crate::dispatch::deprovision::{matched, COULD_NOT_CHECK, NO_ACCOUNT};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The two files written for `base` (`offboard-2026-11-30` → `.json` and `.html` beside it).
pub fn paths(base: &Path) -> (PathBuf, PathBuf) {
    let stem = match base.extension().and_then(|e| e.to_str()) {
        Some("json" | "html") => base.with_extension(""),
        _ => base.to_path_buf(),
    };
    let with = |ext: &str| {
        let mut p = stem.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    (with(".json"), with(".html"))
}

/// Who ran a deprovisioning, and how: what an auditor asks first.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub run: Option<i64>,
    /// The run this one resumes, when it does (its earlier runs' steps are on the page too).
    pub resumed_from: Option<i64>,
    pub os_user: String,
    pub host: String,
    /// The command line, as the audit log keeps it.
    pub command: String,
    pub generated_at: String,
}

/// The JSON document: who, why, when, which run, a summary and every report.
pub fn document(reports: &[Value], p: &Provenance) -> Value {
    json!({
        "generated_at": p.generated_at,
        "run": p.run,
        "resumed_from": p.resumed_from,
        "who": {"os_user": p.os_user, "host": p.host, "command": p.command, "acting_as": acting_as(reports)},
        "reason": reasons(reports),
        "summary": summary(reports),
        "people": people(reports).into_iter().map(|(person, rs)| json!({"person": person, "services": rs})).collect::<Vec<_>>(),
    })
}

/// Per profile, the account its token acts as and the token's fingerprint (never the token).
fn acting_as(reports: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for r in reports {
        let profile = text(r, "profile");
        if out.iter().any(|o| text(o, "profile") == profile) {
            continue;
        }
        out.push(json!({"profile": profile, "kind": text(r, "kind"), "identity": text(r, "acting_as"), "token_fingerprint": text(r, "token_fingerprint")}));
    }
    out
}

/// The reasons given (one, unless a script mixed reports of several jobs).
fn reasons(reports: &[Value]) -> String {
    let mut all: Vec<String> = Vec::new();
    for r in reports {
        let reason = text(r, "reason");
        if !reason.is_empty() && !all.contains(&reason) {
            all.push(reason);
        }
    }
    all.join("; ")
}

/// People and accounts counted apart: a person on six services is one person and up to six accounts; a person
/// matched on no service, and each account that could not be checked, are named.
fn summary(reports: &[Value]) -> Value {
    let mut counts = serde_json::Map::new();
    for r in reports {
        let status = text(r, "status");
        let n = counts.get(&status).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(status, json!(n + 1));
    }
    let found = |r: &Value| !text(r, "account").is_empty() || !text(r, "found_by").is_empty();
    let grouped = people(reports);
    let nowhere: Vec<&String> = grouped
        .iter()
        .filter(|(_, rs)| !rs.iter().any(|r| matched(&text(r, "status"), found(r))))
        .map(|(p, _)| p)
        .collect();
    let unchecked: Vec<Value> = reports
        .iter()
        .filter(|r| text(r, "status") == COULD_NOT_CHECK)
        .map(|r| json!({"person": text(r, "person"), "profile": text(r, "profile")}))
        .collect();
    json!({
        "people": grouped.len(),
        "accounts": reports.iter().filter(|r| found(r)).count(),
        "by_status": counts,
        "found_nowhere": nowhere,
        "could_not_check": unchecked,
    })
}

/// Reports grouped by the person as given, in first-seen order.
fn people(reports: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in reports {
        let person = text(r, "person");
        match at.get(&person) {
            Some(&i) => out[i].1.push(r.clone()),
            None => {
                at.insert(person.clone(), out.len());
                out.push((person, vec![r.clone()]));
            }
        }
    }
    out
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A snapshot in a few words: admin, suspended, credentials, 2FA.
fn state(snap: &Value) -> String {
    if snap.is_null() {
        return "not read".into();
    }
    let flag = |k: &str| match snap.pointer(&format!("/user/{k}")).and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let holdings = snap.get("holdings").and_then(Value::as_array).cloned().unwrap_or_default();
    let creds = holdings.iter().filter(|h| h.get("kind").and_then(Value::as_str) != Some("group")).count();
    let groups = holdings.len() - creds;
    let mut s = format!("admin {}, suspended {}, credentials {creds}", flag("admin"), flag("suspended"));
    if groups > 0 {
        let _ = write!(s, ", groups {groups}");
    }
    if let Some(on) = snap.get("two_factor").and_then(Value::as_bool) {
        let _ = write!(s, ", 2FA {}", if on { "on" } else { "off" });
    }
    if let Some(unlisted) = snap.get("unlisted").and_then(Value::as_array).filter(|u| !u.is_empty()) {
        let names: Vec<String> = unlisted.iter().filter_map(Value::as_str).map(str::to_string).collect();
        let _ = write!(s, " (not listable: {})", names.join(", "));
    }
    s
}

/// The HTML page: self-contained (no script, no request leaves it), every value escaped.
pub fn html(doc: &Value) -> String {
    let mut h = String::new();
    let run = doc.get("run").and_then(Value::as_i64).map(|r| format!("run {r}")).unwrap_or_else(|| "no run".into());
    let _ = write!(h, "{}", super::html::head(&format!("Deprovisioning evidence, {run}")));
    let _ = write!(
        h,
        "<h1>Deprovisioning evidence</h1><p class=\"muted\">steward {}, {} · generated {} · every step below is in the audit log \
         under its sequence number (<code>steward audit list --run …</code>; <code>steward audit verify</code> checks the log)</p>",
        esc(env!("CARGO_PKG_VERSION")),
        esc(&run),
        esc(&text(doc, "generated_at"))
    );
    who(&mut h, doc);
    summary_html(&mut h, doc);
    for person in doc.get("people").and_then(Value::as_array).into_iter().flatten() {
        let _ = write!(h, "<h2>{}</h2>", esc(&text(person, "person")));
        let services = person.get("services").and_then(Value::as_array).cloned().unwrap_or_default();
        // Services where the person has no account are one line, not a section each; what could not be checked
        // is said as a warning, never as "no account".
        let is = |r: &&Value, s: &str| text(r, "status") == s;
        for r in services.iter().filter(|r| !is(r, NO_ACCOUNT) && !is(r, COULD_NOT_CHECK)) {
            service(&mut h, r);
        }
        let absent: Vec<String> = services
            .iter()
            .filter(|r| is(r, NO_ACCOUNT))
            .map(|r| format!("{} (checked by {})", esc(&text(r, "profile")), esc(&list(r, "checked").join(", "))))
            .collect();
        if !absent.is_empty() {
            let _ = write!(h, "<p class=\"muted\">No account on: {}</p>", absent.join("; "));
        }
        for r in services.iter().filter(|r| is(r, COULD_NOT_CHECK)) {
            let _ = write!(
                h,
                "<p class=\"warn\"><b>Could not check {}</b>: {}</p>",
                esc(&text(r, "profile")),
                esc(&list(r, "problems").join("; "))
            );
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// Who ran it, as whom on each service, why, and the command.
fn who(h: &mut String, doc: &Value) {
    let w = doc.get("who").cloned().unwrap_or(Value::Null);
    let _ = write!(
        h,
        "<table><tr><th>reason</th><td>{}</td></tr><tr><th>run by</th><td>{} on {}</td></tr><tr><th>command</th><td><code>{}</code></td></tr>",
        esc(&text(doc, "reason")),
        esc(&text(&w, "os_user")),
        esc(&text(&w, "host")),
        esc(&text(&w, "command"))
    );
    for a in w.get("acting_as").and_then(Value::as_array).into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><th>{}</th><td>acting as {} · token fingerprint {}</td></tr>",
            esc(&text(a, "profile")),
            esc(&text(a, "identity")),
            esc(&text(a, "token_fingerprint"))
        );
    }
    if let Some(earlier) = doc.get("resumed_from").and_then(Value::as_i64) {
        let _ = write!(h, "<tr><th>resumes</th><td>run {earlier}: each person's earlier steps are listed with the run that made them</td></tr>");
    }
    h.push_str("</table>");
}

fn summary_html(h: &mut String, doc: &Value) {
    let s = doc.get("summary").cloned().unwrap_or(Value::Null);
    let count = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    let by: Vec<String> = s
        .get("by_status")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("<span class=\"s {}\">{}</span> {}", esc(badge(k)), esc(k), v.as_u64().unwrap_or(0)))
        .collect();
    let _ = write!(
        h,
        "<p>{} people, {} accounts found on their services: {}</p>",
        count("people"),
        count("accounts"),
        by.join(" · ")
    );
    let nowhere = list(&s, "found_nowhere");
    if !nowhere.is_empty() {
        let names: Vec<String> = nowhere.iter().map(|n| esc(n)).collect();
        let _ = write!(
            h,
            "<p class=\"warn\"><b>Found on no service</b> (a typo in the list, or accounts no identifier reached; not offboarded): {}</p>",
            names.join(", ")
        );
    }
    let unchecked: Vec<String> = s
        .get("could_not_check")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|u| format!("{} on {}", esc(&text(u, "person")), esc(&text(u, "profile"))))
        .collect();
    if !unchecked.is_empty() {
        let _ = write!(h, "<p class=\"warn\"><b>Could not be checked</b>: {}</p>", unchecked.join(", "));
    }
}

/// A list of strings a report holds under `key`.
fn list(v: &Value, key: &str) -> Vec<String> {
    v.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

/// The CSS class of a status: its first word, letters and hyphens only (a script may build any status).
fn badge(status: &str) -> &str {
    let word = status.split_whitespace().next().unwrap_or("");
    match word.chars().all(|c| c.is_ascii_alphabetic() || c == '-') {
        true => word,
        false => "",
    }
}

fn service(h: &mut String, r: &Value) {
    let status = text(r, "status");
    let _ = write!(
        h,
        "<h3>{} <span class=\"muted\">({})</span> · {} <span class=\"s {}\">{}</span></h3>",
        esc(&text(r, "profile")),
        esc(&text(r, "kind")),
        esc(&text(r, "account")),
        esc(badge(&status)),
        esc(&status)
    );
    if !text(r, "found_by").is_empty() {
        let _ = write!(h, "<p class=\"muted\">found by {}</p>", esc(&text(r, "found_by")));
    }
    let before = r.get("before").unwrap_or(&Value::Null);
    let after = r.get("after").unwrap_or(&Value::Null);
    let verified = match r.get("verified").and_then(Value::as_bool) {
        Some(true) => "verified by reading back",
        Some(false) => "NOT verified: see below",
        None => "not verified (nothing was done)",
    };
    let _ = write!(
        h,
        "<table><tr><th>before</th><td>{}</td></tr><tr><th>after</th><td>{} · {}</td></tr></table>",
        esc(&state(before)),
        esc(&state(after)),
        esc(verified)
    );
    for (key, title) in [("earlier_steps", "Done by earlier runs of this job"), ("steps", "")] {
        steps_table(h, r.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default(), title);
    }
    for (key, title) in
        [("problems", "Could not be done, or still there"), ("caveats", "What this service cannot take away")]
    {
        let items: Vec<String> = list(r, key).iter().map(|i| esc(i)).collect();
        if !items.is_empty() {
            let _ = write!(h, "<p><b>{title}</b></p><ul><li>{}</li></ul>", items.join("</li><li>"));
        }
    }
}

/// Steps with their time, outcome, whether undo can put them back, their audit sequence number (and the run
/// that made them, for an earlier run's).
fn steps_table(h: &mut String, steps: &[Value], title: &str) {
    if steps.is_empty() {
        return;
    }
    if !title.is_empty() {
        let _ = write!(h, "<p><b>{}</b></p>", esc(title));
    }
    {
        h.push_str(
            "<table><tr><th>time</th><th>step</th><th>target</th><th>outcome</th><th>undo</th><th>audit seq</th></tr>",
        );
        for s in steps {
            let outcome = text(s, "status");
            let error = text(s, "error");
            let undo = if s.get("reversible").and_then(Value::as_bool) == Some(true) {
                "undoable"
            } else {
                "cannot be undone"
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td><span class=\"s {}\">{}</span> {}</td><td>{}</td><td>{}</td></tr>",
                esc(&text(s, "at")),
                esc(&text(s, "says")),
                esc(&text(s, "op")),
                esc(&text(s, "target")),
                esc(badge(&outcome)),
                esc(&outcome),
                esc(&error),
                undo,
                match s.get("run").and_then(Value::as_i64) {
                    Some(run) => format!("{} (run {run})", esc(&text(s, "audit_seq"))),
                    None => esc(&text(s, "audit_seq")),
                }
            );
        }
        h.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(person: &str, profile: &str, status: &str) -> Value {
        json!({"person": person, "profile": profile, "kind": "github", "account": "mona", "status": status,
               "before": {"user": {"admin": true, "suspended": false}, "holdings": [{"kind": "ssh_key", "id": "1", "title": "laptop"}]},
               "after": {"user": {"admin": false, "suspended": true}, "holdings": []},
               "steps": [{"op": "demote", "target": "mona", "says": "take administrator rights away", "reversible": true,
                          "status": "ok", "audit_seq": 42, "at": "2026-11-30T10:00:00Z"}],
               "verified": true, "problems": [], "caveats": ["<script>alert(1)</script>"]})
    }

    fn provenance() -> Provenance {
        Provenance {
            run: Some(7),
            os_user: "ops<b>".into(),
            host: "bastion".into(),
            command: "steward run offboard.rhai".into(),
            generated_at: "now".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_page_groups_by_person_and_escapes_what_services_said() {
        let absent = json!({"person": "a@x", "profile": "travis", "status": "no account", "checked": ["email a@x"]});
        let unchecked =
            json!({"person": "a@x", "profile": "tl", "status": "could not check", "problems": ["needs an email"]});
        let reports = [report("a@x", "ghes", "done"), report("a@x", "tfe", "partial"), absent, unchecked];
        let doc = document(&reports, &provenance());
        assert_eq!((doc["summary"]["people"].clone(), doc["summary"]["accounts"].clone()), (json!(1), json!(2)));
        assert_eq!(doc["summary"]["by_status"]["partial"], 1);
        assert_eq!(doc["summary"]["could_not_check"][0]["profile"], "tl");
        let page = html(&doc);
        assert!(page.contains("admin yes, suspended no, credentials 1"), "{page}");
        assert!(page.contains("admin no, suspended yes, credentials 0"));
        assert!(page.contains("<td>42</td>") && page.contains("run 7"));
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"));
        assert!(page.contains("ops&lt;b&gt; on bastion") && page.contains("steward run offboard.rhai"));
        assert_eq!(page.matches("<h2>").count(), 1);
        assert!(
            page.contains("No account on: travis (checked by email a@x)") && page.matches("<h3>").count() == 2,
            "{page}"
        );
        assert!(page.contains("Could not check tl") && !page.contains("No account on: tl"), "{page}");
    }

    #[test]
    fn a_person_found_nowhere_is_flagged_and_a_status_a_script_made_cannot_run_in_the_page() {
        let typo = json!({"person": "b0b@x", "profile": "ghes", "status": "no account", "checked": ["email b0b@x"]});
        let mut odd = report("c@x", "ghes", "done");
        odd["status"] = json!("x\"><img src=x onerror=alert(1)>");
        let doc = document(&[typo, odd], &provenance());
        assert_eq!(doc["summary"]["found_nowhere"], json!(["b0b@x"]));
        let page = html(&doc);
        assert!(page.contains("Found on no service") && page.contains("b0b@x"), "{page}");
        assert!(!page.contains("<img") && !page.contains("class=\"s x\""), "{page}");
    }

    #[test]
    fn the_two_files_sit_beside_the_name_given() {
        let (j, h) = paths(Path::new("out/offboard.html"));
        assert_eq!((j.to_str(), h.to_str()), (Some("out/offboard.json"), Some("out/offboard.html")));
        let (j, _) = paths(Path::new("evidence-2026"));
        assert_eq!(j.to_str(), Some("evidence-2026.json"));
    }
}
