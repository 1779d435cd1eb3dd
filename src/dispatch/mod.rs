//! The one path every action takes: support check, protection, confirmation, dry run, durable intent,
//! the request, the outcome. Backends only execute; everything around them happens here, once.

pub mod bulk;
mod connection;
pub mod deprovision;
pub mod guard;
pub mod listing;
pub mod people;
pub mod reconcile;
pub mod recorder;
mod resume;
mod send;
mod single;
pub mod timed;

use crate::audit::vocab::Status;
use crate::audit::{AuditTarget, Event, RunInfo};
use crate::backends::{Action, Outcome};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::interrupt::Interrupt;
use crate::redact::redact;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use bulk::{BulkItem, BulkReporter, ItemStatus};
pub use connection::{ActionError, Connection, TokenRecord};
pub use guard::Guard;
use recorder::Recorder;

/// Why nobody could be asked (no terminal, an answer that could not be read): the question stands unanswered,
/// which every caller takes as a refusal.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(pub String);

/// Asks the person at the keyboard; injected so the REPL, scripts and cron jobs share one dispatch path.
pub trait Prompt: Send + Sync {
    /// `Ok(true)` to go ahead; `Err` explains why nobody could be asked.
    fn confirm(&self, question: &str) -> Result<bool, NoAnswer>;
}

/// Run-wide switches from the command line and config.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub dry_run: bool,
    pub assume_yes: bool,
    /// A bulk job changing more accounts than this asks first (or needs `--yes`).
    pub max_changes: usize,
}

impl Default for Mode {
    fn default() -> Self {
        Mode { dry_run: false, assume_yes: false, max_changes: 50 }
    }
}

pub use crate::audit::query::{DoneSet, OpenIntents};

pub struct Dispatcher {
    recorder: Recorder,
    prompt: Arc<dyn Prompt>,
    reporter: Arc<dyn BulkReporter>,
    mode: Mode,
    interrupt: Interrupt,
    /// What the job's earlier runs did, when this run resumes it.
    earlier: Earlier,
    bulk_failed: AtomicUsize,
    budget: Budget,
    /// Listings still reading in the background; the run's end waits for each to put itself on record.
    streams: Arc<listing::OpenStreams>,
    /// Who started the run and how (for evidence a reviewer reads).
    run_info: RunInfo,
}

/// What the job's earlier runs did: what they finished (not done again) and what they left in flight (settled as
/// the resume reads each target), keyed by profile, operation and account.
#[derive(Default)]
struct Earlier {
    done: DoneSet,
    open: OpenIntents,
    /// Settled `unknown` by an earlier resume: never sent again blind.
    unknown: DoneSet,
}

/// The run's action budget: live changes made or started, and whether going past `max_changes` was confirmed.
#[derive(Default)]
struct Budget {
    changes: AtomicUsize,
    confirmed: std::sync::atomic::AtomicBool,
    /// The run asked once for everything it will change (`confirm_plan`): its jobs ask nothing more.
    planned: std::sync::atomic::AtomicBool,
}

