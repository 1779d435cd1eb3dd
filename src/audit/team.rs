//! The team audit log: the same chain on a shared PostgreSQL database (`audit_url`), so a team's admins on
//! many machines write one log. Connecting (TLS, a password never inline), the schema, and which runs are
//! alive: a run holds a session advisory lock for as long as its process lives, which PostgreSQL drops the
//! moment that process's connection ends (a kill -9, a machine gone past its TCP keepalive).

use super::db::{Db, DbError, Pg, LOCK_SPACE, SCHEMA_LOCK};
use super::AuditError;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// PostgreSQL's schema migrations, in order; `steward_schema` records each one applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_rate_turns.sql"),
    include_str!("migrations/postgres/0003_origin.sql"),
    include_str!("migrations/postgres/0004_origin_unique.sql"),
    include_str!("migrations/postgres/0005_claims.sql"),
    include_str!("migrations/postgres/0006_team_keys.sql"),
    include_str!("migrations/postgres/0007_writer_origin.sql"),
    include_str!("migrations/postgres/0008_set_aside.sql"),
    include_str!("migrations/postgres/0009_machines.sql"),
];

/// The advisory-lock namespace of runs: (RUN_SPACE, run id) is held by the process running it.
const RUN_SPACE: i32 = 0x5354_5752; // "STWR"

/// Gives the password when a connection is made (`audit_password_env` / `audit_password_cmd`), or none.
pub type PasswordSource = Arc<dyn Fn() -> Result<Option<SecretString>, PasswordError> + Send + Sync>;

/// Why a team log's URL is refused, or a connection to it could not be made; each says what to write or do.
#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    #[error("audit_url is not a PostgreSQL connection URL ({0}); write it as postgres://USER@HOST:PORT/DB")]
    NotAUrl(String),
    #[error(
        "audit_url holds a password; take it out and give it through audit_password_env or audit_password_cmd (a \
         URL is shown in messages and kept in shell history)"
    )]
    PasswordInUrl,
    #[error("audit_url names no host; write it as postgres://USER@HOST:PORT/DB")]
    NoHost,
    #[error(
        "audit_url has sslmode={0}, which goes on in plain text when the server offers no TLS (or someone between \
         you and it says so); use sslmode=require or sslmode=verify-full (steward checks the server's certificate \
         and name for either), or sslmode=disable on a network you trust"
    )]
    PlainTextFallback(String),
    #[error("audit_url has sslmode={0}, which steward does not know; use require, verify-ca, verify-full or disable")]
    UnknownSslMode(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("audit_ca_file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("TLS cannot be set up: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Database(#[from] DbError),
}

/// Why the team log's password could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("audit_password_env names {var}, which is not set; export {var}=<password>")]
    EnvNotSet { var: String },
    #[error(transparent)]
    Command(#[from] crate::secret_cmd::SecretCmdError),
    #[error("audit_password_cmd printed nothing; it must print the password on stdout")]
    CommandPrintedNothing,
}

/// Where a team log is and how to reach it.
pub struct PgTarget {
    config: tokio_postgres::Config,
    /// `user@host:port/dbname`, as messages name the log (never the password).
    pub shown: String,
    /// A CA certificate (PEM) trusted besides the usual roots, for a server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The local file this machine's anchors of the log (checkpoint, keys) are kept beside.
    pub anchor: PathBuf,
    password: PasswordSource,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.shown)
    }
}

