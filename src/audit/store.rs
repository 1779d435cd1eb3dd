//! `AuditStore`: opening the log (a SQLite file with pragmas and numbered migrations keyed on `user_version`, or
//! a team's PostgreSQL database, `team`) and appending to its chain.

use super::chain::{self, Event};
use super::db::{Db, DbError, Engine, Val};
use super::AuditTarget;
use rusqlite::{Connection, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    // `why` is said in the message, not chained as a source too: printed with its causes it was said three times.
    #[error("cannot open the audit log {path}: {why} (hint: {})", open_hint(.why))]
    Open { path: PathBuf, why: DbError },
    #[error("cannot reach the team audit log {url}: {why} (hint: check the server is up, `audit_url` and the password source; steward sends nothing while its log is unreachable)")]
    Connect { url: String, why: super::team::TeamError },
    #[error("cannot prepare the team audit log {url}: {source} (hint: the database's owner runs steward once to create the tables and the steward_writer role; then `GRANT steward_writer TO <your role>`)")]
    TeamSchema { url: String, source: DbError },
    #[error("the audit log {path} has schema version {found}, newer than this steward understands ({supported}); upgrade steward")]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("audit log write failed, so the action was not sent: {0} (hint: check disk space and that no other program holds the database; for a team log, that its server is up)")]
    Write(DbError),
    #[error("audit log read failed: {0}")]
    Read(DbError),
    #[error(
        "the audit log changed under steward: {0}; nothing more is recorded or sent (hint: run `steward audit verify`)"
    )]
    ChangedUnderUs(String),
    #[error(
        "the audit log {path} does not verify ({why}), so steward does not act on what it records (hint: run `steward audit verify`)"
    )]
    Untrusted { path: PathBuf, why: String },
    #[error("cannot use this machine's signing key: {0}")]
    MachineKey(#[from] super::keyfile::KeyError),
    #[error(
        "cannot use this machine's signing key: it ({machine}) is registered in the team log by {writer}, not by \
         you ({me}): someone copied its public key there first; move {} away to make a new key", path.display()
    )]
    MachineTaken { machine: String, writer: String, me: String, path: PathBuf },
    #[error("cannot take the claim {path}: {source} (hint: check that directory is writable)")]
    Claim { path: PathBuf, source: std::io::Error },
}

/// What to do about a log that would not open: a file that is not a database at all was overwritten or is not
/// steward's; anything else is about where it is.
fn open_hint(why: &DbError) -> &'static str {
    match why {
        DbError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            "this file is not a SQLite database: it was overwritten or is not steward's log; move it aside and put \
             back a copy (`steward audit verify` checks a copy against its signed checkpoint), or set --audit-db"
        }
        _ => "check the directory exists and is writable, or set --audit-db",
    }
}

impl AuditError {
    /// The database went away (a PostgreSQL server restarted or unreachable): a new connection may do.
    pub fn connection_lost(&self) -> bool {
        match self {
            AuditError::Write(e) | AuditError::Read(e) => e.connection_lost(),
            AuditError::Connect { .. } => true,
            _ => false,
        }
    }
}

/// Another run stands in the way of an intent, which was not written: it holds the account (a live run's open
/// intent), or it acted on the account after this job read it (`changed`: the job's reading is stale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    pub run: i64,
    pub changed: bool,
}

/// The migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_resume.sql"),
    include_str!("migrations/0003_token_fingerprint.sql"),
    include_str!("migrations/0004_run_digest.sql"),
    include_str!("migrations/0005_claims.sql"),
    include_str!("migrations/0006_run_profile.sql"),
    include_str!("migrations/0007_origin.sql"),
    include_str!("migrations/0008_writer_origin.sql"),
    include_str!("migrations/0009_set_aside.sql"),
    include_str!("migrations/0010_machines.sql"),
];

/// Who started a run and how; one row per steward invocation that performed an action.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub os_user: String,
    pub host: String,
    pub command: String,
    pub script_path: Option<String>,
    pub script_sha256: Option<String>,
    /// The run this one continues (`steward run --resume RUN`).
    pub resumed_from: Option<i64>,
    /// The profile `connect()` opens when given no name, if any.
    pub default_profile: Option<String>,
    /// When the process started (`runs` shows it; the run's row is written with its first event, later).
    pub started_at: Option<String>,
}

