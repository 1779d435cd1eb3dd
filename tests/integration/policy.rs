//! Policies end to end on the sandbox's GHES (activity from its all-users report): check, plan, apply a recorded
//! plan, guards that halt, the unattended runner, and what a plan spares (scope, exceptions, people's restores,
//! protected accounts, accounts active since the plan).

use crate::util::{run_services, services_env, Env, Run, Sandbox};
use std::collections::BTreeSet;

/// GHES users of a 30-user sandbox idle 90 days or more (or never active) and not suspended already.
pub(crate) fn dormant() -> BTreeSet<String> {
    let idle = |i: usize| steward_sandbox::ghes::days_idle(i).is_none_or(|d| d >= 90);
    let mut all: BTreeSet<String> =
        (1..=30).filter(|i| idle(*i) && i % 25 != 0).map(|i| format!("user{i:04}")).collect();
    all.insert("ldap-user".into());
    all
}

pub(crate) const POLICY: &str = "profiles = [\"ghes\"]\nunattended = true\n\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n\n[scope]\nexclude = [\"USER0014\", \"ldap-user\"]\n\n[guard]\nmax_share = 0.6\n\n[[exception]]\naccount = \"user0016\"\nuntil = \"2099-01-01\"\nreason = \"sabbatical\"\n";

/// The digest prefix `policy plan` printed.
fn digest_of(run: &Run) -> String {
    let line =
        run.stderr.lines().find(|l| l.starts_with("plan ")).unwrap_or_else(|| panic!("no plan line\n{}", run.report()));
    line.split_whitespace().nth(1).unwrap_or_default().to_string()
}

