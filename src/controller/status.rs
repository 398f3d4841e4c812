//! The status write, the last step of a reconcile: one JSON merge patch on `/status` that sets
//! every field of the new status and clears (`null`) every field it no longer has.
//!
//! The fields to clear are not a hand-kept list: they are the properties of the status type's own
//! JSON schema (the one the CRD publishes), so a field added to `EcsInstancePowerStatus` is
//! cleared like the others without a second list to remember. A merge patch rather than
//! server-side apply: it replaces `conditions` as a whole and removes what is `null`, which every
//! API server (and kube-sandbox) does the same way, without depending on managed-fields
//! bookkeeping.

use std::sync::LazyLock;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::api::{EcsInstancePower, EcsInstancePowerStatus};

/// The status fields, from the schema of [`EcsInstancePowerStatus`].
static STATUS_FIELDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let schema = schemars::schema_for!(EcsInstancePowerStatus);
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
});

/// The fields of `status.schedule`: a merge patch merges nested objects, so a field left out (an
/// override removed) is cleared with an explicit null too.
static SCHEDULE_FIELDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let schema = schemars::schema_for!(crate::api::InstanceScheduleStatus);
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
});

/// The body of the merge patch that makes the status equal to `status`.
///
/// # Errors
/// When the status cannot be encoded.
pub fn merge_patch(status: &EcsInstancePowerStatus) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(status)?;
    if let Some(map) = value.as_object_mut() {
        for field in STATUS_FIELDS.iter() {
            map.entry(field.clone()).or_insert(Value::Null);
        }
        if let Some(schedule) = map.get_mut("schedule").and_then(Value::as_object_mut) {
            for field in SCHEDULE_FIELDS.iter() {
                schedule.entry(field.clone()).or_insert(Value::Null);
            }
        }
    }
    Ok(serde_json::json!({ "status": value }))
}

/// Writes `status` as the resource's status.
///
/// # Errors
/// [`WriteError`] when the status cannot be encoded or the API server refuses the patch.
/// Returns the resourceVersion of the object as written.
pub async fn write(
    api: &Api<EcsInstancePower>,
    obj: &EcsInstancePower,
    status: &EcsInstancePowerStatus,
) -> Result<Option<String>, WriteError> {
    let patch = merge_patch(status).map_err(WriteError::Encode)?;
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(WriteError::Kube)?;
    Ok(written.metadata.resource_version)
}

/// Why the status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The status could not be encoded.
    #[error("cannot encode the status: {0}")]
    Encode(#[source] serde_json::Error),
    /// The API server refused the patch.
    #[error("the status patch failed: {0}")]
    Kube(#[source] kube::Error),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::api::{LastAction, LastError, RetryStatus};

    fn t() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    /// A status with every field set.
    fn full() -> EcsInstancePowerStatus {
        EcsInstancePowerStatus {
            observed_generation: Some(1),
            instance_status: Some("Running".into()),
            last_observed_time: Some(t()),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Running".into(),
                message: "m".into(),
                observed_generation: Some(1),
                last_transition_time: t(),
            }],
            last_action: Some(LastAction {
                action: "StartInstance".into(),
                request_id: None,
                time: t(),
                dry_run: false,
            }),
            last_error: Some(Box::new(LastError {
                action: None,
                code: "c".into(),
                message: "m".into(),
                http_status: None,
                request_id: None,
                time: t(),
            })),
            retry: Some(Box::new(RetryStatus {
                attempts: 1,
                class: Some("Capacity".into()),
                action: Some("StartInstance".into()),
                next_attempt_time: t(),
            })),
            schedule: Some(Box::new(crate::api::InstanceScheduleStatus {
                name: "office-hours".into(),
                observed_generation: Some(1),
                state: Some(crate::api::ScheduledState::Running),
                effective_state: Some("Running".into()),
                source: Some(crate::api::ScheduleSource::Window),
                since: Some(t()),
                next_transition: Some(crate::api::NextTransition {
                    time: t(),
                    state: crate::api::ScheduledState::Stopped,
                }),
                override_status: Some(crate::api::OverrideStatus {
                    state: crate::api::ScheduledState::Running,
                    until: Some(t()),
                    active: true,
                }),
                applied_state: Some("Running".into()),
                applied_time: Some(t()),
            })),
        }
    }

    #[test]
    fn an_empty_status_clears_every_field_of_the_schema() {
        let patch = merge_patch(&EcsInstancePowerStatus::default()).unwrap();
        let fields = patch["status"].as_object().unwrap();
        let properties = schemars::schema_for!(EcsInstancePowerStatus);
        let properties = properties.get("properties").unwrap().as_object().unwrap();
        assert!(!properties.is_empty());
        for name in properties.keys() {
            assert_eq!(
                fields.get(name),
                Some(&Value::Null),
                "{name} is not cleared"
            );
        }
    }

    #[test]
    fn a_new_status_field_cannot_be_forgotten() {
        // Every field the status type serialises is one the patch clears when it is absent: the
        // list comes from the type itself.
        let serialised = serde_json::to_value(full()).unwrap();
        let mut written: Vec<&String> = serialised.as_object().unwrap().keys().collect();
        let mut cleared: Vec<&String> = STATUS_FIELDS.iter().collect();
        written.sort();
        cleared.sort();
        assert_eq!(written, cleared);
        let patch = merge_patch(&full()).unwrap();
        assert_eq!(
            patch["status"], serialised,
            "a full status is written as it is"
        );
    }
}
