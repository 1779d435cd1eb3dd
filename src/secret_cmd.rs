//! Running a command that prints a secret (`token_cmd`, `audit_password_cmd`): in a process group of its own,
//! read without waiting for an end of output a daemon may never give, stopped at the run's deadline (Ctrl-C,
//! `--timeout`, the cap, whichever comes first), and, however it ends, with every process it started killed:
//! its group, and any that left the group (`setsid`), found by a cookie in their environment (as Jenkins'
//! process-tree killer does).

use crate::interrupt::Interrupt;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a secret command may take (long enough to type a passphrase into a pinentry).
pub const CAP: Duration = Duration::from_secs(60);

/// A token is short: output past this is not read.
const MAX_OUTPUT: usize = 64 << 10;

/// Set in the command's environment; every process it starts inherits it unless it clears its environment.
const COOKIE_VAR: &str = "STEWARD_SECRET_CMD";

/// Why a secret command gave no secret; `key` is the setting that names the command (`token_cmd`, …).
#[derive(Debug, thiserror::Error)]
pub enum SecretCmdError {
    #[error("cannot run {key}: {source}")]
    Start { key: String, source: std::io::Error },
    #[error("{key}'s output could not be read: {source}")]
    Output { key: String, source: std::io::Error },
    #[error("{key} failed ({status}); run it by hand to see why")]
    Failed { key: String, status: std::process::ExitStatus },
    #[error("{key} printed non-UTF-8 bytes")]
    NotUtf8 { key: String },
    #[error("{key} was stopped (with its children): {reason}")]
    Stopped { key: String, reason: String },
    #[error("{key} did not finish within {secs} s and was stopped (with its children); run it by hand to see why")]
    TimedOut { key: String, secs: u64 },
}

/// Runs `cmd` with `sh -c` and returns what it printed on stdout. `key` names it in errors.
pub fn run(key: &str, cmd: &str, cap: Duration, stop: &Interrupt) -> Result<String, SecretCmdError> {
    let key_ = || key.to_string();
    let output = |source| SecretCmdError::Output { key: key_(), source };
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let cookie = format!("{}-{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env(COOKIE_VAR, &cookie)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|source| SecretCmdError::Start { key: key_(), source })?;
    let mut running = Running { child, cookie };
    let mut stdout = running.child.stdout.take().ok_or_else(|| output(std::io::ErrorKind::BrokenPipe.into()))?;
    set_nonblocking(&stdout).map_err(output)?;
    let deadline = Instant::now() + cap;
    let mut out = Vec::new();
    loop {
        // Whether it has ended, asked before reading: all it wrote before ending is then in the pipe.
        let ended = running.child.try_wait().map_err(output)?;
        drain(&mut stdout, &mut out).map_err(output)?;
        if let Some(status) = ended {
            if !status.success() {
                return Err(SecretCmdError::Failed { key: key_(), status });
            }
            return String::from_utf8(out).map_err(|_| SecretCmdError::NotUtf8 { key: key_() });
        }
        if stop.is_raised() {
            return Err(SecretCmdError::Stopped { key: key_(), reason: stop.reason().to_string() });
        }
        if Instant::now() >= deadline {
            return Err(SecretCmdError::TimedOut { key: key_(), secs: cap.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The command and its cookie; dropping it kills all it started and reaps it.
struct Running {
    child: Child,
    cookie: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: killpg only sends a signal; the group is the one `run` made for the command.
        unsafe { libc::killpg(group, libc::SIGKILL) };
        // Twice: one found the first time may have started another before it was killed.
        for _ in 0..2 {
            for pid in holders_of(&self.cookie) {
                // SAFETY: kill only sends a signal, to a process that carries this command's cookie.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = self.child.wait();
    }
}

/// Processes (of this user: others' environments cannot be read) whose environment holds `cookie`.
fn holders_of(cookie: &str) -> Vec<libc::pid_t> {
    let needle = format!("{COOKIE_VAR}={cookie}\0");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id() as libc::pid_t;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

fn set_nonblocking(pipe: &impl AsRawFd) -> std::io::Result<()> {
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a descriptor this process owns, reading then setting its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads what the pipe holds now (up to `MAX_OUTPUT` in all), without waiting for more or for its end.
fn drain(pipe: &mut impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n.min(MAX_OUTPUT.saturating_sub(out.len()))]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Interrupt {
        Interrupt::default()
    }

    #[test]
    fn a_hanging_command_is_stopped_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let cmd = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let started = Instant::now();
        let e = run("token_cmd", &cmd, Duration::from_millis(500), &never()).unwrap_err();
        assert!(matches!(e, SecretCmdError::TimedOut { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("did not finish within 0 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!alive(&std::fs::read_to_string(&pid_file).unwrap()), "the child outlived token_cmd");
    }

    #[test]
    fn a_child_left_behind_neither_lingers_nor_holds_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let cmd = format!("sleep 300 & echo $! > {}; echo tok3n-value", pid_file.display());
        let started = Instant::now();
        assert_eq!(run("token_cmd", &cmd, Duration::from_secs(30), &never()).unwrap().trim(), "tok3n-value");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!alive(&std::fs::read_to_string(&pid_file).unwrap()), "the child outlived token_cmd");
    }

    /// A daemon in a session of its own (out of the group) holding the output open: the token is read when the
    /// command ends, and the daemon is found by its cookie and killed.
    #[test]
    fn a_daemon_that_left_the_group_holding_the_output_is_killed_and_does_not_hang_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("daemon.pid");
        let cmd = format!("setsid sleep 300 & echo $! > {}; sleep 0.2; echo tok3n-value", pid_file.display());
        let started = Instant::now();
        assert_eq!(run("token_cmd", &cmd, Duration::from_secs(30), &never()).unwrap().trim(), "tok3n-value");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(!alive(&std::fs::read_to_string(&pid_file).unwrap()), "the daemon outlived token_cmd");
    }

    /// Ctrl-C and `--timeout` raise the run's interrupt: the command stops at once, not at the cap.
    #[test]
    fn the_runs_stop_ends_the_command_before_its_cap() {
        let stop = Interrupt::default();
        let raiser = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            raiser.stop("stopped: the script ran longer than --timeout 3 s".into());
        });
        let started = Instant::now();
        let e = run("token_cmd", "sleep 300", CAP, &stop).unwrap_err();
        assert!(matches!(e, SecretCmdError::Stopped { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("--timeout 3 s") && e.contains("token_cmd was stopped"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_failing_command_and_endless_output_are_errors_or_cut() {
        assert!(matches!(run("token_cmd", "exit 3", CAP, &never()), Err(SecretCmdError::Failed { .. })));
        let out = run("token_cmd", "head -c 1000000 /dev/zero | tr '\\0' a", CAP, &never()).unwrap();
        assert_eq!(out.len(), MAX_OUTPUT);
    }

    /// Running (a zombie waiting for its reaper counts as gone).
    fn alive(pid: &str) -> bool {
        let pid = pid.trim();
        for _ in 0..100 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat) if !stat.contains(") Z ") => std::thread::sleep(Duration::from_millis(20)),
                _ => return false,
            }
        }
        true
    }
}
