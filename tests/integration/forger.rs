//! An attacker with write access to a SQLite audit log who reproduces steward's chain exactly: cuts its tail,
//! or edits a row and recomputes every hash after it with `steward::audit::chain::link`, so the chain itself
//! verifies. What stops such a log is what steward knows outside it (checkpoints, what a running process
//! verified), which the attack tests of issue 33 exercise.

use rusqlite::{params, Connection};
use std::path::Path;
use steward::audit::chain::{self, Event};

pub struct Forger {
    conn: Connection,
}

impl Forger {
    /// The log at `db`, its append-only triggers dropped (as anyone who can write the file can).
    pub fn open(db: &Path) -> Forger {
        let conn = Connection::open(db).expect("the log opens");
        conn.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
        conn.execute_batch("DROP TRIGGER IF EXISTS events_no_delete; DROP TRIGGER IF EXISTS events_no_update;")
            .expect("triggers dropped");
        Forger { conn }
    }

    /// Every event after `seq` removed: the chain left is whole, only shorter.
    pub fn cut_after(&self, seq: i64) {
        self.conn.execute("DELETE FROM events WHERE seq > ?1", params![seq]).expect("tail cut");
    }

    /// Row `seq`'s `params` replaced, and every hash from it on recomputed, so the chain verifies.
    pub fn edit_params(&self, seq: i64, params_json: &str) {
        self.edit_params_only(seq, params_json);
        self.rehash_from(seq);
    }

    /// Row `seq`'s `params` replaced, hashes left as they were: a visibly broken chain.
    pub fn edit_params_only(&self, seq: i64, params_json: &str) {
        self.conn.execute("UPDATE events SET params = ?2 WHERE seq = ?1", params![seq, params_json]).expect("edit");
    }

    /// The highest seq in the log.
    pub fn head(&self) -> i64 {
        self.conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0)).expect("head")
    }

    /// The seq of the newest row matching `filter` (an SQL condition over the events table).
    pub fn find(&self, filter: &str) -> Option<i64> {
        let sql = format!("SELECT max(seq) FROM events WHERE {filter}");
        self.conn.query_row(&sql, [], |r| r.get(0)).expect("find")
    }

    fn rehash_from(&self, seq: i64) {
        let mut prev: String = self
            .conn
            .query_row("SELECT hash FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT 1", params![seq], |r| r.get(0))
            .unwrap_or_else(|_| chain::GENESIS.to_string());
        let rows: Vec<Event> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, intent_seq, \
                     status, http_status, error, duration_ms, token_source, token_fp, run_digest, origin FROM events WHERE seq >= ?1 ORDER BY seq",
                )
                .expect("select");
            stmt.query_map(params![seq], |r| {
                Ok(Event {
                    seq: r.get(0)?,
                    run_id: r.get(1)?,
                    ts: r.get(2)?,
                    profile: r.get(3)?,
                    kind: r.get(4)?,
                    base_url: r.get(5)?,
                    identity: r.get(6)?,
                    op: r.get(7)?,
                    target: r.get(8)?,
                    params: r.get(9)?,
                    mode: r.get(10)?,
                    phase: r.get(11)?,
                    intent_seq: r.get(12)?,
                    status: r.get(13)?,
                    http_status: r.get(14)?,
                    error: r.get(15)?,
                    duration_ms: r.get(16)?,
                    token_source: r.get(17)?,
                    token_fp: r.get(18)?,
                    run_digest: r.get(19)?,
                    origin: r.get(20)?,
                    ..Default::default()
                })
            })
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
        };
        for e in rows {
            let hash = chain::link(&prev, &e);
            self.conn
                .execute("UPDATE events SET prev_hash = ?2, hash = ?3 WHERE seq = ?1", params![e.seq, prev, hash])
                .expect("rehash");
            prev = hash;
        }
    }
}

impl Forger {
    /// Row `seq`'s params as stored.
    pub fn params(&self, seq: i64) -> String {
        self.conn.query_row("SELECT params FROM events WHERE seq = ?1", params![seq], |r| r.get(0)).expect("params")
    }
}
