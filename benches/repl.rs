//! REPL responsiveness after a runaway script is stopped (`cargo bench --bench repl`): the REPL runs on a
//! pseudo-terminal; each round starts a hostile line, stops it (Ctrl-C, or the engine's own limits), and times
//! how long until the session answers `40 + 2`. The plan's target is an answer within 100 ms of the abort.

use rexpect::session::PtySession;

use std::time::{Duration, Instant};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");
const ROUNDS: usize = 20;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = spawn(dir.path());
    println!("REPL responsiveness, {ROUNDS} rounds each (time from the abort to the answer of the next line):");

    // Ctrl-C while a loop runs: from the keystroke to the next answer.
    let times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            p.send_line("let i = 0; loop { i += 1; }").expect("send");
            std::thread::sleep(Duration::from_millis(150));
            let t = Instant::now();
            p.send_control('c').expect("ctrl-c");
            wait_for(&mut p, "cancelled by Ctrl-C");
            answer(&mut p);
            t.elapsed()
        })
        .collect();
    report("Ctrl-C during `loop { i += 1 }`", times);

    // Scripts the engine stops by itself: from sending the line to the next answer (the abort included).
    for (what, line, expect) in [
        ("string doubling (script_memory_mb = 256)", r#"let s = "x"; loop { s += s; }"#, "holds more than"),
        ("deep recursion (max_call_levels)", "fn f(n) { f(n + 1) } f(0)", "Stack overflow"),
        ("`loop {}` (max_operations)", "loop {}", "operations"),
        ("push loop (script_cpu_seconds = 2)", "let a = []; loop { a.push(a.len()); }", "computed for 2 s"),
    ] {
        let times: Vec<Duration> = (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                p.send_line(line).expect("send");
                wait_for(&mut p, expect);
                answer(&mut p);
                t.elapsed()
            })
            .collect();
        report(what, times);
    }
    p.send_control('d').expect("ctrl-d");
}

fn spawn(home: &std::path::Path) -> PtySession {
    let config = home.join("config.toml");
    std::fs::write(&config, "script_cpu_seconds = 2\nscript_memory_mb = 256\n").expect("config");
    let mut cmd = std::process::Command::new("sh");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("STEWARD_AUDIT_DB", home.join("audit.db"))
        .env("STEWARD_CONFIG", &config)
        .env("TERM", "xterm")
        .args(["-c", &format!("stty cols 160 rows 50; exec '{STEWARD}'")]);
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).expect("the REPL starts");
    p.exp_string("steward>").expect("a prompt");
    p
}

/// Waits for the prompt, asks `40 + 2`, and waits for the answer and the next prompt.
fn answer(p: &mut PtySession) {
    wait_for(p, "steward>");
    p.send_line("40 + 2").expect("send");
    wait_for(p, "42");
    wait_for(p, "steward>");
}

/// Reads until `needle` appears, checking every millisecond (rexpect's own matching polls every 100 ms, which
/// would round every figure up to a multiple of it).
fn wait_for(p: &mut PtySession, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while !seen.ends_with(needle) {
        match p.try_read() {
            Some(c) => seen.push(c),
            None if Instant::now() > deadline => panic!("no {needle:?} within a minute; got {seen:?}"),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what:<40} median {:>7.1} ms   p95 {:>7.1} ms   max {:>7.1} ms",
        ms(times[times.len() / 2]),
        ms(times[(times.len() * 95 / 100).min(times.len() - 1)]),
        ms(times[times.len() - 1])
    );
}
