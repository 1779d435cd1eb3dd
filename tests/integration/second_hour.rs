//! A newcomer's second hour (issue 40): each trip a person made with steward, driven as that person did.

use crate::util::{run_services, services_env, Env, Sandbox};
use steward_sandbox::Options;

/// `profiles show` says the rate a profile keeps to, where it comes from, even when the profile sets none.
#[test]
fn profiles_show_says_the_rate_limit_that_applies() {
    let sb = Sandbox::start(3);
    let env = services_env(&sb);
    let show = |name: &str| -> serde_json::Value {
        let out = run_services(&env, &["--format", "json", "profiles", "show", name], None).success();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.report()))
    };
    let tfe = show("tfe");
    assert_eq!(tfe["rate_limit"], 20.0, "{tfe}");
    assert!(tfe["rate_limit_from"].as_str().unwrap_or_default().contains("default"), "{tfe}");
    let ghes = show("ghes");
    assert_eq!(ghes["rate_limit"], serde_json::Value::Null, "{ghes}");
    assert!(ghes["rate_limit_from"].as_str().unwrap_or_default().contains("paced by the server"), "{ghes}");
}

/// An intent's line in `audit list` says whether its request's outcome is recorded (`closed`) or not
/// (`pending`), rather than always `pending` as it was written.
#[test]
fn audit_list_says_whether_an_intent_is_still_open() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    env.run(&["--yes", "eval", r#"connect("ghes").suspend("user0005", #{reason: "left"})"#]).success();
    // Killed after its intent was committed: that one stays open.
    let mut cmd = env.cmd();
    cmd.env("STEWARD_FAILPOINT", "after_intent_commit:1").args([
        "--yes",
        "eval",
        r#"connect("ghes").suspend("user0006", #{reason: "left"})"#,
    ]);
    let killed = crate::util::Run::of(cmd);
    assert_ne!(killed.status, Some(0), "the failpoint did not stop the run: {}", killed.report());
    let table = env.run(&["--format", "table", "audit", "list", "--op", "suspend"]).success().stdout;
    let line = |target: &str| {
        table
            .lines()
            .find(|l| l.contains(target) && l.contains("intent"))
            .unwrap_or_else(|| panic!("no intent for {target}:\n{table}"))
            .to_string()
    };
    assert!(line("user0005").contains("closed") && !line("user0005").contains("pending"), "{table}");
    assert!(line("user0006").contains("pending"), "{table}");
    // The record itself is as written: JSON shows the intent's own status.
    let rows = env.audit_rows(&["--op", "suspend"]);
    assert!(rows.iter().filter(|r| r["phase"] == "intent").all(|r| r["status"] == "pending"), "{rows:?}");
}

/// A number is written as a number (a spreadsheet reads `-5` as minus five, never as a formula); text that a
/// spreadsheet would run is neutralised, and `read_csv` gives back exactly what `write_csv` was given.
#[test]
fn write_csv_keeps_numbers_and_read_csv_reads_back_what_was_written() {
    let env = Env::new();
    let out = env.path("out.csv");
    let script =
        format!(r#"write_csv("{0}", [#{{n: -5, x: "-1.5", f: "=1+1", g: "-2+3"}}]); read_csv("{0}")"#, out.display());
    let back = env.eval_json(&script);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("'=1+1,'-2+3,-5,-1.5")), "{text}");
    assert_eq!(back[0]["f"], "=1+1", "{back}");
    assert_eq!(back[0]["g"], "-2+3", "{back}");
    assert_eq!(back[0]["n"], "-5", "{back}");
}

