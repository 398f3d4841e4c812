//! OpenAPI v3 documents (`/openapi/v3` index and one document per group/version). kubectl
//! (≥ 1.27) reads them to decide that the server validates fields itself (the PATCH operations
//! declare `fieldValidation`), so `kubectl apply` works without `--validate=false`; custom
//! resources carry their CRD schema, so `kubectl explain` works for them. Built-in kinds get
//! minimal schemas and their PATCH operations do not advertise strategic merge, which keeps
//! kubectl on its compiled-in patch metadata. `/openapi/v2` is not served (404).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::registry::Registry;
use crate::resource::ResourceType;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The component name of a kind (`io.k8s.api.core.v1.Secret`, `dev.ecspower.v1alpha1.EcsInstancePower`).
pub fn definition_name(rt: &ResourceType) -> String {
    if rt.is_custom() {
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind);
    }
    let package = match rt.group.as_str() {
        "" => "io.k8s.api.core".to_string(),
        "apiextensions.k8s.io" => {
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string()
        }
        g => format!("io.k8s.api.{}", g.split('.').next().unwrap_or(g)),
    };
    format!("{package}.{}.{}", rt.version, rt.kind)
}

fn gvk(rt: &ResourceType) -> Value {
    json!({"group": rt.group, "version": rt.version, "kind": rt.kind})
}

fn param(name: &str, type_: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": type_, "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        param(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted. Valid value: All.",
        ),
        param(
            "fieldManager",
            "string",
            "A name associated with the actor or entity that is making these changes.",
        ),
        param(
            "fieldValidation",
            "string",
            "Ignore, Warn (default) or Strict: what to do with unknown or duplicate fields in the object.",
        ),
    ];
    if patch {
        p.push(param(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests.",
        ));
    }
    p
}

fn body_ref(def: &str) -> Value {
    json!({"schema": {"$ref": format!("#/components/schemas/{def}")}})
}

fn op(
    rt: &ResourceType,
    action: &str,
    id: &str,
    params: &[Value],
    request: Option<Value>,
    def: &str,
) -> Value {
    let mut o = json!({
        "operationId": id,
        "description": format!("{action} {}", rt.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": body_ref(def)}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(rt),
    });
    if let Some(r) = request {
        o["requestBody"] = json!({"content": r, "required": true});
    }
    o
}

fn paths_for(rt: &ResourceType, out: &mut Map<String, Value>) {
    let prefix = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let base = if rt.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{prefix}/{}", rt.plural)
    };
    let def = definition_name(rt);
    let list_def = format!("{def}List");
    let scope = if rt.namespaced { "Namespaced" } else { "" };
    let path_params = |with_name: bool| {
        let mut v = Vec::new();
        if with_name {
            v.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
        }
        if rt.namespaced {
            v.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
        }
        Value::Array(v)
    };
    let json_body = json!({"application/json": body_ref(&def), "application/yaml": body_ref(&def)});
    let patch_media = json!({
        "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
    });
    out.insert(
        base.clone(),
        json!({
            "get": op(rt, "list", &format!("list{scope}{}", rt.kind), &[], None, &list_def),
            "post": op(rt, "post", &format!("create{scope}{}", rt.kind), &write_params(false), Some(json_body.clone()), &def),
            "delete": op(rt, "deletecollection", &format!("deletecollection{scope}{}", rt.kind), &[], None, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
            "parameters": path_params(false),
        }),
    );
    out.insert(
        format!("{base}/{{name}}"),
        json!({
            "get": op(rt, "get", &format!("read{scope}{}", rt.kind), &[], None, &def),
            "put": op(rt, "put", &format!("replace{scope}{}", rt.kind), &write_params(false), Some(json_body.clone()), &def),
            "patch": op(rt, "patch", &format!("patch{scope}{}", rt.kind), &write_params(true), Some(patch_media.clone()), &def),
            "delete": op(rt, "delete", &format!("delete{scope}{}", rt.kind), &[param("dryRun", "string", "")], None, &def),
            "parameters": path_params(true),
        }),
    );
    if rt.status_subresource {
        out.insert(
            format!("{base}/{{name}}/status"),
            json!({
                "get": op(rt, "get", &format!("read{scope}{}Status", rt.kind), &[], None, &def),
                "put": op(rt, "put", &format!("replace{scope}{}Status", rt.kind), &write_params(false), Some(json_body), &def),
                "patch": op(rt, "patch", &format!("patch{scope}{}Status", rt.kind), &write_params(true), Some(patch_media), &def),
                "parameters": path_params(true),
            }),
        );
    }
}

fn schema_for(rt: &ResourceType) -> Value {
    let mut schema = rt
        .raw_schema
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "description": format!("{} (schema not published by kube-sandbox)", rt.kind), "x-kubernetes-preserve-unknown-fields": true}));
    if let Some(m) = schema.as_object_mut() {
        let props = m.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            p.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata."}));
        }
        m.insert("x-kubernetes-group-version-kind".into(), json!([gvk(rt)]));
    }
    schema
}

