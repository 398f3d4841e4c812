//! The reconcile glue driven end to end in one process: a fake ECS handle, kube-sandbox's router
//! as the Kubernetes API (in memory, no socket), and tokio's paused clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::{Client, CustomResourceExt};

use super::*;
use crate::controller::Synced;
use crate::controller::ecs_handle::EcsHandle;
use crate::controller::events::EventRecorder;
use crate::controller::gate::WriteGate;
use crate::controller::ledger::Ledger;
use crate::ecs::{InstanceStatus, OperatorCredentials};
use crate::metrics::Metrics;

/// An ECS that holds one instance and answers `StartInstance` from a script.
#[derive(Default)]
struct FakeEcs {
    status: Mutex<Option<InstanceStatus>>,
    locks: Mutex<Vec<String>>,
    start_answers: Mutex<VecDeque<Result<WriteOutcome, EcsError>>>,
    calls: Mutex<Vec<&'static str>>,
}

impl FakeEcs {
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

impl EcsHandle for FakeEcs {
    fn describe_instance<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InstanceObservation>, EcsError>> {
        self.calls.lock().unwrap().push("DescribeInstances");
        let status = self.status.lock().unwrap().clone();
        let lock_reasons = self.locks.lock().unwrap().clone();
        Box::pin(async move {
            Ok(status.map(|status| InstanceObservation {
                instance_id: instance_id.to_string(),
                status,
                lock_reasons,
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
        self.calls.lock().unwrap().push("StartInstance");
        let answer = self.start_answers.lock().unwrap().pop_front();
        let answer = answer.unwrap_or(Ok(WriteOutcome {
            request_id: Some("req-ok".into()),
            dry_run: false,
        }));
        if answer.is_ok() {
            *self.status.lock().unwrap() = Some(InstanceStatus::Starting);
        }
        Box::pin(async move { answer })
    }

    fn stop_instance<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        _request: &'a StopInstance,
        _options: CallOptions,
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>> {
        self.calls.lock().unwrap().push("StopInstance");
        Box::pin(async { panic!("no StopInstance in these scenarios") })
    }
}

/// kube-sandbox's router as the client's transport: the real API semantics, no socket.
async fn in_memory_cluster() -> Client {
    in_memory_cluster_with_faults().await.0
}

/// [`in_memory_cluster`], and the switch of its injected failures.
async fn in_memory_cluster_with_faults() -> (Client, Arc<kube_sandbox::faults::Faults>) {
    let faults = Arc::new(kube_sandbox::faults::Faults::default());
    let client = Client::new(
        kube_sandbox::server::in_memory_router_with_faults(
            &kube_sandbox::SandboxConfig::default(),
            faults.clone(),
        ),
        "default",
    );
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &EcsInstancePower::crd())
        .await
        .unwrap();
    (client, faults)
}

fn context(client: Client, ecs: Arc<FakeEcs>) -> Arc<Context> {
    let (secrets, _writer) = reflector::store();
    let (schedules, _schedule_writer) = reflector::store();
    Arc::new(Context {
        recorder: EventRecorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        client,
        ecs,
        fleet: None,
        operator_credentials: Some(OperatorCredentials::Env(Credentials::new("AK", "SK", None))),
        metrics: Arc::new(Metrics::new()),
        ledger: Arc::new(Ledger::default()),
        gate: Arc::new(WriteGate::default()),
        secrets,
        schedules,
        access: crate::controller::fixtures::access_granting_everything(),
        synced: Arc::new(Synced::access_only()),
        resync: Duration::from_secs(300),
        time_scale: 1.0,
        clock: crate::controller::clock::Clock::default(),
    })
}

async fn create(client: &Client, name: &str) -> Arc<EcsInstancePower> {
    let obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
        "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"instanceId": "i-abc", "regionId": "cn-hangzhou", "desiredState": "Running"}
    }))
    .unwrap();
    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    Arc::new(api.create(&PostParams::default(), &obj).await.unwrap())
}

async fn fetch(client: &Client, name: &str) -> Arc<EcsInstancePower> {
    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    Arc::new(api.get(name).await.unwrap())
}

fn ready(obj: &EcsInstancePower) -> Option<(String, String)> {
    obj.status
        .as_ref()?
        .condition(condition::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn rendered(ctx: &Context) -> String {
    ctx.metrics.render(&[])
}

#[tokio::test(start_paused = true)]
async fn a_stopped_instance_is_started_and_reported() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let ctx = context(client.clone(), ecs.clone());
    let obj = create(&client, "ok").await;

    let action = reconcile(obj, ctx.clone()).await.unwrap();
    assert_eq!(ecs.calls(), ["DescribeInstances", "StartInstance"]);
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    let obj = fetch(&client, "ok").await;
    assert_eq!(ready(&obj), Some(("False".into(), "Starting".into())));
    let status = obj.status.as_ref().unwrap();
    assert_eq!(status.last_action.as_ref().unwrap().action, "StartInstance");

    // The reconcile our own status write triggers makes no ECS call.
    reconcile(obj.clone(), ctx.clone()).await.unwrap();
    assert_eq!(ecs.calls().len(), 2);
    // The transition ends: Ready once the poll is due.
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Running);
    tokio::time::advance(Duration::from_secs(2)).await;
    reconcile(obj, ctx.clone()).await.unwrap();
    let obj = fetch(&client, "ok").await;
    assert_eq!(ready(&obj), Some(("True".into(), "Running".into())));
    assert!(obj.status.as_ref().unwrap().retry.is_none());
}

/// The controller's cache delivers our own status write late (a broken watch relists seconds
/// later), and the read still lags behind the accepted call: a reconcile on the stale object must
/// not send the same write again.
#[tokio::test(start_paused = true)]
async fn a_reconcile_on_a_cache_behind_our_own_status_write_does_not_write_again() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let ctx = context(client.clone(), ecs.clone());
    let stale = create(&client, "lag").await;
    reconcile(stale.clone(), ctx.clone()).await.unwrap();
    assert_eq!(ecs.calls(), ["DescribeInstances", "StartInstance"]);
    // DescribeInstances does not show the transition yet.
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    tokio::time::advance(Duration::from_secs(2)).await;
    reconcile(stale, ctx.clone()).await.unwrap();
    assert_eq!(
        ecs.calls(),
        ["DescribeInstances", "StartInstance", "DescribeInstances"],
        "the second reconcile read the stale status and wrote again"
    );
}

#[tokio::test(start_paused = true)]
async fn no_stock_backs_off_and_is_not_retried_before_the_gate() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    ecs.start_answers
        .lock()
        .unwrap()
        .push_back(Err(EcsError::Api {
            code: "OperationDenied.NoStock".into(),
            message: "no stock".into(),
            http_status: 403,
            request_id: Some("req-1".into()),
            retry_after: None,
        }));
    let ctx = context(client.clone(), ecs.clone());
    let obj = create(&client, "nostock").await;

