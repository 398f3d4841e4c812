//! The effective desired power state, the step between observe and decide: what the resource asks
//! for, as the [`PowerState`] that decide, the condition reasons and the metric labels use.
//!
//! The API's `spec.desiredState` is what users write; a desired state that depends on something
//! besides the spec (a schedule, say) resolves to a [`PowerState`] here, so decide never sees it.

use crate::api::{DesiredState, EcsInstancePowerSpec};
use crate::vocabulary::reason;

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

/// The effective desired power state of a resource.
pub fn effective(spec: &EcsInstancePowerSpec) -> PowerState {
    match spec.desired_state {
        DesiredState::Running => PowerState::Running,
        DesiredState::Stopped => PowerState::Stopped,
    }
}
