//! The profiles of a run, connected on first use: each becomes a `Connection` (its backend, HTTP client, token
//! record and protected list) that dispatch acts through. Scripts and commands reach services only this way.

use crate::audit::fingerprint::Fingerprints;
use crate::backends;
use crate::config::Profile;
use crate::dispatch::{Connection, Dispatcher, TokenRecord};
use crate::http::retry::RetryPolicy;
use crate::redact::SecretString;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A profile plus, for sandbox profiles, the token handed over in-process.
#[derive(Clone)]
pub struct ProfileEntry {
    pub profile: Profile,
    pub preset_token: Option<SecretString>,
    /// Tokens for particular permissions (Travis `activity`, `suspend`, `internal`), handed over in-process.
    pub preset_extra: Vec<(&'static str, SecretString)>,
}

/// The configured profiles, connected on first use (so listing them needs no token).
pub struct Connections {
    entries: BTreeMap<String, ProfileEntry>,
    default_profile: Option<String>,
    live: Mutex<HashMap<String, Arc<Connection>>>,
    /// Puts the pauses a service imposes on record.
    dispatcher: Arc<Dispatcher>,
    fingerprints: Fingerprints,
    /// Under `--sandbox` only the sandbox's profiles exist; messages say so instead of pointing at the config.
    sandbox: bool,
    /// In team mode, each service instance's turns are shared with the team's other processes.
    shared_turns: Option<crate::http::budget::TurnsFactory>,
}

impl Connections {
    pub fn new(
        entries: BTreeMap<String, ProfileEntry>,
        default_profile: Option<String>,
        dispatcher: Arc<Dispatcher>,
        fingerprints: Fingerprints,
        sandbox: bool,
    ) -> Self {
        Connections {
            entries,
            default_profile,
            live: Mutex::new(HashMap::new()),
            dispatcher,
            fingerprints,
            sandbox,
            shared_turns: None,
        }
    }

    /// Takes each service instance's turns from the team's shared schedule.
    pub fn with_shared_turns(mut self, factory: crate::http::budget::TurnsFactory) -> Self {
        self.shared_turns = Some(factory);
        self
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn entry(&self, name: &str) -> Option<&ProfileEntry> {
        self.entries.get(name)
    }

    pub fn default_name(&self) -> Option<&str> {
        self.default_profile.as_deref()
    }

    /// The connection for `name` (or the default profile), built once.
    pub fn connect(&self, name: Option<&str>) -> Result<Arc<Connection>, ConnectError> {
        let name = match name.or(self.default_profile.as_deref()) {
            Some(n) => n.to_string(),
            None if self.entries.len() == 1 => self.entries.keys().next().cloned().unwrap_or_default(),
            None => return Err(ConnectError::NoDefault { profiles: self.list_for_message() }),
        };
        if let Some(c) = self.live.lock().get(&name) {
            return Ok(c.clone());
        }
        let entry = self.entries.get(&name).ok_or_else(|| ConnectError::UnknownProfile {
            hint: unknown_profile_hint(&name, self.sandbox),
            profiles: self.list_for_message(),
            name: name.clone(),
        })?;
        let conn = Arc::new(build_connection(&name, entry, self)?);
        self.live.lock().insert(name, conn.clone());
        Ok(conn)
    }

    fn list_for_message(&self) -> String {
        if self.entries.is_empty() {
            "none configured".to_string()
        } else {
            self.names().join(", ")
        }
    }
}

/// Why a profile could not be connected.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "connect() needs a profile name: no default profile is set (profiles: {profiles}); pass --profile NAME or set default_profile in the config"
    )]
    NoDefault { profiles: String },
    #[error("unknown profile {name:?} (profiles: {profiles}); {hint}")]
    UnknownProfile { name: String, profiles: String, hint: String },
    #[error(transparent)]
    Token(#[from] crate::config::TokenError),
    /// The token's fingerprint key (beside the audit log) could not be read or made.
    #[error("profile {profile}: {why}")]
    Fingerprint { profile: String, why: crate::audit::keyfile::KeyError },
    #[error("profile {profile}: {source}")]
    Backend { profile: String, source: crate::http::error::ApiError },
}

