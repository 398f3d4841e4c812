//! HTTP-level tests of the [`EcsClient`]: a tiny axum server inside each test (127.0.0.1, port 0)
//! checks the shape of every request (method, path, empty body, canonical percent-encoding, the
//! common parameters, and the signature recomputed with our own signer) and answers canned
//! bodies; raw TCP servers play the broken endpoints (connection closed, no answer, cut-short and
//! endless bodies). The independent check of the signer is the ecs-emulator crate.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::ecs::batch::InstanceResult;
use crate::ecs::catalogue::{ErrorClass, classify, classify_instance_code};
use crate::ecs::error::Delivery;
use crate::ecs::instance::InstanceStatus;
use crate::ecs::power::StoppedMode;
use crate::ecs::signature::{percent_encode, sign, string_to_sign};

const AK_ID: &str = "LTAI5tTestKeyId";
const AK_SECRET: &str = "s3cr3t-SECRET-value";
const TOKEN: &str = "CAIS+sts/TOKEN==value";
const REGION: &str = "cn-hangzhou";

fn creds() -> Credentials {
    Credentials::new(AK_ID, AK_SECRET, None)
}

fn sts_creds() -> Credentials {
    Credentials::new(AK_ID, AK_SECRET, Some(TOKEN.to_owned()))
}

/// Every test is bounded: a hung client fails the test instead of hanging it.
async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test step did not finish within 20 s")
}

// ---------------------------------------------------------------------------------------------
// The scripted axum server
// ---------------------------------------------------------------------------------------------

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    raw_query: String,
    params: BTreeMap<String, String>,
    body_len: usize,
    /// Every raw name and value was exactly `percent_encode(decoded)` (the V1 signature's percent-encoding).
    canonical_encoding: bool,
    /// `Signature` equals our signer's answer for the decoded parameters and the known secret.
    signature_ok: bool,
}