    let Action { .. } = reconcile(obj, ctx.clone()).await.unwrap();
    let obj = fetch(&client, "nostock").await;
    assert_eq!(ready(&obj), Some(("False".into(), "NoStock".into())));
    let status = obj.status.as_ref().unwrap();
    let retry = status.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 1);
    let gate = retry.next_attempt_time.0;
    let wait = Duration::try_from(gate.duration_since(status.last_error.as_ref().unwrap().time.0))
        .unwrap();
    assert_eq!(wait, Duration::from_secs(30), "the first capacity step");

    // Before the gate: re-observing (the ledger entry is dropped, as after a restart) makes no
    // write call.
    ctx.ledger.forget(&ObjectRef::from_obj(&*obj));
    reconcile(obj, ctx.clone()).await.unwrap();
    assert_eq!(
        ecs.calls(),
        ["DescribeInstances", "StartInstance", "DescribeInstances"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_gate_makes_no_ecs_call_and_requeues() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let ctx = context(client.clone(), ecs.clone());
    let obj = create(&client, "fenced").await;
    ctx.gate.close();

    let action = reconcile(obj.clone(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(ctx.resync));
    assert!(
        ecs.calls().is_empty(),
        "a follower makes no ECS call at all"
    );
    assert!(
        fetch(&client, "fenced").await.status.is_none(),
        "no status write"
    );
    assert!(
        rendered(&ctx).contains(r#"ecs_power_reconciles_total{result="following"} 1"#),
        "{}",
        rendered(&ctx)
    );

    // Opened again, the next reconcile observes first, then acts.
    ctx.gate.open();
    reconcile(obj, ctx.clone()).await.unwrap();
    assert_eq!(ecs.calls(), ["DescribeInstances", "StartInstance"]);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_would_outlive_the_lease_is_fenced_and_requeued() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let mut ctx = context(client.clone(), ecs.clone());
    Arc::get_mut(&mut ctx).unwrap().gate = Arc::new(WriteGate::leased(Duration::from_secs(5)));
    let obj = create(&client, "short-lease").await;
    // The lease is valid for 4 s more: reads pass, a 5 s write does not fit.
    ctx.gate
        .lease_valid_until(tokio::time::Instant::now() + Duration::from_secs(4));

    let action = reconcile(obj.clone(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(ctx.resync));
    assert_eq!(ecs.calls(), ["DescribeInstances"], "no write call");
    assert!(
        fetch(&client, "short-lease").await.status.is_none(),
        "no status write"
    );
    assert!(
        rendered(&ctx).contains(r#"ecs_power_fenced_writes_total{edge="act"} 1"#),
        "{}",
        rendered(&ctx)
    );

    // Renewed: the next reconcile observes afresh and acts.
    ctx.gate
        .lease_valid_until(tokio::time::Instant::now() + Duration::from_secs(10));
    reconcile(obj, ctx.clone()).await.unwrap();
    assert_eq!(
        ecs.calls(),
        ["DescribeInstances", "DescribeInstances", "StartInstance"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lock_lifted_while_stalled_is_noticed_within_one_resync_interval() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    *ecs.locks.lock().unwrap() = vec!["security".to_string()];
    let ctx = context(client.clone(), ecs.clone());
    let obj = create(&client, "locked").await;

    reconcile(obj, ctx.clone()).await.unwrap();
    let obj = fetch(&client, "locked").await;
    assert_eq!(
        ready(&obj),
        Some(("False".into(), "InstanceLockedForSecurity".into()))
    );
    assert_eq!(ecs.calls(), ["DescribeInstances"], "no write under a lock");

    // The lock is lifted. Within one resync interval (plus its 10 % jitter) the resource is due
    // again, observed, and started; the terminal re-check (10 minutes) does not hold it back.
    ecs.locks.lock().unwrap().clear();
    tokio::time::advance(ctx.resync.mul_f64(1.1)).await;
    reconcile(obj, ctx.clone()).await.unwrap();
    assert_eq!(
        ecs.calls(),
        ["DescribeInstances", "DescribeInstances", "StartInstance"]
    );
    let obj = fetch(&client, "locked").await;
    assert_eq!(ready(&obj), Some(("False".into(), "Starting".into())));
}

/// The batch calls for the fleet path: one instance, a log of calls, and an optional answer that
/// leaves the instance out (an ambiguous write).
#[derive(Default)]
struct FakeFleetEcs {
    status: Mutex<Option<InstanceStatus>>,
    omit_from_answer: Mutex<bool>,
    calls: Mutex<Vec<&'static str>>,
}

impl crate::fleet::FleetEcs for FakeFleetEcs {
    fn describe_instances<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        instance_ids: &'a [&'a str],
        _options: &'a crate::ecs::CallOptions,
    ) -> BoxFuture<'a, Result<Vec<InstanceObservation>, EcsError>> {
        self.calls.lock().unwrap().push("DescribeInstances");
        let status = self.status.lock().unwrap().clone();
        let found = instance_ids
            .iter()
            .filter_map(|id| {
                Some(InstanceObservation {
                    instance_id: (*id).to_string(),
                    status: status.clone()?,
                    lock_reasons: Vec::new(),
                    stopped_mode: None,
                    expired_time: None,
                    tags: std::collections::BTreeMap::default(),
                })
            })
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn start_instances<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        instance_ids: &'a [&'a str],
        _options: &'a crate::ecs::CallOptions,
    ) -> BoxFuture<'a, Result<crate::ecs::BatchOutcome, EcsError>> {
        self.calls.lock().unwrap().push("StartInstances");
        let omit = *self.omit_from_answer.lock().unwrap();
        let mut results = std::collections::BTreeMap::new();
        for id in instance_ids {
            if omit {
                results.insert((*id).to_string(), crate::ecs::InstanceResult::Missing);
            } else {
                *self.status.lock().unwrap() = Some(InstanceStatus::Starting);
                results.insert(
                    (*id).to_string(),
                    crate::ecs::InstanceResult::Accepted {
                        previous_status: Some(InstanceStatus::Stopped),
                        current_status: Some(InstanceStatus::Starting),
                    },
                );
            }
        }
        answered("req-batch", results)
    }

    fn stop_instances<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        instance_ids: &'a [&'a str],
        _stop: &'a crate::ecs::StopOptions,
        _options: &'a crate::ecs::CallOptions,
    ) -> BoxFuture<'a, Result<crate::ecs::BatchOutcome, EcsError>> {
        // Accepted, and stopped at once (the scenarios here look at which calls are sent, not at
        // the transition).
        self.calls.lock().unwrap().push("StopInstances");
        let mut results = std::collections::BTreeMap::new();
        for id in instance_ids {
            let previous = self.status.lock().unwrap().replace(InstanceStatus::Stopped);
            results.insert(
                (*id).to_string(),
                crate::ecs::InstanceResult::Accepted {
                    previous_status: previous,
                    current_status: Some(InstanceStatus::Stopping),
                },
            );
        }
        answered("req-stop", results)
    }

    fn caller_identity<'a>(
        &'a self,
        _creds: &'a Credentials,
        _options: &'a crate::ecs::CallOptions,
    ) -> BoxFuture<'a, Result<crate::ecs::CallerIdentity, EcsError>> {
        self.calls.lock().unwrap().push("GetCallerIdentity");
        Box::pin(async {
            Ok(crate::ecs::CallerIdentity {
                account_id: "1234567890".into(),
                arn: None,
                user_id: None,
                identity_type: None,
                principal_id: None,
                role_id: None,
                request_id: None,
            })
        })
    }
}

