//! Stopping as a value: set by Ctrl-C or by a budget that ran out (`--timeout`), polled by the script engine,
//! awaited by requests in flight, so a stop acts inside a call as well as between operations.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    raised: AtomicBool,
    notify: Notify,
    /// Why, when it was not Ctrl-C (a budget ran out).
    why: Mutex<Option<String>>,
    /// Until when a stopped script may still finish its bookkeeping (see `grant_grace`).
    grace_until: Mutex<Option<std::time::Instant>>,
}

impl Interrupt {
    /// Ctrl-C.
    pub fn raise(&self) {
        self.inner.raised.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// A budget ran out: stop, saying why.
    pub fn stop(&self, why: String) {
        *self.inner.why.lock() = Some(why);
        self.raise();
    }

    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::SeqCst)
    }

    /// Raised by Ctrl-C (exit code 130), not by a budget (a script error).
    pub fn by_ctrl_c(&self) -> bool {
        self.is_raised() && self.inner.why.lock().is_none()
    }

    /// What stopped the run, in words for messages and the audit log.
    pub fn reason(&self) -> String {
        let why = self.inner.why.lock().clone();
        why.unwrap_or_else(|| "cancelled by Ctrl-C".to_string())
    }

    /// A bulk job returned its results after the stop: the script may go on for `how_long` to write them down
    /// (a results CSV, a summary). Nothing more is sent in that time (dispatch refuses every action once the
    /// run is stopped); a second Ctrl-C still ends the process at once.
    pub fn grant_grace(&self, how_long: std::time::Duration) {
        *self.inner.grace_until.lock() = Some(std::time::Instant::now() + how_long);
    }

    /// Whether a stopped script is still within its grace (see `grant_grace`).
    pub fn in_grace(&self) -> bool {
        let until = *self.inner.grace_until.lock();
        until.is_some_and(|u| std::time::Instant::now() < u)
    }

    /// Clears the flag before the REPL runs its next line.
    pub fn reset(&self) {
        *self.inner.grace_until.lock() = None;
        *self.inner.why.lock() = None;
        self.inner.raised.store(false, Ordering::SeqCst);
    }

    /// Resolves once `raise` has been called.
    pub async fn raised(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Register before checking the flag so a raise in between is not missed.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }

    /// Routes SIGINT here. A second Ctrl-C while the first is still being handled exits at once.
    pub fn install_handler(&self) {
        let me = self.clone();
        let _ = ctrlc::set_handler(move || {
            if me.is_raised() {
                std::process::exit(130);
            }
            me.raise();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raise_wakes_a_waiter() {
        let i = Interrupt::default();
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.raised().await }
        });
        tokio::task::yield_now().await;
        i.raise();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        i.reset();
        assert!(!i.is_raised());
    }
}
