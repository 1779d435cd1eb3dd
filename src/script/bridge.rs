//! The bridge from synchronous Rhai to the async world: every admin call blocks on the shared runtime here,
//! and nowhere else.

use super::types::{action_error, invalid, to_dynamic, ScriptResult};
use crate::backends::{Action, Op};
use crate::connections::Connections;
use crate::dispatch::bulk::{BulkResult, ItemStatus};
use crate::dispatch::{BulkItem, Connection, Dispatcher};
use crate::http::Hold;
use rhai::Dynamic;
use serde_json::Value;
use std::sync::Arc;

/// What registered functions need from the running steward.
pub struct Host {
    pub runtime: tokio::runtime::Handle,
    pub dispatcher: Arc<Dispatcher>,
    pub connections: Arc<Connections>,
    /// The audit log `audit(filter)` reads.
    pub audit_target: crate::audit::AuditTarget,
}

impl Host {
    /// Sends one action through dispatch and waits for it (Ctrl-C cancels it inside dispatch).
    pub fn perform(&self, conn: &Connection, op: Op, target: Option<String>, params: Value) -> ScriptResult<Dynamic> {
        let action = Action::new(op, target, params);
        match self.runtime.block_on(self.dispatcher.perform(conn, action)) {
            Ok(value) => Ok(to_dynamic(value)),
            Err(e) => Err(action_error(e)),
        }
    }

    /// `h.schedule(at, op, target, opts)`: a change recorded to be made at `at`.
    pub fn schedule(&self, conn: &Connection, op: Op, target: &str, at: &str, params: Value) -> ScriptResult<Dynamic> {
        match self.runtime.block_on(self.dispatcher.schedule(conn, op, target, at, params)) {
            Ok(value) => Ok(to_dynamic(value)),
            Err(e) => Err(invalid(e.to_string())),
        }
    }

    /// Starts a lazy listing of users (see `script::listing`).
    pub fn stream_users(
        &self,
        conn: &Arc<Connection>,
        filter: Value,
        hold: Hold,
    ) -> ScriptResult<super::listing::Users> {
        let pages =
            self.dispatcher.stream_users(&self.runtime, conn.clone(), filter, hold).map_err(|e| action_error(*e))?;
        Ok(super::listing::Users::new(self.runtime.clone(), &conn.profile, pages))
    }

    /// `list_users`: the listing turned into script values a page at a time as it arrives, so the peak is the
    /// list itself and not also the service's JSON of it.
    pub fn list_users(&self, conn: &Arc<Connection>, filter: Value) -> ScriptResult<Dynamic> {
        let users = self.stream_users(conn, filter, Hold::Whole)?;
        let (mut out, mut packer) = (rhai::Array::new(), super::types::RecordPacker::default());
        while let Some(page) = users.next_page() {
            out.extend(page?.into_iter().map(|user| packer.user(user)));
        }
        Ok(out.into())
    }

    /// Sends a bulk action and waits for every item; one result map per item. With `results: PATH` in the
    /// options, each item's result is written to that CSV as it is known instead, and the job's counts come back.
    pub fn perform_all(
        &self,
        conn: &Connection,
        op: Op,
        items: Vec<BulkItem>,
        mut params: Value,
    ) -> ScriptResult<Dynamic> {
        let results_path = match params.as_object_mut().and_then(|p| p.remove("results")) {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(path),
            Some(other) => return Err(invalid(format!("results: a CSV path, not {}", crate::http::json_type(&other)))),
        };
        let Some(path) = results_path else {
            return match self.runtime.block_on(self.dispatcher.perform_all(conn, op, items, params)) {
                Ok(results) => Ok(to_dynamic(serde_json::to_value(results).unwrap_or_default())),
                Err(e) => Err(action_error(e)),
            };
        };
        let file = ResultsFile::create(&path)?;
        let each = |r: &BulkResult| file.write(r);
        let results = self
            .runtime
            .block_on(self.dispatcher.perform_all_telling(conn, op, items, params, Some(&each)))
            .map_err(action_error)?;
        file.finish()?;
        let counts =
            ItemStatus::ALL.map(|status| (status, results.iter().filter(|r| r.status == status).count())).to_vec();
        Ok(summary(&counts, path))
    }

