//! The secret keys kept beside the log (the token-fingerprint key, the checkpoint signing key): 32 random
//! bytes in hex, mode 0600, made whole or not at all (tested through `fingerprint`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const KEY_BYTES: usize = 32;

/// Why a key beside the log could not be had; `what` names the key ("the token-fingerprint key").
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: Arc<std::io::Error> },
    #[error(
        "{what} {path} is damaged (it must hold {} hex digits); restore it from a backup of the log, or move it \
         away to start a new one (what the old key made will then no longer match)",
        KEY_BYTES * 2
    )]
    Damaged { what: &'static str, path: PathBuf },
    #[error("cannot create {what} {path}: {source}")]
    Create { what: &'static str, path: PathBuf, source: Arc<std::io::Error> },
    /// A team log's key, kept in its database.
    #[error("cannot read the team's {what}: {why}")]
    Team { what: &'static str, why: String },
}

/// The key at `path`, if one was made. `what` names it in errors ("the token-fingerprint key").
pub fn load(path: &Path, what: &'static str) -> Result<Option<[u8; KEY_BYTES]>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KeyError::Read { what, path: path.into(), source: Arc::new(e) }),
    };
    let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; KEY_BYTES]>::try_from(b).ok());
    bytes.map(Some).ok_or_else(|| KeyError::Damaged { what, path: path.into() })
}

/// The key at `path`, made on first use. It is written to a temporary file and hard-linked into place, so a
/// second process never reads a half-written key, and two processes racing end up with the same one.
pub fn load_or_create(path: &Path, what: &'static str) -> Result<[u8; KEY_BYTES], KeyError> {
    if let Some(key) = load(path, what)? {
        return Ok(key);
    }
    let create = |e: std::io::Error| KeyError::Create { what, path: path.into(), source: Arc::new(e) };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(create)?;
    }
    let key: [u8; KEY_BYTES] = rand::random();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, hex::encode(key).as_bytes(), true).map_err(create)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load(path, what)?.ok_or_else(|| create(e)),
        Err(e) => Err(create(e)),
    }
}

/// Writes a file readable by its owner only (0600 from its creation, never briefly wider) and syncs it to
/// disk. `new` refuses to overwrite an existing file.
pub fn write_private(path: &Path, bytes: &[u8], new: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