impl PgTarget {
    /// Checks `url` (a `postgres://` URL or a `key=value` string) and refuses one with a password in it.
    /// `anchors`: the directory this machine keeps its anchors of team logs in.
    pub fn new(
        url: &str,
        ca_file: Option<PathBuf>,
        anchors: &std::path::Path,
        password: PasswordSource,
    ) -> Result<Self, TeamError> {
        let (url, sslmode) = take_sslmode(url)?;
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| TeamError::NotAUrl(e.to_string()))?;
        if config.get_password().is_some() {
            return Err(TeamError::PasswordInUrl);
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => return Err(TeamError::NoHost),
        };
        let on_socket = !matches!(config.get_hosts().first(), Some(tokio_postgres::config::Host::Tcp(_)));
        config.ssl_mode(match sslmode {
            Some(mode) => mode,
            // Unsaid: TLS, checked, over a network; none through a local socket (the file system guards it).
            None if on_socket => tokio_postgres::config::SslMode::Disable,
            None => tokio_postgres::config::SslMode::Require,
        });
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("");
        let db = config.get_dbname().unwrap_or(user);
        let shown = format!("postgres://{user}@{host}:{port}/{db}");
        // One anchor per log, whichever role this machine reaches it as.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{host}:{port}/{db}").as_bytes());
        let anchor = anchors.join(format!("team-{}.log", hex::encode(&digest[..8])));
        Ok(PgTarget { config, shown, ca_file, anchor, password })
    }

    /// The connection settings with the password and the keepalives put in.
    fn settings(&self) -> Result<tokio_postgres::Config, TeamError> {
        let mut config = self.config.clone();
        if let Some(password) = (self.password)()? {
            config.password(password.expose_secret());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A machine that vanishes is noticed within about half a minute, and its runs' locks fall with it.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .application_name("steward");
        Ok(config)
    }

    fn connect(&self) -> Result<postgres::Client, AuditError> {
        let fail = |why: TeamError| AuditError::Connect { url: self.shown.clone(), why };
        let mut config = postgres::Config::from(self.settings().map_err(fail)?);
        // What the server says besides (the set-up's "steward_writer was not made (no CREATEROLE)…") is shown,
        // not dropped.
        config.notice_callback(|notice| tracing::warn!("the team log's database says: {}", notice.message()));
        // The synchronous client blocks on a runtime of its own: from async code (a verb reading what an earlier
        // run recorded, as every unsuspend does) it connects on a thread of its own.
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => None,
            _ => Some(self.tls().map_err(fail)?),
        };
        let connected = super::db::off_runtime(|| match tls {
            None => config.connect(postgres::NoTls),
            Some(tls) => config.connect(tls),
        });
        connected.map_err(|e| fail(DbError::from(e).into()))
    }

    /// An asynchronous connection (for work inside the runtime, such as the shared rate budget); its driver
    /// runs as a task until the client is dropped.
    pub async fn connect_async(&self) -> Result<tokio_postgres::Client, TeamError> {
        let config = self.settings()?;
        let say = |e: tokio_postgres::Error| TeamError::from(DbError::from(e));
        match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(say)?;
                tokio::spawn(connection);
                Ok(client)
            }
            _ => {
                let (client, connection) = config.connect(self.tls()?).await.map_err(say)?;
                tokio::spawn(connection);
                Ok(client)
            }
        }
    }

    /// TLS that checks the server's certificate and name (the usual web roots plus `ca_file`), whatever the
    /// `sslmode`: a log reached over an unchecked connection could be anyone's.
    fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TeamError> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = &self.ca_file {
            let bad = |why: String| TeamError::CaFile { path: path.display().to_string(), why };
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
            let mut added = 0;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("is not PEM: {e}")))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(bad("holds no certificate".into()));
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// Takes libpq's `sslmode` out of a connection URL or key=value string: `disable`, or `require`, `verify-ca` and
/// `verify-full` (steward checks the certificate and the name for each: see `tls`). `prefer` and `allow` are
/// refused: against a server (or a man in the middle) offering no TLS they go on in plain text. The rest of the
/// string is given back for the driver to read; `None` when no sslmode was given.
fn take_sslmode(url: &str) -> Result<(String, Option<tokio_postgres::config::SslMode>), TeamError> {
    use tokio_postgres::config::SslMode;
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (head, params, sep) = match (is_url, url.split_once('?')) {
        (true, Some((head, query))) => (head.to_string(), query.split('&').collect::<Vec<_>>(), "&"),
        (true, None) => return Ok((url.to_string(), None)),
        (false, _) => (String::new(), url.split_whitespace().collect(), " "),
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for param in params {
        let Some(value) = param.strip_prefix("sslmode=") else {
            kept.push(param);
            continue;
        };
        mode = Some(match value.trim_matches('\'') {
            "disable" => SslMode::Disable,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            "prefer" | "allow" => return Err(TeamError::PlainTextFallback(value.to_string())),
            other => return Err(TeamError::UnknownSslMode(other.to_string())),
        });
    }
    let rest = kept.join(sep);
    let url = match (is_url, rest.is_empty()) {
        (true, true) => head,
        (true, false) => format!("{head}?{rest}"),
        (false, _) => rest,
    };
    Ok((url, mode))
}

/// Connects and brings the schema up to date (under a lock, so two machines starting at once migrate once).
pub fn open(target: &PgTarget) -> Result<Db, AuditError> {
    let db = Db::Postgres(Box::new(parking_lot::Mutex::new(Pg::new(target.connect()?))));
    let open_err = |source: DbError| AuditError::TeamSchema { url: target.shown.clone(), source };
    db.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({LOCK_SPACE}, {SCHEMA_LOCK})")).map_err(open_err)?;
    let migrated = migrate(&db, target);
    match migrated {
        Ok(()) => db.commit().map_err(open_err)?,
        Err(e) => {
            db.rollback();
            return Err(e);
        }
    }
    Ok(db)
}

fn migrate(db: &Db, target: &PgTarget) -> Result<(), AuditError> {
    let open_err = |source: DbError| AuditError::TeamSchema { url: target.shown.clone(), source };
    let exists = db.row("SELECT to_regclass('steward_schema') IS NOT NULL", &[]).map_err(open_err)?;
    let exists = exists.map(|r| r.int(0)).transpose().map_err(open_err)? == Some(1);
    let version = if exists {
        let v = db.row("SELECT max(version) FROM steward_schema", &[]).map_err(open_err)?;
        v.map(|r| r.opt_int(0)).transpose().map_err(open_err)?.flatten().unwrap_or(0)
    } else {
        0
    };
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(AuditError::NewerSchema { path: PathBuf::from(&target.shown), found: version, supported });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        db.batch(sql).map_err(open_err)?;
        db.execute("INSERT INTO steward_schema (version) VALUES (?1)", &[(n as i64 + 1).into()]).map_err(open_err)?;
    }
    Ok(())
}

