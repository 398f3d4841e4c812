//! Answers on the wire: success bodies (`RequestId` plus the action's fields), error bodies
//! (`RequestId`, `HostId`, `Code`, `Message`, `Recommend` with the error's HTTP status), both in
//! JSON or XML, and the broken answers of transport faults.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use super::Format;
use super::xml::to_xml;
use crate::catalogue::EcsError;
use crate::faults::TransportFault;

/// Response extension asking the server to reset the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResetConnection;

const JSON: &str = "application/json;charset=utf-8";
const XML: &str = "text/xml;charset=utf-8";

/// `HostId` of error bodies: the regional endpoint when the region is known.
pub(crate) fn host_id(region: Option<&str>) -> String {
    match region {
        Some(r) if !r.is_empty() => format!("ecs.{r}.aliyuncs.com"),
        _ => "ecs.aliyuncs.com".to_owned(),
    }
}

fn encode(format: Format, root: &str, body: &Value) -> (Vec<u8>, &'static str) {
    match format {
        Format::Json => (serde_json::to_vec(body).unwrap_or_default(), JSON),
        Format::Xml => (to_xml(root, body).into_bytes(), XML),
    }
}

fn respond(status: u16, content_type: &'static str, request_id: &str, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", v);
    }
    response
}

/// The body of a successful answer (before encoding).
pub(crate) fn success_body(request_id: &str, mut fields: Map<String, Value>) -> Value {
    fields.insert("RequestId".to_owned(), Value::String(request_id.to_owned()));
    Value::Object(fields)
}

/// The body of an error answer (before encoding).
pub(crate) fn error_body(request_id: &str, host_id: &str, error: &EcsError) -> Value {
    serde_json::json!({
        "RequestId": request_id,
        "HostId": host_id,
        "Code": error.code,
        "Message": error.message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}",
            error.code
        ),
    })
}

/// A 200 answer `<Action>Response`.
pub(crate) fn success(format: Format, action: &str, request_id: &str, body: &Value) -> Response {
    let (bytes, ct) = encode(format, &format!("{action}Response"), body);
    respond(200, ct, request_id, bytes)
}

/// An error answer with the error's status.
pub(crate) fn error(format: Format, request_id: &str, body: &Value, status: u16) -> Response {
    let (bytes, ct) = encode(format, "Error", body);
    respond(status, ct, request_id, bytes)
}

/// The HTTP status a transport fault shows, if any reaches the client.
pub(crate) fn transport_status(kind: TransportFault) -> Option<u16> {
    match kind {
        TransportFault::Reset => None,
        TransportFault::Truncated | TransportFault::NonJson | TransportFault::Garbage => Some(200),
        TransportFault::Html502 => Some(502),
    }
}

const HTML_502: &str = "<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>Tengine</center>\n</body>\n</html>\n";

/// A broken answer. `full` is the answer the action produced (for `truncated`), if it ran.
pub(crate) fn transport(kind: TransportFault, request_id: &str, full: Option<Vec<u8>>) -> Response {
    match kind {
        TransportFault::Reset => {
            let mut r = Response::new(Body::empty());
            r.extensions_mut().insert(ResetConnection);
            r
        }
        TransportFault::NonJson => respond(
            200,
            JSON,
            request_id,
            b"upstream sent this instead of JSON".to_vec(),
        ),
        TransportFault::Garbage => {
            // Random bytes, with a byte that never occurs in UTF-8 first so no parser takes
            // them for text.
            let mut bytes = vec![0xFF_u8];
            bytes.extend((0..255).map(|_| rand::random::<u8>()));
            respond(200, JSON, request_id, bytes)
        }
        TransportFault::Html502 => {
            let mut r = respond(502, "text/html", request_id, HTML_502.as_bytes().to_vec());
            r.headers_mut().remove("x-acs-request-id");
            r
        }
        TransportFault::Truncated => {
            let full = full.unwrap_or_else(|| {
                serde_json::to_vec(&serde_json::json!({"RequestId": request_id, "TotalCount": 0}))
                    .unwrap_or_default()
            });
            let len = full.len();
            let half = bytes::Bytes::from(full).slice(..len / 2);
            // The first half goes out (the pause lets hyper flush it with the headers), then
            // the body fails and hyper drops the connection short of Content-Length.
            let first = futures::stream::iter([Ok::<_, std::io::Error>(half)]);
            let failure = futures::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "truncated by fault",
                ))
            });
            let mut r = Response::new(Body::from_stream(futures::StreamExt::chain(first, failure)));
            let headers = r.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_fields() {
        let e = EcsError::of("OperationDenied.NoStock");
        let body = error_body("RID", &host_id(Some("cn-hangzhou")), &e);
        for field in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
            assert!(body.get(field).is_some(), "{field}");
        }
        assert_eq!(body["HostId"], "ecs.cn-hangzhou.aliyuncs.com");
        let r = error(Format::Json, "RID", &body, e.status);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], JSON);
        assert_eq!(r.headers()["x-acs-request-id"], "RID");
    }

    #[test]
    fn xml_errors_use_the_error_root() {
        let body = error_body("RID", "ecs.aliyuncs.com", &EcsError::of("InternalError"));
        let r = error(Format::Xml, "RID", &body, 500);
        assert_eq!(r.headers()["content-type"], XML);
    }

    #[test]
    fn transport_answers() {
        assert!(
            transport(TransportFault::Reset, "R", None)
                .extensions()
                .get::<ResetConnection>()
                .is_some()
        );
        assert_eq!(transport(TransportFault::Html502, "R", None).status(), 502);
        let t = transport(TransportFault::Truncated, "R", Some(b"0123456789".to_vec()));
        assert_eq!(t.headers()["content-length"], "10");
        assert_eq!(transport_status(TransportFault::Reset), None);
    }
}
