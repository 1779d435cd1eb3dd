//! Which runs of an audit log are alive right now, across processes: each process holds a lock on one byte of
//! `<audit db>.runs.lock` per run it is (the byte at the run's id), and a resume also on its job's first run.
//! The kernel drops a dead process's locks, so a lock held means a process is still at work, with no pid files
//! to go stale and no file per run. Locks belong to the open file (Linux OFD locks), so one process never trips
//! over its own; elsewhere the POSIX per-process locks are used, which is the same here because the file is
//! opened once per process and never closed early.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

#[derive(Debug)]
pub struct RunLocks {
    file: File,
}

#[cfg(target_os = "linux")]
const SET: libc::c_int = libc::F_OFD_SETLK;
#[cfg(target_os = "linux")]
const GET: libc::c_int = libc::F_OFD_GETLK;
#[cfg(not(target_os = "linux"))]
const SET: libc::c_int = libc::F_SETLK;
#[cfg(not(target_os = "linux"))]
const GET: libc::c_int = libc::F_GETLK;

impl RunLocks {
    /// The lock file beside the audit log `db`.
    pub fn path(db: &Path) -> std::path::PathBuf {
        super::beside(db, ".runs.lock")
    }

    /// Opens the lock file for reading who is alive, without making it: no file means no process ever ran here.
    pub fn open_existing(db: &Path) -> io::Result<Option<RunLocks>> {
        match Self::path(db).exists() {
            true => Self::open(db).map(Some),
            false => Ok(None),
        }
    }

    /// Opens (making it if needed) the lock file beside the audit log `db`.
    pub fn open(db: &Path) -> io::Result<RunLocks> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(Self::path(db))?;
        Ok(RunLocks { file })
    }

    /// Takes the lock of `run` for as long as this process lives; `false` when another process holds it.
    pub fn hold(&self, run: i64) -> io::Result<bool> {
        let mut lock = byte(run, libc::F_WRLCK);
        match self.fcntl(SET, &mut lock) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether another process holds the lock of `run` (is running it, or resuming its job) right now.
    pub fn held_elsewhere(&self, run: i64) -> io::Result<bool> {
        let mut lock = byte(run, libc::F_WRLCK);
        self.fcntl(GET, &mut lock)?;
        Ok(i32::from(lock.l_type) != libc::F_UNLCK)
    }

    fn fcntl(&self, cmd: libc::c_int, lock: &mut libc::flock) -> io::Result<()> {
        // SAFETY: the descriptor is open for the life of `self`, and `lock` is a valid, initialised flock.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, lock as *mut libc::flock) };
        match rc {
            -1 => Err(io::Error::last_os_error()),
            _ => Ok(()),
        }
    }
}

/// The one-byte range standing for `run`.
fn byte(run: i64, kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (and l_pid must be 0 for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = run as _;
    lock.l_len = 1;
    lock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_run_held_by_one_opening_is_seen_from_another_and_released_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("audit.db");
        let (a, b) = (RunLocks::open(&db).expect("open"), RunLocks::open(&db).expect("open"));
        assert!(a.hold(7).expect("lock"));
        assert!(a.hold(7).expect("lock again"), "its own lock never stands in its way");
        assert!(!a.held_elsewhere(7).expect("query"));
        assert!(b.held_elsewhere(7).expect("query"));
        assert!(!b.held_elsewhere(8).expect("query"), "one byte per run");
        assert!(!b.hold(7).expect("lock"));
        drop(a);
        assert!(!b.held_elsewhere(7).expect("query"));
        assert!(b.hold(7).expect("lock"));
    }
}
