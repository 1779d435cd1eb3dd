//! `steward audit list|show|verify|export`: reading the audit log back, and proving it is whole.

use crate::audit::query::{Filter, Row};
use crate::audit::signing::{self, NoteSigner, NoteVerifier};
use crate::audit::{chain, checkpoint, fingerprint, AuditStore, AuditTarget};
use crate::cli::{AuditCommand, AuditFilterArgs, Format};
use crate::context::Context;
use crate::dates::parse_date;
use crate::error::{AuditBroken, UsageError};
use crate::output;
use crate::redact::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

pub fn run(ctx: &Context, profile: Option<&str>, cmd: &AuditCommand) -> anyhow::Result<()> {
    if !ctx.audit_target.exists() {
        return Err(UsageError::new(format!(
            "no audit log at {} yet (steward creates it with the first action; pass --audit-db to read another)",
            ctx.audit_target
        ))
        .into());
    }
    let mut store = AuditStore::open_target(&ctx.audit_target)?;
    match cmd {
        AuditCommand::Anchor => anchor(ctx, &mut store)?,
        AuditCommand::List(args) => {
            let rows = store.list(&filter(args, profile, true)?)?;
            let open = open_intents(&store, &rows)?;
            print_rows(ctx, &rows, Shown::Listed(&open));
            // An empty answer to a misspelt operation is not "nothing happened": say which exist.
            if let (true, Some(op)) = (rows.is_empty(), &args.op) {
                let ops = store.ops()?;
                if !ops.contains(op) {
                    output::note(&format!("no event has op {op:?}; the log holds: {}", ops.join(", ")));
                }
            }
        }
        AuditCommand::Show { seq, run } => {
            if seq.is_none() && run.is_none() {
                return Err(UsageError::new("audit show needs an event seq or --run ID").into());
            }
            let rows = store.list(&Filter { seq: *seq, run: *run, ..Default::default() })?;
            if rows.is_empty() {
                return Err(UsageError::new("no such event; `steward audit list` shows the recent ones").into());
            }
            print_rows(ctx, &rows, Shown::Whole);
        }
        AuditCommand::Verify { checkpoint, key } => verify(ctx, &store, checkpoint.as_deref(), key.as_deref())?,
        AuditCommand::SetAside { seq, why } => set_aside(ctx, &mut store, *seq, why)?,
        AuditCommand::Key => {
            let signer = NoteSigner::load(&ctx.audit_path).map_err(anyhow::Error::msg)?;
            let Some(signer) = signer else {
                return Err(UsageError::new(format!(
                    "no signing key at {} yet: it is made with the log's first checkpoint, at the end of the first run \
                     that acts",
                    signing::key_path(&ctx.audit_path).display()
                ))
                .into());
            };
            output::line(&signer.verifier().encode());
        }
        AuditCommand::Export(args) => {
            let rows = store.list(&filter(args, profile, false)?)?;
            export(ctx, &rows)?;
        }
        AuditCommand::Fingerprint => fingerprint(ctx, &store)?,
        AuditCommand::Push { source } => push(ctx, &mut store, source)?,
    }
    Ok(())
}

/// Anchors the log anew (a lost checkpoint, a log restored or replaced on purpose): never a log whose chain
/// is broken, only when asked, and on the record, so the re-anchoring itself is evidence.
fn anchor(ctx: &Context, store: &mut AuditStore) -> anyhow::Result<()> {
    let v = store.verify()?;
    if let Some(b) = v.first_break {
        output::note(&format!(
            "audit log BROKEN at seq {}: anchoring would vouch for an edited log; restore it from a backup",
            b.seq()
        ));
        return Err(AuditBroken.into());
    }
    let Some(problem) = checkpoint::problem(&ctx.audit_path, store)? else {
        output::line("the audit log is anchored already; nothing to do");
        return Ok(());
    };
    output::note(&format!("audit log not anchored: {problem}"));
    let question =
        format!("its {} events link up from the first; anchor {} as it is now?", v.checked, ctx.audit_target);
    if !ctx.dispatcher.mode().assume_yes {
        match ctx.dispatcher.prompt().confirm(&question) {
            Ok(true) => {}
            Ok(false) => return Err(UsageError::new("not anchored (declined)").into()),
            Err(why) => return Err(UsageError::new(format!("not anchored: {why}")).into()),
        }
    }
    let (run, run_digest) = store.start_run(&crate::invocation::run_info())?;
    let mut note = [chain::Event {
        run_id: run,
        run_digest,
        op: "audit_anchor".into(),
        phase: "note".into(),
        status: "anchored".into(),
        error: problem,
        ..Default::default()
    }];
    let seq = store.append(&mut note)?[0];
    store.end_run(run, 0)?;
    checkpoint::write(&ctx.audit_path, store, ctx.config.audit_syslog.as_deref())?;
    output::line(&format!("anchored: the log's checkpoint now names seq {seq}, the event that records this"));
    Ok(())
}

