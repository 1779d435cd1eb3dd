//! Bulk verbs (`suspend_all` …): one plan, then a concurrent fan-out bounded by the profile's concurrency and
//! its shared rate budget. Every item ends in exactly one status; a failing item never stops the others (a
//! service that fails ten in a row stops the job).

use super::{ActionError, Connection, Dispatcher, BUSY};
use crate::audit::vocab::{Mode as EventMode, Phase, Status};
use crate::backends::model::Account;
use crate::backends::{unsupported, Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A job stops reading and sending after this many failures in a row that the service caused (a 5xx or no
/// answer, each after its retries): an outage is reported once, instead of hammered with every remaining user.
const FAILING_SERVICE_STREAK: usize = 10;

/// How many chunks of intents a one-request-per-target job commits ahead of its requests. Intent commits
/// queue behind outcome commits in the audit writer; with only a chunk or two ahead, the senders wait on them
/// and slots sit idle (96k suspensions at 20 ms, concurrency 32: 1.17x the bound with 2 chunks ahead, 1.08x
/// with 8). The cost is what a crash can leave pending for a resume to check: this many chunks at most.
const INTENT_LOOKAHEAD_CHUNKS: usize = 8;

/// Items of a one-request-per-target job under way at once, per request slot. The rate budget's slots bound the
/// requests in flight; an item waiting out a retry's backoff, or between the read that settles a lost answer and
/// its resend, holds no slot, and with only one item per slot those slots would sit idle while it waits (5 % of
/// 503s at concurrency 4: 2.0x the clean job with one item a slot).
const ITEMS_PER_SLOT: usize = 4;

/// An item of a one-request-per-target job on its way to the send stage.
enum Ahead {
    /// Its intent is written (with its sequence number), or could not be.
    Intent(Result<(Action, i64), ApiError>),
    /// Settled without an intent: the job had stopped sending.
    Decided(BulkResult),
}

/// The job's current run of service failures.
#[derive(Default)]
struct FailureStreak(AtomicUsize);

impl FailureStreak {
    /// Counts a service failure; any other answer (success, or a refusal the service chose) ends the run.
    fn note<T>(&self, outcome: Result<T, ApiError>) -> Result<T, ApiError> {
        match &outcome {
            Err(e) if e.kind == ErrorKind::Unavailable => self.0.fetch_add(1, Ordering::SeqCst),
            _ => self.0.swap(0, Ordering::SeqCst),
        };
        outcome
    }

    /// The error for an item not attempted because the service keeps failing.
    fn stop(&self) -> Option<ApiError> {
        (self.0.load(Ordering::SeqCst) >= FAILING_SERVICE_STREAK).then(|| {
            ApiError::new(
                ErrorKind::Unavailable,
                format!(
                    "not sent: the service failed {FAILING_SERVICE_STREAK} requests in a row (each after its \
                     retries); run the job again once it is back"
                ),
            )
        })
    }
}

/// One input row: a target, or the reason the row could not give one (a malformed CSV line).
#[derive(Clone, Debug, Default)]
pub struct BulkItem {
    pub target: Option<String>,
    /// The CSV line it came from, carried into the result.
    pub line: Option<i64>,
    pub error: Option<String>,
    /// Per-row parameters that override the job's (a `reason` column; `vcs_type` for a `vcs_id` row).
    pub params: serde_json::Map<String, Value>,
    /// Whether the item is already as the operation would leave it, as the caller read it (reconcile, from the
    /// group's listing): used instead of a read of its own, and undo may rely on it.
    pub known: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    Ok,
    /// Already in the requested state: nothing was sent.
    Noop,
    Failed,
    /// Not attempted: protected, or a duplicate.
    Skipped,
    /// Not sent: the run was stopped (Ctrl-C, --timeout) before its turn. A resume sends it.
    Cancelled,
    /// Sent, and the run was stopped before the answer came. A resume reads the account and settles it.
    InDoubt,
    DryRun,
}

impl ItemStatus {
    /// The word results and the audit log use for it.
    pub fn as_str(self) -> &'static str {
        Status::from(self).as_str()
    }

    pub const ALL: [ItemStatus; 7] = [
        ItemStatus::Ok,
        ItemStatus::Noop,
        ItemStatus::DryRun,
        ItemStatus::Skipped,
        ItemStatus::Cancelled,
        ItemStatus::InDoubt,
        ItemStatus::Failed,
    ];
}

impl From<ItemStatus> for Status {
    fn from(s: ItemStatus) -> Status {
        match s {
            ItemStatus::Ok => Status::Ok,
            ItemStatus::Noop => Status::Noop,
            ItemStatus::Failed => Status::Failed,
            ItemStatus::Skipped => Status::Skipped,
            ItemStatus::Cancelled => Status::Cancelled,
            ItemStatus::InDoubt => Status::InDoubt,
            ItemStatus::DryRun => Status::DryRun,
        }
    }
}

/// `#{target, status, http_status, error, line}`: what became of one item.
#[derive(Clone, Debug, Serialize)]
pub struct BulkResult {
    pub target: Option<String>,
    pub status: ItemStatus,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub line: Option<i64>,
}

/// Progress display for bulk jobs, injected (a bar on a terminal, periodic lines in a log).
pub trait BulkReporter: Send + Sync {
    fn begin(&self, label: &str, total: usize) -> Box<dyn BulkProgress>;
    /// A service made every worker wait (a 429's Retry-After, a spent budget): say so where people look.
    fn paused(&self, _profile: &str, _wait: std::time::Duration, _why: &str) {}
    /// Something a person should know about the job as a whole (accounts left to another process).
    fn note(&self, _text: &str) {}
}

pub trait BulkProgress: Send + Sync {
    fn advance(&self, status: ItemStatus);
    /// The job is over: counts per status and how long it took.
    fn finish(&self, label: &str, counts: &[(ItemStatus, usize)], elapsed: Duration);
}

impl BulkResult {
    fn of(item: &BulkItem, status: ItemStatus, error: Option<String>) -> Self {
        BulkResult { target: item.target.clone(), status, http_status: None, error, line: item.line }
    }
}
/// How long a script stopped during a bulk job may go on writing its results (it can send nothing).
const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

impl Dispatcher {
    /// Performs `op` on every item: plan (protection, duplicates, resume, current state), confirmation above
    /// `max_changes`, then the changes, concurrently. Returns one result per item, in input order.
    pub async fn perform_all(
        &self,
        conn: &Connection,
        op: Op,
        items: Vec<BulkItem>,
        params: Value,
    ) -> Result<Vec<BulkResult>, ActionError> {
        self.perform_all_telling(conn, op, items, params, None).await
    }

    /// `perform_all`, telling `each` of every item's result as soon as it is known (a results file written as
    /// the job goes, so a job stopped or killed midway leaves what it did on disk).
    pub async fn perform_all_telling(
        &self,
        conn: &Connection,
        op: Op,
        items: Vec<BulkItem>,
        params: Value,
        each: Option<&EachResult<'_>>,
    ) -> Result<Vec<BulkResult>, ActionError> {
        let fail = |e: ApiError| ActionError::new(e, conn, op.bulk_name().unwrap_or(op.name()), None);
        let mut job = self.begin_job(conn, op, (&items, items.len()), params, each).await.map_err(fail)?;
        let results = self.job_window(&mut job, items).await.map_err(fail)?;
        self.end_job(job);
        Ok(results)
    }

    /// A job over items that come in windows (a CSV of any length, read as the job goes): each window is
    /// planned, confirmed (the first, for the whole job: `total` items at most) and carried out before the next
    /// is read, so memory holds one window and what the job must remember of every account (a 64-bit digest of
    /// each, to find the same account named twice). Every item's result goes to `each`; returns the counts.
    pub async fn perform_all_windowed(
        &self,
        conn: &Connection,
        op: Op,
        (total, next): (usize, &mut (dyn FnMut() -> Result<Vec<BulkItem>, ApiError> + Send)),
        params: Value,
        each: &EachResult<'_>,
    ) -> Result<Vec<(ItemStatus, usize)>, ActionError> {
        let fail = |e: ApiError| ActionError::new(e, conn, op.bulk_name().unwrap_or(op.name()), None);
        let first = next().map_err(fail)?;
        let mut job = self.begin_job(conn, op, (&first, total), params, Some(each)).await.map_err(fail)?;
        let mut window = first;
        while !window.is_empty() {
            match self.stopped() {
                // Stopped (Ctrl-C, --timeout, a failed log): the rows left are reported, nothing more is read.
                Some((status, why)) => self.window_unsent(&mut job, &window, status, &why),
                None => drop(self.job_window(&mut job, window).await.map_err(fail)?),
            }
            window = next().map_err(fail)?;
            // The first window was checked as the job began.
            if let Some(why) = self.job_options_refused(op, &window, &job.params) {
                return Err(fail(why));
            }
        }
        Ok(self.end_job(job))
    }

    /// A window of a job that stopped before it: each item reported as not sent, nothing read or recorded.
    fn window_unsent(&self, job: &mut JobRun<'_>, items: &[BulkItem], status: ItemStatus, why: &str) {
        let progress = job.progress.get_or_insert_with(|| self.reporter.begin(&job.label, job.total));
        let outcomes = Outcomes { progress: progress.as_ref(), each: job.each };
        for item in items {
            outcomes.finished(&BulkResult::of(item, status, Some(why.to_string())));
            *job.counts.entry(status).or_default() += 1;
        }
    }

    /// What a job holds from its start to its end, across its windows of items.
    async fn begin_job<'a>(
        &self,
        conn: &'a Connection,
        op: Op,
        (first, total): (&[BulkItem], usize),
        params: Value,
        each: Option<&'a EachResult<'a>>,
    ) -> Result<JobRun<'a>, ApiError> {
        let label = format!("{} on {}", op.bulk_name().unwrap_or(op.name()), conn.profile);
        self.refuse_when_stopped()?;
        if !conn.backend.supported().contains(&op) {
            return Err(unsupported(conn.backend.as_ref(), op));
        }
        let JobOptions { params, dry_run, precheck } = self.job_options(op, first, params)?;
        super::timed::restore_at(op, &params, chrono::Utc::now())?;
        // Resolved once for the job, and only for operations that take something away (as a single call does).
        let guard = match op.guards_target() {
            true => Some(self.unless_stopped(conn.guard()).await?),
            false => None,
        };
        Ok(JobRun {
            conn,
            op,
            label,
            params,
            dry_run,
            precheck,
            guard,
            total,
            started: Instant::now(),
            failing: FailureStreak::default(),
            // Sized for the whole job at once: growing it doubles, and the copy would be the job's peak.
            seen: HashMap::with_capacity(total),
            progress: None,
            each,
            confirmed: false,
            counts: HashMap::new(),
            busy: 0,
        })
    }

    /// One window of a job's items, planned and carried out; every item's result, in input order.
    async fn job_window(&self, job: &mut JobRun<'_>, mut items: Vec<BulkItem>) -> Result<Vec<BulkResult>, ApiError> {
        let (conn, op) = (job.conn, job.op);
        // 1. What needs no request at all.
        let (mut results, candidates) = self.decide_without_requests(conn, &items);
        // 2. The account each of the rest reaches and its state, read from the service: the protected, the
        //    duplicates (one account named twice, by any names), what an earlier run did, noops and unknown users
        //    are found before any change.
        // Where the log stood before the reads: another process acting on an account after this job read it
        // makes that reading stale, and its intent is refused rather than sent on stale knowledge.
        let read_at = match job.dry_run {
            true => None,
            false => Some(self.recorder.head().await?),
        };
        let plan = Plan { conn, op, params: &job.params, guard: job.guard };
        let mut accounts: Vec<Option<Account>> = vec![None; items.len()];
        let todo: Vec<usize> = self
            .resolve_and_decide(
                &plan,
                &items,
                candidates,
                (job.precheck, &job.failing, &mut job.seen),
                (&mut results, &mut accounts),
            )
            .await?
            .into_iter()
            .map(|(i, seen)| {
                // What undo may rely on: the state before the change, seen (or not) by the read.
                items[i].params.insert("prior_observed".into(), json!(seen == Some(false)));
                i
            })
            .collect();
        // 3. A second look, once for the whole job (the first window asks for all the job may change).
        if !job.dry_run && !job.confirmed {
            // A job read in windows knows only how many rows it has: it asks for them all, saying so.
            let (changes, label) = match job.total > items.len() {
                true => (job.total, format!("{}, a CSV of {} rows (each counted as a change)", job.label, job.total)),
                false => (todo.len(), job.label.clone()),
            };
            self.confirm_job(&label, op, &job.params, changes)?;
            job.confirmed = true;
        }

        // Shown once the job is confirmed (a bar drawn under a question would hide it).
        let progress = job.progress.get_or_insert_with(|| self.reporter.begin(&job.label, job.total));
        // Everything decided so far is recorded in one batch: the log says why each item was left alone.
        let decided_events = self.decided_events(conn, op, &job.params, (&items, &accounts), &results);
        let outcomes = Outcomes { progress: progress.as_ref(), each: job.each };
        for r in results.iter().flatten() {
            outcomes.finished(r);
        }

        // 4. The changes (or, in dry run, their record).
        let run =
            Job { conn, op, items: &items, accounts: &accounts, params: &job.params, outcomes: &outcomes, read_at };
        let step = Step { todo: &todo, dry_run: job.dry_run, failing: &job.failing };
        self.carry_out_job(&run, step, decided_events, &mut results).await?;
        let results = self.window_results(&items, results, &outcomes);
        for r in &results {
            *job.counts.entry(r.status).or_default() += 1;
            job.busy += usize::from(r.error.as_deref().is_some_and(|e| e.starts_with(BUSY)));
        }
        Ok(results)
    }

    /// The job's end: its counts shown and returned, a note for the accounts left to other processes, and when
    /// it was stopped midway, time for the script to write its results down.
    fn end_job(&self, job: JobRun<'_>) -> Vec<(ItemStatus, usize)> {
        let counts: Vec<(ItemStatus, usize)> = ItemStatus::ALL
            .iter()
            .map(|s| (*s, job.counts.get(s).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        // An item left in doubt is not done either: the run ends with 3, for a resume to settle it.
        let failed: usize =
            [ItemStatus::Failed, ItemStatus::InDoubt].iter().map(|s| job.counts.get(s).copied().unwrap_or(0)).sum();
        // Items its log's failure kept from being sent are cancelled, and the job is not done: exit 3 as well.
        let unsent = if self.audit_failed() { job.counts.get(&ItemStatus::Cancelled).copied().unwrap_or(0) } else { 0 };
        let failed = failed + unsent;
        self.bulk_failed.fetch_add(failed, Ordering::SeqCst);
        // The run id is what `--resume`, `undo` and `steward runs show` take: say it where people look.
        let label = match self.run_id() {
            Some(run) => format!("{} (run {run})", job.label),
            None => job.label,
        };
        let progress = job.progress.unwrap_or_else(|| self.reporter.begin(&label, job.total));
        progress.finish(&label, &counts, job.started.elapsed());
        if job.busy > 0 {
            self.reporter.note(&format!(
                "skipped {} accounts another steward process was acting on, or acted on while this job ran; each \
                 result names the run (`steward audit list --run N` shows what it did)",
                job.busy
            ));
        }
        // Stopped midway, the job still returns every item's result: let the script write them down.
        if self.interrupt.is_raised() {
            self.interrupt.grant_grace(GRACE);
        }
        counts
    }

    /// Step 4: the changes, after the rows of every item decided without one (or, in a dry run, their record).
    async fn carry_out_job(
        &self,
        job: &Job<'_>,
        step: Step<'_>,
        mut decided: Vec<crate::audit::Event>,
        results: &mut [Option<BulkResult>],
    ) -> Result<(), ApiError> {
        if step.dry_run {
            for &i in step.todo {
                decided.push(self.dry_run_event(job, i));
                let r = BulkResult::of(&job.items[i], ItemStatus::DryRun, None);
                job.outcomes.finished(&r);
                results[i] = Some(r);
            }
            return self.recorder.record(decided).await.map(|_| ());
        }
        if !decided.is_empty() {
            self.recorder.record(decided).await?;
        }
        let done = match job.conn.backend.batch_size(job.op).await {
            Some(size) => self.send_in_batches(job, step.todo, size).await,
            None => self.send_each(job, step.todo, step.failing).await,
        };
        for (i, r) in done {
            results[i] = Some(r);
        }
        self.recorder.flush().await;
        Ok(())
    }

    /// The job's options, checked: a suspension needs a reason (the job's or each row's); `dry_run: true` makes
    /// one job a dry run even when the run is live; `precheck: false` trusts the input and skips reading each
    /// target's state first (an item already in the state then reports ok rather than noop, and is not undone).
    fn job_options(&self, op: Op, items: &[BulkItem], params: Value) -> Result<JobOptions, ApiError> {
        if let Some(refused) = self.job_options_refused(op, items, &params) {
            return Err(refused);
        }
        let dry_run = self.mode.dry_run || params.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
        let precheck = params.get("precheck").and_then(Value::as_bool).unwrap_or(true);
        let mut params = params;
        if let Some(p) = params.as_object_mut() {
            p.remove("dry_run");
            p.remove("precheck");
        }
        Ok(JobOptions { params, dry_run, precheck })
    }

    /// Why the job cannot take these items: a suspension needs a reason, the job's or each row's.
    fn job_options_refused(&self, op: Op, items: &[BulkItem], params: &Value) -> Option<ApiError> {
        let given = |p: &serde_json::Map<String, Value>| {
            p.get("reason").and_then(Value::as_str).is_some_and(|r| !r.trim().is_empty())
        };
        let job_reason = params.as_object().is_some_and(given);
        (op == Op::Suspend && !job_reason && items.iter().any(|i| !given(&i.params))).then(|| {
            ApiError::invalid("suspend_all needs a reason, for the service's audit log and ours: suspend_all(ids, #{reason: \"left the company\"})")
        })
    }

    /// The record of item `i`'s change in a dry run.
    fn dry_run_event(&self, job: &Job<'_>, i: usize) -> crate::audit::Event {
        let action = job.action(i);
        let (target, params) = (action.target.as_deref(), &action.params);
        let mut e = self.recorder.event(job.conn, job.op, target, params, Phase::Outcome, Status::DryRun);
        e.mode = EventMode::DryRun.as_str().to_string();
        e
    }

    /// Step 1: each item that is settled without a request (malformed, or naming no possible user of this
    /// service), and the indexes of the rest.
    fn decide_without_requests(&self, conn: &Connection, items: &[BulkItem]) -> (Vec<Option<BulkResult>>, Vec<usize>) {
        let mut results: Vec<Option<BulkResult>> = vec![None; items.len()];
        let mut candidates = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let failed = match (&item.error, &item.target) {
                (Some(e), _) => Some(e.clone()),
                (None, None) => Some("the row names no user (expected a login or id)".to_string()),
                (None, Some(t)) => conn.backend.invalid_target(t.trim()),
            };
            match failed {
                Some(why) => results[i] = Some(BulkResult::of(item, ItemStatus::Failed, Some(why))),
                None => candidates.push(i),
            }
        }
        (results, candidates)
    }

    /// Step 2: resolves each candidate to the account the service says it names (concurrently; with
    /// `precheck: false`, from the name alone where the service addresses accounts by it) and reads its state;
    /// then decides, in input order, on the account: protected, a duplicate of an earlier item, done by an
    /// earlier run of the job, a noop. Settles what the job's earlier runs left in flight against their intents.
    /// Each account resolved goes into `accounts`; returns what is left to change, in input order, with the
    /// state seen before it.
    async fn resolve_and_decide(
        &self,
        plan: &Plan<'_>,
        items: &[BulkItem],
        candidates: Vec<usize>,
        (precheck, failing, seen_accounts): (bool, &FailureStreak, &mut SeenAccounts),
        (results, accounts): (&mut [Option<BulkResult>], &mut [Option<Account>]),
    ) -> Result<Vec<(usize, Option<bool>)>, ApiError> {
        let Plan { conn, op, params, guard } = *plan;
        let backend = conn.backend.as_ref();
        let mut reads = self.read_accounts(plan, items, candidates, (precheck, failing)).await;
        reads.sort_unstable_by_key(|(i, _)| *i);
        let mut settled = Vec::new();
        let mut todo = Vec::new();
        for (i, read) in reads {
            let item = &items[i];
            let (account, state) = match read {
                Ok(read) => read,
                // Failed, or cancelled when the run was stopped while this read was under way.
                Err(e) => {
                    results[i] = Some(item_result(item, Err(e)));
                    continue;
                }
            };
            let mut seen = addressed(op, item, params, &account).params;
            // One account (in one group, for a membership) is one item of a job, however the rows named it.
            let item_key = crate::audit::query::item_key(&account.id, &seen);
            let key = (conn.profile.clone(), op.name().to_string(), item_key.clone());
            let decided = if let Some(why) = guard.and_then(|g| g.refusal(backend, &account)) {
                Some((ItemStatus::Skipped, format!("protected: {}", why.message)))
            } else if let Some(first) = seen_accounts.get(&account_digest(&item_key)) {
                Some((
                    ItemStatus::Skipped,
                    format!("duplicate of item {first}: the same account ({})", account.describe()),
                ))
            } else {
                self.earlier
                    .done
                    .get(&key)
                    .map(|run| (ItemStatus::Noop, format!("already done in run {run}")))
                    .or_else(|| self.settled_unknown(conn, op, &account, &seen).map(|why| (ItemStatus::Skipped, why)))
            };
            seen_accounts.entry(account_digest(&item_key)).or_insert(item.line.unwrap_or(i as i64 + 1));
            if let Some((status, why)) = decided {
                results[i] = Some(BulkResult::of(item, status, Some(why)));
                accounts[i] = Some(kept(account));
                continue;
            }
            // What an earlier run of the job left in flight on this account, settled by its state.
            // A resume runs the same script with the same arguments, so the earlier run read the state first too.
            if seen.is_object() {
                seen["prior_observed"] = json!(true);
            }
            let mut state = state;
            // With `precheck` (or the caller's own reading), the state is known (`None`: the service cannot show it).
            let read = (precheck || item.known.is_some()).then_some(state);
            if let Some(earlier) = self.settle_earlier(conn, (op, &account, &seen), read).await {
                settled.extend(earlier.event);
                state = earlier.state;
                if let Some(why) = earlier.hold_back {
                    results[i] = Some(BulkResult::of(item, ItemStatus::Skipped, Some(why)));
                    accounts[i] = Some(kept(account));
                    continue;
                }
            }
            match state {
                Some(true) => {
                    results[i] =
                        Some(BulkResult::of(item, ItemStatus::Noop, Some(format!("already {}", end_state(op)))))
                }
                seen => todo.push((i, seen)),
            }
            accounts[i] = Some(kept(account));
        }
        if !settled.is_empty() {
            self.recorder.record(settled).await?;
        }
        Ok(todo)
    }

    /// Each candidate's account, as the service resolves its name (concurrently), and with `precheck` its state
    /// (with it off, from the name alone where the service addresses accounts by it); in completion order.
    async fn read_accounts(
        &self,
        plan: &Plan<'_>,
        items: &[BulkItem],
        candidates: Vec<usize>,
        (precheck, failing): (bool, &FailureStreak),
    ) -> Vec<(usize, Result<Read, ApiError>)> {
        let Plan { conn, op, params, .. } = *plan;
        let backend = conn.backend.as_ref();
        stream::iter(candidates)
            .map(|i| {
                let target = items[i].target.clone().unwrap_or_default();
                let item_params = item_params(params, &items[i]);
                let known = items[i].known;
                async move {
                    if let Some(stop) = failing.stop() {
                        return (i, Err(stop));
                    }
                    let read = async {
                        let reads_state = precheck && known.is_none();
                        if let Some(account) = backend.offline_account(&target, &item_params).filter(|_| !reads_state) {
                            return Ok((account, known));
                        }
                        let account = crate::backends::resolve(backend, &target, &item_params).await?;
                        let seen = match (known, precheck) {
                            (Some(known), _) => Some(known),
                            (None, true) => backend.state_of(op, &account, &item_params).await?,
                            (None, false) => None,
                        };
                        Ok((account.without_record(), seen))
                    };
                    (i, failing.note(self.unless_stopped(read).await))
                }
            })
            .buffer_unordered(conn.concurrency.max(1))
            .collect()
            .await
    }

    /// Step 3: a destructive operation asks as a single call would, and so does a job larger than max_changes;
    /// no terminal and no --yes means refused. Then the job counts against the run's action budget.
    fn confirm_job(&self, label: &str, op: Op, params: &Value, changes: usize) -> Result<(), ApiError> {
        if self.budget.planned.load(Ordering::SeqCst) {
            // Part of a plan asked about (and counted) as a whole.
            return Ok(());
        }
        let destructive = op.is_destructive(params);
        let over_budget = changes > self.mode.max_changes;
        if changes > 0 && (destructive || over_budget) && !self.mode.assume_yes {
            let question = match over_budget {
                true => format!(
                    "{label}: this changes {changes} accounts (max_changes is {}). Go ahead?",
                    self.mode.max_changes
                ),
                false => format!("{label}: {} of {changes} accounts. Go ahead?", op.name()),
            };
            let what = match over_budget {
                true => format!("{changes} changes exceed max_changes = {}", self.mode.max_changes),
                false => format!("{} takes access away from {changes} accounts", op.name()),
            };
            self.ask_job(&question, what)?;
        }
        // Confirmed above if the job alone exceeds the budget; otherwise it counts like single calls do.
        match changes <= self.mode.max_changes {
            true => self.spend(changes),
            false => {
                self.budget.changes.fetch_add(changes, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// Asks once for a whole job: `Ok` to go ahead; declined, or nobody to ask (then `what` says why it asked).
    pub(super) fn ask_job(&self, question: &str, what: String) -> Result<(), ApiError> {
        match self.prompt.confirm(question) {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(ApiError::new(ErrorKind::Cancelled, "declined at the confirmation prompt; nothing was changed"))
            }
            Err(why) => Err(ApiError::new(ErrorKind::Cancelled, format!("{what}: {why}"))
                .with_hint("check the plan with --dry-run, then pass --yes (or raise max_changes in the config)")),
        }
    }

    /// The outcome rows of the items decided before any change (why each was left alone).
    fn decided_events(
        &self,
        conn: &Connection,
        op: Op,
        params: &Value,
        (items, accounts): (&[BulkItem], &[Option<Account>]),
        results: &[Option<BulkResult>],
    ) -> Vec<crate::audit::Event> {
        let decided = results.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i, r)));
        decided
            .map(|(i, r)| {
                // Decided on a resolved account, the row names it as a change to it would.
                let action = match &accounts[i] {
                    Some(account) => addressed(op, &items[i], params, account),
                    None => Action::new(op, r.target.clone(), item_params(params, &items[i])),
                };
                let (target, params) = (action.target.as_deref(), &action.params);
                let mut e = self.recorder.event(conn, op, target, params, Phase::Outcome, Status::from(r.status));
                e.error = r.error.clone().unwrap_or_default();
                e.http_status = r.http_status.map(i64::from);
                e
            })
            .collect()
    }

    /// Step 4, for a service that takes many targets in one request: one intent batch, one request, one
    /// outcome each.
    async fn send_in_batches(&self, job: &Job<'_>, todo: &[usize], size: usize) -> Vec<(usize, BulkResult)> {
        stream::iter(todo.chunks(size.max(1)).map(<[usize]>::to_vec).collect::<Vec<_>>())
            .map(|chunk| async move {
                let outcomes: Vec<BulkResult> = match self.stopped() {
                    Some((status, why)) => {
                        chunk.iter().map(|&i| BulkResult::of(&job.items[i], status, Some(why.clone()))).collect()
                    }
                    None => {
                        let actions: Vec<Action> = chunk.iter().map(|&i| job.action(i)).collect();
                        let outcomes = self.execute_batch_recorded(job.conn, job.op, &actions, job.read_at).await;
                        chunk.iter().zip(outcomes).map(|(&i, outcome)| item_result(&job.items[i], outcome)).collect()
                    }
                };
                chunk
                    .into_iter()
                    .zip(outcomes)
                    .map(|(i, r)| {
                        job.outcomes.finished(&r);
                        (i, r)
                    })
                    .collect::<Vec<_>>()
            })
            .buffer_unordered(job.conn.concurrency.max(1))
            .flat_map(stream::iter)
            .collect()
            .await
    }

    /// Step 4, one request per target. Intents are committed chunks ahead of the requests: one fsync per
    /// chunk, off the path of every request, and each still durable before its request leaves. A crash leaves
    /// at most `INTENT_LOOKAHEAD_CHUNKS` chunks of them pending; a resume checks those targets before acting.
    /// Once the job sends nothing more, the items left are reported without writing an intent for them.
    async fn send_each(&self, job: &Job<'_>, todo: &[usize], failing: &FailureStreak) -> Vec<(usize, BulkResult)> {
        use futures::stream::{FuturesOrdered, FuturesUnordered};
        let width = job.conn.concurrency.max(1);
        let mut chunks = todo.chunks(width).map(<[usize]>::to_vec);
        let not_sent = || self.stopped().or_else(|| failing.stop().map(|e| (ItemStatus::Failed, e.message)));
        let write_ahead = |chunk: Vec<usize>| async move {
            if let Some((status, why)) = not_sent() {
                let decided = |i| Ahead::Decided(BulkResult::of(&job.items[i], status, Some(why.clone())));
                return chunk.into_iter().map(|i| (i, decided(i))).collect::<Vec<_>>();
            }
            let actions = chunk.iter().map(|&i| job.action(i)).collect();
            let intents = self.record_intents(job.conn, actions, job.read_at).await;
            chunk.into_iter().zip(intents.into_iter().map(Ahead::Intent)).collect()
        };
        let send = |(i, ahead): (usize, Ahead)| async move {
            let result = self.send_ahead(job, i, ahead, failing).await;
            job.outcomes.finished(&result);
            (i, result)
        };
        // Both stages are polled whenever either can move: writing intents ahead may read the service
        // (`prepare`), and a read holding one of the profile's request slots must finish even while every sender
        // waits for a slot (driven as one stream after the other, it was not: 24 GHES membership changes at
        // concurrency 4 waited forever).
        let (mut writing, mut sending) = (FuturesOrdered::new(), FuturesUnordered::new());
        let mut ready = std::collections::VecDeque::new();
        let mut out = Vec::with_capacity(todo.len());
        loop {
            // Intents written ahead of their requests: those being written, those waiting to be sent, and those
            // waiting among the senders for a slot (the `width` that may be in flight are not ahead).
            let ahead =
                |writing: usize, ready: usize, sending: usize| writing * width + ready + sending.saturating_sub(width);
            while ahead(writing.len(), ready.len(), sending.len()) < INTENT_LOOKAHEAD_CHUNKS * width {
                let Some(chunk) = chunks.next() else { break };
                writing.push_back(write_ahead(chunk));
            }
            while sending.len() < width * ITEMS_PER_SLOT {
                let Some(next) = ready.pop_front() else { break };
                sending.push(send(next));
            }
            if writing.is_empty() && sending.is_empty() {
                break;
            }
            tokio::select! {
                Some(written) = writing.next(), if !writing.is_empty() => ready.extend(written),
                Some(done) = sending.next(), if !sending.is_empty() => out.push(done),
            }
        }
        out
    }

    /// One item of a one-request-per-target job once its intent is written (or it was decided without one):
    /// sent, unless the job sends nothing more.
    async fn send_ahead(&self, job: &Job<'_>, i: usize, ahead: Ahead, failing: &FailureStreak) -> BulkResult {
        let (conn, item) = (job.conn, &job.items[i]);
        match ahead {
            Ahead::Decided(result) => result,
            // Stopped while the intent was being prepared: nothing was written or sent.
            Ahead::Intent(Err(e)) if e.kind == ErrorKind::Cancelled => {
                BulkResult::of(item, ItemStatus::Cancelled, Some(format!("{} before it was sent", e.message)))
            }
            // Its intent could not be recorded, so it was never sent: cancelled, for a resume to send.
            Ahead::Intent(Err(e)) if e.kind == ErrorKind::Audit => {
                BulkResult::of(item, ItemStatus::Cancelled, Some(format!("not sent: {}", e.message)))
            }
            Ahead::Intent(Err(e)) => item_result(item, Err(e)),
            Ahead::Intent(Ok((action, seq))) => {
                let not_sent = self.stopped().or_else(|| failing.stop().map(|e| (ItemStatus::Failed, e.message)));
                match not_sent {
                    Some((status, why)) => {
                        self.recorder.close_unsent(conn, &action, seq, &why);
                        BulkResult::of(item, status, Some(why))
                    }
                    None => item_result(item, failing.note(self.send_recorded(conn, &action, seq).await)),
                }
            }
        }
    }

    /// Why the job sends nothing more, if it must not (its log failed, or the run was stopped), and how each
    /// item left is reported.
    fn stopped(&self) -> Option<(ItemStatus, String)> {
        // Never sent, so cancelled (not failed): the run's end says how to resume once the log is back.
        if self.audit_failed() {
            return Some((ItemStatus::Cancelled, "not sent: the audit log cannot record it".into()));
        }
        self.interrupt
            .is_raised()
            .then(|| (ItemStatus::Cancelled, format!("{} before it was sent", self.interrupt.reason())))
    }

    /// Every item's result of a window (one left undecided is reported, never lost).
    fn window_results(
        &self,
        items: &[BulkItem],
        results: Vec<Option<BulkResult>>,
        outcomes: &Outcomes<'_>,
    ) -> Vec<BulkResult> {
        results
            .into_iter()
            .zip(items)
            .map(|(r, item)| {
                r.unwrap_or_else(|| {
                    let r = BulkResult::of(item, ItemStatus::Failed, Some("left undecided (a steward bug)".into()));
                    outcomes.finished(&r);
                    r
                })
            })
            .collect()
    }
}

