//! Ed25519 signatures on checkpoints, as C2SP signed notes (c2sp.org/signed-note): a text, a blank line, and
//! `— <key name> base64(key ID || signature)`. The signing key is kept beside the log (`audit.db.signing-key`,
//! 0600); its public half (`steward audit key`) lets anyone holding a copy of a checkpoint, from syslog say,
//! tell a real one from a forged one without being able to make one.

use super::keyfile::{self, KeyError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The signature type byte C2SP assigns to Ed25519.
const ED25519: u8 = 0x01;
const WHAT: &str = "the checkpoint signing key";

pub fn key_path(db: &Path) -> PathBuf {
    super::beside(db, ".signing-key")
}

/// Signs checkpoints of one log.
pub struct NoteSigner {
    key: SigningKey,
    verifier: NoteVerifier,
}

impl NoteSigner {
    fn from_seed(seed: [u8; keyfile::KEY_BYTES]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let verifier = NoteVerifier::new(key.verifying_key());
        NoteSigner { key, verifier }
    }

    #[cfg(test)]
    fn named(seed: [u8; keyfile::KEY_BYTES], name: &str) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let verifier = NoteVerifier::named(name.to_string(), key.verifying_key());
        NoteSigner { key, verifier }
    }

    /// The log's signing key, made with its first checkpoint.
    pub fn load_or_create(db: &Path) -> Result<Self, KeyError> {
        keyfile::load_or_create(&key_path(db), WHAT).map(Self::from_seed)
    }

    pub fn load(db: &Path) -> Result<Option<Self>, KeyError> {
        Ok(keyfile::load(&key_path(db), WHAT)?.map(Self::from_seed))
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// `text` (which must end in a newline) as a signed note.
    pub fn sign(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.verifier.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{text}\n— {} {}\n", self.verifier.name, BASE64.encode(blob))
    }
}

/// The public half: checks notes, and is shown as a C2SP verifier key `name+keyid+base64(0x01 || key)`.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Each key names itself after its own ID, so two logs' keys never share a name.
    fn new(key: VerifyingKey) -> Self {
        let name = format!("steward-audit/{}", hex::encode(key_id("steward-audit", &key)));
        Self::named(name, key)
    }

    fn named(name: String, key: VerifyingKey) -> Self {
        NoteVerifier { id: key_id(&name, &key), name, key }
    }

    pub fn parse(vkey: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{vkey:?} is not a steward verifier key ({why}); `steward audit key` prints one");
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("it has the form NAME+KEYID+KEY"));
        };
        let key = BASE64.decode(key).map_err(|_| bad("its key is not base64"))?;
        let key = match key.split_first() {
            Some((&ED25519, rest)) => <[u8; 32]>::try_from(rest).map_err(|_| bad("its key is not 32 bytes"))?,
            _ => return Err(bad("its key is not Ed25519")),
        };
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("its key is not a valid Ed25519 point"))?;
        let expected = key_id(name, &key);
        if hex::encode(expected) != id {
            return Err(bad("its key ID does not match its key"));
        }
        Ok(NoteVerifier { name: name.to_string(), id: expected, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn encode(&self) -> String {
        let mut blob = vec![ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), BASE64.encode(blob))
    }

    /// The text of `note` if this key signed it; otherwise why not.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, String> {
        let Some(split) = note.rfind("\n\n") else { return Err("it is not a signed note".into()) };
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let mut ours = signatures.lines().filter_map(|line| {
            let rest = line.strip_prefix("— ")?;
            let (name, sig) = rest.split_once(' ')?;
            let blob = BASE64.decode(sig).ok()?;
            (name == self.name && blob.len() == 68 && blob[..4] == self.id).then_some(blob)
        });
        let Some(blob) = ours.next() else { return Err(format!("it carries no signature by {}", self.name)) };
        let signature = Signature::from_slice(&blob[4..]).map_err(|e| e.to_string())?;
        self.key
            .verify(text.as_bytes(), &signature)
            .map(|()| text)
            .map_err(|_| format!("its signature by {} does not verify: its text was changed", self.name))
    }
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::from_seed([seed; 32])
    }

    #[test]
    fn a_signed_note_opens_with_its_key_and_with_no_other() {
        let s = signer(1);
        let note = s.sign("origin\n42\nhash\n");
        assert!(note.starts_with("origin\n42\nhash\n\n— steward-audit/"), "{note}");
        assert_eq!(s.verifier().open(&note), Ok("origin\n42\nhash\n"));
        let other = signer(2);
        assert!(other.verifier().open(&note).unwrap_err().contains("no signature by"));
        let forged = note.replacen("\n42\n", "\n43\n", 1);
        assert!(s.verifier().open(&forged).unwrap_err().contains("does not verify"));
        assert!(s.verifier().open("origin\n42\n").is_err());
    }

    #[test]
    fn the_verifier_key_round_trips_and_a_wrong_one_is_refused() {
        let v = signer(3).verifier().clone();
        let text = v.encode();
        assert!(text.starts_with("steward-audit/") && text.matches('+').count() == 2, "{text}");
        let back = NoteVerifier::parse(&text).unwrap();
        assert_eq!(back.encode(), text);
        let note = signer(3).sign("t\n");
        assert_eq!(back.open(&note), Ok("t\n"));
        let tampered = text.replace("steward-audit/", "steward-audit/x");
        assert!(NoteVerifier::parse(&tampered).unwrap_err().contains("key ID does not match"));
        assert!(NoteVerifier::parse("nonsense").unwrap_err().contains("steward audit key"));
    }

    /// The example of Go's golang.org/x/mod/sumdb/note, the reference implementation of signed notes: the
    /// same private key and text give the same verifier key and, Ed25519 being deterministic, the same note.
    #[test]
    fn notes_match_the_reference_implementation_byte_for_byte() {
        let skey = BASE64.decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz").unwrap();
        let seed: [u8; 32] = skey[1..].try_into().unwrap();
        let signer = NoteSigner::named(seed, "PeterNeumann");
        assert_eq!(signer.verifier().encode(), "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        assert_eq!(
            signer.sign(text),
            format!(
                "{text}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            )
        );
    }
}
