//! Validation of `metadata` shared by every kind: names (RFC 1123 subdomain / label, DNS-1035,
//! path segment), namespaces, labels, annotations and finalizers, with the API server's messages.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::field_error::FieldError;

/// Which rule a kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds, custom resources).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// DNS-1035 label (services).
    Dns1035,
    /// Any path segment (RBAC kinds: `system:controller:x` is fine).
    PathSegment,
}

const SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const ANNOTATIONS_MAX: usize = 256 * 1024;

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^{fmt}$"))
        .unwrap_or_else(|_| unreachable!("constant pattern {fmt} compiles"))
}

static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| anchored(SUBDOMAIN_FMT));
static LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_FMT));
static DNS1035: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_FMT));
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));

/// Problems with `value` as an RFC 1123 subdomain (empty when fine).
pub fn subdomain_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !SUBDOMAIN.is_match(value) {
        out.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{SUBDOMAIN_FMT}')"
        ));
    }
    out
}

/// Problems with `value` as an RFC 1123 label.
pub fn label_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !LABEL.is_match(value) {
        out.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{LABEL_FMT}')"
        ));
    }
    out
}

fn dns1035_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !DNS1035.is_match(value) {
        out.push(format!(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_FMT}')"
        ));
    }
    out
}

fn path_segment_problems(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| value.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Problems with a name under `rule`.
pub fn name_problems(rule: NameRule, value: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => subdomain_problems(value),
        NameRule::Label => label_problems(value),
        NameRule::Dns1035 => dns1035_problems(value),
        NameRule::PathSegment => path_segment_problems(value),
    }
}

/// Problems with a qualified name (`prefix/name`), as used by label and annotation keys.
pub fn qualified_name_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(
                subdomain_problems(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !QUALIFIED_NAME.is_match(name) || name.contains('/') {
            out.push(format!(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}')"
            ));
        }
    }
    out
}

fn label_value_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !LABEL_VALUE.is_match(value) {
        out.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FMT}')"
        ));
    }
    out
}

fn string_map(
    meta: &serde_json::Map<String, Value>,
    key: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<(String, String)> {
    let field = format!("metadata.{key}");
    match meta.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), s.clone())),
                other => {
                    errs.push(FieldError::invalid(
                        &format!("{field}.{k}"),
                        other,
                        "must be a string",
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            errs.push(FieldError::invalid(
                &field,
                other,
                "must be a map of string keys to string values",
            ));
            Vec::new()
        }
    }
}

/// Validates name, namespace, labels, annotations and finalizers of an object's metadata.
/// `namespaced` decides whether `metadata.namespace` must be set.
pub fn validate_metadata(obj: &Value, rule: NameRule, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(meta) = crate::object::meta(obj) else {
        errs.push(FieldError::required("metadata"));
        return errs;
    };
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required_because(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for p in name_problems(rule, name) {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    &Value::String(name.to_string()),
                    p,
                ));
            }
        }
    }
    let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace"));
        } else {
            for p in label_problems(ns) {
                errs.push(FieldError::invalid(
                    "metadata.namespace",
                    &Value::String(ns.to_string()),
                    p,
                ));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    for (k, v) in string_map(meta, "labels", &mut errs) {
        for p in qualified_name_problems(&k) {
            errs.push(FieldError::invalid(
                "metadata.labels",
                &Value::String(k.clone()),
                p,
            ));
        }
        for p in label_value_problems(&v) {
            errs.push(FieldError::invalid(
                "metadata.labels",
                &Value::String(v.clone()),
                p,
            ));
        }
    }
    let annotations = string_map(meta, "annotations", &mut errs);
    let mut size = 0;
    for (k, v) in &annotations {
        size += k.len() + v.len();
        for p in qualified_name_problems(&k.to_lowercase()) {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                &Value::String(k.clone()),
                p,
            ));
        }
    }
    if size > ANNOTATIONS_MAX {
        errs.push(FieldError {
            kind: crate::field_error::FieldErrorKind::TooLong,
            field: "metadata.annotations".into(),
            value: None,
            detail: format!("must have at most {ANNOTATIONS_MAX} bytes"),
        });
    }
    match meta.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, f) in items.iter().enumerate() {
                let field = format!("metadata.finalizers[{i}]");
                match f.as_str() {
                    Some(s) => {
                        for p in qualified_name_problems(s) {
                            errs.push(FieldError::invalid(&field, f, p));
                        }
                    }
                    None => errs.push(FieldError::invalid(&field, f, "must be a string")),
                }
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            "metadata.finalizers",
            other,
            "must be a list of strings",
        )),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(subdomain_problems("a.b-c").is_empty());
        assert_eq!(subdomain_problems("Bad_Name").len(), 1);
        assert!(subdomain_problems(&"a".repeat(254)).len() == 1);
        assert!(label_problems("default").is_empty());
        assert!(!label_problems("a.b").is_empty());
        assert!(name_problems(NameRule::PathSegment, "system:controller:x").is_empty());
        assert!(!name_problems(NameRule::PathSegment, "a/b").is_empty());
        assert!(!name_problems(NameRule::Dns1035, "1abc").is_empty());
    }

    #[test]
    fn qualified_names() {
        assert!(qualified_name_problems("app.kubernetes.io/name").is_empty());
        assert!(qualified_name_problems("app").is_empty());
        assert!(!qualified_name_problems("/app").is_empty());
        assert!(!qualified_name_problems("a/b/c").is_empty());
        assert!(!qualified_name_problems("-x").is_empty());
    }

    #[test]
    fn metadata() {
        let ok = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}, "finalizers": ["ecspower.dev/f"]}});
        assert!(validate_metadata(&ok, NameRule::Subdomain, true).is_empty());
        let bad = json!({"metadata": {"name": "A", "labels": {"app": "x y"}}});
        let errs = validate_metadata(&bad, NameRule::Subdomain, true);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["metadata.name", "metadata.namespace", "metadata.labels"]
        );
        let cluster = json!({"metadata": {"name": "a", "namespace": "x"}});
        assert_eq!(
            validate_metadata(&cluster, NameRule::Subdomain, false).len(),
            1
        );
        let missing = json!({"metadata": {}});
        assert_eq!(
            validate_metadata(&missing, NameRule::Subdomain, false)[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