/// The accounts a job has met, by a 64-bit digest of their stable ids (a job of millions holds 16 bytes for
/// each), with the line (or position) of the item that named each first.
type SeenAccounts = HashMap<u64, i64>;

/// The digest `SeenAccounts` keeps of an account's stable id (SipHash; the same for the whole job). Two ids
/// sharing one (about one chance in 10^7 in a job of 3,000,000 accounts) make the second item a reported
/// duplicate, never a change to the wrong account.
fn account_digest(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// A job from its start to its end, across its windows of items.
struct JobRun<'a> {
    conn: &'a Connection,
    op: Op,
    label: String,
    params: Value,
    dry_run: bool,
    precheck: bool,
    guard: Option<&'a super::Guard>,
    /// How many items the job has in all (the first window's question covers them all).
    total: usize,
    started: Instant,
    failing: FailureStreak,
    seen: SeenAccounts,
    /// Shown from the first window's confirmation on.
    progress: Option<Box<dyn BulkProgress>>,
    each: Option<&'a EachResult<'a>>,
    confirmed: bool,
    counts: HashMap<ItemStatus, usize>,
    /// Items left to another steward process.
    busy: usize,
}

/// What step 4 of a job acts on: the items left to change, whether it is a dry run, the run of failures.
#[derive(Clone, Copy)]
struct Step<'a> {
    todo: &'a [usize],
    dry_run: bool,
    failing: &'a FailureStreak,
}

