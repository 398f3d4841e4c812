//! POST (create): name or `generateName`, namespace checks (exists, not terminating), server-set
//! metadata (uid, creationTimestamp, generation), `status` dropped for kinds with a status
//! subresource, admission, 409 `AlreadyExists`, CRD registration, `dryRun`. Also the create half
//! of PUT-creates and server-side apply of a missing object.

use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::crd;
use crate::object::{self, ObjectKey};
use crate::patch::apply::Owners;
use crate::resource::{ResourceType, StorageKey};
use crate::rest::{Reply, Target, WriteOptions, admit::admit, check_body, is_crd};
use crate::store::{State, Store};

const SERVER_SET: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
    "managedFields",
];

/// Creates from a request body.
///
/// # Errors
///
/// 400 for a malformed body or a name that disagrees with the URL, 404 or 403 for the
/// namespace, 422 when admission refuses the object, 409 when it already exists.
pub fn create(
    store: &Store,
    t: &Target,
    body: Value,
    opts: &WriteOptions,
) -> Result<Reply, ApiError> {
    let obj = check_body(&t.rt, body)?;
    if !object::resource_version(&obj).is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let mut warnings = Vec::new();
    let mut st = store.write();
    let view = create_object(&mut st, t, obj, opts, Owners::default(), &mut warnings)?;
    Ok(Reply {
        code: 201,
        body: crate::rest::Body::Json(view),
        warnings,
    })
}

/// Checks the namespace a new object goes into exists and is not being deleted.
///
/// # Errors
///
/// 404 when the namespace does not exist, 403 when it is being deleted.
pub fn check_namespace(
    st: &State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !rt.namespaced {
        return Ok(());
    }
    match st.get(&StorageKey::new("", "namespaces"), &ObjectKey::new("", ns)) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(e) if object::deletion_timestamp(&e.object).is_some() => {
            Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                crate::api_error::group_resource(&rt.group, &rt.plural)
            )))
        }
        Some(_) => Ok(()),
    }
}

/// Creates `obj` (served view, already checked) at the target; returns the stored object's view.
///
/// # Errors
///
/// 400 when the object's namespace or name disagrees with the URL, 422 when admission refuses
/// the object (or a CRD is invalid), 404 or 403 for the namespace, 409 when the object already
/// exists.
pub fn create_object(
    st: &mut State,
    t: &Target,
    mut obj: Value,
    opts: &WriteOptions,
    owners: Owners,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let rt = &t.rt;
    let url_ns = t.namespace.clone().unwrap_or_default();
    {
        let meta = object::meta_mut(&mut obj);
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let generated = format!("{prefix}{}", object::name_suffix());
            meta.insert("name".into(), json!(generated));
        }
        for k in SERVER_SET {
            meta.remove(k);
        }
        meta.remove("resourceVersion");
        meta.insert("uid".into(), json!(object::new_uid()));
        meta.insert("creationTimestamp".into(), json!(object::now_time()));
        if rt.generation {
            meta.insert("generation".into(), json!(1));
        }
    }
    if let Some(url_name) = &t.name
        && object::name(&obj) != url_name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({url_name})",
            object::name(&obj)
        )));
    }
    let mut obj = rt.to_storage(obj);
    if rt.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    admit(rt, &mut obj, None, opts, warnings)?;
    let name = object::name(&obj).to_string();
    let crd_types = if is_crd(rt) {
        crd::apply_defaults(&mut obj);
        let types = crd::resource_types(&obj, None)
            .map_err(|errs| ApiError::invalid(&rt.group, &rt.kind, &name, errs))?;
        if let Some(t0) = types.first()
            && st.registry.plural_taken(&t0.group, &t0.plural, &name)
        {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                vec![crate::field_error::FieldError::invalid(
                    "spec.names.plural",
                    &json!(t0.plural),
                    "is already in use by another resource",
                )],
            ));
        }
        crd::set_status(&mut obj, None);
        Some(types)
    } else {
        None
    };
    check_namespace(st, rt, object::namespace(&obj), &name)?;
    let key = ObjectKey::of(&obj);
    if st.get(&rt.storage, &key).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
    }
    if opts.dry_run {
        return Ok(rt.to_view(&obj).into_owned());
    }
    let stored = st.put(&rt.storage, obj, owners);
    if let Some(types) = crd_types {
        st.registry.register_crd(&name, types);
    }
    Ok(rt.to_view(&stored).into_owned())
}
