//! Travis CI Enterprise (API v3; seed 000, specs/travis.md): user activity and suspension per organization.
//!
//! Organization tokens go as `Authorization: org.token ORG_ID:SECRET` and carry one permission each
//! (`activity` or `suspend`), so a profile may hold two. Suspension takes many users per request
//! (`{"user_ids": […]}` or `{"vcs_type", "vcs_ids": […]}`); the answer's `changed`/`skipped` lists become
//! per-user results.

use super::model::{Raw, User};
use super::{unsupported, Action, Backend, ClientShape, Op, ALL_TIME};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::{segment, HttpClient, Paging, Request};
use crate::redact::{ExposeSecret, SecretString};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

/// What steward knows of this kind of service, for the registry (`backends::ALL`).
pub const KIND: super::Kind = super::Kind {
    name: "travis",
    supported: SUPPORTED,
    client: CLIENT_SHAPE,
    words: &[("user_activity", "activity")],
    check: super::check_settings::<Settings>,
    keys: super::keys_of::<Settings>,
    token_envs: &[
        ("activity", "activity_token_env"),
        ("suspend", "suspend_token_env"),
        ("internal", "internal_token_env"),
    ],
    build: |client, profile, config, extra_tokens| {
        let settings =
            super::settings::<Settings>(config).map_err(|k| ApiError::invalid(format!("{}: {}", k.key, k.message)))?;
        Ok(std::sync::Arc::new(Travis::new(client, profile, settings, extra_tokens)))
    },
    activity: super::ActivitySource::Seen {
        what: "last_activity_at in the organization's user activity listing",
        misses: Some(NEVER_ACTIVE),
    },
};

/// A travis profile's own keys. Organization tokens carry one permission each, so a profile may name one for
/// `activity` and one for `suspend` (each defaults to token_env/token_cmd), and the internal app credential
/// (`app_name:token`) for the instance-wide `/users/suspend`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The organization the tokens belong to.
    pub org_id: String,
    pub activity_token_env: Option<String>,
    pub suspend_token_env: Option<String>,
    pub internal_token_env: Option<String>,
}

impl super::KindSettings for Settings {
    fn validate(&self) -> Result<(), super::KeyProblem> {
        match self.org_id.trim().is_empty() {
            true => Err(super::KeyProblem::new(
                "org_id",
                "a travis profile needs the organization id its tokens belong to",
                "org_id = \"89\" (Travis admin-v2 → Organization)",
            )),
            false => Ok(()),
        }
    }
}

pub const CLIENT_SHAPE: ClientShape = ClientShape {
    auth_prefix: "org.token ",
    default_headers: &[("accept", "application/json"), ("travis-api-version", "3")],
    content_type: "application/json",
    error_message,
    token_value: |p, token| match super::settings::<Settings>(p) {
        Ok(s) => with_org_id(&s.org_id, token),
        Err(_) => token,
    },
    // TCIE runs without travis-ci.com's throttles, but a small server deserves care (≤ 1.5 POST/s advised).
    default_rate_limit: Some(5.0),
    token_shapes: &[r"\borg\.token\s+\S+"],
    rate_limit_refusal: super::no_rate_limit_refusal,
};

const SUPPORTED: &[Op] = &[Op::Activity, Op::Suspend, Op::Unsuspend, Op::Api];

/// Who Travis's activity listing cannot show: what `activity` and every inactivity report say about it.
const NEVER_ACTIVE: &str = "members who were never active have no last activity, so they are in neither the active nor the inactive list, and an organization token cannot list members otherwise: they are not in this listing (admin-v2's User Activity tab shows them)";

/// Ids per bulk request: small enough for any proxy's body limit, large enough that 1,000 users are 10 requests.
const BATCH: usize = 100;
const PAGE: usize = 100;
const ACTIVITY_PAGING: Paging = Paging::Cursor { param: "offset", items: "/users", next: "/@pagination/next/offset" };

