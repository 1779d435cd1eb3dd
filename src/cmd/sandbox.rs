//! `steward sandbox`: the emulated services on 127.0.0.1 until Ctrl-C.

use crate::cli::SandboxArgs;
use crate::error::UsageError;
use crate::output;
use std::io::Write;
use std::time::Duration;

pub fn run(args: &SandboxArgs) -> anyhow::Result<()> {
    let faults = steward_sandbox::faults::Faults::parse(&args.faults, args.fault_seed).map_err(UsageError::new)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let opts = steward_sandbox::Options {
            port: args.port,
            users: args.users,
            latency: Duration::from_millis(args.latency_ms),
            rate_limit: args.rate_limit,
            faults,
            seed: args.seed.clone(),
            people: Vec::new(),
            saved: None,
            engineering: None,
        };
        let running = steward_sandbox::start(opts).await.map_err(|e| {
            UsageError::new(format!(
                "cannot start the sandbox on 127.0.0.1:{}: {e} (try --port 0 for a free port)",
                args.port
            ))
        })?;
        // Demo credentials of a throwaway server, printed so a config can point at it.
        // Not through the scrubbing output: these are the demo server's own, made to be pasted.
        let _ = writeln!(std::io::stdout().lock(), "{}", setup(&running));
        output::line(&format!("# what reached it: http://{}/_sandbox/stats", running.addr));
        output::note("sandbox running; Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
        drop(running);
        Ok(())
    })
}

/// Every service with every token, as shell exports and config profiles to paste.
fn setup(running: &steward_sandbox::Running) -> String {
    let services = running.services();
    let width = services.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let mut out = vec!["# The sandbox's services (demo tokens of a throwaway server on 127.0.0.1):".to_string()];
    let mut exports = Vec::new();
    let mut profiles = Vec::new();
    for (kind, url, token) in &services {
        let var = |purpose: &str| format!("SANDBOX_{}_{}", kind.to_uppercase(), purpose.to_uppercase());
        let extra = steward_sandbox::extra_tokens(kind);
        let mut lines =
            vec![format!("[profiles.sandbox-{kind}]"), format!("kind = \"{kind}\""), format!("url = \"{url}\"")];
        lines
            .extend(steward_sandbox::profile_settings(kind).into_iter().map(|(key, value)| format!("{key} = {value}")));
        if extra.is_empty() {
            out.push(format!("#   {kind:width$}  {url}  token {token}"));
            exports.push(format!("export {}='{token}'", var("token")));
            lines.push(format!("token_env = \"{}\"", var("token")));
        } else {
            let named: Vec<String> = extra.iter().map(|(p, t)| format!("{p} token {t}")).collect();
            out.push(format!("#   {kind:width$}  {url}  {}", named.join(", ")));
            lines.push(format!("token_env = \"{}\"", var("suspend")));
            for (purpose, value) in &extra {
                exports.push(format!("export {}='{value}'", var(purpose)));
                lines.push(format!("{purpose}_token_env = \"{}\"", var(purpose)));
            }
        }
        profiles.push(lines.join("\n"));
    }
    out.push(String::new());
    out.push("# In a shell:".into());
    out.extend(exports);
    out.push(String::new());
    out.push("# In config.toml (`steward profiles test --all` checks them):".into());
    out.push(profiles.join("\n\n"));
    out.join("\n")
}
