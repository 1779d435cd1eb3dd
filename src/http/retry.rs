//! Retry policy, pure: which outcomes are transient, how long to wait, when to give up.
//!
//! Rate-limit answers (429, or 403 with an exhausted budget) are retried for every method, because the server
//! refused them before doing anything. Server errors (500, 502-504) and broken connections are retried only for reads (and
//! for any request whose connection failed before it was sent): a change that timed out may have been
//! applied, so dispatch reads the target's state before anything is sent again, even for a PUT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a rate limit makes steward wait before it reports the limit instead (the default policy's).
pub const LONGEST_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest a rate limit may make us wait before we report it instead.
    pub max_rate_limit_wait: Duration,
    /// Real time per unit of waiting: 1 in use. Tests of debug builds shrink it (`STEWARD_TIME_SCALE`), so a
    /// minute's pause is asserted in a second while every decision and record still says a minute.
    pub time_scale: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: LONGEST_RATE_LIMIT_WAIT,
            time_scale: 1.0,
        }
    }
}

impl RetryPolicy {
    /// The policy in use. Only a debug build (the one the tests run) reads `STEWARD_TIME_SCALE` (0 < s ≤ 1): a
    /// released steward always waits as long as the server asked.
    pub fn in_use() -> Self {
        let scale = match cfg!(debug_assertions) {
            true => std::env::var("STEWARD_TIME_SCALE").ok().and_then(|v| v.parse::<f64>().ok()),
            false => None,
        };
        RetryPolicy { time_scale: scale.filter(|s| *s > 0.0 && *s <= 1.0).unwrap_or(1.0), ..Default::default() }
    }

    /// How long a wait of `wait` really sleeps.
    pub fn real(&self, wait: Duration) -> Duration {
        wait.mul_f64(self.time_scale)
    }
}

/// What one attempt came to, reduced to what the policy needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    /// The server answered with this status; `rate_wait` is how long it asked us to hold off, if it said.
    Answered { status: u16, rate_limited: bool, rate_wait: Option<Duration> },
    /// No answer. `before_send` means the request certainly never reached the server (connect failed).
    NoAnswer { before_send: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Try again after this pause.
    RetryAfter(Duration),
    /// Rate limited: every request to this service should wait this long, then this one is tried again.
    PauseAll(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// `attempt` counts from 1; `jitter` is a number in [0, 1) (random in production, fixed in tests).
    pub fn decide(&self, attempt: u32, outcome: &Attempt, repeatable: bool, jitter: f64) -> Decision {
        if attempt >= self.max_attempts {
            return Decision::GiveUp;
        }
        match *outcome {
            Attempt::Answered { rate_limited: true, rate_wait, .. } => {
                // Without a header the server gave no hint; a minute is what GitHub's docs advise.
                let wait = rate_wait.unwrap_or(Duration::from_secs(60));
                if wait > self.max_rate_limit_wait {
                    Decision::GiveUp
                } else {
                    Decision::PauseAll(wait)
                }
            }
            // A 500 too: a read the server failed once is usually answered the next time (GitHub's own clients
            // retry it); 501 and 505 say the request will never work.
            Attempt::Answered { status, rate_wait, .. } if repeatable && matches!(status, 500 | 502..=504) => {
                Decision::RetryAfter(rate_wait.unwrap_or_else(|| self.backoff(attempt, jitter)).min(self.max_delay))
            }
            Attempt::NoAnswer { before_send } if repeatable || before_send => {
                Decision::RetryAfter(self.backoff(attempt, jitter))
            }
            _ => Decision::GiveUp,
        }
    }

    /// Full jitter: a random pause between zero and the exponential ceiling.
    fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// The longest wait any header can ask for: a day. Beyond it the number is nonsense (or hostile), and a wait
/// that long is reported rather than slept anyway (`RetryPolicy::max_rate_limit_wait`).
pub const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::try_from_secs_f64(secs).unwrap_or(LONGEST_WAIT).min(LONGEST_WAIT))
}

