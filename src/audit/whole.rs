//! The whole chain, verified once per process, in the background: the pre-write check (the checkpoint and the
//! rows after it, `known.rs`) stays cheap however long the log is, and an edit anywhere before the checkpoint still
//! stops every action once this finds it. On a log of up to `WAIT_UP_TO_ROWS` events (about a second to read)
//! the first write waits for the verdict, so no action goes out on a broken log; on a longer one, writes go on
//! while it reads and stop when it finds a break.

use super::{AuditStore, AuditTarget};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;

/// Up to this many events, the first write waits for the whole chain's verdict (`audit verify` reads about
/// 300,000 a second from SQLite: BENCHMARKS.md).
pub const WAIT_UP_TO_ROWS: i64 = 250_000;

pub struct WholeCheck {
    verdict: Mutex<Option<Result<(), String>>>,
    done: Condvar,
    wait: bool,
}

impl WholeCheck {
    /// Starts verifying the log at `target`, whose head is at `head`, on a thread and a connection of its own.
    pub fn start(target: &AuditTarget, head: i64) -> Arc<WholeCheck> {
        let check =
            Arc::new(WholeCheck { verdict: Mutex::new(None), done: Condvar::new(), wait: head <= WAIT_UP_TO_ROWS });
        let (me, target) = (check.clone(), target.clone());
        let started = std::thread::Builder::new().name("steward-verify".into()).spawn(move || {
            let checked = AuditStore::open_target(&target).and_then(|s| Ok((s.damage()?, s.verify()?)));
            let verdict = match checked {
                Ok((Some(damage), _)) => Err(damage),
                Ok((None, v)) => v.first_break.map_or(Ok(()), |b| Err(format!("the chain breaks at seq {}", b.seq()))),
                // Unreadable here says nothing the writer will not find itself.
                Err(e) => {
                    tracing::warn!("could not verify the whole audit log: {e}");
                    Ok(())
                }
            };
            *me.verdict.lock() = Some(verdict);
            me.done.notify_all();
        });
        if started.is_err() {
            *check.verdict.lock() = Some(Ok(()));
        }
        check
    }

    /// What stands in the way of a write: a break found anywhere in the chain. On a short log, waits for the
    /// verdict.
    pub fn before_write(&self) -> Result<(), String> {
        let mut verdict = self.verdict.lock();
        while self.wait && verdict.is_none() {
            self.done.wait(&mut verdict);
        }
        match &*verdict {
            Some(Err(problem)) => Err(problem.clone()),
            _ => Ok(()),
        }
    }
}
