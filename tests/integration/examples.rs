//! Every example in the function documentation runs on the sandbox, as `:help` promises.

use crate::util::Env;
use steward::script::docs;

#[test]
fn every_documented_example_runs_on_the_sandbox() {
    let mut failures = Vec::new();
    for doc in docs::all() {
        let env = Env::new();
        let run = env.run(&["--sandbox", "--yes", "--format", "json", "eval", doc.example]);
        if run.status != Some(0) {
            failures.push(format!("{}: {}", doc.name, run.report()));
        }
    }
    assert!(failures.is_empty(), "{} examples failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_function_has_help_in_the_repl_docs() {
    let names: Vec<&str> = docs::all().map(|d| d.name).collect();
    for verb in [
        "connect",
        "list_users",
        "get_user",
        "suspend",
        "unsuspend",
        "promote",
        "demote",
        "read_csv",
        "write_csv",
        "api",
    ] {
        assert!(names.contains(&verb), "{verb} is not documented");
    }
}

#[test]
fn the_admins_report_script_writes_a_csv() {
    let env = Env::new();
    let script = crate::util::repo().join("scripts/admins_report.rhai");
    env.run(&["--sandbox", "run", script.to_str().unwrap(), "--arg", "out=admins.csv"])
        .success()
        .stdout_has("3 administrators of github written to admins.csv");
    let csv = std::fs::read_to_string(env.path("admins.csv")).unwrap();
    assert!(csv.starts_with("login,email,name,suspended"), "{csv}");
    assert!(csv.contains("user0050"), "{csv}");
}
