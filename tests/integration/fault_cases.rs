//! The fault cases of `specs/reliability-performance.md` §6 that need a scheduled fault and the sandbox's record of
//! when each request arrived. Each test checks the plan's invariants: every row ends in one terminal state (I1),
//! the server's state is what the log says was done (I2), and no request is sent twice without a reason (I6).
//! The other cases live beside the code they exercise: 2b, 3, 4 in `faults.rs`; 5 in `crash.rs` (power loss in
//! `power_loss.rs`); 6, 7, 8, 10 and 12 in `reliability.rs` and `audit.rs`; 9 in `bulk.rs` and `fuzz.rs`. Case 11
//! is here: it jumps steward's wall clock with libfaketime (Debian's `faketime`, which `.ci/run` installs).

use crate::util::{Env, Sandbox};
use serde_json::Value;
use std::collections::HashMap;
use steward_sandbox::faults::Faults;
use steward_sandbox::Options;

const C: usize = 4;

fn sandbox(spec: &str, users: usize) -> Sandbox {
    Sandbox::with(Options { users, faults: Faults::parse(spec, 7).unwrap(), ..Default::default() })
}

fn logins(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("user{i:04}")).collect()
}

/// `suspend_all` over `targets` without prechecks (one request per user), as JSON results. `time_scale` below
/// 1 shrinks steward's real waits (a debug build's `STEWARD_TIME_SCALE`) while its decisions and records keep
/// the nominal ones.
fn suspend_all(env: &Env, targets: &[String], time_scale: f64) -> (Option<i32>, Vec<Value>) {
    let expr = format!("connect(\"ghes\").suspend_all({targets:?}, #{{reason: \"fault case\", precheck: false}})");
    let mut cmd = env.cmd();
    cmd.env("STEWARD_TIME_SCALE", time_scale.to_string()).args(["--yes", "--format", "json", "eval", &expr]);
    let run = crate::util::Run::of(cmd);
    let results = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()));
    (run.status, results)
}

/// (request number, milliseconds since the sandbox started, "METHOD /path") for every arrival.
fn arrivals(sb: &Sandbox) -> Vec<(u64, u64, String)> {
    serde_json::from_value(sb.timeline()["arrivals"].clone()).unwrap()
}

/// When the sandbox served its first fault of `name`, and that request's number.
fn fault_at(sb: &Sandbox, name: &str) -> (u64, u64) {
    let faulted: Vec<(u64, u64, String)> = serde_json::from_value(sb.timeline()["faulted"].clone()).unwrap();
    faulted.iter().find(|(_, _, n)| n == name).map(|(n, at, _)| (*n, *at)).unwrap_or_else(|| panic!("no {name} fault"))
}

/// Requests that arrived in the window `(from, to)` ms: only those already in flight when a pause began.
fn arrived_between(sb: &Sandbox, after_request: u64, from: u64, to: u64) -> usize {
    arrivals(sb).iter().filter(|(n, at, _)| *n > after_request && *at > from && *at < to).count()
}

