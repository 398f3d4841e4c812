//! Sending one signed request over HTTP and reading its answer within limits.
//!
//! The [`EcsClient`](super::EcsClient) hands a [`SignedRequest`] here; what comes back is the raw
//! answer (status, headers and body) or an [`EcsError`] for the transport:
//! [`EcsError::Unreachable`] when nothing usable arrived (the detail never holds the URL or its
//! query; `request_sent` is false only when reqwest failed while connecting or building the
//! request, so not one byte was written), [`EcsError::Malformed`] when the body was cut short or
//! exceeds [`MAX_BODY_BYTES`].

use std::time::Duration;

use super::rpc::SignedRequest;
use crate::ecs::error::{EcsError, RETRY_AFTER_HEADER, parse_retry_after};
use crate::ecs::http::{self, BodyError};

/// Largest answer body read, so a huge or endless body cannot exhaust memory.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An HTTP answer, not yet interpreted.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// HTTP status code.
    pub http_status: u16,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The `x-acs-retry-after` header as a duration (milliseconds), when present and positive.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(RETRY_AFTER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
    }
}

/// POSTs `request` to `<base_url>/?<query>` with an empty body and reads the answer, all within
/// `timeout` (connecting, sending, and reading the whole body).
pub async fn send(
    http: &reqwest::Client,
    base_url: &str,
    request: &SignedRequest,
    timeout: Duration,
) -> Result<RawAnswer, EcsError> {
    let url = format!("{}/?{}", base_url.trim_end_matches('/'), request.query);
    let response = http
        .post(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| unreachable_error(&e, request, timeout))?;
    let http_status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_capped(response, http_status, request, timeout).await?;
    Ok(RawAnswer {
        http_status,
        headers,
        body,
    })
}

/// Reads the body within [`MAX_BODY_BYTES`]; a timeout while reading is "unreachable", any
/// other failure a cut-short (malformed) answer.
async fn read_capped(
    response: reqwest::Response,
    http_status: u16,
    request: &SignedRequest,
    timeout: Duration,
) -> Result<Vec<u8>, EcsError> {
    http::read_capped(response, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => EcsError::Malformed {
                http_status,
                detail: format!("response body larger than {MAX_BODY_BYTES} bytes"),
            },
            BodyError::CutShort { error, .. } if error.is_timeout() => {
                unreachable_error(&error, request, timeout)
            }
            BodyError::CutShort { read, error } => EcsError::Malformed {
                http_status,
                detail: format!(
                    "response body cut short after {read} bytes: {}",
                    error_chain(&error, request)
                ),
            },
        })
}

/// An [`EcsError::Unreachable`] for a failed send, without URL or query.
///
/// `request_sent` is false only for what reqwest reports as a connect error (DNS, TCP, TLS
/// handshake, connect timeout: the connection never carried a byte of the request) or a builder
/// error. A timeout that is not a connect error, a reset or close after writing, or any error
/// while reading counts as sent: the request may have reached ECS.
fn unreachable_error(err: &reqwest::Error, request: &SignedRequest, timeout: Duration) -> EcsError {
    let chain = error_chain(err, request);
    let request_sent = !(err.is_connect() || err.is_builder());
    let detail = if err.is_connect() {
        format!("could not connect: {chain}")
    } else if err.is_timeout() {
        format!("no answer within {} ms: {chain}", timeout.as_millis())
    } else {
        chain
    };
    EcsError::Unreachable {
        detail,
        request_sent,
    }
}

/// The error and its sources as one line, with the URL removed and known values scrubbed.
fn error_chain(err: &reqwest::Error, request: &SignedRequest) -> String {
    let mut parts = Vec::new();
    let source = std::error::Error::source(err);
    // reqwest's own Display names the URL ("… for url (…)"), so take its kind words only.
    parts.push(if err.is_timeout() {
        "operation timed out".to_owned()
    } else if err.is_connect() {
        "connection error".to_owned()
    } else if err.is_body() {
        "error reading the body".to_owned()
    } else {
        "error sending the request".to_owned()
    });
    http::push_sources(&mut parts, source);
    let joined = parts.join(": ");
    strip_query(&request.redactor.redact(&joined))
}

/// Cuts anything that looks like a query string (`?…` up to the next space) out of `text`.
fn strip_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_query = false;
    for c in text.chars() {
        if c == '?' {
            in_query = true;
            out.push_str("?<query>");
        } else if in_query && (c.is_whitespace() || c == ')') {
            in_query = false;
            out.push(c);
        } else if !in_query {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_cut_out() {
        assert_eq!(
            strip_query("error for url (http://h/?A=1&Signature=x) done"),
            "error for url (http://h/?<query>) done"
        );
        assert_eq!(strip_query("no query here"), "no query here");
    }
}
