//! Declared membership, reconciled: the desired state names (profile, group, person, role); each group it names
//! is read once (its members and their roles), each person matched to a member by the service's own comparison
//! of names (or looked up when no member answers), and the difference is the drift: who is missing, who is
//! extra, who has the wrong role. Guards are checked on the whole plan before anything changes (a group keeps
//! at least `min_admins` admins/maintainers where the service has roles; no group loses more than
//! `max_removal_share` of its members in one run, one removal always allowed; a protected account is never
//! removed). Then the changes go through the one pipeline, each already known not to be in place (no second
//! read), so only the changes are sent and undo can put every one back.

use super::{BulkItem, Connection, Dispatcher};
use crate::backends::{model::Account, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One membership the desired state asks for. The profile, group and role are shared among the rows that name
/// them (100,000 rows name a handful).
#[derive(Clone, Debug)]
pub struct Wanted {
    pub profile: Arc<str>,
    pub group: Arc<str>,
    pub person: String,
    pub role: Option<Arc<str>>,
    pub line: Option<i64>,
}

/// What to do about drift, and the guards.
#[derive(Clone, Debug)]
pub struct Options {
    pub apply: bool,
    pub min_admins: usize,
    pub max_removal_share: f64,
    pub reason: String,
}

impl Options {
    pub fn read(opts: &Value) -> Result<Options, ApiError> {
        let share = opts.get("max_removal_share").map(|v| v.as_f64().filter(|s| (0.0..=1.0).contains(s)));
        let share = match share {
            None => 0.25,
            Some(Some(s)) => s,
            Some(None) => return Err(ApiError::invalid("max_removal_share is a share between 0 and 1 (0.25 = 25 %)")),
        };
        let min_admins = match opts.get("min_admins") {
            None => 1,
            Some(v) => {
                v.as_u64().ok_or_else(|| ApiError::invalid("min_admins is a whole number (0 to turn it off)"))? as usize
            }
        };
        Ok(Options {
            apply: opts.get("apply").and_then(Value::as_bool).unwrap_or(false),
            min_admins,
            max_removal_share: share,
            reason: opts.get("reason").and_then(Value::as_str).unwrap_or("reconcile: declared membership").to_string(),
        })
    }
}

/// One difference between a group as it is and as declared, and (once applied) what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    pub profile: String,
    /// The group's id on the service.
    pub group: String,
    /// `add`, `remove` or `role`.
    pub change: &'static str,
    /// The member's login (its address on the service).
    pub login: String,
    /// The member's stable id.
    pub account: String,
    /// The role declared (add, role) or held (remove).
    pub role: Option<String>,
    /// The role held now (role changes).
    pub current_role: Option<String>,
    /// The desired state's line that asks for it (add, role).
    pub line: Option<i64>,
    pub status: String,
    pub error: Option<String>,
}

/// A group as it is now: members by stable id.
struct Current {
    profile: String,
    group: String,
    members: BTreeMap<String, Member>,
}

#[derive(Clone, Debug)]
struct Member {
    login: String,
    role: Option<String>,
}

/// The drift of every group the desired state names, with what stops it (empty: nothing does).
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub drift: Vec<Drift>,
    /// Why the plan may not be applied as it stands (guards), one line each.
    pub blocked: Vec<String>,
    /// Desired rows that name nobody the service has, or contradict each other.
    pub problems: Vec<String>,
    pub groups: usize,
    pub in_place: usize,
    /// Each group's member and admin counts as read: what the guards weigh the changes against.
    #[serde(skip)]
    sizes: BTreeMap<(String, String), (usize, usize)>,
}

/// Roles that administer a group, where the service has roles (GHES owners and maintainers).
fn is_admin_role(role: Option<&str>) -> bool {
    matches!(role, Some("admin" | "maintainer" | "owner"))
}

