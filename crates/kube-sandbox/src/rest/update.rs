//! PUT (update) and the update half of every PATCH: resourceVersion preconditions (409 on a
//! stale version), `/status` separation (the main endpoint keeps the old status; `/status`
//! changes nothing but status), server-owned metadata preserved, `generation` bumped only when
//! something outside metadata and status changes, no-op writes not stored, the last finalizer
//! removal of a deleting object deleting it, CRD re-registration, `dryRun`.

use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::crd;
use crate::field_error::FieldError;
use crate::object::{self, ObjectKey};
use crate::patch::apply::Owners;
use crate::rest::{
    Body, Reply, Target, WriteOptions, admit::admit, check_body, create::create_object, delete,
    is_crd,
};
use crate::store::{Entry, State, Store};

const PRESERVED: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
];

/// PUT.
///
/// # Errors
///
/// 400 for a malformed body or a name that disagrees with the URL, 404 when the object does
/// not exist, 409 for a stale resourceVersion, 422 when admission refuses the new state.
pub fn update(
    store: &Store,
    t: &Target,
    body: Value,
    opts: &WriteOptions,
) -> Result<Reply, ApiError> {
    let rt = &t.rt;
    let body = check_body(rt, body)?;
    let body_name = object::name(&body);
    if body_name != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    let body_ns = object::namespace(&body);
    if rt.namespaced && !body_ns.is_empty() && Some(body_ns) != t.namespace.as_deref() {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut warnings = Vec::new();
    let mut st = store.write();
    let Some(entry) = st.get(&rt.storage, &t.key()).cloned() else {
        if rt.create_on_update && !t.status {
            let mut obj = body;
            object::meta_mut(&mut obj).remove("resourceVersion");
            let view = create_object(&mut st, t, obj, opts, Owners::default(), &mut warnings)?;
            return Ok(Reply {
                code: 201,
                body: Body::Json(view),
                warnings,
            });
        }
        return Err(ApiError::not_found(&rt.group, &rt.plural, t.name()));
    };
    let body_rv = object::resource_version(&body);
    if body_rv.is_empty() {
        if !rt.unconditional_update {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                t.name(),
                vec![FieldError::invalid(
                    "metadata.resourceVersion",
                    &json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
    } else if body_rv != object::resource_version(&entry.object) {
        return Err(ApiError::stale(&rt.group, &rt.plural, t.name()));
    }
    let (code, view) = update_object(&mut st, t, &entry, body, opts, None, &mut warnings)?;
    Ok(Reply {
        code,
        body: Body::Json(view),
        warnings,
    })
}

/// Whether anything outside `metadata` (and `status`, when it is a subresource) differs.
fn spec_changed(old: &Value, new: &Value, status_subresource: bool) -> bool {
    let ignored = |k: &str| {
        matches!(k, "metadata" | "apiVersion" | "kind") || (status_subresource && k == "status")
    };
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    o.iter()
        .filter(|(k, _)| !ignored(k))
        .any(|(k, v)| n.get(k) != Some(v))
        || n.iter()
            .filter(|(k, _)| !ignored(k))
            .any(|(k, _)| !o.contains_key(k))
}

/// Applies a new state (served view) to an existing object; returns (HTTP code, view).
///
/// # Errors
///
/// 422 when admission refuses the new state.
pub fn update_object(
    st: &mut State,
    t: &Target,
    entry: &Entry,
    new_view: Value,
    opts: &WriteOptions,
    owners: Option<Owners>,
    warnings: &mut Vec<String>,
) -> Result<(u16, Value), ApiError> {
    let rt = &t.rt;
    let old = &*entry.object;
    let new = rt.to_storage(new_view);
    let mut merged = if t.status {
        let mut m = old.clone();
        let status = new.get("status").cloned();
        if let Some(map) = m.as_object_mut() {
            match status {
                Some(s) => map.insert("status".into(), s),
                None => map.remove("status"),
            };
        }
        m
    } else {
        let mut m = new;
        let old_meta = object::meta(old).cloned().unwrap_or_default();
        let meta = object::meta_mut(&mut m);
        for k in PRESERVED {
            match old_meta.get(k) {
                Some(v) => meta.insert(k.to_string(), v.clone()),
                None => meta.remove(k),
            };
        }
        meta.remove("managedFields");
        meta.remove("selfLink");
        if rt.status_subresource
            && let Some(map) = m.as_object_mut()
        {
            match old.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        m
    };
    object::meta_mut(&mut merged).insert(
        "resourceVersion".into(),
        json!(object::resource_version(old)),
    );
    admit(rt, &mut merged, Some(old), opts, warnings)?;
    let crd_types = if is_crd(rt) {
        crd::apply_defaults(&mut merged);
        let types = crd::resource_types(&merged, Some(old))
            .map_err(|errs| ApiError::invalid(&rt.group, &rt.kind, t.name(), errs))?;
        crd::set_status(&mut merged, Some(old));
        Some(types)
    } else {
        None
    };
    if rt.generation && spec_changed(old, &merged, rt.status_subresource) {
        object::meta_mut(&mut merged)
            .insert("generation".into(), json!(object::generation(old) + 1));
    }
    let owners_changed = owners.as_ref().is_some_and(|o| *o != entry.owners);
    if merged == *old && !owners_changed {
        return Ok((200, rt.to_view(old).into_owned()));
    }
    if opts.dry_run {
        return Ok((200, rt.to_view(&merged).into_owned()));
    }
    let key = ObjectKey::of(old);
    if object::deletion_timestamp(&merged).is_some()
        && object::finalizers(&merged).is_empty()
        && !crate::rest::is_namespace(rt)
    {
        let last =
            delete::remove_for_real(st, rt, &key).unwrap_or_else(|| std::sync::Arc::new(merged));
        return Ok((200, rt.to_view(&last).into_owned()));
    }
    let stored = st.put(
        &rt.storage,
        merged,
        owners.unwrap_or_else(|| entry.owners.clone()),
    );
    if let Some(types) = crd_types {
        st.registry.register_crd(t.name(), types);
    }
    Ok((200, rt.to_view(&stored).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tracks_spec_only() {
        let old = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"x": 1}, "status": {"s": 1}});
        assert!(!spec_changed(
            &old,
            &json!({"metadata": {}, "spec": {"x": 1}, "status": {"s": 2}}),
            true
        ));
        assert!(spec_changed(
            &old,
            &json!({"metadata": {}, "spec": {"x": 1}, "status": {"s": 2}}),
            false
        ));
        assert!(spec_changed(
            &old,
            &json!({"spec": {"x": 2}, "status": {"s": 1}}),
            true
        ));
        assert!(spec_changed(
            &old,
            &json!({"spec": {"x": 1}, "status": {"s": 1}, "extra": 1}),
            true
        ));
        assert!(spec_changed(&old, &json!({"status": {"s": 1}}), true));
    }
}
