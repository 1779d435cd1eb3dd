//! Streaming reads: a listing read a few pages ahead of the script, so memory holds a page or two whatever the
//! number of users. The same checks as any read before it starts; one audit record when it ends.

use super::{ActionError, Connection, Dispatcher};
use crate::backends::{unsupported, Action, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use crate::http::Hold;
use futures::StreamExt;
use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How many pages a walk reads ahead of the script.
pub const PAGES_READ_AHEAD: usize = 4;

/// One page of users, or why the listing stopped.
pub type UserPage = Result<Vec<crate::backends::model::User>, ActionError>;

impl Dispatcher {
    /// Starts reading the users `filter` asks for, a few pages ahead of whoever takes them from the receiver:
    /// pages in order, then the end (or one error, then the end). Dropping the receiver stops the reading.
    /// `hold`: whether the reader keeps them all (`list_users`) or walks them (`users()`).
    pub fn stream_users(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        conn: Arc<Connection>,
        filter: Value,
        hold: Hold,
    ) -> Result<mpsc::Receiver<UserPage>, Box<ActionError>> {
        let action = Action::new(Op::ListUsers, None, filter);
        let fail = |e: ApiError| Box::new(ActionError::from_api(e, &conn, &action));
        self.refuse_when_stopped().map_err(fail)?;
        if !conn.backend.supported().contains(&Op::ListUsers) {
            return Err(fail(unsupported(conn.backend.as_ref(), Op::ListUsers)));
        }
        // Room for a few pages: fetching stays ahead of the reader, memory stays flat, and the two hand over
        // pages without waking each other for every one (4 against 1: a fifth less time for a walk).
        let (tx, rx) = mpsc::channel(PAGES_READ_AHEAD);
        let this = self.clone();
        let open = self.streams.open();
        runtime.spawn(async move {
            let _open = open;
            let started = Instant::now();
            let mut failure = None;
            // Whether the walk ended because its reader left (a `break`, or the script stopped), not at its end.
            let mut left = true;
            {
                let mut pages = conn.backend.users(&action.params, hold);
                while let Ok(room) = tx.reserve().await {
                    // The stop first: a page polled after it would ask for the next.
                    let next = tokio::select! {
                        biased;
                        _ = this.interrupt.raised() => {
                            Some(Err(ApiError::new(ErrorKind::Cancelled, this.interrupt.reason())))
                        }
                        // The reader left (a `break`, the script's end): the page in flight is not needed.
                        _ = tx.closed() => None,
                        page = pages.next() => {
                            left = page.is_some();
                            page
                        }
                    };
                    match next {
                        Some(Ok(users)) => room.send(Ok(users)),
                        Some(Err(e)) => {
                            room.send(Err(ActionError::from_api(e.clone(), &conn, &action)));
                            failure = Some(e);
                            break;
                        }
                        None => break,
                    }
                }
            }
            // A reader that left because the run was stopped (Ctrl-C, `--timeout`) did not get the whole listing:
            // on record as stopped, never as a walk that ended well.
            if left && failure.is_none() && this.interrupt.is_raised() {
                failure = Some(ApiError::new(ErrorKind::Cancelled, this.interrupt.reason()));
            }
            this.recorder.read_done(&conn, &action, started, failure.as_ref()).await;
        });
        Ok(rx)
    }
}

/// How many listings are reading in the background, so the run's end can wait for their records.
#[derive(Default)]
pub struct OpenStreams {
    count: Mutex<usize>,
    ended: Condvar,
}

/// Held by a listing's task while it runs.
pub struct OpenStream(Arc<OpenStreams>);

impl OpenStreams {
    fn open(self: &Arc<Self>) -> OpenStream {
        *self.count.lock() += 1;
        OpenStream(self.clone())
    }

    /// Waits, at most `limit`, until every listing has ended and recorded itself.
    pub fn wait(&self, limit: Duration) {
        let mut count = self.count.lock();
        let _ = self.ended.wait_while_for(&mut count, |n| *n > 0, limit);
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        *self.0.count.lock() -= 1;
        self.0.ended.notify_all();
    }
}
