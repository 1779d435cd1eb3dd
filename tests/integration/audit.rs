//! The audit log from the outside: filters, show, export, and tampering caught by `audit verify`.

use crate::util::{Env, Sandbox};

fn env_with_history() -> (Sandbox, Env) {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    env.eval_json(
        r#"let gh = connect("ghes"); gh.suspend("user0001"); gh.suspend("user0003"); gh.promote("user0004")"#,
    );
    (sb, env)
}

#[test]
fn list_filters_by_op_target_and_run() {
    let (_sb, env) = env_with_history();
    assert_eq!(env.audit_rows(&["--op", "suspend"]).len(), 4);
    assert_eq!(env.audit_rows(&["--target", "user0004"]).len(), 2);
    assert_eq!(env.audit_rows(&["--run", "1"]).len(), 6);
    assert_eq!(env.audit_rows(&["--since", "2000-01-01"]).len(), 6);
    assert_eq!(env.audit_rows(&["--until", "2000-01-01"]).len(), 0);
    assert_eq!(env.audit_rows(&["--profile", "ghes"]).len(), 6);
    assert_eq!(env.audit_rows(&["--pending"]).len(), 0);
}

#[test]
fn show_prints_one_event_or_a_run() {
    let (_sb, env) = env_with_history();
    env.run(&["--format", "table", "audit", "show", "1"]).success().stdout_has("intent").stdout_has("user0001");
    env.run(&["--format", "json", "audit", "show", "--run", "1"]).success().stdout_has("user0004");
    env.run(&["audit", "show", "999"]).code(2).stderr_has("no such event");
}

#[test]
fn export_carries_the_hashes_as_json_lines_or_csv() {
    let (_sb, env) = env_with_history();
    let lines = env.run(&["audit", "export"]).success().stdout;
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[1]["prev_hash"], rows[0]["hash"]);
    env.run(&["--format", "csv", "audit", "export"]).success().stdout_has("prev_hash,hash");
}

#[test]
fn an_edited_row_fails_verification_at_its_seq() {
    let (_sb, env) = env_with_history();
    env.edit_log("UPDATE events SET target = 'someone-else' WHERE seq = 3");
    env.run(&["audit", "verify"]).code(1).stderr_has("BROKEN at seq 3").stderr_has("edited");
}

#[test]
fn a_deleted_row_fails_verification_at_the_next_seq() {
    let (_sb, env) = env_with_history();
    env.edit_log("DELETE FROM events WHERE seq = 2");
    env.run(&["audit", "verify"]).code(1).stderr_has("BROKEN at seq 3").stderr_has("removed");
}