/// The stdlib's `users::find_by_email` finds a GHES user by the address on their record.
#[test]
fn find_by_email_finds_a_ghes_user() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    let found =
        env.eval_json(r#"import "users" as u; u::find_by_email(connect("ghes"), "USER0007@example.com").login"#);
    assert_eq!(found, "user0007");
    let nobody = env.eval_json(r#"import "users" as u; u::find_by_email(connect("ghes"), "nobody@example.com")"#);
    assert_eq!(nobody, serde_json::Value::Null);
}

/// `--sandbox` in a fresh home: a first command that writes nothing still keeps the sandbox's state, quietly.
#[test]
fn a_first_sandbox_command_in_a_fresh_home_warns_of_nothing() {
    let env = Env::new();
    let mut cmd = env.cmd();
    let home = env.path("fresh-home");
    cmd.env("XDG_DATA_HOME", &home).env_remove("STEWARD_AUDIT_DB").env_remove("STEWARD_AUDIT_URL").args([
        "--sandbox",
        "profiles",
        "list",
    ]);
    let out = crate::util::Run::of(cmd).success();
    assert!(!out.stderr.contains("could not be kept") && !out.stderr.contains("WARN"), "{}", out.report());
}

/// Stopped by `--timeout` while the job was still reading who each user is: nothing was sent, so every item
/// left is `cancelled`, none `failed`.
#[test]
fn items_stopped_before_their_request_are_cancelled_not_failed() {
    let sb = Sandbox::with(Options { users: 60, latency: std::time::Duration::from_millis(300), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let rows: String = (3..=60).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{rows}"));
    let job = r#"let r = connect("ghes").suspend_all(ARGS.csv, #{reason: "left"}); print(r.map(|x| x.status));"#;
    env.write("job.rhai", job);
    let run = env.run(&["--yes", "--timeout", "2", "run", "job.rhai", "--arg", "csv=leavers.csv"]);
    assert_eq!(sb.count_method("PUT"), 0, "the test stopped the job after it sent: {}", run.report());
    let outcomes = env.audit_rows(&["--op", "suspend"]);
    assert!(outcomes.iter().all(|r| r["status"] != "failed"), "{outcomes:#?}\n{}", run.report());
    assert!(!run.stdout.contains("failed") && !run.stderr.contains("failed 4"), "{}", run.report());
}

/// Ctrl-C during an undo ends it as a stopped run (130, not "some items failed"), and the hint says how to finish
/// it: the same undo again, which puts back the rest.
#[test]
fn a_ctrl_c_during_undo_exits_130_and_undoing_again_finishes_it() {
    let sb = Sandbox::with(Options { users: 40, latency: std::time::Duration::from_millis(200), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let before = sb.suspended();
    let rows: String = (3..=40).map(|i| format!("user{i:04}\n")).collect();
    env.write("leavers.csv", &format!("login\n{rows}"));
    env.write("job.rhai", r#"connect("ghes").suspend_all(ARGS.csv, #{reason: "left"}); 1"#);
    env.run(&["--yes", "run", "job.rhai", "--arg", "csv=leavers.csv"]).success();
    assert_ne!(sb.suspended(), before);

    let puts = sb.count_method("PUT") + sb.count_method("DELETE");
    let mut cmd = env.cmd();
    cmd.args(["--yes", "undo", "1"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while sb.count_method("DELETE") < 4 && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: a plain signal to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("`steward undo 1` again"), "the hint names the job to undo again: {stderr}");
    assert!(sb.count_method("PUT") + sb.count_method("DELETE") > puts, "the undo sent nothing before Ctrl-C");
    assert_ne!(sb.suspended(), before, "the test stopped the undo after its end");

    env.run(&["--yes", "undo", "1"]).success();
    assert_eq!(sb.suspended(), before, "the second undo put back the rest");
}

/// `steward sandbox --help` shows only what `sandbox` takes (the global options are refused there).
#[test]
fn sandbox_help_shows_only_its_own_options() {
    let env = Env::new();
    let help = env.run(&["sandbox", "--help"]).success().stdout;
    assert!(help.contains("--latency-ms") && help.contains("--faults"), "{help}");
    for global in ["--audit-db", "--config", "--dry-run", "--profile", "Global options"] {
        assert!(!help.contains(global), "{global} in: {help}");
    }
    // Elsewhere they are still shown.
    assert!(env.run(&["eval", "--help"]).success().stdout.contains("--audit-db"));
}