/// `org.token` wants `ORG_ID:SECRET`; a profile may hold only the secret.
/// Travis takes an organization token as `org_id:secret`; a token that already has its prefix is left alone.
fn with_org_id(org_id: &str, token: SecretString) -> SecretString {
    match token.expose_secret().contains(':') {
        false => SecretString::from(format!("{org_id}:{}", token.expose_secret())),
        true => token,
    }
}

/// `{"@type":"error","error_type":"…","error_message":"…"}`.
pub fn error_message(body: &Value) -> Option<String> {
    let kind = body.get("error_type").and_then(Value::as_str);
    let message = body.get("error_message").and_then(Value::as_str);
    match (kind, message) {
        (Some(k), Some(m)) => Some(format!("{k}: {m}")),
        (None, Some(m)) => Some(m.to_string()),
        (Some(k), None) => Some(k.to_string()),
        (None, None) => None,
    }
}

pub struct Travis {
    http: HttpClient,
    profile: String,
    org: String,
    activity_token: Option<SecretString>,
    suspend_token: Option<SecretString>,
    internal_token: Option<SecretString>,
    /// The activity listing (both lists), read once and kept until this profile changes something: it is how
    /// Travis tells ids from logins and who is suspended, and a job of 1,000 users reads it once, not 1,000 times.
    listing: tokio::sync::Mutex<Option<std::sync::Arc<Vec<Value>>>>,
}

