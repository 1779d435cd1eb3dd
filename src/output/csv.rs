//! CSV files for scripts: reading (BOM, quotes, CRLF, blank lines, any header case; bad rows named by line)
//! and writing (cells a spreadsheet would run as formulas are neutralised).

use crate::redact::redact;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {problems}")]
    Malformed { path: String, problems: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error(transparent)]
    Changed(#[from] crate::inputs::InputChanged),
}

/// One data line of a CSV file: its fields by (lower-cased, trimmed) header, or what is wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub number: u64,
    pub fields: Map<String, Value>,
    pub problem: Option<String>,
}

/// The rows of a CSV file as maps keyed by the header; any bad line fails the whole read, every bad line named.
pub fn read_csv(path: &Path) -> Result<Vec<Map<String, Value>>, CsvError> {
    let mut rows = Vec::new();
    read_rows(path, |row| rows.push(row))?;
    Ok(rows)
}

/// `read_csv`, each row handed to `row` as it is parsed (so a caller building its own values never holds the
/// file twice over); any bad line fails the whole read, every bad line named, after the good ones were handed.
pub fn read_rows(path: &Path, mut row: impl FnMut(Map<String, Value>)) -> Result<(), CsvError> {
    let mut problems: Vec<String> = Vec::new();
    let mut count = 0usize;
    each_line(path, |line| match line.problem {
        Some(p) => {
            count += 1;
            if problems.len() < 10 {
                problems.push(p);
            }
        }
        None => row(line.fields),
    })?;
    if problems.is_empty() {
        return Ok(());
    }
    let more = count.saturating_sub(problems.len());
    let mut text = problems.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    Err(CsvError::Malformed { path: path.display().to_string(), problems: text })
}

/// Every data line, good or bad, so a bulk job can go on with the good ones and list the bad ones.
/// Only a file that cannot be read or has no usable header is an error.
pub fn read_lines(path: &Path) -> Result<Vec<Line>, CsvError> {
    let mut lines = Vec::new();
    each_line(path, |line| lines.push(line))?;
    Ok(lines)
}

/// `read_lines`, each line handed to `f` as it is parsed. The file is read as a stream, twice: first its shape
/// and digest (a file that lies, such as a quote that never closes or a line of a gigabyte, is named with its line
/// before anything is parsed, and the digest pins it for a resume before any row can be acted on), then its rows,
/// one at a time: memory stays flat however long the file.
pub fn each_line(path: &Path, f: impl FnMut(Line)) -> Result<(), CsvError> {
    let shown = path.display().to_string();
    let io = |source| CsvError::Io { path: shown.clone(), source };
    let mut digesting = crate::inputs::Digesting::new(std::fs::File::open(path).map_err(io)?);
    check_shape(std::io::BufReader::new(&mut digesting)).map_err(|e| match e {
        ShapeError::Io(source) => io(source),
        ShapeError::Bad(problems) => CsvError::Malformed { path: shown.clone(), problems },
    })?;
    // Pinned by what was read, so a resume acts on the same rows or refuses.
    let pinned = digesting.finish();
    crate::inputs::read(path, &pinned)?;
    let mut file = std::io::BufReader::new(crate::inputs::Digesting::new(std::fs::File::open(path).map_err(io)?));
    let bom = std::io::BufRead::fill_buf(&mut file).map_err(io)?.starts_with(b"\xef\xbb\xbf");
    if bom {
        std::io::BufRead::consume(&mut file, 3);
    }
    let breaks = Rc::new(RefCell::new(Breaks::default()));
    let mut rows = Counting { inner: file, at: 0, breaks: breaks.clone() };
    parse(&mut rows, &breaks, &shown, f)?;
    // The rows parsed are the file pinned: one replaced between the two readings is an error, not a silent swap.
    match rows.inner.into_inner().finish() {
        parsed if parsed == pinned => Ok(()),
        now => Err(crate::inputs::InputChanged::ChangedWhileRead { path: shown, then: pinned, now }.into()),
    }
}

/// Where the line breaks of a stream being parsed lie, from the last record asked about to as far as the parser
/// has read ahead (a buffer's worth): enough to give each record its true line number without the whole file.
#[derive(Default)]
struct Breaks {
    /// Byte offset of each CR or LF not yet passed, and whether it is an LF.
    ahead: VecDeque<(u64, bool)>,
    /// LFs before the first of them.
    passed: u64,
}

