//! Reading the audit log back: filtered listing, pending intents, chain verification.

use super::chain::{self, Break, Event};
use super::db::{DbError, Row as DbRow, Val};
use super::store::{AuditError, AuditStore};
use serde::Serialize;
use std::collections::HashMap;

/// Which events to list; every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// RFC 3339 time or `YYYY-MM-DD`: events at or after it.
    pub since: Option<String>,
    pub until: Option<String>,
    pub profile: Option<String>,
    pub op: Option<String>,
    pub target: Option<String>,
    /// Events made with the token of this fingerprint (`steward audit fingerprint`).
    pub token_fp: Option<String>,
    pub run: Option<i64>,
    /// Events of runs started by this OS user, or on this host.
    pub os_user: Option<String>,
    pub host: Option<String>,
    pub seq: Option<i64>,
    /// Only events after this seq.
    pub since_seq: Option<i64>,
    /// Only intents that never got an outcome (the process died, or the request is in doubt).
    pub pending: bool,
    pub limit: Option<usize>,
}

/// One stored event with its chain links, as `audit list/show/export` print it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
    /// The machine that wrote it (`machine.rs`), its seal if it closes a transaction, and the role that wrote
    /// it (a team log's); empty in rows from before.
    #[serde(skip)]
    pub machine: String,
    #[serde(skip)]
    pub seal: String,
    #[serde(skip)]
    pub writer: String,
}

const COLUMNS: &str =
    "seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, intent_seq, \
                       status, http_status, error, duration_ms, token_source, token_fp, prev_hash, hash, run_digest, origin, \
                       coalesce(machine, ''), coalesce(seal, ''), coalesce(writer, '')";

fn row(mut r: DbRow) -> Result<Row, DbError> {
    Ok(Row {
        event: Event {
            seq: r.int(0)?,
            run_id: r.int(1)?,
            ts: r.take_text(2)?,
            profile: r.take_text(3)?,
            kind: r.take_text(4)?,
            base_url: r.take_text(5)?,
            identity: r.take_text(6)?,
            op: r.take_text(7)?,
            target: r.take_text(8)?,
            params: r.take_text(9)?,
            mode: r.take_text(10)?,
            phase: r.take_text(11)?,
            intent_seq: r.opt_int(12)?,
            status: r.take_text(13)?,
            http_status: r.opt_int(14)?,
            error: r.take_text(15)?,
            duration_ms: r.opt_int(16)?,
            token_source: r.take_text(17)?,
            token_fp: r.take_text(18)?,
            run_digest: r.take_text(21)?,
            origin: r.take_text(22)?,
            claim: String::new(),
            read_at: None,
        },
        prev_hash: r.take_text(19)?,
        hash: r.take_text(20)?,
        machine: r.take_text(23)?,
        seal: r.take_text(24)?,
        writer: r.take_text(25)?,
    })
}

/// A filter's SQL conditions and the values they take, numbered in order.
#[derive(Default)]
struct Where<'a> {
    clauses: Vec<String>,
    args: Vec<Val<'a>>,
}

impl<'a> Where<'a> {
    /// Each `?` takes the next value; a clause given one value uses it for every `?`.
    fn add(&mut self, clause: &str, values: Vec<Val<'a>>) {
        let (first, last) = (self.args.len() + 1, self.args.len() + values.len());
        self.args.extend(values);
        let mut next = first;
        let mut text = String::with_capacity(clause.len() + 8);
        for c in clause.chars() {
            match c {
                '?' => {
                    text.push_str(&format!("?{}", next.min(last)));
                    next += 1;
                }
                other => text.push(other),
            }
        }
        self.clauses.push(text);
    }

