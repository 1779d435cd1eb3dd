//! Checkpoints of the chain head, kept outside the database (`audit.db.checkpoint`, mode 0600) and optionally
//! copied to syslog: a log whose tail was cut off, or whose rows after the checkpoint were edited, no longer
//! matches it. Each is signed with the log's Ed25519 key as a C2SP signed note shaped like a C2SP checkpoint
//! (origin, size, root hash, then the time as an extension line), so a copy held anywhere can be checked with
//! the public key alone, and nobody without the private key can make one that passes.

use super::chain;
use super::db::Engine;
use super::keyfile::write_private;
use super::keyfile::KeyError;
use super::signing::{NoteSigner, NoteVerifier};
use super::store::{AuditError, AuditStore};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub ts: String,
    /// False only for the JSON checkpoint an older steward wrote, accepted until the next one replaces it.
    #[serde(default)]
    pub signed: bool,
    /// SHA-256 (hex) of the signed note this checkpoint replaced, so consecutive copies (in syslog, say) show a
    /// gap or a fork; empty for a log's first checkpoint.
    #[serde(default)]
    pub prev: String,
    /// Which copy in a state directory was written with it (`copy_id`): that copy must then be there too, so
    /// deleting it (after which an older log would pass) is noticed; empty in older notes.
    #[serde(default)]
    pub copy: String,
}

pub fn path_for(db: &Path) -> PathBuf {
    super::beside(db, ".checkpoint")
}

impl Checkpoint {
    /// The note text: origin (the key's name), seq, the head hash in base64, `time TS`, then `prev …` and
    /// `copy …` when set.
    fn text(&self, origin: &str) -> Result<String, String> {
        let hash = hex::decode(&self.hash).map_err(|_| format!("the head hash {:?} is not hex", self.hash))?;
        let prev = if self.prev.is_empty() { String::new() } else { format!("prev {}\n", self.prev) };
        let copy = if self.copy.is_empty() { String::new() } else { format!("copy {}\n", self.copy) };
        Ok(format!("{origin}\n{}\n{}\ntime {}\n{prev}{copy}", self.seq, BASE64.encode(hash), self.ts))
    }

    fn parse_text(text: &str) -> Result<Checkpoint, String> {
        let lines: Vec<&str> = text.lines().collect();
        let [_origin, seq, hash, time, extensions @ ..] = &lines[..] else {
            return Err("it has fewer than four lines".into());
        };
        let (mut prev, mut copy) = (String::new(), String::new());
        for line in extensions {
            match line.split_once(' ') {
                Some(("prev", v)) if prev.is_empty() => prev = v.to_string(),
                Some(("copy", v)) if copy.is_empty() => copy = v.to_string(),
                _ => return Err(format!("its line {line:?} is neither `prev …` nor `copy …`")),
            }
        }
        let seq = seq.parse().map_err(|_| format!("its size {seq:?} is not a number"))?;
        let hash = BASE64.decode(hash).map_err(|_| format!("its hash {hash:?} is not base64"))?;
        let ts = time.strip_prefix("time ").ok_or("its fourth line is not `time …`")?;
        Ok(Checkpoint { seq, hash: hex::encode(hash), ts: ts.to_string(), signed: true, prev, copy })
    }
}

/// A checkpoint copy as steward wrote it, checked with `verifier`: the file's signed note, or one line of
/// syslog (`… audit checkpoint … seq=… hash=… ts=… key=… sig=…`), whose note is rebuilt from its fields.
pub fn open(copy: &str, verifier: &NoteVerifier) -> Result<Checkpoint, String> {
    let note = match copy.find("audit checkpoint ") {
        Some(at) => note_of_syslog_line(&copy[at..])?,
        None => copy.to_string(),
    };
    let text = verifier.open(&note)?;
    Checkpoint::parse_text(text)
}

