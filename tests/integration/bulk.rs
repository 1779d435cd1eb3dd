//! Bulk jobs on the sandbox: statuses per item, dry run, confirmation, rate limits, kill -9 and resume, undo.

use crate::util::{Env, Run, Sandbox};
use serde_json::Value;
use std::time::Duration;
use steward_sandbox::faults::Faults;
use steward_sandbox::Options;

fn results(run: &Run) -> Vec<Value> {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()))
}

fn status_of<'a>(results: &'a [Value], target: &str) -> &'a str {
    results.iter().find(|r| r["target"] == target).and_then(|r| r["status"].as_str()).unwrap_or("missing")
}

#[test]
fn a_mixed_csv_gives_exactly_the_expected_statuses() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    env.write("leavers.csv", "\u{feff}Login,Reason\r\nuser0010,\r\n\"user0011\",\"moved, abroad\"\r\n\r\nnobody,\r\nuser0025,\r\nuser0002,\r\nbad,line,here\r\nuser0010,\r\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    let run =
        env.run(&["run", script.to_str().unwrap(), "--arg", "csv=leavers.csv", "--arg", "reason=left the company"]);
    let run = run.code(3).stderr_has("suspend_all on ghes (run 1): 7 items").stderr_has("line 8: 3 fields");
    let csv = std::fs::read_to_string(env.path("leavers-suspended.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "line,target,status,http_status,error", "{}", run.report());
    // Each row is written as its result is known (a job of any size holds none back), so in the order they
    // came; each names its line.
    let mut statuses: Vec<String> =
        lines[1..].iter().map(|l| l.split(',').take(3).collect::<Vec<_>>().join(",")).collect();
    statuses.sort_by_key(|s| s.split(',').next().and_then(|n| n.parse::<u32>().ok()));
    assert_eq!(
        statuses,
        vec![
            "2,user0010,ok",
            "3,user0011,ok",
            "5,nobody,failed",
            "6,user0025,noop",
            "7,user0002,skipped",
            "8,,failed",
            "9,user0010,skipped"
        ],
        "{csv}"
    );
    assert!(csv.contains("no user \"\"nobody\"\" on this server") || csv.contains("no user"), "{csv}");
    assert_eq!(sb.count("PUT /api/v3/users/user0010/suspended"), 1);
    assert_eq!(sb.count("PUT /api/v3/users/user0025/suspended"), 0, "a noop sends nothing");
    assert_eq!(sb.count("PUT /api/v3/users/user0002/suspended"), 0, "a protected login is never sent");
    // The row's own reason went to the service's request and to our log.
    let rows = env.audit_rows(&["--target", "user0011", "--op", "suspend"]);
    assert!(rows[0]["params"].as_str().unwrap().contains("moved, abroad"), "{rows:?}");
}

#[test]
fn dry_run_changes_nothing_at_all_and_shows_the_plan() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let before = sb.state();
    let run = env
        .run(&[
            "--dry-run",
            "--format",
            "json",
            "eval",
            r#"connect("ghes").suspend_all(["user0010", "user0025", "user0002", "nobody"], #{reason: "x"})"#,
        ])
        .code(3);
    let r = results(&run);
    assert_eq!(status_of(&r, "user0010"), "dry-run");
    assert_eq!(status_of(&r, "user0025"), "noop");
    assert_eq!(status_of(&r, "user0002"), "skipped");
    assert_eq!(status_of(&r, "nobody"), "failed");
    assert_eq!(sb.state(), before, "the sandbox state is byte-for-byte the same");
    let puts = sb.count_method("PUT");
    assert_eq!(puts, 0);
    let rows = env.audit_rows(&["--target", "user0010"]);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["mode"].as_str(), rows[0]["status"].as_str()), (Some("dry-run"), Some("dry-run")));
}

#[test]
fn more_changes_than_max_changes_need_yes() {
    let sb = Sandbox::start(30);
    let env = Env::new();
    env.write_config(&format!(
        "max_changes = 3\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n",
        sb.url()
    ));
    let expr = r#"connect("ghes").promote_all(["user0011", "user0012", "user0013", "user0014"])"#;
    env.run(&["eval", expr]).code(1).stderr_has("exceed max_changes = 3").stderr_has("--yes");
    assert_eq!(sb.count("PUT /api/v3/users/user0011/site_admin"), 0);
    env.run(&["--yes", "eval", expr]).success();
    assert_eq!(sb.count("PUT /api/v3/users/user0011/site_admin"), 1);
}