    fn of(filter: &'a Filter) -> Where<'a> {
        let mut w = Where::default();
        if let Some(v) = &filter.since {
            w.add("ts >= ?", vec![v.into()]);
        }
        if let Some(v) = &filter.until {
            w.add("ts < ?", vec![v.into()]);
        }
        if let Some(v) = &filter.profile {
            w.add("profile = ?", vec![v.into()]);
        }
        if let Some(v) = &filter.op {
            w.add("op = ?", vec![v.into()]);
        }
        if let Some(v) = &filter.target {
            // The account a change reached is its target; the name a script gave it, and its stable id, are in
            // its params (`named`, `account`): any of them finds it. (`replace` spots a substring on both stores.)
            let quoted = serde_json::Value::from(v.as_str()).to_string();
            w.add(
                "(target = ? OR replace(params, ?, '') <> params OR replace(params, ?, '') <> params)",
                vec![v.into(), format!("\"named\":{quoted}").into(), format!("\"account\":{quoted}").into()],
            );
        }
        if let Some(v) = &filter.token_fp {
            // A fingerprint may be given shortened, as people copy them (`hmac-sha256:1f0c…`).
            let prefix = v.trim_end_matches('…').trim_end_matches("...").to_string();
            // A run on several credentials (Travis's) records each, space-separated: any of them matches.
            w.add(
                "(substr(token_fp, 1, length(CAST(? AS TEXT))) = ? OR replace(token_fp, ' ' || CAST(? AS TEXT), '') <> token_fp)",
                vec![prefix.into()],
            );
        }
        if let Some(v) = filter.run {
            w.add("run_id = ?", vec![v.into()]);
        }
        if let Some(v) = &filter.os_user {
            w.add("run_id IN (SELECT id FROM runs WHERE os_user = ?)", vec![v.into()]);
        }
        if let Some(v) = &filter.host {
            w.add("run_id IN (SELECT id FROM runs WHERE host = ?)", vec![v.into()]);
        }
        if let Some(v) = filter.seq {
            w.add("seq = ?", vec![v.into()]);
        }
        if let Some(v) = filter.since_seq {
            w.add("seq > ?", vec![v.into()]);
        }
        if filter.pending {
            w.clauses.push(
                "phase = 'intent' AND NOT EXISTS (SELECT 1 FROM events o WHERE o.intent_seq = events.seq)".into(),
            );
        }
        w
    }
}

/// Rows read per query when walking the whole log, so memory stays flat however long it is.
const PAGE_ROWS: i64 = 10_000;

impl AuditStore {
    /// Events matching `filter`, oldest first (the newest `limit` of them when a limit is set).
    pub fn list(&self, filter: &Filter) -> Result<Vec<Row>, AuditError> {
        let Where { clauses, args } = Where::of(filter);
        let mut sql = format!("SELECT {COLUMNS} FROM events");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        match filter.limit {
            Some(limit) => {
                sql = format!("SELECT * FROM ({sql} ORDER BY seq DESC LIMIT {limit}) AS newest ORDER BY seq")
            }
            None => sql.push_str(" ORDER BY seq"),
        }
        let rows = self.db().rows(&sql, &args).map_err(AuditError::Read)?;
        rows.into_iter().map(row).collect::<Result<Vec<_>, _>>().map_err(AuditError::Read)
    }

    /// The rows after `seq` in order, a page at a time, handed to `each` until it says stop (`false`).
    pub(super) fn each_after(
        &self,
        mut seq: i64,
        each: &mut dyn FnMut(Row) -> Result<bool, AuditError>,
    ) -> Result<(), AuditError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        loop {
            let page = self.db().rows(&sql, &[seq.into(), PAGE_ROWS.into()]).map_err(AuditError::Read)?;
            let full = page.len() as i64 == PAGE_ROWS;
            for r in page {
                let r = row(r).map_err(AuditError::Read)?;
                seq = r.event.seq;
                if !each(r)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The event at `seq`, if the log has it.
    pub fn event_at(&self, seq: i64) -> Result<Option<Event>, AuditError> {
        Ok(self.rows_after(seq - 1, 1)?.into_iter().next().map(|r| r.event).filter(|e| e.seq == seq))
    }

    /// At most `limit` rows after `seq`, in order (a few rows read back, without a page's worth of reading).
    pub(super) fn rows_after(&self, seq: i64, limit: i64) -> Result<Vec<Row>, AuditError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let page = self.db().rows(&sql, &[seq.into(), limit.into()]).map_err(AuditError::Read)?;
        page.into_iter().map(row).collect::<Result<Vec<Row>, DbError>>().map_err(AuditError::Read)
    }

    /// Recomputes the whole chain; reports how many rows were checked, the first break, if any, and the rows
    /// that link up but are not what steward writes (`Suspect`).
    pub fn verify(&self) -> Result<Verification, AuditError> {
        let mut checked = 0;
        let mut runs = self.run_records()?;
        let mut prev = chain::GENESIS.to_string();
        let mut first_break = None;
        let mut suspects = Vec::new();
        let clock = self.clock_ms()?;
        let mut last_seq = 0;
        let mut seals = self.seal_check()?;
        let mut writers = self.run_writers()?;
        self.each_after(0, &mut |r| {
            match self.check_row(&prev, &r, &mut runs)? {
                Step::Broken(b) => {
                    first_break = Some(b);
                    return Ok(false);
                }
                Step::SetAside => {
                    last_seq = r.event.seq;
                    return Ok(true);
                }
                Step::Linked => {}
            }
            if r.event.seq != last_seq + 1 {
                suspects.push(Suspect::Gap { after: last_seq, next: r.event.seq });
            }
            let ts = chrono::DateTime::parse_from_rfc3339(&r.event.ts).map(|t| t.timestamp_millis());
            if ts.map_or(true, |t| t > clock + AHEAD_MS) {
                suspects.push(Suspect::AheadOfClock { seq: r.event.seq, ts: r.event.ts.clone() });
            }
            self.check_seal(&mut seals, &r)?;
            if !writers.contains_key(&r.event.run_id) {
                // A run started while the log is read (asked once: a row of no run at all counts as no writer's).
                writers = self.run_writers()?;
                writers.entry(r.event.run_id).or_default();
            }
            let run_writer = writers.get(&r.event.run_id).map_or("", String::as_str);
            if r.writer != run_writer && suspects.len() < MOST_SUSPECTS {
                let (seq, run, writer, run_writer) = (r.event.seq, r.event.run_id, r.writer.clone(), run_writer.into());
                suspects.push(Suspect::ForeignWriter { seq, run, writer, run_writer });
            }
            last_seq = r.event.seq;
            checked += 1;
            prev = r.hash;
            Ok(true)
        })?;
        if first_break.is_none() {
            let unsealed = seals.finish();
            self.distrust(&unsealed);
            suspects.extend(Suspect::unsealed(&unsealed));
        }
        let head = (first_break.is_none() && checked > 0).then_some(prev);
        Ok(Verification { checked, head, first_break, suspects })
    }

    /// The log's clock now, in Unix milliseconds: the database server's for a team log (every machine's rows are
    /// held to that one clock), this machine's for a file.
    fn clock_ms(&self) -> Result<i64, AuditError> {
        match self.db().engine() {
            crate::audit::db::Engine::Postgres => {
                let r = self
                    .db()
                    .row("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", &[])
                    .map_err(AuditError::Read)?;
                r.map(|r| r.int(0))
                    .transpose()
                    .map_err(AuditError::Read)?
                    .ok_or(AuditError::Read(DbError::Type("the database gave no time".into())))
            }
            crate::audit::db::Engine::Sqlite => Ok(chrono::Utc::now().timestamp_millis()),
        }
    }

    /// Who started each run (the role a team log's database stamped; empty in a SQLite log).
    fn run_writers(&self) -> Result<HashMap<i64, String>, AuditError> {
        let rows = self.db().rows("SELECT id, coalesce(writer, '') FROM runs", &[]).map_err(AuditError::Read)?;
        rows.into_iter()
            .map(|mut r| Ok((r.int(0)?, r.take_text(1)?)))
            .collect::<Result<HashMap<_, _>, DbError>>()
            .map_err(AuditError::Read)
    }
}

/// Rows written into another's run named at most, however many there are.
const MOST_SUSPECTS: usize = 1000;

/// What a run executed: the script (none for `eval` and the REPL) and the command line as recorded.
#[derive(Clone, Debug)]
pub struct ScriptRun {
    pub path: Option<String>,
    pub sha256: Option<String>,
    pub command: String,
    /// The profile `connect()` opened by default (not recorded before schema 6).
    pub default_profile: Option<String>,
}

/// The digests of the run records, read once for a verification (a run made meanwhile is read when met).
#[derive(Default)]
pub(super) struct RunRecords(HashMap<i64, Option<String>>);

impl AuditStore {
    pub(super) fn run_records(&self) -> Result<RunRecords, AuditError> {
        Ok(RunRecords(self.run_digests(None)?.into_iter().map(|(id, d)| (id, Some(d))).collect()))
    }

