//! The custom resources: `EcsInstancePower` (here), `EcsPowerSchedule` (the `schedule`
//! submodule) and `EcsPowerAccessPolicy` (the `access_policy` submodule), the API contract users
//! write and read.
//!
//! Everything here is data: the spec users declare, the status the controller reports, and the CRD
//! generated from both. Doc comments on fields become `kubectl explain` text, so they are written for
//! users. The controller (`crate::controller`) reads the spec and writes the status; nothing in this
//! module talks to Kubernetes or ECS.

// `kubectl explain` prints these docs verbatim, so they stay plain prose: ECS call names such as
// StartInstance are written without Markdown backticks (and the committed CRD YAML keeps its text).
// The spec's four flags are independent user-facing switches (three of them ECS call parameters);
// an enum would not describe them better. (Module-wide: the schema derive re-emits the struct.)
#![allow(clippy::doc_markdown, clippy::struct_excessive_bools)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod access_policy;
mod schedule;

pub use crate::ecs::StoppedMode;
/// Condition type: the instance is in the desired state.
pub use crate::vocabulary::condition::READY as CONDITION_READY;
/// Condition type: the operator expects progress without help (a transition or a retry).
pub use crate::vocabulary::condition::RECONCILING as CONDITION_RECONCILING;
/// Condition type: progress needs someone to act.
pub use crate::vocabulary::condition::STALLED as CONDITION_STALLED;
pub use access_policy::*;
pub use schedule::*;

/// Keeps one Alibaba Cloud ECS instance in the declared power state.
///
/// The operator starts or stops the instance (StartInstance / StopInstance) until it is in
/// `desiredState`, and reports the observed state, every ECS error and the retry schedule in `status`.
/// Deleting this resource leaves the instance as it is.
// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecspower.dev",
    version = "v1alpha1",
    kind = "EcsInstancePower",
    plural = "ecsinstancepowers",
    singular = "ecsinstancepower",
    shortname = "ecspower",
    namespaced,
    status = "EcsInstancePowerStatus",
    derive = "PartialEq",
    doc = "Keeps one Alibaba Cloud ECS instance in the power state declared by spec.desiredState.",
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instanceId"),
    printcolumn(name = "Desired", type_ = "string", json_path = ".spec.desiredState"),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".status.schedule.effectiveState",
        priority = 1
    ),
    printcolumn(
        name = "Actual",
        type_ = "string",
        json_path = ".status.instanceStatus"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.schedule.nextTransition.time",
        priority = 1
    )
)]
#[x_kube(validation = Rule::new("(has(self.desiredState) && self.desiredState == 'Scheduled') == has(self.scheduleRef)").message("scheduleRef is required with desiredState Scheduled and forbidden otherwise"))]
#[x_kube(validation = Rule::new("!has(self.scheduleOverride) || has(self.scheduleRef)").message("scheduleOverride needs scheduleRef"))]
#[serde(rename_all = "camelCase")]
pub struct EcsInstancePowerSpec {
    /// ID of the ECS instance to manage, for example `i-bp67acfmxazb4p3zh9lg`. Immutable: to manage
    /// another instance, create another EcsInstancePower.
    #[schemars(length(max = 64), pattern(r"^i-[0-9a-z]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceId is immutable"))]
    pub instance_id: String,

    /// Region of the instance, for example `cn-hangzhou`. It selects the ECS endpoint
    /// (`ecs.<regionId>.aliyuncs.com` unless the operator is configured with another endpoint).
    #[schemars(pattern(r"^[a-z]{2}(-[a-z0-9]+)+$"))]
    pub region_id: String,

    /// The power state to hold: `Running` (default), `Stopped`, or `Scheduled` to follow the
    /// EcsPowerSchedule named by `scheduleRef`.
    #[serde(default)]
    pub desired_state: DesiredState,

    /// The EcsPowerSchedule (same namespace) whose state to hold. Required with desiredState
    /// Scheduled, forbidden otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_ref: Option<ScheduleReference>,

    /// A temporary override of the schedule for this instance: hold `state` until `until`, or,
    /// without `until`, until the next scheduled transition after the operator first saw it. Needs
    /// scheduleRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_override: Option<ScheduleOverride>,

    /// Passed to StartInstance as `InitLocalDisk`: reinitialise (WIPE) the local disks when starting.
    /// Only meaningful for local-disk instance families (d1, i1, i2, …). Default false.
    #[serde(default)]
    pub init_local_disk: bool,

