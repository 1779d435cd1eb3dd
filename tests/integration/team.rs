//! Team mode: the audit log on a real PostgreSQL server (`audit_url`), shared by several steward processes.

use crate::pg::{self, Postgres};
use crate::util::{Env, Run, Sandbox};
use std::process::Command;

/// An env whose audit log is the team log on `pg`, reached as `user` (password from `PGPW`).
fn team_env(sb: &Sandbox, pg: &Postgres, user: &str) -> Env {
    let env = Env::with_sandbox(sb);
    let config = std::fs::read_to_string(env.path("config.toml")).expect("config");
    env.write_config(&format!(
        "audit_url = \"{}\"\naudit_password_env = \"PGPW\"\nmax_changes = 1000\n{config}",
        pg.url(user)
    ));
    env
}

fn password_of(user: &str) -> &'static str {
    if user == pg::WRITER {
        pg::WRITER_PASSWORD
    } else {
        pg::SUPER_PASSWORD
    }
}

/// The steward binary in `env`, on the team log as `user`.
fn team_cmd(env: &Env, user: &str) -> Command {
    let mut cmd = env.cmd();
    cmd.env_remove("STEWARD_AUDIT_DB").env_remove("STEWARD_AUDIT_URL").env("PGPW", password_of(user));
    cmd
}

fn team_run(env: &Env, user: &str, args: &[&str]) -> Run {
    let mut cmd = team_cmd(env, user);
    cmd.args(args);
    Run::of(cmd)
}

/// Waits for steward processes, each of which must succeed (the failure shows its stderr).
fn all_succeed(children: Vec<std::process::Child>) {
    for child in children {
        let out = child.wait_with_output().expect("steward ends");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn rows(env: &Env, user: &str) -> Vec<serde_json::Value> {
    let run = team_run(env, user, &["--format", "json", "audit", "list", "--all"]).success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()))
}

#[test]
fn a_team_log_records_each_action_and_verifies() {
    let pg = Postgres::start();
    let sb = Sandbox::start(20);
    let env = team_env(&sb, &pg, "postgres");
    team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0005\", #{reason: \"left\"})"]).success();
    let events = rows(&env, "postgres");
    let suspend: Vec<_> = events.iter().filter(|e| e["op"] == "suspend").collect();
    assert_eq!(suspend.len(), 2, "an intent and an outcome: {events:#?}");
    assert_eq!((suspend[0]["phase"].as_str(), suspend[1]["phase"].as_str()), (Some("intent"), Some("outcome")));
    assert_eq!(
        pg.sql_in("steward", "SELECT count(*) FROM events WHERE op = 'suspend'"),
        "2",
        "the rows are in PostgreSQL"
    );
    assert!(!env.audit_db().exists(), "no SQLite log was made beside");
    team_run(&env, "postgres", &["audit", "verify"]).success().stdout_has("audit log OK");
}

#[test]
fn the_password_is_never_inline_and_never_shown() {
    let pg = Postgres::start();
    let sb = Sandbox::start(5);
    let env = team_env(&sb, &pg, "postgres");
    let inline = format!("postgres://postgres:{}@127.0.0.1:{}/steward", pg::SUPER_PASSWORD, pg.port);
    let run = team_run(&env, "postgres", &["--audit-url", &inline, "audit", "list"]).code(2);
    assert!(run.stderr.contains("audit_password_env"), "{}", run.report());
    assert!(!run.stderr.contains(pg::SUPER_PASSWORD), "the password is echoed:\n{}", run.report());
    // A wrong password: the error names the log, not the password.
    let mut cmd = team_cmd(&env, "postgres");
    cmd.env("PGPW", "not-the-Password-9").args([
        "--yes",
        "eval",
        "connect().suspend(\"user0003\", #{reason: \"left\"})",
    ]);
    let run = Run::of(cmd);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("password authentication failed"), "{}", run.report());
    assert!(!run.stderr.contains("not-the-Password-9"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0, "nothing was sent without a log");
}

#[test]
fn no_database_no_mutation() {
    let pg = Postgres::start();
    let sb = Sandbox::start(5);
    let env = team_env(&sb, &pg, "postgres");
    team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0001\", #{reason: \"left\"})"]).success();
    pg.stop_server();
    let run = team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("cannot reach the team audit log"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0, "sent while the log was down:\n{}", run.report());
    pg.start_server();
    team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]).success();
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 1);
    team_run(&env, "postgres", &["audit", "verify"]).success();
}