/// The chain, then the checkpoint: the log's own (`audit.db.checkpoint`) or a copy, checked with the log's key
/// or the one given.
fn verify(ctx: &Context, store: &AuditStore, copy: Option<&Path>, key: Option<&str>) -> anyhow::Result<()> {
    if let Some(damage) = store.damage()? {
        output::note(&format!("audit log BROKEN: {damage}"));
        return Err(AuditBroken.into());
    }
    let v = store.verify()?;
    if let Some(b) = v.first_break {
        let why = match b {
            chain::Break::Tampered { .. } => "its contents do not match its hash (the row was edited)",
            chain::Break::Unlinked { .. } => {
                "it does not link to the event before it (an event was removed or altered)"
            }
            chain::Break::RunEdited { .. } => {
                "the record of the run that made it (user, host, command, script) is not the one it was bound to"
            }
        };
        output::note(&format!("audit log BROKEN at seq {}: {why}; {} events before it verify", b.seq(), v.checked));
        return Err(AuditBroken.into());
    }
    if let Some(file) = copy.filter(|f| !f.exists()) {
        return Err(UsageError::new(format!("no checkpoint copy at {}", file.display())).into());
    }
    let key = key.map(NoteVerifier::parse).transpose().map_err(UsageError::new)?;
    let source = copy.map(Path::to_path_buf).unwrap_or_else(|| checkpoint::path_for(&ctx.audit_path));
    let cp = checkpoint::read_copy(&ctx.audit_path, &source, key.as_ref());
    let problem = match (&cp, copy.is_none() && key.is_none()) {
        (Err(untrusted), _) => Some(untrusted.to_string()),
        // The log's own anchors: the checkpoint beside it, and the copy in the state directory.
        (Ok(_), true) => checkpoint::problem_after_verify(&ctx.audit_path, store)?,
        (Ok(cp), false) => store.check_against(cp.as_ref())?,
    };
    if let Some(problem) = problem {
        output::note(&format!(
            "audit log BROKEN: {problem}; the {} events present link up, but do not match the checkpoint in {}",
            v.checked,
            source.display()
        ));
        return Err(AuditBroken.into());
    }
    for (seq, why) in store.set_aside_rows()? {
        output::note(&format!("seq {seq} is set aside by the log's owner (skipped by the chain): {why}"));
    }
    if !v.suspects.is_empty() {
        const SHOWN: usize = 20;
        let mut text = format!(
            "audit log SUSPECT: the chain of {} events links up and matches its checkpoint, but {} rows are not as \
             steward writes them:",
            v.checked,
            v.suspects.len()
        );
        for s in v.suspects.iter().take(SHOWN) {
            text.push_str(&format!("\n  {s}"));
        }
        if v.suspects.len() > SHOWN {
            text.push_str(&format!("\n  … and {} more", v.suspects.len() - SHOWN));
        }
        text.push_str("\n(`steward audit show SEQ` shows a row; ask whoever wrote it)");
        output::note(&text);
        return Err(AuditBroken.into());
    }
    output::line(&format!(
        "audit log OK: {} events, chain head {}{}",
        v.checked,
        v.head.as_deref().unwrap_or("(empty)"),
        cp.ok()
            .flatten()
            .map(|c| {
                let kind = if c.signed { "signed" } else { "unsigned (older steward's)" };
                format!(", matches the {kind} checkpoint of {} (seq {}) in {}", c.ts, c.seq, source.display())
            })
            .unwrap_or_default()
    ));
    Ok(())
}

