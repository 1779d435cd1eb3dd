//! Machine signatures: each machine writes the log with an Ed25519 key of its own (`machine-key` in the user's
//! state directory, 0600), registered in the log (`steward_machines`) when it first writes there. Every row
//! names its machine, and the last row of each transaction carries the machine's seal: a signature over the
//! transaction's first and last seq and the last row's hash, which the chain ties to every row before it.
//!
//! A teammate who shares a login, or holds the writer role, can append rows that link into the chain, but
//! cannot seal them as another machine: `seal_check` finds every row no seal of its own machine covers, and
//! decisions (resume, undo) leave those rows out.

use super::db::{DbError, Engine};
use super::keyfile::{self, KeyError};
use super::query::Row;
use super::seal_check::{SealCheck, SealedRow, Unsealed};
use super::store::{AuditError, AuditStore};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

const WHAT: &str = "this machine's signing key";

/// Where this machine's key lives: the user's state directory (one key for every log the machine writes),
/// else beside `anchor`.
pub fn key_path(anchor: &Path) -> PathBuf {
    match dirs::state_dir().or_else(dirs::data_local_dir) {
        Some(dir) => dir.join("steward").join("machine-key"),
        None => super::beside(anchor, ".machine-key"),
    }
}

/// This machine's signing key.
pub struct MachineKey {
    key: SigningKey,
    id: String,
}

impl MachineKey {
    /// The key at `path`, made on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        keyfile::load_or_create(path, WHAT).map(Self::from_seed)
    }

    /// A key of this process only (a log in memory).
    pub fn ephemeral() -> Self {
        Self::from_seed(rand::random())
    }

    fn from_seed(seed: [u8; keyfile::KEY_BYTES]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = machine_id(&key.verifying_key());
        MachineKey { key, id }
    }

    /// What rows and runs name this machine by: derived from its public key.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The seal of rows `first..=last` written in one transaction, the last of which hashes to `hash`.
    pub fn seal(&self, first: i64, last: i64, hash: &str) -> String {
        let signature = self.key.sign(&message(&self.id, first, last, hash));
        format!("{first} {}", hex::encode(signature.to_bytes()))
    }
}

/// What one connection to a log keeps about machines: this machine's key (loaded on the first write), whether
/// it is registered in this log, the log's machines as last read, and the rows found unsealed so far.
#[derive(Default)]
pub struct Sealing {
    key: std::sync::OnceLock<MachineKey>,
    registered: std::sync::atomic::AtomicBool,
    /// Set while a transaction registers the machine; registered once that transaction commits.
    registering: std::sync::atomic::AtomicBool,
    machines: parking_lot::Mutex<Option<Vec<Machine>>>,
    unsealed: parking_lot::Mutex<std::collections::BTreeSet<i64>>,
}

impl Sealing {
    /// The transaction that registered this machine committed.
    pub(super) fn registered(&self) {
        if self.registering.swap(false, Ordering::SeqCst) {
            self.registered.store(true, Ordering::SeqCst);
        }
    }

    /// The transaction was rolled back: a registration in it did not happen.
    pub(super) fn rolled_back(&self) {
        self.registering.store(false, Ordering::SeqCst);
    }
}

impl AuditStore {
    /// This machine's key: the one in the user's state directory, or one of this process for a log in memory.
    pub(super) fn machine_key(&self) -> Result<&MachineKey, AuditError> {
        if let Some(key) = self.sealing.key.get() {
            return Ok(key);
        }
        let key = if self.path() == Path::new(":memory:") {
            MachineKey::ephemeral()
        } else {
            MachineKey::load_or_create(&key_path(self.path())).map_err(AuditError::MachineKey)?
        };
        Ok(self.sealing.key.get_or_init(|| key))
    }

