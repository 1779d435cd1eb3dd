//! `AuditWriter`: one thread owns the audit database and commits whatever is queued in one transaction (group
//! commit). Every caller still waits for its own events to be durable, so a bulk job's intents cost one fsync
//! per batch rather than one per request, and never a request without its recorded intent.

use super::liveness::RunLocks;
use super::{checkpoint, AuditStore, Busy, Event, RunInfo};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// Where the audit log lives; opened on first use so read-only commands never touch it.
#[derive(Clone, Debug)]
pub enum AuditTarget {
    File(PathBuf),
    Memory,
    /// A team's shared log on PostgreSQL.
    Postgres(Arc<super::team::PgTarget>),
}

impl AuditTarget {
    /// Whether there is a log to read yet (a file log is made by the first action; a team log is always there,
    /// or unreachable, which opening it says).
    pub fn exists(&self) -> bool {
        match self {
            AuditTarget::File(p) => p.exists(),
            AuditTarget::Memory => false,
            AuditTarget::Postgres(_) => true,
        }
    }

    /// The local file the log's anchors (checkpoint, signing and fingerprint keys) are kept beside: the log
    /// itself for SQLite, this machine's own place for a team log; none for a log in memory.
    pub fn anchor(&self) -> Option<&std::path::Path> {
        match self {
            AuditTarget::File(p) => Some(p),
            AuditTarget::Memory => None,
            AuditTarget::Postgres(pg) => Some(&pg.anchor),
        }
    }
}

impl std::fmt::Display for AuditTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditTarget::File(p) => write!(f, "{}", p.display()),
            AuditTarget::Memory => f.write_str(":memory:"),
            AuditTarget::Postgres(pg) => f.write_str(&pg.shown),
        }
    }
}

/// Each event's sequence number, or the live run that holds the claim it asked for (the event was not written).
pub type Slots = Vec<Result<i64, Busy>>;

