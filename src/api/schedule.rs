//! The `EcsPowerSchedule` custom resource: when instances that refer to it run and when they stop.
//!
//! Data only, like the rest of [`crate::api`]: the spec users write (time zone, weekly windows,
//! holidays, dated exceptions, enforcement and actions) and the status the operator reports. The
//! evaluation of a spec lives in [`crate::power_schedule`]; doc comments here are `kubectl explain`
//! text.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `HH:MM`, 00:00 to 23:59.
const CLOCK: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// `HH:MM`, 00:00 to 23:59, or `24:00`.
const CLOCK_OR_MIDNIGHT: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
/// A local date, `YYYY-MM-DD`.
const DATE: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";
/// A local date-time, `YYYY-MM-DDTHH:MM`.
const DATE_TIME: &str =
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]$";

/// A weekly power schedule in one time zone, for the EcsInstancePower resources that refer to it.
// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecspower.dev",
    version = "v1alpha1",
    kind = "EcsPowerSchedule",
    plural = "ecspowerschedules",
    singular = "ecspowerschedule",
    shortname = "ecsps",
    namespaced,
    status = "EcsPowerScheduleStatus",
    derive = "PartialEq",
    doc = "A weekly power schedule (windows, holidays, exceptions) in one time zone, for the EcsInstancePower resources whose spec.scheduleRef names it.",
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.nextTransition.time"
    ),
    printcolumn(
        name = "NextState",
        type_ = "string",
        json_path = ".status.nextTransition.state"
    ),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".status.instances"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.runningWindows) != has(self.stoppedWindows)").message("exactly one of runningWindows and stoppedWindows must be set"))]
#[serde(rename_all = "camelCase")]
pub struct EcsPowerScheduleSpec {
    /// IANA time zone of every time in this schedule, for example `Europe/Berlin` or
    /// `America/New_York`. Required; there is no default. Local times that do not exist (the hour
    /// skipped when clocks spring forward) mean the first instant after the gap; local times that
    /// occur twice (the hour repeated when clocks fall back) mean their first occurrence.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// The weekly windows in which instances run; outside them they are stopped. Exactly one of
    /// runningWindows and stoppedWindows is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub running_windows: Option<Vec<Window>>,

    /// The weekly windows in which instances are stopped; outside them they run. Exactly one of
    /// runningWindows and stoppedWindows is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub stopped_windows: Option<Vec<Window>>,

    /// Local dates (`YYYY-MM-DD`) on which instances are stopped for the whole local day,
    /// whatever the windows say. Exceptions take precedence over holidays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 366), inner(pattern(DATE)))]
    pub holidays: Vec<String>,

    /// Dated exceptions: a state held from a local start to a local end (half-open), taking
    /// precedence over holidays and windows. Overlapping exceptions with different states make the
    /// schedule invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub exceptions: Vec<ScheduleException>,

    /// `Always` (default): hold the scheduled state at every observation, so a manual start or stop
    /// is corrected. `OnTransition`: act only when the scheduled state changes (or the schedule is
    /// attached or changed); manual starts and stops in between are left alone.
    #[serde(default)]
    pub enforcement: Enforcement,

    /// `StartAndStop` (default): start and stop as scheduled. `StopOnly`: only stop; while the
    /// schedule says Running the instance is unmanaged. `StartOnly`: only start; while the schedule
    /// says Stopped the instance is unmanaged.
    #[serde(default)]
    pub actions: ScheduleActions,
}

/// A weekly window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.start != self.end").message("a window's end must differ from its start"))]
pub struct Window {
    /// The days on which the window STARTS (`Mon` … `Sun`). A window whose end is not after its
    /// start runs into the next day and still belongs to its start day.
    #[schemars(length(min = 1, max = 7))]
    pub days: Vec<Weekday>,
    /// Local start time, `HH:MM` (00:00 to 23:59).
    #[schemars(pattern(CLOCK))]
    pub start: String,
    /// Local end time, `HH:MM`, or `24:00` for the end of the start day. An end not after the start
    /// ends on the next day; it must differ from the start.
    #[schemars(pattern(CLOCK_OR_MIDNIGHT))]
    pub end: String,
}

/// A day of the week.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// A dated exception.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ScheduleException {
    /// A name for people and events, for example `release-night`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The state held during the exception: `Running` or `Stopped`.
    pub state: ScheduledState,
    /// Local start, `YYYY-MM-DDTHH:MM` (inclusive).
    #[schemars(pattern(DATE_TIME))]
    pub start: String,
    /// Local end, `YYYY-MM-DDTHH:MM` (exclusive); after the start.
    #[schemars(pattern(DATE_TIME))]
    pub end: String,
}

/// A power state a schedule can name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduledState {
    /// Instances run.
    Running,
    /// Instances are stopped.
    Stopped,
}

impl ScheduledState {
    /// The word as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduledState::Running => "Running",
            ScheduledState::Stopped => "Stopped",
        }
    }

    /// The other state.
    #[must_use]
    pub fn opposite(self) -> Self {
        match self {
            ScheduledState::Running => ScheduledState::Stopped,
            ScheduledState::Stopped => ScheduledState::Running,
        }
    }
}

/// When the operator enforces the scheduled state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Enforcement {
    /// At every observation: manual starts and stops are corrected.
    #[default]
    Always,
    /// Only when the scheduled state changes, or the schedule is attached or changed.
    OnTransition,
}

/// Which write calls a schedule makes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ScheduleActions {
    /// Start and stop as scheduled.
    #[default]
    StartAndStop,
    /// Only stop; while the schedule says Running, instances are unmanaged.
    StopOnly,
    /// Only start; while the schedule says Stopped, instances are unmanaged.
    StartOnly,
}

/// What decided a scheduled state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduleSource {
    /// A weekly window.
    Window,
    /// No window, holiday or exception: the opposite of the window list's state.
    Default,
    /// A holiday.
    Holiday,
    /// A dated exception.
    Exception,
    /// The resource's scheduleOverride (only on EcsInstancePower).
    Override,
}

impl ScheduleSource {
    /// The word as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Window => "Window",
            ScheduleSource::Default => "Default",
            ScheduleSource::Holiday => "Holiday",
            ScheduleSource::Exception => "Exception",
            ScheduleSource::Override => "Override",
        }
    }
}

/// The schedule's state now and its next transitions; written only by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcsPowerScheduleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: True with reason `Valid`, or False with reason `InvalidTimeZone`, `InvalidWindow`
    /// or `OverlappingExceptions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The schedule's state now: `Running` or `Stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ScheduledState>,
    /// What decides the state now: `Window`, `Default`, `Holiday` or `Exception`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ScheduleSource>,
    /// When the current state began (absent when it began more than a year ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// The next change of state (absent when none is due within a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<NextTransition>,
    /// The next changes of state, at most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upcoming: Vec<UpcomingTransition>,
    /// How many EcsInstancePower resources refer to this schedule.
    #[serde(default)]
    pub instances: i32,
}

/// A coming change of state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NextTransition {
    /// When it happens.
    pub time: Time,
    /// The state from then on.
    pub state: ScheduledState,
}

/// A coming change of state and what causes it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UpcomingTransition {
    /// When it happens.
    pub time: Time,
    /// The state from then on.
    pub state: ScheduledState,
    /// What decides that state: `Window`, `Default`, `Holiday` or `Exception`.
    pub source: ScheduleSource,
}