/// A job's options, read from its parameters (which keep the rest).
struct JobOptions {
    params: Value,
    dry_run: bool,
    precheck: bool,
}

/// What planning read of an item: the account it names, and its state (`None`: not read, or cannot tell).
type Read = (Account, Option<bool>);

/// What the planning steps of a job share.
#[derive(Clone, Copy)]
struct Plan<'a> {
    conn: &'a Connection,
    op: Op,
    params: &'a Value,
    /// The accounts the job must leave alone (for operations that take something away).
    guard: Option<&'a super::Guard>,
}

/// Told of each item's result as soon as it is known.
pub type EachResult<'a> = dyn Fn(&BulkResult) + Send + Sync + 'a;

/// Where each finished item goes: the progress display, and whoever asked to be told.
struct Outcomes<'a> {
    progress: &'a dyn BulkProgress,
    each: Option<&'a EachResult<'a>>,
}

impl Outcomes<'_> {
    fn finished(&self, result: &BulkResult) {
        self.progress.advance(result.status);
        if let Some(each) = self.each {
            each(result);
        }
    }
}

/// What the sending steps of a job share.
struct Job<'a> {
    conn: &'a Connection,
    op: Op,
    items: &'a [BulkItem],
    /// The account each item to change resolved to (`None` for the items decided without a change).
    accounts: &'a [Option<Account>],
    params: &'a Value,
    outcomes: &'a Outcomes<'a>,
    /// The log's head before the job read its targets: another run acting on one of them since is caught.
    read_at: Option<i64>,
}

