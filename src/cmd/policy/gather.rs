//! What a plan is made from: each profile's accounts with their dates of use, who its listing cannot show, and
//! the accounts spared (excluded, excepted, restored by a person, protected), each name resolved to its account
//! by the service's own rules.

use super::WARNED_OP;
use crate::audit::vocab::Status;
use crate::audit::AuditStore;
use crate::context::Context;
use crate::error::UsageError;
use crate::output;
use crate::policy::plan::Candidate;
use crate::policy::Policy;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// What a plan is made from: each profile's connection, who its listing cannot show, who is spared and why,
/// and when this policy last warned each account. The accounts themselves are read as they are planned.
pub(super) struct Facts {
    conns: Vec<std::sync::Arc<crate::dispatch::Connection>>,
    pub(super) misses: BTreeMap<String, String>,
    /// (profile, the service's key of a name the spared account answers to) → why.
    spared: HashMap<(String, String), String>,
    /// (profile, the service's key of an account's name) → when this policy last warned it.
    warned: HashMap<(String, String), DateTime<Utc>>,
}

impl Facts {
    /// Why `c` is spared, if it is (its profile's resolved exclusions, exceptions, protections and restores).
    pub(super) fn spared(&self, c: &Candidate) -> Option<String> {
        let conn = self.conns.iter().find(|conn| conn.profile == c.profile)?;
        self.spared.get(&(c.profile.clone(), conn.backend.name_key(&c.login))).cloned()
    }

    /// Reads each profile's accounts with their dates of use, handing each to `each` as it comes (a million
    /// records are never built, nor held), and puts each reading on record.
    pub(super) fn read_accounts(&self, ctx: &Context, each: &mut (dyn FnMut(Candidate) + Send)) -> anyhow::Result<()> {
        for conn in &self.conns {
            let profile = &conn.profile;
            let mut one = |s: crate::backends::model::Seen| {
                let mut c = candidate(profile, s);
                // Warned once per idle spell: a warning given after the account was last active still stands.
                let warned = self.warned.get(&(profile.clone(), conn.backend.name_key(&c.login)));
                c.warned = warned.is_some_and(|at| c.last_active.is_none_or(|seen| *at > seen));
                each(c);
            };
            let accounts = ctx
                .runtime
                .block_on(conn.backend.activity_seen(&mut one))
                .map_err(|e| anyhow::anyhow!("profile {profile}: activity: {e}"))?;
            let read = json!({"profile": profile, "accounts": accounts});
            ctx.runtime.block_on(ctx.dispatcher.record_note("activity", profile, &read, Status::Observed, ""))?;
        }
        Ok(())
    }

    /// Each account whose listing did not say whether it is suspended, read now (a few at a time): the same
    /// accounts, each saying. One that cannot be read stops the plan: deciding on a guess could suspend again an
    /// account a person suspended for another reason, or miscount the administrators the guard keeps.
    pub(super) fn settle(&self, ctx: &Context, unsettled: Vec<Candidate>) -> anyhow::Result<Vec<Candidate>> {
        use futures::StreamExt;
        let reads = unsettled.into_iter().map(|mut c| async move {
            let conn = self.conns.iter().find(|conn| conn.profile == c.profile);
            let state = match conn {
                Some(conn) => conn.backend.state(crate::backends::Op::Suspend, &c.login, &Value::Null).await,
                None => Ok(None),
            };
            match state {
                Ok(Some(suspended)) => {
                    c.suspended = Some(suspended);
                    Ok(c)
                }
                Ok(None) => Err(anyhow::anyhow!(
                    "profile {}: the service does not say whether {} is suspended; nothing is planned on a guess",
                    c.profile,
                    c.login
                )),
                Err(e) => Err(anyhow::anyhow!(
                    "profile {}: cannot read whether {} is suspended: {e}; nothing is planned on a guess",
                    c.profile,
                    c.login
                )),
            }
        });
        ctx.runtime
            .block_on(futures::stream::iter(reads).buffered(SETTLE_AT_ONCE).collect::<Vec<_>>())
            .into_iter()
            .collect()
    }
}

/// Accounts read at once to settle what a listing did not say.
const SETTLE_AT_ONCE: usize = 8;

/// Connects each profile and resolves the names the policy and the log spare. A profile whose service has no
/// dates of use, or cannot take one of the stages, stops the plan before anything is read (unknown is never
/// inactive).
pub(super) fn gather(ctx: &Context, policy: &Policy, now: DateTime<Utc>) -> anyhow::Result<Facts> {
    let spec = &policy.spec;
    let mut conns = Vec::new();
    for profile in &spec.profiles {
        let conn = ctx.connections.connect(Some(profile)).map_err(|e| UsageError::new(e.to_string()))?;
        let kind = conn.backend.kind();
        if let Some(refusal) = crate::backends::activity_source(kind).refuses_inactivity(kind) {
            return Err(UsageError::new(format!("policy {}: profile {profile}: {refusal}", policy.name)).into());
        }
        for stage in spec.stages.iter().map(|s| s.get_ref()) {
            if let Err(why) = stage.action.fits(conn.backend.as_ref()) {
                let says =
                    format!("policy {}: profile {profile}: the {} stage: {why}", policy.name, stage.action.name());
                return Err(UsageError::new(says).into());
            }
        }
        conns.push(conn);
    }
    let restored = restored_recently(ctx, now - chrono::Duration::days(i64::from(spec.grace.restored_days)))?;
    let mut facts =
        Facts { conns: Vec::new(), misses: BTreeMap::new(), spared: HashMap::new(), warned: warned(ctx, policy)? };
    for conn in conns {
        let profile = conn.profile.clone();
        if let crate::backends::ActivitySource::Seen { misses: Some(m), .. } =
            crate::backends::activity_source(conn.backend.kind())
        {
            facts.misses.insert(profile.clone(), m.to_string());
        }
        let names = names_to_spare(policy, &profile, &conn.protected, &restored, now);
        spare(ctx, policy, &conn, names, &mut facts.spared)?;
        facts.conns.push(conn);
    }
    Ok(facts)
}

