//! Strategic merge patch for built-in kinds: maps merge, lists with a known merge key merge by
//! that key (`containers` by `name`, `conditions` by `type`, `ownerReferences` by `uid`, ...),
//! `metadata.finalizers` merges as a set, other lists are replaced. Directives `$patch`
//! (`replace` / `delete`), `$retainKeys`, `$deleteFromPrimitiveList/<field>` are honoured and
//! `$setElementOrder/<field>` is accepted (order is not enforced). The merge-key table covers the
//! kinds the sandbox serves; it is not the full Kubernetes type registry.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replace the list.
    Replace,
    /// Merge elements with equal values of this key.
    MergeKey(&'static str),
    /// Merge as a set of primitives.
    MergePrimitive,
}

/// The strategy of the list at `path` (field names from the root, list levels skipped).
pub fn list_strategy(path: &[String]) -> ListStrategy {
    let Some(last) = path.last().map(String::as_str) else {
        return ListStrategy::Replace;
    };
    let parent = path
        .len()
        .checked_sub(2)
        .and_then(|i| path.get(i))
        .map_or("", String::as_str);
    let in_container = path.iter().any(|p| {
        matches!(
            p.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    match last {
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitive,
        "ownerReferences" => ListStrategy::MergeKey("uid"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::MergeKey("name"),
        "volumeMounts" => ListStrategy::MergeKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeKey("devicePath"),
        "conditions" => ListStrategy::MergeKey("type"),
        "ports" if in_container => ListStrategy::MergeKey("containerPort"),
        "ports" => ListStrategy::MergeKey("port"),
        "hostAliases" => ListStrategy::MergeKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeKey("topologyKey"),
        "secrets" if path.len() == 1 => ListStrategy::MergeKey("name"),
        _ => ListStrategy::Replace,
    }
}

/// Applies `patch` to `target`.
///
/// # Errors
///
/// A message for the 400 answer when `patch` carries an unknown `$patch` directive.
pub fn merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    merge_at(target, patch, &mut Vec::new())
}

fn is_directive(v: &Value, which: &str) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some(which)
}

/// A patch value with its directives removed (for values inserted where nothing was).
fn strip(v: &Value, path: &mut Vec<String>) -> Result<Value, String> {
    let mut out = Value::Null;
    match v {
        Value::Object(_) => {
            out = Value::Object(Map::new());
            merge_at(&mut out, v, path)?;
        }
        Value::Array(items) => {
            let mut list = Value::Array(Vec::new());
            merge_list(&mut list, items, path)?;
            out = list;
        }
        other => out.clone_from(other),
    }
    Ok(out)
}

// `patch` (the patch document) and `path` (where in it the walk is) are the usual names.
#[allow(clippy::similar_names)]
fn merge_at(target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), String> {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if is_directive(patch, "replace") {
        let mut without_directive = pm.clone();
        without_directive.remove("$patch");
        *target = Value::Object(Map::new());
        return merge_at(target, &Value::Object(without_directive), path);
    }
    if let Some(d) = pm.get("$patch").and_then(Value::as_str)
        && d != "merge"
        && d != "delete"
    {
        return Err(format!("unknown patch type: {d} in map"));
    }
    let tm = crate::object::object_mut(target);
    for (k, pv) in pm {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = pv.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = tm.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if pv.is_null() || is_directive(pv, "delete") {
            tm.remove(k);
            continue;
        }
        path.push(k.clone());
        let r = match (tm.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => merge_at(tv, pv, path),
            (Some(Value::Array(tv)), Value::Array(items)) => {
                let mut list = Value::Array(std::mem::take(tv));
                let r = merge_list(&mut list, items, path);
                tm.insert(k.clone(), list);
                r
            }
            _ => strip(pv, path).map(|v| {
                tm.insert(k.clone(), v);
            }),
        };
        path.pop();
        r?;
    }
    if let Some(Value::Array(keep)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tm.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(target: &mut Value, items: &[Value], path: &mut Vec<String>) -> Result<(), String> {
    let list = match target {
        Value::Array(l) => l,
        other => {
            *other = Value::Array(Vec::new());
            match other {
                Value::Array(l) => l,
                _ => unreachable!("value was just made an array"),
            }
        }
    };
    match list_strategy(path) {
        ListStrategy::Replace => {
            let mut out = Vec::new();
            for i in items.iter().filter(|i| !is_directive(i, "delete")) {
                out.push(strip(i, path)?);
            }
            *list = out;
        }
        ListStrategy::MergePrimitive => {
            for i in items {
                if !list.contains(i) {
                    list.push(i.clone());
                }
            }
        }
        ListStrategy::MergeKey(key) => {
            if items.iter().any(|i| is_directive(i, "replace")) {
                list.clear();
            }
            for pe in items {
                if is_directive(pe, "replace") {
                    continue;
                }
                let kv = pe.get(key).filter(|_| pe.is_object());
                if is_directive(pe, "delete") {
                    list.retain(|t| t.get(key) != kv);
                    continue;
                }
                match kv.and_then(|kv| list.iter_mut().find(|t| t.get(key) == Some(kv))) {
                    Some(te) => merge_at(te, pe, path)?,
                    None => list.push(strip(pe, path)?),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_by_key_and_directives() {
        let mut d = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "side", "image": "s"}]}}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            "args": ["x"]});
        let p = json!({"metadata": {"finalizers": ["b"], "labels": {"y": null}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
                "containers": [{"name": "app", "image": "v2", "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                               {"name": "side", "$patch": "delete"}]}}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]},
            "args": ["y"]});
        merge(&mut d, &p).expect("merges");
        assert_eq!(d["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(d["metadata"]["labels"], json!({"x": "1"}));
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().map(Vec::len), Some(1));
        assert_eq!(c[0]["image"], "v2");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            c[0]["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}])
        );
        assert_eq!(d["status"]["conditions"][0]["status"], "True");
        assert_eq!(d["status"]["conditions"][1]["type"], "Synced");
        assert_eq!(d["args"], json!(["y"]));
    }

    #[test]
    fn replace_retain_and_delete_from_primitive_list() {
        let mut d = json!({"spec": {"a": {"x": 1, "y": 2}, "b": {"p": 1, "q": 2}}, "metadata": {"finalizers": ["a", "b"]}});
        let p = json!({"spec": {"a": {"$patch": "replace", "z": 3}, "b": {"$retainKeys": ["q"], "q": 5}},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        merge(&mut d, &p).expect("merges");
        assert_eq!(d["spec"]["a"], json!({"z": 3}));
        assert_eq!(d["spec"]["b"], json!({"q": 5}));
        assert_eq!(d["metadata"]["finalizers"], json!(["b"]));
        assert!(merge(&mut d, &json!({"spec": {"$patch": "bogus"}})).is_err());
    }

    #[test]
    fn strategies() {
        let p = |s: &[&str]| list_strategy(&s.iter().map(|x| (*x).to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["spec", "ports"]), ListStrategy::MergeKey("port"));
        assert_eq!(
            p(&["spec", "template", "spec", "containers", "ports"]),
            ListStrategy::MergeKey("containerPort")
        );
        assert_eq!(p(&["spec", "finalizers"]), ListStrategy::Replace);
        assert_eq!(p(&["rules"]), ListStrategy::Replace);
    }
}
