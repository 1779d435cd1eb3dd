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

/// One `steward run` suspending users from a CSV against a sandbox of its own (the bulk and faults benches).
#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
pub mod suspend_job {
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
    const SCRIPT: &str = r#"
    let rows = read_csv(ARGS.csv);
    let opts = #{ reason: "benchmark", precheck: ARGS.precheck == "true" };
    let results = connect("ghes").suspend_all(rows, opts);
    let ok = results.filter(|r| r.status == "ok" || r.status == "noop").len();
    if ok != rows.len() { throw `only ${ok} of ${rows.len()} done: ${results.filter(|r| r.status == "failed")[0].error}`; }
    "#;

    pub struct Job<'a> {
        pub users: usize,
        pub latency_ms: u64,
        pub concurrency: usize,
        pub client_rate: Option<f64>,
        pub server_rate: Option<f64>,
        pub precheck: bool,
        pub audit: &'a str,
        /// The sandbox's faults (`--faults` syntax), empty for none.
        pub faults: &'a str,
        /// Another steward binary to run instead of this build's (a build from before a change, side by side).
        pub binary: Option<&'a str>,
    }

    impl Default for Job<'_> {
        /// 20 ms a request, concurrency 32, no limits, one request per user, a file log, no faults.
        fn default() -> Self {
            Job {
                users: 0,
                latency_ms: 20,
                concurrency: 32,
                client_rate: None,
                server_rate: None,
                precheck: false,
                audit: "file",
                faults: "",
                binary: None,
            }
        }
    }

    pub struct Outcome {
        pub elapsed: Duration,
        pub rate_limited: u64,
        pub requests: u64,
        /// The faults the sandbox served: request number, milliseconds since it started, fault name.
        pub faulted: Vec<(u64, u64, String)>,
        /// When the sandbox started, in Unix milliseconds (to place a fault's `at` on the wall clock).
        pub sandbox_started_ms: u64,
    }

    pub fn run(dir: &Path, job: &Job) -> Outcome {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let opts = steward_sandbox::Options {
            users: job.users,
            latency: Duration::from_millis(job.latency_ms),
            rate_limit: job.server_rate,
            faults: steward_sandbox::faults::Faults::parse(job.faults, 7).expect("faults"),
            ..Default::default()
        };
        let sandbox_started_ms = unix_ms();
        let sandbox = runtime.block_on(steward_sandbox::start(opts)).expect("sandbox");
        let mut config = format!(
            "max_changes = 1000000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = {}\n",
            sandbox.github_url(),
            job.concurrency
        );
        if let Some(r) = job.client_rate {
            config.push_str(&format!("rate_limit = {r}\n"));
        }
        std::fs::write(dir.join("config.toml"), config).expect("config");
        let mut csv = String::from("login\n");
        for i in 1..=job.users {
            csv.push_str(&format!("user{i:04}\n"));
        }
        std::fs::write(dir.join("users.csv"), csv).expect("csv");
        std::fs::write(dir.join("job.rhai"), SCRIPT).expect("script");
        let audit = if job.audit == ":memory:" {
            ":memory:".to_string()
        } else {
            dir.join(format!("audit-{}.db", rand_suffix())).display().to_string()
        };
        let started = Instant::now();
        let out = Command::new(job.binary.unwrap_or(STEWARD))
            .args(["--yes", "run"])
            .arg(dir.join("job.rhai"))
            .args([
                "--arg",
                &format!("csv={}", dir.join("users.csv").display()),
                "--arg",
                &format!("precheck={}", job.precheck),
            ])
            .env("STEWARD_CONFIG", dir.join("config.toml"))
            .env("STEWARD_AUDIT_DB", &audit)
            .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN)
            .env("HOME", dir)
            .output()
            .expect("steward runs");
        let elapsed = started.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let get = |path: &str| -> serde_json::Value {
            let url = format!("http://{}/_sandbox/{path}", sandbox.addr);
            runtime.block_on(async { reqwest::get(url).await?.json().await }).expect("sandbox answers")
        };
        let (stats, timeline) = (get("stats"), get("timeline"));
        Outcome {
            elapsed,
            rate_limited: stats["rate_limited"].as_u64().unwrap_or(0),
            requests: stats["total"].as_u64().unwrap_or(0),
            faulted: serde_json::from_value(timeline["faulted"].clone()).unwrap_or_default(),
            sandbox_started_ms,
        }
    }

    fn unix_ms() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    }
}

#[allow(dead_code)] // each benchmark binary uses a different subset of these helpers
/// One whole steward process in `dir` (its config.toml and audit log there), with the service's token: measured.
pub fn steward_in(dir: &std::path::Path, (token_env, token): (&str, &str), args: &[&str]) -> Measured {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.env(token_env, token)
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("STEWARD_AUDIT_DB", dir.join("audit.db"))
        .env("HOME", dir)
        .args(args);
    let m = measure(&cmd);
    assert!(m.success, "steward failed: {}", m.stderr);
    m
}
