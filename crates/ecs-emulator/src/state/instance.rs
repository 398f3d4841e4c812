//! An emulated ECS instance as users describe it (state file, admin API, library): its id,
//! region, power status, operation locks, stopped mode, charge type and expiry. The store
//! (`state::store`) keeps these and drives their status over time.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::duration;

/// An ECS instance `Status`, as `DescribeInstances` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Being created; neither start nor stop is allowed.
    Pending,
    /// Transitory: on its way to `Running`.
    Starting,
    /// Stable.
    Running,
    /// Transitory: on its way to `Stopped`.
    Stopping,
    /// Stable.
    Stopped,
}

impl Status {
    /// The name ECS uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Pending" => Ok(Self::Pending),
            "Starting" => Ok(Self::Starting),
            "Running" => Ok(Self::Running),
            "Stopping" => Ok(Self::Stopping),
            "Stopped" => Ok(Self::Stopped),
            other => Err(format!(
                "unknown status {other:?} (expected Pending, Starting, Running, Stopping or Stopped)"
            )),
        }
    }
}

/// How a stopped instance is billed (`StoppedMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoppedMode {
    /// Standard stop: resources and billing kept.
    KeepCharging,
    /// Economical stop: compute released and not billed.
    StopCharging,
}

impl StoppedMode {
    /// The name ECS uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepCharging => "KeepCharging",
            Self::StopCharging => "StopCharging",
        }
    }
}

impl FromStr for StoppedMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "KeepCharging" => Ok(Self::KeepCharging),
            "StopCharging" => Ok(Self::StopCharging),
            other => Err(format!(
                "unknown stopped mode {other:?} (expected KeepCharging or StopCharging)"
            )),
        }
    }
}

/// Billing method (`InstanceChargeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ChargeType {
    /// Pay-as-you-go.
    #[default]
    PostPaid,
    /// Subscription: has an expiry; `StopCharging` does not apply.
    PrePaid,
}

impl ChargeType {
    /// The name ECS uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostPaid => "PostPaid",
            Self::PrePaid => "PrePaid",
        }
    }
}

impl FromStr for ChargeType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PostPaid" => Ok(Self::PostPaid),
            "PrePaid" => Ok(Self::PrePaid),
            other => Err(format!(
                "unknown charge type {other:?} (expected PostPaid or PrePaid)"
            )),
        }
    }
}

/// One emulated instance. In the state file and the admin API its fields are camelCase
/// (`id`, `region`, `status`, `locks`, `stoppedMode`, `expiredTime`, `chargeType`, `zone`,
/// `name`, `instanceType`, `transitionDelay`, `tags`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    /// `InstanceId`, e.g. `i-abc`.
    pub id: String,
    /// `RegionId`, e.g. `cn-hangzhou`.
    pub region: String,
    /// Power status. Setting `Starting` or `Stopping` begins that transition.
    #[serde(default = "default_status")]
    pub status: Status,
    /// `OperationLocks` reasons, e.g. `security`, `financial`, `recycling`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// How the instance is (or will be, once stopped) billed while stopped; `None` means the
    /// emulator's `defaultStoppedMode`. `DescribeInstances` shows `Not-applicable` unless Stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_mode: Option<StoppedMode>,
    /// `ExpiredTime`; for `PrePaid` instances a past value makes `StartInstance` fail with
    /// `InstanceExpired`. `None` shows as `2099-12-31T15:59Z` (what ECS shows for pay-as-you-go).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_expired_time",
        deserialize_with = "deserialize_expired_time"
    )]
    pub expired_time: Option<jiff::Timestamp>,
    /// `InstanceChargeType`.
    #[serde(default)]
    pub charge_type: ChargeType,
    /// `ZoneId`; `None` shows as `<region>-a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `InstanceName`; `None` shows as the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `InstanceType`; `None` shows as `ecs.g7.large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// How long this instance's Starting/Stopping last; `None` means the emulator's
    /// `transitionDelay`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub transition_delay: Option<Duration>,
    /// Tags, shown by `DescribeInstances` as `Tags.Tag[]` (`TagKey`, `TagValue`). In the state
    /// file and the admin API a map (`{team: web}`) or a list (`[{key: team, value: web}]`);
    /// listed as a map.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "deserialize_tags"
    )]
    pub tags: BTreeMap<String, String>,
}

