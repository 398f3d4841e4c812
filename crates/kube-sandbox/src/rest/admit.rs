//! Admission of a new object state before it is stored (stored form): pruning, `fieldValidation`
//! and defaulting for custom resources, built-in normalization, metadata and schema
//! validation (CEL transition rules see the old object), and the finalizer rule for objects
//! being deleted. Failures are 400 (strict decoding) or 422 Invalid.

use serde_json::Value;

use crate::api_error::ApiError;
use crate::builtin;
use crate::field_error::FieldError;
use crate::object::{self, metadata_validation::validate_metadata};
use crate::resource::ResourceType;
use crate::rest::{FieldValidation, WriteOptions};
use crate::schema::{prune, validate};

/// Processes `obj` in place; `old` is the stored object on update.
///
/// # Errors
///
/// 400 for unknown fields under `fieldValidation=Strict`; 422 Invalid listing every failed
/// normalisation, metadata, schema and finalizer check.
pub fn admit(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOptions,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if let Some(schema) = &rt.schema {
        let mut pruned = Vec::new();
        prune::prune_object(schema, obj, &mut pruned);
        if !pruned.is_empty() {
            let listed: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            match opts.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                        listed.join(", "),
                        kind = rt.kind,
                        v = rt.version,
                    )));
                }
                FieldValidation::Warn => warnings.extend(listed),
                FieldValidation::Ignore => {}
            }
        }
        prune::apply_defaults(schema, obj);
    }
    let mut errs = builtin::normalize(rt, obj, old.is_none());
    errs.extend(validate_metadata(obj, rt.name_rule, rt.namespaced));
    if let Some(schema) = &rt.schema {
        errs.extend(validate::validate_object(schema, obj, old));
    }
    if let Some(old) = old
        && object::deletion_timestamp(old).is_some()
    {
        let before = object::finalizers(old);
        let added: Vec<String> = object::finalizers(obj)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            object::name(obj),
            errs,
        ))
    }
}