/// One canned answer.
#[derive(Debug, Clone)]
enum Reply {
    /// A status and a body with a content type.
    Body {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        /// Extra response headers.
        headers: Vec<(&'static str, String)>,
    },
    /// A `SignatureDoesNotMatch` that echoes the server's string to sign, as the real gateway does.
    EchoStringToSign,
}

impl Reply {
    fn json(status: u16, body: &str) -> Self {
        Self::Body {
            status,
            content_type: "application/json;charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self::Body {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Self::Body { headers, .. } = &mut self {
            headers.push((name, value.to_owned()));
        }
        self
    }
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

struct TestServer {
    addr: SocketAddr,
    script: Script,
}

impl TestServer {
    async fn start(replies: Vec<Reply>) -> Self {
        let script = Script {
            replies: Arc::new(Mutex::new(replies.into())),
            received: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(script.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, script }
    }

    fn client(&self) -> EcsClient {
        client_for(self.addr, Duration::from_secs(5))
    }

    fn received(&self) -> Vec<Received> {
        self.script.received.lock().unwrap().clone()
    }

    fn only_request(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "expected exactly one request");
        received.into_iter().next().unwrap()
    }
}

fn client_for(addr: SocketAddr, request_timeout: Duration) -> EcsClient {
    EcsClient::new(
        EcsClientConfig::new(Endpoint::Override(format!("http://{addr}")))
            .with_request_timeout(request_timeout)
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .unwrap()
}

async fn handle(State(script): State<Script>, method: Method, uri: Uri, body: Bytes) -> Response {
    let raw_query = uri.query().unwrap_or_default().to_owned();
    let mut params = BTreeMap::new();
    let mut canonical_encoding = true;
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode_str(raw_name)
            .decode_utf8()
            .unwrap()
            .into_owned();
        let value = percent_decode_str(raw_value)
            .decode_utf8()
            .unwrap()
            .into_owned();
        canonical_encoding &=
            percent_encode(&name) == raw_name && percent_encode(&value) == raw_value;
        params.insert(name, value);
    }
    let signature_ok = params.get("Signature").is_some_and(|sig| {
        params.get("AccessKeyId").map(String::as_str) == Some(AK_ID)
            && *sig == sign(method.as_str(), &params, AK_SECRET)
    });
    let received = Received {
        method: method.clone(),
        path: uri.path().to_owned(),
        raw_query,
        params: params.clone(),
        body_len: body.len(),
        canonical_encoding,
        signature_ok,
    };
    script.received.lock().unwrap().push(received);
    let reply = script.replies.lock().unwrap().pop_front();
    match reply {
        Some(Reply::Body {
            status,
            content_type,
            body,
            headers,
        }) => {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Some(Reply::EchoStringToSign) => {
            let message = format!(
                "Specified signature is not matched with our calculation. server string to sign is:{}",
                string_to_sign(method.as_str(), &params)
            );
            let body = serde_json::json!({
                "RequestId": "ECHO-1", "HostId": "ecs.aliyuncs.com",
                "Code": "SignatureDoesNotMatch", "Message": message,
            });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        None => (StatusCode::IM_A_TEAPOT, "no reply scripted").into_response(),
    }
}

/// The checks every request must pass.
fn assert_well_formed(r: &Received, action: &str) {
    assert_well_formed_for(r, action, "2014-05-26");
}

/// The checks every request of a product with API `version` must pass.
fn assert_well_formed_for(r: &Received, action: &str, version: &str) {
    assert_eq!(r.method, Method::POST, "{r:?}");
    assert_eq!(r.path, "/", "{r:?}");
    assert_eq!(r.body_len, 0, "{r:?}");
    assert!(
        r.canonical_encoding,
        "not canonically encoded: {}",
        r.raw_query
    );
    assert!(r.signature_ok, "signature does not verify: {r:?}");
    let p = &r.params;
    assert_eq!(p.get("Action").map(String::as_str), Some(action));
    assert_eq!(p.get("Format").map(String::as_str), Some("JSON"));
    assert_eq!(p.get("Version").map(String::as_str), Some(version));
    assert_eq!(p.get("AccessKeyId").map(String::as_str), Some(AK_ID));
    assert_eq!(
        p.get("SignatureMethod").map(String::as_str),
        Some("HMAC-SHA1")
    );
    assert_eq!(p.get("SignatureVersion").map(String::as_str), Some("1.0"));
    let nonce = uuid::Uuid::parse_str(&p["SignatureNonce"]).unwrap();
    assert_eq!(nonce.get_version_num(), 4);
    let ts = &p["Timestamp"];
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");
    let ts: jiff::Timestamp = ts.parse().unwrap();
    let skew = jiff::Timestamp::now().duration_since(ts).abs();
    assert!(skew < jiff::SignedDuration::from_secs(300), "{skew:?}");
    assert!(!r.raw_query.contains(AK_SECRET));
}

fn instance_json(id: &str, status: &str) -> serde_json::Value {
    serde_json::json!({
        "InstanceId": id, "Status": status, "StoppedMode": "KeepCharging",
        "OperationLocks": {"LockReason": []}, "ExpiredTime": "2099-12-31T15:59Z"
    })
}

fn describe_body(instances: &[serde_json::Value], next_token: Option<&str>) -> String {
    serde_json::json!({
        "RequestId": "DESC-1", "TotalCount": instances.len(), "PageSize": 100,
        "NextToken": next_token.unwrap_or(""),
        "Instances": {"Instance": instances}
    })
    .to_string()
}

fn start(id: &str) -> StartInstance {
    StartInstance {
        instance_id: id.into(),
        init_local_disk: false,
        dry_run: false,
    }
}

fn stop(id: &str) -> StopInstance {
    StopInstance {
        instance_id: id.into(),
        stopped_mode: None,
        force_stop: false,
        dry_run: false,
    }
}

// ---------------------------------------------------------------------------------------------
// DescribeInstances
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn describe_instance_success_and_request_shape() {
    let mut locked = instance_json("i-abc", "Stopped");
    locked["OperationLocks"] = serde_json::json!({"LockReason": [{"LockReason": "financial"}]});
    locked["StoppedMode"] = serde_json::json!("StopCharging");
    let server = TestServer::start(vec![Reply::json(200, &describe_body(&[locked], None))]).await;
    let found = bounded(server.client().describe_instance(&creds(), REGION, "i-abc"))
        .await
        .unwrap();
    assert_eq!(
        found,
        Some(InstanceObservation {
            instance_id: "i-abc".into(),
            status: InstanceStatus::Stopped,
            lock_reasons: vec!["financial".into()],
            stopped_mode: Some("StopCharging".into()),
            expired_time: Some("2099-12-31T15:59Z".into()),
            tags: BTreeMap::new(),
        })
    );
    let r = server.only_request();
    assert_well_formed(&r, "DescribeInstances");
    assert_eq!(r.params["RegionId"], REGION);
    assert_eq!(r.params["InstanceIds"], r#"["i-abc"]"#);
    assert_eq!(r.params["MaxResults"], "100");
    assert!(!r.params.contains_key("NextToken"));
    assert!(!r.params.contains_key("SecurityToken"));
    assert!(!r.params.contains_key("DryRun"));
}

#[tokio::test]
async fn describe_instances_follows_next_token() {
    let server = TestServer::start(vec![
        Reply::json(
            200,
            &describe_body(&[instance_json("i-1", "Running")], Some("page-2/token+")),
        ),
        Reply::json(
            200,
            &describe_body(&[instance_json("i-2", "Starting")], None),
        ),
    ])
    .await;
    let found = bounded(server.client().describe_instances(
        &creds(),
        REGION,
        &["i-1", "i-2", "i-3"],
    ))
    .await
    .unwrap();
    let ids: Vec<_> = found
        .iter()
        .map(|i| (i.instance_id.as_str(), i.status.clone()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("i-1", InstanceStatus::Running),
            ("i-2", InstanceStatus::Starting)
        ]
    );
    let received = server.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_well_formed(r, "DescribeInstances");
        assert_eq!(r.params["InstanceIds"], r#"["i-1","i-2","i-3"]"#);
        // ECS's default page size is 10: every page asks for 100.
        assert_eq!(r.params["MaxResults"], "100");
    }
    assert!(!received[0].params.contains_key("NextToken"));
    assert_eq!(received[1].params["NextToken"], "page-2/token+");
    assert_ne!(
        received[0].params["SignatureNonce"],
        received[1].params["SignatureNonce"]
    );
}

#[tokio::test]
async fn absent_and_unrequested_instances() {
    let server = TestServer::start(vec![
        Reply::json(200, &describe_body(&[], None)),
        Reply::json(
            200,
            &describe_body(
                &[
                    instance_json("i-other", "Running"),
                    instance_json("i-a", "Stopped"),
                ],
                None,
            ),
        ),
    ])
    .await;
    let client = server.client();
    assert_eq!(
        bounded(client.describe_instance(&creds(), REGION, "i-gone"))
            .await
            .unwrap(),
        None
    );
    let found = bounded(client.describe_instances(&creds(), REGION, &["i-a"]))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].instance_id, "i-a");
}

#[tokio::test]
async fn repeated_next_token_is_malformed_not_a_loop() {
    let body = describe_body(&[], Some("same"));
    let server = TestServer::start(vec![Reply::json(200, &body), Reply::json(200, &body)]).await;
    let err = bounded(
        server
            .client()
            .describe_instances(&creds(), REGION, &["i-a"]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EcsError::Malformed { .. }), "{err:?}");
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn bad_input_is_refused_without_a_call() {
    let server = TestServer::start(vec![]).await;
    let client = server.client();
    let ids: Vec<String> = (0..101).map(|i| format!("i-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let err = bounded(client.describe_instances(&creds(), REGION, &refs))
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::InvalidRequest { .. }), "{err:?}");
    assert_eq!(classify(&err).class, ErrorClass::Terminal);
    for region in ["", "cn-hangzhou/../x", "CN-HANGZHOU", "cn hangzhou"] {
        let err = bounded(client.describe_instance(&creds(), region, "i-a"))
            .await
            .unwrap_err();
        assert!(matches!(err, EcsError::InvalidRequest { .. }), "{region:?}");
    }
    let err = bounded(client.start_instance(&creds(), REGION, &start("")))
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::InvalidRequest { .. }), "{err:?}");
    let err = bounded(client.stop_instance(&creds(), REGION, &stop("i-a\n")))
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::InvalidRequest { .. }), "{err:?}");
    assert!(
        bounded(client.describe_instances(&creds(), REGION, &[]))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(server.received().is_empty(), "{:?}", server.received());
}

#[tokio::test]
async fn one_hundred_ids_is_one_call() {
    let server = TestServer::start(vec![Reply::json(200, &describe_body(&[], None))]).await;
    let ids: Vec<String> = (0..100).map(|i| format!("i-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    bounded(server.client().describe_instances(&creds(), REGION, &refs))
        .await
        .unwrap();
    let r = server.only_request();
    assert_well_formed(&r, "DescribeInstances");
    let sent: Vec<String> = serde_json::from_str(&r.params["InstanceIds"]).unwrap();
    assert_eq!(sent, ids);
}

// ---------------------------------------------------------------------------------------------
// StartInstance / StopInstance
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn start_instance_sends_only_what_is_needed() {
    let server = TestServer::start(vec![
        Reply::json(200, r#"{"RequestId":"473469C7-AA6F"}"#),
        Reply::json(200, r#"{"RequestId":"R2"}"#),
    ])
    .await;
    let client = server.client();
    let outcome = bounded(client.start_instance(&creds(), REGION, &start("i-abc")))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        WriteOutcome {
            request_id: Some("473469C7-AA6F".into()),
            dry_run: false
        }
    );
    let wipe = StartInstance {
        init_local_disk: true,
        ..start("i-abc")
    };
    bounded(client.start_instance(&creds(), REGION, &wipe))
        .await
        .unwrap();
    let received = server.received();
    assert_well_formed(&received[0], "StartInstance");
    assert_eq!(received[0].params["InstanceId"], "i-abc");
    for absent in [
        "InitLocalDisk",
        "DryRun",
        "ForceStop",
        "StoppedMode",
        "RegionId",
    ] {
        assert!(!received[0].params.contains_key(absent), "{absent}");
    }
    assert_well_formed(&received[1], "StartInstance");
    assert_eq!(received[1].params["InitLocalDisk"], "true");
    assert!(!received[1].params.contains_key("DryRun"));
}

#[tokio::test]
async fn stop_instance_sends_mode_and_force() {
    let server = TestServer::start(vec![
        Reply::json(200, r#"{"RequestId":"S1"}"#),
        Reply::json(200, r#"{"RequestId":"S2"}"#),
    ])
    .await;
    let client = server.client();
    bounded(client.stop_instance(&creds(), REGION, &stop("i-abc")))
        .await
        .unwrap();
    let full = StopInstance {
        stopped_mode: Some(StoppedMode::StopCharging),
        force_stop: true,
        ..stop("i-abc")
    };
    let outcome = bounded(client.stop_instance(&creds(), REGION, &full))
        .await
        .unwrap();
    assert_eq!(outcome.request_id.as_deref(), Some("S2"));
    let received = server.received();
    assert_well_formed(&received[0], "StopInstance");
    for absent in ["StoppedMode", "ForceStop", "DryRun"] {
        assert!(!received[0].params.contains_key(absent), "{absent}");
    }
    assert_well_formed(&received[1], "StopInstance");
    assert_eq!(received[1].params["StoppedMode"], "StopCharging");
    assert_eq!(received[1].params["ForceStop"], "true");
}

#[tokio::test]
async fn dry_run_answers_are_success() {
    let server = TestServer::start(vec![
        Reply::json(
            400,
            r#"{"RequestId":"DRY-1","Code":"DryRunOperation","Message":"Request validation has been passed with DryRun flag set."}"#,
        ),
        Reply::json(400, r#"{"RequestId":"DRY-2","Code":"DRYRUN.SUCCESS","Message":"ok"}"#),
        Reply::json(403, r#"{"RequestId":"DRY-3","Code":"OperationDenied.NoStock","Message":"sold out"}"#),
    ])
    .await;
    let client = server.client();
    let dry_start = StartInstance {
        dry_run: true,
        ..start("i-abc")
    };
    assert_eq!(
        bounded(client.start_instance(&creds(), REGION, &dry_start))
            .await
            .unwrap(),
        WriteOutcome {
            request_id: Some("DRY-1".into()),
            dry_run: true
        }
    );
    let dry_stop = StopInstance {
        dry_run: true,
        ..stop("i-abc")
    };
    assert_eq!(
        bounded(client.stop_instance(&creds(), REGION, &dry_stop))
            .await
            .unwrap(),
        WriteOutcome {
            request_id: Some("DRY-2".into()),
            dry_run: true
        }
    );
    // A dry run that ECS refuses is that refusal.
    let err = bounded(client.start_instance(&creds(), REGION, &dry_start))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("OperationDenied.NoStock"));
    for r in server.received() {
        assert_eq!(r.params["DryRun"], "true");
        assert!(r.signature_ok);
    }
}

#[tokio::test]
async fn dry_run_code_without_dry_run_is_an_error() {
    let server = TestServer::start(vec![Reply::json(
        400,
        r#"{"Code":"DryRunOperation","Message":"m"}"#,
    )])
    .await;
    let err = bounded(
        server
            .client()
            .start_instance(&creds(), REGION, &start("i-a")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("DryRunOperation"));
}

#[tokio::test]
async fn security_token_is_sent_and_signed() {
    let server = TestServer::start(vec![Reply::json(200, r#"{"RequestId":"T1"}"#)]).await;
    bounded(
        server
            .client()
            .start_instance(&sts_creds(), REGION, &start("i-a")),
    )
    .await
    .unwrap();
    let r = server.only_request();
    assert_well_formed(&r, "StartInstance");
    assert_eq!(r.params["SecurityToken"], TOKEN);
}

// ---------------------------------------------------------------------------------------------
// Error answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn json_error_bodies_with_each_status() {
    let cases = [
        (400, "Throttling.User", ErrorClass::Throttled),
        (403, "OperationDenied.NoStock", ErrorClass::Capacity),
        (403, "IncorrectInstanceStatus", ErrorClass::Conflict),
        (404, "InvalidInstanceId.NotFound", ErrorClass::Terminal),
        (409, "OperationConflict", ErrorClass::Conflict),
        (500, "InternalError", ErrorClass::Transient),
        (503, "ServiceUnavailable", ErrorClass::Transient),
    ];
    let mut replies: Vec<Reply> = cases
        .iter()
        .enumerate()
        .map(|(i, (status, code, _))| {
            Reply::json(
                *status,
                &format!(r#"{{"RequestId":"REQ-{i}","HostId":"ecs.aliyuncs.com","Code":"{code}","Message":"message {i}"}}"#),
            )
        })
        .collect();
    replies.push(Reply::json(
        400,
        r#"{"requestId":"REQ-lower","code":"InvalidParameter","message":"lowercase"}"#,
    ));
    let server = TestServer::start(replies).await;
    let client = server.client();
    for (i, (status, code, class)) in cases.iter().enumerate() {
        let err = bounded(client.start_instance(&creds(), REGION, &start("i-a")))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            EcsError::Api {
                code: (*code).into(),
                message: format!("message {i}"),
                http_status: *status,
                request_id: Some(format!("REQ-{i}")),
                retry_after: None,
            }
        );
        assert_eq!(classify(&err).class, *class, "{code}");
    }
    let err = bounded(client.describe_instance(&creds(), REGION, "i-a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameter"));
    assert_eq!(err.message(), Some("lowercase"));
    assert_eq!(err.request_id(), Some("REQ-lower"));
    assert_eq!(err.http_status(), Some(400));
}

#[tokio::test]
async fn unusable_bodies() {
    let server = TestServer::start(vec![
        Reply::text(200, "text/plain", "garbage"),
        Reply::json(200, r#"{"RequestId":"R","Instances":{"Instance":[{"InstanceId":"#),
        Reply::text(200, "text/plain", "not json"),
        Reply::text(404, "text/plain", "404 page not found"),
        Reply::text(
            502,
            "text/html",
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        ),
    ])
    .await;
    let client = server.client();
    for _ in 0..2 {
        let err = bounded(client.describe_instance(&creds(), REGION, "i-a"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EcsError::Malformed {
                    http_status: 200,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(classify(&err).reason, "MalformedResponse");
    }
    let err = bounded(client.start_instance(&creds(), REGION, &start("i-a")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EcsError::Malformed {
                http_status: 200,
                ..
            }
        ),
        "{err:?}"
    );
    let err = bounded(client.stop_instance(&creds(), REGION, &stop("i-a")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EcsError::Malformed {
                http_status: 404,
                ..
            }
        ),
        "{err:?}"
    );
    let err = bounded(client.describe_instance(&creds(), REGION, "i-a"))
        .await
        .unwrap_err();
    let EcsError::HttpStatus {
        http_status,
        snippet,
        ..
    } = &err
    else {
        panic!("expected HttpStatus, got {err:?}");
    };
    assert_eq!(*http_status, 502);
    assert_eq!(snippet, "502 Bad Gateway 502 Bad Gateway nginx");
    assert_eq!(classify(&err).reason, "ServiceUnavailable");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let server = TestServer::start(vec![Reply::text(200, "application/json", big)]).await;
    let err = bounded(server.client().describe_instance(&creds(), REGION, "i-a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EcsError::Malformed { detail, .. } if detail.contains("larger than")),
        "{err:?}"
    );
}

#[tokio::test]
async fn echoed_string_to_sign_does_not_leak_the_token() {
    let server = TestServer::start(vec![Reply::EchoStringToSign]).await;
    let err = bounded(
        server
            .client()
            .start_instance(&sts_creds(), REGION, &start("i-a")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    let message = err.message().unwrap();
    assert!(
        message.contains("server string to sign is:POST&%2F&"),
        "{message}"
    );
    assert!(message.contains("<redacted>"), "{message}");
    let text = format!("{err} {err:?}");
    for leak in ["CAIS", "TOKEN", AK_SECRET] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert_eq!(classify(&err).reason, "CredentialsRejected");
}

// ---------------------------------------------------------------------------------------------
// Broken endpoints (raw TCP)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Broken {
    /// Reads the request, then closes the connection without a byte of answer.
    CloseAfterRequest,
    /// Reads the request and never answers.
    NeverAnswer,
    /// Announces 100 bytes of body, sends 20 and closes.
    CutShortBody,
    /// A chunked body that never ends.
    EndlessBody,
    /// Sends the status line and headers of a 200, then nothing more.
    StallAfterHeaders,
}

async fn broken_server(behaviour: Broken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_broken(stream, behaviour));
        }
    });
    addr
}

async fn serve_broken(mut stream: TcpStream, behaviour: Broken) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    match behaviour {
        Broken::CloseAfterRequest => drop(stream),
        Broken::NeverAnswer => {
            std::future::pending::<()>().await;
            drop(stream);
        }
        Broken::CutShortBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"RequestId\":\"R\",\"In")
                .await;
            let _ = stream.shutdown().await;
        }
        Broken::EndlessBody => {
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut chunk = b"10000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b' ', 0x10000));
            chunk.extend_from_slice(b"\r\n");
            while stream.write_all(&chunk).await.is_ok() {}
        }
        Broken::StallAfterHeaders => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
                .await;
            std::future::pending::<()>().await;
            drop(stream);
        }
    }
}

/// An Unreachable detail must not carry the URL's query or any signed value.
fn assert_clean_detail(detail: &str) {
    for leak in [
        "Signature",
        "AccessKeyId",
        AK_ID,
        "Timestamp",
        "SignatureNonce",
        "Action=",
    ] {
        assert!(!detail.contains(leak), "{leak:?} in {detail:?}");
    }
}

#[tokio::test]
async fn connection_closed_without_response_is_unreachable() {
    let addr = broken_server(Broken::CloseAfterRequest).await;
    let err = bounded(client_for(addr, Duration::from_secs(5)).start_instance(
        &sts_creds(),
        REGION,
        &start("i-a"),
    ))
    .await
    .unwrap_err();
    let EcsError::Unreachable {
        detail,
        request_sent,
    } = &err
    else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_clean_detail(detail);
    assert!(!detail.contains("CAIS"), "{detail}");
    assert_eq!(classify(&err).reason, "EcsUnreachable");
    // The request was written before the peer closed: it may have been carried out.
    assert!(*request_sent, "{err:?}");
    assert_eq!(err.delivery(), Delivery::Unknown);
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let addr = broken_server(Broken::NeverAnswer).await;
    let started = std::time::Instant::now();
    let err = bounded(
        client_for(addr, Duration::from_millis(300)).describe_instance(&creds(), REGION, "i-a"),
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    let EcsError::Unreachable { detail, .. } = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_eq!(err.delivery(), Delivery::Unknown, "{err:?}");
    assert!(detail.contains("300 ms"), "{detail}");
    assert_clean_detail(detail);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = bounded(client_for(addr, Duration::from_secs(5)).describe_instance(
        &creds(),
        REGION,
        "i-a",
    ))
    .await
    .unwrap_err();
    let EcsError::Unreachable { detail, .. } = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert_eq!(err.delivery(), Delivery::NotSent, "{err:?}");
    assert!(detail.starts_with("could not connect"), "{detail}");
    assert_clean_detail(detail);
}

#[tokio::test]
async fn body_cut_short_is_malformed() {
    let addr = broken_server(Broken::CutShortBody).await;
    let err = bounded(client_for(addr, Duration::from_secs(5)).describe_instance(
        &creds(),
        REGION,
        "i-a",
    ))
    .await
    .unwrap_err();
    let EcsError::Malformed {
        http_status,
        detail,
    } = &err
    else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(*http_status, 200);
    assert!(detail.contains("cut short"), "{detail}");
    assert_clean_detail(detail);
    assert_eq!(err.delivery(), Delivery::Unknown);
}

#[tokio::test]
async fn answer_stalling_after_its_headers_times_out_as_sent() {
    let addr = broken_server(Broken::StallAfterHeaders).await;
    let started = std::time::Instant::now();
    let err = bounded(client_for(addr, Duration::from_millis(300)).start_instance(
        &creds(),
        REGION,
        &start("i-a"),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EcsError::Unreachable { detail, request_sent: true } if detail.contains("300 ms")),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::Unknown);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn endless_body_is_cut_at_the_cap() {
    let addr = broken_server(Broken::EndlessBody).await;
    let err = bounded(client_for(addr, Duration::from_secs(15)).describe_instance(
        &creds(),
        REGION,
        "i-a",
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EcsError::Malformed { detail, .. } if detail.contains("larger than")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Observer and logs
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct RecordingObserver {
    calls: Mutex<Vec<(&'static str, String)>>,
}

impl CallObserver for RecordingObserver {
    fn on_call(&self, action: &'static str, outcome: &str, _elapsed: Duration) {
        self.calls
            .lock()
            .unwrap()
            .push((action, outcome.to_owned()));
    }
}

#[tokio::test]
async fn observer_sees_every_call_with_a_bounded_outcome() {
    let server = TestServer::start(vec![
        Reply::json(200, &describe_body(&[], Some("t2"))),
        Reply::json(200, &describe_body(&[], None)),
        Reply::json(400, r#"{"Code":"DryRunOperation","RequestId":"D"}"#),
        Reply::json(403, r#"{"Code":"OperationDenied.NoStock"}"#),
        Reply::json(400, r#"{"Code":"weird code with spaces"}"#),
        Reply::text(200, "text/plain", "garbage"),
        Reply::text(503, "text/html", "<h1>down</h1>"),
    ])
    .await;
    let observer = Arc::new(RecordingObserver::default());
    let client = EcsClient::new(
        EcsClientConfig::new(Endpoint::Override(format!("http://{}", server.addr)))
            .with_observer(observer.clone()),
    )
    .unwrap();
    let c = creds();
    let _ = bounded(client.describe_instance(&c, REGION, "i-a")).await;
    let dry = StartInstance {
        dry_run: true,
        ..start("i-a")
    };
    let _ = bounded(client.start_instance(&c, REGION, &dry)).await;
    let _ = bounded(client.start_instance(&c, REGION, &start("i-a"))).await;
    let _ = bounded(client.stop_instance(&c, REGION, &stop("i-a"))).await;
    let _ = bounded(client.stop_instance(&c, REGION, &stop("i-a"))).await;
    let _ = bounded(client.describe_instance(&c, REGION, "i-a")).await;
    let _ = bounded(client.describe_instance(&c, "BAD REGION", "i-a")).await;
    let broken = broken_server(Broken::CloseAfterRequest).await;
    let unreachable = EcsClient::new(
        EcsClientConfig::new(Endpoint::Override(format!("http://{broken}")))
            .with_observer(observer.clone()),
    )
    .unwrap();
    let _ = bounded(unreachable.describe_instance(&c, REGION, "i-a")).await;
    let calls = observer.calls.lock().unwrap().clone();
    let expected: Vec<(&'static str, String)> = vec![
        ("DescribeInstances", "Success".into()),
        ("DescribeInstances", "Success".into()),
        ("StartInstance", "DryRunOperation".into()),
        ("StartInstance", "OperationDenied.NoStock".into()),
        ("StopInstance", "UnrecognisedCode".into()),
        ("StopInstance", "MalformedResponse".into()),
        ("DescribeInstances", "HttpStatus5xx".into()),
        ("DescribeInstances", "EcsUnreachable".into()),
    ];
    assert_eq!(calls, expected);
}

/// A `tracing_subscriber` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn trace_logs_never_contain_secrets() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // Other tests run in parallel threads without a subscriber; a call site they register
        // while this one's dispatcher is being set up may cache "never" and drop our lines.
        // Recompute every call site's interest now that this dispatcher exists.
        tracing::callsite::rebuild_interest_cache();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = TestServer::start(vec![
                Reply::json(
                    200,
                    &describe_body(&[instance_json("i-log", "Running")], None),
                ),
                Reply::json(200, r#"{"RequestId":"LOG-START"}"#),
                Reply::EchoStringToSign,
                Reply::text(502, "text/html", "<h1>bad gateway</h1>"),
            ])
            .await;
            let client = server.client();
            let c = sts_creds();
            bounded(client.describe_instance(&c, REGION, "i-log"))
                .await
                .unwrap();
            bounded(client.start_instance(&c, REGION, &start("i-log")))
                .await
                .unwrap();
            let _ = bounded(client.stop_instance(&c, REGION, &stop("i-log"))).await;
            let _ = bounded(client.describe_instance(&c, REGION, "i-log")).await;
            let broken = broken_server(Broken::CloseAfterRequest).await;
            let _ = bounded(
                client_for(broken, Duration::from_secs(5)).describe_instance(&c, REGION, "i-log"),
            )
            .await;
        });
    });
    let bytes = captured.0.lock().unwrap().clone();
    let logs = String::from_utf8_lossy(&bytes);
    // The capture works and the call log line carries what it should …
    for wanted in [
        "DescribeInstances",
        "StartInstance",
        "StopInstance",
        "cn-hangzhou",
        "i-log",
        "LOG-START",
        "SignatureDoesNotMatch",
        "elapsed_ms",
        "http_status=200",
    ] {
        assert!(
            logs.contains(wanted),
            "{wanted:?} missing from logs:\n{logs}"
        );
    }
    // … and never a secret, the token (in any encoding), the signature or the URL's query.
    // (The SignatureDoesNotMatch message quotes ECS's string to sign, `…%26SignatureNonce%3D…`,
    // which is useful to debug a signer and holds no secret once the token is redacted; the
    // query string itself would show `Name=value` pairs.)
    assert!(logs.contains("SecurityToken%3D<redacted>"), "{logs}");
    let once = percent_encode(TOKEN);
    let twice = percent_encode(&once);
    for leak in [
        AK_SECRET,
        TOKEN,
        &once,
        &twice,
        "Signature=",
        "SignatureNonce=",
        "Timestamp=",
        "AccessKeyId=",
        "SecurityToken=",
    ] {
        assert!(!logs.contains(leak), "{leak:?} leaked into logs:\n{logs}");
    }
}

#[test]
fn debug_output_of_client_and_config() {
    let client = EcsClient::new(EcsClientConfig::default()).unwrap();
    let debug = format!("{client:?}");
    assert!(debug.contains("Regional"), "{debug}");
    let config = format!("{:?}", EcsClientConfig::default());
    assert!(config.contains("request_timeout"), "{config}");
}

// ---------------------------------------------------------------------------------------------
// Tags, x-acs-retry-after, deadlines
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn describe_reports_tags() {
    let mut tagged = instance_json("i-t", "Running");
    tagged["Tags"] = serde_json::json!({"Tag": [
        {"TagKey": "team", "TagValue": "batch"}, {"TagKey": "ecs-power/managed", "TagValue": "true"}
    ]});
    let server = TestServer::start(vec![Reply::json(200, &describe_body(&[tagged], None))]).await;
    let found = bounded(server.client().describe_instance(&creds(), REGION, "i-t"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.tags.get("team").map(String::as_str), Some("batch"));
    assert_eq!(
        found.tags.get("ecs-power/managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(found.tags.len(), 2);
}

#[tokio::test]
async fn retry_after_header_is_kept_on_errors() {
    let server = TestServer::start(vec![
        Reply::json(
            400,
            r#"{"Code":"Throttling.User","Message":"Request was denied due to user flow control.","RequestId":"T-1"}"#,
        )
        .with_header("x-acs-retry-after", "1500"),
        Reply::text(503, "text/html", "<h1>busy</h1>").with_header("x-acs-retry-after", "250"),
        Reply::json(400, r#"{"Code":"Throttling","RequestId":"T-2"}"#),
    ])
    .await;
    let client = server.client();
    let throttled = bounded(client.start_instance(&creds(), REGION, &start("i-a")))
        .await
        .unwrap_err();
    assert_eq!(throttled.code(), Some("Throttling.User"));
    assert_eq!(throttled.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(throttled.delivery(), Delivery::Answered);
    assert_eq!(classify(&throttled).class, ErrorClass::Throttled);
    let busy = bounded(client.describe_instance(&creds(), REGION, "i-a"))
        .await
        .unwrap_err();
    assert!(matches!(busy, EcsError::HttpStatus { .. }), "{busy:?}");
    assert_eq!(busy.retry_after(), Some(Duration::from_millis(250)));
    assert_eq!(busy.delivery(), Delivery::Unknown);
    let plain = bounded(client.stop_instance(&creds(), REGION, &stop("i-a")))
        .await
        .unwrap_err();
    assert_eq!(plain.retry_after(), None);
}

#[tokio::test]
async fn a_deadline_bounds_the_whole_call() {
    let addr = broken_server(Broken::NeverAnswer).await;
    // The client would wait 10 s; the call's deadline is 300 ms away.
    let client = client_for(addr, Duration::from_secs(10));
    let started = std::time::Instant::now();
    let err = bounded(client.start_instance_with(
        &creds(),
        REGION,
        &start("i-a"),
        &CallOptions::with_timeout(Duration::from_millis(300)),
    ))
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, EcsError::Unreachable { detail, request_sent: true } if detail.contains("ms")),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::Unknown);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_passed_deadline_sends_nothing() {
    let server = TestServer::start(vec![Reply::json(200, r#"{"RequestId":"never"}"#)]).await;
    let client = server.client();
    let past = CallOptions::with_deadline(tokio::time::Instant::now());
    let c = creds();
    let results = [
        bounded(client.start_instance_with(&c, REGION, &start("i-a"), &past))
            .await
            .map(|_| ()),
        bounded(client.stop_instance_with(&c, REGION, &stop("i-a"), &past))
            .await
            .map(|_| ()),
        bounded(client.describe_instance_with(&c, REGION, "i-a", &past))
            .await
            .map(|_| ()),
        bounded(client.start_instances(&c, REGION, &["i-a"], &past))
            .await
            .map(|_| ()),
        bounded(client.caller_identity_with(&c, &past))
            .await
            .map(|_| ()),
    ];
    for result in results {
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                EcsError::Unreachable {
                    request_sent: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.delivery(), Delivery::NotSent);
    }
    assert!(server.received().is_empty(), "{:?}", server.received());
    // A deadline far away changes nothing.
    let later = CallOptions::with_timeout(Duration::from_secs(60));
    let outcome = bounded(client.start_instance_with(&c, REGION, &start("i-a"), &later))
        .await
        .unwrap();
    assert_eq!(outcome.request_id.as_deref(), Some("never"));
}

// ---------------------------------------------------------------------------------------------
// STS GetCallerIdentity
// ---------------------------------------------------------------------------------------------

const IDENTITY: &str = r#"{"RequestId":"STS-1","AccountId":"1234567890123456","UserId":"300800000000000000","Arn":"acs:ram::1234567890123456:assumed-role/ecs-power/op","IdentityType":"AssumedRoleUser","PrincipalId":"300800000000000000:op","RoleId":"300800000000000000"}"#;

#[tokio::test]
async fn caller_identity_is_signed_like_ecs_and_sent_to_the_override() {
    let server = TestServer::start(vec![
        Reply::json(200, IDENTITY),
        Reply::json(
            400,
            r#"{"Code":"InvalidSecurityToken.Expired","Message":"expired","RequestId":"STS-2"}"#,
        ),
        Reply::json(200, r#"{"RequestId":"STS-3","Arn":"x"}"#),
    ])
    .await;
    let client = server.client();
    // `--ecs-endpoint` set and no STS setting: STS goes to the same server.
    assert_eq!(client.sts_endpoint(), format!("http://{}", server.addr));
    let identity = bounded(client.caller_identity(&sts_creds())).await.unwrap();
    assert_eq!(
        identity,
        CallerIdentity {
            account_id: "1234567890123456".into(),
            arn: Some("acs:ram::1234567890123456:assumed-role/ecs-power/op".into()),
            user_id: Some("300800000000000000".into()),
            identity_type: Some("AssumedRoleUser".into()),
            principal_id: Some("300800000000000000:op".into()),
            role_id: Some("300800000000000000".into()),
            request_id: Some("STS-1".into()),
        }
    );
    let r = server.only_request();
    assert_well_formed_for(&r, "GetCallerIdentity", "2015-04-01");
    assert_eq!(r.params["SecurityToken"], TOKEN);
    for absent in ["RegionId", "InstanceId", "DryRun"] {
        assert!(!r.params.contains_key(absent), "{absent}");
    }
    let rejected = bounded(client.caller_identity(&creds())).await.unwrap_err();
    assert_eq!(rejected.code(), Some("InvalidSecurityToken.Expired"));
    assert_eq!(rejected.delivery(), Delivery::Answered);
    let malformed = bounded(client.caller_identity(&creds())).await.unwrap_err();
    assert!(
        matches!(&malformed, EcsError::Malformed { detail, .. } if detail.contains("AccountId")),
        "{malformed:?}"
    );
}

#[tokio::test]
async fn caller_identity_goes_to_the_configured_sts_endpoint() {
    let ecs = TestServer::start(vec![]).await;
    let sts = TestServer::start(vec![Reply::json(200, IDENTITY)]).await;
    let client = EcsClient::new(
        EcsClientConfig::new(Endpoint::Override(format!("http://{}", ecs.addr)))
            .with_sts_endpoint(format!("http://{}/", sts.addr)),
    )
    .unwrap();
    assert_eq!(client.sts_endpoint(), format!("http://{}", sts.addr));
    let identity = bounded(client.caller_identity(&creds())).await.unwrap();
    assert_eq!(identity.account_id, "1234567890123456");
    assert_well_formed_for(&sts.only_request(), "GetCallerIdentity", "2015-04-01");
    assert!(ecs.received().is_empty());
    // Without an override or a setting, STS is the central endpoint.
    let default = EcsClient::new(EcsClientConfig::default()).unwrap();
    assert_eq!(default.sts_endpoint(), "https://sts.aliyuncs.com");
}

// ---------------------------------------------------------------------------------------------
// StartInstances / StopInstances
// ---------------------------------------------------------------------------------------------

fn batch_body(entries: &[serde_json::Value]) -> String {
    serde_json::json!({"RequestId": "BATCH-1", "InstanceResponses": {"InstanceResponse": entries}})
        .to_string()
}

fn entry(id: &str, code: &str) -> serde_json::Value {
    serde_json::json!({
        "Code": code, "Message": format!("message of {code}"), "InstanceId": id,
        "PreviousStatus": "Stopped", "CurrentStatus": if code == "200" { "Starting" } else { "Stopped" }
    })
}

#[derive(Default)]
struct BatchObserver {
    calls: Mutex<Vec<(&'static str, String)>>,
    batches: Mutex<Vec<(&'static str, usize)>>,
    results: Mutex<Vec<(&'static str, String)>>,
}

impl CallObserver for BatchObserver {
    fn on_call(&self, action: &'static str, outcome: &str, _elapsed: Duration) {
        self.calls
            .lock()
            .unwrap()
            .push((action, outcome.to_owned()));
    }
    fn on_batch(&self, action: &'static str, batch_size: usize) {
        self.batches.lock().unwrap().push((action, batch_size));
    }
    fn on_instance_result(&self, action: &'static str, outcome: &str) {
        self.results
            .lock()
            .unwrap()
            .push((action, outcome.to_owned()));
    }
}

#[tokio::test]
async fn start_instances_sends_success_first_and_reads_results_by_id() {
    // The answer lists the instances in another order, omits i-3 and adds a stranger.
    let server = TestServer::start(vec![Reply::json(
        200,
        &batch_body(&[
            entry("i-2", "OperationDenied.NoStock"),
            entry("i-stranger", "200"),
            entry("i-1", "200"),
            entry("i-4", "InvalidInstanceId.NotFound"),
        ]),
    )])
    .await;
    let observer = Arc::new(BatchObserver::default());
    let client = EcsClient::new(
        EcsClientConfig::new(Endpoint::Override(format!("http://{}", server.addr)))
            .with_observer(observer.clone()),
    )
    .unwrap();
    let outcome = bounded(client.start_instances(
        &sts_creds(),
        REGION,
        &["i-1", "i-2", "i-3", "i-4"],
        &CallOptions::default(),
    ))
    .await
    .unwrap();
    let r = server.only_request();
    assert_well_formed(&r, "StartInstances");
    assert_eq!(r.params["RegionId"], REGION);
    assert_eq!(r.params["BatchOptimization"], "SuccessFirst");
    for (n, id) in ["i-1", "i-2", "i-3", "i-4"].iter().enumerate() {
        assert_eq!(r.params[&format!("InstanceId.{}", n + 1)], *id);
    }
    for absent in [
        "InstanceId.5",
        "InstanceId",
        "DryRun",
        "InitLocalDisk",
        "ForceStop",
        "StoppedMode",
    ] {
        assert!(!r.params.contains_key(absent), "{absent}");
    }
    assert_eq!(outcome.request_id.as_deref(), Some("BATCH-1"));
    assert_eq!(outcome.unexpected, 1);
    assert_eq!(outcome.results.len(), 4);
    assert_eq!(
        outcome.results["i-1"],
        InstanceResult::Accepted {
            previous_status: Some(InstanceStatus::Stopped),
            current_status: Some(InstanceStatus::Starting),
        }
    );
    let InstanceResult::Refused { code, verdict, .. } = &outcome.results["i-2"] else {
        panic!("{:?}", outcome.results["i-2"]);
    };
    assert_eq!(code, "OperationDenied.NoStock");
    assert_eq!(
        (verdict.reason.as_str(), verdict.class),
        ("NoStock", ErrorClass::Capacity)
    );
    assert_eq!(outcome.results["i-3"], InstanceResult::Missing);
    assert!(outcome.results["i-3"].is_ambiguous());
    let InstanceResult::Refused { verdict, .. } = &outcome.results["i-4"] else {
        panic!("{:?}", outcome.results["i-4"]);
    };
    assert_eq!(verdict.reason, "InstanceNotFound");
    assert_eq!(
        *observer.batches.lock().unwrap(),
        vec![("StartInstances", 4)]
    );
    assert_eq!(
        *observer.calls.lock().unwrap(),
        vec![("StartInstances", "Success".to_owned())]
    );
    let mut results = observer.results.lock().unwrap().clone();
    results.sort();
    assert_eq!(
        results,
        vec![
            ("StartInstances", "InvalidInstanceId.NotFound".to_owned()),
            ("StartInstances", "Missing".to_owned()),
            ("StartInstances", "OperationDenied.NoStock".to_owned()),
            ("StartInstances", "Success".to_owned()),
            ("StartInstances", "Unrequested".to_owned()),
        ]
    );
}

#[tokio::test]
async fn stop_instances_sends_its_options() {
    let server = TestServer::start(vec![
        Reply::json(200, &batch_body(&[entry("i-1", "200")])),
        Reply::json(200, &batch_body(&[entry("i-1", "200")])),
    ])
    .await;
    let client = server.client();
    let forced = StopOptions {
        force_stop: true,
        stopped_mode: Some(StoppedMode::StopCharging),
    };
    let out = bounded(client.stop_instances(
        &creds(),
        REGION,
        &["i-1"],
        &forced,
        &CallOptions::default(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        out.results["i-1"],
        InstanceResult::Accepted { .. }
    ));
    bounded(client.stop_instances(
        &creds(),
        REGION,
        &["i-1"],
        &StopOptions::default(),
        &CallOptions::default(),
    ))
    .await
    .unwrap();
    let received = server.received();
    assert_well_formed(&received[0], "StopInstances");
    assert_eq!(received[0].params["ForceStop"], "true");
    assert_eq!(received[0].params["StoppedMode"], "StopCharging");
    assert_eq!(received[0].params["BatchOptimization"], "SuccessFirst");
    assert!(!received[0].params.contains_key("DryRun"));
    assert_well_formed(&received[1], "StopInstances");
    for absent in ["ForceStop", "StoppedMode", "DryRun"] {
        assert!(!received[1].params.contains_key(absent), "{absent}");
    }
}

#[tokio::test]
async fn batch_input_is_checked_before_anything_is_sent() {
    let server = TestServer::start(vec![Reply::json(200, &batch_body(&[]))]).await;
    let client = server.client();
    let many: Vec<String> = (0..101).map(|i| format!("i-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let none = CallOptions::default();
    let c = creds();
    let refused = [
        bounded(client.start_instances(&c, REGION, &[], &none)).await,
        bounded(client.start_instances(&c, REGION, &many, &none)).await,
        bounded(client.start_instances(&c, REGION, &["i-1", "i-2", "i-1"], &none)).await,
        bounded(client.start_instances(&c, REGION, &["i-1", ""], &none)).await,
        bounded(client.start_instances(&c, "Bad Region", &["i-1"], &none)).await,
        bounded(client.stop_instances(&c, REGION, &many, &StopOptions::default(), &none)).await,
    ];
    for result in refused {
        let err = result.unwrap_err();
        assert!(matches!(err, EcsError::InvalidRequest { .. }), "{err:?}");
        assert_eq!(err.delivery(), Delivery::NotSent);
    }
    assert!(server.received().is_empty(), "{:?}", server.received());
    // One hundred is one call, every ID answered as missing from an empty answer.
    let out = bounded(client.start_instances(&c, REGION, &many[..100], &none))
        .await
        .unwrap();
    let r = server.only_request();
    assert_eq!(r.params["InstanceId.100"], "i-99");
    assert!(!r.params.contains_key("InstanceId.101"));
    assert_eq!(out.results.len(), 100);
    assert!(out.results.values().all(|v| *v == InstanceResult::Missing));
}

#[tokio::test]
async fn batch_level_failures_are_one_error_for_the_whole_batch() {
    let server = TestServer::start(vec![
        Reply::json(400, r#"{"Code":"Throttling.User","RequestId":"T"}"#)
            .with_header("x-acs-retry-after", "2000"),
        Reply::json(500, r#"{"Code":"InternalError","RequestId":"I"}"#),
        Reply::json(200, r#"{"RequestId":"no results"}"#),
        Reply::EchoStringToSign,
    ])
    .await;
    let client = server.client();
    let ids = ["i-1", "i-2"];
    let none = CallOptions::default();
    let throttled = bounded(client.start_instances(&creds(), REGION, &ids, &none))
        .await
        .unwrap_err();
    assert_eq!(classify(&throttled).class, ErrorClass::Throttled);
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(throttled.delivery(), Delivery::Answered);
    let internal = bounded(client.start_instances(&creds(), REGION, &ids, &none))
        .await
        .unwrap_err();
    assert_eq!(internal.delivery(), Delivery::Unknown);
    let unknown =
        bounded(client.stop_instances(&creds(), REGION, &ids, &StopOptions::default(), &none))
            .await
            .unwrap_err();
    assert!(
        matches!(
            unknown,
            EcsError::Malformed {
                http_status: 200,
                ..
            }
        ),
        "{unknown:?}"
    );
    assert_eq!(unknown.delivery(), Delivery::Unknown);
    let signature = bounded(client.start_instances(&sts_creds(), REGION, &ids, &none))
        .await
        .unwrap_err();
    assert_eq!(classify(&signature).reason, "CredentialsRejected");
    assert!(!format!("{signature:?}").contains("CAIS"));
}

/// Every code of the catalogue gives the same reason and class whether it comes back for one
/// instance of a batch or as the error of a single call.
#[tokio::test]
async fn batch_and_single_calls_classify_every_code_alike() {
    let codes = crate::ecs::catalogue::CODES_WITH_STATUS;
    let ids: Vec<String> = (0..codes.len()).map(|i| format!("i-{i}")).collect();
    let entries: Vec<serde_json::Value> = codes
        .iter()
        .zip(&ids)
        .map(|((code, _), id)| entry(id, code))
        .collect();
    let mut replies = vec![Reply::json(200, &batch_body(&entries))];
    replies.extend(codes.iter().map(|(code, status)| {
        Reply::json(
            *status,
            &serde_json::json!({"Code": code, "Message": "m", "RequestId": "R"}).to_string(),
        )
    }));
    let server = TestServer::start(replies).await;
    let client = server.client();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let batch =
        bounded(client.start_instances(&creds(), REGION, &id_refs, &CallOptions::default()))
            .await
            .unwrap();
    for ((code, status), id) in codes.iter().zip(&ids) {
        let single = bounded(client.start_instance(&creds(), REGION, &start(id)))
            .await
            .unwrap_err();
        let InstanceResult::Refused {
            code: batch_code,
            verdict,
            ..
        } = &batch.results[id]
        else {
            panic!("{code}: {:?}", batch.results[id]);
        };
        assert_eq!(batch_code, code);
        assert_eq!(*verdict, classify(&single), "{code} (HTTP {status})");
        assert_eq!(*verdict, classify_instance_code(code), "{code}");
    }
}
