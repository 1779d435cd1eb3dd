//! Team-mode benchmarks (`cargo bench --bench team`), each against a PostgreSQL 15 server of its own with
//! fsync on (as SQLite's log runs with synchronous = FULL):
//! 1. the 10,000-user bulk job (sandbox, 20 ms a request, concurrency 32), the team log beside the SQLite log,
//!    in alternating rounds;
//! 2. events a second that four writers append at once to one chain (batches of 32, as a bulk job's group
//!    commits, and of 1, as single actions);
//! 3. the cost of `steward audit verify` per million events, PostgreSQL beside SQLite.
//!
//! `cargo bench --bench team -- writers` (or `bulk`, `verify`) runs one part.

#[allow(dead_code)]
#[path = "../tests/integration/pg.rs"]
mod pg;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward::audit::team::PgTarget;
use steward::audit::{AuditStore, AuditTarget, Event, RunInfo};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |part: &str| only.is_empty() || only.iter().any(|a| a == part);
    let pg = pg::Postgres::start_durable();
    let dir = tempfile::tempdir().expect("tempdir");
    if wants("bulk") {
        bulk(&pg, dir.path());
    }
    if wants("writers") {
        writers(&pg, dir.path());
    }
    if wants("verify") {
        verify(&pg, dir.path());
    }
}

fn team_url(pg: &pg::Postgres) -> String {
    pg.url("postgres")
}

fn target(pg: &pg::Postgres, dir: &Path) -> AuditTarget {
    let password: steward::audit::team::PasswordSource =
        Arc::new(|| Ok(Some(secrecy::SecretString::from(pg::SUPER_PASSWORD.to_string()))));
    AuditTarget::Postgres(Arc::new(PgTarget::new(&team_url(pg), None, &dir.join("anchors"), password).expect("url")))
}

/// Part 1: `suspend_all` of 10,000 users from a CSV, the whole `steward run` process timed.
fn bulk(pg: &pg::Postgres, dir: &Path) {
    let n = 10_000;
    let bound = n as f64 * 0.020 / 32.0;
    println!("bulk: suspend {n} users, 20 ms a request, concurrency 32, precheck off (bound N*L/C = {bound:.2} s)");
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, team) in [false, true].into_iter().enumerate() {
            // A fresh database each time, so no round pays for the rows of the one before.
            if team {
                pg.sql(&format!("DROP DATABASE IF EXISTS bench{round}"));
                pg.sql(&format!("CREATE DATABASE bench{round}"));
            }
            let t = bulk_run(pg, dir, n, team.then(|| format!("bench{round}")));
            times[i].push(t);
        }
    }
    let best = |v: &Vec<f64>| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let (sqlite, team) = (best(&times[0]), best(&times[1]));
    println!("  SQLite log:     {:?} s (best {sqlite:.2} s = {:.2}x the bound)", rounded(&times[0]), sqlite / bound);
    println!("  PostgreSQL log: {:?} s (best {team:.2} s = {:.2}x the bound)", rounded(&times[1]), team / bound);
    println!("  team / SQLite: {:.3}x (goal <= 1.10x)", team / sqlite);
}

fn rounded(v: &[f64]) -> Vec<String> {
    v.iter().map(|t| format!("{t:.2}")).collect()
}

fn bulk_run(pg: &pg::Postgres, dir: &Path, n: usize, database: Option<String>) -> f64 {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let opts = steward_sandbox::Options { users: n, latency: Duration::from_millis(20), ..Default::default() };
    let sandbox = runtime.block_on(steward_sandbox::start(opts)).expect("sandbox");
    let mut config = format!(
        "max_changes = 1000000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = 32\n",
        sandbox.github_url()
    );
    if let Some(db) = &database {
        let url = team_url(pg).replace("/steward?", &format!("/{db}?"));
        config = format!("audit_url = \"{url}\"\naudit_password_env = \"PGPW\"\n{config}");
    }
    std::fs::write(dir.join("config.toml"), config).expect("config");
    let csv: String = std::iter::once("login".to_string())
        .chain((1..=n).map(|i| format!("user{i:04}")))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("users.csv"), csv).expect("csv");
    let script = "let r = connect(\"ghes\").suspend_all(ARGS.csv, #{reason: \"bench\", precheck: false}); \
                  let bad = r.filter(|x| x.status == \"failed\").len(); if bad > 0 { throw `${bad} failed`; }";
    std::fs::write(dir.join("job.rhai"), script).expect("script");
    let data = dir.join(format!("data-{}", database.as_deref().unwrap_or("sqlite")));
    let _ = std::fs::remove_dir_all(&data);
    let mut cmd = Command::new(STEWARD);
    cmd.args(["--yes", "run"])
        .arg(dir.join("job.rhai"))
        .args(["--arg", &format!("csv={}", dir.join("users.csv").display())])
        .env("STEWARD_CONFIG", dir.join("config.toml"))
        .env("XDG_DATA_HOME", &data)
        .env("XDG_STATE_HOME", data.join("state"))
        .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN)
        .env("PGPW", pg::SUPER_PASSWORD)
        .env("HOME", dir);
    let started = Instant::now();
    let out = cmd.output().expect("steward runs");
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    took
}

