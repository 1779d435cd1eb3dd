//! Claims on unattended work (a policy's turn, the due scheduled changes), so two runners at once — a doubled
//! cron line, two machines on one team log — never both act. On a team log the claim is a row of
//! `steward_claims` held `FOR UPDATE` in an open transaction, which another runner skips (`SKIP LOCKED`); on a
//! file log it is an exclusive lock on a file beside it. Either is released when the claim is dropped, or when
//! its process dies.

use super::db::Db;
use super::writer::AuditTarget;
use super::AuditError;
use std::path::Path;

/// Held while the work is done; dropping it lets the next runner in.
pub enum Claim {
    File(std::fs::File),
    Team(Db),
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Claim::Team(db) = self {
            db.rollback();
        }
    }
}

/// This process's claim on the work `name`; `None` when another runner holds it now. `beside`: the file log,
/// or the team log's local anchor file.
pub fn claim(target: &AuditTarget, beside: &Path, name: &str) -> Result<Option<Claim>, AuditError> {
    match target {
        AuditTarget::Postgres(pg) => {
            let db = super::team::open(pg)?;
            let failed = AuditError::Write;
            db.execute("INSERT INTO steward_claims (name) VALUES (?1) ON CONFLICT DO NOTHING", &[name.into()])
                .map_err(failed)?;
            db.batch("BEGIN").map_err(failed)?;
            let row = db
                .row("SELECT name FROM steward_claims WHERE name = ?1 FOR UPDATE SKIP LOCKED", &[name.into()])
                .map_err(failed)?;
            match row {
                Some(_) => Ok(Some(Claim::Team(db))),
                None => {
                    db.rollback();
                    Ok(None)
                }
            }
        }
        AuditTarget::File(_) | AuditTarget::Memory => {
            let path = format!("{}.claim-{}.lock", beside.display(), name.replace(['/', '\\'], "_"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| AuditError::Claim { path: path.clone().into(), source })?;
            match file.try_lock() {
                Ok(()) => Ok(Some(Claim::File(file))),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(source)) => Err(AuditError::Claim { path: path.into(), source }),
            }
        }
    }
}
