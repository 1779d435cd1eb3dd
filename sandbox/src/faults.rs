//! Fault injection: which failure, if any, a request gets, drawn from per-kind probabilities.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with Retry-After (seconds given by `retry_after_s`).
    TooManyRequests,
    /// The given 5xx status.
    ServerError(u16),
    /// The answer comes only after a long wait, so the client times out.
    Timeout,
    /// The connection is dropped after the request arrived (and was applied).
    Reset,
    /// The request is applied, then the server answers 500 anyway.
    ApplyThen500,
    /// The connection is dropped before the request is applied.
    ResetBeforeApply,
    /// 429 whose Retry-After is an HTTP date `retry_after_s` ahead.
    TooManyRequestsUntilDate,
    /// GitHub's secondary rate limit: 403 with "secondary rate limit" in the body and no Retry-After.
    SecondaryLimit,
    /// The request succeeds, but says the budget is spent: `X-RateLimit-Remaining: 0`, reset in `retry_after_s`.
    Exhausted,
}

impl Fault {
    pub fn name(self) -> String {
        match self {
            Fault::TooManyRequests => "429".into(),
            Fault::ServerError(code) => code.to_string(),
            Fault::Timeout => "timeout".into(),
            Fault::Reset => "reset".into(),
            Fault::ApplyThen500 => "apply500".into(),
            Fault::ResetBeforeApply => "drop".into(),
            Fault::TooManyRequestsUntilDate => "429date".into(),
            Fault::SecondaryLimit => "secondary".into(),
            Fault::Exhausted => "exhausted".into(),
        }
    }

    fn parse(name: &str) -> Result<Fault, String> {
        Ok(match name.trim() {
            "429" => Fault::TooManyRequests,
            "429date" => Fault::TooManyRequestsUntilDate,
            "secondary" => Fault::SecondaryLimit,
            "exhausted" => Fault::Exhausted,
            "timeout" => Fault::Timeout,
            "reset" => Fault::Reset,
            "drop" => Fault::ResetBeforeApply,
            "apply500" => Fault::ApplyThen500,
            code => match code.parse::<u16>() {
                Ok(s @ 500..=599) => Fault::ServerError(s),
                _ => {
                    return Err(format!(
                        "fault {name:?} is not known (known: 429, 429date, secondary, exhausted, 500-599, timeout, reset, drop, apply500)"
                    ))
                }
            },
        })
    }
}

/// Probabilities per fault, from `--faults "429=0.1,503=0.05,timeout=0.01,reset=0.01"`, and faults at given
/// request numbers (counting every API request from 1): `429@37`, `503@20-80`; `retry_after=7` sets the wait
/// the rate-limit faults name.
#[derive(Debug, Default)]
pub struct Faults {
    table: Vec<(Fault, f64)>,
    schedule: Vec<(Fault, u64, u64)>,
    rng: Option<Mutex<StdRng>>,
    pub retry_after_s: u64,
}

impl Faults {
    pub fn none() -> Self {
        Faults::default()
    }

    pub fn parse(spec: &str, seed: u64) -> Result<Self, String> {
        let mut faults = Faults { retry_after_s: 1, ..Faults::default() };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((name, at)) = part.split_once('@') {
                let bad = || format!("fault {part:?}: expected NAME@N or NAME@N-M (request numbers from 1)");
                let (from, to) = at.split_once('-').unwrap_or((at, at));
                let from: u64 = from.trim().parse().map_err(|_| bad())?;
                let to: u64 = to.trim().parse().map_err(|_| bad())?;
                if from == 0 || to < from {
                    return Err(bad());
                }
                faults.schedule.push((Fault::parse(name)?, from, to));
                continue;
            }
            let (name, p) = part
                .split_once('=')
                .ok_or_else(|| format!("fault {part:?}: expected NAME=PROBABILITY, e.g. 429=0.1, or NAME@N"))?;
            if name.trim() == "retry_after" {
                faults.retry_after_s =
                    p.trim().parse().map_err(|_| format!("fault {part:?}: {p:?} is not a number of seconds"))?;
                continue;
            }
            let p: f64 = p.trim().parse().map_err(|_| format!("fault {part:?}: {p:?} is not a probability"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("fault {part:?}: the probability must be between 0 and 1"));
            }
            faults.table.push((Fault::parse(name)?, p));
        }
        faults.rng = Some(Mutex::new(StdRng::seed_from_u64(seed)));
        Ok(faults)
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty() && self.schedule.is_empty()
    }

    /// The fault for request number `n`: a scheduled one, else one drawn by probability.
    pub fn draw(&self, n: u64) -> Option<Fault> {
        if let Some((fault, ..)) = self.schedule.iter().find(|(_, from, to)| (*from..=*to).contains(&n)) {
            return Some(*fault);
        }
        let rng = self.rng.as_ref()?;
        let roll: f64 = rng.lock().unwrap_or_else(|e| e.into_inner()).gen();
        let mut acc = 0.0;
        for (fault, p) in &self.table {
            acc += p;
            if roll < acc {
                return Some(*fault);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fault_list() {
        let f = Faults::parse("429=0.5, 503=0.25,reset=0.25", 7).unwrap();
        assert_eq!(f.table.len(), 3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(format!("{:?}", f.draw(1)));
        }
        assert!(
            seen.contains("Some(TooManyRequests)")
                && seen.contains("Some(ServerError(503))")
                && seen.contains("Some(Reset)")
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Faults::parse("418=0.1", 1).is_err());
        assert!(Faults::parse("429=2", 1).is_err());
        assert!(Faults::parse("429", 1).is_err());
    }

    #[test]
    fn no_faults_draws_nothing() {
        assert_eq!(Faults::none().draw(1), None);
    }

    #[test]
    fn scheduled_faults_hit_exactly_their_requests() {
        let f = Faults::parse("429@3,503@5-6,retry_after=7", 1).unwrap();
        let drawn: Vec<Option<Fault>> = (1..=7).map(|n| f.draw(n)).collect();
        use Fault::*;
        assert_eq!(
            drawn,
            [None, None, Some(TooManyRequests), None, Some(ServerError(503)), Some(ServerError(503)), None]
        );
        assert_eq!(f.retry_after_s, 7);
        assert!(Faults::parse("429@0", 1).is_err() && Faults::parse("429@5-3", 1).is_err());
    }
}
