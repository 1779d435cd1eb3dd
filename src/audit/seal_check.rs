//! Checking machine seals (`machine.rs`) over rows read in seq order: which rows no valid seal of their own
//! machine covers. A log of single actions holds a seal for every row, so signatures are checked in batches
//! (Ed25519 batch verification, about twice as fast per signature) spread over the machine's cores.

use super::machine::{machine_id, message, Machine};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::collections::HashMap;

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

/// A seal read, its signature not checked yet, and the rows it covers if it verifies.
struct Claim {
    machine: String,
    key: VerifyingKey,
    message: Vec<u8>,
    signature: Signature,
    rows: Vec<i64>,
}

/// Seals gathered before their signatures are checked together.
const BATCH: usize = 512;
/// Signatures one batch verification takes.
const CHUNK: usize = 64;

/// Walks rows in seq order and names those no valid seal of their own machine covers. Rows wait in `pending`
/// until the seal that closes their transaction (honest transactions are contiguous, so it stays short), then
/// with the seal until its signature is checked.
pub struct SealCheck {
    machines: HashMap<String, Machine>,
    /// Each machine's public key, if it is a valid one whose id is the machine's.
    keys: HashMap<String, Option<VerifyingKey>>,
    asked: std::collections::HashSet<String>,
    /// Rows before this carry no machine and need no seal (written before machines signed).
    epoch: i64,
    /// Rows since the last seal: (seq, the machine each names, as an index into `names`).
    pending: Vec<(i64, usize)>,
    names: Vec<String>,
    index: HashMap<String, usize>,
    claims: Vec<Claim>,
    found: Vec<Unsealed>,
}

impl SealCheck {
    pub fn new(machines: Vec<Machine>) -> Self {
        let mut check = SealCheck {
            machines: HashMap::new(),
            keys: HashMap::new(),
            asked: Default::default(),
            epoch: i64::MAX,
            pending: Vec::new(),
            names: Vec::new(),
            index: HashMap::new(),
            claims: Vec::new(),
            found: Vec::new(),
        };
        check.learn(machines);
        check
    }

    /// Whether `id` is registered, or was looked for already (a machine that joined after the check began is
    /// read again by the caller, once: rows naming a machine that was never registered ask nothing more).
    pub fn knows(&self, id: &str) -> bool {
        self.machines.contains_key(id) || self.asked.contains(id)
    }

    /// The caller read the machines again for `id`: whatever it found, `id` is not asked about again.
    pub fn asked_for(&mut self, id: &str) {
        self.asked.insert(id.to_string());
    }

    /// Where sealing began: rows from here on must name a machine.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Machines read again: one that joined since the check began.
    pub fn learn(&mut self, machines: Vec<Machine>) {
        for m in machines {
            self.epoch = self.epoch.min(m.from_seq);
            let key = hex::decode(&m.public_key)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .and_then(|k| VerifyingKey::from_bytes(&k).ok())
                .filter(|k| machine_id(k) == m.id);
            self.keys.insert(m.id.clone(), key);
            self.machines.insert(m.id.clone(), m);
        }
    }

    pub fn row(&mut self, r: &SealedRow) {
        if r.machine.is_empty() {
            if r.seq >= self.epoch {
                let why = "it names no machine, so no machine's seal vouches for it".into();
                self.found.push(Unsealed { seq: r.seq, machine: String::new(), why });
            }
            return;
        }
        let name = self.name(r.machine);
        self.pending.push((r.seq, name));
        if r.seal.is_empty() {
            return;
        }
        match self.read(r) {
            Ok((first, key, signature)) => {
                // What the seal cannot cover whether or not it verifies is named now; the rest waits for it.
                let mut rows = Vec::with_capacity(self.pending.len());
                for (seq, machine) in std::mem::take(&mut self.pending) {
                    let why = if seq < first {
                        "no seal of its machine covers it".to_string()
                    } else if machine != name {
                        format!("it sits inside a transaction sealed by machine {}", r.machine)
                    } else {
                        rows.push(seq);
                        continue;
                    };
                    self.found.push(Unsealed { seq, machine: self.names[machine].clone(), why });
                }
                let message = message(r.machine, first, r.seq, r.hash);
                self.claims.push(Claim { machine: r.machine.to_string(), key, message, signature, rows });
                if self.claims.len() >= BATCH {
                    self.settle();
                }
            }
            // A seal that cannot be read as its machine's covers nothing: every row waiting is named.
            Err(why) => {
                self.found.push(Unsealed { seq: r.seq, machine: r.machine.to_string(), why });
                self.unseal_pending();
            }
        }
    }

