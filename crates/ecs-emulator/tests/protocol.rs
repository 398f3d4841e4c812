//! Protocol fidelity over HTTP: GET and POST, query and form parameters, V1 and V3 signatures,
//! STS tokens, stale timestamps, reused nonces, error bodies, XML, and a call log without
//! secrets.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use ecs_emulator::{AccessKey, SignatureScheme, Status};
use fixture::{AK, REGION, SECRET, config, start};

fn stamp(offset_minutes: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(offset_minutes))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[tokio::test]
async fn get_post_and_form_body_are_all_accepted() {
    let (emu, client) = start(config(&[("i-a", Status::Running)])).await;
    let params = client.v1_params("DescribeInstanceAttribute", &[("InstanceId", "i-a")]);
    let get = client.send_v1("GET", &params).await;
    assert_eq!(get.status, 200, "{}", get.text);
    assert_eq!(get.body["Status"], "Running");
    assert!(
        get.body["RequestId"]
            .as_str()
            .is_some_and(|r| r.len() == 36)
    );
    let post = client
        .call("DescribeInstanceAttribute", &[("InstanceId", "i-a")])
        .await;
    assert_eq!(post.status, 200, "{}", post.text);
    let form = client
        .call_form("DescribeInstanceAttribute", &[("InstanceId", "i-a")])
        .await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert_eq!(form.body["InstanceId"], "i-a");
    assert_eq!(emu.call_log().len(), 3);
}

#[tokio::test]
async fn v3_signatures_are_verified() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    let ok = client
        .call_v3(
            "DescribeInstances",
            &[("RegionId", REGION), ("InstanceIds", "[\"i-a\"]")],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["Instances"]["Instance"][0]["Status"], "Stopped");
    let start = client
        .call_v3("StartInstance", &[("InstanceId", "i-a")])
        .await;
    assert_eq!(start.status, 200, "{}", start.text);
    let bad = client::Client::new(&emu.url(), AK, "wrong")
        .call_v3("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!((bad.status, bad.code()), (400, "SignatureDoesNotMatch"));
    let log = emu.call_log();
    assert!(log.iter().all(|c| c.signature == Some(SignatureScheme::V3)));
}