    /// Passed to StopInstance as `StoppedMode`: `KeepCharging` keeps the resources reserved (and
    /// billed); `StopCharging` (economical mode) releases vCPU and memory, so a later start may fail
    /// with NoStock. When unset, the ECS account default applies.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "stopped_mode"
    )]
    #[schemars(schema_with = "stopped_mode::schema")]
    pub stopped_mode: Option<StoppedMode>,

    /// Passed to StopInstance as `ForceStop`: power off without a graceful guest shutdown (may lose
    /// unwritten data). Default false.
    #[serde(default)]
    pub force_stop: bool,

    /// Send every write call with `DryRun=true`: ECS checks permissions, parameters and state and
    /// answers without changing anything. The verdict is reported as Ready reason `DryRunSucceeded`
    /// or as the error ECS returned. Default false.
    #[serde(default)]
    pub dry_run: bool,

    /// Observe and report only: make no write call while set. Default false.
    #[serde(default)]
    pub suspend: bool,

    /// Credentials for this instance: a Secret in the SAME namespace with keys `accessKeyId`,
    /// `accessKeySecret` and optionally `securityToken`. When unset, the operator's own credentials
    /// are used. When set and the Secret is missing, the operator reports CredentialsNotFound and
    /// never falls back to its own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

/// The power state an instance should be kept in.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DesiredState {
    /// The instance should be running (StartInstance when it is Stopped).
    #[default]
    Running,
    /// The instance should be stopped (StopInstance when it is Running).
    Stopped,
    /// The instance follows the EcsPowerSchedule named by `scheduleRef`.
    Scheduled,
}

/// A reference to an EcsPowerSchedule in the resource's own namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScheduleReference {
    /// Name of the EcsPowerSchedule (same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A temporary override of the schedule.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ScheduleOverride {
    /// The state to hold while the override lasts: `Running` or `Stopped`.
    pub state: ScheduledState,
    /// When the override ends (RFC 3339). Without it, the override ends at the next scheduled
    /// transition after the operator first saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// Why, for people (shown in events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

/// `spec.stoppedMode` in JSON and in the schema: the ECS type [`StoppedMode`] spelled as ECS spells
/// it, so the API and the ECS call share one type.
mod stopped_mode {
    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::StoppedMode;

    const ALL: [StoppedMode; 2] = [StoppedMode::KeepCharging, StoppedMode::StopCharging];

    // serde's `with` passes the field by reference.
    #[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(
        mode: &Option<StoppedMode>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        mode.map(StoppedMode::as_str).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<StoppedMode>, D::Error> {
        let Some(value) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        ALL.into_iter()
            .find(|mode| mode.as_str() == value)
            .map(Some)
            .ok_or_else(|| {
                let expected: Vec<&str> = ALL.iter().map(|m| m.as_str()).collect();
                D::Error::custom(format!(
                    "unknown stoppedMode {value:?}, expected one of {}",
                    expected.join(", ")
                ))
            })
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        let values: Vec<&str> = ALL.iter().map(|m| m.as_str()).collect();
        // The description is the field's doc comment, which kube puts beside this schema.
        json_schema!({
            "enum": values,
            "nullable": true,
            "type": "string"
        })
    }
}

/// A reference to a Secret in the resource's own namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretReference {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

// The parts most resources do not have (an error, a backoff, a schedule) are boxed: the
// controller's cache holds one status per resource, and inline they would make every one of them
// about 370 bytes larger (the whole object 1,072 bytes instead of 704; 4 MB at 10,000 resources).
/// What the operator observed and did; written only by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsInstancePowerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The last observed ECS status: `Pending`, `Starting`, `Running`, `Stopping`, `Stopped`, or
    /// `NotFound` when DescribeInstances does not return the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_status: Option<String>,

    /// When the instance was observed for this status. The status is rewritten only when something
    /// changes, so in a steady state this time stays old while the operator keeps re-checking the
    /// instance every resync interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_time: Option<Time>,

    /// `Ready`, `Reconciling` and `Stalled` (kstatus-compatible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The last write call that ECS accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<LastAction>,

    /// The last error ECS (or the way to it) returned; cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Box<LastError>>,

    /// The retry schedule while the operator backs off after an error; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<RetryStatus>>,

    /// The schedule as applied to this instance (desiredState Scheduled only). Rewritten only at
    /// transitions, not at every observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Box<InstanceScheduleStatus>>,
}

