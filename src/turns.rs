//! The team's shared rate budget: every process acting on one service instance takes its turns from one row of
//! the team log's database (`rate_turns`, keyed by the instance's base URL), so five machines running jobs
//! against one GHES together keep to its `rate_limit`, and a pause one of them is told of (a 429's wait) holds
//! them all. Times are the database server's clock, the one clock every machine shares.
//!
//! The row is advice, not a lock: any writer may update it, so a pause longer than any steward asks for (a rate
//! limit's longest wait) or a schedule running further ahead than that is ignored and reported, and a process
//! held by a pause reads the row again every second, so a pause lifted by hand frees it at once.

use crate::audit::team::PgTarget;
use crate::http::budget::{SharedTurns, TurnsError, TurnsFactory};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How far ahead one reservation reaches: a process takes this much of the schedule at once (fewer round trips
/// to the database), and no more (another process's pause is seen within it).
const BLOCK: Duration = Duration::from_millis(100);
/// Most turns one reservation takes.
const MOST_PER_BLOCK: u32 = 32;
/// How often a process with no pace of its own looks whether someone paused the instance.
const PAUSE_LOOK: Duration = Duration::from_millis(100);
/// The longest pause a steward asks of the others; a row asking more was not written by one.
const LONGEST_PAUSE: Duration = crate::http::retry::LONGEST_RATE_LIMIT_WAIT;
/// How far ahead of now the schedule can honestly run: the longest pause and the turns reserved behind it.
const LONGEST_AHEAD: Duration = Duration::from_secs(LONGEST_PAUSE.as_secs() + 60);
/// How often a process held by a pause reads the row again.
const RELOOK: Duration = Duration::from_secs(1);

/// The factory for a team log's database.
pub fn factory(target: Arc<PgTarget>) -> TurnsFactory {
    Arc::new(move |url: &url::Url| Arc::new(PgTurns::new(target.clone(), instance_key(url))) as Arc<dyn SharedTurns>)
}

/// The instance a base URL names, however it was written (case of the host, a trailing slash).
fn instance_key(url: &url::Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path().trim_end_matches('/'))
}

pub struct PgTurns {
    target: Arc<PgTarget>,
    instance: String,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Turns reserved and not used yet.
    reserved: Mutex<VecDeque<Instant>>,
    /// Until when the instance is paused, and when that was looked up.
    pause_seen: Mutex<Option<(Instant, Instant)>>,
    /// Said once: the row held a pause no steward asks for.
    implausible_said: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PgTurns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTurns({})", self.instance)
    }
}

const NOW_US: &str = "(SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us) n";

