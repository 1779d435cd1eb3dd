//! Scale benchmarks (`cargo bench --bench scale`, issue 19): walking a million sandbox users with `h.users()`
//! next to a minimal keep-alive client downloading the same pages; `list_users` of 100,000; reading a
//! 1,000,000-row CSV; a script building 100,000 maps. Each steward figure is one whole process (wait4), so its
//! peak memory is its own; the sandbox and the minimal client run in this process.

#[path = "common.rs"]
mod common;
use common::{measure, Measured};

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if wanted("walk") {
        walk_a_million(dir.path(), &runtime, 1_000_000);
    }
    if wanted("list") {
        list_users(dir.path(), &runtime, 100_000);
    }
    if wanted("csv") {
        read_csv(dir.path(), 1_000_000);
    }
    if wanted("push") {
        push_maps(dir.path(), 100_000);
    }
    if wanted("parallel") {
        parallel_pages(dir.path(), &runtime, 10_000);
    }
    if wanted("bulk") {
        bulk_from_csv(dir.path(), &runtime, 100_000);
    }
    if wanted("rows") {
        rows_in_flat_memory(dir.path(), &runtime, 3_000_000);
    }
}

/// A CSV job of `n` rows, in a dry run with `precheck: false` (GitHub accounts are addressed by login, so no
/// row needs a request): what the job itself holds as it reads, plans, records and reports every row, in
/// windows. Its audit log (a file) gets an event per row.
fn rows_in_flat_memory(dir: &Path, runtime: &tokio::runtime::Runtime, n: usize) {
    let running = sandbox(runtime, 10);
    let config = dir.join("rows.toml");
    let profile = format!(
        "max_changes = 100000000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n",
        running.github_url()
    );
    std::fs::write(&config, profile).expect("config");
    let csv = dir.join("rows.csv");
    let mut text = String::with_capacity(n * 10 + 8);
    text.push_str("login\n");
    for i in 1..=n {
        text.push_str(&format!("u{i:07}\n"));
    }
    std::fs::write(&csv, &text).expect("csv");
    drop(text);
    let job = dir.join("rows.rhai");
    let script = "let s = connect(\"ghes\").suspend_all(ARGS.csv, #{reason: \"bench\", precheck: false, dry_run: true, results: ARGS.out}); s.total";
    std::fs::write(&job, script).expect("script");
    // `STEWARD_BASELINE=/path/to/an/older/steward` runs the same job with it first, side by side.
    let baseline = std::env::var("STEWARD_BASELINE").ok();
    for (name, binary) in baseline.iter().map(|b| ("baseline", b.as_str())).chain([("steward", STEWARD)]) {
        rows_job(dir, &config, &job, &csv, n, name, binary);
    }
}

fn rows_job(dir: &Path, config: &Path, job: &Path, csv: &Path, n: usize, name: &str, binary: &str) {
    let run = measure(
        Command::new(binary)
            .args(["--yes", "--audit-db"])
            .arg(dir.join(format!("rows-{name}.db")))
            .arg("run")
            .arg(job)
            .args([
                "--arg",
                &format!("csv={}", csv.display()),
                "--arg",
                &format!("out={}", dir.join("rows-out.csv").display()),
            ])
            .env("STEWARD_CONFIG", config)
            .env("HOME", dir)
            .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN),
    );
    assert!(run.success, "{}", run.stderr);
    let rows = std::fs::read_to_string(dir.join("rows-out.csv")).map(|t| t.lines().count() - 1).unwrap_or(0);
    assert_eq!(rows, n, "a result row per input row");
    println!(
        "rows ({name}): a CSV job of {n} rows (dry run, precheck false, results to a file, audit log on disk): {:.1} s; \
         peak RSS {:.1} MiB; CPU {:.1} s",
        run.elapsed.as_secs_f64(),
        run.peak_rss_mib,
        run.cpu_secs
    );
}

fn sandbox(runtime: &tokio::runtime::Runtime, users: usize) -> steward_sandbox::Running {
    let t = Instant::now();
    let running = runtime
        .block_on(steward_sandbox::start(steward_sandbox::Options { users, ..Default::default() }))
        .expect("sandbox starts");
    println!("sandbox of {users} users ready in {:.1} s", t.elapsed().as_secs_f64());
    running
}

fn steward(dir: &Path, url: &str, expr: &str) -> Measured {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[profiles.ghes]\nkind = \"github\"\nurl = \"{url}\"\ntoken_env = \"GHES_TOKEN\"\n"),
    )
    .expect("config");
    let run = measure(
        Command::new(STEWARD)
            .args(["--audit-db", ":memory:", "--format", "json", "eval", expr])
            .env("STEWARD_CONFIG", &config)
            .env("HOME", dir)
            .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN),
    );
    assert!(run.success, "{expr}: {}", run.stderr);
    run
}

