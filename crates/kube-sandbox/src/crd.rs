//! `CustomResourceDefinitions`: defaulting and validation of a CRD object, the resource types it
//! serves (schema compiled, printer columns parsed), and the status the API server reports
//! (`NamesAccepted` and `Established` set at once, `acceptedNames`, `storedVersions`).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::field_error::FieldError;
use crate::jsonpath::JsonPath;
use crate::object::{self, metadata_validation::NameRule};
use crate::resource::{Codec, PrinterColumn, ResourceType, StorageKey, TableLayout};
use crate::schema::Schema;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Fills the defaults the API server fills (`singular`, `listKind`, `conversion`).
pub fn apply_defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !kind.is_empty() {
            names
                .entry("singular")
                .or_insert_with(|| json!(kind.to_lowercase()));
            names
                .entry("listKind")
                .or_insert_with(|| json!(format!("{kind}List")));
        }
    }
    spec.entry("conversion")
        .or_insert_with(|| json!({"strategy": "None"}));
}

/// Validates a (defaulted) CRD and builds the resource types of its served versions.
/// `old` is the stored CRD on update (group, names and scope are immutable here).
///
/// # Errors
///
/// Every problem found (invalid or missing fields, an immutable field changed on update), as
/// field errors for a 422 Invalid answer.
pub fn resource_types(
    crd: &Value,
    old: Option<&Value>,
) -> Result<Vec<ResourceType>, Vec<FieldError>> {
    let mut errs = Vec::new();
    let name = object::name(crd);
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = s(&spec, "group");
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let plural = s(&names, "plural");
    let kind = s(&names, "kind");
    let scope = s(&spec, "scope");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group"));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural"));
    } else if !crate::object::metadata_validation::label_problems(plural).is_empty() {
        errs.push(FieldError::invalid(
            "spec.names.plural",
            &json!(plural),
            "a lowercase RFC 1123 label is required",
        ));
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if !matches!(scope, "Namespaced" | "Cluster") {
        errs.push(FieldError::not_supported(
            "spec.scope",
            &json!(scope),
            &[json!("Cluster"), json!("Namespaced")],
        ));
    }
    if let Some(old) = old {
        let ospec = old.get("spec").cloned().unwrap_or(Value::Null);
        if s(&ospec, "group") != group {
            errs.push(FieldError::invalid(
                "spec.group",
                &json!(group),
                "field is immutable",
            ));
        }
        if s(&ospec, "scope") != scope {
            errs.push(FieldError::invalid(
                "spec.scope",
                &json!(scope),
                "field is immutable",
            ));
        }
        if ospec.get("names").map(|n| s(n, "plural")) != Some(plural) {
            errs.push(FieldError::invalid(
                "spec.names.plural",
                &json!(plural),
                "field is immutable",
            ));
        }
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required_because(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage_versions: Vec<&str> = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| s(v, "name"))
        .collect();
    if !versions.is_empty() && storage_versions.len() != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &json!(storage_versions),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage_version = storage_versions.first().copied().unwrap_or("");
    let mut served = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vpath = format!("spec.versions[{i}]");
        let vname = s(v, "name");
        if vname.is_empty() {
            errs.push(FieldError::required(&format!("{vpath}.name")));
            continue;
        }
        let raw_schema = v.get("schema").and_then(|x| x.get("openAPIV3Schema"));
        let schema = match raw_schema {
            None => {
                errs.push(FieldError::required_because(
                    &format!("{vpath}.schema.openAPIV3Schema"),
                    "schemas are required",
                ));
                continue;
            }
            Some(raw) => {
                if s(raw, "type") != "object" {
                    errs.push(FieldError::invalid(
                        &format!("{vpath}.schema.openAPIV3Schema.type"),
                        &json!(s(raw, "type")),
                        "must be object at the root",
                    ));
                }
                match Schema::compile(raw, &format!("{vpath}.schema.openAPIV3Schema")) {
                    Ok(sc) => sc,
                    Err(e) => {
                        errs.extend(e);
                        continue;
                    }
                }
            }
        };
        let mut columns = Vec::new();
        for (j, c) in v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let column_path = format!("{vpath}.additionalPrinterColumns[{j}]");
            let type_ = s(c, "type");
            if !matches!(type_, "integer" | "number" | "string" | "boolean" | "date") {
                errs.push(FieldError::not_supported(
                    &format!("{column_path}.type"),
                    &json!(type_),
                    &[
                        json!("boolean"),
                        json!("date"),
                        json!("integer"),
                        json!("number"),
                        json!("string"),
                    ],
                ));
            }
            if s(c, "name").is_empty() {
                errs.push(FieldError::required(&format!("{column_path}.name")));
            }
            match JsonPath::parse(s(c, "jsonPath")) {
                Ok(path) => columns.push(PrinterColumn {
                    name: s(c, "name").to_string(),
                    type_: type_.to_string(),
                    format: s(c, "format").to_string(),
                    description: s(c, "description").to_string(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    path,
                }),
                Err(e) => errs.push(FieldError::invalid(
                    &format!("{column_path}.jsonPath"),
                    &json!(s(c, "jsonPath")),
                    e,
                )),
            }
        }
        if columns.is_empty() {
            columns.push(PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                path: JsonPath::parse(".metadata.creationTimestamp")
                    .map_err(|e| vec![FieldError::forbidden("", e)])?,
            });
        }
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let mut rt = ResourceType::builtin(group, vname, plural, kind);
        rt.singular = s(&names, "singular").to_string();
        rt.list_kind = s(&names, "listKind").to_string();
        rt.namespaced = scope == "Namespaced";
        rt.short_names = strings(names.get("shortNames"));
        rt.categories = strings(names.get("categories"));
        rt.status_subresource = v
            .get("subresources")
            .and_then(|x| x.get("status"))
            .is_some();
        rt.generation = true;
        rt.storage = StorageKey::new(group, plural);
        rt.storage_api_version = format!("{group}/{storage_version}");
        rt.codec = Codec::Identity;
        rt.unconditional_update = false;
        rt.return_deleted_object = true;
        rt.name_rule = NameRule::Subdomain;
        rt.schema = Some(Arc::new(schema));
        rt.raw_schema = raw_schema.cloned();
        rt.table = TableLayout::Custom(columns);
        rt.crd = Some(name.to_string());
        served.push(rt);
    }
    if errs.is_empty() {
        Ok(served)
    } else {
        Err(errs)
    }
}

