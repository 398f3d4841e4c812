//! The operator over HTTP against kube-sandbox and ecs-emulator, in-process: one test per
//! user-visible behaviour of the controller, asserting status, conditions, events and the
//! emulator's call log.
//!
//! Delays run at `--time-scale 0.05` (a 30 s `NoStock` back-off takes 1.5 s) so the whole file runs
//! in well under a minute; every wait is bounded polling.
// Metric samples are whole counts, compared exactly on purpose.
#![allow(clippy::unwrap_used, clippy::panic, clippy::float_cmp)]

mod support;

use std::time::Duration;

use ecs_emulator::{Fault, Status, TransportFault};
use ecs_power_operator::api::{CONDITION_RECONCILING, CONDITION_STALLED};
use serde_json::json;
use support::{AK_SECRET, Harness, Options, TEAM_AK, TEAM_SECRET, condition, running, stopped};

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_a_stopped_instance_with_one_call_and_no_ecs_call_on_its_own_status_writes() {
    let h = Harness::start(vec![stopped("i-start1")]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-start1", "regionId": "cn-hangzhou", "desiredState": "Running"}),
    )
    .await;
    let obj = h.wait_ready("web-1", "True", "Running").await;
    let status = obj.status.unwrap();
    assert_eq!(status.instance_status.as_deref(), Some("Running"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, CONDITION_RECONCILING), None);
    assert_eq!(condition(&status, CONDITION_STALLED), None);
    let action = status.last_action.unwrap();
    assert_eq!(action.action, "StartInstance");
    assert!(action.request_id.is_some() && !action.dry_run);
    assert!(status.last_error.is_none() && status.retry.is_none());
    assert_eq!(
        h.starts("i-start1").len(),
        1,
        "exactly one start call for this instance"
    );

    h.wait_event("web-1", "Starting").await;
    h.wait_event("web-1", "Running").await;

    // Each status write triggers a reconcile; none of them may call ECS. Wait until the controller
    // has processed those triggers (they count as `skipped`), then count the calls.
    let skipped = support::eventually(Duration::from_secs(10), || async {
        let n = h
            .metric("ecs_power_reconciles_total{result=\"skipped\"}")
            .await;
        (n >= 2.0).then_some(n)
    })
    .await;
    assert!(
        skipped.is_some(),
        "the status writes did not trigger reconciles"
    );
    let describes = h.calls("i-start1", "DescribeInstances").len();
    // A label change (no new generation) is not a reason to call ECS either.
    let patch = json!({"metadata": {"labels": {"team": "a"}}});
    h.api()
        .patch(
            "web-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let more = support::eventually(Duration::from_secs(10), || async {
        let n = h
            .metric("ecs_power_reconciles_total{result=\"skipped\"}")
            .await;
        (n > skipped.unwrap()).then_some(n)
    })
    .await;
    assert!(
        more.is_some(),
        "the label change did not trigger a reconcile"
    );
    assert_eq!(
        h.calls("i-start1", "DescribeInstances").len(),
        describes,
        "no DescribeInstances on no-op triggers"
    );
    assert_eq!(h.writes("i-start1").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_a_running_instance_with_the_requested_mode() {
    let h = Harness::start(vec![running("i-stop1")]).await;
    h.create(
        "db-1",
        json!({"instanceId": "i-stop1", "regionId": "cn-hangzhou", "desiredState": "Stopped",
               "stoppedMode": "StopCharging", "forceStop": true}),
    )
    .await;
    let obj = h.wait_ready("db-1", "True", "Stopped").await;
    assert_eq!(
        obj.status.unwrap().last_action.unwrap().action,
        "StopInstance"
    );
    assert_eq!(h.stops("i-stop1").len(), 1);
    let instance = h.emulator.instance("i-stop1").unwrap();
    assert_eq!(instance.status, Status::Stopped);
    assert_eq!(
        instance.stopped_mode,
        Some(ecs_emulator::StoppedMode::StopCharging)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stock_backs_off_with_growing_attempts_without_stalling() {
    let h = Harness::start(vec![stopped("i-nostock")]).await;
    h.emulator
        .add_fault(
            Fault::error("OperationDenied.NoStock")
                .for_instance("i-nostock")
                .for_action("StartInstances")
                .times(-1),
        )
        .unwrap();
    h.create(
        "web-1",
        json!({"instanceId": "i-nostock", "regionId": "cn-hangzhou"}),
    )
    .await;
    let obj = h
        .wait_status(
            "web-1",
            Duration::from_secs(30),
            "three NoStock attempts",
            |s| s.retry.as_ref().is_some_and(|r| r.attempts >= 3),
        )
        .await;
    let status = obj.status.unwrap();
    assert_eq!(condition(&status, "Ready"), Some(pair("False", "NoStock")));
    assert_eq!(
        condition(&status, CONDITION_RECONCILING),
        Some(pair("True", "Retrying"))
    );
    assert_eq!(
        condition(&status, CONDITION_STALLED),
        None,
        "NoStock is not a stall"
    );
    let error = status.last_error.unwrap();
    // The code came in the batch answer's entry for this instance; the answer itself is HTTP 200.
    assert_eq!(
        (error.code.as_str(), error.http_status),
        ("OperationDenied.NoStock", Some(200))
    );
    assert!(error.request_id.is_some());
    let message = &status.conditions[0].message;
    assert!(
        !message.contains(error.request_id.as_deref().unwrap()),
        "no RequestId in condition messages"
    );
    // The attempts are spaced by the capacity back-off: growing gaps.
    let starts = h.starts("i-nostock");
    assert!(starts.len() >= 3);
    let gaps: Vec<i128> = starts
        .windows(2)
        .map(|w| w[1].time.duration_since(w[0].time).as_millis())
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= 1_000),
        "capacity back-off is at least 30 s (scaled: 1.5 s): {gaps:?}"
    );
    h.wait_event("web-1", "NoStock").await;

    // Capacity comes back: the next attempt succeeds.
    h.emulator.clear_faults();
    h.wait_ready("web-1", "True", "Running").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_lock_stalls_without_any_write_call() {
    let h = Harness::start(vec![stopped("i-locked").with_lock("security")]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-locked", "regionId": "cn-hangzhou"}),
    )
    .await;
    let obj = h
        .wait_ready("web-1", "False", "InstanceLockedForSecurity")
        .await;
    let status = obj.status.unwrap();
    assert_eq!(
        condition(&status, CONDITION_STALLED),
        Some(pair("True", "InstanceLockedForSecurity"))
    );
    assert_eq!(condition(&status, CONDITION_RECONCILING), None);
    let event = h.wait_event("web-1", "InstanceLockedForSecurity").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        h.writes("i-locked").is_empty(),
        "no write call while locked"
    );

    // The lock is lifted; a spec change re-checks at once and starts it.
    h.emulator.set_locks("i-locked", vec![]).unwrap();
    h.patch_spec("web-1", json!({"forceStop": true})).await;
    h.wait_ready("web-1", "True", "Running").await;
    assert_eq!(h.starts("i-locked").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_internal_errors_then_success() {
    let h = Harness::start(vec![stopped("i-flaky")]).await;
    // The whole StartInstances call fails with HTTP 500 (the only instance in it is i-flaky): the
    // start may or may not have happened, so each re-send waits for a read at least the settle
    // time later that shows the instance still stopped.
    h.emulator
        .add_fault(
            Fault::error("InternalError")
                .for_action("StartInstances")
                .times(2),
        )
        .unwrap();
    h.create(
        "web-1",
        json!({"instanceId": "i-flaky", "regionId": "cn-hangzhou"}),
    )
    .await;
    let obj = h
        .wait_status("web-1", Duration::from_secs(60), "Ready=True", |s| {
            condition(s, "Ready") == Some(pair("True", "Running"))
        })
        .await;
    let status = obj.status.unwrap();
    assert!(
        status.retry.is_none() && status.last_error.is_none(),
        "success clears retry and lastError"
    );
    let starts = h.starts("i-flaky");
    assert_eq!(starts.len(), 3, "two failures then one success");
    assert_eq!(
        starts.iter().filter(|c| c.http_status == Some(500)).count(),
        2
    );
    let gaps: Vec<i128> = starts
        .windows(2)
        .map(|w| w[1].time.duration_since(w[0].time).as_millis())
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= 10_000),
        "no re-send before a read at least the settle time (10 s) later: {gaps:?}"
    );
    h.wait_event("web-1", "InternalError").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried() {
    let h = Harness::start(vec![stopped("i-throttled")]).await;
    h.emulator
        .add_fault(
            Fault::error("Throttling.User")
                .for_action("StartInstances")
                .times(1),
        )
        .unwrap();
    h.create(
        "web-1",
        json!({"instanceId": "i-throttled", "regionId": "cn-hangzhou"}),
    )
    .await;
    // A throttled batch is re-queued whole and sent again once the limiter allows (from the next
    // minute): waiting for the rate limit is neither a retry attempt nor an error in status.
    let obj = h
        .wait_status("web-1", Duration::from_secs(90), "Ready=True", |s| {
            condition(s, "Ready") == Some(pair("True", "Running"))
        })
        .await;
    let status = obj.status.unwrap();
    assert!(status.last_error.is_none() && status.retry.is_none());
    let starts = h.starts("i-throttled");
    assert_eq!(starts.len(), 2, "{starts:#?}");
    assert_eq!(starts[0].error_code.as_deref(), Some("Throttling.User"));
    assert_eq!(starts[1].http_status, Some(200));
    assert!(
        h.events("web-1")
            .await
            .iter()
            .all(|e| e.reason.as_deref() != Some("Throttled")),
        "no Throttled condition or event"
    );
    assert_eq!(
        h.metric(
            "ecs_power_fleet_throttled_total{action=\"StartInstances\",code=\"Throttling.User\"}"
        )
        .await,
        1.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_reported_until_it_is_created() {
    let h = Harness::start(vec![stopped("i-team")]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-team", "regionId": "cn-hangzhou", "credentialsSecretRef": {"name": "team-ecs"}}),
    )
    .await;
    let obj = h.wait_ready("web-1", "False", "CredentialsNotFound").await;
    let status = obj.status.unwrap();
    assert_eq!(
        condition(&status, CONDITION_STALLED),
        Some(pair("True", "CredentialsNotFound"))
    );
    assert!(
        status.conditions[0].message.contains("default/team-ecs"),
        "the message names the Secret"
    );
    assert!(
        h.all_calls("i-team").is_empty(),
        "no fallback to the operator's own credentials"
    );

    // Creating the Secret re-queues the resource at once (the re-check would take 30 s here).
    h.create_secret(
        "team-ecs",
        &[("accessKeyId", TEAM_AK), ("accessKeySecret", TEAM_SECRET)],
    )
    .await;
    let obj = h
        .wait_status(
            "web-1",
            Duration::from_secs(10),
            "Ready after the Secret appeared",
            |s| condition(s, "Ready") == Some(pair("True", "Running")),
        )
        .await;
    assert!(obj.status.unwrap().last_error.is_none());
    let calls = h.all_calls("i-team");
    assert!(
        calls
            .iter()
            .all(|c| c.access_key_id.as_deref() == Some(TEAM_AK)),
        "signed with the Secret's key"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_secret_is_credentials_invalid() {
    let h = Harness::start(vec![stopped("i-team2")]).await;
    h.create_secret("half", &[("accessKeyId", TEAM_AK)]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-team2", "regionId": "cn-hangzhou", "credentialsSecretRef": {"name": "half"}}),
    )
    .await;
    let obj = h.wait_ready("web-1", "False", "CredentialsInvalid").await;
    assert!(
        obj.status.unwrap().conditions[0]
            .message
            .contains("accessKeySecret")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_stall() {
    let h = Harness::start(vec![stopped("i-badkey")]).await;
    h.create_secret(
        "wrong",
        &[
            ("accessKeyId", TEAM_AK),
            ("accessKeySecret", "not-the-secret"),
        ],
    )
    .await;
    h.create(
        "web-1",
        json!({"instanceId": "i-badkey", "regionId": "cn-hangzhou", "credentialsSecretRef": {"name": "wrong"}}),
    )
    .await;
    let obj = h.wait_ready("web-1", "False", "CredentialsRejected").await;
    let status = obj.status.unwrap();
    assert_eq!(
        condition(&status, CONDITION_STALLED),
        Some(pair("True", "CredentialsRejected"))
    );
    assert_eq!(status.last_error.unwrap().code, "SignatureDoesNotMatch");
    assert!(h.writes("i-badkey").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_the_verdict_and_changes_nothing() {
    let h = Harness::start(vec![stopped("i-dry")]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-dry", "regionId": "cn-hangzhou", "dryRun": true}),
    )
    .await;
    let obj = h.wait_ready("web-1", "True", "DryRunSucceeded").await;
    let status = obj.status.unwrap();
    assert!(status.last_action.unwrap().dry_run);
    assert_eq!(status.instance_status.as_deref(), Some("Stopped"));
    assert_eq!(
        h.emulator.instance("i-dry").unwrap().status,
        Status::Stopped
    );
    let starts = h.calls("i-dry", "StartInstance");
    assert_eq!(starts.len(), 1);
    assert!(starts[0].dry_run);

    // Turning dryRun off makes the real call (batched: StartInstances).
    h.patch_spec("web-1", json!({"dryRun": false})).await;
    h.wait_ready("web-1", "True", "Running").await;
    assert_eq!(h.starts("i-dry").len(), 2);
    assert_eq!(h.calls("i-dry", "StartInstances").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_observes_only() {
    let h = Harness::start(vec![stopped("i-susp")]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-susp", "regionId": "cn-hangzhou", "suspend": true}),
    )
    .await;
    let obj = h.wait_ready("web-1", "False", "Suspended").await;
    assert_eq!(
        obj.status.unwrap().instance_status.as_deref(),
        Some("Stopped")
    );
    assert!(h.writes("i-susp").is_empty());
    h.patch_spec("web-1", json!({"suspend": false})).await;
    h.wait_ready("web-1", "True", "Running").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_instance_is_instance_not_found() {
    let h = Harness::start(vec![]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-nosuch", "regionId": "cn-hangzhou"}),
    )
    .await;
    let obj = h.wait_ready("web-1", "False", "InstanceNotFound").await;
    let status = obj.status.unwrap();
    assert_eq!(status.instance_status.as_deref(), Some("NotFound"));
    assert_eq!(
        condition(&status, CONDITION_STALLED),
        Some(pair("True", "InstanceNotFound"))
    );
    assert!(h.writes("i-nosuch").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_bodies_are_malformed_responses() {
    let h = Harness::start(vec![stopped("i-garbage")]).await;
    h.emulator
        .add_fault(
            Fault::transport(TransportFault::NonJson)
                .for_instance("i-garbage")
                .for_action("DescribeInstances")
                .times(-1),
        )
        .unwrap();
    h.create(
        "web-1",
        json!({"instanceId": "i-garbage", "regionId": "cn-hangzhou"}),
    )
    .await;
    let obj = h.wait_ready("web-1", "False", "MalformedResponse").await;
    assert_eq!(
        condition(obj.status.as_ref().unwrap(), CONDITION_RECONCILING),
        Some(pair("True", "Retrying"))
    );

    h.emulator.clear_faults();
    h.emulator
        .add_fault(
            Fault::transport(TransportFault::Truncated)
                .for_instance("i-garbage")
                .for_action("DescribeInstances")
                .times(-1),
        )
        .unwrap();
    h.wait_status(
        "web-1",
        Duration::from_secs(20),
        "a truncated-body error recorded",
        |s| s.retry.as_ref().is_some_and(|r| r.attempts >= 3),
    )
    .await;
    h.emulator.clear_faults();
    h.wait_ready("web-1", "True", "Running").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_unreachable_with_backoff() {
    // A port that was just free: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-dead")],
        ecs_endpoint: Some(format!("http://{dead}")),
        ..Options::default()
    })
    .await;
    h.create(
        "web-1",
        json!({"instanceId": "i-dead", "regionId": "cn-hangzhou"}),
    )
    .await;
    let obj = h
        .wait_status(
            "web-1",
            Duration::from_secs(20),
            "three unreachable attempts",
            |s| s.retry.as_ref().is_some_and(|r| r.attempts >= 3),
        )
        .await;
    let status = obj.status.unwrap();
    assert_eq!(
        condition(&status, "Ready"),
        Some(pair("False", "EcsUnreachable"))
    );
    assert_eq!(
        condition(&status, CONDITION_RECONCILING),
        Some(pair("True", "Retrying"))
    );
    assert_eq!(
        status.last_error.unwrap().action.as_deref(),
        Some("DescribeInstances")
    );
    let (code, body) = h.http_get("/healthz").await;
    assert_eq!(
        (code, body.trim()),
        (200, "ok"),
        "still healthy: an ECS outage is not a reason to restart"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_costs_one_describe_per_resync_and_no_writes() {
    let h = Harness::start_with(Options {
        instances: vec![running("i-steady")],
        resync: "1s",
        ..Options::default()
    })
    .await;
    h.create(
        "web-1",
        json!({"instanceId": "i-steady", "regionId": "cn-hangzhou"}),
    )
    .await;
    h.wait_ready("web-1", "True", "Running").await;
    let start = std::time::Instant::now();
    let before = h.calls("i-steady", "DescribeInstances").len();
    let done = support::eventually(Duration::from_secs(20), || async {
        (h.calls("i-steady", "DescribeInstances").len() >= before + 5).then_some(())
    })
    .await;
    assert!(done.is_some(), "the resync did not re-observe");
    let elapsed = start.elapsed();
    let observed = h.calls("i-steady", "DescribeInstances").len() - before;
    // Resync 1 s ± 10 %: at most one DescribeInstances per 0.9 s.
    assert!(
        f64::from(u32::try_from(observed).unwrap()) <= elapsed.as_secs_f64() / 0.9 + 1.0,
        "{observed} DescribeInstances in {elapsed:?} is more than one per resync"
    );
    assert!(
        h.writes("i-steady").is_empty(),
        "no write call in steady state"
    );
    let obj = h.api().get("web-1").await.unwrap();
    assert_eq!(
        obj.status.unwrap().instance_status.as_deref(),
        Some("Running")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_at_the_next_resync() {
    let h = Harness::start_with(Options {
        instances: vec![running("i-drift")],
        resync: "1s",
        ..Options::default()
    })
    .await;
    h.create(
        "web-1",
        json!({"instanceId": "i-drift", "regionId": "cn-hangzhou"}),
    )
    .await;
    h.wait_ready("web-1", "True", "Running").await;
    // Someone stops the instance behind the operator's back.
    h.emulator.set_status("i-drift", Status::Stopped);
    let started = support::eventually(Duration::from_secs(20), || async {
        (!h.starts("i-drift").is_empty()).then_some(())
    })
    .await;
    assert!(started.is_some(), "drift was not corrected");
    h.wait_ready("web-1", "True", "Running").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let h = Harness::start(vec![stopped("i-metrics")]).await;
    h.create(
        "web-1",
        json!({"instanceId": "i-metrics", "regionId": "cn-hangzhou"}),
    )
    .await;
    h.wait_ready("web-1", "True", "Running").await;
    let ready = support::eventually(Duration::from_secs(10), || async {
        (h.http_get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "/readyz never became ready: {:?}",
        h.http_get("/readyz").await
    );
    let (code, body) = h.http_get("/metrics").await;
    assert_eq!(code, 200);
    for sample in [
        "ecs_power_ecs_calls_total{action=\"StartInstances\",code=\"Success\"} 1",
        "ecs_power_ecs_call_duration_seconds_count{action=\"DescribeInstances\"}",
        "ecs_power_reconciles_total{result=\"acted\"} 1",
        "ecs_power_resources{desired=\"Running\",observed=\"Running\"} 1",
    ] {
        assert!(body.contains(sample), "missing {sample} in:\n{body}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_at_trace_level() {
    // Two instances: one resource per instance (a second resource naming the same instance
    // would be InstanceClaimed and never reach ECS with its wrong secret).
    let h = Harness::start(vec![stopped("i-logs"), stopped("i-logs2")]).await;
    h.create_secret(
        "team-ecs",
        &[("accessKeyId", TEAM_AK), ("accessKeySecret", TEAM_SECRET)],
    )
    .await;
    h.create_secret(
        "wrong",
        &[
            ("accessKeyId", TEAM_AK),
            ("accessKeySecret", "wrong-secret-77aa"),
        ],
    )
    .await;
    h.create("a", json!({"instanceId": "i-logs", "regionId": "cn-hangzhou", "credentialsSecretRef": {"name": "team-ecs"}}))
        .await;
    h.create("b", json!({"instanceId": "i-logs2", "regionId": "cn-hangzhou", "credentialsSecretRef": {"name": "wrong"}}))
        .await;
    h.wait_ready("a", "True", "Running").await;
    h.wait_ready("b", "False", "CredentialsRejected").await;
    h.stop().await;
    let logs = support::logs::text();
    assert!(
        logs.contains("i-logs"),
        "the capture saw the operator's logs"
    );
    for secret in [TEAM_SECRET, AK_SECRET, "wrong-secret-77aa"] {
        assert!(!logs.contains(secret), "a secret value reached the logs");
    }
}
