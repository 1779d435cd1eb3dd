//! Every GHES operation against the sandbox, each checked on the server's state and in the audit log.

use crate::util::{Env, Sandbox};
use serde_json::Value;

#[test]
fn suspend_shows_on_the_user_and_in_the_audit_log_which_verifies() {
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    env.eval_json(r#"connect("ghes").suspend("user0001", #{reason: "left the company"})"#);
    assert_eq!(env.eval_json(r#"connect("ghes").get_user("user0001").suspended"#), Value::Bool(true));
    assert_eq!(sb.count("PUT /api/v3/users/user0001/suspended"), 1);

    let rows = env.audit_rows(&["--op", "suspend"]);
    let phases: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["phase"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(phases, vec![("intent", "pending"), ("outcome", "ok")]);
    assert_eq!(rows[1]["intent_seq"], rows[0]["seq"]);
    assert_eq!(rows[1]["http_status"], 204);
    assert_eq!(rows[0]["identity"], "admin");
    assert_eq!(rows[0]["token_source"], "env:GHES_TOKEN");
    assert!(rows[0]["params"].as_str().unwrap().contains("left the company"));
    env.run(&["audit", "verify"]).success().stdout_has("audit log OK");
}

#[test]
fn unsuspend_promote_and_demote_change_the_server_state() {
    let sb = Sandbox::start(60);
    let env = Env::with_sandbox(&sb);
    env.eval_json(r#"let gh = connect("ghes"); gh.unsuspend("user0025", #{reason: "back"}); gh.promote("user0003"); gh.demote("user0050")"#);
    let users = sb.state()["github"]["users"].as_array().unwrap().clone();
    let find = |login: &str| users.iter().find(|u| u["login"] == login).unwrap().clone();
    assert_eq!(find("user0025")["suspended_at"], Value::Null);
    assert_eq!(find("user0003")["site_admin"], true);
    assert_eq!(find("user0050")["site_admin"], false);
}

#[test]
fn list_users_follows_every_page_and_filters() {
    let sb = Sandbox::start(250);
    let env = Env::with_sandbox(&sb);
    let all = env.eval_json(r#"connect("ghes").list_users().len()"#);
    assert_eq!(all, 252, "admin + 250 demo users + ldap-user");
    assert_eq!(sb.count("GET /api/v3/users"), 3, "per_page=100 means three pages");
    let admins = env.eval_json(r#"connect("ghes").list_users(#{admin: true}).map(|u| u.login)"#);
    assert_eq!(admins, serde_json::json!(["admin", "user0050", "user0100", "user0150", "user0200", "user0250"]));
    let suspended = env.eval_json(r#"connect("ghes").list_users(#{suspended: true, q: "user00"}).map(|u| u.login)"#);
    assert_eq!(suspended, serde_json::json!(["user0025", "user0050", "user0075"]));
}

#[test]
fn user_records_are_normalized() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    let u = env.eval_json(r#"connect("ghes").get_user("user0001")"#);
    assert_eq!(u["login"], "user0001");
    assert_eq!(u["email"], "user0001@example.com");
    assert_eq!(u["admin"], false);
    assert_eq!(u["suspended"], false);
    assert_eq!(u["kind"], "github");
    assert_eq!(u["profile"], "ghes");
    assert_eq!(u["raw"]["login"], "user0001");
    let me = env.eval_json(r#"connect("ghes").whoami()"#);
    assert_eq!(me["login"], "admin");
    assert_eq!(me["admin"], true);
}

#[test]
fn create_rename_and_delete_a_user() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    let created = env.eval_json(r#"connect("ghes").create_user(#{login: "octo_cat", email: "octo@example.com"})"#);
    assert_eq!(created["login"], "octo-cat", "GHES normalizes the login");
    let renamed = env.eval_json(r#"connect("ghes").rename_user("octo-cat", "octo-dog")"#);
    assert!(renamed["message"].as_str().unwrap().contains("Job queued"));
    assert_eq!(env.eval_json(r#"connect("ghes").get_user("octo-dog").email"#), "octo@example.com");
    env.eval_json(r#"connect("ghes").delete_user("octo-dog")"#);
    env.run(&["eval", r#"connect("ghes").get_user("octo-dog")"#]).code(1).stderr_has("not_found");
    // A duplicate is GitHub's 422, a conflict.
    env.run(&["eval", r#"connect("ghes").create_user("user0001", "x@example.com")"#])
        .code(1)
        .stderr_has("conflict")
        .stderr_has("already_exists");
}

#[test]
fn impersonation_tokens_are_created_and_deleted_and_never_audited() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    let auth = env.eval_json(r#"connect("ghes").create_impersonation_token("user0001", ["repo", "read:user"])"#);
    let token = auth["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghp_"), "{auth}");
    assert_eq!(auth["scopes"], serde_json::json!(["repo", "read:user"]));
    env.eval_json(r#"connect("ghes").delete_impersonation_token("user0001")"#);
    assert_eq!(sb.count("DELETE /api/v3/admin/users/user0001/authorizations"), 1);
    let export = env.run(&["audit", "export"]).success();
    assert!(!export.stdout.contains(&token), "the impersonation token leaked into the audit log");
    assert!(export.stdout.contains("create_impersonation_token"));
}

#[test]
fn keys_and_tokens_are_listed_and_deleted() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    assert_eq!(env.eval_json(r#"connect("ghes").list_keys().len()"#), 6);
    env.eval_json(r#"connect("ghes").delete_key(1)"#);
    assert_eq!(env.eval_json(r#"connect("ghes").list_keys().len()"#), 5);
    assert_eq!(env.eval_json(r#"connect("ghes").list_tokens().len()"#), 7);
    env.eval_json(r#"connect("ghes").delete_token(2)"#);
    assert_eq!(env.eval_json(r#"connect("ghes").list_tokens().len()"#), 6);
    // Token 1 is the one steward acts with, the caller's own: refused before the server could be asked.
    env.run(&["--yes", "eval", r#"connect("ghes").delete_token(1)"#])
        .code(1)
        .stderr_has("protected")
        .stderr_has("token belongs to");
    // A key or token named by its id alone is its owner's, as the server lists it: user0002 is protected.
    let protected_id = env.eval_json(r#"connect("ghes").get_user("user0002").id"#);
    let key = env.eval_json(&format!(r#"connect("ghes").list_keys().filter(|k| k.user_id == {protected_id})[0].id"#));
    let token =
        env.eval_json(&format!(r#"connect("ghes").list_tokens().filter(|t| t.user.id == {protected_id})[0].id"#));
    for expr in [format!(r#"connect("ghes").delete_key({key})"#), format!(r#"connect("ghes").delete_token({token})"#)] {
        env.run(&["--yes", "eval", &expr]).code(1).stderr_has("protected").stderr_has("user0002");
    }
    env.run(&["--yes", "eval", r#"connect("ghes").delete_token(77)"#]).code(1).stderr_has("no token \"77\"");
    assert_eq!(sb.count_method("DELETE"), 2, "only key 1 and token 2 were deleted: {}", sb.stats());
    env.run(&["--yes", "eval", r#"connect("ghes").delete_token("abc")"#]).code(1).stderr_has("no token \"abc\"");
}

#[test]
fn rate_limit_reports_disabled_limits_as_ghes_does_by_default() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    assert_eq!(env.eval_json(r#"connect("ghes").rate_limit()"#), serde_json::json!({"enabled": false}));
    let limited = Sandbox::with(steward_sandbox::Options { users: 1, rate_limit: Some(100.0), ..Default::default() });
    let env = Env::with_sandbox(&limited);
    let rl = env.eval_json(r#"connect("ghes").rate_limit()"#);
    assert_eq!(rl["enabled"], true);
    assert_eq!(rl["core"]["limit"], 360000);
}

#[test]
fn protected_logins_and_the_caller_are_refused_before_any_request() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect("ghes").suspend("user0002")"#])
        .code(1)
        .stderr_has("protected")
        .stderr_has("protected list");
    env.run(&["eval", r#"connect("ghes").suspend("ADMIN")"#])
        .code(1)
        .stderr_has("protected")
        .stderr_has("token belongs to");
    env.run(&["--yes", "eval", r#"connect("ghes").delete_user("user0002")"#]).code(1).stderr_has("protected");
    assert_eq!(sb.count("PUT /api/v3/users/user0002/suspended"), 0);
    assert_eq!(sb.count("PUT /api/v3/users/ADMIN/suspended"), 0);
    assert_eq!(sb.count("DELETE /api/v3/admin/users/user0002"), 0);
    let refused = env.audit_rows(&["--target", "user0002"]);
    assert!(refused.iter().all(|r| r["status"] == "refused"), "{refused:?}");
    assert_eq!(refused.len(), 2);
    let caught = env.eval_json(
        r#"let kind = "sent"; try { connect("ghes").demote("user0002"); } catch (e) { kind = e.kind; } kind"#,
    );
    assert_eq!(caught, "protected");
}

#[test]
fn dry_run_sends_no_mutation_and_records_it_as_dry_run() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    let before = sb.state();
    let out = env.run(&["--dry-run", "--format", "json", "eval", r#"let gh = connect("ghes"); gh.suspend("user0001"); gh.promote("user0003"); gh.get_user("user0001").suspended"#]).success();
    assert_eq!(out.stdout.trim(), "false");
    assert_eq!(sb.state(), before);
    assert_eq!(sb.count("PUT /api/v3/users/user0001/suspended"), 0);
    let rows = env.audit_rows(&["--op", "suspend"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["mode"], "dry-run");
    assert_eq!(rows[0]["status"], "dry-run");
}

#[test]
fn destructive_operations_need_confirmation_or_yes() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    // No terminal to ask: refused, with the way out named.
    env.run(&["eval", r#"connect("ghes").delete_user("user0004")"#])
        .code(1)
        .stderr_has("cancelled")
        .stderr_has("--yes");
    assert_eq!(sb.count("DELETE /api/v3/admin/users/user0004"), 0);
    env.run(&["--yes", "eval", r#"connect("ghes").delete_user("user0004")"#]).success();
    assert_eq!(sb.count("DELETE /api/v3/admin/users/user0004"), 1);
}

#[test]
fn ldap_users_get_a_forbidden_error_that_explains_why() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect("ghes").suspend("ldap-user")"#]).code(1).stderr_has("forbidden").stderr_has("LDAP");
    let outcome = env.audit_rows(&["--target", "ldap-user"]).pop().unwrap();
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["http_status"], 403);
}

#[test]
fn errors_are_catchable_maps() {
    let sb = Sandbox::start(5);
    let env = Env::with_sandbox(&sb);
    let e = env.eval_json(r#"let err = (); try { connect("ghes").get_user("nobody"); } catch (e) { err = e; } err"#);
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["status"], 404);
    assert_eq!(e["profile"], "ghes");
    assert_eq!(e["op"], "get_user");
    assert_eq!(e["target"], "nobody");
}

#[test]
fn unsupported_operations_say_what_the_backend_can_do() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect("ghes").reset_2fa("user0001")"#])
        .code(1)
        .stderr_has("unsupported")
        .stderr_has("reset_2fa is not supported by github (supported: whoami, list_users");
}

#[test]
fn a_wrong_token_is_unauthorized_with_a_hint_and_no_token_in_sight() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    let mut cmd = env.cmd();
    cmd.env("GHES_TOKEN", "ghp_wrongwrongwrongwrong123").args(["eval", r#"connect("ghes").list_users()"#]);
    let run = crate::util::Run::of(cmd)
        .code(1)
        .stderr_has("unauthorized")
        .stderr_has("Bad credentials")
        .stderr_has("check the profile's token");
    assert!(!run.stderr.contains("wrongwrong"), "{}", run.report());
}

#[test]
fn a_missing_token_says_what_to_export() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    let mut cmd = env.cmd();
    cmd.env_remove("GHES_TOKEN").args(["eval", r#"connect("ghes").list_users()"#]);
    crate::util::Run::of(cmd).code(1).stderr_has("export GHES_TOKEN=");
}

#[test]
fn an_unknown_profile_lists_the_known_ones() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect("prod")"#])
        .code(1)
        .stderr_has("unknown profile \"prod\"")
        .stderr_has("profiles: ghes");
}

#[test]
fn the_api_escape_hatch_is_audited() {
    let sb = Sandbox::start(3);
    let env = Env::with_sandbox(&sb);
    assert_eq!(env.eval_json(r#"connect("ghes").api("GET", "users/user0001").login"#), "user0001");
    env.eval_json(r#"connect("ghes").api("PUT", "users/user0001/suspended", #{reason: "via api"})"#);
    assert_eq!(sb.count("PUT /api/v3/users/user0001/suspended"), 1);
    let rows = env.audit_rows(&["--op", "api"]);
    assert_eq!(rows.iter().filter(|r| r["phase"] == "intent").count(), 1, "the PUT needed an intent: {rows:?}");
}

#[test]
fn an_unreadable_ca_file_is_named_with_a_fix() {
    let sb = Sandbox::start(1);
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nca_file = \"/nonexistent/ca.pem\"\n",
        sb.url()
    ));
    env.run(&["eval", r#"connect("ghes").whoami()"#])
        .code(1)
        .stderr_has("cannot read ca_file /nonexistent/ca.pem")
        .stderr_has("PEM");
    env.write("bad.pem", "not a certificate");
    env.write_config(&format!(
        "[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nca_file = \"bad.pem\"\n",
        sb.url()
    ));
    env.run(&["eval", r#"connect("ghes").whoami()"#]).code(1).stderr_has("ca_file");
}

#[test]
fn debug_logging_never_shows_the_token() {
    let sb = Sandbox::start(3);
    let env = Env::with_sandbox(&sb);
    let run = env
        .run(&[
            "-vv",
            "eval",
            r#"connect("ghes").suspend("user0001", #{reason: "x"}); connect("ghes").get_user("nope")"#,
        ])
        .code(1);
    assert!(run.stderr.contains("http"), "debug logging is on: {}", run.report());
    assert!(
        !run.stderr.contains(crate::util::ADMIN_TOKEN) && !run.stdout.contains(crate::util::ADMIN_TOKEN),
        "{}",
        run.report()
    );
    assert!(!env.log_contents().contains(crate::util::ADMIN_TOKEN), "the token is in the audit log");
}
