//! Backbone benchmarks (`cargo bench --bench backbone`): start-up time, listing 10,000 users from the sandbox
//! (time and peak memory of the steward process), and audit-log write throughput. Figures go to BENCHMARKS.md.

#[path = "common.rs"]
mod common;
use common::children_peak_rss_mib;

use std::process::Command;
use std::time::{Duration, Instant};
use steward::audit::{AuditStore, Event};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

fn main() {
    if std::env::args().any(|a| a == "redaction") {
        return redaction();
    }
    if std::env::args().any(|a| a == "verification") {
        return verification(tempfile::tempdir().expect("tempdir").path());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    redaction();
    startup(dir.path());
    list_users(dir.path(), 10_000);
    audit_throughput(dir.path());
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// `steward eval 1`, spawned again and again: what every script and cron job pays before doing anything.
fn startup(dir: &std::path::Path) {
    let runs = 30;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(STEWARD)
            .args(["eval", "1"])
            .env("STEWARD_AUDIT_DB", dir.join("a.db"))
            .env("HOME", dir)
            .output()
            .expect("runs");
        assert!(out.status.success());
        times.push(t.elapsed());
    }
    let min = times.iter().min().copied().unwrap_or_default();
    println!("startup: steward eval 1: median {:.1} ms, min {:.1} ms over {runs} runs", ms(median(times)), ms(min));
}

/// `list_users` of N users, 100 per page, against the sandbox served from this (the bench) process, so the
/// peak memory of children is steward's own.
fn list_users(dir: &std::path::Path, n: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = runtime
        .block_on(steward_sandbox::start(steward_sandbox::Options { users: n, ..Default::default() }))
        .expect("sandbox starts");
    let config = dir.join("config.toml");
    let profile =
        format!("[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n", sandbox.github_url());
    std::fs::write(&config, profile).expect("config");
    let runs = 5;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(STEWARD)
            .args(["--format", "json", "eval", r#"connect("ghes").list_users().len()"#])
            .env("STEWARD_CONFIG", &config)
            .env("STEWARD_AUDIT_DB", dir.join("a.db"))
            .env("GHES_TOKEN", steward_sandbox::ADMIN_TOKEN)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (n + 2).to_string());
        times.push(t.elapsed());
    }
    println!(
        "list_users: {n} users ({} pages): median {:.0} ms over {runs} runs; steward peak RSS {:.1} MiB",
        n.div_ceil(100),
        ms(median(times)),
        children_peak_rss_mib()
    );
}

fn event(i: usize) -> Event {
    Event {
        run_id: 1,
        profile: "ghes".into(),
        kind: "github".into(),
        base_url: "https://ghe.example.com/api/v3/".into(),
        identity: "admin".into(),
        op: "suspend".into(),
        target: format!("user{i:05}"),
        params: r#"{"reason":"left the company"}"#.into(),
        mode: "live".into(),
        phase: "intent".into(),
        status: "pending".into(),
        token_source: "env:GHES_TOKEN".into(),
        ..Default::default()
    }
}

/// Durable appends (WAL, synchronous=FULL): one event per commit, and 1,000 per commit (group commit).
fn audit_throughput(dir: &std::path::Path) {
    let mut store = AuditStore::open(&dir.join("bench-audit.db")).expect("audit db");
    let n = 2_000;
    let t = Instant::now();
    for i in 0..n {
        store.append(&mut [event(i)]).expect("append");
    }
    let single = t.elapsed();
    let batches = 20;
    let t = Instant::now();
    for b in 0..batches {
        let mut events: Vec<Event> = (0..1_000).map(|i| event(b * 1_000 + i)).collect();
        store.append(&mut events).expect("append");
    }
    let batched = t.elapsed();
    println!(
        "audit: one event per commit: {:.0} events/s ({:.0} µs each); 1,000 per commit: {:.0} events/s",
        n as f64 / single.as_secs_f64(),
        single.as_secs_f64() * 1e6 / n as f64,
        (batches * 1_000) as f64 / batched.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `redact` over 8 MB of server text, with 20 secrets loaded (each in its ~30 encoded forms, one automaton): text
/// with no secret, text with a secret every 4 KB, and the same wrapped at 76 characters (the view without line
/// breaks is built). Every message, log line, CSV cell and audit row goes through it.
fn redaction() {
    for i in 0..20 {
        steward::redact::remember(&format!("ghp_{i:02}aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"));
    }
    let clean: String =
        (0..8 * 1024 * 1024 / 64).map(|i| format!("{{\"login\":\"user{i:08}\",\"id\":{i:010},\"x\":1}}\n")).collect();
    let clean = clean.replace('\n', " ");
    let with_secrets: String = clean
        .as_bytes()
        .chunks(4096)
        .map(|c| format!("{} ghp_07aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 ", String::from_utf8_lossy(c)))
        .collect();
    let wrapped: String =
        with_secrets.as_bytes().chunks(76).map(|c| format!("{}\n", String::from_utf8_lossy(c))).collect();
    for (name, text) in [("no secret", &clean), ("a secret every 4 KB", &with_secrets), ("wrapped at 76", &wrapped)] {
        let mb = text.len() as f64 / (1024.0 * 1024.0);
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = steward::redact::redact(text);
            times.push(t.elapsed());
            assert!(name == "no secret" || out.contains("[REDACTED]"));
        }
        let per_mb = ms(median(times)) / mb;
        println!("redaction: {name}: {per_mb:.2} ms per MB ({:.0} MB/s) over {mb:.1} MB", 1000.0 / per_mb);
    }
}

/// What keeping the record honest costs on a log of 1,000,000 events (SQLite, checkpoint signed at the head):
/// the pre-write check a process makes when it opens the log (the checkpoint and the rows after it); catching up
/// before a write or a signature with nothing new, and after another process appended 1,000 rows; verifying one
/// row read back for a decision; and the whole chain, as each process verifies it in the background.
fn verification(dir: &std::path::Path) {
    let db = dir.join("verify.db");
    let mut writer = AuditStore::open(&db).expect("audit db");
    let n = 1_000_000;
    let t = Instant::now();
    for b in 0..n / 5_000 {
        let mut events: Vec<Event> = (0..5_000).map(|i| event(b * 5_000 + i)).collect();
        writer.append(&mut events).expect("append");
    }
    println!("verification: built a log of {n} events in {:.1} s", t.elapsed().as_secs_f64());
    steward::audit::checkpoint::write(&db, &writer, None).expect("checkpoint");
    let mut opens = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let store = AuditStore::open(&db).expect("open");
        assert_eq!(steward::audit::checkpoint::problem(&db, &store).expect("check"), None);
        opens.push(t.elapsed());
    }
    let reader = AuditStore::open(&db).expect("open");
    assert_eq!(steward::audit::checkpoint::problem(&db, &reader).expect("check"), None);
    let mut idle = Vec::new();
    for _ in 0..101 {
        let t = Instant::now();
        reader.catch_up().expect("read").expect("whole");
        idle.push(t.elapsed());
    }
    let mut more: Vec<Event> = (0..1_000).map(|i| event(n + i)).collect();
    writer.append(&mut more).expect("append");
    let t = Instant::now();
    reader.catch_up().expect("read").expect("whole");
    let thousand = t.elapsed();
    let mut rows = Vec::new();
    for seq in [1, 250_000, 500_000, 999_999] {
        let t = Instant::now();
        reader.row_is_whole(seq).expect("read").expect("whole");
        rows.push(t.elapsed());
    }
    let t = Instant::now();
    let whole = reader.verify().expect("verify");
    assert!(whole.first_break.is_none());
    let full = t.elapsed();
    println!(
        "verification: pre-write check at open (checkpoint at the head) median {:.2} ms; catch-up with nothing new median {:.0} µs; after 1,000 rows from another process {:.1} ms; one row read back for a decision median {:.0} µs; the whole chain ({} events) {:.2} s",
        ms(median(opens)),
        median(idle).as_secs_f64() * 1e6,
        ms(thousand),
        median(rows).as_secs_f64() * 1e6,
        whole.checked,
        full.as_secs_f64()
    );
}