    /// The index of machine `id` in `names` (rows of one machine come in long runs: the last one is tried first).
    fn name(&mut self, id: &str) -> usize {
        if let Some(last) = self.names.len().checked_sub(1).filter(|&i| self.names[i] == id) {
            return last;
        }
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        self.names.push(id.to_string());
        self.index.insert(id.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// A row's seal as its machine's: the first seq it covers, the key and the signature.
    fn read(&self, r: &SealedRow) -> Result<(i64, VerifyingKey, Signature), String> {
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
        let key = self.keys.get(r.machine).copied().flatten().ok_or_else(bad)?;
        let (first, sig) = r.seal.split_once(' ').ok_or_else(bad)?;
        let first: i64 = first.parse().map_err(|_| bad())?;
        if first > r.seq {
            return Err(bad());
        }
        let signature = hex::decode(sig).ok().and_then(|s| Signature::from_slice(&s).ok()).ok_or_else(bad)?;
        Ok((first, key, signature))
    }

    fn unseal_pending(&mut self) {
        for (seq, machine) in std::mem::take(&mut self.pending) {
            let machine = self.names[machine].clone();
            self.found.push(Unsealed { seq, machine, why: "no seal of its machine covers it".into() });
        }
    }

    /// Checks the gathered seals' signatures and names the rows they do not cover.
    fn settle(&mut self) {
        let claims = std::mem::take(&mut self.claims);
        let valid = verify_all(&claims);
        for claim in claims.into_iter().zip(valid).filter_map(|(claim, valid)| (!valid).then_some(claim)) {
            let why = format!("its seal does not verify with machine {}'s key", claim.machine);
            for seq in claim.rows {
                self.found.push(Unsealed { seq, machine: claim.machine.clone(), why: why.clone() });
            }
        }
    }

    /// Every row found unsealed, the rows still waiting for a seal included.
    pub fn finish(mut self) -> Vec<Unsealed> {
        self.settle();
        self.unseal_pending();
        self.found.sort_by_key(|u| u.seq);
        self.found.dedup_by_key(|u| u.seq);
        self.found
    }
}

/// Whether each claim's signature verifies: in chunks checked together, spread over the cores; a chunk that
/// fails together is checked one by one to tell which.
fn verify_all(claims: &[Claim]) -> Vec<bool> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(4);
    let per_thread = claims.len().div_ceil(threads).max(CHUNK);
    std::thread::scope(|scope| {
        let parts: Vec<_> = claims.chunks(per_thread).map(|part| scope.spawn(move || verify_part(part))).collect();
        // A thread that panicked verified nothing: its claims count as failed.
        let lengths: Vec<usize> = claims.chunks(per_thread).map(<[Claim]>::len).collect();
        parts.into_iter().zip(lengths).flat_map(|(p, n)| p.join().unwrap_or_else(|_| vec![false; n])).collect()
    })
}

fn verify_part(claims: &[Claim]) -> Vec<bool> {
    let mut out = Vec::with_capacity(claims.len());
    for chunk in claims.chunks(CHUNK) {
        let messages: Vec<&[u8]> = chunk.iter().map(|c| c.message.as_slice()).collect();
        let signatures: Vec<Signature> = chunk.iter().map(|c| c.signature).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|c| c.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            out.extend(std::iter::repeat_n(true, chunk.len()));
        } else {
            out.extend(chunk.iter().map(|c| c.key.verify(&c.message, &c.signature).is_ok()));
        }
    }
    out
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
    use super::super::machine::MachineKey;
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
        // A row naming A that B sealed, and a row with no machine at all.
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
        assert!(!check.knows(a.id()));
        check.asked_for(a.id());
        assert!(check.knows(a.id()), "a machine looked for once is not looked for again");
        check.row(&row(1, "h1", a.id(), &a.seal(1, 1, "h1")));
        assert!(check.finish()[0].why.contains("not registered"));
    }

    /// Many seals, checked in batches over several threads: one bad signature among thousands is found, and
    /// only it.
    #[test]
    fn one_forged_seal_among_thousands_is_found_and_only_it() {
        let a = MachineKey::ephemeral();
        let mut check = SealCheck::new(vec![machine(&a, 1)]);
        let hashes: Vec<String> = (1..=3000).map(|i| format!("h{i}")).collect();
        let seals: Vec<String> = (1..=3000)
            .map(|i: i64| if i == 1777 { a.seal(i, i, "other") } else { a.seal(i, i, &hashes[i as usize - 1]) })
            .collect();
        for i in 1..=3000usize {
            check.row(&row(i as i64, &hashes[i - 1], a.id(), &seals[i - 1]));
        }
        let found = check.finish();
        assert_eq!(found.iter().map(|u| u.seq).collect::<Vec<_>>(), vec![1777]);
        assert!(found[0].why.contains("does not verify"), "{found:?}");
    }
}
