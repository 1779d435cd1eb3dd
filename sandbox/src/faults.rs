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
}

/// Probabilities per fault, from `--faults "429=0.1,503=0.05,timeout=0.01,reset=0.01"`.
#[derive(Debug, Default)]
pub struct Faults {
    table: Vec<(Fault, f64)>,
    rng: Option<Mutex<StdRng>>,
    pub retry_after_s: u64,
}

impl Faults {
    pub fn none() -> Self {
        Faults::default()
    }

    pub fn parse(spec: &str, seed: u64) -> Result<Self, String> {
        let mut table = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, p) = part
                .split_once('=')
                .ok_or_else(|| format!("fault {part:?}: expected NAME=PROBABILITY, e.g. 429=0.1"))?;
            let p: f64 = p.trim().parse().map_err(|_| format!("fault {part:?}: {p:?} is not a probability"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("fault {part:?}: the probability must be between 0 and 1"));
            }
            let fault = match name.trim() {
                "429" => Fault::TooManyRequests,
                "timeout" => Fault::Timeout,
                "reset" => Fault::Reset,
                "apply500" => Fault::ApplyThen500,
                code => match code.parse::<u16>() {
                    Ok(s @ 500..=599) => Fault::ServerError(s),
                    _ => {
                        return Err(format!(
                            "fault {name:?} is not known (known: 429, 500-599, timeout, reset, apply500)"
                        ))
                    }
                },
            };
            table.push((fault, p));
        }
        Ok(Faults { table, rng: Some(Mutex::new(StdRng::seed_from_u64(seed))), retry_after_s: 1 })
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Draws the fault for one request.
    pub fn draw(&self) -> Option<Fault> {
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
            seen.insert(format!("{:?}", f.draw()));
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
        assert_eq!(Faults::none().draw(), None);
    }
}
