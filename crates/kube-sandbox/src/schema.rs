//! Structural schemas of custom resources (a CRD version's `openAPIV3Schema`), compiled once
//! when the CRD is registered: regexes and CEL rules are parsed up front. The submodules apply
//! the schema to objects the way the API server does, in its order: prune unknown fields and
//! non-nullable nulls ([`prune`]), apply defaults ([`prune`] as well), then validate types,
//! formats, bounds and `x-kubernetes-validations` rules ([`validate`]).

pub mod prune;
pub mod validate;

use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::Value;

use crate::cel::Program;
use crate::field_error::{FieldError, FieldErrorKind};

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone)]
pub struct CelRule {
    /// The rule source.
    pub rule: String,
    /// `message`, or `failed rule: <rule>`.
    pub message: String,
    /// `reason` (`FieldValueInvalid` by default).
    pub reason: FieldErrorKind,
    /// `fieldPath`, relative to the node (`.x`), if any.
    pub field_path: Option<String>,
    /// `optionalOldSelf`.
    pub optional_old_self: bool,
    /// The compiled rule; `None` when it uses CEL outside the supported subset (not enforced).
    pub program: Option<Program>,
}

/// A compiled schema node.
#[derive(Debug, Clone, Default)]
// One field per OpenAPI / Kubernetes schema flag (`nullable`, `x-kubernetes-*`), as the CRD
// spells them.
#[allow(clippy::struct_excessive_bools)]
pub struct Schema {
    /// `type`.
    pub type_: Option<String>,
    /// `nullable`.
    pub nullable: bool,
    /// `properties`.
    pub properties: BTreeMap<String, Schema>,
    /// `required`.
    pub required: Vec<String>,
    /// `additionalProperties` when it is a schema.
    pub additional: Option<Box<Schema>>,
    /// `items`.
    pub items: Option<Box<Schema>>,
    /// `enum`.
    pub enum_values: Vec<Value>,
    /// `pattern`, as written and compiled.
    pub pattern: Option<(String, Regex)>,
    /// `minLength`.
    pub min_length: Option<u64>,
    /// `maxLength`.
    pub max_length: Option<u64>,
    /// `minItems`.
    pub min_items: Option<u64>,
    /// `maxItems`.
    pub max_items: Option<u64>,
    /// `minProperties`.
    pub min_properties: Option<u64>,
    /// `maxProperties`.
    pub max_properties: Option<u64>,
    /// `minimum`.
    pub minimum: Option<f64>,
    /// `maximum`.
    pub maximum: Option<f64>,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: bool,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: bool,
    /// `multipleOf`.
    pub multiple_of: Option<f64>,
    /// `uniqueItems`.
    pub unique_items: bool,
    /// `default`.
    pub default: Option<Value>,
    /// `x-kubernetes-preserve-unknown-fields`.
    pub preserve_unknown: bool,
    /// `x-kubernetes-int-or-string`.
    pub int_or_string: bool,
    /// `x-kubernetes-embedded-resource`.
    pub embedded_resource: bool,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
    /// `allOf`, `anyOf`, `oneOf`, `not` (value validation only).
    pub all_of: Vec<Schema>,
    /// `anyOf`.
    pub any_of: Vec<Schema>,
    /// `oneOf`.
    pub one_of: Vec<Schema>,
    /// `not`.
    pub not: Option<Box<Schema>>,
    /// `x-kubernetes-validations`.
    pub rules: Vec<CelRule>,
}

static WARNED_RULES: LazyLock<Mutex<HashSet<String>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

