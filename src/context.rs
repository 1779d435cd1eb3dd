//! `Context`: what every command needs, built once from the command line: config, profiles, the tokio
//! runtime, the dispatcher (audit log, prompt, mode), the Ctrl-C flag and the output settings.

use crate::audit::fingerprint::Fingerprints;
use crate::audit::AuditTarget;
use crate::audit::RunInfo;
use crate::backends;
use crate::cli::GlobalArgs;
use crate::config::{Config, Profile};
use crate::connections::{Connections, ProfileEntry};
use crate::dispatch::{Dispatcher, Mode, Prompt};
use crate::error::UsageError;
use crate::http::redact::loaded;
use crate::interrupt::Interrupt;
use crate::output::{Format, OutputSettings};
use crate::script::engine::{DEFAULT_SCRIPT_CPU_SECONDS, DEFAULT_SCRIPT_MEMORY_MB};
use crate::script::watchdog::Budgets;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
        backends::check_config(&config)?;
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
                // Written as a config section would be, so a kind's own settings need no code here.
                let mut text = format!("kind = \"{kind}\"\nurl = \"{url}\"\nconcurrency = 8\ntimeout = 30\n");
                for (key, value) in steward_sandbox::profile_settings(kind) {
                    text.push_str(&format!("{key} = {value}\n"));
                }
                let profile: Profile = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("the sandbox's {kind} profile does not read as config: {e}"))?;
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
                    crate::connections::unknown_profile_hint(d, global.sandbox)
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
        let connections =
            Arc::new(Connections::new(entries, default_profile, dispatcher.clone(), fingerprints, global.sandbox));
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