fn note_of_syslog_line(line: &str) -> Result<String, String> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
            .ok_or_else(|| format!("the syslog line has no {name}= field"))
    };
    let cp = Checkpoint {
        seq: field("seq")?.parse().map_err(|_| "its seq= is not a number".to_string())?,
        hash: field("hash")?.to_string(),
        ts: field("ts")?.to_string(),
        signed: true,
        prev: field("prev").map(str::to_string).unwrap_or_default(),
        copy: field("copy").map(str::to_string).unwrap_or_default(),
    };
    let key = field("key")?;
    Ok(format!("{}\n— {key} {}\n", cp.text(key)?, field("sig")?))
}

/// The checkpoint beside the log at `db`, checked with the log's own key. `Ok(None)` when there is none yet;
/// an error, naming the file, when it was edited, forged, or can no longer be checked.
pub fn read(db: &Path) -> Result<Option<Checkpoint>, ReadError> {
    read_copy(db, &path_for(db), None)
}

/// A checkpoint at `path`: the file beside the log at `db`, or a copy kept elsewhere (a saved syslog line
/// too), checked with `key` if given, else with the log's own key.
pub fn read_copy(db: &Path, path: &Path, key: Option<&NoteVerifier>) -> Result<Option<Checkpoint>, ReadError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReadError::Io { path: path.into(), source }),
    };
    let own = if key.is_none() { NoteSigner::load(db)? } else { None };
    let verifier = key.or(own.as_ref().map(NoteSigner::verifier));
    let checked = match (verifier, text.trim_start().starts_with('{')) {
        // Written by a steward from before signing, and no key made since: the last unsigned one is accepted.
        (None, true) => serde_json::from_str(&text).map_err(|e| format!("it is damaged ({e})")),
        (Some(_), true) => Err("it is unsigned, but this log signs its checkpoints: it was replaced".to_string()),
        (None, false) => Err(format!(
            "it is signed but the signing key {} is missing (copy it with the log, or give `audit verify` the \
             log's verifier key with --key)",
            super::signing::key_path(db).display()
        )),
        (Some(v), false) => open(&text, v),
    };
    checked.map(Some).map_err(|why| ReadError::Untrusted { path: path.into(), why })
}

/// Why a checkpoint copy could not be read, or cannot be trusted (what is wrong with it, in words).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the checkpoint {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the checkpoint {path} cannot be trusted: {why}")]
    Untrusted { path: PathBuf, why: String },
}

/// Why a checkpoint was not written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckpointError {
    /// The log changed under the process: it signed the last point it verified instead, and records nothing more.
    #[error(
        "the audit log changed under this process, so its checkpoint was not moved past what this process verified, and nothing more is recorded: {0}"
    )]
    ChangedUnderUs(String),
    #[error("the audit log could not be read to sign its head: {0}")]
    Log(Arc<AuditError>),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The head as the log holds it cannot be written as a note (its hash is not hex: the row was damaged).
    #[error("the head cannot be signed: {0}")]
    Head(String),
    #[error("cannot write the checkpoint {path}: {source}")]
    Write { path: PathBuf, source: Arc<std::io::Error> },
}

/// Writes the head, signed, as this process verified it from the last point it knew good (atomically: a temp
/// file renamed over the old one), and sends a copy to syslog when a socket is configured (`audit_syslog`), so
/// a copy exists beyond the reach of whoever can edit the files. A log cut or edited under the process is never
/// signed: the checkpoint names the last point the process verified or wrote instead, which the changed log no
/// longer has, so every later process (and `audit verify`) sees the change; the error says what was found.
pub fn write(db: &Path, store: &AuditStore, syslog: Option<&Path>) -> Result<(), CheckpointError> {
    match store.catch_up().map_err(|e| CheckpointError::Log(Arc::new(e)))? {
        Ok(head) => Ok(sign(db, head, syslog)?),
        Err(problem) => {
            let known = store.known_point();
            if let Some(point) = known.clone() {
                sign(db, point, syslog)?;
            }
            let named = known.map(|(seq, _)| format!("; the checkpoint names seq {seq}, the last event it verified"));
            Err(CheckpointError::ChangedUnderUs(format!("{problem}{}", named.unwrap_or_default())))
        }
    }
}

