//! Power loss (reliability plan §6, the LazyFS runs): a bulk job writes its audit log on a file system that
//! drops everything not fsynced; the job is killed and the power cut at random moments. The disk as it is after
//! the cut must still hold the intent of every request the server saw (synchronous=FULL makes each commit
//! durable before the request goes), verify, and let the job be resumed to the plan's invariants.

use crate::crash::{assert_invariants, job, script_args};
use crate::lazyfs::LazyFs;
use crate::util::{Run, Sandbox};
use serde_json::Value;
use std::time::Duration;
use steward_sandbox::Options;

const USERS: usize = 60;
const CUTS: u64 = 10;

#[test]
fn a_power_cut_mid_job_keeps_every_intent_the_server_acted_on() {
    if crate::util::sqlite_only("a_power_cut_mid_job_keeps_every_intent_the_server_acted_on") {
        return;
    }
    let mut mid_job = 0;
    for cut in 0..CUTS {
        let sb = Sandbox::with(Options { users: USERS + 5, latency: Duration::from_millis(3), ..Default::default() });
        let env = crate::util::Env::new();
        env.write_config(&format!(
            "max_changes = 100000\n[profiles.p]\nkind = \"github\"\nurl = \"{}\"\ntoken_env = \"JOB_TOKEN\"\nconcurrency = 4\nrate_limit = 80\n",
            sb.url()
        ));
        let initial = sb.state();
        let job = job("github");
        let args = script_args(&env, &job, "p");
        let disk = env.path("disk");
        std::fs::create_dir(&disk).unwrap();
        let fs = LazyFs::mount(&disk);

        // The job (about 1.5 s: 120 requests at 80 a second) writes its log on the lazy disk, and dies with the
        // power somewhere in its course.
        let mut cmd = env.cmd();
        cmd.env("JOB_TOKEN", steward_sandbox::ADMIN_TOKEN)
            .env("STEWARD_AUDIT_DB", disk.join("audit.db"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(600 + cut * 1_600 / CUTS));
        let _ = std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status();
        child.wait().unwrap();
        let fsyncs = fs.fsyncs();
        let files = fs.power_cut();
        drop(fs);
        assert!(fsyncs > 0, "cut {cut}: the log was synced at least once before the cut");

        // After the reboot: the disk's files, where the env's commands look for the log.
        for (name, bytes) in &files {
            std::fs::write(env.path(name), bytes).unwrap();
        }
        let label = format!("power cut {cut}");
        let sent: Vec<String> = sb.stats()["requests"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| k.strip_prefix("PUT /api/v3/users/").and_then(|k| k.strip_suffix("/suspended")))
            .map(str::to_string)
            .collect();
        mid_job += usize::from(!sent.is_empty() && sent.len() < USERS - 2);
        // A cut before the log was first written leaves none: then nothing may have been sent.
        let rows: Vec<Value> = if env.audit_db().exists() { env.audit_rows(&["--op", "suspend"]) } else { vec![] };
        for t in &sent {
            assert!(
                rows.iter().any(|r| r["phase"] == "intent" && r["target"] == t.as_str()),
                "{label}: {t} reached the server, but its intent did not survive the power cut"
            );
        }
        let mut finish = env.cmd();
        finish.env("JOB_TOKEN", steward_sandbox::ADMIN_TOKEN).args(&args);
        if !rows.is_empty() {
            finish.args(["--resume", "1"]);
        }
        let finished = Run::of(finish);
        assert_eq!(finished.status, Some(0), "{label}: {}", finished.report());
        assert_invariants(&label, "github", &job, &initial, &sb, &env);
    }
    assert!(mid_job >= 2, "only {mid_job} of {CUTS} cuts fell while requests were going out");
}