impl Breaks {
    /// The line a record (or an error) at byte `at` starts on. The csv crate does not count the blank lines it
    /// skips, and a record's position may start at them: the breaks right at it are stepped over.
    fn line_at(&mut self, pos: Option<&::csv::Position>) -> u64 {
        let Some(mut at) = pos.map(::csv::Position::byte) else { return 0 };
        while let Some(&(offset, lf)) = self.ahead.front() {
            if offset > at {
                break;
            }
            if offset == at {
                at += 1;
            }
            self.passed += u64::from(lf);
            self.ahead.pop_front();
        }
        self.passed + 1
    }
}

/// A reader that notes where the line breaks it passes on lie (`Breaks`).
struct Counting<R> {
    inner: R,
    at: u64,
    breaks: Rc<RefCell<Breaks>>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            if matches!(b, b'\n' | b'\r') {
                breaks.ahead.push_back((self.at + i as u64, *b == b'\n'));
            }
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// The column names of a CSV file's header, as `read_csv` keys its rows (lower-cased); none for an empty file.
/// Only the start of the file is read (a header is far shorter than the longest line a file may have).
pub fn header(path: &Path) -> Result<Vec<String>, CsvError> {
    let shown = path.display().to_string();
    let io = |source| CsvError::Io { path: shown.clone(), source };
    let mut start = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).map_err(io)?, MAX_LINE_BYTES as u64),
        &mut start,
    )
    .map_err(io)?;
    let bytes = start.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&start);
    let mut reader = ::csv::ReaderBuilder::new().flexible(true).has_headers(false).from_reader(bytes);
    for record in reader.byte_records() {
        let malformed = |problems: String| CsvError::Malformed { path: shown.clone(), problems };
        let record = record.map_err(|e| malformed(format!("the header: {e}")))?;
        if !is_blank(&record) {
            let fields = text_fields(&record).ok_or_else(|| malformed("the header is not UTF-8 text".into()))?;
            return Ok(fields.iter().map(|h| column_name(h)).collect());
        }
    }
    Ok(Vec::new())
}

/// A header cell as rows are keyed by it.
fn column_name(cell: &str) -> String {
    restore(cell.trim()).to_lowercase()
}

/// The longest line a CSV file may have: far above any real row, far below what could exhaust memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

enum ShapeError {
    Io(std::io::Error),
    Bad(String),
}

/// Reads the file once as a stream: every line within `MAX_LINE_BYTES`, and every quoted field closed (an
/// unterminated quote would otherwise swallow every line after it into one field, silently). Quotes are read
/// as the parser reads them: they open a field only at its start (`27" screen` is plain text), and `""` inside
/// a quoted field is a quote.
fn check_shape(mut input: impl std::io::BufRead) -> Result<(), ShapeError> {
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Plain,
        Quoted,
        QuoteInQuoted,
    }
    let (mut at, mut line, mut line_len, mut opened, mut offset) = (At::FieldStart, 1u64, 0usize, 0u64, 0usize);
    loop {
        let buf = input.fill_buf().map_err(ShapeError::Io)?;
        if buf.is_empty() {
            break;
        }
        for &b in buf {
            offset += 1;
            if b == b'\n' {
                line += 1;
                line_len = 0;
            } else {
                line_len += 1;
                if line_len > MAX_LINE_BYTES {
                    return Err(ShapeError::Bad(format!(
                        "line {line} is longer than {} MB; is this really a CSV file?",
                        MAX_LINE_BYTES >> 20
                    )));
                }
            }
            at = match (at, b) {
                // A byte-order mark leaves the first field at its start.
                (At::FieldStart, 0xEF | 0xBB | 0xBF) if offset <= 3 => At::FieldStart,
                (At::FieldStart, b'"') => {
                    opened = line;
                    At::Quoted
                }
                (At::Quoted, b'"') => At::QuoteInQuoted,
                (At::Quoted, _) => At::Quoted,
                (At::QuoteInQuoted, b'"') => At::Quoted,
                (_, b',' | b'\n') => At::FieldStart,
                _ => At::Plain,
            };
        }
        let n = buf.len();
        input.consume(n);
    }
    if at == At::Quoted {
        return Err(ShapeError::Bad(format!(
            "line {opened}: a quoted field opens here and never closes, so every line after it would be read as \
             part of it; close the quote (a quote inside a quoted field is written \"\")"
        )));
    }
    Ok(())
}