pub struct AuditStore {
    db: Db,
    /// The SQLite file; for a team log, the local file its anchors (checkpoint, keys) are kept beside.
    path: PathBuf,
    /// The last point of the chain this connection verified or wrote (`known.rs`): it must still be there,
    /// unchanged, and the rows after it must verify, before the next is appended or a checkpoint signed, so a tail
    /// cut (or rows edited) under a running process is never built upon and signed.
    known: parking_lot::Mutex<Option<(i64, String)>>,
    /// The highest seq of a row set aside (skipped by the chain) met past the known point: the next row is
    /// numbered after it, though it links to the row before it.
    set_aside_top: std::sync::atomic::AtomicI64,
    /// This machine's key and what this connection learned of the log's machines and unsealed rows.
    pub(super) sealing: super::machine::Sealing,
}

impl AuditStore {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        // Private from its first byte: it names accounts, hosts and errors (SQLite gives -wal and -shm the
        // database file's mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        }
        let conn = Connection::open(path).map_err(|e| AuditError::Open { path: path.into(), why: e.into() })?;
        Self::prepare(conn, path)
    }

    /// The log a target names: a SQLite file, memory, or a team's PostgreSQL database.
    pub fn open_target(target: &AuditTarget) -> Result<Self, AuditError> {
        match target {
            AuditTarget::File(path) => Self::open(path),
            AuditTarget::Memory => Self::open_in_memory(),
            AuditTarget::Postgres(pg) => {
                let db = super::team::open(pg)?;
                Ok(AuditStore {
                    db,
                    path: pg.anchor.clone(),
                    known: Default::default(),
                    set_aside_top: Default::default(),
                    sealing: Default::default(),
                })
            }
        }
    }

    /// The log at `path`, for reading back what steward will act on (a resume's finished items, what undo
    /// reverses, a user's role before termination): only if every row verifies and the log matches its anchors.
    /// An edited row before the newest checkpoint would otherwise pass the cheap check that writing does.
    pub fn open_verified(path: &Path) -> Result<Self, AuditError> {
        Self::open_verified_target(&AuditTarget::File(path.to_path_buf()))
    }

    /// `open_verified` for any target (a log in memory has no anchors to check).
    pub fn open_verified_target(target: &AuditTarget) -> Result<Self, AuditError> {
        let store = Self::open_target(target)?;
        let untrusted = |why: String| AuditError::Untrusted { path: PathBuf::from(target.to_string()), why };
        if let Some(damage) = store.damage()? {
            return Err(untrusted(damage));
        }
        if let Some(b) = store.verify()?.first_break {
            return Err(untrusted(format!("the chain breaks at seq {}", b.seq())));
        }
        if let Some(anchor) = target.anchor() {
            if let Some(problem) = super::checkpoint::problem_after_verify(anchor, &store)? {
                return Err(untrusted(problem));
            }
        }
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Self, AuditError> {
        let conn =
            Connection::open_in_memory().map_err(|e| AuditError::Open { path: ":memory:".into(), why: e.into() })?;
        Self::prepare(conn, Path::new(":memory:"))
    }

    fn prepare(mut conn: Connection, path: &Path) -> Result<Self, AuditError> {
        let open_err = |e: rusqlite::Error| AuditError::Open { path: path.into(), why: e.into() };
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        // WAL lets a REPL and a batch job share the log; FULL makes each commit survive power loss.
        // Switching to WAL needs a moment alone with the file; another process opening it at the same instant
        // can make SQLite answer "busy" without waiting, so try again briefly.
        let mut attempts = 0;
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            attempts += 1;
            if attempts > 100 {
                return Err(open_err(e));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        // Test hook: a page limit makes the disk "full" for this connection (fault case 6 of the plan).
        if let Some(pages) = std::env::var("STEWARD_AUDIT_MAX_PAGES").ok().and_then(|v| v.parse::<i64>().ok()) {
            conn.pragma_update(None, "max_page_count", pages).map_err(open_err)?;
        }
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(open_err)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(AuditError::NewerSchema { path: path.into(), found: version, supported });
        }
        if version < supported {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_err)?;
            // Another process may have migrated while this one waited for the write lock: read again.
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(open_err)?;
            for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
                tx.execute_batch(sql).map_err(open_err)?;
            }
            tx.pragma_update(None, "user_version", supported).map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(AuditStore {
            db: Db::Sqlite(conn),
            path: path.into(),
            known: Default::default(),
            set_aside_top: Default::default(),
            sealing: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// The SQLite connection, for tests that edit the file behind steward's back.
    #[cfg(test)]
    pub(super) fn conn(&self) -> &Connection {
        match &self.db {
            Db::Sqlite(c) => c,
            Db::Postgres(_) => panic!("not a SQLite log"),
        }
    }

    /// Copies every frame of the write-ahead log into the database file and empties the log (it must not be
    /// in use by another process's reader); the rows then live in the database file alone.
    pub fn fold_wal(&mut self) -> Result<(), AuditError> {
        if self.db.engine() != Engine::Sqlite {
            return Ok(());
        }
        let busy = self.db.row("PRAGMA wal_checkpoint(TRUNCATE)", &[]).map_err(AuditError::Write)?;
        if busy.map(|r| r.int(0)).transpose().map_err(AuditError::Write)? != Some(0) {
            return Err(AuditError::Write(DbError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("another process is reading the log; the write-ahead log could not be folded in".into()),
            ))));
        }
        Ok(())
    }

    /// Records a run; returns its id and the digest of its record, which every event of the run carries.
    pub fn start_run(&mut self, info: &RunInfo) -> Result<(i64, String), AuditError> {
        let started = info.started_at.clone().unwrap_or_else(now);
        self.import_run(info, &started, None)
    }

    /// Records a run that started at `started` (a run copied from another log keeps its time).
    /// `origin`: the log and run it was first recorded as, for a run `audit push` copies.
    pub fn import_run(
        &mut self,
        info: &RunInfo,
        started: &str,
        origin: Option<&str>,
    ) -> Result<(i64, String), AuditError> {
        let machine = self.machine_key()?.id().to_string();
        let id = self
            .db
            .row(
                "INSERT INTO runs (started_at, os_user, host, command, script_path, script_sha256, resumed_from, default_profile, origin, machine) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
                &[
                    started.into(),
                    (&info.os_user).into(),
                    (&info.host).into(),
                    (&info.command).into(),
                    info.script_path.clone().into(),
                    info.script_sha256.clone().into(),
                    info.resumed_from.into(),
                    info.default_profile.clone().into(),
                    origin.into(),
                    machine.into(),
                ],
            )
            .map_err(AuditError::Write)?
            .map(|r| r.int(0))
            .transpose()
            .map_err(AuditError::Write)?
            .ok_or_else(|| AuditError::Write(DbError::Type("the new run has no id".into())))?;
        Ok((id, self.run_digest(id)?.unwrap_or_default()))
    }

    /// The digest of run `id`'s record as it stands in the `runs` table now (`None`: no such run).
    pub fn run_digest(&self, id: i64) -> Result<Option<String>, AuditError> {
        Ok(self.run_digests(Some(id))?.remove(&id))
    }

    /// The digests of every run's record (or of run `only`), by run id.
    pub(super) fn run_digests(&self, only: Option<i64>) -> Result<HashMap<i64, String>, AuditError> {
        let rows = self
            .db
            .rows(
                "SELECT id, started_at, os_user, host, command, script_path, script_sha256, resumed_from, default_profile FROM runs WHERE CAST(?1 AS BIGINT) IS NULL OR id = ?1",
                &[only.into()],
            )
            .map_err(AuditError::Read)?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let digest = (|| -> Result<(i64, String), DbError> {
                let id = r.int(0)?;
                let text = |i: usize| r.opt_text(i).map(Option::unwrap_or_default);
                let resumed = r.opt_int(7)?.map(|n| n.to_string()).unwrap_or_default();
                let mut fields =
                    vec![id.to_string(), text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(6)?, resumed];
                // Only when set, so runs recorded before the column keep their digests.
                if let Some(profile) = r.opt_text(8)? {
                    fields.push(profile);
                }
                Ok((id, chain::run_digest(&fields.iter().map(String::as_str).collect::<Vec<_>>())))
            })()
            .map_err(AuditError::Read)?;
            out.insert(digest.0, digest.1);
        }
        Ok(out)
    }

    pub fn end_run(&mut self, run_id: i64, exit_status: i32) -> Result<(), AuditError> {
        self.db
            .execute(
                "INSERT INTO run_ends (run_id, ended_at, exit_status) VALUES (?1, ?2, ?3)",
                &[run_id.into(), now().into(), i64::from(exit_status).into()],
            )
            .map_err(AuditError::Write)?;
        Ok(())
    }

    /// Appends events in one durable transaction (a group commit); returns their sequence numbers.
    /// `seq` and `ts` of the given events are assigned here.
    pub fn append(&mut self, events: &mut [Event]) -> Result<Vec<i64>, AuditError> {
        let slots = self.append_claiming(events, &|_| false)?;
        Ok(slots.into_iter().flatten().collect())
    }

    /// `append`, where an event with a `claim` is written only if no other run that is still alive
    /// (`alive(run)`) holds an open intent with the same claim; otherwise its slot names that run. The check and
    /// the write share one transaction under the chain's lock, so two processes can never both claim a target.
    pub fn append_claiming(
        &mut self,
        events: &mut [Event],
        alive: &dyn Fn(i64) -> bool,
    ) -> Result<Vec<Result<i64, Busy>>, AuditError> {
        self.db.begin_append().map_err(AuditError::Write)?;
        match self.append_locked(events, alive) {
            Ok((seqs, head)) => {
                self.db.commit().map_err(AuditError::Write)?;
                if let Some(head) = head {
                    self.know(head);
                    self.sealing.registered();
                }
                Ok(seqs)
            }
            Err(e) => {
                self.db.rollback();
                self.sealing.rolled_back();
                Err(e)
            }
        }
    }

    /// Takes run `run`'s lock for this connection, for as long as it lasts; `false` when another process holds
    /// it. Only a team log keeps run locks in the database (a SQLite log's are files beside it, `liveness`).
    pub fn hold_run(&self, run: i64) -> Result<bool, AuditError> {
        match self.db.engine() {
            Engine::Postgres => super::team::hold(&self.db, run).map_err(AuditError::Write),
            Engine::Sqlite => Ok(true),
        }
    }

    /// Whether another process runs `run` now, as a team log knows it (`None` for a SQLite log: its run locks
    /// are files beside it).
    pub fn held_elsewhere(&self, run: i64) -> Result<Option<bool>, AuditError> {
        match self.db.engine() {
            Engine::Postgres => super::team::held_elsewhere(&self.db, run).map(Some).map_err(AuditError::Read),
            Engine::Sqlite => Ok(None),
        }
    }

    /// The body of `append_claiming`, inside its transaction: the slots, and the new head if anything was written.
    /// A few statements whatever the batch's size (the head, the claims standing, the rows in chunks): each is a
    /// round trip to a team log's server, and the chain's lock is held meanwhile.
    #[allow(clippy::type_complexity)]
    fn append_locked(
        &self,
        events: &mut [Event],
        alive: &dyn Fn(i64) -> bool,
    ) -> Result<(Vec<Result<i64, Busy>>, Option<(i64, String)>), AuditError> {
        let w = AuditError::Write;
        let (mut seq, mut prev) = self.head_checked()?;
        seq = seq.max(self.set_aside_top.load(std::sync::atomic::Ordering::SeqCst));
        let standing = self.standing_claims(events)?;
        // A team log knows which runs are alive itself: their processes' sessions hold their locks. Each run is
        // asked about once a batch.
        let known: std::cell::RefCell<HashMap<i64, bool>> = Default::default();
        let alive = |run: i64| {
            *known.borrow_mut().entry(run).or_insert_with(|| match self.db.engine() {
                Engine::Postgres => super::team::held_elsewhere(&self.db, run).unwrap_or(true),
                Engine::Sqlite => alive(run),
            })
        };
        let mut seqs = Vec::with_capacity(events.len());
        let mut rows: Vec<(usize, String, String)> = Vec::with_capacity(events.len());
        let ts = now();
        for (i, e) in events.iter_mut().enumerate() {
            if !e.claim.is_empty() {
                let on_claim = || standing.iter().filter(|c| c.claim == e.claim);
                if let Some(c) = on_claim().find(|c| !c.settled && alive(c.run)) {
                    seqs.push(Err(Busy { run: c.run, changed: false }));
                    continue;
                }
                if let Some(read_at) = e.read_at {
                    if let Some(c) = on_claim().find(|c| c.seq > read_at || c.settled_at.is_some_and(|s| s > read_at)) {
                        seqs.push(Err(Busy { run: c.run, changed: true }));
                        continue;
                    }
                }
            }
            seq += 1;
            e.seq = seq;
            // An event copied from another log keeps the time it was first recorded.
            if e.origin.is_empty() || e.ts.is_empty() {
                e.ts = ts.clone();
            }
            let hash = chain::link(&prev, e);
            rows.push((i, std::mem::replace(&mut prev, hash.clone()), hash));
            seqs.push(Ok(seq));
        }
        let written = seqs.iter().any(Result::is_ok).then_some((seq, prev));
        if let (Some((first, ..)), Some((last, _, hash))) = (rows.first(), rows.last()) {
            // Sealed by this machine, in the same transaction: its rows are never in the log unsealed.
            let key = self.machine_key()?;
            let seal = key.seal(events[*first].seq, events[*last].seq, hash);
            self.register_machine(events[*first].seq)?;
            let sealed = Sealed { machine: key.id(), last: *last, seal: &seal };
            for chunk in rows.chunks(INSERT_ROWS) {
                self.insert(events, chunk, &sealed).map_err(w)?;
            }
        }
        Ok((seqs, written))
    }

    /// The chain's head, once this connection's known point is seen still there and unchanged and every row
    /// after it verifies (a tail cut or an edit under a running process is never built upon).
    fn head_checked(&self) -> Result<(i64, String), AuditError> {
        self.catch_up()?.map_err(AuditError::ChangedUnderUs)
    }

    /// The last point of the chain this connection verified or wrote.
    pub(super) fn known_point(&self) -> Option<(i64, String)> {
        self.known.lock().clone()
    }

    /// Records that row `seq` (whose hash is `hash`) is set aside. Only the team log's owner may: a writer's
    /// attempt is refused by the database, and said so.
    pub fn set_aside(&self, seq: i64, hash: &str, why: &str) -> Result<(), AuditError> {
        let done = self.db.execute(
            "INSERT INTO steward_set_aside (seq, hash, why) VALUES (?1, ?2, ?3)",
            &[seq.into(), hash.into(), why.into()],
        );
        match done {
            Err(e) if e.is_denied() => {
                Err(AuditError::Write(DbError::Type(format!("only the team log's owner may set a row aside ({e})"))))
            }
            other => other.map(|_| ()).map_err(AuditError::Write),
        }
    }

    /// A row set aside at `seq` was met: the next row is numbered after it.
    pub(super) fn met_set_aside(&self, seq: i64) {
        self.set_aside_top.fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the known point: verified, or written by this connection.
    pub(super) fn know(&self, point: (i64, String)) {
        *self.known.lock() = Some(point);
    }

    /// Other runs' intents on the claims these events make that could stand in their way: still open, or made
    /// or settled after the earliest time one of the events' jobs read its targets. One query for the batch.
    /// Only rows written by their run's writer and machine count (`by_its_run`), and an outcome its machine did
    /// not seal settles nothing: a teammate cannot free an account another's live job is acting on.
    fn standing_claims(&self, events: &[Event]) -> Result<Vec<Standing>, AuditError> {
        let claimed: Vec<&Event> = events.iter().filter(|e| !e.claim.is_empty()).collect();
        let Some(me) = claimed.first().map(|e| e.run_id) else { return Ok(Vec::new()) };
        let read_at = claimed.iter().filter_map(|e| e.read_at).min().unwrap_or(i64::MAX);
        let mut claims: Vec<&str> = claimed.iter().map(|e| e.claim.as_str()).collect();
        claims.sort_unstable();
        claims.dedup();
        let mut out = Vec::new();
        for chunk in claims.chunks(INSERT_ROWS) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("?{}", i + 3)).collect();
            // One join on the intent index, grouped per intent (a correlated `max(seq)` per intent is answered by
            // PostgreSQL walking the whole primary key backwards). Whether the intent is its run's own is read as a
            // column: as a condition, PostgreSQL joins the runs first and scans every event for the claims.
            let sql = format!(
                "SELECT i.claim, i.run_id, i.seq, max(CASE WHEN o.run_id != ?1 THEN o.seq END), max(o.seq), {}
                 FROM events i LEFT JOIN events o ON o.intent_seq = i.seq AND {}
                 WHERE i.claim IN ({}) AND i.run_id != ?1
                 GROUP BY i.claim, i.run_id, i.seq
                 HAVING i.seq > ?2 OR count(o.seq) = 0 OR max(CASE WHEN o.run_id != ?1 THEN o.seq END) > ?2
                     OR i.run_id IN ({})",
                super::query::by_its_run("i"),
                super::query::by_its_run("o"),
                list.join(", "),
                self.maybe_live_runs(),
            );
            let mut args: Vec<Val> = vec![me.into(), read_at.into()];
            args.extend(chunk.iter().map(|c| Val::from(*c)));
            for r in self.db.rows(&sql, &args).map_err(AuditError::Read)? {
                let read = || {
                    Ok::<_, DbError>((r.text(0)?, r.int(1)?, r.int(2)?, r.opt_int(3)?, r.opt_int(4)?, r.int(5)? != 0))
                };
                let (claim, run, seq, settled_at, newest, its_runs) = read().map_err(AuditError::Read)?;
                if !its_runs {
                    continue;
                }
                // The newest outcome must be its machine's own; if not, the intent stands open.
                let settled = match newest {
                    Some(outcome) => self.row_is_sealed(outcome)?,
                    None => false,
                };
                out.push(Standing { claim, run, seq, settled_at: settled_at.filter(|_| settled), settled });
            }
        }
        Ok(out)
    }

    /// A query for the runs that may still be at work, whose intents are always looked at (an outcome that
    /// seems to settle one may be forged): a team log knows the runs whose sessions hold their locks; a SQLite
    /// log, the runs that never recorded their end.
    fn maybe_live_runs(&self) -> String {
        match self.db.engine() {
            Engine::Postgres => super::team::live_runs(),
            Engine::Sqlite => "SELECT id FROM runs WHERE id NOT IN (SELECT run_id FROM run_ends)".to_string(),
        }
    }

    /// Inserts the rows `(index into events, prev_hash, hash)` in one statement.
    fn insert(&self, events: &[Event], rows: &[(usize, String, String)], sealed: &Sealed) -> Result<(), DbError> {
        const COLUMNS: usize = 26;
        let mut args: Vec<Val> = Vec::with_capacity(rows.len() * COLUMNS);
        let mut values = Vec::with_capacity(rows.len());
        for (n, (i, prev, hash)) in rows.iter().enumerate() {
            let e = &events[*i];
            let at = n * COLUMNS;
            values.push(format!("({})", (1..=COLUMNS).map(|c| format!("?{}", at + c)).collect::<Vec<_>>().join(", ")));
            args.extend([
                e.seq.into(),
                e.run_id.into(),
                (&e.ts).into(),
                (&e.profile).into(),
                (&e.kind).into(),
                (&e.base_url).into(),
                (&e.identity).into(),
                (&e.op).into(),
                (&e.target).into(),
                (&e.params).into(),
                (&e.mode).into(),
                (&e.phase).into(),
                e.intent_seq.into(),
                (&e.status).into(),
                e.http_status.into(),
                (&e.error).into(),
                e.duration_ms.into(),
                (&e.token_source).into(),
                (&e.token_fp).into(),
                prev.into(),
                hash.into(),
                (&e.run_digest).into(),
                Some(e.claim.as_str()).filter(|c| !c.is_empty()).into(),
                (&e.origin).into(),
                sealed.machine.into(),
                (*i == sealed.last).then_some(sealed.seal).into(),
            ]);
        }
        let sql = format!(
            "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase,
             intent_seq, status, http_status, error, duration_ms, token_source, token_fp, prev_hash, hash, run_digest,
             claim, origin, machine, seal) VALUES {}",
            values.join(", ")
        );
        self.db.execute(&sql, &args)?;
        Ok(())
    }
}

