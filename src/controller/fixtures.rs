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

/// An access guard over empty caches but one policy, `default`, whose one rule grants every
/// namespace every instance (the behaviour before the policy existed).
pub fn access_granting_everything() -> crate::controller::access::AccessGuard {
    access_granting_everything_over(kube::runtime::reflector::store().0)
}

/// [`access_granting_everything`] over this cache of resources.
#[allow(clippy::unwrap_used)]
pub fn access_granting_everything_over(
    resources: kube::runtime::reflector::Store<crate::api::EcsInstancePower>,
) -> crate::controller::access::AccessGuard {
    use kube::runtime::{reflector, watcher};
    let (namespaces, _) = reflector::store();
    let (policies, mut writer) = reflector::store();
    let policy: crate::api::EcsPowerAccessPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsPowerAccessPolicy",
        "metadata": {"name": "default", "resourceVersion": "1"},
        "spec": {"rules": [{"name": "everything", "allNamespaces": true, "anyInstance": true}]},
    }))
    .unwrap();
    writer.apply_watcher_event(&watcher::Event::Apply(policy));
    crate::controller::access::AccessGuard::new(
        resources,
        policies,
        namespaces,
        crate::controller::access::PolicyScope::OperatorCredentials,
    )
}
