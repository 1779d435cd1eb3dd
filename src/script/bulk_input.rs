//! Where a bulk job's items come from besides an array: a CSV file, read line by line straight into items, and a
//! walk of the users (`h.users(filter)`). Either way the job holds per item only what it needs (the target, its
//! line, a reason), never the rows as script values.

use super::listing::Users;
use super::types::{bulk_item, invalid, ScriptResult};
use crate::dispatch::BulkItem;
use crate::http::error::ApiError;
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
        let (item, email) = line_item(path, line, keys);
        if let Some(email) = email {
            out.by_email.push((out.items.len(), email));
        }
        out.items.push(item);
    })
    .map_err(|e| invalid(e.to_string()))?;
    Ok(out)
}

/// One CSV line as a bulk item (a malformed one noted on stderr), and the email it names its user by when it
/// gives no login or id.
fn line_item(path: &str, line: output::csv::Line, keys: &[&str]) -> (BulkItem, Option<String>) {
    let number = line.number.to_string();
    let (fields, problem) = (line.fields, line.problem);
    if let Some(p) = &problem {
        output::note(&format!("{path}: {p}"));
    }
    let text = |k: &str| match k {
        "_line" => Some(number.clone()),
        "_error" => problem.clone(),
        _ => fields.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_string),
    };
    let by_email = problem.is_none() && keys.iter().all(|k| text(k).is_none());
    let email = by_email.then(|| text("email")).flatten();
    (bulk_item(text, keys), email)
}

/// What a job must know of a CSV before its first window: how many rows it has, and the emails of the rows that
/// name their user only by email (nothing else is held).
pub fn survey(path: &str, keys: &[&str]) -> ScriptResult<(usize, Vec<String>)> {
    let (mut rows, mut emails) = (0, Vec::new());
    output::csv::each_line(Path::new(path), |line| {
        rows += 1;
        let by_email = line.problem.is_none()
            && keys.iter().all(|k| line.fields.get(*k).and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()));
        if let Some(email) = line.fields.get("email").and_then(Value::as_str).filter(|_| by_email) {
            emails.push(email.to_string());
        }
    })
    .map_err(|e| invalid(e.to_string()))?;
    Ok((rows, emails))
}

/// How many rows a job reads, plans and carries out at a time.
pub const WINDOW_ROWS: usize = 5_000;

/// The rows of a CSV as a job's windows of items, read on a thread of their own one window ahead (so memory
/// holds two windows, whatever the file's length); rows named by email get their login from `emails`. An empty
/// window is the end.
pub fn windows(
    path: &str,
    keys: &'static [&'static str],
    emails: Option<EmailIndex>,
) -> impl FnMut() -> Result<Vec<BulkItem>, ApiError> + Send {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<BulkItem>, ApiError>>(1);
    let path = path.to_string();
    std::thread::spawn(move || {
        let mut window = Vec::with_capacity(WINDOW_ROWS);
        let read = output::csv::each_line(Path::new(&path), |line| {
            let (mut item, email) = line_item(&path, line, keys);
            if let (Some(email), Some(index)) = (email, &emails) {
                index.settle(&mut item, &email);
            }
            window.push(item);
            if window.len() == WINDOW_ROWS {
                // A job that ended early stops listening: the rest is read to nothing.
                let _ = tx.send(Ok(std::mem::replace(&mut window, Vec::with_capacity(WINDOW_ROWS))));
            }
        });
        let last = read.map(|()| window).map_err(|e| ApiError::invalid(e.to_string()));
        let _ = tx.send(last);
    });
    move || rx.recv().unwrap_or_else(|_| Ok(Vec::new()))
}

/// The logins of the users who have each email asked for (compared without case), from one walk of the users.
pub struct EmailIndex(HashMap<String, Vec<String>>);

impl EmailIndex {
    pub fn walk(wanted: impl IntoIterator<Item = String>, users: &Users) -> ScriptResult<EmailIndex> {
        let mut found: HashMap<String, Vec<String>> =
            wanted.into_iter().map(|e| (e.trim().to_lowercase(), Vec::new())).collect();
        while let Some(page) = users.next_page() {
            for user in page? {
                let Some(logins) = user.email.as_ref().and_then(|e| found.get_mut(&e.trim().to_lowercase())) else {
                    continue;
                };
                logins.push(match user.login.is_empty() {
                    false => user.login,
                    true => target_of(&user.id).unwrap_or_default(),
                });
            }
        }
        Ok(EmailIndex(found))
    }

    /// `item` (a row that named its user by `email`) gets the login of the one user with that email; no such
    /// user, or more than one, fails it, saying so. A row that names nobody is still shown by what it gave.
    pub fn settle(&self, item: &mut BulkItem, email: &str) {
        item.target = Some(email.trim().to_string());
        match self.0.get(&email.trim().to_lowercase()).map(Vec::as_slice).unwrap_or_default() {
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
}

/// A CSV's items, and which of them name their user only by email (the item's index, the email).
#[derive(Default)]
pub struct CsvItems {
    pub items: Vec<BulkItem>,
    pub by_email: Vec<(usize, String)>,
}

impl CsvItems {
    /// Each row named by email gets the login of the one user with that email (see `EmailIndex`). Only the
    /// emails asked for are held while the users are walked.
    pub fn settle_emails(mut self, users: &Users) -> ScriptResult<Vec<BulkItem>> {
        let index = EmailIndex::walk(self.by_email.iter().map(|(_, e)| e.clone()), users)?;
        for (i, email) in &self.by_email {
            index.settle(&mut self.items[*i], email);
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
