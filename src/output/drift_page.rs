//! A reconcile's drift as a page: what blocks it, then per group who is to be added, removed or given another
//! role, and what became of each once applied. Self-contained, every value escaped (see `html`).

use super::html::{esc, head};
use serde_json::Value;
use std::fmt::Write as _;

/// The page for the drift rows (`reconcile`'s `drift`) and the guards that block them.
pub fn page(rows: &[Value], blocked: &[String]) -> String {
    let mut h = head("Membership drift");
    let _ = write!(h, "<h1>Membership drift</h1><p id=\"changes\"><b>{} changes</b>.</p>", rows.len());
    for why in blocked {
        let _ = write!(h, "<p class=\"warn\"><b>Blocked:</b> {}</p>", esc(why));
    }
    let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut groups: Vec<(String, String)> = rows.iter().map(|r| (text(r, "profile"), text(r, "group"))).collect();
    groups.dedup();
    for (profile, group) in groups {
        let _ = write!(
            h,
            "<h2>{} on {}</h2><table><tr><th>change</th><th>who</th><th>role</th><th>now</th><th>line</th><th>status</th></tr>",
            esc(&group),
            esc(&profile)
        );
        for r in rows.iter().filter(|r| text(r, "profile") == profile && text(r, "group") == group) {
            let line = r.get("line").and_then(Value::as_i64).map(|l| l.to_string()).unwrap_or_default();
            let status = text(r, "status");
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{line}</td><td><span class=\"s {}\">{}</span> {}</td></tr>",
                esc(&text(r, "change")),
                esc(&text(r, "login")),
                esc(&text(r, "role")),
                esc(&text(r, "current_role")),
                esc(&status),
                esc(&status),
                esc(&text(r, "error"))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>");
    h
}
