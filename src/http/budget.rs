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
//!
//! Not every limit answer is about the rate: a flaky proxy, or limits a server sends whatever the pace, come
//! as often at any pace. Each cut is therefore on trial: if, over the next answers, limits come about as often
//! at the lower pace as before it, they were noise: the pace goes back to what it was and their share is
//! remembered, so later limits at about that share cut nothing (their pauses are still served). Limits that
//! come in a burst are always a rate's.
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

/// How many of the latest answers are looked at to tell a burst of limit answers from isolated ones.
const RECENT: u32 = 64;
/// A share of limit answers among the recent ones at which they are a burst: a rate's, whatever was learned.
const BURST_SHARE: f64 = 0.2;
/// Limit answers within this many times the noise share (plus one) are taken as noise.
const NOISE_MARGIN: f64 = 2.0;
/// Answers counted after a cut (past those already in flight when it was made) to judge it.
const TRIAL_ANSWERS: u32 = 100;

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
    /// The configured concurrency: a halved width grows back to it, one more per `width` accepted answers.
    most: usize,
    /// Accepted answers since the width last grew or was halved.
    grow_credit: AtomicUsize,
    /// Permits a halving could not take at once (they were in use): taken as they come back.
    owed: AtomicUsize,
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
    /// The latest `RECENT` answers, one bit each (set: a limit answer), the newest lowest.
    recent: u64,
    /// The last cut, while it is on trial.
    trial: Option<Trial>,
    /// The share of limit answers found not to depend on the pace; limits at about that share cut nothing.
    noise: f64,
}

/// A cut on trial: do limit answers come less often at the lower pace?
#[derive(Debug)]
struct Trial {
    /// The pace before the cut (none: unpaced) and how many requests could be in flight, gone back to if the
    /// limits were noise.
    before: Option<f64>,
    width_before: usize,
    /// The share of limit answers among the recent ones when the cut was made.
    share_before: f64,
    /// Answers still to pass over: requests sent before the cut, at the old pace.
    skip: usize,
    answers: u32,
    limits: u32,
}

impl Learned {
    /// The pace now: the one set, raised by the probing since.
    fn rate(&self, now: Instant) -> Option<f64> {
        let (base, since) = self.pace?;
        Some(base * PROBE_PER_SECOND.powf(now.saturating_duration_since(since).as_secs_f64()))
    }

    /// The share of limit answers among the recent ones.
    fn recent_share(&self) -> f64 {
        f64::from(self.recent.count_ones()) / f64::from(RECENT)
    }

    /// Whether the limit answers of late are about as common as those found not to depend on the pace.
    fn looks_like_noise(&self) -> bool {
        let share = self.recent_share();
        self.noise > 0.0 && share < BURST_SHARE && share <= self.noise * NOISE_MARGIN + 1.0 / f64::from(RECENT)
    }