impl Job<'_> {
    /// The action for item `i`, addressed to the account it resolved to: the job's parameters with the row's own.
    fn action(&self, i: usize) -> Action {
        match &self.accounts[i] {
            Some(account) => addressed(self.op, &self.items[i], self.params, account),
            None => Action::new(self.op, self.items[i].target.clone(), item_params(self.params, &self.items[i])),
        }
    }
}

/// What a job keeps of an item's account once it is decided on: its stable id and its address, which its
/// intent and outcome name (a job of 100,000 keeps 100,000 of them; names and records were for deciding).
fn kept(account: Account) -> Account {
    Account { id: account.id, address: account.address, ..Account::default() }
}

/// Item `item`'s action addressed to `account`: its address as the target, its stable id as `params.account`,
/// and the name the row gave as `params.named` where that differs.
fn addressed(op: Op, item: &BulkItem, params: &Value, account: &Account) -> Action {
    let mut p = item_params(params, item);
    if !p.is_object() {
        p = json!({});
    }
    p["account"] = json!(account.id);
    let named = item.target.as_deref().unwrap_or_default().trim();
    if named != account.address {
        p["named"] = json!(named);
    }
    Action::new(op, Some(account.address.clone()), p)
}

/// The job's parameters with the row's own (a non-empty `reason` column wins over the job's).
fn item_params(params: &Value, item: &BulkItem) -> Value {
    if item.params.is_empty() {
        return params.clone();
    }
    let mut p = if params.is_object() { params.clone() } else { json!({}) };
    for (k, v) in &item.params {
        if !v.as_str().is_some_and(|s| s.trim().is_empty()) {
            p[k] = v.clone();
        }
    }
    p
}

