//! `AuditStore`: opening the SQLite file (pragmas, numbered migrations keyed on `user_version`) and appending.

use super::chain::{self, Event};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {path}: {source} (hint: check the directory exists and is writable, or set --audit-db)")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("the audit log {path} has schema version {found}, newer than this steward understands ({supported}); upgrade steward")]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("audit log write failed, so the action was not sent: {0} (hint: check disk space and that no other program holds the database)")]
    Write(rusqlite::Error),
    #[error("audit log read failed: {0}")]
    Read(rusqlite::Error),
    #[error(
        "the audit log changed under steward: {0}; nothing more is recorded or sent (hint: run `steward audit verify`)"
    )]
    ChangedUnderUs(String),
    #[error(
        "the audit log {path} does not verify ({why}), so steward does not act on what it records (hint: run `steward audit verify`)"
    )]
    Untrusted { path: PathBuf, why: String },
}

/// Another live run has an open intent on the same account: the event was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    pub run: i64,
}

/// The migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_resume.sql"),
    include_str!("migrations/0003_token_fingerprint.sql"),
    include_str!("migrations/0004_run_digest.sql"),
    include_str!("migrations/0005_claims.sql"),
    include_str!("migrations/0006_run_profile.sql"),
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
}

pub struct AuditStore {
    conn: Connection,
    path: PathBuf,
    /// The last event this connection wrote: it must still be there, unchanged, when the next is appended, so a
    /// tail cut (or rows edited) under a running process is never built upon and signed.
    last_written: Option<(i64, String)>,
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
        let conn = Connection::open(path).map_err(|source| AuditError::Open { path: path.into(), source })?;
        Self::prepare(conn, path)
    }

    /// The log at `path`, for reading back what steward will act on (a resume's finished items, what undo
    /// reverses, a user's role before termination): only if every row verifies and the log matches its anchors.
    /// An edited row before the newest checkpoint would otherwise pass the cheap check that writing does.
    pub fn open_verified(path: &Path) -> Result<Self, AuditError> {
        let store = Self::open(path)?;
        let untrusted = |why: String| AuditError::Untrusted { path: path.into(), why };
        if let Some(b) = store.verify()?.first_break {
            return Err(untrusted(format!("the chain breaks at seq {}", b.seq())));
        }
        if let Some(problem) = super::checkpoint::problem(path, &store)? {
            return Err(untrusted(problem));
        }
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Self, AuditError> {
        let conn =
            Connection::open_in_memory().map_err(|source| AuditError::Open { path: ":memory:".into(), source })?;
        Self::prepare(conn, Path::new(":memory:"))
    }

    fn prepare(mut conn: Connection, path: &Path) -> Result<Self, AuditError> {
        let open_err = |source| AuditError::Open { path: path.into(), source };
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
        Ok(AuditStore { conn, path: path.into(), last_written: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Copies every frame of the write-ahead log into the database file and empties the log (it must not be
    /// in use by another process's reader); the rows then live in the database file alone.
    pub fn fold_wal(&mut self) -> Result<(), AuditError> {
        let busy: i64 =
            self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(AuditError::Write)?;
        if busy != 0 {
            return Err(AuditError::Write(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("another process is reading the log; the write-ahead log could not be folded in".into()),
            )));
        }
        Ok(())
    }

    /// Records a run; returns its id and the digest of its record, which every event of the run carries.
    pub fn start_run(&mut self, info: &RunInfo) -> Result<(i64, String), AuditError> {
        let started = now();
        self.conn
            .execute(
                "INSERT INTO runs (started_at, os_user, host, command, script_path, script_sha256, resumed_from, default_profile) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![started, info.os_user, info.host, info.command, info.script_path, info.script_sha256, info.resumed_from, info.default_profile],
            )
            .map_err(AuditError::Write)?;
        let id = self.conn.last_insert_rowid();
        Ok((id, self.run_digest(id)?.unwrap_or_default()))
    }

    /// The digest of run `id`'s record as it stands in the `runs` table now (`None`: no such run).
    pub fn run_digest(&self, id: i64) -> Result<Option<String>, AuditError> {
        self.conn
            .query_row(
                "SELECT started_at, os_user, host, command, script_path, script_sha256, resumed_from, default_profile FROM runs WHERE id = ?1",
                [id],
                |r| {
                    let text = |i: usize| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
                    let resumed = r.get::<_, Option<i64>>(6)?.map(|n| n.to_string()).unwrap_or_default();
                    let mut fields =
                        vec![id.to_string(), text(0)?, text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, resumed];
                    // Only when set, so runs recorded before the column keep their digests.
                    if let Some(profile) = r.get::<_, Option<String>>(7)? {
                        fields.push(profile);
                    }
                    Ok(chain::run_digest(&fields.iter().map(String::as_str).collect::<Vec<_>>()))
                },
            )
            .optional()
            .map_err(AuditError::Read)
    }

    pub fn end_run(&mut self, run_id: i64, exit_status: i32) -> Result<(), AuditError> {
        self.conn
            .execute(
                "INSERT INTO run_ends (run_id, ended_at, exit_status) VALUES (?1, ?2, ?3)",
                params![run_id, now(), exit_status],
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
    /// the write share one transaction under the write lock, so two processes can never both claim a target.
    pub fn append_claiming(
        &mut self,
        events: &mut [Event],
        alive: &dyn Fn(i64) -> bool,
    ) -> Result<Vec<Result<i64, Busy>>, AuditError> {
        // IMMEDIATE takes the write lock before reading the head, so two processes cannot fork the chain.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(AuditError::Write)?;
        let head: Option<(i64, String)> = tx
            .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(AuditError::Write)?;
        if let Some((seq, hash)) = &self.last_written {
            let now: Option<String> = tx
                .query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()
                .map_err(AuditError::Write)?;
            if now.as_ref() != Some(hash) {
                return Err(AuditError::ChangedUnderUs(format!(
                    "event {seq}, which this process wrote, is gone or altered"
                )));
            }
        }
        let (mut seq, mut prev) = head.unwrap_or((0, chain::GENESIS.to_string()));
        let mut seqs = Vec::with_capacity(events.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase,
                     intent_seq, status, http_status, error, duration_ms, token_source, token_fp, prev_hash, hash, run_digest, claim)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
                )
                .map_err(AuditError::Write)?;
            let mut holders = tx
                .prepare_cached(
                    "SELECT DISTINCT e.run_id FROM events e WHERE e.claim = ?1 AND e.run_id != ?2
                     AND NOT EXISTS (SELECT 1 FROM events o WHERE o.intent_seq = e.seq)",
                )
                .map_err(AuditError::Write)?;
            let ts = now();
            for e in events.iter_mut() {
                if !e.claim.is_empty() {
                    let runs = holders
                        .query_map(params![e.claim, e.run_id], |r| r.get::<_, i64>(0))
                        .map_err(AuditError::Write)?
                        .collect::<Result<Vec<i64>, _>>()
                        .map_err(AuditError::Write)?;
                    if let Some(run) = runs.into_iter().find(|r| alive(*r)) {
                        seqs.push(Err(Busy { run }));
                        continue;
                    }
                }
                seq += 1;
                e.seq = seq;
                e.ts = ts.clone();
                let hash = chain::link(&prev, e);
                insert
                    .execute(params![
                        e.seq,
                        e.run_id,
                        e.ts,
                        e.profile,
                        e.kind,
                        e.base_url,
                        e.identity,
                        e.op,
                        e.target,
                        e.params,
                        e.mode,
                        e.phase,
                        e.intent_seq,
                        e.status,
                        e.http_status,
                        e.error,
                        e.duration_ms,
                        e.token_source,
                        e.token_fp,
                        prev,
                        hash,
                        e.run_digest,
                        Some(e.claim.as_str()).filter(|c| !c.is_empty())
                    ])
                    .map_err(AuditError::Write)?;
                seqs.push(Ok(seq));
                prev = hash;
            }
        }
        tx.commit().map_err(AuditError::Write)?;
        if seqs.iter().any(Result::is_ok) {
            self.last_written = Some((seq, prev));
        }
        Ok(seqs)
    }
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
            store.conn.query_row("SELECT prev_hash FROM events WHERE seq = 3", [], |r| r.get(0)).unwrap();
        let hash2: String = store.conn.query_row("SELECT hash FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap();
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
        assert!(store.conn.execute("UPDATE events SET target = 'x'", []).is_err());
        assert!(store.conn.execute("DELETE FROM events", []).is_err());
        store.start_run(&RunInfo::default()).unwrap();
        assert!(store.conn.execute("DELETE FROM runs", []).is_err());
    }

    #[test]
    fn reopening_keeps_the_schema_and_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        AuditStore::open(&path).unwrap().append(&mut [event("suspend")]).unwrap();
        let mut again = AuditStore::open(&path).unwrap();
        assert_eq!(again.append(&mut [event("unsuspend")]).unwrap(), vec![2]);
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
