//! Bulk benchmarks (`cargo bench --bench bulk`): suspending 10,000 users from a CSV against the sandbox with
//! 20 ms per request, at concurrency 32 and 1; and 1,000 suspensions under a server-side limit of 50 req/s.
//! Each figure is the whole `steward run` process: start-up, CSV, plan, requests and audit.

#[path = "common.rs"]
mod common;
use common::children_peak_rss_mib;

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

struct Job<'a> {
    users: usize,
    latency_ms: u64,
    concurrency: usize,
    client_rate: Option<f64>,
    server_rate: Option<f64>,
    precheck: bool,
    audit: &'a str,
}

struct Outcome {
    elapsed: Duration,
    rate_limited: u64,
    requests: u64,
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::args().any(|a| a == "unconfigured") {
        return unconfigured_rate(dir.path());
    }
    let n = 10_000;
    let bound = Duration::from_secs_f64(n as f64 * 0.020 / 32.0);
    println!(
        "suspend {n} users, 20 ms per request, concurrency 32: physical bound N*L/C = {:.2} s",
        bound.as_secs_f64()
    );
    for precheck in [false, true] {
        let file = run(
            dir.path(),
            &Job {
                users: n,
                latency_ms: 20,
                concurrency: 32,
                client_rate: None,
                server_rate: None,
                precheck,
                audit: "file",
            },
        );
        let memory = run(
            dir.path(),
            &Job {
                users: n,
                latency_ms: 20,
                concurrency: 32,
                client_rate: None,
                server_rate: None,
                precheck,
                audit: ":memory:",
            },
        );
        let requests_per_user = file.requests as f64 / n as f64;
        println!(
            "  precheck={precheck}: {:.2} s = {:.2}x the bound ({requests_per_user:.1} requests per user; bound for that many: {:.2} s = {:.2}x); audit cost {:+.2} s (in-memory log: {:.2} s); peak RSS {:.1} MiB",
            file.elapsed.as_secs_f64(),
            file.elapsed.as_secs_f64() / bound.as_secs_f64(),
            bound.as_secs_f64() * requests_per_user,
            file.elapsed.as_secs_f64() / (bound.as_secs_f64() * requests_per_user),
            file.elapsed.as_secs_f64() - memory.elapsed.as_secs_f64(),
            memory.elapsed.as_secs_f64(),
            children_peak_rss_mib(),
        );
    }
    // Concurrency 1 is how a shell loop over curl or `gh api` works; 500 users keep it short.
    let serial_n = 500;
    let serial = run(
        dir.path(),
        &Job {
            users: serial_n,
            latency_ms: 20,
            concurrency: 1,
            client_rate: None,
            server_rate: None,
            precheck: false,
            audit: "file",
        },
    );
    let parallel = run(
        dir.path(),
        &Job {
            users: serial_n,
            latency_ms: 20,
            concurrency: 32,
            client_rate: None,
            server_rate: None,
            precheck: false,
            audit: "file",
        },
    );
    println!(
        "suspend {serial_n} users (precheck=false): concurrency 1 {:.2} s, concurrency 32 {:.2} s: {:.1}x faster",
        serial.elapsed.as_secs_f64(),
        parallel.elapsed.as_secs_f64(),
        serial.elapsed.as_secs_f64() / parallel.elapsed.as_secs_f64()
    );
    let limited_n = 1_000;
    let target = limited_n as f64 / 50.0 + 1.0;
    for precheck in [false, true] {
        let limited = run(
            dir.path(),
            &Job {
                users: limited_n,
                latency_ms: 20,
                concurrency: 4,
                client_rate: Some(50.0),
                server_rate: Some(50.0),
                precheck,
                audit: "file",
            },
        );
        println!(
            "suspend {limited_n} users, server limit 50 req/s, client rate_limit 50, concurrency 4, precheck={precheck}: {:.2} s ({:.2}x of N/R + 1 s = {target:.0} s for one request per user; {} requests); 429 answers: {}",
            limited.elapsed.as_secs_f64(),
            limited.elapsed.as_secs_f64() / target,
            limited.requests,
            limited.rate_limited
        );
    }
    unconfigured_rate(dir.path());
}

/// The same job with no `rate_limit` in the profile: steward learns the server's rate from its 429s.
fn unconfigured_rate(dir: &Path) {
    let (n, rate) = (1_000, 50.0);
    for precheck in [false, true] {
        let job = Job {
            users: n,
            latency_ms: 20,
            concurrency: 4,
            client_rate: None,
            server_rate: Some(rate),
            precheck,
            audit: "file",
        };
        let out = run(dir, &job);
        let accepted = out.requests - out.rate_limited;
        let achieved = accepted as f64 / out.elapsed.as_secs_f64();
        println!(
            "suspend {n} users, server limit {rate} req/s, no client rate_limit, concurrency 4, precheck={precheck}: \
             {:.2} s; {} requests, 429 answers {} ({:.2} %); accepted {achieved:.1} req/s = {:.0} % of the limit",
            out.elapsed.as_secs_f64(),
            out.requests,
            out.rate_limited,
            100.0 * out.rate_limited as f64 / out.requests as f64,
            100.0 * achieved / rate
        );
    }
}

fn run(dir: &Path, job: &Job) -> Outcome {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let opts = steward_sandbox::Options {
        users: job.users,
        latency: Duration::from_millis(job.latency_ms),
        rate_limit: job.server_rate,
        ..Default::default()
    };
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
    let out = Command::new(STEWARD)
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
    let stats: serde_json::Value = runtime
        .block_on(async { reqwest::get(format!("http://{}/_sandbox/stats", sandbox.addr)).await?.json().await })
        .expect("stats");
    Outcome {
        elapsed,
        rate_limited: stats["rate_limited"].as_u64().unwrap_or(0),
        requests: stats["total"].as_u64().unwrap_or(0),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
