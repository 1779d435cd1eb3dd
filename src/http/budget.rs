//! `RateBudget`: one request budget per service instance, shared by every worker that talks to it.
//!
//! It spaces requests to stay under the profile's `rate_limit`, and when the server says "slow down" it pauses
//! every worker, not only the one that was told. Deadlines use tokio's monotonic clock.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateBudget {
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
}

impl RateBudget {
    /// `per_second` = None or 0 means no client-side limit.
    pub fn new(per_second: Option<f64>) -> Self {
        let interval = per_second.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
        RateBudget { interval, next_slot: Mutex::new(Instant::now()) }
    }

    /// Waits until this request may be sent.
    pub async fn acquire(&self) {
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

    /// Nobody sends anything for `wait`.
    pub fn pause_all(&self, wait: Duration) {
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + wait;
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
        let budget = RateBudget::new(Some(10.0));
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_the_next_request() {
        let budget = RateBudget::new(None);
        budget.pause_all(Duration::from_secs(2));
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
