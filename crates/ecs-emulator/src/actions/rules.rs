//! The rules deciding whether an instance may be started, stopped or rebooted: locks first
//! (`security` → `InstanceLockedForSecurity`; `financial` → `InsufficientBalance` for a start,
//! `InstanceExpiredOrInArrears` for a stop or reboot; any other lock → `IncorrectInstanceStatus`
//! naming the lock), then an expired `PrePaid` instance cannot start (`InstanceExpired`), then
//! the status (start needs Stopped, stop and reboot need Running, else `IncorrectInstanceStatus`).

use crate::catalogue::EcsError;
use crate::state::store::TransitionKind;
use crate::state::{ChargeType, Instance, Status};

/// A power operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Start,
    Stop,
    Reboot,
}

impl Op {
    /// The transition it begins.
    pub(crate) fn transition(self) -> TransitionKind {
        match self {
            Self::Start => TransitionKind::Start,
            Self::Stop => TransitionKind::Stop,
            Self::Reboot => TransitionKind::Reboot,
        }
    }

    fn required_status(self) -> Status {
        match self {
            Self::Start => Status::Stopped,
            Self::Stop | Self::Reboot => Status::Running,
        }
    }
}

/// Whether `op` is allowed on `instance` now.
pub(crate) fn check(op: Op, instance: &Instance, now: jiff::Timestamp) -> Result<(), EcsError> {
    if instance.has_lock("security") {
        return Err(EcsError::of("InstanceLockedForSecurity"));
    }
    if instance.has_lock("financial") {
        return Err(match op {
            Op::Start => EcsError::of("InsufficientBalance"),
            Op::Stop | Op::Reboot => EcsError::of("InstanceExpiredOrInArrears"),
        });
    }
    if let Some(lock) = instance.locks.first() {
        return Err(EcsError::of("IncorrectInstanceStatus").with_message(format!(
            "The current status of the resource does not support this operation: the instance is locked ({lock})."
        )));
    }
    if op == Op::Start
        && instance.charge_type == ChargeType::PrePaid
        && instance.expired_time.is_some_and(|t| t <= now)
    {
        return Err(EcsError::of("InstanceExpired"));
    }
    if instance.status != op.required_status() {
        return Err(EcsError::of("IncorrectInstanceStatus").with_message(format!(
            "The current status of the resource does not support this operation: the instance is {}, it must be {}.",
            instance.status,
            op.required_status()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn code(op: Op, i: &Instance) -> Option<String> {
        check(op, i, jiff::Timestamp::now()).err().map(|e| e.code)
    }

    #[test]
    fn status_rules() {
        let stopped = Instance::new("i-a", "r", Status::Stopped);
        let running = Instance::new("i-a", "r", Status::Running);
        let starting = Instance::new("i-a", "r", Status::Starting);
        assert_eq!(code(Op::Start, &stopped), None);
        assert_eq!(
            code(Op::Start, &running).as_deref(),
            Some("IncorrectInstanceStatus")
        );
        assert_eq!(code(Op::Stop, &running), None);
        assert_eq!(
            code(Op::Stop, &stopped).as_deref(),
            Some("IncorrectInstanceStatus")
        );
        assert_eq!(code(Op::Reboot, &running), None);
        assert_eq!(
            code(Op::Reboot, &starting).as_deref(),
            Some("IncorrectInstanceStatus")
        );
    }

    #[test]
    fn lock_rules() {
        let sec = Instance::new("i-a", "r", Status::Stopped).with_lock("security");
        assert_eq!(
            code(Op::Start, &sec).as_deref(),
            Some("InstanceLockedForSecurity")
        );
        let fin = Instance::new("i-a", "r", Status::Stopped).with_lock("financial");
        assert_eq!(
            code(Op::Start, &fin).as_deref(),
            Some("InsufficientBalance")
        );
        let fin_running = Instance::new("i-a", "r", Status::Running).with_lock("financial");
        assert_eq!(
            code(Op::Stop, &fin_running).as_deref(),
            Some("InstanceExpiredOrInArrears")
        );
        let rec = Instance::new("i-a", "r", Status::Stopped).with_lock("recycling");
        let e = check(Op::Start, &rec, jiff::Timestamp::now()).unwrap_err();
        assert_eq!(e.code, "IncorrectInstanceStatus");
        assert!(e.message.contains("recycling"));
    }

    #[test]
    fn expired_prepaid_cannot_start() {
        let mut i = Instance::new("i-a", "r", Status::Stopped);
        i.charge_type = ChargeType::PrePaid;
        i.expired_time = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1));
        assert_eq!(code(Op::Start, &i).as_deref(), Some("InstanceExpired"));
        i.expired_time = Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1));
        assert_eq!(code(Op::Start, &i), None);
    }
}
