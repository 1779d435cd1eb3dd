//! A hostile world: a loopback server written for these tests answers what no honest service would (links to
//! other origins, pages without end, endless or huge bodies, HTML, JSON nested 100,000 deep), and a second one
//! stands "elsewhere" to prove the token never reaches it. Each case must end in a clear error, bounded.

use crate::util::{Env, ADMIN_TOKEN};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the hostile server saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET /api/v3/users?per_page=100`
    pub line: String,
    pub authorization: Option<String>,
}

/// How the hostile server answers one request.
pub enum Reply {
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    Raw {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// `Transfer-Encoding: chunked`, never ending.
    Endless,
    /// No answer at all, for a minute.
    Silence,
}

pub fn json(body: impl Into<String>) -> Reply {
    Reply::Json { status: 200, headers: Vec::new(), body: body.into() }
}

pub fn json_with(headers: &[(&str, &str)], body: impl Into<String>) -> Reply {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Reply::Json { status: 200, headers, body: body.into() }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Hostile {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, handler): (_, Handler) = (seen.clone(), Arc::new(handler));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, handler) = (log.clone(), handler.clone());
                std::thread::spawn(move || serve(stream, &log, handler.as_ref()));
            }
        });
        Hostile { addr, seen }
    }

    /// A server that answers anything with an empty array and counts what reaches it.
    pub fn elsewhere() -> Hostile {
        Hostile::start(|_| json("[]"))
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>, handler: &(dyn Fn(&Seen) -> Reply + Send + Sync)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut seen = Seen { line: line.trim_end().to_string(), authorization: None };
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "authorization" => seen.authorization = Some(value.trim().to_string()),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        log.lock().unwrap_or_else(|e| e.into_inner()).push(seen.clone());
        let written = match handler(&seen) {
            Reply::Json { status, headers, body } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Hostile\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                writer.write_all(format!("{head}\r\n{body}").as_bytes())
            }
            Reply::Raw { content_type, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(&body))
            }
            Reply::Silence => {
                std::thread::sleep(std::time::Duration::from_secs(60));
                return;
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "[".repeat(64 * 1024));
                let mut result = writer.write_all(head.as_bytes());
                // Until steward hangs up (or a test's bound of 2 GB, should it never).
                for _ in 0..32_768 {
                    if result.is_err() {
                        break;
                    }
                    result = writer.write_all(chunk.as_bytes());
                }
                return;
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// An env with one profile `h` of `kind` on the hostile server at `url`, plus `extra` profile lines.
fn env_for(kind: &str, url: &str, extra: &str) -> Env {
    let env = Env::new();
    let timeout = if extra.contains("timeout") { "" } else { "timeout = 5\n" };
    env.write_config(&format!(
        "[profiles.h]\nkind = \"{kind}\"\nurl = \"{url}\"\ntoken_env = \"GHES_TOKEN\"\n{timeout}{extra}"
    ));
    env
}

fn page_of_one(n: usize) -> String {
    format!(r#"[{{"login": "user{n}", "id": {n}, "type": "User", "site_admin": false}}]"#)
}

#[test]
fn a_next_page_on_another_origin_is_refused_and_the_token_stays_home() {
    let elsewhere = Hostile::elsewhere();
    let other = elsewhere.addr;
    let tricks = [
        format!("HTTP://{other}/api/v3/users?page=2"),
        format!(" http://{other}/api/v3/users?page=2"),
        format!("//{other}/api/v3/users?page=2"),
        format!("\\\\{other}\\api\\v3\\users?page=2"),
        format!("/\\{other}/api/v3/users?page=2"),
        format!("http://localhost:{}/api/v3/users?page=2", other.port()),
        format!("http://admin@{other}/api/v3/users?page=2"),
    ];
    for trick in tricks {
        let link = format!("<{trick}>; rel=\"next\"");
        let home = Hostile::start(move |_| json_with(&[("Link", &link)], page_of_one(1)));
        let env = env_for("github", &format!("{}/api/v3", home.base()), "");
        let run = env.run(&["eval", r#"connect("h").list_users().len()"#]);
        assert_ne!(run.status, Some(0), "the trick {trick:?} was followed\n{}", run.report());
        assert!(run.stderr.contains("steward sends its token only to the profile's origin"), "{}", run.report());
        assert!(!run.stderr.contains(ADMIN_TOKEN), "{}", run.report());
        assert!(elsewhere.seen().is_empty(), "{trick:?} reached the other server: {:?}", elsewhere.seen());
    }
}

#[test]
fn api_paths_cannot_leave_the_profile_origin() {
    let elsewhere = Hostile::elsewhere();
    let home = Hostile::start(|_| json("{}"));
    let env = env_for("github", &format!("{}/api/v3", home.base()), "");
    let other = elsewhere.addr;
    for path in
        [format!("http://{other}/x"), format!("//{other}/x"), format!("HTTP://{other}/x"), format!(" http://{other}/x")]
    {
        let expr = format!(r#"connect("h").api("GET", "{path}", ())"#);
        let run = env.run(&["eval", &expr]);
        assert_ne!(run.status, Some(0), "{path:?} was sent\n{}", run.report());
        assert!(run.stderr.contains("not to the profile's http://127.0.0.1"), "{}", run.report());
    }
    assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
    // The same origin still works, with or without a leading slash.
    let ok = env.run(&["eval", r#"connect("h").api("GET", "/meta", ())"#]).success();
    assert!(ok.stdout.contains("{}"), "{}", ok.report());
    assert_eq!(home.seen().last().map(|s| s.line.clone()).unwrap_or_default(), "GET /api/v3/meta HTTP/1.1");
}

#[test]
fn endless_paging_stops_at_max_pages_on_every_paging_style() {
    // GitHub: a Link to a new page each time.
    let github = Hostile::start(|seen| {
        let n: usize =
            seen.line.split("&page=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(1);
        let link = format!("</api/v3/users?per_page=100&page={}>; rel=\"next\"", n + 1);
        json_with(&[("Link", &link)], page_of_one(n))
    });
    // Terraform: next-page always one more.
    let tfe = Hostile::start(|seen| {
        let n: u64 = seen
            .line
            .split("page%5Bnumber%5D=")
            .nth(1)
            .and_then(|r| r.split([' ', '&']).next()?.parse().ok())
            .unwrap_or(1);
        json(format!(
            r#"{{"data": [{{"id": "user-{n}", "type": "users", "attributes": {{"username": "u{n}"}}}}], "meta": {{"pagination": {{"next-page": {}}}}}}}"#,
            n + 1
        ))
    });
    // Synapse: a fresh next_token each time.
    let synapse = Hostile::start(|seen| {
        json(format!(
            r#"{{"users": [{{"name": "@u:hs"}}], "next_token": "{}", "total": 1}}"#,
            seen.line.len() + rand_suffix()
        ))
    });
    for (kind, url, server) in [
        ("github", format!("{}/api/v3", github.base()), &github),
        ("terraform", format!("{}/api/v2", tfe.base()), &tfe),
        ("synapse", synapse.base(), &synapse),
    ] {
        let env = env_for(kind, &url, "max_pages = 40\n");
        let run = env.run(&["eval", r#"connect("h").list_users().len()"#]);
        assert_ne!(run.status, Some(0), "{kind}\n{}", run.report());
        assert!(run.stderr.contains("did not end after 40 pages (max_pages)"), "{kind}\n{}", run.report());
        assert!(run.stderr.contains("raise max_pages"), "{kind}\n{}", run.report());
        let pages = server.seen().iter().filter(|s| s.line.starts_with("GET ")).count();
        assert!(pages <= 41, "{kind}: {pages} pages were fetched");
    }
}

/// A different number on each call, so a cursor never repeats.
fn rand_suffix() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1_000);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_cursor_that_does_not_advance_is_an_error_not_a_loop() {
    // (No total: with one, the pages after the first are planned from it and next_token is not followed.)
    let synapse = Hostile::start(|_| json(r#"{"users": [{"name": "@u:hs"}], "next_token": "5"}"#));
    let env = env_for("synapse", &synapse.base(), "");
    let run = env.run(&["eval", r#"connect("h").list_users().len()"#]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("already fetched"), "{}", run.report());
    assert!(synapse.seen().len() <= 3, "{:?}", synapse.seen());

    // A Link pointing back at page 1 by another spelling of the same URL.
    let github = Hostile::start(|seen| {
        let link = if seen.line.contains("page=2") {
            "</api/v3/users?per_page=100>; rel=\"next\""
        } else {
            "<http://127.0.0.1:1/x>; rel=\"prev\", </api/v3/./users?per_page=100&page=2>; rel=\"next\""
        };
        json_with(&[("Link", link)], page_of_one(1))
    });
    let env = env_for("github", &format!("{}/api/v3", github.base()), "");
    let run = env.run(&["eval", r#"connect("h").list_users().len()"#]);
    assert!(run.stderr.contains("already fetched"), "{}", run.report());
}

#[test]
fn an_endless_body_is_cut_at_max_response_mb() {
    let server = Hostile::start(|_| Reply::Endless);
    let env = env_for("github", &format!("{}/api/v3", server.base()), "max_response_mb = 4\n");
    let started = std::time::Instant::now();
    let run = env.run(&["eval", r#"connect("h").list_users().len()"#]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("larger than 4 MB"), "{}", run.report());
    assert!(run.stderr.contains("max_response_mb"), "{}", run.report());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn a_success_that_is_not_json_is_an_error_naming_status_and_type() {
    let cases: [(&str, &'static str, Vec<u8>, &str); 4] = [
        ("html", "text/html", b"<html>Sign in</html>".to_vec(), "text/html"),
        ("invalid utf-8", "application/json", vec![b'[', 0xff, 0xfe, b']'], "application/json"),
        ("nested 100,000 deep", "application/json", "[".repeat(100_000).into_bytes(), "not the JSON expected"),
        ("truncated", "application/json", br#"[{"login": "a""#.to_vec(), "not the JSON expected"),
    ];
    for (name, content_type, body, expect) in cases {
        let server = Hostile::start(move |_| Reply::Raw { content_type, body: body.clone() });
        let env = env_for("github", &format!("{}/api/v3", server.base()), "");
        let run = env.run(&["eval", r#"connect("h").list_users().len()"#]);
        assert_ne!(run.status, Some(0), "{name}: a bad answer was read as a listing\n{}", run.report());
        assert!(run.stderr.contains("HTTP 200"), "{name}\n{}", run.report());
        assert!(run.stderr.contains(expect), "{name}\n{}", run.report());
    }
}

#[test]
fn a_record_nested_past_the_parsers_limit_is_listed_and_its_raw_says_why_it_cannot_be_read() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let record = format!(r#"{{"login": "deep", "id": 7, "type": "User", "site_admin": false, "x": {deep}}}"#);
    let page = format!("[{record}]");
    let server = Hostile::start(move |_| json(page.clone()));
    let env = env_for("github", &format!("{}/api/v3", server.base()), "");
    // The listing reads the common fields and keeps the record's text: nothing is built 100,000 levels deep.
    // (`detail: false`: a short listing would read each user's own record, which must parse whole.)
    let listed = r#"let u = connect("h").list_users(#{detail: false})[0];"#;
    let run = env.run(&["eval", &format!("{listed} `${{u.login}} ${{u.id}} ${{u.raw.to_string().len()}}`")]);
    assert_eq!(run.status, Some(0), "{}", run.report());
    assert_eq!(run.stdout.trim(), format!("\"deep 7 {}\"", record.len()), "{}", run.report());
    // Reading into it is an error saying what to do instead, not a crash and not a silent null.
    let run = env.run(&["eval", &format!("{listed} u.raw.x")]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("recursion limit"), "{}", run.report());
    assert!(run.stderr.contains("u.raw.to_string()"), "{}", run.report());
}

/// A classic GitHub token: 40 hex characters, no prefix, so no shape rule can know it.
const HEX_TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

/// Echoes the credentials it was sent, raw, URL-encoded and in base64, in errors and in a success.
fn echoing_server() -> Hostile {
    Hostile::start(|seen| {
        let auth = seen.authorization.clone().unwrap_or_default();
        let bare = auth.rsplit(' ').next().unwrap_or_default().to_string();
        let secret = bare.rsplit(':').next().unwrap_or_default().to_string();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("x:{secret}"));
        let url: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let echo = format!("you sent {bare} ({secret}; {url}; basic {b64})");
        if seen.line.starts_with("GET /api/v3/user ") || seen.line.starts_with("GET /api/v3/users/admin ") {
            return json(r#"{"login": "admin", "id": 1, "site_admin": true}"#);
        }
        if seen.line.starts_with("GET /api/v3/echo") {
            return json(serde_json::json!({ "echo": echo }).to_string());
        }
        Reply::Json {
            status: 422,
            headers: Vec::new(),
            body: serde_json::json!({ "message": echo, "error_message": echo }).to_string(),
        }
    })
}

#[test]
fn a_secret_echoed_by_a_server_reaches_no_output_file_or_log() {
    let server = echoing_server();
    let env = env_for("github", &format!("{}/api/v3", server.base()), "");
    env.write(
        "job.rhai",
        r#"
        let h = connect("h");
        let r = h.suspend_all(["alice", "bob"], #{reason: "left"});
        write_csv("results.csv", r);
        print(h.api("GET", "/echo", ()));
        try { h.get_user("carol"); } catch (e) { print(e.message); }
        h.get_user("dave")
        "#,
    );
    let mut cmd = env.cmd();
    cmd.env("GHES_TOKEN", HEX_TOKEN).args(["-vv", "--yes", "run", "job.rhai"]);
    let run = crate::util::Run::of(cmd);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stdout.contains("you sent [REDACTED]"), "the echo was printed, scrubbed\n{}", run.report());
    let results = std::fs::read_to_string(env.path("results.csv")).expect("results.csv");
    assert!(results.contains("[REDACTED]"), "{results}");
    let export = env.run(&["audit", "export", "--format", "json"]).success();
    let log = env.log_contents();
    let encoded: String = url::form_urlencoded::byte_serialize(HEX_TOKEN.as_bytes()).collect();
    for (name, text) in [
        ("stdout", run.stdout.clone()),
        ("stderr (with -vv logs)", run.stderr.clone()),
        ("results.csv", results),
        ("audit export", export.stdout),
        ("the audit log", log),
    ] {
        for leaked in [HEX_TOKEN, &encoded, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nw"] {
            assert!(!text.contains(leaked), "{name} holds the token ({leaked})\n{}", run.report());
        }
    }
}

/// A listing keeps each record's JSON as the text it came in; a server that writes the token there with JSON
/// escapes (`\u0030…`, which no shape or exact match sees) must not get it printed that way.
#[test]
fn a_secret_escaped_inside_a_listed_record_is_scrubbed_when_the_record_is_shown() {
    let escaped: String = HEX_TOKEN.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let page = format!(r#"[{{"login": "ann", "id": 5, "type": "User", "bio": "{escaped}"}}]"#);
    let server = Hostile::start(move |seen| match seen.line.starts_with("GET /api/v3/user ") {
        true => json(r#"{"login": "admin", "id": 1, "site_admin": true}"#),
        false => json(page.clone()),
    });
    let env = env_for("github", &format!("{}/api/v3", server.base()), "");
    for shown in [
        r#"for u in connect("h").users(#{detail: false}) { print(u.raw); print(u); }"#,
        r#"let u = connect("h").list_users(#{detail: false})[0]; print(u.raw); print(u); u"#,
    ] {
        let mut cmd = env.cmd();
        cmd.env("GHES_TOKEN", HEX_TOKEN).args(["--format", "json", "eval", shown]);
        let run = crate::util::Run::of(cmd);
        assert_eq!(run.status, Some(0), "{}", run.report());
        assert!(run.stdout.contains("[REDACTED]"), "{shown}: the record was shown, scrubbed\n{}", run.report());
        assert!(!run.stdout.contains(HEX_TOKEN) && !run.stdout.contains(&escaped[..24]), "{shown}\n{}", run.report());
    }
}

#[test]
fn a_travis_org_token_is_scrubbed_in_every_form() {
    let server = echoing_server();
    let env = env_for("travis", &server.base(), "org_id = \"89\"\n");
    let mut cmd = env.cmd();
    cmd.env("GHES_TOKEN", "s3cr3tTravisValue").args(["eval", r#"connect("h").user_activity(#{since: "2026-01-01"})"#]);
    let run = crate::util::Run::of(cmd);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("you sent [REDACTED]"), "{}", run.report());
    assert!(!run.stderr.contains("s3cr3tTravisValue"), "{}", run.report());
    assert!(!run.stderr.contains("89:s3cr3t"), "{}", run.report());
}

/// A Travis token given whole as `ORG:SECRET`: a server that echoes the secret half alone, split over lines, or
/// byte by byte %-encoded, gets none of it printed, logged, written to the results or kept in the audit log.
#[test]
fn each_half_of_a_travis_org_token_is_scrubbed_however_a_server_echoes_it() {
    let secret = "s3cr3tTravisHalf";
    let server = Hostile::start(move |_| {
        let per_byte: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
        let echo = format!("bad {secret}; {}; {}\n{}; {per_byte}", secret.to_uppercase(), &secret[..6], &secret[6..]);
        Reply::Json { status: 422, headers: Vec::new(), body: serde_json::json!({ "error_message": echo }).to_string() }
    });
    let env = env_for("travis", &server.base(), "org_id = \"8675309\"\n");
    env.write("job.rhai", r#"write_csv("results.csv", connect("h").suspend_all(["alice"], #{reason: "left"}));"#);
    let mut cmd = env.cmd();
    cmd.env("GHES_TOKEN", format!("8675309:{secret}")).args(["-vv", "--yes", "run", "job.rhai"]);
    let run = crate::util::Run::of(cmd);
    assert!(run.stderr.contains("[REDACTED]"), "the echo was shown, scrubbed\n{}", run.report());
    let results = std::fs::read_to_string(env.path("results.csv")).unwrap_or_default();
    let export = env.run(&["audit", "export", "--format", "json"]).success();
    let shouted = secret.to_uppercase();
    for (name, text) in
        [("stderr", &run.stderr), ("stdout", &run.stdout), ("results", &results), ("audit", &export.stdout)]
    {
        for leaked in [secret, &secret[..6], &secret[6..], shouted.as_str(), "%73%33%63%72"] {
            assert!(!text.contains(leaked), "{name} holds {leaked}\n{text}\n{}", run.report());
        }
    }
}

/// A profile whose token comes from `token_cmd`, against a server that knows the token's owner.
fn token_cmd_env(token_cmd: &str) -> (Hostile, Env) {
    let server = Hostile::start(|_| json(r#"{"login": "admin", "id": 1, "site_admin": true}"#));
    let env = Env::new();
    env.write_config(&format!(
        "[profiles.h]\nkind = \"github\"\nurl = \"{}/api/v3\"\ntoken_cmd = {:?}\n",
        server.base(),
        token_cmd
    ));
    (server, env)
}

#[test]
fn a_hanging_token_cmd_ends_at_the_runs_timeout_and_at_ctrl_c() {
    let (_server, env) = token_cmd_env("sleep 300");
    let started = std::time::Instant::now();
    let run = env.run(&["--timeout", "3", "eval", r#"connect("h"); 1"#]);
    assert_ne!(run.status, Some(0), "{}", run.report());
    assert!(run.stderr.contains("token_cmd was stopped") && run.stderr.contains("--timeout 3"), "{}", run.report());
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}\n{}", started.elapsed(), run.report());

    let mut child = env
        .cmd()
        .args(["eval", r#"connect("h"); 1"#])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let started = std::time::Instant::now();
    // SAFETY: a signal to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "one Ctrl-C took {:?}", started.elapsed());
    assert_ne!(status.code(), Some(0));
}

#[test]
fn a_token_cmd_that_leaves_a_daemon_holding_its_output_neither_hangs_nor_leaves_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("daemon.pid");
    let (_server, env) =
        token_cmd_env(&format!("setsid sleep 300 & echo $! > {}; echo tok3nValue", pid_file.display()));
    let started = std::time::Instant::now();
    let run = env.run(&["--timeout", "20", "eval", r#"connect("h").whoami().login"#]);
    assert_eq!(run.status, Some(0), "{}", run.report());
    assert!(run.stdout.contains("admin"), "{}", run.report());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let gone = (0..100).any(|_| {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        std::thread::sleep(std::time::Duration::from_millis(20));
        stat.is_empty() || stat.contains(") Z ")
    });
    assert!(gone, "the daemon {pid} outlived steward");
}

#[test]
fn the_deadline_stops_a_call_that_waits_on_a_silent_server() {
    let server = Hostile::start(|_| Reply::Silence);
    let env = env_for("github", &format!("{}/api/v3", server.base()), "timeout = 30\n");
    let started = std::time::Instant::now();
    let run = env.run(&["--timeout", "2", "eval", r#"connect("h").list_users().len()"#]);
    let took = started.elapsed();
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("ran longer than --timeout 2 s"), "{}", run.report());
    // Without the alarm the call would wait out the profile's 30 s timeout (and its retries).
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}\n{}", run.report());
}

#[test]
fn steward_makes_no_core_dump_and_keeps_its_log_private() {
    // It answers who the token is, then never answers the suspension.
    let server = Hostile::start(|seen| {
        if seen.line.starts_with("GET /api/v3/users/ann ") {
            return json(r#"{"login": "ann", "id": 2, "suspended_at": null}"#);
        }
        let who = ["GET /api/v3/user ", "GET /api/v3/users/admin "].iter().any(|p| seen.line.starts_with(p));
        match who {
            true => json(r#"{"login": "admin", "id": 1, "site_admin": true}"#),
            false => Reply::Silence,
        }
    });
    let env = env_for("github", &format!("{}/api/v3", server.base()), "");
    let mut cmd = env.cmd();
    cmd.args(["--timeout", "3", "eval", r#"connect("h").suspend("ann", #{reason: "x"})"#]);
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // While it waits on the silent server: its limits as the kernel sees them.
    let limits = (0..100)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let text = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).ok()?;
            server.seen().iter().any(|s| s.line.starts_with("PUT")).then_some(text)
        })
        .expect("steward reached the server");
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap_or_default().to_string();
    assert!(core.split_whitespace().filter(|w| *w == "0").count() == 2, "{core}");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "--timeout 3 stopped the PUT in flight");
    // The request in flight when the deadline came may have been applied: its intent stays open (in doubt, for
    // a resume to settle), not closed as "cancelled"; the run's note says what stopped it.
    let rows = env.audit_rows(&["--op", "suspend"]);
    assert!(rows.iter().all(|r| r["phase"] == "intent"), "no outcome claims to know: {rows:?}");
    assert_eq!(env.audit_rows(&["--pending"]).len(), 1, "{rows:?}");
    let all = env.audit_rows(&[]);
    assert!(all.iter().any(|r| r["error"].as_str().unwrap_or_default().contains("--timeout 3")), "{all:?}");
    if env.team_log.is_none() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.audit_db()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "audit.db is {mode:o}");
    }
}

#[test]
fn the_deadline_also_stops_the_reads_the_pipeline_makes_first() {
    // whoami never answers: the guard's identity read must not outlast --timeout.
    let server = Hostile::start(|_| Reply::Silence);
    let env = env_for("github", &format!("{}/api/v3", server.base()), "timeout = 30\n");
    let started = std::time::Instant::now();
    let run = env.run(&["--timeout", "2", "eval", r#"connect("h").suspend("ann", #{reason: "x"})"#]);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("--timeout 2"), "{}", run.report());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(server.seen().iter().all(|s| !s.line.starts_with("PUT")), "{:?}", server.seen());
}

/// A server listing a key whose id climbs the URL (`../../users/admin/site_admin`): deprovisioning refuses that
/// step by name, deletes the honest key, and never sends a path with `..` in it.
#[test]
fn a_listed_key_id_that_climbs_the_url_is_refused_and_the_rest_goes_on() {
    let server = Hostile::start(|seen| {
        let line = seen.line.as_str();
        let user = r#"{"login": "mona", "id": 7, "type": "User", "site_admin": false, "suspended_at": "2024-01-01T00:00:00Z"}"#;
        match line.split_whitespace().take(2).collect::<Vec<_>>().as_slice() {
            ["GET", "/api/v3/user"] => json(r#"{"login": "admin", "id": 1, "type": "User", "site_admin": true}"#),
            ["GET", "/api/v3/users/admin"] => {
                json(r#"{"login": "admin", "id": 1, "type": "User", "site_admin": true, "suspended_at": null}"#)
            }
            ["GET", "/api/v3/users/mona"] => json(user),
            ["GET", p] if p.starts_with("/api/v3/admin/keys") => json(
                r#"[{"id": "../../users/admin/site_admin", "user_id": 7, "title": "evil", "key": "ssh-ed25519 AAAA x"},
                    {"id": 5, "user_id": 7, "title": "laptop", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample mona"}]"#,
            ),
            ["GET", p] if p.starts_with("/api/v3/admin/tokens") => json("[]"),
            ["DELETE", _] => Reply::Json { status: 204, headers: Vec::new(), body: String::new() },
            _ => Reply::Json { status: 404, headers: Vec::new(), body: r#"{"message": "Not Found"}"#.into() },
        }
    });
    let env = env_for("github", &format!("http://{}/api/v3", server.addr), "");
    let run = env.run(&["--yes", "--format", "json", "eval", r#"connect("h").deprovision("mona", #{reason: "left"})"#]);
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()));
    let steps: Vec<(String, String)> = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["target"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
        .collect();
    assert!(steps.contains(&("../../users/admin/site_admin".into(), "failed".into())), "{out:#}");
    assert!(steps.contains(&("5".into(), "ok".into())), "{out:#}");
    assert_eq!(out["status"], "partial", "the evil key is still listed, and said so: {out:#}");
    let sent: Vec<String> = server.seen().into_iter().map(|s| s.line).collect();
    assert!(sent.iter().all(|l| !l.contains("..") && !l.contains("%2E%2E") && !l.contains("%2e%2e")), "{sent:#?}");
    assert!(sent.iter().any(|l| l.starts_with("DELETE /api/v3/admin/keys/5 ")), "{sent:#?}");
}

/// GHES's all-users report from a hostile instance: a report that is never ready ends at the run's deadline (or
/// steward's own bound), one that redirects elsewhere is refused with the credentials kept home, a sign-in page
/// is not read as "nobody is inactive", and an error page echoing the Basic credentials is scrubbed.
#[test]
fn a_hostile_all_users_report_ends_in_a_clear_error() {
    let elsewhere = Hostile::elsewhere();
    let other = elsewhere.addr;
    let me = r#"{"login": "admin", "id": 1, "site_admin": true}"#;
    type Answer = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;
    let cases: Vec<(Answer, &str)> = vec![
        (Box::new(|_| Reply::Json { status: 202, headers: Vec::new(), body: String::new() }), "still generating"),
        (
            Box::new(move |_| Reply::Json {
                status: 302,
                headers: vec![("Location".into(), format!("http://{other}/stafftools/reports/all_users.csv"))],
                body: String::new(),
            }),
            "GHES refused /stafftools/reports/all_users.csv (HTTP 302)",
        ),
        (
            Box::new(|_| Reply::Raw { content_type: "text/html", body: b"<html><body>Sign in</body></html>".to_vec() }),
            "an HTML page (a sign-in page?)",
        ),
        (
            Box::new(|seen| Reply::Json {
                status: 401,
                headers: Vec::new(),
                body:
                    serde_json::json!({ "message": format!("bad {}", seen.authorization.clone().unwrap_or_default()) })
                        .to_string(),
            }),
            "HTTP 401",
        ),
    ];
    for (report, says) in cases {
        let server = Hostile::start(move |seen| match seen.line.starts_with("GET /api/v3/user ") {
            true => json(me),
            false => report(seen),
        });
        let env = env_for("github", &format!("{}/api/v3", server.base()), "");
        let mut cmd = env.cmd();
        // Ten minutes of asking again, in a thousandth of the time.
        cmd.env("STEWARD_TIME_SCALE", "0.001")
            .args(["eval", r#"connect("h").activity(#{since: "90d", status: "inactive"}).len()"#]);
        let run = crate::util::Run::of(cmd);
        assert_eq!(run.status, Some(1), "{says}\n{}", run.report());
        assert!(run.stderr.contains(says), "{says}\n{}", run.report());
        assert!(!run.stdout.trim().starts_with('0'), "a failed report is not 'nobody inactive'\n{}", run.report());
        let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("admin:{ADMIN_TOKEN}"));
        assert!(!run.stderr.contains(&basic) && !run.stderr.contains(ADMIN_TOKEN), "{}", run.report());
        assert!(server.seen().iter().any(|s| s.authorization.as_deref() == Some(&format!("Basic {basic}"))));
    }
    assert!(elsewhere.seen().is_empty(), "the redirect was followed: {:?}", elsewhere.seen());
}

/// The all-users report is read as it arrives (never held whole), so its bounds are a listing's: a line that
/// never ends stops at the report's longest line, and a report past `max_listing_mb` stops there; neither is read
/// as "nobody is inactive", and a policy plans nothing from either. A report larger than one answer may be
/// (`max_response_mb`) is read whole.
#[test]
fn a_report_read_as_it_arrives_is_bounded_as_a_listing() {
    let me = r#"{"login": "admin", "id": 1, "site_admin": true}"#;
    let header = "created_at,id,login,email,role,suspended?,last_logged_ip,repos,ssh_keys,org_memberships,dormant?,last_active,raw_login,2fa_enabled?\n";
    let line = |n: usize| {
        format!("2020-01-01T00:00:00Z,{n},user{n},,user,false,,0,0,0,true,2021-01-01T00:00:00Z,user{n},false\n")
    };
    // ~2.1 MB: over a 1 MB max_response_mb and a 1 MB max_listing_mb alike.
    let big: String = std::iter::once(header.to_string()).chain((0..20_000).map(line)).collect();
    let report = |body: String| {
        move |seen: &Seen| match seen.line.starts_with("GET /api/v3/user ") {
            true => json(me),
            false => Reply::Raw { content_type: "text/csv", body: body.clone().into_bytes() },
        }
    };
    let count = r#"connect("h").activity(#{since: "90d", status: "inactive"}).len()"#;
    let cases: Vec<(Hostile, &str, Option<&str>)> = vec![
        (
            Hostile::start(|seen| match seen.line.starts_with("GET /api/v3/user ") {
                true => json(r#"{"login": "admin", "id": 1, "site_admin": true}"#),
                false => Reply::Endless,
            }),
            "",
            Some("line 1 is longer than 1 MB"),
        ),
        (
            Hostile::start(report(big.clone())),
            "max_listing_mb = 1\n",
            Some("larger than 1 MB; steward stopped reading it (hint: raise max_listing_mb"),
        ),
        (Hostile::start(report(big)), "max_response_mb = 1\n", None),
    ];
    for (server, limits, says) in cases {
        let env = env_for("github", &format!("{}/api/v3", server.base()), limits);
        let mut cmd = env.cmd();
        cmd.args(["eval", count]);
        let run = crate::util::Run::of(cmd);
        match says {
            Some(says) => {
                assert_eq!(run.status, Some(1), "{says}\n{}", run.report());
                assert!(run.stderr.contains(says), "{says}\n{}", run.report());
                assert!(!run.stdout.trim().starts_with('0'), "a cut report is not 'nobody inactive'\n{}", run.report());
                env.write(
                    "p.toml",
                    "profiles = [\"h\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[guard]\nmax_share = 1.0\n",
                );
                let mut plan = env.cmd();
                plan.args(["--format", "csv", "policy", "plan", "p.toml"]);
                let planned = crate::util::Run::of(plan);
                assert_eq!(planned.status, Some(1), "{}", planned.report());
                assert!(planned.stdout.trim().is_empty() && planned.stderr.contains(says), "{}", planned.report());
            }
            None => {
                assert_eq!(run.status, Some(0), "{}", run.report());
                assert_eq!(run.stdout.trim(), "20000", "{}", run.report());
            }
        }
    }
}

/// A policy's break-glass exclusion that cannot be resolved (the server errs on that one lookup) stops the plan:
/// planning without knowing whom it spares could suspend the very account it must never touch.
#[test]
fn a_policy_whose_exclusion_cannot_be_resolved_plans_nothing() {
    let report = "created_at,id,login,email,role,suspended?,last_logged_ip,repos,ssh_keys,org_memberships,dormant?,last_active,raw_login,2fa_enabled?\n\
                  2020-01-01T00:00:00Z,2,breakglass,,admin,false,,0,0,0,true,2021-01-01T00:00:00Z,breakglass,true\n\
                  2020-01-01T00:00:00Z,3,idle,,user,false,,0,0,0,true,2021-01-01T00:00:00Z,idle,false\n";
    let server = Hostile::start(move |seen| {
        if seen.line.starts_with("GET /api/v3/user ") {
            json(r#"{"login": "admin", "id": 1, "site_admin": true}"#)
        } else if seen.line.starts_with("GET /stafftools/reports/all_users.csv") {
            Reply::Raw { content_type: "text/csv", body: report.as_bytes().to_vec() }
        } else if seen.line.starts_with("GET /api/v3/users/breakglass") {
            Reply::Json { status: 500, headers: Vec::new(), body: r#"{"message": "Server Error"}"#.into() }
        } else {
            json(r#"{"login": "idle", "id": 3, "site_admin": false}"#)
        }
    });
    let env = env_for("github", &format!("{}/api/v3", server.base()), "");
    env.write("p.toml", "profiles = [\"h\"]\n[[stage]]\naction = \"suspend\"\nafter_days = 90\n[scope]\nexclude = [\"breakglass\"]\n[guard]\nmax_share = 1.0\nmin_admins = 0\n");
    let mut cmd = env.cmd();
    cmd.env("STEWARD_TIME_SCALE", "0.001").args(["--yes", "policy", "apply", "p.toml"]);
    let run = crate::util::Run::of(cmd);
    assert_eq!(run.status, Some(1), "{}", run.report());
    assert!(run.stderr.contains("cannot resolve \"breakglass\""), "{}", run.report());
    assert!(server.seen().iter().all(|s| !s.line.starts_with("PUT ")), "something was suspended: {:?}", server.seen());
}

/// An appliance reached under another name (an IP and port) writes its own hostname in its `Link` headers: with
/// `link_origin` naming that hostname, the links are followed to the profile's own URL (302 users over three
/// pages); without it, the listing is refused as before, and the error names the key.
#[test]
fn a_declared_link_origin_follows_the_appliances_own_links_home() {
    let server = Hostile::start(|seen| {
        let page: usize = seen
            .line
            .split("&page=")
            .nth(1)
            .and_then(|p| p.split([' ', '&']).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let (from, count) = match page {
            1 => (1, 100),
            2 => (101, 100),
            _ => (201, 102),
        };
        let users: Vec<String> = (from..from + count)
            .map(|n| format!(r#"{{"login": "user{n}", "id": {n}, "type": "User", "site_admin": false}}"#))
            .collect();
        let link = format!("<http://appliance.example/api/v3/users?per_page=100&page={}>; rel=\"next\"", page + 1);
        let headers: Vec<(&str, &str)> = if page < 3 { vec![("Link", link.as_str())] } else { Vec::new() };
        json_with(&headers, format!("[{}]", users.join(",")))
    });
    let url = format!("{}/api/v3", server.base());
    let aliased = env_for("github", &url, "link_origin = \"http://appliance.example\"\n");
    let run = aliased.run(&["--format", "json", "eval", r#"connect("h").list_users(#{detail: false}).len()"#]);
    assert_eq!(
        run.stdout.trim(),
        "302",
        "{}\n{:?}",
        run.report(),
        server.seen().iter().map(|s| s.line.clone()).collect::<Vec<_>>()
    );
    let plain = env_for("github", &url, "");
    let refused = plain.run(&["eval", r#"connect("h").list_users(#{detail: false}).len()"#]);
    assert_eq!(refused.status, Some(1), "{}", refused.report());
    assert!(refused.stderr.contains("link_origin = \"http://appliance.example\""), "{}", refused.report());
    // A link origin that is more than an origin is refused when the config is read.
    let bad = env_for("github", &url, "link_origin = \"http://appliance.example/api/v3\"\n");
    bad.run(&["eval", "1"]).code(2).stderr_has("link_origin");
}
