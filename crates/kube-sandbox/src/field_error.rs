//! Field-level validation errors (`field.Error` in Kubernetes): the `causes[]` of a 422 Invalid
//! `Status`, rendered exactly as an API server renders them
//! (`spec.instanceId: Invalid value: "x": ...`).

use std::fmt;

use serde_json::{Value, json};

/// The kind of a field error; decides the `reason` and the message prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueTypeInvalid`.
    TypeInvalid,
    /// `FieldValueNotSupported`.
    NotSupported,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTooMany`.
    TooMany,
}

impl FieldErrorKind {
    /// The `reason` of the cause.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
        }
    }

    /// Parses a CEL rule's `reason` (x-kubernetes-validations), defaulting to Invalid.
    pub fn from_reason(reason: &str) -> Self {
        match reason {
            "FieldValueRequired" => Self::Required,
            "FieldValueForbidden" => Self::Forbidden,
            "FieldValueDuplicate" => Self::Duplicate,
            _ => Self::Invalid,
        }
    }
}

/// One field error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Kind.
    pub kind: FieldErrorKind,
    /// Dotted field path (`spec.instanceId`, `spec.items[0].name`).
    pub field: String,
    /// The rendered bad value (`"x"`, `5`), if the kind shows one.
    pub value: Option<String>,
    /// Free text after the value.
    pub detail: String,
}

/// Renders a JSON value the way Go's `field.Error` prints a bad value.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

impl FieldError {
    fn new(
        kind: FieldErrorKind,
        field: &str,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.to_string(),
            value,
            detail: detail.into(),
        }
    }

    /// `Required value`.
    pub fn required(field: &str) -> Self {
        Self::new(FieldErrorKind::Required, field, None, "")
    }

    /// `Required value: <detail>`.
    pub fn required_because(field: &str, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(field: &str, value: &Value, detail: impl Into<String>) -> Self {
        Self::new(
            FieldErrorKind::Invalid,
            field,
            Some(render_value(value)),
            detail,
        )
    }

    /// `Invalid value: "<type>": <detail>` (type errors and CEL failures show the type name).
    pub fn type_invalid(field: &str, type_name: &str, detail: impl Into<String>) -> Self {
        Self::new(
            FieldErrorKind::TypeInvalid,
            field,
            Some(render_value(&json!(type_name))),
            detail,
        )
    }

    /// `Invalid value: "<type>": <detail>` with an arbitrary kind (CEL rules may set the reason).
    pub fn rule(
        kind: FieldErrorKind,
        field: &str,
        type_name: &str,
        detail: impl Into<String>,
    ) -> Self {
        let value = match kind {
            FieldErrorKind::Required | FieldErrorKind::Forbidden => None,
            _ => Some(render_value(&json!(type_name))),
        };
        Self::new(kind, field, value, detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &Value, supported: &[Value]) -> Self {
        let list: Vec<String> = supported.iter().map(render_value).collect();
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(render_value(value)),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Self::new(
            FieldErrorKind::Duplicate,
            field,
            Some(render_value(value)),
            "",
        )
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(field: &str, max: u64) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    /// `Too many: <n>: must have at most <max> items`.
    pub fn too_many(field: &str, n: usize, max: u64) -> Self {
        Self::new(
            FieldErrorKind::TooMany,
            field,
            Some(n.to_string()),
            format!("must have at most {max} items"),
        )
    }

    /// The message without the field (`Invalid value: "x": ...`), as in `causes[].message`.
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The `causes[]` entry.
    pub fn to_cause(&self) -> Value {
        json!({"reason": self.kind.reason(), "message": self.body(), "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Builds child field paths (`spec` + `instanceId`, `items` + `[0]`).
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_go() {
        let e = FieldError::invalid(
            "spec.instanceId",
            &json!("bad"),
            "spec.instanceId in body should match '^i-$'",
        );
        assert_eq!(
            e.to_string(),
            "spec.instanceId: Invalid value: \"bad\": spec.instanceId in body should match '^i-$'"
        );
        let e = FieldError::not_supported(
            "spec.desiredState",
            &json!("Paused"),
            &[json!("Running"), json!("Stopped")],
        );
        assert_eq!(
            e.to_string(),
            "spec.desiredState: Unsupported value: \"Paused\": supported values: \"Running\", \"Stopped\""
        );
        assert_eq!(
            FieldError::too_long("a", 64).to_string(),
            "a: Too long: may not be more than 64 bytes"
        );
        assert_eq!(
            FieldError::too_many("a", 5, 3).to_string(),
            "a: Too many: 5: must have at most 3 items"
        );
        assert_eq!(
            FieldError::invalid("n", &json!(5), "x").body(),
            "Invalid value: 5: x"
        );
        assert_eq!(
            FieldError::type_invalid(
                "spec.f",
                "string",
                "spec.f in body must be of type boolean: \"string\""
            )
            .to_string(),
            "spec.f: Invalid value: \"string\": spec.f in body must be of type boolean: \"string\""
        );
        assert_eq!(
            FieldError::rule(FieldErrorKind::Forbidden, "x", "string", "no").to_string(),
            "x: Forbidden: no"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(child("spec", "x"), "spec.x");
        assert_eq!(index("spec.items", 2), "spec.items[2]");
    }
}
