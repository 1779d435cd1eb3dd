//! Dates as people type them (`YYYY-MM-DD`) and as steward writes them (RFC 3339, UTC).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is not a date: use YYYY-MM-DD (e.g. 2025-02-21) or RFC 3339"))
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
