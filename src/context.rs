//! `Context`: what every command needs, built once from the command line: config, profiles, the tokio
//! runtime, the dispatcher (audit log, prompt, mode), the Ctrl-C flag and the output settings.

use crate::audit::fingerprint::Fingerprints;
use crate::audit::team::PgTarget;
use crate::audit::AuditTarget;
use crate::audit::RunInfo;
use crate::backends;
use crate::cli::GlobalArgs;
use crate::config::{Config, Profile};
use crate::connections::{Connections, ProfileEntry};
use crate::dispatch::{Dispatcher, Mode, Prompt};
use crate::error::UsageError;
use crate::interrupt::Interrupt;
use crate::output::{Format, OutputSettings};
use crate::redact::loaded;
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
    /// The SQLite log, or for a team log the local file its anchors are kept beside.
    pub audit_path: PathBuf,
    pub audit_target: AuditTarget,
    /// What a script or REPL line may use (`--timeout`, `script_cpu_seconds`, `script_memory_mb`).
    pub script_budgets: Budgets,
    /// Keeps the in-process sandbox alive for the whole run.
    pub sandbox: Option<steward_sandbox::Running>,
    /// Where the sandbox's services are kept between processes (beside the sandbox's log), so a rehearsal of
    /// `undo` or `--resume` spans commands as it would on the real services.
    sandbox_state: Option<PathBuf>,
}

/// What the command line and the config decide before anything starts: which profiles this process may reach,
/// the default one, where the audit log is, the mode and the output. Pure, so it is unit-tested.
pub struct Settings {
    pub config: Config,
    /// The configured profiles (none in a sandbox process: the sandbox's own are added when it starts).
    pub entries: BTreeMap<String, ProfileEntry>,
    pub default_profile: Option<String>,
    pub sandbox: bool,
    pub audit_path: PathBuf,
    pub audit_target: AuditTarget,
    pub mode: Mode,
    pub output: OutputSettings,
    pub script_budgets: Budgets,
    /// The run's stop (Ctrl-C, `--timeout`), made here so what settings start (a team log's password command)
    /// stops with the run.
    pub interrupt: Interrupt,
}

impl Settings {
    /// `data_dir`: where the audit log lives unless `--audit-db` says; `stdout_is_tty` picks the default format.
    pub fn resolve(
        global: &GlobalArgs,
        config: Config,
        data_dir: Option<PathBuf>,
        stdout_is_tty: bool,
    ) -> Result<Settings, UsageError> {
        // A sandbox process sees the sandbox only: no configured (real) profile is reachable from it, and the
        // configured default does not apply.
        let (entries, default_profile) = match global.sandbox {
            true => (BTreeMap::new(), global.profile.clone()),
            false => {
                let entries = config
                    .profiles
                    .iter()
                    .map(|(k, p)| {
                        (k.clone(), ProfileEntry { profile: p.clone(), preset_token: None, preset_extra: Vec::new() })
                    })
                    .collect();
                (entries, global.profile.clone().or_else(|| config.default_profile.clone()))
            }
        };
        let audit_path = match &global.audit_db {
            Some(p) => p.clone(),
            None => data_dir.map(|d| d.join("steward").join("audit.db")).ok_or_else(|| {
                UsageError::new("cannot find a data directory for the audit log; pass --audit-db PATH")
            })?,
        };
        // What a sandbox process does is rehearsal, not evidence: it has a log of its own beside the real one.
        let in_memory = audit_path.as_os_str() == ":memory:";
        let audit_path = if global.sandbox && !in_memory { sandbox_log(&audit_path) } else { audit_path };
        // `--audit-db :memory:` keeps the log in memory (benchmarks, throwaway rehearsals): nothing on disk.
        let mut audit_target = if in_memory { AuditTarget::Memory } else { AuditTarget::File(audit_path.clone()) };
        let mut audit_path = audit_path;
        // A team log, unless a file was named or this is a sandbox (whose rehearsals stay off the team's record).
        let team_url = global.audit_url.clone().or_else(|| config.audit_url.clone());
        let interrupt = Interrupt::default();
        if let (Some(url), None, false) = (team_url, &global.audit_db, global.sandbox) {
            let anchors = audit_path.parent().map(|d| d.join("team")).unwrap_or_else(|| PathBuf::from("team"));
            let pg =
                PgTarget::new(&url, config.audit_ca_file.clone(), &anchors, config.audit_password(interrupt.clone()))
                    .map_err(|e| UsageError::new(e.to_string()))?;
            audit_path = pg.anchor.clone();
            audit_target = AuditTarget::Postgres(Arc::new(pg));
        }
        let mode =
            Mode { dry_run: global.dry_run, assume_yes: global.yes, max_changes: config.max_changes.unwrap_or(50) };
        let format = global.format.unwrap_or(if stdout_is_tty { Format::Table } else { Format::Json });
        let script_budgets = Budgets {
            deadline: global.timeout.map(Duration::from_secs),
            cpu: Some(Duration::from_secs(config.script_cpu_seconds.unwrap_or(DEFAULT_SCRIPT_CPU_SECONDS))),
            memory: Some(config.script_memory_mb.unwrap_or(DEFAULT_SCRIPT_MEMORY_MB).saturating_mul(1 << 20)),
        };
        Ok(Settings {
            config,
            entries,
            default_profile,
            sandbox: global.sandbox,
            audit_path,
            audit_target,
            mode,
            output: OutputSettings { format, stdout_is_tty },
            script_budgets,
            interrupt,
        })
    }

