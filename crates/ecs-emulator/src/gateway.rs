//! The API gateway in front of the actions, as ECS's POP gateway behaves: for every request on
//! `/` it parses the parameters, checks the action and version, authenticates (V1 or V3; STS
//! AssumeRoleWithOIDC is anonymous), applies the rate limits (per key, and per account, region
//! and action; a throttled request does nothing), fires scripted faults, runs the action and
//! renders the answer; and it writes one call-log record per request, whatever the outcome.
//! The region a limit counts in is `RegionId`, else the region of the first instance named,
//! else empty (calls that name neither, such as STS's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde_json::Value;

use crate::actions::{self, Context};
use crate::call_log::{CallRecord, InstanceResult, SignatureScheme};
use crate::catalogue::EcsError;
use crate::emulator::{Shared, lock, roll};
use crate::faults::{Outcome, Scope, TransportFault};
use crate::protocol::render::{self, host_id};
use crate::protocol::{Format, RpcRequest};
use crate::signature::Verifier;
use crate::throttle::Caller;

/// How a request is answered, before rendering.
enum Reply {
    Success(Value),
    Error(EcsError),
    Transport(TransportFault, Option<Vec<u8>>),
}

/// What rendering needs to know about the request.
struct Shape {
    format: Format,
    action: String,
    host_id: String,
    /// `x-acs-retry-after` for a throttled answer, when enabled.
    retry_after: Option<Duration>,
}

/// The axum handler for every non-admin path. The request is served in its own task, so it
/// runs to the end (action, call-log record) even when the client gives up or its connection
/// closes first, as a real server behaves.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match tokio::spawn(serve(shared, method, uri, headers, body)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

async fn serve(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let mut record = CallRecord {
        seq: 0,
        time: jiff::Timestamp::now(),
        request_id: request_id.clone(),
        method: method.to_string(),
        action: String::new(),
        instance_ids: Vec::new(),
        region_id: None,
        access_key_id: None,
        account_id: None,
        signature: None,
        dry_run: false,
        http_status: None,
        error_code: None,
        fault: None,
        acted: false,
        instance_results: Vec::new(),
    };
    let mut shape = Shape {
        format: Format::Json,
        action: String::new(),
        host_id: host_id(None),
        retry_after: None,
    };
    let reply = process(
        &shared,
        method,
        &uri,
        headers,
        body,
        &mut record,
        &mut shape,
    )
    .await;
    let response = match reply {
        Reply::Success(fields) => {
            record.http_status = Some(200);
            render::success(shape.format, &shape.action, &request_id, &fields)
        }
        Reply::Error(error) => {
            record.http_status = Some(error.status);
            record.error_code = Some(error.code.clone());
            let body = render::error_body(&request_id, &shape.host_id, &error);
            let mut response = render::error(shape.format, &request_id, &body, error.status);
            if let Some(wait) = shape.retry_after
                && let Ok(v) = http::HeaderValue::from_str(&wait.as_millis().to_string())
            {
                response.headers_mut().insert("x-acs-retry-after", v);
            }
            response
        }
        Reply::Transport(kind, full) => {
            record.http_status = render::transport_status(kind);
            record.fault = Some(kind.as_str().to_owned());
            render::transport(kind, &request_id, full)
        }
    };
    tracing::debug!(
        action = %record.action,
        status = ?record.http_status,
        code = ?record.error_code,
        fault = ?record.fault,
        access_key_id = ?record.access_key_id,
        "ECS request"
    );
    lock(&shared.log).push(record);
    response
}

