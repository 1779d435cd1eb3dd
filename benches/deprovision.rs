//! Offboarding benchmark (`cargo bench --bench deprovision`): 1,000 people on six services at once, as an admin
//! runs it: `scripts/offboard.rhai` over an HR CSV (half the people by email, half by GHES login), each person
//! holding accounts under other names on the sandbox's GHES, Terraform Enterprise, TransactionLink and Travis
//! (every request answered after 20 ms, the services' default rate budgets), on a live SCIM server (scim2-server,
//! PATCH, /Bulk, ETags) and on a live Synapse. The wall time is set against the services' rate bound: the
//! seconds their budgets alone need for the requests they served (Terraform 20 req/s, TransactionLink 10/s,
//! Travis 5/s; GHES, SCIM and Synapse announce none). `STEWARD_BENCH_PEOPLE=N` runs fewer.
//! Needs SCIM_BASE_URL/SCIM_TOKEN and SYNAPSE_BASE_URL/SYNAPSE_ADMIN_TOKEN, or starts the servers with
//! tests/servers/start-scim.sh and start-synapse.sh.

#[path = "common.rs"]
mod common;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
const CONCURRENCY: usize = 8;

/// Who holds what (as in the end-to-end test): everyone on GHES and SCIM; Terraform the even ones,
/// TransactionLink all but every third, Travis the odd ones (by GHES login), Synapse all but every fourth.
fn holds(i: usize) -> [bool; 4] {
    [i.is_multiple_of(2), !i.is_multiple_of(3), !i.is_multiple_of(2), i % 4 != 3]
}

fn main() {
    let people: usize = std::env::var("STEWARD_BENCH_PEOPLE").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let mut scim = common::live_server("tests/servers/start-scim.sh", &["SCIM_BASE_URL", "SCIM_TOKEN"]).into_iter();
    let (scim_url, scim_token) = (scim.next().unwrap_or_default(), scim.next().unwrap_or_default());
    let mut matrix =
        common::live_server("tests/servers/start-synapse.sh", &["SYNAPSE_BASE_URL", "SYNAPSE_ADMIN_TOKEN"]).into_iter();
    let (matrix_url, matrix_token) = (matrix.next().unwrap_or_default(), matrix.next().unwrap_or_default());
    let tag = format!("bo{}x{}", std::process::id(), Instant::now().elapsed().subsec_nanos());
    let email = |i: usize| format!("{tag}.{i}@corp.example");
    let login = |i: usize| format!("{tag}-{i}");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox_people: Vec<steward_sandbox::Person> = (0..people)
        .map(|i| {
            let [tfe, tl, travis, _] = holds(i);
            steward_sandbox::Person {
                ghes: Some(login(i)),
                email: Some(email(i)),
                tfe: tfe.then(|| format!("tf-{}", login(i))),
                tl: tl.then(|| email(i)),
                travis,
                admin: i.is_multiple_of(10),
            }
        })
        .collect();
    let opts = steward_sandbox::Options {
        users: 10,
        latency: Duration::from_millis(20),
        people: sandbox_people,
        ..Default::default()
    };
    let sandbox = runtime.block_on(steward_sandbox::start(opts)).expect("sandbox");
    let tenant = format!("{scim_url}/{tag}");
    let client = reqwest::Client::new();
    let seeding = Instant::now();
    runtime.block_on(seed_scim(&client, &tenant, &scim_token, people, &email));
    runtime.block_on(seed_matrix(&client, &matrix_url, &matrix_token, people, &tag, &email));
    println!(
        "offboard {people} people on 6 services (sandbox GHES, Terraform, TransactionLink, Travis at 20 ms; live SCIM and Synapse), concurrency {CONCURRENCY}; seeding took {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "max_changes = 1000000\n\
         [profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.tl]\nkind = \"transactionlink\"\nurl = \"{}\"\ntoken_env = \"TL_TOKEN\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.travis]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.scim]\nkind = \"scim\"\nurl = \"{tenant}\"\ntoken_env = \"SCIM_TOKEN\"\nadmin_group = \"admins\"\nidentity = \"root\"\nconcurrency = {CONCURRENCY}\n\
         [profiles.matrix]\nkind = \"synapse\"\nurl = \"{matrix_url}\"\ntoken_env = \"SYNAPSE_TOKEN\"\nprotected = [\"admin\"]\nconcurrency = {CONCURRENCY}\n",
        sandbox.github_url(),
        sandbox.terraform_url(),
        sandbox.transactionlink_url(),
        sandbox.travis_url(),
        steward_sandbox::travis_tokens::ORG_ID,
    );
    std::fs::write(dir.path().join("config.toml"), config).expect("config");
    let mut csv = String::from("email,login\n");
    for i in 0..people {
        match i % 2 {
            0 => csv.push_str(&format!("{},\n", email(i))),
            _ => csv.push_str(&format!(",{}\n", login(i))),
        }
    }
    std::fs::write(dir.path().join("leavers.csv"), csv).expect("csv");

    let (started, cpu_before) = (Instant::now(), common::children_cpu_secs());
    let out = offboard(dir.path(), &scim_token, &matrix_token);
    let (elapsed, cpu) = (started.elapsed(), common::children_cpu_secs() - cpu_before);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", String::from_utf8_lossy(&out.stderr));

    let stats: Value = runtime
        .block_on(async { reqwest::get(format!("http://{}/_sandbox/stats", sandbox.addr)).await?.json().await })
        .expect("stats");
    let served = |prefix: &str| -> u64 {
        stats["requests"]
            .as_object()
            .map(|r| r.iter().filter(|(k, _)| k.split(' ').nth(1).is_some_and(|p| p.starts_with(prefix))))
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };
    let (tfe, tl, travis) = (served("/api/v2"), served("/transactionlink"), served("/travis"));
    let floors = [tfe as f64 / 20.0, tl as f64 / 10.0, travis as f64 / 5.0];
    // The services are offboarded concurrently: the bound is the slowest service's budget, not their sum.
    let bound = floors.iter().cloned().fold(0.0, f64::max);
    let accounts: usize = (0..people).map(|i| 2 + holds(i).iter().filter(|h| **h).count()).sum();
    println!(
        "  wall {:.1} s = {:.2}x the rate bound ({bound:.1} s: TransactionLink {tl} requests / 10 per s; Terraform {tfe} / 20 = {:.1} s; Travis {travis} / 5 = {:.1} s)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / bound,
        floors[0],
        floors[2],
    );
    println!(
        "  {people} people, {accounts} accounts; sandbox requests {} (GHES {}); steward CPU {:.1} s ({:.0} % of the wall); peak RSS {:.0} MiB",
        stats["total"].as_u64().unwrap_or(0),
        served("/api/v3"),
        cpu,
        100.0 * cpu / elapsed.as_secs_f64(),
        common::children_peak_rss_mib()
    );
    println!("  outcomes per account: {}", outcomes(dir.path()));
}