/// Signs `(seq, hash)` as the log's checkpoint, beside it, in the state directory and in syslog.
fn sign(db: &Path, (seq, hash): (i64, String), syslog: Option<&Path>) -> Result<(), CheckpointError> {
    // Chained to the note it replaces (the one beside the log, checked when the log was opened).
    let prev = std::fs::read(path_for(db)).map(|note| hex::encode(Sha256::digest(note))).unwrap_or_default();
    let copy = anchor_path(db).map(|a| copy_id(&a)).unwrap_or_default();
    let cp = Checkpoint { seq, hash, ts: super::store::now(), signed: true, prev, copy };
    let signer = NoteSigner::load_or_create(db)?;
    let note = signer.sign(&cp.text(signer.verifier().name()).map_err(CheckpointError::Head)?);
    if let Some(socket) = syslog {
        if let Err(e) = send_to_syslog(socket, db, &cp, &note) {
            tracing::warn!("could not send the audit checkpoint to syslog at {}: {e}", socket.display());
        }
    }
    // The second copy, outside the log's directory, first: the note beside the log names it, so a kill between
    // the two writes must leave the copy newer than that note (which still matches the log), never missing.
    // Losing it only loses rollback detection, so it warns.
    if let Some(anchor) = anchor_path(db) {
        let made = anchor.parent().map_or(Ok(()), std::fs::create_dir_all);
        let written = made.map_err(|e| CheckpointError::Write { path: anchor.clone(), source: Arc::new(e) });
        if let Err(e) = written.and_then(|()| replace_file(&anchor, &note)) {
            tracing::warn!("could not keep a copy of the audit checkpoint at {}: {e}", anchor.display());
        }
    }
    replace_file(&path_for(db), &note)?;
    Ok(())
}

