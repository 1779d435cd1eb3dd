//! Where a bulk job's items come from besides an array: a CSV file, read line by line straight into items, and a
//! walk of the users (`h.users(filter)`). Either way the job holds per item only what it needs (the target, its
//! line, a reason), never the rows as script values.

use super::listing::Users;
use super::types::{bulk_item, invalid, ScriptResult};
use crate::dispatch::BulkItem;
use crate::output;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Every line of the CSV at `path`, leniently: a malformed line becomes an item that fails with its line
/// number and what is wrong, and the others go ahead (as `read_csv(path, #{lenient: true})` rows would). A row
/// that names its user only by email is listed in `by_email`, for `settle_emails`.
pub fn from_csv(path: &str, keys: &[&str]) -> ScriptResult<CsvItems> {
    let mut out = CsvItems::default();
    output::csv::each_line(Path::new(path), |line| {
        let number = line.number.to_string();
        let fields = line.fields;
        let problem = line.problem;
        if let Some(p) = &problem {
            output::note(&format!("{path}: {p}"));
        }
        let text = |k: &str| match k {
            "_line" => Some(number.clone()),
            "_error" => problem.clone(),
            _ => fields.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_string),
        };
        if problem.is_none() && keys.iter().all(|k| text(k).is_none()) {
            if let Some(email) = text("email") {
                out.by_email.push((out.items.len(), email));
            }
        }
        out.items.push(bulk_item(text, keys));
    })
    .map_err(|e| invalid(e.to_string()))?;
    Ok(out)
}

/// A CSV's items, and which of them name their user only by email (the item's index, the email).
#[derive(Default)]
pub struct CsvItems {
    pub items: Vec<BulkItem>,
    pub by_email: Vec<(usize, String)>,
}

impl CsvItems {
    /// Each row named by email gets the login of the one user with that email (compared without case), read
    /// from `users`; no such user, or more than one, fails that row, saying so. Only the emails asked for are
    /// held while the users are walked.
    pub fn settle_emails(mut self, users: &Users) -> ScriptResult<Vec<BulkItem>> {
        let mut wanted: HashMap<String, Vec<String>> =
            self.by_email.iter().map(|(_, e)| (e.trim().to_lowercase(), Vec::new())).collect();
        while let Some(page) = users.next_page() {
            for user in page? {
                let Some(found) = user.email.as_ref().and_then(|e| wanted.get_mut(&e.trim().to_lowercase())) else {
                    continue;
                };
                let name = match user.login.is_empty() {
                    false => user.login,
                    true => target_of(&user.id).unwrap_or_default(),
                };
                found.push(name);
            }
        }
        for (index, email) in self.by_email {
            let item = &mut self.items[index];
            // A row that names nobody is still shown by what it gave; with its error set it is never sent.
            item.target = Some(email.trim().to_string());
            match wanted.get(&email.trim().to_lowercase()).map(Vec::as_slice).unwrap_or_default() {
                [one] => {
                    item.target = Some(one.clone());
                    item.error = None;
                }
                [] => item.error = Some(format!("no user with email {email}")),
                many => {
                    item.error = Some(format!(
                        "{} users have the email {email} ({}): name the login instead",
                        many.len(),
                        many.join(", ")
                    ))
                }
            }
        }
        Ok(self.items)
    }
}

/// A field as a bulk item's target: a string that is not blank as is, a number in decimal.
fn target_of(id: &Value) -> Option<String> {
    match id {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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
            items.push(bulk_item(|k: &str| user.field(k).as_ref().and_then(target_of), keys));
        }
    }
    Ok(items)
}
