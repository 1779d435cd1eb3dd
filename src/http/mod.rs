//! The HTTP core every backend shares: auth header, TLS, timeouts, User-Agent, retries, rate budget,
//! status → `ApiError`, and Link pagination. It knows no particular service.

pub mod auth;
pub mod budget;
pub mod error;
pub mod origin;
pub mod pagination;
pub mod retry;

use crate::error::ErrorKind;
use crate::redact::{self, ExposeSecret, SecretString};
use budget::RateBudget;
use error::ApiError;
pub use pagination::{Hold, Limits, Paging};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use retry::{Attempt, Decision, RetryPolicy};
use serde_json::value::RawValue;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const USER_AGENT: &str = concat!("steward/", env!("CARGO_PKG_VERSION"));

tokio::task_local! {
    /// Set once a request that is not a read has left within `watch_changes`.
    static CHANGE_SENT: Arc<std::sync::atomic::AtomicBool>;
}

/// Tells a `watch_changes` around this request, if any, that a request other than a read is leaving.
fn note_sent(req: &Request) {
    if !req.may_repeat() {
        let _ = CHANGE_SENT.try_with(|sent| sent.store(true, std::sync::atomic::Ordering::SeqCst));
    }
}

/// Runs `work`; `sent` says afterwards (even when `work` was dropped before its end, as a stopped run drops it)
/// whether any request other than a read left while it ran. A change still waiting for its turn had not.
pub async fn watch_changes<F: std::future::Future>(sent: Arc<std::sync::atomic::AtomicBool>, work: F) -> F::Output {
    CHANGE_SENT.scope(sent, work).await
}

/// Everything needed to build a client for one profile.
#[derive(Clone)]
pub struct ClientSettings {
    pub base_url: url::Url,
    /// Where the `Authorization` header comes from (none: requests go without one).
    pub auth: Option<Arc<dyn auth::Credentials>>,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub rate_limit: Option<f64>,
    /// Requests in flight at once to this service (the profile's `concurrency`).
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Extra headers every request carries (`Accept`, API version headers).
    pub default_headers: Vec<(&'static str, &'static str)>,
    /// The media type of request bodies (`application/json`, JSON:API's `application/vnd.api+json`).
    pub content_type: &'static str,
    pub on_pause: Option<PauseObserver>,
    pub limits: Limits,
    /// The service's own way of saying a refusal is its rate limit (see `rate_limit_signal`).
    pub rate_limit_refusal: RateLimitRefusalFn,
    /// Turns shared with the team's other processes on this service instance (team mode), if any.
    pub shared_turns: Option<Arc<dyn budget::SharedTurns>>,
    /// The origin the service writes in its links when the profile reaches it by another name (`link_origin`).
    pub link_origin: Option<url::Url>,
}

/// Does this refusal (status, the service's error message) mean the service's rate limit was hit?
pub type RateLimitRefusalFn = fn(u16, Option<&str>) -> bool;