    /// One stored row against the row before it, and against the record of the run it is bound to; a row that
    /// breaks the chain but that the log's owner set aside (`set_aside`) is skipped: the next links past it.
    pub(super) fn check_row(&self, expected_prev: &str, r: &Row, runs: &mut RunRecords) -> Result<Step, AuditError> {
        Ok(match self.check_linked(expected_prev, r, runs)? {
            Ok(()) => Step::Linked,
            Err(_) if self.is_set_aside(r.event.seq, &r.hash)? => Step::SetAside,
            Err(b) => Step::Broken(b),
        })
    }

    fn is_set_aside(&self, seq: i64, hash: &str) -> Result<bool, AuditError> {
        let sql = "SELECT 1 FROM steward_set_aside WHERE seq = ?1 AND hash = ?2";
        Ok(self.db().row(sql, &[seq.into(), hash.into()]).map_err(AuditError::Read)?.is_some())
    }

    /// The rows set aside: (seq, why).
    pub fn set_aside_rows(&self) -> Result<Vec<(i64, String)>, AuditError> {
        let rows =
            self.db().rows("SELECT seq, why FROM steward_set_aside ORDER BY seq", &[]).map_err(AuditError::Read)?;
        rows.iter().map(|r| Ok((r.int(0)?, r.text(1)?))).collect::<Result<Vec<_>, DbError>>().map_err(AuditError::Read)
    }

