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
