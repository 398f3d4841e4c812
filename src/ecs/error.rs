//! The typed error of one ECS call, and how an error response becomes one.
//!
//! The [`client`](super::client) returns [`EcsError`]; the [`catalogue`](super::catalogue) turns
//! it into a condition reason and a retry class; the controller copies `code`, `message`,
//! `http_status` and `request_id` into `status.lastError`. Text that came from the network passes
//! a [`Redactor`] first, and no variant ever holds the signed URL or its query string.
//!
//! Every error also says whether the request reached ECS ([`EcsError::delivery`]): write calls
//! (StartInstance(s), StopInstance(s)) take no idempotency token, so a write whose outcome is
//! unknown must never be sent again blindly, while one that was never sent may be. The answer's
//! `x-acs-retry-after` header, when present, is kept ([`EcsError::retry_after`]).

use std::time::Duration;

use serde::Deserialize;

use super::redaction::Redactor;

/// Longest `HttpStatus` snippet, in characters.
const SNIPPET_CHARS: usize = 120;
/// Longest error message kept from an ECS error body, in characters.
pub(crate) const MESSAGE_CHARS: usize = 1024;

/// The response header by which the API gateway says how long to wait before calling again
/// (throttling). Its value is a whole number of **milliseconds**: the official SDKs read it so
/// (the Darabonba runtimes' throttling retry and their tests, e.g. `"2000"` → 2 s).
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";

/// Whether a failed call's request reached ECS, and so whether it may be sent again.
///
/// The rule, by error:
/// - [`EcsError::InvalidRequest`] → `NotSent` (refused before anything was sent).
/// - [`EcsError::Unreachable`] with `request_sent: false` → `NotSent`: the failure happened while
///   establishing the connection (reqwest's `is_connect`: DNS, TCP refused or unreachable, TLS
///   handshake, connect timeout) or while building the request (`is_builder`), or the call's
///   deadline had passed before it was sent. Not one byte of the request was written.
/// - [`EcsError::Unreachable`] with `request_sent: true` → `Unknown`: everything else after the
///   send started, such as a timeout (the client's or the call's deadline) that fired after the
///   connection was made or during it (reqwest does not say which phase its total timeout cut
///   short, so it counts as sent), a connection reset or closed after the request was written,
///   an error reading the answer.
/// - [`EcsError::Malformed`] → `Unknown`: an answer arrived but does not say what ECS did (a 2xx
///   body that is not the expected JSON, a body cut short or too large, a non-JSON error body).
/// - [`EcsError::HttpStatus`] (a non-JSON answer with status ≥ 500) → `Unknown`.
/// - [`EcsError::Api`] with status ≥ 500 (`InternalError`, `ServiceUnavailable`, …) → `Unknown`:
///   the call may have been carried out before the failure.
/// - [`EcsError::Api`] with status < 500 → `Answered`: ECS refused the call with an error code
///   (throttled, invalid, not allowed, wrong state) and did not carry it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Nothing reached ECS: sending the same request again is safe.
    NotSent,
    /// The request may have reached ECS and may have been carried out: a write must be verified
    /// (by reading the instance) before it is sent again.
    Unknown,
    /// ECS answered with an error code below HTTP 500: it refused the call and did nothing.
    Answered,
}

impl Delivery {
    /// `NotSent`, `Unknown` or `Answered`, for logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotSent => "NotSent",
            Self::Unknown => "Unknown",
            Self::Answered => "Answered",
        }
    }
}

