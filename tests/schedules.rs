//! Power schedules through the whole operator in-process (kube-sandbox over HTTP, ecs-emulator,
//! the operator started as `run` starts it): schedules and resources are created and edited
//! through the Kubernetes API, the watch on schedules re-queues their users, and the emulator's
//! call log is the oracle for write calls.
//!
//! The wall clock is real here, so every schedule is written around the current local time: a
//! window from two hours ago to two hours ahead on every day contains now whatever the date.
//! (Minute-scale behaviour, the passing of transitions, downtime and overrides, is covered on a
//! moved clock in the reconcile tests.)
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use ecs_power_operator::api::{
    CONDITION_READY, CONDITION_STALLED, EcsPowerSchedule, ScheduleSource,
};
use jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Harness, NS, condition, stopped};

const ZONE: &str = "Asia/Shanghai";
const EVERY_DAY: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `HH:MM` in [`ZONE`], `offset` from now.
fn local_clock(offset: SignedDuration) -> String {
    let at = (Timestamp::now() + offset).in_tz(ZONE).unwrap();
    format!("{:02}:{:02}", at.hour(), at.minute())
}

/// Today's local date in [`ZONE`].
fn local_today() -> String {
    Timestamp::now().in_tz(ZONE).unwrap().date().to_string()
}

/// A running window on every day from `from` to `to` hours relative to now.
fn window(from: i64, to: i64) -> serde_json::Value {
    json!([{
        "days": EVERY_DAY,
        "start": local_clock(SignedDuration::from_hours(from)),
        "end": local_clock(SignedDuration::from_hours(to)),
    }])
}

fn schedules(h: &Harness) -> Api<EcsPowerSchedule> {
    Api::namespaced(h.client.clone(), NS)
}