fn parse(
    input: impl std::io::Read,
    breaks: &RefCell<Breaks>,
    shown: &str,
    mut each: impl FnMut(Line),
) -> Result<(), CsvError> {
    let malformed = |problems: String| CsvError::Malformed { path: shown.to_string(), problems };
    let line_at = |pos: Option<&::csv::Position>| breaks.borrow_mut().line_at(pos);
    let describe = |e: &::csv::Error| format!("line {}: {e}", line_at(e.position()));
    let mut reader = ::csv::ReaderBuilder::new().flexible(true).has_headers(false).from_reader(input);
    let mut records = reader.byte_records();
    let header: Vec<String> = loop {
        match records.next() {
            None => return Ok(()),
            Some(Err(e)) => return Err(malformed(describe(&e))),
            Some(Ok(r)) if is_blank(&r) => continue,
            Some(Ok(r)) => {
                let line = line_at(r.position());
                let fields =
                    text_fields(&r).ok_or_else(|| malformed(format!("line {line}: the header is not UTF-8 text")))?;
                break fields.iter().map(|h| column_name(h)).collect();
            }
        }
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(malformed(format!("the column {dup:?} appears twice in the header")));
    }
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let number = line_at(e.position());
                each(Line { number, fields: Map::new(), problem: Some(describe(&e)) });
                continue;
            }
        };
        if is_blank(&record) {
            continue;
        }
        let number = line_at(record.position());
        let texts = text_fields(&record);
        // A quoted field holding line breaks makes several lines one row: almost always a stray quote that
        // closes lines later. Never merged silently: the row fails, naming the lines it swallowed.
        let breaks = record.iter().map(|f| f.iter().filter(|b| **b == b'\n').count() as u64).sum::<u64>();
        let problem = match &texts {
            _ if breaks > 0 => Some(format!(
                "lines {number}-{}: a quoted field spans {} lines, so they would be read as one row; close the quote \
                 on the line it opens (a quote inside a quoted field is written \"\")",
                number + breaks,
                breaks + 1
            )),
            None => Some(format!("line {number}: not UTF-8 text (save the file as UTF-8)")),
            Some(f) if f.len() != header.len() => {
                Some(format!("line {number}: {} fields, but the header has {}", f.len(), header.len()))
            }
            Some(_) => None,
        };
        let fields = match (&problem, texts) {
            (None, Some(f)) => {
                header.iter().cloned().zip(f.into_iter().map(|v| Value::String(restore(v.trim())))).collect()
            }
            _ => Map::new(),
        };
        each(Line { number, fields, problem });
    }
    Ok(())
}

fn text_fields(r: &::csv::ByteRecord) -> Option<Vec<String>> {
    r.iter().map(|f| String::from_utf8(f.to_vec()).ok()).collect()
}

fn is_blank(r: &::csv::ByteRecord) -> bool {
    r.iter().all(|f| f.iter().all(u8::is_ascii_whitespace))
}

