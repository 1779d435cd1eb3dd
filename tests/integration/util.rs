//! Test harness: a temp dir with its own config and audit log, the steward binary, an in-process sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub use steward_sandbox::ADMIN_TOKEN;

/// One tokio runtime for every sandbox the tests start.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    })
}

/// A sandbox of its own for one test (so tests never see each other's changes).
pub struct Sandbox {
    pub running: steward_sandbox::Running,
}

impl Sandbox {
    pub fn start(users: usize) -> Sandbox {
        Self::with(steward_sandbox::Options { users, ..Default::default() })
    }

    /// `users` demo users, each request answered after `latency_ms`.
    pub fn slow(users: usize, latency_ms: u64) -> Sandbox {
        Self::with(steward_sandbox::Options {
            users,
            latency: std::time::Duration::from_millis(latency_ms),
            ..Default::default()
        })
    }

    pub fn with(opts: steward_sandbox::Options) -> Sandbox {
        let running = runtime().block_on(steward_sandbox::start(opts)).expect("sandbox starts");
        Sandbox { running }
    }

    pub fn url(&self) -> String {
        self.running.github_url()
    }

    /// `GET /_sandbox/stats`: what reached the server.
    pub fn stats(&self) -> serde_json::Value {
        self.get(&format!("http://{}/_sandbox/stats", self.running.addr))
    }

    /// `GET /_sandbox/timeline`: when each request arrived, and the faults served.
    pub fn timeline(&self) -> serde_json::Value {
        self.get(&format!("http://{}/_sandbox/timeline", self.running.addr))
    }

    /// How many times `METHOD /path` reached the server.
    pub fn count(&self, method_and_path: &str) -> u64 {
        self.stats()["requests"][method_and_path].as_u64().unwrap_or(0)
    }

    /// How many requests with this method (`PUT`, `POST`) reached the server.
    pub fn count_method(&self, method: &str) -> u64 {
        let prefix = format!("{method} ");
        self.stats()["requests"]
            .as_object()
            .map(|r| r.iter().filter(|(k, _)| k.starts_with(&prefix)).filter_map(|(_, v)| v.as_u64()).sum())
            .unwrap_or(0)
    }

    /// The logins the sandbox's GitHub has suspended, in order.
    pub fn suspended(&self) -> Vec<String> {
        let users = self.state()["github"]["users"].as_array().cloned().unwrap_or_default();
        users
            .iter()
            .filter(|u| !u["suspended_at"].is_null())
            .filter_map(|u| u["login"].as_str().map(String::from))
            .collect()
    }

    /// The GHES user `login` was active just now (`POST /_sandbox/github/seen/{login}`).
    pub fn github_seen(&self, login: &str) {
        let url = format!("http://{}/_sandbox/github/seen/{login}", self.running.addr);
        let status = runtime()
            .block_on(async move { reqwest::Client::new().post(url).send().await.expect("sandbox answers").status() });
        assert!(status.is_success(), "{login}: {status}");
    }

    pub fn state(&self) -> serde_json::Value {
        self.get(&format!("http://{}/_sandbox/state", self.running.addr))
    }

    fn get(&self, url: &str) -> serde_json::Value {
        let url = url.to_string();
        runtime().block_on(async move { reqwest::get(url).await.expect("sandbox answers").json().await.expect("json") })
    }
}

