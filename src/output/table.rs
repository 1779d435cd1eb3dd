//! Tables for people: arrays of records become rows, a record becomes key/value pairs.

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde_json::Value;

/// Columns shown first, in this order, for the records that have the marker key; `raw` is left out of tables.
/// Which fields lead, by a field that marks the kind of record (the first marker present wins).
const LEADING: &[(&str, &[&str])] = &[
    ("login", &["id", "login", "email", "name", "admin", "suspended", "last_active", "kind", "profile"]),
    // Audit events: where and when first, then what happened to whom.
    ("seq", &["seq", "time", "run", "profile", "op", "target", "phase", "status", "http", "error"]),
    // Runs (`steward runs`).
    ("job", &["run", "job", "status", "started", "ended", "script", "profiles", "outcomes"]),
    ("status", &["target", "status", "http_status", "error", "line", "profile", "op"]),
];
const HIDDEN: &[&str] = &["raw", "unknown"];

pub fn render(value: &Value) -> String {
    match value {
        Value::Array(rows) if rows.is_empty() => "(no rows)".to_string(),
        Value::Array(rows) if rows.iter().all(Value::is_object) => rows_table(rows),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join("\n"),
        Value::Object(map) => {
            let mut t = new_table();
            t.set_header(vec!["field", "value"]);
            for key in ordered_keys(std::iter::once(value)) {
                if let Some(v) = map.get(&key) {
                    t.add_row(vec![key.clone(), cell(v)]);
                }
            }
            t.to_string()
        }
        other => cell(other),
    }
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn rows_table(rows: &[Value]) -> String {
    let columns = ordered_keys(rows.iter());
    let mut t = new_table();
    t.set_header(columns.clone());
    for row in rows {
        t.add_row(columns.iter().map(|c| cell_of(row, c)).collect::<Vec<_>>());
    }
    format!("{t}\n{} row{}", rows.len(), if rows.len() == 1 { "" } else { "s" })
}

/// The union of the records' keys in first-seen order; well-known records (users, bulk results) lead with
/// their usual fields. The service's `raw` record is left out.
pub fn ordered_keys<'a>(rows: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for row in rows {
        if let Value::Object(map) = row {
            for key in map.keys() {
                if !seen.contains(key) && !HIDDEN.contains(&key.as_str()) {
                    seen.push(key.clone());
                }
            }
        }
    }
    let Some((_, leading)) = LEADING.iter().find(|(marker, _)| seen.iter().any(|k| k == marker)) else {
        return seen;
    };
    let first = leading.iter().filter(|k| seen.iter().any(|s| s == *k)).map(|k| k.to_string());
    let rest = seen.iter().filter(|k| !leading.contains(&k.as_str())).cloned();
    first.chain(rest).collect::<Vec<_>>()
}

/// The cell of `column` in `row`: a field the record lists as `unknown` (the service did not say) shows as `?`,
/// never as an empty cell that reads as "none".
pub fn cell_of(row: &Value, column: &str) -> String {
    let value = row.get(column).unwrap_or(&Value::Null);
    let unknown = row.get("unknown").and_then(Value::as_array).is_some_and(|u| u.iter().any(|k| k == column));
    match (value, unknown) {
        (Value::Null, true) => "?".to_string(),
        _ => cell(value),
    }
}

/// One cell: strings bare, `()` empty, nested values as compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_records_lead_with_login_and_hide_raw() {
        let out = render(&json!([{"raw": {"x": 1}, "zeta": 1, "login": "bob", "id": 7}]));
        let header = out.lines().nth(1).unwrap();
        let (id, login, zeta) =
            (header.find("id").unwrap(), header.find("login").unwrap(), header.find("zeta").unwrap());
        assert!(id < login && login < zeta, "{header}");
        assert!(!out.contains("raw"));
        assert!(out.ends_with("1 row"));
    }

    #[test]
    fn audit_events_lead_with_seq_time_and_run() {
        let out = render(&json!([{"error": "e", "status": "ok", "target": "t", "seq": 3, "time": "x", "run": 1}]));
        let header = out.lines().nth(1).unwrap();
        let at = |k: &str| header.find(k).unwrap();
        assert!(at("seq") < at("time") && at("time") < at("run") && at("run") < at("target"), "{header}");
        assert!(at("status") < at("error"), "{header}");
    }

    #[test]
    fn what_a_record_does_not_say_shows_as_a_question_mark_not_a_blank() {
        let out =
            render(&json!([{"login": "bob", "email": null, "suspended": null, "unknown": ["email", "suspended"]},
                                 {"login": "ann", "email": null, "suspended": false}]));
        let bob = out.lines().find(|l| l.contains("bob")).unwrap();
        let ann = out.lines().find(|l| l.contains("ann")).unwrap();
        assert_eq!(bob.matches('?').count(), 2, "{out}");
        assert_eq!(ann.matches('?').count(), 0, "a known empty email stays empty: {out}");
        assert!(!out.contains("unknown"), "{out}");
    }

    #[test]
    fn an_empty_list_says_so() {
        assert_eq!(render(&json!([])), "(no rows)");
    }

    #[test]
    fn a_record_prints_as_field_value_pairs() {
        let out = render(&json!({"login": "bob", "admin": false}));
        assert!(out.contains("login") && out.contains("bob") && out.contains("false"));
    }
}
