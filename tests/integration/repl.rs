//! The REPL driven through a pseudo-terminal, keystroke by keystroke, as a person uses it.

use crate::util::Env;
use rexpect::session::PtySession;

const TIMEOUT_MS: u64 = 20_000;

fn spawn(env: &Env) -> PtySession {
    // A fresh pty has no size; give it a terminal's, as a real one would have.
    let mut cmd = std::process::Command::new("sh");
    env.configure(&mut cmd);
    cmd.env("TERM", "xterm")
        .args(["-c", &format!("stty cols 160 rows 50; exec '{}' --sandbox", env!("CARGO_BIN_EXE_steward"))]);
    let mut p = rexpect::session::spawn_command(cmd, Some(TIMEOUT_MS)).expect("the REPL starts on a pty");
    p.exp_string("steward>").expect("a prompt");
    p
}

/// Types `text` at the prompt and presses Tab, as a person would.
fn type_and_tab(p: &mut PtySession, text: &str) {
    p.send(text).unwrap();
    p.flush().unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
}

#[test]
fn a_session_with_tables_completion_multiline_help_and_ctrl_d() {
    let env = Env::new();
    let mut p = spawn(&env);

    p.send_line(r#"let gh = connect("github")"#).unwrap();
    p.exp_string("steward>").unwrap();

    // Arrays of users print as tables.
    p.send_line("gh.list_users(#{admin: true})").unwrap();
    p.exp_string("user0050").unwrap();
    p.exp_string("3 rows").unwrap();
    // Type only at a prompt, as a person does: keys sent earlier would be flushed by the switch to raw mode.
    p.exp_string("steward>").unwrap();

    // Tab completes a method after the dot.
    type_and_tab(&mut p, "gh.suspe");
    p.exp_string("nd").unwrap();
    p.send_line(r#"("user0001", #{reason: "typed at the REPL"})"#).unwrap();
    p.exp_string("204").unwrap();
    p.exp_string("steward>").unwrap();

    // After a handle, Tab offers what its service does: TransactionLink's terminate, not on GitHub.
    p.send_line(r#"let tl = connect("transactionlink")"#).unwrap();
    p.exp_string("steward>").unwrap();
    type_and_tab(&mut p, "tl.termi");
    p.exp_string("nate").unwrap();
    p.send_line("").unwrap();
    p.exp_string("steward>").unwrap();
    type_and_tab(&mut p, "gh.reins");
    p.send_line("").unwrap();
    let shown = p.exp_string("steward>").unwrap();
    assert!(!shown.contains("reinstate"), "a TransactionLink word was offered on GitHub: {shown}");

    // Variables persist; an unfinished block continues on the next line.
    p.send_line("for n in [1, 2] {").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_line("  print(`n=${n * 10}`)").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_line("}").unwrap();
    p.exp_string("n=10").unwrap();
    p.exp_string("n=20").unwrap();
    p.exp_string("steward>").unwrap();

    // Errors show a caret; the session carries on.
    p.send_line(r#"gh.get_user("nobody")"#).unwrap();
    p.exp_string("not_found").unwrap();
    p.exp_string("^").unwrap();
    p.exp_string("steward>").unwrap();

    p.send_line(":help suspend").unwrap();
    p.exp_string("h.suspend(login) / h.suspend(login, #{reason})").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line(":profiles").unwrap();
    p.exp_string("github").unwrap();
    p.exp_string("steward>").unwrap();

    // Tab inside connect(" offers profile names.
    type_and_tab(&mut p, r#"connect("git"#);
    p.exp_string("hub").unwrap();
    // The name came with its closing quote.
    p.send_line(").profile").unwrap();
    p.exp_string("github").unwrap();
    p.exp_string("steward>").unwrap();

    // Ctrl-C drops the line being typed; Ctrl-D leaves.
    p.send("let abandoned = 1").unwrap();
    p.flush().unwrap();
    p.send_control('c').unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();

    let history = std::fs::read_to_string(env.path("xdg-data/steward/history")).expect("history is saved");
    assert!(history.contains("gh.list_users(#{admin: true})"), "{history}");
    assert!(!history.contains("abandoned"), "a cancelled line is not history");
}

#[test]
fn ctrl_c_during_a_running_call_cancels_it_and_keeps_the_session() {
    let env = Env::new();
    let mut p = spawn(&env);
    p.send_line("let i = 0; loop { i += 1; }").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    p.send_control('c').unwrap();
    p.exp_string("cancelled by Ctrl-C").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line("i > 0").unwrap();
    p.exp_string("true").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn a_line_over_the_cpu_budget_is_stopped_and_the_next_line_gets_a_fresh_budget() {
    let env = Env::new();
    env.write_config("script_cpu_seconds = 1\n");
    let mut p = spawn(&env);
    p.send_line("let a = []; loop { a.push(a.len()); }").unwrap();
    p.exp_string("computed for 1 s").unwrap();
    p.exp_string("steward>").unwrap();
    // Thousands of operations: a budget still counting from the line above would stop this one.
    p.send_line("let n = 0; for k in 0..20000 { n += k; } `sum=${n}`").unwrap();
    p.exp_string("sum=199990000").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn pasted_tokens_never_reach_the_history_file() {
    let env = Env::new();
    let mut p = spawn(&env);
    p.send_line(r#"let t = "ghp_pastedsecretpastedsecret1""#).unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let history = std::fs::read_to_string(env.path("xdg-data/steward/history")).unwrap();
    assert!(!history.contains("pastedsecret"), "{history}");
    assert!(history.contains("[REDACTED]"), "{history}");
}

#[test]
fn unfinished_lines_continue_under_their_own_prompt_and_mistakes_get_a_pointer() {
    let env = Env::new();
    let mut p = spawn(&env);
    // An open block, then a dangling `else`: each continues under `...>`, and runs once whole.
    p.send_line("let n = 3;").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line("if n > 2 { print(\"big\") }").unwrap();
    p.exp_string("big").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line("let kind = if n > 5 { \"huge\" } else").unwrap();
    p.exp_string("...>").unwrap();
    p.send_line("{ \"small\" }; print(`kind=${kind}`)").unwrap();
    p.exp_string("kind=small").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line("let total = n +").unwrap();
    p.exp_string("...>").unwrap();
    p.send_line("4; print(`total=${total}`)").unwrap();
    p.exp_string("total=7").unwrap();
    p.exp_string("steward>").unwrap();
    // A misspelt function: the nearest one, and :help.
    p.send_line("lst_users()").unwrap();
    p.exp_string("did you mean list_users?").unwrap();
    p.exp_string("steward>").unwrap();
    // :vars shows what each variable holds.
    p.send_line(r#"let gh = connect("github")"#).unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line(":vars").unwrap();
    p.exp_string("ARGS: map").unwrap();
    p.exp_string("n: i64 = 3").unwrap();
    p.exp_string("total: i64 = 7").unwrap();
    p.exp_string("gh: handle = Handle(github: github").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn deprovisioning_shows_its_plan_and_asks_once_before_anything_is_taken() {
    let env = Env::new();
    let mut p = spawn(&env);
    p.send_line(r#"let r = connect("github").deprovision_all(["user0001", "user0050"], #{reason: "left"})"#).unwrap();
    p.exp_string("github user0001: suspend").unwrap();
    p.exp_string(r#"remove SSH key "user0001's laptop" [cannot be undone]"#).unwrap();
    p.exp_string("github user0050: take administrator rights away").unwrap();
    p.exp_string("6 steps, 4 of them cannot be undone").unwrap();
    p.exp_string("[y/N]").unwrap();
    p.send_line("n").unwrap();
    p.exp_string("declined at the confirmation prompt; nothing was changed").unwrap();
    p.exp_string("steward>").unwrap();
    // Asked again and accepted: one answer covers every step.
    p.send_line(r#"connect("github").deprovision_all(["user0001", "user0050"], #{reason: "left"}).map(|r| r.status)"#)
        .unwrap();
    p.exp_string("[y/N]").unwrap();
    p.send_line("y").unwrap();
    p.exp_string("done").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

/// Ctrl-C at a confirmation answers at once, without Enter: nothing is changed and the session goes on.
#[test]
fn ctrl_c_at_a_confirmation_answers_at_once_and_changes_nothing() {
    let env = Env::new();
    let mut p = spawn(&env);
    p.send_line(r#"connect("github").deprovision_all(["user0001"], #{reason: "left"})"#).unwrap();
    p.exp_string("[y/N]").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("steward>").unwrap();
    p.send_line(r#"connect("github").get_user("user0001").suspended"#).unwrap();
    p.exp_string("false").unwrap();
    p.exp_string("steward>").unwrap();
    // The next question is asked and answered as usual: the stop was this one's only.
    p.send_line(r#"connect("github").deprovision_all(["user0001"], #{reason: "left"}).map(|r| r.status)"#).unwrap();
    p.exp_string("[y/N]").unwrap();
    p.send_line("y").unwrap();
    p.exp_string("done").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

/// Tab after `:help ` completes any operation, methods too (a profile name's closing quote: the session test).
#[test]
fn help_completes_any_operation() {
    let env = Env::new();
    let mut p = spawn(&env);
    type_and_tab(&mut p, ":help unsusp");
    p.send_line("").unwrap();
    // Completed, or this would be "no function named unsusp".
    p.exp_string("h.unsuspend(").unwrap();
    p.exp_string("steward>").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}