/// Why an ECS call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// ECS answered with an error body (`Code`, `Message`, `RequestId`).
    #[error("ECS error {code} (HTTP {http_status}): {message}")]
    Api {
        /// The ECS error code, e.g. `OperationDenied.NoStock`.
        code: String,
        /// The ECS error message.
        message: String,
        /// The HTTP status of the answer.
        http_status: u16,
        /// The ECS `RequestId`, for support tickets.
        request_id: Option<String>,
        /// The answer's `x-acs-retry-after` (sent with throttling), when present and positive.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, DNS, TLS, or a timeout.
    #[error("ECS endpoint unreachable: {detail}")]
    Unreachable {
        /// What went wrong (never the URL or its query string).
        detail: String,
        /// False only when nothing of the request was written (see [`Delivery`]).
        request_sent: bool,
    },
    /// An answer that could not be understood: a 2xx body that is not the expected JSON, a
    /// truncated or oversized body, or a non-JSON error body with a status below 500.
    #[error("malformed ECS response (HTTP {http_status}): {detail}")]
    Malformed {
        /// The HTTP status of the answer.
        http_status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// A non-JSON error answer with status ≥ 500, such as a proxy's HTML 502 page.
    #[error("ECS endpoint answered HTTP {http_status}: {snippet}")]
    HttpStatus {
        /// The HTTP status of the answer.
        http_status: u16,
        /// The start of the body as text (tags stripped, whitespace collapsed, short).
        snippet: String,
        /// The answer's `x-acs-retry-after`, when present and positive.
        retry_after: Option<Duration>,
    },
    /// The call was not sent because its input is invalid (a programming error in the caller,
    /// such as more than 100 instance IDs in one `DescribeInstances`, or a malformed region ID).
    #[error("invalid ECS request: {detail}")]
    InvalidRequest {
        /// What was wrong with the input.
        detail: String,
    },
}

impl EcsError {
    /// The ECS error code, for [`EcsError::Api`].
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The ECS error message, for [`EcsError::Api`].
    #[must_use]
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The ECS `RequestId`, when the answer carried one.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of the answer, when there was one.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api { http_status, .. }
            | Self::Malformed { http_status, .. }
            | Self::HttpStatus { http_status, .. } => Some(*http_status),
            Self::Unreachable { .. } | Self::InvalidRequest { .. } => None,
        }
    }

    /// Whether the request reached ECS (the rule is on [`Delivery`]).
    #[must_use]
    pub fn delivery(&self) -> Delivery {
        match self {
            Self::InvalidRequest { .. }
            | Self::Unreachable {
                request_sent: false,
                ..
            } => Delivery::NotSent,
            Self::Api { http_status, .. } if *http_status < 500 => Delivery::Answered,
            Self::Api { .. }
            | Self::Unreachable { .. }
            | Self::Malformed { .. }
            | Self::HttpStatus { .. } => Delivery::Unknown,
        }
    }

    /// How long the gateway asked to wait before the next call (`x-acs-retry-after`), when the
    /// answer said so.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } | Self::HttpStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The same error with `retry_after` set (kept only by [`EcsError::Api`] and
    /// [`EcsError::HttpStatus`], the answers that carry a status and a code or page).
    #[must_use]
    pub fn with_retry_after(mut self, value: Option<Duration>) -> Self {
        if let Self::Api { retry_after, .. } | Self::HttpStatus { retry_after, .. } = &mut self {
            *retry_after = value;
        }
        self
    }

    /// Interprets a non-2xx answer: a JSON error body with a code becomes [`EcsError::Api`];
    /// anything else becomes [`EcsError::HttpStatus`] (status ≥ 500) or [`EcsError::Malformed`].
    #[must_use]
    pub fn from_error_response(http_status: u16, body: &[u8], redactor: &Redactor) -> Self {
        if let Some(parsed) = ErrorBody::parse(body) {
            return Self::Api {
                code: redactor.redact(&parsed.code),
                message: truncate_chars(&redactor.redact(&parsed.message), MESSAGE_CHARS),
                http_status,
                request_id: parsed.request_id,
                retry_after: None,
            };
        }
        if http_status >= 500 {
            Self::HttpStatus {
                http_status,
                snippet: snippet(body, redactor),
                retry_after: None,
            }
        } else {
            Self::Malformed {
                http_status,
                detail: format!(
                    "error answer without a JSON error code: {}",
                    snippet(body, redactor)
                ),
            }
        }
    }
}

/// Parses an `x-acs-retry-after` value: a whole number of milliseconds, surrounding whitespace
/// allowed. Zero, negative, empty or non-numeric values mean "not said" (`None`), as in the SDKs.
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let millis: u64 = value.trim().parse().ok()?;
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// The JSON error body of ECS (`Code`/`Message`/`RequestId`, or the lowercase spellings).
#[derive(Debug, Deserialize)]
struct RawErrorBody {
    #[serde(rename = "Code", alias = "code")]
    code: Option<serde_json::Value>,
    #[serde(rename = "Message", alias = "message")]
    message: Option<serde_json::Value>,
    #[serde(rename = "RequestId", alias = "requestId")]
    request_id: Option<serde_json::Value>,
}

