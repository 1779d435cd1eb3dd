//! `RateBudget`: one request budget per service instance, shared by every worker that talks to it.
//!
//! It spaces requests to stay under the profile's `rate_limit`, bounds how many are in flight, and when the
//! server says "slow down" it pauses every worker, not only the one that was told; a limit hit without a stated
//! wait also halves how many requests may be in flight (AIMD, as GitHub's secondary limits call for).
//!
//! A server that limits without saying its rate is learned: at a rate-limit answer the budget takes the rate
//! the server accepted over the last seconds (the pause it asked for included) as the pace, a little under it,
//! and probes upward 1 % a second while no limit is hit. So a job provokes a few limit answers, not one per
//! burst, and still uses nearly all the server allows. A configured `rate_limit` stays the ceiling.
//! Deadlines use tokio's monotonic clock.
//!
//! In team mode the turns are shared (`SharedTurns`): every process acting on one service instance takes its
//! turns from one schedule, and a pause one of them is told of holds them all, so together they keep to the
//! instance's rate.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// How far back the accepted rate is measured.
const WINDOW: Duration = Duration::from_secs(10);
/// The pace is set this far under the rate the server was seen to accept.
const UNDER: f64 = 0.95;
/// How fast the pace probes upward while no limit is hit: per second, compounded.
const PROBE_PER_SECOND: f64 = 1.01;
/// A limit answer teaches a rate only after this many accepted answers in a row: the limits that follow a
/// run of accepted requests are a rate's; those that come among failures (a storm, the rest of one wave of
/// requests in flight) are not, and learning from them would spiral the pace down to nothing.
const EVIDENCE: usize = 20;

/// Builds the shared turns of the service instance at a base URL (a team log's database keeps them: `turns`).
pub type TurnsFactory = std::sync::Arc<dyn Fn(&url::Url) -> std::sync::Arc<dyn SharedTurns> + Send + Sync>;

/// Why the team's shared schedule could not be read or written (its keeper's error, which this layer does not
/// know, kept as the cause).
#[derive(Debug, thiserror::Error)]
pub enum TurnsError {
    #[error("cannot reach the team's database: {0}")]
    Unreachable(Box<dyn std::error::Error + Send + Sync>),
    #[error("the team's rate row: {0}")]
    Row(Box<dyn std::error::Error + Send + Sync>),
}

/// A schedule of turns shared with the other processes acting on the same service instance.
#[async_trait::async_trait]
pub trait SharedTurns: Send + Sync + std::fmt::Debug {
    /// Reserves this process's next turn, `spacing` after the turn before it in the shared schedule (zero: no
    /// spacing, only a pause anyone set); how long from now it comes.
    async fn take(&self, spacing: Duration) -> Result<Duration, TurnsError>;
    /// Nobody, in any process, sends for `wait`.
    async fn pause(&self, wait: Duration) -> Result<(), TurnsError>;
}

#[derive(Debug)]
pub struct RateBudget {
    interval: Option<Duration>,
    shared: Option<std::sync::Arc<dyn SharedTurns>>,
    /// Said once: the shared schedule could not be read.
    shared_failed: std::sync::atomic::AtomicBool,
    next_slot: Mutex<Instant>,
    /// Until when the server asked everyone to wait: a turn reserved before the pause and due inside it waits
    /// for its end too.
    paused_until: Mutex<Instant>,
    in_flight: Semaphore,
    width: AtomicUsize,
    learned: Mutex<Learned>,
}

/// What the server's answers taught about its rate.
#[derive(Debug, Default)]
struct Learned {
    /// When each accepted answer of the last `WINDOW` came in.
    accepted: VecDeque<Instant>,
    first_answer: Option<Instant>,
    /// Accepted answers since the last limit answer.
    streak: usize,
    /// The pace set at the last limit answer, and when.
    pace: Option<(f64, Instant)>,
}

impl Learned {
    /// The pace now: the one set, raised by the probing since.
    fn rate(&self, now: Instant) -> Option<f64> {
        let (base, since) = self.pace?;
        Some(base * PROBE_PER_SECOND.powf(now.saturating_duration_since(since).as_secs_f64()))
    }

    fn forget_before(&mut self, now: Instant) {
        while self.accepted.front().is_some_and(|t| now.saturating_duration_since(*t) > WINDOW) {
            self.accepted.pop_front();
        }
    }
}

impl RateBudget {
    /// `per_second` = None or 0 means no client-side limit; `concurrency` bounds requests in flight.
    pub fn new(per_second: Option<f64>, concurrency: usize) -> Self {
        let interval = per_second.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
        let width = concurrency.max(1);
        RateBudget {
            interval,
            shared: None,
            shared_failed: std::sync::atomic::AtomicBool::new(false),
            next_slot: Mutex::new(Instant::now()),
            paused_until: Mutex::new(Instant::now()),
            in_flight: Semaphore::new(width),
            width: AtomicUsize::new(width),
            learned: Mutex::new(Learned::default()),
        }
    }

    /// Told of every answer: accepted, or a rate limit (with the wait the server asked for, if it said).
    pub fn answered(&self, rate_limited: bool, stated_wait: Option<Duration>) {
        let now = Instant::now();
        let mut learned = self.learned.lock();
        let first = *learned.first_answer.get_or_insert(now);
        learned.forget_before(now);
        if !rate_limited {
            learned.accepted.push_back(now);
            learned.streak += 1;
            return;
        }
        if std::mem::take(&mut learned.streak) < EVIDENCE {
            return;
        }
        // What the server let through over the window, spread over the window and the pause it asks for.
        let seen = now.saturating_duration_since(first).min(WINDOW);
        let span = seen + stated_wait.unwrap_or(Duration::from_secs(1)).min(WINDOW);
        let accepted_rate = learned.accepted.len() as f64 / span.as_secs_f64().max(0.001);
        let pace = learned.rate(now).map_or(accepted_rate, |r| r.min(accepted_rate)) * UNDER;
        learned.pace = Some((pace.max(0.1), now));
        tracing::info!(rate = format!("{pace:.1}/s"), "rate limited: pacing requests under what the server accepted");
    }

