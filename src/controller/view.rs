//! The previous status, read once into the typed facts decide needs: the write gate, the last
//! accepted write, a dry-run approval and whether the resource is stalled. Decide compares these,
//! never condition strings.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::EcsInstancePowerStatus;
use crate::vocabulary::{condition, reason};

use super::decide::WriteCall;

/// The longest any write gate may hold: the capacity class's largest delay. A `nextAttemptTime`
/// further out (a clock stepped back, a hand-edited status) is capped to it.
pub const MAX_GATE: Duration = Duration::from_secs(30 * 60);

/// A write call that ECS accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedWrite {
    /// `StartInstance` or `StopInstance`.
    pub call: WriteCall,
    /// When ECS accepted it.
    pub time: Timestamp,
    /// Whether it was a dry run.
    pub dry_run: bool,
}

/// What the previous status says, in the terms decide uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusView {
    /// The generation the previous status describes.
    pub observed_generation: Option<i64>,
    /// No write call before this time: the retry gate of a failed write call (failed observations
    /// and missing credentials do not gate writes), not yet capped.
    pub write_gate: Option<Timestamp>,
    /// The last write call that ECS accepted.
    pub last_write: Option<AcceptedWrite>,
    /// When the last write call that failed (refused or of unknown outcome) was made.
    pub failed_write_at: Option<Timestamp>,
    /// The instance status under which ECS approved a dry run for the described generation.
    pub dry_run_approved_at: Option<String>,
    /// Stalled=True: progress needs someone to act.
    pub stalled: bool,
}

impl StatusView {
    /// Reads a status.
    pub fn read(status: &EcsInstancePowerStatus) -> Self {
        let failed_write_at = status
            .last_error
            .as_ref()
            .filter(|e| {
                e.action
                    .as_deref()
                    .and_then(WriteCall::from_action)
                    .is_some()
            })
            .map(|e| e.time.0);
        let failed_write = failed_write_at.is_some();
        let write_gate = status
            .retry
            .as_ref()
            .filter(|_| failed_write)
            .map(|r| r.next_attempt_time.0);
        let last_write = status.last_action.as_ref().and_then(|a| {
            Some(AcceptedWrite {
                call: WriteCall::from_action(&a.action)?,
                time: a.time.0,
                dry_run: a.dry_run,
            })
        });
        let is_true = |type_: &str| {
            status
                .condition(type_)
                .filter(|c| c.status == condition::TRUE)
        };
        let dry_run_approved_at = is_true(condition::READY)
            .filter(|c| c.reason == reason::DRY_RUN_SUCCEEDED)
            .and(status.instance_status.clone());
        StatusView {
            observed_generation: status.observed_generation,
            write_gate,
            last_write,
            failed_write_at,
            dry_run_approved_at,
            stalled: is_true(condition::STALLED).is_some(),
        }
    }

    /// The write gate, capped at [`MAX_GATE`] from `now`.
    pub fn write_gate_until(&self, now: Timestamp) -> Option<Timestamp> {
        let cap = now + SignedDuration::try_from(MAX_GATE).unwrap_or(SignedDuration::ZERO);
        self.write_gate.map(|until| until.min(cap))
    }

    /// When this resource last made a write call: accepted (dry runs included), refused, or of
    /// unknown outcome.
    pub fn last_write_call_at(&self) -> Option<Timestamp> {
        self.last_write.map(|w| w.time).max(self.failed_write_at)
    }

    /// The last accepted, non-dry-run write call and how long ago it was accepted (`None` for a
    /// time in the future, from a skewed clock).
    pub fn last_real_write(&self, now: Timestamp) -> Option<(AcceptedWrite, Duration)> {
        let write = self.last_write.filter(|w| !w.dry_run && w.time <= now)?;
        let since = Duration::try_from(now.duration_since(write.time)).ok()?;
        Some((write, since))
    }
}