/// Writes `text` whole or not at all: a private temp file, fsynced, renamed over `path`.
fn replace_file(path: &Path, text: &str) -> Result<(), CheckpointError> {
    // Its own temp file: two processes sharing a log may write their checkpoints at the same moment.
    let tmp = path.with_extension(format!("checkpoint.{}.tmp", std::process::id()));
    let failed = |p: &Path, e| CheckpointError::Write { path: p.into(), source: Arc::new(e) };
    write_private(&tmp, text.as_bytes(), false).map_err(|e| failed(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(path, e))
}

/// Where the second copy of the log's newest checkpoint lives: in the user's state directory
/// (`~/.local/state/steward/anchors/`), outside the log's own, keyed by the log's real path. Rolling the log
/// and the checkpoint beside it back together to an older signed pair leaves this copy naming rows the log
/// no longer has.
pub fn anchor_path(db: &Path) -> Option<PathBuf> {
    let dir = dirs::state_dir().or_else(dirs::data_local_dir)?;
    let real = crate::files::real_path(db);
    let digest = Sha256::digest(real.as_os_str().as_encoded_bytes());
    Some(dir.join("steward").join("anchors").join(format!("{}.checkpoint", hex::encode(&digest[..8]))))
}

/// What names the copy at `anchor` (a state directory's copy for one log) in the checkpoint written with it.
fn copy_id(anchor: &Path) -> String {
    hex::encode(&Sha256::digest(anchor.as_os_str().as_encoded_bytes())[..8])
}

/// What is wrong with the log at `db` against its anchors, if anything: the one check every action waits on
/// and `audit verify` reports. The checkpoint beside the log must be there once the log holds events, be
/// signed by the log's key, and match the log; the copy in the state directory must match it too.
pub fn problem(db: &Path, store: &AuditStore) -> Result<Option<String>, AuditError> {
    problem_of(db, store, false)
}

/// `problem`, for a caller that has just verified the whole chain itself (`open_verified`, `audit verify`): a
/// team log this machine has not anchored yet is not walked a second time.
pub fn problem_after_verify(db: &Path, store: &AuditStore) -> Result<Option<String>, AuditError> {
    problem_of(db, store, true)
}

fn problem_of(db: &Path, store: &AuditStore, chain_verified: bool) -> Result<Option<String>, AuditError> {
    let beside = match read(db) {
        Ok(cp) => cp,
        Err(untrusted) => return Ok(Some(untrusted.to_string())),
    };
    if beside.is_none() && store.db().engine() == Engine::Postgres && !chain_verified {
        // A team log is anchored on each machine that acts on it; one this machine has not anchored yet (it
        // joins the team) is checked whole instead, and anchored by its first run.
        if let Some(b) = store.verify()?.first_break {
            return Ok(Some(format!("the chain breaks at seq {}", b.seq())));
        }
    } else if beside.is_none() && store.db().engine() == Engine::Sqlite {
        if let Some((seq, _)) = store.head()? {
            return Ok(Some(format!(
                "the checkpoint {} is missing, yet the log holds events up to seq {seq}: it was deleted, or the log \
                 was copied without it; if the log is what you expect, `steward audit anchor` anchors it anew",
                path_for(db).display()
            )));
        }
    }
    if let Some(p) = store.check_against(beside.as_ref())? {
        return Ok(Some(p));
    }
    let Some(anchor) = anchor_path(db) else { return Ok(None) };
    Ok(match read_copy(db, &anchor, None) {
        // The two copies are written together: one without the other was deleted, or the log was moved or
        // copied here without its history (after which an older log would pass unnoticed).
        Ok(None) if beside.as_ref().is_some_and(|b| !b.copy.is_empty() && b.copy == copy_id(&anchor)) => Some(format!(
            "the copy of the log's checkpoint kept in {} is missing, while the checkpoint beside the log says it \
             was written there: it was deleted; if the log is what you expect, `steward audit anchor` anchors it anew",
            anchor.display()
        )),
        Ok(None) => None,
        Ok(Some(cp)) => store.check_against(Some(&cp))?.map(|p| {
            format!(
                "the log is older than the copy of its newest checkpoint kept in {} ({p}): the log and the checkpoint \
                 beside it were rolled back or replaced; if that was on purpose, `steward audit anchor` anchors it anew",
                anchor.display()
            )
        }),
        Err(untrusted) => Some(untrusted.to_string()),
    })
}

/// One RFC 3164 line on the local datagram socket (`/dev/log`): facility authpriv, severity notice. It holds
/// the note's fields and signature, so `audit verify --checkpoint` can check a copy of the line.
#[cfg(unix)]
fn send_to_syslog(socket: &Path, db: &Path, cp: &Checkpoint, note: &str) -> std::io::Result<()> {
    const AUTHPRIV_NOTICE: u8 = 10 * 8 + 5;
    let stamp = chrono::Local::now().format("%b %e %H:%M:%S");
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "localhost".into());
    let signature = note.lines().last().and_then(|l| l.strip_prefix("— ")).unwrap_or_default();
    let (key, sig) = signature.split_once(' ').unwrap_or_default();
    let line = format!(
        "<{AUTHPRIV_NOTICE}>{stamp} {host} steward[{}]: audit checkpoint db={} seq={} hash={} ts={}{}{} key={key} sig={sig}",
        std::process::id(),
        db.display(),
        cp.seq,
        cp.hash,
        cp.ts,
        if cp.prev.is_empty() { String::new() } else { format!(" prev={}", cp.prev) },
        if cp.copy.is_empty() { String::new() } else { format!(" copy={}", cp.copy) }
    );
    let sender = std::os::unix::net::UnixDatagram::unbound()?;
    sender.send_to(line.as_bytes(), socket).map(|_| ())
}

#[cfg(not(unix))]
fn send_to_syslog(_socket: &Path, _db: &Path, _cp: &Checkpoint, _note: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("syslog copies need a Unix datagram socket"))
}

impl AuditStore {
    /// What SQLite finds wrong with the file's own structure (`PRAGMA quick_check`, which reads every page), if
    /// anything; a team log's server keeps its own.
    pub fn damage(&self) -> Result<Option<String>, AuditError> {
        if self.db().engine() != Engine::Sqlite {
            return Ok(None);
        }
        let quick = self.db().row("PRAGMA quick_check", &[]).map_err(AuditError::Read)?;
        let quick = quick.map(|r| r.text(0)).transpose().map_err(AuditError::Read)?.unwrap_or_default();
        Ok((quick != "ok").then(|| format!("SQLite reports the file damaged: {quick}")))
    }

