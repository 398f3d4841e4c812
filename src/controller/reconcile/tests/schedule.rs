//! Resources on a schedule, reconcile by reconcile: an ECS fake whose writes take effect at once,
//! the in-memory Kubernetes API, tokio's paused clock for the ledger and the context's schedule
//! clock moved to fixed instants, so transitions pass without waiting. The fake's call list is the
//! oracle for write calls; the Events are read back from the API.
//!
//! The schedule (Europe/Berlin, Mon–Fri 08:00–19:00, so 07:00Z–18:00Z in December) is the one of
//! `examples/schedule-office-hours.yaml` without its holidays unless a test adds them.

use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::ListParams;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::*;
use crate::api::EcsPowerSchedule;
use crate::controller::clock::Clock;

/// An ECS with one instance whose writes take effect at once.
#[derive(Default)]
struct InstantEcs {
    status: Mutex<Option<InstanceStatus>>,
    calls: Mutex<Vec<&'static str>>,
}

impl InstantEcs {
    fn with(status: InstanceStatus) -> Arc<Self> {
        let ecs = InstantEcs::default();
        *ecs.status.lock().unwrap() = Some(status);
        Arc::new(ecs)
    }

    fn set(&self, status: InstanceStatus) {
        *self.status.lock().unwrap() = Some(status);
    }

    fn writes(&self) -> Vec<&'static str> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .copied()
            .filter(|c| *c != "DescribeInstances")
            .collect()
    }

    fn write(&self, call: &'static str, to: InstanceStatus) -> WriteOutcome {
        self.calls.lock().unwrap().push(call);
        self.set(to);
        WriteOutcome {
            request_id: Some(format!("req-{call}")),
            dry_run: false,
        }
    }
}

impl EcsHandle for InstantEcs {
    fn describe_instance<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InstanceObservation>, EcsError>> {
        self.calls.lock().unwrap().push("DescribeInstances");
        let status = self.status.lock().unwrap().clone();
        Box::pin(async move {
            Ok(status.map(|status| InstanceObservation {
                instance_id: instance_id.to_string(),
                status,
                lock_reasons: Vec::new(),
                stopped_mode: None,
                expired_time: None,
                tags: std::collections::BTreeMap::default(),
            }))
        })
    }

    fn start_instance<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        _request: &'a StartInstance,
        _options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>> {
        let answer = self.write("StartInstance", InstanceStatus::Running);
        Box::pin(async move { Ok(answer) })
    }

    fn stop_instance<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        _request: &'a StopInstance,
        _options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>> {
        let answer = self.write("StopInstance", InstanceStatus::Stopped);
        Box::pin(async move { Ok(answer) })
    }
}

/// One test's world: the API, the fake ECS, the context and the schedule cache's writer.
struct World {
    client: Client,
    ecs: Arc<InstantEcs>,
    ctx: Arc<Context>,
    schedules: Writer<EcsPowerSchedule>,
}

impl World {
    /// A world whose schedule clock reads `now`.
    async fn at(now: &str, ecs: Arc<InstantEcs>) -> World {
        let client = in_memory_cluster().await;
        let clock = Clock::default();
        let now: Timestamp = now.parse().unwrap();
        clock.advance(now.duration_since(clock.now()));
        let (ctx, schedules) = Self::context(client.clone(), ecs.clone(), clock);
        World {
            client,
            ecs,
            ctx,
            schedules,
        }
    }

    fn context(
        client: Client,
        ecs: Arc<InstantEcs>,
        clock: Clock,
    ) -> (Arc<Context>, Writer<EcsPowerSchedule>) {
        let (secrets, _writer) = reflector::store();
        let (schedules, writer) = reflector::store();
        let ctx = Arc::new(Context {
            recorder: crate::controller::events::EventRecorder::new(
                client.clone(),
                Reporter {
                    controller: "test".into(),
                    instance: None,
                },
            ),
            client,
            ecs,
            fleet: None,
            operator_credentials: Some(OperatorCredentials::Env(Credentials::new(
                "AK", "SK", None,
            ))),
            metrics: Arc::new(Metrics::new()),
            ledger: Arc::new(Ledger::default()),
            gate: Arc::new(WriteGate::default()),
            secrets,
            schedules,
            access: crate::controller::fixtures::access_granting_everything(),
            synced: Arc::new(Synced::access_only()),
            resync: Duration::from_secs(300),
            time_scale: 1.0,
            clock,
        });
        (ctx, writer)
    }

