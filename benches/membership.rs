//! Declared membership at scale (`cargo bench --bench membership`, issue 38): the sandbox's GHES team
//! acme/engineering holding `STEWARD_BENCH_MEMBERS` people (default 100,000) and a desired state of as many rows
//! that differs in 1 %: 1 % left (the maintainer stays), as many newcomers joined. Side by side in one run: a minimal
//! client that reads the team (both roles, a page at a time), works out the difference and sends it; steward's
//! `reconcile` drift report (nothing changed); steward's `reconcile` applied (recorded, guarded, each change an
//! intent and an outcome in the audit log). Each steward figure is one whole process (wall, peak RSS, CPU), and
//! the sandbox counts the changes each sent.

#[path = "common.rs"]
mod common;
use common::steward_in;

use std::collections::HashSet;
use std::time::Instant;

fn main() {
    let members: usize = std::env::var("STEWARD_BENCH_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let drift = members / 100;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut figures = Vec::new();
    // The minimal client and steward each get a sandbox of their own, in the same state.
    let start = || {
        let opts =
            steward_sandbox::Options { users: members + drift, engineering: Some(members), ..Default::default() };
        runtime.block_on(steward_sandbox::start(opts)).expect("sandbox starts")
    };
    // The team's maintainer stays; the next 1 % leave, and as many newcomers join.
    let wanted: Vec<String> =
        std::iter::once(1).chain(drift + 2..=members + drift).map(|i| format!("user{i:04}")).collect();

    let running = start();
    let t = Instant::now();
    let sent = runtime.block_on(minimal_client(&running.github_url(), &wanted));
    let floor = t.elapsed().as_secs_f64();
    assert_eq!(sent, 2 * drift, "the minimal client sends the difference");
    drop(running);

    let running = start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "max_changes = 10000000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 600\nconcurrency = 8\n",
            running.github_url()
        ),
    )
    .expect("config");
    let csv: String = std::iter::once("profile,group,person,role".to_string())
        .chain(
            wanted
                .iter()
                .enumerate()
                .map(|(k, u)| format!("ghes,acme/engineering,{u},{}", if k == 0 { "maintainer" } else { "member" })),
        )
        .map(|l| l + "\n")
        .collect();
    let desired = dir.path().join("desired.csv");
    std::fs::write(&desired, csv).expect("desired");
    let desired = desired.display().to_string();
    let changes = |r: &steward_sandbox::Running| r.count_method("PUT") + r.count_method("DELETE");
    let report = steward_in(
        dir.path(),
        ("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN),
        &["--format", "json", "eval", &format!(r#"reconcile("{desired}").summary"#)],
    );
    assert_eq!(changes(&running), 0, "a drift report changes nothing");
    figures.push(("steward: reconcile, the drift report", report, 0));
    let applied = steward_in(
        dir.path(),
        ("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN),
        &[
            "--yes",
            "--format",
            "json",
            "eval",
            &format!(r#"reconcile("{desired}", #{{apply: true, max_removal_share: 0.02}}).summary"#),
        ],
    );
    let sent = changes(&running);
    assert_eq!(sent as usize, 2 * drift, "only the changes are sent: {}", applied.stdout);
    figures.push(("steward: reconcile, applied (recorded)", applied, sent));

    println!("\n{members} memberships, {drift} to add and {drift} to remove");
    println!("{:<44} {:>9} {:>10} {:>8} {:>9}", "", "wall s", "peak MiB", "CPU s", "changes");
    println!(
        "{:<44} {floor:>9.2} {:>10} {:>8} {:>9}",
        "minimal client: read the team, send the difference",
        "-",
        "-",
        2 * drift
    );
    for (name, m, sent) in &figures {
        println!("{name:<44} {:>9.2} {:>10.0} {:>8.2} {sent:>9}", m.elapsed.as_secs_f64(), m.peak_rss_mib, m.cpu_secs);
    }
    println!("applied / minimal client: {:.2}x wall", figures[1].1.elapsed.as_secs_f64() / floor);
}

/// Reads the team a page at a time (both roles), then sends the joins and removals, eight at a time: how
/// many changes it sent.
async fn minimal_client(api: &str, wanted: &[String]) -> usize {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let auth = format!("token {}", steward_sandbox::ADMIN_TOKEN);
    let mut current = HashSet::new();
    for role in ["member", "maintainer"] {
        let mut url = Some(format!("{api}/orgs/acme/teams/engineering/members?role={role}&per_page=100"));
        while let Some(u) = url.take() {
            let resp = client.get(&u).header("authorization", &auth).send().await.expect("page");
            url = next_link(resp.headers());
            let page: Vec<serde_json::Value> = resp.json().await.expect("json");
            current.extend(page.iter().filter_map(|m| m["login"].as_str().map(str::to_string)));
        }
    }
    let wanted_set: HashSet<&String> = wanted.iter().collect();
    let joins = wanted.iter().filter(|u| !current.contains(*u)).map(|u| (reqwest::Method::PUT, u.clone()));
    let leaves = current.iter().filter(|u| !wanted_set.contains(u)).map(|u| (reqwest::Method::DELETE, u.clone()));
    let changes: Vec<(reqwest::Method, String)> = joins.chain(leaves).collect();
    let sent = changes.len();
    futures::stream::iter(changes)
        .map(|(method, user)| {
            let req = client
                .request(method, format!("{api}/orgs/acme/teams/engineering/memberships/{user}"))
                .header("authorization", &auth)
                .json(&serde_json::json!({"role": "member"}));
            async move { assert!(req.send().await.expect("sent").status().is_success()) }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    sent
}

fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find(|p| p.contains("rel=\"next\"")).and_then(|p| Some(p.split(['<', '>']).nth(1)?.to_string()))
}