    /// Registers this machine in the log, if it is not yet, inside the transaction that writes its first rows
    /// (`from_seq`). A key someone else registered first under another role is refused: rows sealed with it
    /// would not verify as this machine's.
    pub(super) fn register_machine(&self, from_seq: i64) -> Result<(), AuditError> {
        if self.sealing.registered.load(Ordering::SeqCst) {
            return Ok(());
        }
        let key = self.machine_key()?;
        let host = whoami::fallible::hostname().unwrap_or_default();
        self.db()
            .execute(
                "INSERT INTO steward_machines (id, public_key, host, from_seq, joined_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO NOTHING",
                &[key.id().into(), key.public_hex().into(), host.into(), from_seq.into(), super::store::now().into()],
            )
            .map_err(AuditError::Write)?;
        if self.db().engine() == Engine::Postgres {
            let sql = "SELECT coalesce(writer, ''), session_user::text, public_key FROM steward_machines WHERE id = ?1";
            let row = self.db().row(sql, &[key.id().into()]).map_err(AuditError::Write)?;
            let row = row.map(|r| Ok::<_, DbError>((r.text(0)?, r.text(1)?, r.text(2)?)));
            if let Some((writer, me, public)) = row.transpose().map_err(AuditError::Write)? {
                if writer != me || public != key.public_hex() {
                    let (machine, path) = (key.id().to_string(), key_path(self.path()));
                    return Err(AuditError::MachineTaken { machine, writer, me, path });
                }
            }
        }
        self.sealing.registering.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The log's machines; read again when `id` is not among them (a machine that joined meanwhile).
    pub(super) fn machines(&self, id: Option<&str>) -> Result<Vec<Machine>, AuditError> {
        let mut cached = self.sealing.machines.lock();
        let stale = match (&*cached, id) {
            (None, _) => true,
            (Some(known), Some(id)) => !known.iter().any(|m| m.id == id),
            (Some(_), None) => false,
        };
        if stale {
            let sql =
                "SELECT id, public_key, host, coalesce(writer, ''), from_seq FROM steward_machines ORDER BY from_seq";
            let rows = self.db().rows(sql, &[]).map_err(AuditError::Read)?;
            let read = rows
                .into_iter()
                .map(|mut r| {
                    Ok(Machine {
                        id: r.take_text(0)?,
                        public_key: r.take_text(1)?,
                        host: r.take_text(2)?,
                        writer: r.take_text(3)?,
                        from_seq: r.int(4)?,
                    })
                })
                .collect::<Result<Vec<_>, DbError>>()
                .map_err(AuditError::Read)?;
            *cached = Some(read);
        }
        Ok(cached.clone().unwrap_or_default())
    }

    /// A check of rows read in order, with the machines known now.
    pub(super) fn seal_check(&self) -> Result<SealCheck, AuditError> {
        Ok(SealCheck::new(self.machines(None)?))
    }

    /// Hands one row to `check`, reading the machines again first if the row names one it does not know.
    pub(super) fn check_seal(&self, check: &mut SealCheck, r: &Row) -> Result<(), AuditError> {
        if !r.machine.is_empty() && !check.knows(&r.machine) {
            check.learn(self.machines(Some(&r.machine))?);
            check.asked_for(&r.machine);
        }
        check.row(&SealedRow {
            seq: r.event.seq,
            hash: &r.hash,
            machine: &r.machine,
            seal: &r.seal,
            writer: &r.writer,
        });
        Ok(())
    }

    /// Whether row `seq` is sealed by the machine it names: the first sealed row from it on closes its
    /// transaction, and must be that machine's, verify, and reach back over it. (Rows before machines signed pass.)
    pub(super) fn row_is_sealed(&self, seq: i64) -> Result<bool, AuditError> {
        if !self.trusts(seq) {
            return Ok(false);
        }
        let own = self.db().row("SELECT coalesce(machine, '') FROM events WHERE seq = ?1", &[seq.into()]);
        let Some(machine) = own.map_err(AuditError::Read)?.map(|r| r.text(0)).transpose().map_err(AuditError::Read)?
        else {
            return Ok(false);
        };
        // Decided without looking further: a row from before machines signed may be followed by a long stretch
        // of such rows, which the search for the next seal would walk.
        if machine.is_empty() {
            return Ok(seq < self.seal_check()?.epoch());
        }
        let sql = "SELECT seq, hash, coalesce(machine, ''), seal, coalesce(writer, '') FROM events \
                   WHERE seq >= ?1 AND seal IS NOT NULL ORDER BY seq LIMIT 1";
        let closing = self.db().row(sql, &[seq.into()]).map_err(AuditError::Read)?;
        let read = |r: super::db::Row| -> Result<(i64, String, String, String, String), DbError> {
            Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.opt_text(3)?.unwrap_or_default(), r.text(4)?))
        };
        let Some((s, hash, m, seal, writer)) = closing.map(read).transpose().map_err(AuditError::Read)? else {
            return Ok(false);
        };
        let mut check = SealCheck::new(self.machines(Some(&m))?);
        if s != seq {
            check.row(&SealedRow { seq, hash: "", machine: &machine, seal: "", writer: "" });
        }
        check.row(&SealedRow { seq: s, hash: &hash, machine: &m, seal: &seal, writer: &writer });
        Ok(check.finish().iter().all(|u| u.seq != seq))
    }

    /// Rows found unsealed: decisions leave them out from now on.
    pub(super) fn distrust(&self, found: &[Unsealed]) {
        self.sealing.unsealed.lock().extend(found.iter().map(|u| u.seq));
    }

    /// Whether a decision may rest on row `seq`: no check of this connection found it unsealed.
    pub(super) fn trusts(&self, seq: i64) -> bool {
        !self.sealing.unsealed.lock().contains(&seq)
    }
}

/// A machine's id: the first 8 bytes of SHA-256 over its public key, in hex.
pub(super) fn machine_id(key: &VerifyingKey) -> String {
    let mut h = Sha256::new();
    h.update(b"steward-machine\n");
    h.update(key.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// What a seal signs: which machine, which rows, and the last row's hash.
pub(super) fn message(machine: &str, first: i64, last: i64, hash: &str) -> Vec<u8> {
    format!("steward-seal/1\n{machine}\n{first}\n{last}\n{hash}\n").into_bytes()
}

/// A machine as the log registered it.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: String,
    pub public_key: String,
    pub host: String,
    /// The role that registered it (a team log's database stamps it); empty in a SQLite log.
    pub writer: String,
    /// Its first row's seq: rows before the first machine's carry no seal.
    pub from_seq: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_on_disk_is_the_same_machine_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine-key");
        let one = MachineKey::load_or_create(&path).unwrap();
        let two = MachineKey::load_or_create(&path).unwrap();
        assert_eq!(one.id(), two.id());
        assert_eq!(one.id().len(), 16);
        assert_ne!(one.id(), MachineKey::ephemeral().id());
    }
}
