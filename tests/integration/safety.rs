//! The safety rules on resolved accounts, on every path: a protected account or the caller's own is refused
//! by any of its names (id, login, email, any case), by the single call and the bulk call alike, and
//! destructive bulk work asks as the single call does. Each case checks the sandbox's request counters.

use crate::util::{Env, Run, Sandbox};
use serde_json::{json, Value};

fn tfe_env(sb: &Sandbox) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"tfe\"\n[profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\ntimeout = 5\nprotected = [\"tfuser0003\"]\n",
        sb.running.terraform_url()
    ));
    env
}

fn tl_env(sb: &Sandbox) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"tl\"\n[profiles.tl]\nkind = \"transactionlink\"\nurl = \"{}\"\ntoken_env = \"TL_TOKEN\"\ntimeout = 5\nprotected = [\"tluser0005@example.com\"]\n",
        sb.running.transactionlink_url()
    ));
    env
}

fn run(env: &Env, var: &str, token: &str, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.env(var, token).args(args);
    Run::of(cmd)
}

fn json_of(r: Run) -> Value {
    let r = r.success();
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.report()))
}

#[test]
fn a_protected_terraform_user_is_refused_by_its_id_email_and_any_case() {
    let sb = Sandbox::start(10);
    let env = tfe_env(&sb);
    let token = steward_sandbox::tfe_tokens::ADMIN_TOKEN;
    let eval = |expr: &str| run(&env, "TFE_TOKEN", token, &["--yes", "--format", "json", "eval", expr]);
    let user = json_of(eval(r#"connect().get_user("tfuser0003")"#));
    let id = user["id"].as_str().expect("an id").to_string();
    let names = [id.clone(), "tfuser0003@example.com".into(), "TFUser0003".into(), "TFUSER0003@EXAMPLE.COM".into()];
    for name in &names {
        for verb in ["suspend", "delete_user", "demote"] {
            eval(&format!(r#"connect().{verb}("{name}")"#)).code(1).stderr_has("protected").stderr_has("tfuser0003");
        }
    }
    let names_json = serde_json::to_string(&names).unwrap();
    let bulk = json_of(eval(&format!(r#"connect().suspend_all({names_json}, #{{reason: "x"}}).map(|r| r.status)"#)));
    assert_eq!(bulk, json!(["skipped", "skipped", "skipped", "skipped"]));
    let state = sb.state();
    let stored = state["terraform"]["users"].as_array().unwrap().iter().find(|u| u["id"] == json!(id)).unwrap().clone();
    assert_eq!(stored["is-suspended"], false, "{stored}");
    assert_eq!(sb.count(&format!("POST /api/v2/admin/users/{id}/actions/suspend")), 0);
    assert_eq!(sb.count(&format!("DELETE /api/v2/admin/users/{id}")), 0);
    // Another user is untouched by the rule.
    eval(r#"connect().suspend("tfuser0004")"#).success();
}

#[test]
fn a_protected_transactionlink_user_is_refused_by_uuid_for_terminate_and_set_role() {
    let sb = Sandbox::start(10);
    let env = tl_env(&sb);
    let token = steward_sandbox::transactionlink_tokens::ADMIN_TOKEN;
    let eval = |expr: &str| run(&env, "TL_TOKEN", token, &["--yes", "--format", "json", "eval", expr]);
    let uuid = json_of(eval(r#"connect().get_user("tluser0005@example.com").id"#));
    let uuid = uuid.as_str().expect("a uuid").to_string();
    for expr in [
        format!(r#"connect().terminate("{uuid}")"#),
        format!(r#"connect().terminate("{}")"#, uuid.to_uppercase()),
        format!(r#"connect().set_role("{uuid}", "member")"#),
        format!(r#"connect().reset_2fa("{uuid}")"#),
        r#"connect().suspend("TLUSER0005@example.com")"#.to_string(),
    ] {
        eval(&expr).code(1).stderr_has("protected");
    }
    let posts = sb.count_method("POST") + sb.count_method("PUT") + sb.count_method("PATCH");
    assert_eq!(posts, 0, "no change reached the server: {}", sb.stats());
}

#[test]
fn demote_all_asks_like_demote_and_promote_all_sends_like_promote() {
    let sb = Sandbox::start(120);
    let env = Env::with_sandbox(&sb);
    // No terminal and no --yes: the destructive bulk job is refused as the single call is.
    env.run(&["eval", r#"connect("ghes").demote("user0050")"#]).code(1).stderr_has("cancelled");
    env.run(&["eval", r#"connect("ghes").demote_all(["user0050", "user0100"])"#])
        .code(1)
        .stderr_has("demote takes access away from 2 accounts");
    assert_eq!(sb.count_method("DELETE"), 0, "nothing was demoted");
    // Granting is not guarded, on either path: user0002 is protected, and promoting it is sent both ways.
    let one = env.run(&["--yes", "--format", "json", "eval", r#"connect("ghes").promote("user0002")"#]);
    one.success();
    let bulk = json_of(env.run(&[
        "--yes",
        "--format",
        "json",
        "eval",
        r#"connect("ghes").promote_all(["user0002"]).map(|r| r.status)"#,
    ]));
    assert_ne!(bulk, json!(["skipped"]), "promote_all and promote agree");
    // With --yes the demotion goes ahead.
    env.run(&["--yes", "eval", r#"connect("ghes").demote_all(["user0050", "user0100"])"#]).success();
    assert_eq!(sb.count_method("DELETE"), 2);
}

#[test]
fn a_handle_speaks_its_own_services_words_only() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    for (expr, says) in [
        (
            r#"connect("ghes").terminate("user0001")"#,
            "terminate is transactionlink's word and not supported by github; on github use suspend",
        ),
        (r#"connect("ghes").reinstate("user0001")"#, "use unsuspend"),
        (r#"connect("ghes").revoke_admin("user0001")"#, "use demote"),
        (r#"connect("ghes").set_role("user0001", "admin")"#, "set_role is transactionlink's word"),
        (r#"connect("ghes").user_activity(#{since: "2026-01-01"})"#, "use activity"),
        (r#"connect("ghes").impersonate("user0001", "x")"#, "impersonate is terraform's word"),
    ] {
        let run = env.run(&["--yes", "eval", expr]).code(1).stderr_has("unsupported").stderr_has(says);
        assert!(!run.stderr.contains("panicked"), "{}", run.report());
    }
    assert_eq!(sb.count_method("PUT") + sb.count_method("DELETE") + sb.count_method("POST"), 0);
}

#[test]
fn a_resume_runs_the_same_script_with_the_same_arguments_on_the_same_profile_or_nothing() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    env.write("leavers.csv", "login\nuser0003\nuser0004\n");
    let suspend = crate::util::repo().join("scripts/bulk_suspend.rhai").display().to_string();
    let unsuspend = crate::util::repo().join("scripts/bulk_unsuspend.rhai").display().to_string();
    let args = |script: &str, reason: &str| -> Vec<String> {
        ["--yes", "run", script, "--arg", "csv=leavers.csv", "--arg", &format!("reason={reason}")]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let run = |a: Vec<String>| env.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run(args(&suspend, "left the company")).success();
    let puts = sb.count_method("PUT");
    // Another script on a suspend run: refused, naming both hashes; nothing is unsuspended.
    let mut other = args(&unsuspend, "left the company");
    other.extend(["--resume".into(), "1".into()]);
    run(other).code(2).stderr_has("a resume must run the same script");
    assert_eq!(sb.count_method("DELETE"), 0, "nothing was unsuspended");
    // The same script with another argument: refused, saying which.
    let mut changed = args(&suspend, "another reason");
    changed.extend(["--resume".into(), "1".into()]);
    run(changed).code(2).stderr_has("reason=another reason").stderr_has("reason=left the company (missing now)");
    // The same script and arguments on another profile: refused, naming both.
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&format!(
        "{config}\n[profiles.ghes2]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n",
        sb.url()
    ));
    let mut elsewhere = args(&suspend, "left the company");
    elsewhere.extend(["--resume".into(), "1".into(), "--profile".into(), "ghes2".into()]);
    run(elsewhere).code(2).stderr_has("acted on profile ghes by default, and this one would act on ghes2");
    // The same script and arguments: a resume, which sends nothing finished again.
    let mut same = args(&suspend, "left the company");
    same.extend(["--resume".into(), "1".into()]);
    run(same).success();
    assert_eq!(sb.count_method("PUT"), puts);
}

#[test]
fn a_sandbox_process_reaches_neither_a_configured_profile_nor_the_real_log() {
    // This sandbox stands in for production: the config's profiles point at it.
    let production = Sandbox::start(5);
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"ghes\"\n[profiles.ghes]\nkind = \"github\"\nurl = \"{0}\"\ntoken_env = \"GHES_TOKEN\"\n\n[profiles.github]\nkind = \"github\"\nurl = \"{0}\"\ntoken_env = \"GHES_TOKEN\"\n",
        production.url()
    ));
    env.write("leavers.csv", "login\nuser0004\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai").display().to_string();
    env.run(&["--sandbox", "--yes", "eval", r#"connect().suspend("user0001", #{reason: "x"})"#]).success();
    env.run(&["--sandbox", "--yes", "eval", r#"connect("github").suspend("user0003", #{reason: "x"})"#]).success();
    env.run(&["--sandbox", "--yes", "run", &script, "--arg", "csv=leavers.csv", "--arg", "reason=x"]).success();
    env.run(&["--sandbox", "eval", r#"connect("ghes").list_users()"#])
        .code(1)
        .stderr_has("ghes")
        .stderr_has("configured ones are unreachable from it");
    let seen = production.stats()["requests"].as_object().map(|r| r.len()).unwrap_or(0);
    assert_eq!(seen, 0, "the configured server was reached: {}", production.stats());
    match env.team_log {
        None => assert!(!env.audit_db().exists(), "sandbox events went to the real audit log"),
        Some(_) => assert!(env.audit_rows(&[]).is_empty(), "sandbox events went to the team log"),
    }
    assert!(env.sandbox_log().exists());
    let rows = env.run(&["--sandbox", "--format", "json", "audit", "list", "--all", "--op", "suspend"]).success();
    assert!(rows.stdout.contains("user0004"), "{}", rows.report());
}

#[test]
fn offboarding_goes_on_past_a_profile_that_fails_and_always_writes_its_summary() {
    let env = Env::new();
    let script = crate::util::repo().join("scripts/offboard.rhai").display().to_string();
    let emails = "emails=user0007@example.com,tfuser0007@example.com,tluser0007@example.com";
    let run = env.run(&[
        "--sandbox",
        "--yes",
        "run",
        &script,
        "--arg",
        emails,
        "--arg",
        "reason=left",
        "--arg",
        "out=off.csv",
    ]);
    assert!(matches!(run.status, Some(0) | Some(3)), "{}", run.report());
    let off = std::fs::read_to_string(env.run_file("off.csv")).expect("the summary is written");
    // Each of the three people has a row on every sandbox profile, whatever happened there.
    for email in ["user0007@example.com", "tfuser0007@example.com", "tluser0007@example.com"] {
        for profile in ["github", "terraform", "transactionlink", "travis"] {
            assert!(off.contains(&format!("{email},{profile},")), "no row for {email} on {profile}:\n{off}");
        }
    }
    assert!(off.contains("user0007@example.com,github,user0007,email user0007@example.com,done"), "{off}");
    assert!(off.contains("tfuser0007@example.com,terraform,tfuser0007,email tfuser0007@example.com,done"), "{off}");
    assert!(
        off.contains("tluser0007@example.com,transactionlink,tluser0007@example.com,email tluser0007@example.com,done"),
        "{off}"
    );
    // Travis knows no emails: it is searched by the GHES login GHES knows the person by, and says so; it lists
    // only members who were ever active, so not finding someone there is "could not check", never "no account".
    assert!(off.contains("user0007@example.com,travis,,,could not check,0,\"not found by GHES login user0007 (from github); Travis lists only members who were ever active"), "{off}");
    assert!(
        off.contains("tluser0007@example.com,travis,,,could not check,0,\"travis finds people by login or GHES login"),
        "{off}"
    );
}

#[test]
fn undo_puts_back_only_what_was_seen_before_the_change() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    // Run 1 reads each user first (the default); run 2 changes blind (precheck: false).
    env.run(&["--yes", "eval", r#"connect("ghes").suspend_all(["user0003", "user0004"], #{reason: "x"})"#]).success();
    env.run(&[
        "--yes",
        "eval",
        r#"connect("ghes").suspend_all(["user0005", "user0006"], #{reason: "x", precheck: false})"#,
    ])
    .success();
    let undo_blind = env.run(&["--yes", "--format", "json", "undo", "2"]).success();
    assert!(undo_blind.stderr.contains("not undone: user0005 on ghes, user0006 on ghes"), "{}", undo_blind.report());
    assert_eq!(sb.count("DELETE /api/v3/users/user0005/suspended"), 0, "a blind change was reversed");
    env.run(&["--yes", "undo", "1"]).success();
    assert_eq!(sb.count("DELETE /api/v3/users/user0003/suspended"), 1);
    assert_eq!(sb.count("DELETE /api/v3/users/user0004/suspended"), 1);
}

/// One service of the matrix: its profile on the sandbox, the protected account, and every other name of it.
struct Service {
    kind: &'static str,
    url: String,
    token: (&'static str, String),
    /// More profile lines (Travis's org and tokens).
    extra: String,
    protected: &'static str,
    /// Other names of the protected account, found at runtime for ids.
    names: Vec<String>,
    /// The CSV column the stock script reads names from.
    column: &'static str,
    /// Another user, for jobs that must do something before they are killed.
    other: &'static str,
}

impl Service {
    fn env(&self, protect: bool) -> Env {
        let env = Env::new();
        self.configure(&env, protect);
        env
    }

    fn configure(&self, env: &Env, protect: bool) {
        let protected = if protect { format!("protected = [\"{}\"]\n", self.protected) } else { String::new() };
        env.write_config(&format!(
            "default_profile = \"p\"\nmax_changes = 1000\n[profiles.p]\nkind = \"{}\"\nurl = \"{}\"\ntoken_env = \"{}\"\ntimeout = 5\n{}{protected}",
            self.kind, self.url, self.token.0, self.extra
        ));
    }

    fn run(&self, env: &Env, args: &[&str], failpoint: Option<&str>) -> Run {
        let mut cmd = env.cmd();
        cmd.env(self.token.0, &self.token.1);
        if self.kind == "travis" {
            let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
            cmd.env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN));
        }
        if let Some(f) = failpoint {
            cmd.env("STEWARD_FAILPOINT", f);
        }
        cmd.args(args);
        Run::of(cmd)
    }
}

fn services(sb: &Sandbox) -> Vec<Service> {
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    let mut all = vec![
        Service {
            kind: "github",
            url: sb.url(),
            token: ("GHES_TOKEN", crate::util::ADMIN_TOKEN.to_string()),
            extra: String::new(),
            protected: "user0003",
            names: vec!["user0003".into(), "USER0003".into(), " User0003 ".into()],
            column: "login",
            other: "user0004",
        },
        Service {
            kind: "terraform",
            url: sb.running.terraform_url(),
            token: ("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN.to_string()),
            extra: String::new(),
            protected: "tfuser0003",
            names: vec!["tfuser0003@example.com".into(), "TFUser0003".into()],
            column: "login",
            other: "tfuser0004",
        },
        Service {
            kind: "transactionlink",
            url: sb.running.transactionlink_url(),
            token: ("TL_TOKEN", steward_sandbox::transactionlink_tokens::ADMIN_TOKEN.to_string()),
            extra: String::new(),
            protected: "tluser0003@example.com",
            names: vec!["TLUSER0003@example.com".into()],
            column: "id",
            other: "tluser0004@example.com",
        },
        Service {
            kind: "travis",
            url: sb.running.travis_url(),
            token: ("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN)),
            extra: format!(
                "org_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\n",
                steward_sandbox::travis_tokens::ORG_ID
            ),
            protected: "traviuser0003",
            // Travis acts on numbers, compared as numbers: `03` is user 3. (A VCS id names the same person given
            // its `vcs_type`: `identity.rs` covers that.)
            names: vec!["3".into(), "03".into(), "003".into()],
            column: "id",
            other: "4",
        },
    ];
    // Ids are the service's own: read them as a script would.
    for s in all.iter_mut().filter(|s| matches!(s.kind, "terraform" | "transactionlink")) {
        let env = s.env(false);
        let expr = format!(r#"connect().get_user("{}").id"#, s.protected);
        let id = json_of(s.run(&env, &["--format", "json", "eval", &expr], None));
        let id = id.as_str().expect("an id").to_string();
        // A TransactionLink id is a UUID, the same in any case; a Terraform id is case-sensitive (its upper-case
        // spelling is nobody's, `nobody_reached` below).
        match s.kind {
            "transactionlink" => s.names.extend([id.clone(), id.to_uppercase()]),
            _ => s.names.push(id),
        }
    }
    all
}

/// Requests that change something (every read in these services is a GET).
fn changes(sb: &Sandbox) -> u64 {
    ["POST", "PUT", "PATCH", "DELETE"].iter().map(|m| sb.count_method(m)).sum()
}

#[test]
fn the_safety_matrix_protected_accounts_by_every_name_on_every_path_and_service() {
    let sb = Sandbox::start(20);
    for s in services(&sb) {
        let env = s.env(true);
        let at_start = changes(&sb);
        let names_json = serde_json::to_string(&s.names).unwrap();
        // 1. The single call, by each name.
        for name in &s.names {
            let r = s.run(&env, &["--yes", "eval", &format!(r#"connect().suspend("{name}", #{{reason: "m"}})"#)], None);
            assert_eq!(r.status, Some(1), "{} single {name:?}: {}", s.kind, r.report());
            assert!(r.stderr.contains("protected"), "{} single {name:?}: {}", s.kind, r.report());
        }
        // 2. The bulk call.
        let expr = format!(r#"connect().suspend_all({names_json}, #{{reason: "m"}}).map(|r| r.status)"#);
        let bulk = json_of(s.run(&env, &["--yes", "--format", "json", "eval", &expr], None));
        assert!(bulk.as_array().unwrap().iter().all(|st| st == "skipped"), "{} bulk: {bulk}", s.kind);
        // 3. The stock script, from a CSV.
        let csv: String = std::iter::once(s.column.to_string())
            .chain(s.names.iter().map(|n| n.trim().to_string()))
            .collect::<Vec<_>>()
            .join("\n");
        let csv_path = env.write("leavers.csv", &format!("{csv}\n"));
        let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
        let args = [
            "--yes",
            "run",
            script.to_str().unwrap(),
            "--arg",
            &format!("csv={}", csv_path.display()),
            "--arg",
            "reason=m",
        ];
        let r = s.run(&env, &args, None);
        assert_eq!(changes(&sb), at_start, "{} stock script sent a change: {}", s.kind, r.report());
        // 4. A resume: a job killed at its one real change, then resumed, still skips every name.
        let job: Vec<String> = s.names.iter().cloned().chain([s.other.to_string()]).collect();
        env.write(
            "job.rhai",
            &format!("connect().suspend_all({}, #{{reason: \"m\"}});", serde_json::to_string(&job).unwrap()),
        );
        let killed = s.run(&env, &["--yes", "run", "job.rhai"], Some("after_intent_commit:1"));
        assert_ne!(killed.status, Some(0), "{}: {}", s.kind, killed.report());
        let run = env.audit_rows(&["--op", "suspend"]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap();
        let before_resume = changes(&sb);
        s.run(&env, &["--yes", "run", "job.rhai", "--resume", &run.to_string()], None).success();
        assert_eq!(changes(&sb), before_resume + 1, "{}: the resume sent the other user's change only", s.kind);
        let to_protected = env
            .audit_rows(&["--op", "suspend"])
            .iter()
            .filter(|r| {
                r["phase"] == "intent" && s.names.iter().any(|n| n.trim() == r["target"].as_str().unwrap_or(""))
            })
            .count();
        assert_eq!(to_protected, 0, "{}: no intent ever named the protected account", s.kind);
    }
}

#[test]
fn the_safety_matrix_undo_never_reaches_a_protected_account() {
    let sb = Sandbox::start(20);
    for s in services(&sb) {
        // Without protection: the account is suspended, then unsuspended (the run that undo will reverse).
        let env = s.env(false);
        // By another name than the protected entry: the id where the service has one (ids are case-sensitive).
        let name = match s.kind {
            "transactionlink" => s.names[s.names.len() - 2].clone(),
            "terraform" => s.names.last().unwrap().clone(),
            // A bare number is a Travis user id (a VCS id needs #{vcs_type}).
            "travis" => s.names[0].clone(),
            _ => s.names.last().unwrap().trim().to_string(),
        };
        let eval = |env: &Env, expr: &str| s.run(env, &["--yes", "eval", expr], None);
        eval(&env, &format!(r#"connect().suspend_all(["{name}"], #{{reason: "m"}})"#)).success();
        eval(&env, &format!(r#"connect().unsuspend_all(["{name}"])"#)).success();
        let run = env.audit_rows(&["--op", "unsuspend"]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap();
        // Then the account is protected: undoing the unsuspension would suspend it.
        s.configure(&env, true);
        let before = changes(&sb);
        let r = s.run(&env, &["--yes", "undo", &run.to_string()], None);
        assert_eq!(changes(&sb), before, "{} undo reached the protected account: {}", s.kind, r.report());
        assert!(r.stdout.contains("skipped") || r.stdout.contains("protected"), "{}: {}", s.kind, r.report());
    }
}

#[test]
fn a_script_cannot_write_over_the_audit_log_its_anchors_or_the_config_by_any_name() {
    if crate::util::sqlite_only("a_script_cannot_write_over_the_audit_log_its_anchors_or_the_config_by_any_name") {
        return;
    }
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    env.run(&["--yes", "eval", r#"connect().suspend("user0005", #{reason: "before"})"#]).success();
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    std::os::unix::fs::symlink(env.audit_db(), env.path("link.csv")).unwrap();
    std::os::unix::fs::symlink(env.path("audit.db-shm"), env.path("dangling.csv")).unwrap();
    std::fs::hard_link(env.audit_db(), env.path("hard.csv")).unwrap();
    let rows = r#"[#{login: "x"}]"#;
    let attempts = [
        format!(r#"write_csv("audit.db", {rows})"#),
        format!(r#"write_csv("./audit.db.checkpoint", {rows})"#),
        format!(r#"write_csv("link.csv", {rows})"#),
        format!(r#"write_csv("dangling.csv", {rows})"#),
        format!(r#"write_csv("hard.csv", {rows})"#),
        format!(r#"write_csv("xdg-data/steward/history", {rows})"#),
        r#"write_csv("config.toml", connect().users())"#.to_string(),
        r#"write_evidence([], "audit.db")"#.to_string(),
        r#"connect().suspend_all(["user0006"], #{reason: "m", results: "audit.db-wal"})"#.to_string(),
    ];
    let changes_before = changes(&sb);
    for expr in &attempts {
        for sandbox in [false, true] {
            let mut args = vec!["--yes", "eval", expr.as_str()];
            if sandbox {
                args.insert(0, "--sandbox");
            }
            let r = env.run(&args);
            assert_eq!(r.status, Some(1), "{expr} (sandbox: {sandbox}): {}", r.report());
            assert!(r.stderr.contains("does not write over its own files"), "{expr}: {}", r.report());
        }
    }
    // The stock script, told to put its results on the log: refused before anything is sent.
    env.write("leavers.csv", "login\nuser0007\n");
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai").display().to_string();
    let r =
        env.run(&["--yes", "run", &script, "--arg", "csv=leavers.csv", "--arg", "reason=x", "--arg", "out=audit.db"]);
    assert_ne!(r.status, Some(0), "{}", r.report());
    assert_eq!(changes(&sb), changes_before, "a refused write still sent a change");
    assert_eq!(std::fs::read_to_string(env.path("config.toml")).unwrap(), config);
    env.run(&["audit", "verify"]).success().stdout_has("audit log OK");
    assert!(env.audit_rows(&["--op", "suspend"]).iter().any(|r| r["target"] == "user0005"));
    // Beside them, the user's own files are written as ever.
    env.run(&["eval", &format!(r#"write_csv("audit-report.csv", {rows})"#)]).success();
}

/// Found by a newcomer: an unknown `--arg` was silently ignored, so `offboard.rhai --arg profile=ghes` (it takes
/// `profiles`) acted on every configured profile, and `bulk_suspend.rhai --arg profle=tfe` suspended a user on
/// the default profile; `--arg deactivate=yes` was silently false. Every stock script now declares what it
/// takes: a misspelling is refused (exit 2) naming the one meant, before anything is read or sent.
#[test]
fn a_misspelled_argument_stops_a_stock_script_before_it_acts() {
    let sb = Sandbox::start(10);
    let env = crate::util::services_env(&sb);
    let script = |name: &str| crate::util::repo().join("scripts").join(name).display().to_string();
    env.write("leavers.csv", "login\nuser0003\n");
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "offboard.rhai",
            &["--arg", "people=user0003", "--arg", "reason=left", "--arg", "profile=ghes"],
            "did you mean --arg profiles?",
        ),
        (
            "bulk_suspend.rhai",
            &["--arg", "csv=leavers.csv", "--arg", "reason=left", "--arg", "profle=tfe"],
            "did you mean --arg profile?",
        ),
        (
            "offboard.rhai",
            &["--arg", "people=user0003", "--arg", "reason=left", "--arg", "deactivate=sure"],
            "deactivate is true or false",
        ),
    ];
    for (name, args, says) in cases {
        let path = script(name);
        let mut all = vec!["--yes", "run", path.as_str()];
        all.extend_from_slice(args);
        let r = crate::util::run_services(&env, &all, None);
        assert_eq!(r.status, Some(2), "{name} {args:?}: {}", r.report());
        assert!(r.stderr.contains(says), "{name} {args:?}: {}", r.report());
    }
    assert_eq!(sb.count_method("PUT") + sb.count_method("POST") + sb.count_method("DELETE"), 0, "nothing was sent");
    assert!(!env.path("audit.db").exists(), "nothing was recorded: the log was never even opened");
}
