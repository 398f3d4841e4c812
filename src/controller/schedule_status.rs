//! The status of `EcsPowerSchedule`s: a pure function of the schedule, the number of resources
//! that follow it and the time, and a small loop that writes it when it changes.
//!
//! The loop reads both caches (schedules, resources) once a second and patches a schedule's
//! status only when the computed status differs from the cached one and from the last one it
//! wrote, so a transition shows in `status.state` within a second without a write per tick. It
//! writes only while the status edge of the write gate is open (the leader).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use tracing::{debug, warn};

use crate::api::{
    EcsInstancePower, EcsPowerSchedule, EcsPowerScheduleStatus, NextTransition, UpcomingTransition,
};
use crate::power_schedule as schedule;
use crate::vocabulary::{condition::READY as CONDITION_READY, reason};

use super::conditions::{self, Desired};
use super::context::Context;
use super::gate::Edge;

/// The status of `obj` at `now`, with `instances` resources following it; conditions keep their
/// `lastTransitionTime` from `obj`'s status while their status stays the same.
pub fn status(obj: &EcsPowerSchedule, instances: i32, now: Timestamp) -> EcsPowerScheduleStatus {
    let previous = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let mut conditions = previous.conditions;
    let mut next = EcsPowerScheduleStatus {
        observed_generation: generation,
        instances,
        ..EcsPowerScheduleStatus::default()
    };
    let ready = match schedule::compile(&obj.spec) {
        Ok(compiled) => {
            let evaluation = schedule::evaluate(&compiled, now);
            next.state = Some(evaluation.state);
            next.source = Some(evaluation.source);
            next.since = evaluation.since.map(Time);
            next.next_transition = evaluation.next().map(|t| NextTransition {
                time: Time(t.time),
                state: t.state,
            });
            next.upcoming = evaluation
                .upcoming
                .iter()
                .map(|t| UpcomingTransition {
                    time: Time(t.time),
                    state: t.state,
                    source: t.source,
                })
                .collect();
            Desired::truthy(reason::VALID, "The schedule is valid")
        }
        Err(invalid) => Desired::falsy(invalid.reason(), invalid.to_string()),
    };
    conditions::set(
        &mut conditions,
        CONDITION_READY,
        Some(ready),
        generation,
        &Time(now),
    );
    next.conditions = conditions;
    next
}

/// How often the loop compares the computed statuses with the cached ones.
const TICK: Duration = Duration::from_secs(1);

/// Writes the status of every cached schedule whenever it changes, until the task is dropped.
pub async fn run(ctx: Arc<Context>, resources: Store<EcsInstancePower>) {
    let mut written: HashMap<ObjectRef<EcsPowerSchedule>, EcsPowerScheduleStatus> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let schedules = ctx.schedules.state();
        let now = ctx.clock.now();
        count(&ctx, &schedules, now);
        written.retain(|key, _| ctx.schedules.get(key).is_some());
        // A follower writes nothing and is not fenced: only a leader whose lease cannot cover
        // the write counts as fenced.
        if !ctx.may_call_ecs() || !ctx.gate_allows(Edge::Status) {
            continue;
        }
        let users = resources.state();
        for obj in schedules {
            let key = ObjectRef::from_obj(&*obj);
            let namespace = obj.namespace();
            let name = obj.name_any();
            let count = users
                .iter()
                .filter(|r| {
                    r.namespace() == namespace
                        && r.spec.schedule_ref.as_ref().is_some_and(|s| s.name == name)
                })
                .count();
            let instances = i32::try_from(count).unwrap_or(i32::MAX);
            let next = status(&obj, instances, now);
            if obj.status.as_ref() == Some(&next) || written.get(&key) == Some(&next) {
                continue;
            }
            match write(&ctx, &obj, &next).await {
                Ok(()) => {
                    debug!(schedule = %key, "schedule status written");
                    written.insert(key, next);
                }
                Err(error) => warn!(schedule = %key, %error, "cannot write the schedule status"),
            }
        }
    }
}

/// Sets the schedule gauges: schedules by state now (`Invalid` when they cannot be compiled) and
/// the soonest next transition. Every replica keeps them, not only the leader.
fn count(ctx: &Context, schedules: &[Arc<EcsPowerSchedule>], now: Timestamp) {
    let (mut running, mut stopped, mut invalid) = (0, 0, 0);
    let mut soonest: Option<Timestamp> = None;
    for obj in schedules {
        let Ok(compiled) = schedule::compile(&obj.spec) else {
            invalid += 1;
            continue;
        };
        let evaluation = schedule::evaluate(&compiled, now);
        match evaluation.state {
            crate::api::ScheduledState::Running => running += 1,
            crate::api::ScheduledState::Stopped => stopped += 1,
        }
        if let Some(next) = evaluation.next() {
            soonest = Some(soonest.map_or(next.time, |s| s.min(next.time)));
        }
    }
    ctx.metrics.set_schedules(
        &[
            (reason::RUNNING, running),
            (reason::STOPPED, stopped),
            ("Invalid", invalid),
        ],
        soonest,
    );
}

/// Patches the schedule's status subresource.
async fn write(
    ctx: &Context,
    obj: &EcsPowerSchedule,
    status: &EcsPowerScheduleStatus,
) -> Result<(), kube::Error> {
    let Some(namespace) = obj.namespace() else {
        return Ok(());
    };
    let api: Api<EcsPowerSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(yaml: &str) -> EcsPowerSchedule {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_valid_schedule_reports_state_next_transition_and_upcoming() {
        let obj = schedule(
            r#"
apiVersion: ecspower.dev/v1alpha1
kind: EcsPowerSchedule
metadata: {name: office-hours, namespace: team-a, generation: 3}
spec:
  timeZone: Europe/Berlin
  runningWindows: [{days: [Mon, Tue, Wed, Thu, Fri], start: "08:00", end: "19:00"}]
  holidays: ["2026-12-24"]
"#,
        );
        // Wednesday 2026-12-23 12:00 Berlin: Running in the window; 19:00 local is 18:00Z.
        let now: Timestamp = "2026-12-23T11:00:00Z".parse().unwrap();
        let status = status(&obj, 2, now);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.instances, 2);
        assert_eq!(status.state, Some(crate::api::ScheduledState::Running));
        let next = status.next_transition.unwrap();
        assert_eq!(next.time.0, "2026-12-23T18:00:00Z".parse().unwrap());
        assert_eq!(next.state, crate::api::ScheduledState::Stopped);
        assert!(!status.upcoming.is_empty() && status.upcoming.len() <= 5);
        // The holiday skips Thursday: the next start is Friday 08:00 local (07:00Z).
        assert_eq!(
            status.upcoming[1].time.0,
            "2026-12-25T07:00:00Z".parse::<Timestamp>().unwrap()
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Valid")
        );
    }

    #[test]
    fn an_invalid_time_zone_is_ready_false_with_its_reason_and_no_state() {
        let obj = schedule(
            r#"
apiVersion: ecspower.dev/v1alpha1
kind: EcsPowerSchedule
metadata: {name: bad, namespace: team-a, generation: 1}
spec:
  timeZone: Mars/Olympus
  runningWindows: [{days: [Mon], start: "08:00", end: "19:00"}]
"#,
        );
        let status = status(&obj, 0, "2026-12-23T11:00:00Z".parse().unwrap());
        assert_eq!(status.state, None);
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidTimeZone")
        );
    }
}
