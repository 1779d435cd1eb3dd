//! Everything steward prints: values as tables for people, JSON or CSV for machines, and CSV files.

pub mod csv;
pub mod drift_page;
pub mod evidence;
pub mod html;
pub mod plan_page;
pub mod progress;
pub mod table;

use crate::redact::redact;
use serde_json::Value;
use std::io::Write;

/// How results are printed: `--format`, or by default a table on a terminal and JSON in a pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// How results are printed.
#[derive(Clone, Copy, Debug)]
pub struct OutputSettings {
    pub format: Format,
    pub stdout_is_tty: bool,
}

/// Renders a value the way the settings ask; `()` prints nothing.
pub fn render(value: &Value, settings: OutputSettings) -> String {
    match (settings.format, value) {
        (_, Value::Null) => String::new(),
        (Format::Json, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        (Format::Csv, Value::Array(rows)) => csv::to_csv_string(rows, None).unwrap_or_default(),
        (Format::Csv, v @ Value::Object(_)) => csv::to_csv_string(std::slice::from_ref(v), None).unwrap_or_default(),
        (_, Value::String(s)) => s.clone(),
        (Format::Table, v @ (Value::Array(_) | Value::Object(_))) => table::render(v),
        (_, v) => v.to_string(),
    }
}

/// Writes a rendered value (scrubbed of the secrets this process loaded; a token the person asked for, such
/// as a new impersonation token, is shown) and a newline, ignoring a closed pipe (`steward eval … | head`).
pub fn print_value(value: &Value, settings: OutputSettings) {
    let text = crate::redact::redact_loaded(&render(value, settings));
    if text.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end_matches('\n'));
}

/// Rows printed as they come, each an object with `columns` (a plan of 190,000 steps is never one value): JSON
/// and CSV row by row, exactly as `print_value` would print them all; a table, for a person, once all are in.
pub fn print_rows(columns: &[&str], rows: impl Iterator<Item = Value>, settings: OutputSettings) {
    match settings.format {
        Format::Table => print_value(&Value::Array(rows.collect()), settings),
        _ => write_rows(&mut std::io::stdout().lock(), columns, rows, settings.format),
    }
}

/// `print_rows` as JSON or CSV, into `out` (a closed pipe ends it quietly).
fn write_rows(out: &mut dyn Write, columns: &[&str], rows: impl Iterator<Item = Value>, format: Format) {
    let mut put = |text: &str| out.write_all(crate::redact::redact_loaded(text).as_bytes()).is_ok();
    let names: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let mut any = false;
    for row in rows {
        let text = match format {
            Format::Csv => csv::row_text((!any).then_some(names.as_slice()), &row, &names),
            _ => {
                let lines = serde_json::to_string_pretty(&row).unwrap_or_default();
                let indented = lines.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n");
                format!("{}\n{indented}", if any { "," } else { "[" })
            }
        };
        if !put(&text) {
            return;
        }
        any = true;
    }
    if format == Format::Json {
        put(if any { "\n]\n" } else { "[]\n" });
    }
}

/// A line for people on stdout (script `print`, command results), scrubbed of secrets.
pub fn line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{}", redact(text));
}

/// A message for people on stderr (errors, warnings, progress), scrubbed of secrets.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", redact(text));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_printed_as_they_come_are_what_the_whole_value_prints() {
        let rows = vec![
            json!({"profile": "p", "account": "=cmd", "idle_days": 3, "why": "a \"quoted\"\nline"}),
            json!({"profile": "q", "account": "bob", "idle_days": -5, "why": null}),
        ];
        let columns = ["profile", "account", "idle_days", "why"];
        for format in [Format::Json, Format::Csv] {
            for rows in [rows.clone(), Vec::new()] {
                let mut out = Vec::new();
                write_rows(&mut out, &columns, rows.clone().into_iter(), format);
                let settings = OutputSettings { format, stdout_is_tty: false };
                let whole = render(&Value::Array(rows.clone()), settings);
                let whole = if whole.is_empty() { whole } else { format!("{}\n", whole.trim_end_matches('\n')) };
                assert_eq!(String::from_utf8(out).unwrap(), whole, "{format:?}, {} rows", rows.len());
            }
        }
    }
}
