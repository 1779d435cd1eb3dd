//! Paths resolved to the files they name, and steward's own files guarded from what it writes for a script.
//!
//! A script names files to write (`write_csv`, a bulk job's `results`, `write_evidence`); a typo, a stock
//! script's `--arg out=…` or a symlink could name the audit log, a file kept beside it (its write-ahead log,
//! checkpoint, keys), its anchors or the config. Every such write opens its file through `create`, which
//! resolves the path (symlinks, dangling ones too, `..`, hard links by device and inode) and refuses those.

use parking_lot::RwLock;
use std::path::{Component, Path, PathBuf};

/// Steward's own files in this process: set once when the command's context is built (`keep`).
static OWN: RwLock<Option<OwnFiles>> = RwLock::new(None);

/// How many symlinks a path may pass through before it is taken as a loop (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The file a path names: symlinks followed (a dangling one to where it points, since creating the path would
/// create that), `.` and `..` resolved, relative to the working directory. A path whose directory does not
/// exist yet is made absolute as written.
pub fn real_path(path: &Path) -> PathBuf {
    let mut path = absolute(path);
    for _ in 0..MAX_LINKS {
        if let Ok(real) = std::fs::canonicalize(&path) {
            return real;
        }
        // Not there (yet): a link to nowhere is followed to its target, otherwise the directory is resolved.
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        match (is_link, std::fs::read_link(&path), path.parent()) {
            (true, Ok(target), Some(dir)) => path = normalise(&dir.join(target)),
            _ => break,
        }
    }
    match (path.parent().and_then(|d| std::fs::canonicalize(d).ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path,
    }
}

fn absolute(path: &Path) -> PathBuf {
    let joined = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()),
    };
    normalise(&joined)
}

/// `a/b/../c` as `a/c`, without touching the disk (a link's target is joined to its directory this way).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Steward's own files: what a script's output may not be written over.
#[derive(Clone, Debug, Default)]
pub struct OwnFiles {
    /// An audit log and everything named after it beside it (`-wal`, `-shm`, `.checkpoint`, `.key`, …).
    logs: Vec<PathBuf>,
    /// Directories that are steward's alone (its data and state directories: logs, anchors, history).
    dirs: Vec<PathBuf>,
    /// Single files (the config).
    files: Vec<PathBuf>,
}

impl OwnFiles {
    pub fn log(mut self, db: &Path) -> Self {
        self.logs.push(real_path(db));
        self
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.dirs.push(real_path(dir));
        self
    }

    pub fn file(mut self, file: &Path) -> Self {
        self.files.push(real_path(file));
        self
    }

    /// What `path` would overwrite of steward's, if anything: said so a person knows why it was refused.
    pub fn owner_of(&self, path: &Path) -> Option<String> {
        let real = real_path(path);
        if let Some(found) = self.by_name(&real) {
            return Some(found);
        }
        // Another name for an existing file (a hard link): the same device and inode as one of steward's.
        let meta = std::fs::metadata(&real).ok()?;
        use std::os::unix::fs::MetadataExt;
        let id = (meta.dev(), meta.ino());
        self.existing().into_iter().find(|f| std::fs::metadata(f).is_ok_and(|m| (m.dev(), m.ino()) == id)).map(|f| {
            let what = self.by_name(&f).unwrap_or_else(|| "one of steward's files".into());
            format!("{what} (by a hard link)")
        })
    }

    fn by_name(&self, real: &Path) -> Option<String> {
        use std::os::unix::ffi::OsStrExt;
        if let Some(log) = self.logs.iter().find(|log| {
            real.parent() == log.parent() && real.as_os_str().as_bytes().starts_with(log.as_os_str().as_bytes())
        }) {
            return Some(format!("the audit log {} or a file kept beside it", log.display()));
        }
        if let Some(dir) = self.dirs.iter().find(|d| real.starts_with(d)) {
            return Some(format!("inside steward's own directory {} (audit logs, anchors, keys)", dir.display()));
        }
        self.files.iter().find(|f| real == f.as_path()).map(|f| format!("steward's config {}", f.display()))
    }

    /// Every existing file of steward's (the directories' a few levels deep), for comparing inodes.
    fn existing(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = self.files.iter().filter(|f| f.is_file()).cloned().collect();
        for log in &self.logs {
            let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else { continue };
            use std::os::unix::ffi::OsStrExt;
            let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
            found.extend(entries.filter(|e| e.file_name().as_bytes().starts_with(name.as_bytes())).map(|e| e.path()));
        }
        let mut dirs: Vec<(PathBuf, usize)> = self.dirs.iter().map(|d| (d.clone(), 0)).collect();
        while let Some((dir, depth)) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                match entry.file_type() {
                    Ok(t) if t.is_dir() && depth < 3 => dirs.push((entry.path(), depth + 1)),
                    Ok(t) if t.is_file() => found.push(entry.path()),
                    _ => {}
                }
            }
        }
        found
    }
}

/// Sets steward's own files for this process: from now on `create` refuses them.
pub fn keep(own: OwnFiles) {
    *OWN.write() = Some(own);
}

