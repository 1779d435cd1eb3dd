//! The one path every action takes: support check, protection, confirmation, dry run, durable intent,
//! the request, the outcome. Backends only execute; everything around them happens here, once.

use crate::audit::{AuditStore, Event, RunInfo};
use crate::backends::{unsupported, Action, Backend, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::redact::redact;
use crate::interrupt::Interrupt;
use serde_json::{json, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A live profile: its backend plus what dispatch needs to guard and record its actions.
pub struct Connection {
    pub profile: String,
    pub backend: Arc<dyn Backend>,
    pub protected: Vec<String>,
    pub token_source: String,
    pub concurrency: usize,
    identity: tokio::sync::OnceCell<String>,
}

impl Connection {
    pub fn new(
        profile: &str,
        backend: Arc<dyn Backend>,
        protected: Vec<String>,
        token_source: String,
        concurrency: usize,
    ) -> Self {
        Connection {
            profile: profile.to_string(),
            backend,
            protected,
            token_source,
            concurrency,
            identity: tokio::sync::OnceCell::new(),
        }
    }

    /// The login the token acts as, asked once per connection.
    pub async fn identity(&self) -> Result<&str, ApiError> {
        self.identity
            .get_or_try_init(|| self.backend.identity())
            .await
            .map(String::as_str)
    }

    fn known_identity(&self) -> String {
        self.identity.get().cloned().unwrap_or_default()
    }

    fn is_protected(&self, target: &str, me: &str) -> Option<String> {
        if target.eq_ignore_ascii_case(me) {
            return Some(format!(
                "{target} is the account this profile's token belongs to"
            ));
        }
        self.protected
            .iter()
            .any(|p| p.eq_ignore_ascii_case(target))
            .then(|| format!("{target} is in profile {}'s protected list", self.profile))
    }
}

/// Asks the person at the keyboard; injected so the REPL, scripts and cron jobs share one dispatch path.
pub trait Prompt: Send + Sync {
    /// `Ok(true)` to go ahead; `Err` explains why nobody could be asked.
    fn confirm(&self, question: &str) -> Result<bool, String>;
}

/// The error a script sees: the service's complaint plus where it happened.
#[derive(Clone, Debug)]
pub struct ActionError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    pub status: Option<u16>,
    pub profile: String,
    pub op: String,
    pub target: Option<String>,
}

impl ActionError {
    fn from_api(e: ApiError, conn: &Connection, action: &Action) -> Self {
        ActionError {
            kind: e.kind,
            message: e.message,
            hint: e.hint,
            status: e.status,
            profile: conn.profile.clone(),
            op: action.op.name().to_string(),
            target: action.target.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "message": self.to_string(),
            "status": self.status,
            "profile": self.profile,
            "op": self.op,
            "target": self.target,
        })
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(t) = &self.target {
            write!(f, " {t}")?;
        }
        write!(f, " on {}: {}", self.profile, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Run-wide switches from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    pub dry_run: bool,
    pub assume_yes: bool,
}

/// Where the audit log lives; opened on first use so read-only commands never touch it.
pub enum AuditTarget {
    File(PathBuf),
    Memory,
}

struct AuditLog {
    target: AuditTarget,
    store: Option<AuditStore>,
    run_id: Option<i64>,
    run_info: RunInfo,
}

impl AuditLog {
    fn store(&mut self) -> Result<&mut AuditStore, String> {
        if self.store.is_none() {
            let store = match &self.target {
                AuditTarget::File(p) => AuditStore::open(p),
                AuditTarget::Memory => AuditStore::open_in_memory(),
            }
            .map_err(|e| e.to_string())?;
            self.store = Some(store);
        }
        Ok(self.store.as_mut().expect("opened above"))
    }

    fn append(&mut self, mut event: Event) -> Result<i64, String> {
        if self.run_id.is_none() {
            let info = self.run_info.clone();
            self.run_id = Some(self.store()?.start_run(&info).map_err(|e| e.to_string())?);
        }
        event.run_id = self.run_id.unwrap_or_default();
        let seqs = self
            .store()?
            .append(&mut [event])
            .map_err(|e| e.to_string())?;
        Ok(seqs[0])
    }
}

pub struct Dispatcher {
    audit: Mutex<AuditLog>,
    prompt: Arc<dyn Prompt>,
    mode: Mode,
    interrupt: Interrupt,
}

impl Dispatcher {
    pub fn new(
        target: AuditTarget,
        run_info: RunInfo,
        prompt: Arc<dyn Prompt>,
        mode: Mode,
        interrupt: Interrupt,
    ) -> Self {
        Dispatcher {
            audit: Mutex::new(AuditLog {
                target,
                store: None,
                run_id: None,
                run_info,
            }),
            prompt,
            mode,
            interrupt,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn prompt(&self) -> &dyn Prompt {
        self.prompt.as_ref()
    }

    /// Names the script this run executes, for the `runs` row (written with the first event).
    pub fn describe_script(&self, path: &str, sha256: &str) {
        let mut log = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        log.run_info.script_path = Some(path.to_string());
        log.run_info.script_sha256 = Some(sha256.to_string());
    }

    /// The run id, if this invocation recorded anything.
    pub fn run_id(&self) -> Option<i64> {
        self.audit.lock().unwrap_or_else(|e| e.into_inner()).run_id
    }

    /// Records how the run ended (only when it recorded anything).
    pub fn finish(&self, exit_status: i32) {
        let mut log = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(run) = log.run_id {
            if let Ok(store) = log.store() {
                if let Err(e) = store.end_run(run, exit_status) {
                    tracing::warn!("could not record the end of run {run}: {e}");
                }
            }
        }
    }

    fn record(&self, event: Event) -> Result<i64, String> {
        self.audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(event)
    }

    fn event(&self, conn: &Connection, action: &Action, phase: &str, status: &str) -> Event {
        Event {
            profile: conn.profile.clone(),
            kind: conn.backend.kind().to_string(),
            base_url: conn.backend.base_url(),
            identity: conn.known_identity(),
            op: action.op.name().to_string(),
            target: action.target.clone().unwrap_or_default(),
            params: redact(&action.params.to_string()),
            mode: if self.mode.dry_run { "dry-run" } else { "live" }.to_string(),
            phase: phase.to_string(),
            status: status.to_string(),
            token_source: conn.token_source.clone(),
            ..Default::default()
        }
    }

    /// Performs one action through the whole pipeline.
    pub async fn perform(&self, conn: &Connection, action: Action) -> Result<Value, ActionError> {
        let fail = |kind: ErrorKind, message: String| {
            ActionError::from_api(ApiError::new(kind, message), conn, &action)
        };
        if !conn.backend.supported().contains(&action.op) {
            return Err(ActionError::from_api(
                unsupported(conn.backend.as_ref(), action.op),
                conn,
                &action,
            ));
        }
        let mutation = action.op.is_mutation(&action.params);
        if !mutation {
            return self.read(conn, &action).await;
        }

        if action.op.guards_target() {
            let me = conn
                .identity()
                .await
                .map_err(|e| ActionError::from_api(e, conn, &action))?
                .to_string();
            let target = action.target.clone().unwrap_or_default();
            if let Some(why) = conn.is_protected(&target, &me) {
                self.refuse(conn, &action, &why);
                return Err(fail(ErrorKind::Protected, format!("refused: {why}"))
                    .with_hint("remove the login from `protected` in the config if this is really intended"));
            }
        }

        if self.mode.dry_run {
            let mut e = self.event(conn, &action, "outcome", "dry-run");
            e.error = String::new();
            self.record(e)
                .map_err(|m| fail(ErrorKind::Unavailable, m))?;
            return Ok(
                json!({"dry_run": true, "op": action.op.name(), "target": action.target, "profile": conn.profile}),
            );
        }

        if action.op.is_destructive(&action.params) && !self.mode.assume_yes {
            let question = match &action.target {
                Some(t) => format!("{} {t} on {}?", action.op.name(), conn.profile),
                None => format!("{} on {}?", action.op.name(), conn.profile),
            };
            match self.prompt.confirm(&question) {
                Ok(true) => {}
                Ok(false) => {
                    self.refuse(conn, &action, "declined at the confirmation prompt");
                    return Err(fail(
                        ErrorKind::Cancelled,
                        "declined at the confirmation prompt".into(),
                    ));
                }
                Err(why) => {
                    self.refuse(conn, &action, &why);
                    return Err(fail(ErrorKind::Cancelled, why));
                }
            }
        }

        // The identity belongs in the intent, and asking for it is a read: do it before the intent is written.
        let _ = conn.identity().await;
        let intent = self
            .record(self.event(conn, &action, "intent", "pending"))
            .map_err(|m| fail(ErrorKind::Unavailable, m))?;
        let started = Instant::now();
        let result = tokio::select! {
            r = conn.backend.execute(&action) => r,
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, "cancelled by Ctrl-C; the request may or may not have reached the server")),
        };
        let mut outcome = self.event(conn, &action, "outcome", "ok");
        outcome.intent_seq = Some(intent);
        outcome.duration_ms = Some(started.elapsed().as_millis() as i64);
        match &result {
            Ok(v) => outcome.http_status = v.get("http_status").and_then(Value::as_i64),
            Err(e) => {
                outcome.status = if e.kind == ErrorKind::Cancelled {
                    "cancelled"
                } else {
                    "failed"
                }
                .to_string();
                outcome.http_status = e.status.map(i64::from);
                outcome.error = redact(&e.to_string());
            }
        }
        // The request already happened: a failed outcome write must not hide its result. The intent stays pending.
        if let Err(m) = self.record(outcome) {
            tracing::error!("{m}");
        }
        result.map_err(|e| ActionError::from_api(e, conn, &action))
    }

    async fn read(&self, conn: &Connection, action: &Action) -> Result<Value, ActionError> {
        let started = Instant::now();
        let result = tokio::select! {
            r = conn.backend.execute(action) => r,
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, "cancelled by Ctrl-C")),
        };
        // Reads change nothing, so one record after the fact is enough; whoami is bookkeeping, not an action.
        if action.op != Op::Whoami {
            let mut e = self.event(
                conn,
                action,
                "outcome",
                if result.is_ok() { "ok" } else { "failed" },
            );
            e.duration_ms = Some(started.elapsed().as_millis() as i64);
            if let Err(err) = &result {
                e.http_status = err.status.map(i64::from);
                e.error = redact(&err.to_string());
            }
            if let Err(m) = self.record(e) {
                tracing::warn!("{m}");
            }
        }
        result.map_err(|e| ActionError::from_api(e, conn, action))
    }

    fn refuse(&self, conn: &Connection, action: &Action, why: &str) {
        let mut e = self.event(conn, action, "outcome", "refused");
        e.error = why.to_string();
        if let Err(m) = self.record(e) {
            tracing::warn!("{m}");
        }
    }
}

impl std::error::Error for ActionError {}

impl ActionError {
    fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.to_string());
        self
    }
}
