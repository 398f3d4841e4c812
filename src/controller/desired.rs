//! The effective desired power state, the step before credentials: what the resource asks for, as
//! the [`PowerState`] that decide, the condition reasons and the metric labels use.
//!
//! The API's `spec.desiredState` is what users write. `Scheduled` resolves here, from the
//! referenced `EcsPowerSchedule` (evaluated by [`crate::power_schedule`]), the resource's
//! `scheduleOverride` and the previous `status.schedule`; decide never sees a schedule. A missing or
//! invalid schedule is a [`Problem`]: no ECS call is made.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    DesiredState, EcsInstancePower, EcsInstancePowerSpec, EcsInstancePowerStatus, EcsPowerSchedule,
    Enforcement, InstanceScheduleStatus, NextTransition, OverrideStatus, ScheduledState,
};
use crate::ecs::{ErrorClass, Verdict};
use crate::power_schedule::instance::{self, EffectiveState, Override, OverrideState};
use crate::power_schedule::{self as schedule};
use crate::vocabulary::reason;

use super::credentials::Problem;
use super::decide::WriteCall;

/// The power state an instance is to be kept in, once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
}

impl PowerState {
    /// The ECS `Status` that satisfies it; also the Ready reason and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => reason::RUNNING,
            PowerState::Stopped => reason::STOPPED,
        }
    }

    /// The write call that moves an instance toward this state.
    pub fn toward(self) -> WriteCall {
        match self {
            PowerState::Running => WriteCall::Start,
            PowerState::Stopped => WriteCall::Stop,
        }
    }
}

impl From<ScheduledState> for PowerState {
    fn from(state: ScheduledState) -> Self {
        match state {
            ScheduledState::Running => PowerState::Running,
            ScheduledState::Stopped => PowerState::Stopped,
        }
    }
}

/// What the desired step resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The state to hold, or `None`: make no write call (the schedule leaves the instance
    /// unmanaged now, or enforcement `OnTransition` already applied the current state).
    pub hold: Option<PowerState>,
    /// The next `status.schedule` (desiredState `Scheduled` only), `appliedState` not yet updated.
    pub schedule: Option<InstanceScheduleStatus>,
    /// The `Ready` message when the schedule leaves the instance alone now (its effective state is
    /// `Unmanaged`); `None` otherwise.
    pub unmanaged: Option<String>,
}

/// The effective desired power state of a resource that has no schedule, and the fallback for
/// messages of one whose schedule could not be resolved.
pub fn effective(spec: &EcsInstancePowerSpec) -> PowerState {
    match spec.desired_state {
        DesiredState::Stopped => PowerState::Stopped,
        DesiredState::Running | DesiredState::Scheduled => PowerState::Running,
    }
}

/// The effective desired state of a resource as its status last reported it, for the metric
/// label: what `spec.desiredState` says, or for a `Scheduled` resource its
/// `status.schedule.effectiveState` (`Running`, `Stopped`, `Unmanaged`); `Unknown` while its
/// schedule is missing, invalid or not yet resolved.
pub fn label(resource: &EcsInstancePower) -> &str {
    let spec = &resource.spec;
    let Some(reference) = spec
        .schedule_ref
        .as_ref()
        .filter(|_| spec.desired_state == DesiredState::Scheduled)
    else {
        return effective(spec).as_str();
    };
    let Some(status) = &resource.status else {
        return UNKNOWN;
    };
    let unresolved = status
        .condition(crate::vocabulary::condition::READY)
        .is_some_and(|c| {
            c.reason == reason::SCHEDULE_NOT_FOUND || c.reason == reason::SCHEDULE_INVALID
        });
    match &status.schedule {
        Some(s) if s.name == reference.name && !unresolved => {
            s.effective_state.as_deref().unwrap_or(UNKNOWN)
        }
        _ => UNKNOWN,
    }
}

const UNKNOWN: &str = "Unknown";

