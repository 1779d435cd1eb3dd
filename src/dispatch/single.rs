//! The single call: a plan of one. Checked, resolved to the account it reaches, decided on that account (the
//! guard, its state, dry run, a confirmation, the action budget), then intent → request → outcome.

use super::{bulk, guard, noop_answer, ActionError, Connection, Dispatcher};
use crate::audit::vocab::{Phase, Status};
use crate::backends::{unsupported, Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::redact::redact;
use serde_json::{json, Value};
use std::time::Instant;

/// What deciding a single change came to: send it, or answer without sending (a noop, a dry run).
enum Decided {
    Send(Action),
    Answered(Value),
}

impl Dispatcher {
    /// Performs one action through the whole pipeline.
    pub async fn perform(&self, conn: &Connection, mut action: Action) -> Result<Value, ActionError> {
        // What a change held before is read by steward (`prepare`), never taken from the script: a forged
        // `prior_role` would be recorded as the truth and given back by undo.
        if let Some(p) = action.params.as_object_mut() {
            p.remove("prior_role");
        }
        let (op_name, named) = (action.op.name(), action.target.clone());
        let fail = |e: ApiError| ActionError::new(e, conn, op_name, named.clone());
        self.refuse_when_stopped().map_err(fail)?;
        if !conn.backend.supported().contains(&action.op) {
            return Err(fail(unsupported(conn.backend.as_ref(), action.op)));
        }
        // The same check as a bulk item's: a name that is no user name never reaches a URL (api's target is a
        // path, create_user's a name the service has yet to normalize).
        let names_a_user = !matches!(action.op, Op::Api | Op::CreateUser);
        if let Some(why) =
            action.target.as_deref().filter(|_| names_a_user).and_then(|t| conn.backend.invalid_target(t.trim()))
        {
            return Err(fail(ApiError::invalid(why)));
        }
        if !action.op.is_mutation(&action.params) {
            return self.read(conn, &action).await;
        }
        // A timed change whose time cannot be kept is refused before anything is read or sent.
        super::timed::restore_at(action.op, &action.params, chrono::Utc::now()).map_err(fail)?;
        let action = match self.decide(conn, action).await.map_err(fail)? {
            Decided::Send(action) => action,
            Decided::Answered(answer) => return Ok(answer),
        };
        self.confirm_single(conn, &action).await.map_err(fail)?;
        self.spend(1).map_err(fail)?;
        // The identity belongs in the intent, and asking for it is a read: do it before the intent is written.
        let _ = self.unless_stopped(conn.identity()).await;
        let result = self.execute_recorded(conn, &action).await;
        self.recorder.flush().await;
        result.map_err(fail)
    }

    /// Resolve, then decide: the account the request will reach, as the server answers for it; the guard on
    /// that account; a change that can be undone decided on the state the resolving read showed (a noop is
    /// reported and recorded as one, and undo knows what the state was before); a dry run recorded as one.
    async fn decide(&self, conn: &Connection, action: Action) -> Result<Decided, ApiError> {
        let resolved = match self.unless_stopped(guard::resolve_action(conn.backend.as_ref(), &action)).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => return self.unless_dry_run(conn, action).await,
            Err(e) => {
                // What steward decided (a lying answer, an impossible or ambiguous name) is on record.
                if matches!(e.kind, ErrorKind::Invalid | ErrorKind::Conflict) {
                    self.recorder.refusal(conn, &action, &redact(&e.to_string())).await;
                }
                return Err(e);
            }
        };
        if guard::takes_from(action.op, &action.params) {
            let guard = self.unless_stopped(conn.guard()).await?;
            if let Some(why) = guard::refusal(guard, conn.backend.as_ref(), &resolved) {
                self.recorder.refusal(conn, &resolved.action, &why.message).await;
                return Err(
                    ApiError::new(ErrorKind::Protected, format!("refused: {}", why.message)).with_hint(why.hint)
                );
            }
        }
        let mut action = resolved.action;
        if let (Some(_), Some(account)) = (action.op.inverse(), &resolved.account) {
            if let Some(why) = self.settled_unknown(conn, action.op, account, &action.params) {
                return Err(ApiError::new(ErrorKind::Conflict, why));
            }
            let state = self.unless_stopped(conn.backend.state_of(action.op, account, &action.params)).await?;
            // A resume settles what an earlier run of the job left in flight on this account first.
            if let Some(earlier) = self.settle_earlier(conn, (action.op, account, &action.params), Some(state)).await {
                self.recorder.record(earlier.event.into_iter().collect()).await?;
                if let Some(why) = earlier.hold_back {
                    return Err(ApiError::new(ErrorKind::Conflict, why));
                }
            }
            match state {
                Some(true) => {
                    let said = format!("already {}; nothing was sent", bulk::end_state(action.op));
                    self.record_decided(conn, &action, Status::Noop, &said).await?;
                    return Ok(Decided::Answered(noop_answer(conn, &action, &said)));
                }
                seen => action.params["prior_observed"] = json!(seen == Some(false)),
            }
        }
        self.unless_dry_run(conn, action).await
    }

    /// In a dry run, the change is recorded as one and answered; otherwise it is to be sent.
    async fn unless_dry_run(&self, conn: &Connection, action: Action) -> Result<Decided, ApiError> {
        if !self.mode.dry_run {
            return Ok(Decided::Send(action));
        }
        self.record_decided(conn, &action, Status::DryRun, "").await?;
        let answer = json!({"dry_run": true, "op": action.op.name(), "target": action.target, "profile": conn.profile});
        Ok(Decided::Answered(answer))
    }

    /// The outcome row of a change decided without a request.
    async fn record_decided(
        &self,
        conn: &Connection,
        action: &Action,
        status: Status,
        why: &str,
    ) -> Result<(), ApiError> {
        let mut e =
            self.recorder.event(conn, action.op, action.target.as_deref(), &action.params, Phase::Outcome, status);
        e.error = why.to_string();
        self.recorder.record(vec![e]).await.map(|_| ())
    }

    /// A destructive change asks first (`op TARGET on PROFILE?`) unless `--yes`; declined, or nobody to ask, it
    /// is refused and recorded as such.
    async fn confirm_single(&self, conn: &Connection, action: &Action) -> Result<(), ApiError> {
        // Asked already: with --yes, or as part of a whole plan (undo, a policy, the scheduled changes due).
        if !action.op.is_destructive(&action.params)
            || self.mode.assume_yes
            || self.budget.planned.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let question = match &action.target {
            Some(t) => format!("{} {t} on {}?", action.op.name(), conn.profile),
            None => format!("{} on {}?", action.op.name(), conn.profile),
        };
        let why = match self.prompt.confirm(&question) {
            Ok(true) => return Ok(()),
            Ok(false) => "declined at the confirmation prompt".to_string(),
            Err(why) => why.to_string(),
        };
        self.recorder.refusal(conn, action, &why).await;
        Err(ApiError::new(ErrorKind::Cancelled, why))
    }

    /// A read: sent, then recorded once after the fact.
    async fn read(&self, conn: &Connection, action: &Action) -> Result<Value, ActionError> {
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            _ = self.interrupt.raised() => Err(ApiError::new(ErrorKind::Cancelled, self.interrupt.reason())),
            r = conn.backend.execute(action) => r,
        };
        self.recorder.read_done(conn, action, started, result.as_ref().err()).await;
        result.map_err(|e| ActionError::from_api(e, conn, action))
    }
}
