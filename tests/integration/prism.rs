//! Contract test: every GHES request steward makes goes to Prism serving GitHub's own GHES description,
//! and Prism must find nothing wrong with any of them.

use crate::util::{repo, Env};

/// A Prism mock started by `tests/servers/start-prism.sh`; stopped on drop, even when the test fails.
pub struct Prism {
    pub url: String,
    pid: String,
    log: String,
}

impl Prism {
    pub fn start(spec: &str) -> Prism {
        let script = repo().join("tests/servers/start-prism.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(repo().join(spec))
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "Prism did not start. It needs Node.js and npm (it installs @stoplight/prism-cli@5.14.2 into ~/.cache/steward-tests/prism);\n\
             run `bash tests/servers/start-prism.sh start {spec}` to see why.\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("start-prism.sh printed no {name}: {text}"))
                .to_string()
        };
        Prism { url: field("PRISM_URL"), pid: field("PRISM_PID"), log: field("PRISM_LOG") }
    }

    /// Every complaint Prism logged about a request (response problems are the spec's own, see specs/ghes.md).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request_violations(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains("did not pass the validation")
                    || (l.contains("[VALIDATOR] ✖") && !l.contains("Violation: response"))
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
    }
}

#[test]
fn every_ghes_request_passes_githubs_own_description() {
    let prism = Prism::start("tests/servers/ghes-admin.openapi.json");
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.prism]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n",
        prism.url
    ));
    // Prism answers whoami with its example user, octocat; the targets here are other users.
    let script = r#"
        let h = connect("prism");
        let calls = [
            || h.whoami(),
            || h.list_users(),
            || h.get_user("monalisa"),
            || h.create_user(#{login: "monalisa", email: "monalisa@example.com"}),
            || h.create_user(#{login: "hubot"}),
            || h.rename_user("monalisa", "thenewmonalisa"),
            || h.delete_user("monalisa"),
            || h.suspend("monalisa", #{reason: "left the company"}),
            || h.suspend_all(["monalisa"], #{reason: "left the company", precheck: false}),
            || h.unsuspend_all(["monalisa"], #{reason: "back", precheck: false}),
            || h.unsuspend_all(["monalisa"], #{precheck: false}),
            || h.promote_all(["monalisa"], #{precheck: false}),
            || h.demote_all(["monalisa"], #{precheck: false}),
            || h.create_impersonation_token("monalisa", ["repo"]),
            || h.delete_impersonation_token("monalisa"),
            || h.list_keys(),
            || h.delete_key("012345678912345678"),
            || h.api("DELETE", "admin/keys/012345678912345678", ()),
            || h.list_tokens(),
            || h.api("DELETE", "admin/tokens/2", ()),
            || h.rate_limit(),
        ];
        let failures = [];
        for c in calls {
            try { c.call(); } catch (e) { failures.push(e.message); }
        }
        failures
    "#;
    let failures = env.eval_json(script);
    // Prism's static examples put `Link: <https://api.github.com/…>; rel="next"` on every page list. That is
    // another origin than the profile's, so steward refuses to follow it (its token stays home) and says so;
    // the first page's request is validated below.
    // Its static examples also answer a lookup for any user with octocat: to steward that is a server answering
    // for another account than the one asked, so the single suspend (which reads its target first) and the key
    // deletion (which reads the key's owner from the listing) are refused before anything is sent. The same
    // requests are validated through the job that reads nothing first (`precheck: false`) and through `api()`.
    let failures: Vec<String> = serde_json::from_value(failures).expect("failures are strings");
    let ops: Vec<&str> = failures.iter().filter_map(|f| f.split(' ').next()).collect();
    assert_eq!(ops, ["list_users", "suspend", "list_keys", "delete_key", "list_tokens"], "{failures:#?}");
    for f in &failures {
        let lied = f.contains("the server answered a lookup for monalisa with octocat");
        assert!(lied || f.contains("leads to https://api.github.com, not to the profile's"), "{f}");
    }
    let violations = prism.request_violations();
    assert!(violations.is_empty(), "Prism flagged requests:\n{}", violations.join("\n"));
    let log = std::fs::read_to_string(&prism.log).unwrap_or_default();
    assert!(!log.contains("get /resource"), "a link to another origin was followed");
    for path in [
        "/admin/keys",
        "/admin/tokens",
        "/users/monalisa/suspended",
        "/admin/users/monalisa/authorizations",
        "/admin/tokens/2",
        "/rate_limit",
    ] {
        assert!(log.contains(path), "Prism never saw {path}");
    }
}

/// GitHub's whole GHES description (every path), fetched once from npm by `tests/servers/ghes-description.sh`.
fn full_ghes_description() -> String {
    let out = std::process::Command::new("bash")
        .arg(repo().join("tests/servers/ghes-description.sh"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the GHES description could not be fetched (it needs npm):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every request steward makes for organisations and teams, against Prism serving GitHub's whole GHES
/// description: groups listed, members read by role, a group resolved, a membership read, set and removed.
#[test]
fn every_ghes_membership_request_passes_githubs_whole_description() {
    let prism = Prism::start(&full_ghes_description());
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.prism]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\n",
        prism.url
    ));
    // Prism's examples: the organisation `github`, its team `justice-league`, the user octocat (who is also the
    // token's owner, so a removal of them is refused as one of yourself: the DELETE steward would send is
    // checked through `api()`, on the path the membership read and the PUT were built on).
    let script = r#"
        let h = connect("prism");
        let calls = [
            || h.list_groups(),
            || h.members("github"),
            || h.members("github/justice-league"),
            || h.add_to_group("octocat", "github/justice-league", #{role: "member"}),
            || h.add_to_group("octocat", "github/justice-league", #{role: "maintainer"}),
            || h.add_to_group("octocat", "github", #{role: "member"}),
            || h.add_to_group("octocat", "github", #{role: "admin"}),
            || h.api("DELETE", "orgs/github/teams/justice-league/memberships/octocat", ()),
            || h.api("DELETE", "orgs/github/memberships/octocat", ()),
        ];
        let failures = [];
        for c in calls {
            try { c.call(); } catch (e) { failures.push(e.message); }
        }
        failures
    "#;
    let failures: Vec<String> = serde_json::from_value(env.eval_json(script)).expect("failures are strings");
    // The listings' example Link headers lead to api.github.com, which steward will not follow (see above).
    for f in &failures {
        assert!(f.contains("leads to https://api.github.com, not to the profile's"), "{failures:#?}");
    }
    let violations = prism.request_violations();
    assert!(violations.is_empty(), "Prism flagged requests:\n{}", violations.join("\n"));
    let log = prism.log_text();
    for seen in [
        "GET /organizations",
        "GET /orgs/github/teams",
        "GET /orgs/github/members",
        "GET /orgs/github/teams/justice-league/members",
        "GET /orgs/github/teams/justice-league/memberships/octocat",
        "PUT /orgs/github/teams/justice-league/memberships/octocat",
        "PUT /orgs/github/memberships/octocat",
        "DELETE /orgs/github/memberships/octocat",
    ] {
        let (method, path) = seen.split_once(' ').unwrap();
        let said = format!("{} {path}", method.to_lowercase());
        assert!(log.to_lowercase().contains(&said.to_lowercase()), "Prism never saw {seen}");
    }
}
