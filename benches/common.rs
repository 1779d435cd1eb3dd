//! Helpers the benchmarks share.

/// The resource usage of finished children so far.
fn children_usage() -> libc::rusage {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer we pass and reads nothing from it.
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    }
}

/// The peak resident memory of finished children, in MiB (Linux reports KiB).
#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
pub fn children_peak_rss_mib() -> f64 {
    children_usage().ru_maxrss as f64 / 1024.0
}

/// The values of `names` from the environment, or from the `export NAME=…` lines a `tests/servers/start-*.sh`
/// script prints when it starts its server (`script` is relative to the repository).
#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
pub fn live_server(script: &str, names: &[&str]) -> Vec<String> {
    if let Ok(values) = names.iter().map(std::env::var).collect::<Result<Vec<_>, _>>() {
        return values;
    }
    let out = std::process::Command::new("bash")
        .arg(format!("{}/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg("start")
        .output()
        .expect("bash");
    assert!(out.status.success(), "{script} did not start its server: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |n: &str| {
        text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{n}="))).map(str::to_string).expect("env line")
    };
    names.iter().map(|n| field(n)).collect()
}

/// CPU time (user + system) of finished children so far, in seconds.
#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
pub fn children_cpu_secs() -> f64 {
    let usage = children_usage();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// What one measured process did: its output, wall time, peak resident memory and CPU time.
#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
pub struct Measured {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub elapsed: std::time::Duration,
    pub peak_rss_mib: f64,
    pub cpu_secs: f64,
}

/// Runs `cmd` to its end under `/usr/bin/time`, which forks it from a small process and reports its own peak
/// memory: a child forked straight from a bench holding a large sandbox would count the bench's pages as its
/// own (Linux keeps the high-water mark across exec).
#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
pub fn measure(cmd: &std::process::Command) -> Measured {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = std::process::Command::new("/usr/bin/time");
    timed.args(["-f", "%M %U %S", "-o"]).arg(report.path()).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    let started = std::time::Instant::now();
    let out = timed.output().expect("/usr/bin/time runs");
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    let fields: Vec<f64> =
        text.lines().last().unwrap_or_default().split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    Measured {
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        success: out.status.success(),
        elapsed,
        peak_rss_mib: field(0) / 1024.0,
        cpu_secs: field(1) + field(2),
    }
}
