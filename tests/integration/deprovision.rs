//! Deprovisioning end to end on the sandbox's four services: the cascade in each service's order, the evidence
//! (JSON and HTML, citing the audit log), protection by every name, dry run, a kill -9 midway and its resume, undo.

use crate::util::{run_services as run, services_env as env, Env, Run, Sandbox};
use serde_json::Value;

const OFFBOARD: &str = "scripts/offboard.rhai";

fn offboard(env: &Env, people: &str, extra: &[&str]) -> Run {
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let people = format!("people={people}");
    let mut args = vec!["run", &script, "--arg", &people, "--arg", "reason=left the company", "--arg", "out=off.csv"];
    args.extend_from_slice(extra);
    run(env, &args, None)
}

fn eval(env: &Env, expr: &str) -> Value {
    let r = run(env, &["--format", "json", "eval", expr], None).success();
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.report()))
}

fn evidence(env: &Env) -> Value {
    serde_json::from_str(&std::fs::read_to_string(env.run_file("off-evidence.json")).expect("evidence JSON")).unwrap()
}

/// The report of `person` on `profile` in the evidence document.
fn report<'a>(doc: &'a Value, person: &str, profile: &str) -> &'a Value {
    doc["people"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["person"] == person)
        .and_then(|p| p["services"].as_array().unwrap().iter().find(|s| s["profile"] == profile))
        .unwrap_or_else(|| panic!("no report of {person} on {profile}: {doc:#}"))
}