/// Why events could not be recorded (so whatever they announced was not sent). Cloned to every caller whose
/// events were in the failed transaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The log could not be opened, or would not take the rows (disk full, locked, a newer schema).
    #[error("{0}")]
    Store(String),
    /// The log failed its integrity check when opened: steward does not add to a damaged or cut-short log.
    #[error(
        "the audit log {path} failed its integrity check ({problem}), so no action is taken; run `steward audit verify` and restore the log from a backup"
    )]
    Damaged { path: PathBuf, problem: String },
    /// The run locks beside the log (which tell other processes this run is alive) could not be taken.
    #[error("{0}")]
    Lock(String),
    /// The log's first checkpoint could not be written.
    #[error("{0}")]
    Checkpoint(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

impl From<super::AuditError> for WriteError {
    fn from(e: super::AuditError) -> Self {
        WriteError::Store(e.to_string())
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<Slots, WriteError>>;

/// Events queued for commit.
pub struct Pending(tokio::sync::oneshot::Receiver<Result<Slots, WriteError>>);

impl Pending {
    pub async fn wait(self) -> Result<Slots, WriteError> {
        self.0.await.map_err(|_| WriteError::Stopped)?
    }
}

enum Job {
    Append(Vec<Event>, Reply),
    Hold(i64, mpsc::Sender<Result<bool, WriteError>>),
    Head(tokio::sync::oneshot::Sender<Result<i64, WriteError>>),
    Describe(Box<dyn FnOnce(&mut RunInfo) + Send>),
    End(i32, std::sync::mpsc::Sender<()>),
}

/// Most events one transaction takes; bounds the latency a large queue adds to the first caller.
const MAX_BATCH: usize = 2_000;

/// A checkpoint is written after this many rows or this long, whichever comes first, and at the run's end:
/// a run killed midway still leaves a recent head outside the database to check a cut-off tail against.
const CHECKPOINT_ROWS: usize = 1_000;
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    run_id: Arc<AtomicI64>,
}

/// The run locks beside a file log, opened on first use (read-only commands never make the file): one opening
/// per process, so its locks never stand in its own way. A team log keeps its run locks in the database.
struct SharedLocks {
    log: Option<PathBuf>,
    opened: parking_lot::Mutex<Option<Arc<RunLocks>>>,
}

impl SharedLocks {
    fn get(&self) -> Result<Option<Arc<RunLocks>>, WriteError> {
        let Some(log) = &self.log else { return Ok(None) };
        let mut opened = self.opened.lock();
        if opened.is_none() {
            let locks = RunLocks::open(log)
                .map_err(|e| WriteError::Lock(format!("cannot open the run locks beside {}: {e}", log.display())))?;
            *opened = Some(Arc::new(locks));
        }
        Ok(opened.clone())
    }

    /// Whether another process is running `run` (or resuming its job); if that cannot be told, it is.
    fn alive_elsewhere(&self, run: i64) -> bool {
        match self.get() {
            Ok(Some(locks)) => locks.held_elsewhere(run).unwrap_or(true),
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

struct State {
    target: AuditTarget,
    /// Where checkpoints are copied for syslog (`audit_syslog`), if anywhere.
    syslog: Option<PathBuf>,
    store: Option<AuditStore>,
    info: RunInfo,
    run_id: Arc<AtomicI64>,
    locks: SharedLocks,
    /// The runs this process holds (its own and the jobs it resumes): taken again on a new connection to a
    /// team log, whose locks end with the connection that took them.
    held: Vec<i64>,
    /// The digest of this run's record, carried by each of its events (binding the record into the chain).
    run_digest: String,
    /// Rows committed since the last checkpoint, and when it was written.
    unchecked_rows: usize,
    checkpointed_at: std::time::Instant,
    /// What this process found wrong with the log under it (a cut tail, an edited row): it records nothing more.
    refused: Option<String>,
    /// The whole chain's verification, started when the log is first opened (`whole.rs`).
    whole: Option<Arc<super::whole::WholeCheck>>,
}

impl State {
    fn store(&mut self) -> Result<&mut AuditStore, WriteError> {
        if self.store.is_none() {
            let store = AuditStore::open_target(&self.target)?;
            // Fail closed: nothing is recorded (so nothing is sent) on a log that is damaged or was cut short.
            if let Some(anchor) = self.target.anchor() {
                if let Some(problem) = checkpoint::problem(anchor, &store)? {
                    return Err(WriteError::Damaged { path: PathBuf::from(self.target.to_string()), problem });
                }
                // A new log is anchored before its first event, so a log with events always has a checkpoint.
                if !checkpoint::path_for(anchor).exists() {
                    checkpoint::write(anchor, &store, self.syslog.as_deref())
                        .map_err(|e| WriteError::Checkpoint(e.to_string()))?;
                }
            }
            if self.whole.is_none() && !matches!(self.target, AuditTarget::Memory) {
                let head = store.head()?.map_or(0, |(seq, _)| seq);
                self.whole = Some(super::whole::WholeCheck::start(&self.target, head));
            }
            // A new connection to a team log holds no locks yet: take this process's again, unless another
            // process took one over while the database was out of reach.
            for run in self.held.clone() {
                if !store.hold_run(run)? {
                    return Err(WriteError::Lock(format!(
                        "run {run} was taken over by another process while the audit log was out of reach; \
                         this process stops recording (and sending)"
                    )));
                }
            }
            self.store = Some(store);
        }
        self.store.as_mut().ok_or(WriteError::Stopped)
    }

    /// Takes run `run`'s lock for this process; `false` when another process holds it.
    fn hold(&mut self, run: i64) -> Result<bool, WriteError> {
        let held = match self.locks.get()? {
            Some(files) => files.hold(run).map_err(|e| WriteError::Lock(format!("cannot lock run {run}: {e}")))?,
            None => self.store()?.hold_run(run)?,
        };
        if held && !self.held.contains(&run) {
            self.held.push(run);
        }
        Ok(held)
    }

    fn run(&mut self) -> Result<i64, WriteError> {
        let id = self.run_id.load(Ordering::SeqCst);
        if id > 0 {
            return Ok(id);
        }
        let info = self.info.clone();
        let started = self.store()?.start_run(&info);
        let (id, digest) = self.unless_lost(started)?;
        // Held for the life of the process: other processes see this run is alive, and its claims stand.
        self.hold(id)?;
        self.run_digest = digest;
        self.run_id.store(id, Ordering::SeqCst);
        Ok(id)
    }

    fn serve(mut self, rx: mpsc::Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            match job {
                Job::Describe(f) => f(&mut self.info),
                Job::Hold(run, reply) => {
                    let _ = reply.send(self.hold(run));
                }
                Job::Head(reply) => {
                    let head = match self.store() {
                        Ok(store) => {
                            let head = store.head();
                            self.unless_lost(head).map(|h| h.map_or(0, |(seq, _)| seq))
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(head);
                }
                Job::End(status, done) => {
                    self.end(status);
                    let _ = done.send(());
                }
                Job::Append(events, reply) => {
                    // Take everything else already queued into the same transaction.
                    let mut batch = events;
                    let mut replies = vec![(batch.len(), reply)];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Job::Append(more, r)) => {
                                replies.push((more.len(), r));
                                batch.extend(more);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let result = self.commit(&mut batch);
                    let mut at = 0;
                    for (n, r) in replies {
                        let _ = r.send(result.as_ref().map(|seqs| seqs[at..at + n].to_vec()).map_err(Clone::clone));
                        at += n;
                    }
                }
            }
        }
    }

    fn end(&mut self, status: i32) {
        let run = self.run_id.load(Ordering::SeqCst);
        // Nothing is written to a log found cut or edited under this process, not even the run's end; its
        // checkpoint then names the last point the process verified (see `checkpoint::write`), as it did when
        // the change was first found.
        if run > 0 && self.refused.is_none() {
            if self.check_under_us() {
                if let Err(e) = self.store().and_then(|s| s.end_run(run, status).map_err(WriteError::from)) {
                    tracing::warn!("could not record the end of run {run}: {e}");
                }
            }
            self.write_checkpoint();
        }
        // Closing the connection folds the write-ahead log into the database file.
        self.store = None;
    }

    /// A team log's server went away: the next use connects anew (and fails closed until it can).
    fn unless_lost<T>(&mut self, result: Result<T, super::AuditError>) -> Result<T, WriteError> {
        if result.as_ref().is_err_and(super::AuditError::connection_lost) {
            self.store = None;
        }
        result.map_err(WriteError::from)
    }

    fn commit(&mut self, batch: &mut [Event]) -> Result<Slots, WriteError> {
        self.store()?;
        if let Some(Err(problem)) = self.whole.as_ref().map(|w| w.before_write()) {
            self.refused.get_or_insert(problem);
        }
        if let Some(problem) = &self.refused {
            let path = PathBuf::from(self.target.to_string());
            return Err(WriteError::Damaged { path, problem: problem.clone() });
        }
        let run = self.run()?;
        self.store()?;
        for e in batch.iter_mut() {
            e.run_id = run;
            e.run_digest = self.run_digest.clone();
        }
        let locks = &self.locks;
        let Some(store) = self.store.as_mut() else { return Err(WriteError::Stopped) };
        let appended = store.append_claiming(batch, &|r| locks.alive_elsewhere(r));
        if let Err(super::AuditError::ChangedUnderUs(problem)) = &appended {
            // Found now, anchored now: a kill before the run's end must not leave the change unnoticed.
            self.refused = Some(problem.clone());
            self.write_checkpoint();
        }
        let seqs = self.unless_lost(appended)?;
        // Before anyone is told the rows are durable (and sends a request on the strength of it).
        self.keep_wal_on_disk(run)?;
        self.unchecked_rows += seqs.len();
        if self.unchecked_rows >= CHECKPOINT_ROWS || self.checkpointed_at.elapsed() >= CHECKPOINT_INTERVAL {
            self.write_checkpoint();
        }
        Ok(seqs)
    }

    fn write_checkpoint(&mut self) {
        if let (Some(anchor), Some(store)) = (self.target.anchor(), &self.store) {
            match checkpoint::write(anchor, store, self.syslog.as_deref()) {
                Err(e @ checkpoint::CheckpointError::ChangedUnderUs(_)) => {
                    if self.refused.replace(e.to_string()).is_none() {
                        tracing::error!("{e}");
                    }
                }
                Err(e) => tracing::warn!("could not write the audit checkpoint: {e}"),
                Ok(()) => {}
            }
        }
        self.unchecked_rows = 0;
        self.checkpointed_at = std::time::Instant::now();
    }

    /// Whether the log is still the one this process verified and wrote (`AuditStore::catch_up`); if not, it is
    /// said, and nothing more is recorded.
    fn check_under_us(&mut self) -> bool {
        let Some(store) = &self.store else { return true };
        let problem = match store.catch_up() {
            Ok(Ok(_)) => return true,
            Ok(Err(problem)) => problem,
            Err(e) => {
                tracing::warn!("could not check the audit log before the run's end: {e}");
                return true;
            }
        };
        tracing::error!("the audit log changed under this process: {problem}; nothing more is recorded (run `steward audit verify`)");
        self.refused = Some(problem);
        false
    }

    /// SQLite goes on writing to a write-ahead log whose file was deleted (it holds it open), and those rows
    /// would vanish with the process. So fold them into the database file, start a new log, and say so.
    fn keep_wal_on_disk(&mut self, run: i64) -> Result<(), WriteError> {
        let AuditTarget::File(p) = &self.target else { return Ok(()) };
        // SQLite keeps the write-ahead file beside the real database file, not beside a symlink to it.
        let wal = super::beside(&crate::files::real_path(p), "-wal");
        if wal.exists() {
            return Ok(());
        }
        let what = format!(
            "the audit log's write-ahead file {} was deleted while steward ran; its rows were folded back into the database",
            wal.display()
        );
        tracing::warn!("{what}");
        self.store()?.fold_wal()?;
        // Closing lets SQLite finish with the deleted file; the next open creates a new one.
        self.store = None;
        let mut note = [Event {
            run_id: run,
            run_digest: self.run_digest.clone(),
            op: "audit_log".into(),
            phase: "note".into(),
            status: "wal_restored".into(),
            error: what,
            ..Default::default()
        }];
        self.store()?.append(&mut note)?;
        Ok(())
    }
}

impl AuditWriter {
    pub fn spawn(target: AuditTarget, syslog: Option<PathBuf>, info: RunInfo) -> AuditWriter {
        let (tx, rx) = mpsc::channel::<Job>();
        let run_id = Arc::new(AtomicI64::new(0));
        let log = match &target {
            AuditTarget::File(p) => Some(p.clone()),
            AuditTarget::Memory | AuditTarget::Postgres(_) => None,
        };
        let locks = SharedLocks { log, opened: parking_lot::Mutex::new(None) };
        let state = State {
            target,
            syslog,
            store: None,
            info,
            run_id: run_id.clone(),
            locks,
            held: Vec::new(),
            run_digest: String::new(),
            unchecked_rows: 0,
            checkpointed_at: std::time::Instant::now(),
            refused: None,
            whole: None,
        };
        std::thread::Builder::new()
            .name("steward-audit".into())
            .spawn(move || state.serve(rx))
            .expect("the audit thread starts");
        AuditWriter { jobs: tx, run_id }
    }

    /// Takes the lock of a job (its first run) for this process, so no other process runs or resumes it at the
    /// same time; `false` when another one is. A log in memory has no other process.
    pub fn hold_job(&self, first_run: i64) -> Result<bool, WriteError> {
        let (tx, rx) = mpsc::channel();
        self.jobs.send(Job::Hold(first_run, tx)).map_err(|_| WriteError::Stopped)?;
        rx.recv().map_err(|_| WriteError::Stopped)?
    }

    /// The log's newest seq now (0 when empty), every process's events counted: what a job read after this
    /// is newer than the log's head, so an event another run adds on the same account later makes it stale.
    pub async fn head(&self) -> Result<i64, WriteError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send(Job::Head(tx)).map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Appends events and waits until they are durable; returns their sequence numbers (or, for an event
    /// claiming a target another live run holds, that run).
    pub async fn append(&self, events: Vec<Event>) -> Result<Slots, WriteError> {
        self.submit(events).wait().await
    }

    /// Queues events for the next commit without waiting; `Pending::wait` tells when they are durable.
    pub fn submit(&self, events: Vec<Event>) -> Pending {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.jobs.send(Job::Append(events, tx));
        Pending(rx)
    }

    /// Changes what the run row will say (script path, resumed run) before its first event.
    pub fn describe(&self, f: impl FnOnce(&mut RunInfo) + Send + 'static) {
        let _ = self.jobs.send(Job::Describe(Box::new(f)));
    }

    /// The run id, once this invocation recorded anything.
    pub fn run_id(&self) -> Option<i64> {
        Some(self.run_id.load(Ordering::SeqCst)).filter(|id| *id > 0)
    }

    /// Records how the run ended (if it recorded anything) and waits for it.
    pub fn finish(&self, exit_status: i32) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.jobs.send(Job::End(exit_status, tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_run_leaves_checkpoints_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(AuditTarget::File(db.clone()), None, RunInfo::default());
        let event =
            || Event { op: "suspend".into(), phase: "intent".into(), status: "pending".into(), ..Default::default() };
        writer.append((0..CHECKPOINT_ROWS - 1).map(|_| event()).collect()).await.unwrap();
        let genesis = checkpoint::read(&db).unwrap().expect("a new log is anchored before its first event");
        assert_eq!(genesis.seq, 0, "not yet past seq 0: fewer rows than CHECKPOINT_ROWS");
        let seqs = writer.append(vec![event()]).await.unwrap();
        let cp = checkpoint::read(&db).unwrap().expect("a checkpoint while the run goes on");
        assert_eq!(Ok(cp.seq), seqs[0]);
    }
}
