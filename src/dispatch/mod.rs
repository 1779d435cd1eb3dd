//! The one path every action takes: support check, protection, confirmation, dry run, durable intent,
//! the request, the outcome. Backends only execute; everything around them happens here, once.

pub mod bulk;
pub mod deprovision;
pub mod guard;
pub mod listing;

use crate::audit::vocab::{Mode as EventMode, Phase, Status};
use crate::audit::writer::Pending;
use crate::audit::{AuditTarget, AuditWriter, Event, RunInfo};
use crate::backends::{unsupported, Action, Backend, Op, Outcome};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::redact::redact;
use crate::interrupt::Interrupt;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[cfg(test)]
use bulk::ItemStatus;
pub use bulk::{BulkItem, BulkReporter};
pub use guard::Guard;

/// How the audit log names the acting token: where it came from, and its keyed hash (never the token).
#[derive(Clone, Debug, Default)]
pub struct TokenRecord {
    pub source: String,
    pub fingerprint: String,
}

/// A live profile: its backend plus what dispatch needs to guard and record its actions.
pub struct Connection {
    pub profile: String,
    pub backend: Arc<dyn Backend>,
    pub protected: Vec<String>,
    pub token: TokenRecord,
    pub concurrency: usize,
    identity: tokio::sync::OnceCell<String>,
    guard: tokio::sync::OnceCell<Guard>,
}

impl Connection {
    pub fn new(
        profile: &str,
        backend: Arc<dyn Backend>,
        protected: Vec<String>,
        token: TokenRecord,
        concurrency: usize,
    ) -> Self {
        Connection {
            profile: profile.to_string(),
            backend,
            protected,
            token,
            concurrency,
            identity: tokio::sync::OnceCell::new(),
            guard: tokio::sync::OnceCell::new(),
        }
    }

    /// The login the token acts as, asked once per connection.
    pub async fn identity(&self) -> Result<&str, ApiError> {
        self.identity.get_or_try_init(|| self.backend.identity()).await.map(String::as_str)
    }

    fn known_identity(&self) -> String {
        self.identity.get().cloned().unwrap_or_default()
    }

    /// The accounts this connection never takes access from, resolved once: the caller's own and each
    /// protected entry, with every name the service knows them by.
    pub async fn guard(&self) -> Result<&Guard, ApiError> {
        self.guard.get_or_try_init(|| Guard::resolve(self)).await
    }
}

/// Asks the person at the keyboard; injected so the REPL, scripts and cron jobs share one dispatch path.
pub trait Prompt: Send + Sync {
    /// `Ok(true)` to go ahead; `Err` explains why nobody could be asked.
    fn confirm(&self, question: &str) -> Result<bool, String>;
}

/// The error a script sees: the service's complaint plus where it happened.
#[derive(Clone, Debug)]
pub struct ActionError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    pub status: Option<u16>,
    pub profile: String,
    pub op: String,
    pub target: Option<String>,
}

impl ActionError {
    fn new(e: ApiError, conn: &Connection, op: &str, target: Option<String>) -> Self {
        ActionError {
            kind: e.kind,
            message: e.message,
            hint: e.hint,
            status: e.status,
            profile: conn.profile.clone(),
            op: op.to_string(),
            target,
        }
    }

