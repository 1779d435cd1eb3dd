//! A resumed job meets what its earlier runs left in flight (an intent with no outcome: killed, or stopped with
//! the request on its way): each is settled once, against its intent, by the state this run reads of the
//! account. One function for the single call and the bulk job.

use super::{Connection, Dispatcher};
use crate::audit::vocab::Status;
use crate::audit::Event;
use crate::backends::model::Account;
use crate::backends::Op;
use crate::http::error::ApiError;
use serde_json::Value;
use std::sync::Arc;

pub(crate) const SETTLED_APPLIED: &str = "settled at resume: the change had been applied (its answer was lost)";
pub(crate) const SETTLED_RESENT: &str = "settled at resume: it had not been applied; this run sends it";

/// What an earlier run's open intent on an account came to.
pub(super) struct Settled {
    /// The outcome row for the earlier intent, and the restore a timed change schedules (none when this run
    /// settled it already).
    pub event: Vec<Event>,
    /// The account's state as read for it.
    pub state: Option<bool>,
    /// The service cannot show whether it was applied: the change is not sent again blind.
    pub hold_back: Option<String>,
}

impl Dispatcher {
    /// Why the change is held back, when an earlier resume of this job settled it `unknown` (the service cannot
    /// show whether it was applied): it is not sent again blind.
    pub(super) fn settled_unknown(
        &self,
        conn: &Connection,
        op: Op,
        account: &Account,
        params: &Value,
    ) -> Option<String> {
        let key = (conn.profile.clone(), op.name().to_string(), crate::audit::query::item_key(&account.id, params));
        self.earlier.unknown.get(&key).map(|run| {
            format!(
                "run {run} settled it unknown ({} cannot show whether the earlier {} of {} was applied); not sent again (check the account on the service)",
                conn.profile,
                op.name(),
                account.describe()
            )
        })
    }

    /// Settles the intent an earlier run of this job left open for `op` on `account`, if there is one, by its
    /// state: `read` when this run read it already (`Some(None)`: the service cannot show it), else read here.
    /// Applied (`ok`, so the job's undo reverses it), not applied (`cancelled`, and this run sends it), or
    /// unknowable (`unknown`, said so, not sent again). `params`: the action as this run addresses it.
    pub(super) async fn settle_earlier(
        &self,
        conn: &Connection,
        (op, account, params): (Op, &Account, &Value),
        read: Option<Option<bool>>,
    ) -> Option<Settled> {
        let key = (conn.profile.clone(), op.name().to_string(), crate::audit::query::item_key(&account.id, params));
        let seq = *self.earlier.open.get(&key)?;
        let state = match read {
            Some(state) => state,
            None => self.unless_stopped(conn.backend.state_of(op, account, params)).await.ok().flatten(),
        };
        let (status, why, hold_back) = match state {
            Some(true) => (Status::Ok, SETTLED_APPLIED.to_string(), None),
            Some(false) => (Status::Cancelled, SETTLED_RESENT.to_string(), None),
            None => {
                let why = format!(
                    "settled at resume: {} cannot show whether the earlier {} of {} was applied; not sent again (check the account on the service)",
                    conn.profile,
                    op.name(),
                    account.describe()
                );
                (Status::Unknown, why.clone(), Some(why))
            }
        };
        let event = self.recorder.settle_once(conn, (op, &account.address, params, seq), status, &why);
        Some(Settled { event, state, hold_back })
    }

    /// At the end of a resumed run: each intent the job's earlier runs left open that this run did not meet (its
    /// script took another path, seeing the change in place) is settled by reading the account now (`connect`
    /// gives the profile's connection), or `unknown` where it cannot be read; so a resume leaves nothing pending.
    pub async fn settle_the_rest(&self, connect: &dyn Fn(&str) -> Option<Arc<Connection>>) -> Result<usize, ApiError> {
        let mut events = Vec::new();
        for ((profile, op_name, _), seq) in &self.earlier.open {
            if self.recorder.is_settled(*seq) {
                continue;
            }
            let (Some(op), Some(intent)) = (Op::from_name(op_name), self.recorder.earlier_event(*seq)?) else {
                continue;
            };
            let params: Value = serde_json::from_str(&intent.params).unwrap_or(Value::Null);
            let conn = connect(profile);
            let state = match &conn {
                Some(c) => self.unless_stopped(c.backend.state(op, &intent.target, &params)).await.ok().flatten(),
                None => None,
            };
            let (status, why) = match state {
                Some(true) => (Status::Ok, SETTLED_APPLIED.to_string()),
                Some(false) => {
                    (Status::Cancelled, "settled at resume: it had not been applied, and this run's script did not ask for it again".to_string())
                }
                None => (
                    Status::Unknown,
                    format!(
                        "settled at resume: this run's script did not reach it and {profile} could not show whether it was applied; check {} on the service",
                        intent.target
                    ),
                ),
            };
            let Some(conn) = conn else {
                events.push(self.recorder.settle_without_connection(&intent, status, &why));
                continue;
            };
            events.extend(self.recorder.settle_once(&conn, (op, &intent.target, &params, *seq), status, &why));
        }
        let settled = events.len();
        self.recorder.record(events).await?;
        Ok(settled)
    }
}