    fn check_linked(
        &self,
        expected_prev: &str,
        r: &Row,
        runs: &mut RunRecords,
    ) -> Result<Result<(), chain::Break>, AuditError> {
        if let Err(b) = chain::check(expected_prev, &r.prev_hash, &r.hash, &r.event) {
            return Ok(Err(b));
        }
        if r.event.run_digest.is_empty() {
            return Ok(Ok(()));
        }
        let digest = match runs.0.get(&r.event.run_id) {
            Some(d) => d.clone(),
            None => {
                let d = self.run_digest(r.event.run_id)?;
                runs.0.insert(r.event.run_id, d.clone());
                d
            }
        };
        Ok(if digest.as_deref() == Some(r.event.run_digest.as_str()) {
            Ok(())
        } else {
            Err(chain::Break::RunEdited { seq: r.event.seq })
        })
    }
}

/// Items a job finished: (profile, op, item key) → the run that did it.
pub type DoneSet = HashMap<(String, String, String), i64>;

/// Intents a job left without an outcome: (profile, op, item key) → the intent's seq.
pub type OpenIntents = HashMap<(String, String, String), i64>;

/// What a recorded change is known by across a job's runs: the stable id of the account it reached
/// (`params.account`, recorded since steward resolves accounts), else its target as recorded (a key's or a
/// token's id, rows from before); and the object it reached on that account, where one account has many (a
/// group), so one removal done never stands for another that failed.
pub fn item_key(target: &str, params: &serde_json::Value) -> String {
    let text = |k: &str| params.get(k).and_then(serde_json::Value::as_str).filter(|a| !a.is_empty());
    let account = text("account").unwrap_or(target);
    match text("group") {
        Some(group) => format!("{account} group={group}"),
        None => account.to_string(),
    }
}

/// A job: a run and every resume of it (and of those), one id, its first run's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub first: i64,
    /// Every run of the job, newest first.
    pub runs: Vec<i64>,
}

impl AuditStore {
    /// Every run's job: run → the first run of its job.
    pub fn firsts(&self) -> Result<HashMap<i64, i64>, AuditError> {
        let rows = self.db().rows("SELECT id, resumed_from FROM runs", &[]).map_err(AuditError::Read)?;
        let parent: HashMap<i64, Option<i64>> = rows
            .iter()
            .map(|r| Ok((r.int(0)?, r.opt_int(1)?)))
            .collect::<Result<_, DbError>>()
            .map_err(AuditError::Read)?;
        // Walks up to the first run; a cycle (only an edited log has one) ends the walk.
        let first_of = |mut id: i64| {
            let mut seen = std::collections::HashSet::new();
            while let Some(Some(up)) = parent.get(&id) {
                if !seen.insert(id) || !parent.contains_key(up) {
                    break;
                }
                id = *up;
            }
            id
        };
        Ok(parent.keys().map(|id| (*id, first_of(*id))).collect())
    }

    /// The job `run` belongs to (`None`: no such run). Whichever of its runs is named, the job is the same:
    /// resuming run 5 after run 6 continued it sees what run 6 did too.
    pub fn job_of(&self, run: i64) -> Result<Option<Job>, AuditError> {
        let firsts = self.firsts()?;
        let Some(first) = firsts.get(&run).copied() else { return Ok(None) };
        let mut runs: Vec<i64> = firsts.iter().filter(|(_, f)| **f == first).map(|(id, _)| *id).collect();
        runs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(Some(Job { first, runs }))
    }

    /// The newest `limit` runs (or just `only`), newest first, with what each did: outcomes of the operations
    /// not named in `reads` (a listing, a lookup changes nothing). Unless `all`, only the runs that changed
    /// something or recorded a decision (an intent, a change's outcome, a plan, a scheduled change).
    pub fn runs(
        &self,
        limit: usize,
        only: Option<i64>,
        reads: &[&str],
        all: bool,
    ) -> Result<Vec<RunSummary>, AuditError> {
        let firsts = self.firsts()?;
        // The names are steward's own (`Op` names), never input: safe to write into the statement.
        let reads = reads.iter().map(|r| format!("'{}'", r.replace('\'', ""))).collect::<Vec<_>>().join(", ");
        let reads = if reads.is_empty() { "''".to_string() } else { reads };
        let count = |status: &str| {
            format!("(SELECT COUNT(*) FROM events WHERE run_id = r.id AND phase = 'outcome' AND status = '{status}' AND op NOT IN ({reads}))")
        };
        let did_something = match all {
            true => "TRUE".to_string(),
            false => format!(
                "EXISTS (SELECT 1 FROM events d WHERE d.run_id = r.id AND (d.phase = 'intent' \
                 OR (d.phase = 'outcome' AND d.op NOT IN ({reads})) \
                 OR d.op IN ('policy_plan', 'policy_approval', 'policy_applied', 'schedule', 'schedule_done')))"
            ),
        };
        let sql = format!(
            "SELECT r.id, r.started_at, r.os_user, r.host, r.command, r.script_path, r.default_profile, e.ended_at,
                    e.exit_status,
                    {}, {}, {}, {}, {}, {}, {},
                    (SELECT COUNT(*) FROM events i WHERE i.run_id = r.id AND i.phase = 'intent' AND i.mode = 'live'
                     AND NOT EXISTS (SELECT 1 FROM events o WHERE o.intent_seq = i.seq)),
                    r.origin
             FROM runs r LEFT JOIN run_ends e ON e.run_id = r.id
             WHERE (CAST(?1 AS BIGINT) IS NULL OR r.id = ?1) AND ({did_something}) ORDER BY r.id DESC LIMIT ?2",
            count("ok"),
            count("noop"),
            count("failed"),
            count("refused"),
            count("cancelled"),
            count("dry-run"),
            count("skipped"),
        );
        let rows = self.db().rows(&sql, &[only.into(), (limit as i64).into()]).map_err(AuditError::Read)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id = r.int(0).map_err(AuditError::Read)?;
            let profiles = self
                .db()
                .rows(
                    "SELECT DISTINCT profile FROM events WHERE run_id = ?1 AND profile != '' ORDER BY profile",
                    &[id.into()],
                )
                .map_err(AuditError::Read)?;
            let summary = (|| -> Result<RunSummary, DbError> {
                Ok(RunSummary {
                    run: id,
                    job: firsts.get(&id).copied().unwrap_or(id),
                    started: r.text(1)?,
                    who: format!("{}@{}", r.text(2)?, r.text(3)?),
                    command: r.text(4)?,
                    script: r.opt_text(5)?,
                    default_profile: r.opt_text(6)?,
                    ended: r.opt_text(7)?,
                    exit_status: r.opt_int(8)?,
                    profiles: profiles.iter().map(|p| p.text(0)).collect::<Result<Vec<_>, _>>()?.join(","),
                    ok: r.int(9)?,
                    noop: r.int(10)?,
                    failed: r.int(11)?,
                    refused: r.int(12)?,
                    cancelled: r.int(13)?,
                    dry_run: r.int(14)?,
                    skipped: r.int(15)?,
                    pending: r.int(16)?,
                    pushed_from: r.opt_text(17)?,
                })
            })();
            out.push(summary.map_err(AuditError::Read)?);
        }
        Ok(out)
    }
}

