//! The config file: profiles (one per service instance), where tokens come from, and the run-wide settings.

use crate::http::origin;
use crate::interrupt::Interrupt;
use crate::redact::{loaded, redact, remember, ExposeSecret, SecretString};
use crate::secret_cmd;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A config mistake, naming the file (and, where TOML can tell, the line and key) and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}\nhint: {hint}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
    pub hint: String,
}

/// Each `key = …` line of each `[profiles.NAME]` section, as (profile, key, line number), in file order.
fn profile_key_lines(text: &str) -> impl Iterator<Item = (String, &str, usize)> {
    let mut section = None;
    text.lines().enumerate().filter_map(move |(i, line)| {
        let line = line.trim();
        if line.starts_with('[') {
            section = line
                .strip_prefix("[profiles.")
                .and_then(|r| r.strip_suffix(']'))
                .map(|n| n.trim_matches('"').to_string());
            return None;
        }
        let (key, _) = line.split_once('=')?;
        Some((section.clone()?, key.trim().trim_matches('"'), i + 1))
    })
}

/// The first profile with an inline `token =`, and its line, as the file has them.
fn inline_token_at(text: &str) -> (String, usize) {
    profile_key_lines(text).find(|(_, key, _)| *key == "token").map(|(p, _, line)| (p, line)).unwrap_or_default()
}

/// A TOML or serde message in the words of the config file, and what to do: Rust type names become "a whole
/// number" and such, and the key lists are given once (an unknown key's message already lists its section's).
pub(crate) fn in_plain_words(message: &str) -> (String, String) {
    let mut text = message.to_string();
    for (rust, plain) in [
        ("expected usize", "expected a whole number (0 or more, without quotes)"),
        ("expected u64", "expected a whole number (0 or more, without quotes)"),
        ("expected u32", "expected a whole number (0 or more, without quotes)"),
        ("expected i64", "expected a whole number (without quotes)"),
        ("expected f64", "expected a number (without quotes)"),
        ("expected a boolean", "expected true or false (without quotes)"),
        ("expected a string", "expected text in double quotes"),
        ("expected a sequence", "expected a list in square brackets, e.g. [\"admin\"]"),
    ] {
        text = text.replace(rust, plain);
    }
    let hint = if text.contains("unknown field") {
        "remove or correct the key; the README's config section explains each".to_string()
    } else {
        "top-level keys are: default_profile, max_changes, audit_syslog, audit_url, audit_password_env, \
         audit_password_cmd, audit_ca_file, script_cpu_seconds, script_memory_mb, [profiles.NAME]; the README's config section explains each profile key"
            .to_string()
    };
    (text, hint)
}

impl ConfigError {
    fn new(path: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError { path: path.display().to_string(), message: message.into(), hint: hint.into() }
    }

