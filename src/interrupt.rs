//! Ctrl-C as a value: set by the signal handler, polled by the script engine, awaited by requests in flight.

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
}

impl Interrupt {
    pub fn raise(&self) {
        self.inner.raised.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::SeqCst)
    }

    /// Clears the flag before the REPL runs its next line.
    pub fn reset(&self) {
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
