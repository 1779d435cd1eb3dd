//! `steward audit push`: copies a SQLite log into the team log. The source must verify whole first (its chain
//! and its anchors); each of its events is appended to the team's chain as it was (its time, its run's record),
//! carrying where it came from and its original hash (`origin`), so the copy can be held against the original.
//! Pushing the same log again copies only what it recorded since.

use super::chain::Event;
use super::db::{DbError, Val};
use super::query::Row;
use super::store::{AuditError, AuditStore, RunInfo};
use std::collections::HashMap;
use std::path::Path;

/// Events appended per transaction at most.
const CHUNK: usize = 1_000;

/// What a push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The source log's name in `origin` (the first 16 hex digits of its first event's hash).
    pub source_log: String,
    pub events: usize,
    pub runs: usize,
    /// Events of the source already in the team log from an earlier push (left alone).
    pub already: usize,
    /// The team log's seqs of the copies, first and last.
    pub seqs: Option<(i64, i64)>,
}

/// Copies the events of the SQLite log at `source` that `team` does not hold yet.
pub fn push(source: &Path, team: &mut AuditStore) -> Result<Pushed, AuditError> {
    let from = AuditStore::open_verified(source)?;
    let read = AuditError::Read;
    let Some(first) = from.db().row("SELECT hash FROM events ORDER BY seq LIMIT 1", &[]).map_err(read)? else {
        return Ok(Pushed::default());
    };
    let log = first.text(0).map_err(read)?.chars().take(16).collect::<String>();
    let mut copy = Copy { from: &from, team, log: log.clone(), runs: HashMap::new(), seqs: HashMap::new() };
    let done = copy.last_pushed()?;
    let mut pushed = Pushed { source_log: log, already: done as usize, ..Default::default() };
    let mut batch: Vec<(i64, Event)> = Vec::new();
    let mut failure = None;
    from.each_after(done, &mut |row: Row| {
        let outcome_of_unflushed = row.event.intent_seq.is_some_and(|i| batch.iter().any(|(s, _)| *s == i));
        if outcome_of_unflushed || batch.len() >= CHUNK {
            copy.flush(&mut batch, &mut pushed)?;
        }
        match copy.translate(row, &mut pushed) {
            Ok(entry) => batch.push(entry),
            Err(e) => {
                failure = Some(e);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    copy.flush(&mut batch, &mut pushed)?;
    copy.copy_run_ends()?;
    Ok(pushed)
}

struct Copy<'a> {
    from: &'a AuditStore,
    team: &'a mut AuditStore,
    log: String,
    /// Source run → (team run, its record's digest).
    runs: HashMap<i64, (i64, String)>,
    /// Source seq → team seq, for outcomes that name their intent.
    seqs: HashMap<i64, i64>,
}

impl Copy<'_> {
    /// `column` of the newest copy in the team log whose origin begins with `prefix` (a source log, run, seq).
    fn copied(&self, prefix: &str, column: &str) -> Result<Option<super::db::Row>, AuditError> {
        let sql = format!(
            "SELECT {column} FROM events WHERE origin != '' AND substr(origin, 1, ?2) = ?1 ORDER BY seq DESC LIMIT 1"
        );
        self.team.db().row(&sql, &[prefix.into(), (prefix.len() as i64).into()]).map_err(AuditError::Read)
    }

    /// The source seq pushed last (0: none), read from the team log's newest copy of this source.
    fn last_pushed(&self) -> Result<i64, AuditError> {
        let row = self.copied(&format!("{} ", self.log), "origin")?;
        let origin = row.map(|r| r.text(0)).transpose().map_err(AuditError::Read)?;
        Ok(origin.and_then(|o| o.split(' ').nth(2).and_then(|s| s.parse().ok())).unwrap_or(0))
    }

    /// The team's copy of a source event (its run made first if need be), with the source seq it came from.
    fn translate(&mut self, row: Row, pushed: &mut Pushed) -> Result<(i64, Event), AuditError> {
        let source_seq = row.event.seq;
        let source_run = row.event.run_id;
        let (run, digest) = self.team_run(source_run, pushed)?;
        let intent_seq = match row.event.intent_seq {
            Some(i) => Some(self.team_seq(source_run, i)?),
            None => None,
        };
        let origin = format!("{} {source_run} {source_seq} {}", self.log, row.hash);
        let event =
            Event { seq: 0, run_id: run, run_digest: digest, intent_seq, origin, claim: String::new(), ..row.event };
        Ok((source_seq, event))
    }

    /// The team run a source run became: made on first sight (its record as it was, its resume remapped), or
    /// found again through an earlier push's copies.
    fn team_run(&mut self, source_run: i64, pushed: &mut Pushed) -> Result<(i64, String), AuditError> {
        if let Some(known) = self.runs.get(&source_run) {
            return Ok(known.clone());
        }
        let earlier = self.copied(&format!("{} {source_run} ", self.log), "run_id")?;
        let found = match earlier.map(|r| r.int(0)).transpose().map_err(AuditError::Read)? {
            Some(run) => (run, self.team.run_digest(run)?.unwrap_or_default()),
            None => {
                let record = self
                    .from
                    .db()
                    .row(
                        "SELECT started_at, os_user, host, command, script_path, script_sha256, resumed_from, default_profile FROM runs WHERE id = ?1",
                        &[source_run.into()],
                    )
                    .map_err(AuditError::Read)?
                    .ok_or_else(|| AuditError::Read(DbError::Type(format!("run {source_run} has no record"))))?;
                let r = |e: DbError| AuditError::Read(e);
                let info = RunInfo {
                    os_user: record.text(1).map_err(r)?,
                    host: record.text(2).map_err(r)?,
                    command: record.text(3).map_err(r)?,
                    script_path: record.opt_text(4).map_err(r)?,
                    script_sha256: record.opt_text(5).map_err(r)?,
                    resumed_from: record.opt_int(6).map_err(r)?.and_then(|up| self.runs.get(&up).map(|(id, _)| *id)),
                    default_profile: record.opt_text(7).map_err(r)?,
                    started_at: None,
                };
                pushed.runs += 1;
                self.team.import_run(&info, &record.text(0).map_err(r)?, Some(&format!("{} {source_run}", self.log)))?
            }
        };
        self.runs.insert(source_run, found.clone());
        Ok(found)
    }

    /// The team seq of source event `source_seq` (of run `source_run`), copied in this push or an earlier one.
    fn team_seq(&self, source_run: i64, source_seq: i64) -> Result<i64, AuditError> {
        if let Some(seq) = self.seqs.get(&source_seq) {
            return Ok(*seq);
        }
        let row = self.copied(&format!("{} {source_run} {source_seq} ", self.log), "seq")?;
        row.map(|r| r.int(0))
            .transpose()
            .map_err(AuditError::Read)?
            .ok_or_else(|| AuditError::Read(DbError::Type(format!("event {source_seq} names an intent not copied"))))
    }

    fn flush(&mut self, batch: &mut Vec<(i64, Event)>, pushed: &mut Pushed) -> Result<(), AuditError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (sources, mut events): (Vec<i64>, Vec<Event>) = std::mem::take(batch).into_iter().unzip();
        let seqs = match self.team.append(&mut events) {
            Err(AuditError::Write(e)) if e.is_duplicate() => {
                return Err(AuditError::Write(DbError::Type(format!(
                    "another push of this log copied the same events at the same time; nothing was copied twice                      ({pushed_so_far} copied by this one): run it again to copy what is left",
                    pushed_so_far = pushed.events
                ))))
            }
            other => other?,
        };
        for (source, seq) in sources.into_iter().zip(&seqs) {
            self.seqs.insert(source, *seq);
        }
        pushed.events += seqs.len();
        if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
            pushed.seqs = Some((pushed.seqs.map_or(*first, |(f, _)| f), *last));
        }
        Ok(())
    }

    /// How each copied run ended, where the source says and the team log does not yet.
    fn copy_run_ends(&mut self) -> Result<(), AuditError> {
        for (source_run, (run, _)) in &self.runs {
            let end = self
                .from
                .db()
                .row("SELECT ended_at, exit_status FROM run_ends WHERE run_id = ?1", &[(*source_run).into()])
                .map_err(AuditError::Read)?;
            let known = self
                .team
                .db()
                .row("SELECT 1 FROM run_ends WHERE run_id = ?1", &[(*run).into()])
                .map_err(AuditError::Read)?;
            if let (Some(end), None) = (end, known) {
                let ended: Val = end.text(0).map_err(AuditError::Read)?.into();
                let status: Val = end.int(1).map_err(AuditError::Read)?.into();
                self.team
                    .db()
                    .execute(
                        "INSERT INTO run_ends (run_id, ended_at, exit_status) VALUES (?1, ?2, ?3)",
                        &[(*run).into(), ended, status],
                    )
                    .map_err(AuditError::Write)?;
            }
        }
        Ok(())
    }
}
