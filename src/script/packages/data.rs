//! Helpers for scripts: CSV files, tables, JSON, dates, environment, confirmation.

use crate::backends::model::User;
use crate::dates::{parse_date, rfc3339};
use crate::output;
use crate::script::bridge::Host;
use crate::script::docs::FnDoc;
use crate::script::listing::Users;
use crate::script::types::{invalid, to_dynamic, to_json, ScriptResult};
use chrono::Utc;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;
use std::path::Path;
use std::rc::Rc;

pub const DOCS: &[FnDoc] = &[
    FnDoc { name: "read_csv", signature: "read_csv(path) / read_csv(path, #{lenient: true})", summary: "The rows of a CSV file as maps keyed by its lower-cased header; a bad line fails the read, naming every bad line. Lenient: every row gets `_line`, bad ones `_error`, and bulk verbs report those as failed.", example: r#"write_csv("leavers.csv", [#{login: "user0001"}]); read_csv("leavers.csv")"#, method: false },
    FnDoc { name: "csv_columns", signature: "csv_columns(path)", summary: "The column names of a CSV file's header, lower-cased as read_csv keys its rows; only the header is read, so it is cheap on a file of any size.", example: r#"write_csv("leavers.csv", [#{login: "user0010", reason: "left"}]); "reason" in csv_columns("leavers.csv")"#, method: false },
    FnDoc { name: "write_csv", signature: "write_csv(path, rows) / write_csv(path, rows, columns)", summary: "Writes records as CSV, optionally just the named columns in that order (formula-like cells are neutralised); returns the row count. Given `h.users()`, it writes each page as it arrives (an export of any size in flat memory; the first page's fields are the columns unless named).", example: r#"write_csv("admins.csv", connect("github").list_users(#{admin: true}))"#, method: false },
    FnDoc { name: "table", signature: "table(rows)", summary: "Renders records as a text table.", example: r#"print(table(connect("github").list_users(#{admin: true})))"#, method: false },
    FnDoc { name: "json", signature: "json(value)", summary: "A value as pretty JSON text.", example: r#"json(#{login: "bob", admin: false})"#, method: false },
    FnDoc { name: "parse_date", signature: "parse_date(text)", summary: "A date or time as people type it (2025-02-21, \"2025-02-21 14:30\", RFC 3339, yesterday, 7d, 12h) as RFC 3339 UTC text, which compares correctly as a string.", example: r#"parse_date("2025-02-21")"#, method: false },
    FnDoc { name: "days_ago", signature: "days_ago(n)", summary: "The time n days before now, as RFC 3339 UTC text.", example: "days_ago(90)", method: false },
    FnDoc { name: "now", signature: "now()", summary: "The current time as RFC 3339 UTC text.", example: "now()", method: false },
    FnDoc { name: "env", signature: "env(name)", summary: "An environment variable's value, or () when unset.", example: r#"env("HOME")"#, method: false },
    FnDoc { name: "arguments", signature: "arguments(ARGS, #{name: \"text\" | \"flag\" | \"required text\" | \"text = VALUE\", …})", summary: "The script's --arg values, checked against the ones it declares: one it does not take is refused (naming the closest it does), a flag is true or false (yes/no) and comes back as a boolean (false when not given), a `required` one not given is refused, one with `= VALUE` takes that value when not given. Stock scripts start with it, so a typo never acts as if the argument were missing.", example: r#"arguments(#{}, #{csv: "text", apply: "flag"})"#, method: false },
    FnDoc { name: "run_file", signature: "run_file(path)", summary: "The path with this run's id before its extension (off.csv → off-run12.csv), so each run's report is kept and no run writes over another's.", example: r#"run_file("offboard.csv")"#, method: false },
    FnDoc { name: "check_output", signature: "check_output(path)", summary: "Fails, naming the path and why, unless a file can be written there (its folder exists and takes a new file; not one of steward's own files): call it before acting, so a job never ends unable to write its report.", example: r#"check_output("offboard.csv")"#, method: false },
    FnDoc { name: "confirm", signature: "confirm(question)", summary: "Asks yes/no at the terminal; true under --yes; false when nobody can be asked.", example: r#"if confirm("Proceed?") { "going ahead" } else { "stopped" }"#, method: false },
];

pub fn register(engine: &mut Engine, host: Rc<Host>) {
    engine.register_fn("csv_columns", |path: &str| -> ScriptResult<Array> {
        let names = output::csv::header(Path::new(path)).map_err(|e| invalid(e.to_string()))?;
        Ok(names.into_iter().map(Dynamic::from).collect())
    });
    engine.register_fn("read_csv", |path: &str| read_csv(path, false));
    engine.register_fn("read_csv", |path: &str, opts: Map| -> ScriptResult<Array> {
        read_csv(path, opts.get("lenient").and_then(|v| v.as_bool().ok()).unwrap_or(false))
    });
    engine.register_fn("write_csv", |path: &str, rows: Array| write_csv(path, rows, None));
    engine.register_fn("write_csv", |path: &str, rows: Array, columns: Array| {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        write_csv(path, rows, Some(&columns))
    });
    engine.register_fn("write_csv", |path: &str, users: Users| write_stream(path, users, None));
    engine.register_fn("write_csv", |path: &str, users: Users, columns: Array| {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        write_stream(path, users, Some(columns))
    });
    engine
        .register_fn("table", |rows: Dynamic| -> ScriptResult<String> { Ok(output::table::render(&to_json(&rows)?)) });
    engine.register_fn("json", |value: Dynamic| -> ScriptResult<String> {
        serde_json::to_string_pretty(&to_json(&value)?).map_err(|e| invalid(e.to_string()))
    });
    engine.register_fn("parse_date", |text: &str| -> ScriptResult<String> {
        parse_date(text).map(rfc3339).map_err(|e| invalid(e.to_string()))
    });
    engine.register_fn("days_ago", |n: i64| rfc3339(Utc::now() - chrono::Duration::days(n)));
    engine.register_fn("now", || rfc3339(Utc::now()));
    engine.register_fn("env", |name: &str| -> Dynamic {
        std::env::var(name).map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    });
    let h = host.clone();
    engine.register_fn("run_file", move |path: &str| -> String {
        let tag = match h.dispatcher.run_id() {
            Some(run) => format!("run{run}"),
            None => Utc::now().format("%Y%m%dT%H%M%S").to_string(),
        };
        crate::files::tagged(Path::new(path), &tag).display().to_string()
    });
    engine.register_fn("arguments", |given: Map, spec: Map| -> ScriptResult<Map> {
        crate::script::arguments::check(&given, &spec).map_err(|message| {
            let mut m = Map::new();
            m.insert("kind".into(), "usage".into());
            m.insert("message".into(), message.into());
            Box::new(rhai::EvalAltResult::ErrorRuntime(m.into(), rhai::Position::NONE))
        })
    });
    engine.register_fn("check_output", |path: &str| -> ScriptResult<()> {
        crate::files::check_writable(Path::new(path)).map_err(|e| invalid(format!("cannot write {path}: {e}")))
    });
    let h = host;
    engine.register_fn("confirm", move |question: &str| -> ScriptResult<bool> {
        if h.dispatcher.mode().assume_yes {
            return Ok(true);
        }
        h.dispatcher.prompt().confirm(question).or_else(|why| {
            output::note(&format!("{question} no ({why})"));
            Ok::<bool, Box<rhai::EvalAltResult>>(false)
        })
    });
    // print/debug go to stdout and stderr, which scrub secrets.
    engine.on_print(output::line);
    engine.on_debug(|text, source, pos| {
        let place = match source {
            Some(s) => format!("{s}:{pos}"),
            None => format!("{pos}"),
        };
        output::note(&format!("[debug {place}] {text}"));
    });
}

/// The rows of a CSV file as script maps, each made as its line is parsed. Lenient: every line comes back,
/// numbered (`_line`), a malformed one marked (`_error`) and noted; strict: any bad line fails the read.
fn read_csv(path: &str, lenient: bool) -> ScriptResult<Array> {
    let fail = |e: output::csv::CsvError| invalid(e.to_string());
    let mut rows = Array::new();
    if !lenient {
        output::csv::read_rows(Path::new(path), |row| rows.push(to_dynamic(Value::Object(row)))).map_err(fail)?;
        return Ok(rows);
    }
    output::csv::each_line(Path::new(path), |line| {
        let mut fields = line.fields;
        fields.insert("_line".into(), Value::from(line.number));
        if let Some(p) = line.problem {
            output::note(&format!("{path}: {p}"));
            fields.insert("_error".into(), Value::String(p));
        }
        rows.push(to_dynamic(Value::Object(fields)));
    })
    .map_err(fail)?;
    Ok(rows)
}

fn write_csv(path: &str, rows: Array, columns: Option<&[String]>) -> ScriptResult<i64> {
    let rows = match to_json(&rows.into())? {
        Value::Array(rows) => rows,
        _ => return Err(invalid("write_csv needs an array of maps")),
    };
    let n = output::csv::write_csv(Path::new(path), &rows, columns).map_err(|e| invalid(e.to_string()))?;
    Ok(n as i64)
}

/// `write_csv(path, h.users())`: each page written as it comes, so an export of any size holds two pages. Without
/// columns named, the first page's fields are the columns.
fn write_stream(path: &str, users: Users, columns: Option<Vec<String>>) -> ScriptResult<i64> {
    let fail = |e: output::csv::CsvError| invalid(e.to_string());
    let mut sink: Option<output::csv::CsvSink> = None;
    if let Some(columns) = columns {
        sink = Some(output::csv::CsvSink::create(Path::new(path), columns).map_err(fail)?);
    }
    while let Some(page) = users.next_page() {
        let page: Vec<Value> = page?.into_iter().map(User::into_value).collect();
        let out = match sink.as_mut() {
            Some(out) => out,
            None => sink.insert(
                output::csv::CsvSink::create(Path::new(path), output::table::ordered_keys(page.iter()))
                    .map_err(fail)?,
            ),
        };
        for user in &page {
            out.write(user).map_err(fail)?;
        }
    }
    match sink {
        Some(out) => Ok(out.finish().map_err(fail)? as i64),
        // No users and no columns: an empty file, as write_csv of an empty array writes.
        None => crate::files::write(Path::new(path), "")
            .map(|_| 0)
            .map_err(|e| invalid(format!("cannot write {path}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_comparable_utc_text() {
        assert_eq!(rfc3339(parse_date("2025-02-21").unwrap()), "2025-02-21T00:00:00Z");
        assert_eq!(rfc3339(parse_date("2025-02-21T10:00:00+02:00").unwrap()), "2025-02-21T08:00:00Z");
        assert!(parse_date("21/02/2025").unwrap_err().to_string().contains("YYYY-MM-DD"));
    }
}