    fn from_api(e: ApiError, conn: &Connection, action: &Action) -> Self {
        Self::new(e, conn, action.op.name(), action.target.clone())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "message": self.to_string(),
            "status": self.status,
            "profile": self.profile,
            "op": self.op,
            "target": self.target,
        })
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(t) = &self.target {
            write!(f, " {t}")?;
        }
        write!(f, " on {}: {}", self.profile, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ActionError {}

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
    audit: AuditWriter,
    audit_target: AuditTarget,
    prompt: Arc<dyn Prompt>,
    reporter: Arc<dyn BulkReporter>,
    mode: Mode,
    interrupt: Interrupt,
    done: DoneSet,
    /// What the job's earlier runs left in flight, settled as the resume reads each target.
    open: OpenIntents,
    bulk_failed: AtomicUsize,
    /// Outcomes queued for commit and not yet known to be durable.
    outstanding: std::sync::Mutex<Vec<Pending>>,
    audit_failed: std::sync::atomic::AtomicBool,
    /// Live changes this run has made or started (the action budget).
    changes: AtomicUsize,
    budget_confirmed: std::sync::atomic::AtomicBool,
    /// Reads what earlier runs recorded (the role a user had before termination), opened on first use.
    reader: std::sync::Mutex<Option<crate::audit::AuditStore>>,
    /// Open intents of earlier runs this run has settled (each gets one outcome, however many jobs look).
    settled: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Listings still reading in the background; the run's end waits for each to put itself on record.
    streams: Arc<listing::OpenStreams>,
}

impl Dispatcher {
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
            audit: AuditWriter::spawn(target.clone(), syslog, run_info),
            audit_target: target,
            prompt,
            reporter,
            mode,
            interrupt,
            done: DoneSet::new(),
            open: OpenIntents::new(),
            bulk_failed: AtomicUsize::new(0),
            outstanding: std::sync::Mutex::new(Vec::new()),
            audit_failed: std::sync::atomic::AtomicBool::new(false),
            changes: AtomicUsize::new(0),
            budget_confirmed: std::sync::atomic::AtomicBool::new(false),
            reader: std::sync::Mutex::new(None),
            settled: std::sync::Mutex::new(std::collections::HashSet::new()),
            streams: Arc::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn prompt(&self) -> &dyn Prompt {
        self.prompt.as_ref()
    }

    /// Names the script this run executes, for the `runs` row (written with the first event).
    pub fn describe_script(&self, path: &str, sha256: &str) {
        let (path, sha) = (path.to_string(), sha256.to_string());
        self.audit.describe(move |info| {
            info.script_path = Some(path);
            info.script_sha256 = Some(sha);
        });
    }

    /// Makes this run a continuation of `run`: what that chain of runs finished is not done again.
    pub fn resume(&mut self, run: i64, done: DoneSet, open: OpenIntents) {
        self.done = done;
        self.open = open;
        self.audit.describe(move |info| info.resumed_from = Some(run));
    }

    /// Takes the lock of a job for this process (see `AuditWriter::hold_job`); `false` when another has it.
    pub fn hold_job(&self, first_run: i64) -> Result<bool, crate::audit::writer::WriteError> {
        self.audit.hold_job(first_run)
    }

    /// The run id, if this invocation recorded anything.
    pub fn run_id(&self) -> Option<i64> {
        self.audit.run_id()
    }

    /// Bulk items that failed so far in this run (they decide exit code 3).
    pub fn bulk_failures(&self) -> usize {
        self.bulk_failed.load(Ordering::SeqCst)
    }

    /// An observer for a profile's HTTP client: each pause the service imposes becomes a note row in the log.
    pub fn pause_recorder(&self, profile: &str, kind: &'static str, base_url: &str) -> crate::http::PauseObserver {
        let (audit, profile, base_url, mode) =
            (self.audit.clone(), profile.to_string(), base_url.to_string(), self.mode);
        let reporter = self.reporter.clone();
        Arc::new(move |wait: std::time::Duration, why: &str| {
            reporter.paused(&profile, wait, why);
            let e = Event {
                profile: profile.clone(),
                kind: kind.to_string(),
                base_url: base_url.clone(),
                op: "rate_limit".into(),
                mode: EventMode::of(mode.dry_run).as_str().into(),
                phase: Phase::Note.as_str().into(),
                status: Status::Paused.as_str().into(),
                error: redact(why),
                duration_ms: Some(wait.as_millis() as i64),
                ..Default::default()
            };
            // Not awaited: the writer commits it in order, before the run's end.
            drop(audit.submit(vec![e]));
        })
    }

