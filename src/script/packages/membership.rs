//! Declared membership: `reconcile(desired, opts)` reads who should be in which group (a CSV or TOML file, or
//! rows), reports the drift, and with `apply: true` puts it right through the pipeline, within its guards.

use crate::dispatch::reconcile::{Options, Plan, Wanted};
use crate::http::error::ApiError;
use crate::script::bridge::Host;
use crate::script::docs::FnDoc;
use crate::script::types::{error_map, invalid, to_dynamic, to_json, ScriptResult};
use rhai::{Dynamic, Engine, Map};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

pub const DOCS: &[FnDoc] = &[
    FnDoc { name: "reconcile", signature: "reconcile(desired, #{apply, profile, min_admins, max_removal_share, report, reason})", summary: "Declared membership. `desired` is a CSV or TOML file (or rows) of profile, group, person, role: each group it names is to hold exactly those people. Returns #{drift, summary, blocked, problems}: who is missing (add), extra (remove) or has the wrong role (role). With apply: true the drift is put right in one confirmed plan, unless a guard blocks it: a group losing more than max_removal_share of its members (0.25; one removal is always allowed) or left with fewer than min_admins admins/maintainers (1). Protected accounts are never removed. `report` writes the drift as .csv or .html.", example: r#"reconcile([#{profile: "github", group: "acme/ops", person: "user0010", role: "maintainer"}], #{}).summary"#, method: false },
];

pub fn register(engine: &mut Engine, host: Rc<Host>) {
    let h = host.clone();
    engine.register_fn("reconcile", move |desired: Dynamic, opts: Map| reconcile(&h, desired, opts));
    let h = host;
    engine.register_fn("reconcile", move |desired: Dynamic| reconcile(&h, desired, Map::new()));
}

fn reconcile(host: &Host, desired: Dynamic, opts: Map) -> ScriptResult<Dynamic> {
    let opts = to_json(&opts.into())?;
    let options = Options::read(&opts).map_err(api)?;
    let default_profile = match opts.get("profile").and_then(Value::as_str) {
        Some(p) => Some(p.to_string()),
        None => host.connections.default_name().map(str::to_string),
    };
    let wanted = desired_rows(&desired, default_profile.as_deref())?;
    let mut conns = HashMap::new();
    for w in &wanted {
        if !conns.contains_key(&w.profile) {
            let conn = host.connections.connect(Some(&w.profile)).map_err(|e| invalid(e.to_string()))?;
            conns.insert(w.profile.clone(), conn);
        }
    }
    let borrowed: HashMap<String, &crate::dispatch::Connection> =
        conns.iter().map(|(k, v)| (k.to_string(), v.as_ref())).collect();
    let d = &host.dispatcher;
    let mut plan = host.runtime.block_on(d.reconcile_plan(&borrowed, &wanted, &options)).map_err(api)?;
    if options.apply {
        host.runtime.block_on(d.reconcile_apply(&borrowed, &mut plan, &options)).map_err(api)?;
    }
    if let Some(path) = opts.get("report").and_then(Value::as_str) {
        write_report(Path::new(path), &plan)?;
    }
    Ok(to_dynamic(result(&plan, options.apply)))
}

fn api(e: ApiError) -> Box<rhai::EvalAltResult> {
    error_map(e.kind, e.to_string())
}

/// What a script reads back: the drift rows, counts, and what stopped or troubled the plan.
fn result(plan: &Plan, applied: bool) -> Value {
    let count = |change: &str| plan.drift.iter().filter(|d| d.change == change).count();
    json!({
        "drift": plan.drift,
        "summary": {"groups": plan.groups, "in_place": plan.in_place, "add": count("add"), "remove": count("remove"), "role": count("role")},
        "blocked": plan.blocked,
        "problems": plan.problems,
        "applied": applied,
    })
}

/// The desired memberships: a CSV (`profile,group,person,role`; `user`, `login` or `email` for `person`) or
/// TOML (`[[membership]]` tables of the same keys) file, or an array of maps. A row without a profile is the
/// default profile's. A CSV is read a line at a time straight into memberships (100,000 rows are never held as
/// maps as well).
fn desired_rows(desired: &Dynamic, default_profile: Option<&str>) -> ScriptResult<Vec<Wanted>> {
    if let Some(path) = desired.clone().try_cast::<rhai::ImmutableString>() {
        let path = Path::new(path.as_str());
        if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
            return csv_rows(path, default_profile);
        }
        let rows = toml_rows(path)?;
        let mut shared = Shared::default();
        let each = rows.iter().enumerate().map(|(i, r)| wanted(r, Some(i as i64 + 1), default_profile, &mut shared));
        return each.collect::<Result<_, _>>().map_err(|e| invalid(format!("{}: {e}", path.display())));
    }
    let Some(array) = desired.clone().try_cast::<rhai::Array>() else {
        return Err(invalid("reconcile(desired): give a CSV or TOML file's path, or an array of rows"));
    };
    let rows: Vec<Value> = array.iter().map(to_json).collect::<ScriptResult<_>>()?;
    let mut shared = Shared::default();
    let each = rows.iter().enumerate().map(|(i, r)| wanted(r, Some(i as i64 + 1), default_profile, &mut shared));
    each.collect::<Result<_, _>>().map_err(invalid)
}

