//! Policy planning at scale (`cargo bench --bench policy`, issue 37): a policy over the sandbox's GHES with
//! `STEWARD_BENCH_USERS` accounts (default 1,000,000), whose activity is the all-users report. Side by side in
//! one run: a minimal client fetching and parsing the same report (the floor), steward listing that activity
//! (`activity(#{status: "all"}).len()`), and steward planning the policy (`policy plan`, recorded in the audit
//! log, the changes written as CSV). Then the same over Travis (`STEWARD_BENCH_TRAVIS_USERS`, default 100,000),
//! whose activity is two paged listings. Each steward figure is one whole process (wall, peak RSS, CPU).

#[path = "common.rs"]
mod common;
use common::{steward_in, Measured};

use std::time::Instant;

fn main() {
    let users: usize = std::env::var("STEWARD_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let t = Instant::now();
    let running = runtime
        .block_on(steward_sandbox::start(steward_sandbox::Options { users, ..Default::default() }))
        .expect("sandbox starts");
    println!("sandbox of {users} users ready in {:.1} s", t.elapsed().as_secs_f64());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "script_memory_mb = 16384\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 600\n",
            running.github_url()
        ),
    )
    .expect("config");
    let policy = dir.path().join("dormant.toml");
    std::fs::write(&policy, "profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 180\n[guard]\nmax_share = 1.0\nmin_admins = 0\n")
        .expect("policy");

    let floor = minimal_client(&runtime, &format!("http://{}", running.addr));
    let steward = |args: &[&str]| steward_in(dir.path(), ("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN), args);
    let listing = steward(&["--format", "json", "eval", r#"connect("ghes").activity(#{status: "all"}).len()"#]);
    let plan = steward(&["--format", "csv", "policy", "plan", policy.to_str().expect("utf-8 path")]);
    let heading = format!("{users} accounts");
    side_by_side(&heading, ("minimal client: fetch + parse the report", floor), &listing, &plan);
    drop(running);
    travis(&runtime);
}

/// The same over Travis (`STEWARD_BENCH_TRAVIS_USERS`, default 100,000 members): its two activity listings,
/// 100 members a page, read a page at a time into the plan (the profile's rate limit raised past the sandbox's
/// pace: Travis's default of 5 requests a second would be the whole measure). Side by side: a minimal client walking the same
/// pages, steward listing that activity, steward planning.
fn travis(runtime: &tokio::runtime::Runtime) {
    let users: usize = std::env::var("STEWARD_BENCH_TRAVIS_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let running = runtime
        .block_on(steward_sandbox::start(steward_sandbox::Options { users, ..Default::default() }))
        .expect("sandbox starts");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "script_memory_mb = 16384\n[profiles.travis]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\ntimeout = 600\nrate_limit = 10000\n",
            running.travis_url(),
            steward_sandbox::travis_tokens::ORG_ID
        ),
    )
    .expect("config");
    let policy = dir.path().join("dormant.toml");
    std::fs::write(&policy, "profiles = [\"travis\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 180\n[guard]\nmax_share = 1.0\nmin_admins = 0\n")
        .expect("policy");
    let token = steward_sandbox::travis_tokens::ACTIVITY_TOKEN;
    let floor = travis_minimal_client(runtime, &running.travis_url(), token);
    let secret = token.split_once(':').map(|(_, s)| s).unwrap_or(token);
    let steward = |args: &[&str]| steward_in(dir.path(), ("TRAVIS_ACTIVITY", secret), args);
    let listing = steward(&[
        "--format",
        "json",
        "eval",
        r#"connect("travis").activity(#{since: "2000-01-01", status: "all"}).len()"#,
    ]);
    let plan = steward(&["--format", "csv", "policy", "plan", policy.to_str().expect("utf-8 path")]);
    let heading = format!("Travis: {users} members ({} listed)", listing.stdout.trim());
    side_by_side(&heading, ("minimal client: every page of both lists", floor), &listing, &plan);
}

/// The figures of one service, side by side: the floor, the listing, the plan, and their ratios.
fn side_by_side(heading: &str, (floor_name, floor): (&str, f64), listing: &Measured, plan: &Measured) {
    let steps = plan.stdout.lines().count().saturating_sub(1);
    println!("\n{heading}; the plan suspends {steps}");
    println!("{:<44} {:>9} {:>10} {:>8}", "", "wall s", "peak MiB", "CPU s");
    println!("{floor_name:<44} {floor:>9.2} {:>10} {:>8}", "-", "-");
    for (name, m) in [("steward: activity listing", listing), ("steward: policy plan (recorded, CSV out)", plan)] {
        println!("{name:<44} {:>9.2} {:>10.0} {:>8.2}", m.elapsed.as_secs_f64(), m.peak_rss_mib, m.cpu_secs);
    }
    println!(
        "plan / listing: {:.2}x wall; plan / minimal client: {:.2}x",
        plan.elapsed.as_secs_f64() / listing.elapsed.as_secs_f64(),
        plan.elapsed.as_secs_f64() / floor
    );
}

/// Every page of Travis's active and inactive lists, one after another, parsed: seconds.
fn travis_minimal_client(runtime: &tokio::runtime::Runtime, root: &str, token: &str) -> f64 {
    let t = Instant::now();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        for status in ["active", "inactive"] {
            let mut offset = 0;
            loop {
                let url = format!(
                    "{root}/org/{}/user_activity?date=2000-01-01&status={status}&limit=100&offset={offset}",
                    steward_sandbox::travis_tokens::ORG_ID
                );
                let page: serde_json::Value = client
                    .get(&url)
                    .header("authorization", format!("org.token {token}"))
                    .header("travis-api-version", "3")
                    .send()
                    .await
                    .expect("page")
                    .json()
                    .await
                    .expect("json");
                if page["@pagination"]["is_last"].as_bool() != Some(false) {
                    break;
                }
                offset += 100;
            }
        }
    });
    t.elapsed().as_secs_f64()
}

/// The same report a minimal client fetches (Basic auth, asking again while it is generated) and parses: seconds.
fn minimal_client(runtime: &tokio::runtime::Runtime, root: &str) -> f64 {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", steward_sandbox::ADMIN_TOKEN));
    let url = format!("{root}/stafftools/reports/all_users.csv");
    // Once to have the report made (GHES answers 202 the first time), then timed.
    let fetch = || {
        runtime.block_on(async {
            loop {
                let resp = reqwest::Client::new()
                    .get(&url)
                    .header("authorization", format!("Basic {basic}"))
                    .send()
                    .await
                    .expect("report");
                if resp.status().as_u16() == 202 {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                return resp.bytes().await.expect("body");
            }
        })
    };
    fetch();
    let t = Instant::now();
    let body = fetch();
    let mut reader = csv::Reader::from_reader(&body[..]);
    let rows = reader.records().filter(|r| r.is_ok()).count();
    assert!(rows > 0);
    t.elapsed().as_secs_f64()
}