fn offboard(dir: &Path, scim_token: &str, matrix_token: &str) -> std::process::Output {
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    Command::new(STEWARD)
        .args(["--yes", "run", concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/offboard.rhai")])
        .args(["--arg", "csv=leavers.csv", "--arg", "reason=benchmark"])
        .current_dir(dir)
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("STEWARD_AUDIT_DB", dir.join("audit.db"))
        .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN)
        .env("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN)
        .env("TL_TOKEN", steward_sandbox::transactionlink_tokens::ADMIN_TOKEN)
        .env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN))
        .env("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN))
        .env("SCIM_TOKEN", scim_token)
        .env("SYNAPSE_TOKEN", matrix_token)
        .env("HOME", dir)
        .output()
        .expect("steward runs")
}

/// Accounts per status, from the run's summary CSV.
fn outcomes(dir: &Path) -> String {
    let summary = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("leavers-offboarded-run")))
        .expect("the summary CSV");
    let mut reader = csv::Reader::from_path(summary).expect("csv");
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for row in reader.records().flatten() {
        *counts.entry(row.get(4).unwrap_or_default().to_string()).or_default() += 1;
    }
    counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// root, the admins and eng groups, and each person under another userName with the same email, in eng (users
/// in /Bulk requests of 200, the ids their answers give, then one POST per group).
async fn seed_scim(client: &reqwest::Client, base: &str, token: &str, people: usize, email: &dyn Fn(usize) -> String) {
    let user = |name: String, mail: String| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": true,
               "emails": [{"value": mail, "primary": true}]})
    };
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}/{path}"))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    let mut users = vec![user("root".into(), "root@corp.example".into())];
    users.extend((0..people).map(|i| user(format!("scim.{i}"), email(i))));
    let mut ids: Vec<String> = Vec::new();
    for chunk in users.chunks(200) {
        let ops: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(k, u)| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{k}"), "data": u}))
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
        let answer: Value = post("Bulk", body).await.expect("bulk").json().await.expect("bulk answer");
        for op in answer["Operations"].as_array().expect("operations") {
            let location = op["location"].as_str().expect("a created user's location");
            ids.push(location.rsplit('/').next().unwrap_or_default().to_string());
        }
    }
    let member = |i: usize| json!({"value": ids[i + 1]});
    for (g, members) in
        [("admins", (0..people).step_by(8).map(member).collect::<Vec<_>>()), ("eng", (0..people).map(member).collect())]
    {
        let group =
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": g, "members": members});
        assert!(post("Groups", group).await.is_ok_and(|r| r.status().is_success()), "the SCIM group {g} was not made");
    }
}

/// Synapse accounts under another name, each with the person's email bound (no password: nothing to hash).
async fn seed_matrix(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    people: usize,
    tag: &str,
    email: &dyn Fn(usize) -> String,
) {
    let made: Vec<bool> = stream::iter((0..people).filter(|i| holds(*i)[3]))
        .map(|i| {
            let req = client
                .put(format!("{url}/_synapse/admin/v2/users/@{tag}_{i}:localhost"))
                .bearer_auth(token)
                .json(&json!({"threepids": [{"medium": "email", "address": email(i)}]}));
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(made.iter().all(|m| *m), "a Synapse account was not created");
}