fn build_connection(name: &str, entry: &ProfileEntry, all: &Connections) -> Result<Connection, ConnectError> {
    let (dispatcher, fingerprints) = (&all.dispatcher, &all.fingerprints);
    let p = &entry.profile;
    let token = match &entry.preset_token {
        Some(t) => Some(t.clone()),
        None => p.resolve_token(name, dispatcher.interrupt())?,
    };
    let fingerprint = token
        .as_ref()
        .map(|t| fingerprints.of(t))
        .transpose()
        .map_err(|why| ConnectError::Fingerprint { profile: name.to_string(), why })?
        .unwrap_or_default();
    let on_pause =
        dispatcher.pause_recorder(name, backends::kind(&p.kind).map(|k| k.name).unwrap_or("unknown"), &p.url);
    let extra = extra_tokens(name, entry)?;
    let record_extra = extra.clone();
    let retry = RetryPolicy::in_use();
    let backend = backends::connect(name, p, token.clone(), extra, Some(on_pause), retry, all.shared_turns.as_ref())
        .map_err(|source| ConnectError::Backend { profile: name.to_string(), source })?;
    let source = if entry.preset_token.is_some() { "sandbox".to_string() } else { p.token_source() };
    let token = match token.is_some() || record_extra.is_empty() {
        true => TokenRecord { source, fingerprint },
        false => credentials_record(name, entry, &record_extra, fingerprints)?,
    };
    Ok(Connection::new(name, backend, p.protected.clone(), token, p.concurrency.unwrap_or(4)))
}

/// What the log records of a profile that acts on credentials for single purposes and no main token (Travis):
/// each one's purpose and source, and each one's fingerprint, space-separated, so any of them finds its events.
fn credentials_record(
    name: &str,
    entry: &ProfileEntry,
    extra: &[(&'static str, SecretString)],
    fingerprints: &Fingerprints,
) -> Result<TokenRecord, ConnectError> {
    let vars = token_vars(&entry.profile);
    let mut sources = Vec::new();
    let mut fps = Vec::new();
    for (purpose, token) in extra {
        let source = match entry.preset_extra.is_empty() {
            true => vars.iter().find(|(p, _, _)| p == purpose).map(|(_, _, var)| format!("env:{var}")),
            false => Some("sandbox".to_string()),
        };
        sources.push(format!("{purpose}={}", source.unwrap_or_else(|| "none".into())));
        fps.push(fingerprints.of(token).map_err(|why| ConnectError::Fingerprint { profile: name.to_string(), why })?);
    }
    Ok(TokenRecord { source: sources.join(" "), fingerprint: fps.join(" ") })
}

/// Credentials for single purposes: handed over (sandbox) or read from the variables the kind's keys name.
fn extra_tokens(name: &str, entry: &ProfileEntry) -> Result<Vec<(&'static str, SecretString)>, ConnectError> {
    if !entry.preset_extra.is_empty() {
        return Ok(entry.preset_extra.clone());
    }
    let mut out = Vec::new();
    for (purpose, key, var) in token_vars(&entry.profile) {
        out.push((purpose, crate::config::env_secret(name, var, key)?));
    }
    Ok(out)
}

/// The credentials a profile names beyond its main token, by its kind: (purpose, key, environment variable).
pub(crate) fn token_vars(p: &crate::config::Profile) -> Vec<(&'static str, &'static str, &str)> {
    let declared = backends::kind(&p.kind).map(|k| k.token_envs).unwrap_or_default();
    declared.iter().filter_map(|(purpose, key)| Some((*purpose, *key, p.settings.get(*key)?.as_str()?))).collect()
}

/// What to do about a profile name that does not exist here.
pub(crate) fn unknown_profile_hint(name: &str, sandbox: bool) -> String {
    match sandbox {
        true => "a --sandbox process has the sandbox's profiles only (configured ones are unreachable from it, on purpose); \
                 use one of those, or run without --sandbox"
            .to_string(),
        false => format!("add [profiles.{name}] to the config, or try the built-in services with --sandbox"),
    }
}
