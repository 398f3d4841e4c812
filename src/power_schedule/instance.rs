//! A schedule applied to one instance: the instance's override on top of the schedule's state, and
//! the schedule's `actions` (a state the schedule may not act on leaves the instance unmanaged).

use jiff::Timestamp;

use super::{Evaluation, ScheduleActions, ScheduleSource, ScheduledState};

/// The state an instance on a schedule is to be kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EffectiveState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// The schedule's `actions` exclude the state it names now: no write call.
    Unmanaged,
}

impl EffectiveState {
    /// The word as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectiveState::Running => "Running",
            EffectiveState::Stopped => "Stopped",
            EffectiveState::Unmanaged => "Unmanaged",
        }
    }
}

impl From<ScheduledState> for EffectiveState {
    fn from(state: ScheduledState) -> Self {
        match state {
            ScheduledState::Running => EffectiveState::Running,
            ScheduledState::Stopped => EffectiveState::Stopped,
        }
    }
}

/// An instance's temporary override of its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// The state to hold.
    pub state: ScheduledState,
    /// When it ends; `None`: at the next scheduled transition after it was first seen.
    pub until: Option<Timestamp>,
}

/// An override as resolved: when it ends and whether it holds now. The controller keeps it in
/// status, so an override without `until` keeps the end it got when it was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideState {
    /// The state it holds.
    pub state: ScheduledState,
    /// When it ends (`None`: no scheduled transition within a year, so it holds until removed).
    pub until: Option<Timestamp>,
    /// Whether it holds now.
    pub active: bool,
}

/// A schedule applied to an instance at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceState {
    /// The schedule's state now (before override and actions).
    pub scheduled: ScheduledState,
    /// The state the instance is to be kept in.
    pub effective: EffectiveState,
    /// What decides it: the schedule's source, or `Override`.
    pub source: ScheduleSource,
    /// The override, when the spec has one.
    pub override_state: Option<OverrideState>,
}

/// Applies the override and the actions to a schedule's evaluation at `now`. `remembered` is the
/// override as the previous status recorded it: an override without `until` keeps the end it got
/// when first seen (the next transition then), as long as its state is unchanged.
///
/// An override holds whatever the schedule's `actions` are: it is an explicit request for this
/// instance.
pub fn apply(
    evaluation: &Evaluation,
    actions: ScheduleActions,
    requested: Option<Override>,
    remembered: Option<OverrideState>,
    now: Timestamp,
) -> InstanceState {
    let override_state = requested.map(|o| {
        let until = o
            .until
            .or_else(|| {
                remembered
                    .filter(|r| r.state == o.state)
                    .and_then(|r| r.until)
            })
            .or_else(|| evaluation.next().map(|t| t.time));
        OverrideState {
            state: o.state,
            until,
            active: until.is_none_or(|until| now < until),
        }
    });
    let (effective, source) = match override_state {
        Some(o) if o.active => (o.state.into(), ScheduleSource::Override),
        _ => (managed(actions, evaluation.state), evaluation.source),
    };
    InstanceState {
        scheduled: evaluation.state,
        effective,
        source,
        override_state,
    }
}

/// The scheduled state as the actions allow it: `StopOnly` leaves Running unmanaged, `StartOnly`
/// leaves Stopped unmanaged.
pub fn managed(actions: ScheduleActions, state: ScheduledState) -> EffectiveState {
    match (actions, state) {
        (ScheduleActions::StopOnly, ScheduledState::Running)
        | (ScheduleActions::StartOnly, ScheduledState::Stopped) => EffectiveState::Unmanaged,
        _ => state.into(),
    }
}
