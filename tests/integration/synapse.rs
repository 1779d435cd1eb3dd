//! A real Matrix Synapse homeserver (PyPI matrix-synapse, started by `tests/servers/start-synapse.sh`):
//! every verb, a bulk suspension of 200 users, the inactive report, and the errors, with the audit log checked.

use crate::util::{Env, Run};
use serde_json::{json, Value};
use std::sync::OnceLock;

pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) token: String,
}

/// The running server: from `.ci/run` (SYNAPSE_BASE_URL, SYNAPSE_ADMIN_TOKEN) or started here, once.
pub(crate) fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let (Ok(url), Ok(token)) = (std::env::var("SYNAPSE_BASE_URL"), std::env::var("SYNAPSE_ADMIN_TOKEN")) {
            return Server { url, token };
        }
        let script = crate::util::repo().join("tests/servers/start-synapse.sh");
        let out = std::process::Command::new("bash").arg(&script).arg("start").output().expect("bash runs");
        assert!(
            out.status.success(),
            "Synapse did not start. It needs python3 >= 3.10 with venv and pip (it installs matrix-synapse into ~/.cache/steward-tests/synapse-venv);\nrun `bash tests/servers/start-synapse.sh start` to see why.\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |name: &str| {
            text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} in {text}")).to_string()
        };
        Server { url: field("SYNAPSE_BASE_URL"), token: field("SYNAPSE_ADMIN_TOKEN") }
    })
}

/// A homeserver of one test's own (its own data directory and port, the shared virtualenv), for what must not
/// touch the shared server's users: with `users` (space separated) made, stopped and deleted when dropped.
pub(crate) struct Private {
    pub url: String,
    pub token: String,
    home: tempfile::TempDir,
}

impl Private {
    pub(crate) fn start(users: &str) -> Private {
        let home = tempfile::tempdir().expect("tempdir");
        let script = crate::util::repo().join("tests/servers/start-synapse.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .env("SYNAPSE_HOME", home.path())
            .env_remove("SYNAPSE_PORT")
            .env("SYNAPSE_USERS", users)
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "a private Synapse did not start:\n{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |name: &str| {
            let found = text.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}=")));
            found.unwrap_or_else(|| panic!("no {name} in {text}")).to_string()
        };
        Private { url: field("SYNAPSE_BASE_URL"), token: field("SYNAPSE_ADMIN_TOKEN"), home }
    }

    /// A user's record from the admin API.
    pub(crate) fn user(&self, id: &str) -> Value {
        let (url, token) = (format!("{}/_synapse/admin/v2/users/{id}", self.url), self.token.clone());
        crate::util::runtime().block_on(async move {
            let answer = reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("synapse answers");
            answer.json().await.expect("json")
        })
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let script = crate::util::repo().join("tests/servers/start-synapse.sh");
        let _ =
            std::process::Command::new("bash").arg(&script).arg("clean").env("SYNAPSE_HOME", self.home.path()).output();
    }
}

/// Logins unique to one test and one run, so tests share the server without seeing each other's users.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{nanos:x}", std::process::id())
}

fn env() -> Env {
    let s = server();
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"matrix\"\nmax_changes = 100000\n[profiles.matrix]\nkind = \"synapse\"\nurl = \"{}\"\ntoken_env = \"SYNAPSE_TOKEN\"\nconcurrency = 8\nprotected = [\"admin\"]\n",
        s.url
    ));
    env
}

fn run_as(env: &Env, token: &str, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.env("SYNAPSE_TOKEN", token).args(args);
    Run::of(cmd)
}

fn eval(env: &Env, expr: &str) -> Value {
    let r = run_as(env, &server().token, &["--yes", "--format", "json", "eval", expr]).success();
    serde_json::from_str(&r.stdout).unwrap_or(Value::Null)
}

