//! What `DescribeInstances` tells the operator about one instance (the "observe" step).
//!
//! The [`client`](super::client) parses each `DescribeInstances` page into
//! [`DescribeInstancesPage`] and returns [`InstanceObservation`]s; the controller compares
//! [`InstanceStatus`] with the desired state and feeds `lock_reasons` to [`classify_lock`](super::catalogue::classify_lock).
//! The instance's tags (`Tags.Tag[]`) come along for access rules that match on them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The ECS `Status` of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    /// Being created.
    Pending,
    /// Transitory: on its way to `Running`.
    Starting,
    /// Stable: running (says nothing about the guest OS).
    Running,
    /// Transitory: on its way to `Stopped`.
    Stopping,
    /// Stable: stopped.
    Stopped,
    /// A status this operator does not know, as ECS spelled it.
    Other(String),
}

impl InstanceStatus {
    /// Parses an ECS `Status` value (exact spelling; anything else is [`InstanceStatus::Other`]).
    #[must_use]
    pub fn parse(value: &str) -> Self {
        match value {
            "Pending" => Self::Pending,
            "Starting" => Self::Starting,
            "Running" => Self::Running,
            "Stopping" => Self::Stopping,
            "Stopped" => Self::Stopped,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The ECS spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Other(other) => other,
        }
    }

    /// Whether the instance is between two stable states (`Pending`, `Starting`, `Stopping`).
    #[must_use]
    pub fn is_transitional(&self) -> bool {
        matches!(self, Self::Pending | Self::Starting | Self::Stopping)
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance as `DescribeInstances` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceObservation {
    /// The instance ID.
    pub instance_id: String,
    /// Its power status.
    pub status: InstanceStatus,
    /// `OperationLocks.LockReason[].LockReason` (`security`, `financial`, `recycling`, …).
    pub lock_reasons: Vec<String>,
    /// `StoppedMode` (`KeepCharging`, `StopCharging`, `Not-applicable`), when reported.
    pub stopped_mode: Option<String>,
    /// `ExpiredTime` (subscription expiry, `yyyy-MM-ddTHH:mmZ`), when reported.
    pub expired_time: Option<String>,
    /// `Tags.Tag[]`: `TagKey` → `TagValue` (an absent value is empty; an entry without a key is
    /// skipped; ECS keys are unique per instance, should one repeat the last value wins).
    pub tags: BTreeMap<String, String>,
}

/// One page of a `DescribeInstances` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeInstancesPage {
    /// The `RequestId` of the page.
    pub request_id: Option<String>,
    /// The instances on this page.
    pub instances: Vec<InstanceObservation>,
    /// The token for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// Why a `DescribeInstances` body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// Not JSON of the expected shape.
    #[error("not a DescribeInstances answer: {0}")]
    Shape(String),
    /// An instance entry without `InstanceId` or `Status`.
    #[error("an instance entry has no {0}")]
    MissingField(&'static str),
}

impl DescribeInstancesPage {
    /// Parses a 2xx `DescribeInstances` body.
    ///
    /// # Errors
    /// [`PageError`] when the body is not the expected JSON or an entry lacks `InstanceId` or
    /// `Status`.
    pub fn parse(body: &[u8]) -> Result<Self, PageError> {
        let raw: RawPage =
            serde_json::from_slice(body).map_err(|e| PageError::Shape(e.to_string()))?;
        let instances = raw
            .instances
            .map(|i| i.instance)
            .unwrap_or_default()
            .into_iter()
            .map(RawInstance::into_observation)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            request_id: non_empty(raw.request_id),
            instances,
            next_token: non_empty(raw.next_token),
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "Instances")]
    instances: Option<RawInstances>,
}

#[derive(Deserialize)]
struct RawInstances {
    #[serde(rename = "Instance", default)]
    instance: Vec<RawInstance>,
}

#[derive(Deserialize)]
struct RawInstance {
    #[serde(rename = "InstanceId")]
    instance_id: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "StoppedMode")]
    stopped_mode: Option<String>,
    #[serde(rename = "ExpiredTime")]
    expired_time: Option<String>,
    #[serde(rename = "OperationLocks")]
    operation_locks: Option<RawLocks>,
    #[serde(rename = "Tags")]
    tags: Option<RawTags>,
}

#[derive(Deserialize)]
struct RawTags {
    #[serde(rename = "Tag", default)]
    tag: Vec<RawTag>,
}

#[derive(Deserialize)]
struct RawTag {
    #[serde(rename = "TagKey")]
    key: Option<String>,
    #[serde(rename = "TagValue")]
    value: Option<String>,
}

#[derive(Deserialize)]
struct RawLocks {
    #[serde(rename = "LockReason", default)]
    lock_reason: Vec<RawLock>,
}

