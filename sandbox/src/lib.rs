//! steward-sandbox: a stateful emulation of the admin APIs steward drives, on 127.0.0.1, with latency,
//! fault injection, a server-side rate limit and request counters (`GET /_sandbox/stats`, arrival times at `/_sandbox/timeline`).
//!
//! It shares no code with steward's backends: both sides are written from the vendor docs on their own,
//! so a misreading in one is caught by the other.

pub mod faults;
pub mod ghes;
pub mod tfe;
pub mod transactionlink;
pub mod travis;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use faults::{Fault, Faults};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use ghes::{ADMIN_TOKEN, USER_TOKEN};

/// Tokens and role ids of the TransactionLink emulation.
pub mod transactionlink_tokens {
    pub use crate::transactionlink::{ADMIN_TOKEN, NO_MFA_TOKEN, READ_ONLY_TOKEN, ROLE_ADMIN, ROLE_MEMBER, ROLE_OWNER};
}

/// Profile settings a kind's emulation needs besides its URL and tokens, as config keys and TOML values.
pub fn profile_settings(kind: &str) -> Vec<(&'static str, String)> {
    match kind {
        "travis" => vec![("org_id", format!("\"{}\"", travis::ORG_ID))],
        _ => Vec::new(),
    }
}

/// Tokens for single permissions a kind's profile needs besides its main one.
pub fn extra_tokens(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "travis" => vec![
            ("activity", travis::ACTIVITY_TOKEN),
            ("suspend", travis::SUSPEND_TOKEN),
            ("internal", travis::INTERNAL_TOKEN),
        ],
        _ => Vec::new(),
    }
}

/// The organization and tokens of the Travis CI Enterprise emulation.
pub mod travis_tokens {
    pub use crate::travis::{ACTIVITY_TOKEN, INTERNAL_TOKEN, ORG_ID, SUSPEND_TOKEN};
}

/// Tokens of the Terraform Enterprise emulation (a site admin, and an ordinary user).
pub mod tfe_tokens {
    pub use crate::tfe::{ADMIN_TOKEN, USER_TOKEN};
}

#[derive(Debug)]
pub struct Options {
    /// 0 picks a free port.
    pub port: u16,
    pub users: usize,
    pub latency: Duration,
    /// Server-side limit in requests per second; above it the answer is 429.
    pub rate_limit: Option<f64>,
    pub faults: Faults,
    /// A JSON array of users (steward's `list_users` JSON) to start from instead of demo users.
    pub seed: Option<PathBuf>,
    /// People with accounts under different names on several services, added after the demo users.
    pub people: Vec<Person>,
    /// What an earlier sandbox left (`Running::saved`): a rehearsal spanning processes starts where it stopped.
    pub saved: Option<serde_json::Value>,
    /// GHES: the acme/engineering team (and acme) hold the first this many demo users instead of twelve (a
    /// benchmark's large team).
    pub engineering: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            users: 100,
            latency: Duration::ZERO,
            rate_limit: None,
            faults: Faults::none(),
            seed: None,
            people: Vec::new(),
            saved: None,
            engineering: None,
        }
    }
}

/// One person's accounts, as an enterprise's services hold them: a GHES login and email, a Terraform user name
/// with the same email, a TransactionLink account by email, and a Travis member signed in with the GHES login
/// (its VCS id the GHES user's id). `None`: no account there.
#[derive(Clone, Debug, Default)]
pub struct Person {
    pub ghes: Option<String>,
    /// The email GHES and Terraform record (None: they record none).
    pub email: Option<String>,
    pub tfe: Option<String>,
    /// The TransactionLink account's email (it signs people in by email).
    pub tl: Option<String>,
    /// A Travis member, by the GHES login (needs `ghes`).
    pub travis: bool,
    /// Site admin on GHES and admin on TransactionLink.
    pub admin: bool,
}