fn planned(run: &Run) -> BTreeSet<String> {
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()));
    rows.as_array().unwrap().iter().map(|r| r["account"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_policy_is_checked_with_the_line_of_each_mistake() {
    let env = Env::new();
    env.write("good.toml", POLICY);
    env.run(&["policy", "check", "good.toml"]).success().stdout_has("good.toml: ok (1 profiles, 1 stages)");
    env.write("bad.toml", "profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_dys = 90\n");
    env.run(&["policy", "check", "bad.toml"]).code(2).stderr_has("bad.toml:4: unknown field `after_dys`");
}

#[test]
fn a_recorded_plan_is_applied_as_planned_and_spares_what_it_should() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    env.write("dormant.toml", POLICY);
    // A person put user0015 back this week: the policy gives them the grace.
    env.run(&["--yes", "eval", r#"let h = connect(); h.suspend("user0015", #{reason: "x"}); h.unsuspend("user0015")"#])
        .success();
    let plan = env.run(&["--format", "json", "policy", "plan", "dormant.toml"]).success();
    let mut expected = dormant();
    for spared in ["user0014", "ldap-user", "user0016", "user0015"] {
        expected.remove(spared);
    }
    assert_eq!(planned(&plan), expected);
    for says in [
        "left alone: user0014 on ghes: excluded by the policy's scope (USER0014)",
        "left alone: user0016 on ghes: exception until 2099-01-01: sabbatical",
        "left alone: user0015 on ghes: restored by a person on",
    ] {
        assert!(plan.stderr.contains(says), "{says}\n{}", plan.report());
    }
    let digest = digest_of(&plan);
    let puts_before = sb.count_method("PUT");
    // Someone signs in after the plan: the apply leaves them alone.
    sb.github_seen("user0017");
    // No terminal and no --yes: the whole plan is asked about once, and refused; nothing is sent.
    env.run(&["policy", "apply", "dormant.toml", "--plan", &digest]).code(1);
    assert_eq!(sb.count_method("PUT"), puts_before);
    let applied =
        env.run(&["--yes", "--format", "json", "policy", "apply", "dormant.toml", "--plan", &digest]).success();
    assert!(applied.stdout.contains("active since the plan"), "{}", applied.report());
    let suspended: BTreeSet<String> = sb.suspended().into_iter().collect();
    let mut done = expected.clone();
    done.remove("user0017");
    assert!(done.is_subset(&suspended), "{done:?} {suspended:?}");
    for spared in ["user0014", "user0015", "user0016", "user0017"] {
        assert!(!suspended.contains(spared), "{spared}");
    }
    assert_eq!(sb.count_method("PUT") - puts_before, done.len() as u64, "one request per account");
    // Each change says which policy and plan made it, in the audit log.
    let rows = env.audit_rows(&["--op", "suspend"]);
    assert!(rows.iter().any(|r| r["params"].as_str().unwrap_or_default().contains("policy dormant: idle")), "{rows:?}");
    // The policy file edited since: its plans are refused.
    env.write("dormant.toml", &POLICY.replace("0.6", "0.7"));
    env.run(&["--yes", "policy", "apply", "dormant.toml", "--plan", &digest]).code(2).stderr_has("another version");
}

#[test]
fn a_guard_halts_a_plan_that_would_change_too_much_with_its_own_exit_code() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    env.write("dormant.toml", &POLICY.replace("max_share = 0.6", "max_share = 0.25"));
    let plan = env.run(&["policy", "plan", "dormant.toml"]).code(4);
    assert!(
        plan.stderr.contains("HALTED by a guard: ghes:") && plan.stderr.contains("more than max_share 25 %"),
        "{}",
        plan.report()
    );
    let digest = digest_of(&plan);
    env.run(&["--yes", "policy", "apply", "dormant.toml", "--plan", &digest]).code(4).stderr_has("halted by a guard");
    assert_eq!(sb.count_method("PUT"), 0);
}

#[test]
fn the_unattended_runner_acts_once_on_what_is_due() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    std::fs::create_dir_all(env.path("policies")).unwrap();
    env.write("policies/dormant.toml", POLICY);
    env.write("policies/by-hand.toml", &POLICY.replace("unattended = true\n", ""));
    let dir = env.path("policies");
    let dir = dir.to_str().unwrap();
    // Two runners fired at once (a doubled cron line): the accounts are suspended once.
    let spawn = || {
        let mut cmd = env.cmd();
        cmd.args(["policy", "run", "--due", "--dir", dir])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let text: Vec<String> = outs
        .iter()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .collect();
    assert!(outs.iter().all(|o| o.status.code() == Some(0)), "{text:?}");
    assert_eq!(text.iter().filter(|t| t.contains("policies: 1 applied")).count(), 1, "{text:?}");
    assert!(text.iter().all(|t| t.contains("by-hand: not unattended")), "{text:?}");
    let mut expected = dormant();
    for spared in ["user0014", "ldap-user", "user0016"] {
        expected.remove(spared);
    }
    assert_eq!(sb.count_method("PUT"), expected.len() as u64, "each account once: {text:?}");
    // Run again at once: not due, nothing sent.
    env.run(&["policy", "run", "--due", "--dir", dir])
        .success()
        .stdout_has("0 applied, 0 halted by a guard, 0 failed, 1 not due");
    assert_eq!(sb.count_method("PUT"), expected.len() as u64);
}

#[test]
fn a_policy_on_a_service_without_dates_of_use_is_refused_before_anything_is_read() {
    let sb = Sandbox::start(5);
    let env = services_env(&sb);
    env.write("p.toml", &POLICY.replace("[\"ghes\"]", "[\"ghes\", \"tfe\"]"));
    run_services(&env, &["policy", "plan", "p.toml"], None)
        .code(2)
        .stderr_has("profile tfe: terraform has no activity data");
    assert_eq!(sb.count("GET /stafftools/reports/all_users.csv"), 0);
}

/// Where Debian's `faketime` package puts the library that fakes a process's wall clock.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// steward run `days` days from now (its wall clock moved by libfaketime; the sandbox keeps real time).
fn at(env: &Env, days: i64, args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.args(args);
    days_on(cmd, days)
}

/// `cmd` run with steward's clock `days` ahead (the servers keep theirs).
fn days_on(mut cmd: std::process::Command, days: i64) -> Run {
    assert!(std::path::Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing: apt-get install faketime");
    cmd.env("LD_PRELOAD", LIBFAKETIME).env("FAKETIME", format!("+{days}d")).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    Run::of(cmd)
}

/// Months go by under `policy run --due`: an account reaches its stage as it idles, a person's restore is
/// honoured for the grace and not after, and an exception holds until its day.
#[test]
fn months_go_by_grace_is_kept_and_exceptions_expire() {
    if crate::util::moves_the_clock_ahead("months_go_by_grace_is_kept_and_exceptions_expire") {
        return;
    }
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    std::fs::create_dir_all(env.path("policies")).unwrap();
    let ends = (chrono::Utc::now() + chrono::Duration::days(100)).format("%Y-%m-%d").to_string();
    env.write(
        "policies/dormant.toml",
        &format!(
            "profiles = [\"ghes\"]\nunattended = true\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[scope]\nexclude = [\"ldap-user\"]\n[guard]\nmax_share = 1.0\nmin_admins = 0\n[[exception]]\naccount = \"user0001\"\nuntil = \"{ends}\"\nreason = \"parental leave\"\n"
        ),
    );
    let dir = env.path("policies");
    let due = ["policy", "run", "--due", "--dir", dir.to_str().unwrap()];
    let suspended = |login: &str| sb.suspended().iter().any(|s| s == login);
    // Today: user0014 (idle 98 days) is suspended; user0001 (idle 7) is not.
    at(&env, 0, &due).success().stdout_has("1 applied");
    assert!(suspended("user0014") && !suspended("user0001"));
    // A day later a person puts user0014 back; two days after that the policy leaves them alone.
    at(&env, 1, &["--yes", "eval", r#"connect().unsuspend("user0014")"#]).success();
    at(&env, 3, &due).success();
    assert!(!suspended("user0014"), "re-suspended within the grace");
    // Past the 7 days' grace, still idle: suspended again.
    at(&env, 10, &due).success();
    assert!(suspended("user0014"), "the grace ended");
    // 90 days on, user0001 is idle 97 days but on leave until day 100; at day 120 the exception has ended.
    at(&env, 90, &due).success();
    assert!(!suspended("user0001"), "the exception holds");
    let later = at(&env, 120, &due).success();
    assert!(suspended("user0001"), "the exception ended\n{}", later.report());
    assert!(later.stderr.contains(&format!("the exception for user0001 ended on {ends}")), "{}", later.report());
}

/// `steward ARGS` as another person: another uid (a user namespace maps this process to uid 4242), the same
/// files.
fn as_someone_else(env: &Env, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new("unshare");
    env.configure(&mut cmd);
    cmd.args(["--user", "--map-user=4242", "--map-group=4242", env!("CARGO_BIN_EXE_steward")]).args(args);
    Run::of(cmd)
}

#[test]
fn a_plan_that_needs_approval_is_applied_only_once_another_admin_approves_it() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    std::fs::create_dir_all(env.path("policies")).unwrap();
    let policy = POLICY.replace("unattended = true\n", "unattended = true\nrequire_approval = true\n");
    env.write("policies/dormant.toml", &policy);
    let dir = env.path("policies");
    let dir = dir.to_str().unwrap();
    // Unattended: the due run makes the plan and waits for an approval; nothing is sent.
    let first = env.run(&["policy", "run", "--due", "--dir", dir]).success().stdout_has("1 awaiting approval");
    let digest = first
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("dormant: plan "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}", first.report()))
        .to_string();
    assert_eq!(sb.count_method("PUT"), 0);
    env.run(&["--yes", "policy", "apply", "dormant", "--dir", dir, "--plan", &digest])
        .code(2)
        .stderr_has("needs each plan approved by a second admin");
    // Its maker cannot approve it; someone else can.
    env.run(&["policy", "approve", "dormant", "--dir", dir, "--plan", &digest])
        .code(2)
        .stderr_has("another admin approves it");
    as_someone_else(&env, &["policy", "approve", "dormant", "--dir", dir, "--plan", &digest])
        .success()
        .stdout_has("approved by");
    // The next due run applies the approved plan, once.
    env.run(&["policy", "run", "--due", "--dir", dir]).success().stdout_has("1 applied");
    let mut expected = dormant();
    for spared in ["user0014", "ldap-user", "user0016"] {
        expected.remove(spared);
    }
    assert_eq!(sb.count_method("PUT"), expected.len() as u64);
    env.run(&["policy", "run", "--due", "--dir", dir]).success().stdout_has("0 applied");
    assert_eq!(sb.count_method("PUT"), expected.len() as u64);
}

/// The plan's page in a real browser (headless Chromium): it renders offline with the histogram, the changes and
/// who is left alone, and no value runs (an exception's reason is the policy author's text, a login the
/// server's).
#[test]
fn the_plan_page_renders_in_a_real_browser_and_no_value_runs() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let hostile = r#"<script>document.body.dataset.pwned='script'</script><img src=x onerror="document.body.dataset.pwned='attr'">"#;
    env.write("dormant.toml", &POLICY.replace("reason = \"sabbatical\"", &format!("reason = '''{hostile}'''")));
    env.run(&["policy", "plan", "dormant.toml", "--html", "plan.html"]).success().stderr_has("page: plan.html");
    let dom = crate::util::rendered(&env.path("plan.html"));
    assert!(!dom.contains("data-pwned"), "a value ran in the page");
    for shown in [
        "Policy dormant",
        "days idle, ghes",
        "090-119 days",
        "360+ days",
        "user0015",
        "idle 105 days",
        "left alone",
        "&lt;script&gt;",
    ] {
        assert!(dom.to_lowercase().contains(&shown.to_lowercase()), "{shown} is not on the page");
    }
    assert!(dom.contains("class=\"bar due\""), "the buckets a stage reaches are marked");
    // A halted plan says so at the top.
    env.write("tight.toml", &POLICY.replace("max_share = 0.6", "max_share = 0.1"));
    env.run(&["policy", "plan", "tight.toml", "--html", "tight.html"]).code(4);
    assert!(crate::util::rendered(&env.path("tight.html")).contains("Halted by a guard"));
}

/// A webhook receiver on loopback: keeps each request's body; answers 500 to the first `failures` requests.
struct Receiver {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn receiver(failures: usize) -> Receiver {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/s3cretHookToken9", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().flatten().enumerate() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock().unwrap().push(String::from_utf8_lossy(&body).to_string());
            let status = if n < failures { "500 Internal Server Error" } else { "200 OK" };
            let mut stream = stream;
            let _ = stream
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").as_bytes());
        }
    });
    Receiver { url, bodies }
}

/// aiosmtpd (PyPI) on loopback, every message kept in a Maildir; stopped when dropped.
struct SmtpSink {
    port: u16,
    maildir: std::path::PathBuf,
    child: std::process::Child,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    fn start(dir: &std::path::Path) -> SmtpSink {
        let python = std::env::var("SMTP_SINK_PYTHON").unwrap_or_else(|_| {
            let out = std::process::Command::new("bash")
                .arg(crate::util::repo().join("tests/servers/start-smtp.sh"))
                .arg("install")
                .output()
                .expect("bash runs");
            assert!(out.status.success(), "aiosmtpd did not install: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("export SMTP_SINK_PYTHON=").to_string()
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = dir.join("maildir");
        let child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 20, "aiosmtpd did not listen");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        SmtpSink { port, maildir, child }
    }

    /// Every message received, as text.
    fn messages(&self) -> Vec<String> {
        let mut all = Vec::new();
        for sub in ["new", "cur"] {
            for e in std::fs::read_dir(self.maildir.join(sub)).into_iter().flatten().flatten() {
                all.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        all
    }
}

/// One request to the live Synapse's client API as its admin; the JSON answer.
fn matrix(method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    let s = crate::synapse::server();
    let (url, token) = (format!("{}/_matrix/client/v3/{path}", s.url), s.token.clone());
    crate::util::runtime().block_on(async move {
        let mut req = reqwest::Client::new().request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("synapse answers").json().await.expect("json")
    })
}

/// A new room on the live Synapse with its admin in it: the room id.
fn matrix_room() -> String {
    let r = matrix(reqwest::Method::POST, "createRoom", Some(serde_json::json!({"name": "steward ops"})));
    r["room_id"].as_str().expect("a room id").to_string()
}

/// The texts of the room's latest messages.
fn matrix_messages(room: &str) -> Vec<String> {
    let room: String = url::form_urlencoded::byte_serialize(room.as_bytes()).collect();
    let r = matrix(reqwest::Method::GET, &format!("rooms/{room}/messages?dir=b&limit=20"), None);
    r["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
        .collect()
}

/// Warn at 60 days, suspend at 90: the people warned get an e-mail of their own (a real SMTP server), the ops list
/// one for all, a webhook (failing once, then taking it) and a Matrix room (the live Synapse) hear of every change;
/// each delivery is in the audit log, the webhook's secret URL nowhere; a warning is given once.
#[test]
fn warnings_and_notices_reach_people_and_channels_once() {
    let sb = Sandbox::start(30);
    let env = Env::new();
    let smtp = SmtpSink::start(env.dir.path());
    let hook = receiver(1);
    let room = matrix_room();
    env.write_config(&format!(
        "default_profile = \"ghes\"\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nprotected = [\"user0002\"]\ntimeout = 5\n[profiles.chat]\nkind = \"synapse\"\nurl = \"{}\"\ntoken_env = \"SYNAPSE_TOKEN\"\n",
        sb.url(),
        crate::synapse::server().url
    ));
    env.write(
        "dormant.toml",
        &format!(
            "profiles = [\"ghes\"]\n[[stage]]\naction = \"warn\"\nafter_days = 60\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[scope]\nexclude = [\"ldap-user\"]\n[guard]\nmax_share = 1.0\nmin_admins = 0\n\
             [[notify]]\nkind = \"email\"\nsmtp = \"smtp+plain://127.0.0.1:{}\"\nfrom = \"steward@example.com\"\nto = [\"ops@example.com\"]\nperson = true\non = [\"warn\"]\n\
             [[notify]]\nkind = \"webhook\"\nurl_env = \"OPS_HOOK\"\n\
             [[notify]]\nkind = \"matrix\"\nprofile = \"chat\"\nroom = \"{room}\"\n",
            smtp.port
        ),
    );
    let steward = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("OPS_HOOK", &hook.url)
            .env("SYNAPSE_TOKEN", &crate::synapse::server().token)
            .env("STEWARD_TIME_SCALE", "0.01")
            .args(args);
        Run::of(cmd)
    };
    let warned = ["user0009", "user0010", "user0011", "user0012"];
    let plan = steward(&["--format", "json", "policy", "plan", "dormant.toml"]).success();
    let rows: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let warns: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "warn")
        .map(|r| r["account"].as_str().unwrap())
        .collect();
    assert_eq!(warns, warned);
    let applied = steward(&["--yes", "policy", "apply", "dormant.toml", "--plan", &digest_of(&plan)]).success();
    // The people warned, one e-mail each; the ops list, one for all.
    let mails = smtp.messages();
    for login in warned {
        assert!(
            mails
                .iter()
                .any(|m| m.contains(&format!("To: {login}@example.com")) && m.contains("warn") && m.contains("idle")),
            "{login}: {mails:?}"
        );
    }
    assert!(
        mails.iter().any(|m| m.contains("To: ops@example.com") && warned.iter().all(|w| m.contains(w))),
        "{mails:?}"
    );
    // The webhook: refused once, taken on the second try; it lists the suspensions and the warnings.
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(
        bodies[1].contains("\"text\"")
            && bodies[1].contains("suspend user0014 on ghes")
            && bodies[1].contains("warn user0009"),
        "{}",
        bodies[1]
    );
    // The Matrix room.
    assert!(
        matrix_messages(&room).iter().any(|m| m.contains("steward policy dormant") && m.contains("suspend user0014")),
        "{:?}",
        matrix_messages(&room)
    );
    // Every delivery recorded; the webhook's URL (its secret) nowhere.
    let rows = env.audit_rows(&["--op", "notify"]);
    assert_eq!(rows.iter().filter(|r| r["status"] == "ok").count(), 4 + 1 + 1 + 1, "{rows:?}");
    assert!(rows.iter().any(|r| r["params"].as_str().unwrap_or_default().contains("\"tries\":2")), "{rows:?}");
    let export = env.run(&["audit", "export", "--format", "json"]).success();
    for text in [&export.stdout, &applied.stdout, &applied.stderr] {
        assert!(!text.contains("s3cretHookToken9"), "the webhook URL leaked");
    }
    // Planned again: the warnings were given, so nobody is warned twice.
    let again = steward(&["--format", "json", "policy", "plan", "dormant.toml"]).success();
    assert!(!again.stdout.contains("\"warn\""), "{}", again.stdout);
}

/// A manager hears of their people: the policy's directory (an HR export) names each person's manager by
/// e-mail (any case); each manager gets one message listing theirs, from the notify's template; a person the
/// directory does not name is said; every delivery is in the audit log, and the warnings count as given.
#[test]
fn managers_hear_of_their_people_from_the_directory() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let smtp = SmtpSink::start(env.dir.path());
    env.write(
        "people.csv",
        "email,name,manager_email\nUSER0009@Example.com,Nine,boss@example.com\nuser0010@example.com,Ten,boss@example.com\n\
         user0011@example.com,Eleven,other@example.com\n",
    );
    let policy = format!(
        "profiles = [\"ghes\"]\n[[stage]]\naction = \"warn\"\nafter_days = 60\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n\
         [scope]\nexclude = [\"ldap-user\"]\n[guard]\nmax_share = 1.0\nmin_admins = 0\n[directory]\nfile = \"people.csv\"\n\
         [[notify]]\nkind = \"email\"\nsmtp = \"smtp+plain://127.0.0.1:{}\"\nfrom = \"steward@example.com\"\nmanager = true\n\
         on = [\"warn\"]\ntemplate = \"{{account}} on {{profile}} is idle: {{why}}\"\n",
        smtp.port
    );
    env.write("dormant.toml", &policy);
    env.run(&["policy", "check", "dormant.toml"]).success();
    let plan = env.run(&["--format", "json", "policy", "plan", "dormant.toml"]).success();
    let applied = env.run(&["--yes", "policy", "apply", "dormant.toml", "--plan", &digest_of(&plan)]).success();
    assert!(
        applied.stderr.contains("user0012 on ghes is not in the directory")
            && applied.stderr.contains("no manager is told"),
        "{}",
        applied.report()
    );
    let mails = smtp.messages();
    let to = |who: &str| mails.iter().filter(|m| m.contains(&format!("To: {who}"))).cloned().collect::<Vec<_>>();
    let boss = to("boss@example.com");
    assert_eq!(boss.len(), 1, "one message for all of a manager's people: {mails:?}");
    for line in ["user0009 on ghes is idle: idle", "user0010 on ghes is idle: idle"] {
        assert!(boss[0].contains(line), "{line}\n{}", boss[0]);
    }
    assert!(!boss[0].contains("user0011"), "{}", boss[0]);
    assert!(to("other@example.com").iter().any(|m| m.contains("user0011 on ghes is idle")), "{mails:?}");
    let rows = env.audit_rows(&["--op", "notify"]);
    for who in ["email boss@example.com (manager)", "email other@example.com (manager)"] {
        assert!(
            rows.iter().any(|r| r["status"] == "ok" && r["params"].as_str().unwrap().contains(who)),
            "{who}: {rows:?}"
        );
    }
    // Told through their managers, the warnings were given: planned again, nobody told is warned twice.
    let again = env.run(&["--format", "json", "policy", "plan", "dormant.toml"]).success();
    for login in ["user0009", "user0010", "user0011"] {
        assert!(!again.stdout.contains(&format!("\"{login}\"")), "{login}: {}", again.stdout);
    }
    // A directory without the columns the policy names is refused by `check`, naming the column.
    env.write("people.csv", "mail,boss\nx@example.com,y@example.com\n");
    env.run(&["policy", "check", "dormant.toml"]).code(2).stderr_has("has no column \"email\"");
}

/// A GHES user's site-admin flag, as the sandbox holds it.
fn site_admin(sb: &Sandbox, login: &str) -> bool {
    let users = sb.state()["github"]["users"].as_array().cloned().unwrap_or_default();
    users.iter().any(|u| u["login"] == login && u["site_admin"] == true)
}

/// Timed and scheduled changes as time goes by: a 4-hour admin grant is taken back after 4 hours, a suspension
/// until a day ends on that day (single call and bulk job alike), a change scheduled for later happens then, a
/// cancelled one never; an account a person changed since is left alone, and said so.
#[test]
fn timed_changes_are_taken_back_on_time_and_not_when_changed_since() {
    if crate::util::moves_the_clock_ahead("timed_changes_are_taken_back_on_time_and_not_when_changed_since") {
        return;
    }
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let until = (chrono::Utc::now() + chrono::Duration::days(10)).format("%Y-%m-%d").to_string();
    let script = format!(
        r#"let h = connect();
        h.promote("user0003", #{{"for": "4h", reason: "on call"}});
        h.suspend("user0004", #{{"until": "{until}", reason: "leave"}});
        h.suspend("user0007", #{{"until": "{until}", reason: "leave"}});
        h.suspend_all(["user0009", "user0010"], #{{"until": "{until}", reason: "project pause"}});
        h.schedule("2d", "suspend", "user0005", #{{reason: "leaves on Friday"}});
        h.schedule("3d", "suspend", "user0008", #{{reason: "maybe"}});"#
    );
    at(&env, 0, &["--yes", "eval", &script]).success();
    assert!(site_admin(&sb, "user0003"));
    let list = at(&env, 0, &["--format", "json", "schedule", "list"]).success();
    let waiting: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(waiting.as_array().unwrap().len(), 7, "{waiting}");
    let cancel = waiting.as_array().unwrap().iter().find(|w| w["target"] == "user0008").unwrap()["id"].to_string();
    at(&env, 0, &["schedule", "cancel", &cancel]).success().stdout_has("cancelled: suspend user0008");
    // A person unsuspends user0007 early, then suspends it again for another reason.
    at(&env, 1, &["--yes", "eval", r#"connect().unsuspend("user0007")"#]).success();
    at(&env, 1, &["--yes", "eval", r#"connect().suspend("user0007", #{reason: "security incident"})"#]).success();
    // Four hours and a bit later: the admin grant is taken back; nothing else is due.
    let due = |days: i64| {
        let mut cmd = env.cmd();
        cmd.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", format!("+{days}d"))
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args(["schedule", "run"]);
        Run::of(cmd)
    };
    let mut cmd = env.cmd();
    cmd.env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", "+5h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .args(["schedule", "run"]);
    Run::of(cmd).success().stdout_has("scheduled: 1 done, 0 left alone, 0 failed, 5 waiting");
    assert!(!site_admin(&sb, "user0003"), "the 4-hour grant was taken back");
    due(3).success().stdout_has("scheduled: 1 done");
    assert!(sb.suspended().contains(&"user0005".to_string()));
    assert!(!sb.suspended().contains(&"user0008".to_string()), "a cancelled change never happens");
    // Past the day: the suspensions end, but user0007 (changed since by a person) is left alone, still suspended.
    let end = due(11).success();
    assert!(end.stdout.contains("scheduled: 3 done, 1 left alone, 0 failed, 0 waiting"), "{}", end.report());
    assert!(
        end.stderr.contains("left alone: unsuspend user0007 on ghes: changed since: suspend by run"),
        "{}",
        end.report()
    );
    let suspended = sb.suspended();
    for back in ["user0004", "user0009", "user0010"] {
        assert!(!suspended.contains(&back.to_string()), "{back}");
    }
    assert!(suspended.contains(&"user0007".to_string()));
    // Nothing is left waiting, and running again does nothing.
    due(12).success().stdout_has("scheduled: 0 done, 0 left alone, 0 failed, 0 waiting");
}

/// A scope by e-mail domain: only accounts the service says are at that domain are planned (the contractors),
/// whatever the case of the address; the others are not even counted.
#[test]
fn a_scope_by_domain_plans_only_the_accounts_at_it() {
    if crate::util::moves_the_clock_ahead("a_scope_by_domain_plans_only_the_accounts_at_it") {
        return;
    }
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let made = r#"let h = connect();
        h.create_user(#{login: "temp-ann", email: "ann@Contractors.Example.com"});
        h.create_user(#{login: "temp-bob", email: "bob@example.com"}); 1"#;
    env.run(&["--yes", "eval", made]).success();
    env.write(
        "contractors.toml",
        "profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[scope]\ndomains = [\"contractors.example.com\"]\n[guard]\nmax_share = 1.0\nmin_admins = 0\n",
    );
    // A hundred days on, everyone is idle (the two new accounts never signed in).
    let plan = at(&env, 100, &["--format", "json", "policy", "plan", "contractors.toml"]).success();
    assert_eq!(planned(&plan), BTreeSet::from(["temp-ann".to_string()]), "{}", plan.report());
    env.write("everyone.toml", "profiles = [\"ghes\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[guard]\nmax_share = 1.0\nmin_admins = 0\n");
    let all = at(&env, 100, &["--format", "json", "policy", "plan", "everyone.toml"]).success();
    assert!(planned(&all).contains("temp-bob") && planned(&all).len() > 20, "{}", all.report());
}

/// Later stages: accounts idle past the delete stage are suspended, then deleted, only where the policy allows
/// deletion and the service deletes; a deactivate stage on a service that has no deactivation is refused before
/// anything is read.
#[test]
fn a_delete_stage_deletes_only_when_allowed_and_a_deactivation_only_where_there_is_one() {
    if crate::util::moves_the_clock_ahead(
        "a_delete_stage_deletes_only_when_allowed_and_a_deactivation_only_where_there_is_one",
    ) {
        return;
    }
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let policy = "profiles = [\"ghes\"]\nallow_delete = true\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[[stage]]\naction = \"delete\"\nafter_days = 180\n[scope]\nexclude = [\"ldap-user\"]\n[guard]\nmax_share = 1.0\nmin_admins = 0\n";
    env.write("leavers.toml", policy);
    env.write("careless.toml", &policy.replace("allow_delete = true\n", ""));
    env.run(&["policy", "check", "careless.toml"]).code(2).stderr_has("allow_delete = true");
    env.write("deactivate.toml", &policy.replace("\"delete\"", "\"deactivate\""));
    env.run(&["policy", "plan", "deactivate.toml"]).code(2).stderr_has("github has no deactivation");
    assert_eq!(sb.count_method("GET"), 0, "refused before anything was read");

    // Today user0014 is idle 98 days: suspended, not deleted. Two hundred days on, every idle one is deleted.
    let plan = env.run(&["--format", "json", "policy", "plan", "leavers.toml"]).success();
    let steps: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let of = |login: &str| -> Vec<String> {
        let rows = steps.as_array().unwrap().iter().filter(|s| s["account"] == login);
        rows.map(|s| s["action"].as_str().unwrap_or_default().to_string()).collect()
    };
    assert_eq!(of("user0014"), ["suspend"], "{}", plan.report());
    let later = at(&env, 200, &["--format", "json", "policy", "plan", "leavers.toml"]).success();
    let digest = digest_of(&later);
    let steps: serde_json::Value = serde_json::from_str(&later.stdout).unwrap();
    let deleted: Vec<&str> = steps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "delete")
        .map(|s| s["account"].as_str().unwrap_or_default())
        .collect();
    assert!(deleted.contains(&"user0014") && !deleted.contains(&"ldap-user"), "{}", later.report());
    assert!(later.stdout.contains("(cannot be undone)"), "{}", later.report());
    at(&env, 200, &["--yes", "policy", "apply", "leavers.toml", "--plan", &digest]).success();
    let gone = env.eval_json(r#"connect().list_users().map(|u| u.login)"#);
    let left: Vec<&str> = gone.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(!left.contains(&"user0014") && left.contains(&"ldap-user"), "{left:?}");
    let rows = env.audit_rows(&["--op", "delete_user"]);
    assert!(rows.iter().any(|r| r["target"] == "user0014" && r["status"] == "ok"), "{rows:?}");
}

/// A policy over Travis reads both of its activity listings a page at a time (250 members: three pages each)
/// straight into the plan: every member listed is counted once, exactly those idle 90 days or more are planned,
/// and the plan says whom Travis cannot show.
#[test]
fn a_policy_over_travis_plans_every_listed_member_once_and_says_whom_it_cannot_see() {
    let sb = Sandbox::start(250);
    let env = services_env(&sb);
    env.write("t.toml", "profiles = [\"travis\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[guard]\nmax_share = 1.0\nmin_admins = 0\n");
    let listed = run_services(
        &env,
        &["--format", "json", "eval", r#"connect("travis").activity(#{since: "2000-01-01", status: "all"})"#],
        None,
    )
    .success();
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let now = chrono::Utc::now();
    let idle: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["suspended"] != true)
        .filter(|u| {
            let seen = u["last_active"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            seen.is_some_and(|t| (now - t.with_timezone(&chrono::Utc)).num_days() >= 90)
        })
        .map(|u| u["login"].as_str().unwrap().to_string())
        .collect();
    assert!(!idle.is_empty() && idle.len() < listed.as_array().unwrap().len(), "{listed}");
    let plan = run_services(&env, &["--format", "json", "policy", "plan", "t.toml"], None).success();
    assert_eq!(planned(&plan), idle, "{}", plan.report());
    let count = format!("travis: {} accounts", listed.as_array().unwrap().len());
    assert!(plan.stderr.contains(&count), "{count}\n{}", plan.report());
    assert!(
        plan.stderr.contains("warning: travis: not in this plan: members who were never active"),
        "{}",
        plan.report()
    );
    assert_eq!(sb.count_method("PUT") + sb.count_method("POST"), 0, "planning changes nothing");
}

/// Months go by on a homeserver of the test's own (the shared one's users belong to other tests): its users are
/// suspended at 100 days idle and deactivated at 200 (for good, and the plan says so), the admin is left alone
/// as the profile protects it, and each step is in the audit log.
#[test]
fn a_homeserver_account_is_suspended_then_deactivated_as_it_idles() {
    if crate::util::moves_the_clock_ahead("a_homeserver_account_is_suspended_then_deactivated_as_it_idles") {
        return;
    }
    let hs = crate::synapse::Private::start("alice bob");
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.chat]\nkind = \"synapse\"\nurl = \"{}\"\ntoken_env = \"SYNAPSE_TOKEN\"\nprotected = [\"admin\"]\ntimeout = 10\n",
        hs.url
    ));
    env.write("idle.toml", "profiles = [\"chat\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[[stage]]\naction = \"deactivate\"\nafter_days = 180\n[guard]\nmax_share = 1.0\nmin_admins = 0\n");
    let steward = |days: i64, args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("SYNAPSE_TOKEN", &hs.token).args(args);
        days_on(cmd, days)
    };
    let users = ["@alice:localhost", "@bob:localhost"];
    let first = steward(100, &["--format", "json", "policy", "plan", "idle.toml"]).success();
    assert!(
        first.stderr.contains("left alone: @admin:localhost on chat: protected by profile chat"),
        "{}",
        first.report()
    );
    steward(100, &["--yes", "policy", "apply", "idle.toml", "--plan", &digest_of(&first)]).success();
    for u in users {
        let record = hs.user(u);
        assert_eq!(
            (record["suspended"].as_bool(), record["deactivated"].as_bool()),
            (Some(true), Some(false)),
            "{u}: {record}"
        );
    }
    let plan = steward(200, &["--format", "json", "policy", "plan", "idle.toml"]).success();
    let steps: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let planned: Vec<(&str, &str)> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["account"].as_str().unwrap(), s["action"].as_str().unwrap()))
        .collect();
    assert_eq!(planned, [(users[0], "deactivate"), (users[1], "deactivate")], "{}", plan.report());
    assert!(steps[0]["why"].as_str().unwrap().ends_with("(cannot be undone)"), "{steps}");
    steward(200, &["--yes", "policy", "apply", "idle.toml", "--plan", &digest_of(&plan)]).success();
    for u in users {
        assert_eq!(hs.user(u)["deactivated"].as_bool(), Some(true), "{u}");
    }
    assert_eq!(hs.user("@admin:localhost")["deactivated"].as_bool(), Some(false));
    let rows = env.audit_rows(&["--op", "delete_user"]);
    let done: Vec<&str> = rows
        .iter()
        .filter(|r| r["phase"] == "outcome" && r["status"] == "ok")
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(done.len(), 2, "{rows:?}");
}
