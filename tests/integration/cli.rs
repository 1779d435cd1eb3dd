//! The command line itself: help, completions, exit codes, config errors, profiles.

use crate::util::{Env, Sandbox};

#[test]
fn help_names_every_subcommand() {
    let run = Env::new().run(&["--help"]).success();
    for sub in ["shell", "run", "eval", "audit", "runs", "undo", "profiles", "sandbox", "completions"] {
        assert!(run.stdout.contains(sub), "help lacks {sub}\n{}", run.report());
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        Env::new().run(&["completions", shell]).success().stdout_has("steward");
    }
}

#[test]
fn a_config_error_names_the_file_line_and_key_and_exits_2() {
    let env = Env::new();
    env.write_config(
        "[profiles.ghes]\nkind = \"github\"\nurl = \"https://ghe.example.com/api/v3\"\ntokn_env = \"X\"\n",
    );
    env.run(&["profiles", "list"])
        .code(2)
        .stderr_has("config.toml")
        .stderr_has("line 4")
        .stderr_has("tokn_env")
        .stderr_has("hint:");
}

#[test]
fn an_inline_token_in_a_readable_config_is_refused() {
    let env = Env::new();
    let path = env.write_config(
        "[profiles.ghes]\nkind = \"github\"\nurl = \"https://h/api/v3\"\ntoken = \"ghp_inlineinlineinline1\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = env.run(&["profiles", "list"]).code(2).stderr_has("chmod 600");
    assert!(!run.stderr.contains("inlineinline"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.run(&["profiles", "list"]).success().stdout_has("config-file");
}

#[test]
fn an_unknown_default_profile_is_a_usage_error() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    env.run(&["--profile", "nope", "eval", "1"]).code(2).stderr_has("--profile nope");
}

#[test]
fn profiles_list_show_and_test() {
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    let list = env.run(&["--format", "json", "profiles", "list"]).success();
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["profile"], "ghes");
    assert_eq!(rows[0]["token_source"], "env:GHES_TOKEN (set)");
    assert_eq!(rows[0]["default"], true);
    assert!(list.stderr.contains("config.toml"), "names the file it read: {}", list.report());
    let mut unset = env.cmd();
    unset.env_remove("GHES_TOKEN").args(["--format", "json", "profiles", "list"]);
    crate::util::Run::of(unset).success().stdout_has("env:GHES_TOKEN (NOT SET)");
    env.run(&["profiles", "show", "ghes"]).success().stdout_has("user0002");
    env.run(&["profiles", "show", "nope"]).code(2).stderr_has("profiles list");
    let test = env.run(&["--format", "json", "profiles", "test"]).success();
    assert!(test.stdout.contains("\"identity\": \"admin\""), "{}", test.report());
    assert!(test.stdout.contains("site administrator"), "{}", test.report());
    assert!(!test.stdout.contains(crate::util::ADMIN_TOKEN));
    // Every profile at once, Travis (no whoami) by what its token may read; a failing one makes exit 1.
    let all = env.run(&["--sandbox", "--format", "json", "profiles", "test", "--all"]).success();
    assert!(
        all.stdout.contains("activity listing") && all.stdout.matches("\"verdict\": \"ok").count() == 4,
        "{}",
        all.report()
    );
    let broken = env.path("broken.toml");
    std::fs::write(
        &broken,
        "[profiles.down]\nkind = \"github\"\nurl = \"http://127.0.0.1:9\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 2\n",
    )
    .unwrap();
    env.run(&["--config", broken.to_str().unwrap(), "profiles", "test", "--all"]).code(1).stdout_has("FAILED");
}

#[test]
fn a_non_admin_token_is_reported_by_profiles_test() {
    let sb = Sandbox::start(3);
    let env = Env::with_sandbox(&sb);
    let mut cmd = env.cmd();
    cmd.env("GHES_TOKEN", steward_sandbox::USER_TOKEN).args(["--format", "json", "profiles", "test"]);
    crate::util::Run::of(cmd).success().stdout_has("NOT an administrator");
}

#[test]
fn the_sandbox_flag_needs_no_config_and_no_server() {
    let env = Env::new();
    let run = env.run(&["--sandbox", "--format", "json", "eval", r#"connect("github").list_users().len()"#]).success();
    assert_eq!(run.stdout.trim(), "102");
    env.run(&["--sandbox", "--format", "csv", "eval", r#"connect("github").list_users(#{admin: true})"#])
        .success()
        .stdout_has("user0050");
    // `steward sandbox` serves; options for acting on services are refused by name (and left out of its help:
    // second_hour::sandbox_help_shows_only_its_own_options).
    env.run(&["sandbox", "--dry-run", "--yes"])
        .code(2)
        .stderr_has("--dry-run, --yes do not apply to `steward sandbox`");
}

/// A rehearsal spans commands as it would on the real services: what one `--sandbox` process changed is there
/// for the next (kept beside the sandbox's log), so `undo` of a suspension puts it back instead of finding the
/// user "already active" in a fresh sandbox.
#[test]
fn a_sandbox_rehearsal_spans_commands_and_undo_puts_back_what_it_changed() {
    let env = Env::new();
    let suspended = |env: &Env| {
        let expr = r#"connect("github").get_user("user0007").suspended"#;
        env.run(&["--sandbox", "--format", "json", "eval", expr]).success().stdout.trim().to_string()
    };
    assert_eq!(suspended(&env), "false");
    let expr = r#"connect("github").suspend("user0007", #{reason: "rehearsal"}).ok"#;
    env.run(&["--sandbox", "--yes", "--format", "json", "eval", expr]).success().stdout_has("true");
    assert_eq!(suspended(&env), "true", "the next process sees the suspension");
    let runs: serde_json::Value =
        serde_json::from_str(&env.run(&["--sandbox", "--format", "json", "runs"]).success().stdout).unwrap();
    let run = runs[0]["run"].as_i64().expect("the suspension's run").to_string();
    let undo = env.run(&["--sandbox", "--yes", "--format", "json", "undo", &run]).success();
    assert!(undo.stdout.contains("\"status\": \"ok\""), "undo put it back: {}", undo.report());
    assert_eq!(suspended(&env), "false");
    // A state that does not read is refused, saying how to start afresh; the real log is never touched.
    // Beside the sandbox's log: next to the file log, or in the data directory when the real log is a team's.
    let state =
        [env.path("sandbox-audit.db.services.json"), env.path("xdg-data/steward/sandbox-audit.db.services.json")]
            .into_iter()
            .find(|p| p.exists())
            .expect("kept beside the sandbox's log");
    std::fs::write(&state, "{not json").unwrap();
    env.run(&["--sandbox", "eval", "1"]).code(2).stderr_has("delete it to start the sandbox afresh");
    std::fs::remove_file(&state).unwrap();
    assert_eq!(suspended(&env), "false");
    assert!(!env.audit_db().exists(), "rehearsals stay off the real log");
}

#[test]
fn a_long_ghes_listing_marks_what_it_does_not_know_and_a_short_one_reads_it() {
    let env = Env::new();
    // 102 users: past the 100 read in detail unasked, so email, name and suspended are unknown, shown as `?`.
    let all = env.run(&["--sandbox", "--format", "csv", "eval", r#"connect("github").list_users()"#]).success();
    let row = all.stdout.lines().find(|l| l.contains(",user0005,")).expect("user0005");
    assert!(row.contains(",?,"), "{row}");
    // The admins (3) are read in detail: real values, no `?`.
    let admins = env.run(&["--sandbox", "--format", "csv", "eval", r#"connect("github").list_users(#{admin: true})"#]);
    let admins = admins.success();
    assert!(!admins.stdout.contains('?') && admins.stdout.contains("@example.com"), "{}", admins.stdout);
}

#[test]
fn eval_prints_tables_json_and_csv() {
    let env = Env::new();
    env.run(&["--sandbox", "--format", "table", "eval", r#"connect("github").list_users(#{admin: true})"#])
        .success()
        .stdout_has(" login ")
        .stdout_has("3 rows");
    env.run(&["--format", "json", "eval", "#{a: 1}"]).success().stdout_has("\"a\": 1");
}

#[test]
fn a_script_syntax_error_names_file_line_column_with_a_caret() {
    let env = Env::new();
    env.write("bad.rhai", "let x = 1;\nlet y = (x + ;\n");
    let run = env.run(&["run", "bad.rhai"]).code(1).stderr_has("bad.rhai:2:");
    assert!(run.stderr.contains("2 | let y = (x + ;") && run.stderr.contains('^'), "{}", run.report());
}

#[test]
fn a_missing_script_is_a_usage_error() {
    Env::new()
        .run(&["run", "nope.rhai"])
        .code(2)
        .stderr_has("no script nope.rhai: not a file here, nor a stock script");
    Env::new().run(&["run", "dir/nope.rhai"]).code(2).stderr_has("cannot read the script dir/nope.rhai");
}

#[test]
fn scripts_get_their_arguments_and_can_import_the_stdlib() {
    let env = Env::new();
    env.write("args.rhai", "import \"users\" as users;\nprint(`reason=${ARGS.reason}`);\nprint(users::logins(users::admins(connect(\"github\"))));\n");
    env.run(&["--sandbox", "run", "args.rhai", "--arg", "reason=left the company"])
        .success()
        .stdout_has("reason=left the company")
        .stdout_has("[\"admin\", \"user0050\", \"user0100\"]");
}

#[test]
fn malformed_csv_is_reported_with_its_line() {
    let env = Env::new();
    env.write("leavers.csv", "login,reason\nuser0001,left\nuser0003\n");
    env.run(&["eval", r#"read_csv("leavers.csv")"#]).code(1).stderr_has("leavers.csv").stderr_has("line 3");
}

#[test]
fn runaway_scripts_are_stopped_by_the_engine_limits() {
    let env = Env::new();
    // Exploding data meets the heap budget (checked after every operation), not Rhai's per-push size checks.
    env.write_config("script_memory_mb = 128\n");
    env.run(&["eval", "fn f(n) { f(n + 1) } f(0)"]).code(1).stderr_has("Stack overflow");
    env.run(&["eval", r#"let s = "x"; loop { s += s; }"#]).code(1).stderr_has("holds more than 128 MB");
    env.run(&["eval", r#"eval("1")"#]).code(1).stderr_has("eval");
    env.run(&["eval", "loop {}"]).code(1).stderr_has("past the engine's limit of operations");
    env.run(&["eval", "let a = [1]; loop { a += a; }"]).code(1).stderr_has("holds more than 128 MB");
    // A large result is built within the default budgets (it took quadratic time while Rhai re-measured the
    // array on every push; BENCHMARKS.md has the figures).
    env.run(&["eval", "let a = []; for i in 0..100000 { a.push(#{login: `u${i}`, n: i}) } a.len()"])
        .success()
        .stdout_has("100000");
    env.run(&["eval", r#"import "/etc/passwd" as x; 1"#]).code(1).stderr_has("beside the script");
    let nested = env.write("nested.rhai", &format!("{}{}", "[".repeat(5000), "]".repeat(5000)));
    env.run(&["run", nested.to_str().unwrap()]).code(1).stderr_has("maximum complexity");
}

#[test]
fn scripts_import_only_the_stdlib_and_files_beside_them() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("jobs/lib")).unwrap();
    env.write("jobs/lib/names.rhai", "fn greet(n) { `hi ${n}` }");
    env.write("evil.rhai", "fn greet(n) { \"evil\" }");
    env.write("jobs/ok.rhai", "import \"lib/names\" as names; print(names::greet(\"ann\"));");
    env.run(&["run", "jobs/ok.rhai"]).success().stdout_has("hi ann");
    let outside = env.path("evil").display().to_string();
    for (name, path) in [("up", "../evil"), ("absolute", outside.as_str()), ("dotted", "lib/../../evil")] {
        env.write("jobs/bad.rhai", &format!("import {path:?} as x; print(x::greet(1));"));
        let run = env.run(&["run", "jobs/bad.rhai"]).code(1).stderr_has("beside the script");
        assert!(!run.stdout.contains("evil"), "{name}\n{}", run.report());
    }
    // A symlink beside the script that leads out of its directory.
    std::os::unix::fs::symlink(env.path("evil.rhai"), env.path("jobs/link.rhai")).unwrap();
    env.write("jobs/bad.rhai", "import \"link\" as x; print(x::greet(1));");
    env.run(&["run", "jobs/bad.rhai"]).code(1).stderr_has("leads out of the script's directory");
}

#[test]
fn data_nested_ten_thousand_deep_is_an_error_not_a_crash() {
    let env = Env::new();
    // It overflowed the 8 MB main-thread stack and aborted the process (no run end, no checkpoint).
    let run = env.run(&["eval", "let a = []; for i in 0..10000 { a = [a]; } json(a)"]);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("nested more than 512 levels deep"), "{}", run.report());
}

#[test]
fn huge_literals_are_refused_when_parsed_and_the_error_shows_only_their_neighbourhood() {
    let env = Env::new();
    let keys: Vec<String> = (0..10_001).map(|i| format!("k{i}: {i}")).collect();
    for (name, script, says) in [
        ("string.rhai", format!("let s = \"{}\";", "x".repeat(17 << 20)), "Length of string exceeds"),
        ("array.rhai", format!("let a = [{}];", "1,".repeat(300_000)), "array literal exceeds"),
        // A map literal parses in quadratic time, and nothing stops a parse: hence a cap of its own.
        (
            "map.rhai",
            format!("let m = #{{{}}};", keys.join(",")),
            "object map literal exceeds the maximum limit (10000)",
        ),
    ] {
        let path = env.write(name, &script);
        let run = env.run(&["run", path.to_str().unwrap()]).code(1).stderr_has(says);
        assert!(run.stderr.len() < 1_000, "{name}: {} bytes of error", run.stderr.len());
    }
}

#[test]
fn the_cpu_and_memory_budgets_stop_what_the_size_limits_would_stop_too_late_or_never() {
    for (config, script, says) in [
        // Each push re-measures the whole array: 250,000 of them (the size limit) take 40 s.
        ("script_cpu_seconds = 2", "let a = []; loop { a.push(a.len()); }", "computed for 2 s"),
        // Rhai does not size-check `m[k] = v`: only the heap budget stands between this loop and gigabytes.
        ("script_memory_mb = 32", "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }", "holds more than 32 MB"),
    ] {
        let env = Env::new();
        env.write_config(&format!("{config}\n"));
        let key = config.split(' ').next().unwrap();
        env.run(&["eval", script]).code(1).stderr_has(says).stderr_has(key);
    }
}

#[test]
fn ctrl_c_cancels_a_running_script() {
    let env = Env::new();
    let child = env
        .cmd()
        .args(["eval", "loop { }"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    unsafe_kill(child.id() as i32, 2);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled by Ctrl-C"));
}

/// Sends a signal with the system `kill`, keeping the tests free of unsafe code.
fn unsafe_kill(pid: i32, signal: i32) {
    std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
}

#[test]
fn run_ids_are_shown_where_people_need_them_and_runs_lists_them() {
    let sb = Sandbox::slow(60, 150);
    let env = Env::with_sandbox(&sb);
    env.write("job.rhai", r#"connect("ghes").suspend_all(["user0003", "user0004", "user0002"], #{reason: "x"});"#);
    // A job's summary names its run, the id --resume and undo take.
    env.run(&["--yes", "run", "job.rhai"]).success().stderr_has("suspend_all on ghes (run 1): 3 items in");
    env.run(&["--yes", "eval", r#"connect("ghes").suspend_all(["user0005"], #{reason: "x"})"#])
        .success()
        .stderr_has("(run 2): 1 item in");
    // A job stopped midway says how to finish it.
    let ids: Vec<String> = (6..=60).map(|i| format!("user{i:04}")).collect();
    env.write("long.rhai", &format!("connect(\"ghes\").suspend_all({ids:?}, #{{reason: \"x\"}});"));
    env.run(&["--yes", "--timeout", "2", "run", "long.rhai", "--arg", "password=hunter2hunter2"])
        .code(1)
        .stderr_has("cancelled")
        .stderr_has("ran longer than --timeout 2 s")
        .stderr_has("run 3 stopped before its end; finish it with `steward run long.rhai --arg 'password=<the same value>' --resume 3`");
    env.run(&["--yes", "run", "long.rhai", "--arg", "password=hunter2hunter2", "--resume", "3"]).success();
    let runs: serde_json::Value =
        serde_json::from_str(&env.run(&["--format", "json", "runs"]).success().stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert_eq!((runs[0]["run"].as_i64(), runs[0]["job"].as_i64()), (Some(4), Some(3)), "the resume is job 3's");
    assert_eq!(runs[0]["status"], "ok");
    assert_eq!(runs[3]["outcomes"], "ok 2, skipped 1", "{:?}", runs[3]);
    assert_eq!(runs[3]["script"], "job.rhai");
    assert_eq!(runs[2]["script"], "(eval or REPL)");
    let shown: serde_json::Value =
        serde_json::from_str(&env.run(&["--format", "json", "runs", "show", "4"]).success().stdout).unwrap();
    assert_eq!(shown["job_runs"], serde_json::json!([3, 4]));
    assert!(shown["items"].as_array().unwrap().iter().all(|i| i["op"] == "suspend"), "{shown}");
    assert!(
        shown["command"].as_str().unwrap().contains("--resume 4")
            || shown["command"].as_str().unwrap().contains("--resume 3")
    );
    env.run(&["runs", "show", "99"]).code(2).stderr_has("there is no run 99");
    // `runs --limit` as a newcomer types it (it was refused: only `runs list --limit` took it).
    for args in
        [&["--format", "json", "runs", "--limit", "2"][..], &["--format", "json", "runs", "list", "--limit", "2"]]
    {
        let newest: serde_json::Value = serde_json::from_str(&env.run(args).success().stdout).unwrap();
        let ids: Vec<i64> = newest.as_array().unwrap().iter().filter_map(|r| r["run"].as_i64()).collect();
        assert_eq!(ids, [4, 3], "{args:?}");
    }
}

#[test]
fn small_things_a_newcomer_trips_over() {
    let sb = Sandbox::start(10);
    let env = Env::with_sandbox(&sb);
    // A script from standard input.
    let mut cmd = env.cmd();
    cmd.args(["--yes", "run", "-"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        br#"connect("ghes").suspend("user0004", #{reason: "from stdin"}); print("done");"#,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("done"), "{out:?}");
    // The log is searchable for any profile it holds, even one today's config no longer has.
    env.write_config("[profiles.other]\nkind = \"github\"\nurl = \"http://127.0.0.1:9\"\n");
    let rows = env.run(&["--profile", "ghes", "--format", "json", "audit", "list", "--since", "1h", "--limit", "1"]);
    let rows: serde_json::Value = serde_json::from_str(&rows.success().stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["profile"], "ghes");
    env.run(&["audit", "list", "--op", "suspnd"]).success().stderr_has("no event has op \"suspnd\"");
    env.run(&["audit", "list", "--since", "21/02/2025"]).code(2).stderr_has("7d");
    // An empty result as CSV is empty, not a blank header.
    let empty = env.run(&["--format", "csv", "eval", "[]"]).success();
    assert_eq!(empty.stdout, "", "{}", empty.report());
    // A reader that stops early is a quiet end.
    let mut cmd = env.cmd();
    cmd.args(["completions", "bash"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{out:?}");
}

#[test]
fn bash_completes_profile_names_from_the_config() {
    if std::process::Command::new("bash").arg("--version").output().is_err() {
        return;
    }
    let sb = Sandbox::start(1);
    let env = Env::with_sandbox(&sb);
    let config = std::fs::read_to_string(env.path("config.toml")).unwrap();
    // A hostile name in the config: a shell would run it if completion offered it to `compgen -W`.
    env.write_config(&format!(
        "{config}\n[profiles.ghes-backup]\nkind = \"github\"\nurl = \"{url}\"\n[profiles.\"gh$(touch pwned)\"]\nkind = \"github\"\nurl = \"{url}\"\n",
        url = sb.url()
    ));
    let script = env.run(&["completions", "bash"]).success().stdout;
    env.write("steward.bash", &script);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_steward")).parent().unwrap().display().to_string();
    // What bash does on `steward eval --profile gh<Tab>`.
    let mut cmd = std::process::Command::new("bash");
    env.configure(&mut cmd);
    cmd.env("PATH", format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default())).args([
        "-c",
        "source steward.bash; COMP_WORDS=(steward eval --profile gh); COMP_CWORD=3; COMP_LINE='steward eval --profile gh'; \
         COMP_POINT=${#COMP_LINE}; _steward steward gh --profile; printf '%s\\n' \"${COMPREPLY[@]}\"",
    ]);
    let out = crate::util::Run::of(cmd).success();
    let offered: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(offered, ["ghes", "ghes-backup"], "{}", out.report());
    // Where a command takes the profile by its position: `steward profiles show gh<Tab>`, `profiles test <Tab>`.
    for (words, cur) in [("steward profiles show gh", "gh"), ("steward profiles test gh", "gh")] {
        let mut cmd = std::process::Command::new("bash");
        env.configure(&mut cmd);
        cmd.env("PATH", format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default())).args([
            "-c",
            &format!(
                "source steward.bash; COMP_WORDS=({words}); COMP_CWORD=3; COMP_LINE='{words}'; \
                 COMP_POINT=${{#COMP_LINE}}; _steward steward {cur} show; printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ),
        ]);
        let out = crate::util::Run::of(cmd).success();
        let offered: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(offered, ["ghes", "ghes-backup"], "{words}<Tab>: {}", out.report());
    }
    assert!(!env.path("pwned").exists(), "completing a profile name ran a command from the config");
}

#[test]
fn an_error_inside_an_imported_module_points_at_the_call_in_the_script() {
    let env = Env::new();
    env.write("helpers.rhai", "// helpers\n\n\nfn boom() {\n    let x = 1;\n    x.no_such_method()\n}\n");
    env.write("job.rhai", "import \"helpers\" as h;\nh::boom();\n");
    let run = env.run(&["run", "job.rhai"]).code(1);
    assert!(run.stderr.contains("job.rhai:2:"), "the caret is on the call, line 2: {}", run.report());
    assert!(run.stderr.contains("2 | h::boom();"), "{}", run.report());
}

/// Output people read is compared whole against a file under `tests/integration/expected/`: a change shows as a
/// diff in review. `STEWARD_BLESS=1 cargo test` rewrites the files after an intended change.
fn expect_exactly(name: &str, actual: &str) {
    let path = crate::util::repo().join("tests/integration/expected").join(name);
    if std::env::var_os("STEWARD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} changed (STEWARD_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn help_tables_and_csv_read_exactly_as_expected() {
    let env = Env::new();
    expect_exactly("help.txt", &env.run(&["--help"]).success().stdout);
    expect_exactly("runs-help.txt", &env.run(&["runs", "--help"]).success().stdout);
    let users = r#"[#{login: "bob", id: 7, email: "bob@example.com", admin: false, suspended: ()}, #{login: "=cmd", id: 8, email: (), admin: true, suspended: true}]"#;
    expect_exactly("users-table.txt", &env.run(&["--format", "table", "eval", users]).success().stdout);
    expect_exactly("users.csv", &env.run(&["--format", "csv", "eval", users]).success().stdout);
}

/// The stock scripts are inside the binary: run by name from a directory with no `scripts/` (what `cargo
/// install` leaves), listed by `steward scripts`, each one's header shown by name; a misspelled name is refused
/// with the one meant, and a file of that name still wins.
#[test]
fn stock_scripts_run_by_name_from_anywhere() {
    let sb = Sandbox::start(12);
    let env = Env::with_sandbox(&sb);
    assert!(!env.path("scripts").exists());
    env.write("leavers.csv", "login\nuser0010\nuser0011\n");
    env.run(&["--yes", "run", "bulk_suspend", "--arg", "csv=leavers.csv", "--arg", "reason=left"]).success();
    let suspended = sb.suspended();
    assert!(suspended.contains(&"user0010".to_string()) && suspended.contains(&"user0011".to_string()));
    // The run names the stock script it ran.
    let runs = env.run(&["--format", "json", "runs", "--limit", "1"]).success();
    assert!(runs.stdout.contains("stock:bulk_suspend"), "{}", runs.stdout);
    let list = env.run(&["--format", "json", "scripts"]).success();
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 12);
    assert!(list.stdout.contains("\"offboard\"") && list.stdout.contains("suspend every user listed in a CSV file"));
    env.run(&["scripts", "suspend_inactive"])
        .success()
        .stdout_has("--arg apply=true")
        .stdout_has("steward run suspend_inactive");
    env.run(&["run", "bulk_suspnd", "--arg", "csv=leavers.csv"]).code(2).stderr_has("did you mean bulk_suspend?");
    env.run(&["scripts", "ofboard"]).code(2).stderr_has("did you mean offboard?");
    env.write("bulk_suspend", "print(\"a file of that name\")");
    env.run(&["run", "bulk_suspend"]).success().stdout_has("a file of that name");
}

/// `steward runs` lists the runs that changed something, with the outcomes of changes only and the time the
/// process started; the runs that only read (an eval, `profiles test`) are there with `--all`.
#[test]
fn runs_are_the_runs_that_changed_something() {
    let sb = Sandbox::slow(5, 300);
    let env = Env::with_sandbox(&sb);
    env.run(&["eval", r#"connect().list_users().len()"#]).success();
    // A run that reads for a while (two slow lookups) before its one change.
    env.run(&["--yes", "eval", r#"let h = connect(); h.get_user("user0003"); h.suspend("user0004", #{reason: "x"})"#])
        .success();
    env.run(&["eval", r#"connect().get_user("user0001")"#]).success();
    let runs: serde_json::Value =
        serde_json::from_str(&env.run(&["--format", "json", "runs"]).success().stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "reads-only runs are left out: {runs:?}");
    assert_eq!(runs[0]["outcomes"], "ok 1", "the change's outcome, not the reads': {:?}", runs[0]);
    let all: serde_json::Value =
        serde_json::from_str(&env.run(&["--format", "json", "runs", "--all"]).success().stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    // Started when the process started, not at its first write (after the slow reads).
    let shown: serde_json::Value = serde_json::from_str(
        &env.run(&["--format", "json", "runs", "show", &runs[0]["run"].to_string()]).success().stdout,
    )
    .unwrap();
    let rows = env.audit_rows(&["--op", "suspend"]);
    let first_event = rows.iter().filter_map(|r| r["ts"].as_str()).min().unwrap().to_string();
    let started = runs[0]["started"].as_str().unwrap_or_else(|| panic!("{shown}")).to_string();
    assert!(started < first_event, "started {started}, first event {first_event}");
}

/// `steward run SCRIPT --help` prints the --args the script declares, with their meaning, and runs nothing; a
/// script of one's own declares them the same way; `steward run --help` is the command's own help.
#[test]
fn run_script_help_lists_its_declared_arguments_without_running_it() {
    let env = Env::new();
    let help = env.run(&["run", "suspend_inactive", "--help"]).success();
    assert!(
        help.stdout.contains("steward run suspend_inactive: report the users inactive since a date"),
        "{}",
        help.report()
    );
    let line =
        |key: &str| help.stdout.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_default().to_string();
    let (since, apply) = (line("since "), line("apply "));
    assert!(since.contains("text, required") && since.contains("YYYY-MM-DD"), "{}", help.report());
    assert!(apply.contains("flag") && apply.contains("true to suspend (default: plan only)"), "{}", help.report());
    env.run(&["--sandbox", "run", "suspend_inactive"]).code(2).stderr_has("this script needs --arg since=…");
    env.write("mine.rhai", "// mine.rhai: greet someone.\n//\n// Arguments:\n//   who   the one to greet\nlet ARGS = arguments(ARGS, #{ who: \"text\", loud: \"flag\" });\nthrow \"ran\";\n");
    let mine = env.run(&["run", "mine.rhai", "-h"]).success();
    assert!(
        mine.stdout.contains("who   text  the one to greet") && mine.stdout.contains("loud  flag"),
        "{}",
        mine.report()
    );
    assert!(!env.audit_db().exists(), "nothing ran, nothing was recorded");
    env.run(&["run", "--help"]).success().stdout_has("Usage: steward run");
    env.run(&["run"]).code(2).stderr_has("<FILE>");
}
