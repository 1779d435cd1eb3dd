//! The scim kind against real SCIM 2.0 servers (scim2-server from PyPI, `tests/servers/start-scim.sh`): one that
//! announces PATCH, /Bulk and ETags, one that announces none of them. Each test works in a tenant of its own.

use crate::util::{Env, Run};
use serde_json::{json, Value};
use std::sync::OnceLock;

pub(crate) struct Servers {
    pub(crate) full: String,
    pub(crate) minimal: String,
    pub(crate) token: String,
}

/// The running servers: from `.ci/run` (SCIM_BASE_URL, SCIM_MINIMAL_URL, SCIM_TOKEN) or started here, once.
pub(crate) fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok();
        if let (Some(full), Some(minimal), Some(token)) = (var("SCIM_BASE_URL"), var("SCIM_MINIMAL_URL"), var("SCIM_TOKEN")) {
            return Servers { full, minimal, token };
        }
        let script = crate::util::repo().join("tests/servers/start-scim.sh");
        let out = std::process::Command::new("bash").arg(&script).arg("start").output().expect("bash runs");
        assert!(
            out.status.success(),
            "the SCIM servers did not start. They need python3 >= 3.10 with venv and pip (scim2-server is installed into ~/.cache/steward-tests/scim-venv);\nrun `bash tests/servers/start-scim.sh start` to see why.\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |name: &str| {
            text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} in {text}")).to_string()
        };
        Servers { full: field("SCIM_BASE_URL"), minimal: field("SCIM_MINIMAL_URL"), token: field("SCIM_TOKEN") }
    })
}

/// A tenant name unique to one test and one run.
pub(crate) fn tenant(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{nanos:x}", std::process::id())
}

/// An environment whose default profile `scim` is a fresh tenant on `base`, with `extra` profile keys.
fn env_on(base: &str, extra: &str) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"scim\"\nmax_changes = 100000\n[profiles.scim]\nkind = \"scim\"\nurl = \"{base}/{}\"\ntoken_env = \"SCIM_TOKEN\"\nconcurrency = 4\nadmin_group = \"admins\"\nidentity = \"root\"\nprotected = [\"boss\"]\n{extra}",
        tenant("t")
    ));
    env
}

fn run(env: &Env, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.env("SCIM_TOKEN", &servers().token).args(args);
    Run::of(cmd)
}

fn eval(env: &Env, expr: &str) -> Value {
    let r = run(env, &["--yes", "--format", "json", "eval", expr]).success();
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

/// Seeds the tenant: root, boss (protected), the admins group and `n` users `u0000…` with emails and
/// externalIds, through `api()` (one /Bulk request where the server has it, else one POST each).
fn seed(env: &Env, n: usize) {
    let logins: Vec<String> =
        ["root".to_string(), "boss".to_string()].into_iter().chain((0..n).map(|i| format!("u{i:04}"))).collect();
    let user = |login: &str| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": login, "active": true,
               "externalId": format!("ext-{login}"), "name": {"formatted": format!("Person {login}")},
               "emails": [{"value": format!("{login}@example.com"), "primary": true}]})
    };
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "admins", "members": []});
    // Rhai reads JSON once `#` marks the maps (no value here holds a brace).
    let rhai = |v: &Value| v.to_string().replace('{', "#{");
    let on_minimal = std::fs::read_to_string(env.path("config.toml")).unwrap().contains(&servers().minimal);
    let script = match on_minimal {
        false => {
            let mut ops: Vec<Value> = logins
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"method": "POST", "path": "/Users", "bulkId": format!("c{i}"), "data": user(l)}))
                .collect();
            ops.push(json!({"method": "POST", "path": "/Groups", "bulkId": "g", "data": group}));
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
            format!("connect().api(\"POST\", \"Bulk\", {}).Operations.len()", rhai(&body))
        }
        true => {
            let users: Vec<Value> = logins.iter().map(|l| user(l)).collect();
            format!(
                "let h = connect(); for u in {} {{ h.api(\"POST\", \"Users\", u); }} h.api(\"POST\", \"Groups\", {}); {}",
                rhai(&Value::Array(users)),
                rhai(&group),
                logins.len() + 1
            )
        }
    };
    env.write("seed.rhai", &script);
    run(env, &["--yes", "run", "seed.rhai"]).success();
    let listed = eval(env, "connect().list_users().len()");
    assert_eq!(listed, json!(n + 2), "seeded");
}

