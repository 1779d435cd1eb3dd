//! The README's tour, as a newcomer follows it: its REPL session and its first script, taken from the README
//! itself and run against the sandbox as written, so the tour cannot drift from what steward does.

use crate::util::{repo, Env};

/// The README's fenced blocks, in order.
fn blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.starts_with("```")) {
            (None, true) => current = Some(String::new()),
            (Some(block), true) => {
                out.push(std::mem::take(block));
                current = None;
            }
            (Some(block), false) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, false) => {}
        }
    }
    out
}

#[test]
fn the_tours_repl_session_runs_on_the_sandbox_as_written() {
    let sessions: Vec<String> = blocks().into_iter().filter(|b| b.starts_with("steward> ")).collect();
    assert!(sessions.len() >= 2, "the README has REPL sessions");
    for session in sessions {
        // Each session is one REPL sitting: its lines, in order, as one script.
        let script: String = session
            .lines()
            .filter_map(|l| l.strip_prefix("steward> "))
            .filter(|l| !l.starts_with(':'))
            .map(|l| format!("{l};\n"))
            .collect();
        let env = Env::new();
        env.write("session.rhai", &script);
        env.run(&["--sandbox", "--yes", "run", "session.rhai"]).success();
    }
}

/// Runs the README script that starts with `// NAME` as its "on the sandbox:" line says, in a fresh env.
fn run_as_its_header_says(name: &str) -> (Env, crate::util::Run) {
    let script = blocks().into_iter().find(|b| b.starts_with(&format!("// {name}"))).expect("the script");
    let line = script.lines().find(|l| l.contains("on the sandbox: steward")).expect("how to run it on the sandbox");
    let command = line.split("on the sandbox: ").nth(1).unwrap().trim_end_matches(')');
    let env = Env::new();
    env.write(name, &script);
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let run = env.run(&args).success();
    (env, run)
}

#[test]
fn the_tours_first_script_runs_on_the_sandbox_as_its_header_says() {
    let (env, run) = run_as_its_header_says("admins.rhai");
    run.stdout_has("admins written to admins.csv");
    // Its --args are declared: a misspelled one is refused, naming the one meant.
    env.run(&["--sandbox", "run", "admins.rhai", "--arg", "profle=github"]).code(2).stderr_has("profile");
    let csv = std::fs::read_to_string(env.path("admins.csv")).unwrap();
    assert!(csv.starts_with("login,email,suspended") && csv.lines().count() > 1, "{csv}");
}

#[test]
fn the_large_instance_script_runs_on_the_sandbox_as_its_header_says() {
    let (env, run) = run_as_its_header_says("census.rhai");
    run.stdout_has("users written to users.csv; 3 of them are admins");
    let csv = std::fs::read_to_string(env.path("users.csv")).unwrap();
    assert!(csv.lines().count() > 100 && csv.lines().nth(1).is_some_and(|l| l.contains("admin")), "{csv}");
}

/// Runs each `steward …` line of a README block as a person types it at a terminal (bash on a pty, the binary on
/// PATH, `y` to each `[y/N]`), in `env`; `…` lines are templates and left out; `12`, the README's example run, is
/// the run `run` names. Returns each line's run (its output, both streams, as `stdout`).
fn run_block_as_written(
    env: &Env,
    block: &str,
    tokens: &[(&str, String)],
    run: impl Fn() -> String,
) -> Vec<crate::util::Run> {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_steward")).parent().unwrap().display().to_string();
    let mut runs = Vec::new();
    for line in block.lines().filter(|l| l.starts_with("steward ") && !l.contains('…')) {
        let mut command = line.split("  #").next().unwrap_or(line).trim().to_string();
        if command.contains(" 12") {
            command = command.replace(" 12", &format!(" {}", run()));
        }
        let mut cmd = std::process::Command::new("bash");
        env.configure(&mut cmd);
        cmd.env("PATH", format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()))
            .args(["-c", &format!("stty cols 250 rows 50; {command}")]);
        cmd.envs(tokens.iter().map(|(k, v)| (*k, v.as_str())));
        runs.push(at_a_terminal(cmd));
    }
    runs
}

/// `cmd` on a pseudo-terminal, answering `y` to each question, as a person at a terminal would.
fn at_a_terminal(cmd: std::process::Command) -> crate::util::Run {
    use rexpect::process::wait::WaitStatus;
    use rexpect::ReadUntil;
    let command = format!("{cmd:?}");
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).expect("a pty");
    let mut seen = String::new();
    loop {
        let (before, matched) =
            p.exp_any(vec![ReadUntil::String("[y/N]".into()), ReadUntil::EOF]).unwrap_or_else(|e| {
                panic!(
                    "{command}: {e}
{seen}"
                )
            });
        seen.push_str(&before);
        seen.push_str(&matched);
        if matched != "[y/N]" {
            break;
        }
        p.send_line("y").expect("an answer");
    }
    let status = match p.process.wait() {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        _ => None,
    };
    crate::util::Run { command, status, stdout: seen, stderr: String::new() }
}

