//! The reconcile glue driven end to end in one process: a fake ECS handle, kube-sandbox's router
//! as the Kubernetes API (in memory, no socket), and tokio's paused clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::{Client, CustomResourceExt};

use super::*;
use crate::controller::Synced;
use crate::controller::ecs_handle::EcsHandle;
use crate::controller::gate::WriteGate;
use crate::controller::ledger::Ledger;
use crate::ecs::{InstanceStatus, OperatorCredentials};
use crate::metrics::Metrics;

/// An ECS that holds one instance and answers StartInstance from a script.
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
                tags: Default::default(),
            }))
        })
    }

    fn start_instance<'a>(
        &'a self,
        _creds: &'a Credentials,
        _region_id: &'a str,
        _request: &'a StartInstance,
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
    ) -> BoxFuture<'a, Result<WriteOutcome, EcsError>> {
        self.calls.lock().unwrap().push("StopInstance");
        Box::pin(async { panic!("no StopInstance in these scenarios") })
    }
}

/// kube-sandbox's router as the client's transport: the real API semantics, no socket.
async fn in_memory_cluster() -> Client {
    use kube_sandbox::rest::watch::WatchConfig;
    use kube_sandbox::server::{App, router};
    use kube_sandbox::store::Store;

    let config = kube_sandbox::SandboxConfig::default();
    let app = Arc::new(App {
        store: Arc::new(Store::new(config.history_capacity, config.watch_buffer)),
        watch: WatchConfig {
            bookmark_interval: config.bookmark_interval,
            max_timeout: config.max_watch_timeout,
        },
        shutdown: tokio_util::sync::CancellationToken::new(),
        addr: "127.0.0.1:0".parse().unwrap(),
        max_body: config.max_body_bytes,
    });
    let client = Client::new(router(app), "default");
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
    client
}

fn context(client: Client, ecs: Arc<FakeEcs>) -> Arc<Context> {
    let (secrets, _writer) = reflector::store();
    let (schedules, _schedule_writer) = reflector::store();
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        client,
        ecs,
        operator_credentials: Some(OperatorCredentials::Env(Credentials::new("AK", "SK", None))),
        metrics: Arc::new(Metrics::new()),
        ledger: Arc::new(Ledger::default()),
        gate: Arc::new(WriteGate::default()),
        secrets,
        schedules,
        synced: Arc::new(Synced::default()),
        resync: Duration::from_secs(300),
        time_scale: 1.0,
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
async fn a_closed_gate_fences_the_write_and_requeues() {
    let client = in_memory_cluster().await;
    let ecs = Arc::new(FakeEcs::default());
    *ecs.status.lock().unwrap() = Some(InstanceStatus::Stopped);
    let ctx = context(client.clone(), ecs.clone());
    let obj = create(&client, "fenced").await;
    ctx.gate.close();

    let action = reconcile(obj.clone(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(ctx.resync));
    assert_eq!(ecs.calls(), ["DescribeInstances"], "no write call");
    assert!(
        fetch(&client, "fenced").await.status.is_none(),
        "no status write"
    );
    assert!(
        rendered(&ctx).contains(r#"ecs_power_fenced_writes_total{edge="act"} 1"#),
        "{}",
        rendered(&ctx)
    );

    // Opened again, the next reconcile observes afresh and acts.
    ctx.gate.open();
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