    /// Counts one answer toward the cut on trial; once enough are in, limits that came about as often at the
    /// lower pace (and not in a burst) are judged noise: the pace goes back, and their share is remembered.
    /// The width to go back to, when they were.
    fn judge_trial(&mut self, limited: bool, now: Instant) -> Option<usize> {
        let trial = self.trial.as_mut()?;
        if trial.skip > 0 {
            trial.skip -= 1;
            return None;
        }
        trial.answers += 1;
        trial.limits += u32::from(limited);
        if trial.answers < TRIAL_ANSWERS {
            return None;
        }
        let share = f64::from(trial.limits) / f64::from(trial.answers);
        if trial.limits >= 2 && share >= trial.share_before / 2.0 && share < BURST_SHARE {
            self.noise = self.noise.max(share);
            self.pace = trial.before.map(|rate| (rate, now));
            tracing::info!(
                share = format!("{:.1} %", share * 100.0),
                "limit answers came as often at a lower pace: not about the rate; the pace is restored"
            );
            let width = trial.width_before;
            self.trial = None;
            return Some(width);
        }
        self.trial = None;
        None
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
            most: width,
            grow_credit: AtomicUsize::new(0),
            owed: AtomicUsize::new(0),
            learned: Mutex::new(Learned::default()),
        }
    }

    /// Told of every answer: accepted, or a rate limit (with the wait the server asked for, if it said).
    pub fn answered(&self, rate_limited: bool, stated_wait: Option<Duration>) {
        let now = Instant::now();
        let in_flight = self.width();
        let mut learned = self.learned.lock();
        let first = *learned.first_answer.get_or_insert(now);
        learned.forget_before(now);
        learned.recent = learned.recent << 1 | u64::from(rate_limited);
        if let Some(width) = learned.judge_trial(rate_limited, now) {
            self.widen(width.saturating_sub(self.width()));
        }
        if !rate_limited {
            learned.accepted.push_back(now);
            learned.streak += 1;
            drop(learned);
            self.grow();
            return;
        }
        if std::mem::take(&mut learned.streak) < EVIDENCE {
            return;
        }
        let share = learned.recent_share();
        let burst = share >= BURST_SHARE;
        if learned.looks_like_noise() {
            return;
        }
        // What the server let through over the window, spread over the window and the pause it asks for.
        let seen = now.saturating_duration_since(first).min(WINDOW);
        let span = seen + stated_wait.unwrap_or(Duration::from_secs(1)).min(WINDOW);
        let accepted_rate = learned.accepted.len() as f64 / span.as_secs_f64().max(0.001);
        let pace = learned.rate(now).map_or(accepted_rate, |r| r.min(accepted_rate)) * UNDER;
        if learned.trial.is_none() && !burst {
            let before = learned.rate(now);
            let trial =
                Trial { before, width_before: in_flight, share_before: share, skip: in_flight, answers: 0, limits: 0 };
            learned.trial = Some(trial);
        }
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
        let permit = loop {
            let permit = self.in_flight.acquire().await.ok()?;
            if self.owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| o.checked_sub(1)).is_ok() {
                permit.forget();
                continue;
            }
            break permit;
        };
        self.wait_turn().await;
        Some(permit)
    }

    /// How many requests may be in flight now.
    pub fn width(&self) -> usize {
        self.width.load(Ordering::SeqCst)
    }

    /// Halves how many requests may be in flight (never below one), unless the limit that asks for it is about
    /// as common as the limits found not to depend on the pace.
    pub fn halve(&self) {
        if self.learned.lock().looks_like_noise() {
            return;
        }
        let width = self.width.load(Ordering::SeqCst);
        let drop = width / 2;
        if drop > 0 && self.width.compare_exchange(width, width - drop, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            // Permits in use are forgotten as they come back (a width of 1 still lets the others finish).
            let forgotten = self.in_flight.forget_permits(drop);
            self.owed.fetch_add(drop - forgotten, Ordering::SeqCst);
            self.grow_credit.store(0, Ordering::SeqCst);
        }
    }

    /// One more request in flight per `width` accepted answers, back up to the configured concurrency (additive
    /// increase after a halving, so limits that were noise cost for a while, not for the rest of the job).
    fn grow(&self) {
        let width = self.width();
        if width >= self.most || self.grow_credit.fetch_add(1, Ordering::SeqCst) + 1 < width {
            return;
        }
        self.grow_credit.store(0, Ordering::SeqCst);
        self.widen(1);
    }

    /// `n` more requests in flight (never past the configured concurrency).
    fn widen(&self, n: usize) {
        let n = n.min(self.most.saturating_sub(self.width()));
        if n == 0 {
            return;
        }
        self.width.fetch_add(n, Ordering::SeqCst);
        // A permit still owed by a halving is forgiven before a new one is added (taken in one step: `acquire`
        // pays owed permits concurrently, and a load-then-subtract could wrap the count and starve every worker).
        let forgiven = match self.owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| Some(o - o.min(n))) {
            Ok(owed) | Err(owed) => owed.min(n),
        };
        self.in_flight.add_permits(n - forgiven);
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
        // Halved while every slot is in use: the slots are taken as they come back.
        budget.halve();
        assert_eq!(budget.width(), 2);
        drop(held);
        let held: Vec<_> = futures::future::join_all((0..2).map(|_| budget.acquire())).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), budget.acquire()).await.is_err(),
            "a third slot opened"
        );
        drop(held);
        budget.halve();
        budget.halve();
        assert_eq!(budget.width(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_halved_width_grows_back_one_slot_per_width_of_accepted_answers() {
        let budget = RateBudget::new(None, 8);
        budget.halve();
        budget.halve();
        assert_eq!(budget.width(), 2);
        answer(&budget, 2, 100.0, 0).await;
        assert_eq!(budget.width(), 3, "one more after two accepted answers");
        answer(&budget, 3 + 4 + 5 + 6 + 7, 100.0, 0).await;
        assert_eq!(budget.width(), 8, "back to the configured concurrency");
        answer(&budget, 100, 100.0, 0).await;
        assert_eq!(budget.width(), 8, "never past it");
        let held: Vec<_> = futures::future::join_all((0..8).map(|_| budget.acquire())).await;
        assert!(tokio::time::timeout(Duration::from_millis(50), budget.acquire()).await.is_err(), "a ninth slot");
        drop(held);
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

    /// Answers at `per_second`, one in `every` a limit asking for a second's pause (0: none); `n` of them.
    async fn answer(budget: &RateBudget, n: usize, per_second: f64, every: usize) {
        for i in 1..=n {
            let limited = every > 0 && i % every == 0;
            budget.answered(limited, limited.then_some(Duration::from_secs(1)));
            tokio::time::advance(Duration::from_secs_f64(1.0 / per_second)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limits_that_come_as_often_at_a_lower_pace_are_noise_and_the_pace_goes_back() {
        let budget = RateBudget::new(None, 4);
        // One answer in 25 is a limit, whatever the pace (a flaky proxy): the first one cuts the pace...
        answer(&budget, 25, 200.0, 25).await;
        let cut = budget.learned_rate().expect("a cut");
        assert!(cut < 200.0, "{cut}");
        // ...and at the lower pace they come as often: the cut is undone, and their share remembered.
        answer(&budget, 150, cut, 25).await;
        assert_eq!(budget.learned_rate(), None, "unpaced again, as before the cut");
        // Limits at that share cut nothing from now on, neither the pace nor how many may be in flight.
        answer(&budget, 500, 200.0, 25).await;
        assert_eq!(budget.learned_rate(), None);
        budget.halve();
        assert_eq!(budget.width(), 4);
        // A burst is a rate's, whatever was learned.
        answer(&budget, 40, 200.0, 0).await;
        answer(&budget, 30, 200.0, 2).await;
        answer(&budget, 21, 200.0, 0).await;
        budget.answered(true, Some(Duration::from_secs(1)));
        assert!(budget.learned_rate().is_some(), "a burst of limits sets a pace");
    }

    #[tokio::test(start_paused = true)]
    async fn limits_that_stop_at_the_lower_pace_were_the_rate_and_the_cut_stands() {
        let budget = RateBudget::new(None, 4);
        answer(&budget, 50, 50.0, 50).await;
        let cut = budget.learned_rate().expect("a cut");
        // Under the server's rate no limit comes: the cut stands (probing upward from it).
        answer(&budget, 150, cut, 0).await;
        let after = budget.learned_rate().expect("still paced");
        assert!(after >= cut && after < cut * 1.1, "{after} vs {cut}");
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
