//! Activity on every service: where its dates come from, who its listing cannot show, and refusals that say why.
//! Unknown is never inactive.

use crate::util::{run_services, services_env, Run, Sandbox};

fn inactive_report() -> String {
    crate::util::repo().join("scripts/inactive_report.rhai").to_string_lossy().to_string()
}

#[test]
fn every_service_says_where_its_activity_comes_from_or_why_it_has_none() {
    let sb = Sandbox::start(30);
    let env = services_env(&sb);
    let report = inactive_report();
    let args = |profile: &'static str| {
        vec![
            "run".to_string(),
            report.clone(),
            "--arg".into(),
            format!("profile={profile}"),
            "--arg".into(),
            "since=90d".into(),
            "--arg".into(),
            format!("out={profile}.csv"),
        ]
    };
    let run = |profile| {
        let a = args(profile);
        run_services(&env, &a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    // GHES: the all-users report. Travis: last activity, and a warning that members never active are in neither
    // of its lists, never a silent gap.
    run("ghes").success().stdout_has("ghes: activity from last_active in the site-admin all-users report");
    run("travis")
        .success()
        .stdout_has("warning: travis: not in this list: members who were never active have no last activity");
    assert!(std::fs::read_to_string(env.path("travis.csv")).unwrap().starts_with("login,"));
    // Terraform and TransactionLink keep no dates of use: refused, saying why; no file claims "nobody inactive".
    for (profile, kind) in [("tfe", "terraform"), ("tl", "transactionlink")] {
        run(profile).code(1).stderr_has(&format!("{kind} has no activity data: its"));
        assert!(!env.path(&format!("{profile}.csv")).exists(), "{profile}");
    }
    let sent = ["PUT", "POST", "PATCH", "DELETE"].iter().map(|m| sb.count_method(m)).sum::<u64>();
    assert_eq!(sent, 0, "reports change nothing");
}

#[test]
fn a_ghes_token_that_is_not_a_site_admins_is_told_what_the_report_needs() {
    let sb = Sandbox::start(5);
    let env = crate::util::Env::with_sandbox(&sb);
    let mut cmd = env.cmd();
    cmd.env("GHES_TOKEN", steward_sandbox::USER_TOKEN)
        .args(["eval", r#"connect().activity(#{since: "90d", status: "inactive"})"#]);
    Run::of(cmd)
        .code(1)
        .stderr_has("GHES refused /stafftools/reports/all_users.csv (HTTP 404)")
        .stderr_has("site_admin scope");
}

#[test]
fn one_accounts_activity_is_found_by_any_name_that_reaches_it() {
    let sb = Sandbox::start(12);
    let env = crate::util::Env::with_sandbox(&sb);
    // `USER0005` reaches user0005 (GHES logins ignore case); its row says when it was last active.
    let one = env.eval_json(r#"connect().activity(#{user: "USER0005"})"#);
    assert_eq!(one["login"], "user0005");
    assert!(one["last_active"].as_str().is_some_and(|t| t.ends_with('Z')), "{one}");
    // user0003 was never active: no date, and GHES counts it dormant.
    let never = env.eval_json(r#"connect().activity(#{user: "user0003"})"#);
    assert_eq!((never["last_active"].clone(), never["dormant"].clone()), (serde_json::Value::Null, true.into()));
    let missing = env.run(&["eval", r#"connect().activity(#{user: "nobody-here"})"#]).code(1);
    assert!(missing.stderr.contains("no user \"nobody-here\""), "{}", missing.report());
}
