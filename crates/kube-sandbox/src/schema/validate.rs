//! Validation of a custom resource against its structural schema: types, `enum`, `pattern`,
//! lengths, bounds, item counts, uniqueness, `required`, `allOf`/`anyOf`/`oneOf`/`not`, and the
//! `x-kubernetes-validations` CEL rules (transition rules only when an old value exists). Errors
//! carry the API server's wording.

use serde_json::Value;

use super::Schema;
use crate::cel::CelError;
use crate::field_error::{FieldError, child, index};

/// Validates a whole object (`old` is the stored object on update, for transition rules).
pub fn validate_object(schema: &Schema, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    node(schema, obj, old, "", &mut errs);
    errs
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        // Integral and well inside `i64` (checked above): exact.
        #[allow(clippy::cast_possible_truncation)]
        let whole = f as i64;
        format!("{whole}")
    } else {
        f.to_string()
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "<nil>" } else { path }
}

fn type_ok(s: &Schema, v: &Value) -> Result<(), String> {
    let actual = json_type(v);
    if s.int_or_string {
        return if matches!(actual, "integer" | "string") {
            Ok(())
        } else {
            Err("integer,string".into())
        };
    }
    match s.type_.as_deref() {
        None => Ok(()),
        Some(t) if t == actual || (t == "number" && actual == "integer") => Ok(()),
        Some(t) => Err(t.to_string()),
    }
}

fn passes(s: &Schema, v: &Value, old: Option<&Value>, path: &str) -> bool {
    let mut errs = Vec::new();
    node(s, v, old, path, &mut errs);
    errs.is_empty()
}

fn node(s: &Schema, v: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() && s.nullable {
        return;
    }
    if let Err(expected) = type_ok(s, v) {
        let actual = json_type(v);
        errs.push(FieldError::type_invalid(
            shown(path),
            actual,
            format!(
                "{} in body must be of type {expected}: \"{actual}\"",
                shown(path)
            ),
        ));
        return;
    }
    if !s.enum_values.is_empty() && !s.enum_values.contains(v) {
        errs.push(FieldError::not_supported(shown(path), v, &s.enum_values));
    }
    match v {
        Value::String(text) => string(s, v, text, path, errs),
        Value::Number(n) => number(s, v, n.as_f64().unwrap_or(0.0), path, errs),
        Value::Array(items) => array(s, v, items, old, path, errs),
        Value::Object(map) => object(s, v, map, old, path, errs),
        _ => {}
    }
    for sub in &s.all_of {
        node(sub, v, old, path, errs);
    }
    if !s.any_of.is_empty() && !s.any_of.iter().any(|sub| passes(sub, v, old, path)) {
        errs.push(FieldError::invalid(
            shown(path),
            v,
            "must validate at least one schema (anyOf)",
        ));
    }
    if !s.one_of.is_empty()
        && s.one_of
            .iter()
            .filter(|sub| passes(sub, v, old, path))
            .count()
            != 1
    {
        errs.push(FieldError::invalid(
            shown(path),
            v,
            "must validate one and only one schema (oneOf)",
        ));
    }
    if let Some(not) = &s.not
        && passes(not, v, old, path)
    {
        errs.push(FieldError::invalid(
            shown(path),
            v,
            "must not validate the schema (not)",
        ));
    }
    rules(s, v, old, path, errs);
}

fn string(s: &Schema, v: &Value, text: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some((src, re)) = &s.pattern
        && !re.is_match(text)
    {
        errs.push(FieldError::invalid(
            shown(path),
            v,
            format!("{} in body should match '{src}'", shown(path)),
        ));
    }
    let len = text.chars().count() as u64;
    if let Some(max) = s.max_length
        && len > max
    {
        errs.push(FieldError::too_long(shown(path), max));
    }
    if let Some(min) = s.min_length
        && len < min
    {
        errs.push(FieldError::invalid(
            shown(path),
            v,
            format!(
                "{} in body should be at least {min} chars long",
                shown(path)
            ),
        ));
    }
}

