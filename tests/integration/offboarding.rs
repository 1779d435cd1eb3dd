//! Offboarding about fifty people across all six services at once, as an admin does it: an HR CSV naming some
//! people by email and some by GHES login; each person holding accounts under different names on the sandbox's
//! GHES, Terraform, TransactionLink and Travis, on a live SCIM server (PATCH, /Bulk, ETags, default concurrency)
//! and on a live Synapse; one email two GHES accounts share; one typo. Killed midway, resumed, then undone, each
//! account checked at its server.

use crate::util::{Env, Run, Sandbox};
use serde_json::{json, Value};
use std::collections::HashMap;
use steward_sandbox::Person;

const PEOPLE: usize = 48;

struct World {
    sb: Sandbox,
    env: Env,
    /// Unique to this run: logins, emails and Matrix ids are made from it (the live servers are shared).
    tag: String,
}

impl World {
    fn ghes(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }
    fn email(&self, i: usize) -> String {
        format!("{}.{i}@corp.example", self.tag)
    }
    fn scim(&self, i: usize) -> String {
        format!("{}.{i}.scim", self.tag)
    }
    fn matrix(&self, i: usize) -> String {
        format!("{}_{i}", self.tag)
    }

    fn run(&self, args: &[&str], failpoint: Option<&str>) -> Run {
        let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
        let mut cmd = self.env.cmd();
        cmd.env("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN)
            .env("TL_TOKEN", steward_sandbox::transactionlink_tokens::ADMIN_TOKEN)
            .env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN))
            .env("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN))
            .env("SCIM_TOKEN", &crate::scim::servers().token)
            .env("SYNAPSE_TOKEN", &crate::synapse::server().token)
            .args(args);
        if let Some(f) = failpoint {
            cmd.env("STEWARD_FAILPOINT", f);
        }
        Run::of(cmd)
    }

    fn eval(&self, expr: &str) -> Value {
        let r = self.run(&["--yes", "--format", "json", "eval", expr], None).success();
        serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
    }
}

/// Who holds what: every person is on GHES and SCIM; Terraform (even), TransactionLink (not every third), Travis
/// (odd, by the GHES login), Synapse (not every fourth); every tenth a GHES site admin, every eighth a SCIM admin.
fn on_tfe(i: usize) -> bool {
    i.is_multiple_of(2)
}
fn on_tl(i: usize) -> bool {
    !i.is_multiple_of(3)
}
fn on_travis(i: usize) -> bool {
    !i.is_multiple_of(2)
}
fn on_matrix(i: usize) -> bool {
    i % 4 != 3
}

fn world() -> World {
    let tag = crate::synapse::unique("ob");
    let mut people: Vec<Person> = (0..PEOPLE)
        .map(|i| Person {
            ghes: Some(format!("{tag}-{i}")),
            email: Some(format!("{tag}.{i}@corp.example")),
            tfe: on_tfe(i).then(|| format!("tf-{tag}-{i}")),
            tl: on_tl(i).then(|| format!("{tag}.{i}@corp.example")),
            travis: on_travis(i),
            admin: i.is_multiple_of(10),
        })
        .collect();
    // Two colleagues who share a team address on GHES, and stay.
    for who in ["sha", "shb"] {
        people.push(Person {
            ghes: Some(format!("{tag}-{who}")),
            email: Some(format!("{tag}.shared@corp.example")),
            ..Default::default()
        });
    }
    let sb = Sandbox::with(steward_sandbox::Options { users: 10, people, ..Default::default() });
    let env = crate::util::services_env(&sb);
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&format!(
        "{config}[profiles.scim]\nkind = \"scim\"\nurl = \"{}/{}\"\ntoken_env = \"SCIM_TOKEN\"\nadmin_group = \"admins\"\nidentity = \"root\"\n\
         [profiles.matrix]\nkind = \"synapse\"\nurl = \"{}\"\ntoken_env = \"SYNAPSE_TOKEN\"\nprotected = [\"admin\"]\n",
        crate::scim::servers().full,
        crate::scim::tenant("ob"),
        crate::synapse::server().url,
    ));
    let w = World { sb, env, tag };
    seed_scim(&w);
    seed_matrix(&w);
    w
}

