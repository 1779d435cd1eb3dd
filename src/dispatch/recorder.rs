//! The audit conversation of one run: the events dispatch writes (intents that claim their account, outcomes,
//! refusals, reads, notes), the outcomes queued and not yet durable, whether the log has failed (then nothing
//! more is sent), the intents of earlier runs settled at resume, and what earlier runs recorded, read back
//! verified. "No durable intent, no request" lives in the callers' use of `claiming`; everything the log is told
//! goes through here.

use super::{is_noop, Connection, BUSY};
use crate::audit::vocab::{Mode as EventMode, Phase, Status};
use crate::audit::writer::{Pending, Slots, WriteError};
use crate::audit::{AuditTarget, AuditWriter, Busy, Event, RunInfo};
use crate::backends::{Action, Backend, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::redact::redact;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub struct Recorder {
    writer: AuditWriter,
    target: AuditTarget,
    /// Every event of a dry run says so.
    dry_run: bool,
    /// Outcomes queued for commit and not yet known to be durable.
    outstanding: Mutex<Vec<Pending>>,
    /// The log refused a write in this run: nothing more is sent.
    failed: AtomicBool,
    /// Reads what earlier runs recorded (the role a user had before termination), opened on first use.
    reader: Mutex<Option<crate::audit::AuditStore>>,
    /// Open intents of earlier runs this run has settled (each gets one outcome, however many jobs look).
    settled: Mutex<HashSet<i64>>,
    /// Errors of the log already said, with how many times each came again (said once, counted at the end).
    said: Mutex<Vec<(String, usize)>>,
}

impl Recorder {
    pub fn new(target: AuditTarget, syslog: Option<std::path::PathBuf>, run_info: RunInfo, dry_run: bool) -> Self {
        Recorder::over(AuditWriter::spawn(target.clone(), syslog, run_info), target, dry_run)
    }

    /// A recorder over a writer already running (tests give one with a fake store).
    pub fn over(writer: AuditWriter, target: AuditTarget, dry_run: bool) -> Self {
        Recorder {
            writer,
            target,
            dry_run,
            outstanding: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            reader: Mutex::new(None),
            settled: Mutex::new(HashSet::new()),
            said: Mutex::new(Vec::new()),
        }
    }

    pub fn writer(&self) -> &AuditWriter {
        &self.writer
    }

    /// An event of `conn`'s profile, as the log keeps it (params scrubbed of secrets). A live intent claims its
    /// account, by the stable id it resolved to, until its outcome is in.
    pub fn event(
        &self,
        conn: &Connection,
        op: Op,
        target: Option<&str>,
        params: &Value,
        phase: Phase,
        status: Status,
    ) -> Event {
        Event {
            profile: conn.profile.clone(),
            kind: conn.backend.kind().to_string(),
            base_url: conn.backend.base_url(),
            identity: conn.known_identity(),
            op: op.name().to_string(),
            target: target.unwrap_or_default().to_string(),
            params: audit_params(params),
            mode: EventMode::of(self.dry_run).as_str().to_string(),
            phase: phase.as_str().to_string(),
            status: status.as_str().to_string(),
            token_source: conn.token.source.clone(),
            token_fp: conn.token.fingerprint.clone(),
            claim: match (phase, target, self.dry_run) {
                (Phase::Intent, Some(t), false) if !t.is_empty() => {
                    format!("{} {}", conn.profile, account_key(conn.backend.as_ref(), t, params))
                }
                _ => String::new(),
            },
            ..Default::default()
        }
    }

    /// A note of the run's own (no profile): a pause, the script's end.
    pub fn note(&self, op: &str, status: Status, why: &str) -> Event {
        Event {
            op: op.into(),
            mode: EventMode::of(self.dry_run).as_str().into(),
            phase: Phase::Note.as_str().into(),
            status: status.as_str().into(),
            error: redact(why),
            ..Default::default()
        }
    }

    /// Records events that claim nothing (outcomes, notes, refusals); their sequence numbers.
    pub async fn record(&self, events: Vec<Event>) -> Result<Vec<i64>, ApiError> {
        let slots = self.claiming(events).await?;
        Ok(slots.into_iter().flatten().collect())
    }

    /// Records events, intents among them; an intent whose account another live steward process is changing is
    /// not written, and its slot says which run holds it. A failure marks the log failed: nothing more is sent.
    /// The files the script read since the last write go first (`inputs`), so no change is recorded before
    /// the inputs it may rest on.
    pub async fn claiming(&self, events: Vec<Event>) -> Result<Slots, ApiError> {
        let inputs: Vec<Event> = crate::inputs::take_unrecorded().into_iter().map(|f| self.input_read(f)).collect();
        let skip = inputs.len();
        let slots = self.writer.append(inputs.into_iter().chain(events).collect()).await.map_err(|e| {
            self.failed.store(true, Ordering::SeqCst);
            ApiError::new(ErrorKind::Audit, e.to_string())
        })?;
        Ok(slots.into_iter().skip(skip).collect())
    }

    /// The note that the script read the file `path` with digest `sha256` (a resume compares it).
    fn input_read(&self, (path, sha256): (String, String)) -> Event {
        Event {
            target: path,
            params: serde_json::json!({ "sha256": sha256 }).to_string(),
            ..self.note(INPUT_READ, Status::Observed, "")
        }
    }

    /// Records events whose loss must not stop the work (the request already happened, or never will).
    pub async fn record_after(&self, events: Vec<Event>) {
        if let Err(e) = self.record(events).await {
            self.say_once(&e.to_string());
        }
    }

    /// Says a failure of the log the first time it comes; a repeat is only counted (`finish` says how often).
    fn say_once(&self, error: &str) {
        let mut said = self.said.lock();
        match said.iter_mut().find(|(text, _)| text == error) {
            Some((_, again)) => *again += 1,
            None => {
                tracing::error!("{error}");
                said.push((error.to_string(), 0));
            }
        }
    }

    /// The log's head now, for a job about to read its targets (`Event::read_at`).
    pub async fn head(&self) -> Result<i64, ApiError> {
        self.writer.head().await.map_err(|e| ApiError::new(ErrorKind::Audit, e.to_string()))
    }

    /// The audit log refused a write in this run: nothing more is sent.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// The refusal row for an action steward decided not to send, and why.
    pub async fn refusal(&self, conn: &Connection, action: &Action, why: &str) {
        let mut e =
            self.event(conn, action.op, action.target.as_deref(), &action.params, Phase::Outcome, Status::Refused);
        e.error = why.to_string();
        self.record_after(vec![e]).await;
    }

    /// The error (and the refusal row) for an action whose account another live run holds.
    pub async fn busy(&self, conn: &Connection, action: &Action, busy: Busy) -> ApiError {
        let target = action.target.as_deref().unwrap_or_default();
        let (why, hint) = match busy.changed {
            false => (
                format!(
                    "{BUSY} (run {}) is changing {target} on {} right now; nothing was sent",
                    busy.run, conn.profile
                ),
                format!("wait for run {} to end (`steward audit list --run {}`), then run again", busy.run, busy.run),
            ),
            true => (
                format!(
                    "{BUSY} (run {}) acted on {target} on {} after this job read it; nothing was sent",
                    busy.run, conn.profile
                ),
                format!("see what it did (`steward audit list --target {target}`); run again if more is needed"),
            ),
        };
        self.refusal(conn, action, &why).await;
        ApiError::new(ErrorKind::Busy, why).with_hint(hint)
    }

    /// Queues the outcomes without waiting: the worker moves on while they commit, and `flush` waits for them.
    /// Should the process die first, the intents stay pending and a resume checks the targets' state.
    pub fn outcomes(
        &self,
        conn: &Connection,
        op: Op,
        sent: (&[Action], &[i64]),
        outcomes: &[Result<Value, ApiError>],
        ms: i64,
    ) {
        let (actions, seqs) = sent;
        let mut events: Vec<Event> = actions
            .iter()
            .zip(seqs)
            .zip(outcomes)
            .map(|((a, seq), result)| {
                let mut e = self.event(conn, op, a.target.as_deref(), &a.params, Phase::Outcome, Status::Ok);
                e.intent_seq = Some(*seq);
                e.duration_ms = Some(ms);
                fill_outcome(&mut e, result);
                e
            })
            .collect();
        // A timed change that was made is followed by the change that takes it back, scheduled.
        for ((a, seq), result) in actions.iter().zip(seqs).zip(outcomes) {
            if result.is_ok() && !self.dry_run {
                events.extend(self.timed_restore(conn, a, *seq));
            }
        }
        let pending = self.writer.submit(events);
        self.outstanding.lock().push(pending);
    }

    /// Records a change to be made later (`Dispatcher::schedule`), durable before this returns.
    pub async fn schedule(&self, conn: &Connection, op: Op, target: &str, params: &Value) -> Result<(), ApiError> {
        let mut e = self.event(conn, op, Some(target), params, Phase::Note, Status::Pending);
        e.op = super::timed::SCHEDULE_OP.into();
        self.record(vec![e]).await.map(|_| ())
    }

    /// The `schedule` note that takes back the timed change `a` (intent `seq`), when it is timed: its inverse, at
    /// the time `until` or `for` names, on the account it reached.
    fn timed_restore(&self, conn: &Connection, a: &Action, seq: i64) -> Option<Event> {
        // A member before (a role change, or a removal) gets their old role back; otherwise the inverse.
        let prior_role = a.params.get("prior_role").and_then(Value::as_str).map(str::to_string);
        let inverse = match (a.op, &prior_role) {
            (Op::AddToGroup | Op::RemoveFromGroup, Some(_)) => Op::AddToGroup,
            _ => a.op.inverse()?,
        };
        let at = match super::timed::restore_at(a.op, &a.params, chrono::Utc::now()) {
            Ok(at) => at?,
            Err(e) => {
                return Some(self.note(super::timed::SCHEDULE_OP, Status::Failed, &format!("not scheduled: {e}")))
            }
        };
        let said = |k: &str| a.params.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let mut params = serde_json::json!({
            "op": inverse.name(),
            "at": crate::dates::rfc3339(at),
            "account": said("account"),
            "after_seq": seq,
            "reason": format!("timed: back at {} after {} ({})", crate::dates::rfc3339(at), a.op.name(), said("reason")),
        });
        // A membership is taken back in the group it was changed in, and given back with the role it had.
        if let Some(group) = a.params.get("group").filter(|v| !v.is_null()) {
            params["group"] = group.clone();
        }
        if let Some(role) = prior_role {
            params["role"] = serde_json::json!(role);
        }
        let mut e = self.event(conn, inverse, a.target.as_deref(), &params, Phase::Note, Status::Pending);
        e.op = super::timed::SCHEDULE_OP.into();
        Some(e)
    }

    /// Closes a committed intent whose request was never sent, saying why (Ctrl-C, a failed log, an outage).
    pub fn close_unsent(&self, conn: &Connection, action: &Action, intent_seq: i64, why: &str) {
        let cancelled = Err(ApiError::new(ErrorKind::Cancelled, why));
        self.outcomes(conn, action.op, (std::slice::from_ref(action), &[intent_seq]), &[cancelled], 0);
    }

    /// Waits until every queued outcome is durable (a failed write is logged: the requests already happened).
    pub async fn flush(&self) {
        let pending: Vec<Pending> = std::mem::take(&mut *self.outstanding.lock());
        for p in pending {
            if let Err(e) = p.wait().await {
                self.say_once(&e.to_string());
            }
        }
    }

    /// A read changes nothing, so one record after the fact is enough; whoami is bookkeeping, not an action.
    pub async fn read_done(&self, conn: &Connection, action: &Action, started: Instant, failure: Option<&ApiError>) {
        if action.op == Op::Whoami {
            return;
        }
        let status = if failure.is_none() { Status::Ok } else { Status::Failed };
        let mut e = self.event(conn, action.op, action.target.as_deref(), &action.params, Phase::Outcome, status);
        e.duration_ms = Some(started.elapsed().as_millis() as i64);
        if let Some(err) = failure {
            e.http_status = err.status.map(i64::from);
            e.error = redact(&err.to_string());
        }
        self.record_after(vec![e]).await;
    }

    /// The outcome row that settles an earlier run's open intent `seq` at resume: once per intent, however many
    /// jobs of this run look at it (`None` once it is settled).
    pub fn settle_once(
        &self,
        conn: &Connection,
        intent: (Op, &str, &Value, i64),
        status: Status,
        why: &str,
    ) -> Vec<Event> {
        let (op, target, params, seq) = intent;
        if !self.settled.lock().insert(seq) {
            return Vec::new();
        }
        let mut e = self.event(conn, op, Some(target), params, Phase::Outcome, status);
        e.intent_seq = Some(seq);
        e.error = why.to_string();
        let mut events = vec![e];
        // A timed change found applied at resume is taken back in time like one answered at once (a `for`
        // counts from now: the change's own time is not known closer than "before this resume").
        if status == Status::Ok && !self.dry_run {
            let action = Action::new(op, Some(target.to_string()), params.clone());
            events.extend(self.timed_restore(conn, &action, seq));
        }
        events
    }

    /// `settle_once` for an intent whose profile this run could not connect: the outcome names the service as
    /// the intent did.
    pub fn settle_without_connection(&self, intent: &Event, status: Status, why: &str) -> Event {
        self.settled.lock().insert(intent.seq);
        Event {
            profile: intent.profile.clone(),
            kind: intent.kind.clone(),
            base_url: intent.base_url.clone(),
            op: intent.op.clone(),
            target: intent.target.clone(),
            params: intent.params.clone(),
            mode: intent.mode.clone(),
            phase: Phase::Outcome.as_str().into(),
            status: status.as_str().into(),
            intent_seq: Some(intent.seq),
            error: redact(why),
            ..Default::default()
        }
    }

    /// Whether this run settled the earlier intent `seq` already.
    pub fn is_settled(&self, seq: i64) -> bool {
        self.settled.lock().contains(&seq)
    }

    /// The event at `seq` (an earlier run's intent), read from a log that verifies whole.
    pub fn earlier_event(&self, seq: i64) -> Result<Option<crate::audit::Event>, ApiError> {
        self.with_reader(|store| store.event_at(seq))
    }

    /// The live outcomes on `profile` of every run of the job `run` belongs to (the run a resume continues,
    /// the runs before it, and this one), oldest first, read from a log that verifies whole.
    pub fn job_outcomes(&self, run: i64, profile: &str) -> Result<Vec<crate::audit::Event>, ApiError> {
        self.with_reader(|store| {
            let runs = store.job_of(run)?.map(|j| j.runs).unwrap_or_default();
            let mut out = Vec::new();
            for r in runs {
                let only = crate::audit::query::Filter {
                    run: Some(r),
                    profile: Some(profile.to_string()),
                    ..Default::default()
                };
                let rows = store.list(&only)?;
                out.extend(rows.into_iter().map(|row| row.event).filter(|e| e.phase == "outcome" && e.mode == "live"));
            }
            out.sort_by_key(|e| e.seq);
            Ok(out)
        })
    }

    /// What steward recorded when it last did `op` to `target`, read from a log that verifies whole.
    pub fn earlier_params(&self, conn: &Connection, op: Op, target: Option<&str>) -> Result<Option<Value>, ApiError> {
        let Some(target) = target.filter(|_| !matches!(self.target, AuditTarget::Memory)) else {
            return Ok(None);
        };
        let text = self.with_reader(|store| store.last_params(&conn.profile, op.name(), target))?;
        Ok(text.and_then(|t: String| serde_json::from_str(&t).ok()))
    }

    /// `read` on the run's one verified read connection (a bulk unsuspend reads through it once per user).
    fn with_reader<T: Default>(
        &self,
        read: impl FnOnce(&crate::audit::AuditStore) -> Result<T, crate::audit::AuditError>,
    ) -> Result<T, ApiError> {
        let unreadable = |e: crate::audit::AuditError| ApiError::new(ErrorKind::Audit, e.to_string());
        let mut reader = self.reader.lock();
        if reader.is_none() {
            *reader = Some(crate::audit::AuditStore::open_verified_target(&self.target).map_err(unreadable)?);
        }
        let Some(store) = reader.as_ref() else { return Ok(T::default()) };
        let got = read(store);
        // A team log's server went away: the next read opens (and verifies) the log anew.
        if got.as_ref().is_err_and(crate::audit::AuditError::connection_lost) {
            *reader = None;
        }
        got.map_err(unreadable)
    }

    /// Names the script this run executes, for the `runs` row (written with the first event).
    pub fn describe_script(&self, path: &str, sha256: &str) {
        let (path, sha) = (path.to_string(), sha256.to_string());
        self.writer.describe(move |info| {
            info.script_path = Some(path);
            info.script_sha256 = Some(sha);
        });
    }

    /// Records that this run continues the job of `run`.
    pub fn resumes(&self, run: i64) {
        self.writer.describe(move |info| info.resumed_from = Some(run));
    }

    /// Takes the lock of a job for this process (see `AuditWriter::hold_job`); `false` when another has it.
    pub fn hold_job(&self, first_run: i64) -> Result<bool, WriteError> {
        self.writer.hold_job(first_run)
    }

    /// The run id, if this run recorded anything.
    pub fn run_id(&self) -> Option<i64> {
        self.writer.run_id()
    }

    /// Records how the run ended (only when it recorded anything).
    pub fn finish(&self, exit_status: i32) {
        for (error, again) in self.said.lock().iter().filter(|(_, again)| *again > 0) {
            let first: String = error.chars().take(80).collect();
            tracing::error!("(\"{first}…\" came {again} more times)");
        }
        self.writer.finish(exit_status);
    }
}

/// The op of the note that pins a file the script read.
pub const INPUT_READ: &str = "input";

/// An intent the audit log's answer left out: nothing is sent for it.
pub(super) fn unrecorded() -> ApiError {
    ApiError::new(ErrorKind::Audit, "the audit log did not record the intent; nothing was sent")
}

/// What a change is keyed on for claims: the stable id of the account it reached (`params.account`), else its
/// target as the service compares names (a key, a token, older rows).
fn account_key(backend: &dyn Backend, target: &str, params: &Value) -> String {
    match params.get("account").and_then(Value::as_str).filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => backend.name_key(target),
    }
}

