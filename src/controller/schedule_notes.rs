//! What a reconcile of a resource on a schedule tells besides its status, part of the report
//! step: the Events of a change of its effective state (`ScheduleTransition`, `OverrideStarted`,
//! `OverrideExpired`, `TransitionLate`), and for the metrics the cause of a write call and the lag
//! from the scheduled edge. Pure: it compares the previous and the next `status.schedule` at `now`.
//!
//! Each Event follows a change of `status.schedule`, which is written once, so it is published
//! once per change. A change of the effective state is *late* when its edge (the instant the
//! schedule's state began, or the end of an override that held it) lies further back than the
//! lateness bound: the operator was not running, or not leading, when it passed. The instance then
//! catches up with the state at `now`; missed windows are never replayed.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{EcsInstancePowerStatus, InstanceScheduleStatus};
use crate::api::{ScheduleSource, ScheduledState};
use crate::vocabulary::{action, condition, reason, schedule_event};

use super::report::{EventNote, Severity};

/// The shortest lateness that counts as late: twice the resync interval, at least 5 minutes.
pub fn late_after(resync: Duration) -> Duration {
    resync.saturating_mul(2).max(Duration::from_secs(300))
}

/// Why a write call was made, for `ecs_power_actions_total{cause}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A new spec (a new resource, a new generation, a resource without a schedule not yet in its
    /// state).
    Spec,
    /// A scheduled transition, or a schedule attached or changed.
    Schedule,
    /// The resource's `scheduleOverride`.
    Override,
    /// The instance left the state it was held in (a manual start or stop), and the operator
    /// corrects it.
    Drift,
    /// A transition acted on late, after the operator was down.
    CatchUp,
}

impl Cause {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Spec => "spec",
            Cause::Schedule => "schedule",
            Cause::Override => "override",
            Cause::Drift => "drift",
            Cause::CatchUp => "catch-up",
        }
    }
}

/// What changed between two `status.schedule`s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notes {
    /// The Events to publish, in order.
    pub events: Vec<EventNote>,
    /// The new effective state, when it changed (`Running`, `Stopped` or `Unmanaged`).
    pub transition: Option<String>,
    /// How long after its scheduled edge this change is seen, when it is a change of a state to
    /// hold that the same schedule generation scheduled (not an attach, an edit or an override
    /// that starts).
    pub lag: Option<Duration>,
    /// Whether `lag` exceeds the lateness bound.
    pub late: bool,
}

/// The Events and the lag of the change from `previous` to `next` at `now`.
pub fn notes(
    previous: Option<&InstanceScheduleStatus>,
    next: &InstanceScheduleStatus,
    now: Timestamp,
    late_after: Duration,
) -> Notes {
    let mut out = Notes::default();
    let previous = previous.filter(|p| p.name == next.name);
    let was_active = previous
        .and_then(|p| p.override_status.as_ref())
        .filter(|o| o.active);
    let is_active = next.override_status.as_ref().filter(|o| o.active);
    if let Some(o) = is_active
        && was_active.is_none_or(|w| w.state != o.state)
    {
        let until = o.until.as_ref().map_or_else(
            || "until it is removed".to_string(),
            |t| format!("until {}", t.0),
        );
        out.events.push(normal(
            schedule_event::OVERRIDE_STARTED,
            format!(
                "scheduleOverride holds {} {until}, over EcsPowerSchedule {}",
                o.state.as_str(),
                next.name
            ),
        ));
    }
    let expired = was_active.is_some() && next.override_status.as_ref().is_some_and(|o| !o.active);
    if expired {
        out.events.push(normal(
            schedule_event::OVERRIDE_EXPIRED,
            format!(
                "scheduleOverride ended; EcsPowerSchedule {} decides again ({})",
                next.name,
                word(next.state)
            ),
        ));
    }
    let before = previous.and_then(|p| p.effective_state.as_deref());
    let after = next.effective_state.as_deref();
    if before == after || after.is_none() {
        return out;
    }
    out.transition = after.map(str::to_string);
    if next.source != Some(ScheduleSource::Override) {
        let source = next.source.map_or("Unknown", ScheduleSource::as_str);
        out.events.push(normal(
            schedule_event::SCHEDULE_TRANSITION,
            format!(
                "EcsPowerSchedule {} says {} ({source}): effective state {} (was {})",
                next.name,
                word(next.state),
                after.unwrap_or_default(),
                before.unwrap_or("none")
            ),
        ));
    }
    let same_generation =
        previous.is_some_and(|p| p.observed_generation == next.observed_generation);
    let holds = matches!(after, Some(reason::RUNNING | reason::STOPPED));
    let edge = if expired {
        was_active.and_then(|o| o.until.as_ref()).map(|t| t.0)
    } else if next.source == Some(ScheduleSource::Override) {
        None
    } else {
        next.since.as_ref().map(|t| t.0)
    };
    if let (true, true, Some(edge)) = (same_generation, holds, edge) {
        let lag = Duration::try_from(now.duration_since(edge)).unwrap_or_default();
        out.lag = Some(lag);
        if lag > late_after {
            out.late = true;
            out.events.push(EventNote {
                severity: Severity::Warning,
                reason: schedule_event::TRANSITION_LATE.to_string(),
                note: format!(
                    "the transition to {} of {edge} is acted on {} min late (the operator was not \
                     running); catching up with the state now, missed windows are not replayed",
                    after.unwrap_or_default(),
                    lag.as_secs() / 60
                ),
                action: action::SCHEDULE.to_string(),
            });
        }
    }
    out
}

