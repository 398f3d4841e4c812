//! Accessors for objects as the store keeps them (`serde_json::Value` with the usual
//! `apiVersion` / `kind` / `metadata`), their keys, timestamps and uids. Every layer (store, REST,
//! watch, table) reads metadata through these helpers.

pub mod metadata_validation;

use serde_json::{Map, Value};

/// Where an object lives inside one resource: namespace ("" when cluster-scoped) and name.
/// Ordered like etcd keys, so lists come out sorted by namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The key of an object (from its metadata).
    pub fn of(obj: &Value) -> Self {
        Self::new(namespace(obj), name(obj))
    }
}

/// `metadata`, if it is an object.
pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// `metadata`, created (or replaced when not an object) on demand; `obj` becomes an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = object_mut(obj);
    object_mut(
        root.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new())),
    )
}

/// The map inside `v`, after replacing `v` by `{}` when it is not an object.
pub fn object_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        // `v` was made an object just above.
        _ => unreachable!("value was just made an object"),
    }
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.name` ("" when absent).
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

/// `metadata.namespace` ("" when absent).
pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

/// `metadata.resourceVersion` ("" when absent).
pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

/// `metadata.uid` ("" when absent).
pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid")
}

/// `metadata.deletionTimestamp`, if set.
pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .and_then(Value::as_str)
}

/// `metadata.labels` (empty when absent).
pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.generation` (0 when absent).
pub fn generation(obj: &Value) -> i64 {
    meta(obj)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Now, as a `metav1.Time` (`2006-01-02T15:04:05Z`).
pub fn now_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now, as a `metav1.MicroTime` (`2006-01-02T15:04:05.000000Z`).
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Parses a `metav1.Time` / `MicroTime`.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// A fresh uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh `generateName` suffix (5 lowercase alphanumerics, like the API server's).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Follows a dotted path (`spec.instanceId`) through objects.
pub fn lookup<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors() {
        let mut o = json!({"metadata": {"name": "a", "namespace": "ns", "finalizers": ["x"], "generation": 3}});
        assert_eq!(name(&o), "a");
        assert_eq!(namespace(&o), "ns");
        assert_eq!(resource_version(&o), "");
        assert_eq!(finalizers(&o), vec!["x".to_string()]);
        assert_eq!(generation(&o), 3);
        assert_eq!(ObjectKey::of(&o), ObjectKey::new("ns", "a"));
        meta_mut(&mut o).insert("resourceVersion".into(), json!("7"));
        assert_eq!(resource_version(&o), "7");
        let mut bare = json!(5);
        meta_mut(&mut bare).insert("name".into(), json!("b"));
        assert_eq!(name(&bare), "b");
        assert_eq!(lookup(&o, "metadata.name"), Some(&json!("a")));
    }

    #[test]
    fn times_and_names() {
        let t = now_time();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
        assert!(parse_time(&t).is_some());
        let m = now_micro();
        assert_eq!(m.len(), 27, "{m}");
        assert!(parse_time(&m).is_some());
        let s = name_suffix();
        assert_eq!(s.len(), 5);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn keys_sort_by_namespace_then_name() {
        let mut v = [
            ObjectKey::new("b", "a"),
            ObjectKey::new("a", "z"),
            ObjectKey::new("a", "b"),
        ];
        v.sort();
        assert_eq!(v[0], ObjectKey::new("a", "b"));
        assert_eq!(v[2], ObjectKey::new("b", "a"));
    }
}
