//! Where a bulk job's items come from besides an array: a CSV file, read line by line straight into items, and a
//! walk of the users (`h.users(filter)`). Either way the job holds per item only what it needs (the target, its
//! line, a reason), never the rows as script values.

use super::listing::Users;
use super::types::{bulk_item, invalid, ScriptResult};
use crate::dispatch::BulkItem;
use crate::output;
use serde_json::Value;
use std::path::Path;

/// Every line of the CSV at `path`, leniently: a malformed line becomes an item that fails with its line
/// number and what is wrong, and the others go ahead (as `read_csv(path, #{lenient: true})` rows would).
pub fn from_csv(path: &str, keys: &[&str]) -> ScriptResult<Vec<BulkItem>> {
    let mut items = Vec::new();
    output::csv::each_line(Path::new(path), |line| {
        let number = line.number.to_string();
        let fields = line.fields;
        let problem = line.problem;
        if let Some(p) = &problem {
            output::note(&format!("{path}: {p}"));
        }
        items.push(bulk_item(
            |k: &str| match k {
                "_line" => Some(number.clone()),
                "_error" => problem.clone(),
                _ => fields.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_string),
            },
            keys,
        ));
    })
    .map_err(|e| invalid(e.to_string()))?;
    Ok(items)
}

/// Refuses a results file that is the input CSV itself, however its path is spelled (`./a.csv`, a symlink, a
/// hard link): writing results would destroy the list of whom the job was for.
pub fn results_apart_from(csv: &str, results: Option<&str>) -> ScriptResult<()> {
    let Some(results) = results else { return Ok(()) };
    let same = match (std::fs::metadata(csv), std::fs::metadata(results)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        _ => false,
    };
    match same {
        true => Err(invalid(format!(
            "results {results:?} is the input file {csv:?}: writing results would overwrite the list of whom the job \
             is for; name another file (e.g. beside it, NAME-results.csv)"
        ))),
        false => Ok(()),
    }
}

/// Every user a walk yields, by the first of `keys` its record has (a login, else an id).
pub fn from_users(users: &Users, keys: &[&str]) -> ScriptResult<Vec<BulkItem>> {
    let mut items = Vec::new();
    while let Some(page) = users.next_page() {
        for user in page? {
            items.push(bulk_item(
                |k: &str| match user.field(k) {
                    Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                },
                keys,
            ));
        }
    }
    Ok(items)
}
