//! Machine signatures: each machine writes the log with an Ed25519 key of its own (`machine-key` in the user's
//! state directory, 0600), registered in the log (`steward_machines`) when it first writes there. Every row
//! names its machine, and the last row of each transaction carries the machine's seal: a signature over the
//! transaction's first and last seq and the last row's hash, which the chain ties to every row before it.
//!
//! A teammate who shares a login, or holds the writer role, can append rows that link into the chain, but
//! cannot seal them as another machine: `SealCheck` finds every row no seal of its own machine covers, and
//! decisions (resume, undo) leave those rows out.

use super::db::{DbError, Engine};
use super::keyfile;
use super::query::Row;
use super::store::{AuditError, AuditStore};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
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
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
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
                    return Err(AuditError::MachineKey(format!(
                        "this machine's key ({}) is registered in the team log by {writer}, not by you ({me}): \
                         someone copied its public key there first; move {} away to make a new key",
                        key.id(),
                        key_path(self.path()).display()
                    )));
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
        let sql = "SELECT seq, hash, coalesce(machine, ''), seal, coalesce(writer, '') FROM events \
                   WHERE seq >= ?1 AND (seq = ?1 OR seal IS NOT NULL) ORDER BY seq LIMIT 2";
        let rows = self.db().rows(sql, &[seq.into()]).map_err(AuditError::Read)?;
        let read = |r: &super::db::Row| -> Result<(i64, String, String, String, String), DbError> {
            Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.opt_text(3)?.unwrap_or_default(), r.text(4)?))
        };
        let rows = rows.iter().map(read).collect::<Result<Vec<_>, _>>().map_err(AuditError::Read)?;
        let Some((_, _, machine, ..)) = rows.iter().find(|r| r.0 == seq) else { return Ok(false) };
        let Some(closing) = rows.iter().find(|r| !r.3.is_empty()) else {
            return Ok(machine.is_empty() && seq < self.seal_check()?.epoch());
        };
        let mut check = SealCheck::new(self.machines(Some(&closing.2))?);
        check.row(&SealedRow { seq, hash: "", machine, seal: "", writer: "" });
        let (s, hash, m, seal, writer) = closing;
        check.row(&SealedRow { seq: *s, hash, machine: m, seal, writer });
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
fn machine_id(key: &VerifyingKey) -> String {
    let mut h = Sha256::new();
    h.update(b"steward-machine\n");
    h.update(key.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// What a seal signs: which machine, which rows, and the last row's hash.
fn message(machine: &str, first: i64, last: i64, hash: &str) -> Vec<u8> {
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

/// A row no seal of its machine covers, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsealed {
    pub seq: i64,
    pub machine: String,
    pub why: String,
}

/// What the check needs of a row.
pub struct SealedRow<'a> {
    pub seq: i64,
    pub hash: &'a str,
    pub machine: &'a str,
    pub seal: &'a str,
    pub writer: &'a str,
}

/// Walks rows in seq order and names those no valid seal of their own machine covers. Rows wait in `pending`
/// until the seal that closes their transaction; honest transactions are contiguous, so it stays short.
pub struct SealCheck {
    machines: HashMap<String, Machine>,
    /// Rows before this carry no machine and need no seal (written before machines signed).
    epoch: i64,
    pending: Vec<(i64, String)>,
    found: Vec<Unsealed>,
}

impl SealCheck {
    pub fn new(machines: Vec<Machine>) -> Self {
        let epoch = machines.iter().map(|m| m.from_seq).min().unwrap_or(i64::MAX);
        let machines = machines.into_iter().map(|m| (m.id.clone(), m)).collect();
        SealCheck { machines, epoch, pending: Vec::new(), found: Vec::new() }
    }

    /// Whether `id` is registered (a machine that joined after the check began is read again by the caller).
    pub fn knows(&self, id: &str) -> bool {
        self.machines.contains_key(id)
    }

    /// Where sealing began: rows from here on must name a machine.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Machines read again: one that joined since the check began.
    pub fn learn(&mut self, machines: Vec<Machine>) {
        for m in machines {
            self.epoch = self.epoch.min(m.from_seq);
            self.machines.insert(m.id.clone(), m);
        }
    }

    pub fn row(&mut self, r: &SealedRow) {
        if r.machine.is_empty() {
            if r.seq >= self.epoch {
                self.found.push(Unsealed {
                    seq: r.seq,
                    machine: String::new(),
                    why: "it names no machine, so no machine's seal vouches for it".into(),
                });
            }
            return;
        }
        self.pending.push((r.seq, r.machine.to_string()));
        if r.seal.is_empty() {
            return;
        }
        let first = match self.open(r) {
            Ok(first) => first,
            Err(why) => {
                // A seal that does not verify covers nothing; its rows wait for one that does, and are named at
                // the end if none comes.
                self.found.push(Unsealed { seq: r.seq, machine: r.machine.to_string(), why });
                return;
            }
        };
        for (seq, machine) in std::mem::take(&mut self.pending) {
            if seq >= first && machine == r.machine {
                continue;
            }
            let why = if seq < first {
                "no seal of its machine covers it".to_string()
            } else {
                format!("it sits inside a transaction sealed by machine {}", r.machine)
            };
            self.found.push(Unsealed { seq, machine, why });
        }
    }

    /// The first seq a row's seal covers, if the seal is its machine's and verifies.
    fn open(&self, r: &SealedRow) -> Result<i64, String> {
        let Some(m) = self.machines.get(r.machine) else {
            return Err(format!("its machine {} is not registered in the log", r.machine));
        };
        if m.writer != r.writer {
            return Err(format!(
                "its machine {} was registered by {}, but the row was written by {}",
                r.machine,
                shown(&m.writer),
                shown(r.writer)
            ));
        }
        let bad = || format!("its seal does not verify with machine {}'s key", r.machine);
        let (first, sig) = r.seal.split_once(' ').ok_or_else(bad)?;
        let first: i64 = first.parse().map_err(|_| bad())?;
        let key = hex::decode(&m.public_key).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()).ok_or_else(bad)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad())?;
        if machine_id(&key) != m.id || first > r.seq {
            return Err(bad());
        }
        let sig = hex::decode(sig).ok().and_then(|s| Signature::from_slice(&s).ok()).ok_or_else(bad)?;
        key.verify(&message(&m.id, first, r.seq, r.hash), &sig).map_err(|_| bad())?;
        Ok(first)
    }

    /// Every row found unsealed, the rows still waiting for a seal included.
    pub fn finish(mut self) -> Vec<Unsealed> {
        for (seq, machine) in std::mem::take(&mut self.pending) {
            self.found.push(Unsealed { seq, machine, why: "no seal of its machine covers it".into() });
        }
        self.found.sort_by_key(|u| u.seq);
        self.found.dedup_by_key(|u| u.seq);
        self.found
    }
}