/// `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(LONGEST_WAIT))
}

/// `X-RateLimit-Reset`: GitHub sends a Unix time, Terraform Enterprise a number of seconds to wait.
pub fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let secs = value.trim().parse::<f64>().ok()?;
    let wait = seconds(secs)?;
    if secs > 1_000_000_000.0 {
        let at = Duration::try_from_secs_f64(secs).ok().and_then(|d| UNIX_EPOCH.checked_add(d));
        let until = at.map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)).unwrap_or(LONGEST_WAIT);
        // One second of slack: the reset second is inclusive on GitHub.
        Some((until + Duration::from_secs(1)).min(LONGEST_WAIT))
    } else {
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_waits_are_capped_not_a_crash() {
        let now = SystemTime::now();
        for v in ["1e30", "111111111111111111111111111111111111", "1e308", "18446744073709551616"] {
            assert_eq!(parse_retry_after(v, now), Some(LONGEST_WAIT), "{v}");
            assert_eq!(parse_rate_limit_reset(v, now), Some(LONGEST_WAIT), "{v}");
        }
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now), Some(LONGEST_WAIT));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
    }

    fn answered(status: u16) -> Attempt {
        Attempt::Answered { status, rate_limited: false, rate_wait: None }
    }

    #[test]
    fn server_errors_are_retried_only_when_idempotent() {
        let p = RetryPolicy::default();
        for status in [500, 502, 503, 504] {
            assert!(matches!(p.decide(1, &answered(status), true, 0.5), Decision::RetryAfter(_)));
            assert_eq!(p.decide(1, &answered(status), false, 0.5), Decision::GiveUp);
        }
        for status in [501, 505] {
            assert_eq!(p.decide(1, &answered(status), true, 0.5), Decision::GiveUp, "{status}");
        }
    }

    #[test]
    fn client_errors_are_final() {
        let p = RetryPolicy::default();
        for status in [400, 401, 403, 404, 409, 422] {
            assert_eq!(p.decide(1, &answered(status), true, 0.5), Decision::GiveUp, "{status}");
        }
    }

    #[test]
    fn rate_limits_pause_everyone_for_any_method() {
        let p = RetryPolicy::default();
        let limited = Attempt::Answered { status: 429, rate_limited: true, rate_wait: Some(Duration::from_secs(3)) };
        assert_eq!(p.decide(1, &limited, false, 0.5), Decision::PauseAll(Duration::from_secs(3)));
    }

    #[test]
    fn a_rate_limit_longer_than_the_cap_is_reported_instead() {
        let p = RetryPolicy::default();
        let limited = Attempt::Answered { status: 403, rate_limited: true, rate_wait: Some(Duration::from_secs(3600)) };
        assert_eq!(p.decide(1, &limited, true, 0.5), Decision::GiveUp);
    }

    #[test]
    fn a_failed_connect_is_safe_to_retry_even_for_post() {
        let p = RetryPolicy::default();
        assert!(matches!(p.decide(1, &Attempt::NoAnswer { before_send: true }, false, 0.5), Decision::RetryAfter(_)));
        assert_eq!(p.decide(1, &Attempt::NoAnswer { before_send: false }, false, 0.5), Decision::GiveUp);
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.decide(5, &answered(503), true, 0.5), Decision::GiveUp);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 0.999_999).as_millis(), 999);
        assert_eq!(p.backoff(3, 0.999_999).as_millis(), 3999);
        assert_eq!(p.backoff(12, 1.0), p.max_delay);
        assert_eq!(p.backoff(2, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn rate_limit_reset_is_epoch_or_relative() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_rate_limit_reset("1700000010", now), Some(Duration::from_secs(11)));
        assert_eq!(parse_rate_limit_reset("0.5", now), Some(Duration::from_millis(500)));
    }
}