fn warn_once(rule: &str, path: &str, why: &str) {
    let mut warned = WARNED_RULES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.insert(format!("{path}\u{0}{rule}")) {
        tracing::warn!(
            rule,
            path,
            why,
            "CEL rule outside the supported subset is NOT enforced"
        );
    }
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn bool_of(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

impl Schema {
    /// Compiles a schema node; `path` names it in errors
    /// (`spec.versions[0].schema.openAPIV3Schema.properties[spec]`).
    ///
    /// # Errors
    ///
    /// Every unsupported or malformed construct found in the node, as field errors under `path`.
    pub fn compile(v: &Value, path: &str) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let s = Self::compile_into(v, path, &mut errs);
        if errs.is_empty() { Ok(s) } else { Err(errs) }
    }

    fn compile_into(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Self {
        let Some(obj) = v.as_object() else {
            errs.push(FieldError::invalid(path, v, "must be an object"));
            return Self::default();
        };
        let sub = |key: &str, errs: &mut Vec<FieldError>| -> Vec<Self> {
            obj.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .map(|(i, s)| Self::compile_into(s, &format!("{path}.{key}[{i}]"), errs))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut s = Self {
            type_: obj.get("type").and_then(Value::as_str).map(str::to_string),
            nullable: bool_of(v, "nullable"),
            required: obj
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            enum_values: obj
                .get("enum")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            min_length: u64_of(v, "minLength"),
            max_length: u64_of(v, "maxLength"),
            min_items: u64_of(v, "minItems"),
            max_items: u64_of(v, "maxItems"),
            min_properties: u64_of(v, "minProperties"),
            max_properties: u64_of(v, "maxProperties"),
            minimum: obj.get("minimum").and_then(Value::as_f64),
            maximum: obj.get("maximum").and_then(Value::as_f64),
            exclusive_minimum: bool_of(v, "exclusiveMinimum"),
            exclusive_maximum: bool_of(v, "exclusiveMaximum"),
            multiple_of: obj.get("multipleOf").and_then(Value::as_f64),
            unique_items: bool_of(v, "uniqueItems"),
            default: obj.get("default").cloned(),
            preserve_unknown: bool_of(v, "x-kubernetes-preserve-unknown-fields"),
            int_or_string: bool_of(v, "x-kubernetes-int-or-string"),
            embedded_resource: bool_of(v, "x-kubernetes-embedded-resource"),
            list_type: obj
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(str::to_string),
            list_map_keys: obj
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            all_of: sub("allOf", errs),
            any_of: sub("anyOf", errs),
            one_of: sub("oneOf", errs),
            ..Self::default()
        };
        if let Some(t) = &s.type_
            && !matches!(
                t.as_str(),
                "object" | "array" | "string" | "integer" | "number" | "boolean"
            )
        {
            errs.push(FieldError::not_supported(
                &format!("{path}.type"),
                &Value::String(t.clone()),
                &["array", "boolean", "integer", "number", "object", "string"]
                    .map(|x| Value::String(x.into())),
            ));
        }
        if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
            match Regex::new(p) {
                Ok(re) => s.pattern = Some((p.to_string(), re)),
                Err(e) => errs.push(FieldError::invalid(
                    &format!("{path}.pattern"),
                    &Value::String(p.into()),
                    e.to_string(),
                )),
            }
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, pv) in props {
                s.properties.insert(
                    k.clone(),
                    Self::compile_into(pv, &format!("{path}.properties[{k}]"), errs),
                );
            }
        }
        if let Some(ap) = obj.get("additionalProperties") {
            match ap {
                Value::Object(_) => {
                    s.additional = Some(Box::new(Self::compile_into(
                        ap,
                        &format!("{path}.additionalProperties"),
                        errs,
                    )));
                }
                Value::Bool(true) => {
                    s.additional = Some(Box::new(Self {
                        preserve_unknown: true,
                        ..Self::default()
                    }));
                }
                _ => {}
            }
        }
        if let Some(items) = obj.get("items") {
            s.items = Some(Box::new(Self::compile_into(
                items,
                &format!("{path}.items"),
                errs,
            )));
        }
        if let Some(not) = obj.get("not") {
            s.not = Some(Box::new(Self::compile_into(
                not,
                &format!("{path}.not"),
                errs,
            )));
        }
        if let Some(rules) = obj
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            for (i, r) in rules.iter().enumerate() {
                let rpath = format!("{path}.x-kubernetes-validations[{i}]");
                let Some(rule) = r.get("rule").and_then(Value::as_str) else {
                    errs.push(FieldError::required(&format!("{rpath}.rule")));
                    continue;
                };
                let program = match Program::compile(rule) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        warn_once(rule, &rpath, &e.to_string());
                        None
                    }
                };
                s.rules.push(CelRule {
                    rule: rule.to_string(),
                    message: r
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("failed rule: {rule}"), str::to_string),
                    reason: FieldErrorKind::from_reason(
                        r.get("reason").and_then(Value::as_str).unwrap_or(""),
                    ),
                    field_path: r
                        .get("fieldPath")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    optional_old_self: bool_of(r, "optionalOldSelf"),
                    program,
                });
            }
        }
        s
    }

    /// The schema of child `key` of an object node (a property or `additionalProperties`).
    pub fn child(&self, key: &str) -> Option<&Schema> {
        self.properties.get(key).or(self.additional.as_deref())
    }

    /// Follows a path of object keys (list levels go through `items`).
    pub fn at(&self, path: &[&str]) -> Option<&Schema> {
        path.iter().try_fold(self, |s, key| {
            if s.items.is_some() && key.is_empty() {
                s.items.as_deref()
            } else {
                s.child(key)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_and_reports_bad_parts() {
        let s = Schema::compile(
            &json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["a"],
                "properties": {"a": {"type": "string", "pattern": "^i-", "maxLength": 4,
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}}}}}),
            "schema",
        )
        .expect("compiles");
        let a = s.at(&["spec", "a"]).expect("a");
        assert_eq!(a.max_length, Some(4));
        assert!(
            a.rules[0]
                .program
                .as_ref()
                .is_some_and(Program::is_transition_rule)
        );
        assert_eq!(a.rules[0].message, "immutable");
        let errs =
            Schema::compile(&json!({"type": "thing", "pattern": "("}), "s").expect_err("bad");
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn unsupported_rule_is_kept_but_not_compiled() {
        let s = Schema::compile(
            &json!({"type": "string", "x-kubernetes-validations": [{"rule": "isURL(self)"}]}),
            "s",
        )
        .expect("compiles");
        assert!(s.rules[0].program.is_none());
        assert_eq!(s.rules[0].message, "failed rule: isURL(self)");
    }
}
