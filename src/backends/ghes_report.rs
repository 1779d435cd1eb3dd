//! GHES's site-admin all-users report (`/stafftools/reports/all_users.csv`): the one place GHES says when each
//! account was last active (`last_active`) and whether GHES counts it dormant (`dormant?`). It lives outside the
//! API, at the instance's root, takes HTTP Basic authentication (a site admin's login and a classic token with
//! the `site_admin` scope), and answers 202 while it generates the report in the background.

use super::model::{Raw, User};
use crate::http::error::ApiError;
use crate::http::{HttpClient, Request};
use crate::redact::{ExposeSecret, SecretString};
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Where the report sits, from the instance's root (the API lives under `/api/v3`).
pub const PATH: &str = "/stafftools/reports/all_users.csv";

/// How long steward waits for GHES to generate the report before it says so and stops.
const GENERATING_AT_MOST: Duration = Duration::from_secs(600);

const NEEDS: &str = "the all-users report needs a site administrator's classic personal access token with the site_admin scope (GHES → Site admin → Reports)";

/// One account as the report lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: Option<u64>,
    pub login: String,
    pub email: Option<String>,
    pub admin: Option<bool>,
    pub suspended: Option<bool>,
    /// `None`: never active.
    pub last_active: Option<DateTime<Utc>>,
    pub dormant: Option<bool>,
    pub created_at: Option<String>,
    pub two_factor: Option<bool>,
}

impl Row {
    /// What planning holds of it.
    pub fn into_seen(self) -> super::model::Seen {
        super::model::Seen {
            created: self.created_at.as_deref().and_then(report_time),
            login: self.login,
            email: self.email,
            admin: self.admin.unwrap_or(false),
            suspended: self.suspended.unwrap_or(false),
            last_active: self.last_active,
        }
    }

    pub fn into_user(self, profile: &str) -> User {
        let created = self.created_at.as_deref().and_then(report_time).map(crate::dates::rfc3339);
        let raw = json!({
            "id": self.id, "login": self.login, "email": self.email, "role": self.admin.map(|a| if a { "admin" } else { "user" }),
            "suspended?": self.suspended, "last_active": self.last_active.map(crate::dates::rfc3339),
            "dormant?": self.dormant, "created_at": self.created_at, "2fa_enabled?": self.two_factor,
        });
        User {
            id: self.id.map(Value::from).unwrap_or(Value::Null),
            login: self.login,
            email: self.email,
            name: None,
            admin: self.admin,
            suspended: self.suspended,
            last_active: self.last_active.map(crate::dates::rfc3339),
            kind: "github".into(),
            profile: profile.to_string(),
            raw: Raw::Tree(raw),
            extra: vec![
                ("created_at".into(), json!(created)),
                ("dormant".into(), json!(self.dormant)),
                ("two_factor".into(), json!(self.two_factor)),
                ("activity_means".into(), json!("last_active in GHES's all-users report")),
            ],
            unknown: &["name"],
        }
    }
}

/// Reads the report as `login` with `token`, waiting (within bounds) while GHES generates it: its bytes, for
/// `parse` or `parse_into`.
pub async fn fetch(http: &HttpClient, login: &str, token: &SecretString) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{}", token.expose_secret()));
    let req = Request::new(Method::GET, report_url(http)?)
        .header("accept", "text/csv")
        .secret_header("authorization", SecretString::from(format!("Basic {basic}")));
    let started = std::time::Instant::now();
    let mut wait = Duration::from_secs(2);
    loop {
        let answer = http.exchange(&req).await.map_err(refused)?;
        if answer.status != 202 {
            return Ok(answer.bytes);
        }
        // 202: no cached report yet; GHES is generating it.
        if started.elapsed() >= http.real(GENERATING_AT_MOST) {
            return Err(ApiError::new(
                crate::error::ErrorKind::Unavailable,
                format!("GHES was still generating {PATH} after {} minutes", GENERATING_AT_MOST.as_secs() / 60),
            )
            .with_hint("run again later: GHES keeps the report once it is made"));
        }
        tracing::info!(wait_s = wait.as_secs(), "GHES is generating the all-users report (202); asking again");
        tokio::time::sleep(http.real(wait)).await;
        wait = (wait * 2).min(Duration::from_secs(15));
    }
}

/// The report's URL: the instance's root, whatever path the profile's API URL has.
fn report_url(http: &HttpClient) -> Result<String, ApiError> {
    http.base_url()
        .join(PATH)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::invalid(format!("cannot make the report's URL from the profile's url: {e}")))
}

/// A refusal of the report, with what it takes (a redirect is GHES sending a signed-out browser to sign in).
fn refused(e: ApiError) -> ApiError {
    match e.status {
        Some(301 | 302 | 303 | 307 | 308 | 401 | 403 | 404) => {
            let message = format!("GHES refused {PATH} (HTTP {}): {}", e.status.unwrap_or_default(), e.message);
            ApiError { message, ..e }.with_hint(NEEDS)
        }
        _ => e,
    }
}

/// The report's rows. Anything that is not the report (a sign-in page, another CSV) is refused, and so is a
/// date steward cannot read: an unreadable date must never pass for "never active".
pub fn parse(bytes: &[u8]) -> Result<Vec<Row>, ApiError> {
    parse_into(bytes, |row| row)
}

