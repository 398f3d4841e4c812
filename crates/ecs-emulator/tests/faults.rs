//! Every fault kind over HTTP: catalogue codes with their statuses, overrides, counts,
//! probability, latency, connection reset, truncated, non-JSON and garbage bodies, an HTML 502
//! page, resets and latency after the action ran, and per-key QPS throttling.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ecs_emulator::catalogue::CATALOGUE;
use ecs_emulator::{Fault, Status, TransportFault};
use fixture::{REGION, config, start};

/// Sends a signed StartInstance without interpreting the answer.
async fn raw_start(client: &client::Client, id: &str) -> reqwest::Result<reqwest::Response> {
    let params = client.v1_params("StartInstance", &[("InstanceId", id)]);
    let query = client::v1_query("POST", &client.secret, &params);
    // A fresh connection per call so a reset cannot affect the next request's pooled socket.
    client::http_builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("{}/?{query}", client.base))
        .send()
        .await
}

#[tokio::test]
async fn every_catalogue_code_is_injectable_with_its_status() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    for info in CATALOGUE {
        emu.clear_faults();
        emu.add_fault(Fault::error(info.code).for_action("StartInstance").times(1))
            .unwrap();
        let r = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
        assert_eq!((r.status, r.code()), (info.status, info.code), "{}", r.text);
        assert_eq!(r.body["Message"], info.message);
    }
    assert_eq!(
        emu.instance("i-a").unwrap().status,
        Status::Stopped,
        "no fault let the action run"
    );
}

#[tokio::test]
async fn design_table_codes_can_be_scripted_for_an_instance_forever() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-b", Status::Stopped),
    ]))
    .await;
    emu.add_fault(
        Fault::error("OperationDenied.NoStock")
            .for_instance("i-a")
            .for_action("StartInstance"),
    )
    .unwrap();
    for _ in 0..3 {
        let r = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
        assert_eq!((r.status, r.code()), (403, "OperationDenied.NoStock"));
    }
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-b")])
            .await
            .status,
        200
    );
    assert_eq!(emu.faults().len(), 1);
    emu.clear_faults();
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn counted_faults_run_out() {
    let (_emu, client) = {
        let mut cfg = config(&[("i-a", Status::Stopped)]);
        cfg.faults.push(
            Fault::error("InternalError")
                .for_action("StartInstance")
                .times(2),
        );
        start(cfg).await
    };
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        500
    );
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        500
    );
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn status_and_message_overrides_and_unknown_codes() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(
        Fault::error("InstanceNotReady")
            .http_status(500)
            .message("still booting")
            .times(1),
    )
    .unwrap();
    let r = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(
        (r.status, r.code(), r.body["Message"].as_str()),
        (500, "InstanceNotReady", Some("still booting"))
    );
    emu.add_fault(
        Fault::error("ServiceUnavailable.Custom")
            .http_status(503)
            .times(1),
    )
    .unwrap();
    let r = client
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailable.Custom"));
    assert!(
        emu.add_fault(Fault::error("Made.Up")).is_err(),
        "unknown code without a status"
    );
}

#[tokio::test]
async fn probability_fires_some_of_the_time() {
    let (emu, client) = start(config(&[])).await;
    emu.add_fault(
        Fault::error("ServiceUnavailable")
            .for_action("DescribeInstances")
            .probability(0.5),
    )
    .unwrap();
    let mut failed = 0;
    for _ in 0..200 {
        if client
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status
            == 503
        {
            failed += 1;
        }
    }
    // Binomial(200, 0.5): outside 50..=150 has probability below 1e-12.
    assert!((50..=150).contains(&failed), "{failed} of 200 failed");
    emu.clear_faults();
    emu.add_fault(Fault::error("ServiceUnavailable").probability(1.0).times(3))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            client
                .call("DescribeInstances", &[("RegionId", REGION)])
                .await
                .status,
            503
        );
    }
    assert_eq!(
        client
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(
        Fault::delay(Duration::from_millis(300))
            .for_action("DescribeInstances")
            .times(1),
    )
    .unwrap();
    let t0 = Instant::now();
    let r = client
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!(r.status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    emu.add_fault(
        Fault::error("InternalError")
            .with_latency(Duration::from_millis(200))
            .times(1),
    )
    .unwrap();
    let t0 = Instant::now();
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        500
    );
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn reset_breaks_the_connection() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(
        Fault::transport(TransportFault::Reset)
            .for_instance("i-a")
            .times(1),
    )
    .unwrap();
    let err = raw_start(&client, "i-a")
        .await
        .expect_err("a reset connection gives no response");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    assert_eq!(
        emu.instance("i-a").unwrap().status,
        Status::Stopped,
        "the action did not run"
    );
    let log = emu.call_log();
    assert_eq!(
        (log[0].fault.as_deref(), log[0].http_status),
        (Some("reset"), None)
    );
    let again = raw_start(&client, "i-a").await.unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn truncated_body_fails_while_reading() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(Fault::transport(TransportFault::Truncated).times(1))
        .unwrap();
    match raw_start(&client, "i-a").await {
        Err(e) => panic!("headers should arrive: {e:?}"),
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            let declared = resp.content_length().unwrap();
            assert!(declared > 0);
            let body = resp.bytes().await;
            assert!(body.is_err(), "the body must be cut short, got {body:?}");
        }
    }
    assert_eq!(emu.call_log()[0].fault.as_deref(), Some("truncated"));
}