/// The schedule as applied to one instance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceScheduleStatus {
    /// The EcsPowerSchedule followed.
    pub name: String,
    /// The schedule's `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The schedule's state now: `Running` or `Stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ScheduledState>,
    /// The state the operator holds: `Running`, `Stopped`, or `Unmanaged` when the schedule's
    /// actions exclude the scheduled state (StopOnly while Running, StartOnly while Stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_state: Option<String>,
    /// What decides the effective state: `Window`, `Default`, `Holiday`, `Exception` or `Override`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ScheduleSource>,
    /// When the schedule's current state began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// The next scheduled change of state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<NextTransition>,
    /// The override as the operator resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "override")]
    pub override_status: Option<OverrideStatus>,
    /// The state the operator last enforced (with enforcement OnTransition it acts only when the
    /// effective state differs from this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_state: Option<String>,
    /// When the operator last enforced a state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_time: Option<Time>,
}

/// An override as the operator resolved it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OverrideStatus {
    /// The state it holds.
    pub state: ScheduledState,
    /// When it ends (from spec.scheduleOverride.until, or the next scheduled transition when the
    /// override was first seen); absent when no transition is due within a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// Whether it holds now.
    pub active: bool,
}

/// A write call that ECS accepted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastAction {
    /// `StartInstance` or `StopInstance`.
    pub action: String,
    /// The ECS RequestId of the call (quote it to Alibaba Cloud support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When ECS accepted the call.
    pub time: Time,
    /// Whether the call was a dry run.
    #[serde(default)]
    pub dry_run: bool,
}

/// An error from ECS or from the way to it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// The call that failed: `DescribeInstances`, `StartInstance` or `StopInstance`; absent when no
    /// call could be made (for example, missing credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The ECS error code (`OperationDenied.NoStock`, …) or the operator's own reason
    /// (`EcsUnreachable`, `MalformedResponse`, `CredentialsNotFound`, …).
    pub code: String,
    /// The error message.
    pub message: String,
    /// The HTTP status of the ECS answer, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// The ECS RequestId, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When the error happened.
    pub time: Time,
}

/// Backoff state, kept in status so that it survives an operator restart.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// Consecutive failures of one call in one retry class, for the current generation. A failure
    /// of another class or of another call starts a new count at 1; a successful observation ends
    /// a backoff of DescribeInstances, and a write call that ECS accepts ends a backoff of writes.
    pub attempts: i32,
    /// The retry class the attempts count: `Transient` (1 s to 5 min), `Throttled` (2 s to 5 min),
    /// `Capacity` (30 s to 30 min), `Conflict` (re-checked after 2 to 5 s, then as `Transient`) or
    /// `Terminal` (the write call is repeated every 10 minutes; the instance is still observed
    /// every resync interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The call whose failures are counted: `DescribeInstances`, `StartInstance` or
    /// `StopInstance`; absent when no call could be made (for example, missing credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// No retry of the failed call before this time.
    pub next_attempt_time: Time,
}

impl EcsInstancePowerStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The `EcsInstancePower` CRD as YAML, exactly what `crds/ecsinstancepowers.ecspower.dev.yaml`
/// holds (and `ecs-power-operator crd --name ecsinstancepowers.ecspower.dev` prints).
///
/// # Errors
///
/// When the generated CRD cannot be serialised as YAML (a bug).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&EcsInstancePower::crd())
}

/// Every CRD of the operator: its name (also its file name in `crds/`, with `.yaml`) and its
/// YAML, in a fixed order.
///
/// # Errors
///
/// When a generated CRD cannot be serialised as YAML (a bug).
pub fn crds_yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    [
        EcsInstancePower::crd(),
        EcsPowerSchedule::crd(),
        EcsPowerAccessPolicy::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = crd.metadata.name.clone().unwrap_or_default();
        Ok((name, serde_yaml::to_string(&crd)?))
    })
    .collect()
}

