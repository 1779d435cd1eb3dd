//! Deprovisioning benchmark (`cargo bench --bench deprovision`): 200 people on each of the sandbox's four services
//! (GHES, Terraform Enterprise, TransactionLink, Travis), every request answered after 20 ms, then the evidence
//! report: one profile after another, and every profile at once (as offboard.rhai does), side by side, with
//! steward's own CPU time against the wall time (the rest is waiting on servers and on the services' default rate
//! budgets, whose floor is printed). Figures are the whole `steward run` process.

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
let names = #{ ghes: [], tfe: [], tl: [], travis: [] };
for i in 1..=n {
    let num = if i < 10 { `000${i}` } else if i < 100 { `00${i}` } else { `0${i}` };
    names.ghes.push(`user${num}`);
    names.tfe.push(`tfuser${num}@example.com`);
    names.tl.push(`tluser${num}@example.com`);
    names.travis.push(`${i}`);
}
let reports = [];
if ARGS.mode == "everywhere" {
    // One list of everybody, every profile at once (what offboard.rhai does).
    reports = deprovision_everywhere(names.ghes + names.tfe + names.tl + names.travis, opts);
} else {
    for p in ["ghes", "tfe", "tl", "travis"] {
        reports += connect(p).deprovision_all(names[p], opts);
    }
}
write_evidence(reports, ARGS.out);
let counts = #{};
for r in reports { counts[r.status] = (counts[r.status] ?? 0) + 1; }
print(json(counts));
"#;

struct Outcome {
    elapsed: Duration,
    /// steward's own CPU time (user + system).
    cpu: f64,
    requests: u64,
    changes: u64,
    /// Seconds the services' default rate budgets alone need for these requests (TFE 20/s, TransactionLink
    /// 10/s, Travis 5/s; GHES has none).
    budget_floor: f64,
    /// People per status, as the script printed them.
    counts: String,
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "deprovision {PEOPLE} people on each of 4 sandbox services (GHES, Terraform, TransactionLink, Travis), concurrency {CONCURRENCY}, then the evidence report"
    );
    for (mode, latency_ms, what) in [
        ("each", 20, "one profile after another (deprovision_all per profile)"),
        ("everywhere", 20, "every profile at once (deprovision_everywhere, one list of all 800 names)"),
        ("everywhere", 0, "the same with 0 ms latency"),
    ] {
        let o = run(dir.path(), mode, latency_ms);
        println!(
            "  {what}, {latency_ms} ms: {:.2} s wall; {} requests ({:.1} per person), {} of them changes; rate-budget floor {:.1} s; steward CPU {:.2} s ({:.0} % of the wall time, the rest waiting on servers and budgets)",
            o.elapsed.as_secs_f64(),
            o.requests,
            o.requests as f64 / (4 * PEOPLE) as f64,
            o.changes,
            o.budget_floor,
            o.cpu,
            100.0 * o.cpu / o.elapsed.as_secs_f64(),
        );
        println!("    outcomes: {}", o.counts);
    }
    println!("  peak RSS {:.1} MiB", children_peak_rss_mib());
}

fn run(dir: &Path, mode: &str, latency_ms: u64) -> Outcome {
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
    let (started, cpu_before) = (Instant::now(), common::children_cpu_secs());
    let out = Command::new(STEWARD)
        .args(["--yes", "run"])
        .arg(dir.join("job.rhai"))
        .args(["--arg", &format!("n={PEOPLE}"), "--arg", &format!("mode={mode}"), "--arg"])
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
    let (elapsed, cpu) = (started.elapsed(), common::children_cpu_secs() - cpu_before);
    // Exit code 3: some people were left partly done (the sandbox's organization owner cannot be terminated).
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));
    let counts = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<String>();
    let stats: serde_json::Value = runtime
        .block_on(async { reqwest::get(format!("http://{}/_sandbox/stats", sandbox.addr)).await?.json().await })
        .expect("stats");
    let changes = stats["requests"]
        .as_object()
        .map(|r| r.iter().filter(|(k, _)| !k.starts_with("GET ")).filter_map(|(_, v)| v.as_u64()).sum())
        .unwrap_or(0);
    let served = |prefix: &str| -> f64 {
        stats["requests"]
            .as_object()
            .map(|r| r.iter().filter(|(k, _)| k.split(' ').nth(1).is_some_and(|p| p.starts_with(prefix))))
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_u64())
            .sum::<u64>() as f64
    };
    let budget_floor = served("/api/v2") / 20.0 + served("/transactionlink") / 10.0 + served("/travis") / 5.0;
    Outcome { elapsed, cpu, requests: stats["total"].as_u64().unwrap_or(0), changes, budget_floor, counts }
}
