//! Synapse benchmark (`cargo bench --bench synapse`): `suspend_all` of 1,000 users at concurrency 8 on a live
//! Synapse, next to a minimal keep-alive HTTP client with 8 connections doing the same PUTs in the same run;
//! then a walk of every user on the server, next to a minimal client following `next_token`.
//! Needs the server: SYNAPSE_BASE_URL/SYNAPSE_ADMIN_TOKEN, or it is started with tests/servers/start-synapse.sh.

#[path = "common.rs"]
mod common;

use futures::stream::{self, StreamExt};
use std::process::Command;
use std::time::{Duration, Instant};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
const N: usize = 1000;
const C: usize = 8;

fn main() {
    let (url, token) = server();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::builder().pool_max_idle_per_host(C).build().expect("client");
    let prefix = format!("bench{}x", std::process::id());
    let ids: Vec<String> = (0..N).map(|i| format!("@{prefix}{i}:localhost")).collect();
    rt.block_on(each(&client, &ids, |c, id| {
        c.put(format!("{url}/_synapse/admin/v2/users/{id}"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"displayname": "Bench"}))
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.toml"),
        format!("max_changes = 100000\n[profiles.m]\nkind = \"synapse\"\nurl = \"{url}\"\ntoken_env = \"SYNAPSE_TOKEN\"\nconcurrency = {C}\n"),
    )
    .expect("config");
    std::fs::write(dir.path().join("ids.csv"), format!("login\n{}\n", ids.join("\n"))).expect("csv");
    std::fs::write(
        dir.path().join("job.rhai"),
        r#"let r = connect("m").suspend_all(read_csv(ARGS.csv), #{reason: "bench", precheck: ARGS.precheck == "true"});
           if r.filter(|x| x.status == "ok").len() != r.len() { throw "not all ok"; }"#,
    )
    .expect("script");

    let suspend = |on: bool| {
        let (url, token, client, ids) = (&url, &token, &client, &ids);
        rt.block_on(each(client, ids, move |c, id| {
            c.put(format!("{url}/_synapse/admin/v1/suspend/{id}"))
                .bearer_auth(token)
                .json(&serde_json::json!({"suspend": on}))
        }))
    };
    let minimal = suspend(true);
    suspend(false);
    let steward_fast = steward(dir.path(), &token, false, false);
    suspend(false);
    let steward_memory = steward(dir.path(), &token, false, true);
    suspend(false);
    let steward_checked = steward(dir.path(), &token, true, false);
    suspend(false);
    let minimal_again = suspend(true);
    suspend(false);
    let best_minimal = minimal.min(minimal_again);
    println!("suspend {N} users on a live Synapse, concurrency {C}:");
    println!(
        "  minimal keep-alive client (reqwest, {C} connections): {:.2} s and {:.2} s ({:.0}/s)",
        minimal.as_secs_f64(),
        minimal_again.as_secs_f64(),
        N as f64 / best_minimal.as_secs_f64()
    );
    println!(
        "  steward run, precheck=false (one PUT per user, audit on disk): {:.2} s = {:.2}x the minimal client",
        steward_fast.as_secs_f64(),
        steward_fast.as_secs_f64() / best_minimal.as_secs_f64()
    );
    println!(
        "  same with the audit log in memory: {:.2} s, so the durable audit costs {:+.2} s",
        steward_memory.as_secs_f64(),
        steward_fast.as_secs_f64() - steward_memory.as_secs_f64()
    );
    println!(
        "  steward run, default precheck (a GET of each user, then the PUT): {:.2} s = {:.2}x",
        steward_checked.as_secs_f64(),
        steward_checked.as_secs_f64() / best_minimal.as_secs_f64()
    );
    // Walking every user on the server (each run of this bench leaves its 1,000): a minimal client following
    // `next_token` a page at a time, next to `for u in h.users()`, alternating.
    for round in 0..2 {
        let (users, minimal) = rt.block_on(walk_minimal(&client, &url, &token));
        let (walked, took) = steward_walk(dir.path(), &token);
        assert_eq!(walked, users, "steward walked as many users as the server listed");
        println!(
            "walk {users} users, round {round}: minimal client page by page {:.2} s; steward users() {:.2} s = {:.2}x",
            minimal.as_secs_f64(),
            took.as_secs_f64(),
            took.as_secs_f64() / minimal.as_secs_f64()
        );
    }
}

/// GETs every page of the user listing (100 a page, as steward asks) following `next_token`; parses only that.
async fn walk_minimal(client: &reqwest::Client, url: &str, token: &str) -> (usize, Duration) {
    let started = Instant::now();
    let (mut users, mut from) = (0, Some("0".to_string()));
    while let Some(at) = from.take() {
        let page: serde_json::Value = client
            .get(format!("{url}/_synapse/admin/v2/users?from={at}&limit=100&guests=false"))
            .bearer_auth(token)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("JSON");
        users += page["users"].as_array().map_or(0, Vec::len);
        from = page["next_token"].as_str().map(str::to_string);
    }
    (users, started.elapsed())
}

/// `for u in connect("m").users() { n += 1 }` as a whole process: how many users, and how long.
fn steward_walk(dir: &std::path::Path, token: &str) -> (usize, Duration) {
    let started = Instant::now();
    let out = Command::new(STEWARD)
        .args(["--audit-db", ":memory:", "eval", r#"let n = 0; for u in connect("m").users() { n += 1; } n"#])
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("SYNAPSE_TOKEN", token)
        .env("HOME", dir)
        .output()
        .expect("steward runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0), started.elapsed())
}

/// Runs one request per id, `C` at a time, and returns how long it took; every answer must be 2xx.
async fn each(
    client: &reqwest::Client,
    ids: &[String],
    request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Duration {
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(ids)
        .map(|id| {
            let req = request(client, id);
            async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(C)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "a request failed: {:?}",
        statuses.iter().find(|s| !(200..300).contains(*s))
    );
    started.elapsed()
}

fn steward(dir: &std::path::Path, token: &str, precheck: bool, audit_in_memory: bool) -> Duration {
    let audit = if audit_in_memory {
        ":memory:".into()
    } else {
        dir.join(format!("audit-{precheck}.db")).display().to_string()
    };
    let started = Instant::now();
    let out = Command::new(STEWARD)
        .args(["--yes", "run"])
        .arg(dir.join("job.rhai"))
        .args(["--arg", &format!("csv={}", dir.join("ids.csv").display()), "--arg", &format!("precheck={precheck}")])
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("STEWARD_AUDIT_DB", audit)
        .env("SYNAPSE_TOKEN", token)
        .env("HOME", dir)
        .output()
        .expect("steward runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

fn server() -> (String, String) {
    let mut values =
        common::live_server("tests/servers/start-synapse.sh", &["SYNAPSE_BASE_URL", "SYNAPSE_ADMIN_TOKEN"]).into_iter();
    (values.next().unwrap_or_default(), values.next().unwrap_or_default())
}