/// A parsed error body with a non-empty code.
#[derive(Debug, PartialEq, Eq)]
struct ErrorBody {
    code: String,
    message: String,
    request_id: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Option<Self> {
        let raw: RawErrorBody = serde_json::from_slice(body).ok()?;
        let code = value_text(raw.code)?;
        Some(Self {
            code,
            message: value_text(raw.message).unwrap_or_default(),
            request_id: value_text(raw.request_id),
        })
    }
}

/// A JSON string or number as text; `None` for null, empty or other shapes.
fn value_text(value: Option<serde_json::Value>) -> Option<String> {
    let text = match value? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// The start of a body as short plain text: tags stripped, whitespace collapsed, redacted.
#[must_use]
pub(crate) fn snippet(body: &[u8], redactor: &Redactor) -> String {
    let text = String::from_utf8_lossy(body);
    let mut plain = String::with_capacity(text.len().min(4096));
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c if c.is_whitespace() || c.is_control() => plain.push(' '),
            c => plain.push(c),
        }
        if plain.len() > 4096 {
            break;
        }
    }
    let collapsed = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    let redacted = redactor.redact(&collapsed);
    if redacted.is_empty() {
        "(empty body)".to_owned()
    } else {
        truncate_chars(&redacted, SNIPPET_CHARS)
    }
}