/// A run as `steward runs` shows it: who started it and how, how it ended, and the outcomes it recorded.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunSummary {
    pub run: i64,
    /// The first run of its job (itself, unless it is a resume).
    pub job: i64,
    pub started: String,
    pub who: String,
    pub command: String,
    pub script: Option<String>,
    pub default_profile: Option<String>,
    pub ended: Option<String>,
    pub exit_status: Option<i64>,
    /// The profiles it acted on, comma-separated.
    pub profiles: String,
    pub ok: i64,
    pub noop: i64,
    pub failed: i64,
    pub refused: i64,
    pub cancelled: i64,
    pub dry_run: i64,
    pub skipped: i64,
    /// Intents still without an outcome (a resume of the job settles them).
    pub pending: i64,
    /// `<log> <run>`: the log and run number `audit push` copied it from.
    pub pushed_from: Option<String>,
}

impl AuditStore {
    /// The script a run executed and its command line, as recorded (`None`: no such run).
    pub fn run_script(&self, run: i64) -> Result<Option<ScriptRun>, AuditError> {
        let r = self
            .db()
            .row("SELECT script_path, script_sha256, command, default_profile FROM runs WHERE id = ?1", &[run.into()])
            .map_err(AuditError::Read)?;
        r.map(|r| {
            Ok(ScriptRun {
                path: r.opt_text(0)?,
                sha256: r.opt_text(1)?,
                command: r.text(2)?,
                default_profile: r.opt_text(3)?,
            })
        })
        .transpose()
        .map_err(AuditError::Read)
    }

