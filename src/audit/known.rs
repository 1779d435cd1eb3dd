//! What a process knows good of the log: the last point (seq, hash) it verified or wrote. Before it appends,
//! signs a checkpoint, or reads a row back for a decision, it verifies only what was added since that point, and
//! that the point is still there unchanged; so a log cut or edited under a long-running process is noticed at
//! its next step, at the cost of the rows added meanwhile (none, for a process alone on its log).

use super::chain;
use super::store::{AuditError, AuditStore};

impl AuditStore {
    /// Verifies the rows after the known point (the genesis when none is known yet) up to the head, and moves the
    /// point there: the head, verified. `Err` names what was found: the point gone (a cut tail) or altered, or a
    /// row after it that breaks the chain.
    pub fn catch_up(&self) -> Result<Result<(i64, String), String>, AuditError> {
        let (seq, hash) = self.known_point().unwrap_or((0, chain::GENESIS.to_string()));
        if seq > 0 {
            let at =
                self.db().row("SELECT hash FROM events WHERE seq = ?1", &[seq.into()]).map_err(AuditError::Read)?;
            match at.map(|r| r.text(0)).transpose().map_err(AuditError::Read)? {
                None => {
                    return Ok(Err(format!(
                        "event {seq}, which this process had verified or written, is no longer in the log: its tail was cut under this process"
                    )))
                }
                Some(h) if h != hash => {
                    return Ok(Err(format!("event {seq}, which this process had verified or written, was altered")))
                }
                Some(_) => {}
            }
        }
        Ok(match self.verify_from(seq, &hash)? {
            Err(b) => Err(format!("the chain breaks at seq {}", b.seq())),
            Ok(head) => {
                self.know(head.clone());
                Ok(head)
            }
        })
    }

    /// Verifies the rows after `seq`, starting from its hash; the last one verified (the head), or the break.
    pub(super) fn verify_from(&self, seq: i64, hash: &str) -> Result<Result<(i64, String), chain::Break>, AuditError> {
        let mut last = (seq, hash.to_string());
        // Few rows usually follow the point: their runs are read as they are met.
        let mut runs = super::query::RunRecords::default();
        let mut broken = None;
        let mut seals = None;
        self.each_after(seq, &mut |r| {
            match self.check_row(&last.1, &r, &mut runs)? {
                super::query::Step::Broken(b) => {
                    broken = Some(b);
                    return Ok(false);
                }
                super::query::Step::SetAside => self.met_set_aside(r.event.seq),
                super::query::Step::Linked => {
                    // The machines are read only when rows were added since the point.
                    let seals = match &mut seals {
                        Some(check) => check,
                        None => seals.insert(self.seal_check()?),
                    };
                    self.check_seal(seals, &r)?;
                    last = (r.event.seq, r.hash);
                }
            }
            Ok(true)
        })?;
        if let Some(check) = seals {
            self.distrust(&check.finish());
        }
        Ok(broken.map_or(Ok(last), Err))
    }

    /// Row `seq`, read back for a decision, is whole: its content recomputes to its hash from the row before it,
    /// and the row after it (if any) recomputes from that hash. An edit to it shows here even where the chain
    /// before the known point is not verified again; rewriting every hash after it moves the known point's.
    pub fn row_is_whole(&self, seq: i64) -> Result<Result<(), String>, AuditError> {
        let mut runs = super::query::RunRecords::default();
        let mut prev = match seq {
            s if s <= 1 => chain::GENESIS.to_string(),
            s => {
                let r = self.db().row("SELECT hash FROM events WHERE seq = ?1", &[(s - 1).into()]);
                match r.map_err(AuditError::Read)?.map(|r| r.text(0)).transpose().map_err(AuditError::Read)? {
                    Some(h) => h,
                    None => return Ok(Err(format!("the event before seq {seq} is missing"))),
                }
            }
        };
        let mut broken = None;
        for r in self.rows_after(seq - 1, 2)? {
            match self.check_row(&prev, &r, &mut runs)? {
                super::query::Step::Broken(b) => {
                    broken = Some(b);
                    break;
                }
                super::query::Step::SetAside => {}
                super::query::Step::Linked => prev = r.hash,
            }
        }
        Ok(broken.map_or(Ok(()), |b| Err(format!("the chain breaks at seq {}", b.seq()))))
    }
}