/// The names the policy spares on `profile`, each with why: its scope's exclusions, the profile's protected
/// accounts, exceptions still running (one that ended is said), and accounts a person restored within the grace.
fn names_to_spare(
    policy: &Policy,
    profile: &str,
    protected: &[String],
    restored: &[(String, String, String)],
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    // Names to spare on this profile, each resolved to the account it reaches (by the service's rules).
    let mut names: Vec<(String, String)> = Vec::new();
    names
        .extend(policy.spec.scope.exclude.iter().map(|n| (n.clone(), format!("excluded by the policy's scope ({n})"))));
    names.extend(protected.iter().map(|n| (n.clone(), format!("protected by profile {profile}"))));
    for e in policy.spec.exceptions.iter().map(|e| e.get_ref()) {
        if e.profile.as_ref().is_some_and(|p| p != profile) {
            continue;
        }
        let ends = chrono::NaiveDate::parse_from_str(&e.until, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0));
        match ends.map(|d| d.and_utc() > now) {
            Some(true) => names.push((e.account.clone(), format!("exception until {}: {}", e.until, e.reason))),
            _ => output::note(&format!("policy {}: the exception for {} ended on {}", policy.name, e.account, e.until)),
        }
    }
    let days = policy.spec.grace.restored_days;
    for (_, target, when) in restored.iter().filter(|(p, _, _)| p == profile) {
        names.push((target.clone(), format!("restored by a person on {when} (grace: {days} days)")));
    }
    names
}

/// Each spared name resolved to the account it reaches (by the service's rules), every name of that account
/// spared for the same reason.
fn spare(
    ctx: &Context,
    policy: &Policy,
    conn: &crate::dispatch::Connection,
    names: Vec<(String, String)>,
    spared: &mut HashMap<(String, String), String>,
) -> anyhow::Result<()> {
    let profile = &conn.profile;
    for (name, why) in names {
        // Fail safe: a name that cannot be resolved now stops the plan (acting without knowing whom it spares
        // could reach the break-glass account); a name no account has is said, and spares no one.
        let account = match ctx.runtime.block_on(conn.backend.lookup(&name, &Value::Null)) {
            Ok(Some(account)) => account,
            Ok(None) => {
                output::note(&format!("policy {}: {name:?} ({why}) is no account on {profile}", policy.name));
                continue;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "policy {}: cannot resolve {name:?} ({why}) on {profile}: {e}; nothing is planned while it is unknown whom the policy spares",
                    policy.name
                ))
            }
        };
        for n in account.names.iter().chain(std::iter::once(&account.address)).chain(std::iter::once(&account.id)) {
            spared.entry((profile.clone(), conn.backend.name_key(n))).or_insert_with(|| why.clone());
        }
    }
    Ok(())
}

/// One account of an activity listing, as planning reads it.
fn candidate(profile: &str, s: crate::backends::model::Seen) -> Candidate {
    Candidate {
        profile: profile.to_string(),
        login: s.login,
        admin: s.admin,
        suspended: s.suspended,
        last_active: s.last_active,
        created: s.created,
        email: s.email,
        warned: false,
    }
}

/// When this policy last warned each account: (profile, the service's key of the account's name) → time.
fn warned(ctx: &Context, policy: &Policy) -> anyhow::Result<HashMap<(String, String), DateTime<Utc>>> {
    let mut out = HashMap::new();
    if !ctx.audit_target.exists() {
        return Ok(out);
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let filter = crate::audit::query::Filter {
        op: Some(WARNED_OP.into()),
        target: Some(policy.name.clone()),
        ..Default::default()
    };
    let mut keys: HashMap<String, std::sync::Arc<dyn crate::backends::Backend>> = HashMap::new();
    for row in store.list(&filter)?.into_iter().filter(|r| r.event.mode == "live") {
        let params: Value = serde_json::from_str(&row.event.params).unwrap_or_default();
        let text = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (profile, account) = (text("profile"), text("account"));
        let Ok(at) = DateTime::parse_from_rfc3339(&row.event.ts) else { continue };
        let backend = match keys.get(&profile) {
            Some(b) => b.clone(),
            None => match ctx.connections.connect(Some(&profile)) {
                Ok(conn) => keys.entry(profile.clone()).or_insert(conn.backend.clone()).clone(),
                Err(_) => continue,
            },
        };
        out.insert((profile, backend.name_key(&account)), at.with_timezone(&Utc));
    }
    Ok(out)
}

/// Accounts a person unsuspended or promoted since `since` (steward's own log): (profile, target, when).
fn restored_recently(ctx: &Context, since: DateTime<Utc>) -> anyhow::Result<Vec<(String, String, String)>> {
    if !ctx.audit_target.exists() {
        return Ok(Vec::new());
    }
    let store = AuditStore::open_verified_target(&ctx.audit_target)?;
    let mut out = Vec::new();
    for op in ["unsuspend", "promote"] {
        let filter = crate::audit::query::Filter {
            since: Some(crate::dates::rfc3339(since)),
            op: Some(op.into()),
            ..Default::default()
        };
        for row in store.list(&filter)? {
            let e = row.event;
            if e.phase == "outcome" && e.status == "ok" && e.mode == "live" {
                out.push((e.profile, e.target, e.ts.get(..10).unwrap_or_default().to_string()));
            }
        }
    }
    Ok(out)
}
