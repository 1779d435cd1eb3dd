//! CSV files for scripts: reading (BOM, quotes, CRLF, blank lines, any header case; bad rows named by line)
//! and writing (cells a spreadsheet would run as formulas are neutralised).

use serde_json::{Map, Value};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problems}")]
    Malformed { path: String, problems: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// The rows of a CSV file as maps keyed by the (lower-cased, trimmed) header.
pub fn read_csv(path: &Path) -> Result<Vec<Map<String, Value>>, CsvError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CsvError::Io {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        CsvError::Malformed {
            path: shown.clone(),
            problems: format!("line {line}: not UTF-8 text (save the file as UTF-8)"),
        }
    })?;
    parse(text.strip_prefix('\u{feff}').unwrap_or(&text), &shown)
}

fn parse(text: &str, shown: &str) -> Result<Vec<Map<String, Value>>, CsvError> {
    let malformed = |problems: String| CsvError::Malformed {
        path: shown.to_string(),
        problems,
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header: Vec<String> = loop {
        match records.next() {
            None => return Ok(Vec::new()),
            Some(Err(e)) => return Err(malformed(describe(&e))),
            Some(Ok(r)) if is_blank(&r) => continue,
            Some(Ok(r)) => break r.iter().map(|h| h.trim().to_lowercase()).collect(),
        }
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(malformed(format!(
            "line 1: the column {dup:?} appears twice in the header"
        )));
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(describe(&e));
                break;
            }
        };
        if is_blank(&record) {
            continue;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != header.len() {
            problems.push(format!(
                "line {line}: {} fields, but the header has {}",
                record.len(),
                header.len()
            ));
            continue;
        }
        rows.push(
            header
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.clone(), Value::String(v.trim().to_string())))
                .collect(),
        );
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        let more = problems.len().saturating_sub(10);
        let mut text = problems.into_iter().take(10).collect::<Vec<_>>().join("; ");
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        Err(malformed(text))
    }
}

fn is_blank(r: &::csv::StringRecord) -> bool {
    r.iter().all(|f| f.trim().is_empty())
}

fn describe(e: &::csv::Error) -> String {
    match e.position() {
        Some(p) => format!("line {}: {}", p.line(), e.kind_message()),
        None => e.to_string(),
    }
}

trait KindMessage {
    fn kind_message(&self) -> String;
}

impl KindMessage for ::csv::Error {
    fn kind_message(&self) -> String {
        match self.kind() {
            ::csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
            _ => self.to_string(),
        }
    }
}

/// A cell a spreadsheet would not run as a formula: a leading `= + - @` (or tab/CR) gets a `'` in front.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// Rows of records as CSV text; the columns are the union of the records' keys in table order (user records
/// lead with login, email…), or exactly `columns` when given. Nested values are written as JSON.
pub fn to_csv_string(rows: &[Value], columns: Option<&[String]>) -> Result<String, String> {
    let columns = match columns {
        Some(c) => c.to_vec(),
        None => super::table::ordered_keys(rows.iter()),
    };
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(&columns).map_err(|e| e.to_string())?;
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| neutralise(&super::table::cell(row.get(c).unwrap_or(&Value::Null))))
            .collect();
        w.write_record(&cells).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

pub fn write_csv(
    path: &Path,
    rows: &[Value],
    columns: Option<&[String]>,
) -> Result<usize, CsvError> {
    let shown = path.display().to_string();
    let text = to_csv_string(rows, columns).map_err(|message| CsvError::Write {
        path: shown.clone(),
        message,
    })?;
    std::fs::write(path, text).map_err(|e| CsvError::Write {
        path: shown,
        message: e.to_string(),
    })?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Result<Vec<Map<String, Value>>, CsvError> {
        parse(text, "leavers.csv")
    }

    #[test]
    fn handles_quotes_crlf_blank_lines_and_header_case() {
        let rows =
            read("Login,Reason\r\n\r\nbob,\"left, for good\"\r\n\"ann\",moved\r\n\r\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["login"], "bob");
        assert_eq!(rows[0]["reason"], "left, for good");
        assert_eq!(rows[1]["login"], "ann");
    }

    #[test]
    fn a_bom_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "\u{feff}login\nbob\n").unwrap();
        assert_eq!(read_csv(&p).unwrap()[0]["login"], "bob");
    }

    #[test]
    fn short_and_long_rows_are_named_by_line() {
        let e = read("login,reason\nbob,x\nann\ncid,a,b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("leavers.csv"), "{e}");
        assert!(e.contains("line 3: 1 fields"), "{e}");
        assert!(e.contains("line 4: 3 fields"), "{e}");
    }

    #[test]
    fn non_utf8_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, b"login\nbob\nb\xffd\n").unwrap();
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn a_duplicate_header_is_refused() {
        assert!(read("login,LOGIN\nx,y\n").is_err());
    }

    #[test]
    fn columns_follow_the_given_order() {
        let cols = vec!["b".to_string(), "a".to_string()];
        let text = to_csv_string(&[json!({"a": 1, "b": 2, "c": 3})], Some(&cols)).unwrap();
        assert_eq!(text, "b,a\n2,1\n");
    }

    #[test]
    fn formulas_are_neutralised_on_write() {
        let text = to_csv_string(
            &[json!({"login": "=HYPERLINK(\"x\")", "n": "-1", "ok": "plain"})],
            None,
        )
        .unwrap();
        assert!(text.contains("'=HYPERLINK"), "{text}");
        assert!(text.contains("'-1"), "{text}");
        assert!(text.contains(",plain"), "{text}");
    }
}