    /// The files the job of `run` (all its runs) read, oldest first: (real path, SHA-256), as its `input` notes
    /// pinned them.
    pub fn inputs_of_job(&self, run: i64) -> Result<Vec<(String, String)>, AuditError> {
        let mut runs = self.job_of(run)?.map(|j| j.runs).unwrap_or_default();
        runs.sort_unstable();
        let mut out = Vec::new();
        for id in runs {
            let sql =
                "SELECT target, params FROM events WHERE run_id = ?1 AND phase = 'note' AND op = 'input' ORDER BY seq";
            for r in self.db().rows(sql, &[id.into()]).map_err(AuditError::Read)? {
                let (path, params) = (r.text(0).map_err(AuditError::Read)?, r.text(1).map_err(AuditError::Read)?);
                let params: serde_json::Value = serde_json::from_str(&params).unwrap_or_default();
                if let Some(sha) = params["sha256"].as_str() {
                    out.push((path, sha.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// The operations the log holds events of, for saying what an empty `--op` filter could have been.
    pub fn ops(&self) -> Result<Vec<String>, AuditError> {
        let rows = self.db().rows("SELECT DISTINCT op FROM events ORDER BY op", &[]).map_err(AuditError::Read)?;
        rows.iter().map(|r| r.text(0)).collect::<Result<Vec<String>, _>>().map_err(AuditError::Read)
    }

    /// What the job of `run` (all its runs) finished: (profile, op, target) → the run that did it. Only rows
    /// written by their run's writer and machine count (`by_its_run`, `trusts`): a teammate's row in another's
    /// run settles nothing. Items with an intent and no outcome are not in it: they are in doubt and get checked
    /// again.
    pub fn done_in_job(&self, run: i64) -> Result<DoneSet, AuditError> {
        self.keyed_in_job(
            run,
            &format!("SELECT profile, op, target, params, run_id, seq FROM events WHERE run_id = ?1 AND phase = 'outcome' AND mode = 'live' AND status IN ('ok', 'noop') AND {}", by_its_run("events")),
        )
    }

    /// What a resume of the job of `run` settled `unknown` (the service could not show whether it was applied):
    /// (profile, op, item key) → the run that settled it. Never sent again blind.
    pub fn unknown_in_job(&self, run: i64) -> Result<DoneSet, AuditError> {
        self.keyed_in_job(
            run,
            &format!("SELECT profile, op, target, params, run_id, seq FROM events WHERE run_id = ?1 AND phase = 'outcome' AND mode = 'live' AND status = 'unknown' AND {}", by_its_run("events")),
        )
    }

    /// The intents the job of `run` (all its runs) left without an outcome: (profile, op, target) →
    /// the intent's seq. A resume settles each by reading the target, and records that against the intent. An
    /// outcome that is not its run's own (another writer's, or unsealed) leaves the intent open.
    pub fn open_intents_in_job(&self, run: i64) -> Result<OpenIntents, AuditError> {
        let closed = format!(
            "SELECT o.seq, o.intent_seq FROM events o WHERE o.intent_seq IN (SELECT e.seq FROM events e WHERE e.run_id = ?1 AND e.phase = 'intent') AND {}",
            by_its_run("o")
        );
        let mut closed_intents = std::collections::HashSet::new();
        for id in self.job_of(run)?.map(|j| j.runs).unwrap_or_default() {
            for r in self.db().rows(&closed, &[id.into()]).map_err(AuditError::Read)? {
                let (outcome, intent) = (|| Ok((r.int(0)?, r.int(1)?)))().map_err(AuditError::Read)?;
                if self.trusts(outcome) {
                    closed_intents.insert(intent);
                }
            }
        }
        let mut open = self.keyed_in_job(
            run,
            &format!("SELECT profile, op, target, params, seq, seq FROM events e WHERE run_id = ?1 AND phase = 'intent' AND mode = 'live' AND {}", by_its_run("e")),
        )?;
        open.retain(|_, seq| !closed_intents.contains(seq));
        Ok(open)
    }

    /// `(profile, op, item key) → value` over every run of a job, newest run first (the first row of a key
    /// wins); `sql` selects profile, op, target, params, the value and the row's seq for the run `?1`. Rows
    /// found unsealed are left out.
    fn keyed_in_job(&self, run: i64, sql: &str) -> Result<HashMap<(String, String, String), i64>, AuditError> {
        let mut out = HashMap::new();
        let runs = self.job_of(run)?.map(|j| j.runs).unwrap_or_default();
        for id in runs {
            let rows = self.db().rows(sql, &[id.into()]).map_err(AuditError::Read)?;
            for r in rows {
                let row =
                    (|| Ok::<_, DbError>((r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)?, r.int(4)?, r.int(5)?)))();
                let (profile, op, target, params, value, seq) = row.map_err(AuditError::Read)?;
                if !self.trusts(seq) {
                    continue;
                }
                let params = serde_json::from_str(&params).unwrap_or(serde_json::Value::Null);
                let key = (profile, op, item_key(&target, &params));
                out.entry(key).or_insert(value);
            }
        }
        Ok(out)
    }

    /// The params of the latest successful `op` on `target` under `profile` (what steward knew when it acted),
    /// read for a decision: first the rows added since this store last verified the log, then the row itself
    /// (`known.rs`), so an edit made while a long-running process holds the store is refused, not acted on.
    pub fn last_params(&self, profile: &str, op: &str, target: &str) -> Result<Option<String>, AuditError> {
        self.catch_up()?.map_err(AuditError::ChangedUnderUs)?;
        let rows = self
            .db()
            .rows(
                &format!("SELECT seq, params, intent_seq FROM events WHERE profile = ?1 AND op = ?2 AND target = ?3 AND phase = 'outcome' AND mode = 'live' AND status = 'ok' AND {} ORDER BY seq DESC", by_its_run("events")),
                &[profile.into(), op.into(), target.into()],
            )
            .map_err(AuditError::Read)?;
        // The newest a decision may rest on: rows found unsealed are passed over.
        let newest = rows
            .into_iter()
            .map(|r| Ok::<_, DbError>((r.int(0)?, r.text(1)?, r.opt_int(2)?)))
            .find(|row| row.as_ref().map_or(true, |(seq, _, _)| self.trusts(*seq)));
        let Some((seq, params, intent)) = newest.transpose().map_err(AuditError::Read)? else {
            return Ok(None);
        };
        self.row_is_whole(seq)?.map_err(AuditError::ChangedUnderUs)?;
        // What the intent recorded (a role held before) stands unless the outcome says otherwise: an outcome a
        // resume settled names only what that run knew.
        let trusted_intent = intent.filter(|i| self.trusts(*i));
        let Some(intent) = trusted_intent.map(|i| self.event_at(i)).transpose()?.flatten() else {
            return Ok(Some(params));
        };
        self.row_is_whole(intent.seq)?.map_err(AuditError::ChangedUnderUs)?;
        let mut merged: serde_json::Value = serde_json::from_str(&intent.params).unwrap_or_default();
        match (merged.as_object_mut(), serde_json::from_str::<serde_json::Value>(&params)) {
            (Some(base), Ok(serde_json::Value::Object(over))) => base.extend(over),
            _ => return Ok(Some(params)),
        }
        Ok(Some(merged.to_string()))
    }

    /// The successful, reversible changes of some runs (a job's), oldest first: (profile, op, target, params).
    pub fn reversible_changes(&self, runs: &[i64]) -> Result<Vec<(String, String, String, String)>, AuditError> {
        self.changes_of(
            runs,
            "op IN ('suspend', 'unsuspend', 'promote', 'demote', 'add_to_group', 'remove_from_group')",
        )
    }

    /// The successful changes of some runs that steward cannot put back (deleted keys, tokens, sessions,
    /// deactivations), oldest first: (profile, op, target, params).
    pub fn irreversible_changes(&self, runs: &[i64]) -> Result<Vec<(String, String, String, String)>, AuditError> {
        self.changes_of(
            runs,
            "op IN ('delete_key', 'delete_token', 'delete_impersonation_token', 'delete_session', 'delete_user', 'reset_2fa')",
        )
    }

    fn changes_of(&self, runs: &[i64], ops: &str) -> Result<Vec<(String, String, String, String)>, AuditError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = (1..=runs.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT profile, op, target, params, seq FROM events WHERE run_id IN ({}) AND phase = 'outcome' AND mode = 'live' AND status = 'ok' AND {ops} AND {} ORDER BY seq",
            ids.join(", "),
            by_its_run("events")
        );
        let args: Vec<Val> = runs.iter().map(|r| (*r).into()).collect();
        let rows = self.db().rows(&sql, &args).map_err(AuditError::Read)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let row = (|| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)?, r.int(4)?)))();
            let (profile, op, target, params, seq) = row.map_err(AuditError::Read)?;
            if self.trusts(seq) {
                out.push((profile, op, target, params));
            }
        }
        Ok(out)
    }
}