/// One request, described before it is sent so it can be retried.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// A path under the base URL (`users/octocat`) or an absolute URL from a Link header.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Headers that carry secrets for this request only (a session cookie); marked sensitive, never logged.
    pub secret_headers: Vec<(&'static str, SecretString)>,
    /// Headers for this request only that hold no secret (`If-Match`).
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            secret_headers: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// The same request with query parameter `key` set to `value` (replacing any earlier value).
    pub fn with_query(mut self, key: &str, value: String) -> Self {
        self.query.retain(|(k, _)| k != key);
        self.query.push((key.to_string(), value));
        self
    }

    pub fn secret_header(mut self, name: &'static str, value: SecretString) -> Self {
        redact::remember(value.expose_secret());
        self.secret_headers.push((name, value));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Only a read is sent again when its answer was lost. A change (even an idempotent PUT or DELETE) whose
    /// answer was lost may have been applied: the caller reads the target's state before anything is sent
    /// again, so the service's own audit log never shows one change twice.
    pub fn may_repeat(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body, or `Null` when there was none (204) or it was not JSON.
    pub body: Value,
    /// How many bytes the body was on the wire (what a listing's byte budget counts).
    pub size: usize,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A successful answer whose body is still the bytes that came.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Null` when empty): a success must be JSON, or we would read it as "nothing".
    pub fn json(self, req: &Request) -> Result<Response, ApiError> {
        let body = match no_body(&self.bytes) {
            true => Value::Null,
            false => serde_json::from_slice::<Value>(&self.bytes)
                .map_err(|e| not_json(req, self.status, &self.headers, self.bytes.len(), &e))?,
        };
        Ok(Response { status: self.status, headers: self.headers, body, size: self.bytes.len() })
    }
}

/// A successful answer's body: read whole, or still on the wire (`HttpClient::open`).
enum Body {
    Read(Vec<u8>),
    Open(reqwest::Response),
}

/// A successful answer whose body is read a chunk at a time, refused once it passes the profile's
/// `max_listing_mb`.
pub struct OpenAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    resp: Option<reqwest::Response>,
    read: usize,
    cap: usize,
    /// `GET path`, for an error that names the request.
    what: String,
}

impl OpenAnswer {
    /// The body's next chunk as it arrives; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ApiError> {
        let Some(resp) = self.resp.as_mut() else { return Ok(None) };
        let Some(chunk) = resp.chunk().await.map_err(|e| ApiError::transport(&e))? else { return Ok(None) };
        self.read += chunk.len();
        if self.read > self.cap {
            return Err(body_too_big(&self.what, self.cap, "max_listing_mb"));
        }
        Ok(Some(chunk))
    }
}

/// A body past the profile's bound (`key`: `max_response_mb`, or `max_listing_mb` for one read as it comes).
fn body_too_big(what: &str, cap: usize, key: &str) -> ApiError {
    ApiError::invalid(format!("the answer to {what} is larger than {} MB; steward stopped reading it", cap >> 20))
        .with_hint(format!("raise {key} in the profile if this service really sends such answers"))
}

/// Reads the service's own error text out of an error body; each backend knows its envelope.
pub type ErrorMessageFn = fn(&Value) -> Option<String>;

/// Told when the service makes every request wait (how long, and why), so the pause can be put on record.
pub type PauseObserver = Arc<dyn Fn(Duration, &str) + Send + Sync>;

/// Cheap to clone (shared connection pool, budget and credentials): a page fetched ahead runs as its own task.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    base_url: url::Url,
    auth: Option<Arc<dyn auth::Credentials>>,
    retry: RetryPolicy,
    budget: Arc<RateBudget>,
    default_headers: HeaderMap,
    content_type: &'static str,
    error_message: ErrorMessageFn,
    rate_limit_refusal: RateLimitRefusalFn,
    on_pause: Option<PauseObserver>,
    limits: Limits,
    link_origin: Option<url::Url>,
}

impl HttpClient {
    pub fn new(settings: ClientSettings, error_message: ErrorMessageFn) -> Result<Self, ApiError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(64)
            // Never follow a redirect with credentials attached: it could send the token to another host.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ApiError::invalid(format!("cannot read ca_file {}: {e}", path.display()))
                    .with_hint("point ca_file at a PEM file holding your CA certificate")
            })?;
            // A bundle may hold several certificates (root and intermediates); a file with none is a mistake.
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).ok().filter(|c| !c.is_empty()).ok_or_else(|| {
                    ApiError::invalid(format!("ca_file {} holds no PEM certificate", path.display()))
                        .with_hint("it must contain -----BEGIN CERTIFICATE----- blocks")
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if settings.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let inner = builder.build().map_err(|e| ApiError::invalid(format!("cannot build the HTTP client: {e}")))?;
        let mut default_headers = HeaderMap::new();
        for (name, value) in settings.default_headers {
            default_headers.insert(name, HeaderValue::from_static(value));
        }
        // Joining "users" onto ".../api/v3" would drop "v3" without a trailing slash.
        let mut base_url = settings.base_url;
        if !base_url.path().ends_with('/') {
            base_url.set_path(&format!("{}/", base_url.path()));
        }
        Ok(HttpClient {
            inner,
            base_url,
            auth: settings.auth,
            retry: settings.retry,
            budget: Arc::new(match settings.shared_turns {
                Some(turns) => RateBudget::new(settings.rate_limit, settings.concurrency).shared(turns),
                None => RateBudget::new(settings.rate_limit, settings.concurrency),
            }),
            default_headers,
            content_type: settings.content_type,
            error_message,
            rate_limit_refusal: settings.rate_limit_refusal,
            on_pause: settings.on_pause,
            limits: settings.limits,
            link_origin: settings.link_origin,
        })
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }

    /// How long a wait of `wait` really sleeps (the retry policy's time scale: tests shrink it).
    pub fn real(&self, wait: Duration) -> Duration {
        self.retry.real(wait)
    }

    /// Every request to this service waits `wait`; the observer hears why.
    async fn pause(&self, wait: Duration, why: &str) {
        tracing::info!(wait_ms = wait.as_millis() as u64, "{why}");
        self.budget.pause_all(self.retry.real(wait)).await;
        if let Some(observe) = &self.on_pause {
            observe(wait, why);
        }
    }

    /// Where `path` leads, held to the profile's origin (see `origin`): the token goes nowhere else.
    fn url_for(&self, path: &str) -> Result<url::Url, ApiError> {
        origin::resolve_aliased(&self.base_url, self.link_origin.as_ref(), path).map_err(|e| {
            ApiError::invalid(e.to_string()).with_hint(
                "a server's next-page link or an api() path named another host, scheme or port; nothing was sent",
            )
        })
    }

    /// The profile's credentials for `req`, unless it carries its own (a token with another permission).
    fn credentials_for(&self, req: &Request) -> Option<&Arc<dyn auth::Credentials>> {
        let own_auth = req.secret_headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        self.auth.as_ref().filter(|_| !own_auth)
    }

    fn build(&self, req: &Request, authorization: Option<&SecretString>) -> Result<reqwest::RequestBuilder, ApiError> {
        let url = self.url_for(&req.path)?;
        let mut builder = self.inner.request(req.method.clone(), url).headers(self.default_headers.clone());
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(header) = authorization {
            let mut value = HeaderValue::from_str(header.expose_secret())
                .map_err(|_| ApiError::invalid("the token holds characters an HTTP header cannot carry"))?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        for (name, secret) in &req.secret_headers {
            let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
                ApiError::invalid(format!("the {name} value holds characters an HTTP header cannot carry"))
            })?;
            value.set_sensitive(true);
            builder = builder.header(*name, value);
        }
        for (name, value) in &req.headers {
            let value = HeaderValue::from_str(value).map_err(|_| {
                ApiError::invalid(format!("the {name} value holds characters an HTTP header cannot carry"))
            })?;
            builder = builder.header(*name, value);
        }
        builder = match &req.body {
            Some(body) => builder.header(CONTENT_TYPE, self.content_type).body(body.to_string()),
            // GitHub asks for an explicit zero length on body-less PUTs.
            None if matches!(req.method, Method::PUT | Method::POST | Method::PATCH) => {
                builder.header(CONTENT_LENGTH, "0")
            }
            None => builder,
        };
        Ok(builder)
    }

    /// Sends `req`, retrying what the policy calls transient; a non-2xx answer becomes an `ApiError`.
    pub async fn send(&self, req: &Request) -> Result<Response, ApiError> {
        self.exchange(req).await?.json(req)
    }

    /// `send`, with a successful answer's body left as the bytes that came (a listing splits them into records
    /// without building a tree of each).
    pub async fn exchange(&self, req: &Request) -> Result<Answer, ApiError> {
        let (status, headers, body) = self.exchange_with(req, false).await?;
        let bytes = match body {
            Body::Read(bytes) => bytes,
            Body::Open(resp) => self.read_body(resp, req).await?,
        };
        Ok(Answer { status, headers, bytes })
    }

    /// `exchange`, with a successful answer's body left on the wire, to be read a chunk at a time (within the
    /// profile's `max_listing_mb`): a report of a million rows is parsed as it comes, never held whole. A
    /// body that breaks off is an error for the caller (it has read part of it), not retried here.
    pub async fn open(&self, req: &Request) -> Result<OpenAnswer, ApiError> {
        let (status, headers, body) = self.exchange_with(req, true).await?;
        // Read as it comes and never held, a body is bounded as a listing is (`max_listing_mb`), not as one
        // answer held whole (`max_response_mb`): an all-users report of a large instance is a listing.
        let cap = self.limits.max_listing_bytes;
        let what = format!("{} {}", req.method, req.path);
        match body {
            Body::Open(resp) if resp.content_length().is_some_and(|n| n > cap as u64) => {
                Err(body_too_big(&what, cap, "max_listing_mb"))
            }
            Body::Open(resp) => Ok(OpenAnswer { status, headers, resp: Some(resp), read: 0, cap, what }),
            Body::Read(_) => Ok(OpenAnswer { status, headers, resp: None, read: 0, cap, what }),
        }
    }

    /// The loop behind `exchange` and `open`: a success's body is left open when `open`, or read whole.
    async fn exchange_with(&self, req: &Request, open: bool) -> Result<(u16, HeaderMap, Body), ApiError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            self.refuse_if_spent()?;
            let credentials = self.credentials_for(req);
            let authorization = match credentials {
                Some(c) => Some(c.header().await?),
                None => None,
            };
            let permit = self.budget.acquire().await;
            let started = std::time::Instant::now();
            let request = self.build(req, authorization.as_ref())?;
            note_sent(req);
            let result = request.send().await;
            let (outcome, error) = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    if (200..300).contains(&status) {
                        let body = match open {
                            true => Body::Open(resp),
                            false => Body::Read(self.read_body(resp, req).await?),
                        };
                        tracing::debug!(method = %req.method, path = %req.path, status, ms = started.elapsed().as_millis() as u64, "http");
                        self.succeeded(&headers).await;
                        return Ok((status, headers, body));
                    }
                    let bytes = self.read_body(resp, req).await?;
                    tracing::debug!(method = %req.method, path = %req.path, status, ms = started.elapsed().as_millis() as u64, "http");
                    // An error page need not be JSON: what is not reads as nothing.
                    let body = match no_body(&bytes) {
                        true => Value::Null,
                        false => serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
                    };
                    // An expiring token the service no longer takes is renewed once, and the request sent again
                    // (it was refused, so nothing happened).
                    if let (401, false, Some(c), Some(sent)) = (status, renewed, credentials, authorization.as_ref()) {
                        if c.rejected(sent).await {
                            renewed = true;
                            drop(permit);
                            continue;
                        }
                    }
                    let message = (self.error_message)(&body);
                    let (rate_limited, rate_wait) =
                        rate_limit_signal(status, &headers, message.as_deref(), self.rate_limit_refusal);
                    self.budget.answered(rate_limited, rate_wait);
                    let mut err = ApiError::from_response(status, message);
                    err.retry_after = rate_wait;
                    (Attempt::Answered { status, rate_limited, rate_wait }, err)
                }
                Err(e) => {
                    tracing::debug!(method = %req.method, path = %req.path, error = %redact::redact(&e.to_string()), "http transport error");
                    (Attempt::NoAnswer { before_send: e.is_connect() }, ApiError::transport(&e))
                }
            };
            self.slow_down_if_limited(&outcome);
            let decision = self.retry.decide(attempt, &outcome, req.may_repeat(), rand::random::<f64>());
            // The pause is set before this slot is given up: a worker waiting for it would otherwise send inside
            // the pause the server just asked for.
            if let Decision::PauseAll(wait) = decision {
                self.pause(wait, &format!("rate limited ({}); every request to this service waits", error.message))
                    .await;
            }
            drop(permit);
            match decision {
                Decision::GiveUp => return Err(error),
                Decision::RetryAfter(wait) => {
                    tracing::info!(method = %req.method, path = %req.path, attempt, wait_ms = wait.as_millis() as u64, "retrying: {error}");
                    tokio::time::sleep(self.retry.real(wait)).await;
                }
                Decision::PauseAll(_) => {}
            }
        }
    }

    /// A success told to the budget; a spent budget (X-RateLimit-Remaining: 0) stops every request until the
    /// server's reset time.
    async fn succeeded(&self, headers: &HeaderMap) {
        self.budget.answered(false, None);
        if let Some(wait) = exhausted_until(headers) {
            self.pause(wait, "the rate-limit budget is spent (X-RateLimit-Remaining: 0); waiting for its reset").await;
        }
    }

    /// A spent budget whose reset is far off (X-RateLimit-Remaining: 0) is reported, not slept through.
    fn refuse_if_spent(&self) -> Result<(), ApiError> {
        let paused = self.budget.paused_for();
        if paused <= self.retry.max_rate_limit_wait {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorKind::RateLimited,
            format!("the service's rate limit is spent for another {} s", paused.as_secs()),
        )
        .with_hint("run again after the service's rate-limit reset (steward does not wait that long)"))
    }

    /// A limit hit with no stated wait (GitHub's secondary limits): fewer requests at once from now on.
    fn slow_down_if_limited(&self, outcome: &Attempt) {
        if let Attempt::Answered { rate_limited: true, rate_wait: None, .. } = outcome {
            self.budget.halve();
            tracing::warn!(in_flight = self.budget.width(), "rate limited without a stated wait; halving concurrency");
        }
    }

    /// A response body, refused once it passes the profile's `max_response_mb` (checked as it arrives, so an
    /// endless body costs at most that much).
    async fn read_body(&self, mut resp: reqwest::Response, req: &Request) -> Result<Vec<u8>, ApiError> {
        let cap = self.limits.max_body_bytes;
        let too_big = || body_too_big(&format!("{} {}", req.method, req.path), cap, "max_response_mb");
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_big());
        }
        // Room for what the server says it sends (within the cap): a large page is not copied as it grows.
        let mut bytes = Vec::with_capacity(resp.content_length().map_or(0, |n| n as usize).min(cap));
        while let Some(chunk) = resp.chunk().await.map_err(|e| ApiError::transport(&e))? {
            if bytes.len() + chunk.len() > cap {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// GETs `first` and every page after it as `paging` finds them, concatenating the items, within the
    /// profile's limits: a server that keeps naming pages, repeats one or sends too many items gets an error.
    pub async fn list(&self, first: Request, paging: Paging) -> Result<Vec<Value>, ApiError> {
        let mut pages = self.pages(first, paging, Hold::Whole);
        let mut items = Vec::new();
        while let Some(page) = pages.next_page().await? {
            items.extend(page);
        }
        Ok(items)
    }

    /// The same walk as `list`, a page at a time: what streams read lazily. `hold` says whether the reader
    /// keeps every item (then bounded as `list` is) or one page at a time.
    pub fn pages(&self, first: Request, paging: Paging, hold: Hold) -> Pages<'_> {
        Pages {
            http: self,
            paging,
            walk: pagination::Walk::new(self.limits, hold),
            next: Some(first),
            first: true,
            ahead: None,
            prefetch: None,
        }
    }
}

/// How many pages of a listing whose length is known may be in flight at once (within the profile's
/// concurrency): they are held until their turn, so this bounds memory too.
const PAGES_AHEAD: usize = 8;

/// One listing walked page by page under the profile's limits (see `HttpClient::list`). Where the first page
/// says how long the listing is (page numbers or offsets with a total), the rest are asked for several at once
/// and handed on in order; otherwise each page names the next.
pub struct Pages<'a> {
    http: &'a HttpClient,
    paging: Paging,
    walk: pagination::Walk,
    next: Option<Request>,
    first: bool,
    ahead: Option<Ahead<'a>>,
    /// The next page of a walk where each page names the next, asked for as soon as its address was known, so
    /// the server prepares it while this one is read.
    prefetch: Option<Prefetch>,
}

/// A page asked for ahead of the reader: its request, its address, and the task fetching it.
struct Prefetch {
    req: Request,
    url: url::Url,
    answer: tokio::task::JoinHandle<Result<Answer, ApiError>>,
}

impl Drop for Pages<'_> {
    /// A walk left early (a `break`, an interrupt, an error) does not leave its next page being fetched.
    fn drop(&mut self) {
        self.drop_ahead();
    }
}

/// The planned pages of a listing: those still to ask for, and those asked for, in order.
struct Ahead<'a> {
    template: Request,
    rest: pagination::Rest,
    in_flight: futures::stream::FuturesOrdered<futures::future::BoxFuture<'a, Fetched>>,
    /// The addresses of the pages in flight, in order: dropped unread, they are not pages fetched.
    addresses: std::collections::VecDeque<String>,
}

type Fetched = (Request, url::Url, Result<Response, ApiError>);

impl<'a> Pages<'a> {
    /// The next page's items, or `None` once the listing has ended.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>, ApiError> {
        if self.ahead.is_some() {
            return self.next_planned().await;
        }
        let Some((req, url, answer)) = self.next_answer().await? else { return Ok(None) };
        let (items, next) = self.take(&req, &url, answer.json(&req)?)?;
        if let Some(next) = next {
            self.ask_ahead(next).await;
        }
        Ok(Some(items))
    }

    /// The next page's records as the JSON text each came in, or `None` once the listing has ended: a reader
    /// that looks at a few fields of each record need not build a tree of all of them. A page that is a JSON
    /// array (pages that name the next in a `Link` header) is split as it is; other pages are read as
    /// `next_page` reads them.
    pub async fn next_texts(&mut self) -> Result<Option<Vec<Box<RawValue>>>, ApiError> {
        if !matches!(self.paging, Paging::LinkHeader) {
            let Some(items) = self.next_page().await? else { return Ok(None) };
            let texts = items.iter().map(serde_json::value::to_raw_value).collect::<Result<Vec<_>, _>>();
            return texts.map(Some).map_err(|e| ApiError::invalid(format!("a listed record as JSON text: {e}")));
        }
        let Some((req, url, answer)) = self.next_answer().await? else { return Ok(None) };
        self.walk.weigh(answer.bytes.len()).map_err(|e| ApiError::invalid(e.to_string()).with_hint(LIMIT_HINT))?;
        // The next page is asked for before this one is read, so the server prepares it meanwhile.
        if let Some(link) = answer.header("link").and_then(pagination::next_link) {
            let next = follow(&url, &link)?;
            self.ask_ahead(next).await;
        }
        let items = records(&req, &answer)?;
        self.walk.count(items.len()).map_err(|e| ApiError::invalid(e.to_string()).with_hint(LIMIT_HINT))?;
        // An empty page ends a listing whatever it says next: no service pages past its last item.
        if items.is_empty() {
            self.drop_ahead();
        }
        Ok(Some(items))
    }

    /// Ends the walk here: the page asked for ahead is not fetched (nor counted as fetched).
    fn drop_ahead(&mut self) {
        if let Some(p) = self.prefetch.take() {
            p.answer.abort();
            self.walk.forget(p.url.as_str());
        }
        self.next = None;
    }

    /// The answer for the page asked for ahead, else for the page named next (`None`: the walk has ended).
    async fn next_answer(&mut self) -> Result<Option<(Request, url::Url, Answer)>, ApiError> {
        if let Some(Prefetch { req, url, answer }) = self.prefetch.take() {
            let answer = answer.await.map_err(|e| {
                ApiError::invalid(format!("fetching the next page of {} stopped: {e}", shorten(&req.path)))
            })??;
            return Ok(Some((req, url, answer)));
        }
        let Some(req) = self.next.take() else { return Ok(None) };
        let url = self.visit(&req)?;
        let answer = self.http.exchange(&req).await?;
        Ok(Some((req, url, answer)))
    }

    /// Asks for the page `next` names now, in its own task, so it is on its way while the reader works on this
    /// one. A page the walk's guards refuse (or no runtime to run the task) is left for the next call, which
    /// sends it itself or reports why not.
    async fn ask_ahead(&mut self, next: Request) {
        if self.spawn_ahead(next) {
            // Let the new task send its request before this one goes on reading: on a runtime with one worker it
            // would otherwise wait until the page is read (a million-user walk: a fifth more time).
            tokio::task::yield_now().await;
        }
    }

    fn spawn_ahead(&mut self, next: Request) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.next = Some(next);
            return false;
        };
        // Refused now, it is refused again (the same way) when the next call visits it.
        let Ok(url) = self.visit(&next) else {
            self.next = Some(next);
            return false;
        };
        let (http, req) = (self.http.clone(), next.clone());
        let answer = runtime.spawn(async move { http.exchange(&req).await });
        self.prefetch = Some(Prefetch { req: next, url, answer });
        true
    }

    async fn next_planned(&mut self) -> Result<Option<Vec<Value>>, ApiError> {
        use futures::StreamExt;
        self.fill()?;
        let Some(ahead) = self.ahead.as_mut() else { return Ok(None) };
        let Some((req, url, resp)) = ahead.in_flight.next().await else {
            self.ahead = None;
            return Ok(None);
        };
        ahead.addresses.pop_front();
        let (items, next) = self.take(&req, &url, resp?)?;
        let more = self.ahead.as_ref().is_some_and(|a| !a.in_flight.is_empty() || a.rest.from < a.rest.end);
        let full = self.ahead.as_ref().and_then(|a| a.rest.full);
        if items.is_empty() {
            // The listing shrank since its first page: it ends here.
            self.ahead = None;
        } else if more && full.is_some_and(|n| items.len() < n) {
            // A short page in the middle would leave a gap before the next planned offset: follow the server
            // from here instead. What was asked for beyond it is dropped unread, so the server may name those
            // pages again.
            if let Some(ahead) = self.ahead.take() {
                for address in ahead.addresses {
                    self.walk.forget(&address);
                }
            }
            self.next = next;
        }
        Ok(Some(items))
    }

    /// Asks for planned pages until `PAGES_AHEAD` (or the profile's concurrency) are in flight.
    fn fill(&mut self) -> Result<(), ApiError> {
        let width = self.http.budget.width().clamp(1, PAGES_AHEAD);
        loop {
            let Some(ahead) = self.ahead.as_mut() else { return Ok(()) };
            if ahead.in_flight.len() >= width {
                return Ok(());
            }
            let Some(value) = ahead.rest.take() else { return Ok(()) };
            let req = ahead.template.clone().with_query(ahead.rest.param, value);
            let url = self.visit(&req)?;
            let http = self.http;
            if let Some(ahead) = self.ahead.as_mut() {
                ahead.addresses.push_back(url.to_string());
                ahead.in_flight.push_back(Box::pin(async move {
                    let resp = http.send(&req).await;
                    (req, url, resp)
                }));
            }
        }
    }

    /// The page's URL, counted against `max_pages` and refused if fetched before.
    fn visit(&mut self, req: &Request) -> Result<url::Url, ApiError> {
        let mut url = self.http.url_for(&req.path)?;
        url.query_pairs_mut().extend_pairs(&req.query);
        self.walk.visit(url.as_str()).map_err(|e| ApiError::invalid(e.to_string()).with_hint(LIMIT_HINT))?;
        Ok(url)
    }

    /// One page's items, and the request for the page it names next (planning the rest after the first).
    fn take(
        &mut self,
        req: &Request,
        url: &url::Url,
        resp: Response,
    ) -> Result<(Vec<Value>, Option<Request>), ApiError> {
        self.walk.weigh(resp.size).map_err(|e| ApiError::invalid(e.to_string()).with_hint(LIMIT_HINT))?;
        let link = resp.header("link").map(str::to_string);
        let param = self.paging.param();
        let current = param.and_then(|p| req.query.iter().find(|(k, _)| k == p)).map(|(_, v)| v.as_str());
        let planned = match std::mem::take(&mut self.first) {
            true => {
                let items = self.paging.items_in(&resp.body);
                self.paging.rest(current, &resp.body, items)
            }
            false => None,
        };
        let page = self
            .paging
            .read(link.as_deref(), current, resp.body)
            .map_err(|m| ApiError::invalid(format!("{} {}: {m}", req.method, req.path)).with_status(resp.status))?;
        self.walk.count(page.items.len()).map_err(|e| ApiError::invalid(e.to_string()).with_hint(LIMIT_HINT))?;
        // An empty page ends a listing whatever it says next: no service pages past its last item.
        let empty = page.items.is_empty();
        if let (Some(rest), false) = (planned, empty) {
            let in_flight = futures::stream::FuturesOrdered::new();
            let addresses = std::collections::VecDeque::new();
            self.ahead = Some(Ahead { template: req.clone(), rest, in_flight, addresses });
            return Ok((page.items, None));
        }
        let next = match page.next.filter(|_| !empty) {
            Some(pagination::Next::Url(link)) => Some(follow(url, &link)?),
            Some(pagination::Next::Param(key, value)) => Some(req.clone().with_query(key, value)),
            None => None,
        };
        Ok((page.items, next))
    }
}

/// The request for the page a `Link` header names. A link is relative to the page that named it (RFC 8288);
/// where it leads is judged when sent.
fn follow(page: &url::Url, link: &str) -> Result<Request, ApiError> {
    let target = page
        .join(link)
        .map_err(|e| ApiError::invalid(format!("the next-page link {link:?} is not a URL steward can read: {e}")))?;
    Ok(Request::new(Method::GET, target.to_string()))
}

/// A body of nothing but whitespace (a 204, an empty page): read as no value at all, never as an error.
fn no_body(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// A page that is a JSON array, split into its records' texts (an empty body: no records).
fn records(req: &Request, answer: &Answer) -> Result<Vec<Box<RawValue>>, ApiError> {
    if no_body(&answer.bytes) {
        return Ok(Vec::new());
    }
    serde_json::from_slice::<Vec<Box<RawValue>>>(&answer.bytes).map_err(|e| {
        let what = match serde_json::from_slice::<Value>(&answer.bytes) {
            Ok(other) => format!("expected a JSON array, got {}", json_type(&other)),
            Err(_) => return not_json(req, answer.status, &answer.headers, answer.bytes.len(), &e),
        };
        ApiError::invalid(format!("{} {}: {what}", req.method, req.path)).with_status(answer.status)
    })
}

const LIMIT_HINT: &str = "if the service really holds this much, raise max_pages / max_items / max_listing_mb in the \
     profile; otherwise report the server";

/// A 2xx answer whose body is not JSON: a proxy's login page, a truncated or garbled answer.
fn not_json(req: &Request, status: u16, headers: &HeaderMap, len: usize, e: &serde_json::Error) -> ApiError {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("no content type");
    ApiError::invalid(format!(
        "HTTP {status} to {} {} carried {len} bytes of {content_type} that are not the JSON expected ({e})",
        req.method, req.path
    ))
    .with_status(status)
    .with_hint("a proxy or login page may stand between steward and the service; check the profile's url")
}

/// `X-RateLimit-Remaining: 0` on a successful answer: how long until `X-RateLimit-Reset`.
fn exhausted_until(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    (get("x-ratelimit-remaining")?.trim() == "0")
        .then(|| get("x-ratelimit-reset").and_then(|v| retry::parse_rate_limit_reset(v, SystemTime::now())))
        .flatten()
}

/// Is this answer a rate limit, and how long did the server ask us to wait? 429, or a 403 with an exhausted
/// budget or a Retry-After, is one on any service; `service_says` knows the service's own signs.
fn rate_limit_signal(
    status: u16,
    headers: &HeaderMap,
    message: Option<&str>,
    service_says: RateLimitRefusalFn,
) -> (bool, Option<Duration>) {
    let now = SystemTime::now();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = get("retry-after").and_then(|v| retry::parse_retry_after(v, now));
    let exhausted = get("x-ratelimit-remaining").map(|v| v.trim() == "0").unwrap_or(false);
    let reset = get("x-ratelimit-reset").and_then(|v| retry::parse_rate_limit_reset(v, now));
    let refused = (400..500).contains(&status) && service_says(status, message);
    let limited = status == 429 || refused || (status == 403 && (exhausted || retry_after.is_some()));
    let wait = retry_after.or(if exhausted || status == 429 { reset } else { None });
    (limited, if limited { wait } else { None })
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 200 characters of `text` a server or script sent, for an error message that quotes it. Scrubbed
/// before it is cut: a secret cut in half is no longer one the scrubber can find.
pub(crate) fn shorten(text: &str) -> String {
    let text = crate::redact::redact(text);
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// One path segment, percent-encoded so a login like `a/b` cannot reach another endpoint.
pub fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_429_is_a_rate_limit_with_its_retry_after() {
        let (limited, wait) = rate_limit_signal(429, &headers(&[("retry-after", "2")]), None, never);
        assert!(limited);
        assert_eq!(wait, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_spent_budget_on_a_success_pauses_until_the_reset() {
        let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &(now + 30).to_string())]);
        let wait = exhausted_until(&h).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(32), "{wait:?}");
        assert_eq!(exhausted_until(&headers(&[("x-ratelimit-remaining", "5")])), None);
    }

    fn never(_: u16, _: Option<&str>) -> bool {
        false
    }

    #[test]
    fn a_plain_403_is_not_a_rate_limit() {
        assert_eq!(rate_limit_signal(403, &HeaderMap::new(), Some("Must have admin rights"), never), (false, None));
    }

    #[test]
    fn a_service_may_say_a_refusal_is_its_rate_limit() {
        let says = |status: u16, m: Option<&str>| status == 403 && m.is_some_and(|m| m.contains("slow down"));
        let (limited, wait) = rate_limit_signal(403, &HeaderMap::new(), Some("please slow down"), says);
        assert!(limited);
        assert_eq!(wait, None);
        assert!(!rate_limit_signal(403, &HeaderMap::new(), Some("please slow down"), never).0);
    }

    #[test]
    fn segments_cannot_escape_their_place_in_the_path() {
        assert_eq!(segment("octo-cat"), "octo-cat");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(segment("a b"), "a%20b");
    }
}