impl Dispatcher {
    /// Reads every group `wanted` names on its profile and works out the drift; nothing is changed.
    pub async fn reconcile_plan(
        &self,
        conns: &HashMap<String, &Connection>,
        wanted: &[Wanted],
        opts: &Options,
    ) -> Result<Plan, ApiError> {
        let mut plan = Plan::default();
        // (profile, the group's id) → the rows asking for it; each spelling of a group is resolved once (the
        // names are shared, so 100,000 rows copy no strings here).
        let mut by_group: BTreeMap<(Arc<str>, Arc<str>), Vec<&Wanted>> = BTreeMap::new();
        let mut ids: HashMap<(Arc<str>, Arc<str>), Arc<str>> = HashMap::new();
        for w in wanted {
            let conn = conns.get(&*w.profile).ok_or_else(|| {
                ApiError::invalid(format!("line {}: no profile {:?} was connected", w.line.unwrap_or(0), w.profile))
            })?;
            let key = (w.profile.clone(), w.group.clone());
            if !ids.contains_key(&key) {
                let id = self.unless_stopped(conn.backend.group_id(&w.group)).await.map_err(|e| ApiError {
                    message: format!("group {:?} on {}: {}", w.group, w.profile, e.message),
                    ..e
                })?;
                ids.insert(key.clone(), id.into());
            }
            by_group.entry((w.profile.clone(), ids[&key].clone())).or_default().push(w);
        }
        for ((profile, group), rows) in by_group {
            let conn = conns[&*profile];
            let current = self.current(conn, &group).await?;
            self.drift_of(conn, current, &rows, &mut plan).await?;
            plan.groups += 1;
        }
        self.check_guards(conns, &mut plan, opts).await?;
        Ok(plan)
    }

    /// A group's members and their roles, read once, as the service hands them over.
    async fn current(&self, conn: &Connection, group: &str) -> Result<Current, ApiError> {
        let mut members = BTreeMap::new();
        let mut keep = |m: crate::backends::model::Member| {
            members.insert(m.id, Member { login: m.login, role: m.role });
        };
        self.unless_stopped(conn.backend.members_of(group, &mut keep)).await?;
        Ok(Current { profile: conn.profile.clone(), group: group.to_string(), members })
    }

