//! The evidence of a deprovisioning run, for a reviewer: one JSON document and one self-contained HTML page (per
//! person: each service, before → after, each step with its time, outcome and audit sequence number, what could
//! not be done and why). Pure rendering of the reports `deprovision_all` returned; no secrets are in them.

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

/// The JSON document: when, which run, a summary and every report.
pub fn document(reports: &[Value], run: Option<i64>, generated_at: &str) -> Value {
    json!({
        "generated_at": generated_at,
        "run": run,
        "summary": summary(reports),
        "people": people(reports).into_iter().map(|(person, rs)| json!({"person": person, "services": rs})).collect::<Vec<_>>(),
    })
}

fn summary(reports: &[Value]) -> Value {
    let mut counts = serde_json::Map::new();
    for r in reports {
        let status = text(r, "status");
        let n = counts.get(&status).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(status, json!(n + 1));
    }
    json!({"people": people(reports).len(), "services": reports.len(), "by_status": counts})
}

/// Reports grouped by the person as given, in first-seen order.
fn people(reports: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for r in reports {
        let person = text(r, "person");
        match out.iter_mut().find(|(p, _)| *p == person) {
            Some((_, rs)) => rs.push(r.clone()),
            None => out.push((person, vec![r.clone()])),
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

/// Text made safe inside HTML elements and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222;padding:0 1rem}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f5f5f5}.s{font-weight:600;padding:.1rem .4rem;border-radius:.3rem}\
.done,.ok,.noop,.nothing{background:#e3f4e3}.partial,.dry-run,.skipped{background:#fff4d6}\
.failed,.refused,.cancelled,.protected,.not{background:#fbe3e3}.muted{color:#666}ul{margin:.2rem 0}";

/// The HTML page.
pub fn html(doc: &Value) -> String {
    let mut h = String::new();
    let run = doc.get("run").and_then(Value::as_i64).map(|r| format!("run {r}")).unwrap_or_else(|| "no run".into());
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Deprovisioning evidence, {}</title><style>{STYLE}</style></head><body>",
        esc(&run)
    );
    let _ = write!(
        h,
        "<h1>Deprovisioning evidence</h1><p class=\"muted\">steward {}, {} · generated {} · every step below is in the audit log \
         under its sequence number (<code>steward audit list --run …</code>; <code>steward audit verify</code> checks the log)</p>",
        esc(env!("CARGO_PKG_VERSION")),
        esc(&run),
        esc(&text(doc, "generated_at"))
    );
    if let Some(by) = doc.pointer("/summary/by_status").and_then(Value::as_object) {
        let parts: Vec<String> =
            by.iter().map(|(k, v)| format!("<span class=\"s {}\">{}</span> {v}", badge(k), esc(k))).collect();
        let _ = write!(
            h,
            "<p>{} people, {} service accounts: {}</p>",
            doc.pointer("/summary/people").unwrap_or(&Value::Null),
            doc.pointer("/summary/services").unwrap_or(&Value::Null),
            parts.join(" · ")
        );
    }
    for person in doc.get("people").and_then(Value::as_array).into_iter().flatten() {
        let _ = write!(h, "<h2>{}</h2>", esc(&text(person, "person")));
        let services = person.get("services").and_then(Value::as_array).cloned().unwrap_or_default();
        // Services where the person has no account are one line, not a section each.
        let (absent, present): (Vec<&Value>, Vec<&Value>) =
            services.iter().partition(|r| text(r, "status") == "not found");
        for r in present {
            service(&mut h, r);
        }
        if !absent.is_empty() {
            let names: Vec<String> = absent.iter().map(|r| esc(&text(r, "profile"))).collect();
            let _ = write!(h, "<p class=\"muted\">No account on: {}</p>", names.join(", "));
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn badge(status: &str) -> &str {
    status.split_whitespace().next().unwrap_or("")
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
    let steps = r.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
    if !steps.is_empty() {
        h.push_str(
            "<table><tr><th>time</th><th>step</th><th>target</th><th>outcome</th><th>undo</th><th>audit seq</th></tr>",
        );
        for s in &steps {
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
                esc(&text(s, "audit_seq"))
            );
        }
        h.push_str("</table>");
    }
    for (key, title) in
        [("problems", "Could not be done, or still there"), ("caveats", "What this service cannot take away")]
    {
        let items: Vec<String> =
            r.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(esc).collect();
        if !items.is_empty() {
            let _ = write!(h, "<p><b>{title}</b></p><ul><li>{}</li></ul>", items.join("</li><li>"));
        }
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

    #[test]
    fn the_page_groups_by_person_and_escapes_what_services_said() {
        let absent = json!({"person": "a@x", "profile": "travis", "status": "not found"});
        let doc = document(&[report("a@x", "ghes", "done"), report("a@x", "tfe", "partial"), absent], Some(7), "now");
        assert_eq!(doc["summary"]["people"], 1);
        assert_eq!(doc["summary"]["by_status"]["partial"], 1);
        let page = html(&doc);
        assert!(page.contains("admin yes, suspended no, credentials 1"), "{page}");
        assert!(page.contains("admin no, suspended yes, credentials 0"));
        assert!(page.contains("<td>42</td>") && page.contains("run 7"));
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"));
        assert_eq!(page.matches("<h2>").count(), 1);
        assert!(page.contains("No account on: travis") && page.matches("<h3>").count() == 2, "{page}");
    }

    #[test]
    fn the_two_files_sit_beside_the_name_given() {
        let (j, h) = paths(Path::new("out/offboard.html"));
        assert_eq!((j.to_str(), h.to_str()), (Some("out/offboard.json"), Some("out/offboard.html")));
        let (j, _) = paths(Path::new("evidence-2026"));
        assert_eq!(j.to_str(), Some("evidence-2026.json"));
    }
}