/// One membership from a row's columns; the error names its line.
/// The one copy of each profile, group and role name the rows share.
#[derive(Default)]
struct Shared(std::collections::HashSet<std::sync::Arc<str>>);

impl Shared {
    fn of(&mut self, text: &str) -> std::sync::Arc<str> {
        if let Some(known) = self.0.get(text) {
            return known.clone();
        }
        let new: std::sync::Arc<str> = text.into();
        self.0.insert(new.clone());
        new
    }
}

fn wanted(
    row: &Value,
    line: Option<i64>,
    default_profile: Option<&str>,
    shared: &mut Shared,
) -> Result<Wanted, String> {
    let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let at = || format!("line {}", line.unwrap_or(0));
    let person = ["person", "user", "login", "email"].iter().find_map(|k| text(k));
    let (Some(group), Some(person)) = (text("group"), person) else {
        return Err(format!("{}: a membership needs a group and a person (person, user, login or email)", at()));
    };
    let profile = text("profile")
        .or(default_profile)
        .ok_or_else(|| format!("{}: no profile: give a profile column or reconcile(…, #{{profile: \"…\"}})", at()))?;
    Ok(Wanted {
        profile: shared.of(profile),
        group: shared.of(group),
        person: person.to_string(),
        role: text("role").map(|r| shared.of(&r.to_ascii_lowercase())),
        line,
    })
}

/// A desired-state CSV, a line at a time; the first bad line (or row) is the error, naming the file and line.
fn csv_rows(path: &Path, default_profile: Option<&str>) -> ScriptResult<Vec<Wanted>> {
    let mut out = Vec::new();
    let mut first_error = None;
    let mut shared = Shared::default();
    crate::output::csv::each_line(path, |line| {
        if first_error.is_some() {
            return;
        }
        let number = Some(line.number as i64);
        match line.problem {
            Some(bad) => first_error = Some(invalid(format!("{}: {bad}", path.display()))),
            None => match wanted(&Value::Object(line.fields), number, default_profile, &mut shared) {
                Ok(w) => out.push(w),
                Err(e) => first_error = Some(invalid(format!("{}: {e}", path.display()))),
            },
        }
    })
    .map_err(|e| invalid(e.to_string()))?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A desired-state TOML file's `[[membership]]` tables.
fn toml_rows(path: &Path) -> ScriptResult<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let doc: toml::Value = toml::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let tables = doc.get("membership").and_then(toml::Value::as_array).ok_or_else(|| {
        invalid(format!(
            "{}: no [[membership]] tables (each with group, person and optionally profile, role)",
            path.display()
        ))
    })?;
    Ok(tables.iter().map(|t| serde_json::to_value(t).unwrap_or(Value::Null)).collect())
}

/// The drift as a CSV or a self-contained HTML page.
fn write_report(path: &Path, plan: &Plan) -> ScriptResult<()> {
    let rows: Vec<Value> = plan.drift.iter().map(|d| serde_json::to_value(d).unwrap_or_default()).collect();
    let html = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("html"));
    let written = match html {
        true => crate::files::write(path, crate::output::drift_page::page(&rows, &plan.blocked)),
        false => crate::output::csv::write_csv(path, &rows, None)
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string())),
    };
    written.map_err(|e| invalid(format!("cannot write {}: {e}", path.display())))
}
