//! The one integration-test binary: each module drives the real `steward` binary the way a person would.

// Helpers shared by every module: temp dirs, the binary, the sandbox, failure reports that explain themselves.
mod forger;
mod util;
// A PostgreSQL server of the test's own, for team mode.
mod pg;

// Command-line behaviour: help, completions, exit codes, config errors, profiles.
mod cli;
// The trips of a newcomer's second hour, each driven as that person did.
mod second_hour;
// Every GHES operation end to end against the sandbox, with the audit trail each leaves.
mod ghes;
// Groups and roles: joiners, movers, leavers.
mod membership;
// Terraform Enterprise against the sandbox: every operation and documented status, paging, rate limits.
mod terraform;
// TransactionLink against the sandbox, and its requests against Prism serving its description.
mod transactionlink;
// Travis CI Enterprise against the sandbox: activity, one-permission tokens, chunked bulk suspension.
mod travis;
// A real Matrix Synapse homeserver: every verb, bulk suspension, activity, errors.
mod scim;
mod synapse;
// The audit log: listing, filters, export, and tamper detection.
mod audit;
// Deprovisioning on every sandbox service: the cascade, its evidence, protection, kill -9 and resume, undo.
mod deprovision;
// Offboarding people across all six services at once (the sandbox's four, a live SCIM server, a live Synapse).
mod offboarding;
// Activity on every service: where its dates come from, who its listing cannot show, why a service has none.
mod activity;
// Policies: check, plan, apply a recorded plan, guards, the unattended runner.
mod policy;
// The HTTP core against fault injection: retries, rate limits, timeouts.
mod faults;
// The safety rules on resolved accounts, on the single and the bulk path, with the server's counters.
mod safety;
// Resolve, then decide: names that reach a protected account, names no account has, lying servers.
mod identity;
// A hostile server: links to other origins, endless pages and bodies, answers that are not JSON.
mod hostile;
// The fault cases of the reliability plan that need a scheduled fault and arrival times: 429, secondary
// limits, spent budgets, a long outage.
mod fault_cases;
// Steward's own footing: damaged audit logs, the action budget, deadlines, shared logs, locks, canaries.
mod reliability;
// Listings walked lazily, exports streamed.
mod scale;
// The crash harness: 50 bulk jobs killed (at random and at failpoints) and resumed, invariants checked.
mod crash;
// A FUSE file system that loses what was not fsynced, for power-loss tests.
mod lazyfs;
// Power cuts mid-job on that file system: every intent the server acted on survives, and the job resumes.
mod power_loss;
// The REPL on a pseudo-terminal: typing, Tab, tables, multi-line input, :help, Ctrl-D.
mod repl;
// The record holds: logs cut or rewritten under a running process, by a forger that reproduces the chain.
mod record;
// Contract test: every GHES request steward makes, validated by Prism against GitHub's own description.
mod prism;
// Bulk jobs: statuses, dry run, confirmation, rate limits, kill -9 and resume, undo, stock scripts.
mod bulk;
// Property-based fuzzing of every reader of outside input: no input panics.
mod fuzz;
// Every documented function example runs, and every stock script runs.
mod examples;
// The README's tour, run as written.
mod readme;
// Team mode: the audit log on PostgreSQL, shared by processes on several machines.
mod team;