#[test]
fn the_log_refuses_edits_through_sqlite() {
    if crate::util::sqlite_only("the_log_refuses_edits_through_sqlite") {
        return;
    }
    let (_sb, env) = env_with_history();
    let conn = rusqlite::Connection::open(env.audit_db()).unwrap();
    let err = conn.execute("UPDATE events SET status = 'ok'", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[test]
fn runs_record_who_ran_what_and_how_it_ended() {
    let (_sb, env) = env_with_history();
    let command = env.log_value("SELECT command FROM runs WHERE id = 1");
    let status = env.log_value("SELECT exit_status FROM run_ends WHERE run_id = 1");
    assert!(command.contains("eval"), "{command}");
    assert_eq!(status, "0");
}

#[test]
fn reading_an_absent_log_says_where_it_looked() {
    if crate::util::sqlite_only("reading_an_absent_log_says_where_it_looked") {
        return;
    }
    Env::new().run(&["audit", "list"]).code(2).stderr_has("no audit log at");
}

#[test]
fn events_name_the_token_by_a_keyed_fingerprint_that_can_be_looked_up() {
    let (_sb, env) = env_with_history();
    let rows = env.audit_rows(&[]);
    let fp = rows[0]["token_fp"].as_str().unwrap().to_string();
    assert!(fp.starts_with("hmac-sha256:") && fp.len() == 28, "{fp}");
    assert!(rows.iter().all(|r| r["token_fp"] == fp.as_str()), "one token, one fingerprint");
    assert_eq!(env.audit_rows(&["--token-fp", &fp]).len(), 6);
    assert_eq!(env.audit_rows(&["--token-fp", "hmac-sha256:0000000000000000"]).len(), 0);

    // The key lives beside the log, private (a team's, in its database); whoever holds it can say what a token did.
    match env.team_log {
        None => {
            use std::os::unix::fs::PermissionsExt;
            let key = env.path("audit.db.key");
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        Some(_) => assert_eq!(env.log_value("SELECT count(*) FROM steward_keys WHERE name = 'token_fingerprint'"), "1"),
    }
    let lookup = |token: &str| {
        let mut cmd = env.cmd();
        cmd.args(["--format", "json", "audit", "fingerprint"]).stdin(std::process::Stdio::piped());
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains(token), "the token is never printed");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let mine = lookup(crate::util::ADMIN_TOKEN);
    assert_eq!(mine["token_fp"], fp.as_str());
    assert_eq!(mine["events"], 6);
    let other = lookup("ghp_someoneelsestokenxxxxxxxxxxxxxxxxxxxx");
    assert_ne!(other["token_fp"], fp.as_str());
    assert_eq!(other["events"], 0);
    env.run(&["audit", "verify"]).success();
}

#[test]
fn checkpoints_are_signed_and_an_edited_forged_or_unsigned_one_stops_every_action() {
    if crate::util::sqlite_only("checkpoints_are_signed_and_an_edited_forged_or_unsigned_one_stops_every_action") {
        return;
    }
    let (sb, env) = env_with_history();
    let checkpoint = env.path("audit.db.checkpoint");
    let note = std::fs::read_to_string(&checkpoint).unwrap();
    let vkey = env.run(&["audit", "key"]).success().stdout.trim().to_string();
    let name = vkey.split('+').next().unwrap();
    assert!(note.starts_with(&format!("{name}\n")) && note.contains(&format!("\n\n— {name} ")), "{note}");
    env.run(&["audit", "verify"]).success().stdout_has("matches the signed checkpoint");

    let suspend = |login: &str| env.run(&["eval", &format!(r#"connect("ghes").suspend("{login}", #{{reason: "x"}})"#)]);
    let seq = note.lines().nth(1).unwrap();
    for (what, text, says) in [
        ("edited", note.replacen(&format!("\n{seq}\n"), "\n1\n", 1), "does not verify"),
        ("unsigned", format!("{{\"seq\":1,\"hash\":\"{}\",\"ts\":\"x\"}}", "0".repeat(64)), "unsigned"),
    ] {
        std::fs::write(&checkpoint, text).unwrap();
        env.run(&["audit", "verify"]).code(1).stderr_has("BROKEN").stderr_has(says);
        suspend("user0009").code(1).stderr_has("cannot be trusted").stderr_has(says);
        assert_eq!(sb.count("PUT /api/v3/users/user0009/suspended"), 0, "{what}: nothing sent");
    }
    // Another log's key vouches for nothing here.
    std::fs::write(&checkpoint, &note).unwrap();
    let (_, other) = env_with_history();
    let other_key = other.run(&["audit", "key"]).success().stdout.trim().to_string();
    env.run(&["audit", "verify", "--key", &other_key]).code(1).stderr_has("no signature by");
    suspend("user0009").success();
}

#[test]
fn a_deleted_checkpoint_stops_every_action_until_the_log_is_anchored_anew_on_the_record() {
    if crate::util::sqlite_only("a_deleted_checkpoint_stops_every_action_until_the_log_is_anchored_anew_on_the_record")
    {
        return;
    }
    let (sb, env) = env_with_history();
    let suspend = |login: &str| env.run(&["eval", &format!(r#"connect("ghes").suspend("{login}", #{{reason: "x"}})"#)]);
    // Without its checkpoint, a log edited and re-hashed from its first row would verify: so none is accepted.
    std::fs::remove_file(env.path("audit.db.checkpoint")).unwrap();
    suspend("user0009").code(1).stderr_has("is missing").stderr_has("steward audit anchor");
    assert_eq!(sb.count("PUT /api/v3/users/user0009/suspended"), 0, "nothing is sent on an unanchored log");
    env.run(&["audit", "verify"]).code(1).stderr_has("BROKEN").stderr_has("is missing");
    // Anchoring asks first; with no terminal and no --yes it is refused.
    env.run(&["audit", "anchor"]).code(2).stderr_has("not anchored");
    env.run(&["--yes", "audit", "anchor"]).success().stdout_has("anchored");
    let rows = env.audit_rows(&["--op", "audit_anchor"]);
    assert_eq!(rows.len(), 1, "the re-anchoring is itself on the record: {rows:?}");
    assert!(rows[0]["error"].as_str().unwrap_or_default().contains("is missing"), "{rows:?}");
    env.run(&["audit", "verify"]).success();
    suspend("user0009").success();
    assert_eq!(sb.count("PUT /api/v3/users/user0009/suspended"), 1);
}

#[test]
fn a_log_rolled_back_with_its_checkpoint_is_caught_by_the_copy_outside_its_directory() {
    if crate::util::sqlite_only("a_log_rolled_back_with_its_checkpoint_is_caught_by_the_copy_outside_its_directory") {
        return;
    }
    let (sb, env) = env_with_history();
    let suspend = |login: &str| env.run(&["eval", &format!(r#"connect("ghes").suspend("{login}", #{{reason: "x"}})"#)]);
    // An older, validly signed pair of log and checkpoint...
    let old_db = std::fs::read(env.audit_db()).unwrap();
    let old_cp = std::fs::read(env.path("audit.db.checkpoint")).unwrap();
    suspend("user0005").success();
    // ...put back after more happened: on its own, the pair verifies.
    let _ = std::fs::remove_file(env.path("audit.db-wal"));
    let _ = std::fs::remove_file(env.path("audit.db-shm"));
    std::fs::write(env.audit_db(), old_db).unwrap();
    std::fs::write(env.path("audit.db.checkpoint"), old_cp).unwrap();
    suspend("user0009").code(1).stderr_has("rolled back");
    assert_eq!(sb.count("PUT /api/v3/users/user0009/suspended"), 0);
    env.run(&["audit", "verify"]).code(1).stderr_has("rolled back");
    // A log set back on purpose (a restore from backup) is anchored anew, on the record.
    env.run(&["--yes", "audit", "anchor"]).success();
    suspend("user0009").success();
}

#[test]
fn a_new_log_is_anchored_before_its_first_event() {
    if crate::util::sqlite_only("a_new_log_is_anchored_before_its_first_event") {
        return;
    }
    let sb = Sandbox::start(3);
    let env = Env::with_sandbox(&sb);
    // Killed before its end, the first run still leaves a checkpoint to check the log against.
    let mut cmd = env.cmd();
    cmd.env("STEWARD_FAILPOINT", "after_intent_commit:1")
        .args(["eval", r#"connect("ghes").suspend("user0001", #{reason: "x"})"#]);
    let killed = crate::util::Run::of(cmd);
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    assert!(env.path("audit.db.checkpoint").exists(), "the genesis checkpoint");
    env.run(&["audit", "verify"]).success();
    env.run(&["eval", r#"connect("ghes").suspend("user0002", #{reason: "x"})"#]);
    env.run(&["audit", "verify"]).success();
}

#[test]
fn a_symlinked_log_is_followed_to_its_real_file() {
    if crate::util::sqlite_only("a_symlinked_log_is_followed_to_its_real_file") {
        return;
    }
    let sb = Sandbox::start(3);
    let env = Env::with_sandbox(&sb);
    std::fs::create_dir(env.path("real")).unwrap();
    std::os::unix::fs::symlink(env.path("real/audit.db"), env.audit_db()).unwrap();
    env.eval_json(r#"let gh = connect("ghes"); gh.suspend("user0001"); gh.suspend("user0003")"#);
    assert!(env.path("real/audit.db").exists());
    let notes = env.audit_rows(&["--op", "audit_log"]);
    assert!(notes.is_empty(), "no write-ahead file was lost, so no wal_restored note: {notes:?}");
    env.run(&["audit", "verify"]).success();
}

#[test]
fn undo_and_resume_act_only_on_a_log_that_verifies_whole() {
    let (sb, env) = env_with_history();
    // The edit sits before the newest checkpoint: only a full verification sees it.
    env.edit_log("UPDATE events SET target = 'user0007' WHERE target = 'user0003'");
    env.run(&["--yes", "undo", "1"]).code(1).stderr_has("does not verify");
    assert_eq!(sb.count("DELETE /api/v3/users/user0007/suspended"), 0, "undo acted on an edited row");
    env.write("job.rhai", r#"connect("ghes").suspend_all(["user0007"], #{reason: "x"})"#);
    env.run(&["--yes", "run", "job.rhai", "--resume", "1"]).code(1).stderr_has("does not verify");
    assert_eq!(sb.count("PUT /api/v3/users/user0007/suspended"), 0);
}

#[test]
fn the_record_of_who_ran_what_is_bound_into_the_chain() {
    let (_sb, env) = env_with_history();
    env.run(&["audit", "verify"]).success();
    env.edit_log("UPDATE runs SET os_user = 'someone-else', command = 'steward eval 1'");
    env.run(&["audit", "verify"])
        .code(1)
        .stderr_has("BROKEN at seq 1")
        .stderr_has("the record of the run that made it");
}
