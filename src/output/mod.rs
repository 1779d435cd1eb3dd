//! Everything steward prints: values as tables for people, JSON or CSV for machines, and CSV files.

pub mod csv;
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

/// A line for people on stdout (script `print`, command results), scrubbed of secrets.
pub fn line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{}", redact(text));
}

/// A message for people on stderr (errors, warnings, progress), scrubbed of secrets.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", redact(text));
}
