//! PATCH: JSON, merge and strategic merge patches applied to the current served view, and
//! server-side apply (creating the object when absent); the result then takes the update path
//! (so `/status` separation, generation, admission and conflicts behave as for PUT). A patch
//! that carries `metadata.resourceVersion` is a precondition (409 when stale).

use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::object;
use crate::patch::{self as patches, PatchType, apply};
use crate::rest::{
    Body, Reply, Target, WriteOptions, create::create_object, update::update_object,
};
use crate::store::Store;

fn manager(opts: &WriteOptions) -> Result<&str, ApiError> {
    opts.field_manager
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![crate::field_error::FieldError::required_because(
                    "fieldManager",
                    "is required for apply patch",
                )],
            )
        })
}

fn check_apply_identity(t: &Target, applied: &Value) -> Result<(), ApiError> {
    for key in ["apiVersion", "kind"] {
        if applied
            .get(key)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "{key} must be set in an apply patch"
            )));
        }
    }
    let name = object::name(applied);
    if !name.is_empty() && name != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    Ok(())
}

/// PATCH.
///
/// # Errors
///
/// 404 when the object does not exist, 409 for a stale resourceVersion, 422 for an apply
/// patch without `fieldManager`, 400 or 422 when the patch cannot be decoded, applied or
/// admitted.
pub fn patch(
    store: &Store,
    t: &Target,
    kind: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Reply, ApiError> {
    let rt = &t.rt;
    let scope = match (t.status, rt.status_subresource) {
        (true, _) => apply::Scope::StatusOnly,
        (false, true) => apply::Scope::NoStatus,
        (false, false) => apply::Scope::All,
    };
    let shape = if rt.is_custom() {
        apply::Shape::Schema(rt.schema.as_deref())
    } else {
        apply::Shape::Builtin
    };
    let mut warnings = Vec::new();
    let mut st = store.write();
    let Some(entry) = st.get(&rt.storage, &t.key()).cloned() else {
        if kind == PatchType::Apply && !t.status {
            let manager = manager(opts)?.to_string();
            let applied = patches::parse_apply_body(body)?;
            check_apply_identity(t, &applied)?;
            let mut obj = crate::rest::check_body(rt, apply::restrict(&applied, scope))?;
            object::meta_mut(&mut obj).insert("name".into(), json!(t.name()));
            let (_, owners) = apply::apply(
                &json!({}),
                &obj,
                &apply::Owners::default(),
                &manager,
                false,
                shape,
            );
            let view = create_object(&mut st, t, obj, opts, owners, &mut warnings)?;
            return Ok(Reply {
                code: 201,
                body: Body::Json(view),
                warnings,
            });
        }
        return Err(ApiError::not_found(&rt.group, &rt.plural, t.name()));
    };
    let current = rt.to_view(&entry.object).into_owned();
    let (new_view, owners) = if kind == PatchType::Apply {
        let manager = manager(opts)?;
        let applied = patches::parse_apply_body(body)?;
        check_apply_identity(t, &applied)?;
        let restricted = crate::rest::check_body(rt, apply::restrict(&applied, scope))?;
        let (v, o) = apply::apply(
            &current,
            &restricted,
            &entry.owners,
            manager,
            t.status,
            shape,
        );
        (v, Some(o))
    } else {
        (
            patches::apply_patch(kind, &current, body, rt.is_custom())?,
            None,
        )
    };
    let rv = object::resource_version(&new_view);
    if !rv.is_empty() && rv != object::resource_version(&entry.object) {
        return Err(ApiError::stale(&rt.group, &rt.plural, t.name()));
    }
    if object::name(&new_view) != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            object::name(&new_view),
            t.name()
        )));
    }
    let new_view = crate::rest::check_body(rt, new_view)?;
    let (code, view) = update_object(&mut st, t, &entry, new_view, opts, owners, &mut warnings)?;
    Ok(Reply {
        code,
        body: Body::Json(view),
        warnings,
    })
}
