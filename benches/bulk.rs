//! Bulk benchmarks (`cargo bench --bench bulk`): suspending 10,000 users from a CSV against the sandbox with
//! 20 ms per request, at concurrency 32 and 1; and 1,000 suspensions under a server-side limit of 50 req/s.
//! Each figure is the whole `steward run` process: start-up, CSV, plan, requests and audit.

#[path = "common.rs"]
mod common;
use common::children_peak_rss_mib;
use common::suspend_job::{run, Job};

use std::path::Path;
use std::time::Duration;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::args().any(|a| a == "unconfigured") {
        return unconfigured_rate(dir.path());
    }
    let n = 10_000;
    let bound = Duration::from_secs_f64(n as f64 * 0.020 / 32.0);
    println!(
        "suspend {n} users, 20 ms per request, concurrency 32: physical bound N*L/C = {:.2} s",
        bound.as_secs_f64()
    );
    for precheck in [false, true] {
        let file = run(dir.path(), &Job { users: n, precheck, ..Job::default() });
        let memory = run(dir.path(), &Job { users: n, precheck, audit: ":memory:", ..Job::default() });
        let requests_per_user = file.requests as f64 / n as f64;
        println!(
            "  precheck={precheck}: {:.2} s = {:.2}x the bound ({requests_per_user:.1} requests per user; bound for that many: {:.2} s = {:.2}x); audit cost {:+.2} s (in-memory log: {:.2} s); peak RSS {:.1} MiB",
            file.elapsed.as_secs_f64(),
            file.elapsed.as_secs_f64() / bound.as_secs_f64(),
            bound.as_secs_f64() * requests_per_user,
            file.elapsed.as_secs_f64() / (bound.as_secs_f64() * requests_per_user),
            file.elapsed.as_secs_f64() - memory.elapsed.as_secs_f64(),
            memory.elapsed.as_secs_f64(),
            children_peak_rss_mib(),
        );
    }
    // Concurrency 1 is how a shell loop over curl or `gh api` works; 500 users keep it short.
    let serial_n = 500;
    let serial = run(dir.path(), &Job { users: serial_n, concurrency: 1, ..Job::default() });
    let parallel = run(dir.path(), &Job { users: serial_n, ..Job::default() });
    println!(
        "suspend {serial_n} users (precheck=false): concurrency 1 {:.2} s, concurrency 32 {:.2} s: {:.1}x faster",
        serial.elapsed.as_secs_f64(),
        parallel.elapsed.as_secs_f64(),
        serial.elapsed.as_secs_f64() / parallel.elapsed.as_secs_f64()
    );
    let limited_n = 1_000;
    let target = limited_n as f64 / 50.0 + 1.0;
    for precheck in [false, true] {
        let limited = run(
            dir.path(),
            &Job {
                users: limited_n,
                concurrency: 4,
                client_rate: Some(50.0),
                server_rate: Some(50.0),
                precheck,
                ..Job::default()
            },
        );
        println!(
            "suspend {limited_n} users, server limit 50 req/s, client rate_limit 50, concurrency 4, precheck={precheck}: {:.2} s ({:.2}x of N/R + 1 s = {target:.0} s for one request per user; {} requests); 429 answers: {}",
            limited.elapsed.as_secs_f64(),
            limited.elapsed.as_secs_f64() / target,
            limited.requests,
            limited.rate_limited
        );
    }
    unconfigured_rate(dir.path());
}

/// The same job with no `rate_limit` in the profile: steward learns the server's rate from its 429s.
fn unconfigured_rate(dir: &Path) {
    let (n, rate) = (1_000, 50.0);
    for precheck in [false, true] {
        let job = Job { users: n, concurrency: 4, server_rate: Some(rate), precheck, ..Job::default() };
        let out = run(dir, &job);
        let accepted = out.requests - out.rate_limited;
        let achieved = accepted as f64 / out.elapsed.as_secs_f64();
        println!(
            "suspend {n} users, server limit {rate} req/s, no client rate_limit, concurrency 4, precheck={precheck}: \
             {:.2} s; {} requests, 429 answers {} ({:.2} %); accepted {achieved:.1} req/s = {:.0} % of the limit",
            out.elapsed.as_secs_f64(),
            out.requests,
            out.rate_limited,
            100.0 * out.rate_limited as f64 / out.requests as f64,
            100.0 * achieved / rate
        );
    }
}