fn condition(type_: &str, reason: &str, message: &str, old: Option<&Value>) -> Value {
    let previous = old
        .and_then(|o| o.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| s(c, "type") == type_ && s(c, "status") == "True")
        })
        .and_then(|c| c.get("lastTransitionTime").cloned());
    json!({
        "type": type_,
        "status": "True",
        "lastTransitionTime": previous.unwrap_or_else(|| json!(object::now_time())),
        "reason": reason,
        "message": message,
    })
}

/// Sets the status a registered CRD has (keeps transition times of unchanged conditions).
pub fn set_status(crd: &mut Value, old: Option<&Value>) {
    let names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .map(|v| s(v, "name").to_string())
        .unwrap_or_default();
    let mut stored = strings(old.and_then(|o| o.pointer("/status/storedVersions")));
    if !stored.contains(&storage) {
        stored.push(storage);
    }
    let mut status = Map::new();
    status.insert(
        "conditions".into(),
        json!([
            condition("NamesAccepted", "NoConflicts", "no conflicts found", old),
            condition(
                "Established",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                old
            ),
        ]),
    );
    status.insert("acceptedNames".into(), names);
    status.insert("storedVersions".into(), json!(stored));
    if let Some(m) = crd.as_object_mut() {
        m.insert("status".into(), Value::Object(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing", "shortNames": ["th"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}},
                 "additionalPrinterColumns": [{"name": "Id", "type": "string", "jsonPath": ".spec.id"}]},
                {"name": "v1beta1", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]}})
    }

    #[test]
    fn builds_served_types() {
        let mut c = crd();
        apply_defaults(&mut c);
        assert_eq!(c["spec"]["names"]["singular"], "thing");
        assert_eq!(c["spec"]["names"]["listKind"], "ThingList");
        let types = resource_types(&c, None).expect("valid");
        assert_eq!(types.len(), 1);
        let t = &types[0];
        assert!(t.status_subresource && t.namespaced && t.generation && t.is_custom());
        assert_eq!(t.storage_api_version, "example.com/v1");
        assert_eq!(t.short_names, vec!["th"]);
        assert!(matches!(&t.table, TableLayout::Custom(cols) if cols[0].name == "Id"));
        set_status(&mut c, None);
        assert_eq!(c["status"]["conditions"][1]["type"], "Established");
        assert_eq!(c["status"]["conditions"][1]["status"], "True");
        assert_eq!(c["status"]["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn rejects_bad_definitions() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong");
        c["spec"]["scope"] = json!("Galaxy");
        c["spec"]["versions"][0]["storage"] = json!(false);
        let errs = resource_types(&c, None).expect_err("invalid");
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.name", "spec.scope", "spec.versions"]);
        let mut c = crd();
        c["spec"]["versions"][0]
            .as_object_mut()
            .map(|m| m.remove("schema"));
        let errs = resource_types(&c, None).expect_err("invalid");
        assert_eq!(
            errs[0].to_string(),
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
        );
        let mut old = crd();
        old["spec"]["group"] = json!("other.com");
        assert!(resource_types(&crd(), Some(&old)).is_err());
    }
}