/// A cell a spreadsheet would not run as a formula: a leading `= + - @` (or tab/CR) gets a `'` in front. A plain
/// number (`-5`, `+1.5e3`) is left as it is: a spreadsheet reads it as that number, never as a formula.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if !is_plain_number(cell) => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// A sign, digits with at most one point, and an optional exponent: nothing else (`-inf`, `-1+2` are not).
fn is_plain_number(cell: &str) -> bool {
    let unsigned = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            (digits(whole) || whole.is_empty()) && (digits(fraction) || fraction.is_empty()) && mantissa.len() > 1
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// A cell as it was before `neutralise`: what steward writes, it reads back unchanged.
fn restore(cell: &str) -> String {
    match cell.strip_prefix('\'') {
        Some(rest) if neutralise(rest) == cell => rest.to_string(),
        _ => cell.to_string(),
    }
}

/// Rows of records as CSV text, scrubbed of secrets; the columns are the union of the records' keys in table order (user records
/// lead with login, email…), or exactly `columns` when given. Nested values are written as JSON.
pub fn to_csv_string(rows: &[Value], columns: Option<&[String]>) -> Result<String, ::csv::Error> {
    let columns = match columns {
        Some(c) => c.to_vec(),
        None => super::table::ordered_keys(rows.iter()),
    };
    // No rows and no columns named: nothing to write (not a header of one empty column, `""`).
    if columns.is_empty() {
        return Ok(String::new());
    }
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(header_cells(&columns))?;
    for row in rows {
        w.write_record(row_cells(row, &columns))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    // Every cell is a `String`: the bytes are UTF-8.
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// One row as CSV text, cells as `to_csv_string` writes them, after the header when `header` is given: for
/// rows printed as they come.
pub fn row_text(header: Option<&[String]>, row: &Value, columns: &[String]) -> String {
    let mut w = ::csv::WriterBuilder::new().buffer_capacity(512).from_writer(Vec::new());
    let written = header
        .map_or(Ok(()), |h| w.write_record(header_cells(h)))
        .and_then(|_| w.write_record(row_cells(row, columns)));
    match (written, w.into_inner()) {
        // Every cell is a `String`: the bytes are UTF-8.
        (Ok(()), Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// Header cells come from data too (a server's field names), so they are neutralised like the rest.
fn header_cells(columns: &[String]) -> Vec<String> {
    columns.iter().map(|c| neutralise(&redact(c))).collect()
}

fn row_cells(row: &Value, columns: &[String]) -> Vec<String> {
    columns.iter().map(|c| neutralise(&redact(&super::table::cell_of(row, c)))).collect()
}

pub fn write_csv(path: &Path, rows: &[Value], columns: Option<&[String]>) -> Result<usize, CsvError> {
    let shown = path.display().to_string();
    let text =
        to_csv_string(rows, columns).map_err(|e| CsvError::Write { path: shown.clone(), message: e.to_string() })?;
    crate::files::write(path, text).map_err(|e| CsvError::Write { path: shown, message: e.to_string() })?;
    Ok(rows.len())
}

/// A CSV file written a row at a time, cells as `write_csv` writes them: for listings and results too large
/// to hold, and for results that must be on disk as they come.
pub struct CsvSink {
    writer: ::csv::Writer<std::io::BufWriter<std::fs::File>>,
    columns: Vec<String>,
    path: String,
    rows: usize,
}

impl CsvSink {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path, columns: Vec<String>) -> Result<Self, CsvError> {
        let shown = path.display().to_string();
        let file =
            crate::files::create(path).map_err(|e| CsvError::Write { path: shown.clone(), message: e.to_string() })?;
        let mut sink = CsvSink {
            writer: ::csv::Writer::from_writer(std::io::BufWriter::new(file)),
            columns,
            path: shown,
            rows: 0,
        };
        if !sink.columns.is_empty() {
            let header = header_cells(&sink.columns);
            sink.writer.write_record(header).map_err(|e| sink.failed(e))?;
        }
        Ok(sink)
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn write(&mut self, row: &Value) -> Result<(), CsvError> {
        let cells = row_cells(row, &self.columns);
        self.writer.write_record(cells).map_err(|e| self.failed(e))?;
        self.rows += 1;
        Ok(())
    }

    /// Pushes what is written so far to the file (results a crash must not lose).
    pub fn flush(&mut self) -> Result<(), CsvError> {
        self.writer.flush().map_err(|e| self.failed(e))
    }

    /// Flushes and closes the file; the number of rows written.
    pub fn finish(mut self) -> Result<usize, CsvError> {
        self.flush()?;
        Ok(self.rows)
    }

    fn failed(&self, e: impl std::fmt::Display) -> CsvError {
        CsvError::Write { path: self.path.clone(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Result<Vec<Map<String, Value>>, CsvError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leavers.csv");
        std::fs::write(&p, text).unwrap();
        read_csv(&p)
    }

    #[test]
    fn handles_quotes_crlf_blank_lines_and_header_case() {
        let rows = read("Login,Reason\r\n\r\nbob,\"left, for good\"\r\n\"ann\",moved\r\n\r\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["login"], "bob");
        assert_eq!(rows[0]["reason"], "left, for good");
        assert_eq!(rows[1]["login"], "ann");
    }

    #[test]
    fn an_unterminated_quote_is_named_by_its_line_not_swallowed() {
        let e = read("login,reason\nann,moved\nbob,\"left\ncarol,x\ndave,y\n").unwrap_err().to_string();
        assert!(e.contains("line 3: a quoted field opens here and never closes"), "{e}");
        // Doubled quotes inside a quoted field are a quote.
        let rows = read("login,reason\nann,\"two \"\"quoted\"\"\"\nbob,x\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["reason"], "two \"quoted\"");
        // A quote inside a plain field is text, as the parser reads it.
        assert_eq!(read("login,reason\nann,27\" screen\nbob,x\n").unwrap()[0]["reason"], "27\" screen");
    }

    #[test]
    fn a_line_past_the_cap_is_named_before_the_file_is_held() {
        let huge = format!("login,reason\nann,x\nbob,{}\n", "y".repeat(MAX_LINE_BYTES + 10));
        let e = read(&huge).unwrap_err().to_string();
        assert!(e.contains("line 3 is longer than 1 MB"), "{e}");
    }

    #[test]
    fn line_numbers_stay_right_past_blank_lines_and_multi_line_fields() {
        let lines = {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.csv");
            std::fs::write(&p, "login,reason\n\nann,\"a\nb\"\n\n\nbob\ncarol,z\n").unwrap();
            read_lines(&p).unwrap()
        };
        let numbers: Vec<u64> = lines.iter().map(|l| l.number).collect();
        assert_eq!(numbers, [3, 7, 8]);
        assert!(lines[0].problem.as_deref().unwrap_or_default().starts_with("lines 3-4:"), "{lines:?}");
        assert!(lines[1].problem.as_deref().unwrap_or_default().starts_with("line 7:"), "{lines:?}");
    }

    /// The reported case: a quote that closes a few lines later swallowed those rows ("2 rows, 0 failed").
    #[test]
    fn a_quoted_field_that_closes_lines_later_fails_its_row_naming_the_lines() {
        let text = "login,reason\nann,\"left\nbob,x\ncarol,y\"\ndave,z\n";
        let e = read(text).unwrap_err().to_string();
        assert!(e.contains("lines 2-4: a quoted field spans 3 lines"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, text).unwrap();
        let lines = read_lines(&p).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].problem.is_some() && lines[1].problem.is_none(), "{lines:?}");
        assert_eq!(lines[1].number, 5);
    }

    #[test]
    fn the_header_alone_names_the_columns_as_rows_are_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let path = at("a.csv", b"\xef\xbb\xbf\r\n  \n Login ,\"E-mail, work\",'=Reason\nann,a@x,left\n");
        assert_eq!(header(&path).unwrap(), ["login", "e-mail, work", "=reason"]);
        let row = read_csv(&path).unwrap();
        let keys: Vec<&String> = row[0].keys().collect();
        assert_eq!(keys, ["login", "e-mail, work", "=reason"], "read_csv keys rows by the same names");
        assert!(header(&at("empty.csv", b"")).unwrap().is_empty());
        // Only the start of the file is read: a first line longer than any line may be is not a header.
        let endless = at("endless.csv", &vec![b'x'; MAX_LINE_BYTES + 10]);
        assert_eq!(header(&endless).unwrap().len(), 1);
        assert!(header(&dir.path().join("missing.csv")).unwrap_err().to_string().contains("missing.csv"));
    }

    #[test]
    fn header_cells_are_neutralised_like_data_cells() {
        let text = to_csv_string(&[json!({"=cmd|' /C calc'!A0": "x"})], None).unwrap();
        assert!(text.starts_with("'=cmd"), "{text}");
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
        let e = read("login,reason\nbob,x\nann\ncid,a,b\n").unwrap_err().to_string();
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
    fn lenient_reading_keeps_good_lines_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, b"login,reason\nbob,x\nann\nc\xffd,y\n\ncid,z\n").unwrap();
        let lines = read_lines(&p).unwrap();
        let summary: Vec<(u64, bool)> = lines.iter().map(|l| (l.number, l.problem.is_none())).collect();
        assert_eq!(summary, vec![(2, true), (3, false), (4, false), (6, true)]);
        assert_eq!(lines[3].fields["login"], "cid");
        assert!(lines[2].problem.as_ref().unwrap().contains("UTF-8"));
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
        let text = to_csv_string(&[json!({"login": "=HYPERLINK(\"x\")", "n": "-1", "ok": "plain"})], None).unwrap();
        assert!(text.contains("'=HYPERLINK"), "{text}");
        assert!(text.contains(",plain"), "{text}");
        // A number is a number, in a spreadsheet too; a sign in front of anything else is neutralised.
        for number in ["-1", "-5", "+3", "-1.5", "-.5", "-2e10", "+1.5E-3"] {
            assert_eq!(neutralise(number), number);
        }
        for formula in ["-1+2", "-inf", "-NaN", "-", "+", "-.", "-1e", "-2e+", "-1-1", "+A1", "-5,cmd|' /C calc'!A0"] {
            assert_eq!(neutralise(formula), format!("'{formula}"), "{formula}");
        }
    }

    #[test]
    fn what_steward_writes_it_reads_back_unchanged() {
        let rows = [json!({"login": "=1+1", "note": "-5", "at": "@home", "quote": "'kept", "plain": "x"})];
        let text = to_csv_string(&rows, None).unwrap();
        let back = read(&text).unwrap();
        assert_eq!(Value::Object(back[0].clone()), rows[0], "{text}");
        assert_eq!(to_csv_string(&[], None).unwrap(), "", "no rows, no columns: nothing, not a blank header");
    }
}