    /// An error in one key of one profile, in the file the config was read from (with the key's line there).
    pub fn in_profile(config: &Config, name: &str, key: &str, message: String, hint: impl Into<String>) -> Self {
        let path = config.source.clone().unwrap_or_default();
        let line = config.key_lines.iter().find(|(p, k, _)| p == name && k == key);
        let at = line.map(|(_, _, n)| format!(" (line {n})")).unwrap_or_default();
        ConfigError::new(&path, format!("[profiles.{name}] {key}{at}: {message}"), hint)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What `connect()` with no argument opens.
    pub default_profile: Option<String>,
    /// A run that would change more than this many accounts needs confirmation or `--yes`.
    pub max_changes: Option<usize>,
    /// A syslog datagram socket (usually `/dev/log`) that gets a copy of every audit checkpoint.
    pub audit_syslog: Option<PathBuf>,
    /// A team's shared audit log on PostgreSQL (`postgres://USER@HOST:PORT/DB`, no password in it).
    pub audit_url: Option<String>,
    /// The environment variable holding the team log's password.
    pub audit_password_env: Option<String>,
    /// A command printing the team log's password.
    pub audit_password_cmd: Option<String>,
    /// A CA certificate (PEM) the team log's server certificate may chain to, besides the usual roots.
    pub audit_ca_file: Option<PathBuf>,
    /// CPU seconds a script or REPL line may compute before it is stopped (waiting on servers is free).
    pub script_cpu_seconds: Option<u64>,
    /// Heap in MB a script or REPL line may add before it is stopped.
    pub script_memory_mb: Option<usize>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Where each profile key sits in the file (profile, key, line; never a value), so a later check can name it.
    #[serde(skip)]
    key_lines: Vec<(String, String, usize)>,
}

/// One service instance. The keys every kind takes are fields here; a kind's own keys (Travis `org_id`,
/// TransactionLink `admin_role`) stay in `settings`, which that kind's backend reads into its typed settings
/// (and refuses a key it does not take, so a typo is still an error naming the key).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Profile {
    pub kind: String,
    pub url: String,
    pub token_env: Option<String>,
    pub token_cmd: Option<String>,
    /// Allowed only when the config file is private (mode 0600).
    pub token: Option<SecretString>,
    pub concurrency: Option<usize>,
    /// Requests per second this profile may send (client-side budget).
    pub rate_limit: Option<f64>,
    /// Seconds before a request is abandoned.
    pub timeout: Option<u64>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    /// Logins that steward refuses to suspend, demote, rename or delete.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Bounds on what one answer and one listing may hold (a hostile or broken server cannot exhaust steward).
    pub max_response_mb: Option<usize>,
    pub max_pages: Option<usize>,
    pub max_items: Option<usize>,
    pub max_listing_mb: Option<usize>,
    /// The origin the service writes in its own links when the profile reaches it by another name (an IP, a
    /// tunnel, another port): links to it are followed, and sent to `url`'s origin.
    pub link_origin: Option<String>,
    /// The kind's own keys, as the file has them.
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// The keys every profile takes, whatever its kind (the fields of `Profile` but `settings`).
pub const COMMON_KEYS: &[&str] = &[
    "kind",
    "url",
    "token_env",
    "token_cmd",
    "token",
    "concurrency",
    "rate_limit",
    "timeout",
    "ca_file",
    "insecure",
    "protected",
    "max_response_mb",
    "max_pages",
    "max_items",
    "max_listing_mb",
    "link_origin",
];

impl Profile {
    /// The response and listing limits this profile sets, over steward's defaults.
    pub fn limits(&self) -> crate::http::Limits {
        let d = crate::http::Limits::default();
        crate::http::Limits {
            max_body_bytes: self.max_response_mb.map_or(d.max_body_bytes, |mb| mb.saturating_mul(1 << 20)),
            max_pages: self.max_pages.unwrap_or(d.max_pages),
            max_items: self.max_items.unwrap_or(d.max_items),
            max_listing_bytes: self.max_listing_mb.map_or(d.max_listing_bytes, |mb| mb.saturating_mul(1 << 20)),
        }
    }

    /// Where the token comes from, as the audit log records it (never the token itself).
    pub fn token_source(&self) -> String {
        if let Some(var) = &self.token_env {
            format!("env:{var}")
        } else if let Some(cmd) = &self.token_cmd {
            format!("cmd:{}", redact(cmd))
        } else if self.token.is_some() {
            "config-file".to_string()
        } else {
            "none".to_string()
        }
    }

    /// Reads the token from its source; the error says which source failed and how to fix it. A `token_cmd`
    /// stops when the run does (`stop`: Ctrl-C, `--timeout`).
    pub fn resolve_token(&self, name: &str, stop: &Interrupt) -> Result<Option<SecretString>, TokenError> {
        if let Some(var) = &self.token_env {
            return env_secret(name, var, "token_env").map(Some);
        }
        if let Some(cmd) = &self.token_cmd {
            let token = secret_cmd::run("token_cmd", cmd, secret_cmd::CAP, stop)
                .map_err(|source| TokenError::Command { profile: name.to_string(), source })?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(TokenError::CommandPrintedNothing { profile: name.to_string() });
            }
            return Ok(Some(loaded(token)));
        }
        if let Some(token) = &self.token {
            remember(token.expose_secret());
        }
        Ok(self.token.clone())
    }
}