/// Whether this run of the suite keeps its audit logs on PostgreSQL (`STEWARD_TEST_STORE=postgres`; `.ci/run`
/// runs the suite on each store): every `Env` then gets a database of its own on one server, as a team would.
pub fn on_postgres() -> bool {
    std::env::var("STEWARD_TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// For a test about the SQLite file itself (its bytes, WAL, fsync, sidecar files): `true` (and a line saying so)
/// when the suite runs on PostgreSQL, where the test has nothing to check; team.rs covers that store's own.
pub fn sqlite_only(test: &str) -> bool {
    if on_postgres() {
        eprintln!("{test}: about the SQLite file; not run on the PostgreSQL store");
    }
    on_postgres()
}

/// For a test that moves steward's clock (faketime) hours or months ahead: `true` (and a line saying so) on the
/// PostgreSQL store, which refuses rows dated ahead of its database's clock by design (`team::
/// a_row_past_the_head_or_ahead_of_the_clock_is_named_and_the_clock_is_held_to_the_database`).
pub fn moves_the_clock_ahead(test: &str) -> bool {
    if on_postgres() {
        eprintln!(
            "{test}: moves this machine's clock ahead, which a team log refuses; not run on the PostgreSQL store"
        );
    }
    on_postgres()
}

/// A scratch directory with its own config, data dirs and audit log.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// The connection string of this env's team log when the suite runs on PostgreSQL.
    pub team_log: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        let team_log = on_postgres().then(|| crate::pg::shared().new_database());
        Env { dir: tempfile::tempdir().expect("tempdir"), team_log }
    }

    /// An env whose config has a `ghes` profile on the sandbox (token from GHES_TOKEN), protecting user0002.
    pub fn with_sandbox(sandbox: &Sandbox) -> Env {
        let env = Env::new();
        env.write_config(&format!(
            "default_profile = \"ghes\"\n\n[profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nprotected = [\"user0002\"]\ntimeout = 5\n",
            sandbox.url()
        ));
        env
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The newest run's file of a job that tags its files with the run (`off.csv` → `off-run12.csv`).
    pub fn run_file(&self, name: &str) -> PathBuf {
        let (stem, ext) = name.rsplit_once('.').map(|(s, e)| (s, format!(".{e}"))).unwrap_or((name, String::new()));
        let prefix = format!("{stem}-run");
        let newest = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?.parse::<i64>().ok())
            .max()
            .unwrap_or_else(|| panic!("no {prefix}N{ext} in {}", self.dir.path().display()));
        self.path(&format!("{prefix}{newest}{ext}"))
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        self.write("config.toml", text)
    }

    /// Stands in for run `run`'s process being alive: holds its lock as that process would (a lock byte beside a
    /// SQLite log, the run's advisory lock on a team log) until the guard is dropped.
    pub fn hold_run(&self, run: i64) -> Box<dyn std::any::Any> {
        match &self.team_log {
            Some(url) => {
                let db = url.split_whitespace().find_map(|kv| kv.strip_prefix("dbname=")).expect("a dbname");
                Box::new(crate::pg::shared().hold_run_lock(db, run))
            }
            None => {
                let locks = steward::audit::liveness::RunLocks::open(&self.audit_db()).expect("the lock file");
                assert!(locks.hold(run).expect("lock"), "run {run} is free to hold");
                Box::new(locks)
            }
        }
    }

    /// The sandbox's own log (`--sandbox`): SQLite beside where the real log's file is or would be.
    pub fn sandbox_log(&self) -> PathBuf {
        match self.team_log {
            Some(_) => self.path("xdg-data/steward/sandbox-audit.db"),
            None => self.path("sandbox-audit.db"),
        }
    }

    /// The team log's database name, when this env's log is on PostgreSQL.
    fn team_db(&self) -> Option<&str> {
        self.team_log.as_deref()?.split_whitespace().find_map(|kv| kv.strip_prefix("dbname="))
    }

    /// Edits the log behind steward's back, as someone with the file (SQLite: its triggers dropped) or a superuser
    /// (PostgreSQL: triggers off for the statement) would: `sql` runs on either store.
    pub fn edit_log(&self, sql: &str) {
        match self.team_db() {
            Some(db) => {
                let off = "ALTER TABLE events DISABLE TRIGGER USER; ALTER TABLE runs DISABLE TRIGGER USER;";
                let on = "ALTER TABLE events ENABLE TRIGGER USER; ALTER TABLE runs ENABLE TRIGGER USER;";
                crate::pg::shared().sql_in(db, &format!("{off} {sql}; {on}"));
            }
            None => {
                let conn = rusqlite::Connection::open(self.audit_db()).expect("open the log");
                let triggers: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .expect("the triggers");
                for t in triggers {
                    conn.execute_batch(&format!("DROP TRIGGER {t}")).expect("drop a trigger");
                }
                conn.execute_batch(sql).expect("the edit");
            }
        }
    }

    /// One value a query on the log gives (as text), on either store.
    pub fn log_value(&self, sql: &str) -> String {
        match self.team_db() {
            Some(db) => crate::pg::shared().sql_in(db, sql),
            None => {
                let conn = rusqlite::Connection::open(self.audit_db()).expect("open the log");
                conn.query_row(sql, [], |r| {
                    Ok(match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Null => String::new(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                })
                .expect("the query")
            }
        }
    }

    /// Everything the log holds, as text (to search it for what must never be there): the SQLite file and its
    /// write-ahead log, or the team database's tables.
    pub fn log_contents(&self) -> String {
        match self.team_db() {
            Some(db) => ["events", "runs", "run_ends"]
                .iter()
                .map(|t| crate::pg::shared().sql_in(db, &format!("SELECT t::text FROM {t} t")))
                .collect::<Vec<_>>()
                .join("\n"),
            None => {
                let db = std::fs::read(self.audit_db()).expect("audit.db");
                let wal = std::fs::read(self.path("audit.db-wal")).unwrap_or_default();
                format!("{}{}", String::from_utf8_lossy(&db), String::from_utf8_lossy(&wal))
            }
        }
    }

    pub fn audit_db(&self) -> PathBuf {
        self.path("audit.db")
    }

    /// The steward binary with a scrubbed environment pointing at this dir.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
        self.configure(&mut cmd);
        cmd
    }

    /// Gives any command this env's scrubbed environment and working directory.
    pub fn configure(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_DATA_HOME", self.path("xdg-data"))
            .env("GHES_TOKEN", ADMIN_TOKEN)
            .env("NO_COLOR", "1");
        match &self.team_log {
            Some(url) => cmd.env("STEWARD_AUDIT_URL", url),
            None => cmd.env("STEWARD_AUDIT_DB", self.audit_db()),
        };
        if self.path("config.toml").exists() {
            cmd.env("STEWARD_CONFIG", self.path("config.toml"));
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.args(args);
        Run::of(cmd)
    }

    /// `steward eval EXPR --format json`, expecting success; the parsed JSON value.
    pub fn eval_json(&self, expr: &str) -> serde_json::Value {
        let run = self.run(&["--format", "json", "--yes", "eval", expr]).success();
        if run.stdout.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.report()))
    }

    pub fn audit_rows(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["--format", "json", "audit", "list", "--all"];
        args.extend_from_slice(extra);
        let run = self.run(&args).success();
        serde_json::from_str::<Vec<serde_json::Value>>(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.report()))
    }
}

