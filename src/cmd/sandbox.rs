//! `steward sandbox`: the emulated services on 127.0.0.1 until Ctrl-C.

use crate::cli::SandboxArgs;
use crate::error::UsageError;
use crate::output;
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
        };
        let running = steward_sandbox::start(opts).await.map_err(|e| {
            UsageError::new(format!(
                "cannot start the sandbox on 127.0.0.1:{}: {e} (try --port 0 for a free port)",
                args.port
            ))
        })?;
        // Demo credentials of a throwaway server, printed so a profile can point at it.
        for (kind, url, token) in running.services() {
            output::line(&format!("{kind}\t{url}\tadmin token: {token}"));
        }
        output::line(&format!("stats\thttp://{}/_sandbox/stats", running.addr));
        output::note("sandbox running; Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
        drop(running);
        Ok(())
    })
}