    /// The same budget, its turns taken from a schedule shared with other processes.
    pub fn shared(mut self, turns: std::sync::Arc<dyn SharedTurns>) -> Self {
        self.shared = Some(turns);
        self
    }

    /// The pace learned from the server, if it has limited this run (for tests and reports).
    pub fn learned_rate(&self) -> Option<f64> {
        self.learned.lock().rate(Instant::now())
    }

    /// The spacing between requests now: the configured one, or the learned pace where that is slower.
    fn spacing(&self, now: Instant) -> Duration {
        let learned = self.learned.lock().rate(now);
        let learned = learned.map(|r| Duration::from_secs_f64(1.0 / r)).unwrap_or(Duration::ZERO);
        self.interval.unwrap_or(Duration::ZERO).max(learned)
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
        let (mut slot, spacing) = {
            let now = Instant::now();
            let spacing = self.spacing(now);
            let mut next = self.next_slot.lock();
            let slot = (*next).max(now);
            *next = slot + spacing;
            (slot, spacing)
        };
        if let Some(shared) = &self.shared {
            match shared.take(spacing).await {
                Ok(wait) => slot = slot.max(Instant::now() + wait),
                // The team's schedule out of reach: this process keeps its own pace (and its audit log, on the
                // same server, stops it sending anyway).
                Err(e) if !self.shared_failed.swap(true, Ordering::SeqCst) => {
                    tracing::warn!("the shared rate budget cannot be read (this process keeps its own pace): {e}")
                }
                Err(_) => {}
            }
        }
        // A timer, even one already due, fires on the next millisecond tick: skip it when no wait is needed.
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
        // The turn came; a pause set meanwhile holds it too (nothing is sent inside a pause the server asked for).
        loop {
            let until = *self.paused_until.lock();
            if until <= Instant::now() {
                break;
            }
            tokio::time::sleep_until(until).await;
        }
    }

    /// How long until anyone may send again (zero when nobody waits).
    pub fn paused_for(&self) -> Duration {
        self.next_slot.lock().saturating_duration_since(Instant::now())
    }

    /// Nobody sends anything for `wait` (in team mode, in no process).
    pub async fn pause_all(&self, wait: Duration) {
        {
            let mut next = self.next_slot.lock();
            let Some(until) = Instant::now().checked_add(wait) else { return };
            if until > *next {
                *next = until;
            }
            let mut paused = self.paused_until.lock();
            if until > *paused {
                *paused = until;
            }
        }
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.pause(wait).await {
                tracing::warn!("the pause could not be shared with the team: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turn reserved before a pause, and due inside it, is held to the pause's end.
    #[tokio::test(start_paused = true)]
    async fn a_turn_reserved_before_a_pause_waits_for_its_end() {
        let budget = std::sync::Arc::new(RateBudget::new(Some(10.0), 4));
        let start = Instant::now();
        budget.acquire().await;
        // The next turn is at 100 ms; a pause of 1 s is asked for at 50 ms, while it waits.
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let _permit = budget.acquire().await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        budget.pause_all(Duration::from_secs(1)).await;
        let sent_at = waiting.await.unwrap();
        assert!(sent_at >= start + Duration::from_millis(1050), "sent {:?} after the start", sent_at - start);
    }

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
    async fn a_limit_sets_the_pace_under_what_the_server_accepted_then_probes_upward() {
        let budget = RateBudget::new(None, 4);
        // 50 accepted in the first second, then a limit asking for a second's pause: 50 over 2 s is 25/s.
        for _ in 0..50 {
            budget.answered(false, None);
            tokio::time::advance(Duration::from_millis(20)).await;
        }
        assert_eq!(budget.learned_rate(), None, "nothing learned before a limit");
        budget.answered(true, Some(Duration::from_secs(1)));
        let pace = budget.learned_rate().expect("a pace");
        assert!((pace - 25.0 * UNDER).abs() < 0.5, "{pace}");
        // The limit answers of the other requests in flight teach nothing more.
        budget.answered(true, Some(Duration::from_secs(1)));
        assert_eq!(budget.learned_rate(), Some(pace));
        // Requests are spaced at that pace.
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        let spent = start.elapsed().as_secs_f64();
        assert!((spent - 4.0 / pace).abs() < 0.02, "{spent}");
        // Ten seconds without a limit: about 10 % faster.
        tokio::time::advance(Duration::from_secs(10)).await;
        let probed = budget.learned_rate().expect("a pace");
        assert!((probed / pace - 1.01f64.powi(10)).abs() < 0.01, "{probed} vs {pace}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_configured_rate_stays_the_ceiling() {
        let budget = RateBudget::new(Some(10.0), 4);
        for _ in 0..100 {
            budget.answered(false, None);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        budget.answered(true, Some(Duration::from_secs(1)));
        assert!(budget.learned_rate().expect("learned") > 10.0);
        let start = Instant::now();
        for _ in 0..3 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(200), "10/s configured is slower than what was learned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_the_next_request() {
        let budget = RateBudget::new(None, 4);
        budget.pause_all(Duration::from_secs(2)).await;
        let start = Instant::now();
        budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