/// What one item's request came to, as a result row.
fn item_result(item: &BulkItem, outcome: Result<Value, ApiError>) -> BulkResult {
    match outcome {
        Ok(v) if super::is_noop(&v) => {
            let note = v.get("note").and_then(Value::as_str).map(str::to_string);
            BulkResult::of(item, ItemStatus::Noop, note)
        }
        Ok(v) => {
            let mut r = BulkResult::of(item, ItemStatus::Ok, None);
            r.http_status = v.get("http_status").and_then(Value::as_u64).map(|s| s as u16);
            r
        }
        // Another process holds the account, or acted on it since the job read it: left to that process.
        Err(e) if e.kind == ErrorKind::Busy => BulkResult::of(item, ItemStatus::Skipped, Some(e.message)),
        Err(e) if e.kind == ErrorKind::InDoubt => BulkResult::of(item, ItemStatus::InDoubt, Some(e.message)),
        // Stopped (Ctrl-C, `--timeout`) before its request left, in its checks: nothing was sent for it.
        Err(e) if e.kind == ErrorKind::Cancelled => BulkResult::of(item, ItemStatus::Cancelled, Some(e.message)),
        Err(e) => {
            let mut r = BulkResult::of(item, ItemStatus::Failed, Some(e.to_string()));
            r.http_status = e.status;
            r
        }
    }
}

pub(super) fn end_state(op: Op) -> &'static str {
    match op {
        Op::Suspend => "suspended",
        Op::Unsuspend => "active (not suspended)",
        Op::Promote => "an administrator",
        Op::Demote => "not an administrator",
        Op::AddToGroup => "a member of the group",
        Op::RemoveFromGroup => "not a member of the group",
        _ => "in that state",
    }
}