#[tokio::test]
async fn wrong_secret_and_unknown_key_are_rejected() {
    let (emu, _) = start(config(&[])).await;
    let wrong = client::Client::new(&emu.url(), AK, "not-the-secret");
    let r = wrong
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!((r.status, r.code()), (400, "SignatureDoesNotMatch"));
    assert!(
        r.body["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:POST&%2F&")
    );
    let unknown = client::Client::new(&emu.url(), "AKNOPE", SECRET);
    let r = unknown
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!(r.code(), "InvalidAccessKeyId.NotFound");
    let log = emu.call_log();
    assert_eq!(log[0].access_key_id.as_deref(), Some(AK));
    assert_eq!(log[0].error_code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(log[1].access_key_id.as_deref(), Some("AKNOPE"));
}

#[tokio::test]
async fn stale_timestamps_and_reused_nonces_are_rejected() {
    let (_emu, client) = start(config(&[])).await;
    let stale = client.v1_params(
        "DescribeInstances",
        &[("RegionId", REGION), ("Timestamp", &stamp(-16))],
    );
    let r = client.send_v1("POST", &stale).await;
    assert_eq!((r.status, r.code()), (400, "InvalidTimeStamp.Expired"));
    let future = client.v1_params(
        "DescribeInstances",
        &[("RegionId", REGION), ("Timestamp", &stamp(16))],
    );
    assert_eq!(
        client.send_v1("POST", &future).await.code(),
        "InvalidTimeStamp.Expired"
    );
    let fixed = client.v1_params(
        "DescribeInstances",
        &[("RegionId", REGION), ("SignatureNonce", "same-nonce")],
    );
    assert_eq!(client.send_v1("POST", &fixed).await.status, 200);
    let again = client.send_v1("POST", &fixed).await;
    assert_eq!((again.status, again.code()), (400, "SignatureNonceUsed"));
}

#[tokio::test]
async fn security_tokens_are_checked_and_never_logged() {
    let mut cfg = config(&[("i-a", Status::Running)]);
    cfg.access_keys
        .push(AccessKey::new("STS.AK", "sts-secret").with_security_token("TOKEN-SHOULD-NOT-LEAK"));
    let (emu, _) = start(cfg).await;
    let good =
        client::Client::new(&emu.url(), "STS.AK", "sts-secret").with_token("TOKEN-SHOULD-NOT-LEAK");
    assert_eq!(
        good.call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200
    );
    assert_eq!(
        good.call_v3("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200
    );
    let bad_secret =
        client::Client::new(&emu.url(), "STS.AK", "nope").with_token("TOKEN-SHOULD-NOT-LEAK");
    let r = bad_secret
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");
    assert!(!r.text.contains("TOKEN-SHOULD-NOT-LEAK"));
    let no_token = client::Client::new(&emu.url(), "STS.AK", "sts-secret");
    let r = no_token
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!(r.code(), "InvalidSecurityToken.MismatchWithAccessKey");

    let log = serde_json::to_string(&emu.call_log()).unwrap();
    for secret in ["TOKEN-SHOULD-NOT-LEAK", "sts-secret", SECRET, "Signature="] {
        assert!(!log.contains(secret), "call log leaks {secret}: {log}");
    }
    let debug = format!("{emu:?}");
    for secret in ["TOKEN-SHOULD-NOT-LEAK", "sts-secret", SECRET] {
        assert!(!debug.contains(secret), "Debug leaks {secret}");
    }
}

#[tokio::test]
async fn error_bodies_carry_the_documented_fields() {
    let (_emu, client) = start(config(&[])).await;
    let r = client
        .call("StartInstance", &[("InstanceId", "i-missing")])
        .await;
    assert_eq!((r.status, r.code()), (404, "InvalidInstanceId.NotFound"));
    for field in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(
            r.body[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} in {}",
            r.text
        );
    }
    assert!(r.content_type.starts_with("application/json"));
}

#[tokio::test]
async fn unknown_action_version_method_and_missing_parameters() {
    let (emu, client) = start(config(&[])).await;
    assert_eq!(
        client.call("RunInstances", &[]).await.code(),
        "InvalidAction.NotFound"
    );
    let r = client
        .call(
            "DescribeInstances",
            &[("Version", "2016-01-01"), ("RegionId", REGION)],
        )
        .await;
    assert_eq!(r.code(), "InvalidVersion");
    let r = client.call("DescribeInstances", &[]).await;
    assert_eq!((r.status, r.code()), (400, "MissingParameter"));
    assert!(r.body["Message"].as_str().unwrap().contains("RegionId"));
    let put = client::http()
        .put(format!("{}/", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    let missing = client::http()
        .post(format!("{}/?Version=2014-05-26", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(client::into_reply(missing).await.code(), "MissingAction");
    let unsigned = client::http()
        .post(format!(
            "{}/?Action=DescribeInstances&Version=2014-05-26&RegionId={REGION}",
            emu.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        client::into_reply(unsigned).await.code(),
        "MissingAccessKeyId"
    );
    let mut twice = client.v1_params("DescribeInstances", &[("RegionId", REGION)]);
    twice.push(("RegionId".to_owned(), "cn-beijing".to_owned()));
    assert_eq!(
        client.send_v1("POST", &twice).await.code(),
        "InvalidParameter"
    );
}

#[tokio::test]
async fn xml_format_is_served() {
    let (_emu, client) = start(config(&[("i-a", Status::Running)])).await;
    let r = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("Format", "XML")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/xml"), "{}", r.content_type);
    assert!(r.text.contains("<DescribeInstancesResponse>"), "{}", r.text);
    assert!(r.text.contains("<Instances><Instance>"), "{}", r.text);
    let e = client
        .call("StartInstance", &[("InstanceId", "i-a"), ("Format", "XML")])
        .await;
    assert_eq!(e.status, 403);
    assert!(
        e.text.contains("<Error>") && e.text.contains("<Code>IncorrectInstanceStatus</Code>"),
        "{}",
        e.text
    );
}

#[tokio::test]
async fn call_log_records_what_tests_assert_on() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    client
        .call(
            "StartInstance",
            &[("InstanceId", "i-a"), ("DryRun", "true")],
        )
        .await;
    client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    let log = emu.call_log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].seq + 1, log[1].seq);
    assert!(log[0].dry_run);
    assert_eq!(log[0].http_status, Some(400));
    assert_eq!(log[0].error_code.as_deref(), Some("DryRunOperation"));
    assert_eq!(log[1].instance_ids, ["i-a"]);
    assert_eq!(log[1].http_status, Some(200));
    assert!(log[1].is_write());
    assert_eq!(
        log.iter()
            .filter(|c| c.action == "StartInstance" && !c.dry_run)
            .count(),
        1
    );
    let since = emu.call_log_since(log[0].seq);
    assert_eq!(since.len(), 1);
    emu.clear_call_log();
    assert!(emu.call_log().is_empty());
}