fn object_meta_schema() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "properties": {
            "name": s("Name must be unique within a namespace."),
            "generateName": s("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
            "namespace": s("Namespace defines the space within which each name must be unique."),
            "uid": s("UID is the unique in time and space value for this object."),
            "resourceVersion": s("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": s("CreationTimestamp is a timestamp representing the server time when this object was created."),
            "deletionTimestamp": s("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values that can be used to organize and categorize objects."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Annotations is an unstructured key value map stored with a resource."},
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "List of objects depended by this object."}
        }
    })
}

/// The document of one group/version (`api/v1`, `apis/<group>/<version>`), if served.
pub fn v3_document(reg: &Registry, gv_path: &str) -> Option<Value> {
    let (group, version) = match gv_path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), (*v).to_string()),
        ["apis", g, v] => ((*g).to_string(), (*v).to_string()),
        _ => return None,
    };
    let types = reg.resources(&group, &version);
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for rt in &types {
        paths_for(rt, &mut paths);
        let def = definition_name(rt);
        schemas.insert(def.clone(), schema_for(rt));
        schemas.insert(
            format!("{def}List"),
            json!({"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{def}")}}},
                "x-kubernetes-group-version-kind": [{"group": rt.group, "version": rt.version, "kind": rt.list_kind}]}),
        );
    }
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    schemas.insert("io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(), json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}));
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-sandbox)", "version": format!("v1.{}.0", crate::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn hash(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`.
pub fn v3_index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for g in reg.groups() {
        for v in &g.versions {
            let key = if g.name.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{}/{v}", g.name)
            };
            if let Some(doc) = v3_document(reg, &key) {
                paths.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&doc))}),
                );
            }
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_declare_field_validation() {
        let reg = Registry::with_builtins();
        let index = v3_index(&reg);
        let url = index["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .expect("api/v1");
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        let doc = v3_document(&reg, "api/v1").expect("doc");
        let item = &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"];
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Secret"
        );
        let params: Vec<&str> = item["patch"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"fieldValidation"));
        assert!(
            item["patch"]["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.Secret"]["x-kubernetes-group-version-kind"].is_array());
        assert!(v3_document(&reg, "apis/nope/v1").is_none());
        assert!(v3_document(&reg, "x").is_none());
    }

    #[test]
    fn names() {
        let mut rt = ResourceType::builtin(
            "ecspower.dev",
            "v1alpha1",
            "ecsinstancepowers",
            "EcsInstancePower",
        );
        rt.crd = Some("x".into());
        assert_eq!(
            definition_name(&rt),
            "dev.ecspower.v1alpha1.EcsInstancePower"
        );
        assert_eq!(
            definition_name(&ResourceType::builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "roles",
                "Role"
            )),
            "io.k8s.api.rbac.v1.Role"
        );
    }
}
