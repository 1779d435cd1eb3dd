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
