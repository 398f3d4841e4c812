//! Power schedules, evaluated: what state an `EcsPowerSchedule` asks for at an instant, since when,
//! and when it changes next. Pure (no Kubernetes types, no clock): the controller's desired step,
//! the schedule status and `ecs-power-operator schedule preview` all call the same [`evaluate`].
//!
//! ```text
//! spec ─compile─► Compiled (time zone, windows, holidays, exceptions as instants)
//!                   └─evaluate(now)──► Evaluation {state, source, since, next, upcoming}
//!                   └─transitions(from, until)──► every change of state in between
//! ```
//!
//! Weekly windows become intervals of absolute instants (per local start day) and are merged, so
//! adjacent windows make no transition. Precedence: exceptions > holidays > windows > the default
//! (the opposite of the window list's state); an instance's override comes on top ([`instance`]).
//!
//! Local times resolve to instants by two rules: a time skipped when clocks spring forward means the
//! first instant after the gap, and a time that occurs twice when clocks fall back means its first
//! occurrence. A boundary is one instant, so the repeated hour never reopens or closes a window, and
//! window lengths follow the wall clock.

mod compile;
pub mod instance;
mod local;
pub mod preview;
mod timeline;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use crate::api::{Enforcement, ScheduleActions, ScheduleSource, ScheduledState};
pub use compile::{compile, compile_in};

/// Why a schedule cannot be evaluated; the reason is what the schedule's `Ready` condition and the
/// preview report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The time zone is not a known IANA name.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    /// A window, holiday or exception is malformed, or the window lists are not exactly one.
    #[error("{0}")]
    Window(String),
    /// Two exceptions with different states overlap.
    #[error("exceptions {0:?} and {1:?} overlap with different states")]
    OverlappingExceptions(String, String),
}

impl Invalid {
    /// The condition reason: `InvalidTimeZone`, `InvalidWindow` or `OverlappingExceptions`.
    pub fn reason(&self) -> &'static str {
        use crate::vocabulary::reason;
        match self {
            Invalid::TimeZone(_) => reason::INVALID_TIME_ZONE,
            Invalid::Window(_) => reason::INVALID_WINDOW,
            Invalid::OverlappingExceptions(..) => reason::OVERLAPPING_EXCEPTIONS,
        }
    }
}

/// A schedule ready to evaluate: its local rules tied to its time zone.
#[derive(Debug, Clone)]
pub struct Compiled {
    tz: TimeZone,
    window_state: ScheduledState,
    windows: Vec<compile::WindowRule>,
    holidays: Vec<jiff::civil::Date>,
    exceptions: Vec<compile::ExceptionRule>,
    /// When the scheduled state is enforced.
    pub enforcement: Enforcement,
    /// Which write calls the schedule makes.
    pub actions: ScheduleActions,
}

impl Compiled {
    /// The schedule's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// When it happens.
    pub time: Timestamp,
    /// The state from then on.
    pub state: ScheduledState,
    /// What decides that state.
    pub source: ScheduleSource,
}

/// How many coming transitions an [`Evaluation`] lists.
pub const UPCOMING: usize = 5;

/// A schedule at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The state now.
    pub state: ScheduledState,
    /// What decides it.
    pub source: ScheduleSource,
    /// When the current state began; `None` when not within the last year.
    pub since: Option<Timestamp>,
    /// The coming transitions, at most [`UPCOMING`], the first one being the next.
    pub upcoming: Vec<Transition>,
}

impl Evaluation {
    /// The next transition, if any is due within a year.
    pub fn next(&self) -> Option<&Transition> {
        self.upcoming.first()
    }
}

/// Evaluates a schedule at `now`: the state, its source, when it began and the coming transitions.
/// Missed transitions are never replayed: the answer depends on `now` alone.
pub fn evaluate(schedule: &Compiled, now: Timestamp) -> Evaluation {
    timeline::evaluate(schedule, now)
}

/// Every transition `t` with `from <= t < until`, in order. A change of source alone (a holiday
/// starting while already stopped) is not a transition.
pub fn transitions(schedule: &Compiled, from: Timestamp, until: Timestamp) -> Vec<Transition> {
    timeline::transitions(schedule, from, until)
}
