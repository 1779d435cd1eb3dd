//! Dates as people type them (`2025-02-21`, `7d`, `yesterday`, `2025-02-21 14:30`, RFC 3339) and as steward
//! writes them (RFC 3339, UTC).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Why text a person typed is not a date or a length of time (what to write instead).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DateError {
    #[error(
        "{0:?} is not a date: use YYYY-MM-DD (2025-02-21), a time (2025-02-21 14:30, UTC, or RFC 3339), today, \
         yesterday, or an age such as 7d, 12h, 2w"
    )]
    NotADate(String),
    #[error("{0:?} reaches too far back")]
    TooFarBack(String),
    #[error("{0:?} is not a length of time: write a whole number and a unit, such as 30m, 4h, 2d or 1w")]
    NotALength(String),
}

/// A date or time as a person types it, in UTC: `YYYY-MM-DD` (midnight), `YYYY-MM-DD HH:MM[:SS]`, RFC 3339,
/// `today`, `yesterday`, `now`, or an age such as `7d`, `12h`, `30m`, `2w` (that long before now).
pub fn parse_date(text: &str) -> Result<DateTime<Utc>, DateError> {
    parse_date_at(text, Utc::now())
}

/// `parse_date` with "now" given, for tests.
pub fn parse_date_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, DateError> {
    let text = text.trim();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default();
    match text.to_ascii_lowercase().as_str() {
        "now" => return Ok(now),
        "today" => return Ok(midnight(now.date_naive())),
        "yesterday" => return Ok(midnight(now.date_naive()) - Duration::days(1)),
        _ => {}
    }
    if let Some(age) = age(text) {
        return now.checked_sub_signed(age).ok_or_else(|| DateError::TooFarBack(text.to_string()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(midnight(d));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| DateError::NotADate(text.to_string()))
}

/// A length of time as people write it (`4h`, `30m`, `2d`, `1w`), or why it is not one.
pub fn parse_duration(text: &str) -> Result<Duration, DateError> {
    age(text.trim()).filter(|d| *d > Duration::zero()).ok_or_else(|| DateError::NotALength(text.to_string()))
}

/// `7d`, `12h`, `30m`, `2w`: a whole number and a unit.
fn age(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].trim().parse().ok().filter(|n| *n >= 0)?;
    match unit.to_ascii_lowercase() {
        'm' => Duration::try_minutes(n),
        'h' => Duration::try_hours(n),
        'd' => Duration::try_days(n),
        'w' => Duration::try_weeks(n),
        _ => None,
    }
}

/// A length of time as a person says it, in its largest whole unit: `45 s`, `2 min`, `3 h`, `3650 days`.
pub fn spoken(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_people_type_is_read() {
        let now = parse_date("2026-11-30T15:45:00Z").unwrap();
        let at = |s: &str| rfc3339(parse_date_at(s, now).unwrap());
        assert_eq!(at("2025-02-21"), "2025-02-21T00:00:00Z");
        assert_eq!(at("2025-02-21 14:30"), "2025-02-21T14:30:00Z");
        assert_eq!(at("2025-02-21T14:30:05"), "2025-02-21T14:30:05Z");
        assert_eq!(at("2025-02-21T14:30:05+02:00"), "2025-02-21T12:30:05Z");
        assert_eq!(at("7d"), "2026-11-23T15:45:00Z");
        assert_eq!(at("12h"), "2026-11-30T03:45:00Z");
        assert_eq!(at("2w"), "2026-11-16T15:45:00Z");
        assert_eq!(at("Yesterday"), "2026-11-29T00:00:00Z");
        assert_eq!(at("today"), "2026-11-30T00:00:00Z");
        for bad in ["21/02/2025", "7x", "-3d", "d", "", "99999999999999d"] {
            assert!(parse_date_at(bad, now).is_err(), "{bad:?}");
        }
    }
}
