//! Server-side apply, approximated: the applied configuration is merged into the live object
//! (maps deep-merge; lists merge by `x-kubernetes-list-type` map keys / set semantics from the
//! CRD schema, by strategic merge keys for built-ins, otherwise they are replaced), and each
//! field manager's last applied field set is remembered so that fields a manager stops applying
//! are removed (unless another apply manager still applies them). Not implemented: conflict
//! detection (every apply behaves as `force=true`), ownership of fields written by non-apply
//! requests, and `metadata.managedFields` in responses.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::patch::strategic::{ListStrategy, list_strategy};
use crate::schema::Schema;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElem {
    /// A map key.
    Field(String),
    /// An element of a map-list, by its key fields.
    Key(String),
    /// An element of a set-list, by value.
    Value(String),
}

/// The fields one manager applied.
pub type FieldSet = BTreeSet<Vec<PathElem>>;

/// Apply managers of one object: (manager, applied to `/status`) → fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owners(BTreeMap<(String, bool), FieldSet>);

impl Owners {
    /// Managers known.
    pub fn managers(&self) -> impl Iterator<Item = &(String, bool)> {
        self.0.keys()
    }
}

/// What kind of list a path holds.
#[derive(Debug, Clone, PartialEq)]
enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Where type information comes from while walking an object.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// A custom resource's schema node (None: unknown, lists atomic).
    Schema(Option<&'a Schema>),
    /// A built-in kind (strategic merge keys).
    Builtin,
}

impl Shape<'_> {
    fn child(self, key: &str) -> Self {
        match self {
            Self::Schema(s) => Self::Schema(s.and_then(|s| s.child(key))),
            Self::Builtin => Self::Builtin,
        }
    }

    fn item(self) -> Self {
        match self {
            Self::Schema(s) => Self::Schema(s.and_then(|s| s.items.as_deref())),
            Self::Builtin => Self::Builtin,
        }
    }

    fn list_kind(self, names: &[String]) -> ListKind {
        match self {
            Self::Schema(Some(s)) => match s.list_type.as_deref() {
                Some("map") if !s.list_map_keys.is_empty() => {
                    ListKind::Map(s.list_map_keys.clone())
                }
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            },
            Self::Schema(None) => ListKind::Atomic,
            Self::Builtin => match list_strategy(names) {
                ListStrategy::MergeKey(k) => ListKind::Map(vec![k.to_string()]),
                ListStrategy::MergePrimitive => ListKind::Set,
                ListStrategy::Replace => ListKind::Atomic,
            },
        }
    }
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "{}={}",
                k,
                item.get(k).map(Value::to_string).unwrap_or_default()
            )
        })
        .collect();
    parts.join(",")
}