#[tokio::test]
async fn non_json_and_html_502() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(Fault::transport(TransportFault::NonJson).times(1))
        .unwrap();
    let resp = raw_start(&client, "i-a").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("json")
    );
    let text = resp.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );

    emu.add_fault(Fault::transport(TransportFault::Html502).times(1))
        .unwrap();
    let resp = raw_start(&client, "i-a").await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(resp.text().await.unwrap().contains("502 Bad Gateway"));
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
    let log = emu.call_log();
    assert_eq!(log[1].http_status, Some(502));
}

#[tokio::test]
async fn after_action_faults_lose_the_answer_but_keep_the_change() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(
        Fault::transport(TransportFault::Reset)
            .for_action("StartInstance")
            .after_action()
            .times(1),
    )
    .unwrap();
    assert!(raw_start(&client, "i-a").await.is_err());
    assert_eq!(
        emu.instance("i-a").unwrap().status,
        Status::Running,
        "the start happened"
    );
    let r = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(
        r.code(),
        "IncorrectInstanceStatus",
        "a retry sees the new state"
    );
}

#[tokio::test]
async fn garbage_bodies_are_not_even_text() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    emu.add_fault(Fault::transport(TransportFault::Garbage).times(1))
        .unwrap();
    let resp = raw_start(&client, "i-a").await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert!(!bytes.is_empty());
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
    assert_eq!(emu.call_log()[0].fault.as_deref(), Some("garbage"));
    assert!(!emu.call_log()[0].acted);
}

/// A SuccessFirst batch of two, sent on a fresh connection.
async fn raw_batch(client: &client::Client) -> reqwest::Result<reqwest::Response> {
    let params = client.v1_params(
        "StartInstances",
        &[
            ("RegionId", REGION),
            ("BatchOptimization", "SuccessFirst"),
            ("InstanceId.1", "i-a"),
            ("InstanceId.2", "i-b"),
        ],
    );
    let query = client::v1_query("POST", &client.secret, &params);
    client::http_builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("{}/?{query}", client.base))
        .send()
        .await
}

#[tokio::test]
async fn resets_before_and_after_the_write_of_a_batch_naming_an_instance() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-b", Status::Stopped),
    ]))
    .await;
    emu.add_fault(
        Fault::transport(TransportFault::Reset)
            .for_instance("i-b")
            .for_action("StartInstances")
            .times(1),
    )
    .unwrap();
    assert!(raw_batch(&client).await.is_err(), "reset before the write");
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
    assert_eq!(emu.instance("i-b").unwrap().status, Status::Stopped);

    emu.add_fault(
        Fault::transport(TransportFault::Reset)
            .for_instance("i-b")
            .for_action("StartInstances")
            .after_action()
            .times(1),
    )
    .unwrap();
    assert!(raw_batch(&client).await.is_err(), "reset after the write");
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Running);
    assert_eq!(emu.instance("i-b").unwrap().status, Status::Running);

    let log = emu.call_log();
    assert_eq!(
        log.iter()
            .map(|c| (c.http_status, c.fault.as_deref(), c.acted))
            .collect::<Vec<_>>(),
        [(None, Some("reset"), false), (None, Some("reset"), true)]
    );
    assert!(log[0].accepted_instances().is_empty());
    assert_eq!(log[1].accepted_instances(), ["i-a", "i-b"]);
}

#[tokio::test]
async fn latency_after_the_write_outlives_a_client_timeout() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-b", Status::Stopped),
    ]))
    .await;
    emu.add_fault(
        Fault::delay(Duration::from_secs(3))
            .for_instance("i-a")
            .after_action()
            .times(1),
    )
    .unwrap();
    let params = client.v1_params("StartInstance", &[("InstanceId", "i-a")]);
    let query = client::v1_query("POST", &client.secret, &params);
    let started = Instant::now();
    let err = client::http_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/?{query}", client.base))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        emu.instance("i-a").unwrap().status,
        Status::Running,
        "applied before the client gave up"
    );
    let other = client.call("StartInstance", &[("InstanceId", "i-b")]).await;
    assert_eq!(other.status, 200, "the fault names i-a only");
    assert!(emu.faults().is_empty(), "spent");
    assert!(
        fixture::wait_until(Duration::from_secs(10), || async {
            emu.call_log()
                .iter()
                .any(|c| c.accepted_instances() == ["i-a"] && c.http_status == Some(200))
        })
        .await,
        "the request runs to the end and is logged though the client left: {:?}",
        emu.call_log()
    );
}

#[tokio::test]
async fn qps_limits_answer_throttling_user_per_key() {
    let mut cfg = config(&[("i-a", Status::Running)]);
    cfg.qps = BTreeMap::from([("DescribeInstances".to_owned(), 3)]);
    cfg.access_keys
        .push(ecs_emulator::AccessKey::new("AK2", "S2"));
    let (emu, client) = start(cfg).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(
            client
                .call("DescribeInstances", &[("RegionId", REGION)])
                .await
                .code()
                .to_owned(),
        );
    }
    let throttled = codes.iter().filter(|c| *c == "Throttling.User").count();
    assert!(throttled >= 2, "{codes:?}");
    assert_eq!(codes[0], "");
    let other = client::Client::new(&emu.url(), "AK2", "S2");
    assert_eq!(
        other
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200,
        "limits are per key"
    );
    assert_eq!(
        client
            .call("DescribeInstanceAttribute", &[("InstanceId", "i-a")])
            .await
            .status,
        200,
        "and per action"
    );
    let r = {
        let mut last = None;
        for _ in 0..5 {
            last = Some(
                client
                    .call("DescribeInstances", &[("RegionId", REGION)])
                    .await,
            );
        }
        last.unwrap()
    };
    assert_eq!((r.status, r.code()), (400, "Throttling.User"));
    emu.set_qps(BTreeMap::new()).unwrap();
    assert_eq!(
        client
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200
    );
}