impl Dispatcher {
    /// The run's stop (Ctrl-C, `--timeout`), for work outside dispatch that must end with the run.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    pub fn new(
        target: AuditTarget,
        syslog: Option<std::path::PathBuf>,
        run_info: RunInfo,
        prompt: Arc<dyn Prompt>,
        reporter: Arc<dyn BulkReporter>,
        mode: Mode,
        interrupt: Interrupt,
    ) -> Self {
        Dispatcher {
            recorder: Recorder::new(target, syslog, run_info.clone(), mode.dry_run),
            prompt,
            reporter,
            mode,
            interrupt,
            earlier: Earlier::default(),
            bulk_failed: AtomicUsize::new(0),
            budget: Budget::default(),
            streams: Arc::default(),
            run_info,
        }
    }

    /// Who started the run and how: OS user, host, command, the run it resumes.
    pub fn run_info(&self) -> &RunInfo {
        &self.run_info
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn prompt(&self) -> &dyn Prompt {
        self.prompt.as_ref()
    }

    /// Names the script this run executes, for the `runs` row (written with the first event).
    pub fn describe_script(&self, path: &str, sha256: &str) {
        self.recorder.describe_script(path, sha256);
    }

    /// Makes this run a continuation of `run`: what that chain of runs finished is not done again.
    /// The run this process resumes the job of, if it is a resume.
    pub fn resumed_from(&self) -> Option<i64> {
        self.run_info.resumed_from
    }

    pub fn resume(&mut self, run: i64, done: DoneSet, open: OpenIntents, unknown: DoneSet) {
        self.earlier = Earlier { done, open, unknown };
        self.run_info.resumed_from = Some(run);
        self.recorder.resumes(run);
    }

    /// Takes the lock of a job for this process (see `AuditWriter::hold_job`); `false` when another has it.
    pub fn hold_job(&self, first_run: i64) -> Result<bool, crate::audit::writer::WriteError> {
        self.recorder.hold_job(first_run)
    }

    /// The run id, if this invocation recorded anything.
    pub fn run_id(&self) -> Option<i64> {
        self.recorder.run_id()
    }

    /// Bulk items that failed so far in this run (they decide exit code 3).
    pub fn bulk_failures(&self) -> usize {
        self.bulk_failed.load(Ordering::SeqCst)
    }

    /// An observer for a profile's HTTP client: each pause the service imposes becomes a note row in the log.
    pub fn pause_recorder(&self, profile: &str, kind: &'static str, base_url: &str) -> crate::http::PauseObserver {
        let (writer, profile, base_url) = (self.recorder.writer().clone(), profile.to_string(), base_url.to_string());
        let (reporter, note) = (self.reporter.clone(), self.recorder.note("rate_limit", Status::Paused, ""));
        Arc::new(move |wait: std::time::Duration, why: &str| {
            reporter.paused(&profile, wait, why);
            let e = Event {
                profile: profile.clone(),
                kind: kind.to_string(),
                base_url: base_url.clone(),
                error: redact(why),
                duration_ms: Some(wait.as_millis() as i64),
                ..note.clone()
            };
            // Not awaited: the writer commits it in order, before the run's end.
            drop(writer.submit(vec![e]));
        })
    }

    /// Records that the script stopped before its end (Ctrl-C, --timeout, an engine limit), with why.
    pub async fn script_aborted(&self, why: &str) {
        self.recorder.record_after(vec![self.recorder.note("script", Status::Aborted, why)]).await;
    }

    /// Records how the run ended (only when it recorded anything).
    pub fn finish(&self, exit_status: i32) {
        // A listing whose reader is gone stops at once; the bound is for one stuck in a request.
        self.streams.wait(std::time::Duration::from_secs(5));
        self.recorder.finish(exit_status);
    }

    /// The audit log refused a write in this run: nothing more is sent.
    pub fn audit_failed(&self) -> bool {
        self.recorder.failed()
    }

    /// For a command that plans all it will change before the first change (`steward undo`): one question for
    /// the whole plan (`--yes` answers it; without a terminal it is refused before anything is sent), its
    /// `changes` counted against `max_changes` at once; the jobs that carry it out ask nothing more.
    /// `what` names the plan in a line, for the refusal when nobody can answer.
    pub fn confirm_plan(&self, question: &str, what: &str, changes: usize) -> Result<(), ApiError> {
        if changes == 0 || self.mode.dry_run {
            return Ok(());
        }
        if !self.mode.assume_yes {
            self.ask_job(question, format!("{what}: {changes} changes, asked about as a whole before the first"))?;
        }
        self.budget.changes.fetch_add(changes, Ordering::SeqCst);
        self.budget.confirmed.store(true, Ordering::SeqCst);
        self.budget.planned.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// A plan whose policy declares it may run unattended (`unattended = true`, within its own guards): counted
    /// like a confirmed one, asked about by no one. The policy's guards, checked before, are its limits.
    pub fn accept_declared_plan(&self, changes: usize) {
        self.budget.changes.fetch_add(changes, Ordering::SeqCst);
        self.budget.confirmed.store(true, Ordering::SeqCst);
        self.budget.planned.store(true, Ordering::SeqCst);
    }

    /// Records a decision of this run's own for later runs to read back (a policy's plan): a note with a target
    /// and parameters (serialized straight to text: a plan of 200,000 steps builds no tree), durable before this
    /// returns.
    pub async fn record_note(
        &self,
        op: &str,
        target: &str,
        params: &impl serde::Serialize,
        status: Status,
        why: &str,
    ) -> Result<(), ApiError> {
        let params = exact_json(params).map_err(|e| ApiError::invalid(format!("{op}: {e}")))?;
        let event = Event { target: target.to_string(), params, ..self.recorder.note(op, status, why) };
        self.recorder.record(vec![event]).await.map(|_| ())
    }

    /// Counts changes against the run's action budget (`max_changes`); past it, asks once, or refuses.
    fn spend(&self, changes: usize) -> Result<(), ApiError> {
        let before = self.budget.changes.fetch_add(changes, Ordering::SeqCst);
        if self.mode.assume_yes
            || self.mode.dry_run
            || before + changes <= self.mode.max_changes
            || self.budget.confirmed.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        let question =
            format!("this run has made {before} changes and max_changes is {}; go on?", self.mode.max_changes);
        match self.prompt.confirm(&question) {
            Ok(true) => {
                self.budget.confirmed.store(true, Ordering::SeqCst);
                Ok(())
            }
            Ok(false) => Err(ApiError::new(ErrorKind::Cancelled, "stopped at the action budget (declined)")),
            Err(why) => Err(ApiError::new(
                ErrorKind::Cancelled,
                format!("the run reached max_changes = {}: {why}", self.mode.max_changes),
            )
            .with_hint("check the script with --dry-run, then pass --yes (or raise max_changes in the config)")),
        }
    }

    /// A read the pipeline makes on its own account (the caller's identity, a target's state), given up when
    /// the run is stopped (Ctrl-C, `--timeout`): nothing is in flight on the target's account yet.
    async fn unless_stopped<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        // The stop first: a read polled after it would be sent (see `send_recorded`).
        tokio::select! {
            biased;
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, self.interrupt.reason())),
            r = work => r,
        }
    }

    /// A stopped run (Ctrl-C, --timeout) starts nothing new, not even a read: what it started is settled and
    /// recorded, and the script may only write down what it has.
    fn refuse_when_stopped(&self) -> Result<(), ApiError> {
        match self.interrupt.is_raised() {
            true => Err(ApiError::new(
                ErrorKind::Cancelled,
                format!("{}: this run sends nothing more", self.interrupt.reason()),
            )),
            false => Ok(()),
        }
    }
}