    /// Records that the script stopped before its end (Ctrl-C, --timeout, an engine limit), with why.
    pub async fn script_aborted(&self, why: &str) {
        let e = Event {
            op: "script".into(),
            mode: EventMode::of(self.mode.dry_run).as_str().into(),
            phase: Phase::Note.as_str().into(),
            status: Status::Aborted.as_str().into(),
            error: redact(why),
            ..Default::default()
        };
        self.record_after(vec![e]).await;
    }

    /// Records how the run ended (only when it recorded anything).
    pub fn finish(&self, exit_status: i32) {
        // A listing whose reader is gone stops at once; the bound is for one stuck in a request.
        self.streams.wait(std::time::Duration::from_secs(5));
        self.audit.finish(exit_status);
    }

    fn event(
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
            mode: EventMode::of(self.mode.dry_run).as_str().to_string(),
            phase: phase.as_str().to_string(),
            status: status.as_str().to_string(),
            token_source: conn.token.source.clone(),
            token_fp: conn.token.fingerprint.clone(),
            // A live intent claims its account (by the stable id it resolved to) until its outcome is in.
            claim: match (phase, target, self.mode.dry_run) {
                (Phase::Intent, Some(t), false) if !t.is_empty() => {
                    format!("{} {}", conn.profile, account_key(conn.backend.as_ref(), t, params))
                }
                _ => String::new(),
            },
            ..Default::default()
        }
    }

    /// Records events that claim nothing (outcomes, notes, refusals); their sequence numbers.
    async fn record(&self, events: Vec<Event>) -> Result<Vec<i64>, ApiError> {
        let slots = self.record_claiming(events).await?;
        Ok(slots.into_iter().flatten().collect())
    }

    /// Records events, intents among them; an intent whose account another live steward process is changing is
    /// not written, and its slot says which run holds it.
    async fn record_claiming(&self, events: Vec<Event>) -> Result<crate::audit::writer::Slots, ApiError> {
        self.audit.append(events).await.map_err(|e| {
            self.audit_failed.store(true, Ordering::SeqCst);
            ApiError::new(ErrorKind::Audit, e.to_string())
        })
    }

    /// The error (and the refusal row) for an action whose account another live run holds.
    async fn busy(&self, conn: &Connection, action: &Action, busy: crate::audit::Busy) -> ApiError {
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
        self.refuse(conn, action, &why).await;
        ApiError::new(ErrorKind::Busy, why).with_hint(hint)
    }

    /// The log's head now, for a job about to read its targets (`Event::read_at`).
    async fn log_head(&self) -> Result<i64, ApiError> {
        self.audit.head().await.map_err(|e| ApiError::new(ErrorKind::Audit, e.to_string()))
    }

    /// The audit log refused a write in this run: nothing more is sent.
    pub fn audit_failed(&self) -> bool {
        self.audit_failed.load(Ordering::SeqCst)
    }

    /// Counts changes against the run's action budget (`max_changes`); past it, asks once, or refuses.
    fn spend(&self, changes: usize) -> Result<(), ApiError> {
        let before = self.changes.fetch_add(changes, Ordering::SeqCst);
        if self.mode.assume_yes
            || self.mode.dry_run
            || before + changes <= self.mode.max_changes
            || self.budget_confirmed.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        let question =
            format!("this run has made {before} changes and max_changes is {}; go on?", self.mode.max_changes);
        match self.prompt.confirm(&question) {
            Ok(true) => {
                self.budget_confirmed.store(true, Ordering::SeqCst);
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
        tokio::select! {
            r = work => r,
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, self.interrupt.reason())),
        }
    }

    /// Records an event whose loss must not stop the work (the request already happened, or never will).
    async fn record_after(&self, events: Vec<Event>) {
        if let Err(e) = self.record(events).await {
            tracing::error!("{e}");
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

    /// Performs one action through the whole pipeline.
    pub async fn perform(&self, conn: &Connection, action: Action) -> Result<Value, ActionError> {
        let (op_name, named) = (action.op.name(), action.target.clone());
        let fail = |e: ApiError| ActionError::new(e, conn, op_name, named.clone());
        self.refuse_when_stopped().map_err(fail)?;
        if !conn.backend.supported().contains(&action.op) {
            return Err(fail(unsupported(conn.backend.as_ref(), action.op)));
        }
        // The same check as a bulk item's: a name that is no user name never reaches a URL (api's target is a
        // path, create_user's a name the service has yet to normalize).
        let names_a_user = !matches!(action.op, Op::Api | Op::CreateUser);
        if let Some(why) =
            action.target.as_deref().filter(|_| names_a_user).and_then(|t| conn.backend.invalid_target(t.trim()))
        {
            return Err(fail(ApiError::invalid(why)));
        }
        if !action.op.is_mutation(&action.params) {
            return self.read(conn, &action).await;
        }
        // Resolve, then decide: the account the request will reach, as the server answers for it.
        let resolved = match self.unless_stopped(guard::resolve_action(conn.backend.as_ref(), &action)).await {
            Ok(resolved) => resolved,
            Err(e) => {
                // What steward decided (a lying answer, an impossible or ambiguous name) is on record.
                if matches!(e.kind, ErrorKind::Invalid | ErrorKind::Conflict) {
                    self.refuse(conn, &action, &redact(&e.to_string())).await;
                }
                return Err(fail(e));
            }
        };
        if let Some(resolved) = &resolved {
            if guard::takes_from(action.op, &action.params) {
                let guard = self.unless_stopped(conn.guard()).await.map_err(fail)?;
                if let Some(why) = guard::refusal(guard, conn.backend.as_ref(), resolved) {
                    self.refuse(conn, &resolved.action, &why.message).await;
                    return Err(fail(
                        ApiError::new(ErrorKind::Protected, format!("refused: {}", why.message)).with_hint(why.hint),
                    ));
                }
            }
        }
        // A single call is a plan of one: a change that can be undone is decided on the state the resolving read
        // showed, so a noop is reported (and recorded) as one, and undo knows what the state was before.
        let (mut action, account) = match resolved {
            Some(r) => (r.action, r.account),
            None => (action, None),
        };
        if let (Some(_), Some(account)) = (action.op.inverse(), &account) {
            match self.unless_stopped(conn.backend.state_of(action.op, account)).await.map_err(fail)? {
                Some(true) => {
                    let said = format!("already {}; nothing was sent", bulk::end_state(action.op));
                    let mut e = self.event(
                        conn,
                        action.op,
                        action.target.as_deref(),
                        &action.params,
                        Phase::Outcome,
                        Status::Noop,
                    );
                    e.error = said.clone();
                    self.record(vec![e]).await.map_err(fail)?;
                    return Ok(noop_answer(conn, &action, &said));
                }
                seen => action.params["prior_observed"] = json!(seen == Some(false)),
            }
        }
        if self.mode.dry_run {
            let e =
                self.event(conn, action.op, action.target.as_deref(), &action.params, Phase::Outcome, Status::DryRun);
            self.record(vec![e]).await.map_err(fail)?;
            return Ok(
                json!({"dry_run": true, "op": action.op.name(), "target": action.target, "profile": conn.profile}),
            );
        }
        if action.op.is_destructive(&action.params) && !self.mode.assume_yes {
            let question = match &action.target {
                Some(t) => format!("{} {t} on {}?", action.op.name(), conn.profile),
                None => format!("{} on {}?", action.op.name(), conn.profile),
            };
            let why = match self.prompt.confirm(&question) {
                Ok(true) => None,
                Ok(false) => Some("declined at the confirmation prompt".to_string()),
                Err(why) => Some(why),
            };
            if let Some(why) = why {
                self.refuse(conn, &action, &why).await;
                return Err(fail(ApiError::new(ErrorKind::Cancelled, why)));
            }
        }
        self.spend(1).map_err(fail)?;
        // The identity belongs in the intent, and asking for it is a read: do it before the intent is written.
        let _ = self.unless_stopped(conn.identity()).await;
        let result = self.execute_recorded(conn, &action).await;
        self.flush().await;
        result.map_err(fail)
    }

    /// Intent (durable) → request → outcome: the part of the path every mutation shares, single or bulk.
    async fn execute_recorded(&self, conn: &Connection, action: &Action) -> Result<Value, ApiError> {
        self.execute_recorded_at(conn, action).await.1
    }

    /// `execute_recorded`, with the sequence number of the intent it wrote (for evidence that cites the log).
    async fn execute_recorded_at(&self, conn: &Connection, action: &Action) -> (Option<i64>, Result<Value, ApiError>) {
        let action = match self.prepared(conn, action).await {
            Ok(action) => action,
            Err(e) => return (None, Err(e)),
        };
        let intent =
            self.event(conn, action.op, action.target.as_deref(), &action.params, Phase::Intent, Status::Pending);
        // Fail closed: without a durable intent the request is not sent.
        match self.record_claiming(vec![intent]).await.map(|slots| slots.into_iter().next()) {
            Ok(Some(Ok(intent_seq))) => (Some(intent_seq), self.send_recorded(conn, &action, intent_seq).await),
            Ok(Some(Err(busy))) => (None, Err(self.busy(conn, &action, busy).await)),
            Ok(None) => (None, Err(unrecorded())),
            Err(e) => (None, Err(e)),
        }
    }

    /// Prepares several actions and commits all their intents at once (a bulk job does this chunks ahead of
    /// the requests, so no request waits for its own fsync). One entry per action, in order.
    /// `read_at`: the log's head when the job read the targets' state (see `Event::read_at`).
    async fn record_intents(
        &self,
        conn: &Connection,
        actions: Vec<Action>,
        read_at: Option<i64>,
    ) -> Vec<Result<(Action, i64), ApiError>> {
        let prepared = futures::future::join_all(actions.iter().map(|a| self.prepared(conn, a))).await;
        let events: Vec<Event> = prepared
            .iter()
            .flatten()
            .map(|a| Event {
                read_at,
                ..self.event(conn, a.op, a.target.as_deref(), &a.params, Phase::Intent, Status::Pending)
            })
            .collect();
        let slots = match self.record_claiming(events).await {
            Ok(slots) => slots,
            Err(e) => return prepared.into_iter().map(|p| p.and(Err(e.clone()))).collect(),
        };
        // A slot for each prepared action only: one that failed to prepare wrote no event.
        let mut slots = slots.into_iter();
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            out.push(match p {
                Err(e) => Err(e),
                Ok(a) => match slots.next() {
                    Some(Ok(seq)) => Ok((a, seq)),
                    Some(Err(busy)) => Err(self.busy(conn, &a, busy).await),
                    None => Err(unrecorded()),
                },
            });
        }
        out
    }

    /// The outcome row that settles an earlier run's open intent at resume: once per intent, however many jobs
    /// of this run look at it (`None` once it is settled).
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        conn: &Connection,
        op: Op,
        target: &str,
        params: &Value,
        seq: i64,
        status: Status,
        why: &str,
    ) -> Option<Event> {
        if !self.settled.lock().unwrap_or_else(|e| e.into_inner()).insert(seq) {
            return None;
        }
        let mut e = self.event(conn, op, Some(target), params, Phase::Outcome, status);
        e.intent_seq = Some(seq);
        e.error = why.to_string();
        Some(e)
    }

    /// Closes a committed intent whose request was never sent, saying why (Ctrl-C, a failed log, an outage).
    fn close_unsent(&self, conn: &Connection, action: &Action, intent_seq: i64, why: &str) {
        let cancelled = Err(ApiError::new(ErrorKind::Cancelled, why));
        self.record_outcomes(conn, action.op, std::slice::from_ref(action), &[intent_seq], &[cancelled], 0);
    }

    /// The request and its outcome, for an action whose intent is already durable.
    async fn send_recorded(&self, conn: &Connection, action: &Action, intent_seq: i64) -> Result<Value, ApiError> {
        failpoint("after_intent_commit");
        let started = Instant::now();
        let result = tokio::select! {
            r = conn.backend.settle(action) => answer(conn, action, r),
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, format!("{}; the request may or may not have reached the server", self.interrupt.reason()))),
        };
        failpoint("after_response_before_outcome");
        let result = self.reconcile(conn, action, result).await;
        let ms = started.elapsed().as_millis() as i64;
        self.record_outcomes(
            conn,
            action.op,
            std::slice::from_ref(action),
            &[intent_seq],
            std::slice::from_ref(&result),
            ms,
        );
        result
    }

    /// Whether a change's answer leaves it in doubt: a 5xx, a timeout or a dropped connection (and the log can
    /// still record what a read finds).
    fn in_doubt(&self, result: &Result<Value, ApiError>) -> bool {
        matches!(result, Err(e) if e.kind == ErrorKind::Unavailable && !self.audit_failed() && e.status.is_none_or(|s| s >= 500))
    }

    /// A change whose answer leaves it in doubt (a 5xx, a timeout, a dropped connection) may still have been
    /// applied: read the target's state; in place, it counts as done; not in place, it is sent again, and
    /// only then (so the service never sees one change twice), a few times with a growing pause.
    async fn reconcile(
        &self,
        conn: &Connection,
        action: &Action,
        result: Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        const RESENDS: u32 = 4;
        let mut result = result;
        for attempt in 0..=RESENDS {
            let Err(e) = &result else { return result };
            let Some(target) = action.target.as_deref().filter(|_| self.in_doubt(&result)) else { return result };
            match self.unless_stopped(conn.backend.state(action.op, target, &action.params)).await {
                Ok(Some(true)) => {
                    return Ok(json!({
                        "ok": true, "op": action.op.name(), "target": target, "http_status": e.status,
                        "reconciled": format!("the server answered \"{}\", but the change is in place", e.message),
                    }))
                }
                // Read, and not in place: now it is safe to send the change once more.
                Ok(Some(false)) if attempt < RESENDS && !self.interrupt.is_raised() => {
                    let first = e.message.clone();
                    let again = tokio::select! {
                        r = async {
                            tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
                            answer(conn, action, conn.backend.settle(action).await)
                        } => r,
                        _ = self.interrupt.raised() => return result,
                    };
                    result = again.map_err(|mut second| {
                        second.message = format!(
                            "{} (sent again after a read showed the earlier attempt, \"{first}\", was not applied)",
                            second.message
                        );
                        second
                    });
                }
                _ => return result,
            }
        }
        result
    }

    /// `execute_recorded` for a batch that the service takes in one request: every intent durable first
    /// (one commit), then the request, then each item's outcome.
    async fn execute_batch_recorded(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        read_at: Option<i64>,
    ) -> Vec<Result<Value, ApiError>> {
        self.execute_batch_recorded_at(conn, op, actions, read_at).await.into_iter().map(|(_, r)| r).collect()
    }

    /// `execute_batch_recorded`, with each item's intent sequence number (none where none was written).
    async fn execute_batch_recorded_at(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        read_at: Option<i64>,
    ) -> Vec<(Option<i64>, Result<Value, ApiError>)> {
        let intents: Vec<Event> = actions
            .iter()
            .map(|a| Event {
                read_at,
                ..self.event(conn, op, a.target.as_deref(), &a.params, Phase::Intent, Status::Pending)
            })
            .collect();
        let slots = match self.record_claiming(intents).await {
            Ok(slots) => slots,
            Err(e) => return actions.iter().map(|_| (None, Err(e.clone()))).collect(),
        };
        // Items another live process holds are left out of the request; the rest go in one.
        // Per item: its intent's seq, and what it came to.
        type Settled = (Option<i64>, Option<Result<Value, ApiError>>);
        let mut results: Vec<Settled> = vec![(None, None); actions.len()];
        let (mut claimed, mut seqs, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (action, slot)) in actions.iter().zip(slots).enumerate() {
            match slot {
                Ok(seq) => {
                    claimed.push(action.clone());
                    seqs.push(seq);
                    at.push(i);
                    results[i].0 = Some(seq);
                }
                Err(busy) => results[i].1 = Some(Err(self.busy(conn, action, busy).await)),
            }
        }
        let outcomes = self.send_batch_recorded(conn, op, &claimed, &seqs).await;
        for (i, outcome) in at.into_iter().zip(outcomes) {
            results[i].1 = Some(outcome);
        }
        results.into_iter().map(|(seq, r)| (seq, r.unwrap_or_else(|| Err(unrecorded())))).collect()
    }

    /// The request and outcomes of a batch whose intents are durable.
    async fn send_batch_recorded(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        seqs: &[i64],
    ) -> Vec<Result<Value, ApiError>> {
        if actions.is_empty() {
            return Vec::new();
        }
        if self.interrupt.is_raised() {
            let cancelled =
                ApiError::new(ErrorKind::Cancelled, format!("{} before it was sent", self.interrupt.reason()));
            let outcomes = actions.iter().map(|_| Err(cancelled.clone())).collect::<Vec<_>>();
            self.record_outcomes(conn, op, actions, seqs, &outcomes, 0);
            return outcomes;
        }
        failpoint("after_intent_commit");
        let started = Instant::now();
        let mut outcomes = conn.backend.execute_batch(op, actions).await;
        failpoint("after_response_before_outcome");
        // One outcome per action, whatever the backend returned: a missing one is a failure, never a lost row.
        outcomes.resize_with(actions.len(), || {
            Err(ApiError::invalid("the service's bulk answer did not mention this item"))
        });
        // A bulk request whose answer was lost may have been applied: each item in doubt is read, as a single
        // change would be, and counts as done if it is in place (sent again, singly, only if it is not).
        let settled: Vec<(usize, Result<Value, ApiError>)> = stream::iter(
            outcomes
                .iter()
                .enumerate()
                .filter(|(_, r)| self.in_doubt(r))
                .map(|(i, r)| (i, r.clone()))
                .collect::<Vec<_>>(),
        )
        .map(|(i, r)| async move { (i, self.reconcile(conn, &actions[i], r).await) })
        .buffer_unordered(conn.concurrency.max(1))
        .collect()
        .await;
        for (i, r) in settled {
            outcomes[i] = r;
        }
        self.record_outcomes(conn, op, actions, seqs, &outcomes, started.elapsed().as_millis() as i64);
        outcomes
    }

    /// Queues the outcomes without waiting: the worker moves on while they commit, and `flush` waits for them.
    /// Should the process die first, the intents stay pending and a resume checks the targets' state.
    fn record_outcomes(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        seqs: &[i64],
        outcomes: &[Result<Value, ApiError>],
        ms: i64,
    ) {
        let events = actions
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
        let pending = self.audit.submit(events);
        self.outstanding.lock().unwrap_or_else(|e| e.into_inner()).push(pending);
    }

    /// The action with what undoing it will need: the backend's own reading of the target (`prepare`), and for
    /// an unsuspend, what steward recorded when it suspended the target (TransactionLink's previous role).
    async fn prepared(&self, conn: &Connection, action: &Action) -> Result<Action, ApiError> {
        let mut action = action.clone();
        let mut extra = serde_json::Map::new();
        if action.op == Op::Unsuspend && action.params.get("role").is_none() {
            if let Some(Value::Object(prev)) = self.recorded_params(conn, Op::Suspend, action.target.as_deref())? {
                extra.extend(prev.into_iter().filter(|(k, _)| k.starts_with("previous_")));
            }
        }
        if let Some(Value::Object(more)) = self.unless_stopped(conn.backend.prepare(&action)).await? {
            extra.extend(more);
        }
        if !extra.is_empty() {
            if !action.params.is_object() {
                action.params = json!({});
            }
            if let Some(p) = action.params.as_object_mut() {
                for (k, v) in extra {
                    p.entry(k).or_insert(v);
                }
            }
        }
        Ok(action)
    }

    /// What steward recorded when it last did `op` to `target`, read from a log that verifies whole.
    fn recorded_params(&self, conn: &Connection, op: Op, target: Option<&str>) -> Result<Option<Value>, ApiError> {
        let Some(target) = target.filter(|_| !matches!(self.audit_target, AuditTarget::Memory)) else {
            return Ok(None);
        };
        let unreadable = |e: crate::audit::AuditError| ApiError::new(ErrorKind::Audit, e.to_string());
        // One verified read connection for the run: a bulk unsuspend asks this once per user.
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if reader.is_none() {
            *reader = Some(crate::audit::AuditStore::open_verified_target(&self.audit_target).map_err(unreadable)?);
        }
        let Some(store) = reader.as_ref() else { return Ok(None) };
        let text = store.last_params(&conn.profile, op.name(), target);
        // A team log's server went away: the next read opens (and verifies) the log anew.
        if text.as_ref().is_err_and(crate::audit::AuditError::connection_lost) {
            *reader = None;
        }
        let text = text.map_err(unreadable)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Waits until every queued outcome is durable (a failed write is logged: the requests already happened).
    async fn flush(&self) {
        let pending: Vec<Pending> = std::mem::take(&mut *self.outstanding.lock().unwrap_or_else(|e| e.into_inner()));
        for p in pending {
            if let Err(e) = p.wait().await {
                tracing::error!("{e}");
            }
        }
    }

    async fn read(&self, conn: &Connection, action: &Action) -> Result<Value, ActionError> {
        let started = Instant::now();
        let result = tokio::select! {
            r = conn.backend.execute(action) => r,
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, self.interrupt.reason())),
        };
        self.record_read(conn, action, started, result.as_ref().err()).await;
        result.map_err(|e| ActionError::from_api(e, conn, action))
    }

    /// Reads change nothing, so one record after the fact is enough; whoami is bookkeeping, not an action.
    async fn record_read(&self, conn: &Connection, action: &Action, started: Instant, failure: Option<&ApiError>) {
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

    async fn refuse(&self, conn: &Connection, action: &Action, why: &str) {
        let mut e =
            self.event(conn, action.op, action.target.as_deref(), &action.params, Phase::Outcome, Status::Refused);
        e.error = why.to_string();
        self.record_after(vec![e]).await;
    }
}

/// Why a resume settled an open intent the way it did.
/// How every refusal for another process's account begins (a job's summary counts them by it).
pub(crate) const BUSY: &str = "another steward process";
pub(crate) const SETTLED_APPLIED: &str = "settled at resume: the change had been applied (its answer was lost)";
pub(crate) const SETTLED_RESENT: &str = "settled at resume: it had not been applied; this run sends it";

/// What a change is keyed on for claims, done-sets and undo: the stable id of the account it reached
/// (`params.account`), else its target as the service compares names (a key, a token, older rows).
pub(crate) fn account_key(backend: &dyn Backend, target: &str, params: &Value) -> String {
    match params.get("account").and_then(Value::as_str).filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => backend.name_key(target),
    }
}

/// An intent the audit log's answer left out: nothing is sent for it.
fn unrecorded() -> ApiError {
    ApiError::new(ErrorKind::Audit, "the audit log did not record the intent; nothing was sent")
}

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
                        if !crate::http::redact::looks_secret(k) {
                            return (k.clone(), scrub(v));
                        }
                        // Its value is a secret now: a server echoing it back is scrubbed too.
                        if let Some(text) = v.as_str() {
                            crate::http::redact::remember(text);
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