/// The condition that row `alias` of `events` was written by the writer and the machine of its run: what resume
/// and undo rest a decision on. A team log's database stamps every row with the role that wrote it
/// (`session_user`), so a teammate's row inside another's run fails it; a SQLite log's rows carry no writer. The
/// machine a row names is its own say: that its machine sealed it is checked as the log is verified (`trusts`).
pub(super) fn by_its_run(alias: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM runs w WHERE w.id = {alias}.run_id AND coalesce(w.writer, '') = coalesce({alias}.writer, '') \
         AND coalesce(w.machine, '') = coalesce({alias}.machine, ''))"
    )
}

/// How a row stands in the chain.
pub(super) enum Step {
    Linked,
    /// It breaks the chain, and the log's owner set it aside: skipped.
    SetAside,
    Broken(chain::Break),
}

#[derive(Clone, Debug)]
pub struct Verification {
    pub checked: usize,
    /// Hash of the last event when the chain is whole.
    pub head: Option<String>,
    pub first_break: Option<Break>,
    /// Rows that link up but that steward did not write as they stand.
    pub suspects: Vec<Suspect>,
}

/// How far a row's time may run ahead of the log's clock (a machine's clock a little fast) before it is suspect.
const AHEAD_MS: i64 = 5 * 60 * 1000;

/// A row that links into the chain but is not what steward writes: decisions do not rest on it, and `audit
/// verify` names it.
#[derive(Clone, Debug, PartialEq)]
pub enum Suspect {
    /// Written by `writer` into run `run`, which `run_writer` started (a teammate's row in another's run).
    ForeignWriter { seq: i64, run: i64, writer: String, run_writer: String },
    /// Sequence numbers skipped: nothing between `after` and `next` (a row written past the head).
    Gap { after: i64, next: i64 },
    /// A time ahead of the log's clock (or not a time at all).
    AheadOfClock { seq: i64, ts: String },
    /// Rows `from..=to` (`count` of them) that no seal of the machine they name covers (`why`, for the first).
    Unsealed { from: i64, to: i64, count: usize, machine: String, why: String },
}

impl Suspect {
    /// Unsealed rows, one suspect for each stretch of them with one machine and one reason.
    fn unsealed(found: &[super::seal_check::Unsealed]) -> Vec<Suspect> {
        let mut out: Vec<Suspect> = Vec::new();
        for u in found {
            if let Some(Suspect::Unsealed { to, count, machine, why, .. }) = out.last_mut() {
                if *machine == u.machine && *why == u.why {
                    *to = u.seq;
                    *count += 1;
                    continue;
                }
            }
            out.push(Suspect::Unsealed {
                from: u.seq,
                to: u.seq,
                count: 1,
                machine: u.machine.clone(),
                why: u.why.clone(),
            });
        }
        out
    }
}

