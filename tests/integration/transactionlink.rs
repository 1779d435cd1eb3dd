//! TransactionLink against the sandbox's emulation, and every request it makes validated by Prism serving the
//! reconstructed TransactionLink description.

use crate::prism::Prism;
use crate::util::{Env, Run, Sandbox};
use serde_json::{json, Value};
use steward_sandbox::transactionlink_tokens::{ADMIN_TOKEN, NO_MFA_TOKEN, READ_ONLY_TOKEN, ROLE_ADMIN, ROLE_MEMBER};

fn tl_env(url: &str) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"tl\"\nmax_changes = 10000\n[profiles.tl]\nkind = \"transactionlink\"\nurl = \"{url}\"\ntoken_env = \"TL_TOKEN\"\ntimeout = 5\n"
    ));
    env
}

fn run(env: &Env, token: &str, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.env("TL_TOKEN", token).args(args);
    Run::of(cmd)
}

fn eval(env: &Env, expr: &str) -> Value {
    let r = run(env, ADMIN_TOKEN, &["--yes", "--format", "json", "eval", expr]).success();
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

fn id(n: usize) -> String {
    format!("5e1d0000-0000-4000-8000-{n:012}")
}

#[test]
fn list_users_walks_zero_based_pages_and_filters() {
    let sb = Sandbox::start(250);
    let env = tl_env(&sb.running.transactionlink_url());
    assert_eq!(eval(&env, "connect().list_users().len()"), 250);
    assert_eq!(sb.count("GET /transactionlink/organizations/users"), 3);
    assert_eq!(eval(&env, "connect().list_users(#{suspended: true}).len()"), 5, "25, 75, 125, 175, 225");
    assert_eq!(eval(&env, "connect().list_users(#{admin: true}).len()"), 6, "the owner and five admins");
    assert_eq!(
        eval(&env, r#"connect().list_users(#{q: "tluser0007@"}).map(|u| u.login)"#),
        json!(["tluser0007@example.com"])
    );
}

#[test]
fn users_are_found_by_email_or_id_and_normalized() {
    let sb = Sandbox::start(10);
    let env = tl_env(&sb.running.transactionlink_url());
    let u = eval(&env, r#"connect().get_user("TLUSER0003@example.com")"#);
    assert_eq!(u["id"], id(3));
    assert_eq!(
        (u["login"].clone(), u["name"].clone(), u["role"].clone()),
        (json!("tluser0003@example.com"), json!("First3 Last3"), json!("member"))
    );
    assert_eq!(u["suspended"], false);
    assert_eq!(eval(&env, &format!("connect().get_user(\"{}\").email", id(3))), "tluser0003@example.com");
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().get_user("ghost@example.com")"#]).code(1).stderr_has("not_found");
    run(&env, ADMIN_TOKEN, &["eval", &format!("connect().get_user(\"{}\")", id(999))])
        .code(1)
        .stderr_has("USER_NOT_FOUND")
        .stderr_has("fingerprint");
    assert_eq!(eval(&env, "connect().whoami().login"), "(organization token)");
    assert_eq!(eval(&env, "connect().roles().map(|r| r.name)"), json!(["owner", "admin", "member"]));
}

#[test]
fn terminate_then_unsuspend_restores_the_original_role() {
    let sb = Sandbox::start(60);
    let env = tl_env(&sb.running.transactionlink_url());
    eval(&env, r#"connect().terminate("tluser0050@example.com")"#);
    assert_eq!(eval(&env, r#"connect().get_user("tluser0050@example.com").suspended"#), true);
    // The role was read before the termination and kept in the audit log …
    let intent = Run::of({
        let mut c = env.cmd();
        c.args(["--format", "json", "audit", "list", "--op", "suspend"]);
        c
    });
    assert!(intent.stdout.contains(ROLE_ADMIN), "{}", intent.report());
    // … so a later run can give it back without being told.
    let back = eval(&env, r#"connect().unsuspend("tluser0050@example.com")"#);
    assert_eq!((back["role"].clone(), back["suspended"].clone()), (json!("admin"), json!(false)));
    let user =
        sb.state()["transactionlink"]["users"].as_array().unwrap().iter().find(|u| u["id"] == id(50)).unwrap().clone();
    assert_eq!(user["roleId"], ROLE_ADMIN);
    assert_eq!(user["status"], "ACTIVE");
}

#[test]
fn reinstating_someone_steward_did_not_terminate_asks_for_a_role() {
    let sb = Sandbox::start(30);
    let env = tl_env(&sb.running.transactionlink_url());
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().unsuspend("tluser0025@example.com")"#])
        .code(1)
        .stderr_has("cannot give it back")
        .stderr_has("reinstate(id, \"member\")");
    let back = eval(&env, r#"connect().reinstate("tluser0025@example.com", "member")"#);
    assert_eq!(back["role_id"], ROLE_MEMBER);
    // Reinstating again finds the user active: a noop, nothing sent.
    let again = eval(&env, r#"connect().reinstate("tluser0025@example.com", "member")"#);
    assert_eq!(again["noop"], true, "{again}");
    assert_eq!(sb.count(&format!("POST /transactionlink/organizations/users/{}/reinstate", id(25))), 1);
}

#[test]
fn roles_profiles_promotion_and_bulk_noops() {
    let sb = Sandbox::start(30);
    let env = tl_env(&sb.running.transactionlink_url());
    assert_eq!(eval(&env, r#"connect().set_role("tluser0004@example.com", "admin").role"#), "admin");
    assert_eq!(eval(&env, &format!("connect().set_role(\"{}\", \"{ROLE_MEMBER}\").role", id(4))), "member");
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().set_role("tluser0004@example.com", "boss")"#])
        .code(1)
        .stderr_has("no role named \"boss\" (roles: owner, admin, member)");
    let p = eval(&env, r#"connect().update_profile("tluser0005@example.com", #{title: "Lead", first_name: "Ann"})"#);
    assert_eq!((p["title"].clone(), p["name"].clone()), (json!("Lead"), json!("Ann Last5")));
    assert_eq!(eval(&env, r#"connect().promote("tluser0006@example.com").role"#), "admin");
    assert_eq!(eval(&env, r#"connect().demote("tluser0006@example.com").role"#), "member");
    let expr = r#"connect().suspend_all(["tluser0007@example.com", "tluser0025@example.com", "ghost@example.com"], #{reason: "x"}).map(|r| r.status)"#;
    let bulk = run(&env, ADMIN_TOKEN, &["--format", "json", "eval", expr]).code(3);
    let statuses: Value = serde_json::from_str(&bulk.stdout).unwrap();
    assert_eq!(statuses, json!(["ok", "noop", "failed"]));
}

#[test]
fn forbidden_names_the_missing_permission() {
    let sb = Sandbox::start(5);
    let env = tl_env(&sb.running.transactionlink_url());
    run(&env, NO_MFA_TOKEN, &["--yes", "eval", &format!("connect().reset_2fa(\"{}\")", id(2))])
        .code(1)
        .stderr_has("forbidden")
        .stderr_has("can_reset_2fa");
    run(&env, READ_ONLY_TOKEN, &["eval", "connect().list_users()"])
        .code(1)
        .stderr_has("forbidden")
        .stderr_has("can_manage_users");
    eval(&env, &format!("connect().reset_2fa(\"{}\")", id(2)));
    let r = run(&env, "tot_wrongwrongwrongwrongwrong", &["eval", "connect().list_users()"])
        .code(1)
        .stderr_has("unauthorized");
    assert!(!r.stderr.contains("wrongwrong"));
}

#[test]
fn every_transactionlink_request_passes_the_description() {
    let prism = Prism::start("tests/servers/transactionlink.openapi.json");
    let env = Env::new();
    // Prism's made-up roles have no names, so promotion and demotion name role ids here.
    env.write_config(&format!(
        "[profiles.tl]\nkind = \"transactionlink\"\nurl = \"{}\"\ntoken_env = \"TL_TOKEN\"\nadmin_role = \"{ROLE_ADMIN}\"\nmember_role = \"{ROLE_MEMBER}\"\n",
        prism.url
    ));
    let uid = id(7);
    let script = format!(
        r#"
        let h = connect("tl");
        let calls = [
            || h.whoami(), || h.roles(), || h.list_users(), || h.get_user("{uid}"),
            || h.update_profile("{uid}", #{{first_name: "Ann", last_name: "Lee", title: "Lead"}}),
            || h.set_role("{uid}", "{ROLE_ADMIN}"), || h.promote_all(["{uid}"], #{{precheck: false}}),
            || h.demote_all(["{uid}"], #{{precheck: false}}), || h.terminate("{uid}"),
            || h.suspend_all(["{uid}"], #{{reason: "left", precheck: false}}),
            || h.unsuspend_all(["{uid}"], #{{role: "{ROLE_MEMBER}", precheck: false}}), || h.reset_2fa("{uid}"),
        ];
        let failures = [];
        for c in calls {{ try {{ c.call(); }} catch (e) {{ failures.push(e.message); }} }}
        failures
    "#
    );
    let mut cmd = env.cmd();
    cmd.env("TL_TOKEN", "tot_prismContractTestTokenxxxxxxxxxxxxxxxxxxxx")
        .args(["--yes", "--format", "json", "eval", &script]);
    let run = Run::of(cmd).success();
    // Prism answers a read of any user with its example user, another account than the one asked: the single
    // terminate (which reads its target first) is refused for it, and nothing is sent. The requests themselves
    // are validated through the jobs that read nothing first.
    let failures: Value = serde_json::from_str(&run.stdout).unwrap();
    let failures: Vec<String> = serde_json::from_value(failures).unwrap();
    assert_eq!(failures.len(), 1, "requests Prism refused: {failures:#?}");
    assert!(
        failures[0].starts_with("suspend") && failures[0].contains("the server answered a lookup for"),
        "{failures:?}"
    );
    let violations = prism.request_violations();
    assert!(violations.is_empty(), "Prism flagged requests:\n{}", violations.join("\n"));
    let log = prism.log_text();
    for path in ["/terminate", "/reinstate", "/reset-mfa", "/profile", "/role", "/organizations/roles"] {
        assert!(log.contains(path), "Prism never saw {path}");
    }
}

#[test]
fn a_role_edited_in_the_log_never_drives_a_reinstatement() {
    let sb = Sandbox::start(60);
    let env = tl_env(&sb.running.transactionlink_url());
    eval(&env, r#"connect().terminate("tluser0051@example.com")"#);
    eval(&env, r#"connect().get_user("tluser0001@example.com")"#);
    // Someone with the file rewrites the role steward recorded before the termination: member becomes owner.
    // The row sits before the newest checkpoint, which the cheap pre-write check does not re-read.
    let before =
        env.log_value(&format!("SELECT count(*) FROM events WHERE op = 'suspend' AND params LIKE '%{ROLE_MEMBER}%'"));
    assert_ne!(before, "0", "the role is in the suspension's params");
    env.edit_log(&format!(
        "UPDATE events SET params = replace(params, '{ROLE_MEMBER}', 'owner-role-id') WHERE op = 'suspend'"
    ));
    run(&env, ADMIN_TOKEN, &["--yes", "eval", r#"connect().unsuspend("tluser0051@example.com")"#])
        .code(1)
        .stderr_has("does not verify");
    let reinstate = format!("POST /transactionlink/organizations/users/{}/reinstate", id(51));
    assert_eq!(sb.count(&reinstate), 0, "nothing was reinstated");
}

/// A job larger than its request slots, on a service whose changes read the account first (`prepare`: the
/// role a termination takes away): the reads made while writing intents ahead must finish while every sender
/// waits for a slot. Found with GHES memberships: past concurrency × 4 items, such a job waited forever.
#[test]
fn a_long_job_whose_changes_read_first_finishes() {
    let sb = Sandbox::start(80);
    let env = tl_env(&sb.running.transactionlink_url());
    let ids: Vec<String> = (1..=60).map(|n| format!("\"tluser{n:04}@example.com\"")).collect();
    let expr =
        format!(r#"connect().suspend_all([{}], #{{reason: "x"}}).filter(|r| r.status == "ok").len()"#, ids.join(", "));
    let started = std::time::Instant::now();
    // The seed has a few users a suspension cannot take (already terminated, the owner): exit 3 says so.
    let r = run(&env, ADMIN_TOKEN, &["--yes", "--format", "json", "eval", &expr]);
    assert!(matches!(r.status, Some(0 | 3)), "{}", r.report());
    assert!(r.stdout.trim().parse::<u64>().unwrap() >= 55, "{}", r.report());
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "it finished, in {:?}", started.elapsed());
}