/// Fields never owned (identity and server-managed metadata).
fn is_identity(path: &[PathElem]) -> bool {
    match path {
        [PathElem::Field(f)] => matches!(f.as_str(), "apiVersion" | "kind" | "metadata"),
        [PathElem::Field(m), PathElem::Field(f), ..] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

fn collect_fields(
    m: &Map<String, Value>,
    skip: &[String],
    shape: Shape<'_>,
    path: &mut Vec<PathElem>,
    names: &mut Vec<String>,
    out: &mut FieldSet,
) {
    for (k, cv) in m.iter().filter(|(k, _)| !skip.contains(k)) {
        path.push(PathElem::Field(k.clone()));
        names.push(k.clone());
        if !is_identity(path) {
            out.insert(path.clone());
        }
        collect(cv, shape.child(k), path, names, out);
        names.pop();
        path.pop();
    }
}

fn collect(
    v: &Value,
    shape: Shape<'_>,
    path: &mut Vec<PathElem>,
    names: &mut Vec<String>,
    out: &mut FieldSet,
) {
    match v {
        Value::Object(m) => collect_fields(m, &[], shape, path, names, out),
        Value::Array(items) => match shape.list_kind(names) {
            ListKind::Atomic => {}
            ListKind::Set => {
                for i in items {
                    path.push(PathElem::Value(i.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                for i in items {
                    path.push(PathElem::Key(item_key(i, &keys)));
                    out.insert(path.clone());
                    // Key fields identify the entry; they go with it, never on their own.
                    if let Value::Object(m) = i {
                        collect_fields(m, &keys, shape.item(), path, names, out);
                    }
                    path.pop();
                }
            }
        },
        _ => {}
    }
}

/// The field set of an applied configuration.
pub fn field_set(applied: &Value, shape: Shape<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    collect(applied, shape, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn only_keys(v: &Value, keys: &str) -> bool {
    v.as_object().is_some_and(|m| {
        m.iter()
            .all(|(k, _)| keys.split(',').any(|kv| kv.split('=').next() == Some(k)))
    })
}

/// Removes `path` from `obj` if what is there is no longer anyone's (maps and map-list entries
/// only when nothing else remains in them).
fn remove(obj: &mut Value, path: &[PathElem], shape: Shape<'_>, names: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, obj) {
        (PathElem::Field(k), Value::Object(m)) => {
            if rest.is_empty() {
                let removable = match m.get(k) {
                    Some(Value::Object(c)) => c.is_empty(),
                    Some(_) => true,
                    None => false,
                };
                if removable {
                    m.remove(k);
                }
            } else if let Some(c) = m.get_mut(k) {
                names.push(k.clone());
                remove(c, rest, shape.child(k), names);
                names.pop();
            }
        }
        (PathElem::Key(key), Value::Array(items)) => {
            let ListKind::Map(keys) = shape.list_kind(names) else {
                return;
            };
            let Some(pos) = items.iter().position(|i| &item_key(i, &keys) == key) else {
                return;
            };
            if rest.is_empty() {
                if only_keys(&items[pos], key) {
                    items.remove(pos);
                }
            } else {
                remove(&mut items[pos], rest, shape.item(), names);
            }
        }
        (PathElem::Value(v), Value::Array(items)) if rest.is_empty() => {
            items.retain(|i| &i.to_string() != v);
        }
        _ => {}
    }
}

fn merge(live: &mut Value, applied: &Value, shape: Shape<'_>, names: &mut Vec<String>) {
    match (live, applied) {
        (Value::Object(lm), Value::Object(am)) => {
            for (k, av) in am {
                if av.is_null() {
                    lm.remove(k);
                    continue;
                }
                names.push(k.clone());
                match lm.get_mut(k) {
                    Some(lv) => merge(lv, av, shape.child(k), names),
                    None => {
                        lm.insert(k.clone(), av.clone());
                    }
                }
                names.pop();
            }
        }
        (Value::Array(la), Value::Array(aa)) => match shape.list_kind(names) {
            ListKind::Atomic => la.clone_from(aa),
            ListKind::Set => {
                for v in aa {
                    if !la.contains(v) {
                        la.push(v.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                for ai in aa {
                    let k = item_key(ai, &keys);
                    match la.iter_mut().find(|li| item_key(li, &keys) == k) {
                        Some(li) => merge(li, ai, shape.item(), names),
                        None => la.push(ai.clone()),
                    }
                }
            }
        },
        (l, a) => *l = a.clone(),
    }
}

/// Which part of the object an apply may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (no status subresource).
    All,
    /// Everything but `status` (main endpoint of a kind with a status subresource).
    NoStatus,
    /// `status` only (the `/status` subresource).
    StatusOnly,
}

/// Restricts an applied configuration to what `scope` may change.
pub fn restrict(applied: &Value, scope: Scope) -> Value {
    let Some(m) = applied.as_object() else {
        return applied.clone();
    };
    let kept: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| match scope {
            Scope::All => true,
            Scope::NoStatus => k.as_str() != "status",
            Scope::StatusOnly => matches!(k.as_str(), "status" | "apiVersion" | "kind"),
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

/// Applies `applied` (already restricted to its scope) for `manager` onto `live` (served view),
/// returning the new object and the updated owners.
pub fn apply(
    live: &Value,
    applied: &Value,
    owners: &Owners,
    manager: &str,
    status: bool,
    shape: Shape<'_>,
) -> (Value, Owners) {
    let new_set = field_set(applied, shape);
    let me = (manager.to_string(), status);
    let old_set = owners.0.get(&me).cloned().unwrap_or_default();
    let others: BTreeSet<&Vec<PathElem>> = owners
        .0
        .iter()
        .filter(|(k, _)| **k != me)
        .flat_map(|(_, s)| s.iter())
        .collect();
    let mut gone: Vec<&Vec<PathElem>> = old_set
        .iter()
        .filter(|p| !new_set.contains(*p) && !others.contains(p))
        .collect();
    gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = live.clone();
    for p in gone {
        remove(&mut out, p, shape, &mut Vec::new());
    }
    merge(&mut out, applied, shape, &mut Vec::new());
    let mut owners = owners.clone();
    owners.0.insert(me, new_set);
    (out, owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::compile(
            &json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
                "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}},
                "retry": {"type": "object", "properties": {"attempts": {"type": "integer"}}},
                "tags": {"type": "array", "items": {"type": "string"}}}}}}),
            "s",
        )
        .expect("compiles")
    }

    #[test]
    fn omitted_fields_are_removed_and_lists_merge_by_key() {
        let s = schema();
        let shape = Shape::Schema(Some(&s));
        let live = json!({"metadata": {"name": "x"}, "spec": {"a": 1}, "status": {"other": true}});
        let first = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Stalled", "status": "True"}],
            "retry": {"attempts": 2}, "tags": ["a", "b"]}});
        let (v1, o1) = apply(&live, &first, &Owners::default(), "op", true, shape);
        assert_eq!(v1["status"]["retry"]["attempts"], 2);
        assert_eq!(v1["status"]["other"], true);
        let second =
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "tags": ["c"]}});
        let (v2, o2) = apply(&v1, &second, &o1, "op", true, shape);
        assert_eq!(
            v2["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        assert!(v2["status"].get("retry").is_none(), "{v2}");
        assert_eq!(v2["status"]["tags"], json!(["c"]));
        assert_eq!(v2["status"]["other"], true, "fields nobody applied stay");
        assert_eq!(v2["spec"]["a"], 1);
        // Another manager's fields survive this manager's omission.
        let (v3, o3) = apply(
            &v2,
            &json!({"status": {"retry": {"attempts": 1}}}),
            &o2,
            "other",
            true,
            shape,
        );
        let (v4, _) = apply(
            &v3,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            &o3,
            "op",
            true,
            shape,
        );
        assert_eq!(v4["status"]["retry"]["attempts"], 1);
    }

    #[test]
    fn builtin_shapes_and_scope() {
        let live = json!({"metadata": {"name": "d", "finalizers": ["a"]}, "spec": {"ports": [{"port": 80, "name": "http"}]}});
        let applied = json!({"metadata": {"name": "d", "finalizers": ["b"]}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        let (v, o) = apply(
            &live,
            &applied,
            &Owners::default(),
            "m",
            false,
            Shape::Builtin,
        );
        assert_eq!(v["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            v["spec"]["ports"],
            json!([{"port": 80, "name": "http", "protocol": "TCP"}])
        );
        assert_eq!(o.managers().count(), 1);
        let r = restrict(
            &json!({"apiVersion": "v", "kind": "K", "metadata": {}, "spec": 1, "status": 2}),
            Scope::StatusOnly,
        );
        assert_eq!(r, json!({"apiVersion": "v", "kind": "K", "status": 2}));
        assert!(
            restrict(&json!({"status": 1, "spec": 2}), Scope::NoStatus)
                .get("status")
                .is_none()
        );
        assert!(
            field_set(
                &json!({"metadata": {"name": "x", "labels": {"a": "b"}}}),
                Shape::Builtin
            )
            .iter()
            .all(|p| p.len() > 1 || p[0] != PathElem::Field("metadata".into()))
        );
    }
}