/// Why a resume settled an open intent the way it did.
/// How every refusal for another process's account begins (a job's summary counts them by it).
pub(crate) const BUSY: &str = "another steward process";
pub(crate) use resume::{SETTLED_APPLIED, SETTLED_RESENT};

/// What a script is told of a change that needed nothing: the target already was in the state asked for.
fn noop_answer(conn: &Connection, action: &Action, note: &str) -> Value {
    json!({"ok": true, "noop": true, "op": action.op.name(), "target": action.target, "profile": conn.profile, "note": note})
}

/// A backend's outcome as dispatch passes it on: "already in that state" is a noop answer.
fn answer(conn: &Connection, action: &Action, outcome: Result<Outcome, ApiError>) -> Result<Value, ApiError> {
    outcome.map(|o| match o {
        Outcome::Done(v) => v,
        Outcome::Already(said) => noop_answer(conn, action, &format!("nothing changed: the service says {said}")),
    })
}

/// Is this answer a noop (nothing needed doing)?
pub(crate) fn is_noop(answer: &Value) -> bool {
    answer.get("noop").and_then(Value::as_bool) == Some(true)
}

/// Crash-test hook: `STEWARD_FAILPOINT=NAME:N` aborts the process (like kill -9) the Nth time NAME is passed.
/// Unset, it costs one environment lookup per action.
fn failpoint(name: &str) {
    static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(spec) = std::env::var("STEWARD_FAILPOINT") else { return };
    let Some((point, n)) = spec.split_once(':') else { return };
    if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= n.parse().unwrap_or(u64::MAX) {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests;

/// `value` as JSON text in a buffer of exactly its size: a plan's record can be tens of megabytes, and a buffer
/// grown by doubling would hold up to twice that.
fn exact_json(value: &impl serde::Serialize) -> serde_json::Result<String> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut text = Vec::with_capacity(count.0);
    serde_json::to_writer(&mut text, value)?;
    // serde_json writes UTF-8.
    String::from_utf8(text).map_err(|e| serde::ser::Error::custom(e.to_string()))
}
