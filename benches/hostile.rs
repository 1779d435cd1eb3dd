//! A hostile server against steward's defaults (`cargo bench --bench hostile`): for each case, the wall time
//! until steward stops with a clear error, and the steward process's peak RSS (`/usr/bin/time`). Before the
//! limits, endless Link paging grew steward to 7 GB in 45 s and an endless body to 11.5 GB.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

type Answer = Arc<dyn Fn(&str) -> Vec<u8> + Send + Sync>;

fn main() {
    let page = |n: u64| {
        let users: Vec<String> =
            (0..100).map(|i| format!(r#"{{"login":"u{n}x{i}","id":{},"type":"User"}}"#, n * 100 + i)).collect();
        format!("[{}]", users.join(","))
    };
    let cases: Vec<(&str, &str, Answer, Vec<&str>)> = vec![
        (
            "GitHub Link paging that never ends (100 users a page)",
            "github",
            Arc::new(move |line: &str| {
                let n: u64 =
                    line.split("&page=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(1);
                let link = format!("</api/v3/users?per_page=100&page={}>; rel=\"next\"", n + 1);
                json_answer(&page(n), &[("Link", &link)])
            }),
            vec![],
        ),
        (
            "Synapse next_token that never ends (100 users a page)",
            "synapse",
            Arc::new(move |line: &str| {
                let from: u64 =
                    line.split("from=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(0);
                let users: Vec<String> = (0..100).map(|i| format!(r#"{{"name":"@u{from}x{i}:hs"}}"#)).collect();
                let body = format!(r#"{{"users":[{}],"next_token":"{}","total":1}}"#, users.join(","), from + 100);
                json_answer(&body, &[])
            }),
            vec![],
        ),
        (
            "Link paging that never ends, one 8 MB user a page",
            "github",
            Arc::new(move |line: &str| {
                let n: u64 =
                    line.split("&page=").nth(1).and_then(|r| r.split([' ', '&']).next()?.parse().ok()).unwrap_or(1);
                let link = format!("</api/v3/users?per_page=100&page={}>; rel=\"next\"", n + 1);
                let body = format!(r#"[{{"login":"u{n}","id":{n},"type":"User","bio":"{}"}}]"#, "x".repeat(8 << 20));
                json_answer(&body, &[("Link", &link)])
            }),
            vec![],
        ),
        ("an endless chunked body", "github", Arc::new(|_: &str| b"ENDLESS".to_vec()), vec![]),
        (
            "a 200 whose body is an HTML login page",
            "github",
            Arc::new(|_: &str| raw_answer("text/html", b"<html><body>Sign in</body></html>")),
            vec![],
        ),
        (
            "JSON nested 100,000 deep",
            "github",
            Arc::new(|_: &str| raw_answer("application/json", "[".repeat(100_000).as_bytes())),
            vec![],
        ),
        (
            "a server that never answers, --timeout 2",
            "github",
            Arc::new(|_: &str| b"SILENCE".to_vec()),
            vec!["--timeout", "2"],
        ),
    ];
    println!("| case | time to the error | peak RSS | the error |");
    println!("|---|---|---|---|");
    for (name, kind, answer, flags) in cases {
        let addr = serve(answer);
        let dir = tempfile::tempdir().expect("tempdir");
        let url = if kind == "github" { format!("http://{addr}/api/v3") } else { format!("http://{addr}") };
        let config = dir.path().join("config.toml");
        std::fs::write(&config, format!("[profiles.h]\nkind = \"{kind}\"\nurl = \"{url}\"\ntoken_env = \"T\"\n"))
            .expect("config");
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "TIME %e %M", STEWARD])
            .args(&flags)
            .args(["eval", r#"connect("h").list_users().len()"#])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("T", "bench-token-0123456789")
            .env("STEWARD_CONFIG", &config)
            .env("STEWARD_AUDIT_DB", dir.path().join("audit.db"));
        let out = cmd.output().expect("steward runs under /usr/bin/time");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (secs, kb) = stderr
            .lines()
            .find_map(|l| {
                let mut w = l.strip_prefix("TIME ")?.split_whitespace();
                Some((w.next()?.parse::<f64>().ok()?, w.next()?.parse::<f64>().ok()?))
            })
            .unwrap_or((f64::NAN, f64::NAN));
        let error = stderr.lines().find(|l| l.contains("error:")).unwrap_or("(no error line)");
        let error: String = error.split("error: ").nth(1).unwrap_or(error).chars().take(110).collect();
        println!("| {name} | {secs:.2} s | {:.0} MiB | {} |", kb / 1024.0, error.replace('|', "\\|"));
    }
}

fn json_answer(body: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    format!("{head}\r\n{body}").into_bytes()
}

fn raw_answer(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len())
        .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A loopback server answering each request line with `answer` (`ENDLESS` and `SILENCE` are special).
fn serve(answer: Answer) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || connection(stream, answer.as_ref()));
        }
    });
    addr
}

fn connection(stream: TcpStream, answer: &(dyn Fn(&str) -> Vec<u8> + Send + Sync)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
        }
        let reply = answer(&line);
        match reply.as_slice() {
            b"SILENCE" => {
                std::thread::sleep(std::time::Duration::from_secs(120));
                return;
            }
            b"ENDLESS" => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "[".repeat(64 * 1024));
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                // Until steward hangs up (at most 16 GB).
                for _ in 0..262_144 {
                    if writer.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                }
                return;
            }
            bytes => {
                if writer.write_all(bytes).is_err() {
                    return;
                }
            }
        }
    }
}
