//! End to end: the `ecs-power-operator` BINARY against kube-sandbox and
//! ecs-emulator, driven by the real `kubectl` from PATH, one test per scenario. Each test asserts
//! what a user sees — status and conditions (`kubectl get -o json`, `kubectl wait`), events
//! (`kubectl get events`, `kubectl describe`), printer columns, kubectl's error text — and what ECS
//! saw (the emulator's call log).
//!
//! The in-process controller tests (`tests/controller.rs`) cover the controller's logic in more
//! detail; these cover the layer around it: the binary's flags, environment and signals, the
//! committed CRD as `kubectl apply` installs it, the examples, protobuf writes from `kubectl create
//! secret`, watches broken with 410 Gone, and a restart of the process.
//!
//! kubectl missing or older than 1.29 FAILS these tests (never skipped); `KUBECTL=/path` picks
//! another one. Delays run at `--time-scale 0.05`; every wait is bounded polling or `kubectl wait`.
// Test arithmetic on small counts: casts to f64 lose nothing here.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

#[path = "e2e/env.rs"]
mod env;
#[path = "e2e/kubectl.rs"]
mod kubectl;
#[path = "e2e/operator.rs"]
mod operator;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use ecs_emulator::{Status, StoppedMode};
use env::{CONVERGE, Env, OPERATOR_AK, code_for, condition, example, message, pair};
use serde_json::Value;

/// The instances `examples/*.yaml` name (the ones `ecs-power-operator sandbox` seeds), plus the
/// team key of `examples/secret-ref.yaml`.
const EXAMPLES_STATE: &str = r"
accessKeys: [{id: sandbox-team-a-key, secret: sandbox-team-a-secret}]
transitionDelay: 300ms
instances:
  - {id: i-demo0001, region: cn-hangzhou, status: Stopped}
  - {id: i-demo0002, region: cn-hangzhou, status: Running}
  - {id: i-demo0003, region: cn-hangzhou, status: Stopped}
  - {id: i-demo0004, region: cn-hangzhou, status: Stopped, locks: [security]}
  - {id: i-demo0005, region: cn-hangzhou, status: Stopped}
";

/// A minimal `EcsInstancePower` manifest.
fn manifest(name: &str, instance: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: ecspower.dev/v1alpha1\nkind: EcsInstancePower\nmetadata:\n  name: {name}\n  \
         namespace: default\nspec:\n  instanceId: {instance}\n  regionId: cn-hangzhou\n{extra_spec}"
    )
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(-1)
}

fn retry_attempts(obj: &Value) -> i64 {
    int_at(obj, "/status/retry/attempts")
}