fn ops(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["op"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
        .collect()
}

/// Runs `args` killed (like kill -9) after the `n`th change reached its server, before its outcome was recorded,
/// then resumes the job to its end; the job's run id.
fn killed_then_resumed(env: &Env, args: &[&str], n: usize) -> String {
    let killed = run(env, args, Some(&format!("after_response_before_outcome:{n}")));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    let job = env.audit_rows(&[]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap().to_string();
    let mut resume: Vec<&str> = args.to_vec();
    resume.extend(["--resume", &job]);
    run(env, &resume, None).success();
    job
}

fn github_user(sb: &Sandbox, login: &str) -> Value {
    sb.state()["github"]["users"].as_array().unwrap().iter().find(|u| u["login"] == login).cloned().unwrap()
}

#[test]
fn each_service_loses_everything_the_leaver_held_in_its_own_order_with_evidence() {
    let sb = Sandbox::start(60);
    let env = env(&sb);
    let people = "user0001@example.com,user0050,tfuser0001@example.com,tluser0002@example.com,traviuser0004";
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let people_arg = format!("people={people}");
    let args = [
        "--yes",
        "run",
        &script,
        "--arg",
        &people_arg,
        "--arg",
        "reason=left the company",
        "--arg",
        "out=off.csv",
        "--arg",
        "reset_2fa=true",
    ];
    run(&env, &args, None).success().stdout_has("off-evidence-run");

    let doc = evidence(&env);
    // GHES: a site admin is demoted before the suspension (GHES refuses to suspend one), then every credential.
    let admin = report(&doc, "user0050", "ghes");
    assert_eq!(admin["status"], "done", "{admin:#}");
    // (user0050 was suspended already: only its admin right and credentials were left to take.)
    assert_eq!(ops(admin)[0], ("demote".into(), "ok".into()), "{admin:#}");
    assert!(!ops(admin).iter().any(|(op, _)| op == "suspend"));
    let u1 = report(&doc, "user0001@example.com", "ghes");
    assert_eq!(u1["account"], "user0001");
    let u1_ops: Vec<String> = ops(u1).into_iter().map(|(op, _)| op).collect();
    assert_eq!(u1_ops, ["suspend", "delete_impersonation_token", "delete_key", "delete_token"], "{u1:#}");
    assert_eq!(u1["before"]["holdings"].as_array().unwrap().len(), 2);
    assert!(u1["before"]["holdings"][0]["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert_eq!(u1["after"]["holdings"].as_array().unwrap().len(), 0);
    assert_eq!(u1["verified"], true);
    let u = github_user(&sb, "user0001");
    assert!(!u["suspended_at"].is_null());
    assert!(!github_user(&sb, "user0050")["site_admin"].as_bool().unwrap());
    let keys = eval(&env, r#"connect("ghes").list_keys().filter(|k| k.user_id == 2).len()"#);
    assert_eq!(keys, 0, "user0001's key is gone from the instance");

    // Terraform: suspended, its user tokens deleted (the one it used no longer authenticates).
    let tf = report(&doc, "tfuser0001@example.com", "tfe");
    assert_eq!(tf["status"], "done", "{tf:#}");
    assert!(ops(tf).iter().filter(|(op, s)| op == "delete_token" && s == "ok").count() == 2, "{tf:#}");
    let left = eval(&env, r#"connect("tfe").list_tokens().filter(|t| t.description.starts_with("tfuser0001")).len()"#);
    assert_eq!(left, 0);
    let user_token = steward_sandbox::tfe_tokens::USER_TOKEN;
    let status = crate::util::runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("{}/account/details", sb.running.terraform_url()))
            .bearer_auth(user_token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 401, "the leaver's own token is revoked");

    // TransactionLink: terminated (its role kept for reinstatement), MFA reset, never demoted first.
    let tl = report(&doc, "tluser0002@example.com", "tl");
    assert_eq!(ops(tl), [("suspend".to_string(), "ok".to_string()), ("reset_2fa".into(), "ok".into())], "{tl:#}");
    let tl_user = sb.state()["transactionlink"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "tluser0002@example.com")
        .cloned()
        .unwrap();
    assert_eq!((tl_user["status"].as_str(), tl_user["mfa"].as_bool()), (Some("TERMINATED"), Some(false)));

    // Travis: suspended (the job's suspensions in one request to its bulk endpoint), and the report says plainly
    // that this does not cut access.
    let tr = report(&doc, "traviuser0004", "travis");
    assert_eq!(tr["status"], "done", "{tr:#}");
    assert!(tr["caveats"][0].as_str().unwrap().contains("does not cut access"));

    // Each step cites its intent in the audit log; the snapshots are there too, and the log verifies.
    let rows = env.audit_rows(&[]);
    for step in u1["steps"].as_array().unwrap() {
        let seq = step["audit_seq"].as_i64().expect("a sequence number");
        let row = rows.iter().find(|r| r["seq"] == seq).expect("the cited row");
        assert_eq!((&row["op"], &row["phase"], &row["target"]), (&step["op"], &Value::from("intent"), &step["target"]));
    }
    assert!(rows.iter().any(|r| r["op"] == "deprovision" && r["status"] == "observed" && r["target"] == "user0001"));
    assert!(rows.iter().any(|r| r["op"] == "evidence"), "the report is linked from the run");
    run(&env, &["audit", "verify"], None).success();

    // The page a reviewer reads, and nothing secret anywhere.
    let html = std::fs::read_to_string(env.run_file("off-evidence.html")).unwrap();
    assert!(html.contains("<h2>user0001@example.com</h2>") && html.contains("cannot be undone"), "{html}");
    assert!(html.contains("does not cut access") && html.contains("No account on:"));
    let export = run(&env, &["audit", "export"], None).success().stdout;
    for text in [&html, &export, &std::fs::read_to_string(env.run_file("off-evidence.json")).unwrap()] {
        for secret in [crate::util::ADMIN_TOKEN, steward_sandbox::tfe_tokens::ADMIN_TOKEN, user_token] {
            assert!(!text.contains(secret), "a token leaked");
        }
    }

    // A second run finds nothing left to take. Only what no service can list is deleted again (GHES
    // impersonation tokens: one may have been made since), so the rerun still proves they are gone.
    let changes = || sb.count_method("DELETE") + sb.count_method("PUT") + sb.count_method("POST");
    let (sent, impersonation) = (changes(), sb.count("DELETE /api/v3/admin/users/user0001/authorizations"));
    run(&env, &args, None).success();
    assert_eq!(changes(), sent + 2, "only the two GHES accounts' impersonation tokens were deleted again");
    assert_eq!(sb.count("DELETE /api/v3/admin/users/user0001/authorizations"), impersonation + 1);
    let again = evidence(&env);
    let steps = ops(report(&again, "user0001@example.com", "ghes"));
    assert_eq!(steps, [("delete_impersonation_token".to_string(), "ok".to_string())]);
    assert_eq!(report(&again, "tfuser0001@example.com", "tfe")["status"], "nothing to do");
}

#[test]
fn a_protected_account_is_refused_by_every_name_before_anything_changes() {
    let sb = Sandbox::start(10);
    let env = env(&sb);
    for name in ["user0002", "USER0002", "user0002@example.com", " User0002 "] {
        let out = eval(&env, &format!(r#"connect("ghes").deprovision("{name}", #{{reason: "x"}})"#));
        assert_eq!(out["status"], "protected", "{name}: {out:#}");
        assert!(out["steps"].as_array().unwrap().is_empty());
    }
    // The caller's own account too, however it is named.
    let own = eval(&env, r#"connect("ghes").deprovision("admin@example.com", #{reason: "x"})"#);
    assert_eq!(own["status"], "protected");
    assert_eq!(sb.count_method("DELETE") + sb.count_method("PUT"), 0, "nothing was changed");
    let rows = env.audit_rows(&[]);
    assert!(rows.iter().all(|r| r["phase"] != "intent"), "no intent names the protected account");
}

#[test]
fn a_dry_run_shows_the_whole_plan_and_sends_nothing() {
    let sb = Sandbox::start(60);
    let env = env(&sb);
    offboard(&env, "user0001,user0050,USER0001@example.com", &["--dry-run"]).success();
    let doc = evidence(&env);
    // Another name for an account already in the job (its email, another case) is that account, planned once.
    let again = report(&doc, "USER0001@example.com", "ghes");
    assert_eq!(again["status"], "skipped", "{again:#}");
    assert!(again["problems"][0].as_str().unwrap().contains("the same account as \"user0001\""), "{again:#}");
    let plan = ops(report(&doc, "user0050", "ghes"));
    assert!(plan.iter().all(|(_, s)| s == "dry-run") && plan[0].0 == "demote", "{plan:?}");
    assert!(ops(report(&doc, "user0001", "ghes")).iter().any(|(op, _)| op == "delete_key"));
    assert_eq!(sb.count_method("DELETE") + sb.count_method("PUT") + sb.count_method("POST"), 0);
}

#[test]
fn without_yes_and_without_a_terminal_the_irreversible_steps_are_refused() {
    let sb = Sandbox::start(10);
    let env = env(&sb);
    let r = run(&env, &["eval", r#"connect("ghes").deprovision("user0001", #{reason: "x"})"#], None).code(1);
    assert!(r.stderr.contains("cannot be undone") && r.stderr.contains("--yes"), "{}", r.report());
    assert_eq!(sb.count_method("DELETE") + sb.count_method("PUT"), 0);
}

#[test]
fn a_kill_mid_deprovision_resumes_without_repeating_anything_and_undo_restores_what_it_can() {
    let sb = Sandbox::start(60);
    let env = env(&sb);
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let people = "people=user0001,user0003,user0004,user0005,user0050";
    let args = ["--yes", "run", &script, "--arg", people, "--arg", "reason=left", "--arg", "profiles=ghes"];
    // Killed (like kill -9) right after the 6th change was applied, before its outcome was recorded.
    let killed = run(&env, &args, Some("after_response_before_outcome:6"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    let pending = run(&env, &["--format", "json", "audit", "list", "--pending"], None).success();
    assert!(pending.stdout.contains("\"intent\""), "one change is in doubt: {}", pending.report());
    let job = env.audit_rows(&[]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap();

    let mut resume: Vec<&str> = args.to_vec();
    let job_text = job.to_string();
    resume.extend(["--resume", &job_text]);
    run(&env, &resume, None).success();
    // The resumed run's page says what the killed run did, with its run number: nobody it deprovisioned reads
    // as "nothing to do".
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(env.run_file("offboard-results-evidence.json")).unwrap())
            .unwrap();
    assert_eq!(doc["resumed_from"], job, "{doc:#}");
    for login in ["user0001", "user0003", "user0004", "user0005", "user0050"] {
        let r = report(&doc, login, "ghes");
        assert_eq!(r["status"], "done", "{login}: {r:#}");
    }
    let earlier: Vec<&Value> = doc["people"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["services"][0]["earlier_steps"].as_array().unwrap().iter())
        .collect();
    assert!(!earlier.is_empty() && earlier.iter().all(|s| s["run"] == job), "{earlier:#?}");

    // Every change reached the server exactly once, across both runs. The one exception the log must explain:
    // GHES cannot list impersonation tokens, so a deletion of them in doubt is sent again (a DELETE tolerates it).
    let stats = sb.stats();
    let resent: Vec<String> = env
        .audit_rows(&[])
        .iter()
        .filter(|r| {
            r["op"] == "delete_impersonation_token" && r["error"].as_str().unwrap_or("").contains("sends it again")
        })
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    for (path, n) in stats["requests"].as_object().unwrap() {
        let n = n.as_u64().unwrap();
        if let Some(user) = path.strip_suffix("/authorizations").and_then(|p| p.rsplit('/').next()) {
            let explained = resent.iter().any(|t| t == user);
            assert!(n == 1 || (n == 2 && explained), "{path} was sent {n} times (explained: {explained})");
        } else if !path.starts_with("GET ") {
            assert_eq!(n, 1, "{path} was sent {n} times");
        }
    }
    for login in ["user0001", "user0003", "user0004", "user0005", "user0050"] {
        assert!(!github_user(&sb, login)["suspended_at"].is_null(), "{login} is suspended");
    }
    assert_eq!(eval(&env, r#"connect("ghes").list_keys().filter(|k| [2, 4, 5, 6].contains(k.user_id)).len()"#), 0);
    let pending = run(&env, &["--format", "json", "audit", "list", "--pending"], None).success();
    assert!(!pending.stdout.contains("\"intent\""), "the resume settled the intent in doubt: {}", pending.stdout);

    // Undo puts back the suspensions and the admin right, and names what it cannot put back.
    let undo = run(&env, &["--yes", "undo", &job_text], None).success();
    assert!(
        undo.stderr.contains("cannot be restored by steward") && undo.stderr.contains("delete_key"),
        "{}",
        undo.report()
    );
    assert!(github_user(&sb, "user0001")["suspended_at"].is_null());
    assert!(github_user(&sb, "user0050")["site_admin"].as_bool().unwrap(), "user0050 is an admin again");
}

#[test]
fn an_unreachable_service_is_reported_for_each_person_and_the_others_go_on() {
    let sb = Sandbox::start(10);
    let env = env(&sb);
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    // A port nothing listens on (bound, then released).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    env.write_config(&format!(
        "{config}[profiles.gone]\nkind = \"github\"\nurl = \"http://{dead}/api/v3\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 2\n"
    ));
    // The run ends as failed, naming the profile, after writing down every person everywhere.
    offboard(&env, "user0003,user0004", &["--yes"])
        .code(1)
        .stderr_has("offboarding is incomplete: 1 profile(s) failed: [\"gone\"]");
    let csv = std::fs::read_to_string(env.run_file("off.csv")).unwrap();
    assert!(csv.contains("user0003,ghes,user0003,login user0003,done,"), "{csv}");
    assert!(csv.contains("user0004,ghes,user0004,login user0004,done,"), "{csv}");
    assert!(csv.contains("user0003,gone,,,unavailable") && csv.contains("user0004,gone,,,unavailable"), "{csv}");
    assert!(std::fs::read_to_string(env.run_file("off-evidence.html")).unwrap().contains("unavailable"));
}

#[test]
fn a_kill_while_every_profile_is_acting_at_once_resumes_each_without_repeating_a_change() {
    let sb = Sandbox::start(60);
    let env = env(&sb);
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let people = "people=tfuser0001@example.com,tfuser0002@example.com,tfuser0003@example.com,tluser0002@example.com,tluser0004@example.com,tluser0006@example.com,traviuser0004,traviuser0005";
    let args = [
        "--yes",
        "run",
        &script,
        "--arg",
        people,
        "--arg",
        "reason=left",
        "--arg",
        "profiles=tfe,tl,travis",
        "--arg",
        "reset_2fa=true",
        "--arg",
        "out=off.csv",
    ];
    killed_then_resumed(&env, &args, 5);
    for (path, n) in sb.stats()["requests"].as_object().unwrap() {
        // Travis suspends everyone through one path, many ids per request: the two people went in one or two.
        let most = if path.starts_with("POST /travis/") { 2 } else { 1 };
        if !path.starts_with("GET ") {
            assert!(
                n.as_u64().is_some_and(|n| (1..=most).contains(&n)),
                "{path} was sent {n} times across the two runs"
            );
        }
    }
    // And in the log: each change came to `ok` once (a second send would show as a second `ok`).
    let mut oks: std::collections::HashMap<(String, String, String), usize> = Default::default();
    for r in env
        .audit_rows(&[])
        .iter()
        .filter(|r| r["phase"] == "outcome" && r["status"] == "ok" && r["op"] != "deprovision")
    {
        let key = (r["profile"].to_string(), r["op"].to_string(), r["target"].to_string());
        *oks.entry(key).or_default() += 1;
    }
    assert!(oks.values().all(|n| *n == 1), "{oks:?}");
    assert!(oks.keys().any(|(p, op, _)| p == "\"travis\"" && op == "\"suspend\""), "{oks:?}");
    let doc = evidence(&env);
    for (person, profile) in
        [("tfuser0002@example.com", "tfe"), ("tluser0004@example.com", "tl"), ("traviuser0005", "travis")]
    {
        let r = report(&doc, person, profile);
        assert!(matches!(r["status"].as_str(), Some("done" | "nothing to do")), "{person}: {r:#}");
        assert_eq!(r["verified"], true, "{person}: {r:#}");
    }
    let pending = run(&env, &["--format", "json", "audit", "list", "--pending"], None).success();
    assert!(!pending.stdout.contains("\"intent\""), "every intent is settled: {}", pending.stdout);
    run(&env, &["audit", "verify"], None).success();
}

#[test]
fn the_evidence_files_carry_no_secret_whatever_a_report_holds() {
    let sb = Sandbox::start(5);
    let env = env(&sb);
    let leak = "ghp_LEAKleakLEAKleak0000000000000001";
    let expr = format!(
        r#"write_evidence([#{{person: "x", profile: "ghes", kind: "github", status: "failed", steps: [], problems: ["the server said {leak}"]}}], "ev")"#
    );
    run(&env, &["eval", &expr], None).success();
    for file in ["ev.json", "ev.html"] {
        let text = std::fs::read_to_string(env.path(file)).unwrap();
        assert!(!text.contains(leak) && text.contains("[REDACTED]"), "{file}: {text}");
    }
}

/// The reported case: Ctrl-C during an offboarding left "cancelled, may or may not have reached the server" as the
/// log's last word on keys the service deleted. A deletion in flight at the stop now stays in doubt (its intent
/// open); the resume reads the keys and settles each, and every key is deleted once.
#[test]
fn ctrl_c_mid_offboarding_leaves_the_deletions_in_flight_in_doubt_for_the_resume() {
    let sb = Sandbox::with(steward_sandbox::Options {
        users: 60,
        latency: std::time::Duration::from_millis(300),
        ..Default::default()
    });
    let env = env(&sb);
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let people = "people=user0003,user0004,user0005,user0006";
    let args = ["--yes", "run", &script, "--arg", people, "--arg", "reason=left", "--arg", "profiles=ghes"];
    let mut cmd = env.cmd();
    cmd.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while sb.count_method("DELETE") < 1 && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: a plain signal to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let rows = env.audit_rows(&[]);
    let guessed: Vec<&Value> = rows
        .iter()
        .filter(|r| r["status"] == "cancelled" && r["error"].as_str().unwrap_or("").contains("may or may not"))
        .collect();
    assert!(guessed.is_empty(), "{guessed:#?}");
    let in_doubt = env.audit_rows(&["--pending"]);
    assert!(!in_doubt.is_empty(), "what was in flight is in doubt until the resume");
    let deletions = in_doubt.iter().any(|r| r["op"].as_str().unwrap_or("").starts_with("delete_"));
    assert!(deletions, "the stop came while deletions were in flight: {in_doubt:#?}");

    let job = rows.iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap().to_string();
    let mut resume = args.to_vec();
    resume.extend(["--resume", &job]);
    run(&env, &resume, None).success();
    assert_eq!(env.audit_rows(&["--pending"]), Vec::<Value>::new(), "the resume settled every step in doubt");
    let left = eval(&env, r#"connect("ghes").list_keys().filter(|k| [4, 5, 6, 7].contains(k.user_id))"#);
    let keys: Vec<String> = env
        .audit_rows(&["--op", "delete_key"])
        .iter()
        .map(|r| format!("{} {} {} {} {}", r["run_id"], r["target"], r["phase"], r["status"], r["error"]))
        .collect();
    assert_eq!(left, serde_json::json!([]), "{keys:#?}");
    let stats = sb.stats();
    for (path, n) in stats["requests"].as_object().unwrap() {
        if path.starts_with("DELETE ") && path.contains("/keys/") {
            assert_eq!(n.as_u64(), Some(1), "{path} was sent {n} times");
        }
    }
}

/// Found: a TransactionLink termination whose answer was lost, settled by the resume, could not be undone ("did
/// not record this user's role") although its intent had recorded the role. The settled outcome carries the
/// intent's params, and undo reads what the intent recorded.
#[test]
fn a_termination_settled_at_resume_is_undone_with_the_role_its_intent_recorded() {
    let sb = Sandbox::start(20);
    let env = env(&sb);
    let tl_user = |sb: &Sandbox| {
        sb.state()["transactionlink"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == "tluser0003@example.com")
            .cloned()
            .unwrap()
    };
    let role = tl_user(&sb)["roleId"].clone();
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let args = [
        "--yes",
        "run",
        &script,
        "--arg",
        "people=tluser0003@example.com",
        "--arg",
        "reason=left",
        "--arg",
        "profiles=tl",
    ];
    // The termination is applied; steward is killed before its outcome is recorded.
    let killed = run(&env, &args, Some("after_response_before_outcome:1"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    assert_eq!(tl_user(&sb)["status"], "TERMINATED");
    let job = env.audit_rows(&[]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap().to_string();
    let mut resume = args.to_vec();
    resume.extend(["--resume", &job]);
    run(&env, &resume, None).success();
    let undo = run(&env, &["--yes", "undo", &job], None);
    let suspensions: Vec<Value> = env.audit_rows(&[]).into_iter().filter(|r| r["op"] == "suspend").collect();
    assert_eq!(undo.status, Some(0), "{}\n{suspensions:#?}", undo.report());
    let back = tl_user(&sb);
    assert_eq!((back["status"].as_str(), &back["roleId"]), (Some("ACTIVE"), &role), "{back:#}");
}

/// Found: `undo` without a terminal or `--yes` made 48 changes, then refused at max_changes, leaving a
/// half-restored state. Undo now plans the whole reversal and asks once before the first change: without an
/// answer it changes nothing; with `--yes` it restores everything in one run, max_changes counting the plan.
#[test]
fn undo_asks_once_for_the_whole_reversal_before_its_first_change() {
    let sb = Sandbox::start(60);
    let env = env(&sb);
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let people = "people=user0001,user0003,user0004,user0005,user0050";
    run(&env, &["--yes", "run", &script, "--arg", people, "--arg", "reason=left", "--arg", "profiles=ghes"], None)
        .success();
    let job = env.audit_rows(&[]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap().to_string();
    // Smaller than the reversal (4 unsuspensions; user0050 was suspended already, and is promoted back): the
    // whole plan counts, once.
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&config.replace("max_changes = 1000", "max_changes = 2"));
    let state = |sb: &Sandbox| {
        ["user0001", "user0003", "user0004", "user0005", "user0050"]
            .map(|l| (github_user(sb, l)["suspended_at"].is_null(), github_user(sb, l)["site_admin"].clone()))
    };
    let before = state(&sb);
    let refused = run(&env, &["undo", &job], None);
    assert_ne!(refused.status, Some(0), "{}", refused.report());
    assert!(
        refused.stderr.contains("5 changes") && refused.stderr.contains("unsuspend 4 on ghes, promote 1 on ghes"),
        "{}",
        refused.report()
    );
    assert_eq!(state(&sb), before, "nothing changed without an answer");
    assert!(env.audit_rows(&[]).iter().all(|r| r["op"] != "unsuspend"), "no intent was written");
    run(&env, &["--yes", "undo", &job], None).success();
    for login in ["user0001", "user0003", "user0004", "user0005"] {
        assert!(github_user(&sb, login)["suspended_at"].is_null(), "{login} is active again");
    }
    assert!(!github_user(&sb, "user0050")["suspended_at"].is_null(), "suspended before the job, and still");
    assert!(github_user(&sb, "user0050")["site_admin"].as_bool().unwrap(), "user0050 is an admin again");
}

/// A person, not a string. Found offboarding 48 leavers: where a service could not search the one name given (an
/// email on Travis, a login on TransactionLink) the evidence said "No account", and 10 accounts stayed active.
/// Now each person is found on each service by what that service can search (what was given, what another service
/// records for them, an identity map); the rest is "no account (checked by …)" or "could not check", never
/// confused. One email two accounts share refuses that person there, naming both; a typo matches nowhere and
/// makes the exit code 3.
#[test]
fn a_person_is_found_on_every_service_under_each_name_the_services_link() {
    use steward_sandbox::Person;
    let person = |ghes: Option<&str>, email: Option<&str>, tfe: Option<&str>, tl: Option<&str>, travis: bool| Person {
        ghes: ghes.map(str::to_string),
        email: email.map(str::to_string),
        tfe: tfe.map(str::to_string),
        tl: tl.map(str::to_string),
        travis,
        admin: false,
    };
    let people = vec![
        // Named by a GHES login: GHES records the email Terraform and TransactionLink know her by; Travis knows
        // her GHES login.
        Person {
            admin: true,
            ..person(Some("anndev"), Some("ann@corp.example"), Some("annb"), Some("ann@corp.example"), true)
        },
        // Named by email: GHES finds him by it, which gives Travis his login.
        person(Some("bobk"), Some("bob@corp.example"), None, Some("bob@corp.example"), true),
        // Only TransactionLink, under another email: the identity map says so.
        person(None, None, None, Some("carol.w@corp.example"), false),
        // Two GHES accounts share one email.
        person(Some("dan"), Some("ops@corp.example"), None, None, false),
        person(Some("erin"), Some("ops@corp.example"), None, None, false),
        // A GHES account that records no email: TransactionLink (by email only) cannot be checked for her.
        person(Some("fay"), None, None, None, false),
    ];
    let sb = Sandbox::with(steward_sandbox::Options { users: 10, people, ..Default::default() });
    let env = env(&sb);
    env.write("map.csv", "person,profile,account\ncarol@corp.example,tl,carol.w@corp.example\n");
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let r = run(
        &env,
        &[
            "--yes",
            "run",
            &script,
            "--arg",
            "people=anndev,bob@corp.example,carol@corp.example,ops@corp.example,fay,annn@corp.example",
            "--arg",
            "reason=left",
            "--arg",
            "identity_map=map.csv",
            "--arg",
            "out=off.csv",
        ],
        None,
    );
    // The typo matches nowhere: said on the terminal and in the exit code.
    assert_eq!(r.status, Some(3), "{}", r.report());
    assert!(r.stdout.contains("found on no service") && r.stdout.contains("annn@corp.example"), "{}", r.report());

    let doc = evidence(&env);
    let status = |person: &str, profile: &str| report(&doc, person, profile)["status"].as_str().unwrap().to_string();
    for profile in ["ghes", "tfe", "tl", "travis"] {
        assert_eq!(status("anndev", profile), "done", "anndev on {profile}: {:#}", report(&doc, "anndev", profile));
    }
    assert_eq!(report(&doc, "anndev", "tl")["found_by"], "email ann@corp.example (from ghes)");
    assert_eq!(report(&doc, "anndev", "travis")["found_by"], "login anndev");
    assert_eq!(report(&doc, "bob@corp.example", "travis")["found_by"], "GHES login bobk (from ghes)");
    for profile in ["ghes", "tl", "travis"] {
        assert_eq!(status("bob@corp.example", profile), "done", "bob on {profile}");
    }
    assert_eq!(status("bob@corp.example", "tfe"), "no account");
    assert_eq!(report(&doc, "bob@corp.example", "tfe")["checked"], serde_json::json!(["email bob@corp.example"]));
    assert_eq!(status("carol@corp.example", "tl"), "done");
    assert_eq!(report(&doc, "carol@corp.example", "tl")["found_by"], "account carol.w@corp.example (identity map)");
    // Travis records no email and carol has no GHES login: it could not be checked, and says what it needs.
    assert_eq!(status("carol@corp.example", "travis"), "could not check");
    assert_eq!(status("ops@corp.example", "ghes"), "refused");
    let problems = report(&doc, "ops@corp.example", "ghes")["problems"].to_string();
    assert!(problems.contains("dan") && problems.contains("erin"), "{problems}");
    assert_eq!(status("fay", "tl"), "could not check");
    assert_eq!(status("fay", "ghes"), "done");
    assert_eq!(doc["summary"]["found_nowhere"], serde_json::json!(["annn@corp.example"]));

    // At the servers: every account of each person is suspended, nobody else's.
    let state = sb.state();
    let find = |service: &str, key: &str, value: &str| {
        state[service]["users"].as_array().unwrap().iter().find(|u| u[key] == value).cloned().unwrap()
    };
    for login in ["anndev", "bobk", "fay"] {
        assert!(!find("github", "login", login)["suspended_at"].is_null(), "{login} on GHES");
    }
    for login in ["dan", "erin"] {
        assert!(find("github", "login", login)["suspended_at"].is_null(), "{login} is not touched");
    }
    assert_eq!(find("terraform", "username", "annb")["is-suspended"], true);
    for email in ["ann@corp.example", "bob@corp.example", "carol.w@corp.example"] {
        assert_eq!(find("transactionlink", "email", email)["status"], "TERMINATED", "{email}");
    }
    for login in ["anndev", "bobk"] {
        assert_eq!(find("travis", "login", login)["suspended"], true, "{login} on Travis");
    }
    let html = std::fs::read_to_string(env.run_file("off-evidence.html")).unwrap();
    assert!(html.contains("Found on no service") && html.contains("Could not check tl"), "{html}");
    assert!(html.contains("run by") && html.contains("left"), "who and why are on the page");
}

/// Found: the dry run printed "steps 0" for everyone (the plan was only in the evidence files), each dry run or
/// re-run wrote over the previous run's evidence, and an evidence path steward must refuse was refused only after
/// the first person was deprovisioned. Now: the plan on the terminal, one set of files per run, and the paths
/// checked before anything is sent.
#[test]
fn the_plan_is_on_the_terminal_each_run_keeps_its_files_and_a_bad_path_stops_before_acting() {
    let sb = Sandbox::start(10);
    let env = env(&sb);
    let dry = offboard(&env, "user0003", &["--dry-run", "--arg", "profiles=ghes"]).success();
    assert!(
        dry.stdout.contains("suspend") && dry.stdout.contains("remove SSH key") && dry.stdout.contains("dry-run"),
        "{}",
        dry.report()
    );
    let first = env.run_file("off.csv");
    offboard(&env, "user0003", &["--yes", "--arg", "profiles=ghes"]).success();
    let second = env.run_file("off.csv");
    assert_ne!(first, second, "each run has its own summary");
    assert!(std::fs::read_to_string(&first).unwrap().contains("dry-run"), "the dry run's is kept");
    assert!(std::fs::read_to_string(&second).unwrap().contains(",done,"));
    assert!(env.run_file("off-evidence.html").exists());

    // The audit log itself, and a folder that is not there: refused before any request that changes anything.
    let before = sb.count_method("PUT") + sb.count_method("DELETE");
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    // (A team log is no file here: only the folder then.)
    let outs: &[&str] = if env.team_log.is_some() {
        &["out=no/such/folder/off.csv"]
    } else {
        &["out=audit.db", "out=no/such/folder/off.csv"]
    };
    for out in outs {
        let r = run(
            &env,
            &["--yes", "run", &script, "--arg", "people=user0004", "--arg", "reason=left", "--arg", out],
            None,
        );
        assert_eq!(r.status, Some(1), "{}", r.report());
        assert!(r.stderr.contains("cannot write"), "{}", r.report());
    }
    assert_eq!(sb.count_method("PUT") + sb.count_method("DELETE"), before, "nothing was changed");
    assert!(github_user(&sb, "user0004")["suspended_at"].is_null());
}

/// The evidence page in a real browser (Chromium, headless): it renders offline with who, why and what on it,
/// and no value executes, neither a service's nor one a script put in a report (a `status` was written into the
/// page unescaped, so a script ran in it). Escaping alone is checked too: with the page's Content-Security-Policy
/// taken out, still nothing runs.
#[test]
fn the_evidence_page_renders_in_a_real_browser_and_no_value_runs() {
    let sb = Sandbox::start(10);
    let env = env(&sb);
    let hostile = [
        r#"<script>document.body.dataset.pwned='script'</script>"#,
        r#""><img src=x onerror="document.body.dataset.pwned='attr'">"#,
        r#"x' onmouseover='document.body.dataset.pwned=1"#,
    ];
    let list = serde_json::to_string(&hostile).unwrap();
    env.write(
        "page.rhai",
        &format!(
            r#"let bad = {list};
               let reports = connect("ghes").deprovision_all(["user0003", "nobody-here"], #{{reason: `left ${{bad[0]}}`}});
               reports[0].status = bad[1];
               reports[0].problems = bad;
               reports[0].steps[0].says = bad[2];
               reports[1].person = bad[0];
               write_evidence(reports, "page").html"#
        ),
    );
    run(&env, &["--yes", "run", "page.rhai"], None);
    let page = env.path("page.html");
    let html = std::fs::read_to_string(&page).expect("the page is written");
    // Offline: no element that fetches or runs anything (the hostile text is text), no url() in its style, and a
    // policy that forbids fetching anyway.
    for tag in ["<script", "<img", "<link", "<iframe", "<object", "<embed", "url(", "@import"] {
        assert!(!html.contains(tag), "the page would fetch or run something ({tag})");
    }
    assert!(html.contains("Content-Security-Policy"));
    let dom = crate::util::rendered(&page);
    for tag in ["<img", "<iframe"] {
        assert!(!dom.contains(tag), "the browser made an element of a value ({tag}):\n{dom}");
    }
    for text in ["Deprovisioning evidence", "reason", "run by", "command", "user0003", "Found on no service"] {
        assert!(dom.contains(text), "{text:?} is not on the rendered page:\n{dom}");
    }
    assert!(!dom.contains("data-pwned"), "a value ran in the page:\n{dom}");
    // Escaping alone holds: without the policy, still nothing runs.
    let bare = env.write("bare.html", &html.replace("Content-Security-Policy", "x-no-policy"));
    let dom = crate::util::rendered(&bare);
    assert!(!dom.contains("data-pwned"), "a value ran once the policy was gone:\n{dom}");
    assert!(dom.contains("&lt;script&gt;"), "the hostile text is shown as text");
}

/// An MFA reset whose answer was lost (killed after TransactionLink applied it) is settled at resume by reading
/// the account's MFA state, not sent again: the HR run is idempotent at the server, and the log says why.
#[test]
fn an_mfa_reset_in_doubt_is_settled_by_reading_the_account_not_sent_again() {
    let sb = Sandbox::start(10);
    let env = env(&sb);
    let script = crate::util::repo().join(OFFBOARD).display().to_string();
    let args = [
        "--yes",
        "run",
        &script,
        "--arg",
        "people=tluser0004@example.com",
        "--arg",
        "reason=left",
        "--arg",
        "profiles=tl",
    ];
    // Terminate (1), then the MFA reset (2) reaches the server; killed before its outcome is recorded.
    killed_then_resumed(&env, &args, 2);
    let resets: u64 = sb.stats()["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.ends_with("/reset-mfa"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert_eq!(resets, 1, "the reset reached the server once");
    let settled = env.audit_rows(&[]).into_iter().find(|r| r["op"] == "reset_2fa" && r["status"] == "ok");
    assert!(
        settled.as_ref().is_some_and(|r| r["error"].as_str().unwrap_or("").contains("had been applied")),
        "{settled:#?}"
    );
}