/// A finished command, with everything needed to explain a failure.
pub struct Run {
    pub command: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(mut cmd: Command) -> Run {
        let command = format!("{:?}", cmd);
        let Output { status, stdout, stderr } = cmd.output().expect("steward runs");
        Run {
            command,
            status: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into(),
            stderr: String::from_utf8_lossy(&stderr).into(),
        }
    }

    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    pub fn success(self) -> Run {
        assert_eq!(self.status, Some(0), "expected success\n{}", self.report());
        self
    }

    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.status, Some(code), "expected exit code {code}\n{}", self.report());
        self
    }

    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n{}", self.report());
        self
    }

    pub fn stdout_has(self, needle: &str) -> Run {
        assert!(self.stdout.contains(needle), "stdout lacks {needle:?}\n{}", self.report());
        self
    }
}

/// The repository root (for specs, scripts and servers).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An env with four sandbox profiles: `ghes` (protecting user0002), `tfe`, `tl` and `travis`; run with `run_services`.
pub fn services_env(sb: &Sandbox) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "max_changes = 1000\n\
         [profiles.ghes]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"GHES_TOKEN\"\nprotected = [\"user0002\"]\ntimeout = 5\n\
         [profiles.tfe]\nkind = \"terraform\"\nurl = \"{}\"\ntoken_env = \"TFE_TOKEN\"\ntimeout = 5\n\
         [profiles.tl]\nkind = \"transactionlink\"\nurl = \"{}\"\ntoken_env = \"TL_TOKEN\"\ntimeout = 5\n\
         [profiles.travis]\nkind = \"travis\"\nurl = \"{}\"\norg_id = \"{}\"\nactivity_token_env = \"TRAVIS_ACTIVITY\"\nsuspend_token_env = \"TRAVIS_SUSPEND\"\ntimeout = 5\n",
        sb.url(),
        sb.running.terraform_url(),
        sb.running.transactionlink_url(),
        sb.running.travis_url(),
        steward_sandbox::travis_tokens::ORG_ID,
    ));
    env
}

/// Runs steward in `env` with every sandbox service's token, and a failpoint if given.
pub fn run_services(env: &Env, args: &[&str], failpoint: Option<&str>) -> Run {
    let secret = |t: &str| t.split_once(':').map(|(_, s)| s.to_string()).unwrap_or_default();
    let mut cmd = env.cmd();
    cmd.env("TFE_TOKEN", steward_sandbox::tfe_tokens::ADMIN_TOKEN)
        .env("TL_TOKEN", steward_sandbox::transactionlink_tokens::ADMIN_TOKEN)
        .env("TRAVIS_ACTIVITY", secret(steward_sandbox::travis_tokens::ACTIVITY_TOKEN))
        .env("TRAVIS_SUSPEND", secret(steward_sandbox::travis_tokens::SUSPEND_TOKEN));
    if let Some(f) = failpoint {
        cmd.env("STEWARD_FAILPOINT", f);
    }
    cmd.args(args);
    Run::of(cmd)
}

/// The headless browser the evidence page is opened in: `STEWARD_CHROMIUM`, else Debian's `chromium`.
pub fn chromium() -> String {
    let bin = std::env::var("STEWARD_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "no headless browser: install Debian's chromium (apt-get install chromium) or set STEWARD_CHROMIUM");
    bin
}

/// The page as a real browser leaves it after loading (scripts, if any ran, had 2 s of virtual time).
pub fn rendered(page: &std::path::Path) -> String {
    let out = std::process::Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--virtual-time-budget=2000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}
