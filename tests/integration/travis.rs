//! Travis CI Enterprise against the sandbox's emulation: activity paging, one-permission tokens, bulk
//! suspension in chunks with skipped ids, and the report → edit → suspend → report round trip.

use crate::util::{Env, Run, Sandbox};
use serde_json::{json, Value};
use steward_sandbox::travis_tokens::{ACTIVITY_TOKEN, INTERNAL_TOKEN, ORG_ID, SUSPEND_TOKEN};

fn travis_env(sb: &Sandbox) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"travis\"\nmax_changes = 100000\n\n[profiles.travis]\nkind = \"travis\"\nurl = \"{url}\"\norg_id = \"{ORG_ID}\"\ntoken_env = \"TRAVIS_SUSPEND\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\ninternal_token_env = \"TRAVIS_INTERNAL\"\n\n[profiles.one-token]\nkind = \"travis\"\nurl = \"{url}\"\norg_id = \"{ORG_ID}\"\ntoken_env = \"TRAVIS_SUSPEND\"\n",
        url = sb.running.travis_url()
    ));
    env
}

fn run(env: &Env, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    // The secrets alone: steward adds the org id the profile names.
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    cmd.env("TRAVIS_ACTIVITY", secret(ACTIVITY_TOKEN))
        .env("TRAVIS_SUSPEND", secret(SUSPEND_TOKEN))
        .env("TRAVIS_INTERNAL", INTERNAL_TOKEN)
        .args(args);
    Run::of(cmd)
}

