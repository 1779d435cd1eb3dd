//! The crash harness: a bulk job killed at random moments and at failpoints, then resumed, 50 times; after each
//! pair of runs the invariants of the reliability plan must hold.

use crate::util::{Env, Run, Sandbox};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use steward_sandbox::Options;

const USERS: usize = 60;
const ITERATIONS: u64 = 50;

/// A small deterministic generator, so a failing iteration can be replayed from its number.
fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    }
}

pub(crate) struct Job {
    pub targets: Vec<String>,
    /// The request that changes one target, as the sandbox counts it.
    request: fn(&str, &Value) -> String,
}

/// The stock bulk-suspension script over the job's targets (its CSV written into `env`), on `profile`.
pub(crate) fn script_args(env: &Env, job: &Job, profile: &str) -> Vec<String> {
    let csv: String =
        std::iter::once("login".to_string()).chain(job.targets.iter().cloned()).collect::<Vec<_>>().join("\n");
    env.write("job.csv", &(csv + "\n"));
    let script = crate::util::repo().join("scripts/bulk_suspend.rhai");
    ["run", script.to_str().unwrap(), "--arg", &format!("profile={profile}"), "--arg", "csv=job.csv"]
        .into_iter()
        .chain(["--arg", "reason=crash test"])
        .map(str::to_string)
        .collect()
}

pub(crate) fn job(kind: &str) -> Job {
    match kind {
        "github" => Job {
            // user0025 and user0050 start suspended: their rows must end as noops.
            targets: (1..=USERS).map(|i| format!("user{i:04}")).collect(),
            request: |t, _| format!("PUT /api/v3/users/{t}/suspended"),
        },
        _ => Job {
            targets: (1..=USERS).map(|i| format!("tfuser{i:04}")).collect(),
            request: |t, state| {
                let id = state["terraform"]["users"].as_array().unwrap().iter().find(|u| u["username"] == t).unwrap()
                    ["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                format!("POST /api/v2/admin/users/{id}/actions/suspend")
            },
        },
    }
}

fn suspended(state: &Value, kind: &str, target: &str) -> bool {
    match kind {
        "github" => state["github"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["login"] == target && !u["suspended_at"].is_null()),
        _ => state["terraform"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == target && u["is-suspended"] == true),
    }
}

#[test]
fn killed_and_resumed_jobs_lose_nothing_and_repeat_nothing() {
    let mut kills_at_failpoints = 0;
    for iteration in 0..ITERATIONS {
        let mut rand = lcg(iteration);
        let sb = Sandbox::with(Options { users: USERS + 5, latency: Duration::from_millis(3), ..Default::default() });
        let kind = if iteration.is_multiple_of(2) { "github" } else { "terraform" };
        let url = if kind == "github" { sb.url() } else { sb.running.terraform_url() };
        let token =
            if kind == "github" { steward_sandbox::ADMIN_TOKEN } else { steward_sandbox::tfe_tokens::ADMIN_TOKEN };
        let env = Env::new();
        env.write_config(&format!(
            "max_changes = 100000\n[profiles.p]\nkind = \"{kind}\"\nurl = \"{url}\"\ntoken_env = \"JOB_TOKEN\"\nconcurrency = 4\nrate_limit = 1000\n"
        ));
        let initial = sb.state();
        let job = job(kind);
        let args = script_args(&env, &job, "p");

        // Run 1: killed, either at a failpoint or after a random delay.
        let mut cmd = env.cmd();
        cmd.env("JOB_TOKEN", token).args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let at_failpoint = rand().is_multiple_of(2);
        if at_failpoint {
            let point = if rand().is_multiple_of(2) { "after_intent_commit" } else { "after_response_before_outcome" };
            cmd.env("STEWARD_FAILPOINT", format!("{point}:{}", 1 + rand() % 40));
        }
        let mut child = cmd.spawn().unwrap();
        if !at_failpoint {
            std::thread::sleep(Duration::from_millis(50 + rand() % 400));
            let _ = std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status();
        }
        let status = child.wait().unwrap();
        if at_failpoint && status.code().is_none() {
            kills_at_failpoints += 1;
        }

        // Run 2: the resume finishes the job.
        let mut cmd = env.cmd();
        cmd.env("JOB_TOKEN", token).args(&args).args(["--resume", "1"]);
        let mut resumed = Run::of(cmd);
        if resumed.stderr.contains("there is no run 1") {
            // Killed before it recorded its run (a team log's first connection takes a while): nothing to resume,
            // and the job is run again from the start.
            let mut cmd = env.cmd();
            cmd.env("JOB_TOKEN", token).args(&args);
            resumed = Run::of(cmd);
        }
        assert!(resumed.status == Some(0), "iteration {iteration} ({kind}): the resume failed\n{}", resumed.report());

        assert_invariants(&format!("iteration {iteration} ({kind})"), kind, &job, &initial, &sb, &env);
    }
    assert!(kills_at_failpoints >= 10, "the failpoints fired ({kills_at_failpoints})");
}

/// The plan's invariants once a job and its resume are done: every target ends in one terminal state (I1), the
/// server agrees with the log (I2), nothing was sent without a durable intent (I3) or twice (I6), and the log
/// verifies (I4). `initial` is the sandbox's state before the job; `env` holds the log the job wrote.
pub(crate) fn assert_invariants(label: &str, kind: &str, job: &Job, initial: &Value, sb: &Sandbox, env: &Env) {
    let state = sb.state();
    let stats = sb.stats();
    let rows: Vec<Value> = env.audit_rows(&["--op", "suspend"]);
    // A row names the account its request reached (an id on some services); the name the job gave is `named`.
    let named = |r: &Value| -> String {
        let params: Value = serde_json::from_str(r["params"].as_str().unwrap_or("{}")).unwrap_or_default();
        params["named"].as_str().or(r["target"].as_str()).unwrap_or_default().to_string()
    };
    let mut terminal: HashMap<String, Vec<&str>> = HashMap::new();
    for r in rows.iter().filter(|r| r["phase"] == "outcome") {
        terminal.entry(named(r)).or_default().push(r["status"].as_str().unwrap());
    }
    for t in &job.targets {
        let was = suspended(initial, kind, t);
        // I2: the server's final state is the job done.
        assert!(suspended(&state, kind, t), "{label}: {t} is not suspended");
        // I6 (and more): no change reached the server twice; none reached it for a target already suspended.
        let sent = stats["requests"][(job.request)(t, initial)].as_u64().unwrap_or(0);
        assert_eq!(sent, u64::from(!was), "{label}: {t} was sent {sent} times");
        // I1: every row ends done (ok) or already in state (noop), in one run or the other.
        let ends = terminal.get(t.as_str()).cloned().unwrap_or_default();
        assert!(ends.iter().any(|s| *s == "ok" || *s == "noop"), "{label}: {t} has no terminal outcome: {ends:?}");
        // I3: a change that reached the server had a durable intent first.
        if sent > 0 {
            assert!(
                rows.iter().any(|r| r["phase"] == "intent" && named(r) == *t),
                "{label}: {t} was sent without an intent"
            );
        }
    }
    // I4: the log verifies, checkpoint included.
    let verify = Run::of({
        let mut c = env.cmd();
        c.args(["audit", "verify"]);
        c
    });
    assert_eq!(verify.status, Some(0), "{label}: {}", verify.report());
}
