//! Checkpoints of the chain head, kept outside the database (`audit.db.checkpoint`, mode 0600): a log whose
//! tail was cut off, or whose rows after the checkpoint were edited, no longer matches it.

use super::chain;
use super::store::{AuditError, AuditStore};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub ts: String,
}

pub fn path_for(db: &Path) -> PathBuf {
    super::beside(db, ".checkpoint")
}

pub fn read(db: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path_for(db)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the current head (atomically: a temp file renamed over the old one), and sends a copy to syslog
/// when a socket is configured (`audit_syslog`), so a copy exists beyond the reach of whoever can edit the file.
pub fn write(db: &Path, store: &AuditStore, syslog: Option<&Path>) -> Result<(), String> {
    let Some((seq, hash)) = store.head().map_err(|e| e.to_string())? else { return Ok(()) };
    let cp = Checkpoint { seq, hash, ts: super::store::now() };
    if let Some(socket) = syslog {
        if let Err(e) = send_to_syslog(socket, db, &cp) {
            tracing::warn!("could not send the audit checkpoint to syslog at {}: {e}", socket.display());
        }
    }
    let path = path_for(db);
    let tmp = path.with_extension("checkpoint.tmp");
    let text = serde_json::to_string(&cp).map_err(|e| e.to_string())?;
    write_durably(&tmp, text.as_bytes()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Private (0600) from its creation, and on disk before it replaces the old checkpoint.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// One RFC 3164 line on the local datagram socket (`/dev/log`): facility authpriv, severity notice.
#[cfg(unix)]
fn send_to_syslog(socket: &Path, db: &Path, cp: &Checkpoint) -> std::io::Result<()> {
    const AUTHPRIV_NOTICE: u8 = 10 * 8 + 5;
    let stamp = chrono::Local::now().format("%b %e %H:%M:%S");
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "localhost".into());
    let line = format!(
        "<{AUTHPRIV_NOTICE}>{stamp} {host} steward[{}]: audit checkpoint db={} seq={} hash={} ts={}",
        std::process::id(),
        db.display(),
        cp.seq,
        cp.hash,
        cp.ts
    );
    let sender = std::os::unix::net::UnixDatagram::unbound()?;
    sender.send_to(line.as_bytes(), socket).map(|_| ())
}

#[cfg(not(unix))]
fn send_to_syslog(_socket: &Path, _db: &Path, _cp: &Checkpoint) -> std::io::Result<()> {
    Err(std::io::Error::other("syslog copies need a Unix datagram socket"))
}

impl AuditStore {
    /// The last event's seq and hash.
    pub fn head(&self) -> Result<Option<(i64, String)>, AuditError> {
        self.conn()
            .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(AuditError::Read)
    }

    /// What is wrong with the log against a checkpoint, if anything: the cheap check run before writing.
    /// It covers SQLite's own structure, the checkpointed row, and every row after it.
    pub fn check_against(&self, cp: Option<&Checkpoint>) -> Result<Option<String>, AuditError> {
        let quick: String = self.conn().query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(AuditError::Read)?;
        if quick != "ok" {
            return Ok(Some(format!("SQLite reports the file damaged: {quick}")));
        }
        let Some(cp) = cp else { return Ok(None) };
        let at: Option<String> = self
            .conn()
            .query_row("SELECT hash FROM events WHERE seq = ?1", [cp.seq], |r| r.get(0))
            .optional()
            .map_err(AuditError::Read)?;
        match at {
            None => {
                return Ok(Some(format!(
                    "the checkpoint of {} names seq {}, which is no longer in the log (its tail was cut off)",
                    cp.ts, cp.seq
                )))
            }
            Some(h) if h != cp.hash => {
                return Ok(Some(format!(
                    "event {} no longer has the hash the checkpoint of {} recorded",
                    cp.seq, cp.ts
                )))
            }
            Some(_) => {}
        }
        match self.verify_from(cp.seq, &cp.hash)? {
            Some(b) => Ok(Some(format!("the chain breaks at seq {}", b.seq()))),
            None => Ok(None),
        }
    }

    /// Verifies the rows after `seq`, starting from its hash.
    fn verify_from(&self, seq: i64, hash: &str) -> Result<Option<chain::Break>, AuditError> {
        let rows = self.list(&super::query::Filter { since_seq: Some(seq), ..Default::default() })?;
        let mut prev = hash.to_string();
        for r in rows {
            if let Err(b) = chain::check(&prev, &r.prev_hash, &r.hash, &r.event) {
                return Ok(Some(b));
            }
            prev = r.hash.clone();
        }
        Ok(None)
    }
}