fn eval(env: &Env, expr: &str) -> Value {
    let r = run(env, &["--yes", "--format", "json", "eval", expr]).success();
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

/// `job.rhai`, killed once the first batch's answer is in hand and before its outcomes are written.
fn killed_after_first_batch(env: &Env) -> Run {
    let mut cmd = env.cmd();
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    cmd.env("TRAVIS_ACTIVITY", secret(ACTIVITY_TOKEN))
        .env("TRAVIS_SUSPEND", secret(SUSPEND_TOKEN))
        .env("TRAVIS_INTERNAL", INTERNAL_TOKEN)
        .env("STEWARD_FAILPOINT", "after_response_before_outcome:1")
        .args(["--yes", "run", "job.rhai"]);
    Run::of(cmd)
}

fn suspended(sb: &Sandbox) -> usize {
    sb.state()["travis"]["users"].as_array().unwrap().iter().filter(|u| u["suspended"] == true).count()
}

#[test]
fn activity_pages_through_active_and_inactive_members() {
    let sb = Sandbox::start(1000);
    let env = travis_env(&sb);
    // Members (not every 17th), never active every 10th; idle 60·k days for k = 1..9.
    let members_with_activity = (1..=1000).filter(|i| i % 17 != 0 && i % 10 != 0).count();
    let all = eval(&env, r#"connect().activity(#{since: "1970-01-02", status: "all"}).len()"#);
    assert_eq!(all, members_with_activity);
    assert!(sb.count("GET /travis/org/89/user_activity") >= 8, "{}", sb.stats());
    let inactive = eval(&env, r#"connect().user_activity(#{since: "1970-01-02", status: "inactive"}).len()"#);
    assert_eq!(inactive, 0, "nobody was last active before 1970");
    let u = eval(&env, r#"connect().activity(#{since: "1970-01-02", status: "active"})[0]"#);
    assert_eq!((u["kind"].clone(), u["status"].clone()), (json!("travis"), json!("active")));
    assert!(u["last_active"].as_str().is_some() && u["vcs_id"].as_str().is_some(), "{u}");
    run(&env, &["eval", r#"connect().activity(#{since: "2025-02-21", status: "never"})"#])
        .code(1)
        .stderr_has("neither the active nor the inactive list");
    run(&env, &["eval", r#"connect().activity(#{since: "21/02/2025"})"#]).code(1).stderr_has("YYYY-MM-DD");
}

#[test]
fn a_token_without_the_permission_gets_a_403_that_says_which() {
    let sb = Sandbox::start(20);
    let env = travis_env(&sb);
    run(&env, &["eval", r#"connect("one-token").activity(#{since: "2025-01-01", status: "active"})"#])
        .code(1)
        .stderr_has("forbidden")
        .stderr_has("`activity` permission");
    let env2 = Env::new();
    env2.write_config(&format!(
        "[profiles.t]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"90\"\ntoken_env = \"TRAVIS_SUSPEND\"\n",
        sb.running.travis_url()
    ));
    run(&env2, &["eval", r#"connect().suspend(1, #{reason: "x"})"#]).code(1).stderr_has("forbidden");
    let env3 = Env::new();
    env3.write_config(&format!(
        "[profiles.t]\nkind = \"travis\"\nurl = \"{}\"\ntoken_env = \"TRAVIS_SUSPEND\"\n",
        sb.running.travis_url()
    ));
    run(&env3, &["profiles", "list"]).code(2).stderr_has("org_id");
}

#[test]
fn a_thousand_ids_go_in_chunks_and_skipped_ids_are_reported() {
    let sb = Sandbox::start(1000);
    let env = travis_env(&sb);
    let ids: Vec<u64> = (1..=1000).collect();
    let expr = format!("connect().suspend_all({ids:?}, #{{reason: \"bulk\"}}).map(|r| r.status)");
    let run = run(&env, &["--yes", "--format", "json", "eval", &expr]).code(3);
    let statuses: Vec<String> = serde_json::from_str(&run.stdout).unwrap();
    let skipped_members = statuses.iter().enumerate().filter(|(i, s)| *s != "ok" && (i + 1) % 17 == 0).count();
    assert_eq!(statuses.iter().filter(|s| *s == "ok").count(), 1000 - 1000 / 17);
    assert_eq!(skipped_members, 1000 / 17, "non-members are the ones Travis skipped");
    assert_eq!(sb.count("POST /travis/org/89/suspend"), 10, "100 ids per request");
    assert_eq!(suspended(&sb), 1000 - 1000 / 17);
    // Every item has its own intent and outcome in the log, though they went ten requests at a time.
    let rows: Vec<Value> = env.audit_rows(&["--op", "suspend"]);
    assert_eq!(rows.iter().filter(|r| r["phase"] == "intent").count(), 1000);
    assert_eq!(rows.iter().filter(|r| r["phase"] == "outcome" && r["status"] == "ok").count(), 1000 - 1000 / 17);
}

#[test]
fn vcs_ids_and_the_instance_wide_endpoint_work() {
    let sb = Sandbox::start(40);
    let env = travis_env(&sb);
    let r = eval(
        &env,
        r#"connect().suspend_all([#{vcs_id: "100003"}, #{vcs_id: "100004", vcs_type: "github"}], #{reason: "vcs"}).map(|r| r.status)"#,
    );
    assert_eq!(r, json!(["ok", "ok"]));
    assert_eq!(sb.count("POST /travis/org/89/suspend"), 1);
    eval(&env, r#"connect().unsuspend_all([34], #{instance: true})"#);
    assert_eq!(sb.count("POST /travis/users/unsuspend"), 1);
}

#[test]
fn the_csv_round_trip_report_edit_suspend_report() {
    let sb = Sandbox::start(60);
    let env = travis_env(&sb);
    let script = |name: &str| crate::util::repo().join("scripts").join(name).to_string_lossy().to_string();
    run(&env, &["run", &script("travis_activity_csv.rhai"), "--arg", "since=2026-01-01", "--arg", "out=activity.csv"])
        .success()
        .stdout_has("inactive since 2026-01-01");
    let report = std::fs::read_to_string(env.path("activity.csv")).unwrap();
    assert!(report.starts_with("id,login,vcs_id,vcs_type,status,last_active,suspended"), "{report}");
    // The admin keeps the inactive rows only.
    let mut edited: Vec<&str> = report.lines().take(1).collect();
    edited.extend(report.lines().skip(1).filter(|l| l.contains(",inactive,")));
    let n = edited.len() - 1;
    assert!(n > 5, "{report}");
    env.write("to-suspend.csv", &(edited.join("\n") + "\n"));
    run(&env, &["run", &script("bulk_suspend.rhai"), "--arg", "csv=to-suspend.csv", "--arg", "reason=inactive"])
        .success();
    assert_eq!(suspended(&sb), n);
    run(&env, &["run", &script("travis_activity_csv.rhai"), "--arg", "since=2026-01-01", "--arg", "out=after.csv"])
        .success();
    let after = std::fs::read_to_string(env.path("after.csv")).unwrap();
    assert_eq!(after.lines().filter(|l| l.contains(",inactive,") && l.ends_with(",true")).count(), n, "{after}");
}

/// Travis ids of members with activity (who appear in the listing), the first `n` of them.
fn listed_ids(n: usize) -> Vec<String> {
    (1..=1000u64).filter(|i| i % 17 != 0 && i % 10 != 0).take(n).map(|i| i.to_string()).collect()
}

#[test]
fn suspension_is_read_from_the_activity_listing_so_noops_and_undo_are_exact() {
    let sb = Sandbox::start(300);
    let env = travis_env(&sb);
    let ids = listed_ids(40);
    eval(&env, &format!("connect().suspend_all({:?}, #{{reason: \"first\"}})", &ids[..10]));
    assert_eq!(suspended(&sb), 10);
    // The reported case: a bulk unsuspend of 40 said ok for all 40, and its undo suspended 30 people who had
    // never been suspended. Now the listing tells: 10 are unsuspended, 30 are noops, and undo puts back 10.
    let results = eval(&env, &format!("connect().unsuspend_all({ids:?})"));
    let status = |s: &str| results.as_array().unwrap().iter().filter(|r| r["status"] == s).count();
    assert_eq!((status("ok"), status("noop")), (10, 30), "{results}");
    assert_eq!(suspended(&sb), 0);
    let lists = sb.count("GET /travis/org/89/user_activity");
    assert!(lists <= 12, "one listing per job, not one per user: {lists} requests");
    run(&env, &["--yes", "undo", "2"]).success();
    assert_eq!(suspended(&sb), 10, "undo suspended again exactly the 10 the run unsuspended");
    // A single call reads the state first as well: suspending someone suspended sends nothing.
    let posts = sb.count("POST /travis/org/89/suspend");
    let one = eval(&env, &format!("connect().suspend(\"{}\", #{{reason: \"again\"}})", ids[0]));
    assert_eq!(one["noop"], true, "{one}");
    assert_eq!(sb.count("POST /travis/org/89/suspend"), posts);
}

#[test]
fn a_resume_settles_an_in_flight_batch_from_the_listing_instead_of_sending_it_again() {
    let sb = Sandbox::start(300);
    let env = travis_env(&sb);
    let ids = listed_ids(150);
    env.write("job.rhai", &format!("connect().suspend_all({ids:?}, #{{reason: \"job\"}});"));
    assert_ne!(killed_after_first_batch(&env).status, Some(0), "killed with the first batch's answer in hand");
    assert_eq!(sb.count("POST /travis/org/89/suspend"), 1);
    assert_eq!(suspended(&sb), 100, "the first batch of 100 reached Travis");
    run(&env, &["--yes", "run", "job.rhai", "--resume", "1"]).success();
    assert_eq!(suspended(&sb), 150);
    assert_eq!(sb.count("POST /travis/org/89/suspend"), 2, "only the last 50 were sent, in one request");
    run(&env, &["audit", "list", "--pending"]).success();
    let open = run(&env, &["--format", "json", "audit", "list", "--pending"]).success();
    assert_eq!(serde_json::from_str::<Value>(&open.stdout).unwrap_or(Value::Null), json!([]), "nothing stays pending");
}

/// The reported case: killed with a batch applied, the resume sent the suspension again to the never-active
/// members in it (Travis lists only members with activity, so their state cannot be read) and left their intents
/// pending forever. Now each is settled `unknown`, said so, and not sent again; nothing stays pending.
#[test]
fn a_resume_settles_never_active_members_as_unknown_and_never_sends_them_again_blind() {
    let sb = Sandbox::start(300);
    let env = travis_env(&sb);
    let ids: Vec<String> = (1..=300u64).filter(|i| i % 17 != 0).take(150).map(|i| i.to_string()).collect();
    let first_batch_unlisted: Vec<&String> = ids[..100].iter().filter(|i| i.ends_with('0')).collect();
    env.write("job.rhai", &format!("connect().suspend_all({ids:?}, #{{reason: \"job\"}});"));
    let killed = killed_after_first_batch(&env);
    assert_ne!(killed.status, Some(0), "killed with the first batch's answer in hand");
    assert_eq!(suspended(&sb), 100, "the first batch of 100 reached Travis\n{}", killed.report());

    run(&env, &["--yes", "run", "job.rhai", "--resume", "1"]).success();
    // Every member Travis lists is suspended; a never-active one in a batch in flight at the kill is unknown.
    let listed = ids.iter().filter(|i| !i.ends_with('0')).count();
    assert!(suspended(&sb) >= listed + first_batch_unlisted.len(), "{}", suspended(&sb));
    let rows = |args: &[&str]| {
        let mut all = vec!["--format", "json", "audit", "list", "--all"];
        all.extend_from_slice(args);
        serde_json::from_str::<Vec<Value>>(&run(&env, &all).success().stdout).unwrap_or_default()
    };
    assert_eq!(rows(&["--pending"]), Vec::<Value>::new(), "nothing stays pending");
    let run2 = rows(&["--run", "2"]);
    let unknown: Vec<&Value> = run2.iter().filter(|r| r["status"] == "unknown").collect();
    assert!(unknown.iter().all(|r| r["target"].as_str().unwrap_or_default().ends_with('0')), "{unknown:#?}");
    for id in &first_batch_unlisted {
        assert!(unknown.iter().any(|r| r["target"] == id.as_str()), "{id} is not settled unknown: {unknown:#?}");
        let sent_again = run2.iter().any(|r| r["phase"] == "intent" && r["target"] == id.as_str());
        assert!(!sent_again, "never-active member {id} was sent the suspension again");
    }
    assert!(unknown.iter().all(|r| r["error"].as_str().unwrap_or_default().contains("not sent again")));
    // A later resume of the job does not send them blind either.
    let posts = sb.count("POST /travis/org/89/suspend");
    run(&env, &["--yes", "run", "job.rhai", "--resume", "2"]).success();
    assert_eq!(sb.count("POST /travis/org/89/suspend"), posts, "a later resume sent the suspension again");
    let run3 = rows(&["--run", "3"]);
    assert!(run3.iter().all(|r| r["phase"] != "intent"), "{run3:#?}");
}

#[test]
fn a_profile_of_single_purpose_tokens_records_each_ones_source_and_fingerprint() {
    let sb = Sandbox::start(10);
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"travis\"\n[profiles.travis]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"{ORG_ID}\"\n\
         activity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\n",
        sb.running.travis_url()
    ));
    eval(&env, "connect().suspend(3, #{reason: \"left\"})");
    let rows = env.audit_rows(&["--op", "suspend"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        let source = r["token_source"].as_str().unwrap_or_default();
        assert!(
            source.contains("suspend=env:TRAVIS_SUSPEND") && source.contains("activity=env:TRAVIS_ACTIVITY"),
            "{r}"
        );
        let fps: Vec<&str> = r["token_fp"].as_str().unwrap_or_default().split(' ').collect();
        assert_eq!(fps.len(), 2, "a fingerprint per token: {r}");
        assert!(fps.iter().all(|f| f.starts_with("hmac-sha256:")), "{r}");
    }
    // Either token's fingerprint (even shortened) finds what the run did.
    let fps: Vec<String> =
        rows[0]["token_fp"].as_str().unwrap_or_default().split(' ').map(|f| f[..20].to_string()).collect();
    for fp in &fps {
        assert_eq!(env.audit_rows(&["--token-fp", fp]).len(), 2, "{fp}");
    }
    assert!(!env.log_contents().contains(SUSPEND_TOKEN.split_once(':').map(|(_, s)| s).unwrap_or(SUSPEND_TOKEN)));
}