fn schedule(name: &str, spec: &serde_json::Value) -> EcsPowerSchedule {
    serde_json::from_value(json!({
        "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsPowerSchedule",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .unwrap()
}

async fn create_schedule(h: &Harness, name: &str, spec: serde_json::Value) {
    schedules(h)
        .create(&PostParams::default(), &schedule(name, &spec))
        .await
        .unwrap();
}

async fn patch_schedule(h: &Harness, name: &str, spec: serde_json::Value) {
    schedules(h)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

fn scheduled(instance: &str, schedule: &str) -> serde_json::Value {
    json!({"instanceId": instance, "regionId": "cn-hangzhou", "desiredState": "Scheduled",
           "scheduleRef": {"name": schedule}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_containing_now_starts_moving_it_stops_and_a_holiday_today_keeps_it_stopped() {
    let h = Harness::start(vec![stopped("i-sched1")]).await;
    create_schedule(
        &h,
        "office",
        json!({"timeZone": ZONE, "runningWindows": window(-2, 2)}),
    )
    .await;
    h.create("dev-1", scheduled("i-sched1", "office")).await;
    let obj = h.wait_ready("dev-1", "True", "Running").await;
    assert_eq!(h.starts("i-sched1").len(), 1);
    let s = obj.status.unwrap().schedule.unwrap();
    assert_eq!(s.effective_state.as_deref(), Some("Running"));
    assert_eq!(s.applied_state.as_deref(), Some("Running"));
    assert!(s.next_transition.is_some());
    h.wait_event("dev-1", "ScheduleTransition").await;
    // The metrics: the scheduled resource counts under its effective state; the schedule by state.
    let gauges = support::eventually(Duration::from_secs(10), || async {
        let resources = h
            .metric("ecs_power_resources{desired=\"Running\",observed=\"Running\"}")
            .await;
        let schedules = h.metric("ecs_power_schedules{state=\"Running\"}").await;
        (resources >= 1.0 && schedules >= 1.0).then_some(())
    })
    .await;
    assert!(gauges.is_some(), "the schedule and resource gauges");

    // The window moves two hours ahead: the watch re-queues the resource, which stops.
    patch_schedule(&h, "office", json!({"runningWindows": window(2, 4)})).await;
    let obj = h.wait_ready("dev-1", "True", "Stopped").await;
    assert_eq!(h.stops("i-sched1").len(), 1);
    let s = obj.status.unwrap().schedule.unwrap();
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.source.unwrap().as_str(), "Default");

    // Back around now, but today is a holiday: still stopped, now for the holiday.
    patch_schedule(
        &h,
        "office",
        json!({"runningWindows": window(-2, 2), "holidays": [local_today()]}),
    )
    .await;
    h.wait_status("dev-1", Duration::from_secs(30), "holiday source", |s| {
        s.schedule.as_ref().is_some_and(|s| {
            s.observed_generation == Some(3)
                && s.source.map(ScheduleSource::as_str) == Some("Holiday")
        })
    })
    .await;
    assert_eq!(
        h.starts("i-sched1").len(),
        1,
        "the holiday does not start it"
    );
    assert_eq!(h.stops("i-sched1").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holiday_today_stops_a_running_instance() {
    let h = Harness::start(vec![support::running("i-sched2")]).await;
    create_schedule(
        &h,
        "holiday",
        json!({"timeZone": ZONE, "runningWindows": window(-2, 2), "holidays": [local_today()]}),
    )
    .await;
    h.create("dev-2", scheduled("i-sched2", "holiday")).await;
    let obj = h.wait_ready("dev-2", "True", "Stopped").await;
    assert_eq!(h.stops("i-sched2").len(), 1);
    assert!(h.starts("i-sched2").is_empty());
    let s = obj.status.unwrap().schedule.unwrap();
    assert_eq!(s.source.unwrap().as_str(), "Holiday");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schedule_stalls_without_calls_and_its_creation_is_picked_up_by_the_watch() {
    let h = Harness::start(vec![stopped("i-sched3")]).await;
    h.create("dev-3", scheduled("i-sched3", "later")).await;
    let obj = h.wait_ready("dev-3", "False", "ScheduleNotFound").await;
    assert_eq!(
        condition(obj.status.as_ref().unwrap(), CONDITION_STALLED),
        Some(("True".to_string(), "ScheduleNotFound".to_string()))
    );
    let event = h.wait_event("dev-3", "ScheduleNotFound").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(h.all_calls("i-sched3").is_empty(), "no ECS call at all");

    create_schedule(
        &h,
        "later",
        json!({"timeZone": ZONE, "runningWindows": window(-2, 2)}),
    )
    .await;
    h.wait_ready("dev-3", "True", "Running").await;
    assert_eq!(h.starts("i-sched3").len(), 1);
    assert!(h.writes("i-sched3").len() == 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_time_zone_is_schedule_invalid_without_calls_until_fixed() {
    let h = Harness::start(vec![stopped("i-sched4")]).await;
    create_schedule(
        &h,
        "mars",
        json!({"timeZone": "Mars/Olympus", "runningWindows": window(-2, 2)}),
    )
    .await;
    h.create("dev-4", scheduled("i-sched4", "mars")).await;
    let obj = h.wait_ready("dev-4", "False", "ScheduleInvalid").await;
    let ready = obj
        .status
        .as_ref()
        .unwrap()
        .condition(CONDITION_READY)
        .unwrap();
    assert!(
        ready.message.contains("InvalidTimeZone"),
        "{}",
        ready.message
    );
    h.wait_event("dev-4", "ScheduleInvalid").await;
    // The schedule's own status says why (written by the schedule status loop).
    let status = support::eventually(Duration::from_secs(10), || async {
        let s = schedules(&h).get("mars").await.unwrap();
        s.status.filter(|s| !s.conditions.is_empty())
    })
    .await
    .unwrap();
    assert_eq!(
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str()
        ),
        ("False", "InvalidTimeZone")
    );
    assert!(h.writes("i-sched4").is_empty());

    patch_schedule(&h, "mars", json!({"timeZone": ZONE})).await;
    h.wait_ready("dev-4", "True", "Running").await;
    assert_eq!(h.writes("i-sched4").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_malformed_schedules_and_schedule_refs() {
    let h = Harness::start(vec![]).await;
    let rejected = [
        (
            "both-lists",
            json!({"timeZone": ZONE, "runningWindows": window(-2, 2), "stoppedWindows": window(3, 4)}),
            "exactly one of runningWindows and stoppedWindows",
        ),
        (
            "no-list",
            json!({"timeZone": ZONE}),
            "exactly one of runningWindows and stoppedWindows",
        ),
        (
            "empty-window",
            json!({"timeZone": ZONE, "runningWindows": [{"days": ["Mon"], "start": "08:00", "end": "08:00"}]}),
            "end must differ from its start",
        ),
        (
            "bad-clock",
            json!({"timeZone": ZONE, "runningWindows": [{"days": ["Mon"], "start": "25:00", "end": "08:00"}]}),
            "start",
        ),
        (
            "bad-holiday",
            json!({"timeZone": ZONE, "runningWindows": window(-2, 2), "holidays": ["24.12.2026"]}),
            "holidays",
        ),
        (
            "bad-enforcement",
            json!({"timeZone": ZONE, "runningWindows": window(-2, 2), "enforcement": "Sometimes"}),
            "enforcement",
        ),
    ];
    // Untyped, so that values the Rust types cannot hold reach the API server too.
    let raw: Api<DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        NS,
        &ApiResource::erase::<EcsPowerSchedule>(&()),
    );
    for (name, spec, why) in rejected {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsPowerSchedule",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }))
        .unwrap();
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(name);
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 422, "{name}: {status:?}");
                assert!(status.message.contains(why), "{name}: {}", status.message);
            }
            other => panic!("{name}: {other}"),
        }
    }
    // The good one is accepted.
    create_schedule(
        &h,
        "fine",
        json!({"timeZone": ZONE, "runningWindows": window(-2, 2)}),
    )
    .await;
    // scheduleRef is required with Scheduled and forbidden otherwise.
    for (name, spec) in [
        (
            "no-ref",
            json!({"instanceId": "i-x", "regionId": "cn-hangzhou", "desiredState": "Scheduled"}),
        ),
        (
            "stray-ref",
            json!({"instanceId": "i-x", "regionId": "cn-hangzhou", "desiredState": "Running",
                   "scheduleRef": {"name": "fine"}}),
        ),
    ] {
        let obj: ecs_power_operator::api::EcsInstancePower = serde_json::from_value(json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": name, "namespace": NS}, "spec": spec,
        }))
        .unwrap();
        let err = h
            .api()
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(name);
        match err {
            kube::Error::Api(status) => assert_eq!(status.code, 422, "{name}: {status:?}"),
            other => panic!("{name}: {other}"),
        }
    }
    h.stop().await;
}
