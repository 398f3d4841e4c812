//! The built-in kinds the sandbox serves: what `kubectl`, Helm charts and the operator create.
//! They are stored as sent (no controllers run); the few server-side behaviours that clients
//! rely on (Secret `stringData`, Namespace phase, default fields) live in [`normalize`].

use serde_json::{Value, json};

use crate::field_error::FieldError;
use crate::object::metadata_validation::NameRule;
use crate::resource::{Codec, ResourceType, StorageKey, TableLayout};

fn with(mut rt: ResourceType, f: impl FnOnce(&mut ResourceType)) -> ResourceType {
    f(&mut rt);
    rt
}

fn short(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_string()).collect()
}

/// Every built-in resource type, in discovery order.
pub fn builtin_types() -> Vec<ResourceType> {
    vec![
        with(
            ResourceType::builtin("", "v1", "namespaces", "Namespace"),
            |r| {
                r.namespaced = false;
                r.short_names = short(&["ns"]);
                r.status_subresource = true;
                r.name_rule = NameRule::Label;
                r.return_deleted_object = true;
                r.table = TableLayout::Namespace;
            },
        ),
        with(
            ResourceType::builtin("", "v1", "configmaps", "ConfigMap"),
            |r| {
                r.short_names = short(&["cm"]);
                r.table = TableLayout::ConfigMap;
            },
        ),
        with(ResourceType::builtin("", "v1", "secrets", "Secret"), |r| {
            r.table = TableLayout::Secret;
        }),
        with(ResourceType::builtin("", "v1", "events", "Event"), |r| {
            r.short_names = short(&["ev"]);
            r.create_on_update = true;
            r.table = TableLayout::Event;
        }),
        with(
            ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount"),
            |r| {
                r.short_names = short(&["sa"]);
                r.table = TableLayout::ServiceAccount;
            },
        ),
        with(
            ResourceType::builtin("", "v1", "services", "Service"),
            |r| {
                r.short_names = short(&["svc"]);
                r.categories = short(&["all"]);
                r.status_subresource = true;
                r.name_rule = NameRule::Dns1035;
                r.table = TableLayout::Service;
            },
        ),
        with(
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
            ),
            |r| {
                r.namespaced = false;
                r.short_names = short(&["crd", "crds"]);
                r.categories = short(&["api-extensions"]);
                r.status_subresource = true;
                r.generation = true;
                r.return_deleted_object = true;
                r.table = TableLayout::Crd;
            },
        ),
        with(
            ResourceType::builtin("apps", "v1", "deployments", "Deployment"),
            |r| {
                r.short_names = short(&["deploy"]);
                r.categories = short(&["all"]);
                r.status_subresource = true;
                r.generation = true;
                r.table = TableLayout::Deployment;
            },
        ),
        with(
            ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease"),
            |r| {
                r.create_on_update = true;
                r.table = TableLayout::Lease;
            },
        ),
        with(
            ResourceType::builtin("events.k8s.io", "v1", "events", "Event"),
            |r| {
                r.short_names = short(&["ev"]);
                r.storage = StorageKey::new("", "events");
                r.storage_api_version = "v1".into();
                r.codec = Codec::EventsV1;
                r.create_on_update = true;
                r.table = TableLayout::Event;
            },
        ),
        with(
            ResourceType::builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "ClusterRole",
            ),
            |r| {
                r.namespaced = false;
                r.name_rule = NameRule::PathSegment;
            },
        ),
        with(
            ResourceType::builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
            ),
            |r| {
                r.namespaced = false;
                r.name_rule = NameRule::PathSegment;
            },
        ),
        with(
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
            |r| {
                r.name_rule = NameRule::PathSegment;
            },
        ),
        with(
            ResourceType::builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "rolebindings",
                "RoleBinding",
            ),
            |r| {
                r.name_rule = NameRule::PathSegment;
            },
        ),
        with(
            ResourceType::builtin(
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
            ),
            |r| {
                r.short_names = short(&["pdb"]);
                r.status_subresource = true;
                r.generation = true;
            },
        ),
        with(
            ResourceType::builtin(
                "networking.k8s.io",
                "v1",
                "networkpolicies",
                "NetworkPolicy",
            ),
            |r| {
                r.short_names = short(&["netpol"]);
                r.generation = true;
            },
        ),
    ]
}

