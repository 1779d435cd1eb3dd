//! A PostgreSQL server of the test's own (DESIGN.md §6): `initdb` in a temp dir, started on 127.0.0.1 and a free
//! port, stopped however the test ends. As root, the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser's password (host connections need a password; the socket in the temp dir is trusted).
pub const SUPER_PASSWORD: &str = "pg-super-Secret-42";
/// A team member's login: a member of `steward_writer`, so it may read and append, nothing else.
pub const WRITER: &str = "alice";
pub const WRITER_PASSWORD: &str = "alice-Pg-pass-7731";

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// Whether commits reach the disk (benchmarks); tests skip fsync for speed.
    durable: bool,
    /// TLS: the server's certificate and key (PEM), when it speaks TLS.
    tls: Option<(PathBuf, PathBuf)>,
}

fn bin_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()));
    assert!(
        dir.join("initdb").exists(),
        "PostgreSQL 15 is not installed at {} (Debian: apt-get install postgresql-15; or set PG_BIN); the team-mode \
         tests need a real server",
        dir.display()
    );
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// A server whose commits are fsynced, as a real one's are (for benchmarks beside SQLite's FULL sync).
    #[allow(dead_code)]
    pub fn start_durable() -> Postgres {
        Self::start_with(true)
    }

    /// A server that speaks TLS with this certificate and key (PEM files; copied for the server to own).
    #[allow(dead_code)]
    pub fn start_tls(cert: &Path, key: &Path) -> Postgres {
        Self::start_as(false, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(durable: bool) -> Postgres {
        Self::start_as(durable, None)
    }

    fn start_as(durable: bool, tls: Option<(PathBuf, PathBuf)>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            let ok = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status();
            assert!(ok.is_ok_and(|s| s.success()), "chown of the PostgreSQL temp dir to postgres");
        }
        let pw = dir.path().join("pw");
        std::fs::write(&pw, SUPER_PASSWORD).expect("write pwfile");
        let port = free_port();
        let tls = tls.map(|(cert, key)| {
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(cert, &c).expect("copy the certificate");
            std::fs::copy(key, &k).expect("copy the key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("key mode");
            if is_root() {
                let _ = Command::new("chown").arg("postgres:postgres").arg(&c).arg(&k).status();
            }
            (c, k)
        });
        let pg = Postgres { dir, port, bin, durable, tls };
        pg.as_server(
            &pg.bin.join("initdb"),
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                "postgres",
                "--pwfile",
                &pw.display().to_string(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if pg.tls.is_some() {
            // Over TCP only TLS is let in, so a session that works is a TLS session.
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
            std::fs::write(pg.data().join("pg_hba.conf"), hba).expect("pg_hba.conf");
        }
        pg.start_server();
        pg.sql("CREATE DATABASE steward");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a server binary as the user the server runs as (`postgres` under root).
    fn as_server(&self, program: &Path, args: &[&str]) -> std::process::Output {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL binary");
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn start_server(&self) {
        let fsync = if self.durable { "on" } else { "off" };
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        if let Some((cert, key)) = &self.tls {
            opts.push_str(&format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", cert.display(), key.display()));
        }
        let log = self.dir.path().join("server.log").display().to_string();
        self.as_server(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data().display().to_string(), "-w", "-l", &log, "-o", &opts, "start"],
        );
    }

    /// Stops the server at once (connections cut, as when it crashes or is restarted).
    pub fn stop_server(&self) {
        self.as_server(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data().display().to_string(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Runs SQL as the superuser on database `db` through the trusted socket; the output of psql.
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let out = self.as_server(
            &self.bin.join("psql"),
            &[
                "-h",
                &self.dir.path().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    /// Runs SQL on `steward` as `user` over TCP (a team member's session); the output of psql.
    pub fn sql_as(&self, user: &str, password: &str, sql: &str) -> String {
        let out = self.psql_as(user, password, sql);
        assert!(out.status.success(), "{sql} as {user}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn psql_as(&self, user: &str, password: &str, sql: &str) -> std::process::Output {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user, "-d", "steward", "-At", "-v"])
            .arg("ON_ERROR_STOP=1")
            .args(["-c", sql])
            .env("PGPASSWORD", password);
        cmd.output().expect("psql runs")
    }

    /// Another team member's login, `name`, with the writer role.
    pub fn add_member(&self, name: &str, password: &str) {
        self.sql(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'; GRANT steward_writer TO {name}"));
    }

    /// Like `sql_in`, but the error text when the statement fails (it must).
    pub fn sql_fails_as(&self, user: &str, password: &str, sql: &str) -> String {
        let out = self.psql_as(user, password, sql);
        assert!(!out.status.success(), "{sql} as {user} should have failed: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `postgres://USER@127.0.0.1:PORT/steward`.
    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/steward?sslmode=disable", self.port)
    }

    /// Makes the writer login (a member of `steward_writer`); the schema must exist (steward made it).
    pub fn add_writer(&self) {
        self.sql(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER}') THEN \
             CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}'; END IF; END $$; GRANT steward_writer TO {WRITER}"
        ));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The suite's one server when it runs on the team store (`STEWARD_TEST_STORE=postgres`), started on first use
/// and stopped when the test binary exits.
pub fn shared() -> &'static Postgres {
    static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        extern "C" fn stop_shared() {
            if let Some(pg) = shared_if_started() {
                pg.stop_now();
                let _ = std::fs::remove_dir_all(pg.dir.path());
            }
        }
        // SAFETY: registers a plain function with no preconditions; it runs once, at exit.
        unsafe { libc::atexit(stop_shared) };
        Postgres::start()
    });
    fn shared_if_started() -> Option<&'static Postgres> {
        SHARED.get()
    }
    SHARED.get().expect("started above")
}

impl Postgres {
    /// A new empty database on this server, named for the caller; its key=value connection string for the
    /// owner through the server's trusted socket (no password, no TLS: the socket is in the server's temp dir).
    pub fn new_database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        self.sql(&format!("CREATE DATABASE {name}"));
        format!("host={} port={} user=postgres dbname={name} sslmode=disable", self.dir.path().display(), self.port)
    }

    /// Holds run `run`'s lock in database `db` from a session of its own (as that run's process would), until the
    /// returned child is dropped.
    pub fn hold_run_lock(&self, db: &str, run: i64) -> HeldLock {
        use std::io::{BufRead, Write};
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-h", &self.dir.path().display().to_string(), "-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("psql starts");
        let mut stdin = child.stdin.take().expect("stdin");
        // steward's run locks: (0x5354_5752 "STWR", run).
        writeln!(stdin, "SELECT 'held' FROM pg_advisory_lock(1398036306, {run});").expect("psql reads");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("psql answers");
        assert_eq!(line.trim(), "held", "the lock is held");
        HeldLock { child, _stdin: stdin }
    }

    fn stop_now(&self) {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd.args(["-D", &self.data().display().to_string(), "-m", "immediate", "stop"]).output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A session holding a lock; dropping it ends the session.
pub struct HeldLock {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