/// The SCIM tenant: root, the admins group, eng and oncall, and each person under another userName with the
/// same email.
fn seed_scim(w: &World) {
    let user = |name: &str, email: &str| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": true,
               "emails": [{"value": email, "primary": true}]})
    };
    let mut ops =
        vec![json!({"method": "POST", "path": "/Users", "bulkId": "root", "data": user("root", "root@corp.example")})];
    for i in 0..PEOPLE {
        ops.push(json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": user(&w.scim(i), &w.email(i))}));
    }
    for g in ["admins", "eng", "oncall"] {
        ops.push(json!({"method": "POST", "path": "/Groups", "bulkId": g,
                        "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": g, "members": []}}));
    }
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
    let mut script =
        format!("let s = connect(\"scim\"); s.api(\"POST\", \"Bulk\", {});\n", body.to_string().replace('{', "#{"));
    for i in 0..PEOPLE {
        script.push_str(&format!("s.add_to_group(\"{}\", \"eng\");\n", w.scim(i)));
        if i < PEOPLE / 2 {
            script.push_str(&format!("s.add_to_group(\"{}\", \"oncall\");\n", w.scim(i)));
        }
        if i.is_multiple_of(8) {
            script.push_str(&format!("s.promote(\"{}\");\n", w.scim(i)));
        }
    }
    w.env.write("seed-scim.rhai", &script);
    w.run(&["--yes", "run", "seed-scim.rhai"], None).success();
}

/// Synapse accounts under another name, each with the person's email bound.
fn seed_matrix(w: &World) {
    let mut script = String::from("let m = connect(\"matrix\");\n");
    for i in (0..PEOPLE).filter(|i| on_matrix(*i)) {
        script.push_str(&format!(
            "m.create_user(#{{login: \"{}\", password: \"pw-{}-not-a-secret\", email: \"{}\"}});\n",
            w.matrix(i),
            w.matrix(i),
            w.email(i)
        ));
    }
    w.env.write("seed-matrix.rhai", &script);
    w.run(&["--yes", "run", "seed-matrix.rhai"], None).success();
}

