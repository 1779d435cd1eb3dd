//! Timed changes: `h.suspend(u, #{until: "2027-01-15"})` and `h.promote(u, #{for: "4h"})` put the account back
//! at that time. The change's outcome, when it is `ok`, is followed in the log by a `schedule` note for its
//! inverse (`Recorder::outcomes`, so the single call, the bulk job and every batch schedule alike); a noop
//! schedules nothing (someone else's change is not ours to take back). `steward schedule run` (and `policy run
//! --due`) carries the due ones out through the pipeline, unless the account was changed since.

use crate::backends::Op;
use crate::http::error::ApiError;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The audit log's names: a scheduled change, and what became of one (done, left alone, failed, cancelled).
pub const SCHEDULE_OP: &str = "schedule";
pub const SCHEDULE_DONE_OP: &str = "schedule_done";

/// The parameters a change waiting for later keeps from the one that set it: a membership's group and role.
pub const CARRIED: [&str; 2] = ["group", "role"];

/// The longest a timed change may last: past it, a restore is a plan of its own, not a timer.
const LONGEST_DAYS: i64 = 366;

/// When a change made with `params` is to be taken back (`until`, `for`), if it is timed; an error (before
/// anything is sent) when the time cannot be read, is past, or the change has no inverse.
pub fn restore_at(op: Op, params: &Value, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_string);
    let at = match (text("until"), text("for")) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(ApiError::invalid("give until or for, not both")),
        (Some(until), None) => {
            crate::dates::parse_date(&until).map_err(|e| ApiError::invalid(format!("until: {e}")))?
        }
        (None, Some(length)) => {
            now + crate::dates::parse_duration(&length).map_err(|e| ApiError::invalid(format!("for: {e}")))?
        }
    };
    if op.inverse().is_none() {
        return Err(ApiError::invalid(format!(
            "{} cannot be timed: steward has nothing that takes it back",
            op.name()
        )));
    }
    if at <= now {
        return Err(ApiError::invalid(format!(
            "until {} has passed; a timed change ends in the future",
            crate::dates::rfc3339(at)
        )));
    }
    if at > now + chrono::Duration::days(LONGEST_DAYS) {
        return Err(ApiError::invalid(format!(
            "a timed change lasts at most {LONGEST_DAYS} days; plan a longer one as a policy"
        )));
    }
    Ok(Some(at))
}

impl super::Dispatcher {
    /// `h.schedule(at, op, target, #{reason})`: records a change to be made at `at` (carried out by `steward
    /// schedule run` or `policy run --due`, through the pipeline, resolved and decided then). Only a change steward
    /// can take back may wait for later; a dry run schedules nothing.
    pub async fn schedule(
        &self,
        conn: &super::Connection,
        op: Op,
        target: &str,
        at: &str,
        params: Value,
    ) -> Result<Value, ApiError> {
        if !conn.backend.supported().contains(&op) {
            return Err(crate::backends::unsupported(conn.backend.as_ref(), op));
        }
        if op.inverse().is_none() || !op.is_mutation(&params) {
            return Err(ApiError::invalid(format!(
                "{} cannot be scheduled: only a change steward can take back waits for later",
                op.name()
            )));
        }
        if let Some(why) = conn.backend.invalid_target(target.trim()) {
            return Err(ApiError::invalid(why));
        }
        let now = Utc::now();
        // `2d` is two days from now here (a date or a time names itself).
        let when = match crate::dates::parse_duration(at) {
            Ok(wait) => now + wait,
            Err(_) => crate::dates::parse_date(at).map_err(|e| ApiError::invalid(format!("at: {e}")))?,
        };
        if when <= now || when > now + chrono::Duration::days(LONGEST_DAYS) {
            return Err(ApiError::invalid(format!(
                "at {}: a scheduled change is due within the next {LONGEST_DAYS} days",
                crate::dates::rfc3339(when)
            )));
        }
        let reason = params.get("reason").and_then(Value::as_str).unwrap_or_default();
        let mut record = serde_json::json!({"op": op.name(), "at": crate::dates::rfc3339(when), "reason": reason});
        for key in CARRIED {
            if let Some(v) = params.get(key).filter(|v| !v.is_null()) {
                record[key] = v.clone();
            }
        }
        if self.mode.dry_run {
            return Ok(
                serde_json::json!({"scheduled": false, "dry_run": true, "op": op.name(), "target": target, "at": record["at"]}),
            );
        }
        self.recorder.schedule(conn, op, target, &record).await?;
        Ok(serde_json::json!({"scheduled": true, "op": op.name(), "target": target, "at": record["at"]}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn until_and_for_name_the_time_a_change_is_taken_back() {
        let four_hours = restore_at(Op::Promote, &json!({"for": "4h"}), now()).unwrap().unwrap();
        assert_eq!(crate::dates::rfc3339(four_hours), "2026-12-06T16:00:00Z");
        let day = restore_at(Op::Suspend, &json!({"until": "2027-01-15"}), now()).unwrap().unwrap();
        assert_eq!(crate::dates::rfc3339(day), "2027-01-15T00:00:00Z");
        assert_eq!(restore_at(Op::Suspend, &json!({"reason": "x"}), now()).unwrap(), None);
    }

    #[test]
    fn a_time_that_cannot_be_kept_is_refused_before_anything_is_sent() {
        for (op, params, says) in [
            (Op::Suspend, json!({"until": "2020-01-01"}), "has passed"),
            (Op::Suspend, json!({"until": "soon"}), "until:"),
            (Op::Promote, json!({"for": "-4h"}), "for:"),
            (Op::Promote, json!({"for": "4h", "until": "2027-01-01"}), "not both"),
            (Op::DeleteUser, json!({"for": "4h"}), "cannot be timed"),
            (Op::Suspend, json!({"until": "2030-01-01"}), "at most 366 days"),
        ] {
            let e = restore_at(op, &params, now()).unwrap_err();
            assert!(e.message.contains(says), "{params}: {}", e.message);
        }
    }
}