    /// The operator restarts: a new context (empty ledger, empty caches) with the same clock,
    /// API and ECS; the schedules are listed again.
    fn restart(&mut self, schedules: &[EcsPowerSchedule]) {
        let (ctx, mut writer) = Self::context(
            self.client.clone(),
            self.ecs.clone(),
            self.ctx.clock.clone(),
        );
        for s in schedules {
            writer.apply_watcher_event(&watcher::Event::Apply(s.clone()));
        }
        self.ctx = ctx;
        self.schedules = writer;
    }

    /// Puts a schedule into the cache, as the watch would.
    fn schedule(&mut self, schedule: &EcsPowerSchedule) {
        self.schedules
            .apply_watcher_event(&watcher::Event::Apply(schedule.clone()));
    }

    /// Moves the schedule clock to `to`, and tokio's paused clock (the ledger's) by as much.
    async fn pass_to(&self, to: &str) {
        let to: Timestamp = to.parse().unwrap();
        let by = to.duration_since(self.ctx.clock.now());
        assert!(by.is_positive(), "{to} is in the past");
        self.ctx.clock.advance(by);
        tokio::time::advance(Duration::try_from(by).unwrap()).await;
    }

    /// Creates the resource `name` on instance i-abc with this spec on top.
    async fn create(&self, name: &str, spec: serde_json::Value) -> Arc<EcsInstancePower> {
        let mut full = serde_json::json!({"instanceId": "i-abc", "regionId": "cn-hangzhou"});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": name, "namespace": "default"},
            "spec": full,
        }))
        .unwrap();
        let api: Api<EcsInstancePower> = Api::namespaced(self.client.clone(), "default");
        Arc::new(api.create(&PostParams::default(), &obj).await.unwrap())
    }

    /// One reconcile of the stored object; the object afterwards.
    async fn reconcile(&self, name: &str) -> Arc<EcsInstancePower> {
        let obj = fetch(&self.client, name).await;
        reconcile(obj, self.ctx.clone()).await.unwrap();
        fetch(&self.client, name).await
    }

    /// Events on `name`, oldest first: (reason, type).
    async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), "default");
        let mut events: Vec<KubeEvent> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default()))
            .collect()
    }

    async fn reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    /// How often an Event with `reason` was recorded on `name`: kube's Recorder records a repeat
    /// within minutes (by the system clock, which these tests do not move) as a series count.
    async fn occurrences(&self, name: &str, reason: &str) -> i32 {
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), "default");
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.series.map_or(1, |s| s.count))
            .sum()
    }
}

/// The office-hours schedule, with `extra` merged into its spec.
fn office_hours(extra: &serde_json::Value) -> EcsPowerSchedule {
    let mut spec = serde_json::json!({
        "timeZone": "Europe/Berlin",
        "runningWindows": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "08:00", "end": "19:00"}],
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsPowerSchedule",
        "metadata": {"name": "office-hours", "namespace": "default", "generation": 1,
                     "resourceVersion": "1"},
        "spec": spec,
    }))
    .unwrap()
}

fn scheduled() -> serde_json::Value {
    serde_json::json!({"desiredState": "Scheduled", "scheduleRef": {"name": "office-hours"}})
}

fn schedule_status(obj: &EcsInstancePower) -> crate::api::InstanceScheduleStatus {
    *obj.status.as_ref().unwrap().schedule.clone().unwrap()
}

fn ready_reason(obj: &EcsInstancePower) -> String {
    ready(obj).unwrap().1
}

