//! The secret keys kept beside the log (the token-fingerprint key, the checkpoint signing key): 32 random
//! bytes in hex, mode 0600, made whole or not at all (tested through `fingerprint`).

use std::path::Path;

pub const KEY_BYTES: usize = 32;

/// The key at `path`, if one was made. `what` names it in errors ("the token-fingerprint key").
pub fn load(path: &Path, what: &str) -> Result<Option<[u8; KEY_BYTES]>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {what} {}: {e}", path.display())),
    };
    let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; KEY_BYTES]>::try_from(b).ok());
    bytes.map(Some).ok_or_else(|| {
        format!(
            "{what} {} is damaged (it must hold {} hex digits); restore it from a backup of the log, or move it \
             away to start a new one (what the old key made will then no longer match)",
            path.display(),
            KEY_BYTES * 2
        )
    })
}

/// The key at `path`, made on first use. It is written to a temporary file and hard-linked into place, so a
/// second process never reads a half-written key, and two processes racing end up with the same one.
pub fn load_or_create(path: &Path, what: &str) -> Result<[u8; KEY_BYTES], String> {
    if let Some(key) = load(path, what)? {
        return Ok(key);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key: [u8; KEY_BYTES] = rand::random();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    write_private(&tmp, hex::encode(key).as_bytes(), true)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load(path, what)?.ok_or_else(|| format!("{what} {} vanished", path.display()))
        }
        Err(e) => Err(format!("cannot create {what} {}: {e}", path.display())),
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
