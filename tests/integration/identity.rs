//! Resolve, then decide: the attacks that got past rules comparing names, each a test. A change is decided on
//! the account the server says the request will reach, by its stable id: another spelling of a protected
//! account reaches it and is refused; a name no account can have is refused before anything is sent; a server
//! that answers a lookup with another account is refused and named; two jobs naming the same accounts by
//! different names change each account once.

use crate::hostile::{json, Hostile, Reply, Seen};
use crate::util::{Env, Run, Sandbox};
use serde_json::{json as value, Value};

/// Requests that change something on a sandbox (every read there is a GET).
fn changes(sb: &Sandbox) -> u64 {
    ["POST", "PUT", "PATCH", "DELETE"].iter().map(|m| sb.count_method(m)).sum()
}

fn travis_env(sb: &Sandbox, protected: &str) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"t\"\nmax_changes = 1000\n[profiles.t]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\ntoken_env = \"TRAVIS_SUSPEND\"\nprotected = [{protected}]\n",
        sb.running.travis_url(),
        steward_sandbox::travis_tokens::ORG_ID
    ));
    env
}

fn travis_run(env: &Env, args: &[&str]) -> Run {
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    let mut cmd = env.cmd();
    cmd.env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN))
        .env("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN))
        .args(args);
    Run::of(cmd)
}