/// Ready=True with the converged status fields every success shares.
fn assert_converged(obj: &Value, actual: &str) {
    assert_eq!(condition(obj, "Ready"), pair("True", actual), "{obj:#}");
    assert_eq!(str_at(obj, "/status/instanceStatus"), actual, "{obj:#}");
    assert_eq!(
        int_at(obj, "/status/observedGeneration"),
        int_at(obj, "/metadata/generation"),
        "{obj:#}"
    );
    assert_eq!(condition(obj, "Reconciling"), None, "{obj:#}");
    assert_eq!(condition(obj, "Stalled"), None, "{obj:#}");
    assert!(obj["status"]["lastError"].is_null(), "{obj:#}");
    assert!(obj["status"]["retry"].is_null(), "{obj:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_example_starts_the_instance_with_one_call_and_the_binary_stops_on_sigterm() {
    let mut env = Env::start(EXAMPLES_STATE).await;
    let out = env.kubectl.apply(&example("start.yaml")).await;
    assert!(
        out.contains("ecsinstancepower.ecspower.dev/web-1 created"),
        "{out}"
    );
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;

    let obj = env.get("web-1").await;
    assert_converged(&obj, "Running");
    let starts = env.starts("i-demo0001");
    assert_eq!(
        starts.len(),
        1,
        "exactly one start call for the instance: {starts:#?}"
    );
    assert_eq!(code_for(&starts[0], "i-demo0001"), None, "{starts:#?}");
    let start = &starts[0];
    assert_eq!(start.http_status, Some(200));
    assert!(!start.dry_run);
    assert_eq!(start.access_key_id.as_deref(), Some(OPERATOR_AK));
    assert_eq!(str_at(&obj, "/status/lastAction/action"), "StartInstance");
    assert_eq!(
        str_at(&obj, "/status/lastAction/requestId"),
        start.request_id,
        "status.lastAction names the RequestId ECS answered"
    );
    assert_eq!(obj["status"]["lastAction"]["dryRun"], false);
    assert_eq!(
        env.emulator.instance("i-demo0001").unwrap().status,
        Status::Running
    );

    env.wait_event("web-1", "Running").await;
    let events = env.kubectl.events("web-1").await;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(reasons, ["Starting", "Running"], "{events:#?}");
    assert!(events.iter().all(|e| e["type"] == "Normal"), "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["reportingComponent"] == "ecs-power-operator"),
        "{events:#?}"
    );

    // The HTTP endpoint of the binary: probes and the call counters.
    let addr = env.operator().metrics_addr.unwrap();
    let (code, body) = operator::http_get(addr, "/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, metrics) = operator::http_get(addr, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"ecs_power_ecs_calls_total{action="StartInstances",code="Success"} 1"#),
        "{metrics}"
    );

    // Pod deletion sends SIGTERM: the binary finishes and exits 0, without another ECS write.
    let status = env.operator().terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        env.operator().log().contains("shutdown signal received"),
        "{}",
        env.operator().log()
    );
    assert_eq!(env.writes("i-demo0001").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_example_stops_the_instance_in_economical_mode() {
    let env = Env::start(EXAMPLES_STATE).await;
    let out = env.kubectl.apply(&example("stop.yaml")).await;
    assert!(
        out.contains("ecsinstancepower.ecspower.dev/db-1 created"),
        "{out}"
    );
    env.kubectl
        .wait("ecspower/db-1", "condition=Ready", CONVERGE)
        .await;

    let obj = env.get("db-1").await;
    assert_converged(&obj, "Stopped");
    assert_eq!(str_at(&obj, "/status/lastAction/action"), "StopInstance");
    let stops = env.stops("i-demo0002");
    assert_eq!(stops.len(), 1, "{stops:#?}");
    assert_eq!(stops[0].http_status, Some(200));
    assert_eq!(code_for(&stops[0], "i-demo0002"), None, "{stops:#?}");
    assert!(env.starts("i-demo0002").is_empty());
    let instance = env.emulator.instance("i-demo0002").unwrap();
    assert_eq!(instance.status, Status::Stopped);
    assert_eq!(
        instance.stopped_mode,
        Some(StoppedMode::StopCharging),
        "spec.stoppedMode reached StopInstance"
    );
    env.wait_event("db-1", "Stopped").await;
    assert_eq!(env.event_reasons("db-1").await, ["Stopping", "Stopped"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stock_backs_off_with_growing_attempts_without_stalling() {
    let env = Env::start(
        r"
instances: [{id: i-e2enostock, region: cn-hangzhou, status: Stopped}]
faults: [{instance: i-e2enostock, action: StartInstances, code: OperationDenied.NoStock, times: -1}]
",
    )
    .await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2enostock", ""))
        .await;
    let first = env.wait_ready_reason("web-1", "False", "NoStock").await;
    let first_ready = first["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();

    // Attempts grow one by one (30 s, then 30–60 s, scaled by 0.05).
    let mut seen = vec![retry_attempts(&first)];
    let mut obj = first.clone();
    for target in [2, 3] {
        obj = env
            .poll(
                "web-1",
                CONVERGE,
                &format!("NoStock attempt {target}"),
                |o| retry_attempts(o) >= target,
            )
            .await;
        seen.push(retry_attempts(&obj));
    }
    assert!(
        seen[0] == 1 && seen.windows(2).all(|w| w[0] < w[1]),
        "status.retry.attempts grows: {seen:?}"
    );

    assert_eq!(
        condition(&obj, "Ready"),
        pair("False", "NoStock"),
        "{obj:#}"
    );
    assert_eq!(
        condition(&obj, "Reconciling"),
        pair("True", "Retrying"),
        "{obj:#}"
    );
    assert_eq!(
        condition(&obj, "Stalled"),
        None,
        "NoStock is not a stall: {obj:#}"
    );
    assert_eq!(
        str_at(&obj, "/status/lastError/code"),
        "OperationDenied.NoStock"
    );
    // The code came in the batch answer's entry for this instance; the answer itself is HTTP 200.
    assert_eq!(int_at(&obj, "/status/lastError/httpStatus"), 200);
    assert!(
        !str_at(&obj, "/status/retry/nextAttemptTime").is_empty(),
        "{obj:#}"
    );
    let request_id = str_at(&obj, "/status/lastError/requestId");
    assert!(!request_id.is_empty(), "{obj:#}");
    for type_ in ["Ready", "Reconciling"] {
        assert!(
            !message(&obj, type_).contains(request_id),
            "no RequestId in condition messages: {obj:#}"
        );
    }
    // A retry does not rewrite the Ready condition (stable message, same transition time).
    let ready = obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["message"], first_ready["message"]);
    assert_eq!(
        ready["lastTransitionTime"],
        first_ready["lastTransitionTime"]
    );

    let starts = env.starts("i-e2enostock");
    assert!(starts.len() >= 3, "{starts:#?}");
    assert!(
        starts
            .iter()
            .all(|c| code_for(c, "i-e2enostock").as_deref() == Some("OperationDenied.NoStock")),
        "{starts:#?}"
    );
    let gaps: Vec<i128> = starts
        .windows(2)
        .map(|w| w[1].time.duration_since(w[0].time).as_millis())
        .collect();
    // The back-off runs from the start of a reconcile, the call log records arrivals: a slow first
    // attempt on a loaded machine shortens the observed gap a little. Other classes retry after
    // 50–100 ms (scaled), so 1 s still tells the capacity class apart.
    assert!(
        gaps.iter().all(|g| *g >= 1_000),
        "capacity back-off is at least 30 s (1.5 s scaled) between attempts: {gaps:?} ms"
    );
    let event = env.wait_event("web-1", "NoStock").await;
    assert_eq!(event["type"], "Warning", "{event:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_example_stalls_without_any_write_call() {
    let env = Env::start(EXAMPLES_STATE).await;
    env.kubectl.apply(&example("locked.yaml")).await;
    env.kubectl
        .wait("ecspower/locked-1", "condition=Stalled", CONVERGE)
        .await;
    let obj = env
        .wait_ready_reason("locked-1", "False", "InstanceLockedForSecurity")
        .await;
    assert_eq!(
        condition(&obj, "Stalled"),
        pair("True", "InstanceLockedForSecurity"),
        "{obj:#}"
    );
    assert_eq!(condition(&obj, "Reconciling"), None, "{obj:#}");
    assert_eq!(str_at(&obj, "/status/instanceStatus"), "Stopped");
    assert!(message(&obj, "Ready").contains("security"), "{obj:#}");
    assert!(!env.calls("i-demo0004", "DescribeInstances").is_empty());
    assert!(
        env.writes("i-demo0004").is_empty(),
        "no write call while locked: {:#?}",
        env.writes("i-demo0004")
    );

    let event = env
        .wait_event("locked-1", "InstanceLockedForSecurity")
        .await;
    assert_eq!(event["type"], "Warning", "{event:#}");
    let describe = env.kubectl.ok(&["describe", "ecspower", "locked-1"]).await;
    let line = describe
        .lines()
        .find(|l| l.contains("InstanceLockedForSecurity") && l.contains("Warning"))
        .unwrap_or_else(|| panic!("no Warning event line in kubectl describe:\n{describe}"));
    assert!(line.contains("ecs-power-operator"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_instance_is_instance_not_found() {
    let env = Env::start("instances: []").await;
    env.kubectl
        .apply(&manifest("ghost-1", "i-e2enosuch", ""))
        .await;
    let obj = env
        .wait_ready_reason("ghost-1", "False", "InstanceNotFound")
        .await;
    assert_eq!(
        condition(&obj, "Stalled"),
        pair("True", "InstanceNotFound"),
        "{obj:#}"
    );
    assert_eq!(str_at(&obj, "/status/instanceStatus"), "NotFound");
    let text = message(&obj, "Ready");
    assert!(
        text.contains("i-e2enosuch") && text.contains("cn-hangzhou"),
        "{text}"
    );
    assert!(env.writes("i-e2enosuch").is_empty());
    assert!(!env.calls("i-e2enosuch", "DescribeInstances").is_empty());
    let event = env.wait_event("ghost-1", "InstanceNotFound").await;
    assert_eq!(event["type"], "Warning", "{event:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_internal_errors_then_success_with_json_logs() {
    let mut env = Env::without_operator(
        r"
transitionDelay: 300ms
instances: [{id: i-e2eflaky, region: cn-hangzhou, status: Stopped}]
faults: [{action: StartInstances, code: InternalError, times: 2}]
",
    )
    .await;
    env.start_operator_logging("json").await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2eflaky", ""))
        .await;
    // An HTTP 500 may come after the start was carried out: each re-send waits for a read at
    // least the settle time (10 s) later that shows the instance still stopped.
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", Duration::from_secs(60))
        .await;
    let obj = env.get("web-1").await;
    assert_converged(&obj, "Running");
    let starts = env.starts("i-e2eflaky");
    let statuses: Vec<Option<u16>> = starts.iter().map(|c| c.http_status).collect();
    assert_eq!(
        statuses,
        [Some(500), Some(500), Some(200)],
        "two failures, then one success: {starts:#?}"
    );
    env.wait_event("web-1", "Running").await;
    let reasons = env.event_reasons("web-1").await;
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("InternalError"),
        "{reasons:?}"
    );
    assert!(
        reasons.ends_with(&["Starting".to_string(), "Running".to_string()]),
        "{reasons:?}"
    );

    // --log-format json: one JSON object per line, the ECS error code and RequestId as fields.
    let log = env.operator().log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["code"] == "InternalError")
        .collect();
    assert_eq!(warnings.len(), 2, "one warning per failed call:\n{log}");
    assert!(
        warnings.iter().all(|w| starts
            .iter()
            .any(|c| w["request_id"] == c.request_id.as_str())),
        "the warnings carry the RequestIds ECS answered:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_by_the_qps_limit_is_retried_until_it_lifts() {
    // qps 0: every StartInstances of this key is answered 400 Throttling.User.
    let env = Env::start(
        r"
transitionDelay: 300ms
qps: {StartInstances: 0}
instances: [{id: i-e2ethrottle, region: cn-hangzhou, status: Stopped}]
",
    )
    .await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2ethrottle", ""))
        .await;
    env.wait_calls(CONVERGE, "a throttled start", |calls| {
        calls.iter().any(|c| {
            c.action == "StartInstances" && c.error_code.as_deref() == Some("Throttling.User")
        })
    })
    .await;
    let throttled = env.starts("i-e2ethrottle");
    assert!(
        throttled
            .iter()
            .all(|c| c.error_code.as_deref() == Some("Throttling.User")
                && c.http_status == Some(400)),
        "{throttled:#?}"
    );
    // Waiting for the rate limit is neither a retry attempt nor an error in status.
    let obj = env.get("web-1").await;
    assert!(obj["status"]["lastError"].is_null(), "{obj:#}");
    assert!(obj["status"]["retry"].is_null(), "{obj:#}");
    assert_ne!(
        condition(&obj, "Ready").map(|(_, r)| r),
        Some("Throttled".to_string())
    );

    env.emulator.set_qps(BTreeMap::new()).unwrap();
    // The action is held until the next wall-clock minute after a throttled answer.
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", Duration::from_secs(90))
        .await;
    assert_converged(&env.get("web-1").await, "Running");
    let starts = env.starts("i-e2ethrottle");
    let accepted: Vec<_> = starts.iter().filter(|c| c.error_code.is_none()).collect();
    assert_eq!(accepted.len(), 1, "one accepted start: {starts:#?}");
    let last_throttled = starts
        .iter()
        .filter(|c| c.error_code.is_some())
        .map(|c| c.time)
        .max()
        .unwrap();
    let minute = |t: jiff::Timestamp| t.as_second().div_euclid(60);
    assert!(
        minute(accepted[0].time) > minute(last_throttled),
        "no call in the minute of a throttled answer: {starts:#?}"
    );
    assert!(
        starts.iter().all(|c| c.instance_ids.len() == 1),
        "never split or multiplied per ID: {starts:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_reported_until_kubectl_creates_it() {
    let mut env = Env::start(EXAMPLES_STATE).await;
    // The resource of examples/secret-ref.yaml, without its Secret.
    let resource = example("secret-ref.yaml")
        .split("\n---\n")
        .find(|doc| doc.contains("kind: EcsInstancePower"))
        .unwrap()
        .to_string();
    env.kubectl.apply(&resource).await;
    let obj = env
        .wait_ready_reason("team-1", "False", "CredentialsNotFound")
        .await;
    assert_eq!(
        condition(&obj, "Stalled"),
        pair("True", "CredentialsNotFound"),
        "{obj:#}"
    );
    assert!(
        message(&obj, "Ready").contains("default/team-a-ecs"),
        "the message names the Secret: {obj:#}"
    );
    assert!(
        env.all_calls("i-demo0005").is_empty(),
        "no ECS call, and no fallback to the operator's own key: {:#?}",
        env.all_calls("i-demo0005")
    );
    let event = env.wait_event("team-1", "CredentialsNotFound").await;
    assert_eq!(event["type"], "Warning", "{event:#}");

    // A typed create: kubectl sends it as protobuf.
    let out = env
        .kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "team-a-ecs",
            "--from-literal=accessKeyId=sandbox-team-a-key",
            "--from-literal=accessKeySecret=sandbox-team-a-secret",
        ])
        .await;
    assert!(out.contains("secret/team-a-ecs created"), "{out}");
    // The terminal re-check is 10 min (30 s scaled): only the Secret watch explains a quicker Ready.
    env.kubectl
        .wait(
            "ecspower/team-1",
            "condition=Ready",
            Duration::from_secs(15),
        )
        .await;
    assert_converged(&env.get("team-1").await, "Running");
    let calls = env.all_calls("i-demo0005");
    assert!(!calls.is_empty());
    assert!(
        calls
            .iter()
            .all(|c| c.access_key_id.as_deref() == Some("sandbox-team-a-key")),
        "every call signed with the Secret's key: {calls:#?}"
    );
    assert_eq!(env.writes("i-demo0005").len(), 1);
    let log = env.operator().log();
    assert!(log.contains("i-demo0005"), "{log}");
    for secret in ["sandbox-team-a-secret", env::OPERATOR_SECRET] {
        assert!(
            !log.contains(secret),
            "a secret value reached the operator's log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_example_reports_the_verdict_and_changes_nothing() {
    let env = Env::start(EXAMPLES_STATE).await;
    env.kubectl.apply(&example("dry-run.yaml")).await;
    let obj = env
        .wait_ready_reason("dry-run-1", "True", "DryRunSucceeded")
        .await;
    assert_eq!(obj["status"]["lastAction"]["dryRun"], true, "{obj:#}");
    assert_eq!(str_at(&obj, "/status/lastAction/action"), "StartInstance");
    assert_eq!(str_at(&obj, "/status/instanceStatus"), "Stopped");
    assert_eq!(
        env.emulator.instance("i-demo0003").unwrap().status,
        Status::Stopped
    );
    let starts = env.calls("i-demo0003", "StartInstance");
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert!(starts[0].dry_run);
    assert_eq!(starts[0].error_code.as_deref(), Some("DryRunOperation"));
    env.wait_event("dry-run-1", "DryRunSucceeded").await;

    // Turning dryRun off makes the real call.
    env.kubectl
        .merge_patch("dry-run-1", r#"{"spec":{"dryRun":false}}"#)
        .await;
    let obj = env.wait_ready_reason("dry-run-1", "True", "Running").await;
    assert_converged(&obj, "Running");
    assert_eq!(int_at(&obj, "/status/observedGeneration"), 2);
    let starts = env.starts("i-demo0003");
    assert_eq!(starts.len(), 2, "{starts:#?}");
    assert!(!starts[1].dry_run && code_for(&starts[1], "i-demo0003").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_observes_only_until_it_is_lifted() {
    let env = Env::start(
        r"
transitionDelay: 300ms
instances: [{id: i-e2esusp, region: cn-hangzhou, status: Stopped}]
",
    )
    .await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2esusp", "  suspend: true\n"))
        .await;
    let obj = env.wait_ready_reason("web-1", "False", "Suspended").await;
    assert_eq!(str_at(&obj, "/status/instanceStatus"), "Stopped");
    assert_eq!(condition(&obj, "Reconciling"), None, "{obj:#}");
    assert_eq!(condition(&obj, "Stalled"), None, "{obj:#}");
    assert!(!env.calls("i-e2esusp", "DescribeInstances").is_empty());
    assert!(
        env.writes("i-e2esusp").is_empty(),
        "no write call while suspended"
    );

    env.kubectl
        .merge_patch("web-1", r#"{"spec":{"suspend":false}}"#)
        .await;
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    let obj = env.get("web-1").await;
    assert_converged(&obj, "Running");
    assert_eq!(int_at(&obj, "/status/observedGeneration"), 2);
    assert_eq!(env.writes("i-e2esusp").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_state_changed_while_starting_ends_stopped_without_wrong_calls() {
    let env = Env::start(
        r"
instances: [{id: i-e2eflip, region: cn-hangzhou, status: Stopped, transitionDelay: 4s}]
",
    )
    .await;
    env.kubectl.apply(&manifest("web-1", "i-e2eflip", "")).await;
    env.wait_ready_reason("web-1", "False", "Starting").await;
    assert_eq!(
        env.emulator.instance("i-e2eflip").unwrap().status,
        Status::Starting
    );

    // Change of mind while ECS is still starting the instance.
    env.kubectl
        .apply(&manifest("web-1", "i-e2eflip", "  desiredState: Stopped\n"))
        .await;
    env.kubectl
        .wait(
            "ecspower/web-1",
            r#"jsonpath={.status.conditions[?(@.type=="Reconciling")].reason}=WaitingForTransition"#,
            CONVERGE,
        )
        .await;
    assert_eq!(
        env.emulator.instance("i-e2eflip").unwrap().status,
        Status::Starting,
        "the operator waits for the transition instead of calling StopInstance on a Starting instance"
    );
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    let obj = env.get("web-1").await;
    assert_converged(&obj, "Stopped");
    assert_eq!(int_at(&obj, "/status/observedGeneration"), 2);

    let writes = env.writes("i-e2eflip");
    let summary: Vec<(&str, Option<u16>, Option<String>)> = writes
        .iter()
        .map(|c| (c.action.as_str(), c.http_status, code_for(c, "i-e2eflip")))
        .collect();
    assert_eq!(
        summary,
        [
            ("StartInstances", Some(200), None),
            ("StopInstances", Some(200), None)
        ],
        "one start, then one stop once it was Running; nothing refused: {writes:#?}"
    );
    assert_eq!(
        env.emulator.instance("i-e2eflip").unwrap().status,
        Status::Stopped
    );
    env.wait_event("web-1", "Stopped").await;
    let reasons = env.event_reasons("web-1").await;
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("Starting"),
        "{reasons:?}"
    );
    assert!(
        reasons.ends_with(&["Stopping".to_string(), "Stopped".to_string()]),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_transition_and_restarted_makes_no_second_start() {
    let mut env = Env::start(
        r"
instances: [{id: i-e2erestart, region: cn-hangzhou, status: Stopped, transitionDelay: 4s}]
",
    )
    .await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2erestart", ""))
        .await;
    // Kill the process the moment ECS has accepted the start: the status patch may or may not
    // have been written, and both must be safe.
    env.wait_calls(CONVERGE, "the start accepted", |calls| {
        calls.iter().any(|c| {
            c.action == "StartInstances"
                && c.http_status == Some(200)
                && code_for(c, "i-e2erestart").is_none()
        })
    })
    .await;
    env.operator().kill();
    assert_eq!(
        env.emulator.instance("i-e2erestart").unwrap().status,
        Status::Starting
    );

    env.start_operator().await;
    assert_eq!(
        env.emulator.instance("i-e2erestart").unwrap().status,
        Status::Starting,
        "the new operator must start while the instance is still Starting (raise transitionDelay)"
    );
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    assert_converged(&env.get("web-1").await, "Running");
    let starts = env.starts("i-e2erestart");
    assert_eq!(starts.len(), 1, "no second start: {starts:#?}");
    assert_eq!(env.writes("i-e2erestart").len(), 1);
    env.wait_event("web-1", "Running").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restarted_during_a_backoff_keeps_the_retry_schedule() {
    let mut env = Env::start(
        r"
instances: [{id: i-e2ebackoff, region: cn-hangzhou, status: Stopped}]
faults: [{instance: i-e2ebackoff, action: StartInstances, code: OperationDenied.NoStock, times: -1}]
",
    )
    .await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2ebackoff", ""))
        .await;
    let obj = env
        .poll("web-1", CONVERGE, "a NoStock retry scheduled", |o| {
            retry_attempts(o) >= 1
        })
        .await;
    env.operator().kill();
    let attempts = retry_attempts(&obj);
    let next: jiff::Timestamp = str_at(&obj, "/status/retry/nextAttemptTime")
        .parse()
        .unwrap_or_else(|e| panic!("status.retry.nextAttemptTime: {e}: {obj:#}"));
    let before = env.starts("i-e2ebackoff").len();

    // The new process reads the schedule from status.retry: no start before it is due.
    env.start_operator().await;
    env.wait_calls(CONVERGE, "the next NoStock attempt", |calls| {
        calls
            .iter()
            .filter(|c| c.action == "StartInstance" || c.action == "StartInstances")
            .count()
            > before
    })
    .await;
    let retried = &env.starts("i-e2ebackoff")[before];
    assert!(
        retried.time >= next,
        "the restarted operator retried at {} although status.retry.nextAttemptTime is {next}",
        retried.time
    );
    let obj = env
        .poll("web-1", CONVERGE, "the attempt counted", |o| {
            retry_attempts(o) > attempts
        })
        .await;
    assert_eq!(
        retry_attempts(&obj),
        attempts + 1,
        "the count continues: {obj:#}"
    );
    assert_eq!(
        condition(&obj, "Ready"),
        pair("False", "NoStock"),
        "{obj:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_deleted_and_recreated_under_the_same_name_is_reconciled_at_once() {
    // instanceId is immutable, so "manage another instance" means delete and create again (or
    // `kubectl replace --force`); GitOps tools do the same on a replace.
    let env = Env::start(
        r"
transitionDelay: 300ms
instances:
  - {id: i-e2eold, region: cn-hangzhou, status: Running}
  - {id: i-e2enew, region: cn-hangzhou, status: Stopped}
",
    )
    .await;
    env.kubectl.apply(&manifest("web-1", "i-e2eold", "")).await;
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    let out = env.kubectl.ok(&["delete", "ecspower", "web-1"]).await;
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(
        env.emulator.instance("i-e2eold").unwrap().status,
        Status::Running,
        "deleting the resource leaves the instance as it is"
    );

    env.kubectl.apply(&manifest("web-1", "i-e2enew", "")).await;
    // The resync interval is 5 min: only a reconcile of the new object explains a quick Ready.
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    let obj = env.get("web-1").await;
    assert_converged(&obj, "Running");
    assert_eq!(env.starts("i-e2enew").len(), 1);
    assert!(env.writes("i-e2eold").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_broken_with_410_gone_recover_and_later_changes_are_reconciled() {
    let mut env = Env::start(
        r"
transitionDelay: 300ms
instances: [{id: i-e2ewatch, region: cn-hangzhou, status: Running}]
",
    )
    .await;
    env.kubectl
        .apply(&manifest("web-1", "i-e2ewatch", ""))
        .await;
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    assert!(env.writes("i-e2ewatch").is_empty());

    // Every resourceVersion the operator holds expires and its watches end: resuming gets 410.
    env.sandbox.compact_and_break_watches();
    env.kubectl
        .merge_patch("web-1", r#"{"spec":{"desiredState":"Stopped"}}"#)
        .await;
    env.wait_ready_reason("web-1", "True", "Stopped").await;
    let obj = env.get("web-1").await;
    assert_converged(&obj, "Stopped");
    assert_eq!(int_at(&obj, "/status/observedGeneration"), 2);
    assert_eq!(env.stops("i-e2ewatch").len(), 1);
    // The operator did meet the 410 (kube-runtime reports it, then relists).
    let log = env.operator().log();
    assert!(
        log.contains("too old resource version"),
        "the watches were not expired with 410 Gone; log:\n{log}"
    );
    // A 410 is routine (etcd compaction, a lagging watch cache): kube-runtime relists. It is not a
    // reason to send the user looking for a missing CRD or RBAC rule.
    let misleading: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("too old resource version"))
        .collect();
    assert!(
        misleading.is_empty(),
        "a routine 410 Gone was logged as a warning:\n{}",
        misleading.join("\n")
    );

    // The recovered watches can be broken again, and recover again.
    env.sandbox.compact_and_break_watches();
    env.kubectl
        .merge_patch("web-1", r#"{"spec":{"desiredState":"Running"}}"#)
        .await;
    env.wait_ready_reason("web-1", "True", "Running").await;
    assert_eq!(env.starts("i-e2ewatch").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_resources_on_matching_rate_limits_converge_in_full_batches_without_throttling()
 {
    // ECS's per-account limits as the emulator applies them (a throttled action is held to the
    // next minute), and the operator told the same through the env twin of --ecs-rate-limit.
    // StartInstances is scarce (3 a minute), so the writes queue behind the limiter: late binding
    // seals each call when its token comes, and every call carries 100 IDs however slowly a loaded
    // machine reconciles the fleet (with plentiful tokens a batch closes on its time window).
    const N: usize = 300;
    let ids: Vec<String> = (0..N).map(|i| format!("i-e2efleet{i:03}")).collect();
    let mut state = String::from(
        "transitionDelay: 2s\nrateLimits:\n  holdMinute: true\n  actions:\n    \
         StartInstances: {perMinute: 3}\n    DescribeInstances: {perSecond: 10}\ninstances:\n",
    );
    for id in &ids {
        writeln!(
            state,
            "  - {{id: {id}, region: cn-hangzhou, status: Stopped}}"
        )
        .unwrap();
    }
    let mut env = Env::without_operator(&state).await;
    // The fleet exists when the operator starts (a restart, a new install): all of it arrives
    // in the first list.
    let manifests: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| manifest(&format!("fleet-{i:03}"), id, ""))
        .collect();
    env.kubectl.apply(&manifests.join("---\n")).await;
    env.start_operator_with(
        "text",
        &[(
            "ECS_RATE_LIMITS",
            "StartInstances=3/m,DescribeInstances=10/s",
        )],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = env.kubectl.get_json("ecspower").await;
        let ready = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| condition(o, "Ready") == pair("True", "Running"))
            .count();
        if ready == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ready} of {N} Ready after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let calls = env.emulator.call_log();
    let throttled: Vec<_> = calls.iter().filter(|c| c.is_throttled()).collect();
    assert!(throttled.is_empty(), "no throttled answer: {throttled:#?}");
    let starts: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "StartInstances" || c.action == "StartInstance")
        .collect();
    let sizes: Vec<usize> = starts.iter().map(|c| c.instance_ids.len()).collect();
    assert_eq!(sizes, [100, 100, 100], "full batches of StartInstances");
    assert!(starts.iter().all(|c| c.action == "StartInstances"));
    let mut accepted: Vec<&str> = starts.iter().flat_map(|c| c.accepted_instances()).collect();
    accepted.sort_unstable();
    assert_eq!(accepted.len(), N, "one accepted start per instance");
    accepted.dedup();
    assert_eq!(accepted.len(), N);
    let describes: Vec<usize> = calls
        .iter()
        .filter(|c| c.action == "DescribeInstances")
        .map(|c| c.instance_ids.len())
        .collect();
    assert!(describes.iter().all(|n| *n <= 100), "{describes:?}");
    // One read before and the transition polls after each start (every 100 ms at this time
    // scale), all batched: unbatched, every one of them would be a call of one ID.
    let mean = describes.iter().sum::<usize>() as f64 / describes.len() as f64;
    assert!(
        mean >= 50.0,
        "{} DescribeInstances for {N} resources, {mean:.0} IDs each on average: {describes:?}",
        describes.len()
    );
    for id in &ids {
        assert_eq!(env.emulator.instance(id).unwrap().status, Status::Running);
    }
    let log = env.operator().log();
    assert!(
        log.contains("fleet gateway") && log.contains("StartInstances=3/m"),
        "the configured limits are logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_rejected_by_the_schema_with_clear_messages() {
    let env = Env::without_operator("instances: []").await;

    let stderr = env
        .kubectl
        .fails(
            &["apply", "-f", "-"],
            Some(&manifest("bad-id", "not-an-instance", "")),
        )
        .await;
    assert!(
        stderr.contains(r#"The EcsInstancePower "bad-id" is invalid"#)
            && stderr.contains(
                r#"spec.instanceId: Invalid value: "not-an-instance": spec.instanceId in body should match '^i-[0-9a-z]+$'"#
            ),
        "{stderr}"
    );

    let stderr = env
        .kubectl
        .fails(
            &["apply", "-f", "-"],
            Some(&manifest(
                "bad-enum",
                "i-e2eenum",
                "  desiredState: Paused\n  stoppedMode: Hibernate\n",
            )),
        )
        .await;
    for expected in [
        r#"The EcsInstancePower "bad-enum" is invalid"#,
        r#"spec.desiredState: Unsupported value: "Paused": supported values: "Running", "Stopped""#,
        r#"spec.stoppedMode: Unsupported value: "Hibernate": supported values: "KeepCharging", "StopCharging""#,
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    let stderr = env
        .kubectl
        .fails(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: ecspower.dev/v1alpha1\nkind: EcsInstancePower\nmetadata: {name: bad-region}\n\
                 spec: {instanceId: i-e2eregion}\n",
            ),
        )
        .await;
    assert!(stderr.contains("spec.regionId: Required value"), "{stderr}");

    // A typo is not silently dropped (kubectl's default field validation is Strict).
    let stderr = env
        .kubectl
        .fails(
            &["apply", "-f", "-"],
            Some(&manifest("typo", "i-e2etypo", "  desiredstate: Stopped\n")),
        )
        .await;
    assert!(
        stderr.contains(r#"unknown field "spec.desiredstate""#),
        "{stderr}"
    );

    // instanceId is immutable (CEL self == oldSelf), for apply and patch alike.
    env.kubectl.apply(&manifest("web-1", "i-e2eimm1", "")).await;
    let stderr = env
        .kubectl
        .fails(
            &["apply", "-f", "-"],
            Some(&manifest("web-1", "i-e2eimm2", "")),
        )
        .await;
    assert!(
        stderr.contains(r#"The EcsInstancePower "web-1" is invalid"#)
            && stderr.contains("spec.instanceId")
            && stderr.contains("instanceId is immutable"),
        "{stderr}"
    );
    let stderr = env
        .kubectl
        .fails(
            &[
                "patch",
                "ecspower",
                "web-1",
                "--type=merge",
                "-p",
                r#"{"spec":{"instanceId":"i-e2eimm3"}}"#,
            ],
            None,
        )
        .await;
    assert!(stderr.contains("instanceId is immutable"), "{stderr}");

    let list = env.kubectl.get_json("ecspower").await;
    let stored: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (str_at(o, "/metadata/name"), str_at(o, "/spec/instanceId")))
        .collect();
    assert_eq!(
        stored,
        [("web-1", "i-e2eimm1")],
        "nothing invalid was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_the_printer_columns() {
    let env = Env::start(EXAMPLES_STATE).await;
    env.kubectl.apply(&example("start.yaml")).await;
    env.kubectl
        .apply(&manifest(
            "ghost-1",
            "i-e2eghost",
            "  desiredState: Stopped\n",
        ))
        .await;
    env.kubectl
        .wait("ecspower/web-1", "condition=Ready", CONVERGE)
        .await;
    env.wait_ready_reason("ghost-1", "False", "InstanceNotFound")
        .await;

    for resource in ["ecspower", "ecsinstancepowers.ecspower.dev"] {
        let table = env.kubectl.ok(&["get", resource]).await;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            [
                "NAME", "INSTANCE", "DESIRED", "ACTUAL", "READY", "REASON", "AGE"
            ],
            "{table}"
        );
        let row = |name: &str| {
            rows.iter()
                .find(|r| r.first() == Some(&name))
                .unwrap_or_else(|| panic!("no row {name}:\n{table}"))
                .clone()
        };
        let web = row("web-1");
        assert_eq!(
            web[..6],
            [
                "web-1",
                "i-demo0001",
                "Running",
                "Running",
                "True",
                "Running"
            ],
            "{table}"
        );
        let ghost = row("ghost-1");
        assert_eq!(
            ghost[..6],
            [
                "ghost-1",
                "i-e2eghost",
                "Stopped",
                "NotFound",
                "False",
                "InstanceNotFound"
            ],
            "{table}"
        );
        for r in [&web, &ghost] {
            let age = r[6];
            assert!(
                r.len() == 7 && age.ends_with('s') && age[..age.len() - 1].parse::<u32>().is_ok(),
                "AGE column: {table}"
            );
        }
    }
}

/// The access model through kubectl: a namespace without a grant gets `NotGranted` (printer column,
/// `kubectl describe`-visible Warning event, no ECS call naming its instance), a granted one
/// converges, a second resource for an owned instance is `InstanceClaimed`, the policy reports its
/// usage, and the CRD refuses a policy not named `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_policy_and_claims_as_kubectl_shows_them() {
    let env = Env::start(
        r"
transitionDelay: 300ms
instances:
  - {id: i-teama, region: cn-hangzhou, status: Stopped}
  - {id: i-teamb, region: cn-hangzhou, status: Stopped}
",
    )
    .await;
    let k = &env.kubectl;
    k.apply(
        "apiVersion: ecspower.dev/v1alpha1
kind: EcsPowerAccessPolicy
metadata:
  name: default
spec:
  rules:
  - {name: team-a-boxes, namespaces: {names: [team-a]}, regions: [cn-hangzhou], instanceIds: [i-teama]}
",
    )
    .await;
    k.ok(&["create", "namespace", "team-a"]).await;
    k.ok(&["create", "namespace", "team-b"]).await;
    for (ns, name, id) in [
        ("team-a", "box", "i-teama"),
        ("team-b", "box", "i-teamb"),
        ("team-b", "copy", "i-teama"),
    ] {
        k.apply(&format!(
            "apiVersion: ecspower.dev/v1alpha1\nkind: EcsInstancePower\nmetadata:\n  name: {name}\n  \
             namespace: {ns}\nspec:\n  instanceId: {id}\n  regionId: cn-hangzhou\n"
        ))
        .await;
    }
    let wait_reason = |ns: &'static str,
                       name: &'static str,
                       type_: &'static str,
                       reason: &'static str| async move {
        let condition = format!(
            r#"--for=jsonpath={{.status.conditions[?(@.type=="{type_}")].reason}}={reason}"#
        );
        let out = k
            .ok(&[
                "wait",
                "-n",
                ns,
                &condition,
                &format!("ecspower/{name}"),
                "--timeout=20s",
            ])
            .await;
        assert!(out.contains("condition met"), "{out}");
    };
    wait_reason("team-a", "box", "Ready", "Running").await;
    wait_reason("team-b", "box", "Stalled", "NotGranted").await;
    wait_reason("team-b", "copy", "Stalled", "InstanceClaimed").await;
    let table = k.ok(&["get", "ecspower", "-n", "team-b"]).await;
    assert!(
        table.contains("NotGranted") && table.contains("InstanceClaimed"),
        "{table}"
    );
    let copy: Value = serde_json::from_str(
        &k.ok(&["get", "ecspower", "copy", "-n", "team-b", "-o", "json"])
            .await,
    )
    .unwrap();
    assert!(message(&copy, "Ready").contains("team-a/box"), "{copy:#}");
    let boxed: Value = serde_json::from_str(
        &k.ok(&["get", "ecspower", "box", "-n", "team-b", "-o", "json"])
            .await,
    )
    .unwrap();
    for needle in ["team-b", "i-teamb", "cn-hangzhou", "Start"] {
        assert!(message(&boxed, "Ready").contains(needle), "{boxed:#}");
    }
    let events = k.ok(&["get", "events", "-n", "team-b", "-o", "json"]).await;
    assert!(
        events.contains("\"NotGranted\"") && events.contains("\"Warning\""),
        "{events}"
    );
    assert!(
        env.all_calls("i-teamb").is_empty(),
        "{:?}",
        env.all_calls("i-teamb")
    );
    assert_eq!(env.starts("i-teama").len(), 1);
    // The policy's status counts the resource its rule grants.
    let out = k
        .ok(&[
            "wait",
            "--for=jsonpath={.status.rules[0].resources}=1",
            "ecspoweraccesspolicy/default",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let refused = k
        .fails(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: ecspower.dev/v1alpha1\nkind: EcsPowerAccessPolicy\nmetadata:\n  name: team-a\nspec:\n  rules: []\n",
            ),
        )
        .await;
    assert!(refused.contains("named default"), "{refused}");
}