#[derive(Deserialize)]
struct RawLock {
    #[serde(rename = "LockReason")]
    lock_reason: Option<String>,
}

impl RawInstance {
    fn into_observation(self) -> Result<InstanceObservation, PageError> {
        let instance_id =
            non_empty(self.instance_id).ok_or(PageError::MissingField("InstanceId"))?;
        let status = non_empty(self.status).ok_or(PageError::MissingField("Status"))?;
        Ok(InstanceObservation {
            instance_id,
            status: InstanceStatus::parse(&status),
            lock_reasons: self
                .operation_locks
                .map(|locks| locks.lock_reason)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|lock| non_empty(lock.lock_reason))
                .collect(),
            stopped_mode: non_empty(self.stopped_mode),
            expired_time: non_empty(self.expired_time),
            tags: self
                .tags
                .map(|tags| tags.tag)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|tag| {
                    let key = tag.key.filter(|k| !k.is_empty())?;
                    Some((key, tag.value.unwrap_or_default()))
                })
                .collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_page() {
        let body = br#"{
          "RequestId": "R1", "TotalCount": 2, "PageNumber": 1, "PageSize": 100, "NextToken": "tok",
          "Instances": {"Instance": [
            {"InstanceId": "i-a", "Status": "Running", "StoppedMode": "Not-applicable",
             "ExpiredTime": "2099-12-31T15:59Z",
             "Tags": {"Tag": [{"TagKey": "team", "TagValue": "batch"}, {"TagKey": "power", "TagValue": ""},
                              {"TagValue": "no key"}, {"TagKey": "env"}]},
             "OperationLocks": {"LockReason": [{"LockReason": "security", "LockMsg": "x"}, {"LockReason": "financial"}]}},
            {"InstanceId": "i-b", "Status": "Stopped", "StoppedMode": "StopCharging",
             "OperationLocks": {"LockReason": []}, "ExpiredTime": ""}
          ]}}"#;
        let page = DescribeInstancesPage::parse(body).unwrap();
        assert_eq!(page.request_id.as_deref(), Some("R1"));
        assert_eq!(page.next_token.as_deref(), Some("tok"));
        assert_eq!(
            page.instances,
            vec![
                InstanceObservation {
                    instance_id: "i-a".into(),
                    status: InstanceStatus::Running,
                    lock_reasons: vec!["security".into(), "financial".into()],
                    stopped_mode: Some("Not-applicable".into()),
                    expired_time: Some("2099-12-31T15:59Z".into()),
                    tags: [("env", ""), ("power", ""), ("team", "batch")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                },
                InstanceObservation {
                    instance_id: "i-b".into(),
                    status: InstanceStatus::Stopped,
                    lock_reasons: vec![],
                    stopped_mode: Some("StopCharging".into()),
                    expired_time: None,
                    tags: BTreeMap::new(),
                },
            ]
        );
    }

    #[test]
    fn empty_answers() {
        for body in [
            &br#"{"RequestId":"R","Instances":{"Instance":[]},"NextToken":""}"#[..],
            br#"{"RequestId":"R","Instances":{}}"#,
            br#"{"RequestId":"R"}"#,
        ] {
            let page = DescribeInstancesPage::parse(body).unwrap();
            assert!(page.instances.is_empty());
            assert_eq!(page.next_token, None);
        }
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(
            DescribeInstancesPage::parse(b"<html>"),
            Err(PageError::Shape(_))
        ));
        assert!(matches!(
            DescribeInstancesPage::parse(br#"{"RequestId":"R","Instances":{"Instance":[{"#),
            Err(PageError::Shape(_))
        ));
        assert!(matches!(
            DescribeInstancesPage::parse(br#"{"Instances":{"Instance":"nope"}}"#),
            Err(PageError::Shape(_))
        ));
        assert_eq!(
            DescribeInstancesPage::parse(br#"{"Instances":{"Instance":[{"Status":"Running"}]}}"#),
            Err(PageError::MissingField("InstanceId"))
        );
        assert_eq!(
            DescribeInstancesPage::parse(br#"{"Instances":{"Instance":[{"InstanceId":"i-a"}]}}"#),
            Err(PageError::MissingField("Status"))
        );
    }

    #[test]
    fn statuses() {
        for s in [
            "Pending",
            "Starting",
            "Running",
            "Stopping",
            "Stopped",
            "Rebooting",
        ] {
            assert_eq!(InstanceStatus::parse(s).as_str(), s);
        }
        assert_eq!(
            InstanceStatus::parse("running"),
            InstanceStatus::Other("running".into())
        );
        assert!(InstanceStatus::Starting.is_transitional());
        assert!(!InstanceStatus::Running.is_transitional());
        assert_eq!(InstanceStatus::Stopped.to_string(), "Stopped");
    }
}