#[test]
fn four_processes_at_once_write_one_unbroken_chain() {
    let pg = Postgres::start();
    // Answers take 20 ms, so the four jobs overlap and their commits interleave.
    let sb = Sandbox::slow(220, 20);
    let env = team_env(&sb, &pg, "postgres");
    // The owner's first use makes the schema; the writers then come in as a team member.
    team_run(&env, "postgres", &["audit", "verify"]).success();
    pg.add_writer();
    let children: Vec<_> = (0..4)
        .map(|w| {
            let ids: Vec<String> = (1..=50).map(|i| format!("\"user{:04}\"", 10 + w * 50 + i)).collect();
            let mut cmd = team_cmd(&env, pg::WRITER);
            cmd.env("PGPW", pg::WRITER_PASSWORD);
            let config = env.path(&format!("writer{w}.toml"));
            let text = std::fs::read_to_string(env.path("config.toml")).expect("config").replace("postgres@", "alice@");
            std::fs::write(&config, text).expect("write config");
            cmd.env("STEWARD_CONFIG", &config)
                .args([
                    "--yes",
                    "eval",
                    &format!("connect().suspend_all([{}], #{{reason: \"left\"}}).len()", ids.join(",")),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().expect("steward starts")
        })
        .collect();
    all_succeed(children);
    let events = rows(&env, "postgres");
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "one gapless sequence");
    let outcomes = events.iter().filter(|e| e["op"] == "suspend" && e["phase"] == "outcome").count();
    assert_eq!(outcomes, 200, "every suspension has its outcome");
    let runs: std::collections::HashSet<i64> = events.iter().filter_map(|e| e["run_id"].as_i64()).collect();
    assert_eq!(runs.len(), 4, "four writers: {runs:?}");
    let run_of: Vec<i64> = events.iter().filter_map(|e| e["run_id"].as_i64()).collect();
    let turns = run_of.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(turns > 10, "the writers took turns on the chain only {turns} times: they did not overlap");
    team_run(&env, "postgres", &["audit", "verify"]).success().stdout_has("audit log OK");
    assert_eq!(sb.suspended().len(), 200);
}

/// A team log on a fresh server holding one run: three users suspended (events 1–6).
fn three_suspended() -> (Postgres, Sandbox, Env) {
    let pg = Postgres::start();
    let sb = Sandbox::start(10);
    let env = team_env(&sb, &pg, "postgres");
    let suspend = "connect().suspend_all([\"user0001\", \"user0003\", \"user0004\"], #{reason: \"left\"})";
    team_run(&env, "postgres", &["--yes", "eval", suspend]).success();
    (pg, sb, env)
}

#[test]
fn the_writer_cannot_rewrite_history_and_a_superuser_who_does_is_caught() {
    let (pg, sb, env) = three_suspended();
    pg.add_writer();
    for sql in ["UPDATE events SET target = 'x' WHERE seq = 2", "DELETE FROM events WHERE seq = 2", "TRUNCATE events"] {
        let e = pg.sql_fails_as(pg::WRITER, pg::WRITER_PASSWORD, sql);
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }
    // The owner has the rights, and the triggers still refuse.
    let e = pg.sql_fails_as("postgres", pg::SUPER_PASSWORD, "UPDATE events SET target = 'x' WHERE seq = 2");
    assert!(e.contains("append-only"), "{e}");
    // A superuser turns the triggers off and edits a row: verify names it.
    pg.sql_in(
        "steward",
        "ALTER TABLE events DISABLE TRIGGER USER; UPDATE events SET target = 'user0009' WHERE seq = 3; \
         ALTER TABLE events ENABLE TRIGGER USER",
    );
    let run = team_run(&env, "postgres", &["audit", "verify"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stdout.contains("BROKEN at seq 3") || run.stderr.contains("BROKEN at seq 3"), "{}", run.report());
    // Nothing is read back from it for a decision: undoing that run refuses, and sends nothing.
    let run = team_run(&env, "postgres", &["--yes", "undo", "1"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("does not verify"), "{}", run.report());
    assert_eq!(sb.count("DELETE /api/v3/users/user0001/suspended"), 0, "{}", run.report());
}

#[test]
fn a_deleted_row_and_a_cut_tail_are_caught() {
    let (pg, _sandbox, env) = three_suspended();
    let last: i64 = pg.sql_in("steward", "SELECT max(seq) FROM events").parse().expect("a seq");
    // The tail cut away (the last outcome): the checkpoint this machine holds names a row no longer there.
    pg.sql_in("steward", &format!("ALTER TABLE events DISABLE TRIGGER USER; DELETE FROM events WHERE seq = {last}"));
    let run = team_run(&env, "postgres", &["audit", "verify"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(format!("{}{}", run.stdout, run.stderr).contains("no longer in the log"), "{}", run.report());
    // A row from the middle: the one after it no longer links.
    pg.sql_in("steward", "DELETE FROM events WHERE seq = 2");
    let run = team_run(&env, "postgres", &["audit", "verify"]);
    assert!(format!("{}{}", run.stdout, run.stderr).contains("BROKEN at seq 3"), "{}", run.report());
}

/// `cmd` as run on another machine: a UTS namespace of its own with host name `host` (what the runs table
/// records), the same environment and working directory (not its stdio: set that on the result).
fn on_machine(cmd: &Command, host: &str) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-u", "sh", "-c", &format!("hostname {host} && exec \"$0\" \"$@\"")])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// A job suspending users 1..=n but the protected user0002, as the script `job.rhai` in `env`.
fn write_job(env: &Env, n: usize) -> Vec<String> {
    let ids: Vec<String> = (1..=n).map(|i| format!("user{i:04}")).filter(|u| u != "user0002").collect();
    env.write("job.rhai", &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"job\"}});"));
    ids
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "waited 30 s for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_job_killed_on_one_machine_is_resumed_on_another_unsuspended_and_undone_each_change_sent_once() {
    let pg = Postgres::start();
    // Long enough that A is still at work when B asks to resume, on a loaded two-core machine too.
    let sb = Sandbox::slow(1000, 20);
    let (a, b) = (team_env(&sb, &pg, "postgres"), team_env(&sb, &pg, "postgres"));
    let ids = write_job(&a, 1000);
    write_job(&b, 1000);
    let already = sb.suspended();
    let mut job = team_cmd(&a, "postgres");
    job.args(["--yes", "run", "job.rhai"]);
    let mut job = on_machine(&job, "machine-a");
    job.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = job.spawn().expect("steward starts on machine A");
    wait_for("machine A's first 30 suspensions", || sb.count_method("PUT") >= 30);
    // While A lives, its job is its own: B may not resume it.
    let mut resume = team_cmd(&b, "postgres");
    resume.args(["--yes", "run", "job.rhai", "--resume", "1"]);
    Run::of(on_machine(&resume, "machine-b")).code(2).stderr_has("another steward process");
    let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
    let _ = child.wait();
    let sent_by_a = sb.count_method("PUT");
    assert!(sent_by_a < ids.len() as u64, "A was killed midway ({sent_by_a} sent)");
    Run::of(on_machine(&resume, "machine-b")).success();
    for id in &ids {
        let sent = sb.count(&format!("PUT /api/v3/users/{id}/suspended"));
        assert_eq!(sent, u64::from(!already.contains(id)), "{id}: sent once if it was not suspended already");
    }
    assert_eq!(sb.suspended().len(), ids.len());
    let hosts = pg.sql_in("steward", "SELECT string_agg(host, ',' ORDER BY id) FROM runs");
    assert_eq!(hosts, "machine-a,machine-b", "each run names the machine it ran on");
    // Who did what, across the team: the events of one machine, of one OS user, from any machine.
    let on_a =
        team_run(&b, "postgres", &["--format", "json", "audit", "list", "--all", "--host", "machine-a"]).success();
    let on_a: Vec<serde_json::Value> = serde_json::from_str(&on_a.stdout).expect("json");
    assert!(!on_a.is_empty() && on_a.iter().all(|e| e["run_id"] == 1), "machine A's events are run 1's: {on_a:?}");
    let user = pg.sql_in("steward", "SELECT os_user FROM runs WHERE id = 2");
    let by = team_run(&a, "postgres", &["--format", "json", "audit", "list", "--all", "--user", &user, "--run", "2"]);
    assert!(by.success().stdout.contains("\"run_id\": 2"), "--user and --run narrow together");
    let script = "audit(#{host: \"machine-b\"}).len() > 0 && audit(#{host: \"machine-z\"}).len() == 0";
    let seen = team_run(&a, "postgres", &["--format", "json", "eval", script]).success();
    assert_eq!(seen.stdout.trim(), "true", "the Rhai audit() filters by host too");
    for env in [&a, &b] {
        team_run(env, "postgres", &["audit", "verify"]).success().stdout_has("audit log OK");
    }
    let open = team_run(&b, "postgres", &["--format", "json", "audit", "list", "--pending"]).success();
    assert_eq!(open.stdout.trim(), "[]", "every intent A left open was settled by B:\n{}", open.report());
    // A change names the account it reached; the team log finds it by the name a script gave it too.
    team_run(&b, "postgres", &["--yes", "eval", r#"connect("ghes").unsuspend("USER0003")"#]).success();
    for name in ["USER0003", "user0003"] {
        let rows =
            team_run(&b, "postgres", &["--format", "json", "audit", "list", "--op", "unsuspend", "--target", name]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&rows.success().stdout).expect("json");
        assert_eq!(rows.len(), 2, "{name}: the intent and the outcome: {rows:?}");
        assert!(rows.iter().all(|r| r["target"] == "user0003"), "{rows:?}");
    }
    // Machine A undoes the whole job (its run and B's resume): each account the job suspended is unsuspended
    // once; user0003, unsuspended already, is left as it is.
    let mut undo = team_cmd(&a, "postgres");
    undo.args(["--yes", "undo", "2"]);
    Run::of(on_machine(&undo, "machine-a")).success();
    for id in ids.iter().filter(|id| !already.contains(*id)) {
        let sent = sb.count(&format!("DELETE /api/v3/users/{id}/suspended"));
        assert_eq!(sent, 1, "{id}: unsuspended once");
    }
    assert_eq!(sb.suspended(), already, "the job is undone, what was suspended before it stays so");
    team_run(&b, "postgres", &["audit", "verify"]).success();
}

#[test]
fn two_overlapping_jobs_on_two_machines_change_each_account_once() {
    let pg = Postgres::start();
    let sb = Sandbox::slow(100, 20);
    let (a, b) = (team_env(&sb, &pg, "postgres"), team_env(&sb, &pg, "postgres"));
    let ids = write_job(&a, 100);
    write_job(&b, 100);
    let already = sb.suspended();
    let spawn = |env: &Env, host: &str| {
        let mut job = team_cmd(env, "postgres");
        job.args(["--yes", "--format", "json", "run", "job.rhai"]);
        let mut job = on_machine(&job, host);
        job.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        job.spawn().expect("steward starts")
    };
    let (first, second) = (spawn(&a, "machine-a"), spawn(&b, "machine-b"));
    let outs = [first.wait_with_output().expect("ends"), second.wait_with_output().expect("ends")];
    for id in &ids {
        let sent = sb.count(&format!("PUT /api/v3/users/{id}/suspended"));
        assert_eq!(sent, u64::from(!already.contains(id)), "{id}: changed once if it was not suspended already");
    }
    assert_eq!(sb.suspended().len(), ids.len());
    // What one job found the other doing, it skipped and said so (or found done: noop).
    let said: String = outs.iter().map(|o| String::from_utf8_lossy(&o.stderr).to_string()).collect();
    let refused = pg.sql_in("steward", "SELECT count(*) FROM events WHERE status = 'refused'");
    if refused != "0" {
        assert!(said.contains("accounts another steward process was acting on"), "{said}");
    }
    for out in &outs {
        assert!(out.status.success(), "a skipped account is not a failure: {said}");
    }
    team_run(&a, "postgres", &["audit", "verify"]).success();
}

#[test]
fn a_database_restart_mid_job_stops_it_and_the_job_resumes() {
    let pg = Postgres::start();
    let sb = Sandbox::slow(120, 20);
    let env = team_env(&sb, &pg, "postgres");
    let ids = write_job(&env, 120);
    let already = sb.suspended();
    let mut job = team_cmd(&env, "postgres");
    job.args(["--yes", "run", "job.rhai"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = job.spawn().expect("steward starts");
    wait_for("the first 30 suspensions", || sb.count_method("PUT") >= 30);
    pg.stop_server();
    let out = child.wait_with_output().expect("the job ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job goes on without its log:\n{stderr}");
    // What was never sent is cancelled, not failed; the way on is printed; the log's error is said once.
    assert!(!stderr.contains(" failed "), "never-sent items are not failures:\n{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(stderr.contains("job.rhai --resume 1"), "how to resume is said:\n{stderr}");
    let said = stderr.lines().filter(|l| l.contains("audit log write failed") && !l.contains("more times")).count();
    assert!(said <= 1, "the log's error said {said} times:\n{stderr}");
    let sent = sb.count_method("PUT");
    assert!(sent < ids.len() as u64, "nothing more was sent once the log was gone ({sent} sent):\n{stderr}");
    pg.start_server();
    // Every request that reached the server has its intent in the log.
    let intents: u64 = pg
        .sql_in("steward", "SELECT count(*) FROM events WHERE op = 'suspend' AND phase = 'intent'")
        .parse()
        .expect("a count");
    assert!(intents >= sent, "{sent} requests sent, {intents} intents recorded");
    team_run(&env, "postgres", &["--yes", "run", "job.rhai", "--resume", "1"]).success();
    for id in &ids {
        let sent = sb.count(&format!("PUT /api/v3/users/{id}/suspended"));
        assert_eq!(sent, u64::from(!already.contains(id)), "{id}: sent once if it was not suspended already");
    }
    team_run(&env, "postgres", &["audit", "verify"]).success();
}

#[test]
fn two_processes_share_one_rate_budget_and_provoke_no_limit() {
    // The server admits 50 requests a second (a bucket of 50); the team's profile says rate_limit = 50.
    let sb = Sandbox::with(steward_sandbox::Options { users: 190, rate_limit: Some(50.0), ..Default::default() });
    let pg = Postgres::start();
    let env = team_env(&sb, &pg, "postgres");
    let config = std::fs::read_to_string(env.path("config.toml"))
        .expect("config")
        .replace("timeout = 5", "timeout = 5\nrate_limit = 50");
    env.write_config(&config);
    let jobs = |team: bool| {
        let started = std::time::Instant::now();
        let children: Vec<_> = [(11, 100), (101, 190)]
            .into_iter()
            .map(|(from, to)| {
                let ids: Vec<String> = (from..=to).map(|i| format!("\"user{i:04}\"")).collect();
                let mut cmd = if team { team_cmd(&env, "postgres") } else { env.cmd() };
                if !team {
                    // Each on a log of its own, as two machines without a team log would be.
                    cmd.env("STEWARD_AUDIT_DB", env.path(&format!("solo{from}.db")));
                }
                let call = format!(
                    "connect().{}_all([{}], #{{reason: \"x\"}}).len()",
                    if team { "suspend" } else { "unsuspend" },
                    ids.join(",")
                );
                cmd.args(["--yes", "eval", &call])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().expect("steward starts")
            })
            .collect();
        all_succeed(children);
        started.elapsed()
    };
    let took = jobs(true);
    let limited = sb.stats()["rate_limited"].as_u64().unwrap_or(0);
    let sent = sb.stats()["total"].as_u64().unwrap_or(0);
    assert_eq!(limited, 0, "two processes on one team budget provoked {limited} limit answers in {sent} requests");
    // 360 requests at 50 a second: the budget is used, not wasted.
    assert!(took.as_secs_f64() < 9.5, "the shared budget was slow: {took:?} for {sent} requests");
    // The control: the same two jobs, each on a budget of its own, go at twice the server's rate.
    jobs(false);
    let alone = sb.stats()["rate_limited"].as_u64().unwrap_or(0);
    eprintln!("shared budget: {sent} requests in {took:?}, {limited} limited; alone: {alone} limited");
    assert!(alone > 0, "without a shared budget the server should have limited the pair (the test proves nothing)");
}

#[test]
fn a_sqlite_log_is_pushed_once_verified_keeping_its_hashes_and_only_new_events_on_the_next_push() {
    let pg = Postgres::start();
    let sb = Sandbox::start(20);
    // One admin's own log first: a single suspension and a job.
    let solo = Env::with_sandbox(&sb);
    solo.run(&["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]).success();
    solo.run(&["--yes", "eval", "connect().suspend_all([\"user0004\", \"user0005\"], #{reason: \"left\"})"]).success();
    let source = solo.audit_rows(&[]);
    let team = team_env(&sb, &pg, "postgres");
    team_run(&team, "postgres", &["--yes", "eval", "connect().suspend(\"user0006\", #{reason: \"left\"})"]).success();
    let db = solo.audit_db().display().to_string();
    team_run(&team, "postgres", &["audit", "push", &db])
        .success()
        .stdout_has(&format!("copied {} events of 2 runs", source.len()));
    let copies: Vec<_> = rows(&team, "postgres").into_iter().filter(|e| e["origin"] != "").collect();
    assert_eq!(copies.len(), source.len(), "every event of the source, once");
    for (copy, original) in copies.iter().zip(&source) {
        for field in ["ts", "op", "target", "phase", "status", "params", "token_fp"] {
            assert_eq!(copy[field], original[field], "{field} kept");
        }
        let origin = copy["origin"].as_str().unwrap_or_default().to_string();
        assert!(origin.ends_with(original["hash"].as_str().unwrap_or("?")), "the original hash is kept: {origin}");
    }
    // An outcome still names its own intent, by its new seq.
    let outcome = copies.iter().find(|e| e["phase"] == "outcome" && e["target"] == "user0004").expect("an outcome");
    let intent =
        copies.iter().find(|e| Some(e["seq"].as_i64()) == Some(outcome["intent_seq"].as_i64())).expect("its intent");
    assert_eq!((intent["phase"].as_str(), intent["target"].as_str()), (Some("intent"), Some("user0004")));
    team_run(&team, "postgres", &["audit", "verify"]).success().stdout_has("audit log OK");
    let runs = pg.sql_in("steward", "SELECT count(*) FROM runs WHERE command LIKE '%eval%'");
    assert_eq!(runs, "3", "the team's own run and the two copied");
    // Again: nothing new. After more work on the source: only that.
    team_run(&team, "postgres", &["audit", "push", &db]).success().stdout_has("nothing new");
    solo.run(&["--yes", "eval", "connect().suspend(\"user0007\", #{reason: \"left\"})"]).success();
    team_run(&team, "postgres", &["audit", "push", &db]).success().stdout_has("copied 2 events of 1 runs");
    let pushes = rows(&team, "postgres").into_iter().filter(|e| e["op"] == "audit_push").count();
    assert_eq!(pushes, 3, "each push is on record");
    // A source that does not verify is not copied.
    let conn = rusqlite::Connection::open(solo.audit_db()).expect("open");
    conn.execute_batch("DROP TRIGGER events_no_update; UPDATE events SET target = 'user0009' WHERE seq = 1;")
        .expect("edit");
    drop(conn);
    let before = rows(&team, "postgres").len();
    let run = team_run(&team, "postgres", &["audit", "push", &db]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("does not verify"), "{}", run.report());
    assert_eq!(rows(&team, "postgres").len(), before, "nothing copied from an edited log");
    // And pushing needs a team log.
    solo.run(&["audit", "push", &db]).code(2).stderr_has("audit_url");
}

/// A CA, and a server certificate it signed for `san` (`IP:127.0.0.1`, `DNS:db.example`); their paths.
fn certificates(dir: &std::path::Path, san: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=steward test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=steward test db",
    ]);
    std::fs::write(dir.join("ext.cnf"), format!("subjectAltName={san}\n")).expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

#[test]
fn tls_to_the_team_log_checks_the_servers_certificate_and_name() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(certs.path(), "IP:127.0.0.1");
    let pg = Postgres::start_tls(&cert, &key);
    let sb = Sandbox::start(10);
    let env = team_env(&sb, &pg, "postgres");
    let config =
        std::fs::read_to_string(env.path("config.toml")).expect("config").replace("sslmode=disable", "sslmode=require");
    // Without the CA the certificate is not trusted: nothing is recorded, so nothing is sent.
    env.write_config(&config);
    let run = team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("cannot reach the team audit log"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0);
    // With it, the log is reached over TLS (the server lets nothing else in over TCP).
    env.write_config(&format!("audit_ca_file = \"{}\"\n{config}", ca.display()));
    team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]).success();
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 1);
    let plain = team_run(&env, "postgres", &["--audit-url", &pg.url("postgres"), "audit", "list"]);
    assert!(
        plain.stderr.contains("no pg_hba.conf entry") && plain.stderr.contains("no encryption"),
        "{}",
        plain.report()
    );
    team_run(&env, "postgres", &["audit", "verify"]).success();
    // A certificate for another name is refused, whoever signed it.
    let other = tempfile::tempdir().expect("tempdir");
    let (ca2, cert2, key2) = certificates(other.path(), "DNS:db.example");
    let pg2 = Postgres::start_tls(&cert2, &key2);
    let env2 = team_env(&sb, &pg2, "postgres");
    let config2 = std::fs::read_to_string(env2.path("config.toml"))
        .expect("config")
        .replace("sslmode=disable", "sslmode=require");
    env2.write_config(&format!("audit_ca_file = \"{}\"\n{config2}", ca2.display()));
    let run = team_run(&env2, "postgres", &["--yes", "eval", "connect().suspend(\"user0004\", #{reason: \"left\"})"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.to_lowercase().contains("certificate"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0004/suspended"), 0);
}

#[test]
fn machines_starting_at_once_on_a_new_database_make_its_schema_once() {
    let pg = Postgres::start();
    let sb = Sandbox::start(20);
    let env = team_env(&sb, &pg, "postgres");
    let children: Vec<_> = (3..=5)
        .map(|i| {
            let mut cmd = team_cmd(&env, "postgres");
            cmd.args(["--yes", "eval", &format!("connect().suspend(\"user{i:04}\", #{{reason: \"left\"}})")])
                .stderr(std::process::Stdio::piped());
            cmd.spawn().expect("steward starts")
        })
        .collect();
    all_succeed(children);
    // Each migration applied once, in order.
    let applied = pg.sql_in("steward", "SELECT string_agg(version::text, ',' ORDER BY version) FROM steward_schema");
    let newest: usize = pg.sql_in("steward", "SELECT max(version) FROM steward_schema").parse().expect("a version");
    assert_eq!(applied, (1..=newest).map(|v| v.to_string()).collect::<Vec<_>>().join(","));
    assert!(newest >= 7, "{applied}");
    assert_eq!(rows(&env, "postgres").iter().filter(|e| e["op"] == "suspend").count(), 6);
    team_run(&env, "postgres", &["audit", "verify"]).success();
}

#[test]
fn a_role_that_may_not_make_the_tables_is_told_who_must() {
    let pg = Postgres::start();
    let sb = Sandbox::start(5);
    pg.sql("CREATE ROLE bob LOGIN PASSWORD 'bob-Pg-pass-2208'");
    let env = team_env(&sb, &pg, "bob");
    let mut cmd = team_cmd(&env, "bob");
    cmd.env("PGPW", "bob-Pg-pass-2208").args(["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]);
    let run = Run::of(cmd);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(
        run.stderr.contains("permission denied") && run.stderr.contains("GRANT steward_writer"),
        "{}",
        run.report()
    );
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0);
}

#[test]
fn a_shell_outlives_a_database_restart_refusing_meanwhile_and_acting_again_after() {
    let pg = Postgres::start();
    let sb = Sandbox::start(10);
    let env = team_env(&sb, &pg, "postgres");
    let mut cmd = Command::new("sh");
    env.configure(&mut cmd);
    cmd.env_remove("STEWARD_AUDIT_DB")
        .env("PGPW", pg::SUPER_PASSWORD)
        .env("TERM", "xterm")
        .args(["-c", &format!("stty cols 160 rows 50; exec '{}' --yes", env!("CARGO_BIN_EXE_steward"))]);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).expect("the REPL starts on a pty");
    p.exp_string("steward>").expect("a prompt");
    let suspend = |p: &mut rexpect::session::PtySession, who: &str, expect: &str| {
        p.send_line(&format!("connect().suspend(\"{who}\", #{{reason: \"left\"}})")).expect("typed");
        p.exp_string(expect).unwrap_or_else(|e| panic!("{who}: expected {expect:?}: {e}"));
        p.exp_string("steward>").expect("a prompt again");
    };
    suspend(&mut p, "user0003", "204");
    pg.stop_server();
    suspend(&mut p, "user0004", "not sent");
    pg.start_server();
    suspend(&mut p, "user0005", "204");
    p.send_line(":quit").expect("typed");
    assert_eq!(sb.count("PUT /api/v3/users/user0004/suspended"), 0, "nothing sent while the log was down");
    assert_eq!(sb.count("PUT /api/v3/users/user0005/suspended"), 1, "acting again once it was back");
    team_run(&env, "postgres", &["audit", "verify"]).success();
}

#[test]
fn two_pushes_of_one_log_at_once_copy_each_event_once() {
    let pg = Postgres::start();
    // Thousands of events, so the two pushes overlap whatever their start-up times.
    let sb = Sandbox::start(1_500);
    let solo = Env::with_sandbox(&sb);
    let ids: Vec<String> = (3..=1_500).map(|i| format!("\"user{i:04}\"")).collect();
    let job = format!("connect().suspend_all([{}], #{{reason: \"left\"}}).len()", ids.join(","));
    solo.run(&["--yes", "--format", "json", "eval", &job]).success();
    let source = solo.audit_rows(&[]).len();
    let team = team_env(&sb, &pg, "postgres");
    team_run(&team, "postgres", &["audit", "verify"]).success();
    let db = solo.audit_db().display().to_string();
    let pushes: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = team_cmd(&team, "postgres");
            cmd.args(["audit", "push", &db]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().expect("steward starts")
        })
        .collect();
    let outs: Vec<_> = pushes.into_iter().map(|c| c.wait_with_output().expect("ends")).collect();
    let said: String = outs.iter().map(|o| String::from_utf8_lossy(&o.stderr).to_string()).collect();
    assert!(outs.iter().any(|o| o.status.success()), "one push goes through: {said}");
    for out in outs.iter().filter(|o| !o.status.success()) {
        assert!(String::from_utf8_lossy(&out.stderr).contains("run it again"), "{said}");
    }
    // Whatever the interleaving, a push after both leaves the log whole: each source event copied once.
    team_run(&team, "postgres", &["audit", "push", &db]).success();
    let copies = rows(&team, "postgres").into_iter().filter(|e| e["origin"] != "").count();
    assert_eq!(copies, source, "each event of the source copied exactly once");
    team_run(&team, "postgres", &["audit", "verify"]).success();
}

/// Two machines on one team log fire `policy run --due` at once (and a timed change is due): the policy's turn
/// and the scheduled changes are claimed in the team database (`FOR UPDATE SKIP LOCKED`), so each account is
/// changed once and one runner applies the policy.
#[test]
fn two_machines_running_due_policies_at_once_act_once() {
    let pg = Postgres::start();
    let sb = Sandbox::start(30);
    let (a, b) = (team_env(&sb, &pg, "postgres"), team_env(&sb, &pg, "postgres"));
    for env in [&a, &b] {
        std::fs::create_dir_all(env.path("policies")).unwrap();
        env.write("policies/dormant.toml", crate::policy::POLICY);
    }
    // A one-hour admin grant, made an hour and a bit "ago" (its restore is due now).
    let mut grant = team_cmd(&a, "postgres");
    grant
        .env("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
        .env("FAKETIME", "-2h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    grant.args(["--yes", "eval", r#"connect().promote("user0001", #{"for": "1h", reason: "on call"})"#]);
    Run::of(grant).success();
    let spawn = |env: &Env, host: &str| {
        let mut cmd = team_cmd(env, "postgres");
        let dir = env.path("policies");
        cmd.args(["policy", "run", "--due", "--dir", dir.to_str().unwrap()]);
        let mut cmd = on_machine(&cmd, host);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        cmd.spawn().expect("steward starts")
    };
    let (first, second) = (spawn(&a, "machine-a"), spawn(&b, "machine-b"));
    let outs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let said: Vec<String> = outs
        .iter()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .collect();
    assert!(outs.iter().all(|o| o.status.success()), "{said:?}");
    assert_eq!(said.iter().filter(|t| t.contains("policies: 1 applied")).count(), 1, "{said:?}");
    let mut expected = crate::policy::dormant();
    for spared in ["user0014", "ldap-user", "user0016"] {
        expected.remove(spared);
    }
    // Each dormant account suspended once, the grant taken back once (the promote itself was the first PUT).
    assert_eq!(sb.count_method("PUT"), expected.len() as u64 + 1, "{said:?}");
    assert_eq!(sb.count("DELETE /api/v3/users/user0001/site_admin"), 1, "{said:?}");
    team_run(&a, "postgres", &["audit", "verify"]).success();
}

#[test]
fn a_rate_row_written_by_hand_is_advice_not_a_lock() {
    let sb = Sandbox::start(20);
    let pg = Postgres::start();
    let env = team_env(&sb, &pg, "postgres");
    let config = std::fs::read_to_string(env.path("config.toml")).expect("config");
    env.write_config(&config.replace("timeout = 5", "timeout = 5\nrate_limit = 20"));
    let suspend = |login: &str| format!("connect().suspend(\"{login}\", #{{reason: \"left\"}})");
    team_run(&env, "postgres", &["--yes", "eval", &suspend("user0011")]).success();
    let now_us = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

    // Any writer may set the row: ten years of pause, the schedule as far ahead. Ignored, and said.
    let decade = 10 * 365 * 86_400 * 1_000_000_i64;
    pg.sql_in(
        "steward",
        &format!("UPDATE rate_turns SET paused_until = {now_us} + {decade}, next_at = {now_us} + {decade}"),
    );
    let started = std::time::Instant::now();
    let run = team_run(&env, "postgres", &["--yes", "eval", &suspend("user0012")]).success();
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "held by the row: {:?}", started.elapsed());
    assert!(
        run.stderr.contains("364") && run.stderr.contains(" days") && run.stderr.contains("ignored"),
        "{}",
        run.report()
    );
    assert_eq!(sb.count("PUT /api/v3/users/user0012/suspended"), 1);

    // A pause a steward could have asked for (90 s) holds everyone, and lifting it frees a waiting process at once.
    pg.sql_in("steward", &format!("UPDATE rate_turns SET paused_until = {now_us} + 90000000, next_at = 0"));
    let mut cmd = team_cmd(&env, "postgres");
    cmd.args(["--yes", "eval", &suspend("user0013")]).stdout(std::process::Stdio::null());
    let started = std::time::Instant::now();
    let child = cmd.stderr(std::process::Stdio::piped()).spawn().expect("steward starts");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(sb.count("PUT /api/v3/users/user0013/suspended"), 0, "sent inside the team's pause");
    pg.sql_in("steward", "UPDATE rate_turns SET paused_until = 0");
    all_succeed(vec![child]);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "the lifted pause still held it: {took:?}");
    assert_eq!(sb.count("PUT /api/v3/users/user0013/suspended"), 1);
}

#[test]
fn sslmodes_that_fall_back_to_plain_text_are_refused_before_connecting() {
    let pg = Postgres::start();
    let sb = Sandbox::start(5);
    let env = team_env(&sb, &pg, "postgres");
    let config = std::fs::read_to_string(env.path("config.toml")).expect("config");
    for (mode, says) in [("prefer", "sslmode=prefer"), ("allow", "sslmode=allow")] {
        env.write_config(&config.replace("sslmode=disable", &format!("sslmode={mode}")));
        team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"x\"})"])
            .code(2)
            .stderr_has(says)
            .stderr_has("sslmode=require");
    }
    // Unsaid, over the network: TLS, which this server does not speak; nothing is sent in plain text.
    env.write_config(&config.replace("?sslmode=disable", ""));
    let run = team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"x\"})"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("TLS") || run.stderr.contains("tls") || run.stderr.contains("SSL"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0);
}

#[test]
fn a_token_has_one_fingerprint_on_every_machine_of_the_team() {
    let pg = Postgres::start();
    let sb = Sandbox::start(10);
    let (a, b) = (team_env(&sb, &pg, "postgres"), team_env(&sb, &pg, "postgres"));
    for (env, login) in [(&a, "user0003"), (&b, "user0004")] {
        team_run(env, "postgres", &["--yes", "eval", &format!("connect().suspend(\"{login}\", #{{reason: \"x\"}})")])
            .success();
    }
    let fps: std::collections::BTreeSet<String> =
        rows(&a, "postgres").iter().filter_map(|r| r["token_fp"].as_str().map(String::from)).collect();
    assert_eq!(fps.len(), 1, "one token, one fingerprint, whichever machine used it: {fps:?}");
    // Either machine, asked what the token did, finds both machines' events.
    let mut cmd = team_cmd(&b, "postgres");
    cmd.args(["--format", "json", "audit", "fingerprint"]);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("steward starts");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(format!("{}\n", crate::util::ADMIN_TOKEN).as_bytes()).expect("write");
    let out = child.wait_with_output().expect("ends");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(found["token_fp"].as_str(), fps.iter().next().map(String::as_str));
    assert_eq!(found["events"], 4, "two machines' intents and outcomes: {found}");
    let listed = team_run(
        &a,
        "postgres",
        &["--format", "json", "audit", "list", "--token-fp", &fps.iter().next().unwrap()[..20]],
    );
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.success().stdout).expect("json");
    assert_eq!(listed.len(), 4);
    // The key is the team's, in its database: no machine keeps a copy beside its anchors.
    assert_eq!(pg.sql_in("steward", "SELECT count(*) FROM steward_keys"), "1");
}

/// A chain-valid row as a teammate with the writer role could forge one: `event` linked onto the log's head
/// (read from `audit export`), inserted as `member` with every column steward writes.
fn forge_row(
    pg: &Postgres,
    (env, user): (&Env, &str),
    member: (&str, &str),
    event: &mut steward::audit::chain::Event,
) -> String {
    forge_row_of(pg, (env, user), member, event, None)
}

/// `forge_row`, the row naming `machine` as the one that wrote it.
fn forge_row_of(
    pg: &Postgres,
    (env, user): (&Env, &str),
    member: (&str, &str),
    event: &mut steward::audit::chain::Event,
    machine: Option<&str>,
) -> String {
    let export = team_run(env, user, &["audit", "export"]).success().stdout;
    let head: serde_json::Value = serde_json::from_str(export.lines().last().expect("a head")).expect("json");
    event.seq = head["seq"].as_i64().expect("seq") + 1;
    let prev = head["hash"].as_str().expect("hash").to_string();
    let hash = steward::audit::chain::link(&prev, event);
    let q = |s: &str| format!("$f${s}$f$");
    let n = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "NULL".into());
    pg.sql_as(
        member.0,
        member.1,
        &format!(
            "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, \
             intent_seq, status, http_status, error, duration_ms, token_source, prev_hash, hash, token_fp, run_digest, \
             origin, machine) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            event.seq,
            event.run_id,
            q(&event.ts),
            q(&event.profile),
            q(&event.kind),
            q(&event.base_url),
            q(&event.identity),
            q(&event.op),
            q(&event.target),
            q(&event.params),
            q(&event.mode),
            q(&event.phase),
            n(event.intent_seq),
            q(&event.status),
            n(event.http_status),
            q(&event.error),
            n(event.duration_ms),
            q(&event.token_source),
            q(&prev),
            q(&hash),
            q(&event.token_fp),
            q(&event.run_digest),
            q(&event.origin),
            machine.map_or_else(|| "NULL".to_string(), q),
        ),
    );
    hash
}

/// Every row `audit export` prints, as JSON.
fn exported(env: &Env, user: &str) -> Vec<serde_json::Value> {
    let export = team_run(env, user, &["audit", "export"]).success().stdout;
    export.lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

/// The event `audit export` printed as `row`.
fn event_of(row: &serde_json::Value) -> steward::audit::chain::Event {
    let s = |k: &str| row[k].as_str().unwrap_or_default().to_string();
    steward::audit::chain::Event {
        seq: row["seq"].as_i64().unwrap_or_default(),
        run_id: row["run_id"].as_i64().unwrap_or_default(),
        ts: s("ts"),
        profile: s("profile"),
        kind: s("kind"),
        base_url: s("base_url"),
        identity: s("identity"),
        op: s("op"),
        target: s("target"),
        params: s("params"),
        mode: s("mode"),
        phase: s("phase"),
        intent_seq: row["intent_seq"].as_i64(),
        status: s("status"),
        http_status: row["http_status"].as_i64(),
        error: s("error"),
        duration_ms: row["duration_ms"].as_i64(),
        token_source: s("token_source"),
        token_fp: s("token_fp"),
        run_digest: s("run_digest"),
        origin: s("origin"),
        ..Default::default()
    }
}

#[test]
fn a_teammates_forged_outcome_in_another_admins_job_settles_nothing() {
    let pg = Postgres::start();
    let sb = Sandbox::start(12);
    let owner = team_env(&sb, &pg, "postgres");
    team_run(&owner, "postgres", &["--yes", "eval", "connect().suspend(\"user0011\", #{reason: \"setup\"})"]).success();
    pg.add_writer();
    pg.add_member("bob", "bob-Pg-pass-2210");
    // Alice's job of leavers dies after recording its intents, before sending any of them.
    let alice = team_env(&sb, &pg, pg::WRITER);
    let leavers = ["user0003", "user0004", "user0005", "user0006"];
    alice.write("job.rhai", &format!("connect(\"ghes\").suspend_all({leavers:?}, #{{reason: \"left\"}});"));
    let mut job = team_cmd(&alice, pg::WRITER);
    job.env("STEWARD_FAILPOINT", "after_intent_commit:1").args(["--yes", "run", "job.rhai"]);
    assert_ne!(Run::of(job).status, Some(0));
    assert_eq!(sb.count_method("PUT"), 1, "only the setup's suspension reached the server");
    let rows = exported(&alice, pg::WRITER);
    let intent = rows.iter().find(|r| r["target"] == "user0003" && r["phase"] == "intent").expect("alice's intent");
    let job_run = intent["run_id"].as_i64().expect("run");

    // Bob, with the writer role only, forges a chain-valid "ok" outcome for Alice's open intent on user0003,
    // and one for user0004 as if the job had finished it.
    let bob = ("bob", "bob-Pg-pass-2210");
    for target in ["user0003", "user0004"] {
        let intent = rows.iter().find(|r| r["target"] == target && r["phase"] == "intent").expect("intent");
        let mut outcome = event_of(intent);
        outcome.phase = "outcome".into();
        outcome.intent_seq = intent["seq"].as_i64();
        outcome.status = "ok".into();
        outcome.http_status = Some(204);
        outcome.duration_ms = Some(12);
        forge_row(&pg, (&alice, pg::WRITER), bob, &mut outcome);
    }
    // Naming Alice as the writer is refused by the database itself.
    let mut claimed = event_of(intent);
    claimed.phase = "note".into();
    let refused = pg.sql_fails_as(
        "bob",
        "bob-Pg-pass-2210",
        &format!("INSERT INTO runs (started_at, os_user, host, command, writer) VALUES ('{}', 'alice', 'h', 'steward', 'alice')", claimed.ts),
    );
    assert!(refused.contains("writer is the role writing it"), "{refused}");

    // Alice's resume settles nothing on Bob's word: each leaver is read and suspended, once.
    team_run(&alice, pg::WRITER, &["--yes", "run", "job.rhai", "--resume", &job_run.to_string()]).success();
    for login in leavers {
        assert_eq!(sb.count(&format!("PUT /api/v3/users/{login}/suspended")), 1, "{login} was suspended once");
    }
    assert_eq!(sb.suspended().len(), 5, "every leaver is suspended: {:?}", sb.suspended());
    // audit verify names both rows and who wrote them, on every machine.
    let verify = team_run(&owner, "postgres", &["audit", "verify"]);
    assert_eq!(verify.status, Some(1), "{}", verify.report());
    let said = format!("{}{}", verify.stdout, verify.stderr);
    assert!(said.contains("SUSPECT") && said.matches("written by bob").count() == 2, "{said}");
    assert!(said.contains(&format!("started by {}", pg::WRITER)), "{said}");
}

/// Two admins who share one login (the writer role's) are told apart by their machines' keys: rows that name
/// Alice's machine but that it did not seal settle nothing, and `audit verify` names them.
#[test]
fn a_teammate_sharing_a_login_cannot_write_rows_that_pass_for_another_machines() {
    let pg = Postgres::start();
    let sb = Sandbox::start(12);
    let owner = team_env(&sb, &pg, "postgres");
    owner.write("job.rhai", "connect(\"ghes\").suspend_all([\"user0002\"], #{reason: \"setup\"});");
    team_run(&owner, "postgres", &["--yes", "run", "job.rhai"]).success();
    pg.add_writer();
    let (alice, bob) = (team_env(&sb, &pg, pg::WRITER), team_env(&sb, &pg, pg::WRITER));
    let leavers = ["user0003", "user0004", "user0005", "user0006"];
    alice.write("job.rhai", &format!("connect(\"ghes\").suspend_all({leavers:?}, #{{reason: \"left\"}});"));
    let mut job = team_cmd(&alice, pg::WRITER);
    job.env("STEWARD_FAILPOINT", "after_intent_commit:1").args(["--yes", "run", "job.rhai"]);
    assert_ne!(Run::of(job).status, Some(0));
    // Bob's machine joins the log on the same login (its own key, registered with its first row).
    bob.write("look.rhai", "connect(\"ghes\").suspend_all([\"user0010\"], #{reason: \"bob\"});");
    team_run(&bob, pg::WRITER, &["--yes", "run", "look.rhai"]).success();
    let machines = pg.sql_in("steward", "SELECT count(*) FROM steward_machines");
    assert_eq!(machines, "3", "the owner's, Alice's and Bob's machines are registered");

    let rows = exported(&alice, pg::WRITER);
    let intent_of = |t: &str| rows.iter().find(|r| r["target"] == t && r["phase"] == "intent").expect("intent");
    let job_run = intent_of("user0003")["run_id"].as_i64().expect("run");
    let alices_machine = pg.sql_in("steward", &format!("SELECT machine FROM runs WHERE id = {job_run}"));
    assert_eq!(alices_machine.len(), 16, "{alices_machine}");
    // Bob forges "ok" outcomes in Alice's job, as her machine (user0003, user0004) and as none (user0005).
    let login = (pg::WRITER, pg::WRITER_PASSWORD);
    for (target, machine) in
        [("user0003", Some(alices_machine.as_str())), ("user0004", Some(&alices_machine)), ("user0005", None)]
    {
        let intent = intent_of(target);
        let mut outcome = event_of(intent);
        outcome.phase = "outcome".into();
        outcome.intent_seq = intent["seq"].as_i64();
        outcome.status = "ok".into();
        outcome.http_status = Some(204);
        forge_row_of(&pg, (&alice, pg::WRITER), login, &mut outcome, machine);
    }
    // And a suspension of user0002 (the owner's) as if Alice's job had made it, for her undo to reverse.
    let mut planted = event_of(intent_of("user0006"));
    planted.target = "user0002".into();
    planted.params = planted.params.replace("user0006", "user0002");
    planted.phase = "outcome".into();
    planted.status = "ok".into();
    forge_row_of(&pg, (&alice, pg::WRITER), login, &mut planted, Some(&alices_machine));

    // Alice's resume settles nothing on the forged rows: each leaver is read and suspended, once.
    team_run(&alice, pg::WRITER, &["--yes", "run", "job.rhai", "--resume", &job_run.to_string()]).success();
    for login in leavers {
        assert_eq!(sb.count(&format!("PUT /api/v3/users/{login}/suspended")), 1, "{login} was suspended once");
    }
    // Undo reverses what the job did, and not the suspension planted in it.
    team_run(&alice, pg::WRITER, &["--yes", "undo", &job_run.to_string()]).success();
    for login in leavers {
        assert_eq!(sb.count(&format!("DELETE /api/v3/users/{login}/suspended")), 1, "{login} was unsuspended once");
    }
    assert_eq!(sb.count("DELETE /api/v3/users/user0002/suspended"), 0, "undo reversed a planted row");
    let verify = team_run(&bob, pg::WRITER, &["audit", "verify"]);
    assert_eq!(verify.status, Some(1), "{}", verify.report());
    let said = format!("{}{}", verify.stdout, verify.stderr);
    assert!(said.contains("SUSPECT"), "{said}");
    assert!(said.contains("2 rows in seq"), "{said}");
    let unsealed = format!("(machine {alices_machine}): no seal of its machine covers it");
    assert_eq!(said.matches(&unsealed).count(), 2, "{said}");
    assert!(said.contains("it names no machine"), "{said}");
}

/// A machine's public key that another role registered first (copied from another log, say) is refused, saying
/// so, before anything is sent: rows sealed with it would not verify as this machine's.
#[test]
fn a_machine_key_another_role_registered_first_is_refused_saying_so() {
    let pg = Postgres::start();
    let sb = Sandbox::start(6);
    let owner = team_env(&sb, &pg, "postgres");
    team_run(&owner, "postgres", &["--yes", "eval", "connect().suspend(\"user0005\", #{reason: \"setup\"})"]).success();
    pg.add_writer();
    pg.add_member("bob", "bob-Pg-pass-2210");
    let alice = team_env(&sb, &pg, pg::WRITER);
    let key = steward::audit::machine::MachineKey::load_or_create(&alice.path(".local/state/steward/machine-key"))
        .expect("alice's machine key");
    pg.sql_as(
        "bob",
        "bob-Pg-pass-2210",
        &format!(
            "INSERT INTO steward_machines (id, public_key, host, from_seq, joined_at) VALUES ('{}', '{}', 'h', 1, 'x')",
            key.id(),
            key.public_hex()
        ),
    );
    let run = team_run(&alice, pg::WRITER, &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("registered in the team log by bob"), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0003/suspended"), 0, "nothing was sent");
}

#[test]
fn a_row_past_the_head_or_ahead_of_the_clock_is_named_and_the_clock_is_held_to_the_database() {
    let pg = Postgres::start();
    let sb = Sandbox::start(10);
    let env = team_env(&sb, &pg, "postgres");
    team_run(&env, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"x\"})"]).success();
    pg.add_writer();
    let rows: Vec<serde_json::Value> = team_run(&env, "postgres", &["audit", "export"])
        .success()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    // A row dated 2099 is refused as it is written.
    let mut future = event_of(&rows[0]);
    future.phase = "note".into();
    future.ts = "2099-01-01T00:00:00.000Z".into();
    let export = team_run(&env, "postgres", &["audit", "export"]).success().stdout;
    let head: serde_json::Value = serde_json::from_str(export.lines().last().expect("head")).expect("json");
    future.seq = head["seq"].as_i64().expect("seq") + 1;
    let hash = steward::audit::chain::link(head["hash"].as_str().expect("hash"), &future);
    let e = pg.sql_fails_as(
        pg::WRITER,
        pg::WRITER_PASSWORD,
        &format!(
            "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, status, error, token_source, prev_hash, hash) \
             VALUES ({}, 1, '{}', '', '', '', '', 'note', 'x', '{{}}', 'live', 'note', 'ok', '', '', '{}', '{hash}')",
            future.seq, future.ts, head["hash"].as_str().expect("hash")
        ),
    );
    assert!(e.contains("ahead of the database's clock"), "{e}");
    // A chained row a hundred past the head: the chain links, and verify names the gap.
    let mut far = event_of(&rows[0]);
    far.phase = "note".into();
    let export_head = head["seq"].as_i64().expect("seq");
    let mut at_gap = far.clone();
    at_gap.seq = export_head + 100;
    let gap_hash = steward::audit::chain::link(head["hash"].as_str().expect("hash"), &at_gap);
    pg.sql_as(
        pg::WRITER,
        pg::WRITER_PASSWORD,
        &format!(
            "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, status, error, token_source, prev_hash, hash, token_fp, run_digest, origin) \
             VALUES ({}, {}, '{}', $f${}$f$, $f${}$f$, $f${}$f$, $f${}$f$, $f${}$f$, $f${}$f$, $f${}$f$, $f${}$f$, 'note', $f${}$f$, '', $f${}$f$, '{}', '{gap_hash}', $f${}$f$, $f${}$f$, '')",
            at_gap.seq, at_gap.run_id, at_gap.ts, at_gap.profile, at_gap.kind, at_gap.base_url, at_gap.identity,
            at_gap.op, at_gap.target, at_gap.params, at_gap.mode, at_gap.status, at_gap.token_source,
            head["hash"].as_str().expect("hash"), at_gap.token_fp, at_gap.run_digest
        ),
    );
    let verify = team_run(&env, "postgres", &["audit", "verify"]);
    let said = format!("{}{}", verify.stdout, verify.stderr);
    assert_eq!(verify.status, Some(1), "{}", verify.report());
    assert!(said.contains(&format!("no rows between seq {export_head} and seq {}", export_head + 100)), "{said}");
    assert!(said.contains("written by alice"), "alice wrote into run 1 (the owner's): {said}");
}

#[test]
fn a_run_number_from_before_a_push_is_never_taken_for_another_job() {
    let pg = Postgres::start();
    let sb = Sandbox::start(20);
    // The team log's run 1 suspends user0010; one admin's own log's run 1 suspends user0003.
    let team = team_env(&sb, &pg, "postgres");
    team_run(&team, "postgres", &["--yes", "eval", "connect().suspend(\"user0010\", #{reason: \"left\"})"]).success();
    let solo = Env::with_sandbox(&sb);
    solo.run(&["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"left\"})"]).success();
    let db = solo.audit_db().display().to_string();
    team_run(&team, "postgres", &["audit", "push", &db]).success();
    let pushed_as: i64 = pg.sql_in("steward", "SELECT id FROM runs WHERE origin IS NOT NULL").parse().expect("one run");
    assert_ne!(pushed_as, 1, "the pushed run got a new number");

    // `undo 1`, as the admin's old hint said: two jobs answer to it; nothing is sent, both are named.
    let run = team_run(&team, "postgres", &["--yes", "undo", "1"]).code(2);
    assert!(run.stderr.contains("here:1") && run.stderr.contains(&format!("now run {pushed_as}")), "{}", run.report());
    assert_eq!(sb.count_method("DELETE"), 0, "nothing undone on an unclear run");
    // Named plainly, each is found; the pushed one by its old number, said aloud.
    let run = team_run(&team, "postgres", &["--yes", "undo", "pushed:1"]).success();
    assert!(run.stderr.contains(&format!("is run {pushed_as} in this log")), "{}", run.report());
    assert_eq!(sb.count("DELETE /api/v3/users/user0003/suspended"), 1, "the pushed job was undone");
    assert_eq!(sb.count("DELETE /api/v3/users/user0010/suspended"), 0, "the team's run 1 was left alone");
    let shown = team_run(&team, "postgres", &["--format", "json", "runs", "show", "here:1"]).success();
    assert!(shown.stdout.contains("user0010"), "{}", shown.report());
    // `runs` marks the pushed run with the name it had.
    let runs = team_run(&team, "postgres", &["--format", "json", "runs"]).success();
    assert!(runs.stdout.contains("[pushed: run 1 of log"), "{}", runs.report());
    // A resume names its run the same way: `--resume 1` is unclear too.
    solo.write("job.rhai", "connect().suspend_all([\"user0004\"], #{reason: \"x\"});");
    let mut resume = team_cmd(&team, "postgres");
    resume.current_dir(solo.dir.path()).args(["--yes", "run", "job.rhai", "--resume", "1"]);
    Run::of(resume).code(2).stderr_has("here:1");
}

#[test]
fn an_owner_who_may_not_make_roles_is_told_the_set_up_it_could_not_do() {
    let pg = Postgres::start();
    let sb = Sandbox::start(5);
    // The database's owner is an ordinary login, without CREATEROLE.
    pg.sql(&format!(
        "CREATE ROLE keeper LOGIN PASSWORD '{}'; ALTER DATABASE steward OWNER TO keeper",
        pg::SUPER_PASSWORD
    ));
    pg.sql_in("steward", "ALTER SCHEMA public OWNER TO keeper");
    let env = team_env(&sb, &pg, "keeper");
    let run =
        team_run(&env, "keeper", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"x\"})"]).success();
    assert!(run.stderr.contains("steward_writer was not made (no CREATEROLE)"), "{}", run.report());
    assert_eq!(pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'steward_writer'"), "0");
}

#[test]
fn a_row_written_past_the_chain_stops_the_team_until_the_owner_sets_it_aside_on_the_record() {
    let pg = Postgres::start();
    let sb = Sandbox::start(10);
    let owner = team_env(&sb, &pg, "postgres");
    team_run(&owner, "postgres", &["--yes", "eval", "connect().suspend(\"user0003\", #{reason: \"x\"})"]).success();
    pg.add_writer();
    // A teammate writes a row that does not link to the chain.
    let head: i64 = pg.sql_in("steward", "SELECT max(seq) FROM events").parse().expect("a seq");
    let bad = head + 1;
    pg.sql_as(
        pg::WRITER,
        pg::WRITER_PASSWORD,
        &format!(
            "INSERT INTO events (seq, run_id, ts, profile, kind, base_url, identity, op, target, params, mode, phase, \
             status, error, token_source, prev_hash, hash) VALUES ({bad}, 999, '2026-12-01T00:00:00.000Z', '', '', '', \
             '', 'note', 'x', '{{}}', 'live', 'note', 'ok', '', '', 'not-a-hash', 'not-a-hash-either')"
        ),
    );
    // Fail closed: nothing is sent while the chain breaks.
    let suspend = |login: &str| format!("connect().suspend(\"{login}\", #{{reason: \"x\"}})");
    let run = team_run(&owner, "postgres", &["--yes", "eval", &suspend("user0004")]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert_eq!(sb.count("PUT /api/v3/users/user0004/suspended"), 0);
    // Only the row where it breaks, only by the owner, and only with a reason.
    let alice = team_env(&sb, &pg, pg::WRITER);
    team_run(&alice, pg::WRITER, &["audit", "set-aside", &bad.to_string(), "--why", "mine"])
        .code(1)
        .stderr_has("only the team log's owner");
    team_run(&owner, "postgres", &["audit", "set-aside", &head.to_string(), "--why", "x"])
        .code(2)
        .stderr_has(&format!("breaks at seq {bad}"));
    team_run(
        &owner,
        "postgres",
        &["audit", "set-aside", &bad.to_string(), "--why", "alice's test row, looked at by the owner"],
    )
    .success();
    // The team acts again; the row is kept, skipped, and named.
    team_run(&owner, "postgres", &["--yes", "eval", &suspend("user0004")]).success();
    assert_eq!(sb.count("PUT /api/v3/users/user0004/suspended"), 1);
    let verify = team_run(&owner, "postgres", &["audit", "verify"]).success();
    assert!(verify.stderr.contains(&format!("seq {bad} is set aside")), "{}", verify.report());
    assert_eq!(pg.sql_in("steward", &format!("SELECT count(*) FROM events WHERE seq = {bad}")), "1", "kept");
    let noted = rows(&owner, "postgres").into_iter().filter(|e| e["op"] == "audit_set_aside").count();
    assert_eq!(noted, 1, "the setting aside is on the record");
    // Another machine, new to the log, verifies it whole too.
    let other = team_env(&sb, &pg, "postgres");
    team_run(&other, "postgres", &["--yes", "eval", &suspend("user0005")]).success();
}
