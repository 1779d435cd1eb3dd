//! `RateBudget`: one request budget per service instance, shared by every worker that talks to it.
//!
//! It spaces requests to stay under the profile's `rate_limit`, bounds how many are in flight, and when the
//! server says "slow down" it pauses every worker, not only the one that was told; a limit hit without a stated
//! wait also halves how many requests may be in flight (AIMD, as GitHub's secondary limits call for).
//! Deadlines use tokio's monotonic clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateBudget {
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
    in_flight: Semaphore,
    width: AtomicUsize,
}

impl RateBudget {
    /// `per_second` = None or 0 means no client-side limit; `concurrency` bounds requests in flight.
    pub fn new(per_second: Option<f64>, concurrency: usize) -> Self {
        let interval = per_second.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
        let width = concurrency.max(1);
        RateBudget {
            interval,
            next_slot: Mutex::new(Instant::now()),
            in_flight: Semaphore::new(width),
            width: AtomicUsize::new(width),
        }
    }

    /// Waits for a free slot in flight and for this request's turn; hold the permit until the answer is in.
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.in_flight.acquire().await.ok();
        self.wait_turn().await;
        permit
    }

    /// How many requests may be in flight now.
    pub fn width(&self) -> usize {
        self.width.load(Ordering::SeqCst)
    }

    /// Halves how many requests may be in flight (never below one).
    pub fn halve(&self) {
        let width = self.width.load(Ordering::SeqCst);
        let drop = width / 2;
        if drop > 0 && self.width.compare_exchange(width, width - drop, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.in_flight.forget_permits(drop);
        }
    }

    async fn wait_turn(&self) {
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval.unwrap_or(Duration::ZERO);
            slot
        };
        // A timer, even one already due, fires on the next millisecond tick: skip it when no wait is needed.
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// How long until anyone may send again (zero when nobody waits).
    pub fn paused_for(&self) -> Duration {
        self.next_slot.lock().unwrap_or_else(|e| e.into_inner()).saturating_duration_since(Instant::now())
    }

    /// Nobody sends anything for `wait`.
    pub fn pause_all(&self, wait: Duration) {
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(until) = Instant::now().checked_add(wait) else { return };
        if until > *next {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_at_the_configured_rate() {
        let budget = RateBudget::new(Some(10.0), 4);
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test]
    async fn halving_shrinks_how_many_may_be_in_flight() {
        let budget = RateBudget::new(None, 8);
        budget.halve();
        assert_eq!(budget.width(), 4);
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| budget.acquire())).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), budget.acquire()).await.is_err(),
            "a fifth slot opened"
        );
        drop(held);
        budget.halve();
        budget.halve();
        budget.halve();
        assert_eq!(budget.width(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_the_next_request() {
        let budget = RateBudget::new(None, 4);
        budget.pause_all(Duration::from_secs(2));
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