/// What `ecs-power-operator crd` prints: every CRD, as one YAML stream (`---` between documents).
///
/// # Errors
///
/// When a generated CRD cannot be serialised as YAML (a bug).
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    Ok(crds_yaml()?
        .into_iter()
        .map(|(_, yaml)| yaml)
        .collect::<Vec<_>>()
        .join("---\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_matches_the_generated_one() {
        let committed = include_str!("../crds/ecsinstancepowers.ecspower.dev.yaml");
        assert_eq!(
            crd_yaml().unwrap(),
            committed,
            "crds/ecsinstancepowers.ecspower.dev.yaml is stale: regenerate it with \
             `cargo run -- crd --name ecsinstancepowers.ecspower.dev > crds/ecsinstancepowers.ecspower.dev.yaml`"
        );
        let committed = include_str!("../crds/ecspowerschedules.ecspower.dev.yaml");
        let generated = crds_yaml().unwrap();
        assert_eq!(generated[1].0, "ecspowerschedules.ecspower.dev");
        assert_eq!(
            generated[1].1, committed,
            "crds/ecspowerschedules.ecspower.dev.yaml is stale: regenerate it with \
             `cargo run -- crd --name ecspowerschedules.ecspower.dev > crds/ecspowerschedules.ecspower.dev.yaml`"
        );
        let committed = include_str!("../crds/ecspoweraccesspolicies.ecspower.dev.yaml");
        assert_eq!(generated[2].0, "ecspoweraccesspolicies.ecspower.dev");
        assert_eq!(
            generated[2].1, committed,
            "crds/ecspoweraccesspolicies.ecspower.dev.yaml is stale: regenerate it with \
             `cargo run -- crd --name ecspoweraccesspolicies.ecspower.dev > crds/ecspoweraccesspolicies.ecspower.dev.yaml`"
        );
    }

    #[test]
    fn crd_carries_names_columns_and_validation() {
        let crd = EcsInstancePower::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("ecsinstancepowers.ecspower.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec!["ecspower".to_string()])
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Instance", "Desired", "Target", "Actual", "Ready", "Reason", "Age", "Next"
            ]
        );
        let next = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(
            next.priority,
            Some(1),
            "the next transition shows at -o wide only"
        );
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["required"],
            serde_json::json!(["instanceId", "regionId"])
        );
        let id = &spec["properties"]["instanceId"];
        assert_eq!(id["pattern"], "^i-[0-9a-z]+$");
        assert_eq!(id["maxLength"], 64);
        assert_eq!(id["x-kubernetes-validations"][0]["rule"], "self == oldSelf");
        assert_eq!(spec["properties"]["desiredState"]["default"], "Running");
        assert_eq!(
            spec["properties"]["desiredState"]["enum"],
            serde_json::json!(["Running", "Stopped", "Scheduled"])
        );
        let rules: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert_eq!(
            rules.len(),
            2,
            "scheduleRef with Scheduled, scheduleOverride with scheduleRef"
        );
        assert_eq!(
            spec["properties"]["stoppedMode"]["enum"],
            serde_json::json!(["KeepCharging", "StopCharging"])
        );
        for field in [
            "instanceId",
            "regionId",
            "desiredState",
            "dryRun",
            "suspend",
            "scheduleRef",
            "scheduleOverride",
        ] {
            let description = spec["properties"][field]["description"]
                .as_str()
                .unwrap_or("");
            assert!(
                description.len() > 20,
                "{field} lacks a kubectl explain text"
            );
        }
    }

    #[test]
    fn spec_defaults_apply_when_fields_are_omitted() {
        let spec: EcsInstancePowerSpec =
            serde_json::from_str(r#"{"instanceId":"i-abc","regionId":"cn-hangzhou"}"#).unwrap();
        assert_eq!(spec.desired_state, DesiredState::Running);
        assert!(!spec.dry_run && !spec.suspend && !spec.force_stop && !spec.init_local_disk);
        assert_eq!(spec.stopped_mode, None);
    }

    #[test]
    fn stopped_mode_is_the_ecs_type_spelled_as_ecs_spells_it() {
        let spec: EcsInstancePowerSpec = serde_json::from_str(
            r#"{"instanceId":"i-abc","regionId":"cn-hangzhou","stoppedMode":"StopCharging"}"#,
        )
        .unwrap();
        assert_eq!(
            spec.stopped_mode,
            Some(crate::ecs::StoppedMode::StopCharging)
        );
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["stoppedMode"],
            "StopCharging"
        );
        let wrong = serde_json::from_str::<EcsInstancePowerSpec>(
            r#"{"instanceId":"i-abc","regionId":"cn-hangzhou","stoppedMode":"Halt"}"#,
        );
        assert!(wrong.is_err());
    }
}
