//! Intent (durable) → request → outcome: the part of the path every change shares, single, bulk or
//! deprovisioning. Without a durable intent nothing is sent; an answer lost in flight is settled by reading the
//! target before anything is sent again.

use super::recorder::unrecorded;
use super::{answer, failpoint, Connection, Dispatcher};
use crate::audit::vocab::{Phase, Status};
use crate::audit::Event;
use crate::backends::{Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

impl Dispatcher {
    /// Intent (durable) → request → outcome: the part of the path every mutation shares, single or bulk.
    pub(super) async fn execute_recorded(&self, conn: &Connection, action: &Action) -> Result<Value, ApiError> {
        self.execute_recorded_at(conn, action).await.1
    }

    /// `execute_recorded`, with the sequence number of the intent it wrote (for evidence that cites the log).
    pub(super) async fn execute_recorded_at(
        &self,
        conn: &Connection,
        action: &Action,
    ) -> (Option<i64>, Result<Value, ApiError>) {
        let action = match self.prepared(conn, action).await {
            Ok(action) => action,
            Err(e) => return (None, Err(e)),
        };
        let intent = self.recorder.event(
            conn,
            action.op,
            action.target.as_deref(),
            &action.params,
            Phase::Intent,
            Status::Pending,
        );
        // Fail closed: without a durable intent the request is not sent.
        match self.recorder.claiming(vec![intent]).await.map(|slots| slots.into_iter().next()) {
            Ok(Some(Ok(intent_seq))) => (Some(intent_seq), self.send_recorded(conn, &action, intent_seq).await),
            Ok(Some(Err(busy))) => (None, Err(self.recorder.busy(conn, &action, busy).await)),
            Ok(None) => (None, Err(unrecorded())),
            Err(e) => (None, Err(e)),
        }
    }

    /// Prepares several actions and commits all their intents at once (a bulk job does this chunks ahead of
    /// the requests, so no request waits for its own fsync). One entry per action, in order.
    /// `read_at`: the log's head when the job read the targets' state (see `Event::read_at`).
    pub(super) async fn record_intents(
        &self,
        conn: &Connection,
        actions: Vec<Action>,
        read_at: Option<i64>,
    ) -> Vec<Result<(Action, i64), ApiError>> {
        let prepared = futures::future::join_all(actions.iter().map(|a| self.prepared(conn, a))).await;
        let events: Vec<Event> = prepared
            .iter()
            .flatten()
            .map(|a| Event {
                read_at,
                ..self.recorder.event(conn, a.op, a.target.as_deref(), &a.params, Phase::Intent, Status::Pending)
            })
            .collect();
        let slots = match self.recorder.claiming(events).await {
            Ok(slots) => slots,
            Err(e) => return prepared.into_iter().map(|p| p.and(Err(e.clone()))).collect(),
        };
        // A slot for each prepared action only: one that failed to prepare wrote no event.
        let mut slots = slots.into_iter();
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            out.push(match p {
                Err(e) => Err(e),
                Ok(a) => match slots.next() {
                    Some(Ok(seq)) => Ok((a, seq)),
                    Some(Err(busy)) => Err(self.recorder.busy(conn, &a, busy).await),
                    None => Err(unrecorded()),
                },
            });
        }
        out
    }

    /// The request and its outcome, for an action whose intent is already durable.
    pub(super) async fn send_recorded(
        &self,
        conn: &Connection,
        action: &Action,
        intent_seq: i64,
    ) -> Result<Value, ApiError> {
        failpoint("after_intent_commit");
        let started = Instant::now();
        let sent = Arc::new(AtomicBool::new(false));
        // The stop is looked at first: polled after a stop, a change waiting for a slot another item just gave
        // up would take it and leave after the stop (seen: 5 PUTs sent after Ctrl-C).
        let answered = tokio::select! {
            biased;
            _ = self.interrupt.raised() => None,
            r = crate::http::watch_changes(sent.clone(), conn.backend.settle(action)) => Some(answer(conn, action, r)),
        };
        // Stopped while still waiting for its turn (its change never left): cancelled, and said so in the log.
        if answered.is_none() && !sent.load(Ordering::SeqCst) {
            let why = format!("{} before it was sent", self.interrupt.reason());
            self.recorder.close_unsent(conn, action, intent_seq, &why);
            return Err(ApiError::new(ErrorKind::Cancelled, why));
        }
        // Stopped in flight: it may have reached the server. No outcome is written, so the intent stays open (in
        // doubt) and a resume reads the account and settles it: applied by this run (and undone by its undo),
        // or not (and sent).
        let Some(result) = answered else { return Err(in_doubt(&self.interrupt.reason())) };
        failpoint("after_response_before_outcome");
        let result = self.reconcile(conn, action, result).await;
        // Still in doubt after the read that would settle it failed too: the intent stays open for a resume.
        if matches!(&result, Err(e) if e.kind == ErrorKind::InDoubt) {
            return result;
        }
        let ms = started.elapsed().as_millis() as i64;
        self.recorder.outcomes(
            conn,
            action.op,
            (std::slice::from_ref(action), &[intent_seq]),
            std::slice::from_ref(&result),
            ms,
        );
        result
    }

    /// Whether a change's answer leaves it in doubt: a 5xx, a timeout or a dropped connection (and the log can
    /// still record what a read finds).
    pub(super) fn in_doubt(&self, result: &Result<Value, ApiError>) -> bool {
        matches!(result, Err(e) if e.kind == ErrorKind::Unavailable && !self.audit_failed() && e.status.is_none_or(|s| s >= 500))
    }

    /// A change whose answer leaves it in doubt (a 5xx, a timeout, a dropped connection) may still have been
    /// applied: read the target's state; in place, it counts as done; not in place, it is sent again, and
    /// only then (so the service never sees one change twice), a few times (see `resend_pause`).
    pub(super) async fn reconcile(
        &self,
        conn: &Connection,
        action: &Action,
        result: Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        const RESENDS: u32 = 4;
        let mut result = result;
        for attempt in 0..=RESENDS {
            let Err(e) = &result else { return result };
            let Some(target) = action.target.as_deref().filter(|_| self.in_doubt(&result)) else { return result };
            match self.unless_stopped(conn.backend.state(action.op, target, &action.params)).await {
                Ok(Some(true)) => {
                    return Ok(json!({
                        "ok": true, "op": action.op.name(), "target": target, "http_status": e.status,
                        "reconciled": format!("the server answered \"{}\", but the change is in place", e.message),
                    }))
                }
                // Read, and not in place: now it is safe to send the change once more.
                Ok(Some(false)) if attempt < RESENDS && !self.interrupt.is_raised() => {
                    let first = e.message.clone();
                    let again = tokio::select! {
                        biased;
                        _ = self.interrupt.raised() => return result,
                        r = async {
                            tokio::time::sleep(resend_pause(attempt)).await;
                            answer(conn, action, conn.backend.settle(action).await)
                        } => r,
                    };
                    result = again.map_err(|mut second| {
                        second.message = format!(
                            "{} (sent again after a read showed the earlier attempt, \"{first}\", was not applied)",
                            second.message
                        );
                        second
                    });
                }
                // The read failed as well: whether the change was applied is unknown. It is not `failed` (it may
                // stand on the server): it stays open, in doubt, for a resume to read and settle.
                Err(read) => return Err(left_in_doubt(e, &read)),
                _ => return result,
            }
        }
        result
    }

    /// `execute_recorded` for a batch that the service takes in one request: every intent durable first
    /// (one commit), then the request, then each item's outcome.
    pub(super) async fn execute_batch_recorded(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        read_at: Option<i64>,
    ) -> Vec<Result<Value, ApiError>> {
        self.execute_batch_recorded_at(conn, op, actions, read_at).await.into_iter().map(|(_, r)| r).collect()
    }

    /// `execute_batch_recorded`, with each item's intent sequence number (none where none was written).
    pub(super) async fn execute_batch_recorded_at(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        read_at: Option<i64>,
    ) -> Vec<(Option<i64>, Result<Value, ApiError>)> {
        let intents: Vec<Event> = actions
            .iter()
            .map(|a| Event {
                read_at,
                ..self.recorder.event(conn, op, a.target.as_deref(), &a.params, Phase::Intent, Status::Pending)
            })
            .collect();
        let slots = match self.recorder.claiming(intents).await {
            Ok(slots) => slots,
            Err(e) => return actions.iter().map(|_| (None, Err(e.clone()))).collect(),
        };
        // Items another live process holds are left out of the request; the rest go in one.
        // Per item: its intent's seq, and what it came to.
        type Settled = (Option<i64>, Option<Result<Value, ApiError>>);
        let mut results: Vec<Settled> = vec![(None, None); actions.len()];
        let (mut claimed, mut seqs, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (action, slot)) in actions.iter().zip(slots).enumerate() {
            match slot {
                Ok(seq) => {
                    claimed.push(action.clone());
                    seqs.push(seq);
                    at.push(i);
                    results[i].0 = Some(seq);
                }
                Err(busy) => results[i].1 = Some(Err(self.recorder.busy(conn, action, busy).await)),
            }
        }
        let outcomes = self.send_batch_recorded(conn, op, &claimed, &seqs).await;
        for (i, outcome) in at.into_iter().zip(outcomes) {
            results[i].1 = Some(outcome);
        }
        results.into_iter().map(|(seq, r)| (seq, r.unwrap_or_else(|| Err(unrecorded())))).collect()
    }

    /// The request and outcomes of a batch whose intents are durable.
    pub(super) async fn send_batch_recorded(
        &self,
        conn: &Connection,
        op: Op,
        actions: &[Action],
        seqs: &[i64],
    ) -> Vec<Result<Value, ApiError>> {
        if actions.is_empty() {
            return Vec::new();
        }
        if self.interrupt.is_raised() {
            let cancelled =
                ApiError::new(ErrorKind::Cancelled, format!("{} before it was sent", self.interrupt.reason()));
            let outcomes = actions.iter().map(|_| Err(cancelled.clone())).collect::<Vec<_>>();
            self.recorder.outcomes(conn, op, (actions, seqs), &outcomes, 0);
            return outcomes;
        }
        failpoint("after_intent_commit");
        let started = Instant::now();
        let mut outcomes = conn.backend.execute_batch(op, actions).await;
        failpoint("after_response_before_outcome");
        // One outcome per action, whatever the backend returned: a missing one is a failure, never a lost row.
        outcomes.resize_with(actions.len(), || {
            Err(ApiError::invalid("the service's bulk answer did not mention this item"))
        });
        // A bulk request whose answer was lost may have been applied: each item in doubt is read, as a single
        // change would be, and counts as done if it is in place (sent again, singly, only if it is not).
        let settled: Vec<(usize, Result<Value, ApiError>)> = stream::iter(
            outcomes
                .iter()
                .enumerate()
                .filter(|(_, r)| self.in_doubt(r))
                .map(|(i, r)| (i, r.clone()))
                .collect::<Vec<_>>(),
        )
        .map(|(i, r)| async move { (i, self.reconcile(conn, &actions[i], r).await) })
        .buffer_unordered(conn.concurrency.max(1))
        .collect()
        .await;
        for (i, r) in settled {
            outcomes[i] = r;
        }
        // Those still in doubt keep their intents open (see `send_recorded`); the rest get their outcome.
        let (mut done, mut done_seqs, mut done_outcomes) = (Vec::new(), Vec::new(), Vec::new());
        for ((action, seq), outcome) in actions.iter().zip(seqs).zip(&outcomes) {
            if !matches!(outcome, Err(e) if e.kind == ErrorKind::InDoubt) {
                done.push(action.clone());
                done_seqs.push(*seq);
                done_outcomes.push(outcome.clone());
            }
        }
        self.recorder.outcomes(conn, op, (&done, &done_seqs), &done_outcomes, started.elapsed().as_millis() as i64);
        outcomes
    }

    /// The action with what undoing it will need: the backend's own reading of the target (`prepare`), and for
    /// an unsuspend, what steward recorded when it suspended the target (TransactionLink's previous role).
    pub(super) async fn prepared(&self, conn: &Connection, action: &Action) -> Result<Action, ApiError> {
        let mut action = action.clone();
        let mut extra = serde_json::Map::new();
        if action.op == Op::Unsuspend && action.params.get("role").is_none() {
            if let Some(Value::Object(prev)) =
                self.recorder.earlier_params(conn, Op::Suspend, action.target.as_deref())?
            {
                extra.extend(prev.into_iter().filter(|(k, _)| k.starts_with("previous_")));
            }
        }
        if let Some(Value::Object(more)) = self.unless_stopped(conn.backend.prepare(&action)).await? {
            extra.extend(more);
        }
        if !extra.is_empty() {
            if !action.params.is_object() {
                action.params = json!({});
            }
            if let Some(p) = action.params.as_object_mut() {
                for (k, v) in extra {
                    p.entry(k).or_insert(v);
                }
            }
        }
        Ok(action)
    }
}

/// The pause before a change is sent again after a read found it not in place. The first goes right away: the
/// read was just answered, so the service is taking requests, and a pause here holds up the item for nothing.
/// Later ones wait longer each time (250 ms, 500 ms, 1 s) for a service that keeps failing that one change.
fn resend_pause(attempt: u32) -> std::time::Duration {
    match attempt {
        0 => std::time::Duration::ZERO,
        n => std::time::Duration::from_millis(250 << (n - 1).min(8)),
    }
}

/// A change whose answer was lost (`lost`) and whose settling read failed (`read`): in doubt, said why.
fn left_in_doubt(lost: &ApiError, read: &ApiError) -> ApiError {
    ApiError::new(
        ErrorKind::InDoubt,
        format!(
            "the answer was lost ({}) and the read that would settle it failed too ({}): it may have been applied; left open for `steward run … --resume` to read and settle",
            lost.message, read.message
        ),
    )
}

/// What a change stopped in flight comes to (see `ErrorKind::InDoubt`).
pub(super) fn in_doubt(reason: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InDoubt,
        format!(
            "{reason} while the request was in flight: it may have been applied; the audit log keeps it in doubt and `steward resume` reads the account and settles it"
        ),
    )
}