/// I1 and I2 for a GitHub suspension job: one terminal outcome per target, all ok, and the server agrees.
fn every_target_suspended_once(sb: &Sandbox, env: &Env, targets: &[String], results: &[Value]) {
    assert_eq!(results.len(), targets.len());
    assert!(results.iter().all(|r| r["status"] == "ok"), "{results:?}");
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for row in env.audit_rows(&["--op", "suspend"]) {
        if row["phase"] == "outcome" {
            *outcomes.entry(row["target"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let state = sb.state();
    for t in targets {
        assert_eq!(outcomes.get(t), Some(&1), "{t} has {:?} outcomes", outcomes.get(t));
        let user = state["github"]["users"].as_array().unwrap().iter().find(|u| u["login"] == t.as_str()).unwrap();
        assert!(!user["suspended_at"].is_null(), "{t} is not suspended on the server");
    }
}

fn pause_notes(env: &Env) -> Vec<Value> {
    env.audit_rows(&["--op", "rate_limit"])
}

/// Runs a GitHub suspension of `targets` under `spec` and checks I1/I2, that the fault `name` was served, and
/// that within `quiet_ms` after it no more requests arrived than were already in flight. Returns the sandbox's
/// record and the env for further checks.
fn paused_job(
    spec: &str,
    name: &str,
    targets: std::ops::RangeInclusive<usize>,
    quiet_ms: u64,
    time_scale: f64,
) -> (Sandbox, Env) {
    let sb = sandbox(spec, targets.end() + 10);
    let env = Env::with_sandbox(&sb);
    let targets = logins(targets);
    let (code, results) = suspend_all(&env, &targets, time_scale);
    assert_eq!(code, Some(0));
    every_target_suspended_once(&sb, &env, &targets, &results);
    let (n, at) = fault_at(&sb, name);
    let early = arrived_between(&sb, n, at, at + quiet_ms);
    assert!(
        early < C,
        "{early} requests arrived within {quiet_ms} ms of the {name} (more than the {} in flight)",
        C - 1
    );
    (sb, env)
}

/// Case 1: a 429 with `Retry-After: 3` on request 37 of 200 pauses every worker for the time the server gave.
#[test]
fn case_01_a_429_pauses_the_whole_job_for_its_retry_after() {
    let (sb, env) = paused_job("429@37,retry_after=3", "429", 11..=210, 2_900, 1.0);
    // The one refused request was sent again; nothing else twice.
    assert_eq!(sb.count_method("PUT"), 201);
    let notes = pause_notes(&env);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]["duration_ms"].as_i64().unwrap() >= 2_900, "{notes:?}");
}

/// Case 1 with a paced profile (`rate_limit`): turns reserved ahead before the 429 wait for the pause's end;
/// past the requests already on the wire when it came, nothing reaches the server inside the pause.
#[test]
fn case_01_turns_reserved_before_a_pause_are_held_to_its_end() {
    let sb = sandbox("429@37,retry_after=2", 130);
    let env = Env::with_sandbox(&sb);
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&config.replace("timeout = 5\n", "timeout = 5\nrate_limit = 25\nconcurrency = 8\n"));
    let targets = logins(11..=110);
    let (code, results) = suspend_all(&env, &targets, 1.0);
    assert_eq!(code, Some(0));
    every_target_suspended_once(&sb, &env, &targets, &results);
    let (n, at) = fault_at(&sb, "429");
    assert_eq!(
        arrived_between(&sb, n, at + 100, at + 1_900),
        0,
        "requests were sent inside the pause: {:?}",
        arrivals(&sb).iter().filter(|(m, t, _)| *m > n && *t > at && *t < at + 2_000).collect::<Vec<_>>()
    );
}

/// Case 1, the HTTP-date form of Retry-After (whole seconds: the wait is at least two of the three).
#[test]
fn case_01_a_retry_after_date_is_obeyed_too() {
    let (sb, _env) = paused_job("429date@20,retry_after=3", "429date", 11..=70, 1_900, 1.0);
    assert_eq!(sb.count_method("PUT"), 61);
}

/// Case 1b: GitHub's secondary limit (a 403 without Retry-After) waits a minute, as GitHub advises. The
/// minute runs 50 times faster here (`STEWARD_TIME_SCALE`, read by debug builds only): the quiet window is
/// 1.19 s of real time, and the recorded pause still says 60,000 ms.
#[test]
fn case_01b_a_secondary_limit_without_retry_after_waits_a_minute() {
    let started = std::time::Instant::now();
    let (_sb, env) = paused_job("secondary@10", "secondary", 11..=30, 1_190, 0.02);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "no test sleeps a real minute");
    let notes = pause_notes(&env);
    assert!(notes.iter().any(|r| r["duration_ms"] == 60_000 && r["error"].as_str().unwrap().contains("secondary")));
}

/// Case 1c: `X-RateLimit-Remaining: 0` on a success stops everyone until the reset time (a whole Unix second
/// three ahead, so at least two from now, plus a second of slack).
#[test]
fn case_01c_a_spent_budget_waits_for_its_reset() {
    let (sb, _env) = paused_job("exhausted@10,retry_after=3", "exhausted", 11..=50, 1_900, 1.0);
    assert_eq!(sb.count_method("PUT"), 40, "a spent budget refuses nothing: nothing is sent again");
}