fn number(s: &Schema, v: &Value, f: f64, path: &str, errs: &mut Vec<FieldError>) {
    let p = shown(path);
    if let Some(min) = s.minimum {
        if s.exclusive_minimum && f <= min {
            errs.push(FieldError::invalid(
                p,
                v,
                format!("{p} in body should be greater than {}", fmt_num(min)),
            ));
        } else if f < min {
            errs.push(FieldError::invalid(
                p,
                v,
                format!(
                    "{p} in body should be greater than or equal to {}",
                    fmt_num(min)
                ),
            ));
        }
    }
    if let Some(max) = s.maximum {
        if s.exclusive_maximum && f >= max {
            errs.push(FieldError::invalid(
                p,
                v,
                format!("{p} in body should be less than {}", fmt_num(max)),
            ));
        } else if f > max {
            errs.push(FieldError::invalid(
                p,
                v,
                format!(
                    "{p} in body should be less than or equal to {}",
                    fmt_num(max)
                ),
            ));
        }
    }
    if let Some(m) = s.multiple_of
        && m != 0.0
        && (f / m).fract() != 0.0
    {
        errs.push(FieldError::invalid(
            p,
            v,
            format!("{p} in body should be a multiple of {}", fmt_num(m)),
        ));
    }
}

fn map_key(item: &Value, keys: &[String]) -> Value {
    Value::Object(
        keys.iter()
            .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
    )
}

fn array(
    s: &Schema,
    v: &Value,
    items: &[Value],
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let p = shown(path);
    if let Some(max) = s.max_items
        && items.len() as u64 > max
    {
        errs.push(FieldError::too_many(p, items.len(), max));
    }
    if let Some(min) = s.min_items
        && (items.len() as u64) < min
    {
        errs.push(FieldError::invalid(
            p,
            v,
            format!("{p} in body should have at least {min} items"),
        ));
    }
    let is_map = s.list_type.as_deref() == Some("map") && !s.list_map_keys.is_empty();
    let is_set = s.unique_items || s.list_type.as_deref() == Some("set");
    for (i, item) in items.iter().enumerate() {
        if is_map {
            let key = map_key(item, &s.list_map_keys);
            if items[..i]
                .iter()
                .any(|prev| map_key(prev, &s.list_map_keys) == key)
            {
                errs.push(FieldError::duplicate(&index(path, i), &key));
            }
        } else if is_set && items[..i].contains(item) {
            errs.push(FieldError::duplicate(&index(path, i), item));
        }
    }
    let Some(is) = &s.items else { return };
    let old_items = old.and_then(Value::as_array);
    for (i, item) in items.iter().enumerate() {
        let correlated = old_items.and_then(|olds| {
            if is_map {
                let key = map_key(item, &s.list_map_keys);
                olds.iter().find(|o| map_key(o, &s.list_map_keys) == key)
            } else if s.list_type.as_deref() == Some("set") {
                olds.iter().find(|o| *o == item)
            } else {
                None
            }
        });
        node(is, item, correlated, &index(path, i), errs);
    }
}

fn object(
    s: &Schema,
    v: &Value,
    map: &serde_json::Map<String, Value>,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for r in &s.required {
        if !map.contains_key(r) {
            errs.push(FieldError::required(&child(path, r)));
        }
    }
    let p = shown(path);
    if let Some(max) = s.max_properties
        && map.len() as u64 > max
    {
        errs.push(FieldError::too_many(p, map.len(), max));
    }
    if let Some(min) = s.min_properties
        && (map.len() as u64) < min
    {
        errs.push(FieldError::invalid(
            p,
            v,
            format!("{p} in body should have at least {min} properties"),
        ));
    }
    let root = path.is_empty();
    for (k, cv) in map {
        if (root || s.embedded_resource) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
        {
            continue;
        }
        if let Some(cs) = s.child(k) {
            node(cs, cv, old.and_then(|o| o.get(k)), &child(path, k), errs);
        }
    }
}

fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn rules(s: &Schema, v: &Value, old: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    for rule in &s.rules {
        let Some(program) = &rule.program else {
            continue;
        };
        if program.is_transition_rule() && old.is_none() && !rule.optional_old_self {
            continue;
        }
        let field = match &rule.field_path {
            Some(fp) => child(path, fp.trim_start_matches('.')),
            None => path.to_string(),
        };
        let field = shown(&field).to_string();
        match program.evaluate(v, old) {
            Ok(true) => {}
            Ok(false) => errs.push(FieldError::rule(
                rule.reason,
                &field,
                type_word(v),
                rule.message.clone(),
            )),
            Err(CelError::Runtime(m)) => errs.push(FieldError::invalid(
                &field,
                &Value::String(type_word(v).into()),
                format!("{m} evaluating rule: {}", rule.rule),
            )),
            Err(other) => tracing::warn!(rule = rule.rule, error = %other, "CEL rule skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd_schema() -> Schema {
        Schema::compile(
            &json!({"type": "object", "required": ["spec"], "properties": {
                "spec": {"type": "object", "required": ["instanceId", "regionId"], "properties": {
                    "instanceId": {"type": "string", "pattern": "^i-[0-9a-z]+$", "maxLength": 64,
                        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "instanceId is immutable"}]},
                    "regionId": {"type": "string"},
                    "desiredState": {"type": "string", "enum": ["Running", "Stopped"]},
                    "forceStop": {"type": "boolean"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 3},
                    "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "conds": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
                    "port": {"x-kubernetes-int-or-string": true}
                }},
                "status": {"type": "object"}
            }}),
            "s",
        )
        .expect("compiles")
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_object_passes() {
        let o = json!({"apiVersion": "a/b", "kind": "K", "metadata": {"name": "x"},
            "spec": {"instanceId": "i-1", "regionId": "cn-hangzhou", "desiredState": "Running", "port": "http", "replicas": 2}});
        assert!(validate_object(&crd_schema(), &o, None).is_empty());
    }

    #[test]
    fn reports_like_the_api_server() {
        let o = json!({"spec": {"instanceId": "bad", "desiredState": "Paused", "forceStop": "yes", "replicas": 5,
            "tags": ["a", "a", "b"], "conds": [{"type": "R"}, {"type": "R"}], "port": true}});
        let m = msgs(&validate_object(&crd_schema(), &o, None));
        for want in [
            "spec.regionId: Required value",
            "spec.instanceId: Invalid value: \"bad\": spec.instanceId in body should match '^i-[0-9a-z]+$'",
            "spec.desiredState: Unsupported value: \"Paused\": supported values: \"Running\", \"Stopped\"",
            "spec.forceStop: Invalid value: \"string\": spec.forceStop in body must be of type boolean: \"string\"",
            "spec.replicas: Invalid value: 5: spec.replicas in body should be less than or equal to 3",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.tags[1]: Duplicate value: \"a\"",
            "spec.conds[1]: Duplicate value: {\"type\":\"R\"}",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
        ] {
            assert!(m.contains(&want.to_string()), "missing {want:?} in {m:#?}");
        }
        let missing = msgs(&validate_object(&crd_schema(), &json!({}), None));
        assert_eq!(missing, vec!["spec: Required value"]);
    }

    #[test]
    fn transition_rule_runs_on_update_only() {
        let new = json!({"spec": {"instanceId": "i-2", "regionId": "r"}});
        let old = json!({"spec": {"instanceId": "i-1", "regionId": "r"}});
        assert!(validate_object(&crd_schema(), &new, None).is_empty());
        let m = msgs(&validate_object(&crd_schema(), &new, Some(&old)));
        assert_eq!(
            m,
            vec!["spec.instanceId: Invalid value: \"string\": instanceId is immutable"]
        );
        assert!(validate_object(&crd_schema(), &new, Some(&new)).is_empty());
    }

    #[test]
    fn runtime_errors_reject_and_combinators_apply() {
        let s = Schema::compile(
            &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}],
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            "s",
        )
        .expect("compiles");
        let m = msgs(&validate_object(&s, &json!({"b": 1}), None));
        assert!(
            m.contains(
                &"<nil>: Invalid value: \"object\": no such key: a evaluating rule: self.a > 0"
                    .to_string()
            ),
            "{m:?}"
        );
        let m = msgs(&validate_object(&s, &json!({"a": 1, "b": 1}), None));
        assert_eq!(
            m,
            vec![
                "<nil>: Invalid value: {\"a\":1,\"b\":1}: must validate one and only one schema (oneOf)"
            ]
        );
    }
}