/// `text` cut to at most `max` characters, with `…` when it was cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> EcsError {
        EcsError::from_error_response(status, body.as_bytes(), &Redactor::new())
    }

    #[test]
    fn parses_capitalised_error_body() {
        let err = api(
            403,
            r#"{"RequestId":"540CFF28-1","HostId":"ecs.aliyuncs.com","Code":"OperationDenied.NoStock","Message":"Sold out","Recommend":"https://x"}"#,
        );
        assert_eq!(
            err,
            EcsError::Api {
                code: "OperationDenied.NoStock".into(),
                message: "Sold out".into(),
                http_status: 403,
                request_id: Some("540CFF28-1".into()),
                retry_after: None,
            }
        );
        assert_eq!(err.code(), Some("OperationDenied.NoStock"));
        assert_eq!(err.message(), Some("Sold out"));
        assert_eq!(err.request_id(), Some("540CFF28-1"));
        assert_eq!(err.http_status(), Some(403));
    }

    #[test]
    fn parses_lowercase_error_body() {
        let err = api(
            400,
            r#"{"requestId":"R2","code":"Throttling.User","message":"slow down"}"#,
        );
        assert_eq!(err.code(), Some("Throttling.User"));
        assert_eq!(err.message(), Some("slow down"));
        assert_eq!(err.request_id(), Some("R2"));
    }

    #[test]
    fn error_body_without_message_or_request_id() {
        let err = api(500, r#"{"Code":"InternalError"}"#);
        assert_eq!(
            err,
            EcsError::Api {
                code: "InternalError".into(),
                message: String::new(),
                http_status: 500,
                request_id: None,
                retry_after: None,
            }
        );
    }

    #[test]
    fn html_502_becomes_http_status_with_short_snippet() {
        let body = format!(
            "<html><head><title>502 Bad Gateway</title></head><body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>{}</body></html>",
            "x".repeat(5000)
        );
        let err = api(502, &body);
        let EcsError::HttpStatus {
            http_status,
            snippet,
            ..
        } = &err
        else {
            panic!("expected HttpStatus, got {err:?}");
        };
        assert_eq!(*http_status, 502);
        assert!(
            snippet.starts_with("502 Bad Gateway 502 Bad Gateway nginx"),
            "{snippet}"
        );
        assert!(snippet.chars().count() <= SNIPPET_CHARS + 1, "{snippet}");
        assert_eq!(err.code(), None);
        assert_eq!(err.http_status(), Some(502));
    }

    #[test]
    fn non_json_4xx_and_json_without_code_are_malformed() {
        for (status, body) in [
            (400, "Bad Request"),
            (404, ""),
            (403, r#"{"Message":"no code here"}"#),
            (400, r#"{"Code":""}"#),
            (400, r#"["Code"]"#),
        ] {
            let err = api(status, body);
            assert!(
                matches!(err, EcsError::Malformed { http_status, .. } if http_status == status),
                "{status} {body:?} gave {err:?}"
            );
        }
        assert!(
            matches!(api(503, ""), EcsError::HttpStatus { http_status: 503, ref snippet, .. } if snippet == "(empty body)")
        );
    }

    #[test]
    fn echoed_security_token_is_redacted() {
        let mut redactor = Redactor::new();
        redactor.add("CAIS+sts/token==");
        let body = r#"{"Code":"SignatureDoesNotMatch","Message":"server string to sign is:POST&%2F&SecurityToken%3DCAIS%252Bsts%252Ftoken%253D%253D","RequestId":"R"}"#;
        let err = EcsError::from_error_response(400, body.as_bytes(), &redactor);
        let text = format!("{err} {err:?}");
        assert!(!text.contains("CAIS"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn long_messages_are_cut() {
        let body = format!(r#"{{"Code":"X","Message":"{}"}}"#, "é".repeat(5000));
        let err = api(400, &body);
        assert_eq!(
            err.message().map(|m| m.chars().count()),
            Some(MESSAGE_CHARS + 1)
        );
    }

    #[test]
    fn display_never_shows_the_request_id() {
        let err = api(403, r#"{"Code":"C","Message":"M","RequestId":"REQ-123"}"#);
        assert!(!err.to_string().contains("REQ-123"));
    }

    #[test]
    fn retry_after_is_whole_milliseconds() {
        assert_eq!(parse_retry_after("2000"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 42 "), Some(Duration::from_millis(42)));
        for none in ["0", "", "-5", "1.5", "soon", "1e3"] {
            assert_eq!(parse_retry_after(none), None, "{none:?}");
        }
        let throttled = api(400, r#"{"Code":"Throttling.User"}"#)
            .with_retry_after(Some(Duration::from_millis(1500)));
        assert_eq!(throttled.retry_after(), Some(Duration::from_millis(1500)));
        let page = api(503, "<h1>busy</h1>").with_retry_after(Some(Duration::from_secs(1)));
        assert_eq!(page.retry_after(), Some(Duration::from_secs(1)));
        // Errors without an answer status cannot carry it.
        let refused = EcsError::InvalidRequest { detail: "d".into() }
            .with_retry_after(Some(Duration::from_secs(1)));
        assert_eq!(refused.retry_after(), None);
        assert_eq!(api(400, r#"{"Code":"Throttling"}"#).retry_after(), None);
    }

    #[test]
    fn delivery_rule() {
        let cases = [
            (
                EcsError::InvalidRequest { detail: "d".into() },
                Delivery::NotSent,
            ),
            (
                EcsError::Unreachable {
                    detail: "refused".into(),
                    request_sent: false,
                },
                Delivery::NotSent,
            ),
            (
                EcsError::Unreachable {
                    detail: "timed out".into(),
                    request_sent: true,
                },
                Delivery::Unknown,
            ),
            (
                api(400, r#"{"Code":"Throttling.User"}"#),
                Delivery::Answered,
            ),
            (
                api(403, r#"{"Code":"OperationDenied.NoStock"}"#),
                Delivery::Answered,
            ),
            (
                api(404, r#"{"Code":"InvalidInstanceId.NotFound"}"#),
                Delivery::Answered,
            ),
            (api(499, r#"{"Code":"X"}"#), Delivery::Answered),
            (api(500, r#"{"Code":"InternalError"}"#), Delivery::Unknown),
            (
                api(503, r#"{"Code":"ServiceUnavailable"}"#),
                Delivery::Unknown,
            ),
            (api(502, "<h1>bad gateway</h1>"), Delivery::Unknown),
            (api(400, "Bad Request"), Delivery::Unknown),
            (
                EcsError::Malformed {
                    http_status: 200,
                    detail: "not JSON".into(),
                },
                Delivery::Unknown,
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(err.delivery(), expected, "{err:?}");
        }
        assert_eq!(Delivery::Unknown.as_str(), "Unknown");
    }
}