/// `parse`, each row made into a `T` as it is read (a million rows never held twice).
pub fn parse_into<T>(bytes: &[u8], mut each: impl FnMut(Row) -> T) -> Result<Vec<T>, ApiError> {
    let not_report = |why: String| {
        ApiError::invalid(format!("GHES answered {PATH} with something other than the all-users report: {why}"))
            .with_hint(NEEDS)
    };
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).trim_start().to_ascii_lowercase();
    if head.starts_with('<') {
        return Err(not_report("an HTML page (a sign-in page?)".into()));
    }
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader.headers().map_err(|e| not_report(format!("its first line is not CSV ({e})")))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(login_at), Some(active_at)) = (column("login"), column("last_active")) else {
        return Err(not_report(format!(
            "it has no login and last_active columns (columns: {})",
            shorten_columns(&headers)
        )));
    };
    let (id_at, email_at, role_at, suspended_at) =
        (column("id"), column("email"), column("role"), column("suspended?"));
    let (dormant_at, created_at, two_factor_at) = (column("dormant?"), column("created_at"), column("2fa_enabled?"));
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let line = n + 2;
        let record = record.map_err(|e| not_report(format!("line {line}: {e}")))?;
        let text = |at: Option<usize>| at.and_then(|i| record.get(i)).map(str::trim).filter(|t| !t.is_empty());
        let flag = |at: Option<usize>| {
            text(at).and_then(|t| match t.to_ascii_lowercase().as_str() {
                "true" | "yes" => Some(true),
                "false" | "no" => Some(false),
                _ => None,
            })
        };
        let Some(login) = text(Some(login_at)) else {
            return Err(not_report(format!("line {line} names no login")));
        };
        let last_active = text(Some(active_at))
            .map(|t| {
                report_time(t).ok_or_else(|| {
                    not_report(format!("line {line} ({login}): last_active {t:?} is not a time steward can read"))
                })
            })
            .transpose()?;
        rows.push(each(Row {
            id: text(id_at).and_then(|t| t.parse().ok()),
            login: login.to_string(),
            email: text(email_at).map(str::to_string),
            admin: text(role_at).map(|r| r.eq_ignore_ascii_case("admin") || r.eq_ignore_ascii_case("site_admin")),
            suspended: flag(suspended_at),
            last_active,
            dormant: flag(dormant_at),
            created_at: text(created_at).map(str::to_string),
            two_factor: flag(two_factor_at),
        }));
    }
    Ok(rows)
}

fn shorten_columns(headers: &csv::StringRecord) -> String {
    let names: Vec<&str> = headers.iter().take(8).collect();
    crate::http::shorten(&names.join(", "))
}

/// A time as the report writes it: ISO 8601 / RFC 3339, or Ruby's `2024-01-15 09:00:00 UTC` / `… -0800`.
fn report_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z") {
        return Some(t.with_timezone(&Utc));
    }
    let plain = text.strip_suffix(" UTC").unwrap_or(text);
    ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(plain, f).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "created_at,id,login,email,role,suspended?,last_logged_ip,repos,ssh_keys,org_memberships,dormant?,last_active,raw_login,2fa_enabled?\n\
        2024-01-15 09:00:00 UTC,2,alice,alice@example.com,admin,false,10.0.0.1,3,1,2,false,2026-11-30 10:00:00 UTC,alice,true\n\
        2024-01-15T09:00:00Z,3,bob,,user,true,,0,0,0,true,,bob,false\n\
        2024-01-15T09:00:00Z,4,carol,carol@example.com,user,false,,0,0,0,false,2026-10-01T08:00:00-02:00,carol,false\n";

    #[test]
    fn the_report_reads_as_accounts_with_their_last_activity() {
        let rows = parse(REPORT.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].login.as_str(), rows[0].id, rows[0].admin), ("alice", Some(2), Some(true)));
        assert_eq!(rows[0].last_active.map(crate::dates::rfc3339).as_deref(), Some("2026-11-30T10:00:00Z"));
        assert_eq!((rows[1].last_active, rows[1].suspended, rows[1].dormant), (None, Some(true), Some(true)));
        assert_eq!(rows[2].last_active.map(crate::dates::rfc3339).as_deref(), Some("2026-10-01T10:00:00Z"));
        let user = rows[0].clone().into_user("ghes").into_value();
        assert_eq!((user["login"].as_str(), user["dormant"].as_bool()), (Some("alice"), Some(false)));
    }

    #[test]
    fn a_sign_in_page_or_another_csv_is_refused_not_read_as_nobody() {
        for (body, says) in [
            ("<!DOCTYPE html><html><body>Sign in to GitHub</body></html>", "HTML page"),
            ("name,url\nfoo,bar\n", "no login and last_active"),
            ("login,last_active\nalice,last tuesday\n", "line 2 (alice)"),
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(e.message.contains(says), "{body}: {}", e.message);
            assert!(e.hint.as_deref().unwrap_or("").contains("site_admin"), "{e:?}");
        }
    }

    #[test]
    fn an_empty_report_is_no_accounts() {
        assert!(parse(b"login,last_active\n").unwrap().is_empty());
    }
}