/// Sets aside the row where a team log's chain breaks, so the team can act again; the row stays, and both the
/// setting aside (`steward_set_aside`, which only the owner may add to) and an `audit_set_aside` event record it.
fn set_aside(ctx: &Context, store: &mut AuditStore, seq: i64, why: &str) -> anyhow::Result<()> {
    if !matches!(ctx.audit_target, AuditTarget::Postgres(_)) {
        return Err(UsageError::new(
            "audit set-aside is for a team log, where a teammate can write a row past the chain; a file log that \
             does not verify was edited: restore it from a backup, or `steward audit anchor` a log you replaced",
        )
        .into());
    }
    if why.trim().is_empty() {
        return Err(UsageError::new("say --why: who looked at the row and what it was").into());
    }
    let breaks_at = store.verify()?.first_break.map(|b| b.seq());
    match breaks_at {
        Some(at) if at == seq => {}
        Some(at) => {
            return Err(UsageError::new(format!(
                "the chain breaks at seq {at}, not {seq}: only the row where it breaks can be set aside"
            ))
            .into())
        }
        None => return Err(UsageError::new("the chain links up whole: there is nothing to set aside").into()),
    }
    let Some(row) = store.list(&Filter { seq: Some(seq), ..Default::default() })?.pop() else {
        return Err(UsageError::new(format!("no event {seq}")).into());
    };
    store.set_aside(seq, &row.hash, why)?;
    let note = chain::Event {
        op: "audit_set_aside".into(),
        status: "set_aside".into(),
        target: seq.to_string(),
        params: json!({ "seq": seq, "hash": row.hash, "op": row.event.op, "run": row.event.run_id }).to_string(),
        error: why.to_string(),
        ..Default::default()
    };
    record_in_a_run_of_its_own(ctx, store, note)?;
    output::line(&format!("seq {seq} is set aside: the chain links past it, and `audit verify` names it"));
    Ok(())
}

/// Copies a SQLite log into the team log, and records that it did (a push is evidence too).
fn push(ctx: &Context, team: &mut AuditStore, source: &Path) -> anyhow::Result<()> {
    if !matches!(ctx.audit_target, crate::audit::AuditTarget::Postgres(_)) {
        return Err(UsageError::new(format!(
            "audit push copies a log into the team log, and this steward's log is {} (a file): set audit_url in \
             the config, or pass --audit-url postgres://USER@HOST:PORT/DB",
            ctx.audit_target
        ))
        .into());
    }
    if !source.exists() {
        return Err(UsageError::new(format!("no audit log at {}", source.display())).into());
    }
    // Nothing is built on a team log that does not match this machine's anchors.
    if let Some(problem) = ctx.audit_target.anchor().map(|a| checkpoint::problem(a, team)).transpose()?.flatten() {
        return Err(UsageError::new(format!("the team log does not verify ({problem}); nothing was copied")).into());
    }
    let pushed = crate::audit::push::push(source, team)?;
    let what = match pushed.seqs {
        Some((first, last)) => format!(
            "copied {} events of {} runs from {} (source log {}; {} copied before); team seqs {first}..{last}",
            pushed.events,
            pushed.runs,
            source.display(),
            pushed.source_log,
            pushed.already
        ),
        None => format!("nothing new in {} ({} events copied before)", source.display(), pushed.already),
    };
    let note = chain::Event {
        op: "audit_push".into(),
        status: "pushed".into(),
        target: source.display().to_string(),
        error: what.clone(),
        ..Default::default()
    };
    record_in_a_run_of_its_own(ctx, team, note)?;
    output::line(&what);
    Ok(())
}

/// Records what an `audit` command did to the log itself (a push, a row set aside) as a note in a run of its
/// own, and anchors the log after it.
fn record_in_a_run_of_its_own(ctx: &Context, store: &mut AuditStore, note: chain::Event) -> anyhow::Result<()> {
    let (run_id, run_digest) = store.start_run(&crate::invocation::run_info())?;
    store.append(&mut [chain::Event { run_id, run_digest, phase: "note".into(), ..note }])?;
    store.end_run(run_id, 0)?;
    if let Some(anchor) = ctx.audit_target.anchor() {
        checkpoint::write(anchor, store, ctx.config.audit_syslog.as_deref())?;
    }
    Ok(())
}

/// Reads one token from stdin and prints its fingerprint under this log's key (a file log's key is made only by
/// actions, never here), with the events it made; on a team log also under this machine's own key from before
/// the team shared one, so older events are found too.
fn fingerprint(ctx: &Context, store: &AuditStore) -> anyhow::Result<()> {
    let key = match &ctx.audit_target {
        AuditTarget::File(path) => {
            fingerprint::FingerprintKey::load(path).map_err(anyhow::Error::msg)?.ok_or_else(|| {
                UsageError::new(format!(
                "no token-fingerprint key at {}: no action in this log recorded a fingerprint yet (the key is made \
                 beside the log by the first action; if the log was copied here, copy its .key file with it)",
                fingerprint::key_path(path).display()
            ))
            })?
        }
        other => fingerprint::FingerprintKey::of_log(other).map_err(anyhow::Error::msg)?,
    };
    let mut token = String::new();
    std::io::stdin().read_line(&mut token)?;
    let token = SecretString::from(token.trim().to_string());
    if token.expose_secret().is_empty() {
        return Err(UsageError::new("audit fingerprint reads the token from standard input, and got none").into());
    }
    let count = |fp: &str| -> anyhow::Result<usize> {
        Ok(store.list(&Filter { token_fp: Some(fp.to_string()), ..Default::default() })?.len())
    };
    let fp = key.fingerprint(&token);
    let mut found = json!({ "token_fp": fp, "events": count(&fp)? });
    if let AuditTarget::Postgres(pg) = &ctx.audit_target {
        if let Some(old) = fingerprint::FingerprintKey::load(&pg.anchor).map_err(anyhow::Error::msg)? {
            let old_fp = old.fingerprint(&token);
            found["machine_token_fp"] = json!(old_fp);
            found["machine_events"] = json!(count(&old_fp)?);
        }
    }
    output::print_value(&found, ctx.output);
    Ok(())
}

