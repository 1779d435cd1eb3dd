//! The one path every action takes: support check, protection, confirmation, dry run, durable intent,
//! the request, the outcome. Backends only execute; everything around them happens here, once.

pub mod bulk;
pub mod deprovision;
pub mod guard;
pub mod listing;
pub mod recorder;

use crate::audit::vocab::{Phase, Status};
use crate::audit::{AuditTarget, Event, RunInfo};
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
use recorder::{unrecorded, Recorder};

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
}

/// What the job's earlier runs did: what they finished (not done again) and what they left in flight (settled as
/// the resume reads each target), keyed by profile, operation and account.
#[derive(Default)]
struct Earlier {
    done: DoneSet,
    open: OpenIntents,
}

/// The run's action budget: live changes made or started, and whether going past `max_changes` was confirmed.
#[derive(Default)]
struct Budget {
    changes: AtomicUsize,
    confirmed: std::sync::atomic::AtomicBool,
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
            recorder: Recorder::new(target, syslog, run_info, mode.dry_run),
            prompt,
            reporter,
            mode,
            interrupt,
            earlier: Earlier::default(),
            bulk_failed: AtomicUsize::new(0),
            budget: Budget::default(),
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
        self.recorder.describe_script(path, sha256);
    }

    /// Makes this run a continuation of `run`: what that chain of runs finished is not done again.
    pub fn resume(&mut self, run: i64, done: DoneSet, open: OpenIntents) {
        self.earlier = Earlier { done, open };
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
        tokio::select! {
            r = work => r,
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, self.interrupt.reason())),
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
                    self.recorder.refusal(conn, &action, &redact(&e.to_string())).await;
                }
                return Err(fail(e));
            }
        };
        if let Some(resolved) = &resolved {
            if guard::takes_from(action.op, &action.params) {
                let guard = self.unless_stopped(conn.guard()).await.map_err(fail)?;
                if let Some(why) = guard::refusal(guard, conn.backend.as_ref(), resolved) {
                    self.recorder.refusal(conn, &resolved.action, &why.message).await;
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
                    let mut e = self.recorder.event(
                        conn,
                        action.op,
                        action.target.as_deref(),
                        &action.params,
                        Phase::Outcome,
                        Status::Noop,
                    );
                    e.error = said.clone();
                    self.recorder.record(vec![e]).await.map_err(fail)?;
                    return Ok(noop_answer(conn, &action, &said));
                }
                seen => action.params["prior_observed"] = json!(seen == Some(false)),
            }
        }
        if self.mode.dry_run {
            let e = self.recorder.event(
                conn,
                action.op,
                action.target.as_deref(),
                &action.params,
                Phase::Outcome,
                Status::DryRun,
            );
            self.recorder.record(vec![e]).await.map_err(fail)?;
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
                self.recorder.refusal(conn, &action, &why).await;
                return Err(fail(ApiError::new(ErrorKind::Cancelled, why)));
            }
        }
        self.spend(1).map_err(fail)?;
        // The identity belongs in the intent, and asking for it is a read: do it before the intent is written.
        let _ = self.unless_stopped(conn.identity()).await;
        let result = self.execute_recorded(conn, &action).await;
        self.recorder.flush().await;
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
        let intent = self.recorder.event(
            conn,
            action.op,
            action.target.as_deref(),
            &action.params,
            Phase::Intent,
            Status::Pending,
        );
        // Fail closed: without a durable intent the request is not sent.
        match self.recorder.claiming(vec![intent]).await.map(|slots| slots.into_iter().next()) {
            Ok(Some(Ok(intent_seq))) => (Some(intent_seq), self.send_recorded(conn, &action, intent_seq).await),
            Ok(Some(Err(busy))) => (None, Err(self.recorder.busy(conn, &action, busy).await)),
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
                ..self.recorder.event(conn, a.op, a.target.as_deref(), &a.params, Phase::Intent, Status::Pending)
            })
            .collect();
        let slots = match self.recorder.claiming(events).await {
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
                    Some(Err(busy)) => Err(self.recorder.busy(conn, &a, busy).await),
                    None => Err(unrecorded()),
                },
            });
        }
        out
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
        self.recorder.outcomes(
            conn,
            action.op,
            (std::slice::from_ref(action), &[intent_seq]),
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
                ..self.recorder.event(conn, op, a.target.as_deref(), &a.params, Phase::Intent, Status::Pending)
            })
            .collect();
        let slots = match self.recorder.claiming(intents).await {
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
                Err(busy) => results[i].1 = Some(Err(self.recorder.busy(conn, action, busy).await)),
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
            self.recorder.outcomes(conn, op, (actions, seqs), &outcomes, 0);
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
        self.recorder.outcomes(conn, op, (actions, seqs), &outcomes, started.elapsed().as_millis() as i64);
        outcomes
    }

    /// The action with what undoing it will need: the backend's own reading of the target (`prepare`), and for
    /// an unsuspend, what steward recorded when it suspended the target (TransactionLink's previous role).
    async fn prepared(&self, conn: &Connection, action: &Action) -> Result<Action, ApiError> {
        let mut action = action.clone();
        let mut extra = serde_json::Map::new();
        if action.op == Op::Unsuspend && action.params.get("role").is_none() {
            if let Some(Value::Object(prev)) =
                self.recorder.earlier_params(conn, Op::Suspend, action.target.as_deref())?
            {
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

    async fn read(&self, conn: &Connection, action: &Action) -> Result<Value, ActionError> {
        let started = Instant::now();
        let result = tokio::select! {
            r = conn.backend.execute(action) => r,
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, self.interrupt.reason())),
        };
        self.recorder.read_done(conn, action, started, result.as_ref().err()).await;
        result.map_err(|e| ActionError::from_api(e, conn, action))
    }
}

/// Why a resume settled an open intent the way it did.
/// How every refusal for another process's account begins (a job's summary counts them by it).
pub(crate) const BUSY: &str = "another steward process";
pub(crate) const SETTLED_APPLIED: &str = "settled at resume: the change had been applied (its answer was lost)";
pub(crate) const SETTLED_RESENT: &str = "settled at resume: it had not been applied; this run sends it";

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