impl PgTurns {
    fn new(target: Arc<PgTarget>, instance: String) -> Self {
        PgTurns {
            target,
            instance,
            client: tokio::sync::Mutex::new(None),
            reserved: Mutex::new(VecDeque::new()),
            pause_seen: Mutex::new(None),
            implausible_said: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// One statement returning one BIGINT, on the connection (made, and its row made, on first use; made anew
    /// after a failure).
    async fn one(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<i64, TurnsError> {
        let mut client = self.client.lock().await;
        if client.is_none() {
            let c = self.target.connect_async().await.map_err(|e| TurnsError::Unreachable(e.into()))?;
            c.execute(
                "INSERT INTO rate_turns (instance) VALUES ($1) ON CONFLICT (instance) DO NOTHING",
                &[&self.instance],
            )
            .await
            .map_err(row_error)?;
            *client = Some(c);
        }
        let Some(c) = client.as_ref() else { return Err(TurnsError::Unreachable("no connection".into())) };
        match c.query_one(sql, params).await {
            Ok(row) => row.try_get::<_, i64>(0).map_err(row_error),
            Err(e) => {
                *client = None;
                Err(row_error(e))
            }
        }
    }

    /// Reserves `count` turns `spacing` apart from the shared schedule; the first one's delay from now. A schedule
    /// or a pause further ahead than a steward puts it is not built on.
    async fn reserve(&self, count: u32, spacing: Duration) -> Result<Duration, TurnsError> {
        let span = (spacing * count).as_micros() as i64;
        let sql = format!(
            "UPDATE rate_turns r SET next_at = GREATEST(
                 CASE WHEN r.next_at - n.now_us <= $3 THEN r.next_at ELSE 0 END,
                 CASE WHEN r.paused_until - n.now_us <= $4 THEN r.paused_until ELSE 0 END,
                 n.now_us) + $2
             FROM {NOW_US} WHERE r.instance = $1 RETURNING r.next_at - $2 - n.now_us"
        );
        let (ahead, pause) = (LONGEST_AHEAD.as_micros() as i64, LONGEST_PAUSE.as_micros() as i64);
        let first = self.one(&sql, &[&self.instance, &span, &ahead, &pause]).await?;
        Ok(Duration::from_micros(first.max(0) as u64))
    }

    /// How long the instance stays paused, looked up at most every `PAUSE_LOOK`; a pause longer than any
    /// steward asks for is reported once and taken as none.
    async fn pause_left(&self) -> Result<Duration, TurnsError> {
        let now = Instant::now();
        if let Some((until, seen)) = *self.pause_seen.lock() {
            if now.duration_since(seen) < PAUSE_LOOK {
                return Ok(until.saturating_duration_since(now));
            }
        }
        let sql = format!("SELECT r.paused_until - n.now_us FROM rate_turns r, {NOW_US} WHERE r.instance = $1");
        let left = Duration::from_micros(self.one(&sql, &[&self.instance]).await?.max(0) as u64);
        let left = if left > LONGEST_PAUSE {
            if !self.implausible_said.swap(true, std::sync::atomic::Ordering::SeqCst) {
                tracing::warn!(
                    "the team's rate row for {} asks everyone to pause {}, longer than the {} a steward ever asks: \
                     ignored (someone wrote the row by hand; `UPDATE rate_turns SET paused_until = 0` clears it)",
                    self.instance,
                    crate::dates::spoken(left),
                    crate::dates::spoken(LONGEST_PAUSE)
                );
            }
            Duration::ZERO
        } else {
            left
        };
        *self.pause_seen.lock() = Some((now + left, now));
        Ok(left)
    }

    /// Waits out a pause the team is in, reading the row again every `RELOOK` (a pause lifted frees it then).
    async fn sit_out_pause(&self) -> Result<(), TurnsError> {
        loop {
            let left = self.pause_left().await?;
            if left.is_zero() {
                return Ok(());
            }
            self.reserved.lock().clear();
            tokio::time::sleep(left.min(RELOOK)).await;
        }
    }
}

/// A statement on the rate row failed (said as the log's database errors are).
fn row_error(e: tokio_postgres::Error) -> TurnsError {
    TurnsError::Row(crate::audit::db::DbError::from(e).into())
}

#[async_trait::async_trait]
impl SharedTurns for PgTurns {
    async fn take(&self, spacing: Duration) -> Result<Duration, TurnsError> {
        self.sit_out_pause().await?;
        if spacing.is_zero() {
            return Ok(Duration::ZERO);
        }
        loop {
            let now = Instant::now();
            {
                let mut reserved = self.reserved.lock();
                // A turn long gone is dropped, not spent: sending on it now would bunch requests together.
                while let Some(turn) = reserved.pop_front() {
                    if turn + spacing >= now {
                        return Ok(turn.saturating_duration_since(now));
                    }
                }
            }
            let count = ((BLOCK.as_micros() / spacing.as_micros().max(1)) as u32).clamp(1, MOST_PER_BLOCK);
            let first = now + self.reserve(count, spacing).await?;
            let mut reserved = self.reserved.lock();
            reserved.extend((0..count).map(|i| first + spacing * i));
        }
    }

    async fn pause(&self, wait: Duration) -> Result<(), TurnsError> {
        self.reserved.lock().clear();
        let sql = format!(
            "UPDATE rate_turns r SET paused_until = GREATEST(
                 CASE WHEN r.paused_until - n.now_us <= $3 THEN r.paused_until ELSE 0 END, n.now_us + $2)
             FROM {NOW_US} WHERE r.instance = $1 RETURNING r.paused_until"
        );
        let wait = wait.min(LONGEST_PAUSE).as_micros() as i64;
        self.one(&sql, &[&self.instance, &wait, &(LONGEST_PAUSE.as_micros() as i64)]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_one_key_however_its_url_is_written() {
        let key = |u: &str| instance_key(&url::Url::parse(u).unwrap());
        assert_eq!(key("https://GHES.example.com/api/v3/"), key("https://ghes.example.com/api/v3"));
        assert_ne!(key("https://ghes.example.com/api/v3"), key("https://other.example.com/api/v3"));
    }
}