impl Travis {
    /// `extra_tokens`: the `activity`, `suspend` and `internal` credentials the profile names (each optional:
    /// without one, the profile's main token is used).
    pub fn new(
        http: HttpClient,
        profile: &str,
        settings: Settings,
        extra_tokens: Vec<(&'static str, SecretString)>,
    ) -> Self {
        let take = |purpose: &str| extra_tokens.iter().find(|(p, _)| *p == purpose).map(|(_, t)| t.clone());
        let org = settings.org_id;
        Travis {
            http,
            profile: profile.to_string(),
            activity_token: take("activity").map(|t| with_org_id(&org, t)),
            suspend_token: take("suspend").map(|t| with_org_id(&org, t)),
            internal_token: take("internal"),
            org,
            listing: tokio::sync::Mutex::new(None),
        }
    }

    /// The request with the token that has the permission it needs (when the profile names one).
    fn with_token(&self, req: Request, token: &Option<SecretString>, scheme: &str) -> Request {
        match token {
            Some(t) => {
                req.secret_header("authorization", SecretString::from(format!("{scheme} {}", t.expose_secret())))
            }
            None => req,
        }
    }

    fn user(&self, u: &Value, status: Option<&str>) -> User {
        let text = |k: &str| u.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        User {
            id: u.get("id").cloned().unwrap_or(Value::Null),
            login: text("login").unwrap_or_default(),
            email: text("email"),
            name: text("name"),
            admin: None,
            suspended: u.get("suspended").and_then(Value::as_bool),
            last_active: text("last_activity_at"),
            kind: "travis".into(),
            profile: self.profile.clone(),
            raw: Raw::Tree(u.clone()),
            extra: vec![
                ("vcs_id".into(), u.get("vcs_id").cloned().unwrap_or(Value::Null)),
                ("vcs_type".into(), u.get("vcs_type").cloned().unwrap_or(Value::Null)),
                ("status".into(), json!(status)),
            ],
            unknown: &[],
        }
    }

    /// Every page of `/org/{id}/user_activity` for one status.
    async fn activity_pages(&self, date: &str, status: &str) -> Result<Vec<Value>, ApiError> {
        let users =
            self.http.list(self.activity_request(date, status), ACTIVITY_PAGING).await.map_err(explain("activity"))?;
        Ok(users.iter().map(|u| self.user(u, Some(status)).into_value()).collect())
    }

    /// The first page of `/org/{id}/user_activity` for one status, with the organization token.
    fn activity_request(&self, date: &str, status: &str) -> Request {
        let req = Request::new(Method::GET, format!("org/{}/user_activity", segment(&self.org)))
            .query("date", date)
            .query("status", status)
            .query("limit", PAGE)
            .query("offset", 0);
        self.with_token(req, &self.activity_token, "org.token")
    }

    async fn activity(&self, params: &Value) -> Result<Value, ApiError> {
        let since = params.get("since").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid("activity needs a date: activity(#{since: \"2025-02-21\", status: \"inactive\"})")
        })?;
        // Travis takes a day; any date steward reads (`days_ago(30)`, `7d`, a time) names one.
        let date = crate::dates::parse_date(since)
            .map_err(|e| ApiError::invalid(format!("since: {e}")))?
            .format("%Y-%m-%d")
            .to_string();
        let status = params.get("status").and_then(Value::as_str).unwrap_or("all");
        match status {
            "active" | "inactive" => Ok(Value::Array(self.activity_pages(&date, status).await?)),
            "all" => {
                let mut all = self.activity_pages(&date, "active").await?;
                all.extend(self.activity_pages(&date, "inactive").await?);
                Ok(Value::Array(all))
            }
            "never" => Err(ApiError::new(ErrorKind::Unsupported, format!("Travis cannot list them: {NEVER_ACTIVE}"))
                .with_hint("use status \"inactive\" for users idle since the date, or the admin-v2 User Activity tab")),
            other => Err(ApiError::invalid(format!("status {other:?}: use \"active\", \"inactive\" or \"all\""))),
        }
    }

    /// Everyone in the activity listing, from the copy kept since the last change (or read now).
    async fn everyone(&self) -> Result<std::sync::Arc<Vec<Value>>, ApiError> {
        let mut kept = self.listing.lock().await;
        if let Some(list) = kept.as_ref() {
            return Ok(list.clone());
        }
        let all = self.activity(&json!({"since": "2000-01-01", "status": "all"})).await?;
        let list = std::sync::Arc::new(match all {
            Value::Array(users) => users,
            _ => Vec::new(),
        });
        *kept = Some(list.clone());
        Ok(list)
    }

    /// The listing's entry for the user `name` names in the space `vcs_type` says: a VCS id when it is set;
    /// otherwise a Travis user id when the name is digits, else a login. Ids compare as numbers (`01` is `1`).
    async fn find(&self, name: &str, vcs_type: Option<&str>) -> Result<Option<Value>, ApiError> {
        let key = self.name_key(name);
        let field = match (vcs_type, is_number(name)) {
            (Some(_), _) => "vcs_id",
            (None, true) => "id",
            (None, false) => "login",
        };
        let same_vcs = |u: &Value| {
            let listed = u.get("vcs_type").and_then(Value::as_str);
            vcs_type.is_none_or(|t| listed.is_none_or(|v| v.eq_ignore_ascii_case(t)))
        };
        let everyone = self.everyone().await?;
        let matches: Vec<&Value> = everyone
            .iter()
            .filter(|u| u.get(field).is_some_and(|v| self.name_key(&text_of(v)) == key))
            .filter(|u| same_vcs(u))
            .collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => {
                let text = |u: &Value, k: &str| text_of(u.get(k).unwrap_or(&Value::Null));
                let who = many.iter().map(|u| (text(u, "login"), text(u, "id"))).collect();
                Err(super::ambiguous(name, who, "name the member by its Travis user id"))
            }
        }
    }

    /// What Travis's answer to one bulk request says of each user in it: `changed` and `skipped` name Travis user
    /// ids, so users given by VCS id can only be told apart when all of them changed.
    fn per_user(
        &self,
        op: Op,
        by_vcs: bool,
        ids: Vec<(usize, u64)>,
        resp: &crate::http::Response,
    ) -> Vec<(usize, Result<Value, ApiError>)> {
        let mut out = Vec::with_capacity(ids.len());
        let list = |k: &str| -> Vec<u64> {
            resp.body
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default()
        };
        let (changed, skipped) = (list("changed"), list("skipped"));
        // With VCS ids Travis answers in its own user ids, so only a complete success maps per user.
        let all_vcs_done = by_vcs && skipped.is_empty() && changed.len() == ids.len();
        let total = ids.len();
        for (i, id) in ids {
            out.push((
                i,
                if changed.contains(&id) && !by_vcs || all_vcs_done {
                    Ok(json!({"ok": true, "op": op.name(), "target": id.to_string(), "http_status": resp.status}))
                } else if !by_vcs {
                    Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("user {id} was skipped: not a member of organization {} (or unknown)", self.org),
                    )
                    .with_status(resp.status))
                } else {
                    Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!(
                            "Travis changed {} of {total} users given by VCS id without saying which",
                            changed.len()
                        ),
                    )
                    .with_status(resp.status)
                    .with_hint("use Travis user ids (the id column of activity()) for an exact result per user"))
                },
            ));
        }
        out
    }

    /// One bulk request for many targets: Travis ids and VCS ids go in separate requests.
    async fn suspend_many(&self, op: Op, actions: &[Action]) -> Vec<Result<Value, ApiError>> {
        // Whatever this request comes to, the kept listing no longer tells the state: read it again next time.
        *self.listing.lock().await = None;
        let verb = if op == Op::Suspend { "suspend" } else { "unsuspend" };
        let instance_wide = actions.iter().any(|a| a.params.get("instance").and_then(Value::as_bool) == Some(true));
        let mut results: Vec<Option<Result<Value, ApiError>>> = vec![None; actions.len()];
        // Group: Travis user ids, then VCS ids per VCS type.
        let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for (i, a) in actions.iter().enumerate() {
            let vcs = a.params.get("vcs_type").and_then(Value::as_str).map(str::to_string);
            match groups.iter_mut().find(|(k, _)| *k == vcs) {
                Some((_, v)) => v.push(i),
                None => groups.push((vcs, vec![i])),
            }
        }
        for (vcs, idx) in groups {
            let mut ids = Vec::new();
            for &i in &idx {
                match actions[i].target.as_deref().map(str::parse::<u64>) {
                    Some(Ok(id)) => ids.push((i, id)),
                    _ => {
                        results[i] = Some(Err(ApiError::invalid(format!(
                            "{:?} is not a numeric Travis user id or VCS id",
                            actions[i].target.as_deref().unwrap_or("")
                        ))))
                    }
                }
            }
            if ids.is_empty() {
                continue;
            }
            let numbers: Vec<u64> = ids.iter().map(|(_, id)| *id).collect();
            let body = match &vcs {
                Some(t) => json!({"vcs_type": t, "vcs_ids": numbers}),
                None => json!({"user_ids": numbers}),
            };
            let (path, token, scheme) = if instance_wide {
                (format!("users/{verb}"), &self.internal_token, "internal")
            } else {
                (format!("org/{}/{verb}", segment(&self.org)), &self.suspend_token, "org.token")
            };
            if instance_wide && self.internal_token.is_none() {
                let e = ApiError::invalid("instance-wide suspension needs the internal app credential")
                    .with_hint("set internal_token_env in the profile (the value is app_name:token)");
                for (i, _) in ids {
                    results[i] = Some(Err(e.clone()));
                }
                continue;
            }
            let req = self.with_token(Request::new(Method::POST, path).json(body), token, scheme);
            match self.http.send(&req).await.map_err(explain("suspend")) {
                Err(e) => {
                    for (i, _) in ids {
                        results[i] = Some(Err(e.clone()));
                    }
                }
                Ok(resp) => {
                    for (i, result) in self.per_user(op, vcs.is_some(), ids, &resp) {
                        results[i] = Some(result);
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(ApiError::invalid("not sent")))).collect()
    }
}

/// Travis answers 403 for every authorization problem; an org token's permission is the usual one.
fn explain(permission: &'static str) -> impl Fn(ApiError) -> ApiError {
    move |e| {
        if e.status == Some(403) {
            e.with_hint(format!(
                "the organization token must have the `{permission}` permission and belong to this org_id (each token has one permission: set activity_token_env and suspend_token_env)"
            ))
        } else {
            e
        }
    }
}

#[async_trait]
impl Backend for Travis {
    fn kind(&self) -> &'static str {
        "travis"
    }

    fn supported(&self) -> &'static [Op] {
        SUPPORTED
    }

    /// Both activity listings, a page at a time, each member straight into what planning holds.
    async fn activity_seen(&self, each: &mut (dyn FnMut(super::model::Seen) + Send)) -> Result<usize, ApiError> {
        let mut seen = 0;
        for status in ["active", "inactive"] {
            let first = self.activity_request(ALL_TIME, status);
            let mut pages = self.http.pages(first, ACTIVITY_PAGING, crate::http::Hold::Walked);
            while let Some(page) = pages.next_page().await.map_err(explain("activity"))? {
                seen += page.len();
                page.iter().for_each(|u| each(super::model::Seen::of_user(&self.user(u, Some(status)).into_value())));
            }
        }
        Ok(seen)
    }

    fn base_url(&self) -> String {
        self.http.base_url().to_string()
    }

    /// Travis acts on numbers: its own user ids, or VCS ids; a login column is only for people to read.
    fn target_keys(&self) -> &'static [&'static str] {
        &["id", "user_id", "vcs_id"]
    }

    async fn batch_size(&self, op: Op) -> Option<usize> {
        matches!(op, Op::Suspend | Op::Unsuspend).then_some(BATCH)
    }

    async fn execute_batch(&self, op: Op, actions: &[Action]) -> Vec<Result<Value, ApiError>> {
        self.suspend_many(op, actions).await
    }

    async fn identity(&self) -> Result<String, ApiError> {
        // An organization token is nobody's account.
        Ok(format!("(organization {} token)", self.org))
    }

    /// Travis ids and VCS ids are digits (`+1` is no id); a login is what the listing shows.
    /// Its members are the VCS server's users, by their VCS login; Travis records no email for them.
    fn finds_by(&self, kind: super::IdKind) -> bool {
        kind != super::IdKind::Email
    }

    fn misses_hide_accounts(&self) -> Option<&'static str> {
        Some(
            "Travis lists only members who were ever active (one never active is in neither activity list), so not finding someone does not show they have no account; check the admin-v2 User Activity tab",
        )
    }

    fn invalid_target(&self, target: &str) -> Option<String> {
        let t = target.trim();
        let bad = t.is_empty()
            || t.starts_with(['+', '-'])
            || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        bad.then(|| format!("{target:?} is not a Travis user id, VCS id or login"))
    }

    fn name_key(&self, name: &str) -> String {
        travis_key(name)
    }

    /// Travis has no user lookup for an organization token; the activity listing (both lists) carries each
    /// member's id, login, VCS id and suspension. A member it does not show (never active, or a token without
    /// the activity permission) is still the account its number names: Travis's requests take numbers, so a
    /// user id or VCS id is its own canonical id (`01` is `1`, a VCS id `vcs:<type>:<n>`); a login it does not
    /// show is nobody steward can address.
    async fn lookup(&self, name: &str, params: &Value) -> Result<Option<super::model::Account>, ApiError> {
        let vcs_type = params.get("vcs_type").and_then(Value::as_str).filter(|t| !t.is_empty());
        let listed = match self.find(name, vcs_type).await {
            Ok(listed) => listed,
            Err(e) if matches!(e.kind, ErrorKind::Forbidden | ErrorKind::Unauthorized) && is_number(name) => {
                tracing::warn!("cannot read members from the activity listing: {e}");
                None
            }
            Err(e) => {
                let hint = "Travis members are found through the activity listing: give the profile an activity \
                            token (activity_token_env)";
                return Err(
                    ApiError { message: format!("cannot look {name:?} up: {}", e.message), ..e }.with_hint(hint)
                );
            }
        };
        let number = self.name_key(name);
        let vcs_alias = |t: &str, n: &str| format!("vcs:{}:{n}", t.to_lowercase());
        Ok(match (listed, vcs_type) {
            (Some(u), _) => {
                let mut account = super::model::Account::of_user(&u).by_id();
                if let (Some(t), Some(v)) = (u.get("vcs_type").and_then(Value::as_str), u.get("vcs_id")) {
                    account.aliases.push(vcs_alias(t, &self.name_key(&text_of(v))));
                }
                // Named by its VCS id, it is addressed by that (the request says `vcs_ids`).
                if vcs_type.is_some() {
                    account.address = number;
                }
                Some(account)
            }
            (None, _) => self.offline_account(name, params),
        })
    }

    /// A number is the account it names (`01` is `1`; with a `vcs_type`, the VCS id `vcs:<type>:<n>`), as
    /// Travis's requests take numbers: what a job that reads nothing first decides on.
    fn offline_account(&self, name: &str, params: &Value) -> Option<super::model::Account> {
        let number = is_number(name).then(|| self.name_key(name))?;
        let id = match params.get("vcs_type").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            Some(t) => format!("vcs:{}:{number}", t.to_lowercase()),
            None => number.clone(),
        };
        Some(super::model::Account { id, names: vec![name.trim().to_string()], address: number, ..Default::default() })
    }

    fn lookup_is_exhaustive(&self) -> bool {
        false
    }

    /// A Travis account answers to its id and its VCS id as numbers, and to its login.
    fn answers_to(&self, account: &super::model::Account, name: &str) -> bool {
        let key = self.name_key(name);
        account.names.iter().any(|n| self.name_key(n) == key)
    }

    /// The member as the activity listing shows them (id, login, VCS id, suspension), addressed by id.
    async fn snapshot(&self, target: &str) -> Result<super::holdings::Snapshot, ApiError> {
        let user = self.find(target, None).await?.ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no member {target:?} in this organization's activity listing"))
                .with_status(404)
        })?;
        let mut snap = super::holdings::Snapshot::of_user(&user);
        snap.target =
            user.get("id").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
        Ok(snap)
    }

    fn cascade(&self, snap: &super::holdings::Snapshot, wishes: &super::holdings::Wishes) -> super::holdings::Cascade {
        let mut plan = super::holdings::standard_cascade(self, snap, wishes);
        plan.caveats.push(
            "Travis CI Enterprise suspension frees a seat but does not cut access (its docs say so): cut access at \
             the identity provider or the VCS"
                .into(),
        );
        plan
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        match action.op {
            Op::Activity => self.activity(&action.params).await,
            Op::Suspend | Op::Unsuspend => self
                .suspend_many(action.op, std::slice::from_ref(action))
                .await
                .pop()
                .unwrap_or_else(|| Err(ApiError::invalid("not sent"))),
            Op::Api => super::api(&self.http, action).await,
            other => Err(unsupported(self, other)),
        }
    }
}

