//! How an instance looks in Describe answers: the `DescribeInstances` `Instance` item and the
//! flat `DescribeInstanceAttribute` body share these fields (`InstanceId`, `Status`,
//! `StoppedMode`, `OperationLocks`, `ExpiredTime`, …).

use serde_json::{Map, Value, json};

use crate::state::instance::format_expired_time;
use crate::state::{Instance, Status};

/// `ExpiredTime` ECS shows for pay-as-you-go instances.
const NO_EXPIRY: &str = "2099-12-31T15:59Z";

fn minutes(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(format_expired_time)
        .unwrap_or_default()
}

/// The fields common to both Describe answers.
pub(crate) fn instance_fields(
    instance: &Instance,
    started_at: Option<i64>,
    created_at: i64,
    default_stopped_mode: crate::state::StoppedMode,
) -> Map<String, Value> {
    let stopped_mode = if instance.status == Status::Stopped {
        instance
            .stopped_mode
            .unwrap_or(default_stopped_mode)
            .as_str()
    } else {
        "Not-applicable"
    };
    let zone = instance
        .zone
        .clone()
        .unwrap_or_else(|| format!("{}-a", instance.region));
    let locks: Vec<Value> = instance
        .locks
        .iter()
        .map(|l| json!({"LockReason": l, "LockMsg": ""}))
        .collect();
    let fields = json!({
        "InstanceId": instance.id,
        "InstanceName": instance.name.as_deref().unwrap_or(&instance.id),
        "HostName": instance.id,
        "Description": "",
        "RegionId": instance.region,
        "ZoneId": zone,
        "Status": instance.status.as_str(),
        "StoppedMode": stopped_mode,
        "InstanceChargeType": instance.charge_type.as_str(),
        "InternetChargeType": "PayByTraffic",
        "ExpiredTime": instance.expired_time.map_or_else(|| NO_EXPIRY.to_owned(), format_expired_time),
        "CreationTime": minutes(created_at),
        "StartTime": started_at.map(minutes).unwrap_or_default(),
        "InstanceType": instance.instance_type.as_deref().unwrap_or("ecs.g7.large"),
        "Cpu": 2,
        "Memory": 8192,
        "OSType": "linux",
        "InstanceNetworkType": "vpc",
        "SpotStrategy": "NoSpot",
        "DeletionProtection": false,
        "OperationLocks": {"LockReason": locks},
    });
    match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::state::StoppedMode;

    #[test]
    fn stopped_mode_only_shows_when_stopped() {
        let running = Instance::new("i-a", "cn-hangzhou", Status::Running);
        let f = instance_fields(&running, Some(0), 0, StoppedMode::KeepCharging);
        assert_eq!(f["StoppedMode"], "Not-applicable");
        assert_eq!(f["ZoneId"], "cn-hangzhou-a");
        assert_eq!(f["ExpiredTime"], NO_EXPIRY);
        assert_eq!(f["CreationTime"], "1970-01-01T00:00Z");
        let stopped =
            Instance::new("i-a", "r", Status::Stopped).with_stopped_mode(StoppedMode::StopCharging);
        let f = instance_fields(&stopped, None, 0, StoppedMode::KeepCharging);
        assert_eq!(f["StoppedMode"], "StopCharging");
        assert_eq!(f["StartTime"], "");
        let plain = Instance::new("i-a", "r", Status::Stopped);
        assert_eq!(
            instance_fields(&plain, None, 0, StoppedMode::KeepCharging)["StoppedMode"],
            "KeepCharging"
        );
    }

    #[test]
    fn locks_are_listed() {
        let i = Instance::new("i-a", "r", Status::Running).with_lock("security");
        let f = instance_fields(&i, None, 0, StoppedMode::KeepCharging);
        assert_eq!(
            f["OperationLocks"]["LockReason"][0]["LockReason"],
            "security"
        );
    }
}
