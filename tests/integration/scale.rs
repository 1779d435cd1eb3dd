//! Scale: listings walked lazily (`for u in h.users()`) and exports written as pages arrive, on the sandbox's
//! services and against a server that fails midway. Memory and speed figures live in `benches/scale.rs`.

use crate::hostile::{json_with, Hostile, Reply};
use crate::util::{run_services, services_env, Env, Sandbox};
use serde_json::Value;

fn eval(env: &Env, expr: &str) -> Value {
    let run = run_services(env, &["--format", "json", "eval", expr], None).success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.report()))
}

#[test]
fn users_walks_the_same_users_as_list_users_on_every_service() {
    let sb = Sandbox::start(250);
    let env = services_env(&sb);
    for profile in ["ghes", "tfe", "tl"] {
        for filter in ["", "#{admin: true}", "#{suspended: true}", "#{admin: false, suspended: false}"] {
            let expr = format!(
                r#"let h = connect("{profile}"); let walked = [];
                   for u in h.users({filter}) {{ walked.push(u.login); }}
                   [walked, h.list_users({filter}).map(|u| u.login)]"#
            );
            let both = eval(&env, &expr);
            let walked = both[0].as_array().cloned().unwrap_or_default();
            assert!(!walked.is_empty(), "{profile} {filter}: nothing walked");
            assert_eq!(both[0], both[1], "{profile} {filter}");
        }
    }
    // One audit record per listing walked, like any read.
    let rows: Vec<Value> =
        env.audit_rows(&["--op", "list_users"]).into_iter().filter(|r| r["profile"] == "ghes").collect();
    assert_eq!(rows.len(), 8, "4 walks and 4 lists: {rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
}

#[test]
fn a_loop_that_stops_early_reads_only_a_few_pages_ahead() {
    let sb = Sandbox::start(2_000);
    let env = Env::with_sandbox(&sb);
    let n = env.eval_json(r#"let n = 0; for u in connect("ghes").users() { n += 1; if n == 150 { break; } } n"#);
    assert_eq!(n, 150);
    let pages = sb.count("GET /api/v3/users");
    // Pages 1-2, the four a walk reads ahead (dispatch::listing::PAGES_READ_AHEAD), one being read and the one
    // it names, asked for as soon as it is known.
    let most = 2 + 4 + 1 + 1;
    assert!((2..=most).contains(&pages), "users 1-150 are on pages 1-2, then a few read ahead: {pages} pages");
    let rows = env.audit_rows(&["--op", "list_users"]);
    assert_eq!(rows.len(), 1, "the walk is on record once it ends: {rows:?}");
    assert_eq!(rows[0]["status"], "ok");
}

#[test]
fn a_walk_resumes_where_the_last_loop_stopped_and_ends_once() {
    let sb = Sandbox::start(150);
    let env = Env::with_sandbox(&sb);
    let counts = env.eval_json(
        r#"let all = connect("ghes").users(); let a = 0; let b = 0;
           for u in all { a += 1; if a == 10 { break; } }
           for u in all { b += 1; }
           let c = 0; for u in all { c += 1; }
           [a, b, c]"#,
    );
    assert_eq!(counts, serde_json::json!([10, 142, 0]), "152 users: 10, then the other 142, then none");
}

#[test]
fn a_page_that_fails_midway_is_a_catchable_error_after_the_users_before_it() {
    // Page 1 is fine and names page 2; page 2 is an HTML error page. (150 users: GHES holds back a listing's
    // first 100 users until it knows the listing is longer, to read a short one in detail.)
    let server = Hostile::start(|seen| {
        if seen.line.contains("page=2") {
            Reply::Raw { content_type: "text/html", body: b"<html>502 Bad Gateway</html>".to_vec() }
        } else {
            let users: Vec<String> = (1..=150)
                .map(|n| format!(r#"{{"login": "user{n}", "id": {n}, "type": "User", "site_admin": false}}"#))
                .collect();
            json_with(
                &[("Link", "</api/v3/users?per_page=100&page=2>; rel=\"next\"")],
                format!("[{}]", users.join(",")),
            )
        }
    });
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.h]\nkind = \"github\"\nurl = \"{}/api/v3\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 5\n",
        server.base()
    ));
    let out = env.eval_json(
        r#"let n = 0; let why = ();
           try { for u in connect("h").users() { n += 1; } } catch (e) { why = e; }
           #{n: n, kind: why.kind, message: why.message}"#,
    );
    assert_eq!(out["n"], 150, "the first page's users were walked: {out}");
    assert_eq!(out["kind"], "invalid", "{out}");
    assert!(out["message"].as_str().unwrap_or_default().contains("text/html"), "{out}");
    let rows = env.audit_rows(&["--op", "list_users"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    // Uncaught, it stops the script with the error and its place.
    // (A loop with an empty body is not one: Rhai's `for` drops its iterator's errors when there is no body.)
    let run = env.run(&["eval", r#"let n = 0; for u in connect("h").users() { n += 1; }"#]);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("not the JSON expected"), "{}", run.report());
}

#[test]
fn write_csv_of_a_walk_writes_what_write_csv_of_the_list_writes() {
    let sb = Sandbox::start(250);
    let env = Env::with_sandbox(&sb);
    let streamed = env.path("streamed.csv").display().to_string();
    let listed = env.path("listed.csv").display().to_string();
    let n = env.eval_json(&format!(
        r#"let h = connect("ghes"); [write_csv("{streamed}", h.users()), write_csv("{listed}", h.list_users(#{{detail: false}}))]"#
    ));
    assert_eq!(n, serde_json::json!([252, 252]));
    let (a, b) = (std::fs::read_to_string(&streamed).unwrap(), std::fs::read_to_string(&listed).unwrap());
    assert_eq!(a, b);
    // Columns named: only those, in that order; an empty walk writes an empty file.
    let named = env.path("named.csv").display().to_string();
    env.eval_json(&format!(r#"write_csv("{named}", connect("ghes").users(#{{admin: true}}), ["login", "admin"])"#));
    let text = std::fs::read_to_string(&named).unwrap();
    assert!(text.starts_with("login,admin\nadmin,true\nuser0050,true\n"), "{text}");
    let none = env.path("none.csv").display().to_string();
    assert_eq!(env.eval_json(&format!(r#"write_csv("{none}", connect("ghes").users(#{{q: "nobody-here"}}))"#)), 0);
    assert_eq!(std::fs::read_to_string(&none).unwrap(), "");
}

#[test]
fn a_service_without_a_user_listing_says_so_when_the_walk_is_asked_for() {
    let sb = Sandbox::start(5);
    let env = services_env(&sb);
    let run = run_services(&env, &["eval", r#"connect("travis").users()"#], None);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("list_users is not supported by travis"), "{}", run.report());
}

#[test]
fn a_walk_is_bounded_by_pages_not_by_the_items_it_no_longer_holds() {
    // A Link to a new page every time, 100 users a page: endless.
    let server = Hostile::start(|seen| {
        let n: usize =
            seen.line.split("&page=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(1);
        let users: Vec<String> =
            (0..100).map(|i| format!(r#"{{"login": "u{n}x{i}", "id": {}, "type": "User"}}"#, n * 1000 + i)).collect();
        let link = format!("</api/v3/users?per_page=100&page={}>; rel=\"next\"", n + 1);
        json_with(&[("Link", &link)], format!("[{}]", users.join(",")))
    });
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.h]\nkind = \"github\"\nurl = \"{}/api/v3\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 5\nmax_pages = 50\nmax_items = 1000\n",
        server.base()
    ));
    // Held whole, the 1,000 items stop it first; walked, the 50 pages do, after 5,000 users were walked.
    let held = env.run(&["eval", r#"connect("h").list_users().len()"#]);
    assert!(held.stderr.contains("passed 1000 items (max_items)"), "{}", held.report());
    let walked = env.eval_json(
        r#"let n = 0; let why = ""; try { for u in connect("h").users() { n += 1; } } catch (e) { why = e.message; } [n, why]"#,
    );
    assert_eq!(walked[0], 5_000, "{walked}");
    assert!(walked[1].as_str().unwrap_or_default().contains("did not end after 50 pages (max_pages)"), "{walked}");
}

#[test]
fn a_bulk_job_reads_its_csv_itself_and_writes_each_result_as_it_is_known() {
    let sb = Sandbox::start(60);
    let env = Env::with_sandbox(&sb);
    // Good rows, an already-suspended user (user0025), a protected one (user0002), a row with too many fields,
    // a duplicate, and a row naming nobody.
    env.write(
        "leavers.csv",
        "login,reason\nuser0010,left\nuser0025,left\nuser0002,left\nuser0011,left,extra\nuser0010,again\n,nobody\nuser0012,left\n",
    );
    let expr = r#"connect("ghes").suspend_all("leavers.csv", #{reason: "left", results: "leavers-suspended.csv"})"#;
    // Failed items make the exit status 3, as with an array.
    let run = env.run(&["--format", "json", "eval", expr]).code(3);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.report()));
    assert_eq!(summary["total"], 7, "{summary}");
    assert_eq!((summary["ok"].clone(), summary["noop"].clone()), (2.into(), 1.into()), "{summary}");
    assert_eq!((summary["skipped"].clone(), summary["failed"].clone()), (2.into(), 2.into()), "{summary}");
    assert_eq!(summary["results"], "leavers-suspended.csv");
    let now = sb.suspended();
    assert!(["user0010", "user0012"].iter().all(|u| now.contains(&u.to_string())), "{now:?}");
    assert!(!now.contains(&"user0002".to_string()) && !now.contains(&"user0011".to_string()), "{now:?}");
    // One row per item, each with its line, in the order results came.
    let text = std::fs::read_to_string(env.path("leavers-suspended.csv")).unwrap();
    let mut rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(text.lines().next(), Some("line,target,status,http_status,error"), "{text}");
    rows.sort();
    assert_eq!(rows.len(), 7, "{text}");
    assert!(rows.iter().any(|r| r.starts_with("2,user0010,ok,204")), "{text}");
    assert!(rows.iter().any(|r| r.starts_with("3,user0025,noop,")), "{text}");
    assert!(rows.iter().any(|r| r.starts_with("4,user0002,skipped,") && r.contains("protected")), "{text}");
    assert!(rows.iter().any(|r| r.starts_with("5,,failed,") && r.contains("3 fields, but the header has 2")), "{text}");
    assert!(rows.iter().any(|r| r.starts_with("7,,failed,") && r.contains("names no user")), "{text}");
}

#[test]
fn a_bulk_job_takes_a_walk_of_the_users() {
    let sb = Sandbox::start(30);
    let env = Env::with_sandbox(&sb);
    let statuses = env.eval_json(
        r#"let h = connect("ghes"); h.promote_all(h.users(#{q: "user001"}), #{dry_run: true}).map(|r| `${r.target}:${r.status}`)"#,
    );
    let expected: Vec<String> = (10..=19).map(|i| format!("user00{i}:dry-run")).collect();
    assert_eq!(statuses, serde_json::json!(expected));
    assert_eq!(sb.count_method("PUT"), 0, "a dry run sends nothing");
    // Without options too, from a walk or a file.
    env.write("ops.csv", "login\nuser0020\n");
    let done = env.eval_json(
        r#"let h = connect("ghes"); [h.promote_all(h.users(#{q: "user0021"}))[0].status, h.promote_all("ops.csv")[0].status]"#,
    );
    assert_eq!(done, serde_json::json!(["ok", "ok"]));
}

#[test]
fn a_results_file_holds_what_a_killed_job_did_and_the_resume_finishes() {
    let n = 2_000;
    let sb = Sandbox::slow(n, 4);
    let env = Env::new();
    env.write_config(&format!(
        "max_changes = 100000\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nconcurrency = 8\n",
        sb.url()
    ));
    let csv: String = std::iter::once("login".to_string())
        .chain((1..=n).map(|i| format!("user{i:04}")))
        .collect::<Vec<_>>()
        .join("\n");
    env.write("all.csv", &csv);
    env.write(
        "job.rhai",
        r#"let s = connect("ghes").suspend_all("all.csv", #{reason: "offboarding", results: ARGS.out}); print(s.ok + s.noop);"#,
    );
    let mut child = env
        .cmd()
        .args(["--yes", "run", "job.rhai", "--arg", "out=first.csv"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sb.suspended().len() < 400 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    let _ = child.wait();
    let done = sb.suspended().len();
    assert!(done < n, "the job finished before it was killed ({done})");
    // What the job did before the kill is on disk: every row written as its item finished.
    let first = std::fs::read_to_string(env.path("first.csv")).unwrap();
    let ok_rows = first.lines().filter(|l| l.contains(",ok,") || l.contains(",noop,")).count();
    // (Rows reach the file within 0.1 s of being known; the kill may take the last tenth of a second's.)
    assert!(ok_rows >= done / 2 && ok_rows <= done, "{ok_rows} rows for {done} suspended");
    // A resume is the same script with the same arguments: it writes the file anew, for the whole job.
    let resumed = env.run(&["--yes", "run", "job.rhai", "--arg", "out=first.csv", "--resume", "1"]).success();
    assert_eq!(sb.suspended().len(), n);
    assert_eq!(resumed.stdout.trim(), n.to_string(), "{}", resumed.report());
    let whole = std::fs::read_to_string(env.path("first.csv")).unwrap();
    assert_eq!(whole.lines().count(), n + 1, "a header and a row per user");
    let earlier = whole.lines().filter(|l| l.contains("already done in run 1")).count();
    assert!(earlier >= done / 2, "{earlier} rows say run 1 did them; {done} were suspended");
}

#[test]
fn a_walk_stopped_by_the_deadline_ends_promptly_and_is_on_record() {
    // 300 ms a page, 40 pages: a walk that would take 12 s, stopped at 2.
    let sb = Sandbox::slow(4_000, 300);
    let env = Env::with_sandbox(&sb);
    let started = std::time::Instant::now();
    let run = env.run(&["--timeout", "2", "eval", r#"let n = 0; for u in connect("ghes").users() { n += 1; } n"#]);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("--timeout 2"), "{}", run.report());
    assert!(started.elapsed() < std::time::Duration::from_secs(8), "took {:?}", started.elapsed());
    let pages = sb.count("GET /api/v3/users");
    assert!(pages < 12, "the walk stopped asking for pages: {pages}");
    let rows = env.audit_rows(&["--op", "list_users"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "failed", "{rows:?}");
}

#[test]
fn a_results_file_that_cannot_be_written_stops_the_job_before_anything_is_sent() {
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    let run = env
        .run(&["eval", r#"connect("ghes").suspend_all(["user0010"], #{reason: "x", results: "no/such/dir/out.csv"})"#]);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("cannot write no/such/dir/out.csv"), "{}", run.report());
    assert_eq!(sb.count_method("PUT"), 0);
}

#[test]
fn pages_asked_for_together_come_back_in_order_on_each_service() {
    // 20 users a page on Terraform (page numbers), every page once, the order the server lists.
    let sb = Sandbox::slow(500, 20);
    let env = services_env(&sb);
    let both = eval(
        &env,
        r#"let h = connect("tfe"); let w = []; for u in h.users(#{page_size: 20}) { w.push(u.login); }
           [w, h.list_users(#{page_size: 20}).map(|u| u.login)]"#,
    );
    let walked = both[0].as_array().cloned().unwrap_or_default();
    assert_eq!(walked.len(), 501, "the admin and 500 demo users");
    assert_eq!(both[0], both[1]);
    let distinct: std::collections::HashSet<_> = walked.iter().collect();
    assert_eq!(distinct.len(), 501, "no user twice");
    assert_eq!(sb.count("GET /api/v2/admin/users"), 2 * 26, "26 pages, each asked for once per listing");
}

#[test]
fn a_short_page_among_offsets_sends_the_walk_back_to_following_the_server() {
    // Synapse-like: 300 users, 100 a page by offset, but the pages at offsets 100 and 150 hold only 50 each
    // (next_token 150, then 200). Planned offsets (100, 200) would skip users 150-199; the walk must notice and
    // follow the server, which then names offset 200 again: the planned page dropped unread is no repeat.
    let server = Hostile::start(|seen| {
        let from: usize =
            seen.line.split("from=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(0);
        let count = if from == 100 || from == 150 { 50 } else { 100.min(300usize.saturating_sub(from)) };
        let users: Vec<String> =
            (from..from + count).map(|i| format!(r#"{{"name": "@u{i}:hs", "admin": false}}"#)).collect();
        let next = from + count;
        let token = if next < 300 { format!(r#", "next_token": "{next}""#) } else { String::new() };
        crate::hostile::json(format!(r#"{{"users": [{}], "total": 300{token}}}"#, users.join(",")))
    });
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.h]\nkind = \"synapse\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 5\n",
        server.base()
    ));
    let ids = env.eval_json(r#"let w = []; for u in connect("h").users() { w.push(u.id); } w"#);
    let expected: Vec<String> = (0..300).map(|i| format!("@u{i}:hs")).collect();
    assert_eq!(ids, serde_json::json!(expected));
}

#[test]
fn a_link_walk_asks_for_each_page_once_and_ends_at_an_empty_page_whatever_it_names_next() {
    // GHES-like pages of 100 named by `Link`; page 4 is empty yet names page 5, which holds a stranger.
    let server = Hostile::start(|seen| {
        let page: usize =
            seen.line.split("&page=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(1);
        let users: Vec<String> = match page {
            1..=3 => (0..100)
                .map(|i| {
                    let id = (page - 1) * 100 + i;
                    format!(r#"{{"login": "u{id}", "id": {id}, "type": "User", "site_admin": false}}"#)
                })
                .collect(),
            5 => vec![r#"{"login": "stranger", "id": 999, "type": "User"}"#.to_string()],
            _ => Vec::new(),
        };
        let link = format!(r#"<users?per_page=100&page={}>; rel="next""#, page + 1);
        json_with(&[("link", link.as_str())], format!("[{}]", users.join(",")))
    });
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.h]\nkind = \"github\"\nurl = \"{}/api/v3\"\ntoken_env = \"GHES_TOKEN\"\ntimeout = 5\n",
        server.base()
    ));
    let logins = env.eval_json(r#"let w = []; for u in connect("h").users(#{detail: false}) { w.push(u.login); } w"#);
    let expected: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    assert_eq!(logins, serde_json::json!(expected), "pages 1-3 in order; the empty page 4 ends the walk");
    let asked = |page: usize| {
        let named = |line: &str| line.contains(&format!("&page={page} ")) || (page == 1 && !line.contains("&page="));
        server.seen().iter().filter(|s| named(&s.line)).count()
    };
    for page in 1..=4 {
        assert_eq!(
            asked(page),
            1,
            "page {page} asked for once: {:?}",
            server.seen().iter().map(|s| &s.line).collect::<Vec<_>>()
        );
    }
    // Page 5 is named by the empty page, so it may have been asked for ahead; it is never read.
    assert!(asked(5) <= 1);
    assert_eq!(asked(6), 0, "nothing past what the empty page named");
}

#[test]
fn a_results_file_that_is_the_input_csv_by_another_name_is_refused() {
    let sb = Sandbox::start(20);
    let env = Env::with_sandbox(&sb);
    let input = "login\nuser0010\n";
    env.write("leavers.csv", input);
    std::os::unix::fs::symlink(env.path("leavers.csv"), env.path("alias.csv")).unwrap();
    for results in ["leavers.csv", "./leavers.csv", "alias.csv"] {
        let expr = format!(r#"connect("ghes").suspend_all("leavers.csv", #{{reason: "x", results: "{results}"}})"#);
        let run = env.run(&["eval", &expr]);
        assert_eq!(run.status, Some(1), "{results}: {}", run.report());
        assert!(run.stderr.contains("is the input file"), "{results}: {}", run.report());
    }
    assert_eq!(std::fs::read_to_string(env.path("leavers.csv")).unwrap(), input, "the input is untouched");
    assert_eq!(sb.count_method("PUT"), 0, "nothing was sent");
}