/// The bulk-jobs section's commands, as written, on the sandbox as the README's `ghes` profile: the dry run, the
/// job, the newest runs, one run, and the undo that puts everyone back. (Its resume line is a template; bulk.rs
/// stops and resumes that job.)
#[test]
fn the_bulk_job_commands_run_as_written() {
    let block = blocks().into_iter().find(|b| b.contains("steward run bulk_suspend") && b.contains("steward undo"));
    let block = block.expect("the bulk-jobs block");
    let sb = crate::util::Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    let before = sb.suspended();
    env.write("leavers.csv", "login\nuser0005\nuser0006\n");
    let job = || {
        let run = env.log_value("SELECT COALESCE(MAX(run_id), 0) FROM events WHERE op = 'suspend' AND mode = 'live'");
        assert_ne!(run, "0", "the job ran before its run is named");
        run
    };
    let runs = run_block_as_written(&env, &block, &[], job);
    assert_eq!(runs.len(), 5, "dry run, job, undo, runs, runs show");
    for run in &runs {
        assert_eq!(run.status, Some(0), "{}", run.report());
    }
    assert!(runs[0].stdout.contains("dry-run") || runs[0].stderr.contains("dry-run"), "{}", runs[0].report());
    assert!(runs[3].stdout.contains("bulk_suspend"), "runs lists the job: {}", runs[3].report());
    assert_eq!(sb.suspended(), before, "the undo put back both users");
    let undone = env.log_value("SELECT COUNT(*) FROM events WHERE op = 'unsuspend' AND status = 'ok'");
    assert_eq!(undone, "2", "the undo unsuspended the two the job suspended");
}

/// The offboarding section's commands, as written, on the sandbox's four services as the README's profiles: the
/// dry run for two people nobody has here (each reported as found on no service: exit 3), then the CSV job on
/// every profile.
#[test]
fn the_offboarding_commands_run_as_written() {
    let block = blocks().into_iter().find(|b| b.contains("steward run offboard --arg people=")).expect("the block");
    let sb = crate::util::Sandbox::start(20);
    let env = crate::util::services_env(&sb);
    env.write("leavers.csv", "email\nuser0009@example.com\n");
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    let tokens = [
        ("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN.to_string()),
        ("TL_TOKEN", steward_sandbox::transactionlink_tokens::ADMIN_TOKEN.to_string()),
        ("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN)),
        ("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN)),
    ];
    let runs = run_block_as_written(&env, &block, &tokens, || "12".into());
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].status, Some(3), "{}", runs[0].report());
    let told = format!("{}{}", runs[0].stdout, runs[0].stderr);
    assert!(told.contains("no account on ghes (checked by email ann@example.com)"), "{}", runs[0].report());
    assert!(told.contains("no account on ghes (checked by login bob)"), "{}", runs[0].report());
    assert_eq!(runs[1].status, Some(0), "{}", runs[1].report());
    assert!(sb.suspended().contains(&"user0009".to_string()), "the CSV job offboarded user0009 on ghes");
}

/// The audit-log section's commands, as written, on a log a job of 31 suspensions wrote (more than 42 events,
/// so `audit show 42` has its event).
#[test]
fn the_audit_log_commands_run_as_written() {
    let block = blocks().into_iter().find(|b| b.starts_with("steward audit list ")).expect("the audit-log block");
    let sb = crate::util::Sandbox::start(40);
    let env = Env::with_sandbox(&sb);
    let users: Vec<String> = (3..=33).map(|i| format!("\"user{i:04}\"")).collect();
    let job = format!(r#"connect("ghes").suspend_all([{}], #{{reason: "left"}}).len()"#, users.join(", "));
    env.run(&["--yes", "eval", &job]).success();
    let runs = run_block_as_written(&env, &block, &[], || "12".into());
    assert_eq!(runs.len(), 7, "list, list by op, by fingerprint, pending, show, verify, export");
    for run in &runs {
        assert_eq!(run.status, Some(0), "{}", run.report());
    }
    assert!(runs[1].stdout.contains("user0033"), "the suspensions on ghes: {}", runs[1].report());
    assert!(runs[4].stdout.contains("42"), "{}", runs[4].report());
    let exported = std::fs::read_to_string(env.path("audit.jsonl")).expect("audit.jsonl");
    assert!(exported.lines().count() > 42, "{exported}");
}

/// Every policy in the README (the whole example and one per service) is one `policy check` takes as written,
/// its `[directory]` beside it.
#[test]
fn the_readmes_policies_pass_policy_check_as_written() {
    let policies: Vec<String> =
        blocks().into_iter().filter(|b| b.contains("profiles = [") && b.contains("[[stage]]")).collect();
    assert!(policies.len() >= 4, "the example and one per service: {policies:?}");
    let env = Env::new();
    env.write("people.csv", "email,name,manager_email\nann@example.com,Ann,boss@example.com\n");
    for (i, policy) in policies.iter().enumerate() {
        let name = format!("p{i}.toml");
        env.write(&name, policy);
        env.run(&["policy", "check", &name]).success();
    }
}