/// The cause of a write call a reconcile made: `next` is the resource's next `status.schedule`
/// (`None` without a schedule), `late` whether this reconcile saw a late transition.
pub fn cause(
    generation: Option<i64>,
    previous: &EcsInstancePowerStatus,
    next: Option<&InstanceScheduleStatus>,
    late: bool,
) -> Cause {
    let Some(next) = next else {
        let was_ready = previous
            .condition(condition::READY)
            .is_some_and(|c| c.status == condition::TRUE);
        let same = previous.observed_generation == generation;
        return if was_ready && same {
            Cause::Drift
        } else {
            Cause::Spec
        };
    };
    if next.source == Some(ScheduleSource::Override) {
        return Cause::Override;
    }
    if late {
        return Cause::CatchUp;
    }
    let applied = previous
        .schedule
        .as_ref()
        .filter(|p| p.name == next.name && p.observed_generation == next.observed_generation)
        .and_then(|p| p.applied_state.as_deref());
    if applied == next.effective_state.as_deref() {
        Cause::Drift
    } else {
        Cause::Schedule
    }
}

fn normal(reason: &str, note: String) -> EventNote {
    EventNote {
        severity: Severity::Normal,
        reason: reason.to_string(),
        note,
        action: action::SCHEDULE.to_string(),
    }
}

