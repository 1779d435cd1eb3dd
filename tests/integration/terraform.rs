//! Terraform Enterprise end to end against the sandbox's TFE emulation: every admin-users operation, every
//! documented error status, JSON:API paging, rate limits, and the stock bulk script.

use crate::util::{Env, Run, Sandbox};
use serde_json::{json, Value};
use steward_sandbox::faults::Faults;
use steward_sandbox::tfe_tokens::{ADMIN_TOKEN, USER_TOKEN};
use steward_sandbox::Options;

fn tfe_env(sb: &Sandbox) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"tfe\"\nmax_changes = 10000\n[profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\ntimeout = 5\nsession_cookie_env = \"TFE_SESSION\"\ncsrf_token_env = \"TFE_CSRF\"\n\n[profiles.tfe-token-only]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\n",
        sb.running.terraform_url(),
        sb.running.terraform_url()
    ));
    env
}

fn run(env: &Env, token: &str, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.env("TFE_TOKEN", token)
        .env("TFE_SESSION", "session-cookie-value")
        .env("TFE_CSRF", "csrf-token-value")
        .args(args);
    Run::of(cmd)
}

fn eval(env: &Env, expr: &str) -> Value {
    let r = run(env, ADMIN_TOKEN, &["--yes", "--format", "json", "eval", expr]).success();
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

fn user<'a>(state: &'a Value, username: &str) -> &'a Value {
    state["terraform"]["users"].as_array().unwrap().iter().find(|u| u["username"] == username).unwrap()
}