    /// The last event's seq and hash.
    pub fn head(&self) -> Result<Option<(i64, String)>, AuditError> {
        let r =
            self.db().row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", &[]).map_err(AuditError::Read)?;
        r.map(|r| Ok((r.int(0)?, r.text(1)?))).transpose().map_err(AuditError::Read)
    }

    /// What is wrong with the log against a checkpoint, if anything: the cheap check run before writing.
    /// It covers the checkpointed row and every row after it; SQLite's own structure is checked with the whole
    /// chain (`damage`), since reading every page of a long log is not cheap.
    pub fn check_against(&self, cp: Option<&Checkpoint>) -> Result<Option<String>, AuditError> {
        let Some(cp) = cp else { return Ok(None) };
        if cp.seq == 0 {
            return Ok(match (cp.hash == chain::GENESIS, self.verify_from(0, chain::GENESIS)?) {
                (false, _) => Some("the checkpoint of an empty log names a hash other than the genesis".into()),
                (true, Err(b)) => Some(format!("the chain breaks at seq {}", b.seq())),
                (true, Ok(head)) => {
                    self.know(head);
                    None
                }
            });
        }
        let at = self.db().row("SELECT hash FROM events WHERE seq = ?1", &[cp.seq.into()]).map_err(AuditError::Read)?;
        let at = at.map(|r| r.text(0)).transpose().map_err(AuditError::Read)?;
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
            Err(b) => Ok(Some(format!("the chain breaks at seq {}", b.seq()))),
            Ok(head) => {
                self.know(head);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_unsigned_checkpoint_is_read_until_the_log_has_a_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let hash = "ab".repeat(32);
        std::fs::write(path_for(&db), format!(r#"{{"seq":3,"hash":"{hash}","ts":"2026-11-24T10:00:00Z"}}"#)).unwrap();
        let cp = read(&db).unwrap().unwrap();
        assert_eq!((cp.seq, cp.signed), (3, false));
        NoteSigner::load_or_create(&db).unwrap();
        assert!(read(&db).unwrap_err().to_string().contains("unsigned"));
    }

    #[test]
    fn each_checkpoint_names_the_one_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let mut store = AuditStore::open(&db).unwrap();
        write(&db, &store, None).unwrap();
        let first_note = std::fs::read(path_for(&db)).unwrap();
        let first = read(&db).unwrap().unwrap();
        assert_eq!((first.seq, first.prev.as_str()), (0, ""), "the genesis checkpoint names none");
        store.start_run(&super::super::RunInfo::default()).unwrap();
        let mut e = [super::super::Event { op: "suspend".into(), ..Default::default() }];
        store.append(&mut e).unwrap();
        write(&db, &store, None).unwrap();
        let second = read(&db).unwrap().unwrap();
        assert_eq!(second.seq, 1);
        assert_eq!(second.prev, hex::encode(Sha256::digest(&first_note)));
    }

    #[test]
    fn a_signed_checkpoint_reads_back_from_its_file_and_from_its_syslog_line() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let signer = NoteSigner::load_or_create(&db).unwrap();
        let cp = Checkpoint {
            seq: 7,
            hash: "cd".repeat(32),
            ts: "2026-11-25T01:02:03.004Z".into(),
            signed: true,
            prev: "ab".repeat(32),
            copy: "ef".repeat(8),
        };
        let note = signer.sign(&cp.text(signer.verifier().name()).unwrap());
        assert_eq!(open(&note, signer.verifier()), Ok(cp.clone()));
        let sig = note.lines().last().unwrap().rsplit(' ').next().unwrap();
        let line = format!(
            "<85>Nov 25 01:02:03 host steward[1]: audit checkpoint db=/x seq=7 hash={} ts={} prev={} copy={} key={} sig={sig}",
            cp.hash,
            cp.ts,
            cp.prev,
            cp.copy,
            signer.verifier().name()
        );
        assert_eq!(open(&line, signer.verifier()), Ok(cp));
    }
}