/// Counters the tests read to prove what reached the server.
#[derive(Default)]
struct Stats {
    total: u64,
    rate_limited: u64,
    faults: u64,
    /// "METHOD /path" → count (the actual path, so duplicates per user are visible).
    requests: BTreeMap<String, u64>,
    /// Every API request as it arrived: number, milliseconds since start, "METHOD /path" (the first 100,000).
    arrivals: Vec<(u64, u64, String)>,
    /// The faults served: request number, milliseconds since start, fault name.
    faulted: Vec<(u64, u64, String)>,
}

/// How many arrivals the stats keep, so a long benchmark cannot grow them without bound.
const ARRIVALS_KEPT: usize = 100_000;

/// Token bucket holding at most one second of requests.
struct Limiter {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second).min(self.per_second.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Shared {
    started: std::time::Instant,
    stats: Mutex<Stats>,
    limiter: Option<Mutex<Limiter>>,
    latency: Duration,
    faults: Faults,
    ghes: ghes::Shared,
    tfe: tfe::Shared,
    transactionlink: transactionlink::Shared,
    travis: travis::Shared,
}

/// A running sandbox; dropping it stops the server.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    shared: Arc<Shared>,
}

impl Running {
    /// The state of every emulated service now, for `Options::saved` of a later start.
    pub fn saved(&self) -> Value {
        let s = &self.shared;
        json!({
            "github": s.ghes.lock().unwrap_or_else(|e| e.into_inner()).saved(),
            "terraform": s.tfe.lock().unwrap_or_else(|e| e.into_inner()).saved(),
            "transactionlink": s.transactionlink.lock().unwrap_or_else(|e| e.into_inner()).saved(),
            "travis": s.travis.lock().unwrap_or_else(|e| e.into_inner()).saved(),
        })
    }

    /// How many requests of `method` (`PUT`) the API routes have received.
    pub fn count_method(&self, method: &str) -> u64 {
        let st = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!("{method} ");
        st.requests.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, n)| n).sum()
    }

    pub fn github_url(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    pub fn terraform_url(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    pub fn travis_url(&self) -> String {
        format!("http://{}/travis", self.addr)
    }

    pub fn transactionlink_url(&self) -> String {
        format!("http://{}/transactionlink", self.addr)
    }

    /// Each emulated service's kind, base URL and admin token.
    pub fn services(&self) -> Vec<(&'static str, String, &'static str)> {
        vec![
            ("github", self.github_url(), ghes::ADMIN_TOKEN),
            ("terraform", self.terraform_url(), tfe::ADMIN_TOKEN),
            ("transactionlink", self.transactionlink_url(), transactionlink::ADMIN_TOKEN),
            // Travis tokens carry one permission each; `extra_tokens` has the others.
            ("travis", self.travis_url(), travis::SUSPEND_TOKEN),
        ]
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn read_seed(path: &PathBuf) -> std::io::Result<Vec<ghes::SeedUser>> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not a JSON array of users with a login: {e}", path.display()),
        )
    })
}