/// The fleet fake's answer to a batch write: each instance's result, no unexpected entry.
fn answered(
    request_id: &str,
    results: std::collections::BTreeMap<String, crate::ecs::InstanceResult>,
) -> BoxFuture<'static, Result<crate::ecs::BatchOutcome, EcsError>> {
    let outcome = crate::ecs::BatchOutcome {
        request_id: Some(request_id.into()),
        results,
        unexpected: 0,
    };
    Box::pin(async move { Ok(outcome) })
}

/// A context whose reconciles go through a fleet gateway over `ecs`, and the gateway's triggers.
fn fleet_context(
    client: Client,
    ecs: Arc<FakeFleetEcs>,
) -> (
    Arc<Context>,
    tokio::sync::mpsc::UnboundedReceiver<ObjectRef<EcsInstancePower>>,
) {
    let (trigger, triggers) = tokio::sync::mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new());
    let fleet = crate::fleet::Fleet::new(
        ecs,
        crate::fleet::FleetConfig::new(
            crate::fleet::RateLimits::default(),
            100,
            Duration::from_secs(300),
        ),
        metrics.clone(),
        trigger,
    );
    let single = Arc::new(FakeEcs::default());
    let ctx = context(client, single);
    let ctx = Arc::new(Context {
        recorder: ctx.recorder.clone(),
        client: ctx.client.clone(),
        ecs: ctx.ecs.clone(),
        fleet: Some(fleet),
        operator_credentials: ctx.operator_credentials.clone(),
        metrics,
        ledger: Arc::new(Ledger::default()),
        gate: Arc::new(WriteGate::default()),
        secrets: ctx.secrets.clone(),
        schedules: ctx.schedules.clone(),
        access: ctx.access.clone(),
        synced: Arc::new(Synced::access_only()),
        resync: ctx.resync,
        time_scale: 1.0,
        clock: crate::controller::clock::Clock::default(),
    });
    (ctx, triggers)
}