/// The team's key `name` (32 bytes), kept in the log's database so every machine uses the same; the first
/// machine that asks makes it (two asking at once keep the one that landed first).
pub fn shared_key(target: &PgTarget, name: &str) -> Result<[u8; super::keyfile::KEY_BYTES], AuditError> {
    let db = open(target)?;
    let read_err = |source: DbError| AuditError::TeamSchema { url: target.shown.clone(), source };
    let fresh = hex::encode(rand::random::<[u8; super::keyfile::KEY_BYTES]>());
    db.execute(
        "INSERT INTO steward_keys (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        &[name.into(), fresh.into()],
    )
    .map_err(read_err)?;
    let value = db.row("SELECT value FROM steward_keys WHERE name = ?1", &[name.into()]).map_err(read_err)?;
    let value = value.map(|r| r.text(0)).transpose().map_err(read_err)?.unwrap_or_default();
    hex::decode(value.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
        read_err(DbError::Type(format!(
            "the team's {name} key in steward_keys is not {} hex bytes",
            super::keyfile::KEY_BYTES
        )))
    })
}

/// Takes run `run`'s lock for this connection's session; `false` when another session holds it.
pub(super) fn hold(db: &Db, run: i64) -> Result<bool, DbError> {
    let key = run_key(run)?;
    let r = db.row(&format!("SELECT pg_try_advisory_lock({RUN_SPACE}, {key})"), &[])?;
    Ok(r.map(|r| r.int(0)).transpose()? == Some(1))
}

/// A query for the runs whose locks a session other than this connection's holds (their processes are alive),
/// in this database.
pub(super) fn live_runs() -> String {
    format!(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = {RUN_SPACE} \
         AND objsubid = 2 AND granted AND pid != pg_backend_pid() \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
}

/// Whether a session other than this connection's holds run `run`'s lock (its process is alive). `pg_locks` is
/// the whole server's: another database's run of the same number (a second team's log) is not this one's.
pub(super) fn held_elsewhere(db: &Db, run: i64) -> Result<bool, DbError> {
    let key = run_key(run)?;
    let r = db.row(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = ?1 AND objid::bigint = ?2
         AND objsubid = 2 AND granted AND pid != pg_backend_pid()
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[i64::from(RUN_SPACE).into(), key.into()],
    )?;
    Ok(r.map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0)
}

fn run_key(run: i64) -> Result<i64, DbError> {
    i32::try_from(run).map(i64::from).map_err(|_| DbError::Type(format!("run {run} is past the lockable range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::SslMode;

    fn mode_of(url: &str) -> Result<SslMode, String> {
        let target = PgTarget::new(url, None, std::path::Path::new("/nonexistent"), Arc::new(|| Ok(None)));
        Ok(target.map_err(|e| e.to_string())?.config.get_ssl_mode())
    }

    #[test]
    fn sslmodes_that_can_fall_back_to_plain_text_are_refused_and_libpq_spellings_are_understood() {
        for bad in ["prefer", "allow"] {
            let err = mode_of(&format!("postgres://a@db.example:5432/steward?sslmode={bad}")).unwrap_err();
            assert!(err.contains(&format!("sslmode={bad}")) && err.contains("sslmode=require"), "{err}");
            let err = mode_of(&format!("host=db.example user=a dbname=steward sslmode={bad}")).unwrap_err();
            assert!(err.contains("plain text"), "{err}");
        }
        for good in ["require", "verify-ca", "verify-full"] {
            assert_eq!(mode_of(&format!("postgres://a@db.example/steward?sslmode={good}")), Ok(SslMode::Require));
            assert_eq!(mode_of(&format!("host=db.example user=a sslmode='{good}' dbname=s")), Ok(SslMode::Require));
        }
        let err = mode_of("postgres://a@db.example/steward?sslmode=verify-everything").unwrap_err();
        assert!(err.contains("does not know"), "{err}");
        assert_eq!(mode_of("postgres://a@db.example/steward?sslmode=disable"), Ok(SslMode::Disable));
        // Unsaid: checked TLS over the network, none through a local socket.
        assert_eq!(mode_of("postgres://a@db.example/steward"), Ok(SslMode::Require));
        assert_eq!(mode_of("postgres://a@db.example/steward?connect_timeout=5"), Ok(SslMode::Require));
        assert_eq!(mode_of("host=/run/postgresql user=a dbname=steward"), Ok(SslMode::Disable));
        // The other parameters survive the sslmode being taken out.
        let t = PgTarget::new(
            "postgres://a@db.example/steward?sslmode=verify-full&connect_timeout=7",
            None,
            std::path::Path::new("/x"),
            Arc::new(|| Ok(None)),
        )
        .expect("a URL");
        assert_eq!(t.config.get_connect_timeout(), Some(&Duration::from_secs(7)));
    }
}
