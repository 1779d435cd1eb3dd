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
            suspended: self.suspended,
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

/// Reads the report as `login` with `token`, waiting (within bounds) while GHES generates it, and hands each
/// row to `each` as it arrives (a report of a million rows is never held whole): how many rows it had.
pub async fn fetch_rows(
    http: &HttpClient,
    login: &str,
    token: &SecretString,
    each: &mut (dyn FnMut(Row) + Send),
) -> Result<usize, ApiError> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{}", token.expose_secret()));
    let req = Request::new(Method::GET, report_url(http)?)
        .header("accept", "text/csv")
        .secret_header("authorization", SecretString::from(format!("Basic {basic}")));
    let started = std::time::Instant::now();
    let mut wait = Duration::from_secs(2);
    loop {
        let mut answer = http.open(&req).await.map_err(refused)?;
        if answer.status != 202 {
            let mut rows = Rows::default();
            while let Some(chunk) = answer.chunk().await? {
                rows.push(&chunk, each)?;
            }
            return rows.finish(each);
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
    let mut rows = Vec::new();
    let mut reader = Rows::default();
    reader.push(bytes, &mut |row| rows.push(row))?;
    reader.finish(&mut |row| rows.push(row))?;
    Ok(rows)
}

/// Where each column the report has sits (the report's own order, whatever it is).
struct Columns {
    count: usize,
    login: usize,
    last_active: usize,
    id: Option<usize>,
    email: Option<usize>,
    role: Option<usize>,
    suspended: Option<usize>,
    dormant: Option<usize>,
    created_at: Option<usize>,
    two_factor: Option<usize>,
}

/// The longest line the report may have: a report line is a few hundred bytes; one that never ends is not it.
const MAX_LINE: usize = 1 << 20;

/// The report read as it arrives: its header first, then each line made a `Row`.
struct Rows {
    csv: super::csv_stream::CsvStream,
    columns: Option<Columns>,
    rows: usize,
}

impl Default for Rows {
    fn default() -> Self {
        Rows { csv: super::csv_stream::CsvStream::new(MAX_LINE), columns: None, rows: 0 }
    }
}

impl Rows {
    fn push(&mut self, chunk: &[u8], each: &mut (dyn FnMut(Row) + Send)) -> Result<(), ApiError> {
        if self.columns.is_none() && chunk.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
            return Err(not_report("an HTML page (a sign-in page?)".into()));
        }
        let read = self.csv.push(chunk, &mut take(&mut self.columns, &mut self.rows, each));
        read.map_err(unreadable)
    }

    /// What is left once the body ended: how many rows there were.
    fn finish(mut self, each: &mut (dyn FnMut(Row) + Send)) -> Result<usize, ApiError> {
        let read = self.csv.finish(&mut take(&mut self.columns, &mut self.rows, each));
        read.map_err(unreadable)?;
        match self.columns {
            Some(_) => Ok(self.rows),
            None => Err(not_report("it is empty".into())),
        }
    }
}

/// What each record of the report becomes: the first its header, each after it a row handed to `each`.
fn take<'a>(
    columns: &'a mut Option<Columns>,
    rows: &'a mut usize,
    each: &'a mut (dyn FnMut(Row) + Send),
) -> impl FnMut(usize, &super::csv_stream::Record) -> Result<(), ApiError> + 'a {
    move |line, record| {
        match columns {
            None => *columns = Some(Columns::of(record)?),
            Some(c) => {
                each(c.row(line, record)?);
                *rows += 1;
            }
        }
        Ok(())
    }
}

impl Columns {
    fn of(header: &super::csv_stream::Record) -> Result<Columns, ApiError> {
        let column = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let (Some(login), Some(last_active)) = (column("login"), column("last_active")) else {
            let names: Vec<&str> = header.iter().take(8).collect();
            return Err(not_report(format!(
                "it has no login and last_active columns (columns: {})",
                crate::http::shorten(&names.join(", "))
            )));
        };
        Ok(Columns {
            count: header.len(),
            login,
            last_active,
            id: column("id"),
            email: column("email"),
            role: column("role"),
            suspended: column("suspended?"),
            dormant: column("dormant?"),
            created_at: column("created_at"),
            two_factor: column("2fa_enabled?"),
        })
    }

    /// Line `line` of the report as a row.
    fn row(&self, line: usize, record: &super::csv_stream::Record) -> Result<Row, ApiError> {
        if record.len() != self.count {
            return Err(not_report(format!(
                "line {line} has {} fields where the header names {}",
                record.len(),
                self.count
            )));
        }
        let text = |at: Option<usize>| at.and_then(|i| record.get(i)).map(str::trim).filter(|t| !t.is_empty());
        let flag = |at: Option<usize>| {
            text(at).and_then(|t| match t.to_ascii_lowercase().as_str() {
                "true" | "yes" => Some(true),
                "false" | "no" => Some(false),
                _ => None,
            })
        };
        let Some(login) = text(Some(self.login)) else {
            return Err(not_report(format!("line {line} names no login")));
        };
        let last_active = text(Some(self.last_active))
            .map(|t| {
                report_time(t).ok_or_else(|| {
                    not_report(format!("line {line} ({login}): last_active {t:?} is not a time steward can read"))
                })
            })
            .transpose()?;
        Ok(Row {
            id: text(self.id).and_then(|t| t.parse().ok()),
            login: login.to_string(),
            email: text(self.email).map(str::to_string),
            admin: text(self.role).map(|r| r.eq_ignore_ascii_case("admin") || r.eq_ignore_ascii_case("site_admin")),
            suspended: flag(self.suspended),
            last_active,
            dormant: flag(self.dormant),
            created_at: text(self.created_at).map(str::to_string),
            two_factor: flag(self.two_factor),
        })
    }
}

/// An answer that is not the report, with what it takes to get the report.
fn not_report(why: String) -> ApiError {
    ApiError::invalid(format!("GHES answered {PATH} with something other than the all-users report: {why}"))
        .with_hint(NEEDS)
}

fn unreadable(e: super::csv_stream::StreamError<ApiError>) -> ApiError {
    match e {
        super::csv_stream::StreamError::NotUtf8(line) => not_report(format!("line {line} is not UTF-8")),
        super::csv_stream::StreamError::TooLong(line) => {
            not_report(format!("line {line} is longer than {} MB", MAX_LINE >> 20))
        }
        super::csv_stream::StreamError::Refused(e) => e,
    }
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
