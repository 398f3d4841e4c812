//! The REST verbs on resources, independent of HTTP: get, list, create, update (PUT), patch,
//! delete, deletecollection and watch, with the API server's semantics (resourceVersions,
//! `/status` separation, generation, finalizers, dryRun, CRD side effects). The server module
//! parses requests into a [`Target`] plus options and renders the [`Reply`].

pub mod admit;
pub mod create;
pub mod delete;
pub mod patch;
pub mod read;
pub mod update;
pub mod watch;

use std::sync::Arc;

use serde_json::Value;

use crate::api_error::ApiError;
use crate::object;
use crate::resource::ResourceType;
use crate::selector::Selectors;
use crate::table::IncludeObject;

/// What a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource (view) addressed.
    pub rt: Arc<ResourceType>,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
    /// True for the `/status` subresource.
    pub status: bool,
}

impl Target {
    /// The object key the URL names.
    pub fn key(&self) -> object::ObjectKey {
        object::ObjectKey::new(
            self.namespace.as_deref().unwrap_or(""),
            self.name.as_deref().unwrap_or(""),
        )
    }

    /// The name from the URL ("" for collections).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields with a `Warning` header (the server default).
    #[default]
    Warn,
    /// Reject unknown fields (kubectl's default).
    Strict,
}

/// Options of writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (apply; conflicts are never raised, so it changes nothing).
    pub force: bool,
}

/// Options of list, watch and deletecollection.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Selectors.
    pub selectors: Selectors,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `limit` (0: everything).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
}

/// How a reply body is rendered.
#[derive(Debug, Clone)]
pub enum Body {
    /// A JSON value.
    Json(Value),
    /// Pre-serialized JSON (large lists).
    Raw(Vec<u8>),
}

/// A successful reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub code: u16,
    /// Body.
    pub body: Body,
    /// `Warning` headers.
    pub warnings: Vec<String>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(code: u16, body: Value) -> Self {
        Self {
            code,
            body: Body::Json(body),
            warnings: Vec::new(),
        }
    }
}

/// Table output requested by `Accept`.
#[derive(Debug, Clone, Copy)]
pub struct TableRequest {
    /// `includeObject`.
    pub include: IncludeObject,
}

/// True for the CRD resource.
pub fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

/// True for namespaces.
pub fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

/// Checks a request body is an object of the addressed kind (filling `apiVersion` / `kind`
/// when absent) and returns it.
///
/// # Errors
///
/// 400 when the body is not an object, or names another `apiVersion` or `kind`.
pub fn check_body(rt: &ResourceType, body: Value) -> Result<Value, ApiError> {
    let Value::Object(mut m) = body else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    };
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), Value::String(rt.api_version.clone()));
        }
        Some(v) if v == rt.api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                rt.api_version
            )));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), Value::String(rt.kind.clone()));
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "{k} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind ({})",
                rt.version, rt.kind, rt.kind
            )));
        }
    }
    if !m
        .get("metadata")
        .is_none_or(|v| v.is_object() || v.is_null())
    {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: metadata must be an object",
            rt.kind, rt.version, rt.kind
        )));
    }
    Ok(Value::Object(m))
}

/// A `Status` of kind Success (deletes of kinds that do not return the object).
pub fn success_status(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = serde_json::json!({"name": name, "kind": rt.plural, "uid": uid});
    if !rt.group.is_empty() {
        details["group"] = Value::String(rt.group.clone());
    }
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_checks() {
        let rt = ResourceType::builtin("", "v1", "configmaps", "ConfigMap");
        let filled = check_body(&rt, json!({"metadata": {"name": "a"}})).expect("ok");
        assert_eq!(filled["apiVersion"], "v1");
        assert_eq!(filled["kind"], "ConfigMap");
        assert_eq!(
            check_body(&rt, json!({"kind": "Secret"}))
                .expect_err("kind")
                .code(),
            400
        );
        assert_eq!(
            check_body(&rt, json!({"apiVersion": "v2"}))
                .expect_err("version")
                .code(),
            400
        );
        assert_eq!(check_body(&rt, json!([1])).expect_err("array").code(), 400);
        assert_eq!(
            check_body(&rt, json!({"metadata": 1}))
                .expect_err("meta")
                .code(),
            400
        );
    }
}