/// Binds 127.0.0.1 and serves in the background of the current tokio runtime.
pub async fn start(opts: Options) -> std::io::Result<Running> {
    let seed = opts.seed.as_ref().map(read_seed).transpose()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
    let addr = listener.local_addr()?;
    let mut state = ghes::Ghes::seeded(opts.users, seed);
    if let Some(n) = opts.engineering {
        state.grow_engineering(n);
    }
    state.base = format!("http://{addr}/api/v3");
    let (mut tfe, mut tl, mut travis) =
        (tfe::Tfe::seeded(opts.users), transactionlink::Tl::seeded(opts.users), travis::Travis::seeded(opts.users));
    for p in &opts.people {
        let ghes_id = p.ghes.as_deref().map(|login| state.add_person(login, p.email.as_deref(), p.admin));
        if let Some(username) = &p.tfe {
            tfe.add_person(username, p.email.as_deref().unwrap_or_default());
        }
        if let Some(email) = &p.tl {
            tl.add_person(email, p.admin);
        }
        if let (true, Some(login), Some(vcs_id)) = (p.travis, &p.ghes, ghes_id) {
            travis.add_person(login, vcs_id);
        }
    }
    state.rate_limit_per_hour = opts.rate_limit.map(|r| (r * 3600.0) as u64);
    if let Some(saved) = &opts.saved {
        let bad = |e: serde_json::Error| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the saved sandbox state does not read: {e}"))
        };
        let part = |k: &str| saved.get(k).cloned().unwrap_or(Value::Null);
        state.restore(&part("github")).map_err(bad)?;
        tfe.restore(&part("terraform")).map_err(bad)?;
        tl.restore(&part("transactionlink")).map_err(bad)?;
        travis.restore(&part("travis")).map_err(bad)?;
    }
    let shared = Arc::new(Shared {
        started: std::time::Instant::now(),
        stats: Mutex::new(Stats::default()),
        limiter: opts
            .rate_limit
            .map(|r| Mutex::new(Limiter { per_second: r, tokens: r.max(1.0), last: Instant::now() })),
        latency: opts.latency,
        faults: opts.faults,
        ghes: Arc::new(Mutex::new(state)),
        tfe: Arc::new(Mutex::new(tfe)),
        transactionlink: Arc::new(Mutex::new(tl)),
        travis: Arc::new(Mutex::new(travis)),
    });
    let api = Router::new()
        .nest("/api/v3", ghes::routes(shared.ghes.clone()))
        .nest("/api/v2", tfe::routes(shared.tfe.clone()))
        .nest("/transactionlink", transactionlink::routes(shared.transactionlink.clone()))
        .nest("/travis", travis::routes(shared.travis.clone()))
        .merge(ghes::root_routes(shared.ghes.clone()))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), conditions));
    let app = Router::new()
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/timeline", get(timeline))
        .route("/_sandbox/state", get(state_dump))
        .route("/_sandbox/github/seen/{login}", axum::routing::post(seen_now))
        .with_state(shared.clone())
        .merge(api);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Running { addr, shutdown: Some(tx), shared })
}

/// Latency, the rate limit, fault injection and counting: everything the API routes go through.
async fn conditions(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let key = format!("{} {}", req.method(), req.uri().path());
    let n = {
        let mut st = s.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.total += 1;
        let n = st.total;
        if st.arrivals.len() < ARRIVALS_KEPT {
            st.arrivals.push((n, s.started.elapsed().as_millis() as u64, key.clone()));
        }
        *st.requests.entry(key).or_default() += 1;
        n
    };
    // A real server finishes a request whose client went away; a spawned task does too (a dropped
    // connection would otherwise cancel the handler and undo what the count says arrived).
    let vendor = if req.uri().path().starts_with("/api/v2") { Vendor::Terraform } else { Vendor::Github };
    let task = tokio::spawn(async move { handle(s, vendor, n, req, next).await });
    task.await.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Whose conventions a refusal follows (error body and rate-limit headers).
#[derive(Clone, Copy)]
enum Vendor {
    Github,
    Terraform,
}

async fn handle(s: Arc<Shared>, vendor: Vendor, n: u64, req: Request, next: Next) -> Response {
    if !s.latency.is_zero() {
        // tokio's timer rounds up to whole milliseconds (20 ms becomes 21–22); a thread's sleep keeps the
        // latency the emulated server was asked for.
        let latency = s.latency;
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
    }
    if let Some(limiter) = &s.limiter {
        let admitted = limiter.lock().unwrap_or_else(|e| e.into_inner()).admit();
        if !admitted {
            s.stats.lock().unwrap_or_else(|e| e.into_inner()).rate_limited += 1;
            return too_many(vendor, 1, "API rate limit exceeded. Please wait and try again.");
        }
    }
    let fault = s.faults.draw(n);
    if let Some(f) = fault {
        let mut st = s.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.faults += 1;
        if st.faulted.len() < ARRIVALS_KEPT {
            st.faulted.push((n, s.started.elapsed().as_millis() as u64, f.name()));
        }
    }
    match fault {
        None => next.run(req).await,
        Some(Fault::TooManyRequests) => too_many(
            vendor,
            s.faults.retry_after_s,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        ),
        Some(Fault::TooManyRequestsUntilDate) => {
            let at = std::time::SystemTime::now() + Duration::from_secs(s.faults.retry_after_s);
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(json!({"message": "API rate limit exceeded."})))
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        // GitHub's secondary limit as its docs show it: a 403 that names the limit and gives no wait.
        Some(Fault::SecondaryLimit) => (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"})),
        )
            .into_response(),
        Some(Fault::Exhausted) => {
            let mut r = next.run(req).await;
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() + s.faults.retry_after_s)
                .unwrap_or(0);
            for (name, value) in [("x-ratelimit-remaining", "0".to_string()), ("x-ratelimit-reset", reset.to_string())] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            r
        }
        Some(Fault::ResetBeforeApply) => broken_answer(),
        Some(Fault::ServerError(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(json!({"message": "Server Error"}))).into_response()
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            next.run(req).await
        }
        Some(Fault::Reset) => {
            // Apply the request, then break the connection mid-answer: the client cannot know it happened.
            let _ = next.run(req).await;
            broken_answer()
        }
        Some(Fault::ApplyThen500) => {
            let _ = next.run(req).await;
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"message": "Server Error"}))).into_response()
        }
    }
}

