//! PATCH bodies: JSON patch (RFC 6902, via the `json-patch` crate), JSON merge patch
//! (RFC 7386), strategic merge patch (built-in kinds only, as on a real server; see
//! [`strategic`]) and server-side apply ([`apply`]). Each turns the current object (served view)
//! into the desired one, which then goes through the same update path as a PUT.

pub mod apply;
pub mod strategic;

use serde_json::Value;

use crate::api_error::ApiError;

/// The patch formats, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (also `+json` / `+cbor` is not supported).
    Apply,
}

/// Content types a PATCH accepts.
pub const PATCH_CONTENT_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

impl PatchType {
    /// The patch type of a `Content-Type` header value (parameters ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies a JSON, merge or strategic merge patch to `current` (served view).
/// `custom` marks custom resources, which do not accept strategic merge patches.
///
/// # Errors
///
/// 400 when the body cannot be decoded, 422 when a JSON patch operation fails, 415 for a
/// strategic merge patch on a custom resource, 500 for an apply patch (handled elsewhere).
pub fn apply_patch(
    kind: PatchType,
    current: &Value,
    body: &[u8],
    custom: bool,
) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &patch.0)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        }
        PatchType::Merge => {
            let patch = parse_json(body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, &patch);
        }
        PatchType::StrategicMerge => {
            if custom {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                    &[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                    ],
                ));
            }
            let patch = parse_json(body)?;
            strategic::merge(&mut doc, &patch).map_err(ApiError::bad_request)?;
        }
        PatchType::Apply => {
            return Err(ApiError::internal("apply patches go through patch::apply"));
        }
    }
    Ok(doc)
}

/// Parses an apply patch body (YAML or JSON) into an object.
///
/// # Errors
///
/// 400 when the body is neither YAML nor JSON, or is not an object.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn json_and_merge() {
        let cur = json!({"spec": {"a": 1, "b": [1, 2]}});
        let p = apply_patch(PatchType::Json, &cur, br#"[{"op":"replace","path":"/spec/a","value":2},{"op":"add","path":"/spec/b/-","value":3}]"#, true)
            .expect("applies");
        assert_eq!(p, json!({"spec": {"a": 2, "b": [1, 2, 3]}}));
        let e = apply_patch(
            PatchType::Json,
            &cur,
            br#"[{"op":"test","path":"/spec/a","value":9}]"#,
            true,
        )
        .expect_err("fails");
        assert_eq!(e.code(), 422);
        assert_eq!(
            apply_patch(PatchType::Json, &cur, b"{", true)
                .expect_err("bad")
                .code(),
            400
        );
        let m = apply_patch(
            PatchType::Merge,
            &cur,
            br#"{"spec":{"a":null,"c":"x"}}"#,
            true,
        )
        .expect("merges");
        assert_eq!(m, json!({"spec": {"b": [1, 2], "c": "x"}}));
        let e = apply_patch(PatchType::StrategicMerge, &cur, b"{}", true).expect_err("415");
        assert_eq!(e.code(), 415);
    }

    #[test]
    fn apply_bodies() {
        assert_eq!(
            parse_apply_body(b"a: 1\nb: [x]").expect("yaml"),
            json!({"a": 1, "b": ["x"]})
        );
        assert!(parse_apply_body(b"- 1").is_err());
    }
}