/// The least a client can do: GET each page over one keep-alive connection and follow `Link`, parsing nothing
/// but the header.
async fn minimal_walk(first: String) -> (usize, usize) {
    let client = reqwest::Client::new();
    let (mut pages, mut bytes, mut next) = (0, 0, Some(first));
    while let Some(url) = next.take() {
        let resp = client
            .get(&url)
            .header("Authorization", format!("token {}", steward_sandbox::ADMIN_TOKEN))
            .send()
            .await
            .expect("page");
        next = resp.headers().get("link").and_then(|l| l.to_str().ok()).and_then(|l| {
            l.split(',').find(|p| p.contains("rel=\"next\"")).and_then(|p| {
                let p = p.trim();
                Some(p[p.find('<')? + 1..p.find('>')?].to_string())
            })
        });
        bytes += resp.bytes().await.expect("body").len();
        pages += 1;
    }
    (pages, bytes)
}

fn walk_a_million(dir: &Path, runtime: &tokio::runtime::Runtime, n: usize) {
    let running = sandbox(runtime, n);
    let url = running.github_url();
    let first = format!("{url}/users?per_page=100");
    for round in 0..2 {
        let t = Instant::now();
        let (pages, bytes) = runtime.block_on(minimal_walk(first.clone()));
        let minimal = t.elapsed();
        let run = steward(dir, &url, "let n = 0; for u in connect(\"ghes\").users() { n += 1; } n");
        assert_eq!(run.stdout.trim(), (n + 2).to_string());
        println!(
            "walk {n} users, round {round}: minimal client {:.2} s ({pages} pages, {} MB); steward users() {:.2} s = \
             {:.2}x, peak RSS {:.1} MiB, CPU {:.2} s",
            minimal.as_secs_f64(),
            bytes >> 20,
            run.elapsed.as_secs_f64(),
            run.elapsed.as_secs_f64() / minimal.as_secs_f64(),
            run.peak_rss_mib,
            run.cpu_secs
        );
    }
}

fn list_users(dir: &Path, runtime: &tokio::runtime::Runtime, n: usize) {
    let running = sandbox(runtime, n);
    let url = running.github_url();
    for expr in [
        "connect(\"ghes\").list_users().len()",
        "let n = 0; for u in connect(\"ghes\").users() { n += 1; } n",
        "let a = []; for u in connect(\"ghes\").users() { a.push(u.login); } a.len()",
    ] {
        let run = steward(dir, &url, expr);
        assert_eq!(run.stdout.trim(), (n + 2).to_string());
        println!(
            "{n} users: `{expr}`: {:.2} s, peak RSS {:.1} MiB, CPU {:.2} s",
            run.elapsed.as_secs_f64(),
            run.peak_rss_mib,
            run.cpu_secs
        );
    }
}

fn read_csv(dir: &Path, n: usize) {
    let path = dir.join("big.csv");
    let mut text = String::with_capacity(n * 40);
    text.push_str("login,reason\n");
    for i in 0..n {
        text.push_str(&format!("user{i:07},\"left, for good\"\n"));
    }
    std::fs::write(&path, text).expect("csv");
    let run = measure(
        Command::new(STEWARD)
            .args(["--audit-db", ":memory:", "eval", &format!("read_csv(\"{}\").len()", path.display())])
            .env("HOME", dir),
    );
    assert!(run.success, "{}", run.stderr);
    println!(
        "read_csv of {n} rows: {:.2} s, peak RSS {:.1} MiB (whole process, start-up included)",
        run.elapsed.as_secs_f64(),
        run.peak_rss_mib
    );
}

fn push_maps(dir: &Path, n: usize) {
    let expr = format!("let a = []; for i in 0..{n} {{ a.push(#{{login: `u${{i}}`, n: i}}); }} a.len()");
    let run = measure(Command::new(STEWARD).args(["--audit-db", ":memory:", "eval", &expr]).env("HOME", dir));
    assert!(run.success, "{}", run.stderr);
    println!("push {n} maps: {:.2} s, peak RSS {:.1} MiB (whole process)", run.elapsed.as_secs_f64(), run.peak_rss_mib);
}