/// Server-side behaviour of built-in kinds on every write (stored form): Secret `stringData`
/// folded into base64 `data` and `type` defaulted, Namespace `spec.finalizers` and `status.phase`.
/// Returns field errors for malformed content the API server would reject.
pub fn normalize(rt: &ResourceType, obj: &mut Value, creating: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if rt.is_custom() {
        return errs;
    }
    let Some(map) = obj.as_object_mut() else {
        return errs;
    };
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => {
            use base64::Engine;
            let engine = base64::engine::general_purpose::STANDARD;
            if let Some(Value::Object(sd)) = map.remove("stringData") {
                let data = map.entry("data").or_insert_with(|| json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                if let Some(d) = data.as_object_mut() {
                    for (k, v) in sd {
                        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        d.insert(k, Value::String(engine.encode(text)));
                    }
                }
            }
            if let Some(Value::Object(d)) = map.get("data") {
                for (k, v) in d {
                    let field = format!("data[{k}]");
                    match v.as_str() {
                        Some(s) if engine.decode(s).is_ok() => {}
                        _ => errs.push(FieldError::invalid(
                            &field,
                            v,
                            "must be base64-encoded bytes",
                        )),
                    }
                }
            }
            map.entry("type").or_insert_with(|| json!("Opaque"));
        }
        ("", "namespaces") => {
            if creating {
                map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            }
            let terminating = map
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some();
            let phase = if terminating { "Terminating" } else { "Active" };
            let status = map.entry("status").or_insert_with(|| json!({}));
            if !status.is_object() {
                *status = json!({});
            }
            if let Some(s) = status.as_object_mut() {
                s.insert("phase".into(), json!(phase));
            }
        }
        ("", "services") => {
            let uid = map
                .get("metadata")
                .and_then(|m| m.get("uid"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                s.entry("type").or_insert_with(|| json!("ClusterIP"));
                let external = s.get("type").and_then(Value::as_str) == Some("ExternalName");
                if creating && !external && !s.contains_key("clusterIP") {
                    // A stable fake address from the service CIDR 10.96.0.0/12 (nothing routes to it).
                    let h = uid
                        .bytes()
                        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
                    let ip = format!("10.96.{}.{}", (h >> 8) % 256, h % 254 + 1);
                    s.insert("clusterIP".into(), json!(ip));
                    s.insert("clusterIPs".into(), json!([ip]));
                }
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(plural: &str) -> ResourceType {
        builtin_types()
            .into_iter()
            .find(|r| r.plural == plural && r.group.is_empty())
            .expect("builtin")
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut s = json!({"stringData": {"accessKeyId": "AK"}, "data": {"x": "eA=="}});
        assert!(normalize(&rt("secrets"), &mut s, true).is_empty());
        assert_eq!(s["data"]["accessKeyId"], "QUs=");
        assert_eq!(s["data"]["x"], "eA==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let mut bad = json!({"data": {"x": "not base64!"}});
        assert_eq!(
            normalize(&rt("secrets"), &mut bad, true)[0].field,
            "data[x]"
        );
    }

    #[test]
    fn namespace_phase() {
        let mut ns = json!({"metadata": {"name": "a"}});
        normalize(&rt("namespaces"), &mut ns, true);
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["spec"]["finalizers"][0], "kubernetes");
        ns["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        normalize(&rt("namespaces"), &mut ns, false);
        assert_eq!(ns["status"]["phase"], "Terminating");
    }

    #[test]
    fn services_get_a_cluster_ip() {
        let mut svc = json!({"metadata": {"uid": "abc"}, "spec": {"ports": [{"port": 80}]}});
        normalize(&rt("services"), &mut svc, true);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert!(
            svc["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.96."))
        );
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        normalize(&rt("services"), &mut headless, true);
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn table_is_complete() {
        let types = builtin_types();
        assert!(
            types
                .iter()
                .any(|r| r.group == "events.k8s.io" && r.storage == StorageKey::new("", "events"))
        );
        assert!(types.iter().all(|r| !r.is_custom()));
    }
}