#[tokio::test(start_paused = true)]
async fn a_window_containing_now_starts_and_its_end_stops_with_status_writes_only_at_transitions() {
    // Wednesday 2026-12-23 10:00Z is 11:00 in Berlin: inside the window.
    let mut w = World::at(
        "2026-12-23T10:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    w.schedule(&office_hours(&serde_json::json!({})));
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance"]);
    let s = schedule_status(&obj);
    assert_eq!(s.effective_state.as_deref(), Some("Running"));
    assert_eq!(s.source, Some(crate::api::ScheduleSource::Window));
    assert_eq!(s.applied_state.as_deref(), Some("Running"));
    let next = s.next_transition.unwrap();
    assert_eq!(
        next.time.0,
        "2026-12-23T18:00:00Z".parse::<Timestamp>().unwrap()
    );
    w.pass_to("2026-12-23T10:00:03Z").await;
    let obj = w.reconcile("dev").await;
    assert_eq!(ready(&obj), Some(("True".into(), "Running".into())));
    let steady = obj.metadata.resource_version.clone();

    // Observations due within the window (every resync) write no status and make no call.
    for at in [
        "2026-12-23T12:00:00Z",
        "2026-12-23T15:00:00Z",
        "2026-12-23T17:59:00Z",
    ] {
        w.pass_to(at).await;
        let obj = w.reconcile("dev").await;
        assert_eq!(
            obj.metadata.resource_version, steady,
            "status written at {at}"
        );
    }
    let describes = |w: &World| {
        w.ecs
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == "DescribeInstances")
            .count()
    };
    assert!(describes(&w) >= 4, "the due observations were made");
    assert_eq!(w.ecs.writes(), ["StartInstance"]);

    // The window's end: one stop, one status write, a ScheduleTransition Event.
    w.pass_to("2026-12-23T18:00:01Z").await;
    let obj = w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance", "StopInstance"]);
    assert_ne!(obj.metadata.resource_version, steady);
    let s = schedule_status(&obj);
    assert_eq!(s.effective_state.as_deref(), Some("Stopped"));
    assert_eq!(s.applied_state.as_deref(), Some("Stopped"));
    assert_eq!(
        w.occurrences("dev", "ScheduleTransition").await,
        2,
        "one at the attach, one at the window's end"
    );
    let text = rendered(&w.ctx);
    for sample in [
        "ecs_power_actions_total{action=\"StartInstance\",cause=\"schedule\"} 1",
        "ecs_power_actions_total{action=\"StopInstance\",cause=\"schedule\"} 1",
        "ecs_power_schedule_transitions_total{state=\"Stopped\"} 1",
        // Only the window's end is a scheduled edge (the attach is not): one lag, 1 s.
        "ecs_power_schedule_transition_lag_seconds_count 1",
    ] {
        assert!(text.contains(sample), "missing {sample} in {text}");
    }
    // The stop settles; the next observation writes nothing new and calls nothing.
    w.pass_to("2026-12-23T18:05:00Z").await;
    let obj = w.reconcile("dev").await;
    assert_eq!(ready(&obj), Some(("True".into(), "Stopped".into())));
    assert_eq!(w.ecs.writes(), ["StartInstance", "StopInstance"]);
    assert!(
        !w.reasons("dev")
            .await
            .contains(&"TransitionLate".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_holiday_today_stops_a_running_instance() {
    // Thursday 2026-12-24 10:00Z: inside Thursday's window, but a holiday.
    let mut w = World::at(
        "2026-12-24T10:00:00Z",
        InstantEcs::with(InstanceStatus::Running),
    )
    .await;
    w.schedule(&office_hours(
        &serde_json::json!({"holidays": ["2026-12-24"]}),
    ));
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StopInstance"]);
    let s = schedule_status(&obj);
    assert_eq!(s.source, Some(crate::api::ScheduleSource::Holiday));
    assert_eq!(s.effective_state.as_deref(), Some("Stopped"));
    // The next transition skips the holiday: Friday 08:00 local.
    assert_eq!(
        s.next_transition.unwrap().time.0,
        "2026-12-25T07:00:00Z".parse::<Timestamp>().unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn an_override_without_until_holds_until_the_next_transition() {
    // Tuesday 2026-12-22 20:00Z: after the window, so Stopped until Wednesday 07:00Z.
    let mut w = World::at(
        "2026-12-22T20:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    w.schedule(&office_hours(&serde_json::json!({})));
    let mut spec = scheduled();
    spec["scheduleOverride"] = serde_json::json!({"state": "Running", "reason": "late demo"});
    w.create("dev", spec).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance"]);
    let s = schedule_status(&obj);
    assert_eq!(s.source, Some(crate::api::ScheduleSource::Override));
    assert_eq!(s.state, Some(crate::api::ScheduledState::Stopped));
    let o = s.override_status.unwrap();
    assert!(o.active);
    assert_eq!(
        o.until.unwrap().0,
        "2026-12-23T07:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert!(
        w.reasons("dev")
            .await
            .contains(&"OverrideStarted".to_string())
    );

    // All night the override holds: due observations, no stop.
    for at in ["2026-12-22T23:00:00Z", "2026-12-23T06:59:00Z"] {
        w.pass_to(at).await;
        let obj = w.reconcile("dev").await;
        assert_eq!(ready_reason(&obj), "Running", "at {at}");
    }
    assert_eq!(w.ecs.writes(), ["StartInstance"]);

    // At the transition it expires; the schedule says Running too, so no call.
    w.pass_to("2026-12-23T07:00:01Z").await;
    let obj = w.reconcile("dev").await;
    let s = schedule_status(&obj);
    assert!(!s.override_status.unwrap().active);
    assert_eq!(s.source, Some(crate::api::ScheduleSource::Window));
    assert!(
        w.reasons("dev")
            .await
            .contains(&"OverrideExpired".to_string())
    );
    assert_eq!(w.ecs.writes(), ["StartInstance"]);
    assert!(
        rendered(&w.ctx)
            .contains("ecs_power_actions_total{action=\"StartInstance\",cause=\"override\"} 1")
    );

    // Once expired it no longer holds: the window's end stops the instance.
    w.pass_to("2026-12-23T18:00:01Z").await;
    w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance", "StopInstance"]);
}

/// A manual start at night, seen at the next due observation: (writes, Ready reason).
async fn manual_start_at_night(enforcement: &str) -> (Vec<&'static str>, String, World) {
    let mut w = World::at(
        "2026-12-22T20:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    w.schedule(&office_hours(
        &serde_json::json!({"enforcement": enforcement}),
    ));
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(ready(&obj), Some(("True".into(), "Stopped".into())));
    assert!(w.ecs.writes().is_empty(), "already Stopped as scheduled");
    w.ecs.set(InstanceStatus::Running);
    w.pass_to("2026-12-22T20:10:00Z").await;
    let obj = w.reconcile("dev").await;
    (w.ecs.writes(), ready_reason(&obj), w)
}

#[tokio::test(start_paused = true)]
async fn on_transition_leaves_a_manual_start_alone_until_the_next_transition() {
    let (writes, reason, w) = manual_start_at_night("OnTransition").await;
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(reason, "Running");
    w.pass_to("2026-12-23T03:00:00Z").await;
    w.reconcile("dev").await;
    assert!(w.ecs.writes().is_empty());
    // Wednesday 07:00Z: Running as scheduled, already running, no call; 18:00Z: the stop.
    w.pass_to("2026-12-23T07:00:01Z").await;
    let obj = w.reconcile("dev").await;
    assert_eq!(
        schedule_status(&obj).applied_state.as_deref(),
        Some("Running")
    );
    w.pass_to("2026-12-23T18:00:01Z").await;
    w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StopInstance"]);
}

#[tokio::test(start_paused = true)]
async fn always_corrects_a_manual_start_at_the_next_observation() {
    let (writes, _, w) = manual_start_at_night("Always").await;
    assert_eq!(writes, ["StopInstance"]);
    assert!(
        rendered(&w.ctx)
            .contains("ecs_power_actions_total{action=\"StopInstance\",cause=\"drift\"} 1")
    );
}

#[tokio::test(start_paused = true)]
async fn stop_only_never_starts() {
    // Wednesday 10:00Z: the schedule says Running, which StopOnly leaves alone.
    let mut w = World::at(
        "2026-12-23T10:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    w.schedule(&office_hours(&serde_json::json!({"actions": "StopOnly"})));
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(ready(&obj), Some(("True".into(), "Unmanaged".into())));
    assert_eq!(
        schedule_status(&obj).effective_state.as_deref(),
        Some("Unmanaged")
    );
    // Someone starts it by hand; the evening stops it; the next morning does not start it.
    w.ecs.set(InstanceStatus::Running);
    w.pass_to("2026-12-23T18:00:01Z").await;
    w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StopInstance"]);
    for at in ["2026-12-24T07:00:01Z", "2026-12-24T12:00:00Z"] {
        w.pass_to(at).await;
        let obj = w.reconcile("dev").await;
        assert_eq!(ready_reason(&obj), "Unmanaged", "at {at}");
    }
    assert_eq!(w.ecs.writes(), ["StopInstance"]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_schedule_stalls_without_calls_until_it_is_created() {
    let mut w = World::at(
        "2026-12-23T10:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(
        ready(&obj),
        Some(("False".into(), "ScheduleNotFound".into()))
    );
    let stalled = obj
        .status
        .as_ref()
        .unwrap()
        .condition(condition::STALLED)
        .unwrap();
    assert_eq!(stalled.status, "True");
    assert!(w.ecs.calls.lock().unwrap().is_empty(), "no ECS call at all");
    assert!(
        w.reasons("dev")
            .await
            .contains(&"ScheduleNotFound".to_string())
    );
    // Created: the schedule's version is an input of the ledger, so the next reconcile observes.
    w.schedule(&office_hours(&serde_json::json!({})));
    let obj = w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance"]);
    assert!(
        obj.status
            .as_ref()
            .unwrap()
            .condition(condition::STALLED)
            .is_none_or(|c| c.status != "True")
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_time_zone_is_schedule_invalid_without_calls() {
    let mut w = World::at(
        "2026-12-23T10:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    w.schedule(&office_hours(
        &serde_json::json!({"timeZone": "Mars/Olympus"}),
    ));
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(
        ready(&obj),
        Some(("False".into(), "ScheduleInvalid".into()))
    );
    let message = &obj
        .status
        .as_ref()
        .unwrap()
        .condition(condition::READY)
        .unwrap()
        .message;
    assert!(message.contains("InvalidTimeZone"), "{message}");
    assert!(w.ecs.calls.lock().unwrap().is_empty());
    assert_eq!(
        w.events("dev").await,
        [("ScheduleInvalid".to_string(), "Warning".to_string())]
    );
}

#[tokio::test(start_paused = true)]
async fn after_downtime_across_transitions_one_call_catches_up_with_a_transition_late_event() {
    let mut w = World::at(
        "2026-12-22T20:00:00Z",
        InstantEcs::with(InstanceStatus::Stopped),
    )
    .await;
    let schedule = office_hours(&serde_json::json!({}));
    w.schedule(&schedule);
    w.create("dev", scheduled()).await;
    let obj = w.reconcile("dev").await;
    assert_eq!(ready(&obj), Some(("True".into(), "Stopped".into())));
    // The operator is down from Tuesday night to Thursday 10:00Z: it misses Wednesday's start
    // and stop and Thursday's start.
    w.pass_to("2026-12-24T10:00:00Z").await;
    w.restart(&[schedule]);
    let obj = w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance"], "one call, no replay");
    let s = schedule_status(&obj);
    assert_eq!(s.effective_state.as_deref(), Some("Running"));
    let events = w.events("dev").await;
    assert!(
        events.contains(&("TransitionLate".to_string(), "Warning".to_string())),
        "{events:?}"
    );
    let text = rendered(&w.ctx);
    assert!(
        text.contains("ecs_power_actions_total{action=\"StartInstance\",cause=\"catch-up\"} 1"),
        "{text}"
    );
    // 3 h late: in the histogram's +Inf bucket only above 3600 s.
    assert!(
        text.contains("ecs_power_schedule_transition_lag_seconds_count 1"),
        "{text}"
    );
    w.pass_to("2026-12-24T10:00:05Z").await;
    w.reconcile("dev").await;
    assert_eq!(w.ecs.writes(), ["StartInstance"]);
    assert_eq!(w.occurrences("dev", "TransitionLate").await, 1);
}