    /// The default profile must be one this process can reach; the error says what to do.
    pub fn check_default(&self) -> Result<(), UsageError> {
        match &self.default_profile {
            Some(d) if !self.entries.contains_key(d) => {
                let names: Vec<&String> = self.entries.keys().collect();
                Err(UsageError::new(format!(
                    "--profile {d}: no such profile (profiles: {names:?}); {}",
                    crate::connections::unknown_profile_hint(d, self.sandbox)
                )))
            }
            _ => Ok(()),
        }
    }

    /// Adds the running sandbox's services, one profile per kind, written as a config section would be (so a
    /// kind's own settings need no code here); `github` is the default unless `--profile` names another.
    fn add_sandbox(&mut self, running: &steward_sandbox::Running) -> anyhow::Result<()> {
        for (kind, url, admin_token) in running.services() {
            let mut text = format!("kind = \"{kind}\"\nurl = \"{url}\"\nconcurrency = 8\ntimeout = 30\n");
            for (key, value) in steward_sandbox::profile_settings(kind) {
                text.push_str(&format!("{key} = {value}\n"));
            }
            let profile: Profile = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("the sandbox's {kind} profile does not read as config: {e}"))?;
            let preset_extra = steward_sandbox::extra_tokens(kind)
                .into_iter()
                .map(|(name, value)| (name, loaded(value.to_string())))
                .collect();
            let entry = ProfileEntry { profile, preset_token: Some(loaded(admin_token.to_string())), preset_extra };
            self.entries.insert(kind.to_string(), entry);
        }
        self.default_profile.get_or_insert_with(|| "github".to_string());
        Ok(())
    }
}

impl Context {
    /// Resolves the settings, then starts what they need: the runtime, the sandbox, the Ctrl-C handler, the
    /// dispatcher (holding the job when resuming) and the connections.
    pub fn new(
        global: &GlobalArgs,
        run_info: RunInfo,
        prompt: Arc<dyn Prompt>,
        resume: Option<crate::audit::runref::RunRef>,
    ) -> anyhow::Result<Context> {
        let config = Config::load(global.config.as_deref())?;
        backends::check_config(&config)?;
        let mut settings = Settings::resolve(global, config, dirs::data_dir(), std::io::stdout().is_terminal())?;
        crate::files::keep(own_files(global, &settings));
        // One worker: steward's async work is mostly waiting on servers, and a second worker mostly handed tasks
        // back and forth (a million-user walk took a fifth more CPU and time with two). Scripts, the audit writer
        // and Ctrl-C have threads of their own.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("steward-io")
            .build()?;
        let sandbox_state = match (&settings.audit_target, settings.sandbox) {
            (AuditTarget::File(log), true) => Some(sandbox_state_path(log)),
            _ => None,
        };
        let sandbox = match settings.sandbox {
            true => {
                let saved = sandbox_state.as_deref().map(read_sandbox_state).transpose()?.flatten();
                let running = runtime
                    .block_on(steward_sandbox::start(steward_sandbox::Options { port: 0, saved, ..Default::default() }))
                    .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
                settings.add_sandbox(&running)?;
                Some(running)
            }
            false => None,
        };
        settings.check_default()?;
        let interrupt = settings.interrupt.clone();
        interrupt.install_handler();
        let fingerprints = Fingerprints::new(settings.audit_target.clone());
        let run_info = RunInfo { default_profile: settings.default_profile.clone(), ..run_info };
        let mut dispatcher = Dispatcher::new(
            settings.audit_target.clone(),
            settings.config.audit_syslog.clone().filter(|_| !settings.sandbox),
            run_info,
            prompt,
            Arc::new(crate::output::progress::StderrReporter),
            settings.mode,
            interrupt.clone(),
        );
        if let Some(run) = resume {
            hold_and_resume(&mut dispatcher, &settings.audit_target, &run)?;
        }
        let dispatcher = Arc::new(dispatcher);
        let mut connections = Connections::new(
            settings.entries,
            settings.default_profile,
            dispatcher.clone(),
            fingerprints,
            settings.sandbox,
        );
        if let AuditTarget::Postgres(pg) = &settings.audit_target {
            connections = connections.with_shared_turns(crate::turns::factory(pg.clone()));
        }
        let connections = Arc::new(connections);
        Ok(Context {
            config: settings.config,
            runtime,
            connections,
            dispatcher,
            interrupt,
            output: settings.output,
            audit_path: settings.audit_path,
            audit_target: settings.audit_target,
            script_budgets: settings.script_budgets,
            sandbox,
            sandbox_state,
        })
    }

