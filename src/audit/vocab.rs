//! The words of the audit log's phase, status and mode columns, as types: code names them, the log keeps their
//! text (which queries, exports and older rows use).

/// Where in an action's life an event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Recorded (durably) before the request.
    Intent,
    /// What the action came to.
    Outcome,
    /// Something that happened to the run (a pause, a stop, a repaired log).
    Note,
}

/// What an event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Ok,
    /// Already in that state: nothing was sent.
    Noop,
    Failed,
    /// A rule stopped it (protected, declined, busy).
    Refused,
    /// Not sent, because the run was stopped first.
    Cancelled,
    /// Sent, and the run stopped before its answer came: it may have been applied. No outcome row says so (the
    /// intent stays open, which `audit list --pending` shows); a resume reads the target and settles it.
    InDoubt,
    /// Left alone in a bulk job (protected, a duplicate).
    Skipped,
    DryRun,
    /// Settled at resume without knowing: the service cannot show whether an earlier run's change was applied.
    Unknown,
    /// The service made everyone wait.
    Paused,
    /// The script stopped before its end.
    Aborted,
    /// What steward read of an account's state (a deprovisioning snapshot or its verification).
    Observed,
}

/// Whether the action was meant to reach the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    DryRun,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Outcome => "outcome",
            Phase::Note => "note",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Ok => "ok",
            Status::Noop => "noop",
            Status::Failed => "failed",
            Status::Refused => "refused",
            Status::Cancelled => "cancelled",
            Status::InDoubt => "in-doubt",
            Status::Skipped => "skipped",
            Status::DryRun => "dry-run",
            Status::Unknown => "unknown",
            Status::Paused => "paused",
            Status::Aborted => "aborted",
            Status::Observed => "observed",
        }
    }
}

impl Mode {
    pub fn of(dry_run: bool) -> Mode {
        if dry_run {
            Mode::DryRun
        } else {
            Mode::Live
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::DryRun => "dry-run",
        }
    }
}