/// Reconciles `name` as the controller would: again whenever the gateway re-queues it, until
/// `done` accepts the stored object (bounded).
async fn reconcile_until(
    client: &Client,
    ctx: &Arc<Context>,
    triggers: &mut tokio::sync::mpsc::UnboundedReceiver<ObjectRef<EcsInstancePower>>,
    name: &str,
    done: impl Fn(&EcsInstancePower) -> bool,
) -> (Arc<EcsInstancePower>, Action) {
    for _ in 0..50 {
        let obj = fetch(client, name).await;
        let action = reconcile(obj, ctx.clone()).await.unwrap();
        let obj = fetch(client, name).await;
        if done(&obj) {
            return (obj, action);
        }
        tokio::time::timeout(Duration::from_secs(60), triggers.recv())
            .await
            .expect("the gateway re-queues the resource")
            .unwrap();
    }
    panic!("{name} never got there");
}

#[tokio::test(start_paused = true)]
async fn through_the_fleet_the_first_action_is_a_read_and_a_reconcile_never_waits_for_ecs() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeFleetEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let (ctx, mut triggers) = fleet_context(client.clone(), ecs.clone());
    let obj = create(&client, "fleet").await;

    // The first reconcile submits what it needs and returns without a status and without
    // having called ECS itself.
    let started = tokio::time::Instant::now();
    reconcile(obj, ctx.clone()).await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait inside the reconcile"
    );
    assert!(fetch(&client, "fleet").await.status.is_none());

    let (obj, _) = reconcile_until(&client, &ctx, &mut triggers, "fleet", |o| {
        ready(o) == Some(("False".into(), "Starting".into()))
    })
    .await;
    let calls = ecs.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["GetCallerIdentity", "DescribeInstances", "StartInstances"],
        "a read before the write, one write"
    );
    let status = obj.status.as_ref().unwrap();
    assert_eq!(
        status.last_action.as_ref().unwrap().action,
        "StartInstance",
        "the status names the write, whichever call carried it"
    );
    assert_eq!(status.instance_status.as_deref(), Some("Stopped"));
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_batch_write_is_not_resent_before_a_read_the_settle_time_later() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeFleetEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    *ecs.omit_from_answer.lock().unwrap() = true;
    let (ctx, mut triggers) = fleet_context(client.clone(), ecs.clone());
    create(&client, "ambiguous").await;

    let (obj, _) = reconcile_until(&client, &ctx, &mut triggers, "ambiguous", |o| {
        o.status.as_ref().is_some_and(|s| s.last_error.is_some())
    })
    .await;
    let status = obj.status.as_ref().unwrap();
    let error = status.last_error.clone().unwrap();
    assert_eq!(error.action.as_deref(), Some("StartInstance"));
    let gate = status.retry.as_ref().unwrap().next_attempt_time.0;
    let held = Duration::try_from(gate.duration_since(error.time.0)).unwrap();
    assert!(
        held >= crate::controller::decide::SETTLE
            .checked_sub(Duration::from_secs(1))
            .unwrap(),
        "held {held:?}"
    );
    assert!(
        rendered(&ctx).contains("ecs_power_fleet_ambiguous_writes_total 1"),
        "{}",
        rendered(&ctx)
    );

    // Looked at again before the gate (the ledger entry dropped, as after a restart): the first
    // action is a read, and it is not followed by a second start. (The verified re-send after
    // the gate is covered where the wall clock moves: the gateway and controller tests.)
    *ecs.omit_from_answer.lock().unwrap() = false;
    ctx.ledger.forget(&ObjectRef::from_obj(&*obj));
    let before = ecs.calls.lock().unwrap().len();
    // The read is submitted; its answer re-queues the resource, which then decides on it.
    reconcile(fetch(&client, "ambiguous").await, ctx.clone())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), triggers.recv())
        .await
        .expect("the read re-queues the resource")
        .unwrap();
    let action = reconcile(fetch(&client, "ambiguous").await, ctx.clone())
        .await
        .unwrap();
    assert_ne!(
        action,
        Action::requeue(Duration::from_secs(30)),
        "decided, not pending"
    );
    let obj = fetch(&client, "ambiguous").await;
    let calls = ecs.calls.lock().unwrap()[before..].to_vec();
    assert_eq!(
        calls,
        ["DescribeInstances"],
        "a read, no re-send before the gate"
    );
    assert!(
        obj.status.as_ref().unwrap().last_error.is_some(),
        "still held"
    );
}

