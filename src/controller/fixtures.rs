//! Test fixtures shared by the controller's table tests (decide, report).

use crate::api::{DesiredState, EcsInstancePowerSpec};
use crate::ecs::{InstanceObservation, InstanceStatus};

/// A spec for `i-abc` in `cn-hangzhou` with this desired state.
#[allow(clippy::unwrap_used)]
pub fn spec(desired: DesiredState) -> EcsInstancePowerSpec {
    serde_json::from_value(serde_json::json!({
        "instanceId": "i-abc", "regionId": "cn-hangzhou", "desiredState": desired
    }))
    .unwrap()
}

/// What `DescribeInstances` would report for `i-abc`.
pub fn seen(status: InstanceStatus, locks: &[&str]) -> InstanceObservation {
    InstanceObservation {
        instance_id: "i-abc".into(),
        status,
        lock_reasons: locks.iter().map(std::string::ToString::to_string).collect(),
        stopped_mode: None,
        expired_time: None,
        tags: std::collections::BTreeMap::new(),
    }
}