    /// The drift of one group: each row matched to a member (by id or login as the service compares names, else
    /// looked up), then the members no row asked for.
    async fn drift_of(
        &self,
        conn: &Connection,
        mut current: Current,
        rows: &[&Wanted],
        plan: &mut Plan,
    ) -> Result<(), ApiError> {
        let backend = conn.backend.as_ref();
        let by_name: HashMap<String, String> = current
            .members
            .iter()
            .flat_map(|(id, m)| [(backend.name_key(id), id.clone()), (backend.name_key(&m.login), id.clone())])
            .collect();
        let admins = current.members.values().filter(|m| is_admin_role(m.role.as_deref())).count();
        plan.sizes.insert((current.profile.clone(), current.group.clone()), (current.members.len(), admins));
        let mut asked: HashMap<String, &Wanted> = HashMap::new();
        let mut unsure = 0;
        for w in rows {
            let (id, login) = match by_name.get(&backend.name_key(&w.person)) {
                Some(id) => (id.clone(), current.members[id].login.clone()),
                None => match self.unless_stopped(crate::backends::resolve(backend, &w.person, &Value::Null)).await {
                    Ok(account) => (account.id, account.address),
                    Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Invalid | ErrorKind::Conflict) => {
                        plan.problems.push(format!("line {}: {} on {}: {e}", w.line.unwrap_or(0), w.person, w.profile));
                        unsure += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            if let Some(first) = asked.get(&id) {
                if first.role != w.role {
                    plan.problems.push(format!(
                        "lines {} and {}: {} is asked for in {} as {} and as {}",
                        first.line.unwrap_or(0),
                        w.line.unwrap_or(0),
                        w.person,
                        current.group,
                        first.role.as_deref().unwrap_or("(the default role)"),
                        w.role.as_deref().unwrap_or("(the default role)")
                    ));
                    unsure += 1;
                }
                continue;
            }
            asked.insert(id.clone(), w);
            let change = match current.members.get(&id) {
                None => Some(("add", None)),
                Some(m) if w.role.is_some() && m.role.is_some() && m.role.as_deref() != w.role.as_deref() => {
                    Some(("role", m.role.clone()))
                }
                Some(_) => None,
            };
            match change {
                Some((change, held)) => {
                    let role = w.role.as_deref().map(str::to_string);
                    plan.drift.push(drift(&current, change, (&id, &login), role, held, w.line))
                }
                None => plan.in_place += 1,
            }
        }
        if unsure > 0 {
            // A row that names nobody may be someone listed under another name (removing "extras" would guess),
            // and of two rows that disagree neither is known to be meant.
            plan.blocked.push(format!(
                "{} on {}: {unsure} desired rows name no account here or contradict another (see problems); fix them before applying",
                current.group, current.profile
            ));
        }
        current.members.retain(|id, _| !asked.contains_key(id));
        for (id, m) in &current.members {
            plan.drift.push(drift(&current, "remove", (id, &m.login), m.role.clone(), None, None));
        }
        Ok(())
    }

    /// The guards, on the whole plan: protected accounts are not removed (their removals are marked skipped);
    /// a group that would lose more than its share of members, or be left with fewer admins than asked, blocks.
    async fn check_guards(
        &self,
        conns: &HashMap<String, &Connection>,
        plan: &mut Plan,
        opts: &Options,
    ) -> Result<(), ApiError> {
        for d in plan.drift.iter_mut().filter(|d| d.change == "remove") {
            let conn = conns[&d.profile];
            let guard = self.unless_stopped(conn.guard()).await?;
            let account = Account {
                id: d.account.clone(),
                names: vec![d.login.clone(), d.account.clone()],
                address: d.login.clone(),
                ..Default::default()
            };
            if let Some(why) = guard.refusal(conn.backend.as_ref(), &account) {
                d.status = "skipped".into();
                d.error = Some(format!("protected: {}", why.message));
            }
        }
        for ((profile, group), (members, admins)) in plan.sizes.clone() {
            let of_group = |d: &&Drift| d.profile == profile && d.group == group && d.status == "planned";
            let changes: Vec<&Drift> = plan.drift.iter().filter(of_group).collect();
            let removals = changes.iter().filter(|d| d.change == "remove").count();
            let allowed = ((members as f64) * opts.max_removal_share).floor().max(1.0) as usize;
            if removals > allowed {
                plan.blocked.push(format!(
                    "{group} on {profile}: {removals} of its {members} members would be removed, more than {:.0} % \
                     (max_removal_share); check the desired state, or pass a higher max_removal_share if it is right",
                    opts.max_removal_share * 100.0
                ));
            }
            let gained = |d: &&&Drift| d.change != "remove" && is_admin_role(d.role.as_deref());
            let lost = |d: &&&Drift| {
                (d.change == "remove" && is_admin_role(d.role.as_deref()))
                    || (d.change == "role"
                        && is_admin_role(d.current_role.as_deref())
                        && !is_admin_role(d.role.as_deref()))
            };
            let after =
                admins + changes.iter().filter(gained).count() - changes.iter().filter(lost).count().min(admins);
            if after < opts.min_admins && after < admins {
                plan.blocked.push(format!(
                    "{group} on {profile}: would be left with {after} admins or maintainers (it has {admins}; \
                     min_admins is {}); declare someone to keep it",
                    opts.min_admins
                ));
            }
        }
        Ok(())
    }
}

impl Dispatcher {
    /// Carries the plan out: refused whole while a guard blocks it, asked about once, then one job per profile
    /// and kind of change, each item already known not to be in place. Each drift row gets its outcome.
    pub async fn reconcile_apply(
        &self,
        conns: &HashMap<String, &Connection>,
        plan: &mut Plan,
        opts: &Options,
    ) -> Result<(), ApiError> {
        if !plan.blocked.is_empty() {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("reconcile stopped before any change: {}", plan.blocked.join("; ")),
            ));
        }
        let due: Vec<usize> = (0..plan.drift.len()).filter(|i| plan.drift[*i].status == "planned").collect();
        let what = |change: &str| due.iter().filter(|i| plan.drift[**i].change == change).count();
        let question = format!(
            "reconcile: {} to add, {} to remove, {} roles to change in {} groups. Go ahead?",
            what("add"),
            what("remove"),
            what("role"),
            plan.groups
        );
        self.confirm_plan(&question, "reconcile", due.len())?;
        let mut jobs: BTreeMap<(String, &'static str), Vec<usize>> = BTreeMap::new();
        for i in due {
            let op = if plan.drift[i].change == "remove" { "remove" } else { "add" };
            jobs.entry((plan.drift[i].profile.clone(), op)).or_default().push(i);
        }
        for ((profile, op), rows) in jobs {
            let op = if op == "remove" { Op::RemoveFromGroup } else { Op::AddToGroup };
            let items = rows.iter().map(|i| item_of(&plan.drift[*i])).collect();
            let results = self
                .perform_all(conns[&profile], op, items, json!({"reason": opts.reason}))
                .await
                .map_err(|e| ApiError::new(e.kind, e.to_string()))?;
            for (i, r) in rows.into_iter().zip(results) {
                let d = &mut plan.drift[i];
                d.status = serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                d.error = r.error;
            }
        }
        Ok(())
    }
}

/// A drift row as the bulk item that changes it: the account by its id, the group, the role asked, the role
/// held (what undo gives back, so nothing is read again), and that it is not in place.
fn item_of(d: &Drift) -> BulkItem {
    let mut params = serde_json::Map::new();
    params.insert("group".into(), json!(d.group));
    let (role, prior) = match d.change {
        "remove" => (None, d.role.clone()),
        _ => (d.role.clone(), d.current_role.clone()),
    };
    if let Some(role) = role {
        params.insert("role".into(), json!(role));
    }
    if let Some(prior) = prior {
        params.insert("prior_role".into(), json!(prior));
    }
    BulkItem { target: Some(d.account.clone()), line: d.line, params, known: Some(false), ..Default::default() }
}

fn drift(
    current: &Current,
    change: &'static str,
    (id, login): (&str, &str),
    role: Option<String>,
    current_role: Option<String>,
    line: Option<i64>,
) -> Drift {
    Drift {
        profile: current.profile.clone(),
        group: current.group.clone(),
        change,
        login: login.to_string(),
        account: id.to_string(),
        role,
        current_role,
        line,
        status: "planned".into(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_a_quarter_and_one_admin_and_refuse_nonsense() {
        let o = Options::read(&json!({})).unwrap();
        assert_eq!((o.apply, o.min_admins, o.max_removal_share), (false, 1, 0.25));
        let o = Options::read(&json!({"apply": true, "min_admins": 0, "max_removal_share": 1.0})).unwrap();
        assert_eq!((o.apply, o.min_admins, o.max_removal_share), (true, 0, 1.0));
        assert!(Options::read(&json!({"max_removal_share": 25})).unwrap_err().message.contains("between 0 and 1"));
        assert!(Options::read(&json!({"min_admins": -1})).is_err());
    }

    #[test]
    fn a_change_is_the_member_as_the_plan_knows_it() {
        let d = Drift {
            profile: "ghes".into(),
            group: "acme/ops".into(),
            change: "role",
            login: "mona".into(),
            account: "mona".into(),
            role: Some("member".into()),
            current_role: Some("maintainer".into()),
            line: Some(4),
            status: "planned".into(),
            error: None,
        };
        let item = item_of(&d);
        assert_eq!(item.known, Some(false), "known not to be in place: no second read");
        assert_eq!(
            (item.params["group"].clone(), item.params["role"].clone(), item.params["prior_role"].clone()),
            (json!("acme/ops"), json!("member"), json!("maintainer"))
        );
        let removal = item_of(&Drift { change: "remove", role: Some("maintainer".into()), current_role: None, ..d });
        assert_eq!((removal.params.get("role"), removal.params["prior_role"].clone()), (None, json!("maintainer")));
        assert!(is_admin_role(Some("maintainer")) && is_admin_role(Some("admin")) && !is_admin_role(Some("member")));
    }
}