/// A token (or another credential) a profile names that could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("profile {profile}: the environment variable {var} ({key}) is not set; export {var}=<token>")]
    EnvNotSet { profile: String, var: String, key: String },
    #[error("profile {profile}: {source}")]
    Command { profile: String, source: secret_cmd::SecretCmdError },
    #[error("profile {profile}: token_cmd printed nothing; it must print the token on stdout")]
    CommandPrintedNothing { profile: String },
}

/// The value of the environment variable `var` that profile `profile`'s `key` names, trimmed and remembered for
/// redaction; unset or blank is an error saying what to export.
pub fn env_secret(profile: &str, var: &str, key: &str) -> Result<SecretString, TokenError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(loaded(v.trim().to_string())),
        _ => Err(TokenError::EnvNotSet { profile: profile.to_string(), var: var.to_string(), key: key.to_string() }),
    }
}

impl Config {
    /// Where the team log's password comes from (`audit_password_env` / `audit_password_cmd`; neither: none, as
    /// for a server that trusts the connection), read when the log is first reached and remembered for redaction;
    /// a command stops when the run does (`stop`).
    pub fn audit_password(&self, stop: Interrupt) -> crate::audit::team::PasswordSource {
        use crate::audit::team::PasswordError;
        let env = self.audit_password_env.clone();
        let cmd = self.audit_password_cmd.clone();
        std::sync::Arc::new(move || {
            if let Some(var) = &env {
                return match std::env::var(var) {
                    Ok(v) if !v.trim().is_empty() => Ok(Some(loaded(v.trim().to_string()))),
                    _ => Err(PasswordError::EnvNotSet { var: var.clone() }),
                };
            }
            let Some(cmd) = &cmd else { return Ok(None) };
            let password = secret_cmd::run("audit_password_cmd", cmd, secret_cmd::CAP, &stop)?;
            let password = password.trim().to_string();
            if password.is_empty() {
                return Err(PasswordError::CommandPrintedNothing);
            }
            Ok(Some(loaded(password)))
        })
    }

    /// The config path: `--config`/`STEWARD_CONFIG` (already folded into `explicit` by clap), else the XDG path.
    pub fn default_path() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("steward").join("config.toml"))
    }

    /// Loads `explicit` (which must exist) or the default path (which may be absent).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match Self::default_path() {
                Some(p) if p.exists() => p,
                _ => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                &path,
                format!("cannot read the config file: {e}"),
                "create it (see README.md, section Config) or pass --config PATH",
            )
        })?;
        let mut config = Self::parse(&text, &path)?;
        if config.profiles.values().any(|p| p.token.is_some()) && !is_private(&path) {
            let (profile, line) = inline_token_at(&text);
            return Err(ConfigError::new(
                &path,
                format!("[profiles.{profile}] token (line {line}): the token is inline, but the file can be read by other users"),
                format!("run `chmod 600 {}`, or use token_env / token_cmd instead", path.display()),
            ));
        }
        config.source = Some(path);
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (message, hint) = in_plain_words(e.to_string().trim_end());
            ConfigError::new(path, message, hint)
        })?;
        config.key_lines = profile_key_lines(text).map(|(p, k, n)| (p, k.to_string(), n)).collect();
        config.source = Some(path.to_path_buf());
        for (name, p) in &config.profiles {
            config.validate_profile(name, p, path)?;
        }
        if let Some(d) = &config.default_profile {
            if !config.profiles.contains_key(d) {
                return Err(ConfigError::new(
                    path,
                    format!("default_profile = {d:?} names no profile"),
                    format!(
                        "define [profiles.{d}] or change default_profile (profiles: {})",
                        config.profile_names().join(", ")
                    ),
                ));
            }
        }
        Ok(config)
    }

    fn validate_profile(&self, name: &str, p: &Profile, path: &Path) -> Result<(), ConfigError> {
        let err = |key: &str, message: String, hint: &str| {
            ConfigError::new(path, format!("[profiles.{name}] {key}: {message}"), hint)
        };
        let checked = url::Url::parse(&p.url).map_err(|_| "is not an http(s) URL").and_then(|u| origin::check_base(&u));
        if let Err(why) = checked {
            // The URL itself is not quoted: it may hold a password.
            return Err(err("url", format!("the URL {why}"), "for GHES use https://HOST/api/v3"));
        }
        if let Some(alias) = &p.link_origin {
            let checked =
                url::Url::parse(alias).map_err(|_| "is not an http(s) URL").and_then(|u| origin::check_alias(&u));
            if let Err(why) = checked {
                return Err(err("link_origin", format!("{alias:?} {why}"), "write the origin the service names in its links, e.g. link_origin = \"https://github.example.com\""));
            }
        }
        let sources = [p.token_env.is_some(), p.token_cmd.is_some(), p.token.is_some()].iter().filter(|s| **s).count();
        if sources > 1 {
            return Err(err(
                "token_env/token_cmd/token",
                "more than one token source".into(),
                "keep exactly one of them",
            ));
        }
        if p.concurrency == Some(0) {
            return Err(err("concurrency", "must be at least 1".into(), "concurrency = 4 is a good start"));
        }
        if p.rate_limit.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err(err(
                "rate_limit",
                "must be a positive number of requests per second".into(),
                "e.g. rate_limit = 10",
            ));
        }
        Ok(())
    }

    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }
}

