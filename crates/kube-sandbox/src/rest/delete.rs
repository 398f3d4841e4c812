//! DELETE and deletecollection: preconditions, finalizers (`deletionTimestamp` set, generation
//! bumped, the object stays until the last finalizer goes), namespaces (Terminating, contents
//! deleted, removed once empty), CRDs (their objects and served resources removed), `dryRun`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::object::{self, ObjectKey};
use crate::resource::{ResourceType, StorageKey};
use crate::rest::{Body, ListOptions, Reply, Target, is_crd, is_namespace, success_status};
use crate::store::{State, Store};

/// Options of a delete (query and `DeleteOptions` body).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
}

impl DeleteOptions {
    /// Reads a JSON `DeleteOptions` body (fields this server does not act on are ignored).
    ///
    /// # Errors
    ///
    /// 400 when the body is not an object or a known field has the wrong type.
    pub fn merge_json(&mut self, body: &Value) -> Result<(), ApiError> {
        if body.is_null() {
            return Ok(());
        }
        if !body.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be an object"));
        }
        if let Some(d) = body.get("dryRun").and_then(Value::as_array) {
            for v in d {
                match v.as_str() {
                    Some("All") => self.dry_run = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                        )));
                    }
                }
            }
        }
        if let Some(p) = body.get("preconditions") {
            self.precondition_uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
            self.precondition_rv = p
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Ok(())
    }
}

/// DELETE of one object.
///
/// # Errors
///
/// 404 when the object does not exist, 409 when a precondition (uid or resourceVersion)
/// does not match.
pub fn delete(store: &Store, t: &Target, opts: &DeleteOptions) -> Result<Reply, ApiError> {
    let rt = &t.rt;
    let mut st = store.write();
    let key = t.key();
    let Some(entry) = st.get(&rt.storage, &key).cloned() else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, t.name()));
    };
    if let Some(uid) = &opts.precondition_uid
        && uid != object::uid(&entry.object)
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            t.name(),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object::uid(&entry.object)
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && rv != object::resource_version(&entry.object)
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            t.name(),
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                object::resource_version(&entry.object)
            ),
        ));
    }
    let (gone, obj) = delete_object(&mut st, rt, &key, opts.dry_run);
    let body = if gone && !rt.return_deleted_object {
        success_status(rt, t.name(), object::uid(&obj))
    } else {
        rt.to_view(&obj).into_owned()
    };
    Ok(Reply::json(200, body))
}

/// Deletes (or starts deleting) one object; returns (removed for real, the object's state).
pub fn delete_object(
    st: &mut State,
    rt: &ResourceType,
    key: &ObjectKey,
    dry_run: bool,
) -> (bool, Arc<Value>) {
    let Some(entry) = st.get(&rt.storage, key).cloned() else {
        return (true, Arc::new(Value::Null));
    };
    let old = entry.object;
    let pending = !object::finalizers(&old).is_empty() || is_namespace(rt);
    if !pending {
        if dry_run {
            return (true, old);
        }
        let last = remove_for_real(st, rt, key).unwrap_or(old);
        return (true, last);
    }
    if object::deletion_timestamp(&old).is_some() {
        return (false, old);
    }
    let mut marked = (*old).clone();
    {
        let meta = object::meta_mut(&mut marked);
        meta.insert("deletionTimestamp".into(), json!(object::now_time()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if let Some(g) = meta
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
        {
            meta.insert("generation".into(), json!(g + 1));
        }
    }
    if is_namespace(rt) {
        crate::builtin::normalize(rt, &mut marked, false);
    }
    if dry_run {
        return (false, Arc::new(marked));
    }
    let stored = st.put(&rt.storage, marked, entry.owners);
    if is_namespace(rt) {
        let ns = key.name.clone();
        for sk in st.storage_keys() {
            let Some(view) = st.registry.any_view(&sk) else {
                continue;
            };
            let keys: Vec<ObjectKey> = st
                .range(&sk, Some(&ns), None)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                delete_object(st, &view, &k, false);
            }
        }
        if !st.namespace_has_objects(&ns) {
            let last = st.remove(&rt.storage, key).unwrap_or(stored);
            return (true, last);
        }
    }
    (false, stored)
}

/// Removes an object now, with the side effects: a CRD takes its resources with it; the last
/// object of a terminating namespace lets the namespace go.
pub fn remove_for_real(st: &mut State, rt: &ResourceType, key: &ObjectKey) -> Option<Arc<Value>> {
    let last = st.remove(&rt.storage, key)?;
    if is_crd(rt)
        && let Some(sk) = st.registry.unregister_crd(&key.name)
    {
        st.remove_resource(&sk);
    }
    if rt.namespaced {
        let ns_storage = StorageKey::new("", "namespaces");
        let ns_key = ObjectKey::new("", &key.namespace);
        let terminating = st
            .get(&ns_storage, &ns_key)
            .is_some_and(|e| object::deletion_timestamp(&e.object).is_some());
        if terminating && !st.namespace_has_objects(&key.namespace) {
            st.remove(&ns_storage, &ns_key);
        }
    }
    Some(last)
}

/// DELETE on a collection (selectors apply); answers with the list of affected objects.
///
/// # Errors
///
/// None today (deleting the selected objects cannot fail); the `Result` keeps the shape of the
/// other verbs.
pub fn delete_collection(
    store: &Store,
    t: &Target,
    list: &ListOptions,
    opts: &DeleteOptions,
) -> Result<Reply, ApiError> {
    let rt = &t.rt;
    let mut st = store.write();
    let keys: Vec<ObjectKey> = st
        .range(&rt.storage, t.namespace.as_deref(), None)
        .filter(|(_, e)| list.selectors.matches(&rt.to_view(&e.object)))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for k in keys {
        let (_, obj) = delete_object(&mut st, rt, &k, opts.dry_run);
        items.push(rt.to_view(&obj).into_owned());
    }
    let body = json!({
        "kind": rt.list_kind,
        "apiVersion": rt.api_version,
        "metadata": {"resourceVersion": st.rv().to_string()},
        "items": items,
    });
    Ok(Reply {
        code: 200,
        body: Body::Json(body),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_body() {
        let mut o = DeleteOptions::default();
        o.merge_json(&json!({"kind": "DeleteOptions", "dryRun": ["All"], "preconditions": {"uid": "u", "resourceVersion": "3"},
            "propagationPolicy": "Background"}))
            .expect("ok");
        assert!(o.dry_run);
        assert_eq!(o.precondition_uid.as_deref(), Some("u"));
        assert_eq!(o.precondition_rv.as_deref(), Some("3"));
        assert!(o.merge_json(&json!({"dryRun": ["Some"]})).is_err());
        assert!(o.merge_json(&Value::Null).is_ok());
    }
}