/// Status, HTTP status and error of an outcome event, from what the request came to.
fn fill_outcome(e: &mut Event, result: &Result<Value, ApiError>) {
    match result {
        Ok(v) => {
            if is_noop(v) {
                e.status = Status::Noop.as_str().to_string();
                e.error = redact(v.get("note").and_then(Value::as_str).unwrap_or_default());
            }
            e.http_status = v.get("http_status").and_then(Value::as_i64);
            if let Some(note) = v.get("reconciled").and_then(Value::as_str) {
                e.error = redact(note);
            }
        }
        Err(err) => {
            e.status = match err.kind {
                ErrorKind::Cancelled => Status::Cancelled,
                _ => Status::Failed,
            }
            .as_str()
            .to_string();
            e.http_status = err.status.map(i64::from);
            e.error = redact(&err.to_string());
        }
    }
}

/// Parameters as the audit log keeps them: values of secret-named keys (a new user's password) removed, and
/// anything shaped like a token scrubbed.
fn audit_params(params: &Value) -> String {
    fn scrub(v: &Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        if !crate::redact::looks_secret(k) {
                            return (k.clone(), scrub(v));
                        }
                        // Its value is a secret now: a server echoing it back is scrubbed too.
                        if let Some(text) = v.as_str() {
                            crate::redact::remember(text);
                        }
                        (k.clone(), Value::String("[REDACTED]".into()))
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(scrub).collect()),
            other => other.clone(),
        }
    }
    redact(&scrub(params).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::TokenRecord;
    use serde_json::json;
    use std::sync::Arc;

    /// A backend that is never asked anything: the recorder only reads its kind and URL for the rows.
    struct Silent;

    #[async_trait::async_trait]
    impl Backend for Silent {
        fn kind(&self) -> &'static str {
            "silent"
        }
        fn supported(&self) -> &'static [Op] {
            &[]
        }
        fn base_url(&self) -> String {
            "http://silent.invalid/".into()
        }
        async fn execute(&self, _action: &Action) -> Result<Value, ApiError> {
            unreachable!("the recorder sends nothing")
        }
    }

    fn conn() -> Connection {
        Connection::new("p", Arc::new(Silent), Vec::new(), TokenRecord::default(), 1)
    }

    fn on_file(path: &std::path::Path, run: &str) -> Recorder {
        let info = RunInfo { command: run.into(), ..RunInfo::default() };
        Recorder::new(AuditTarget::File(path.to_path_buf()), None, info, false)
    }

    fn intent(r: &Recorder, conn: &Connection, account: &str) -> Event {
        let params = json!({"account": account, "reason": "x"});
        r.event(conn, Op::Suspend, Some(account), &params, Phase::Intent, Status::Pending)
    }

    #[tokio::test]
    async fn an_intent_the_log_cannot_take_fails_and_the_log_is_failed_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the log's directory should be: nothing can be written there.
        std::fs::write(dir.path().join("blocker"), "").unwrap();
        let r = on_file(&dir.path().join("blocker/audit.db"), "a");
        let conn = conn();
        assert!(!r.failed());
        let e = r.claiming(vec![intent(&r, &conn, "u1")]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Audit, "{e}");
        assert!(r.failed(), "nothing more may be sent once the log failed");
    }

    #[tokio::test]
    async fn an_account_claimed_by_a_live_run_is_refused_to_another_by_its_stable_id() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.db");
        let (a, b, conn) = (on_file(&log, "a"), on_file(&log, "b"), conn());
        let first = a.claiming(vec![intent(&a, &conn, "user-1")]).await.unwrap();
        assert!(first[0].is_ok(), "{first:?}");
        // The same account, named otherwise by the other run: its intent carries the same stable id.
        let mut other = intent(&b, &conn, "user-1");
        other.target = "ALICE".into();
        let second = b.claiming(vec![other, intent(&b, &conn, "user-2")]).await.unwrap();
        assert!(matches!(second[0], Err(Busy { changed: false, .. })), "{second:?}");
        assert!(second[1].is_ok(), "another account is free: {second:?}");
        // Once a's outcome is in, the account is free again.
        let seq = *first[0].as_ref().unwrap();
        let action = Action::new(Op::Suspend, Some("user-1".into()), json!({"account": "user-1"}));
        a.outcomes(&conn, Op::Suspend, (std::slice::from_ref(&action), &[seq]), &[Ok(json!({"ok": true}))], 1);
        a.flush().await;
        let third = b.claiming(vec![intent(&b, &conn, "user-1")]).await.unwrap();
        assert!(third[0].is_ok(), "{third:?}");
    }

    #[tokio::test]
    async fn an_earlier_intent_is_settled_once_and_an_unsent_one_is_closed_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.db");
        let (r, conn) = (on_file(&log, "a"), conn());
        let params = json!({"account": "u1"});
        assert!(!r.settle_once(&conn, (Op::Suspend, "u1", &params, 7), Status::Ok, "applied").is_empty());
        assert!(r.settle_once(&conn, (Op::Suspend, "u1", &params, 7), Status::Ok, "applied").is_empty());
        assert!(r.is_settled(7) && !r.is_settled(8));
        let seq = r.claiming(vec![intent(&r, &conn, "u2")]).await.unwrap()[0].unwrap();
        let action = Action::new(Op::Suspend, Some("u2".into()), params.clone());
        r.close_unsent(&conn, &action, seq, "stopped by Ctrl-C before it was sent");
        r.flush().await;
        r.finish(130);
        let store = crate::audit::AuditStore::open(&log).unwrap();
        let rows = store.list(&crate::audit::query::Filter::default()).unwrap();
        let outcome = rows.iter().find(|row| row.event.intent_seq == Some(seq)).expect("the intent is closed");
        assert_eq!(outcome.event.status, "cancelled");
        assert!(outcome.event.error.contains("before it was sent"), "{}", outcome.event.error);
    }
}
