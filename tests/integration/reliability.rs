//! Faults in steward's own footing: a damaged or cut-short audit log, the action budget, runaway scripts,
//! two processes on one log or one account, a job resumed twice at once, and secrets planted to see whether they leak.

use crate::util::{Env, Run, Sandbox};
use std::time::{Duration, Instant};

fn suspend(env: &Env, login: &str) -> Run {
    env.run(&["eval", &format!(r#"connect("ghes").suspend("{login}", #{{reason: "x"}})"#)])
}

#[test]
fn a_log_cut_short_stops_every_action_but_can_still_be_read() {
    if crate::util::sqlite_only("a_log_cut_short_stops_every_action_but_can_still_be_read") {
        return;
    }
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    suspend(&env, "user0003").success();
    suspend(&env, "user0004").success();
    assert!(std::path::Path::new(&format!("{}.checkpoint", env.audit_db().display())).exists());
    let conn = rusqlite::Connection::open(env.audit_db()).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq > 2;").unwrap();
    drop(conn);
    suspend(&env, "user0005").code(1).stderr_has("failed its integrity check").stderr_has("tail was cut off");
    assert_eq!(
        sb.count("PUT /api/v3/users/user0005/suspended"),
        0,
        "fail closed: nothing sent without a durable intent"
    );
    env.run(&["audit", "verify"]).code(1).stderr_has("BROKEN").stderr_has("cut off");
    env.run(&["audit", "list"]).success().stdout_has("user0003");
}

#[test]
fn a_damaged_database_file_stops_every_action() {
    if crate::util::sqlite_only("a_damaged_database_file_stops_every_action") {
        return;
    }
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    suspend(&env, "user0003").success();
    let db = env.audit_db();
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 8192, "the log has pages beyond the schema");
    // Every page after the first (the schema) is flipped: the tables themselves are garbage now.
    for b in bytes.iter_mut().skip(4096) {
        *b ^= 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let run = suspend(&env, "user0006").code(1);
    assert!(run.stderr.contains("audit"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0006/suspended"), 0);
    // A script can tell its own log's failure from a service's.
    let kind = env.run(&[
        "eval",
        r#"let k = (); try { connect("ghes").suspend("user0007", #{reason: "x"}) } catch (e) { k = e.kind } k"#,
    ]);
    assert_eq!(kind.success().stdout.trim().trim_matches('"'), "audit", "a distinct kind");
    // A file that is no database at all (written over) is said once, with what to do about it.
    std::fs::write(&db, "login\nuser0001\n").unwrap();
    for f in ["audit.db-wal", "audit.db-shm"] {
        let _ = std::fs::remove_file(env.path(f));
    }
    let run = env.run(&["audit", "verify"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert_eq!(run.stderr.matches("file is not a database").count(), 1, "{}", run.report());
    assert!(run.stderr.contains("put back a copy"), "{}", run.report());
}

#[test]
fn the_action_budget_stops_a_runaway_loop_of_suspensions() {
    let sb = Sandbox::start(40);
    let env = Env::new();
    env.write_config(&format!(
        "max_changes = 5\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n",
        sb.url()
    ));
    let script =
        r#"let h = connect("ghes"); for i in 0..1000000 { h.suspend(`user00${10 + i % 30}`, #{reason: "loop"}); }"#;
    env.run(&["eval", script]).code(1).stderr_has("reached max_changes = 5").stderr_has("--yes");
    let puts = sb.count_method("PUT");
    assert_eq!(puts, 5, "zero mutations beyond the budget");
}

#[test]
fn a_wall_clock_deadline_stops_a_script() {
    let env = Env::new();
    let started = Instant::now();
    env.run(&["--timeout", "1", "eval", "let i = 0; loop { i += 1; }"])
        .code(1)
        .stderr_has("ran longer than --timeout 1 s");
    assert!(started.elapsed() < Duration::from_secs(15));
    env.write_config("script_memory_mb = 128\n");
    env.run(&["eval", "let a = \"xx\"; for i in 0..64 { a += a; }"]).code(1).stderr_has("holds more than 128 MB");
}

#[test]
fn two_processes_share_one_audit_log() {
    let sb = Sandbox::start(80);
    let env = Env::with_sandbox(&sb);
    let job = |from: usize| {
        let mut cmd = env.cmd();
        let ids: Vec<String> = (from..from + 30).map(|i| format!("user{i:04}")).collect();
        cmd.args(["--yes", "eval", &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"parallel\"}})")]);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (job(3), job(40));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.run(&["audit", "verify"]).success();
    let intents = env.audit_rows(&["--op", "suspend"]).iter().filter(|r| r["phase"] == "intent").count();
    assert!(intents >= 55, "{intents}");
}

/// A job killed twice midway (runs 1 and 2), as the crash harness kills them.
fn job_killed_twice(env: &Env, users: usize) {
    assert!(users > 30, "two kills 15 answers apart leave work for a resume");
    let ids: Vec<String> = (1..=users).map(|i| format!("user{i:04}")).filter(|u| u != "user0002").collect();
    env.write("job.rhai", &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"job\"}});"));
    for (run, resume) in [(1, None), (2, Some("1"))] {
        let mut cmd = env.cmd();
        cmd.env("STEWARD_FAILPOINT", "after_response_before_outcome:15").args(["--yes", "run", "job.rhai"]);
        if let Some(r) = resume {
            cmd.args(["--resume", r]);
        }
        let killed = Run::of(cmd);
        assert_ne!(killed.status, Some(0), "run {run} dies midway: {}", killed.report());
    }
}

#[test]
fn a_job_is_run_by_one_process_at_a_time_whichever_of_its_runs_is_resumed() {
    // The reported case: resuming run N and its continuation N+1 at once sent most suspensions twice.
    let sb = Sandbox::with(steward_sandbox::Options {
        users: 120,
        latency: Duration::from_millis(40),
        ..Default::default()
    });
    let env = Env::with_sandbox(&sb);
    let already = sb.suspended().len();
    job_killed_twice(&env, 120);
    let before = sb.count_method("PUT");
    let mut first = env.cmd();
    first.args(["--yes", "run", "job.rhai", "--resume", "1"]).stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    let started = Instant::now();
    while sb.count_method("PUT") == before && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sb.count_method("PUT") > before, "the first resume is at work");
    env.run(&["--yes", "run", "job.rhai", "--resume", "2"])
        .code(2)
        .stderr_has("belongs to job 1")
        .stderr_has("another steward process is running or resuming right now");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for i in (1..=120).filter(|i| *i != 2) {
        let put = format!("PUT /api/v3/users/user{i:04}/suspended");
        assert!(sb.count(&put) <= 1, "{put}: sent at most once over the whole job");
    }
    assert_eq!(sb.suspended().len(), 119, "the job finished");
    let sent = sb.count_method("PUT");
    assert_eq!(sent as usize, 119 - already, "one PUT per user who was not suspended yet");
    // Resuming the finished job again, by either run, sends nothing.
    env.run(&["--yes", "run", "job.rhai", "--resume", "2"]).success();
    assert_eq!(sb.count_method("PUT"), sent);
    env.run(&["audit", "verify"]).success();
}

#[test]
fn a_run_still_at_work_cannot_be_resumed_by_another_process() {
    let sb =
        Sandbox::with(steward_sandbox::Options { users: 60, latency: Duration::from_millis(40), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let ids: Vec<String> = (3..=60).map(|i| format!("user{i:04}")).collect();
    env.write("job.rhai", &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"job\"}});"));
    let mut first = env.cmd();
    first.args(["--yes", "run", "job.rhai"]).stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    let started = Instant::now();
    while sb.count_method("PUT") == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    env.run(&["--yes", "run", "job.rhai", "--resume", "1"]).code(2).stderr_has("another steward process");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let now = sb.suspended();
    for id in &ids {
        assert!(now.contains(id), "{id} is suspended");
        assert!(sb.count(&format!("PUT /api/v3/users/{id}/suspended")) <= 1, "{id}: at most once");
    }
}

#[test]
fn undo_of_any_run_of_a_job_reverses_the_whole_job() {
    let sb = Sandbox::start(60);
    let env = Env::with_sandbox(&sb);
    let before = sb.suspended();
    job_killed_twice(&env, 60);
    env.run(&["--yes", "run", "job.rhai", "--resume", "2"]).success();
    assert_eq!(sb.suspended().len(), 59);
    // Run 2 holds a part of the job, and the settled answers the kills cut off; undo of it covers all three runs.
    env.run(&["--yes", "undo", "2"]).success().stderr_has("part of job 1 (runs 1, 2, 3)");
    assert_eq!(sb.suspended(), before, "every suspension the job made was put back, and only those");
    assert_eq!(sb.count_method("DELETE") as usize, 59 - before.len(), "each once");
}

#[test]
fn two_processes_never_send_to_one_account_at_once() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    // Run 1 records its intent for user0003 and goes no further; while its process lives, that is a claim.
    let mut cmd = env.cmd();
    cmd.env("STEWARD_FAILPOINT", "after_intent_commit:1")
        .args(["eval", r#"connect("ghes").suspend("user0003", #{reason: "one"})"#]);
    assert_ne!(Run::of(cmd).status, Some(0));
    // Stand in for run 1's process still being at work: hold its lock as that process would.
    let alive = env.hold_run(1);
    for call in [
        r#"connect("ghes").suspend("user0003", #{reason: "two"})"#,
        r#"connect("ghes").suspend("USER0003", #{reason: "two"})"#,
    ] {
        let run = env.run(&["--yes", "eval", call]);
        assert_ne!(run.status, Some(0), "{call}: {}", run.report());
        assert!(run.stderr.contains("another steward process (run 1)"), "{call}: {}", run.report());
    }
    // A job skips the held account, says so, and goes on with the rest (a skip is not a failure).
    let job = r#"connect("ghes").suspend_all(["user0004", "User0003"], #{reason: "two"})"#;
    let run = env.run(&["--yes", "--format", "json", "eval", job]).success();
    assert!(
        run.stdout.contains("another steward process (run 1)") && run.stdout.contains("skipped"),
        "{}",
        run.report()
    );
    assert!(run.stderr.contains("skipped 1 accounts another steward process"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0, "never sent while run 1 holds it");
    assert_eq!(sb.count("PUT /api/v3/users/user0004/suspended"), 1, "the rest of the batch goes on");
    let busy = env.audit_rows(&["--target", "user0003"]).iter().filter(|r| r["status"] == "refused").count();
    assert!(busy >= 1, "each refusal is on record");
    // Once run 1's process is gone, its claim lapses: the next run reads user0003 and goes ahead.
    drop(alive);
    suspend(&env, "user0003").success();
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 1);
    env.run(&["audit", "verify"]).success();
}

#[test]
fn canary_tokens_appear_nowhere() {
    let sb = Sandbox::start(5);
    let env = Env::new();
    let canaries = [
        ("GHES_TOKEN", "ghp_CANARYcanaryCANARYcanary0001"),
        ("TFE_TOKEN", "CANARYcanary0001.atlasv1.CANARYcanaryCANARYcanaryCANARY"),
        ("TL_TOKEN", "tot_CANARYcanaryCANARYcanaryCANARY01"),
    ];
    env.write_config(&format!(
        "[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n[profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\n[profiles.tl]\nkind = \"transactionlink\"\nurl = \"{}\"\ntoken_env = \"TL_TOKEN\"\n",
        sb.url(),
        sb.running.terraform_url(),
        sb.running.transactionlink_url()
    ));
    let mut outputs = String::new();
    for profile in ["ghes", "tfe", "tl"] {
        for args in [
            vec!["-vv", "eval", &*format!(r#"connect("{profile}").list_users()"#)],
            vec![
                "-vv",
                "--yes",
                "eval",
                &*format!(r#"connect("{profile}").suspend_all(["a", "b"], #{{reason: "x"}})"#),
            ],
            vec!["profiles", "show", profile],
            vec!["profiles", "test", profile],
        ] {
            let mut cmd = env.cmd();
            for (k, v) in canaries {
                cmd.env(k, v);
            }
            cmd.args(&args);
            let run = Run::of(cmd);
            outputs.push_str(&run.stdout);
            outputs.push_str(&run.stderr);
        }
    }
    outputs.push_str(&String::from_utf8_lossy(&std::fs::read(env.audit_db()).unwrap_or_default()));
    outputs.push_str(&env.run(&["audit", "export"]).stdout);
    for (_, canary) in canaries {
        assert!(!outputs.contains(canary), "{canary} leaked");
        assert!(!outputs.contains(&canary[8..24]), "part of {canary} leaked");
    }
    assert!(outputs.contains("unauthorized"), "the canaries were really used");
}

#[test]
fn a_full_disk_stops_the_job_before_any_unrecorded_request() {
    if crate::util::sqlite_only("a_full_disk_stops_the_job_before_any_unrecorded_request") {
        return;
    }
    let sb = Sandbox::start(40);
    let env = Env::with_sandbox(&sb);
    suspend(&env, "user0003").success();
    let pages: i64 =
        rusqlite::Connection::open(env.audit_db()).unwrap().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let mut cmd = env.cmd();
    let ids: Vec<String> = (10..40).map(|i| format!("user{i:04}")).collect();
    cmd.env("STEWARD_AUDIT_MAX_PAGES", pages.to_string()).args([
        "--yes",
        "eval",
        &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"full\"}})"),
    ]);
    let run = Run::of(cmd);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(
        run.stderr.contains("full") || run.stdout.contains("full"),
        "the error says the disk is full: {}",
        run.report()
    );
    // The last pages filled up mid-job: what went out had its intent recorded first, and then the job stopped.
    let stats = sb.stats();
    let sent: Vec<String> = stats["requests"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| {
            k.strip_prefix("PUT /api/v3/users/").and_then(|k| k.strip_suffix("/suspended")).map(str::to_string)
        })
        .collect();
    assert!(sent.len() < 31, "the job stopped: {} sent", sent.len());
    let intents: Vec<String> = env
        .audit_rows(&["--op", "suspend"])
        .iter()
        .filter(|r| r["phase"] == "intent")
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    for t in &sent {
        assert!(intents.contains(t), "{t} reached the server without a recorded intent");
    }
    // The log is still whole and readable.
    env.run(&["audit", "verify"]).success();
}

#[test]
fn formula_cells_and_odd_logins_never_reach_a_url() {
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    env.write("evil.csv", "login\n=cmd|'/c calc'!A1\n+SUM(A1)\n../../admin\nuser0010\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    env.run(&["run", script.to_str().unwrap(), "--arg", "csv=evil.csv", "--arg", "reason=x"]).code(3);
    let out = std::fs::read_to_string(env.path("evil-suspended.csv")).unwrap();
    assert_eq!(out.matches("is not a GitHub login").count(), 3, "{out}");
    assert!(out.contains("'=cmd") && out.contains("'+SUM"), "formulas are neutralised in the result file: {out}");
    assert_eq!(sb.count_method("PUT"), 1, "only user0010 was sent");
}

#[test]
fn a_script_stopped_midway_leaves_a_note_in_the_audit_log() {
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    env.run(&["--timeout", "1", "eval", r#"connect("ghes").suspend("user0010", #{reason: "x"}); loop { }"#]).code(1);
    let notes = env.audit_rows(&["--op", "script"]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!((notes[0]["phase"].as_str(), notes[0]["status"].as_str()), (Some("note"), Some("aborted")));
    assert!(notes[0]["error"].as_str().unwrap().contains("--timeout"));
    env.run(&["audit", "verify"]).success();
}

#[test]
fn each_checkpoint_is_copied_to_syslog_when_asked() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    let socket_path = env.path("syslog.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&format!("audit_syslog = \"{}\"\n{config}", socket_path.display()));
    suspend(&env, "user0005").success();

    let mut buf = [0u8; 2048];
    let mut recv = || {
        let n = socket.recv(&mut buf).expect("a checkpoint line arrived on the syslog socket");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    // The new log's genesis anchor (seq 0) comes first, then the run's end.
    let genesis = recv();
    assert!(genesis.contains(" seq=0 hash=0000"), "{genesis}");
    let line = recv();
    assert!(line.starts_with("<85>"), "authpriv.notice: {line}");
    assert!(line.contains(" steward[") && line.contains(" seq=2 "), "{line}");
    // The copy is signed: with only the public key, the line checks out, and an edited one does not.
    let vkey = env.run(&["audit", "key"]).success().stdout.trim().to_string();
    let copy = env.write("from-syslog.txt", &line);
    env.run(&["audit", "verify", "--checkpoint", copy.to_str().unwrap(), "--key", &vkey])
        .success()
        .stdout_has("matches the signed checkpoint");
    let forged = env.write("forged.txt", &line.replace(" seq=2 ", " seq=1 "));
    env.run(&["audit", "verify", "--checkpoint", forged.to_str().unwrap(), "--key", &vkey])
        .code(1)
        .stderr_has("does not verify");
}

/// Logins the sandbox saw a suspension PUT for.
fn suspended_at_server(sb: &Sandbox) -> Vec<String> {
    sb.stats()["requests"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("PUT /api/v3/users/").and_then(|k| k.strip_suffix("/suspended")))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_write_ahead_log_deleted_mid_job_loses_no_row_even_when_the_job_is_then_killed() {
    if crate::util::sqlite_only("a_write_ahead_log_deleted_mid_job_loses_no_row_even_when_the_job_is_then_killed") {
        return;
    }
    // Fault case 7: SQLite keeps writing to a deleted -wal it holds open; without a fold, every row since the
    // deletion would vanish with the process, leaving requests at the server that the log never saw.
    let sb =
        Sandbox::with(steward_sandbox::Options { users: 400, latency: Duration::from_millis(3), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let ids: Vec<String> = (1..=400).map(|i| format!("user{i:04}")).collect();
    let job = format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"wal\", precheck: false}})");
    let mut cmd = env.cmd();
    cmd.args(["--yes", "eval", &job]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let wait_for = |n: usize| {
        let started = Instant::now();
        while suspended_at_server(&sb).len() < n {
            assert!(started.elapsed() < Duration::from_secs(60), "the job stalled below {n} requests");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(30);
    std::fs::remove_file(steward::audit::beside(&env.audit_db(), "-wal")).unwrap();
    let deleted_at = suspended_at_server(&sb).len();
    wait_for(deleted_at + 60);
    let _ = std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status();
    child.wait().unwrap();

    env.run(&["audit", "verify"]).success();
    let rows = env.audit_rows(&[]);
    let intents: Vec<&str> = rows
        .iter()
        .filter(|r| r["op"] == "suspend" && r["phase"] == "intent")
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    let sent = suspended_at_server(&sb);
    assert!(sent.len() > deleted_at + 50, "requests went out after the deletion: {} then {}", deleted_at, sent.len());
    for t in &sent {
        assert!(intents.contains(&t.as_str()), "{t} reached the server but its intent was lost with the -wal");
    }
    assert!(
        rows.iter().any(|r| r["op"] == "audit_log" && r["status"] == "wal_restored"),
        "the log says its write-ahead file was deleted"
    );
}

#[test]
fn two_overlapping_jobs_on_one_log_change_each_account_once() {
    // The race: job B reads user X (not suspended), job A suspends X and records its outcome, then B, whose
    // reading is now stale, would suspend X again. B's intent is refused instead: A acted after B read.
    let sb = Sandbox::slow(100, 20);
    let env = Env::with_sandbox(&sb);
    let ids: Vec<String> = (1..=100).map(|i| format!("user{i:04}")).filter(|u| u != "user0002").collect();
    env.write("job.rhai", &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"job\"}});"));
    let already = sb.suspended();
    let spawn = || {
        let mut cmd = env.cmd();
        cmd.args(["--yes", "run", "job.rhai"]).stderr(std::process::Stdio::piped());
        cmd.spawn().expect("steward starts")
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().expect("ends");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for id in &ids {
        let sent = sb.count(&format!("PUT /api/v3/users/{id}/suspended"));
        assert_eq!(sent, u64::from(!already.contains(id)), "{id}: changed once if it was not suspended already");
    }
    env.run(&["audit", "verify"]).success();
}
