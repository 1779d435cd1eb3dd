//! The record holds (issue 33): a log cut or edited under a running process, by an attacker who reproduces the
//! chain exactly (`forger.rs`), is never signed over and never acted on.

use crate::forger::Forger;
use crate::util::Env;
use rexpect::session::PtySession;
use steward_sandbox::transactionlink_tokens::{ROLE_MEMBER, ROLE_OWNER};

/// A REPL on the sandbox, through a pty; its log is `sandbox-audit.db` beside the env's.
fn repl(env: &Env) -> PtySession {
    let mut cmd = std::process::Command::new("sh");
    env.configure(&mut cmd);
    cmd.env("TERM", "xterm")
        .args(["-c", &format!("stty cols 200 rows 50; exec '{}' --sandbox --yes", env!("CARGO_BIN_EXE_steward"))]);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).expect("the REPL starts on a pty");
    p.exp_string("steward>").expect("a prompt");
    p
}

fn line(p: &mut PtySession, text: &str) -> String {
    p.send_line(text).unwrap();
    p.exp_string("steward>").unwrap()
}

fn sandbox_log(env: &Env) -> std::path::PathBuf {
    env.sandbox_log()
}

/// The reported attack: while a REPL was open, the log's tail was cut, erasing a suspension the service carried
/// out; the REPL refused its next action, but on exit signed a fresh checkpoint over the cut log, and `audit
/// verify` said OK. Now it signs no checkpoint past what it verified, records nothing more, says what it found,
/// and every later process sees the cut.
#[test]
fn a_log_cut_under_a_running_repl_is_never_signed_over() {
    let env = Env::new();
    let mut p = repl(&env);
    line(&mut p, r#"let gh = connect("github")"#);
    line(&mut p, r#"gh.suspend("user0001", #{reason: "left"})"#);
    let forger = Forger::open(&sandbox_log(&env));
    let before = forger.head();
    line(&mut p, r#"gh.suspend("user0002", #{reason: "left"})"#);
    assert!(forger.head() > before, "the second suspension is on record");
    // The second suspension (carried out by the service) is erased; the chain left verifies on its own.
    forger.cut_after(before);
    let refused = line(&mut p, r#"gh.suspend("user0003", #{reason: "left"})"#);
    assert!(refused.contains("changed under"), "{refused}");
    p.send_control('d').unwrap();
    let said = p.exp_eof().unwrap_or_default();
    assert!(!said.contains("panicked"), "{said}");
    drop(p);

    let verify = env.run(&["--sandbox", "audit", "verify"]);
    assert_ne!(verify.status, Some(0), "audit verify passed a log cut under a running process\n{}", verify.report());
    assert!(
        verify.stdout.contains("no longer in the log") || verify.stderr.contains("no longer in the log"),
        "{}",
        verify.report()
    );
    // Every later action stops until someone looks and anchors the log again, on the record.
    env.run(&["--sandbox", "--yes", "eval", r#"connect("github").suspend("user0004", #{reason: "x"})"#])
        .code(1)
        .stderr_has("cut off");
}

/// The reported attack: a long-running REPL verified the log once (its first reinstatement read it back); the
/// role recorded before another termination was then edited to the owner's, and `reinstate` granted the owner
/// role. Now each read behind a decision verifies the row it reads: refused, nothing sent.
#[test]
fn a_row_edited_under_a_long_running_repl_never_drives_its_decision() {
    let env = Env::new();
    let mut p = repl(&env);
    line(&mut p, r#"let tl = connect("transactionlink")"#);
    line(&mut p, r#"tl.terminate("tluser0051@example.com")"#);
    line(&mut p, r#"tl.terminate("tluser0052@example.com")"#);
    let back = line(&mut p, r#"tl.unsuspend("tluser0052@example.com").role"#);
    assert!(back.contains("member"), "the first reinstatement read the log back: {back}");
    let forger = Forger::open(&sandbox_log(&env));
    let suspension = forger
        .find("op = 'suspend' AND phase = 'outcome' AND target LIKE '%0051'")
        .expect("the first termination's outcome");
    let params = forger.params(suspension);
    assert!(params.contains(ROLE_MEMBER), "{params}");
    forger.edit_params_only(suspension, &params.replace(ROLE_MEMBER, ROLE_OWNER));
    let refused = line(&mut p, r#"tl.unsuspend("tluser0051@example.com").role"#);
    assert!(refused.contains("changed under"), "{refused}");
    assert!(!refused.contains("owner"), "{refused}");
    p.send_control('d').unwrap();
    let _ = p.exp_eof();
}

/// The reported attack: a row before the newest checkpoint edited, hashes left as they were (a visibly broken
/// chain): actions went on, only reads for decisions refused. Now a broken chain anywhere stops actions.
#[test]
fn a_row_edited_before_the_newest_checkpoint_stops_every_action() {
    let env = Env::new();
    let suspend = |who: &str| format!(r#"connect("github").suspend("{who}", #{{reason: "x"}})"#);
    env.run(&["--sandbox", "--yes", "eval", &suspend("user0001")]).success();
    env.run(&["--sandbox", "--yes", "eval", &suspend("user0002")]).success();
    let forger = Forger::open(&sandbox_log(&env));
    let first = forger.find("op = 'suspend' AND phase = 'intent'").expect("an intent");
    forger.edit_params_only(1.max(first - 2), r#"{"edited": true}"#);
    env.run(&["--sandbox", "--yes", "eval", &suspend("user0003")]).code(1).stderr_has("chain breaks");
}

/// The reported attack: deleting the checkpoint's copy in the state directory was accepted silently, after which
/// an older or cut log would pass. The copies refer to each other: one missing stops every action until `audit
/// anchor` re-establishes it, on the record.
#[test]
fn a_deleted_state_directory_copy_of_the_checkpoint_stops_actions_until_anchored_again() {
    let env = Env::new();
    let suspend = |who: &str| format!(r#"connect("github").suspend("{who}", #{{reason: "x"}})"#);
    env.run(&["--sandbox", "--yes", "eval", &suspend("user0001")]).success();
    let anchors = env.path(".local/state/steward/anchors");
    let copies: Vec<_> = std::fs::read_dir(&anchors).expect("the state directory holds the copies").flatten().collect();
    assert!(!copies.is_empty());
    for copy in copies {
        std::fs::remove_file(copy.path()).unwrap();
    }
    env.run(&["--sandbox", "--yes", "eval", &suspend("user0002")]).code(1).stderr_has("is missing");
    env.run(&["--sandbox", "--yes", "audit", "anchor"]).success().stdout_has("anchored");
    env.run(&["--sandbox", "--yes", "eval", &suspend("user0002")]).success();
    let anchored = env.run(&["--sandbox", "--format", "json", "audit", "list", "--op", "audit_anchor"]).success();
    assert!(anchored.stdout.contains("is missing"), "the anchoring is on the record with why\n{}", anchored.report());
}

/// A forger who rewrites a row and recomputes every hash after it (the chain verifies on its own) while a REPL
/// runs: the REPL's next action is refused, and the checkpoint it leaves names the event it last wrote, as it
/// wrote it, so `audit verify` and every later process see the rewrite.
#[test]
fn a_chain_rewritten_under_a_running_repl_is_refused_and_left_visible() {
    let env = Env::new();
    let mut p = repl(&env);
    line(&mut p, r#"let gh = connect("github")"#);
    line(&mut p, r#"gh.suspend("user0001", #{reason: "left"})"#);
    line(&mut p, r#"gh.suspend("user0002", #{reason: "left"})"#);
    let forger = Forger::open(&sandbox_log(&env));
    let first = forger.find("op = 'suspend' AND phase = 'intent' AND target = 'user0001'").expect("an intent");
    forger.edit_params(first, r#"{"reason": "never happened"}"#);
    let refused = line(&mut p, r#"gh.suspend("user0003", #{reason: "left"})"#);
    assert!(refused.contains("changed under") && refused.contains("was altered"), "{refused}");
    p.send_control('d').unwrap();
    let _ = p.exp_eof();
    drop(p);
    let verify = env.run(&["--sandbox", "audit", "verify"]);
    assert_ne!(verify.status, Some(0), "{}", verify.report());
    assert!(verify.report().contains("no longer has the hash"), "{}", verify.report());
}
