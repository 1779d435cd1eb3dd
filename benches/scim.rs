//! SCIM benchmark (`cargo bench --bench scim`): `suspend_all` of 1,000 users on a live SCIM server (scim2-server),
//! steward's default job (read each user, then /Bulk requests) and its one-request-per-user fan-out, each next to
//! a minimal keep-alive client (reqwest, 4 connections) sending the same requests in the same run.
//! Needs the server: SCIM_BASE_URL/SCIM_TOKEN, or it is started with tests/servers/start-scim.sh.

#[path = "common.rs"]
mod common;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
const N: usize = 1000;
const C: usize = 4;
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// Operations per /Bulk request, as steward sends them.
const BULK_OPS: usize = 200;

struct Server {
    base: String,
    token: String,
    client: reqwest::Client,
}

fn main() {
    let (url, token) = server();
    let base = format!("{url}/bench{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::builder().pool_max_idle_per_host(C).build().expect("client");
    let s = Server { base: base.clone(), token: token.clone(), client };
    let logins: Vec<String> = (0..N).map(|i| format!("bench{i:04}")).collect();
    rt.block_on(seed(&s, &logins));

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ids.csv"), format!("login\n{}\n", logins.join("\n"))).expect("csv");
    std::fs::write(
        dir.path().join("job.rhai"),
        r#"let r = connect("s").suspend_all(read_csv(ARGS.csv), #{reason: "bench"});
           if r.filter(|x| x.status == "ok").len() != r.len() { throw `not all ok: ${r.filter(|x| x.status != "ok")[0]}`; }"#,
    )
    .expect("script");
    let config = |bulk: bool| {
        std::fs::write(
            dir.path().join("config.toml"),
            format!("max_changes = 100000\n[profiles.s]\nkind = \"scim\"\nurl = \"{base}\"\ntoken_env = \"SCIM_TOKEN\"\nconcurrency = {C}\nbulk = {bulk}\n"),
        )
        .expect("config");
    };

    let reset = || rt.block_on(set_all(&s, &logins, true));
    let minimal_fanout = rt.block_on(minimal(&s, &logins, false));
    reset();
    let minimal_bulk = rt.block_on(minimal(&s, &logins, true));
    reset();
    config(true);
    let steward_bulk = steward(dir.path(), &token);
    reset();
    config(false);
    let steward_fanout = steward(dir.path(), &token);
    reset();
    let minimal_fanout_again = rt.block_on(minimal(&s, &logins, false));
    reset();
    let fanout = minimal_fanout.min(minimal_fanout_again);
    println!("suspend {N} users on a live SCIM server (scim2-server), concurrency {C}; each user is read first (its id and ETag), then changed:");
    println!(
        "  minimal client, GET + PATCH per user: {:.2} s and {:.2} s ({:.0} users/s)",
        minimal_fanout.as_secs_f64(),
        minimal_fanout_again.as_secs_f64(),
        N as f64 / fanout.as_secs_f64()
    );
    println!(
        "  steward, bulk = false (GET + PATCH per user, audit on disk): {:.2} s = {:.2}x the minimal client",
        steward_fanout.as_secs_f64(),
        steward_fanout.as_secs_f64() / fanout.as_secs_f64()
    );
    println!("  minimal client, GET per user + /Bulk of {BULK_OPS}: {:.2} s", minimal_bulk.as_secs_f64());
    println!(
        "  steward default (GET per user + /Bulk of {BULK_OPS}): {:.2} s = {:.2}x the minimal client; /Bulk vs fan-out: {:.2}x",
        steward_bulk.as_secs_f64(),
        steward_bulk.as_secs_f64() / minimal_bulk.as_secs_f64(),
        steward_bulk.as_secs_f64() / steward_fanout.as_secs_f64()
    );
}

impl Server {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
    }
}

async fn seed(s: &Server, logins: &[String]) {
    let ops: Vec<Value> = logins
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("c{i}"), "data": {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": l, "active": true,
                "emails": [{"value": format!("{l}@example.com"), "primary": true}]}})
        })
        .collect();
    post_bulk(s, &ops).await;
}

/// Sends `ops` in /Bulk requests of `BULK_OPS`; every request must succeed.
async fn post_bulk(s: &Server, ops: &[Value]) {
    for chunk in ops.chunks(BULK_OPS) {
        let body = json!({"schemas": [BULK], "Operations": chunk}).to_string();
        let resp = s.req(reqwest::Method::POST, "Bulk").body(body).send().await;
        assert!(resp.is_ok_and(|r| r.status().is_success()), "a /Bulk request failed");
    }
}

/// Reads each user as steward's precheck does: by filter, for its id and version.
async fn read_all(s: &Server, logins: &[String]) -> Vec<(String, String)> {
    stream::iter(logins)
        .map(|l| async move {
            let resp = s
                .req(reqwest::Method::GET, "Users")
                .query(&[("filter", format!("userName eq \"{l}\"")), ("count", "2".into())])
                .send()
                .await
                .expect("GET");
            let body: Value = resp.json().await.expect("json");
            let u = &body["Resources"][0];
            (u["id"].as_str().expect("id").to_string(), u["meta"]["version"].as_str().unwrap_or_default().to_string())
        })
        .buffered(C)
        .collect()
        .await
}

fn patch_active(active: bool) -> Value {
    json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": active}]})
}

/// The minimal client's job: read every user, then one PATCH each (`bulk`: /Bulk requests instead).
async fn minimal(s: &Server, logins: &[String], bulk: bool) -> Duration {
    let started = Instant::now();
    let users = read_all(s, logins).await;
    if bulk {
        send_bulk(s, &users, false).await;
    } else {
        let statuses: Vec<u16> = stream::iter(&users)
            .map(|(id, version)| async move {
                let req = s.req(reqwest::Method::PATCH, &format!("Users/{id}")).header("if-match", version);
                req.body(patch_active(false).to_string()).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            })
            .buffer_unordered(C)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| (200..300).contains(s)), "a PATCH failed");
    }
    started.elapsed()
}

async fn send_bulk(s: &Server, users: &[(String, String)], active: bool) {
    let ops: Vec<Value> = users
        .iter()
        .enumerate()
        .map(|(i, (id, version))| {
            json!({"method": "PATCH", "bulkId": format!("b{i}"), "path": format!("/Users/{id}"), "version": version, "data": patch_active(active)})
        })
        .collect();
    post_bulk(s, &ops).await;
}

/// Puts every user back to `active`.
async fn set_all(s: &Server, logins: &[String], active: bool) {
    let users = read_all(s, logins).await;
    send_bulk(s, &users, active).await;
}

fn steward(dir: &std::path::Path, token: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new(STEWARD)
        .args(["--yes", "run"])
        .arg(dir.join("job.rhai"))
        .args(["--arg", &format!("csv={}", dir.join("ids.csv").display())])
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("STEWARD_AUDIT_DB", dir.join("audit.db"))
        .env("SCIM_TOKEN", token)
        .env("HOME", dir)
        .output()
        .expect("steward runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

fn server() -> (String, String) {
    let mut values = common::live_server("tests/servers/start-scim.sh", &["SCIM_BASE_URL", "SCIM_TOKEN"]).into_iter();
    (values.next().unwrap_or_default(), values.next().unwrap_or_default())
}
