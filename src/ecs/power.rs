//! The write calls that change an instance's power state (the "act" step): `StartInstance` and
//! `StopInstance`, their parameters, and what a successful one returns.
//!
//! The controller builds a [`StartInstance`] or [`StopInstance`] from the resource's spec; the
//! [`client`](super::client) turns it into request parameters with `params()` and returns a
//! [`WriteOutcome`]. Optional parameters are only sent when they say something: `DryRun=true` only
//! for a dry run, `InitLocalDisk`/`ForceStop` only when true, `StoppedMode` only when set.

use std::fmt;

/// ECS action name of `StartInstance`.
pub const START_INSTANCE: &str = "StartInstance";
/// ECS action name of `StopInstance`.
pub const STOP_INSTANCE: &str = "StopInstance";

/// The ECS codes by which a dry run says "this call would have succeeded".
pub const DRY_RUN_CODES: [&str; 2] = ["DryRunOperation", "DRYRUN.SUCCESS"];

/// `StopInstance`'s `StoppedMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoppedMode {
    /// Standard stop: resources and billing retained.
    KeepCharging,
    /// Economical mode: compute released and not billed; a later start may hit `NoStock`.
    StopCharging,
}

impl StoppedMode {
    /// The ECS spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeepCharging => "KeepCharging",
            Self::StopCharging => "StopCharging",
        }
    }
}

impl fmt::Display for StoppedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `StartInstance` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInstance {
    /// The instance to start.
    pub instance_id: String,
    /// `InitLocalDisk=true`: wipe local disks on start (d1/i1/i2 families).
    pub init_local_disk: bool,
    /// `DryRun=true`: check only, change nothing.
    pub dry_run: bool,
}

impl StartInstance {
    /// The action's own request parameters (without the common ones).
    #[must_use]
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![("InstanceId", self.instance_id.clone())];
        if self.init_local_disk {
            params.push(("InitLocalDisk", "true".to_owned()));
        }
        if self.dry_run {
            params.push(("DryRun", "true".to_owned()));
        }
        params
    }
}

/// A `StopInstance` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopInstance {
    /// The instance to stop.
    pub instance_id: String,
    /// `StoppedMode`; `None` leaves the account default.
    pub stopped_mode: Option<StoppedMode>,
    /// `ForceStop=true`: power off without waiting for the guest OS.
    pub force_stop: bool,
    /// `DryRun=true`: check only, change nothing.
    pub dry_run: bool,
}

impl StopInstance {
    /// The action's own request parameters (without the common ones).
    #[must_use]
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![("InstanceId", self.instance_id.clone())];
        if let Some(mode) = self.stopped_mode {
            params.push(("StoppedMode", mode.as_str().to_owned()));
        }
        if self.force_stop {
            params.push(("ForceStop", "true".to_owned()));
        }
        if self.dry_run {
            params.push(("DryRun", "true".to_owned()));
        }
        params
    }
}

/// A write call ECS accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The ECS `RequestId` (for `status.lastAction`).
    pub request_id: Option<String>,
    /// True when this was a dry run: ECS checked the call and changed nothing.
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_params_only_say_what_is_needed() {
        let plain = StartInstance {
            instance_id: "i-a".into(),
            init_local_disk: false,
            dry_run: false,
        };
        assert_eq!(plain.params(), vec![("InstanceId", "i-a".to_owned())]);
        let full = StartInstance {
            instance_id: "i-a".into(),
            init_local_disk: true,
            dry_run: true,
        };
        assert_eq!(
            full.params(),
            vec![
                ("InstanceId", "i-a".to_owned()),
                ("InitLocalDisk", "true".to_owned()),
                ("DryRun", "true".to_owned()),
            ]
        );
    }

    #[test]
    fn stop_params_only_say_what_is_needed() {
        let plain = StopInstance {
            instance_id: "i-a".into(),
            stopped_mode: None,
            force_stop: false,
            dry_run: false,
        };
        assert_eq!(plain.params(), vec![("InstanceId", "i-a".to_owned())]);
        let full = StopInstance {
            instance_id: "i-a".into(),
            stopped_mode: Some(StoppedMode::StopCharging),
            force_stop: true,
            dry_run: true,
        };
        assert_eq!(
            full.params(),
            vec![
                ("InstanceId", "i-a".to_owned()),
                ("StoppedMode", "StopCharging".to_owned()),
                ("ForceStop", "true".to_owned()),
                ("DryRun", "true".to_owned()),
            ]
        );
        assert_eq!(StoppedMode::KeepCharging.to_string(), "KeepCharging");
    }
}
