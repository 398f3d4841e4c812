//! Pruning and defaulting of custom resources against their structural schema: fields the
//! schema does not declare are dropped (their paths reported, for `fieldValidation=Strict` /
//! `Warn`), nulls in non-nullable fields are dropped, then `default`s fill absent fields,
//! recursing into what they add, as the API server does.

use serde_json::Value;

use super::Schema;
use crate::field_error::{child, index};

/// Keys of `metadata` (`ObjectMeta`) that survive pruning.
const OBJECT_META_KEYS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Prunes a whole custom resource (the root keeps `apiVersion`, `kind` and `metadata`),
/// appending the paths of dropped unknown fields to `pruned`.
pub fn prune_object(schema: &Schema, obj: &mut Value, pruned: &mut Vec<String>) {
    prune(schema, obj, "", true, pruned);
}

fn prune_meta(meta: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        let unknown: Vec<String> = m
            .keys()
            .filter(|k| !OBJECT_META_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            m.remove(&k);
            pruned.push(child(path, &k));
        }
    }
}

fn prune(s: &Schema, v: &mut Value, path: &str, embedded: bool, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let cpath = child(path, &k);
                if embedded && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if embedded && k == "metadata" {
                    if let Some(m) = map.get_mut(&k) {
                        prune_meta(m, &cpath, pruned);
                    }
                    continue;
                }
                match s.child(&k) {
                    Some(cs) => {
                        let null_pruned = map.get(&k).is_some_and(Value::is_null) && !cs.nullable;
                        if null_pruned {
                            map.remove(&k);
                        } else if let Some(cv) = map.get_mut(&k) {
                            prune(cs, cv, &cpath, cs.embedded_resource, pruned);
                        }
                    }
                    None if s.preserve_unknown => {}
                    None => {
                        map.remove(&k);
                        pruned.push(cpath);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &s.items {
                for (i, it) in items.iter_mut().enumerate() {
                    prune(is, it, &index(path, i), is.embedded_resource, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default`s to absent fields, top-down (defaults are themselves defaulted).
pub fn apply_defaults(s: &Schema, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, ps) in &s.properties {
                if !map.contains_key(k)
                    && let Some(d) = &ps.default
                {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, cv) in map.iter_mut() {
                if let Some(cs) = s.child(k) {
                    apply_defaults(cs, cv);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &s.items {
                for it in items {
                    apply_defaults(is, it);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::compile(
            &json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "a": {"type": "string", "default": "x"},
                    "n": {"type": "string", "nullable": true},
                    "nested": {"type": "object", "default": {}, "properties": {"b": {"type": "boolean", "default": false}}},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "status": {"type": "object"}
            }}),
            "s",
        )
        .expect("compiles")
    }

    #[test]
    fn prunes_unknown_fields_and_nulls() {
        let mut obj = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "bogus": 1},
            "spec": {"a": null, "n": null, "zzz": 1, "list": [{"k": "v", "extra": 2}], "free": {"any": 1}, "labels": {"q": "r"}},
            "top": true});
        let mut pruned = Vec::new();
        prune_object(&schema(), &mut obj, &mut pruned);
        pruned.sort();
        assert_eq!(
            pruned,
            vec!["metadata.bogus", "spec.list[0].extra", "spec.zzz", "top"]
        );
        assert_eq!(
            obj["spec"],
            json!({"n": null, "list": [{"k": "v"}], "free": {"any": 1}, "labels": {"q": "r"}})
        );
        assert_eq!(obj["apiVersion"], "g/v1");
    }

    #[test]
    fn defaults_recursively() {
        let mut obj = json!({"spec": {}});
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"], json!({"a": "x", "nested": {"b": false}}));
        let mut kept = json!({"spec": {"a": "y"}});
        apply_defaults(&schema(), &mut kept);
        assert_eq!(kept["spec"]["a"], "y");
        let mut none = json!({});
        apply_defaults(&schema(), &mut none);
        assert_eq!(none, json!({}));
    }
}