    /// A bulk job over a CSV of any length, its results written to `results` as they are known: read, planned
    /// and carried out in windows of rows (`bulk_input::windows`), so memory stays flat; the job's counts.
    pub fn perform_all_csv(
        &self,
        conn: &Arc<Connection>,
        op: Op,
        csv: &str,
        mut params: Value,
    ) -> ScriptResult<Dynamic> {
        let path = match params.as_object_mut().and_then(|p| p.remove("results")) {
            Some(Value::String(path)) => path,
            _ => return Err(invalid("a job over a CSV file in windows writes its results: #{results: PATH}")),
        };
        let keys = conn.backend.target_keys();
        let (total, emails) = super::bulk_input::survey(csv, keys)?;
        let index = match emails.is_empty() {
            true => None,
            false => {
                let users = self.stream_users(conn, serde_json::json!({"detail": true}), Hold::Walked)?;
                Some(super::bulk_input::EmailIndex::walk(emails, &users)?)
            }
        };
        let mut next = super::bulk_input::windows(csv, keys, index);
        let file = ResultsFile::create(&path)?;
        let each = |r: &BulkResult| file.write(r);
        let job = self.dispatcher.perform_all_windowed(conn, op, (total, &mut next), params, &each);
        let counts = self.runtime.block_on(job).map_err(action_error)?;
        file.finish()?;
        Ok(summary(&counts, path))
    }
}

/// `#{total, ok, noop, …, results}`: a job's counts, and where its results went.
fn summary(counts: &[(ItemStatus, usize)], results: String) -> Dynamic {
    let mut summary = rhai::Map::new();
    summary.insert("total".into(), (counts.iter().map(|(_, n)| *n).sum::<usize>() as i64).into());
    for status in ItemStatus::ALL {
        let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        summary.insert(status.as_str().into(), (n as i64).into());
    }
    summary.insert("results".into(), results.into());
    summary.into()
}

/// A bulk job's results CSV, a row written (and flushed) as each item's result is known.
struct ResultsFile {
    sink: parking_lot::Mutex<crate::output::csv::CsvSink>,
    /// The first write that failed: the job goes on (it cannot be unsent), the script is told at the end.
    failed: parking_lot::Mutex<Option<String>>,
    flushed: parking_lot::Mutex<std::time::Instant>,
    path: String,
}

/// How long a result may wait in memory before the results file gets it.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The columns of a results CSV.
const RESULT_COLUMNS: [&str; 5] = ["line", "target", "status", "http_status", "error"];

impl ResultsFile {
    fn create(path: &str) -> ScriptResult<Self> {
        let columns = RESULT_COLUMNS.iter().map(|c| c.to_string()).collect();
        let sink = crate::output::csv::CsvSink::create(std::path::Path::new(path), columns)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(ResultsFile {
            sink: sink.into(),
            failed: None.into(),
            flushed: std::time::Instant::now().into(),
            path: path.to_string(),
        })
    }

    fn write(&self, result: &BulkResult) {
        let row = serde_json::to_value(result).unwrap_or_default();
        let mut sink = self.sink.lock();
        let mut written = sink.write(&row);
        // On disk within a tenth of a second of being known, without a write to the file per row.
        let mut flushed = self.flushed.lock();
        if written.is_ok() && flushed.elapsed() >= FLUSH_EVERY {
            written = sink.flush();
            *flushed = std::time::Instant::now();
        }
        if let Err(e) = written {
            self.failed.lock().get_or_insert(e.to_string());
        }
    }

    fn finish(self) -> ScriptResult<()> {
        let failed = self.failed.into_inner();
        let finished = self.sink.into_inner().finish();
        match (failed, finished) {
            (None, Ok(_)) => Ok(()),
            (Some(why), _) | (None, Err(crate::output::csv::CsvError::Write { message: why, .. })) => {
                Err(invalid(format!(
                "the job ran to its end, but its results could not all be written to {}: {why}; every outcome is in \
                 the audit log (steward runs show)",
                self.path
            )))
            }
            (None, Err(e)) => Err(invalid(e.to_string())),
        }
    }
}