impl std::fmt::Display for Suspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Suspect::ForeignWriter { seq, run, writer, run_writer } => write!(
                f,
                "seq {seq} sits in run {run}, started by {}, but was written by {} (resume, undo and claims ignore it)",
                if run_writer.is_empty() { "no recorded role" } else { run_writer },
                if writer.is_empty() { "no recorded role" } else { writer }
            ),
            Suspect::Gap { after, next } => {
                write!(f, "no rows between seq {after} and seq {next}: seq {next} was written past the head")
            }
            Suspect::AheadOfClock { seq, ts } => {
                write!(f, "seq {seq} has the time {ts}, ahead of the log's clock")
            }
            Suspect::Unsealed { from, to, count, machine, why } => {
                let rows = if from == to { format!("seq {from}") } else { format!("{count} rows in seq {from}..{to}") };
                let machine = if machine.is_empty() { String::new() } else { format!(" (machine {machine})") };
                write!(f, "{rows}{machine}: {why} (resume and undo ignore it)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: &str, target: &str, phase: &str, intent_seq: Option<i64>) -> Event {
        Event {
            run_id: 1,
            profile: "ghes".into(),
            op: op.into(),
            target: target.into(),
            phase: phase.into(),
            intent_seq,
            ..Default::default()
        }
    }

    fn store_with_events() -> AuditStore {
        let mut s = AuditStore::open_in_memory().unwrap();
        s.append(&mut [event("suspend", "bob", "intent", None)]).unwrap();
        s.append(&mut [event("suspend", "bob", "outcome", Some(1))]).unwrap();
        s.append(&mut [event("promote", "ann", "intent", None)]).unwrap();
        s
    }

    #[test]
    fn a_step_is_known_by_its_account_and_the_group_it_reaches() {
        use serde_json::json;
        assert_eq!(item_key("mona", &json!({"account": "42"})), "42");
        assert_eq!(item_key("7", &json!({"owner_id": "42"})), "7", "a key is known by its own id");
        let eng = item_key("mona", &json!({"account": "42", "group": "eng"}));
        let ops = item_key("mona", &json!({"account": "42", "group": "ops"}));
        assert_ne!(eng, ops, "one removal done never stands for another");
        assert_ne!(eng, item_key("mona", &json!({"account": "42"})));
        assert_eq!(item_key("mona", &json!({"group": "eng"})), "mona group=eng");
    }

    #[test]
    fn filters_narrow_the_listing() {
        let s = store_with_events();
        assert_eq!(s.list(&Filter::default()).unwrap().len(), 3);
        assert_eq!(s.list(&Filter { target: Some("bob".into()), ..Default::default() }).unwrap().len(), 2);
        assert_eq!(s.list(&Filter { op: Some("promote".into()), ..Default::default() }).unwrap().len(), 1);
        let last = s.list(&Filter { limit: Some(1), ..Default::default() }).unwrap();
        assert_eq!(last[0].event.seq, 3);
    }

    #[test]
    fn pending_lists_intents_without_outcome() {
        let s = store_with_events();
        let pending = s.list(&Filter { pending: true, ..Default::default() }).unwrap();
        assert_eq!(pending.iter().map(|r| r.event.seq).collect::<Vec<_>>(), vec![3]);
    }

    /// The pages of a whole verification are hashed ahead on other threads: a log of several pages verifies, and
    /// an edit or a broken link on any page is still the first break, at its seq.
    #[test]
    fn a_log_of_many_pages_verifies_and_its_first_break_is_found_wherever_it_is() {
        let mut s = AuditStore::open_in_memory().unwrap();
        let n = 2 * PAGE_ROWS + 7;
        let mut batch: Vec<Event> = (0..n).map(|i| event("suspend", &format!("u{i}"), "intent", None)).collect();
        for chunk in batch.chunks_mut(5_000) {
            s.append(chunk).unwrap();
        }
        let v = s.verify().unwrap();
        assert_eq!((v.checked as i64, v.first_break.is_none()), (n, true));
        s.conn().execute_batch("DROP TRIGGER events_no_update").unwrap();
        s.conn().execute("UPDATE events SET target = 'x' WHERE seq = ?1", [PAGE_ROWS + 3]).unwrap();
        s.conn().execute("UPDATE events SET prev_hash = 'y' WHERE seq = ?1", [2 * PAGE_ROWS + 2]).unwrap();
        let v = s.verify().unwrap();
        assert_eq!(v.first_break.map(|b| b.seq()), Some(PAGE_ROWS + 3));
        assert_eq!(v.checked as i64, PAGE_ROWS + 2);
        s.conn().execute("UPDATE events SET target = 'u10002' WHERE seq = ?1", [PAGE_ROWS + 3]).unwrap();
        let v = s.verify().unwrap();
        assert!(matches!(v.first_break, Some(chain::Break::Unlinked { seq }) if seq == 2 * PAGE_ROWS + 2), "{v:?}");
    }

    #[test]
    fn verify_passes_on_an_honest_log() {
        let v = store_with_events().verify().unwrap();
        assert_eq!(v.checked, 3);
        assert!(v.first_break.is_none());
        assert!(v.head.is_some());
    }

    #[test]
    fn verify_names_the_first_edited_row() {
        let s = store_with_events();
        s.conn()
            .execute_batch("DROP TRIGGER events_no_update; UPDATE events SET target = 'eve' WHERE seq = 2;")
            .unwrap();
        let v = s.verify().unwrap();
        assert_eq!(v.first_break, Some(Break::Tampered { seq: 2 }));
    }

    #[test]
    fn verify_names_the_row_after_a_deleted_one() {
        let s = store_with_events();
        s.conn().execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 2;").unwrap();
        let v = s.verify().unwrap();
        assert_eq!(v.first_break, Some(Break::Unlinked { seq: 3 }));
    }
}
