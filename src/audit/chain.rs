//! The hash chain, pure: a canonical byte encoding of an event and `hash = SHA-256(prev_hash ‖ encoding)`.
//!
//! The encoding length-prefixes every field in a fixed order, so no two different events share bytes
//! (unlike ad-hoc JSON, whose key order and escaping could vary between versions).

use sha2::{Digest, Sha256};

/// The hash the first event links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an event that the chain protects, in their canonical order.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Event {
    pub seq: i64,
    pub run_id: i64,
    pub ts: String,
    pub profile: String,
    pub kind: String,
    pub base_url: String,
    pub identity: String,
    pub op: String,
    pub target: String,
    pub params: String,
    pub mode: String,
    pub phase: String,
    pub intent_seq: Option<i64>,
    pub status: String,
    pub http_status: Option<i64>,
    pub error: String,
    pub duration_ms: Option<i64>,
    pub token_source: String,
    /// The acting token's keyed hash (see `fingerprint`); empty in rows older than fingerprints.
    pub token_fp: String,
    /// SHA-256 of the record of the run that made the event (`run_digest`); empty in older rows.
    pub run_digest: String,
    /// Not part of the record (the chain and exports leave it out): what a live intent claims until its outcome
    /// (`<profile> <name key>`), so that two processes sharing the log never send to one account at once.
    #[serde(skip)]
    pub claim: String,
    /// Where the event was first recorded, when `audit push` copied it from another log (empty otherwise):
    /// `<source log> <source run> <source seq> <source hash>`. Part of the record when set.
    pub origin: String,
    /// Not part of the record either: the log's head when the job read the target's state. Another run that
    /// acted on the same claim after it makes that reading stale, and the intent is refused (`Busy`).
    #[serde(skip)]
    pub read_at: Option<i64>,
}

impl Event {
    /// The bytes the chain hashes, each field length-prefixed, handed to `out` a piece at a time (a plan of a
    /// hundred thousand steps is hashed where it lies, not copied first).
    pub fn canonical_into(&self, out: &mut dyn FnMut(&[u8])) {
        let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        for field in [
            self.seq.to_string().as_str(),
            &self.run_id.to_string(),
            &self.ts,
            &self.profile,
            &self.kind,
            &self.base_url,
            &self.identity,
            &self.op,
            &self.target,
            &self.params,
            &self.mode,
            &self.phase,
            &opt(self.intent_seq),
            &self.status,
            &opt(self.http_status),
            &self.error,
            &opt(self.duration_ms),
            &self.token_source,
        ] {
            out(&(field.len() as u64).to_be_bytes());
            out(field.as_bytes());
        }
        // Appended only when set, so rows written before fingerprints and run digests keep their hashes. A digest
        // always follows a fingerprint field (empty or not), so the two can never be read as each other.
        let mut field = |f: &str| {
            out(&(f.len() as u64).to_be_bytes());
            out(f.as_bytes());
        };
        // An origin follows both (empty or not), as the digest follows the fingerprint.
        let origin = !self.origin.is_empty();
        if !self.token_fp.is_empty() || !self.run_digest.is_empty() || origin {
            field(&self.token_fp);
        }
        if !self.run_digest.is_empty() || origin {
            field(&self.run_digest);
        }
        if origin {
            field(&self.origin);
        }
    }
}

/// `SHA-256(prev_hash ‖ canonical(fields))`, hex-encoded.
pub fn link(prev_hash: &str, fields: &Event) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    fields.canonical_into(&mut |bytes| hasher.update(bytes));
    lower_hex(&hasher.finalize())
}

/// `bytes` in lower-case hex. Every row verified is hashed and compared as hex: the `hex` crate's encoder,
/// a character at a time, cost as much as the SHA-256 itself.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Where a stored chain stops being consistent.
#[derive(Clone, Debug, PartialEq)]
pub enum Break {
    /// The row's `prev_hash` is not the previous row's hash: a row before it was removed or altered.
    Unlinked { seq: i64 },
    /// The row's stored hash does not match its contents: the row was edited.
    Tampered { seq: i64 },
    /// The record of the run that made the row (who, where, which command) is not the one the row was bound to.
    RunEdited { seq: i64 },
}