/// Travis takes numbers and compares them as numbers: `01`, `001` and the VCS id `0100001` (with its VCS
/// type) are all user 1. Found attacking: each of them, and `+1`, suspended protected users.
#[test]
fn travis_ids_in_any_form_reach_the_account_they_name() {
    let sb = Sandbox::start(10);
    let env = travis_env(&sb, "\"traviuser0001\", \"2\"");
    let singles = [
        (r#"connect().suspend("01", #{reason: "x"})"#, "protected"),
        (r#"connect().suspend("001", #{reason: "x"})"#, "protected"),
        (r#"connect().suspend("0002", #{reason: "x"})"#, "protected"),
        (r#"connect().suspend("TRAVIUSER0001", #{reason: "x"})"#, "protected"),
        (r#"connect().suspend("0100001", #{reason: "x", vcs_type: "GithubUser"})"#, "protected"),
        (r#"connect().suspend("100002", #{reason: "x", vcs_type: "GithubUser"})"#, "protected"),
        (r#"connect().suspend("+1", #{reason: "x"})"#, "not a Travis user id"),
        (r#"connect().suspend("-1", #{reason: "x"})"#, "not a Travis user id"),
        (r#"connect().suspend(" 1 0", #{reason: "x"})"#, "not a Travis user id"),
    ];
    for (expr, says) in singles {
        travis_run(&env, &["--yes", "eval", expr]).code(1).stderr_has(says);
    }
    let bulk = travis_run(
        &env,
        &[
            "--yes",
            "--format",
            "json",
            "eval",
            r#"connect().suspend_all(["01", "002", "+1", "0000000001"], #{reason: "x"}).map(|r| r.status)"#,
        ],
    )
    .code(3);
    assert_eq!(
        serde_json::from_str::<Value>(&bulk.stdout).unwrap(),
        value!(["skipped", "skipped", "failed", "skipped"])
    );
    // Even reading nothing first (numbers are their own canonical form), the protected stay untouched.
    let blind = travis_run(
        &env,
        &[
            "--yes",
            "--format",
            "json",
            "eval",
            r#"connect().suspend_all(["01", "2", "0100001"], #{reason: "x", precheck: false}).map(|r| r.status)"#,
        ],
    );
    let blind: Value = serde_json::from_str(&blind.code(3).stdout).unwrap();
    assert_eq!(
        blind,
        value!(["skipped", "skipped", "failed"]),
        "0100001 with no vcs_type is user id 100001, not user 1"
    );
    assert_eq!(sb.count("POST /travis/org/89/suspend"), 1, "only the one blind request: {}", sb.stats());
    let state = sb.state();
    let suspended: Vec<&Value> =
        state["travis"]["users"].as_array().unwrap().iter().filter(|u| u["suspended"] == true).collect();
    assert!(suspended.is_empty(), "{suspended:?}");
    // The same number, unprotected, is acted on once however it is spelled.
    let r = travis_run(
        &env,
        &[
            "--yes",
            "--format",
            "json",
            "eval",
            r#"connect().suspend_all(["03", "3", "0003"], #{reason: "x"}).map(|r| r.status)"#,
        ],
    );
    assert_eq!(serde_json::from_str::<Value>(&r.success().stdout).unwrap(), value!(["ok", "skipped", "skipped"]));
}

/// A protected Travis login the activity listing does not show (a member never active) cannot be resolved to
/// its number, so guarded work on the profile stops, rather than protect nobody.
#[test]
fn a_protected_travis_login_the_listing_cannot_show_stops_guarded_work() {
    let sb = Sandbox::start(20);
    // Member 10 was never active: the activity listing leaves them out.
    let env = travis_env(&sb, "\"traviuser0010\"");
    travis_run(&env, &["--yes", "eval", r#"connect().suspend("10", #{reason: "x"})"#])
        .code(1)
        .stderr_has("traviuser0010")
        .stderr_has("could not be resolved");
    assert_eq!(changes(&sb), 0);
}

/// GitHub logins are ASCII: a fullwidth or decomposed spelling is no login, refused before a request.
#[test]
fn ghes_names_no_login_can_have_are_refused_before_anything_is_sent() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    for name in ["ｕｓｅｒ0002", "user0002\u{0301}", "user\u{212A}", "@user0002", "user0002 x", "../user0002"] {
        let r = env.run(&["--yes", "eval", &format!(r#"connect("ghes").suspend("{name}", #{{reason: "x"}})"#)]);
        assert_eq!(r.status, Some(1), "{name}: {}", r.report());
        assert!(r.stderr.contains("invalid") || r.stderr.contains("is not a GitHub login"), "{name}: {}", r.report());
    }
    assert_eq!(changes(&sb), 0, "{}", sb.stats());
}

/// Found attacking: two jobs naming the same 300 users, one by username and one by id, both ran and 288 users
/// were sent the suspension twice (claims and done-sets keyed on names). Now both key on the account's id.
#[test]
fn two_jobs_naming_the_same_accounts_by_different_names_change_each_once() {
    let sb = Sandbox::slow(300, 5);
    let env = Env::new();
    env.write_config(&format!(
        "default_profile = \"tfe\"\nmax_changes = 100000\n[profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\nconcurrency = 8\n",
        sb.running.terraform_url()
    ));
    let token = steward_sandbox::tfe_tokens::ADMIN_TOKEN;
    let mut cmd = env.cmd();
    cmd.env("TFE_TOKEN", token).args(["--format", "json", "eval", "connect().list_users().map(|u| [u.login, u.id])"]);
    let pairs: Vec<(String, String)> = serde_json::from_str(&Run::of(cmd).success().stdout).unwrap();
    let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(l, _)| l.starts_with("tfuser")).collect();
    assert_eq!(pairs.len(), 300);
    let logins: Vec<&str> = pairs.iter().map(|(l, _)| l.as_str()).collect();
    let ids: Vec<&str> = pairs.iter().map(|(_, i)| i.as_str()).collect();
    env.write(
        "by_login.rhai",
        &format!("connect().suspend_all({}, #{{reason: \"x\"}});", serde_json::to_string(&logins).unwrap()),
    );
    env.write(
        "by_id.rhai",
        &format!("connect().suspend_all({}, #{{reason: \"x\"}});", serde_json::to_string(&ids).unwrap()),
    );
    let spawn = |script: &str| {
        let mut cmd = env.cmd();
        cmd.env("TFE_TOKEN", token).args(["--yes", "run", script]);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        cmd.spawn().expect("steward starts")
    };
    // Every 25th user starts suspended: those get nothing; every other gets exactly one suspension.
    let initially = sb.state();
    let was_suspended = |id: &str| {
        initially["terraform"]["users"].as_array().unwrap().iter().any(|u| u["id"] == id && u["is-suspended"] == true)
    };
    let (a, b) = (spawn("by_login.rhai"), spawn("by_id.rhai"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for out in [&a, &b] {
        assert!(matches!(out.status.code(), Some(0) | Some(3)), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let stats = sb.stats();
    let mut twice = Vec::new();
    for (_, id) in &pairs {
        let sent = stats["requests"][format!("POST /api/v2/admin/users/{id}/actions/suspend")].as_u64().unwrap_or(0);
        if sent != u64::from(!was_suspended(id)) {
            twice.push((id.clone(), sent));
        }
    }
    if !twice.is_empty() {
        let id = &twice[0].0;
        let rows: Vec<Value> = env.audit_rows(&["--target", id]);
        panic!(
            "accounts not sent exactly one suspension: {twice:?}\n{rows:#?}\n{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        );
    }
    env.run(&["audit", "verify"]).success();
}

/// Deprovisioning by an email two accounts share picked the last one listed: a colleague who was staying lost
/// their keys. Now that person is refused on that service, naming both accounts, and nothing is sent.
#[test]
fn deprovisioning_by_an_email_two_accounts_share_refuses_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("users.json");
    std::fs::write(
        &seed,
        value!([
            {"login": "ann", "email": "team@example.com"},
            {"login": "ann-staying", "email": "team@example.com"},
            {"login": "bob", "email": "bob@example.com"},
        ])
        .to_string(),
    )
    .unwrap();
    let sb = Sandbox::with(steward_sandbox::Options { users: 0, seed: Some(seed), ..Default::default() });
    let env = Env::with_sandbox(&sb);
    let r = env
        .run(&[
            "--yes",
            "--format",
            "json",
            "eval",
            r#"connect("ghes").deprovision_all(["team@example.com", "bob@example.com"], #{reason: "left"}).map(|p| [p.person, p.status, p.problems])"#,
        ]);
    let people: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    assert_eq!(people[0][1], "refused", "{}", r.report());
    let problem = people[0][2].to_string();
    assert!(
        problem.contains("more than one account") && problem.contains("ann") && problem.contains("ann-staying"),
        "{problem}"
    );
    assert_eq!(people[1][1], "done", "{}", r.report());
    assert_eq!(sb.count("PUT /api/v3/users/ann/suspended") + sb.count("PUT /api/v3/users/ann-staying/suspended"), 0);
    assert_eq!(sb.count("PUT /api/v3/users/bob/suspended"), 1);
}

/// A lying server: it answers a lookup for `bob` with the protected admin's record. steward had the admin's
/// id in its guard and compared only the string `bob`; now the answer must be the account asked for.
struct Liar {
    kind: &'static str,
    /// The profile's URL path under the server.
    base: &'static str,
    extra: &'static str,
    /// The target the script names (the liar answers for it with the admin).
    bob: &'static str,
    protected: &'static str,
    answer: fn(&str) -> Reply,
    /// What steward says of the lie (Terraform matches a search's answers to the name itself: no such user).
    says: &'static str,
}

/// A request line as the server read it, percent-decoded (and `+` a space, as in a query).
fn decoded(seen: &Seen) -> String {
    let bytes = seen.line.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn not_found() -> Reply {
    Reply::Json { status: 404, headers: Vec::new(), body: r#"{"message": "Not Found"}"#.into() }
}

const TL_ADMIN: &str = "5e1d0000-0000-4000-8000-0000000000aa";
const TL_BOB: &str = "5e1d0000-0000-4000-8000-0000000000bb";

fn liars() -> Vec<Liar> {
    vec![
        Liar {
            kind: "github",
            base: "/api/v3",
            extra: "",
            bob: "bob",
            protected: "admin",
            says: "the server answered a lookup for bob with admin",
            answer: |line| {
                let admin = r#"{"login": "admin", "id": 1, "site_admin": true, "suspended_at": null}"#;
                match line {
                    l if l.starts_with("GET /api/v3/user ") || l == "GET /api/v3/user" => {
                        json(r#"{"login": "root", "id": 9, "site_admin": true, "suspended_at": null}"#)
                    }
                    l if l.starts_with("GET /api/v3/users/admin") || l.starts_with("GET /api/v3/users/bob") => {
                        json(admin)
                    }
                    _ => not_found(),
                }
            },
        },
        Liar {
            kind: "scim",
            base: "/scim/v2",
            extra: "identity = \"root\"\nadmin_group = \"admins\"\n",
            bob: "bob",
            protected: "admin",
            says: "the server answered a lookup for bob with admin",
            answer: |line| {
                let user = |name: &str, id: &str| {
                    format!(
                        r#"{{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 1, "Resources": [{{"id": "{id}", "userName": "{name}", "active": true}}]}}"#
                    )
                };
                let none = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}"#;
                match line {
                    l if l.contains("ServiceProviderConfig") => json(
                        r#"{"patch": {"supported": true}, "bulk": {"supported": false}, "filter": {"supported": true, "maxResults": 100}, "etag": {"supported": false}, "changePassword": {"supported": false}, "sort": {"supported": false}}"#,
                    ),
                    l if l.contains("/Me") => not_found(),
                    l if l.contains("/Groups") => json(
                        r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 1, "Resources": [{"id": "g1", "displayName": "admins", "members": []}]}"#,
                    ),
                    l if l.contains("userName eq \"root\"") => json(user("root", "r9")),
                    l if l.contains("userName eq \"admin\"") || l.contains("userName eq \"bob\"") => {
                        json(user("admin", "a1"))
                    }
                    l if l.contains("/Users") => json(none),
                    _ => not_found(),
                }
            },
        },
        Liar {
            kind: "synapse",
            base: "",
            extra: "",
            bob: "bob",
            protected: "admin",
            says: "the server answered a lookup for bob with @admin:hs",
            answer: |line| match line {
                l if l.contains("/account/whoami") => json(r#"{"user_id": "@root:hs"}"#),
                l if l.contains("/users/@root:hs") => {
                    json(r#"{"name": "@root:hs", "admin": true, "suspended": false}"#)
                }
                l if l.contains("/users/@admin:hs") || l.contains("/users/@bob:hs") => {
                    json(r#"{"name": "@admin:hs", "admin": true, "suspended": false}"#)
                }
                _ => not_found(),
            },
        },
        Liar {
            kind: "transactionlink",
            base: "",
            extra: "",
            bob: TL_BOB,
            protected: TL_ADMIN,
            says: "the server answered a lookup for 5e1d0000-0000-4000-8000-0000000000bb with admin@example.com",
            answer: |line| match line {
                l if l.contains("organizations/roles") => {
                    json(r#"[{"id": "00000000-0000-4000-8000-000000000001", "name": "admin"}]"#)
                }
                l if l.contains(TL_ADMIN) || l.contains(TL_BOB) => json(format!(
                    r#"{{"id": "{TL_ADMIN}", "email": "admin@example.com", "status": "ACTIVE", "roleId": "00000000-0000-4000-8000-000000000001"}}"#
                )),
                _ => not_found(),
            },
        },
        Liar {
            kind: "terraform",
            base: "/api/v2",
            extra: "",
            bob: "bob",
            protected: "admin",
            says: "no user",
            answer: |line| {
                let user = |name: &str| {
                    format!(
                        r#"{{"id": "user-{name}", "type": "users", "attributes": {{"username": "{name}", "email": "{name}@example.com", "is-admin": true, "is-suspended": false}}}}"#
                    )
                };
                let list =
                    |u: String| json(format!(r#"{{"data": [{u}], "meta": {{"pagination": {{"next-page": null}}}}}}"#));
                match line {
                    l if l.contains("account/details") => json(format!(r#"{{"data": {}}}"#, user("root"))),
                    l if l.contains("q=root") => list(user("root")),
                    l if l.contains("q=admin") || l.contains("q=bob") => list(user("admin")),
                    _ => not_found(),
                }
            },
        },
    ]
}

#[test]
fn a_server_that_answers_a_lookup_with_another_account_is_refused_on_every_backend() {
    for liar in liars() {
        let answer = liar.answer;
        let server = Hostile::start(move |seen| answer(&decoded(seen)));
        let env = Env::new();
        env.write_config(&format!(
            "default_profile = \"p\"\nmax_changes = 100\n[profiles.p]\nkind = \"{}\"\nurl = \"http://{}{}\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 5\nprotected = [\"{}\"]\n{}",
            liar.kind, server.addr, liar.base, liar.protected, liar.extra
        ));
        let bob = liar.bob;
        for expr in [
            format!(r#"connect().suspend("{bob}", #{{reason: "x"}})"#),
            format!(r#"connect().demote("{bob}")"#),
            format!(r#"connect().suspend_all(["{bob}"], #{{reason: "x"}}).map(|r| r.error)"#),
        ] {
            let r = env.run(&["--yes", "--format", "json", "eval", &expr]);
            let said = format!("{}{}", r.stdout, r.stderr);
            assert!(said.contains(liar.says), "{}: {expr}: {}", liar.kind, r.report());
        }
        let writes: Vec<String> =
            server.seen().iter().map(|s| s.line.clone()).filter(|l| !l.starts_with("GET ")).collect();
        assert!(writes.is_empty(), "{}: a change reached the lying server: {writes:?}", liar.kind);
    }
}

/// Spellings of `name` a person, a spreadsheet or an attacker might produce: case flipped per letter, spaces
/// around, letters in their fullwidth forms, a Kelvin sign for a k, a combining accent, Matrix-style `@`s, and
/// for numbers leading zeros and a sign. Generated by proptest from a fixed seed, so a failure reproduces.
pub(crate) fn variants(name: &str, count: usize) -> Vec<String> {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let chars: Vec<char> = name.chars().collect();
    let n = chars.len();
    let strategy = (
        proptest::collection::vec(any::<bool>(), n),
        proptest::collection::vec(0u8..8, n),
        0usize..4,
        0usize..4,
        0usize..6,
    );
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    (0..count)
        .map(|_| {
            let (flips, marks, spaces, zeros, prefix) = strategy.new_tree(&mut runner).expect("a value").current();
            let mut out = String::new();
            for (i, c) in chars.iter().enumerate() {
                let c = if flips[i] { c.to_ascii_uppercase() } else { *c };
                match marks[i] {
                    // Fullwidth: U+FF01..U+FF5E mirror ASCII 0x21..0x7E.
                    0 if c.is_ascii_graphic() => out.push(char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c)),
                    1 if c.eq_ignore_ascii_case(&'k') => out.push('\u{212A}'),
                    2 if c.is_ascii_alphabetic() => {
                        out.push(c);
                        out.push('\u{0301}');
                    }
                    _ => out.push(c),
                }
            }
            if name.chars().all(|c| c.is_ascii_digit()) {
                out = format!("{}{out}", "0".repeat(zeros));
            }
            let pad = " ".repeat(spaces);
            let out = match prefix {
                0 => format!("@{out}"),
                1 => format!("@@{out}"),
                2 if name.chars().all(|c| c.is_ascii_digit()) => format!("+{out}"),
                _ => out,
            };
            format!("{pad}{out}{pad}")
        })
        .collect()
}

/// The property: no spelling of a protected account, on any sandbox service, on the single call or the bulk
/// call, changes anything at the server; the spellings that do reach it are refused as protected.
#[test]
fn no_generated_spelling_of_a_protected_account_changes_anything() {
    let sb = Sandbox::start(30);
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    let tfe = steward_sandbox::tfe_tokens::ADMIN_TOKEN;
    let tl = steward_sandbox::transactionlink_tokens::ADMIN_TOKEN;
    // (kind, url, token variable and value, extra keys, the protected entry, the names to vary)
    let services = [
        (
            "github",
            sb.url(),
            ("GHES_TOKEN", crate::util::ADMIN_TOKEN.to_string()),
            String::new(),
            "user0003",
            vec!["user0003", "admin"],
        ),
        (
            "terraform",
            sb.running.terraform_url(),
            ("TFE_TOKEN", tfe.to_string()),
            String::new(),
            "tfuser0003",
            vec!["tfuser0003", "tfuser0003@example.com"],
        ),
        (
            "transactionlink",
            sb.running.transactionlink_url(),
            ("TL_TOKEN", tl.to_string()),
            String::new(),
            "tluser0003@example.com",
            vec!["tluser0003@example.com"],
        ),
        (
            "travis",
            sb.running.travis_url(),
            ("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN)),
            format!(
                "org_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\n",
                steward_sandbox::travis_tokens::ORG_ID
            ),
            "traviuser0003",
            vec!["3", "traviuser0003"],
        ),
    ];
    for (kind, url, (var, token), extra, protected, names) in services {
        let env = Env::new();
        env.write_config(&format!(
            "default_profile = \"p\"\nmax_changes = 1000\n[profiles.p]\nkind = \"{kind}\"\nurl = \"{url}\"\ntoken_env = \"{var}\"\ntimeout = 5\nprotected = [\"{protected}\"]\n{extra}"
        ));
        let mut spellings: Vec<String> = names.iter().flat_map(|n| variants(n, 40)).collect();
        spellings.extend(names.iter().map(|n| n.to_string()));
        let list = serde_json::to_string(&spellings).unwrap();
        // Each spelling alone, then all at once; every outcome is kept for the failure message.
        let script = format!(
            r#"let h = connect(); let out = [];
               for n in {list} {{ try {{ h.suspend(n, #{{reason: "p"}}); out.push([n, "sent"]); }} catch (e) {{ out.push([n, e.kind]); }} }}
               for r in h.suspend_all({list}, #{{reason: "p"}}) {{ out.push([r.target, r.status]); }}
               out"#
        );
        let before = changes(&sb);
        let mut cmd = env.cmd();
        cmd.env(var, &token).env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN));
        cmd.args(["--yes", "--format", "json", "eval", &script]);
        let r = Run::of(cmd);
        let outcomes: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        assert_eq!(
            changes(&sb),
            before,
            "{kind}: a spelling of {protected} changed something: {outcomes}\n{}",
            r.report()
        );
        let refused =
            outcomes.as_array().map_or(0, |a| a.iter().filter(|o| o[1] == "protected" || o[1] == "skipped").count());
        assert!(refused >= 2 * names.len(), "{kind}: the plain names are refused as protected: {outcomes}");
        assert!(!outcomes.to_string().contains("\"sent\""), "{kind}: {outcomes}");
    }
}
