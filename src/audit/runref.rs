//! A run as people name it. Run numbers are a log's own: `audit push` gives each copied run a new number in the
//! team log (and keeps the old one in `runs.origin`), so `41` typed from a hint noted before the push may name
//! another job now. A plain number that could mean either is refused with both named; `here:N` and `pushed:N`
//! (or `pushed:LOG:N`, LOG the pushed log's name as `audit push` printed it) say which.

use super::db::DbError;
use super::store::{AuditError, AuditStore};

/// How a run was named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub number: i64,
    pub form: Form,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Form {
    /// `41`: this log's run 41, unless that is ambiguous since a push.
    Plain,
    /// `here:41`: this log's run 41, whatever was pushed.
    Here,
    /// `pushed:41` / `pushed:LOG:41`: the run numbered 41 in a log pushed here (that log, when named).
    Pushed(Option<String>),
}

impl std::str::FromStr for RunRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let unclear = || format!("{text:?} is not a run: write its number (42), here:42, pushed:42 or pushed:LOG:42");
        let number = |n: &str| n.trim().parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(unclear);
        let parts: Vec<&str> = text.split(':').collect();
        let (number, form) = match parts.as_slice() {
            [n] => (number(n)?, Form::Plain),
            ["here", n] => (number(n)?, Form::Here),
            ["pushed", n] => (number(n)?, Form::Pushed(None)),
            ["pushed", log, n] if !log.is_empty() => (number(n)?, Form::Pushed(Some(log.to_string()))),
            _ => return Err(unclear()),
        };
        Ok(RunRef { number, form })
    }
}

impl std::fmt::Display for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.form {
            Form::Plain => write!(f, "{}", self.number),
            Form::Here => write!(f, "here:{}", self.number),
            Form::Pushed(None) => write!(f, "pushed:{}", self.number),
            Form::Pushed(Some(log)) => write!(f, "pushed:{log}:{}", self.number),
        }
    }
}

/// A run named, found: its number in this log, and what to tell the person when it is not the number typed.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    pub run: i64,
    pub said: Option<String>,
}

/// Why a run name finds no one run.
#[derive(Debug, thiserror::Error)]
pub enum RunRefError {
    #[error("{0}")]
    Unclear(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl AuditStore {
    /// The run `named` names in this log (see the module's note). A plain number that is this log's run and
    /// also another run's number before a push is refused, naming both.
    pub fn find_run(&self, named: &RunRef) -> Result<Found, RunRefError> {
        let n = named.number;
        let pushed: Vec<(i64, String)> = self
            .pushed_runs()?
            .into_iter()
            .filter(|(_, _, source)| *source == n)
            .map(|(id, log, _)| (id, log))
            .collect();
        let here = self.run_exists(n)?;
        let describe = |id: i64| self.describe_run(id).unwrap_or_else(|_| format!("run {id}"));
        match &named.form {
            Form::Here if here => Ok(Found { run: n, said: None }),
            Form::Here => {
                Err(RunRefError::Unclear(format!("there is no run {n} in this log; `steward runs` lists them")))
            }
            Form::Plain => match (here, pushed.as_slice()) {
                (true, []) => Ok(Found { run: n, said: None }),
                (true, [(id, _)]) if *id == n => Ok(Found { run: n, said: None }),
                (false, []) => Err(RunRefError::Unclear(format!("there is no run {n}; `steward runs` lists them"))),
                (false, [(id, log)]) => Ok(Found {
                    run: *id,
                    said: Some(format!(
                        "run {n} of the log pushed here as {log} is run {id} in this log: {}",
                        describe(*id)
                    )),
                }),
                (_, many) => {
                    let mut text = format!("run {n} could mean more than one run since `audit push`:");
                    if here {
                        text.push_str(&format!("\n  here:{n}  {}", describe(n)));
                    }
                    for (id, log) in many {
                        text.push_str(&format!("\n  pushed:{log}:{n}  (now run {id}) {}", describe(*id)));
                    }
                    text.push_str("\nname the one you mean as shown");
                    Err(RunRefError::Unclear(text))
                }
            },
            Form::Pushed(log) => {
                let matching: Vec<&(i64, String)> = pushed
                    .iter()
                    .filter(|(_, l)| log.as_ref().is_none_or(|want| l.starts_with(want.as_str())))
                    .collect();
                match matching.as_slice() {
                    [(id, l)] => Ok(Found {
                        run: *id,
                        said: Some(format!(
                            "run {n} of the log pushed here as {l} is run {id} in this log: {}",
                            describe(*id)
                        )),
                    }),
                    [] => Err(RunRefError::Unclear(format!(
                        "no log pushed here had a run {n}; `steward runs` lists this log's"
                    ))),
                    many => Err(RunRefError::Unclear(format!(
                        "logs pushed here had more than one run {n}: {}; name the log too",
                        many.iter()
                            .map(|(id, l)| format!("pushed:{l}:{n} (now run {id})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
        }
    }

    /// Every run `audit push` copied here: (its number here, the log it came from, its number there).
    pub fn pushed_runs(&self) -> Result<Vec<(i64, String, i64)>, AuditError> {
        let rows =
            self.db().rows("SELECT id, origin FROM runs WHERE origin IS NOT NULL", &[]).map_err(AuditError::Read)?;
        let mut out = Vec::new();
        for r in rows {
            let (id, origin) = (r.int(0).map_err(AuditError::Read)?, r.text(1).map_err(AuditError::Read)?);
            if let Some((log, source)) = origin.split_once(' ').and_then(|(l, s)| Some((l, s.parse().ok()?))) {
                out.push((id, log.to_string(), source));
            }
        }
        Ok(out)
    }

    fn run_exists(&self, id: i64) -> Result<bool, AuditError> {
        Ok(self.db().row("SELECT 1 FROM runs WHERE id = ?1", &[id.into()]).map_err(AuditError::Read)?.is_some())
    }

    /// `alice@laptop, 2026-12-01T10:00:00Z: steward run offboard.rhai` for run `id`.
    fn describe_run(&self, id: i64) -> Result<String, AuditError> {
        let r = self
            .db()
            .row("SELECT os_user, host, started_at, command FROM runs WHERE id = ?1", &[id.into()])
            .map_err(AuditError::Read)?
            .ok_or_else(|| AuditError::Read(DbError::Type(format!("no run {id}"))))?;
        let t = |i| r.text(i).map_err(AuditError::Read);
        Ok(format!("({}@{}, {}: {})", t(0)?, t(1)?, t(2)?, t(3)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_people_type_are_read() {
        let r = |s: &str| s.parse::<RunRef>();
        assert_eq!(r("42"), Ok(RunRef { number: 42, form: Form::Plain }));
        assert_eq!(r("here:42"), Ok(RunRef { number: 42, form: Form::Here }));
        assert_eq!(r("pushed:41"), Ok(RunRef { number: 41, form: Form::Pushed(None) }));
        assert_eq!(r("pushed:9f2c:41"), Ok(RunRef { number: 41, form: Form::Pushed(Some("9f2c".into())) }));
        for bad in ["", "0", "-3", "x", "pushed:", "pushed::4", "there:4", "4:4"] {
            assert!(r(bad).is_err(), "{bad}");
        }
        assert_eq!(r("pushed:9f2c:41").map(|r| r.to_string()), Ok("pushed:9f2c:41".to_string()));
    }
}
