//! The team's shared rate budget: every process acting on one service instance takes its turns from one row of
//! the team log's database (`rate_turns`, keyed by the instance's base URL), so five machines running jobs
//! against one GHES together keep to its `rate_limit`, and a pause one of them is told of (a 429's wait) holds
//! them all. Times are the database server's clock, the one clock every machine shares.

use crate::audit::team::PgTarget;
use crate::http::budget::{SharedTurns, TurnsFactory};
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
    /// For a process without a pace: until when the instance is paused, and when that was looked up.
    pause_seen: Mutex<Option<(Instant, Instant)>>,
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
        }
    }

    /// One statement returning one BIGINT, on the connection (made, and its row made, on first use; made anew
    /// after a failure).
    async fn one(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<i64, String> {
        let mut client = self.client.lock().await;
        if client.is_none() {
            let c = self.target.connect_async().await?;
            c.execute(
                "INSERT INTO rate_turns (instance) VALUES ($1) ON CONFLICT (instance) DO NOTHING",
                &[&self.instance],
            )
            .await
            .map_err(|e| e.to_string())?;
            *client = Some(c);
        }
        let Some(c) = client.as_ref() else { return Err("no connection".into()) };
        match c.query_one(sql, params).await {
            Ok(row) => row.try_get::<_, i64>(0).map_err(|e| e.to_string()),
            Err(e) => {
                *client = None;
                Err(crate::audit::db::DbError::from(e).to_string())
            }
        }
    }

    /// Reserves `count` turns `spacing` apart from the shared schedule; the first one's delay from now.
    async fn reserve(&self, count: u32, spacing: Duration) -> Result<Duration, String> {
        let span = (spacing * count).as_micros() as i64;
        let sql = format!(
            "UPDATE rate_turns r SET next_at = GREATEST(r.next_at, r.paused_until, n.now_us) + $2 FROM {NOW_US}
             WHERE r.instance = $1 RETURNING r.next_at - $2 - n.now_us"
        );
        let first = self.one(&sql, &[&self.instance, &span]).await?;
        Ok(Duration::from_micros(first.max(0) as u64))
    }

    /// How long the instance stays paused, looked up at most every `PAUSE_LOOK`.
    async fn pause_left(&self) -> Result<Duration, String> {
        let now = Instant::now();
        if let Some((until, seen)) = *self.pause_seen.lock() {
            if now.duration_since(seen) < PAUSE_LOOK {
                return Ok(until.saturating_duration_since(now));
            }
        }
        let sql =
            format!("SELECT GREATEST(r.paused_until - n.now_us, 0) FROM rate_turns r, {NOW_US} WHERE r.instance = $1");
        let left = Duration::from_micros(self.one(&sql, &[&self.instance]).await?.max(0) as u64);
        *self.pause_seen.lock() = Some((now + left, now));
        Ok(left)
    }
}

#[async_trait::async_trait]
impl SharedTurns for PgTurns {
    async fn take(&self, spacing: Duration) -> Result<Duration, String> {
        if spacing.is_zero() {
            return self.pause_left().await;
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

    async fn pause(&self, wait: Duration) -> Result<(), String> {
        self.reserved.lock().clear();
        let sql = format!(
            "UPDATE rate_turns r SET paused_until = GREATEST(r.paused_until, n.now_us + $2) FROM {NOW_US}
             WHERE r.instance = $1 RETURNING r.paused_until"
        );
        self.one(&sql, &[&self.instance, &(wait.as_micros() as i64)]).await.map(|_| ())
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