/// Resolves the desired state of a resource at `now`; `schedule` is the referenced
/// `EcsPowerSchedule` from the cache (`None` when it does not exist).
///
/// # Errors
/// A [`Problem`] with reason `ScheduleNotFound` or `ScheduleInvalid` (terminal: re-checked when the
/// schedule changes).
pub fn resolve(
    spec: &EcsInstancePowerSpec,
    schedule: Option<&EcsPowerSchedule>,
    previous: &EcsInstancePowerStatus,
    now: Timestamp,
) -> Result<Resolution, Problem> {
    let (DesiredState::Scheduled, Some(reference)) = (spec.desired_state, &spec.schedule_ref)
    else {
        return Ok(Resolution {
            hold: Some(effective(spec)),
            schedule: None,
            unmanaged: None,
        });
    };
    let Some(found) = schedule else {
        return Err(problem(
            reason::SCHEDULE_NOT_FOUND,
            format!(
                "EcsPowerSchedule {} named by spec.scheduleRef does not exist",
                reference.name
            ),
        ));
    };
    let compiled = schedule::compile(&found.spec).map_err(|invalid| {
        problem(
            reason::SCHEDULE_INVALID,
            format!(
                "EcsPowerSchedule {} is invalid ({}): {invalid}",
                reference.name,
                invalid.reason()
            ),
        )
    })?;
    let evaluation = schedule::evaluate(&compiled, now);
    let before = previous.schedule.as_ref();
    let requested = spec.schedule_override.as_ref().map(|o| Override {
        state: o.state,
        until: o.until.as_ref().map(|t| t.0),
    });
    let remembered = before
        .and_then(|s| s.override_status.as_ref())
        .map(|o| OverrideState {
            state: o.state,
            until: o.until.as_ref().map(|t| t.0),
            active: o.active,
        });
    let applied = instance::apply(&evaluation, compiled.actions, requested, remembered, now);
    let generation = found.metadata.generation;
    let same_schedule =
        before.is_some_and(|s| s.name == reference.name && s.observed_generation == generation);
    let effective_word = applied.effective.as_str();
    let hold = match applied.effective {
        EffectiveState::Unmanaged => None,
        EffectiveState::Running | EffectiveState::Stopped => {
            let state = if applied.effective == EffectiveState::Running {
                PowerState::Running
            } else {
                PowerState::Stopped
            };
            let already_applied = same_schedule
                && before.and_then(|s| s.applied_state.as_deref()) == Some(effective_word);
            match compiled.enforcement {
                Enforcement::OnTransition if already_applied => None,
                _ => Some(state),
            }
        }
    };
    let status = InstanceScheduleStatus {
        name: reference.name.clone(),
        observed_generation: generation,
        state: Some(evaluation.state),
        effective_state: Some(effective_word.to_string()),
        source: Some(applied.source),
        since: evaluation.since.map(Time),
        next_transition: evaluation.next().map(|t| NextTransition {
            time: Time(t.time),
            state: t.state,
        }),
        override_status: applied.override_state.map(|o| OverrideStatus {
            state: o.state,
            until: o.until.map(Time),
            active: o.active,
        }),
        applied_state: before
            .filter(|_| same_schedule)
            .and_then(|s| s.applied_state.clone()),
        applied_time: before
            .filter(|_| same_schedule)
            .and_then(|s| s.applied_time.clone()),
    };
    let unmanaged = (applied.effective == EffectiveState::Unmanaged).then(|| {
        format!(
            "EcsPowerSchedule {} says {} now and its actions exclude that state: instance {} is \
             left as it is",
            reference.name,
            evaluation.state.as_str(),
            spec.instance_id
        )
    });
    Ok(Resolution {
        hold,
        schedule: Some(status),
        unmanaged,
    })
}

fn problem(reason: &str, message: String) -> Problem {
    Problem {
        verdict: Verdict {
            reason: reason.to_string(),
            class: ErrorClass::Terminal,
        },
        message,
    }
}