fn word(state: Option<ScheduledState>) -> &'static str {
    state.map_or("Unknown", ScheduledState::as_str)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::OverrideStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn status(effective: &str, source: ScheduleSource, since: &str) -> InstanceScheduleStatus {
        InstanceScheduleStatus {
            name: "office-hours".into(),
            observed_generation: Some(1),
            state: Some(if effective == "Stopped" {
                ScheduledState::Stopped
            } else {
                ScheduledState::Running
            }),
            effective_state: Some(effective.into()),
            source: Some(source),
            since: Some(Time(ts(since))),
            next_transition: None,
            override_status: None,
            applied_state: None,
            applied_time: None,
        }
    }

    const BOUND: Duration = Duration::from_secs(600);

    fn reasons(notes: &Notes) -> Vec<&str> {
        notes.events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn a_transition_on_time_is_one_normal_event_with_its_lag() {
        let before = status("Stopped", ScheduleSource::Default, "2026-12-22T18:00:00Z");
        let after = status("Running", ScheduleSource::Window, "2026-12-23T07:00:00Z");
        let n = notes(Some(&before), &after, ts("2026-12-23T07:00:02Z"), BOUND);
        assert_eq!(reasons(&n), ["ScheduleTransition"]);
        assert_eq!(n.transition.as_deref(), Some("Running"));
        assert_eq!(n.lag, Some(Duration::from_secs(2)));
        assert!(!n.late);
        // Nothing changed: nothing to tell.
        let again = notes(Some(&after), &after, ts("2026-12-23T08:00:00Z"), BOUND);
        assert_eq!(again, Notes::default());
    }

    #[test]
    fn a_transition_seen_after_downtime_is_late_with_a_warning() {
        let before = status("Stopped", ScheduleSource::Default, "2026-12-22T18:00:00Z");
        let after = status("Running", ScheduleSource::Window, "2026-12-23T07:00:00Z");
        let n = notes(Some(&before), &after, ts("2026-12-23T09:00:00Z"), BOUND);
        assert_eq!(reasons(&n), ["ScheduleTransition", "TransitionLate"]);
        assert!(n.late);
        assert_eq!(n.events[1].severity, Severity::Warning);
        assert!(
            n.events[1].note.contains("120 min late"),
            "{}",
            n.events[1].note
        );
    }

    #[test]
    fn attaching_or_editing_a_schedule_is_a_transition_but_never_late() {
        let after = status("Running", ScheduleSource::Window, "2026-12-20T07:00:00Z");
        let n = notes(None, &after, ts("2026-12-23T09:00:00Z"), BOUND);
        assert_eq!(reasons(&n), ["ScheduleTransition"]);
        assert_eq!(n.lag, None);
        let mut before = status("Stopped", ScheduleSource::Default, "2026-12-19T18:00:00Z");
        before.observed_generation = Some(0);
        let n = notes(Some(&before), &after, ts("2026-12-23T09:00:00Z"), BOUND);
        assert_eq!(reasons(&n), ["ScheduleTransition"]);
        assert!(!n.late && n.lag.is_none());
    }

    #[test]
    fn an_override_starts_and_expires_with_its_own_events() {
        let plain = status("Stopped", ScheduleSource::Default, "2026-12-22T18:00:00Z");
        let mut held = status("Running", ScheduleSource::Override, "2026-12-22T18:00:00Z");
        held.state = Some(ScheduledState::Stopped);
        held.override_status = Some(OverrideStatus {
            state: ScheduledState::Running,
            until: Some(Time(ts("2026-12-23T07:00:00Z"))),
            active: true,
        });
        let n = notes(Some(&plain), &held, ts("2026-12-22T20:00:00Z"), BOUND);
        assert_eq!(reasons(&n), ["OverrideStarted"]);
        assert_eq!(
            n.lag, None,
            "an override is a request, not a scheduled edge"
        );
        // At the override's end the schedule says Running too: no change of effective state.
        let mut ended = status("Running", ScheduleSource::Window, "2026-12-23T07:00:00Z");
        ended.override_status = Some(OverrideStatus {
            active: false,
            ..held.override_status.clone().unwrap()
        });
        let n = notes(Some(&held), &ended, ts("2026-12-23T07:00:01Z"), BOUND);
        assert_eq!(reasons(&n), ["OverrideExpired"]);
        // An override of Stopped that ends while the schedule says Running: the edge is its end.
        let mut stopped = held.clone();
        stopped.effective_state = Some("Stopped".into());
        stopped.state = Some(ScheduledState::Running);
        stopped.since = Some(Time(ts("2026-12-23T06:00:00Z")));
        stopped.override_status.as_mut().unwrap().state = ScheduledState::Stopped;
        let n = notes(Some(&stopped), &ended, ts("2026-12-23T07:00:03Z"), BOUND);
        assert_eq!(reasons(&n), ["OverrideExpired", "ScheduleTransition"]);
        assert_eq!(n.lag, Some(Duration::from_secs(3)));
    }

    #[test]
    fn causes_of_write_calls() {
        let fresh = EcsInstancePowerStatus::default();
        assert_eq!(cause(Some(1), &fresh, None, false), Cause::Spec);
        let ready: EcsInstancePowerStatus = serde_json::from_value(serde_json::json!({
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "m",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }))
        .unwrap();
        assert_eq!(cause(Some(1), &ready, None, false), Cause::Drift);
        assert_eq!(cause(Some(2), &ready, None, false), Cause::Spec);

        let next = status("Running", ScheduleSource::Window, "2026-12-23T07:00:00Z");
        let mut previous = EcsInstancePowerStatus {
            schedule: Some(Box::new(InstanceScheduleStatus {
                applied_state: Some("Stopped".into()),
                ..next.clone()
            })),
            ..EcsInstancePowerStatus::default()
        };
        assert_eq!(
            cause(Some(1), &previous, Some(&next), false),
            Cause::Schedule
        );
        assert_eq!(cause(Some(1), &previous, Some(&next), true), Cause::CatchUp);
        previous.schedule.as_mut().unwrap().applied_state = Some("Running".into());
        assert_eq!(cause(Some(1), &previous, Some(&next), false), Cause::Drift);
        let overridden = InstanceScheduleStatus {
            source: Some(ScheduleSource::Override),
            ..next
        };
        assert_eq!(
            cause(Some(1), &previous, Some(&overridden), false),
            Cause::Override
        );
    }
}