fn shown(role: &str) -> &str {
    if role.is_empty() {
        "no recorded role"
    } else {
        role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(key: &MachineKey, from_seq: i64) -> Machine {
        Machine { id: key.id().into(), public_key: key.public_hex(), host: "h".into(), writer: String::new(), from_seq }
    }

    fn row<'a>(seq: i64, hash: &'a str, machine: &'a str, seal: &'a str) -> SealedRow<'a> {
        SealedRow { seq, hash, machine, seal, writer: "" }
    }

    #[test]
    fn sealed_transactions_pass_and_a_forged_row_in_them_does_not() {
        let (a, b) = (MachineKey::ephemeral(), MachineKey::ephemeral());
        let mut check = SealCheck::new(vec![machine(&a, 3), machine(&b, 5)]);
        // Rows 1-2 were written before machines signed.
        check.row(&row(1, "h1", "", ""));
        check.row(&row(2, "h2", "", ""));
        // A's transaction 3-4, B's 5, then B's rows 6-7 claiming to be A's, then A's 8 sealed from 8.
        check.row(&row(3, "h3", a.id(), ""));
        check.row(&row(4, "h4", a.id(), &a.seal(3, 4, "h4")));
        check.row(&row(5, "h5", b.id(), &b.seal(5, 5, "h5")));
        check.row(&row(6, "h6", a.id(), ""));
        check.row(&row(7, "h7", a.id(), ""));
        check.row(&row(8, "h8", a.id(), &a.seal(8, 8, "h8")));
        // B signs a range reaching back over A's rows it forged nothing in, and a row with no machine at all.
        check.row(&row(9, "h9", a.id(), &b.seal(9, 9, "h9")));
        check.row(&row(10, "h10", "", ""));
        // A seal whose hash is not its row's (the row was changed after sealing).
        check.row(&row(11, "h11x", b.id(), &b.seal(11, 11, "h11")));
        let found: Vec<i64> = check.finish().iter().map(|u| u.seq).collect();
        assert_eq!(found, vec![6, 7, 9, 10, 11]);
    }

    #[test]
    fn a_seal_stretched_over_another_machines_rows_covers_only_its_own() {
        let (a, b) = (MachineKey::ephemeral(), MachineKey::ephemeral());
        let mut check = SealCheck::new(vec![machine(&a, 1), machine(&b, 1)]);
        check.row(&row(1, "h1", b.id(), ""));
        check.row(&row(2, "h2", a.id(), &a.seal(1, 2, "h2")));
        let found = check.finish();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].seq, 1);
        assert!(found[0].why.contains("inside a transaction sealed by"), "{:?}", found[0]);
    }

    #[test]
    fn a_machine_registered_by_another_role_or_not_at_all_seals_nothing() {
        let a = MachineKey::ephemeral();
        let mut registered = machine(&a, 1);
        registered.writer = "bob".into();
        let mut check = SealCheck::new(vec![registered]);
        check.row(&SealedRow { seq: 1, hash: "h1", machine: a.id(), seal: &a.seal(1, 1, "h1"), writer: "alice" });
        let found = check.finish();
        assert!(found[0].why.contains("registered by bob"), "{found:?}");
        let mut check = SealCheck::new(vec![]);
        check.row(&row(1, "h1", a.id(), &a.seal(1, 1, "h1")));
        assert!(check.finish()[0].why.contains("not registered"));
    }

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
