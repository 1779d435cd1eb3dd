//! Token fingerprints: the audit log says which token acted by a keyed hash, never by the token.
//!
//! The key (32 random bytes, `audit.db.key`, mode 0600) sits beside the log. A plain hash of a token could be
//! tested against guessed or leaked tokens by anyone holding an export; a keyed one only by someone holding
//! the key, who is asked to prove it with `steward audit fingerprint` (as Vault does with `/sys/audit-hash`).
//!
//! A team log keeps one key for the whole team in its database (`steward_keys`), so a token has one fingerprint
//! whichever machine used it; a machine's own key file from before is still consulted when looking a token up.

use super::keyfile::{self, KeyError, KEY_BYTES};
use super::AuditTarget;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const WHAT: &str = "the token-fingerprint key";
/// Eight bytes of the HMAC: enough to tell a handful of admin tokens apart, too short to be worth guessing at.
const FINGERPRINT_BYTES: usize = 8;

pub fn key_path(db: &Path) -> PathBuf {
    super::beside(db, ".key")
}

pub struct FingerprintKey([u8; KEY_BYTES]);

impl FingerprintKey {
    pub fn random() -> Self {
        FingerprintKey(rand::random())
    }

    /// `hmac-sha256:` and the first eight bytes of HMAC-SHA256(key, token), in hex.
    pub fn fingerprint(&self, token: &SecretString) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(token.expose_secret().as_bytes());
        format!("hmac-sha256:{}", hex::encode(&mac.finalize().into_bytes()[..FINGERPRINT_BYTES]))
    }

    /// The key of the log at `db`, made on first use.
    pub fn load_or_create(db: &Path) -> Result<Self, KeyError> {
        keyfile::load_or_create(&key_path(db), WHAT).map(FingerprintKey)
    }

    /// The key of the log at `db`, if one was made.
    pub fn load(db: &Path) -> Result<Option<Self>, KeyError> {
        Ok(keyfile::load(&key_path(db), WHAT)?.map(FingerprintKey))
    }

    /// The key `target`'s events are fingerprinted under: the team's for a team log, else the file's.
    pub fn of_log(target: &AuditTarget) -> Result<Self, KeyError> {
        match target {
            AuditTarget::Postgres(pg) => super::team::shared_key(pg, "token_fingerprint")
                .map(FingerprintKey)
                .map_err(|e| KeyError::Team { what: "token-fingerprint key", why: e.to_string() }),
            AuditTarget::File(path) => Self::load_or_create(path),
            AuditTarget::Memory => Ok(Self::random()),
        }
    }
}

/// The key of one audit log, loaded when the first token needs a fingerprint.
pub struct Fingerprints {
    target: AuditTarget,
    key: OnceLock<Result<FingerprintKey, KeyError>>,
}

impl Fingerprints {
    pub fn new(target: AuditTarget) -> Self {
        Fingerprints { target, key: OnceLock::new() }
    }

    pub fn of(&self, token: &SecretString) -> Result<String, KeyError> {
        let key = self.key.get_or_init(|| FingerprintKey::of_log(&self.target));
        key.as_ref().map(|k| k.fingerprint(token)).map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn one_key_gives_one_fingerprint_per_token_and_never_the_token() {
        let key = FingerprintKey([7; KEY_BYTES]);
        let a = key.fingerprint(&secret("ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert_eq!(a, key.fingerprint(&secret("ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")));
        assert_ne!(a, key.fingerprint(&secret("ghp_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")));
        assert_ne!(a, FingerprintKey([8; KEY_BYTES]).fingerprint(&secret("ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")));
        assert!(a.starts_with("hmac-sha256:") && a.len() == "hmac-sha256:".len() + 16, "{a}");
        assert!(!a.contains("ghp_"));
    }

    #[test]
    fn the_key_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("audit.db");
        let first = FingerprintKey::load_or_create(&db).unwrap().fingerprint(&secret("t"));
        let second = FingerprintKey::load_or_create(&db).unwrap().fingerprint(&secret("t"));
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(&db)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(db.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the key file remains");
    }

    #[test]
    fn a_damaged_key_is_named_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        std::fs::write(key_path(&db), "not hex").unwrap();
        let err = FingerprintKey::load_or_create(&db).err().unwrap();
        assert!(matches!(err, KeyError::Damaged { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("audit.db.key") && err.contains("damaged"), "{err}");
        assert_eq!(std::fs::read_to_string(key_path(&db)).unwrap(), "not hex");
    }
}