impl Break {
    pub fn seq(&self) -> i64 {
        match self {
            Break::Unlinked { seq } | Break::Tampered { seq } | Break::RunEdited { seq } => *seq,
        }
    }
}

/// The digest that binds events to their run's record: SHA-256 over the length-prefixed fields, hex-encoded.
pub fn run_digest(fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for f in fields {
        hasher.update((f.len() as u64).to_be_bytes());
        hasher.update(f.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks one stored row against the hash of the row before it.
pub fn check(expected_prev: &str, stored_prev: &str, stored_hash: &str, fields: &Event) -> Result<(), Break> {
    if stored_prev != expected_prev {
        return Err(Break::Unlinked { seq: fields.seq });
    }
    if link(stored_prev, fields) != stored_hash {
        return Err(Break::Tampered { seq: fields.seq });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_hex_they_always_were() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
    }

    #[test]
    fn a_run_digest_is_covered_and_never_mistaken_for_a_fingerprint() {
        let e = Event { seq: 1, op: "suspend".into(), ..Default::default() };
        let bound = Event { run_digest: "ab".repeat(32), ..e.clone() };
        assert_ne!(link(GENESIS, &bound), link(GENESIS, &e), "the digest is covered by the chain");
        let as_fp = Event { token_fp: "x".into(), ..e.clone() };
        let as_digest = Event { run_digest: "x".into(), ..e.clone() };
        assert_ne!(link(GENESIS, &as_fp), link(GENESIS, &as_digest));
        assert_ne!(run_digest(&["a", "bc"]), run_digest(&["ab", "c"]), "fields are length-prefixed");
    }

    fn event(seq: i64, target: &str) -> Event {
        Event { seq, run_id: 1, op: "suspend".into(), target: target.into(), ..Default::default() }
    }

    #[test]
    fn the_encoding_of_existing_rows_never_changes() {
        // Frozen: a change here would make every stored log fail verification.
        let e = event(1, "bob");
        assert_eq!(link(GENESIS, &e), "d0ab4049626bed82533da5a6cb4f96f7b32cf507e80b96e359b4ebf4d9886cb4");
        let with_fp = Event { token_fp: "hmac-sha256:0011223344556677".into(), ..e.clone() };
        assert_ne!(link(GENESIS, &with_fp), link(GENESIS, &e), "the fingerprint is covered by the chain");
    }

    #[test]
    fn a_chain_of_honest_rows_verifies() {
        let mut prev = GENESIS.to_string();
        for seq in 1..=5 {
            let e = event(seq, "bob");
            let hash = link(&prev, &e);
            assert_eq!(check(&prev, &prev, &hash, &e), Ok(()));
            prev = hash;
        }
    }

    #[test]
    fn an_edited_field_is_caught() {
        let e = event(1, "bob");
        let hash = link(GENESIS, &e);
        assert_eq!(check(GENESIS, GENESIS, &hash, &event(1, "alice")), Err(Break::Tampered { seq: 1 }));
    }

    #[test]
    fn a_removed_row_is_caught_at_the_next_one() {
        let first = event(1, "a");
        let h1 = link(GENESIS, &first);
        let second = event(2, "b");
        let h2 = link(&h1, &second);
        // Row 2 is deleted; row 3 still points at it.
        let third = event(3, "c");
        let h3 = link(&h2, &third);
        assert_eq!(check(&h1, &h2, &h3, &third), Err(Break::Unlinked { seq: 3 }));
    }

    #[test]
    fn field_boundaries_matter() {
        let a = Event { op: "ab".into(), target: "c".into(), ..Default::default() };
        let b = Event { op: "a".into(), target: "bc".into(), ..Default::default() };
        assert_ne!(link(GENESIS, &a), link(GENESIS, &b));
    }

    #[test]
    fn absent_and_empty_numbers_differ_from_zero() {
        let a = Event { http_status: None, ..Default::default() };
        let b = Event { http_status: Some(0), ..Default::default() };
        assert_ne!(link(GENESIS, &a), link(GENESIS, &b));
    }
}