#[test]
fn list_users_pages_through_a_thousand_users_at_any_page_size() {
    let sb = Sandbox::start(1000);
    let env = tfe_env(&sb);
    assert_eq!(eval(&env, r#"connect().list_users(#{page_size: 20}).len()"#), 1001);
    assert_eq!(sb.count("GET /api/v2/admin/users"), 51, "1001 users at 20 a page");
    assert_eq!(eval(&env, r#"connect().list_users(#{page_size: 100}).len()"#), 1001);
    assert_eq!(sb.count("GET /api/v2/admin/users"), 51 + 11);
    assert_eq!(eval(&env, r#"connect().list_users(#{admin: true}).len()"#), 21);
    assert_eq!(eval(&env, r#"connect().list_users(#{suspended: true, admin: false}).len()"#), 20);
    assert_eq!(eval(&env, r#"connect().list_users(#{q: "tfuser099"}).map(|u| u.login).len()"#), 10);
}

#[test]
fn user_records_are_normalized_with_tfe_fields() {
    let sb = Sandbox::start(10);
    let env = tfe_env(&sb);
    let u = eval(&env, r#"connect().get_user("tfuser0003")"#);
    assert_eq!(u["login"], "tfuser0003");
    assert_eq!(u["email"], "tfuser0003@example.com");
    assert_eq!(
        (u["admin"].clone(), u["suspended"].clone(), u["two_factor"].clone()),
        (json!(false), json!(false), json!(true))
    );
    assert_eq!(u["organizations"], json!(["org-3", "shared", "solo-3"]));
    assert!(u["id"].as_str().unwrap().starts_with("user-"));
    assert_eq!(u["service_account"], false);
    assert!(u["avatar_url"].as_str().unwrap().contains("gravatar"));
    // By email and by id too; TFE has no single-user endpoint, so steward searches and requires one match.
    assert_eq!(eval(&env, r#"connect().get_user("TFUSER0003@example.com").login"#), "tfuser0003");
    let id = u["id"].as_str().unwrap();
    assert_eq!(eval(&env, &format!("connect().get_user(\"{id}\").login")), "tfuser0003");
    assert_eq!(eval(&env, r#"connect().whoami().login"#), "admin");
}

#[test]
fn every_action_changes_the_server_and_repeats_are_conflicts_or_noops() {
    let sb = Sandbox::start(60);
    let env = tfe_env(&sb);
    eval(
        &env,
        r#"let t = connect(); t.suspend("tfuser0001"); t.unsuspend("tfuser0025"); t.grant_admin("tfuser0002"); t.revoke_admin("tfuser0050"); t.disable_two_factor("tfuser0006")"#,
    );
    let state = sb.state();
    assert_eq!(user(&state, "tfuser0001")["is-suspended"], true);
    assert_eq!(user(&state, "tfuser0025")["is-suspended"], false);
    assert_eq!(user(&state, "tfuser0002")["is-admin"], true);
    assert_eq!(user(&state, "tfuser0050")["is-admin"], false);
    assert_eq!(user(&state, "tfuser0006")["two-factor"], false);
    // A single call on a user already in that state is a plan of one: it reads the user, sends nothing, and
    // says so (a noop, as in bulk) …
    let posts = sb.count_method("POST");
    let noop = eval(&env, r#"connect().suspend("tfuser0001")"#);
    assert_eq!(
        (noop["noop"].clone(), noop["note"].clone()),
        (json!(true), json!("already suspended; nothing was sent"))
    );
    assert_eq!(sb.count_method("POST"), posts, "nothing was sent");
    // … and where steward cannot read first (2FA), the service's "already so" is a noop too, in its words, and
    // the audit log records it as one.
    let noop = eval(&env, r#"connect().reset_2fa("tfuser0001")"#);
    assert_eq!(noop["noop"], true, "{noop}");
    assert!(noop["note"].as_str().unwrap().contains("two-factor authentication"), "{noop}");
    let rows = env.audit_rows(&["--op", "reset_2fa"]);
    assert!(rows.iter().any(|r| r["phase"] == "outcome" && r["status"] == "noop"), "{rows:?}");
    // … and in bulk, recorded as such.
    let r = eval(&env, r#"connect().suspend_all(["tfuser0001", "tfuser0007"], #{reason: "x"}).map(|r| r.status)"#);
    assert_eq!(r, json!(["noop", "ok"]));
    let ids = eval(
        &env,
        r#"connect().list_users(#{q: "tfuser000"}).filter(|u| u.login == "tfuser0008" || u.login == "tfuser0001").map(|u| u.id)"#,
    );
    let expr = format!("connect().suspend_all({ids}, #{{reason: \"by id\"}}).map(|r| r.status)");
    let by_id = eval(&env, &expr);
    assert_eq!(by_id.as_array().unwrap().iter().filter(|s| *s == "noop").count(), 1, "{by_id}");
    assert_eq!(by_id.as_array().unwrap().iter().filter(|s| *s == "ok").count(), 1, "{by_id}");
}

#[test]
fn delete_names_the_organizations_a_sole_owner_holds() {
    let sb = Sandbox::start(10);
    let env = tfe_env(&sb);
    run(&env, ADMIN_TOKEN, &["--yes", "eval", r#"connect().delete_user("tfuser0003")"#])
        .code(1)
        .stderr_has("conflict")
        .stderr_has("sole owner of the following organizations: solo-3")
        .stderr_has("another owner");
    eval(&env, r#"connect().delete_user("tfuser0004")"#);
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().get_user("tfuser0004")"#]).code(1).stderr_has("not_found");
}

#[test]
fn not_found_says_it_may_be_a_token_without_admin_rights() {
    let sb = Sandbox::start(5);
    let env = tfe_env(&sb);
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().get_user("ghost")"#])
        .code(1)
        .stderr_has("not_found")
        .stderr_has("site admin");
    run(&env, USER_TOKEN, &["eval", r#"connect().list_users()"#])
        .code(1)
        .stderr_has("HTTP 404")
        .stderr_has("not a site administrator");
    let run = run(&env, "wrongwrong.atlasv1.wrongwrongwrongwrongwrong", &["eval", r#"connect().list_users()"#])
        .code(1)
        .stderr_has("unauthorized");
    assert!(!run.stderr.contains("wrongwrong"), "{}", run.report());
}

#[test]
fn impersonation_needs_a_browser_session_and_says_so() {
    let sb = Sandbox::start(5);
    let env = tfe_env(&sb);
    run(&env, ADMIN_TOKEN, &["eval", r#"connect("tfe-token-only").impersonate("tfuser0002", "ticket 42")"#])
        .code(1)
        .stderr_has("unsupported")
        .stderr_has("session_cookie_env");
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().impersonate("tfuser0002", "")"#])
        .code(1)
        .stderr_has("needs a reason");
    eval(&env, r#"connect().impersonate("tfuser0002", "ticket 42")"#);
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().impersonate("tfuser0003", "again")"#])
        .code(1)
        .stderr_has("already impersonating");
    eval(&env, r#"connect().unimpersonate()"#);
    run(&env, ADMIN_TOKEN, &["eval", r#"connect().unimpersonate()"#])
        .code(1)
        .stderr_has("not in an impersonation session");
    let export = run(&env, ADMIN_TOKEN, &["audit", "export"]).success();
    assert!(!export.stdout.contains("session-cookie-value") && !export.stdout.contains("csrf-token-value"));
}

#[test]
fn a_429_with_tfe_rate_limit_reset_is_waited_out() {
    let mut faults = Faults::parse("429=0.3", 11).unwrap();
    faults.retry_after_s = 1;
    let sb = Sandbox::with(Options { users: 30, faults, ..Default::default() });
    let env = tfe_env(&sb);
    let statuses = eval(
        &env,
        r#"connect().suspend_all(["tfuser0011", "tfuser0012", "tfuser0013", "tfuser0014", "tfuser0015"], #{reason: "x"}).map(|r| r.status)"#,
    );
    assert_eq!(statuses, json!(["ok", "ok", "ok", "ok", "ok"]));
    assert!(sb.stats()["faults"].as_u64().unwrap() > 0);
}

#[test]
fn the_stock_bulk_suspend_script_works_on_tfe() {
    let sb = Sandbox::start(40);
    let env = tfe_env(&sb);
    env.write(
        "leavers.csv",
        "email,reason\ntfuser0011@example.com,left\ntfuser0025@example.com,left\nghost@example.com,left\n",
    );
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    run(&env, ADMIN_TOKEN, &["run", script.to_str().unwrap(), "--arg", "csv=leavers.csv"]).code(3);
    let out = std::fs::read_to_string(env.path("leavers-suspended.csv")).unwrap();
    assert!(out.contains("2,tfuser0011,ok,200"), "{out}");
    assert!(out.contains("3,tfuser0025,noop"), "{out}");
    assert!(out.contains("no user with email ghost@example.com"), "{out}");
    assert_eq!(user(&sb.state(), "tfuser0011")["is-suspended"], true);
}
