//! Every backend reading whatever a server answers: each operation of each kind runs against a loopback server
//! that replies with the fuzzer's status, headers and body. Any answer gives a value or an error, never a panic
//! and never a hang (a server that keeps naming more pages, or asks for an endless wait, must not hold us).
#![no_main]
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use steward::backends::{self, Action, Op};
use steward::http::retry::RetryPolicy;
use steward::redact::SecretString;

#[derive(Arbitrary, Debug)]
enum Header {
    Link,
    RetryAfter,
    RateRemaining,
    RateReset,
    ContentType,
}

#[derive(Arbitrary, Debug)]
struct Answer {
    kind: u8,
    op: u8,
    target: u8,
    status: u16,
    headers: Vec<(Header, String)>,
    body: Vec<u8>,
}

/// The bytes every connection gets back, set per input.
fn reply() -> &'static Arc<Mutex<Vec<u8>>> {
    static REPLY: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    REPLY.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

/// A loopback server answering every request with `reply()` and closing the connection.
fn server() -> &'static String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/", listener.local_addr().expect("local addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let bytes = reply().lock().unwrap_or_else(|e| e.into_inner()).clone();
                let _ = stream.write_all(&bytes);
            }
        });
        url
    })
}

fn header_text(s: &str) -> String {
    s.chars().filter(|c| (' '..='~').contains(c)).take(200).collect()
}

fn response(a: &Answer) -> Vec<u8> {
    let status = 200 + a.status % 400;
    let mut head = format!("HTTP/1.1 {status} Fuzz\r\nConnection: close\r\nContent-Length: {}\r\n", a.body.len());
    for (name, value) in a.headers.iter().take(6) {
        let name = match name {
            Header::Link => "Link",
            Header::RetryAfter => "Retry-After",
            Header::RateRemaining => "X-RateLimit-Remaining",
            Header::RateReset => "X-RateLimit-Reset",
            Header::ContentType => "Content-Type",
        };
        head.push_str(&format!("{name}: {}\r\n", header_text(value)));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&a.body);
    bytes
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

const TARGETS: &[&str] = &["octocat", "user-1", "0d9c2f0e-8c1b-4d8a-9c55-7f2c3a1b2c3d", "bob@example.com", "@bob:hs"];

fn params(op: Op) -> Value {
    match op {
        Op::CreateUser => json!({"login": "newbie", "email": "n@example.com", "password": "p4ss-w0rd-long"}),
        Op::RenameUser => json!({"new_login": "renamed"}),
        Op::Activity => json!({"since": "2026-01-01", "status": "inactive"}),
        Op::SetRole => json!({"role": "admin"}),
        Op::UpdateProfile => json!({"first_name": "A"}),
        Op::DeleteKey | Op::DeleteToken => json!({"id": 1}),
        Op::Api => json!({"method": "GET", "path": "meta"}),
        _ => json!({"reason": "fuzz"}),
    }
}

fuzz_target!(|a: Answer| {
    let url = server();
    *reply().lock().unwrap_or_else(|e| e.into_inner()) = response(&a);
    let kind = backends::ALL[a.kind as usize % backends::ALL.len()].name;
    // Each kind's own required keys (a key another kind owns is a config error now).
    let own = if kind == "travis" { "org_id = \"1\"\n" } else { "" };
    let config =
        format!("[profiles.f]\nkind = \"{kind}\"\nurl = \"{url}\"\ntimeout = 2\nrate_limit = 100000.0\n{own}");
    let config = steward::config::Config::parse(&config, std::path::Path::new("fuzz.toml")).expect("fuzz config");
    let profile = &config.profiles["f"];
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        max_rate_limit_wait: Duration::from_millis(5),
        time_scale: 1.0,
    };
    let token = Some(SecretString::from("fuzz-token-value-0123456789".to_string()));
    let backend = backends::connect("f", profile, token, Vec::new(), None, retry, None).expect("backend");
    let op = backends::VERBS[a.op as usize % backends::VERBS.len()].op;
    let target = TARGETS[a.target as usize % TARGETS.len()].to_string();
    let action = Action::new(op, Some(target.clone()), params(op));
    runtime().block_on(async {
        let work = async {
            if backend.supported().contains(&op) {
                let _ = backend.execute(&action).await;
                let _ = backend.state(op, &target, &action.params).await;
                // Resolving a name, and a credential's owner, read whatever the server answers too.
                let _ = backends::resolve(backend.as_ref(), &target, &action.params).await;
                let _ = backend.owner_of(&action).await;
            }
            let _ = backend.identity().await;
        };
        tokio::time::timeout(Duration::from_secs(20), work).await.expect("a backend hung on a server's answer");
    });
});