#[test]
fn every_verb_against_a_real_scim_server() {
    let env = env_on(&servers().full, "page_size = 10\n");
    seed(&env, 25);
    // Listing pages through startIndex/count: 27 users at 10 a page.
    assert_eq!(eval(&env, "connect().list_users().len()"), 27);
    // Walked lazily, page by page, the same 27 in the same order, admins marked alike.
    let walked = eval(
        &env,
        r#"let h = connect(); let w = []; for u in h.users() { w.push([u.id, u.admin]); }
           w == h.list_users().map(|u| [u.id, u.admin]) && w.len() == 27"#,
    );
    assert_eq!(walked, json!(true));
    let u = eval(&env, r#"connect().get_user("u0003")"#);
    assert_eq!(
        (u["login"].clone(), u["email"].clone(), u["name"].clone()),
        (json!("u0003"), json!("u0003@example.com"), json!("Person u0003"))
    );
    assert_eq!(
        (u["suspended"].clone(), u["admin"].clone(), u["kind"].clone()),
        (json!(false), json!(false), json!("scim"))
    );
    // The same account by its email, its externalId (any case) and its SCIM id.
    let id = u["id"].as_str().unwrap().to_string();
    for name in ["U0003@EXAMPLE.COM", "ext-u0003", id.as_str()] {
        assert_eq!(eval(&env, &format!(r#"connect().get_user("{name}").id"#)), json!(id), "{name}");
    }
    assert_eq!(eval(&env, "connect().whoami().login"), "root");
    let shown = run(&env, &["--format", "json", "profiles", "show", "scim"]).success();
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(
        (shown["settings"]["admin_group"].clone(), shown["settings"]["page_size"].clone()),
        (json!("admins"), json!(10))
    );

    eval(&env, r#"let s = connect(); s.suspend("u0003@example.com", #{reason: "left"}); s.promote("ext-u0004")"#);
    assert_eq!(eval(&env, r#"connect().get_user("u0003").suspended"#), true);
    assert_eq!(eval(&env, r#"connect().get_user("u0004").admin"#), true);
    // Filters: steward's keys and a SCIM filter passed through.
    assert_eq!(eval(&env, r#"connect().list_users(#{suspended: true}).map(|u| u.login)"#), json!(["u0003"]));
    assert_eq!(eval(&env, r#"connect().list_users(#{admin: true}).map(|u| u.login)"#), json!(["u0004"]));
    assert_eq!(eval(&env, r#"connect().list_users(#{email: "u0005@example.com"}).len()"#), 1);
    assert_eq!(eval(&env, r#"connect().list_users(#{q: "u001"}).len()"#), 10);
    assert_eq!(
        eval(&env, r#"connect().list_users(#{filter: "externalId eq \"ext-u0007\""}).map(|u| u.login)"#),
        json!(["u0007"])
    );
    run(&env, &["eval", r#"connect().list_users(#{colour: "red"})"#])
        .code(1)
        .stderr_has("not a filter of a scim profile");

    eval(&env, r#"let s = connect(); s.unsuspend("u0003"); s.demote("u0004")"#);
    let u = eval(&env, r#"connect().get_user("u0003")"#);
    assert_eq!(
        (u["suspended"].clone(), eval(&env, r#"connect().get_user("u0004").admin"#)),
        (json!(false), json!(false))
    );

    // Groups and their members.
    eval(
        &env,
        r#"connect().api("POST", "Groups", #{schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"], displayName: "eng"})"#,
    );
    eval(&env, r#"let s = connect(); s.add_to_group("u0001", "eng"); s.add_to_group("u0002@example.com", "eng")"#);
    let groups = eval(&env, "connect().list_groups().map(|g| `${g.name}:${g.members}`)");
    assert!(groups.as_array().unwrap().contains(&json!("eng:2")), "{groups}");
    eval(&env, r#"connect().remove_from_group("u0001", "eng")"#);
    let groups = eval(&env, "connect().list_groups().map(|g| `${g.name}:${g.members}`)");
    assert!(groups.as_array().unwrap().contains(&json!("eng:1")), "{groups}");
    // Who they are: the one left, by the group's name.
    let members = eval(&env, r#"connect().members("eng").map(|m| m.id)"#);
    assert_eq!(members, json!([eval(&env, r#"connect().get_user("u0002").id"#)]), "{members}");
    // A membership already as asked is a noop, whatever the group is called (its name, its id), and a
    // membership given is taken back by undo, by the group's id.
    let eng = eval(&env, r#"connect().list_groups().filter(|g| g.name == "eng")[0].id"#);
    let eng = eng.as_str().unwrap();
    assert_eq!(eval(&env, &format!(r#"connect().add_to_group("u0002", "{eng}").noop"#)), true);
    assert_eq!(eval(&env, r#"connect().remove_from_group("u0001", "eng").noop"#), true);
    let added = run(&env, &["eval", r#"connect().add_to_group("U0003@example.com", "eng")"#]).success();
    let rows = env_rows(&env, "add_to_group");
    let last = rows.iter().rev().find(|r| r["phase"] == "outcome" && r["status"] == "ok").unwrap();
    let params: Value = serde_json::from_str(last["params"].as_str().unwrap()).unwrap();
    assert_eq!((params["group"].as_str(), params["group_named"].as_str()), (Some(eng), Some("eng")), "{params}");
    let undone = run(&env, &["--yes", "undo", &last["run_id"].to_string()]).success();
    assert!(undone.stderr.contains("remove_from_group on"), "{}\n{}", added.report(), undone.report());
    assert_eq!(eval(&env, r#"connect().members("eng").len()"#), 1);

    let created = eval(
        &env,
        r#"connect().create_user(#{login: "newbie", email: "newbie@example.com", name: "New B", external_id: "ext-new"})"#,
    );
    assert_eq!((created["login"].clone(), created["http_status"].clone()), (json!("newbie"), json!(201)));
    eval(&env, r#"connect().delete_user("newbie")"#);
    run(&env, &["eval", r#"connect().get_user("newbie")"#]).code(1).stderr_has("no user \"newbie\"");

    // activity says what SCIM can tell: when each record last changed.
    let act = eval(&env, r#"connect().activity(#{since: "7d", status: "active"})"#);
    assert_eq!(act.as_array().unwrap().len(), 27, "every record here changed today");
    assert!(act[0]["activity_means"].as_str().unwrap().contains("lastModified"), "{}", act[0]);
    // ... which is not use: nobody is called inactive on it.
    run(&env, &["eval", r#"connect().activity(#{since: "7d", status: "inactive"})"#])
        .code(1)
        .stderr_has("scim reports no sign-ins, only meta.lastModified");

    // Every change is in the audit log with its outcome, and the token is not.
    for op in
        ["suspend", "unsuspend", "promote", "demote", "delete_user", "create_user", "add_to_group", "remove_from_group"]
    {
        let rows = env_rows(&env, op);
        assert!(rows.iter().any(|r| r["phase"] == "outcome" && r["status"] == "ok"), "{op}: {rows:?}");
    }
    let export = run(&env, &["audit", "export"]).success();
    assert!(!export.stdout.contains(&servers().token), "the token reached the audit log");
}

fn env_rows(env: &Env, op: &str) -> Vec<Value> {
    let r = run(env, &["--format", "json", "audit", "list", "--all", "--op", op]).success();
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn unknown_users_and_bad_tokens_are_named() {
    let env = env_on(&servers().full, "");
    seed(&env, 1);
    run(&env, &["eval", r#"connect().suspend("ghost", #{reason: "x"})"#]).code(1).stderr_has("no user \"ghost\"");
    let kind = eval(&env, r#"let k = (); try { connect().get_user("ghost") } catch (e) { k = e.kind } k"#);
    assert_eq!(kind, "not_found");
    let mut cmd = env.cmd();
    cmd.env("SCIM_TOKEN", "not-the-token").args(["eval", r#"connect().list_users()"#]);
    let r = Run::of(cmd).code(1).stderr_has("401");
    assert!(r.stderr.contains("token"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-the-token"), "the token was echoed: {}", r.stderr);
}

#[test]
fn protected_accounts_are_refused_by_every_name_on_every_path() {
    let env = env_on(&servers().full, "");
    seed(&env, 3);
    let boss_id = eval(&env, r#"connect().get_user("boss").id"#);
    let boss_id = boss_id.as_str().unwrap();
    for target in ["boss", "BOSS", "boss@example.com", "Boss@Example.COM", "ext-boss", boss_id] {
        for verb in ["suspend", "demote", "delete_user"] {
            run(&env, &["--yes", "eval", &format!(r#"connect().{verb}("{target}")"#)]).code(1).stderr_has("protected");
        }
        run(&env, &["--yes", "eval", &format!(r#"connect().remove_from_group("{target}", "admins")"#)])
            .code(1)
            .stderr_has("protected");
    }
    // The token's configured identity is guarded too.
    run(&env, &["--yes", "eval", r#"connect().suspend("root@example.com")"#]).code(1).stderr_has("token belongs to");
    let bulk = eval(
        &env,
        &format!(
            r#"connect().suspend_all(["boss@example.com", "{boss_id}", "u0001"], #{{reason: "x"}}).map(|r| r.status)"#
        ),
    );
    assert_eq!(bulk, json!(["skipped", "skipped", "ok"]));
    assert_eq!(eval(&env, r#"connect().get_user("boss").suspended"#), false);
}

/// Several hundred users in one job, through /Bulk and without it: one intent and one outcome per user, undone
/// whole by `undo`.
#[test]
fn a_bulk_job_of_hundreds_with_and_without_the_bulk_endpoint() {
    for (label, base, extra) in [
        ("/Bulk", servers().full.as_str(), ""),
        ("fan-out", servers().full.as_str(), "bulk = false\n"),
        ("PUT, no ETags", servers().minimal.as_str(), ""),
    ] {
        let env = env_on(base, extra);
        seed(&env, 300);
        let n = 300;
        let statuses = eval(
            &env,
            &format!(
                r#"let ids = []; for i in 0..{n} {{ ids.push(`u${{if i < 10 {{ "000" }} else if i < 100 {{ "00" }} else {{ "0" }}}}${{i}}`); }} ids.push("boss"); connect().suspend_all(ids, #{{reason: "offboarding"}}).map(|r| r.status)"#
            ),
        );
        let statuses = statuses.as_array().unwrap_or_else(|| panic!("{label}: {statuses}"));
        assert_eq!(statuses.iter().filter(|s| *s == "ok").count(), n, "{label}: {statuses:?}");
        assert_eq!(statuses.last(), Some(&json!("skipped")), "{label}");
        assert_eq!(eval(&env, "connect().list_users(#{suspended: true}).len()"), json!(n), "{label}");
        let rows = env_rows(&env, "suspend");
        let intents = rows.iter().filter(|r| r["phase"] == "intent").count();
        let outcomes = rows.iter().filter(|r| r["phase"] == "outcome" && r["status"] == "ok").count();
        assert_eq!((intents, outcomes), (n, n), "{label}");
        // A second run finds them all suspended already.
        let again = eval(&env, r#"connect().suspend_all(["u0000", "u0001"], #{reason: "again"}).map(|r| r.status)"#);
        assert_eq!(again, json!(["noop", "noop"]), "{label}");
        let runs = run(&env, &["--format", "json", "runs"]).success();
        let first: Value = serde_json::from_str(&runs.stdout).unwrap();
        let job = first
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["outcomes"].as_str().is_some_and(|o| o.contains(&format!("ok {n}"))))
            .unwrap_or_else(|| panic!("{label}: {first}"));
        let job = job["run"].to_string();
        run(&env, &["--yes", "undo", &job]).success();
        assert_eq!(eval(&env, "connect().list_users(#{suspended: true}).len()"), json!(0), "{label}: undo");
        run(&env, &["audit", "verify"]).success();
    }
}

/// A change to a user made by someone else after steward read it is refused by the server (If-Match), not
/// overwritten; steward says what happened.
#[test]
fn a_concurrent_change_is_a_conflict_not_a_lost_update() {
    let env = env_on(&servers().full, "bulk = false\n");
    seed(&env, 2);
    // Over max_changes, the job asks at the terminal after it read its targets (their versions). While it waits,
    // another client changes u0001; the change that follows is refused, because the version steward read is gone.
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&config.replace("max_changes = 100000", "max_changes = 0"));
    env.write(
        "job.rhai",
        r#"for r in connect().suspend_all(["u0001"], #{reason: "left"}) { print(`${r.status}: ${r.error}`) }"#,
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_steward"));
    env.configure(&mut cmd);
    cmd.env("SCIM_TOKEN", &servers().token).args(["run", "job.rhai"]);
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).expect("steward starts on a pty");
    p.exp_string("Go ahead? [y/N]").expect("the job asks");
    eval(
        &env,
        r#"let h = connect(); let u = h.get_user("u0001");
           h.api("PATCH", `Users/${u.id}`, #{schemas: ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], Operations: [#{op: "replace", path: "name.formatted", value: "changed elsewhere"}]})"#,
    );
    p.send_line("y").unwrap();
    let out = p.exp_eof().expect("the job ends");
    assert!(out.contains("failed: ") && out.contains("changed on the server after steward read it"), "{out}");
    assert_eq!(eval(&env, r#"connect().get_user("u0001").suspended"#), false, "the other client's change stands");
    assert_eq!(eval(&env, r#"connect().get_user("u0001").name"#), "changed elsewhere");
    // Read again, the change goes through.
    eval(&env, r#"connect().suspend("u0001", #{reason: "left"})"#);
    assert_eq!(eval(&env, r#"connect().get_user("u0001").suspended"#), true);
}

#[test]
fn a_server_that_announces_little_is_spoken_to_in_what_it_has() {
    let env = env_on(&servers().minimal, "");
    seed(&env, 3);
    eval(&env, r#"let s = connect(); s.suspend("u0001"); s.promote("u0002")"#);
    assert_eq!(eval(&env, r#"connect().get_user("u0001").suspended"#), true);
    assert_eq!(eval(&env, r#"connect().get_user("u0002").admin"#), true);
    eval(&env, r#"connect().demote("u0002")"#);
    assert_eq!(eval(&env, r#"connect().get_user("u0002").admin"#), false);
    // No /Me here either: whoami says what to configure when the profile names no identity.
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.scim]\nkind = \"scim\"\nurl = \"{}/{}\"\ntoken_env = \"SCIM_TOKEN\"\n",
        servers().minimal,
        tenant("n")
    ));
    run(&env, &["eval", r#"connect("scim").whoami()"#]).code(1).stderr_has("identity");
    // `profiles test` still tries such a token (a provisioning token is nobody's): by a read it covers.
    let tested = run(&env, &["--format", "json", "profiles", "test", "scim"]).success();
    assert!(tested.stdout.contains("ok: the token can read scim's users"), "{}", tested.report());
    seed(&env, 1);
    run(&env, &["eval", r#"connect("scim").promote("u0000")"#]).code(1).stderr_has("admin_group");
}

#[test]
fn offboard_reaches_people_on_a_scim_profile_by_email() {
    let env = env_on(&servers().full, "");
    seed(&env, 3);
    let script = crate::util::repo().join("scripts/offboard.rhai");
    run(
        &env,
        &[
            "--yes",
            "run",
            script.to_str().unwrap(),
            "--arg",
            "emails=U0001@example.com,boss@example.com,ghost@example.com",
            "--arg",
            "reason=left the company",
            "--arg",
            "out=off.csv",
        ],
    )
    .code(3);
    let csv = std::fs::read_to_string(env.run_file("off.csv")).unwrap();
    assert!(csv.contains("U0001@example.com,scim,u0001,email U0001@example.com,done"), "{csv}");
    assert!(csv.contains("boss@example.com,scim,,email boss@example.com,protected"), "{csv}");
    assert!(csv.contains("ghost@example.com,scim,,,no account"), "{csv}");
    assert_eq!(eval(&env, r#"connect().get_user("u0001").suspended"#), true);
    assert_eq!(eval(&env, r#"connect().get_user("boss").suspended"#), false);
}

/// Names that try to widen the lookup: a filter's quotes, `or`, a path that climbs. None finds or changes anyone.
#[test]
fn a_crafted_name_finds_no_one_and_changes_nothing() {
    let env = env_on(&servers().full, "");
    seed(&env, 2);
    for name in [r#"x\" or userName pr or userName eq \"y"#, "..", "u0001 or 1 eq 1", "u0001/../boss"] {
        let r = run(&env, &["--yes", "eval", &format!(r#"connect().suspend("{name}", #{{reason: "x"}})"#)]).code(1);
        assert!(r.stderr.contains("no user") || r.stderr.contains("not a user name"), "{name}: {}", r.stderr);
    }
    assert_eq!(eval(&env, "connect().list_users(#{suspended: true}).len()"), 0);
}

/// An admin in two groups is demoted (the admin group), deactivated and taken out of every other group, on both
/// the full server and the one announcing no PATCH; undo gives the admin right and the activity back.
#[test]
fn deprovisioning_deactivates_and_takes_the_leaver_out_of_every_group() {
    for base in [&servers().full, &servers().minimal] {
        let env = env_on(base, "");
        seed(&env, 3);
        for g in ["eng", "oncall"] {
            eval(
                &env,
                &format!(
                    r#"connect().api("POST", "Groups", #{{schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"], displayName: "{g}"}})"#
                ),
            );
        }
        eval(
            &env,
            r#"let s = connect(); s.add_to_group("u0001", "eng"); s.add_to_group("u0001", "oncall"); s.add_to_group("u0002", "eng"); s.promote("u0001")"#,
        );
        let out = eval(&env, r#"connect().deprovision("u0001@example.com", #{reason: "left"})"#);
        assert_eq!(out["status"], "done", "{base}: {out:#}");
        let steps: Vec<(&str, &str)> = out["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["op"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            steps,
            [("demote", "ok"), ("suspend", "ok"), ("remove_from_group", "ok"), ("remove_from_group", "ok")],
            "{base}"
        );
        assert_eq!(out["before"]["holdings"].as_array().unwrap().len(), 2, "admins is demote's, not a holding");
        assert_eq!(out["after"]["holdings"].as_array().unwrap().len(), 0);
        assert_eq!(
            (out["after"]["user"]["admin"].clone(), out["after"]["user"]["suspended"].clone()),
            (json!(false), json!(true))
        );
        let groups = eval(&env, "connect().list_groups().map(|g| `${g.name}:${g.members}`)");
        assert!(
            groups.as_array().unwrap().contains(&json!("eng:1"))
                && groups.as_array().unwrap().contains(&json!("oncall:0")),
            "{groups}"
        );

        let job = env_rows(&env, "deprovision").iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap().to_string();
        let undo = run(&env, &["--yes", "undo", &job]).success();
        assert!(undo.stderr.contains("add_to_group on"), "the memberships are part of the plan: {}", undo.report());
        assert!(!undo.stderr.contains("cannot be restored"), "{}", undo.report());
        let back = eval(&env, r#"connect().get_user("u0001")"#);
        assert_eq!((back["admin"].clone(), back["suspended"].clone()), (json!(true), json!(false)), "{base}");
        let groups = eval(&env, "connect().list_groups().map(|g| `${g.name}:${g.members}`)");
        let groups = groups.as_array().unwrap();
        assert!(
            groups.contains(&json!("eng:2")) && groups.contains(&json!("oncall:1")),
            "{base}: {groups:?}\n{}",
            undo.report()
        );
    }
}

/// Resolve, then decide, on a real SCIM server: it compares userNames as Unicode (`jose\u0301` finds `josé`),
/// so steward decides on the account it answered with. Found attacking: the decomposed spelling suspended,
/// demoted and bulk-suspended a protected `josé`; a protected entry written as an email protected whoever had
/// that *userName*, leaving the person whose email it is exposed by their login.
#[test]
fn a_protected_account_is_reached_by_any_spelling_the_server_answers_to_and_refused() {
    let env = env_on(&servers().full, "");
    seed(&env, 2);
    let scim_user = |name: &str, email: &str| {
        format!(
            r#"#{{schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"], userName: "{name}", active: true, emails: [#{{value: "{email}", primary: true}}]}}"#
        )
    };
    eval(&env, &format!(r#"connect().api("POST", "Users", {})"#, scim_user("josé", "jose@example.com")));
    eval(&env, &format!(r#"connect().api("POST", "Users", {})"#, scim_user("kate", "kate@example.com")));
    // A userName that is another person's email: the name names two accounts.
    eval(&env, &format!(r#"connect().api("POST", "Users", {})"#, scim_user("u0000@example.com", "other@example.com")));
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(
        &config.replace("protected = [\"boss\"]", "protected = [\"josé\", \"boss@example.com\", \"kate\"]"),
    );
    let changed = || eval(&env, r#"connect().list_users().filter(|u| u.suspended || u.admin).map(|u| u.login)"#);
    let before = changed();
    for name in
        ["josé", "jose\u{301}", "JOSÉ", " josé ", "boss", "BOSS", "boss@example.com", "kate", "KATE", "\u{212A}ate"]
    {
        for expr in
            [format!(r#"connect().suspend("{name}", #{{reason: "x"}})"#), format!(r#"connect().demote("{name}")"#)]
        {
            let r = run(&env, &["--yes", "eval", &expr]);
            assert_eq!(r.status, Some(1), "{expr}: {}", r.report());
            let reached = r.stderr.contains("protected");
            assert!(reached || r.stderr.contains("not_found"), "{expr}: {}", r.report());
            // The spellings the server itself answers to are the protected accounts, and are refused as such.
            if ["josé", "jose\u{301}", "boss", "boss@example.com", "kate"].contains(&name) {
                assert!(reached, "{expr}: {}", r.report());
            }
        }
    }
    let bulk = run(
        &env,
        &["--yes", "--format", "json", "eval", "connect().suspend_all([\"jose\u{301}\", \"boss\", \"kate\", \"josé\"], #{reason: \"x\"}).map(|r| r.status)"],
    )
    .success();
    assert_eq!(
        serde_json::from_str::<Value>(&bulk.stdout).unwrap(),
        json!(["skipped", "skipped", "skipped", "skipped"])
    );
    // Generated spellings of them too (case, fullwidth, combining marks, spaces, `@`s): nothing changes.
    let spellings: Vec<String> =
        ["josé", "kate", "boss"].iter().flat_map(|n| crate::identity::variants(n, 15)).collect();
    let list = serde_json::to_string(&spellings).unwrap();
    let script = format!(
        r#"let h = connect(); for n in {list} {{ try {{ h.suspend(n, #{{reason: "p"}}); }} catch {{}} }} h.suspend_all({list}, #{{reason: "p"}}).filter(|r| r.status == "ok").len()"#
    );
    let sent = run(&env, &["--yes", "--format", "json", "eval", &script]);
    assert!(sent.stdout.trim() == "0", "{}", sent.report());
    assert_eq!(changed(), before, "nothing was suspended or demoted");
    // One name, two accounts (one's userName, another's email): refused naming both, on both paths.
    run(&env, &["--yes", "eval", r#"connect().suspend("u0000@example.com", #{reason: "x"})"#])
        .code(1)
        .stderr_has("names more than one account")
        .stderr_has("u0000 (");
    // A protected entry that names two accounts stops guarded work on the profile, rather than guess.
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    env.write_config(&config.replace("\"kate\"]", "\"u0000@example.com\"]"));
    run(&env, &["--yes", "eval", r#"connect().suspend("u0001", #{reason: "x"})"#])
        .code(1)
        .stderr_has("protected entry \"u0000@example.com\"")
        .stderr_has("more than one account");
    assert_eq!(changed(), before);
}

/// Creates groups on the tenant and puts users in them: `members` is (group, [logins]).
fn groups_with(env: &Env, members: &[(&str, Vec<String>)]) {
    let mut script = String::from("let s = connect();\n");
    for (g, logins) in members {
        if *g != "admins" {
            script.push_str(&format!(
                "s.api(\"POST\", \"Groups\", #{{schemas: [\"urn:ietf:params:scim:schemas:core:2.0:Group\"], displayName: \"{g}\"}});\n"
            ));
        }
        for l in logins {
            script.push_str(&match *g {
                "admins" => format!("s.promote(\"{l}\");\n"),
                _ => format!("s.add_to_group(\"{l}\", \"{g}\");\n"),
            });
        }
    }
    env.write("groups.rhai", &script);
    run(env, &["--yes", "run", "groups.rhai"]).success();
}

/// Found offboarding 48 people: concurrent removals of one job from the same group read the same group version,
/// one won, the rest got 412, and it took 9 runs to finish. Now one run ends every person done, on the server with
/// PATCH (a removal names the member, needing no version) and on the one without (one writer per group, a 412
/// read again and retried).
#[test]
fn one_jobs_removals_from_the_same_groups_never_conflict_with_each_other() {
    for base in [&servers().full, &servers().minimal] {
        let env = env_on(base, "");
        seed(&env, 24);
        let all: Vec<String> = (0..24).map(|i| format!("u{i:04}")).collect();
        groups_with(&env, &[("eng", all.clone()), ("oncall", all[..12].to_vec()), ("admins", all[..6].to_vec())]);
        let script = crate::util::repo().join("scripts/offboard.rhai");
        let people = format!("people={}", all.join(","));
        let r = run(
            &env,
            &[
                "--yes",
                "run",
                script.to_str().unwrap(),
                "--arg",
                &people,
                "--arg",
                "reason=left",
                "--arg",
                "out=off.csv",
            ],
        );
        assert_eq!(r.status, Some(0), "{base}: {}", r.report());
        let csv = std::fs::read_to_string(env.run_file("off.csv")).unwrap();
        assert_eq!(
            csv.lines().filter(|l| l.contains(",done,")).count(),
            24,
            "{base}: every person done in one run:\n{csv}"
        );
        let groups = eval(&env, "connect().list_groups().map(|g| `${g.name}:${g.members}`)");
        for g in ["eng:0", "oncall:0", "admins:0"] {
            assert!(groups.as_array().unwrap().contains(&json!(g)), "{base}: {groups}");
        }
        assert_eq!(eval(&env, "connect().list_users(#{suspended: true}).len()"), json!(24), "{base}");
    }
}

/// Found resuming an offboarding: a person's failed group removals were reported "noop: already done in run N"
/// because another removal of that person had succeeded, so no resume ever finished. A step is now known by the
/// person, the service, the step and the group: killed after the second removal was applied, the resume settles
/// that one and sends the third, once.
#[test]
fn a_resume_sends_exactly_the_group_removals_the_killed_run_did_not_make() {
    let env = env_on(&servers().full, "");
    seed(&env, 2);
    let one = vec!["u0001".to_string()];
    groups_with(&env, &[("eng", one.clone()), ("oncall", one.clone()), ("ops", one)]);
    let script = crate::util::repo().join("scripts/offboard.rhai");
    let script = script.to_str().unwrap();
    let args = ["--yes", "run", script, "--arg", "people=u0001", "--arg", "reason=left", "--arg", "out=off.csv"];
    // The suspension, then the first two removals are applied; killed before the second's outcome is recorded.
    let mut cmd = env.cmd();
    cmd.env("SCIM_TOKEN", &servers().token).env("STEWARD_FAILPOINT", "after_response_before_outcome:3").args(args);
    let killed = Run::of(cmd);
    assert_ne!(killed.status, Some(0), "{}", killed.report());
    let left = eval(&env, "connect().list_groups().filter(|g| g.members > 0).map(|g| g.name)");
    assert_eq!(left.as_array().unwrap().len(), 1, "one group is left: {left}");
    let job = env_rows(&env, "deprovision").iter().filter_map(|r| r["run_id"].as_i64()).max().unwrap().to_string();
    let mut resume = args.to_vec();
    resume.extend(["--resume", &job]);
    run(&env, &resume).success();
    assert_eq!(eval(&env, "connect().list_groups().filter(|g| g.members > 0).len()"), json!(0));
    let csv = std::fs::read_to_string(env.run_file("off.csv")).unwrap();
    assert!(csv.contains("u0001,scim,u0001,login u0001,done"), "{csv}");
    let removals = env_rows(&env, "remove_from_group");
    let sent: Vec<&Value> = removals.iter().filter(|r| r["phase"] == "intent").collect();
    assert_eq!(sent.len(), 3, "each group's removal was sent once: {removals:#?}");
    // The removal whose answer was lost is settled by reading the group: applied (so not sent again).
    assert!(
        removals.iter().any(|r| r["status"] == "ok" && r["error"].as_str().unwrap_or("").contains("had been applied")),
        "{removals:#?}"
    );
}
