//! Command-line types (clap derive): plain data, no I/O. `context.rs` turns them into working objects.

use crate::audit::runref::RunRef;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "steward", version, about = "A scriptable admin shell for the user accounts of enterprise services")]
#[command(after_help = "Run `steward` with no command for the REPL. Try it with no setup: `steward --sandbox`.")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
#[command(
    next_help_heading = "Global options (for the shell, run, eval, audit, runs, undo, policy, schedule and profiles)"
)]
pub struct GlobalArgs {
    /// Config file (default: $XDG_CONFIG_HOME/steward/config.toml).
    #[arg(long, global = true, env = "STEWARD_CONFIG", hide_env_values = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Audit database (default: $XDG_DATA_HOME/steward/audit.db).
    #[arg(long, global = true, env = "STEWARD_AUDIT_DB", hide_env_values = true, value_name = "PATH")]
    pub audit_db: Option<PathBuf>,
    /// A team's shared audit log on PostgreSQL, postgres://USER@HOST:PORT/DB (default: `audit_url` in the config;
    /// --audit-db wins over both). The password comes from `audit_password_env` or `audit_password_cmd`.
    #[arg(long, global = true, env = "STEWARD_AUDIT_URL", hide_env_values = true, value_name = "URL")]
    pub audit_url: Option<String>,
    /// The profile `connect()` opens when given no name.
    #[arg(long, global = true, env = "STEWARD_PROFILE", hide_env_values = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Output format (default: table on a terminal, json in a pipe).
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Start the built-in sandbox and add a profile per emulated service (github, …).
    #[arg(long, global = true)]
    pub sandbox: bool,
    /// Send no mutation; record each one as dry-run in the audit log.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Answer yes to every confirmation (for unattended runs).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Stop a script that runs longer than this many seconds (a wall-clock deadline).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// More logging (-v info, -vv debug). Tokens are never logged.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

pub use crate::output::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The interactive shell (the default).
    Shell,
    /// Run a Rhai script.
    Run(RunArgs),
    /// Evaluate one expression and print its value.
    Eval(EvalArgs),
    /// Query, verify and export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List, show and test configured profiles.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// The runs in the audit log (newest first): their job, script, profiles, how they ended, what they did.
    Runs {
        /// How many of the newest runs to list (as `runs list --limit`; default 20).
        #[arg(long)]
        limit: Option<usize>,
        /// Also the runs that only read (an eval, a REPL line, `profiles test`); by default only those that changed
        /// something or recorded a decision.
        #[arg(long)]
        all: bool,
        #[command(subcommand)]
        sub: Option<RunsCommand>,
    },
    /// The stock scripts inside steward (`steward run NAME` runs one from anywhere); with a name, its header:
    /// what it does and every --arg it takes.
    Scripts { name: Option<String> },
    /// Lifecycle policies (TOML files): check, plan, apply, and run the due ones unattended.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Changes waiting for their time: timed ones taken back (`until`, `for`), and `h.schedule(…)`.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Reverse the successful suspensions, unsuspensions, promotions and demotions of a run's job (the run and
    /// its resumes), as a new run.
    Undo {
        /// Any run of the job to undo (`steward runs` shows run ids; `pushed:41` names a run by its number in a
        /// log `audit push` copied here).
        run: RunRef,
    },
    /// Serve the emulated admin APIs on 127.0.0.1 until Ctrl-C.
    #[command(disable_help_flag = true)]
    Sandbox(SandboxArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// The changes waiting, soonest first: id, when, profile, what, on whom, why, the run that scheduled it.
    List,
    /// Cancel a waiting change (recorded).
    Cancel {
        /// Its id, as `schedule list` shows it.
        id: i64,
    },
    /// Carry out every due change now (`policy run --due` does this too). A restore leaves alone an account
    /// changed since. Exit 3 when one failed.
    Run,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: its syntax, keys and rules, with the line of each mistake.
    Check {
        /// A policy file, or the name of one in the policies directory.
        policy: String,
    },
    /// Who the policy reaches now, at which stage and why; recorded in the audit log with its digest.
    Plan {
        policy: String,
        /// The policies directory (default: $XDG_CONFIG_HOME/steward/policies).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Also write the plan as a self-contained HTML page (a histogram of days idle per profile, every change
        /// and every account left alone).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Act on a recorded plan (`--plan DIGEST`), or on a fresh one, through the one pipeline; each account is read
    /// again first and one active since the plan is left alone.
    Apply {
        policy: String,
        /// The digest (or its first 12 or more characters) `policy plan` printed.
        #[arg(long, value_name = "DIGEST")]
        plan: Option<String>,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Approve a recorded plan, as a second admin (a policy with `require_approval = true` applies only plans
    /// approved by someone other than who made them).
    Approve {
        policy: String,
        #[arg(long, value_name = "DIGEST")]
        plan: String,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Plan and apply every due policy that declares `unattended = true`, within its own guards (for cron, a
    /// systemd timer, a Kubernetes CronJob). Exit 0 done, 3 some changes failed, 4 halted by a guard, 1 failed.
    Run {
        /// Only the policies whose `every` has passed since their last plan (the only mode there is; say it).
        #[arg(long, required = true)]
        due: bool,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The newest runs (the default).
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Also the runs that only read.
        #[arg(long)]
        all: bool,
    },
    /// One run: its command, its job's runs, and every outcome it recorded.
    Show {
        /// The run id (or `pushed:41`: by its number in a log `audit push` copied here).
        run: RunRef,
    },
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// The script file, or a stock script's name (`bulk_suspend`; `steward scripts` lists them), or `-` to
    /// read it from standard input.
    #[arg(required_unless_present = "help")]
    pub file: Option<PathBuf>,
    /// Print help; with a script, the --args it declares (name, kind, meaning) instead of running it.
    #[arg(short = 'h', long, action = clap::ArgAction::SetTrue)]
    pub help: bool,
    /// A script argument, readable as ARGS.key (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub args: Vec<(String, String)>,
    /// Continue an interrupted run: what it finished is not sent again; what was in flight is checked first.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<RunRef>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A Rhai expression, e.g. 'connect("github").list_users()'.
    pub expr: String,
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub args: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events (newest 50 unless --all or a filter).
    List(AuditFilterArgs),
    /// Show one event, or every event of a run (`--run`).
    Show {
        /// The event's seq.
        seq: Option<i64>,
        #[arg(long)]
        run: Option<i64>,
    },
    /// Recompute the hash chain, report the first broken event, and check the log against its signed
    /// checkpoint (or against a copy of one: a checkpoint file, or a line from syslog).
    Verify {
        /// A copy of a checkpoint kept elsewhere (the `.checkpoint` file, or a file holding the syslog line).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<std::path::PathBuf>,
        /// The verifier key to check checkpoints with (`steward audit key` prints it; default: the log's own).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
    },
    /// Print the public key that checks this log's checkpoints, to keep wherever its copies are checked.
    Key,
    /// Anchor the log anew when its checkpoint was lost or the log was rolled back or replaced on purpose:
    /// only a log whose whole chain links up, after confirmation (or --yes), recorded as an event.
    Anchor,
    /// Export events with their hashes (JSON lines or CSV) for offline review.
    Export(AuditFilterArgs),
    /// Copy a SQLite audit log into the team log (`audit_url`): its chain and anchors are verified first, each
    /// event keeps its time, its run's record and its original hash (as `origin`); pushing again copies only
    /// what was recorded since.
    Push {
        /// The SQLite log to copy (for instance ~/.local/share/steward/audit.db).
        #[arg(value_name = "SQLITE_LOG")]
        source: std::path::PathBuf,
    },
    /// The fingerprint this log gives a token read from standard input, to find what that token did
    /// (`audit list --token-fp`). The token is never printed or stored.
    Fingerprint,
    /// Set aside the row where a team log's chain breaks (a row a teammate wrote past the chain), so actions go
    /// on: the row is kept, skipped by the chain and named by `audit verify`. The log's owner only; recorded.
    SetAside {
        /// The seq `audit verify` names as where the chain breaks.
        seq: i64,
        /// Why, for the record (who looked at the row, what it was).
        #[arg(long)]
        why: String,
    },
}

#[derive(Debug, Args, Default)]
pub struct AuditFilterArgs {
    /// Events at or after this time: 2025-02-21, "2025-02-21 14:30", RFC 3339, today, yesterday, 7d, 12h…
    #[arg(long)]
    pub since: Option<String>,
    /// Events before this time (the same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this operation (suspend, unsuspend, promote, demote, delete_user, api, rate_limit, script…).
    #[arg(long)]
    pub op: Option<String>,
    /// Only events on this target, as it was written (a login, id or email).
    #[arg(long)]
    pub target: Option<String>,
    /// Events made with the token of this fingerprint (`steward profiles test` or `audit fingerprint` tell it).
    #[arg(long)]
    pub token_fp: Option<String>,
    /// Only the events of this run (`steward runs` lists them).
    #[arg(long)]
    pub run: Option<i64>,
    /// Only events of runs started by this OS user (a team log holds every admin's).
    #[arg(long)]
    pub user: Option<String>,
    /// Only events of runs started on this host (a team log holds every machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Only intents without an outcome (interrupted or in doubt).
    #[arg(long)]
    pub pending: bool,
    /// Every matching event, not only the newest 50.
    #[arg(long)]
    pub all: bool,
    /// At most this many events (the newest).
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Every configured profile.
    List,
    /// One profile's settings (never its token).
    Show {
        #[arg(value_name = "PROFILE")]
        name: String,
    },
    /// The profile names, one per line (for shell completion).
    #[command(hide = true)]
    Names,
    /// Try the profile's token (whoami, or what the service lets a token do) and report its identity and rights.
    Test {
        /// The profile (default: the default profile).
        #[arg(value_name = "PROFILE")]
        name: Option<String>,
        /// Test every profile; exits 1 if any fails.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Number of demo users.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Delay added to every API request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Server-side limit in requests per second (429 above it).
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Injected faults: by probability ("429=0.05,503=0.05,timeout=0.01,reset=0.01,apply500=0.01") or at request
    /// numbers ("429@37,503@20-80"); also 429date, secondary (GitHub's 403), exhausted (X-RateLimit-Remaining: 0),
    /// drop (no answer, not applied), and retry_after=SECONDS for the waits they name.
    #[arg(long, default_value = "")]
    pub faults: String,
    /// Random seed for fault injection, for repeatable runs.
    #[arg(long, default_value_t = 1)]
    pub fault_seed: u64,
    /// Start from these users (a JSON array, e.g. saved `list_users` output) instead of demo users.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// Print help.
    // Its own: the global options do nothing for the sandbox (they are refused), so its help leaves them out.
    #[arg(short, long, action = clap::ArgAction::SetTrue)]
    pub help: bool,
}

impl SandboxArgs {
    /// `steward sandbox --help`: this command's own options only.
    pub fn help_text() -> String {
        // The about line as `steward --help` lists it (the doc comment on `Command::Sandbox`).
        let listed = <Cli as clap::CommandFactory>::command();
        let about = listed.find_subcommand("sandbox").and_then(|c| c.get_about()).cloned().unwrap_or_default();
        let cmd = clap::Command::new("sandbox").bin_name("steward sandbox").about(about).disable_help_flag(true);
        <SandboxArgs as Args>::augment_args(cmd).render_help().to_string()
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}