/// Suspending 100,000 users from a CSV at 20 ms a request and concurrency 32, `precheck: false` (one request a
/// user): the CSV read straight into items with each result written as it is known, next to the same job from
/// `read_csv` rows returning an array of results.
fn bulk_from_csv(dir: &Path, runtime: &tokio::runtime::Runtime, n: usize) {
    for (how, script) in [
        (
            "suspend_all(\"users.csv\", #{results})",
            "let s = connect(\"ghes\").suspend_all(ARGS.csv, #{reason: \"bench\", precheck: false, results: ARGS.out}); s.ok",
        ),
        (
            "suspend_all(read_csv(..)) returning an array",
            "connect(\"ghes\").suspend_all(read_csv(ARGS.csv), #{reason: \"bench\", precheck: false}).filter(|r| r.status == \"ok\").len()",
        ),
    ] {
        let opts = steward_sandbox::Options {
            users: n,
            latency: std::time::Duration::from_millis(20),
            ..Default::default()
        };
        let running = runtime.block_on(steward_sandbox::start(opts)).expect("sandbox starts");
        let config = dir.join("bulk.toml");
        std::fs::write(
            &config,
            format!(
                "max_changes = 10000000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = 32\n",
                running.github_url()
            ),
        )
        .expect("config");
        let csv = dir.join("users.csv");
        let mut text = String::from("login\n");
        for i in 1..=n {
            // The sandbox's demo users are user0001…; every 25th starts suspended, so it is left out.
            if i % 25 != 0 {
                text.push_str(&format!("user{i:04}\n"));
            }
        }
        std::fs::write(&csv, &text).expect("csv");
        let job = dir.join("job.rhai");
        std::fs::write(&job, script).expect("script");
        // The same PUTs from a minimal client first (the sandbox answers a repeated suspension the same way).
        let jobs = n - n / 25;
        let t = Instant::now();
        runtime.block_on(minimal_puts(&running.github_url(), n));
        let minimal = t.elapsed().as_secs_f64();
        println!(
            "bulk: a minimal client (reqwest, {} at a time) sending the same {jobs} PUTs: {minimal:.2} s = {:.3}x the bound",
            32,
            minimal / (jobs as f64 * 0.020 / 32.0)
        );
        let run = measure(
            Command::new(STEWARD)
                .args(["--yes", "--audit-db"])
                .arg(dir.join(format!("bulk-{}.db", how.len())))
                .arg("run")
                .arg(&job)
                .args(["--arg", &format!("csv={}", csv.display()), "--arg", &format!("out={}", dir.join("out.csv").display())])
                .env("STEWARD_CONFIG", &config)
                .env("HOME", dir)
                .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN),
        );
        assert!(run.success, "{how}: {}", run.stderr);
        let bound_now = jobs as f64 * 0.020 / 32.0;
        println!(
            "bulk: suspend {jobs} users from a CSV, 20 ms, concurrency 32, precheck false, {how}: {:.2} s = {:.3}x the \
             bound N*L/C = {bound_now:.2} s; peak RSS {:.1} MiB; CPU {:.2} s",
            run.elapsed.as_secs_f64(),
            run.elapsed.as_secs_f64() / bound_now,
            run.peak_rss_mib,
            run.cpu_secs
        );
    }
}

/// The suspensions of the bulk job (every user but each 25th), 32 at a time over keep-alive connections, with
/// nothing recorded and nothing checked: the floor steward's job is measured against.
async fn minimal_puts(base: &str, n: usize) {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let logins = (1..=n).filter(|i| i % 25 != 0).map(|i| format!("user{i:04}"));
    futures::stream::iter(logins)
        .map(|login| {
            let req = client
                .put(format!("{base}/users/{login}/suspended"))
                .header("Authorization", format!("token {}", steward_sandbox::ADMIN_TOKEN))
                .json(&serde_json::json!({"reason": "bench"}));
            async move { assert!(req.send().await.expect("answer").status().is_success()) }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// Terraform's users at 20 ms a request, 100 a page: a minimal client following `next-page` one page at a time,
/// next to steward, which asks for the pages after the first together (the page count is in the first). The
/// profile lifts TFE's default client-side limit of 20 req/s, which the minimal client does not keep either.
fn parallel_pages(dir: &Path, runtime: &tokio::runtime::Runtime, n: usize) {
    let opts =
        steward_sandbox::Options { users: n, latency: std::time::Duration::from_millis(20), ..Default::default() };
    let running = runtime.block_on(steward_sandbox::start(opts)).expect("sandbox starts");
    let url = running.terraform_url();
    let t = Instant::now();
    let pages = runtime.block_on(async {
        let client = reqwest::Client::new();
        let (mut page, mut pages) = (Some(1u64), 0);
        while let Some(number) = page.take() {
            let body: serde_json::Value = client
                .get(format!("{url}/admin/users?page%5Bsize%5D=100&page%5Bnumber%5D={number}"))
                .bearer_auth(steward_sandbox::tfe_tokens::ADMIN_TOKEN)
                .send()
                .await
                .expect("page")
                .json()
                .await
                .expect("json");
            page = body.pointer("/meta/pagination/next-page").and_then(serde_json::Value::as_u64);
            pages += 1;
        }
        pages
    });
    let minimal = t.elapsed();
    let config = dir.join("tfe.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.tfe]\nkind = \"terraform\"\nurl = \"{url}\"\ntoken_env = \"TFE_TOKEN\"\nrate_limit = 1000\n"
        ),
    )
    .expect("config");
    let run = measure(
        Command::new(STEWARD)
            .args(["--audit-db", ":memory:", "eval", "connect(\"tfe\").list_users().len()"])
            .env("STEWARD_CONFIG", &config)
            .env("HOME", dir)
            .env("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN),
    );
    assert!(run.success, "{}", run.stderr);
    println!(
        "parallel pages: {} Terraform users, {pages} pages at 20 ms: minimal client page by page {:.2} s; steward \
         list_users {:.2} s ({:.1}x faster), peak RSS {:.1} MiB",
        run.stdout.trim(),
        minimal.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        minimal.as_secs_f64() / run.elapsed.as_secs_f64(),
        run.peak_rss_mib
    );
}