/// A Travis name as Travis compares it: ids as numbers (`007` is `7`), logins without case.
fn travis_key(name: &str) -> String {
    let name = name.trim();
    match is_number(name) {
        true => match name.trim_start_matches('0') {
            "" => "0".to_string(),
            digits => digits.to_string(),
        },
        false => name.to_lowercase(),
    }
}

/// A name made of ASCII digits only: a Travis user id or VCS id.
fn is_number(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty() && name.chars().all(|c| c.is_ascii_digit())
}

/// A listed value as text (a number's digits, a string's contents).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_as_numbers_and_logins_without_case() {
        for (a, b) in [("01", "1"), ("0001", "1"), ("100002", "0100002"), ("0", "000"), (" 7 ", "7"), ("Mona", "mona")]
        {
            assert_eq!(travis_key(a), travis_key(b), "{a} {b}");
        }
        for (a, b) in [("10", "1"), ("+1", "1"), ("1 0", "10"), ("mona", "m0na")] {
            assert_ne!(travis_key(a), travis_key(b), "{a} {b}");
        }
    }

    #[test]
    fn errors_read_travis_envelopes() {
        let body = json!({"@type": "error", "error_type": "insufficient_access", "error_message": "forbidden"});
        assert_eq!(error_message(&body).as_deref(), Some("insufficient_access: forbidden"));
    }
}