/// Each account's state at its server: (profile, person) → suspended (or terminated, or inactive).
fn states(w: &World) -> HashMap<(&'static str, usize), bool> {
    let state = w.sb.state();
    let find = |service: &str, key: &str, value: &str| {
        state[service]["users"].as_array().unwrap().iter().find(|u| u[key] == value).cloned()
    };
    let scim: HashMap<String, bool> = serde_json::from_value(
        w.eval(r#"let out = #{}; for u in connect("scim").list_users() { out[u.login] = u.suspended; } out"#),
    )
    .unwrap();
    let names: Vec<String> = (0..PEOPLE).filter(|i| on_matrix(*i)).map(|i| w.matrix(i)).collect();
    let matrix: Vec<bool> = serde_json::from_value(w.eval(&format!(
        "let m = connect(\"matrix\"); {}.map(|n| m.get_user(n).suspended == true)",
        serde_json::to_string(&names).unwrap()
    )))
    .unwrap();
    let mut matrix = matrix.into_iter();
    let mut out = HashMap::new();
    for i in 0..PEOPLE {
        out.insert(("ghes", i), !find("github", "login", &w.ghes(i)).unwrap()["suspended_at"].is_null());
        out.insert(("scim", i), scim[&w.scim(i)]);
        if on_tfe(i) {
            out.insert(
                ("tfe", i),
                find("terraform", "username", &format!("tf-{}", w.ghes(i))).unwrap()["is-suspended"] == true,
            );
        }
        if on_tl(i) {
            out.insert(("tl", i), find("transactionlink", "email", &w.email(i)).unwrap()["status"] == "TERMINATED");
        }
        if on_travis(i) {
            out.insert(("travis", i), find("travis", "login", &w.ghes(i)).unwrap()["suspended"] == true);
        }
        if on_matrix(i) {
            out.insert(("matrix", i), matrix.next().unwrap());
        }
    }
    out
}

#[test]
fn fifty_people_across_six_services_offboarded_killed_resumed_and_undone() {
    let w = world();
    // The HR list: even people by email, odd ones by GHES login; the shared team address; a typo (O for 0).
    let mut csv = String::from("email,login\n");
    for i in 0..PEOPLE {
        match i % 2 {
            0 => csv.push_str(&format!("{},\n", w.email(i))),
            _ => csv.push_str(&format!(",{}\n", w.ghes(i))),
        }
    }
    csv.push_str(&format!("{}.shared@corp.example,\n{}.1O@corp.example,\n", w.tag, w.tag));
    w.env.write("leavers.csv", &csv);
    let script = crate::util::repo().join("scripts/offboard.rhai").display().to_string();
    let args = ["--yes", "run", &script, "--arg", "csv=leavers.csv", "--arg", "reason=left the company"];

    // Killed (like kill -9) right after the 150th change reached a server, before its outcome was recorded.
    let killed = w.run(&args, Some("after_response_before_outcome:150"));
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    let job = w.env.audit_rows(&[]).iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap();
    let job_text = job.to_string();
    let mut resume = args.to_vec();
    resume.extend(["--resume", &job_text]);
    let resumed = w.run(&resume, None);
    // The typo matched nowhere and the shared address named two accounts: exit code 3, both said.
    assert_eq!(resumed.status, Some(3), "{}", resumed.report());
    assert!(resumed.stdout.contains(&format!("{}.1O@corp.example", w.tag)), "{}", resumed.report());

    // The evidence is exact: an account wherever there is one, "no account" only where there is none.
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(w.env.run_file("leavers-offboarded-evidence.json")).unwrap())
            .unwrap();
    let person = |i: usize| if i.is_multiple_of(2) { w.email(i) } else { w.ghes(i) };
    let report = |i: usize, profile: &str| -> Value {
        doc["people"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["person"] == person(i))
            .and_then(|p| p["services"].as_array().unwrap().iter().find(|s| s["profile"] == profile).cloned())
            .unwrap_or_else(|| panic!("no report of {} on {profile}", person(i)))
    };
    for i in 0..PEOPLE {
        for (profile, has) in [
            ("ghes", true),
            ("scim", true),
            ("tfe", on_tfe(i)),
            ("tl", on_tl(i)),
            ("travis", on_travis(i)),
            ("matrix", on_matrix(i)),
        ] {
            let r = report(i, profile);
            // Travis lists only members who were ever active: not finding someone there is never "no account".
            let want = match (has, profile) {
                (true, _) => "done",
                (false, "travis") => "could not check",
                (false, _) => "no account",
            };
            assert_eq!(r["status"], want, "{} on {profile}: {r:#}", person(i));
        }
    }
    assert_eq!(doc["summary"]["found_nowhere"], json!([format!("{}.1O@corp.example", w.tag)]));
    assert_eq!(doc["resumed_from"], job);

    // At the servers: every account of every leaver is suspended; the two who share an address are not.
    let after = states(&w);
    let left: Vec<_> = after.iter().filter(|(_, suspended)| !**suspended).map(|(k, _)| *k).collect();
    assert!(left.is_empty(), "still active: {left:?}");
    assert_eq!(after.len(), 48 + 48 + 24 + 32 + 24 + 36, "every account was checked");
    for who in ["sha", "shb"] {
        let u = w.eval(&format!("connect(\"ghes\").get_user(\"{}-{who}\")", w.tag));
        assert_eq!(u["suspended"], false, "{who} stays");
    }
    let groups = w.eval(r#"connect("scim").list_groups().map(|g| `${g.name}:${g.members}`)"#);
    for g in ["eng:0", "oncall:0", "admins:0"] {
        assert!(groups.as_array().unwrap().contains(&json!(g)), "{groups}");
    }

    // Nothing reached a sandbox service twice across both runs (GHES impersonation-token deletions in doubt are
    // sent again, which the log explains; a DELETE tolerates it; every other step in doubt is settled by reading
    // the service), and on every service no change was applied twice: one `ok` outcome per step at most.
    for (path, n) in w.sb.stats()["requests"].as_object().unwrap() {
        let n = n.as_u64().unwrap();
        if !path.starts_with("GET ") && !path.ends_with("/authorizations") {
            assert_eq!(n, 1, "{path} was sent {n} times");
        }
    }
    let mut applied: HashMap<(String, String, String, String), usize> = HashMap::new();
    for r in
        w.env.audit_rows(&[]).iter().filter(|r| r["phase"] == "outcome" && r["status"] == "ok" && r["mode"] == "live")
    {
        let params: Value = serde_json::from_str(r["params"].as_str().unwrap_or("{}")).unwrap_or_default();
        let key = (
            r["profile"].as_str().unwrap_or_default().to_string(),
            r["op"].as_str().unwrap_or_default().to_string(),
            r["target"].as_str().unwrap_or_default().to_string(),
            params["group"].as_str().unwrap_or_default().to_string(),
        );
        if !key.1.starts_with("delete_impersonation")
            && ![
                "deprovision",
                "list_users",
                "get_user",
                "add_to_group",
                "promote",
                "create_user",
                "api",
                "list_groups",
                "evidence",
            ]
            .contains(&key.1.as_str())
        {
            *applied.entry(key).or_default() += 1;
        }
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied twice: {twice:?}");

    // Undo without a terminal and without --yes changes nothing; with --yes it restores everything restorable
    // in one run.
    let refused = w.run(&["undo", &job_text], None);
    assert_ne!(refused.status, Some(0), "{}", refused.report());
    assert_eq!(states(&w), after, "nothing changed");
    let undo = w.run(&["--yes", "undo", &job_text], None);
    assert_eq!(undo.status, Some(0), "{}", undo.report());
    let back = states(&w);
    let still: Vec<_> = back.iter().filter(|(_, suspended)| **suspended).map(|(k, _)| *k).collect();
    assert!(still.is_empty(), "not restored: {still:?}");
    for i in (0..PEOPLE).step_by(10) {
        let u = w.eval(&format!("connect(\"ghes\").get_user(\"{}\")", w.ghes(i)));
        assert_eq!(u["admin"], true, "{} is a site admin again", w.ghes(i));
    }
    for i in (0..PEOPLE).step_by(8) {
        let u = w.eval(&format!("connect(\"scim\").get_user(\"{}\")", w.scim(i)));
        assert_eq!(u["admin"], true, "{} is in admins again", w.scim(i));
    }
}