async fn process(
    shared: &Shared,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    record: &mut CallRecord,
    shape: &mut Shape,
) -> Reply {
    if uri.path() != "/" {
        return Reply::Error(EcsError::of("InvalidAction.NotFound"));
    }
    if method != Method::GET && method != Method::POST {
        return Reply::Error(EcsError::of("UnsupportedHTTPMethod"));
    }
    let req = match RpcRequest::parse(method, uri, headers, body) {
        Ok(r) => r,
        Err(e) => return Reply::Error(e),
    };
    shape.format = req.format();
    let params = &req.params;
    record.instance_ids = params.named_instances();
    record.region_id = params.non_empty("RegionId").map(str::to_owned);
    record.dry_run = params
        .get("DryRun")
        .is_some_and(|d| d.eq_ignore_ascii_case("true"));
    shape.host_id = host_id(record.region_id.as_deref());

    let Some(action) = req.action().map(str::to_owned) else {
        return Reply::Error(EcsError::missing_common("Action"));
    };
    record.action.clone_from(&action);
    shape.action.clone_from(&action);
    if !actions::is_known(&action) {
        return Reply::Error(EcsError::of("InvalidAction.NotFound"));
    }
    match req.version() {
        None | Some("") => return Reply::Error(EcsError::missing_common("Version")),
        Some(v) if v != actions::version_of(&action) => {
            return Reply::Error(EcsError::of("InvalidVersion"));
        }
        Some(_) => {}
    }

    let now = Instant::now();
    let now_ts = jiff::Timestamp::now();
    let principal = if actions::is_anonymous(&action) {
        record.signature = Some(SignatureScheme::Anonymous);
        None
    } else {
        let verifier = Verifier {
            keys: &shared.keys,
            nonces: &shared.nonces,
            window: shared.timestamp_window,
            now: now_ts,
            instant: now,
        };
        match verifier.authenticate(&req) {
            Ok(p) => {
                record.signature = Some(p.scheme);
                record.access_key_id = Some(p.access_key_id.clone());
                record.account_id = Some(p.identity.account_id.clone());
                Some(p)
            }
            Err(rejection) => {
                record.signature = Some(rejection.scheme);
                record.access_key_id = rejection.access_key_id;
                return Reply::Error(rejection.error);
            }
        }
    };

    if let Some(p) = &principal {
        let region = match &record.region_id {
            Some(r) => r.clone(),
            None => record
                .instance_ids
                .first()
                .and_then(|id| {
                    lock(&shared.store)
                        .observe(id, now)
                        .map(|i| i.region.clone())
                })
                .unwrap_or_default(),
        };
        let caller = Caller {
            access_key: &p.access_key_id,
            account: &p.identity.account_id,
            region: &region,
            action: &action,
        };
        let mut throttle = lock(&shared.throttle);
        if let Err(throttled) = throttle.admit(caller, now_ts) {
            if throttle.sends_retry_after() {
                shape.retry_after = Some(throttled.retry_after);
            }
            return Reply::Error(EcsError::of("Throttling.User"));
        }
    }

    let fired = lock(&shared.faults).fire(
        &action,
        Scope::Request {
            ids: &record.instance_ids,
            per_instance: actions::is_per_instance(&action, params),
        },
        roll,
    );
    if !fired.latency.is_zero() {
        tokio::time::sleep(fired.latency).await;
    }
    let mut after_action = None;
    match fired.outcome {
        Some(Outcome::Error(e)) => return Reply::Error(e),
        Some(Outcome::Transport {
            kind,
            after_action: false,
        }) => return Reply::Transport(kind, None),
        Some(Outcome::Transport {
            kind,
            after_action: true,
        }) => after_action = Some(kind),
        None => {}
    }

    let ctx = Context {
        shared,
        params,
        principal: principal.as_ref(),
        now: Instant::now(),
        now_ts: jiff::Timestamp::now(),
    };
    let answer = actions::dispatch(&action, &ctx);
    record.acted = !record.dry_run;
    let reply = match answer {
        Ok(fields) => {
            record.instance_results = instance_results(&fields);
            Reply::Success(render::success_body(&record.request_id, fields))
        }
        Err(e) => Reply::Error(e),
    };
    if !fired.latency_after.is_zero() {
        tokio::time::sleep(fired.latency_after).await;
    }
    match after_action {
        None => reply,
        Some(kind) => {
            let full = match &reply {
                Reply::Success(body) => serde_json::to_vec(body).ok(),
                Reply::Error(e) => {
                    serde_json::to_vec(&render::error_body(&record.request_id, &shape.host_id, e))
                        .ok()
                }
                Reply::Transport(..) => None,
            };
            if let Reply::Error(e) = &reply {
                record.error_code = Some(e.code.clone());
            }
            Reply::Transport(kind, full)
        }
    }
}

/// The per-instance codes of a `SuccessFirst` batch answer (`InstanceResponses`), if any.
fn instance_results(fields: &serde_json::Map<String, Value>) -> Vec<InstanceResult> {
    fields
        .get("InstanceResponses")
        .and_then(|r| r.get("InstanceResponse"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| InstanceResult {
                    instance_id: text(item, "InstanceId"),
                    code: text(item, "Code"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(item: &Value, name: &str) -> String {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