/// Most tags ECS lets a user put on one resource.
pub const MAX_TAGS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagItem {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TagsForm {
    Map(BTreeMap<String, String>),
    List(Vec<TagItem>),
}

fn deserialize_tags<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    match Option::<TagsForm>::deserialize(deserializer)? {
        None => Ok(BTreeMap::new()),
        Some(TagsForm::Map(map)) => Ok(map),
        Some(TagsForm::List(items)) => {
            let mut map = BTreeMap::new();
            for item in items {
                if map.insert(item.key.clone(), item.value).is_some() {
                    return Err(serde::de::Error::custom(format!(
                        "tag {:?} is listed twice",
                        item.key
                    )));
                }
            }
            Ok(map)
        }
    }
}

fn default_status() -> Status {
    Status::Stopped
}

/// The `ExpiredTime` format of `DescribeInstances`: `yyyy-MM-ddTHH:mmZ`, UTC.
pub(crate) fn format_expired_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%MZ").to_string()
}

// serde's `serialize_with` passes the field by reference.
#[allow(clippy::ref_option)]
fn serialize_expired_time<S: Serializer>(
    value: &Option<jiff::Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(t) => serializer.serialize_str(&format_expired_time(*t)),
        None => serializer.serialize_none(),
    }
}

fn deserialize_expired_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<jiff::Timestamp>, D::Error> {
    let raw: Option<String> = Option::deserialize(deserializer)?;
    raw.map(|s| {
        s.parse::<jiff::Timestamp>().map_err(|e| {
            serde::de::Error::custom(format!(
                "expiredTime {s:?} is not a UTC time such as 2030-01-01T00:00Z: {e}"
            ))
        })
    })
    .transpose()
}

impl Instance {
    /// A pay-as-you-go instance with defaults for everything but id, region and status.
    #[must_use]
    pub fn new(id: impl Into<String>, region: impl Into<String>, status: Status) -> Self {
        Self {
            id: id.into(),
            region: region.into(),
            status,
            locks: Vec::new(),
            stopped_mode: None,
            expired_time: None,
            charge_type: ChargeType::PostPaid,
            zone: None,
            name: None,
            instance_type: None,
            transition_delay: None,
            tags: BTreeMap::new(),
        }
    }

    /// Adds a tag.
    #[must_use]
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Adds an operation lock reason.
    #[must_use]
    pub fn with_lock(mut self, reason: impl Into<String>) -> Self {
        self.locks.push(reason.into());
        self
    }

    /// Sets the stopped mode.
    #[must_use]
    pub fn with_stopped_mode(mut self, mode: StoppedMode) -> Self {
        self.stopped_mode = Some(mode);
        self
    }

    /// Sets this instance's transition delay.
    #[must_use]
    pub fn with_transition_delay(mut self, delay: Duration) -> Self {
        self.transition_delay = Some(delay);
        self
    }