/// Why `path` must not be written, if it is one of steward's own files.
pub fn refused(path: &Path) -> Option<std::io::Error> {
    let own = OWN.read();
    let what = own.as_ref()?.owner_of(path)?;
    Some(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("steward does not write over its own files: this is {what}; name another file"),
    ))
}

/// Creates (or truncates) a file a script asked for, unless it is one of steward's own.
pub fn create(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(e) = refused(path) {
        return Err(e);
    }
    let file = std::fs::File::create(path)?;
    created().lock().insert(real_path(path));
    Ok(file)
}

/// The files scripts in this process created, by their real paths.
fn created() -> &'static parking_lot::Mutex<std::collections::HashSet<PathBuf>> {
    static CREATED: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::OnceLock::new();
    CREATED.get_or_init(Default::default)
}

/// Whether a script in this process wrote the file at `real` (its own output, read back: not an input).
pub fn written_here(real: &Path) -> bool {
    created().lock().contains(real)
}

/// Why a file a script will write at `path` could not be written, found before it acts (an offboarding checks
/// where its evidence goes before its first change): one of steward's own files, a directory, a folder that is
/// not there or takes no new file.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    if let Some(e) = refused(path) {
        return Err(e);
    }
    if path.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory; name a file"));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the folder {} does not exist", parent.display()),
        ));
    }
    // Only a file made there proves a file can be made there (permissions, a read-only mount, ACLs).
    let probe = parent.join(format!(".steward-probe-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `path` with `tag` before its extension (`off.csv`, `run12` → `off-run12.csv`): a file of one run that no
/// other run writes over.
pub fn tagged(path: &Path, tag: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{tag}"),
    };
    path.with_file_name(name)
}

/// Writes a whole file a script asked for, unless it is one of steward's own.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(contents.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn a_run_tag_goes_before_the_extension_and_a_missing_folder_is_found_before_writing() {
        assert_eq!(tagged(Path::new("out/off.csv"), "run12"), PathBuf::from("out/off-run12.csv"));
        assert_eq!(tagged(Path::new("off-evidence"), "run3"), PathBuf::from("off-evidence-run3"));
        let d = dir();
        assert!(check_writable(&d.path().join("x.csv")).is_ok());
        assert!(check_writable(&d.path().join("no/such/x.csv")).unwrap_err().to_string().contains("does not exist"));
        assert!(check_writable(d.path()).is_err(), "a directory");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the probe is gone");
    }

    #[test]
    fn a_log_and_everything_beside_it_is_refused_by_any_spelling() {
        let d = dir();
        let db = d.path().join("audit.db");
        std::fs::write(&db, "log").unwrap();
        let own = OwnFiles::default().log(&db);
        for name in ["audit.db", "audit.db-wal", "audit.db.checkpoint", "audit.db.signing-key", "./x/../audit.db"] {
            let p = d.path().join(name);
            assert!(own.owner_of(&p).is_some_and(|w| w.contains("audit log")), "{name}");
        }
        // A symlink to it, and one to a file beside it that does not exist yet (creating would follow it).
        std::os::unix::fs::symlink(&db, d.path().join("link.csv")).unwrap();
        std::os::unix::fs::symlink(d.path().join("audit.db-shm"), d.path().join("dangling.csv")).unwrap();
        assert!(own.owner_of(&d.path().join("link.csv")).is_some());
        assert!(own.owner_of(&d.path().join("dangling.csv")).is_some());
        // A hard link elsewhere: the same inode.
        let elsewhere = dir();
        std::fs::hard_link(&db, elsewhere.path().join("report.csv")).unwrap();
        let hard = own.owner_of(&elsewhere.path().join("report.csv")).expect("refused");
        assert!(hard.contains("hard link"), "{hard}");
        // Files beside it with other names are the user's.
        for name in ["results.csv", "audit.csv", "leavers-audit.db.csv"] {
            assert_eq!(own.owner_of(&d.path().join(name)), None, "{name}");
        }
    }

    #[test]
    fn steward_directories_and_the_config_are_refused_but_not_their_neighbours() {
        let d = dir();
        let data = d.path().join("data/steward");
        std::fs::create_dir_all(data.join("team")).unwrap();
        let config = d.path().join("config.toml");
        std::fs::write(&config, "").unwrap();
        let own = OwnFiles::default().dir(&data).file(&config);
        assert!(own.owner_of(&data.join("history")).is_some());
        assert!(own.owner_of(&data.join("team/team-1.log.key")).is_some());
        assert!(own.owner_of(&config).is_some_and(|w| w.contains("config")));
        assert_eq!(own.owner_of(&d.path().join("data/report.csv")), None);
        assert_eq!(own.owner_of(&d.path().join("config.toml.csv")), None);
    }

    #[test]
    fn real_path_follows_links_to_nowhere_and_resolves_dots() {
        let d = dir();
        let real_dir = std::fs::canonicalize(d.path()).unwrap();
        std::os::unix::fs::symlink("sub/../target.csv", d.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
        assert_eq!(real_path(&d.path().join("b")), real_dir.join("target.csv"));
        // A loop ends, naming the path as it stood.
        std::os::unix::fs::symlink("loop2", d.path().join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", d.path().join("loop2")).unwrap();
        assert!(real_path(&d.path().join("loop1")).starts_with(&real_dir));
    }
}