#[cfg(unix)]
fn is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o077 == 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_private(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/steward.toml"))
    }

    #[test]
    fn an_inline_token_is_found_by_profile_and_line() {
        let text = "[profiles.a]\nkind = \"github\"\ntoken_env = \"X\"\n\n[profiles.\"b\"]\ntoken = \"t\"\n";
        assert_eq!(inline_token_at(text), ("b".to_string(), 6));
    }

    #[test]
    fn type_errors_speak_the_config_files_words_and_lists_are_not_repeated() {
        let base = "[profiles.a]\nkind = \"github\"\nurl = \"https://x\"\n";
        let e = parse(&format!("{base}concurrency = \"8\"\n")).unwrap_err();
        assert!(e.message.contains("a whole number") && !e.message.contains("usize"), "{}", e.message);
        assert!(e.message.contains("line 4"), "{}", e.message);
    }

    #[test]
    fn a_good_profile_loads() {
        let c = parse(
            "default_profile = \"ghes\"\n[profiles.ghes]\nkind = \"github\"\nurl = \"https://ghe.example.com/api/v3\"\ntoken_env = \"GHES_TOKEN\"\nprotected = [\"root\"]\n",
        )
        .unwrap();
        assert_eq!(c.profiles["ghes"].protected, vec!["root"]);
        assert_eq!(c.profiles["ghes"].token_source(), "env:GHES_TOKEN");
    }

    #[test]
    fn two_token_sources_are_refused() {
        let e = parse("[profiles.x]\nkind = \"github\"\nurl = \"https://h\"\ntoken_env = \"A\"\ntoken_cmd = \"b\"\n")
            .unwrap_err();
        assert!(e.message.contains("more than one token source"));
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_quoting_it() {
        let e =
            parse("[profiles.x]\nkind = \"github\"\nurl = \"https://admin:hunter2hunter2@h/api/v3\"\n").unwrap_err();
        assert!(e.message.contains("[profiles.x] url"), "{e}");
        assert!(e.message.contains("user name or password"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn a_default_profile_must_exist() {
        assert!(parse("default_profile = \"nope\"\n").is_err());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c =
            parse("[profiles.x]\nkind = \"github\"\nurl = \"https://h\"\ntoken = \"ghp_supersecretvalue1\"\n").unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }

    #[test]
    fn a_missing_env_token_says_what_to_export() {
        let c =
            parse("[profiles.x]\nkind = \"github\"\nurl = \"https://h\"\ntoken_env = \"STEWARD_TEST_SURELY_UNSET\"\n")
                .unwrap();
        let e = c.profiles["x"].resolve_token("x", &Interrupt::default()).unwrap_err().to_string();
        assert!(e.contains("export STEWARD_TEST_SURELY_UNSET="), "{e}");
    }
}