/// An answer whose connection breaks after the status line: the client cannot know what happened.
fn broken_answer() -> Response {
    let broken = futures::stream::once(async { Err::<axum::body::Bytes, _>(std::io::Error::other("sandbox reset")) });
    Response::builder().status(200).header("content-length", "100").body(Body::from_stream(broken)).unwrap_or_default()
}

fn too_many(vendor: Vendor, retry_after_s: u64, message: &str) -> Response {
    match vendor {
        Vendor::Github => {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() + retry_after_s)
                .unwrap_or(0);
            let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"});
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            for (name, value) in [
                ("retry-after", retry_after_s.to_string()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            r
        }
        // TFE: a JSON:API error with a numeric status, and X-RateLimit-Reset in seconds to wait.
        Vendor::Terraform => {
            let body = json!({"errors": [{"detail": "You have exceeded the API's rate limit of 30 requests per second.", "status": 429, "title": "Too many requests"}]});
            let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("{retry_after_s}.000")) {
                r.headers_mut().insert("x-ratelimit-reset", v);
            }
            r
        }
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let st = s.stats.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({"total": st.total, "rate_limited": st.rate_limited, "faults": st.faults, "requests": st.requests}))
}

/// When each request arrived and which faults were served: kept apart from the counters, which tests read often.
async fn timeline(State(s): State<Arc<Shared>>) -> Json<Value> {
    let st = s.stats.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({"arrivals": st.arrivals, "faulted": st.faulted}))
}

/// `POST /_sandbox/github/seen/{login}`: the GHES user was active just now (what a person signing in does), so
/// tests can show a plan's target becoming active before the plan is applied.
async fn seen_now(State(s): State<Arc<Shared>>, axum::extract::Path(login): axum::extract::Path<String>) -> StatusCode {
    match s.ghes.lock().unwrap_or_else(|e| e.into_inner()).mark_active(&login) {
        true => StatusCode::NO_CONTENT,
        false => StatusCode::NOT_FOUND,
    }
}

async fn state_dump(State(s): State<Arc<Shared>>) -> Json<Value> {
    let github = s.ghes.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
    let terraform = s.tfe.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
    let transactionlink = s.transactionlink.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
    let travis = s.travis.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
    Json(json!({
        "github": {"users": github},
        "terraform": {"users": terraform},
        "transactionlink": {"users": transactionlink},
        "travis": {"users": travis},
    }))
}

/// RFC 3339 UTC for a Unix time (the emulations' timestamps).
pub(crate) fn ghes_time(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A seed's time: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (then `Z` or `+00:00`), in UTC; as Unix seconds.
pub(crate) fn parse_time(text: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let days = days_from_civil(i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    let secs = match text.len() > 10 {
        true => num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?,
        false => 0,
    };
    u64::try_from(days * 86_400 + i64::from(secs)).ok()
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A calendar date to days since 1970-01-01 (the inverse of `civil_from_days`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