    /// Keeps the sandbox's services as this process leaves them, for the next `--sandbox` process (a file
    /// written whole, then renamed over the last one); a failure is said, not fatal: it was a rehearsal.
    pub fn keep_sandbox_state(&self) {
        let (Some(running), Some(path)) = (&self.sandbox, &self.sandbox_state) else { return };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        // The data directory may not exist yet: a first command that wrote nothing to the log made none.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let kept = dir
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, running.saved().to_string()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = kept {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!("the sandbox's state could not be kept at {}: {e}", path.display());
        }
    }
}

/// Beside the sandbox's log: its services' state (`sandbox-audit.db` → `sandbox-audit.db.services.json`).
fn sandbox_state_path(log: &std::path::Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".services.json");
    PathBuf::from(name)
}

/// What an earlier `--sandbox` process left, if any; one that does not read is an error saying how to start afresh.
fn read_sandbox_state(path: &std::path::Path) -> anyhow::Result<Option<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("cannot read the sandbox's state {}: {e}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        UsageError::new(format!(
            "the sandbox's state {} does not read ({e}); delete it to start the sandbox afresh",
            path.display()
        ))
        .into()
    })
}

/// Takes the job `run` belongs to for this process, then tells the dispatcher what the job already did. One
/// process per job at a time, taken before reading (so nothing read goes stale): two resumes of one job (of run N
/// and of its continuation N+1 alike) would both send what is left.
fn hold_and_resume(
    dispatcher: &mut Dispatcher,
    audit: &AuditTarget,
    named: &crate::audit::runref::RunRef,
) -> anyhow::Result<()> {
    let store = crate::audit::AuditStore::open_verified_target(audit)?;
    let run = found_run(&store, named)?;
    if let Some(job) = store.job_of(run)? {
        if !dispatcher.hold_job(job.first)? {
            return Err(UsageError::new(format!(
                "run {run} belongs to job {} (runs {:?}), which another steward process is running or resuming \
                 right now; wait for it to end",
                job.first,
                job.runs.iter().rev().collect::<Vec<_>>()
            ))
            .into());
        }
    }
    dispatcher.resume(run, store.done_in_job(run)?, store.open_intents_in_job(run)?, store.unknown_in_job(run)?);
    Ok(())
}

/// The run `named` names in `store`, said aloud when it is not the number typed; a name that is unclear is a
/// usage error naming the candidates.
pub fn found_run(store: &crate::audit::AuditStore, named: &crate::audit::runref::RunRef) -> anyhow::Result<i64> {
    use crate::audit::runref::RunRefError;
    match store.find_run(named) {
        Ok(found) => {
            if let Some(said) = found.said {
                crate::output::note(&said);
            }
            Ok(found.run)
        }
        Err(RunRefError::Unclear(why)) => Err(UsageError::new(why).into()),
        Err(RunRefError::Audit(e)) => Err(e.into()),
    }
}

/// What a script may not write over: this process's log and the configured one (a sandbox's is another file),
/// everything kept beside them, steward's data and state directories, and the config.
fn own_files(global: &GlobalArgs, settings: &Settings) -> crate::files::OwnFiles {
    let data = dirs::data_dir().map(|d| d.join("steward"));
    let configured_log = global.audit_db.clone().or_else(|| data.as_ref().map(|d| d.join("audit.db")));
    let logs = [Some(settings.audit_path.clone()), configured_log].into_iter().flatten();
    let state = dirs::state_dir().or_else(dirs::data_local_dir).map(|d| d.join("steward"));
    let config = global.config.clone().or_else(Config::default_path);
    let mut own = crate::files::OwnFiles::default();
    for log in logs.filter(|l| l.as_os_str() != ":memory:") {
        own = own.log(&log);
    }
    for dir in [data, state].into_iter().flatten() {
        own = own.dir(&dir);
    }
    match config {
        Some(config) => own.file(&config),
        None => own,
    }
}