fn filter(args: &AuditFilterArgs, profile: Option<&str>, default_limit: bool) -> anyhow::Result<Filter> {
    let time = |t: &Option<String>| -> anyhow::Result<Option<String>> {
        t.as_deref()
            .map(|s| {
                parse_date(s)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .map_err(|e| UsageError::new(e.to_string()).into())
            })
            .transpose()
    };
    let narrowed = args.since.is_some()
        || args.until.is_some()
        || args.op.is_some()
        || args.target.is_some()
        || args.token_fp.is_some()
        || args.user.is_some()
        || args.host.is_some()
        || args.run.is_some()
        || args.pending
        || profile.is_some();
    Ok(Filter {
        since: time(&args.since)?,
        until: time(&args.until)?,
        profile: profile.map(str::to_string),
        op: args.op.clone(),
        target: args.target.clone(),
        token_fp: args.token_fp.clone(),
        run: args.run,
        os_user: args.user.clone(),
        host: args.host.clone(),
        seq: None,
        since_seq: None,
        pending: args.pending,
        limit: args.limit.or((default_limit && !args.all && !narrowed).then_some(50)),
    })
}

/// A long error cut to a table cell's worth, saying where the whole of it is.
fn shortened(error: &str, seq: i64) -> String {
    const CELL: usize = 80;
    match error.char_indices().nth(CELL) {
        Some((at, _)) => format!("{}… (whole: audit show {seq})", &error[..at]),
        None => error.to_string(),
    }
}

/// How rows are shown: listed a line each (the intents still open among them known), or each whole.
enum Shown<'a> {
    Listed(&'a HashSet<i64>),
    Whole,
}

/// Which of the intents among `rows` are still open (no outcome recorded): one query from the first of them.
fn open_intents(store: &AuditStore, rows: &[Row]) -> anyhow::Result<HashSet<i64>> {
    let first = rows.iter().filter(|r| r.event.phase == "intent").map(|r| r.event.seq).min();
    let Some(first) = first else { return Ok(HashSet::new()) };
    let open = store.list(&Filter { pending: true, since_seq: Some(first - 1), ..Default::default() })?;
    Ok(open.into_iter().map(|r| r.event.seq).collect())
}

fn print_rows(ctx: &Context, rows: &[Row], shown: Shown<'_>) {
    let value: Value = match (&shown, ctx.output.format == Format::Table) {
        (Shown::Listed(open), true) => rows
            .iter()
            .map(|Row { event: r, .. }| {
                // An intent is written `pending` and stays so in the log; its line says whether it still is.
                let status = match (r.phase.as_str(), open.contains(&r.seq)) {
                    ("intent", false) if r.status == "pending" => "closed",
                    _ => r.status.as_str(),
                };
                json!({
                    "seq": r.seq, "time": r.ts, "run": r.run_id, "profile": r.profile, "identity": r.identity,
                    "op": r.op, "target": r.target, "mode": r.mode, "phase": r.phase, "status": status,
                    "http": r.http_status, "error": shortened(&r.error, r.seq),
                })
            })
            .collect(),
        _ => serde_json::to_value(rows).unwrap_or_default(),
    };
    match (&value, matches!(shown, Shown::Whole) && ctx.output.format == Format::Table) {
        (Value::Array(items), true) => {
            for item in items {
                output::print_value(item, ctx.output);
            }
        }
        _ => output::print_value(&value, ctx.output),
    }
}

/// JSON lines by default (one event per line, hashes included), CSV with `--format csv`.
fn export(ctx: &Context, rows: &[Row]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if ctx.output.format == Format::Csv {
        let values: Vec<Value> = rows.iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect();
        let text = output::csv::to_csv_string(&values, None).map_err(anyhow::Error::msg)?;
        let _ = out.write_all(text.as_bytes());
    } else {
        for r in rows {
            let _ = writeln!(out, "{}", serde_json::to_string(r)?);
        }
    }
    Ok(())
}