/// FLEET.md: the desired state flipped while the start is ambiguous makes the stop wait. Whether
/// ECS carried the start out or not, nothing is written for the new generation before a read sent
/// after the flip shows where the instance is; then one stop if it runs, none if it never started,
/// and never a second start.
#[tokio::test(start_paused = true)]
async fn the_desired_state_flipped_while_the_start_is_ambiguous_writes_nothing_before_a_read() {
    for applied in [true, false] {
        let client = in_memory_cluster().await;
        let ecs = Arc::new(FakeFleetEcs::default());
        *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
        *ecs.omit_from_answer.lock().unwrap() = true;
        let (ctx, mut triggers) = fleet_context(client.clone(), ecs.clone());
        create(&client, "flipped").await;
        reconcile_until(&client, &ctx, &mut triggers, "flipped", |o| {
            o.status.as_ref().is_some_and(|s| s.last_error.is_some())
        })
        .await;
        assert_eq!(
            ecs.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| **c == "StartInstances")
                .count(),
            1
        );
        // ECS did (or did not) carry out the start whose answer left the instance out.
        if applied {
            *ecs.status.lock().unwrap() = Some(InstanceStatus::Running);
        }
        *ecs.omit_from_answer.lock().unwrap() = false;
        let before = ecs.calls.lock().unwrap().len();
        let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
        let patch = serde_json::json!({"spec": {"desiredState": "Stopped"}});
        api.patch("flipped", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        // As the controller: again when the gateway re-queues it, or when its requeue (the
        // transition poll, a few seconds) comes.
        let mut obj = fetch(&client, "flipped").await;
        for _ in 0..50 {
            reconcile(obj, ctx.clone()).await.unwrap();
            obj = fetch(&client, "flipped").await;
            if obj.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
                && ready(&obj) == Some(("True".into(), "Stopped".into()))
            {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), triggers.recv()).await;
        }
        let calls = ecs.calls.lock().unwrap()[before..].to_vec();
        let want: &[&str] = if applied {
            &["DescribeInstances", "StopInstances", "DescribeInstances"]
        } else {
            &["DescribeInstances"]
        };
        assert_eq!(calls, want, "start carried out: {applied}");
        assert_eq!(ready(&obj), Some(("True".into(), "Stopped".into())));
        assert_eq!(
            obj.status.as_ref().unwrap().instance_status.as_deref(),
            Some("Stopped")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_fleet_a_write_the_lease_cannot_cover_is_never_submitted() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeFleetEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let (mut ctx, mut triggers) = fleet_context(client.clone(), ecs.clone());
    let gate = Arc::new(WriteGate::leased(Duration::from_secs(5)));
    // Valid for 4 s more: reads pass, a 5 s write does not fit.
    gate.lease_valid_until(tokio::time::Instant::now() + Duration::from_secs(4));
    let fleet = ctx.fleet.clone().unwrap();
    fleet.set_gate(gate.clone());
    Arc::get_mut(&mut ctx).unwrap().gate = gate.clone();
    let obj = create(&client, "fleet-fenced").await;

    // The read goes through the gateway; the write is refused at the gate before it is an
    // intent, and the resource is requeued.
    let mut fenced = None;
    for _ in 0..10 {
        let obj = fetch(&client, "fleet-fenced").await;
        let action = reconcile(obj, ctx.clone()).await.unwrap();
        if rendered(&ctx).contains(r#"ecs_power_fenced_writes_total{edge="act"} 1"#) {
            fenced = Some(action);
            break;
        }
        tokio::time::timeout(Duration::from_secs(60), triggers.recv())
            .await
            .expect("the gateway re-queues the resource")
            .unwrap();
    }
    assert_eq!(
        fenced,
        Some(Action::requeue(ctx.resync)),
        "{}",
        rendered(&ctx)
    );
    let uid = obj.metadata.uid.clone().unwrap();
    assert!(
        matches!(
            fleet.collect(&uid, obj.metadata.generation, WriteCall::Start),
            Collected::Nothing
        ),
        "no intent submitted"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = ecs.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["GetCallerIdentity", "DescribeInstances"],
        "no write"
    );
    assert!(fetch(&client, "fleet-fenced").await.status.is_none());

    // Renewed: the next reconcile submits the write and it is carried out.
    gate.lease_valid_until(tokio::time::Instant::now() + Duration::from_secs(60));
    reconcile_until(&client, &ctx, &mut triggers, "fleet-fenced", |o| {
        ready(o) == Some(("False".into(), "Starting".into()))
    })
    .await;
    let calls = ecs.calls.lock().unwrap().clone();
    assert_eq!(calls.last().copied(), Some("StartInstances"), "{calls:?}");
}

mod schedule;

/// Found by the soak (a start sent twice for one transition): a resource whose status turned
/// steady right after a write (its Secret gone missing) took a sweep read from before that write
/// and wrote again. A steady resource's cached read must be newer than its last write call by the
/// settle time.
#[tokio::test(start_paused = true)]
async fn a_steady_status_right_after_a_write_takes_no_sweep_read_from_before_it() {
    let client = in_memory_cluster().await;
    let ctx = context(client, Arc::new(FakeEcs::default()));
    let ago = |secs: i64| Timestamp::now() - jiff::SignedDuration::from_secs(secs);
    let status = |action: Option<(&str, Timestamp)>, error: Option<(&str, Timestamp)>| {
        serde_json::from_value::<EcsInstancePowerStatus>(serde_json::json!({
            "lastAction": action.map(|(a, t)| serde_json::json!({"action": a, "time": t.to_string()})),
            "lastError": error.map(|(a, t)| serde_json::json!({
                "action": a, "code": "EcsUnreachable", "message": "m", "time": t.to_string()})),
        }))
        .unwrap()
    };
    let two_resyncs = ctx.resync * 2;
    // The wall clock moves while the test runs: within a second.
    let near = |got: Duration, want: u64| {
        let want = Duration::from_secs(want);
        assert!(
            got >= want && got < want + Duration::from_secs(1),
            "{got:?}, not {want:?}"
        );
    };
    assert_eq!(cached_max_age(&ctx, &status(None, None)), two_resyncs);
    // An accepted start 5 s ago: no cached read will do.
    assert_eq!(
        cached_max_age(&ctx, &status(Some(("StartInstance", ago(5))), None)),
        Duration::ZERO
    );
    // 40 s ago: a read from the 30 s since it settled.
    near(
        cached_max_age(&ctx, &status(Some(("StartInstance", ago(40))), None)),
        30,
    );
    // A start of unknown outcome 15 s ago counts too, whatever the older accepted one.
    near(
        cached_max_age(
            &ctx,
            &status(
                Some(("StopInstance", ago(3600))),
                Some(("StartInstance", ago(15))),
            ),
        ),
        5,
    );
    // A write long ago does not shorten it.
    assert_eq!(
        cached_max_age(&ctx, &status(Some(("StartInstance", ago(3600))), None)),
        two_resyncs
    );
    // A write stamped in the future (a skewed clock): no cached read.
    assert_eq!(
        cached_max_age(&ctx, &status(Some(("StartInstance", ago(-30))), None)),
        Duration::ZERO
    );
}

/// Found by the soak (a start sent twice for one transition, the second answered
/// `IncorrectInstanceStatus`): a write's report could not be written (the API server failed the
/// status patch), the next reconcile failed at the Secret read before it wrote it, and the one
/// after that built on the object's old, steady status, which knew nothing of the write. It took
/// a sweep read from before the write and started the instance again. The report now stays in
/// the ledger until a status is written.
#[tokio::test(start_paused = true)]
async fn a_write_report_the_api_server_refused_survives_a_failed_secret_read_and_no_second_start_follows()
 {
    use kube_sandbox::faults::{FaultAnswer, FaultRule};
    let (client, faults) = in_memory_cluster_with_faults().await;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "keys", "namespace": "default"},
        "stringData": {"accessKeyId": "LTAI-test", "accessKeySecret": "not-a-real-secret"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ecs = Arc::new(FakeFleetEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let (ctx, mut triggers) = fleet_context(client.clone(), ecs.clone());
    let obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
        "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
        "metadata": {"name": "keyed", "namespace": "default"},
        "spec": {"instanceId": "i-abc", "regionId": "cn-hangzhou", "desiredState": "Stopped",
                 "credentialsSecretRef": {"name": "keys"}}
    }))
    .unwrap();
    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &obj).await.unwrap();
    reconcile_until(&client, &ctx, &mut triggers, "keyed", |o| {
        ready(o) == Some(("True".into(), "Stopped".into()))
    })
    .await;

    // The user asks for Running: a read, then the start is submitted.
    let patch = serde_json::json!({"spec": {"desiredState": "Running"}});
    api.patch("keyed", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let fail = |method: http::Method, path: &str| FaultRule {
        method,
        path_contains: path.to_string(),
        answer: FaultAnswer::InternalError,
        probability: 1.0,
    };
    for _ in 0..10 {
        if ecs.calls.lock().unwrap().contains(&"StartInstances") {
            break;
        }
        reconcile(fetch(&client, "keyed").await, ctx.clone())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), triggers.recv())
            .await
            .expect("the gateway re-queues the resource")
            .unwrap();
    }
    assert_eq!(
        ecs.calls.lock().unwrap().last(),
        Some(&"StartInstances"),
        "the start was sent"
    );

    // Its report: the status patch fails.
    faults.set(vec![fail(http::Method::PATCH, "/status")], 1);
    let result = reconcile(fetch(&client, "keyed").await, ctx.clone()).await;
    assert!(matches!(result, Err(Error::WriteStatus(_))), "{result:?}");
    // The next reconcile, once due, fails at the Secret read.
    faults.set(
        vec![
            fail(http::Method::PATCH, "/status"),
            fail(http::Method::GET, "/secrets/"),
        ],
        1,
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    let result = reconcile(fetch(&client, "keyed").await, ctx.clone()).await;
    assert!(matches!(result, Err(Error::ReadSecret(_))), "{result:?}");

    // The API server is back: the status names the start, and the instance is not started again.
    faults.set(Vec::new(), 1);
    let (obj, _) = reconcile_until(&client, &ctx, &mut triggers, "keyed", |o| {
        o.status
            .as_ref()
            .and_then(|s| s.last_action.as_ref())
            .is_some_and(|a| a.action == "StartInstance")
    })
    .await;
    assert_eq!(ready(&obj), Some(("False".into(), "Starting".into())));
    let starts = ecs
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| **c == "StartInstances")
        .count();
    assert_eq!(starts, 1, "one start for one transition");
}
