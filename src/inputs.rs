//! The files a run's script reads (CSV inputs, imported modules), pinned by their SHA-256. Each digest goes into
//! the audit log before the first event after the read (so before any change that could rest on the file); a
//! resume compares every file its job recorded and refuses when one differs, and a file read during a resume
//! must still be the one the job read. A file the script wrote itself in this process is its own output, not an
//! input.

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// A file a resumed job reads is not a file the job read then.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InputChanged {
    #[error(
        "{path} changed since the job read it (sha256 then {then}, now {now}): a resume must read the same inputs; put the file back, or start a new run for the new file"
    )]
    Changed { path: String, then: String, now: String },
    /// Read by this resume, never by the job: another file under a name the job used (a link pointed elsewhere,
    /// another working directory), or a file the job stopped before reading.
    #[error(
        "{path} was not read by the job this run resumes (a path that now leads to another file, another working directory, or a file the job never reached): a resume acts only on what the job read; start a new run"
    )]
    NotRead { path: String },
    /// Replaced between the reading that pinned it and the reading of its rows.
    #[error("{path} changed while steward read it (sha256 {then} when checked, {now} when its rows were read); run again once nothing writes to it")]
    ChangedWhileRead { path: String, then: String, now: String },
}

#[derive(Default)]
struct Pins {
    /// Real path → digest, as this run read it.
    read: HashMap<String, String>,
    /// Read, and not yet in the audit log.
    unrecorded: Vec<(String, String)>,
    /// What the job's earlier runs read, when this run resumes one.
    expected: Option<HashMap<String, String>>,
}

fn pins() -> &'static Mutex<Pins> {
    static PINS: std::sync::OnceLock<Mutex<Pins>> = std::sync::OnceLock::new();
    PINS.get_or_init(Mutex::default)
}

/// The SHA-256 of the file at `path`, read as a stream.
pub fn digest_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A reader that computes the SHA-256 of what passes through it.
pub struct Digesting<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> Digesting<R> {
    pub fn new(inner: R) -> Self {
        Digesting { inner, hasher: Sha256::new() }
    }

    /// The digest of everything read, in hex.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: std::io::Read> std::io::Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The script read the file at `path`, whose content has digest `sha256`: pinned for this run, and checked
/// against what the job read if this run resumes one.
pub fn read(path: &Path, sha256: &str) -> Result<(), InputChanged> {
    pins().lock().read(path, sha256)
}

/// The files read since the last call, for the audit log.
pub fn take_unrecorded() -> Vec<(String, String)> {
    std::mem::take(&mut pins().lock().unrecorded)
}

/// This run resumes a job that read `recorded` (real path, digest; the later of two for one path wins): each must
/// be the same file now, and every file this run reads must be one of them, unchanged.
pub fn expect(recorded: Vec<(String, String)>) -> Result<(), InputChanged> {
    pins().lock().expect(recorded)
}

impl Pins {
    fn read(&mut self, path: &Path, sha256: &str) -> Result<(), InputChanged> {
        let real = crate::files::real_path(path);
        // What the script wrote itself and reads back is its own output, written again by a resume.
        if crate::files::written_here(&real) {
            return Ok(());
        }
        let real = real.display().to_string();
        if let Some(expected) = &self.expected {
            match expected.get(&real) {
                None => return Err(InputChanged::NotRead { path: real }),
                Some(then) if then != sha256 => {
                    return Err(InputChanged::Changed { path: real, then: then.clone(), now: sha256.to_string() })
                }
                Some(_) => {}
            }
        }
        if self.read.get(&real).map(String::as_str) != Some(sha256) {
            self.read.insert(real.clone(), sha256.to_string());
            self.unrecorded.push((real, sha256.to_string()));
        }
        Ok(())
    }

    fn expect(&mut self, recorded: Vec<(String, String)>) -> Result<(), InputChanged> {
        let expected: HashMap<String, String> = recorded.into_iter().collect();
        // A job that pinned nothing was stopped before its first change (the pins go with it): it acted on
        // nothing it read, so there is nothing to hold the resume to, as with a fresh run.
        if expected.is_empty() {
            return Ok(());
        }
        for (path, then) in &expected {
            let now = digest_file(Path::new(path)).unwrap_or_else(|e| format!("unreadable: {e}"));
            if &now != then {
                return Err(InputChanged::Changed { path: path.clone(), then: then.clone(), now });
            }
        }
        self.expected = Some(expected);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_pinned_once_and_a_changed_one_refused_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pinned-leavers.csv");
        std::fs::write(&file, "login\nann\n").unwrap();
        let sha = digest_file(&file).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(b"login\nann\n")));
        // A process's own pins, so no other test's reads are checked against them.
        let mut pins = Pins::default();
        pins.read(&file, &sha).unwrap();
        pins.read(&file, &sha).unwrap();
        let real = crate::files::real_path(&file).display().to_string();
        assert_eq!(std::mem::take(&mut pins.unrecorded), vec![(real.clone(), sha.clone())], "recorded once");
        pins.expect(vec![(real.clone(), sha.clone())]).unwrap();
        std::fs::write(&file, "login\nann\nbob\n").unwrap();
        let e = pins.expect(vec![(real.clone(), sha.clone())]).unwrap_err();
        assert!(e.to_string().contains(&real) && e.to_string().contains(&sha), "{e}");
        let now = digest_file(&file).unwrap();
        assert!(pins.read(&file, &now).unwrap_err().to_string().contains(&now));
        // A file the job never read is refused too (a link now pointing elsewhere reads another real path).
        let other = dir.path().join("other.csv");
        std::fs::write(&other, "login\nmallory\n").unwrap();
        let e = pins.read(&other, &digest_file(&other).unwrap()).unwrap_err();
        assert!(matches!(e, InputChanged::NotRead { .. }), "{e}");
    }

    #[test]
    fn a_job_stopped_before_its_first_change_holds_its_resume_to_nothing() {
        // Found by the random-kill test: killed after a read was recorded but before the first intent (which
        // carries the pins), the resume refused the very CSV the job was started with.
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("job.csv");
        std::fs::write(&csv, "login\nann\n").unwrap();
        let mut pins = Pins::default();
        pins.expect(Vec::new()).unwrap();
        assert!(pins.read(&csv, &digest_file(&csv).unwrap()).is_ok());
    }
}