/// Case 1c, with a reset a day away: reported at once instead of slept through.
#[test]
fn case_01c_a_reset_far_away_is_reported_not_slept_through() {
    let sb = sandbox("exhausted@2,retry_after=86000", 10);
    let env = Env::with_sandbox(&sb);
    let run = env.run(&["eval", r#"let gh = connect("ghes"); for i in 3..=6 { gh.get_user(`user000${i}`); }"#]);
    let run = run.code(1).stderr_has("rate limit is spent for another").stderr_has("rate-limit reset");
    assert!(sb.stats()["total"].as_u64().unwrap() <= 3, "{}", run.report());
}

/// Case 2: a long outage (every request from the 30th on fails with 503) of a POST job. POSTs are not
/// retried blindly: each failure is checked by reading the target, and after ten failures in a row the job
/// stops sending and reports the rest as not sent. A second run, once the service is back, finishes the job
/// without sending anything twice.
#[test]
fn case_02_an_outage_stops_the_job_cleanly_and_a_rerun_finishes_it() {
    let sb = sandbox("503@30-140", 120);
    let env = Env::new();
    env.write_config(&format!(
        "max_changes = 1000\n[profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\nconcurrency = {C}\n",
        sb.running.terraform_url()
    ));
    let targets: Vec<String> = (1..=100).map(|i| format!("tfuser{i:04}")).collect();
    let expr = format!("connect(\"tfe\").suspend_all({targets:?}, #{{reason: \"outage\"}})");
    let job = || {
        let mut cmd = env.cmd();
        cmd.env("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN)
            .args(["--yes", "--format", "json", "eval", &expr]);
        let run = crate::util::Run::of(cmd);
        let results: Vec<Value> = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()));
        (run, results)
    };

    let (first, results) = job();
    assert_eq!(first.status, Some(3), "{}", first.report());
    let not_sent = results.iter().filter(|r| r["error"].as_str().unwrap_or("").contains("in a row")).count();
    assert!(not_sent > 50, "the job kept sending into the outage: {not_sent} not sent\n{}", first.report());
    let posts = |sb: &Sandbox| {
        sb.stats()["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("POST ") && k.ends_with("/actions/suspend"))
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect::<HashMap<String, u64>>()
    };
    let during = posts(&sb);
    assert!(
        during.values().sum::<u64>() < 30 + 10 + 2 * C as u64,
        "POSTs sent into the outage: {}",
        during.values().sum::<u64>()
    );

    // Let the outage run out (it is counted in requests), then run the same job again.
    while sb.stats()["total"].as_u64().unwrap() <= 140 {
        raw_get(&sb).unwrap();
    }
    let (second, results) = job();
    assert_eq!(second.status, Some(0), "{}", second.report());
    assert!(results.iter().all(|r| r["status"] == "ok" || r["status"] == "noop"), "{results:?}");
    let state = sb.state();
    for t in &targets {
        let user = state["terraform"]["users"].as_array().unwrap().iter().find(|u| u["username"] == t.as_str());
        assert_eq!(user.unwrap()["is-suspended"], true, "{t}");
    }
    // I6: a POST sent again only after the first one failed and a read found the user not suspended.
    for (path, n) in posts(&sb) {
        assert!(n <= 2, "{path} was sent {n} times");
        if n == 2 {
            assert!(during.contains_key(&path), "{path} was sent twice in one healthy run");
        }
    }
}

/// One request to the sandbox that steward does not make, to move its request counter past an outage.
fn raw_get(sb: &Sandbox) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let addr = sb.url().trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(b"GET /api/v3/users/user0001 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink)?;
    Ok(())
}

/// Where Debian's `faketime` package puts the library that fakes a process's wall clock.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Case 11: the wall clock jumps an hour back, or an hour ahead, half a second into a pause for a
/// `Retry-After` given as a date. The date is turned into a duration once, on arrival, and the pause runs on
/// the monotonic clock, so the retry comes when the server asked: not an hour late, not at the jump.
#[test]
fn case_11_a_clock_jump_during_a_retry_after_neither_stretches_nor_cuts_the_pause() {
    if crate::util::moves_the_clock_ahead(
        "case_11_a_clock_jump_during_a_retry_after_neither_stretches_nor_cuts_the_pause",
    ) {
        return;
    }
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install Debian's faketime package (apt-get install faketime)"
    );
    for jump in ["-3600", "+3600"] {
        // Requests 1-3 resolve the guard (who the token is, that account, and protected user0002); 4 is the PUT.
        let sb = sandbox("429date@4,retry_after=3", 5);
        let env = Env::with_sandbox(&sb);
        let clock = env.write("clock", "+0");
        let mut cmd = env.cmd();
        cmd.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &clock)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args([
                "--yes",
                "eval",
                r#"connect("ghes").suspend_all(["user0001"], #{reason: "clock", precheck: false})"#,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let started = std::time::Instant::now();
        let faulted = |sb: &Sandbox| sb.timeline()["faulted"].as_array().is_some_and(|f| !f.is_empty());
        while !faulted(&sb) {
            assert!(started.elapsed().as_secs() < 20, "the 429 was never served");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        std::fs::write(&clock, jump).unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed().as_secs() > 30 {
                let _ = child.kill();
                panic!("jump {jump}: still waiting 30 s later (the pause followed the wall clock)");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(status.success(), "jump {jump}: {status}");
        let (n, at) = fault_at(&sb, "429date");
        let retry = arrivals(&sb).into_iter().find(|(m, _, what)| *m > n && what.starts_with("PUT")).unwrap();
        let waited = retry.1 - at;
        // A date has whole seconds, so "three seconds" is two to three; the jump came at half a second.
        assert!((1_900..5_000).contains(&waited), "jump {jump}: the retry came {waited} ms after the 429");
        // And the jump did reach steward: its outcome row is stamped an hour away from its intent row.
        let rows = env.audit_rows(&["--op", "suspend"]);
        let ts = |phase: &str| {
            let row = rows.iter().find(|r| r["phase"] == phase).unwrap();
            chrono::DateTime::parse_from_rfc3339(row["ts"].as_str().unwrap()).unwrap()
        };
        let shift = (ts("outcome") - ts("intent")).num_seconds();
        assert!((shift - jump.parse::<i64>().unwrap()).abs() < 60, "jump {jump}: rows {shift} s apart");
    }
}

/// A pause the service imposes is said where people look: on stderr (a line in a log, the bar on a terminal).
#[test]
fn a_pause_is_shown_while_it_lasts() {
    let sb = sandbox("429@5,retry_after=1", 10);
    let env = Env::with_sandbox(&sb);
    let expr = r#"connect("ghes").suspend_all(["user0003", "user0004", "user0005"], #{reason: "x", precheck: false})"#;
    env.run(&["--yes", "eval", expr]).success().stderr_has("ghes: waiting 1 s, as the service asked");
}

/// Doubt stays doubt (issue 41): a suspension applied by the server whose answer is lost (500), and whose
/// settling read fails too (503s), is neither `failed` nor done: its intent stays open (`audit list --pending`),
/// the job ends with 3, a resume reads the account and settles it as applied without sending it again, and
/// `undo` then restores it.
#[test]
fn a_change_whose_answer_and_settling_read_are_lost_stays_in_doubt_until_a_resume() {
    let sb = sandbox("apply500@5,503@6-13", 10);
    let env = Env::with_sandbox(&sb);
    env.write("job.rhai", r#"connect("ghes").suspend_all(["user0003"], #{reason: "doubt"})"#);
    let run = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("STEWARD_TIME_SCALE", "0.01").args(args);
        crate::util::Run::of(cmd)
    };
    let first = run(&["--yes", "run", "job.rhai"]).code(3);
    assert!(first.stderr.contains("in-doubt 1"), "{}", first.report());
    let (n, _) = fault_at(&sb, "apply500");
    assert_eq!(
        arrivals(&sb).iter().find(|(m, _, _)| *m == n).map(|(_, _, w)| w.as_str()),
        Some("PUT /api/v3/users/user0003/suspended")
    );
    assert!(sb.suspended().contains(&"user0003".to_string()), "the server applied it");
    let pending = env.audit_rows(&["--pending"]);
    assert!(pending.iter().any(|r| r["op"] == "suspend" && r["target"] == "user0003"), "{pending:?}");
    run(&["--yes", "run", "job.rhai", "--resume", "1"]).success();
    assert!(env.audit_rows(&["--pending"]).is_empty());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 1, "settled by reading, not sent again");
    run(&["--yes", "undo", "1"]).success();
    assert!(!sb.suspended().contains(&"user0003".to_string()), "undo restored it");
}

/// A timed suspension left in doubt and found applied at resume is taken back in time, like one answered at
/// once: the resume schedules its restore.
#[test]
fn a_timed_change_settled_at_resume_still_schedules_its_restore() {
    let sb = sandbox("apply500@5,503@6-13", 10);
    let env = Env::with_sandbox(&sb);
    let until = (chrono::Utc::now() + chrono::Duration::days(3)).format("%Y-%m-%d").to_string();
    env.write(
        "job.rhai",
        &format!(r#"connect("ghes").suspend_all(["user0003"], #{{reason: "leave", "until": "{until}"}})"#),
    );
    let run = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("STEWARD_TIME_SCALE", "0.01").args(args);
        crate::util::Run::of(cmd)
    };
    run(&["--yes", "run", "job.rhai"]).code(3).stderr_has("in-doubt 1");
    run(&["--yes", "run", "job.rhai", "--resume", "1"]).success();
    let waiting = run(&["--format", "json", "schedule", "list"]).success();
    let rows: Value = serde_json::from_str(&waiting.stdout).unwrap();
    assert!(rows.as_array().unwrap().iter().any(|r| r["op"] == "unsuspend" && r["target"] == "user0003"), "{rows}");
}