/// Rows one INSERT carries at most (26 parameters each, under SQLite's and PostgreSQL's parameter limits).
const INSERT_ROWS: usize = 400;

/// Which machine writes a transaction's rows, and the seal its last row (`last`, an index into the events)
/// carries.
struct Sealed<'a> {
    machine: &'a str,
    last: usize,
    seal: &'a str,
}

/// Another run's intent on a claim a batch makes (see `standing_claims`).
struct Standing {
    claim: String,
    run: i64,
    seq: i64,
    /// The seq of its outcome, when another run than the asking one recorded it.
    settled_at: Option<i64>,
    settled: bool,
}

/// RFC 3339 UTC with milliseconds, the one time format of the audit log.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: &str) -> Event {
        Event { run_id: 1, op: op.into(), phase: "intent".into(), status: "pending".into(), ..Default::default() }
    }

    #[test]
    fn appends_number_and_chain_events() {
        let mut store = AuditStore::open_in_memory().unwrap();
        let (run, _) = store.start_run(&RunInfo::default()).unwrap();
        assert_eq!(run, 1);
        let seqs = store.append(&mut [event("suspend"), event("promote")]).unwrap();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(store.append(&mut [event("demote")]).unwrap(), vec![3]);
        let prev: String =
            store.conn().query_row("SELECT prev_hash FROM events WHERE seq = 3", [], |r| r.get(0)).unwrap();
        let hash2: String = store.conn().query_row("SELECT hash FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap();
        assert_eq!(prev, hash2);
    }

    #[test]
    fn a_tail_cut_under_a_running_writer_is_never_built_upon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut writer = AuditStore::open(&path).unwrap();
        writer.start_run(&RunInfo::default()).unwrap();
        writer.append(&mut [event("suspend"), event("suspend"), event("suspend")]).unwrap();
        // Someone with the file cuts the last row away behind the writer's back.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 3;").unwrap();
        let e = writer.append(&mut [event("suspend")]).unwrap_err();
        assert!(matches!(e, AuditError::ChangedUnderUs(_)), "{e}");
        assert!(e.to_string().contains("event 3"), "{e}");
        let count: i64 = other.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 2, "no seq was reused");
    }

    #[test]
    fn the_log_refuses_updates_and_deletes() {
        let mut store = AuditStore::open_in_memory().unwrap();
        store.append(&mut [event("suspend")]).unwrap();
        assert!(store.conn().execute("UPDATE events SET target = 'x'", []).is_err());
        assert!(store.conn().execute("DELETE FROM events", []).is_err());
        store.start_run(&RunInfo::default()).unwrap();
        assert!(store.conn().execute("DELETE FROM runs", []).is_err());
    }

    #[test]
    fn reopening_keeps_the_schema_and_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        AuditStore::open(&path).unwrap().append(&mut [event("suspend")]).unwrap();
        let mut again = AuditStore::open(&path).unwrap();
        assert_eq!(again.append(&mut [event("unsuspend")]).unwrap(), vec![2]);
    }

    /// A live run's intent on an account stands until that run's own machine seals an outcome for it: an
    /// outcome forged into the run (chain-valid, naming its machine) does not free the account for another job.
    #[test]
    fn a_forged_outcome_does_not_free_a_live_runs_claim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut alice = AuditStore::open(&path).unwrap();
        let (run, digest) = alice.start_run(&RunInfo::default()).unwrap();
        let claim = "ghes user0003";
        let mut intent = event("suspend");
        intent.run_id = run;
        intent.run_digest = digest;
        intent.claim = claim.into();
        let seq = alice.append(std::slice::from_mut(&mut intent)).unwrap()[0];
        let machine: String =
            alice.conn().query_row("SELECT machine FROM runs WHERE id = ?1", [run], |r| r.get(0)).unwrap();
        // The forger links an "ok" outcome onto the head, as Alice's run and machine, with no seal.
        let mut forged = intent.clone();
        forged.seq = seq + 1;
        forged.phase = "outcome".into();
        forged.status = "ok".into();
        forged.intent_seq = Some(seq);
        let prev: String =
            alice.conn().query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |r| r.get(0)).unwrap();
        let hash = chain::link(&prev, &forged);
        alice
            .conn()
            .execute(
                "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, intent_seq, status, error, token_source, token_fp, prev_hash, hash, run_digest, origin, machine) \
                 VALUES (?1, ?2, ?3, '', '', '', '', 'suspend', '', '', '', 'outcome', ?4, 'ok', '', '', '', ?5, ?6, ?7, '', ?8)",
                rusqlite::params![forged.seq, run, forged.ts, seq, prev, hash, forged.run_digest, machine],
            )
            .unwrap();
        let mut bob = AuditStore::open(&path).unwrap();
        let (bobs, _) = bob.start_run(&RunInfo::default()).unwrap();
        let mut wants = event("unsuspend");
        wants.run_id = bobs;
        wants.claim = claim.into();
        let slots = bob.append_claiming(std::slice::from_mut(&mut wants), &|r| r == run).unwrap();
        assert_eq!(slots, vec![Err(Busy { run, changed: false })], "the account is still Alice's");
        assert!(!bob.row_is_sealed(seq + 1).unwrap());
        assert!(bob.row_is_sealed(seq).unwrap(), "Alice's own intent is sealed");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(AuditStore::open(&path), Err(AuditError::NewerSchema { found: 99, .. })));
    }
}
