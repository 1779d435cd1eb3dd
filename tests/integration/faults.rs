//! The HTTP core under injected faults: what is retried, what is not, and that nothing is lost.

use crate::util::{Env, Sandbox};
use steward_sandbox::faults::Faults;
use steward_sandbox::Options;

fn faulty(spec: &str, users: usize) -> Sandbox {
    Sandbox::with(Options { users, faults: Faults::parse(spec, 42).unwrap(), ..Default::default() })
}

#[test]
fn a_429_storm_with_retry_after_slows_reads_but_loses_nothing() {
    let sb = faulty("429=0.3", 20);
    let env = Env::with_sandbox(&sb);
    let logins = env.eval_json(
        r#"let gh = connect("ghes"); let out = []; for i in 1..=8 { out.push(gh.get_user(`user000${i}`).login); } out"#,
    );
    assert_eq!(logins.as_array().unwrap().len(), 8);
    assert!(sb.stats()["faults"].as_u64().unwrap() > 0, "the storm happened: {}", sb.stats());
}

/// A 5xx on a change may mean it was applied: the user is read, and only a change not in place is sent again.
#[test]
fn server_errors_on_changes_are_settled_by_reading_then_sent_again() {
    let sb = faulty("503=0.3,502=0.1", 20);
    let env = Env::with_sandbox(&sb);
    env.eval_json(
        r#"let gh = connect("ghes"); for i in 11..=18 { gh.suspend(`user00${i}`, #{reason: "retry test"}); }"#,
    );
    let suspended = env.eval_json(r#"connect("ghes").list_users(#{suspended: true, q: "user001"}).len()"#);
    assert_eq!(suspended, 8);
    let outcomes = env.audit_rows(&["--op", "suspend"]);
    assert_eq!(outcomes.iter().filter(|r| r["phase"] == "outcome" && r["status"] == "ok").count(), 8);
}

#[test]
fn a_post_that_failed_with_a_5xx_is_not_sent_twice() {
    let sb = faulty("503=1.0", 2);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect("ghes").create_user("newbie", "newbie@example.com")"#])
        .code(1)
        .stderr_has("unavailable")
        .stderr_has("503");
    assert_eq!(sb.count("POST /api/v3/admin/users"), 1);
    let rows = env.audit_rows(&["--op", "create_user"]);
    assert_eq!(rows.last().unwrap()["status"], "failed");
    assert_eq!(rows.last().unwrap()["http_status"], 503);
}

#[test]
fn a_put_whose_answer_was_lost_is_never_sent_again_and_recorded_once() {
    // "reset": the server applies the change, then the connection drops before the answer.
    let sb = faulty("reset=0.4", 10);
    let env = Env::with_sandbox(&sb);
    env.eval_json(r#"let gh = connect("ghes"); for i in 3..=7 { gh.suspend(`user000${i}`); }"#);
    let rows = env.audit_rows(&["--op", "suspend"]);
    assert_eq!(rows.iter().filter(|r| r["phase"] == "intent").count(), 5);
    assert_eq!(rows.iter().filter(|r| r["status"] == "ok").count(), 5);
    assert!(sb.stats()["faults"].as_u64().unwrap() > 0);
    // The lost answers were settled by reading the user, so the service saw each suspension once.
    for i in 3..=7 {
        assert_eq!(sb.count(&format!("PUT /api/v3/users/user000{i}/suspended")), 1, "user000{i}");
    }
}

#[test]
fn a_put_dropped_before_it_was_applied_is_sent_again_only_after_a_read() {
    // "drop": the connection drops before the server applies anything.
    let sb = faulty("drop=0.5", 10);
    let env = Env::with_sandbox(&sb);
    env.run(&[
        "--yes",
        "eval",
        r#"let gh = connect("ghes"); for i in 3..=7 { try { gh.suspend(`user000${i}`); } catch {} }"#,
    ])
    .success();
    let timeline = sb.timeline();
    let mut arrivals: Vec<(u64, u64, String)> = serde_json::from_value(timeline["arrivals"].clone()).unwrap();
    arrivals.sort();
    for i in 3..=7 {
        let put = format!("PUT /api/v3/users/user000{i}/suspended");
        let get = format!("GET /api/v3/users/user000{i}");
        let mut read_since_put = true;
        for (_, _, a) in &arrivals {
            if a.starts_with(&put) {
                assert!(read_since_put, "user000{i}: a PUT was sent again without reading the user first\n{timeline}");
                read_since_put = false;
            } else if a.starts_with(&get) {
                read_since_put = true;
            }
        }
    }
    assert!(sb.stats()["faults"].as_u64().unwrap() > 0);
}

#[test]
fn timeouts_are_reported_with_a_hint_when_retries_run_out() {
    let sb = faulty("timeout=1.0", 2);
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.slow]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 1\n",
        sb.url()
    ));
    // POST is not retried after a timeout: it may have been applied.
    env.run(&["eval", r#"connect("slow").create_user("x", "x@example.com")"#])
        .code(1)
        .stderr_has("timed out")
        .stderr_has("timeout");
    assert_eq!(sb.count("POST /api/v3/admin/users"), 1);
}

#[test]
fn a_server_side_rate_limit_is_obeyed() {
    let sb = Sandbox::with(Options { users: 30, rate_limit: Some(5.0), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    env.eval_json(r#"let gh = connect("ghes"); for i in 10..=25 { gh.get_user(`user00${i}`); }"#);
    assert_eq!(env.audit_rows(&["--op", "get_user"]).iter().filter(|r| r["status"] == "ok").count(), 16);
}

#[test]
fn a_change_applied_before_a_500_is_found_in_place_and_never_sent_twice() {
    let sb = faulty("apply500=0.3", 30);
    let env = Env::with_sandbox(&sb);
    let ids: Vec<String> = (3..23).map(|i| format!("user{i:04}")).collect();
    let expr = format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"x\", precheck: false}})");
    let run = env.run(&["--yes", "--format", "json", "eval", &expr]);
    let results: Vec<serde_json::Value> =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()));
    let state = sb.state();
    let is_suspended = |t: &str| {
        state["github"]["users"].as_array().unwrap().iter().any(|u| u["login"] == t && !u["suspended_at"].is_null())
    };
    for r in &results {
        let t = r["target"].as_str().unwrap();
        assert_eq!(sb.count(&format!("PUT /api/v3/users/{t}/suspended")), 1, "{t} was sent more than once");
        if r["status"] == "ok" {
            assert!(is_suspended(t), "{t} reported ok but is not suspended");
        }
    }
    let reconciled = env
        .audit_rows(&["--op", "suspend"])
        .iter()
        .filter(|e| e["error"].as_str().unwrap_or("").contains("change is in place"))
        .count();
    assert!(reconciled > 0, "no 500 was reconciled: {}", sb.stats());
}

/// The reported case: behind a proxy that drops 5 % of answers after the change was applied, a bulk job sent
/// 50–64 of 1,000 GHES suspensions twice. Each lost answer is settled by a read: every user gets one PUT.
#[test]
fn a_bulk_job_behind_a_proxy_dropping_answers_sends_each_change_once() {
    let sb = faulty("reset=0.05", 400);
    let env = Env::with_sandbox(&sb);
    let ids: Vec<String> = (3..=400).map(|i| format!("user{i:04}")).collect();
    let expr = format!(
        "connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"proxy\"}}).filter(|r| r.status == \"failed\").len()"
    );
    let failed = env.eval_json(&expr);
    assert_eq!(failed, 0, "every item ends ok or noop");
    assert!(sb.stats()["faults"].as_u64().unwrap() >= 5, "answers were lost: {}", sb.stats());
    for id in &ids {
        assert!(sb.count(&format!("PUT /api/v3/users/{id}/suspended")) <= 1, "{id} was sent twice");
    }
}

/// A deletion the server applied but whose answer was lost (a 500 after applying) is settled by reading the
/// account: it is gone, so the deletion is done, recorded ok, and never sent again.
#[test]
fn a_deletion_whose_answer_was_lost_is_found_done_by_a_read() {
    let delete = r#"connect("ghes").delete_user("user0007"); 1"#;
    // Where the DELETE falls in the run's requests, from the same run on a sandbox without faults.
    let clean = faulty("", 10);
    Env::with_sandbox(&clean).run(&["--yes", "eval", delete]).success();
    let arrivals: Vec<(u64, u64, String)> = serde_json::from_value(clean.timeline()["arrivals"].clone()).unwrap();
    let (n, _, _) = arrivals.iter().find(|(_, _, what)| what.starts_with("DELETE")).expect("a DELETE").clone();
    let sb = faulty(&format!("apply500@{n}"), 10);
    let env = Env::with_sandbox(&sb);
    env.run(&["--yes", "eval", delete]).success();
    assert_eq!(sb.count("DELETE /api/v3/admin/users/user0007"), 1, "sent once: {}", sb.stats());
    let rows = env.audit_rows(&["--op", "delete_user"]);
    let outcome = rows.iter().find(|r| r["phase"] == "outcome").expect("an outcome");
    assert_eq!(outcome["status"], "ok", "{rows:?}");
    assert!(outcome["error"].as_str().unwrap_or_default().contains("change is in place"), "{rows:?}");
}
