//! Deprovisioning benchmark (`cargo bench --bench deprovision`): 200 people on each of the sandbox's four services
//! (GHES, Terraform Enterprise, TransactionLink, Travis), every request answered after 20 ms, then the evidence
//! report. Run side by side with 0 ms latency, so the difference is time spent waiting on servers and the rest is
//! steward's own (start-up, Rhai, planning, audit, report). Figures are the whole `steward run` process.

#[path = "common.rs"]
mod common;
use common::children_peak_rss_mib;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
const PEOPLE: usize = 200;
const CONCURRENCY: usize = 8;

const SCRIPT: &str = r#"
let n = parse_int(ARGS.n);
let opts = #{ reason: "benchmark" };
let names = #{
    ghes: (1..=n).map(|i| `user${if i < 10 { "000" } else if i < 100 { "00" } else { "0" }}${i}`),
    tfe: (1..=n).map(|i| `tfuser${if i < 10 { "000" } else if i < 100 { "00" } else { "0" }}${i}@example.com`),
    tl: (1..=n).map(|i| `tluser${if i < 10 { "000" } else if i < 100 { "00" } else { "0" }}${i}@example.com`),
    travis: (1..=n).map(|i| `${i}`),
};
let reports = [];
for p in ["ghes", "tfe", "tl", "travis"] {
    reports += connect(p).deprovision_all(names[p], opts);
}
write_evidence(reports, ARGS.out);
let bad = reports.filter(|r| r.status == "failed" || r.status == "partial");
if bad.len() > 0 { throw `${bad.len()} not done: ${bad[0].person} on ${bad[0].profile}: ${bad[0].problems}`; }
print(`${reports.filter(|r| r.status == "done").len()} done`);
"#;

struct Outcome {
    elapsed: Duration,
    requests: u64,
    changes: u64,
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "deprovision {PEOPLE} people on each of 4 sandbox services (GHES, Terraform, TransactionLink, Travis), concurrency {CONCURRENCY}, then the evidence report"
    );
    let waiting = run(dir.path(), 20);
    let own = run(dir.path(), 0);
    let per_person = waiting.requests as f64 / PEOPLE as f64;
    let wait = waiting.elapsed.saturating_sub(own.elapsed);
    println!(
        "  20 ms latency: {:.2} s; 0 ms latency: {:.2} s; {} requests ({per_person:.1} per person across the 4 services, {} of them changes)",
        waiting.elapsed.as_secs_f64(),
        own.elapsed.as_secs_f64(),
        waiting.requests,
        waiting.changes,
    );
    println!(
        "  share of the 20 ms run spent waiting on servers: {:.0} % ({:.2} s); in steward itself: {:.0} % ({:.2} s); peak RSS {:.1} MiB",
        100.0 * wait.as_secs_f64() / waiting.elapsed.as_secs_f64(),
        wait.as_secs_f64(),
        100.0 * own.elapsed.as_secs_f64() / waiting.elapsed.as_secs_f64(),
        own.elapsed.as_secs_f64(),
        children_peak_rss_mib(),
    );
}

fn run(dir: &Path, latency_ms: u64) -> Outcome {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let opts = steward_sandbox::Options {
        users: PEOPLE + 50,
        latency: Duration::from_millis(latency_ms),
        ..Default::default()
    };
    let sandbox = runtime.block_on(steward_sandbox::start(opts)).expect("sandbox");
    let config = format!(
        "max_changes = 1000000\n\
         [profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.tl]\nkind = \"transactionlink\"\nurl = \"{}\"\ntoken_env = \"TL_TOKEN\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.travis]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\nconcurrency = {CONCURRENCY}\n",
        sandbox.github_url(),
        sandbox.terraform_url(),
        sandbox.transactionlink_url(),
        sandbox.travis_url(),
        steward_sandbox::travis_tokens::ORG_ID,
    );
    std::fs::write(dir.join("config.toml"), config).expect("config");
    std::fs::write(dir.join("job.rhai"), SCRIPT).expect("script");
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    let started = Instant::now();
    let out = Command::new(STEWARD)
        .args(["--yes", "run"])
        .arg(dir.join("job.rhai"))
        .args(["--arg", &format!("n={PEOPLE}"), "--arg"])
        .arg(format!("out={}", dir.join(format!("evidence-{latency_ms}")).display()))
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("STEWARD_AUDIT_DB", dir.join(format!("audit-{latency_ms}.db")))
        .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN)
        .env("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN)
        .env("TL_TOKEN", steward_sandbox::transactionlink_tokens::ADMIN_TOKEN)
        .env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN))
        .env("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN))
        .env("HOME", dir)
        .output()
        .expect("steward runs");
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = runtime
        .block_on(async { reqwest::get(format!("http://{}/_sandbox/stats", sandbox.addr)).await?.json().await })
        .expect("stats");
    let changes = stats["requests"]
        .as_object()
        .map(|r| r.iter().filter(|(k, _)| !k.starts_with("GET ")).filter_map(|(_, v)| v.as_u64()).sum())
        .unwrap_or(0);
    Outcome { elapsed, requests: stats["total"].as_u64().unwrap_or(0), changes }
}