#[test]
fn suspensions_in_bulk_need_a_reason() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect("ghes").suspend_all(["user0001"])"#]).code(1).stderr_has("needs a reason");
    // The stock script says it in the words of its command line, as a usage error, before sending anything.
    env.write("leavers.csv", "login\nuser0003\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    env.run(&["run", script.to_str().unwrap(), "--arg", "csv=leavers.csv"])
        .code(2)
        .stderr_has("this script needs --arg reason=\"…\"");
    env.run(&["run", script.to_str().unwrap()]).code(2).stderr_has("needs --arg csv=…");
    // Rows that all carry their own reason need no --arg.
    env.write("with-reasons.csv", "login,reason\nuser0003,left\n");
    env.run(&["run", script.to_str().unwrap(), "--arg", "csv=with-reasons.csv"]).success();
    assert_eq!(sb.count_method("PUT"), 1);
}

#[test]
fn a_429_storm_slows_the_job_but_loses_nothing() {
    let mut faults = Faults::parse("429=0.2", 3).unwrap();
    faults.retry_after_s = 1;
    let sb = Sandbox::with(Options { users: 60, faults, ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let logins: Vec<String> = (30..50).map(|i| format!("user{i:04}")).collect();
    let expr = format!("connect(\"ghes\").suspend_all({logins:?}, #{{reason: \"storm\"}})");
    let run = env.run(&["--yes", "--format", "json", "eval", &expr]).success();
    let r = results(&run);
    assert!(r.iter().all(|x| x["status"] == "ok" || x["status"] == "noop"), "{r:?}");
    for l in &logins {
        assert!(sb.suspended().contains(l), "{l} not suspended");
    }
    assert!(sb.stats()["faults"].as_u64().unwrap() > 0);
    let intents = env.audit_rows(&["--op", "suspend"]).into_iter().filter(|e| e["phase"] == "intent").count();
    assert!(intents <= logins.len(), "one intent per user at most: {intents}");
    // Each pause the server imposed is on record.
    let pauses = env.audit_rows(&["--op", "rate_limit"]);
    assert!(!pauses.is_empty() && pauses.iter().all(|p| p["phase"] == "note" && p["status"] == "paused"), "{pauses:?}");
    assert!(pauses[0]["error"].as_str().unwrap().contains("429"), "{pauses:?}");
}

#[test]
fn kill_9_mid_job_then_resume_suspends_everyone_exactly_once() {
    let n = 2000;
    let sb = Sandbox::with(Options { users: n, latency: Duration::from_millis(4), ..Default::default() });
    let env = Env::new();
    env.write_config(&format!("max_changes = 100000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = 8\n", sb.url()));
    // user0025, 0050 … are suspended already; the rest are the job.
    let mut csv = String::from("login\n");
    for i in 1..=n {
        csv.push_str(&format!("user{i:04}\n"));
    }
    env.write("all.csv", &csv);
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    let args = ["run", script.to_str().unwrap(), "--arg", "csv=all.csv", "--arg", "reason=offboarding"];
    let mut child =
        env.cmd().args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Wait until the job is well under way, then kill it without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sb.suspended().len() < 400 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    let _ = child.wait();
    let done_before = sb.suspended().len();
    assert!(done_before < n, "the job finished before it was killed ({done_before})");

    let mut resume_args = args.to_vec();
    resume_args.extend(["--resume", "1"]);
    env.run(&resume_args).success().stderr_has("resuming run 1");

    assert_eq!(sb.suspended().len(), n, "everyone is suspended");
    let stats = sb.stats();
    let puts = stats["requests"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("PUT ")).collect::<Vec<_>>();
    assert!(puts.iter().all(|(_, v)| v.as_u64() == Some(1)), "a user was suspended twice");
    assert_eq!(puts.len(), n - n / 25, "one PUT per user who was not already suspended");
    env.run(&["audit", "verify"]).success();
    // Nothing is left pending: what the kill cut off was read by the resume and settled against its intent.
    let pending = env.audit_rows(&["--pending"]);
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn running_the_same_job_again_sends_nothing_new() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let expr = r#"connect("ghes").suspend_all(["user0010", "user0011"], #{reason: "x"}).map(|r| r.status)"#;
    assert_eq!(env.eval_json(expr), serde_json::json!(["ok", "ok"]));
    assert_eq!(env.eval_json(expr), serde_json::json!(["noop", "noop"]));
    assert_eq!(sb.count("PUT /api/v3/users/user0010/suspended"), 1);
}

#[test]
fn undo_restores_the_starting_state() {
    let sb = Sandbox::start(60);
    let env = Env::with_sandbox(&sb);
    let before = sb.state();
    env.eval_json(r#"let h = connect("ghes"); h.suspend_all(["user0010", "user0011", "user0025"], #{reason: "x"}); h.promote_all(["user0012", "user0050"])"#);
    assert_ne!(sb.state(), before);
    let run = env.run(&["--yes", "--format", "json", "undo", "1"]).success();
    let r = results(&run);
    assert_eq!(r.len(), 3, "user0025 and user0050 were noops, so only three changes are undone: {r:?}");
    let after = sb.state();
    let strip = |v: &Value| -> Vec<(Value, bool, bool)> {
        v["github"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["login"].clone(), u["site_admin"] == true, !u["suspended_at"].is_null()))
            .collect()
    };
    assert_eq!(strip(&after), strip(&before));
    // The undo is itself an audited run, and undoing it again puts the changes back.
    assert!(env.audit_rows(&["--run", "2"]).iter().any(|e| e["op"] == "unsuspend" && e["status"] == "ok"));
    env.run(&["undo", "99"]).code(2).stderr_has("there is no run 99");
}

#[test]
fn a_list_users_snapshot_seeds_the_sandbox_for_a_rehearsal() {
    let sb = Sandbox::start(12);
    let env = Env::with_sandbox(&sb);
    let run = env.run(&["--format", "json", "eval", r#"connect("ghes").list_users(#{detail: true})"#]).success();
    let seed = env.write("users.json", &run.stdout);
    let copy = Sandbox::with(Options { seed: Some(seed), ..Default::default() });
    let logins = |s: &Sandbox| -> Vec<(Value, Value)> {
        s.state()["github"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["login"].clone(), u["suspended_at"].is_null().into()))
            .collect()
    };
    assert_eq!(logins(&copy), logins(&sb));
}

#[test]
fn the_other_stock_scripts_run() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let script = |name: &str| crate::util::repo().join("scripts").join(name).to_string_lossy().to_string();
    env.write("back.csv", "login\nuser0025\nuser0003\n");
    env.run(&["run", &script("bulk_unsuspend.rhai"), "--arg", "csv=back.csv"]).success();
    assert!(!sb.suspended().contains(&"user0025".to_string()));
    let unsus = std::fs::read_to_string(env.path("back-unsuspended.csv")).unwrap();
    assert!(unsus.contains("user0003,noop"), "{unsus}");

    env.write("admins.csv", "email\nuser0013@example.com\nnobody@example.com\n");
    env.run(&["run", &script("promote_from_csv.rhai"), "--arg", "csv=admins.csv"]).code(3);
    let promoted = std::fs::read_to_string(env.path("admins-promoted.csv")).unwrap();
    assert!(
        promoted.contains("user0013,ok")
            && promoted.contains("nobody@example.com,failed,,no user with email nobody@example.com"),
        "{promoted}"
    );
    env.run(&["--yes", "run", &script("demote_from_csv.rhai"), "--arg", "csv=admins.csv"]).code(3);
    assert!(std::fs::read_to_string(env.path("admins-demoted.csv")).unwrap().contains("user0013,ok"));

    // Offboarding deletes what cannot be undone (GHES impersonation tokens at least): without --yes it asks, and
    // with nobody to ask the run fails, having changed nothing.
    env.run(&["run", &script("offboard.rhai"), "--arg", "emails=user0014@example.com", "--arg", "reason=left"])
        .code(1)
        .stderr_has("cannot be undone");
    assert!(!sb.suspended().contains(&"user0014".to_string()));
    env.run(&[
        "--yes",
        "run",
        &script("offboard.rhai"),
        "--arg",
        "emails=user0014@example.com, ghost@example.com",
        "--arg",
        "reason=left",
    ])
    // A person found on no service (ghost) is not offboarded: said on the terminal, and the exit code is 3.
    .code(3)
    .stdout_has("offboard-results-run")
    .stdout_has("found on no service");
    assert!(sb.suspended().contains(&"user0014".to_string()));
    let off = std::fs::read_to_string(env.run_file("offboard-results.csv")).unwrap();
    assert!(
        off.contains("user0014@example.com,ghes,user0014,email user0014@example.com,done")
            && off.contains("ghost@example.com,ghes,,,no account"),
        "{off}"
    );

    env.run(&["run", &script("audit_report.rhai"), "--arg", "out=report.csv"]).success().stdout_has("actions written");
    let report = std::fs::read_to_string(env.path("report.csv")).unwrap();
    assert!(report.contains(",suspend,user0014,live,ok,"), "{report}");

    // GHES's activity is its all-users report (answered 202 while GHES makes it, then the CSV): the report and
    // the suspension reach exactly the accounts idle 90 days or more, or never active.
    let idle = |i: usize| steward_sandbox::ghes::days_idle(i).is_none_or(|d| d >= 90);
    let mut inactive: Vec<String> = (1..=30).filter(|i| idle(*i)).map(|i| format!("user{i:04}")).collect();
    inactive.push("ldap-user".into());
    env.run(&["run", &script("inactive_report.rhai"), "--arg", "since=90d", "--arg", "out=inactive.csv"])
        .success()
        .stdout_has("activity from last_active in the site-admin all-users report");
    let listed: Vec<String> = std::fs::read_to_string(env.path("inactive.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, inactive);
    assert_eq!(sb.count("GET /stafftools/reports/all_users.csv"), 2, "202, then the report");
    env.run(&[
        "--yes",
        "run",
        &script("suspend_inactive.rhai"),
        "--arg",
        "since=90d",
        "--arg",
        "apply=true",
        "--arg",
        "out=dormant.csv",
    ])
    .code(3);
    // GHES refuses to suspend a user its LDAP sync manages: that one fails, saying so; the rest are suspended.
    let results = std::fs::read_to_string(env.path("dormant.csv")).unwrap();
    assert!(results.lines().any(|l| l.starts_with("ldap-user,failed,403")), "{results}");
    let suspended = sb.suspended();
    assert!(inactive.iter().filter(|u| *u != "ldap-user").all(|u| suspended.contains(u)), "{suspended:?}");
    let active = (1..=30).filter(|i| !idle(*i) && i % 25 != 0).map(|i| format!("user{i:04}"));
    assert!(active.clone().all(|u| !suspended.contains(&u)), "{suspended:?}");
}

/// `scripts/bulk_suspend.rhai` over `leavers.csv`, stopped with Ctrl-C once the service has seen `puts` PUTs; it
/// ends with 130.
fn bulk_suspend_stopped_after(sb: &Sandbox, env: &Env, puts: u64) {
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    let mut cmd = env.cmd();
    cmd.args(["--yes", "run", script.to_str().unwrap(), "--arg", "csv=leavers.csv", "--arg", "reason=left"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while sb.count_method("PUT") < puts && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: a plain signal to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The reported case: a job stopped with Ctrl-C wrote no results CSV. Its bulk call now returns every item's
/// result (unsent ones `cancelled`), the script writes them down, nothing more is sent or logged, and the exit
/// is 130.
#[test]
fn a_job_stopped_with_ctrl_c_still_writes_its_results_and_sends_nothing_more() {
    let sb =
        Sandbox::with(Options { users: 120, latency: std::time::Duration::from_millis(100), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let rows: String = (3..=120).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{rows}"));
    bulk_suspend_stopped_after(&sb, &env, 5);
    let sent = sb.count_method("PUT");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sb.count_method("PUT"), sent, "nothing is sent after the process ended");
    let results = std::fs::read_to_string(env.path("leavers-suspended.csv")).expect("the results CSV was written");
    assert_eq!(results.lines().count(), 119, "a row per input line: {results}");
    assert!(results.contains(",cancelled,"), "{results}");
    assert!(results.matches(",ok,").count() as u64 <= sent, "{results}");
    // Only a request in flight at the stop is in doubt; the rest were never sent and say so, not "failed".
    assert!(!results.contains(",failed,"), "{results}");
    let in_doubt: Vec<&str> = results.lines().filter(|r| r.contains(",in-doubt,")).collect();
    for row in &in_doubt {
        assert!(row.contains("it may have been applied"), "{row}");
    }
    // No intent is written once the job has stopped: those already ahead (at most 8 chunks of 4) are closed,
    // the rest of the 118 have none, and only those in flight at the stop are left open, for a resume to settle.
    let rows = env.audit_rows(&["--run", "1"]);
    let intents: Vec<&serde_json::Value> = rows.iter().filter(|r| r["phase"] == "intent").collect();
    assert!(intents.len() as u64 <= sent + 9 * 4, "{} intents for {sent} requests", intents.len());
    let open: Vec<&&serde_json::Value> =
        intents.iter().filter(|i| !rows.iter().any(|o| o["intent_seq"] == i["seq"])).collect();
    assert_eq!(open.len(), in_doubt.len(), "an open intent for each request in doubt, and no other: {open:?}");
    for intent in open {
        let target = intent["target"].as_str().unwrap_or_default();
        assert!(in_doubt.iter().any(|r| r.contains(&format!(",{target},"))), "open, not in doubt: {intent}");
    }
}

/// Ctrl-C while requests are in flight at 400 ms: what reached the server is not "cancelled". The resume reads
/// each account in doubt and records it as applied by the run that sent it, so the job's undo puts every user
/// back as they were before it, and nothing is left pending.
#[test]
fn requests_in_flight_at_ctrl_c_are_settled_by_the_resume_and_reversed_by_undo() {
    let sb = Sandbox::with(Options { users: 60, latency: std::time::Duration::from_millis(400), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let before = sb.suspended();
    let rows: String = (3..=60).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{rows}"));
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    let args = ["--yes", "run", script.to_str().unwrap(), "--arg", "csv=leavers.csv", "--arg", "reason=left"];
    let mut cmd = env.cmd();
    cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    // Stop as the first answers come back: the next requests are on their way.
    while sb.count_method("PUT") < 6 && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    // SAFETY: a plain signal to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let results = std::fs::read_to_string(env.path("leavers-suspended.csv")).expect("results");
    assert!(results.contains(",in-doubt,"), "the test stopped nothing in flight: {results}");
    let pending = env.audit_rows(&["--pending"]);
    assert!(!pending.is_empty(), "what was in flight is pending until a resume settles it");
    // In doubt is only what had left (at most the profile's 4 in flight); items still waiting for their turn
    // were never sent: cancelled, their intents closed.
    let in_doubt = results.lines().filter(|l| l.contains(",in-doubt,")).count();
    assert!(in_doubt <= 4 && pending.len() <= 4, "{in_doubt} in doubt, {} pending: {results}", pending.len());
    assert!(results.contains(",cancelled,"), "{results}");

    let mut resume: Vec<&str> = args.to_vec();
    resume.extend(["--resume", "1"]);
    env.run(&resume).success();
    assert_eq!(env.audit_rows(&["--pending"]), Vec::<serde_json::Value>::new(), "nothing is left pending");
    let settled = env.audit_rows(&["--run", "2"]);
    let applied: Vec<&serde_json::Value> = settled
        .iter()
        .filter(|r| r["phase"] == "outcome" && r["status"] == "ok")
        .filter(|r| r["error"].as_str().unwrap_or_default().contains("settled at resume: the change had been applied"))
        .collect();
    assert!(!applied.is_empty(), "the requests in doubt had reached the server: {settled:#?}");

    env.run(&["--yes", "undo", "1"]).success();
    assert_eq!(sb.suspended(), before, "undo of the job put back every user it suspended, those in doubt included");
}

/// A CSV read line by line into a job may name people by email: they are looked up in one walk of the users
/// (in detail: a GHES listing says no emails), only when some row needs it, and an email two accounts share
/// names nobody.
#[test]
fn rows_named_by_email_are_looked_up_once_and_a_shared_email_names_nobody() {
    use crate::hostile::{json, Hostile, Reply};
    let server = Hostile::start(|seen| {
        let record = |login: &str, id: u32, email: &str| {
            json(format!(r#"{{"login": "{login}", "id": {id}, "email": "{email}", "suspended_at": null}}"#))
        };
        match seen.line.split(' ').take(2).collect::<Vec<_>>().as_slice() {
            ["GET", "/api/v3/users?per_page=100"] => json(
                r#"[{"login": "ann", "id": 1, "type": "User"}, {"login": "bea", "id": 2, "type": "User"},
                    {"login": "cy", "id": 3, "type": "User"}]"#,
            ),
            ["GET", "/api/v3/users/ann"] => record("ann", 1, "shared@example.com"),
            ["GET", "/api/v3/users/bea"] => record("bea", 2, "SHARED@example.com"),
            ["GET", "/api/v3/users/cy"] => record("cy", 3, "cy@example.com"),
            // Who steward acts as (never acted on itself).
            ["GET", "/api/v3/user"] => record("root", 99, "root@example.com"),
            ["PUT", _] => Reply::Json { status: 204, headers: Vec::new(), body: String::new() },
            _ => Reply::Json { status: 404, headers: Vec::new(), body: r#"{"message": "Not Found"}"#.into() },
        }
    });
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.h]\nkind = \"github\"\nurl = \"{}/api/v3\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 5\n",
        server.base()
    ));
    let walks = || server.seen().iter().filter(|s| s.line.starts_with("GET /api/v3/users?")).count();
    env.write("by-login.csv", "login\nbea\n");
    let job = r#"connect("h").suspend_all(ARGS.csv, #{reason: "left", results: ARGS.out}).ok"#;
    env.write("job.rhai", job);
    env.run(&["run", "job.rhai", "--arg", "csv=by-login.csv", "--arg", "out=a.csv"]).success();
    assert_eq!(walks(), 0, "no row named by email: nobody is looked up");

    env.write("mixed.csv", "login,email\n,shared@example.com\n,CY@example.com\n,ghost@example.com\nann,\n");
    env.run(&["run", "job.rhai", "--arg", "csv=mixed.csv", "--arg", "out=b.csv"]).code(3);
    assert_eq!(walks(), 1, "one walk for every row named by email");
    let results = std::fs::read_to_string(env.path("b.csv")).unwrap();
    let row = |line: &str| results.lines().find(|l| l.starts_with(line)).unwrap_or_default().to_string();
    assert_eq!(
        row("2,"),
        "2,shared@example.com,failed,,\"2 users have the email shared@example.com (ann, bea): name the login instead\"",
        "{results}"
    );
    assert!(row("3,").starts_with("3,cy,ok,204"), "{results}");
    assert_eq!(row("4,"), "4,ghost@example.com,failed,,no user with email ghost@example.com", "{results}");
    assert!(row("5,").starts_with("5,ann,ok,204"), "{results}");
    let puts: Vec<String> =
        server.seen().iter().filter(|s| s.line.starts_with("PUT")).map(|s| s.line.clone()).collect();
    assert_eq!(puts.len(), 3, "bea (first job), cy and ann: {puts:?}");
}

/// The attack on the email lookup: a protected account named by its email (in another case) in a CSV the stock
/// script streams. The lookup only finds the login; the job's guard, which resolves every target to its account,
/// still refuses it, and nothing is sent for it.
#[test]
fn a_protected_account_named_by_email_in_a_streamed_csv_is_still_refused() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    env.write("leavers.csv", "email\nUSER0002@Example.com\nuser0010@example.com\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    env.run(&["run", script.to_str().unwrap(), "--arg", "csv=leavers.csv", "--arg", "reason=left"]).success();
    let results = std::fs::read_to_string(env.path("leavers-suspended.csv")).unwrap();
    assert!(results.lines().any(|l| l.starts_with("2,user0002,skipped,,protected")), "{results}");
    assert!(results.lines().any(|l| l.starts_with("3,user0010,ok,")), "{results}");
    assert_eq!(sb.count("PUT /api/v3/users/user0002/suspended"), 0, "a protected account is never sent");
    assert!(!sb.suspended().contains(&"user0002".to_string()));
}

/// The reported attacks: after a kill, the input CSV gained 20 rows (or the imported module changed which rows
/// count), and the resume acted on accounts that were never in the job. Every file the script read is pinned
/// by its SHA-256 in the audit log; a resume with any changed is refused, naming the file and both digests,
/// and sends nothing; with the files put back it finishes the job.
#[test]
fn a_resume_after_an_input_file_or_imported_module_changed_is_refused() {
    let sb = Sandbox::start(80);
    let env = Env::with_sandbox(&sb);
    let original: String = (10..=29).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{original}"));
    env.write("rules.rhai", "fn wanted(login) { true }\n");
    env.write(
        "job.rhai",
        r#"import "rules" as rules;
        let rows = read_csv(ARGS.csv).filter(|r| rules::wanted(r.login)).map(|r| r.login);
        connect("ghes").suspend_all(rows, #{reason: "left"});"#,
    );
    let args = ["--yes", "run", "job.rhai", "--arg", "csv=leavers.csv"];
    let killed = crate::util::run_services(&env, &args, Some("after_intent_commit:3"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    let sent = sb.count_method("PUT");
    assert!(sent < 20, "the job was killed midway ({sent} sent)");
    let mut resume = args.to_vec();
    resume.extend(["--resume", "1"]);

    let extra: String = (51..=70).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{original}{extra}"));
    let refused = env.run(&resume).code(2);
    assert!(refused.stderr.contains("leavers.csv changed since the job read it"), "{}", refused.report());
    assert_eq!(refused.stderr.matches("sha256").count(), 1, "{}", refused.report());
    assert!(refused.stderr.contains(" now "), "{}", refused.report());
    assert_eq!(sb.count_method("PUT"), sent, "a refused resume sends nothing");

    env.write("leavers.csv", &format!("login\n{original}"));
    env.write("rules.rhai", "fn wanted(login) { login != \"nobody\" }\n");
    env.run(&resume).code(2).stderr_has("rules.rhai changed since the job read it");
    assert_eq!(sb.count_method("PUT"), sent);

    env.write("rules.rhai", "fn wanted(login) { true }\n");
    env.run(&resume).success();
    let suspended = sb.suspended();
    assert!((10..=29).all(|i| suspended.contains(&format!("user{i:04}"))), "{suspended:?}");
    assert!(!(51..=70).any(|i| suspended.contains(&format!("user{i:04}"))), "{suspended:?}");
}

/// The reported case: a quoted field closing a few lines later silently swallowed those rows ("2 rows, 0
/// failed"). The stock script's job now fails that row, naming the lines in its result and on stderr, and the
/// rows around it go ahead.
#[test]
fn a_stray_quote_in_a_csv_job_fails_its_row_naming_the_lines_it_spans() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    env.write("leavers.csv", "login,reason\nuser0010,\"left\nuser0011,x\nuser0012,y\"\nuser0013,z\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    let run = env
        .run(&["--yes", "run", script.to_str().unwrap(), "--arg", "csv=leavers.csv", "--arg", "reason=left"])
        .code(3);
    assert!(run.stderr.contains("lines 2-4: a quoted field spans 3 lines"), "{}", run.report());
    let results = std::fs::read_to_string(env.path("leavers-suspended.csv")).expect("results");
    assert!(results.contains("lines 2-4"), "{results}");
    assert_eq!(results.matches(",failed,").count(), 1, "{results}");
    assert_eq!(
        sb.suspended(),
        ["user0013", "user0025"],
        "only the row after the stray quote was acted on (user0025 was already)"
    );
}

/// A resume settles every intent its job left open, also those its script no longer reaches (it saw the change
/// in place and took another path): read now, recorded as applied by the run that sent it, so `audit list
/// --pending` is empty after the resume and undo of the job reverses the change.
#[test]
fn a_resume_settles_the_intents_its_script_no_longer_reaches() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    env.write(
        "job.rhai",
        r#"let h = connect("ghes");
        if !h.get_user("user0010").suspended { h.suspend("user0010", #{reason: "left"}); }"#,
    );
    let killed =
        crate::util::run_services(&env, &["--yes", "run", "job.rhai"], Some("after_response_before_outcome:1"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    assert!(sb.suspended().contains(&"user0010".to_string()), "the suspension reached the server");
    assert_eq!(env.audit_rows(&["--pending"]).len(), 1);
    env.run(&["--yes", "run", "job.rhai", "--resume", "1"]).success();
    assert_eq!(env.audit_rows(&["--pending"]), Vec::<Value>::new(), "nothing is left pending");
    let settled = env.audit_rows(&["--run", "2", "--op", "suspend"]);
    assert!(settled.iter().any(|r| r["status"] == "ok" && r["intent_seq"].is_i64()), "{settled:#?}");
    env.run(&["--yes", "undo", "1"]).success();
    assert!(!sb.suspended().contains(&"user0010".to_string()), "undo of the job reversed the settled change");
}

/// A CSV longer than a window (5,000 rows) is read, planned and carried out window by window: every row gets its
/// result, an account named again in a later window is a duplicate (never sent twice), and each user is
/// suspended once.
#[test]
fn a_csv_job_longer_than_a_window_acts_once_per_account_across_windows() {
    let n = 11_000;
    let sb = Sandbox::start(n);
    let env = Env::with_sandbox(&sb);
    let rows: String = (1..=n).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{rows}USER0003\n"));
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    env.run(&["--yes", "run", script.to_str().unwrap(), "--arg", "csv=leavers.csv", "--arg", "reason=left"])
        .success()
        .stdout_has(&format!("({} rows, 0 failed)", n + 1));
    let results = std::fs::read_to_string(env.path("leavers-suspended.csv")).expect("results");
    assert_eq!(results.lines().count(), n + 2, "a result per row, and the header");
    // Rows are written as their results are known: the duplicate is found by its line.
    let last = results.lines().find(|l| l.starts_with(&format!("{},", n + 2))).unwrap_or_default();
    assert!(last.contains(",skipped,") && last.contains("duplicate of item 4"), "{last}");
    // The sandbox profile protects user0002.
    let odd: Vec<&str> = results.lines().skip(1).filter(|l| !l.contains(",ok,") && !l.contains(",noop,")).collect();
    assert_eq!(odd.len(), 2, "{odd:?}");
    assert_eq!(sb.suspended().len(), n - 1);
    let stats = sb.stats();
    let puts = stats["requests"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("PUT ")).count();
    assert_eq!(puts, n - n / 25 - 1, "one PUT per user not suspended before");
    assert!(stats["requests"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("PUT ")).all(|(_, v)| v == 1));
}

/// Ctrl-C in a job's first window: the windows after it are reported row by row as not sent, and nothing of
/// theirs is read or sent.
#[test]
fn ctrl_c_in_a_windowed_job_reports_the_later_windows_unsent_and_reads_nothing_of_them() {
    let n = 6_000;
    let sb = Sandbox::with(Options { users: n, latency: Duration::from_millis(30), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let rows: String = (1..=n).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{rows}"));
    bulk_suspend_stopped_after(&sb, &env, 20);
    let results = std::fs::read_to_string(env.path("leavers-suspended.csv")).expect("results");
    assert_eq!(results.lines().count(), n + 1, "a result for every row");
    let late: Vec<&str> = results.lines().filter(|l| l.starts_with("5002,")).collect();
    assert!(late.iter().all(|l| l.contains(",cancelled,")), "{late:?}");
    let stats = sb.stats();
    let second = |k: &&String| k.contains("/users/user5") && !k.contains("/users/user5000");
    let touched = stats["requests"].as_object().unwrap().keys().filter(second).count();
    assert_eq!(touched, 0, "nothing of the second window was read or sent");
}

/// Another file under the name the job read: the input is a link, pointed elsewhere before the resume (the
/// file the job read is still there, unchanged). The resume reads another real file than the job did: refused.
#[test]
fn a_resume_through_a_link_that_now_leads_to_another_file_is_refused() {
    let sb = Sandbox::start(80);
    let env = Env::with_sandbox(&sb);
    let original: String = (10..=29).map(|i| format!("user{i:04}\n")).collect();
    let extra: String = (51..=70).map(|i| format!("user{i:04}\n")).collect();
    env.write("a.csv", &format!("login\n{original}"));
    env.write("b.csv", &format!("login\n{original}{extra}"));
    std::os::unix::fs::symlink(env.path("a.csv"), env.path("leavers.csv")).unwrap();
    env.write("job.rhai", r#"connect("ghes").suspend_all(ARGS.csv, #{reason: "left", results: "out.csv"});"#);
    let args = ["--yes", "run", "job.rhai", "--arg", "csv=leavers.csv"];
    let killed = crate::util::run_services(&env, &args, Some("after_intent_commit:3"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    let sent = sb.count_method("PUT");
    std::fs::remove_file(env.path("leavers.csv")).unwrap();
    std::os::unix::fs::symlink(env.path("b.csv"), env.path("leavers.csv")).unwrap();
    let mut resume = args.to_vec();
    resume.extend(["--resume", "1"]);
    let refused = env.run(&resume);
    assert_ne!(refused.status, Some(0), "{}", refused.report());
    assert!(refused.stderr.contains("b.csv was not read by the job"), "{}", refused.report());
    assert_eq!(sb.count_method("PUT"), sent, "nothing was sent");
    assert!(!(51..=70).any(|i| sb.suspended().contains(&format!("user{i:04}"))));
}

/// A file the script writes and reads back is its own output, not an input: a resume writes it again (here with
/// another time in it) and goes on.
#[test]
fn a_file_the_script_writes_and_reads_back_does_not_stop_its_resume() {
    let sb = Sandbox::start(40);
    let env = Env::with_sandbox(&sb);
    env.write(
        "job.rhai",
        r#"let at = `${now()}`;
        write_csv("list.csv", ["user0010", "user0011", "user0012", "user0013"].map(|l| #{login: l, at: at}));
        connect("ghes").suspend_all(read_csv("list.csv"), #{reason: "left"});"#,
    );
    let killed = crate::util::run_services(&env, &["--yes", "run", "job.rhai"], Some("after_intent_commit:2"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    // `now()` counts seconds: the resume writes another time into the file.
    std::thread::sleep(Duration::from_millis(1100));
    env.run(&["--yes", "run", "job.rhai", "--resume", "1"]).success();
    let suspended = sb.suspended();
    assert!((10..=13).all(|i| suspended.contains(&format!("user{i:04}"))), "{suspended:?}");
}