    /// Checks the fields a state file or an admin call may get wrong.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("instance id is empty".to_owned());
        }
        if self.id.len() > 64 || self.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "instance id {:?} must be at most 64 characters without whitespace",
                self.id
            ));
        }
        if self.region.trim().is_empty() {
            return Err(format!("instance {}: region is empty", self.id));
        }
        if let Some(lock) = self.locks.iter().find(|l| l.trim().is_empty()) {
            return Err(format!("instance {}: empty lock reason {lock:?}", self.id));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(format!(
                "instance {}: {} tags, at most {MAX_TAGS}",
                self.id,
                self.tags.len()
            ));
        }
        for (key, value) in &self.tags {
            if key.trim().is_empty() || key.chars().count() > 128 || value.chars().count() > 128 {
                return Err(format!(
                    "instance {}: tag {key:?}: keys are 1 to 128 characters, values at most 128",
                    self.id
                ));
            }
        }
        Ok(())
    }

    /// Whether a lock with this reason (case-insensitive) is present.
    #[must_use]
    pub fn has_lock(&self, reason: &str) -> bool {
        self.locks.iter().any(|l| l.eq_ignore_ascii_case(reason))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_design_example() {
        let i: Instance =
            serde_yaml::from_str("{id: i-abc, region: cn-hangzhou, status: Stopped, locks: []}")
                .unwrap();
        assert_eq!(i, Instance::new("i-abc", "cn-hangzhou", Status::Stopped));
    }

    #[test]
    fn parses_the_optional_fields() {
        let i: Instance = serde_yaml::from_str(
            "{id: i-b, region: cn-beijing, status: Running, locks: [financial], stoppedMode: StopCharging, \
             expiredTime: '2030-01-02T03:04Z', chargeType: PrePaid, transitionDelay: 500ms}",
        )
        .unwrap();
        assert!(i.has_lock("FINANCIAL"));
        assert_eq!(i.stopped_mode, Some(StoppedMode::StopCharging));
        assert_eq!(i.charge_type, ChargeType::PrePaid);
        assert_eq!(i.transition_delay, Some(Duration::from_millis(500)));
        assert_eq!(
            format_expired_time(i.expired_time.unwrap()),
            "2030-01-02T03:04Z"
        );
        let back = serde_json::to_value(&i).unwrap();
        assert_eq!(back["expiredTime"], "2030-01-02T03:04Z");
        assert_eq!(back["transitionDelay"], "500ms");
    }

    #[test]
    fn tags_parse_as_a_map_or_a_list() {
        let map: Instance =
            serde_yaml::from_str("{id: i-a, region: r, tags: {team: web, env: prod}}").unwrap();
        let list: Instance = serde_yaml::from_str(
            "{id: i-a, region: r, tags: [{key: team, value: web}, {key: env, value: prod}]}",
        )
        .unwrap();
        assert_eq!(map, list);
        assert_eq!(
            map,
            Instance::new("i-a", "r", Status::Stopped)
                .with_tag("env", "prod")
                .with_tag("team", "web")
        );
        let back = serde_json::to_value(&map).unwrap();
        assert_eq!(back["tags"]["team"], "web");
        let none = serde_json::to_value(Instance::new("i-a", "r", Status::Stopped)).unwrap();
        assert!(none.get("tags").is_none());
        assert!(
            serde_yaml::from_str::<Instance>(
                "{id: i-a, region: r, tags: [{key: a, value: 1}, {key: a, value: 2}]}"
            )
            .is_err()
        );
        assert!(
            Instance::new("i-a", "r", Status::Stopped)
                .with_tag("", "x")
                .validate()
                .is_err()
        );
        let many = (0..21).fold(Instance::new("i-a", "r", Status::Stopped), |i, n| {
            i.with_tag(format!("k{n}"), "v")
        });
        assert!(many.validate().is_err());
    }

    #[test]
    fn rejects_unknown_fields_and_statuses() {
        assert!(serde_yaml::from_str::<Instance>("{id: i-a, region: r, colour: red}").is_err());
        assert!(
            serde_yaml::from_str::<Instance>("{id: i-a, region: r, status: Sleeping}").is_err()
        );
        assert!(
            serde_yaml::from_str::<Instance>("{id: i-a, region: r, expiredTime: soon}").is_err()
        );
    }

    #[test]
    fn validate_catches_empty_fields() {
        assert!(Instance::new("", "r", Status::Running).validate().is_err());
        assert!(
            Instance::new("i-a", " ", Status::Running)
                .validate()
                .is_err()
        );
        assert!(
            Instance::new("i a", "r", Status::Running)
                .validate()
                .is_err()
        );
        assert!(
            Instance::new("i-a", "r", Status::Running)
                .with_lock("")
                .validate()
                .is_err()
        );
        assert!(
            Instance::new("i-a", "r", Status::Running)
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn status_round_trips() {
        for s in ["Pending", "Starting", "Running", "Stopping", "Stopped"] {
            assert_eq!(s.parse::<Status>().unwrap().as_str(), s);
        }
        assert!("running".parse::<Status>().is_err());
    }
}