fn audit(env: &Env, op: &str) -> Vec<Value> {
    let r = run_as(env, &server().token, &["--format", "json", "audit", "list", "--all", "--op", op]).success();
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn every_verb_against_a_real_homeserver() {
    let env = env();
    let alice = unique("alice");
    let created = eval(
        &env,
        &format!(
            r#"connect().create_user(#{{login: "{alice}", password: "pw-{alice}-secret", displayname: "Alice", email: "{alice}@example.org"}})"#
        ),
    );
    assert_eq!(created["login"], format!("@{alice}:localhost"));
    assert_eq!(created["http_status"], 201);
    let u = eval(&env, &format!(r#"connect().get_user("{alice}")"#));
    assert_eq!(
        (u["name"].clone(), u["email"].clone(), u["suspended"].clone(), u["admin"].clone()),
        (json!("Alice"), json!(format!("{alice}@example.org")), json!(false), json!(false))
    );
    // creation_ts is seconds in the single GET and milliseconds in lists: both read as the same date.
    let listed = eval(&env, &format!(r#"connect().list_users(#{{q: "{alice}"}})"#));
    assert_eq!(listed[0]["created_at"], u["created_at"], "{listed}");
    assert!(u["created_at"].as_str().unwrap().starts_with("20"));

    eval(&env, &format!(r#"let s = connect(); s.suspend("{alice}"); s.promote("{alice}")"#));
    let u = eval(&env, &format!(r#"connect().get_user("@{alice}:localhost")"#));
    assert_eq!((u["suspended"].clone(), u["admin"].clone()), (json!(true), json!(true)));
    assert_eq!(eval(&env, &format!(r#"connect().list_users(#{{q: "{alice}", suspended: true}}).len()"#)), 1);
    assert_eq!(eval(&env, &format!(r#"connect().list_users(#{{q: "{alice}", admin: true}}).len()"#)), 1);
    eval(&env, &format!(r#"let s = connect(); s.unsuspend("{alice}"); s.demote("{alice}")"#));
    let u = eval(&env, &format!(r#"connect().get_user("{alice}")"#));
    assert_eq!((u["suspended"].clone(), u["admin"].clone()), (json!(false), json!(false)));

    // delete_user deactivates; v2 lists leave the account out, the v3 `deactivated` filter finds it.
    eval(&env, &format!(r#"connect().delete_user("{alice}")"#));
    assert_eq!(eval(&env, &format!(r#"connect().list_users(#{{q: "{alice}"}}).len()"#)), 0);
    assert_eq!(eval(&env, &format!(r#"connect().list_users(#{{q: "{alice}", deactivated: true}}).len()"#)), 1);
    assert_eq!(eval(&env, "connect().whoami().login"), "@admin:localhost");

    // Every change is in the audit log with its outcome; the password is not.
    for op in ["suspend", "unsuspend", "promote", "demote", "delete_user", "create_user"] {
        let rows = audit(&env, op);
        assert!(
            rows.iter().any(|r| r["phase"] == "outcome"
                && r["status"] == "ok"
                && r["target"].as_str().unwrap_or("").contains(&alice)),
            "{op}: {rows:?}"
        );
    }
    let export = run_as(&env, &server().token, &["audit", "export"]).success();
    assert!(!export.stdout.contains(&format!("pw-{alice}-secret")), "a password reached the audit log");
    assert!(!export.stdout.contains(&server().token), "the token reached the audit log");
    run_as(&env, &server().token, &["audit", "verify"]).success();
}

#[test]
fn the_caller_and_protected_accounts_are_refused() {
    let env = env();
    // `admin` is protected and is the token's own account; it answers to its localpart (with or without `@`) and
    // its full id. Other spellings reach nobody here: Synapse looks ids up as written (`@ADMIN:localhost` is no
    // user), `@@admin` is no Matrix id at all, and a user of another server is nobody on this one.
    for (expr, says) in [
        (r#"connect().suspend("@admin:localhost")"#, "protected"),
        (r#"connect().suspend("@admin")"#, "protected"),
        (r#"connect().suspend("ADMIN")"#, "not_found"),
        (r#"connect().suspend("@@admin")"#, "not a Matrix user id"),
        (r#"connect().suspend("@admin:other.example")"#, "not_found"),
        (r#"connect().demote("admin")"#, "protected"),
        (r#"connect().demote("@admin")"#, "protected"),
        (r#"connect().demote("@admin:localhost")"#, "protected"),
        (r#"connect().delete_user("@admin:localhost")"#, "protected"),
        (r#"connect().delete_user("@@admin")"#, "not a Matrix user id"),
    ] {
        run_as(&env, &server().token, &["--yes", "eval", expr]).code(1).stderr_has(says);
    }
    let expr = r#"connect().suspend_all(["@admin:localhost", "admin", "@admin", "@@admin"], #{reason: "x"}).map(|r| r.status)"#;
    let bulk = run_as(&env, &server().token, &["--yes", "--format", "json", "eval", expr]).code(3);
    let bulk: Value = serde_json::from_str(&bulk.stdout).unwrap_or(Value::Null);
    assert_eq!(bulk, serde_json::json!(["skipped", "skipped", "skipped", "failed"]));
    // Generated spellings too (case, fullwidth, combining marks, spaces, `@`s): none reaches the admin.
    let spellings = serde_json::to_string(&crate::identity::variants("admin", 30)).unwrap();
    let script = format!(
        r#"let h = connect(); for n in {spellings} {{ try {{ h.suspend(n, #{{reason: "p"}}); h.demote(n); }} catch {{}} }} h.suspend_all({spellings}, #{{reason: "p"}}).filter(|r| r.status == "ok").len()"#
    );
    let sent = run_as(&env, &server().token, &["--yes", "--format", "json", "eval", &script]);
    assert_eq!(sent.stdout.trim(), "0", "{}", sent.report());
    let admin = eval(&env, r#"connect().get_user("admin")"#);
    assert_eq!(admin["suspended"], false, "{admin}");
    assert_eq!(admin["admin"], true, "{admin}");
}

#[test]
fn activity_reports_sessions_and_last_seen() {
    let env = env();
    let me = eval(&env, r#"connect().activity(#{user: "admin"})"#);
    assert!(me["connections"].as_array().is_some_and(|c| !c.is_empty()), "{me}");
    let never = unique("never");
    eval(&env, &format!(r#"connect().create_user(#{{login: "{never}", password: "pw-long-enough-1"}})"#));
    // whois answers 200 even for nobody: steward says not found.
    run_as(&env, &server().token, &["eval", r#"connect().activity(#{user: "nobody-at-all"})"#])
        .code(1)
        .stderr_has("not_found");
    let inactive = eval(&env, r#"connect().activity(#{since: "2000-01-01", status: "never"}).map(|u| u.login)"#);
    assert!(inactive.as_array().unwrap().contains(&json!(format!("@{never}:localhost"))), "{inactive}");
    // The stock report: nobody here was active before 2000, so the never-seen user is inactive since then.
    let script = crate::util::repo().join("scripts/inactive_report.rhai");
    run_as(
        &env,
        &server().token,
        &["run", script.to_str().unwrap(), "--arg", "since=2000-01-01", "--arg", "out=inactive.csv"],
    )
    .success();
    let csv = std::fs::read_to_string(env.path("inactive.csv")).unwrap();
    assert!(csv.contains(&format!("@{never}:localhost")), "{csv}");
}

#[test]
fn unknown_users_and_non_admin_tokens_get_clear_errors() {
    let env = env();
    run_as(&env, &server().token, &["eval", r#"connect().get_user("ghost-of-nobody")"#])
        .code(1)
        .stderr_has("not_found")
        .stderr_has("no user @ghost-of-nobody:localhost");
    run_as(&env, &server().token, &["eval", r#"connect().suspend("ghost-of-nobody")"#]).code(1).stderr_has("not_found");
    let bob = unique("bob");
    eval(&env, &format!(r#"connect().create_user(#{{login: "{bob}", password: "pw-long-enough-2"}})"#));
    let login =
        eval(&env, &format!(r#"connect().api("POST", "_synapse/admin/v1/users/@{bob}:localhost/login", #{{}})"#));
    let bob_token = login["access_token"].as_str().expect("a token for bob").to_string();
    let r = run_as(&env, &bob_token, &["eval", "connect().list_users()"])
        .code(1)
        .stderr_has("forbidden")
        .stderr_has("server admin");
    assert!(!r.stderr.contains(&bob_token));
    run_as(&env, "syt_wrong_wrong_wrong", &["eval", "connect().list_users()"]).code(1).stderr_has("unauthorized");
}

#[test]
fn a_bulk_suspension_of_200_users() {
    let env = env();
    let prefix = unique("bulk");
    eval(
        &env,
        &format!(
            r#"let s = connect(); for i in 0..200 {{ s.api("PUT", `_synapse/admin/v2/users/@{prefix}${{i}}:localhost`, #{{displayname: "Bulk"}}); }}"#
        ),
    );
    let results = eval(
        &env,
        &format!(
            r#"let ids = []; for i in 0..200 {{ ids.push(`{prefix}${{i}}`); }} connect().suspend_all(ids, #{{reason: "bulk test"}}).map(|r| r.status)"#
        ),
    );
    assert_eq!(results.as_array().unwrap().len(), 200);
    assert!(results.as_array().unwrap().iter().all(|s| s == "ok"), "{results}");
    assert_eq!(eval(&env, &format!(r#"connect().list_users(#{{q: "{prefix}", suspended: true}}).len()"#)), 200);
    // Walked lazily, page by page (`from`/`next_token`), the same 200 in the same order.
    let walked = eval(
        &env,
        &format!(
            r#"let h = connect(); let w = []; for u in h.users(#{{q: "{prefix}", suspended: true}}) {{ w.push(u.id); }}
               w == h.list_users(#{{q: "{prefix}", suspended: true}}).map(|u| u.id) && w.len() == 200"#
        ),
    );
    assert_eq!(walked, json!(true));
    let again = eval(
        &env,
        &format!(r#"connect().suspend_all(["{prefix}0", "{prefix}1"], #{{reason: "again"}}).map(|r| r.status)"#),
    );
    assert_eq!(again, json!(["noop", "noop"]));
    let outcomes =
        audit(&env, "suspend").into_iter().filter(|r| r["phase"] == "outcome" && r["status"] == "ok").count();
    assert_eq!(outcomes, 200);
}

/// Logs `user` in with its password through the client API: a new device with its own access token.
fn log_in(user: &str, password: &str, device: &str) -> String {
    let url = format!("{}/_matrix/client/v3/login", server().url);
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                      "password": password, "device_id": device, "initial_device_display_name": format!("{device} of {user}")});
    crate::util::runtime().block_on(async {
        let r: Value = reqwest::Client::new().post(url).json(&body).send().await.unwrap().json().await.unwrap();
        r["access_token"].as_str().unwrap_or_else(|| panic!("login failed: {r}")).to_string()
    })
}

fn whoami_status(token: &str) -> u16 {
    let url = format!("{}/_matrix/client/v3/account/whoami", server().url);
    crate::util::runtime()
        .block_on(async { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().status().as_u16() })
}

#[test]
fn deprovisioning_logs_every_device_out_and_deactivates_when_asked() {
    let env = env();
    let carol = unique("carol");
    let password = format!("pw-{carol}-long-enough");
    eval(&env, &format!(r#"connect().create_user(#{{login: "{carol}", password: "{password}"}})"#));
    let tokens: Vec<String> = ["LAPTOP", "PHONE"].iter().map(|d| log_in(&carol, &password, d)).collect();
    assert!(tokens.iter().all(|t| whoami_status(t) == 200));
    let sessions = eval(&env, &format!(r#"connect().list_sessions("{carol}").map(|d| d.device_id)"#));
    assert_eq!(sessions.as_array().map(Vec::len), Some(2), "{sessions}");

    // A dry run plans it all and sends nothing.
    let plan = eval(
        &env,
        &format!(r#"connect().deprovision("{carol}", #{{reason: "left", deactivate: true, dry_run: true}})"#),
    );
    let steps: Vec<&str> = plan["steps"].as_array().unwrap().iter().map(|s| s["op"].as_str().unwrap()).collect();
    assert_eq!(steps, ["suspend", "delete_session", "delete_session", "delete_user"], "{plan:#}");
    assert!(tokens.iter().all(|t| whoami_status(t) == 200), "the dry run logged nobody out");

    let done = eval(&env, &format!(r#"connect().deprovision("{carol}", #{{reason: "left", deactivate: true}})"#));
    assert_eq!(done["status"], "done", "{done:#}");
    assert_eq!(done["verified"], true);
    assert_eq!(done["before"]["holdings"].as_array().unwrap().len(), 2);
    let titles: Vec<&str> =
        done["before"]["holdings"].as_array().unwrap().iter().map(|h| h["title"].as_str().unwrap()).collect();
    assert!(titles.contains(&format!("LAPTOP of {carol}").as_str()), "{titles:?}");
    assert_eq!(done["after"]["holdings"].as_array().unwrap().len(), 0);
    assert_eq!(done["after"]["user"]["deactivated"], true);
    assert!(done["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok" && s["audit_seq"].is_i64()));
    for t in &tokens {
        assert_eq!(whoami_status(t), 401, "a device's token still works after deprovisioning");
    }
    // A session deletion names its owner, and the guard reads it: the protected admin's devices stay put, by
    // either name.
    for owner in ["admin", "@admin:localhost"] {
        let r = run_as(
            &env,
            &server().token,
            &["--yes", "eval", &format!(r#"connect().delete_session("{owner}", "ANY")"#)],
        );
        assert!(r.status == Some(1) && r.stderr.contains("protected"), "{}", r.report());
    }
    // Each session's deletion is in the log under the device, naming its owner; no token is.
    let rows = audit(&env, "delete_session");
    assert!(
        rows.iter().any(|r| r["target"] == "LAPTOP" && r["params"].as_str().unwrap_or("").contains(&carol)),
        "{rows:?}"
    );
    let export = run_as(&env, &server().token, &["audit", "export"]).success().stdout;
    assert!(tokens.iter().all(|t| !export.contains(t.as_str())));
}

/// A policy plans over the live homeserver's users, read a page at a time straight into the plan: a user made a
/// moment ago is there, in its grace as a new account, every user is counted, and planning changes nothing.
#[test]
fn a_policy_plans_over_the_homeservers_users_a_page_at_a_time() {
    let env = env();
    let alice = unique("planned");
    eval(&env, &format!(r#"connect().create_user(#{{login: "{alice}", password: "pw-{alice}-secret"}})"#));
    env.write(
        "p.toml",
        "profiles = [\"matrix\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 30\n[guard]\nmax_share = 1.0\nmin_admins = 0\n",
    );
    let plan = run_as(&env, &server().token, &["--format", "json", "policy", "plan", "p.toml"]).success();
    let spared = format!(
        "left alone: @{alice}:localhost on matrix: never active, made 0 days ago (grace for new accounts: 30 days)"
    );
    assert!(plan.stderr.contains(&spared), "{spared}\n{}", plan.report());
    let counted = plan.stderr.lines().find_map(|l| l.strip_prefix("matrix: ")).unwrap_or_default();
    let accounts: usize = counted.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let listed = eval(&env, r#"connect().list_users().len()"#).as_u64().unwrap_or(0) as usize;
    // Other tests add users to the shared server meanwhile: at least the users listed a moment before.
    assert!(accounts >= 2 && listed >= accounts, "{accounts} planned, {listed} listed\n{}", plan.report());
    assert!(audit(&env, "suspend").is_empty() && audit(&env, "deactivate_user").is_empty());
}

/// One request to the shared homeserver's client API as its admin; the JSON answer.
pub(crate) fn client_api(method: reqwest::Method, path: &str, body: Value) -> Value {
    let s = server();
    let (url, token) = (format!("{}/_matrix/client/v3/{path}", s.url), s.token.clone());
    crate::util::runtime().block_on(async move {
        let req = reqwest::Client::new().request(method, url).bearer_auth(token).json(&body);
        req.send().await.expect("synapse answers").json().await.expect("json")
    })
}

/// The room's joined members, from the admin API.
fn room_members(room: &str) -> Vec<String> {
    let s = server();
    let room: String = url::form_urlencoded::byte_serialize(room.as_bytes()).collect();
    let (url, token) = (format!("{}/_synapse/admin/v1/rooms/{room}/members", s.url), s.token.clone());
    let body: Value = crate::util::runtime().block_on(async move {
        reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("answers").json().await.expect("json")
    });
    body["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_string)).collect()
}

/// Rooms are Synapse's groups: a room the admin made is listed; a user is joined to it and kicked from it by the
/// room's id, alias or name, each read back from the room's members and on record; a second room of the same
/// name makes the name ambiguous (refused, naming both); the protected admin is never removed.
#[test]
fn rooms_are_groups_a_user_joins_and_leaves_by_id_alias_or_name() {
    let env = env();
    let alice = unique("roomy");
    let alice_id = format!("@{alice}:localhost");
    eval(&env, &format!(r#"connect().create_user(#{{login: "{alice}", password: "pw-{alice}-secret"}})"#));
    let name = unique("ops-room");
    let made = client_api(reqwest::Method::POST, "createRoom", json!({"name": name, "room_alias_name": name}));
    let room = made["room_id"].as_str().expect("a room").to_string();
    let alias = format!("#{name}:localhost");
    let rooms = eval(&env, "connect().list_groups()");
    let listed = rooms.as_array().unwrap().iter().find(|r| r["id"] == room.as_str()).cloned();
    assert_eq!(listed.as_ref().map(|r| r["name"].clone()), Some(json!(name)), "{rooms}");
    for (add, by) in [(true, room.as_str()), (false, alias.as_str()), (true, name.as_str())] {
        let verb = if add { "add_to_group" } else { "remove_from_group" };
        let done = eval(&env, &format!(r#"connect().{verb}("{alice}", "{by}")"#));
        assert_eq!(done["group"], room.as_str(), "{verb} by {by}: {done}");
        assert_eq!(room_members(&room).contains(&alice_id), add, "{verb} by {by}");
    }
    let members = eval(&env, &format!(r#"connect().members("{alias}").map(|m| m.id)"#));
    assert!(members.as_array().unwrap().contains(&json!(alice_id)), "{members}");
    assert_eq!(members.as_array().unwrap().len(), room_members(&room).len(), "{members}");
    // Already joined: read first, a noop, nothing sent.
    let again = eval(&env, &format!(r#"connect().add_to_group("{alice}", "{alias}")"#));
    assert_eq!(again["noop"], true, "{again}");
    let adds = audit(&env, "add_to_group");
    assert_eq!(adds.iter().filter(|r| r["phase"] == "outcome" && r["status"] == "ok").count(), 2);
    assert_eq!(adds.iter().filter(|r| r["phase"] == "outcome" && r["status"] == "noop").count(), 1);
    // Every membership is recorded by the room's id, whatever named it, and undo takes the last join back.
    let last = adds.iter().rev().find(|r| r["phase"] == "outcome" && r["status"] == "ok").unwrap();
    let params: Value = serde_json::from_str(last["params"].as_str().unwrap()).unwrap();
    assert_eq!((params["group"].as_str(), params["group_named"].as_str()), (Some(room.as_str()), Some(name.as_str())));
    run_as(&env, &server().token, &["--yes", "undo", &last["run_id"].to_string()]).success();
    assert!(!room_members(&room).contains(&alice_id), "undo kicked her again");
    eval(&env, &format!(r#"connect().add_to_group("{alice}", "{room}")"#));
    // Two rooms of one name: the name no longer says which.
    client_api(reqwest::Method::POST, "createRoom", json!({"name": name}));
    let r = run_as(
        &env,
        &server().token,
        &["--yes", "eval", &format!(r#"connect().remove_from_group("{alice}", "{name}")"#)],
    );
    r.code(1).stderr_has(&format!("2 rooms are named {name:?}"));
    assert!(room_members(&room).contains(&alice_id), "nothing was removed");
    let r = run_as(
        &env,
        &server().token,
        &["--yes", "eval", &format!(r#"connect().remove_from_group("admin", "{room}")"#)],
    );
    r.code(1).stderr_has("protected");
    assert!(room_members(&room).contains(&"@admin:localhost".to_string()));
}