/// The sandbox's audit log: `sandbox-<name>` beside the real one.
fn sandbox_log(real: &std::path::Path) -> PathBuf {
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "audit.db".into());
    real.with_file_name(format!("sandbox-{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> GlobalArgs {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            global: GlobalArgs,
        }
        Cli::parse_from(std::iter::once("steward").chain(args.iter().copied())).global
    }

    fn config() -> Config {
        let text = "default_profile = \"prod\"\nmax_changes = 7\n[profiles.prod]\nkind = \"github\"\nurl = \"https://ghe.example.com/api/v3\"\n";
        Config::parse(text, std::path::Path::new("c.toml")).expect("config")
    }

    #[test]
    fn a_sandbox_process_reaches_no_configured_profile_and_keeps_its_own_log() {
        let s = Settings::resolve(&global(&["--sandbox"]), config(), Some("/data".into()), false).expect("resolves");
        assert!(
            s.entries.is_empty() && s.default_profile.is_none(),
            "the configured profile and default are out of reach"
        );
        assert_eq!(s.audit_path, PathBuf::from("/data/steward/sandbox-audit.db"));
        let Err(e) = Settings::resolve(&global(&["--sandbox", "--profile", "prod"]), config(), None, false) else {
            panic!("no data directory and no --audit-db must be an error")
        };
        assert!(e.to_string().contains("data directory"), "{e}");
        let s = Settings::resolve(
            &global(&["--sandbox", "--profile", "prod", "--audit-db", "/x/a.db"]),
            config(),
            None,
            false,
        )
        .expect("resolves");
        let e = s.check_default().unwrap_err().to_string();
        assert!(e.contains("--profile prod: no such profile") && e.contains("sandbox"), "{e}");
    }

    #[test]
    fn the_configured_profiles_default_mode_and_format_come_through() {
        let s = Settings::resolve(&global(&["--dry-run"]), config(), Some("/data".into()), true).expect("resolves");
        assert_eq!(s.default_profile.as_deref(), Some("prod"));
        assert!(s.entries.contains_key("prod") && s.check_default().is_ok());
        assert!(s.mode.dry_run && !s.mode.assume_yes && s.mode.max_changes == 7);
        assert_eq!(s.output.format, Format::Table, "a terminal gets tables");
        assert_eq!(s.audit_path, PathBuf::from("/data/steward/audit.db"));
        let s = Settings::resolve(&global(&["--audit-db", ":memory:"]), config(), None, false).expect("resolves");
        assert!(matches!(s.audit_target, AuditTarget::Memory) && s.output.format == Format::Json);
        let e =
            Settings::resolve(&global(&["--profile", "nope"]), config(), Some("/d".into()), false).expect("resolves");
        assert!(e.check_default().unwrap_err().to_string().contains("add [profiles.nope]"));
    }

    #[test]
    fn a_team_log_is_used_unless_a_file_is_named_or_this_is_a_sandbox() {
        let with_url = |url: &str| {
            let mut c = config();
            c.audit_url = Some(url.into());
            c
        };
        let team = || with_url("postgres://alice@db.internal:5432/steward");
        let s = Settings::resolve(&global(&[]), team(), Some("/data".into()), false).expect("resolves");
        let AuditTarget::Postgres(pg) = &s.audit_target else { panic!("the team log: {:?}", s.audit_target) };
        assert_eq!(pg.shown, "postgres://alice@db.internal:5432/steward");
        assert!(s.audit_path.starts_with("/data/steward/team"), "anchors kept locally: {:?}", s.audit_path);
        let s = Settings::resolve(&global(&["--audit-db", "/x/a.db"]), team(), None, false).expect("resolves");
        assert!(matches!(s.audit_target, AuditTarget::File(_)), "--audit-db names a file instead");
        let s = Settings::resolve(&global(&["--sandbox"]), team(), Some("/data".into()), false).expect("resolves");
        assert!(matches!(s.audit_target, AuditTarget::File(_)), "a sandbox rehearsal stays off the team's record");
        let with_password = with_url("postgres://alice:hunter2hunter2@db/steward");
        let e = Settings::resolve(&global(&[]), with_password, Some("/data".into()), false).err().expect("refused");
        assert!(e.to_string().contains("audit_password_env") && !e.to_string().contains("hunter2"), "{e}");
        let s = Settings::resolve(
            &global(&["--audit-url", "postgres://bob@other:5433/team"]),
            team(),
            Some("/d".into()),
            false,
        )
        .expect("resolves");
        assert!(matches!(&s.audit_target, AuditTarget::Postgres(pg) if pg.shown.contains("bob@other:5433")));
    }
}
