//! Request and response bodies: decoding objects by `Content-Type` (JSON, YAML, protobuf for the
//! built-in kinds client-go sends typed), reading the body within the size limit, and rendering
//! replies (always JSON, which client-go accepts even when it prefers protobuf) with `Warning`
//! headers.

use axum::body::Body as HttpBody;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::api_error::ApiError;
use crate::protobuf;
use crate::rest::{Body, Reply};

/// The media type of a `Content-Type` value, lowercased, parameters dropped.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object from a request body.
///
/// # Errors
///
/// 400 when the body does not decode, 415 for a media type this server does not read.
pub fn decode_object(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    match media_type(content_type).as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        protobuf::MEDIA_TYPE => protobuf::decode(bytes),
        other => Err(ApiError::unsupported_media_type(
            other,
            &["application/json", "application/yaml", protobuf::MEDIA_TYPE],
        )),
    }
}

/// Reads a whole request body, 413 beyond `limit` bytes.
///
/// # Errors
///
/// 413 when the body is larger than `limit` (or cannot be read).
pub async fn read(body: HttpBody, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}

/// A `Warning` header value (`299 - "text"`).
pub fn warning_value(text: &str) -> Option<HeaderValue> {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_ascii() && !c.is_ascii_control() => vec![c],
            _ => vec!['?'],
        })
        .collect();
    HeaderValue::from_str(&format!("299 - \"{escaped}\"")).ok()
}

/// Renders a JSON response.
pub fn json_response(code: u16, body: Vec<u8>, warnings: &[String]) -> Response {
    let mut resp = (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        if let Some(v) = warning_value(w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Renders a reply.
pub fn render(reply: Reply) -> Response {
    let bytes = match reply.body {
        Body::Json(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Body::Raw(b) => b,
    };
    json_response(reply.code, bytes, &reply.warnings)
}

/// Renders a JSON value with 200.
pub fn ok_json(v: &Value) -> Response {
    json_response(200, serde_json::to_vec(v).unwrap_or_default(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(
            decode_object("application/json; charset=utf-8", br#"{"a":1}"#).expect("json")["a"],
            1
        );
        assert_eq!(
            decode_object("application/yaml", b"a: 1").expect("yaml")["a"],
            1
        );
        assert_eq!(
            decode_object("application/json", b"{")
                .expect_err("bad")
                .code(),
            400
        );
        assert_eq!(
            decode_object("text/plain", b"x").expect_err("415").code(),
            415
        );
        assert_eq!(
            decode_object(protobuf::MEDIA_TYPE, b"x")
                .expect_err("bad pb")
                .code(),
            400
        );
    }

    #[test]
    fn warnings() {
        assert_eq!(
            warning_value("unknown field \"spec.x\"")
                .expect("ascii")
                .to_str()
                .ok(),
            Some("299 - \"unknown field \\\"spec.x\\\"\"")
        );
        let r = json_response(201, b"{}".to_vec(), &["a".into(), "b".into()]);
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers().get_all(header::WARNING).iter().count(), 2);
    }
}