fn event(run: i64, i: usize) -> Event {
    Event {
        run_id: run,
        profile: "ghes".into(),
        kind: "github".into(),
        base_url: "https://ghes.example.com/api/v3".into(),
        op: "suspend".into(),
        target: format!("user{i:07}"),
        params: r#"{"reason":"bench"}"#.into(),
        mode: "live".into(),
        phase: "intent".into(),
        status: "pending".into(),
        token_source: "env:GHES_TOKEN".into(),
        claim: format!("ghes user{i:07}"),
        ..Default::default()
    }
}

/// Part 2: four writers, each its own connection and run, appending for a few seconds.
fn writers(pg: &pg::Postgres, dir: &Path) {
    let sqlite = AuditTarget::File(dir.join("writers.db"));
    for (name, target) in [("PostgreSQL", target(pg, dir)), ("SQLite", sqlite)] {
        AuditStore::open_target(&target).expect("schema");
        for (phase, (writers, batch)) in [(4usize, 32usize), (4, 1), (1, 1)].into_iter().enumerate() {
            let per_writer = if batch == 1 { 1_000 } else { 10_000 };
            // Each phase on accounts of its own: an earlier phase's intents, never settled, would stand in the way.
            let base = phase * 100_000;
            let started = Instant::now();
            let handles: Vec<_> = (0..writers)
                .map(|w| {
                    let target = target.clone();
                    std::thread::spawn(move || {
                        let mut store = AuditStore::open_target(&target).expect("open");
                        let (run, _) = store.start_run(&RunInfo::default()).expect("run");
                        let mut written = 0;
                        while written < per_writer {
                            let mut events: Vec<Event> =
                                (0..batch).map(|i| event(run, base + w * per_writer + written + i)).collect();
                            written += store.append(&mut events).expect("append").len();
                        }
                        written
                    })
                })
                .collect();
            let total: usize = handles.into_iter().map(|h| h.join().expect("writer")).sum();
            let took = started.elapsed().as_secs_f64();
            println!(
                "writers: {name}, {writers} at once, batches of {batch}: {total} events in {took:.2} s = {:.0} events/s ({:.0} commits/s)",
                total as f64 / took,
                total as f64 / batch as f64 / took
            );
        }
        let v = AuditStore::open_target(&target).expect("open").verify().expect("verify");
        assert!(v.first_break.is_none(), "one unbroken chain");
        println!("  {name}: the chain of {} events verifies", v.checked);
    }
}

/// Part 3: `steward audit verify` over the same number of events in each log, per million: written in
/// transactions of 2,000 (a bulk job's group commits), and of one row each (single actions, each its own
/// transaction and so its own machine seal: the most signatures a log can hold).
fn verify(pg: &pg::Postgres, dir: &Path) {
    verify_of(pg, dir, 200_000, 2_000);
    verify_of(pg, dir, 10_000, 1);
}

fn verify_of(pg: &pg::Postgres, dir: &Path, n: usize, batch: usize) {
    pg.sql("DROP DATABASE IF EXISTS verify");
    pg.sql("CREATE DATABASE verify");
    let url = team_url(pg).replace("/steward?", "/verify?");
    let password: steward::audit::team::PasswordSource =
        Arc::new(|| Ok(Some(secrecy::SecretString::from(pg::SUPER_PASSWORD.to_string()))));
    let team =
        AuditTarget::Postgres(Arc::new(PgTarget::new(&url, None, &dir.join("anchors-v"), password).expect("url")));
    let sqlite = AuditTarget::File(dir.join(format!("verify-{batch}.db")));
    for (name, target) in [("SQLite", &sqlite), ("PostgreSQL", &team)] {
        let mut store = AuditStore::open_target(target).expect("open");
        let (run, _) = store.start_run(&RunInfo::default()).expect("run");
        for chunk in 0..n / batch {
            let mut events: Vec<Event> = (0..batch).map(|i| event(run, chunk * batch + i)).collect();
            store.append(&mut events).expect("append");
        }
        if let AuditTarget::File(p) = target {
            steward::audit::checkpoint::write(p, &store, None).expect("checkpoint");
        }
        let mut cmd = Command::new(STEWARD);
        cmd.args(["audit", "verify"]).env("HOME", dir).env("XDG_DATA_HOME", dir.join(format!("xdg-{name}")));
        match target {
            AuditTarget::File(p) => cmd.env("STEWARD_AUDIT_DB", p),
            _ => cmd.env("STEWARD_AUDIT_URL", &url).env("STEWARD_CONFIG", write_password_config(dir)),
        };
        let started = Instant::now();
        let out = cmd.output().expect("steward runs");
        let took = started.elapsed().as_secs_f64();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(said.contains(&format!("{n} events")), "{said}");
        println!(
            "verify: {name}, {n} events in transactions of {batch}: {took:.2} s = {:.1} s per million events",
            took * 1_000_000.0 / n as f64
        );
    }
}

fn write_password_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("verify.toml");
    std::fs::write(&path, format!("audit_password_cmd = \"echo {}\"\n", pg::SUPER_PASSWORD)).expect("config");
    path
}
