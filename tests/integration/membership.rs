//! Membership, the joiner/mover/leaver's daily work: groups listed, members read with their roles, people added,
//! moved between roles and removed, each decided on what the service calls the group and the account, a noop
//! when already so, and given back by undo; on the GHES sandbox's organisations and teams.

use crate::util::{Env, Sandbox};
use serde_json::{json, Value};

/// The run that made the last successful `op`, and its params.
fn last_change(env: &Env, op: &str) -> (String, Value) {
    let rows = env.audit_rows(&["--op", op]);
    let row = rows.iter().rev().find(|r| r["phase"] == "outcome" && r["status"] == "ok").expect("a change on record");
    (row["run_id"].to_string(), serde_json::from_str(row["params"].as_str().unwrap()).unwrap())
}

fn members(env: &Env, group: &str) -> Vec<(String, String)> {
    let all = env.eval_json(&format!(r#"connect("ghes").members("{group}")"#));
    let mut out: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["login"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

fn role_of(env: &Env, group: &str, login: &str) -> Option<String> {
    members(env, group).into_iter().find(|(l, _)| l == login).map(|(_, r)| r)
}

#[test]
fn ghes_organisations_and_teams_are_groups_joined_moved_left_and_undone() {
    let sb = Sandbox::start(40);
    let env = Env::with_sandbox(&sb);
    let groups = env.eval_json(r#"connect("ghes").list_groups().map(|g| `${g.id}:${g.kind}`)"#);
    assert_eq!(
        groups,
        json!([
            "acme:organization",
            "acme/engineering:team",
            "acme/ops:team",
            "labs:organization",
            "labs/research:team"
        ])
    );
    // A team by its name or its slug, members with their roles.
    let eng = members(&env, "ACME/Engineering");
    assert_eq!(eng.len(), 12);
    assert_eq!(eng[0], ("user0001".into(), "maintainer".into()));
    assert_eq!(members(&env, "acme/engineering"), eng);

    // A joiner: into a team by its name, as maintainer (GHES makes them an organisation member too).
    let added = env.eval_json(r#"connect("ghes").add_to_group("User0030", "acme/Ops", #{role: "maintainer"})"#);
    assert_eq!((added["role"].clone(), added["state"].clone()), (json!("maintainer"), json!("active")), "{added}");
    assert_eq!(role_of(&env, "acme/ops", "user0030").as_deref(), Some("maintainer"));
    assert_eq!(role_of(&env, "acme", "user0030").as_deref(), Some("member"));
    let (join_run, params) = last_change(&env, "add_to_group");
    assert_eq!((params["group"].as_str(), params["group_named"].as_str()), (Some("acme/ops"), Some("acme/Ops")));
    // Already so: a noop, nothing sent.
    let puts = sb.count_method("PUT");
    let again = env.eval_json(r#"connect("ghes").add_to_group("user0030", "acme/ops", #{role: "maintainer"})"#);
    assert_eq!(again["noop"], true, "{again}");
    assert_eq!(sb.count_method("PUT"), puts, "a noop sends nothing");

    // A mover: an organisation member made an owner; the role they had is kept for undo.
    env.eval_json(r#"connect("ghes").add_to_group("user0002", "acme", #{role: "admin"})"#);
    assert_eq!(role_of(&env, "acme", "user0002").as_deref(), Some("admin"));
    let (promote_run, params) = last_change(&env, "add_to_group");
    assert_eq!(params["prior_role"], "member", "{params}");

    // A leaver's team membership, taken (it asks first; --yes here).
    env.run(&["eval", r#"connect("ghes").remove_from_group("user0003", "acme/engineering")"#])
        .code(1)
        .stderr_has("remove_from_group user0003 on ghes: no terminal to ask for confirmation");
    env.eval_json(r#"connect("ghes").remove_from_group("user0003", "acme/engineering")"#);
    assert_eq!(role_of(&env, "acme/engineering", "user0003"), None);
    let (leave_run, params) = last_change(&env, "remove_from_group");
    assert_eq!(params["prior_role"], "member");

    // Undo puts each back as it was: the joiner out, the owner a member again, the leaver back in the team.
    for run in [&join_run, &promote_run, &leave_run] {
        env.run(&["--yes", "undo", run]).success();
    }
    assert_eq!(role_of(&env, "acme/ops", "user0030"), None);
    assert_eq!(role_of(&env, "acme", "user0002").as_deref(), Some("member"));
    assert_eq!(role_of(&env, "acme/engineering", "user0003").as_deref(), Some("member"));
    assert_eq!(members(&env, "acme/engineering"), eng, "engineering is as it was");
    env.run(&["audit", "verify"]).success();
}

#[test]
fn ghes_membership_mistakes_are_refused_before_anything_is_sent() {
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    let refused = |expr: &str, says: &str| {
        env.run(&["--yes", "eval", expr]).code(1).stderr_has(says);
    };
    refused(r#"connect("ghes").add_to_group("user0001", "acme/ops", #{role: "admin"})"#, "\"maintainer\"");
    refused(r#"connect("ghes").add_to_group("user0001", "acme", #{role: "maintainer"})"#, "\"admin\"");
    refused(r#"connect("ghes").add_to_group("user0001", "acme/nobody")"#, "no team \"nobody\" in organisation acme");
    refused(r#"connect("ghes").add_to_group("user0001", "nowhere")"#, "no organisation \"nowhere\"");
    refused(r#"connect("ghes").add_to_group("user0001", "acme/../../users")"#, "not a GHES group");
    refused(r#"connect("ghes").add_to_group("ghost", "acme")"#, "no user \"ghost\"");
    // The caller, however named, is not taken out of an organisation.
    refused(r#"connect("ghes").remove_from_group("ADMIN", "acme")"#, "token belongs to");
    assert_eq!(sb.count_method("PUT") + sb.count_method("DELETE"), 0, "nothing was sent");
}
