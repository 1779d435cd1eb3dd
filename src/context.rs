//! `Context`: what every command needs, built once from the command line: config, profiles, the tokio
//! runtime, the dispatcher (audit log, prompt, mode), the Ctrl-C flag and the output settings.

use crate::audit::fingerprint::Fingerprints;
use crate::audit::AuditTarget;
use crate::audit::RunInfo;
use crate::backends;
use crate::cli::{Format, GlobalArgs};
use crate::config::{Config, Profile};
use crate::dispatch::{Connection, Dispatcher, Mode, Prompt, TokenRecord};
use crate::error::UsageError;
use crate::http::redact::{loaded, SecretString};
use crate::http::retry::RetryPolicy;
use crate::interrupt::Interrupt;
use crate::script::engine::{DEFAULT_SCRIPT_CPU_SECONDS, DEFAULT_SCRIPT_MEMORY_MB};
use crate::script::watchdog::Budgets;
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

impl Connections {
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
    pub fn connect(&self, name: Option<&str>) -> Result<Arc<Connection>, String> {
        let name = match name.or(self.default_profile.as_deref()) {
            Some(n) => n.to_string(),
            None if self.entries.len() == 1 => self.entries.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(format!(
                    "connect() needs a profile name: no default profile is set (profiles: {}); pass --profile NAME or set default_profile in the config",
                    self.list_for_message()
                ))
            }
        };
        if let Some(c) = self.live.lock().unwrap_or_else(|e| e.into_inner()).get(&name) {
            return Ok(c.clone());
        }
        let entry = self.entries.get(&name).ok_or_else(|| {
            format!(
                "unknown profile {name:?} (profiles: {}); {}",
                self.list_for_message(),
                unknown_profile_hint(&name, self.sandbox)
            )
        })?;
        let conn = Arc::new(build_connection(&name, entry, &self.dispatcher, &self.fingerprints)?);
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(name, conn.clone());
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

fn build_connection(
    name: &str,
    entry: &ProfileEntry,
    dispatcher: &Dispatcher,
    fingerprints: &Fingerprints,
) -> Result<Connection, String> {
    let p = &entry.profile;
    let token = match &entry.preset_token {
        Some(t) => Some(t.clone()),
        None => p.resolve_token(name)?,
    };
    let fingerprint = token.as_ref().map(|t| fingerprints.of(t)).transpose()?.unwrap_or_default();
    let on_pause =
        dispatcher.pause_recorder(name, backends::kind(&p.kind).map(|k| k.name).unwrap_or("unknown"), &p.url);
    let extra = extra_tokens(name, entry)?;
    let backend = backends::connect(name, p, token, extra, Some(on_pause), RetryPolicy::default())?;
    let source = if entry.preset_token.is_some() { "sandbox".to_string() } else { p.token_source() };
    let token = TokenRecord { source, fingerprint };
    Ok(Connection::new(name, backend, p.protected.clone(), token, p.concurrency.unwrap_or(4)))
}

/// Tokens for single permissions: handed over (sandbox) or read from `<name>_token_env`.
fn extra_tokens(name: &str, entry: &ProfileEntry) -> Result<Vec<(&'static str, SecretString)>, String> {
    if !entry.preset_extra.is_empty() {
        return Ok(entry.preset_extra.clone());
    }
    let p = &entry.profile;
    let mut out = Vec::new();
    for (purpose, var) in
        [("activity", &p.activity_token_env), ("suspend", &p.suspend_token_env), ("internal", &p.internal_token_env)]
    {
        if let Some(var) = var {
            let value = std::env::var(var).map_err(|_| {
                format!("profile {name}: the environment variable {var} ({purpose}_token_env) is not set; export {var}=<token>")
            })?;
            out.push((purpose, loaded(value.trim().to_string())));
        }
    }
    Ok(out)
}

/// How results are printed.
#[derive(Clone, Copy, Debug)]
pub struct OutputSettings {
    pub format: Format,
    pub stdout_is_tty: bool,
}

pub struct Context {
    pub config: Config,
    pub runtime: tokio::runtime::Runtime,
    pub connections: Arc<Connections>,
    pub dispatcher: Arc<Dispatcher>,
    pub interrupt: Interrupt,
    pub output: OutputSettings,
    pub audit_path: PathBuf,
    /// What a script or REPL line may use (`--timeout`, `script_cpu_seconds`, `script_memory_mb`).
    pub script_budgets: Budgets,
    /// Keeps the in-process sandbox alive for the whole run.
    pub sandbox: Option<steward_sandbox::Running>,
}

impl Context {
    pub fn new(
        global: &GlobalArgs,
        run_info: RunInfo,
        prompt: Arc<dyn Prompt>,
        resume: Option<i64>,
    ) -> anyhow::Result<Context> {
        let config = Config::load(global.config.as_deref())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("steward-io")
            .build()?;
        let mut entries: BTreeMap<String, ProfileEntry> = config
            .profiles
            .iter()
            .map(|(k, p)| {
                (k.clone(), ProfileEntry { profile: p.clone(), preset_token: None, preset_extra: Vec::new() })
            })
            .collect();
        let mut default_profile = global.profile.clone().or_else(|| config.default_profile.clone());
        let sandbox = if global.sandbox {
            // A sandbox process sees the sandbox only: no configured (real) profile is reachable from it, and
            // the configured default does not apply.
            entries.clear();
            default_profile = global.profile.clone();
            let running = runtime
                .block_on(steward_sandbox::start(steward_sandbox::Options { port: 0, ..Default::default() }))
                .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
            for (kind, url, admin_token) in running.services() {
                let org_id = (kind == "travis").then_some(steward_sandbox::travis_tokens::ORG_ID);
                let profile = Profile {
                    kind: kind.to_string(),
                    url,
                    concurrency: Some(8),
                    timeout: Some(30),
                    org_id: org_id.map(str::to_string),
                    ..Profile::default()
                };
                let token = loaded(admin_token.to_string());
                let preset_extra = steward_sandbox::extra_tokens(kind)
                    .into_iter()
                    .map(|(name, value)| (name, loaded(value.to_string())))
                    .collect();
                entries.insert(kind.to_string(), ProfileEntry { profile, preset_token: Some(token), preset_extra });
            }
            if default_profile.is_none() {
                default_profile = Some("github".to_string());
            }
            Some(running)
        } else {
            None
        };
        if let Some(d) = &default_profile {
            if !entries.contains_key(d) {
                let names: Vec<&String> = entries.keys().collect();
                return Err(UsageError::new(format!(
                    "--profile {d}: no such profile (profiles: {names:?}); {}",
                    unknown_profile_hint(d, global.sandbox)
                ))
                .into());
            }
        }
        let audit_path = match &global.audit_db {
            Some(p) => p.clone(),
            None => dirs::data_dir().map(|d| d.join("steward").join("audit.db")).ok_or_else(|| {
                UsageError::new("cannot find a data directory for the audit log; pass --audit-db PATH")
            })?,
        };
        // What a sandbox process does is rehearsal, not evidence: it has a log of its own beside the real one.
        let audit_path = match global.sandbox && audit_path.as_os_str() != ":memory:" {
            true => sandbox_log(&audit_path),
            false => audit_path,
        };
        let interrupt = Interrupt::default();
        interrupt.install_handler();
        let max_changes = config.max_changes.unwrap_or(50);
        let mode = Mode { dry_run: global.dry_run, assume_yes: global.yes, max_changes };
        // `--audit-db :memory:` keeps the log in memory (benchmarks, throwaway rehearsals): nothing on disk.
        let audit_target = if audit_path.as_os_str() == ":memory:" {
            AuditTarget::Memory
        } else {
            AuditTarget::File(audit_path.clone())
        };
        let fingerprints = Fingerprints::new(audit_target.clone());
        let run_info = RunInfo { default_profile: default_profile.clone(), ..run_info };
        let mut dispatcher = Dispatcher::new(
            audit_target,
            config.audit_syslog.clone().filter(|_| !global.sandbox),
            run_info,
            prompt,
            Arc::new(crate::output::progress::StderrReporter),
            mode,
            interrupt.clone(),
        );
        if let Some(run) = resume {
            let store = crate::audit::AuditStore::open_verified(&audit_path)?;
            // One process per job at a time, taken before reading what the job did (so nothing read goes stale):
            // two resumes of one job (of run N and of its continuation N+1 alike) would both send what is left.
            if let Some(job) = store.job_of(run)? {
                if !dispatcher.hold_job(job.first).map_err(UsageError::new)? {
                    return Err(UsageError::new(format!(
                        "run {run} belongs to job {} (runs {:?}), which another steward process is running or \
                         resuming right now; wait for it to end",
                        job.first,
                        job.runs.iter().rev().collect::<Vec<_>>()
                    ))
                    .into());
                }
            }
            dispatcher.resume(run, store.done_in_job(run)?, store.open_intents_in_job(run)?);
        }
        let dispatcher = Arc::new(dispatcher);
        let connections = Arc::new(Connections {
            entries,
            default_profile,
            live: Mutex::new(HashMap::new()),
            dispatcher: dispatcher.clone(),
            fingerprints,
            sandbox: global.sandbox,
        });
        let stdout_is_tty = std::io::stdout().is_terminal();
        let format = global.format.unwrap_or(if stdout_is_tty { Format::Table } else { Format::Json });
        let script_budgets = Budgets {
            deadline: global.timeout.map(Duration::from_secs),
            cpu: Some(Duration::from_secs(config.script_cpu_seconds.unwrap_or(DEFAULT_SCRIPT_CPU_SECONDS))),
            memory: Some(config.script_memory_mb.unwrap_or(DEFAULT_SCRIPT_MEMORY_MB).saturating_mul(1 << 20)),
        };
        Ok(Context {
            config,
            runtime,
            connections,
            dispatcher,
            interrupt,
            output: OutputSettings { format, stdout_is_tty },
            audit_path,
            script_budgets,
            sandbox,
        })
    }
}

/// The sandbox's audit log: `sandbox-<name>` beside the real one.
fn sandbox_log(real: &std::path::Path) -> PathBuf {
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "audit.db".into());
    real.with_file_name(format!("sandbox-{name}"))
}

/// What to do about a profile name that does not exist here.
fn unknown_profile_hint(name: &str, sandbox: bool) -> String {
    match sandbox {
        true => "a --sandbox process has the sandbox's profiles only (configured ones are unreachable from it, on purpose); \
                 use one of those, or run without --sandbox"
            .to_string(),
        false => format!("add [profiles.{name}] to the config, or try the built-in services with --sandbox"),
    }
}
