//! Kubernetes `Status` failures: every error the sandbox answers with, shaped like a real API
//! server's (`kind: Status`, `reason`, `code`, `details.causes[]`). REST handlers return
//! [`ApiError`]; the server layer turns it into an HTTP response.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::field_error::FieldError;

/// The machine-readable `reason` of a `Status` failure (the values Kubernetes uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 406.
    NotAcceptable,
    /// 409, the name is taken.
    AlreadyExists,
    /// 409, stale resourceVersion or failed precondition.
    Conflict,
    /// 410, history compacted.
    Expired,
    /// 413.
    RequestEntityTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 422.
    Invalid,
    /// 500.
    InternalError,
    /// 504.
    Timeout,
}

impl Reason {
    /// The wire name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable => "NotAcceptable",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Expired => "Expired",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::Invalid => "Invalid",
            Self::InternalError => "InternalError",
            Self::Timeout => "Timeout",
        }
    }

    /// The HTTP status code that goes with the reason.
    pub fn code(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable => 406,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::Expired => 410,
            Self::RequestEntityTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Invalid => 422,
            Self::InternalError => 500,
            Self::Timeout => 504,
        }
    }
}

/// `details` of a `Status`: which object failed and, for `Invalid`, every field cause.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusDetails {
    /// Object name, when known.
    pub name: String,
    /// API group ("" for core).
    pub group: String,
    /// Kind (for Invalid) or plural resource (for `NotFound`, `AlreadyExists`, Conflict).
    pub kind: String,
    /// Field causes.
    pub causes: Vec<FieldError>,
}

/// A failed request, rendered as a Kubernetes `Status` object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason:?} ({code}): {message}", reason = self.reason, code = self.reason.code())]
pub struct ApiError {
    /// The reason (also decides the HTTP code).
    pub reason: Reason,
    /// Human-readable message, as kubectl prints it after `Error from server (Reason):`.
    pub message: String,
    /// Optional details.
    pub details: Option<Box<StatusDetails>>,
}

/// `group/resource` as Kubernetes prints it in messages: `secrets`, `ecsinstancepowers.ecspower.dev`.
pub fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.details = Some(Box::new(StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes: Vec::new(),
        }));
        self
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Reason::Forbidden, message)
    }

    /// 404 for a path that names no resource (`the server could not find the requested resource`).
    pub fn no_such_resource() -> Self {
        let mut e = Self::new(
            Reason::NotFound,
            "the server could not find the requested resource",
        );
        e.details = Some(Box::default());
        e
    }

    /// 404 `<resource> "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::NotFound,
            format!("{} \"{name}\" not found", group_resource(group, resource)),
        )
        .with_details(name, group, resource)
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::AlreadyExists,
            format!(
                "{} \"{name}\" already exists",
                group_resource(group, resource)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 409 `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                group_resource(group, resource)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 409 for an update carrying a stale resourceVersion.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with field causes: `<Kind>.<group> "<name>" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let listed = match causes.as_slice() {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut e = Self::new(
            Reason::Invalid,
            format!("{qualified} \"{name}\" is invalid: {listed}"),
        )
        .with_details(name, group, kind);
        if let Some(d) = e.details.as_mut() {
            d.causes = causes;
        }
        e
    }

    /// 422 without field causes (a patch that cannot be applied).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(Reason::Invalid, message)
    }

    /// 405 `MethodNotAllowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            Reason::MethodNotAllowed,
            "the server does not allow this method on the requested resource",
        )
        .with_details("", "", "")
    }

    /// 406 `NotAcceptable`.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(Reason::NotAcceptable, message)
    }

    /// 415 `UnsupportedMediaType` listing what is accepted.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 410 Expired.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            Reason::RequestEntityTooLarge,
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 504 for a resourceVersion newer than the store has.
    pub fn too_large_resource_version(asked: u64, current: u64) -> Self {
        Self::new(
            Reason::Timeout,
            format!("Too large resource version: {asked}, current: {current}"),
        )
        .with_details("", "", "")
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, message)
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    /// The `Status` object as JSON.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code(),
        });
        if let Some(d) = &self.details {
            let mut details = serde_json::Map::new();
            if !d.name.is_empty() {
                details.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                details.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), json!(d.kind));
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d.causes.iter().map(FieldError::to_cause).collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_cluster_shape() {
        let s = ApiError::not_found("ecspower.dev", "ecsinstancepowers", "x").to_status();
        assert_eq!(
            s["message"],
            "ecsinstancepowers.ecspower.dev \"x\" not found"
        );
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "ecsinstancepowers");
        assert_eq!(s["details"]["group"], "ecspower.dev");
        let core = ApiError::not_found("", "secrets", "s").to_status();
        assert_eq!(core["message"], "secrets \"s\" not found");
        assert!(core["details"].get("group").is_none());
    }

    #[test]
    fn invalid_lists_causes() {
        let one = ApiError::invalid(
            "ecspower.dev",
            "EcsInstancePower",
            "x",
            vec![FieldError::required("spec.regionId")],
        );
        assert_eq!(
            one.message,
            "EcsInstancePower.ecspower.dev \"x\" is invalid: spec.regionId: Required value"
        );
        let two = ApiError::invalid(
            "",
            "Secret",
            "s",
            vec![FieldError::required("a"), FieldError::forbidden("b", "no")],
        );
        assert_eq!(
            two.message,
            "Secret \"s\" is invalid: [a: Required value, b: Forbidden: no]"
        );
        let s = two.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][1]["reason"], "FieldValueForbidden");
        assert_eq!(s["details"]["causes"][1]["field"], "b");
        assert_eq!(s["details"]["causes"][1]["message"], "Forbidden: no");
    }

    #[test]
    fn stale_update_is_conflict() {
        let e = ApiError::stale("", "configmaps", "c");
        assert_eq!(e.code(), 409);
        assert!(e.message.starts_with(
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified"
        ));
    }
}
