//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which client-go's typed
//! clients send for built-in kinds (`kubectl create secret|configmap|namespace|serviceaccount|
//! role|rolebinding|clusterrole|clusterrolebinding`, Helm's release Secrets, typed deletes).
//! The `k8s\0` envelope and `runtime.Unknown` wrapper are decoded with the `k8s-pb` types and
//! the object is converted to the JSON the rest of the server works with. Other kinds answer
//! 415 with a message saying to send JSON.

use base64::Engine;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::api_error::ApiError;

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8; 4] = b"k8s\0";

/// Kinds whose protobuf bodies are understood.
pub const SUPPORTED: [&str; 9] = [
    "Secret",
    "ConfigMap",
    "Namespace",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "DeleteOptions",
];

/// Builds a JSON object, skipping absent and empty values.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn s(mut self, k: &str, v: Option<String>) -> Self {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            self.0.insert(k.into(), Value::String(v));
        }
        self
    }

    fn v(mut self, k: &str, v: Option<Value>) -> Self {
        match v {
            Some(Value::Null) | None => {}
            Some(Value::Object(m)) if m.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v) => {
                self.0.insert(k.into(), v);
            }
        }
        self
    }

    fn strings(self, k: &str, v: &[String]) -> Self {
        self.v(k, Some(json!(v)))
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn time(t: Option<meta::Time>) -> Option<Value> {
    let t = t?;
    let ts = jiff::Timestamp::from_second(t.seconds.unwrap_or(0)).ok()?;
    Some(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn object_meta(m: Option<meta::ObjectMeta>) -> Value {
    let Some(m) = m else { return json!({}) };
    let owners: Vec<Value> = m
        .owner_references
        .into_iter()
        .map(|o| {
            Obj::default()
                .s("apiVersion", o.api_version)
                .s("kind", o.kind)
                .s("name", o.name)
                .s("uid", o.uid)
                .v("controller", o.controller.map(Value::Bool))
                .v(
                    "blockOwnerDeletion",
                    o.block_owner_deletion.map(Value::Bool),
                )
                .done()
        })
        .collect();
    Obj::default()
        .s("name", m.name)
        .s("generateName", m.generate_name)
        .s("namespace", m.namespace)
        .s("uid", m.uid)
        .s("resourceVersion", m.resource_version)
        .v("generation", m.generation.map(Value::from))
        .v("creationTimestamp", time(m.creation_timestamp))
        .v("deletionTimestamp", time(m.deletion_timestamp))
        .v("labels", Some(json!(m.labels)))
        .v("annotations", Some(json!(m.annotations)))
        .v("ownerReferences", Some(Value::Array(owners)))
        .strings("finalizers", &m.finalizers)
        .done()
}

fn typed(api_version: &str, kind: &str, metadata: Option<meta::ObjectMeta>) -> Obj {
    let mut o = Obj::default()
        .s("apiVersion", Some(api_version.to_string()))
        .s("kind", Some(kind.to_string()));
    o.0.insert("metadata".into(), object_meta(metadata));
    o
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn rules(rules: Vec<rbac::PolicyRule>) -> Value {
    Value::Array(
        rules
            .into_iter()
            .map(|r| {
                Obj::default()
                    .strings("verbs", &r.verbs)
                    .strings("apiGroups", &r.api_groups)
                    .strings("resources", &r.resources)
                    .strings("resourceNames", &r.resource_names)
                    .strings("nonResourceURLs", &r.non_resource_ur_ls)
                    .done()
            })
            .collect(),
    )
}

fn binding(subjects: Vec<rbac::Subject>, role_ref: Option<rbac::RoleRef>) -> (Value, Value) {
    let subjects = subjects
        .into_iter()
        .map(|s| {
            Obj::default()
                .s("kind", s.kind)
                .s("apiGroup", s.api_group)
                .s("name", s.name)
                .s("namespace", s.namespace)
                .done()
        })
        .collect();
    let role_ref = role_ref.map_or(Value::Null, |r| {
        Obj::default()
            .s("apiGroup", r.api_group)
            .s("kind", r.kind)
            .s("name", r.name)
            .done()
    });
    (Value::Array(subjects), role_ref)
}

fn label_selector(s: meta::LabelSelector) -> Value {
    let exprs: Vec<Value> = s
        .match_expressions
        .into_iter()
        .map(|e| {
            Obj::default()
                .s("key", e.key)
                .s("operator", e.operator)
                .strings("values", &e.values)
                .done()
        })
        .collect();
    Obj::default()
        .v("matchLabels", Some(json!(s.match_labels)))
        .v("matchExpressions", Some(Value::Array(exprs)))
        .done()
}

fn bad(kind: &str, e: &prost::DecodeError) -> ApiError {
    ApiError::bad_request(format!("error decoding {kind} from protobuf: {e}"))
}

/// Decodes a protobuf request body into the JSON object it carries.
///
/// # Errors
///
/// 400 when the body lacks the `k8s\0` envelope or does not decode, 415 for a kind this
/// server does not decode from protobuf.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| {
        ApiError::bad_request("protobuf body does not start with the k8s\\0 envelope")
    })?;
    let unknown = Unknown::decode(inner).map_err(|e| bad("runtime.Unknown", &e))?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let raw = raw.as_slice();
    let av = api_version.as_str();
    let value = match (av, kind.as_str()) {
        ("v1", "Secret") => {
            let s = core::Secret::decode(raw).map_err(|e| bad(&kind, &e))?;
            let data: Map<String, Value> =
                s.data.iter().map(|(k, v)| (k.clone(), b64(v))).collect();
            typed(av, &kind, s.metadata)
                .s("type", s.r#type)
                .v("immutable", s.immutable.map(Value::Bool))
                .v("data", Some(Value::Object(data)))
                .v("stringData", Some(json!(s.string_data)))
                .done()
        }
        ("v1", "ConfigMap") => {
            let c = core::ConfigMap::decode(raw).map_err(|e| bad(&kind, &e))?;
            let binary: Map<String, Value> = c
                .binary_data
                .iter()
                .map(|(k, v)| (k.clone(), b64(v)))
                .collect();
            typed(av, &kind, c.metadata)
                .v("immutable", c.immutable.map(Value::Bool))
                .v("data", Some(json!(c.data)))
                .v("binaryData", Some(Value::Object(binary)))
                .done()
        }
        ("v1", "Namespace") => {
            let n = core::Namespace::decode(raw).map_err(|e| bad(&kind, &e))?;
            let spec = n
                .spec
                .map(|s| Obj::default().strings("finalizers", &s.finalizers).done());
            typed(av, &kind, n.metadata).v("spec", spec).done()
        }
        ("v1", "ServiceAccount") => {
            let sa = core::ServiceAccount::decode(raw).map_err(|e| bad(&kind, &e))?;
            let secrets: Vec<Value> = sa
                .secrets
                .into_iter()
                .map(|r| {
                    Obj::default()
                        .s("kind", r.kind)
                        .s("namespace", r.namespace)
                        .s("name", r.name)
                        .s("uid", r.uid)
                        .done()
                })
                .collect();
            let pulls: Vec<Value> = sa
                .image_pull_secrets
                .into_iter()
                .map(|r| Obj::default().s("name", r.name).done())
                .collect();
            typed(av, &kind, sa.metadata)
                .v("secrets", Some(Value::Array(secrets)))
                .v("imagePullSecrets", Some(Value::Array(pulls)))
                .v(
                    "automountServiceAccountToken",
                    sa.automount_service_account_token.map(Value::Bool),
                )
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "Role") => {
            let r = rbac::Role::decode(raw).map_err(|e| bad(&kind, &e))?;
            typed(av, &kind, r.metadata)
                .v("rules", Some(rules(r.rules)))
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            let r = rbac::ClusterRole::decode(raw).map_err(|e| bad(&kind, &e))?;
            let aggregation = r.aggregation_rule.map(|a| {
                json!({"clusterRoleSelectors": a.cluster_role_selectors.into_iter().map(label_selector).collect::<Vec<_>>()})
            });
            typed(av, &kind, r.metadata)
                .v("rules", Some(rules(r.rules)))
                .v("aggregationRule", aggregation)
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            let b = rbac::RoleBinding::decode(raw).map_err(|e| bad(&kind, &e))?;
            let (subjects, role_ref) = binding(b.subjects, b.role_ref);
            typed(av, &kind, b.metadata)
                .v("subjects", Some(subjects))
                .v("roleRef", Some(role_ref))
                .done()
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let b = rbac::ClusterRoleBinding::decode(raw).map_err(|e| bad(&kind, &e))?;
            let (subjects, role_ref) = binding(b.subjects, b.role_ref);
            typed(av, &kind, b.metadata)
                .v("subjects", Some(subjects))
                .v("roleRef", Some(role_ref))
                .done()
        }
        ("v1" | "meta.k8s.io/v1", "DeleteOptions") => {
            let d = meta::DeleteOptions::decode(raw).map_err(|e| bad(&kind, &e))?;
            let pre = d.preconditions.map(|p| {
                Obj::default()
                    .s("uid", p.uid)
                    .s("resourceVersion", p.resource_version)
                    .done()
            });
            Obj::default()
                .s("kind", Some(kind.clone()))
                .s("apiVersion", Some(api_version.clone()))
                .v(
                    "gracePeriodSeconds",
                    d.grace_period_seconds.map(Value::from),
                )
                .v("preconditions", pre)
                .s("propagationPolicy", d.propagation_policy)
                .strings("dryRun", &d.dry_run)
                .done()
        }
        _ => {
            return Err(ApiError::unsupported_media_type(
                &format!("{MEDIA_TYPE} for {api_version}/{kind}"),
                &[
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf (Secret, ConfigMap, Namespace, ServiceAccount, RBAC kinds, DeleteOptions)",
                ],
            ));
        }
    };
    Ok(value)
}

/// Encodes an object as client-go does (used by tests and benchmarks to exercise the decoder).
pub fn encode_envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn om(name: &str, ns: &str) -> meta::ObjectMeta {
        meta::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: BTreeMap::from([("app".to_string(), "x".to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn secret() {
        let s = core::Secret {
            metadata: Some(om("creds", "default")),
            data: BTreeMap::from([("accessKeyId".to_string(), b"AK".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&encode_envelope("v1", "Secret", s.encode_to_vec())).expect("decodes");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["metadata"]["name"], "creds");
        assert_eq!(v["metadata"]["labels"]["app"], "x");
        assert_eq!(v["data"]["accessKeyId"], "QUs=");
        assert_eq!(v["type"], "Opaque");
        assert!(v.get("stringData").is_none());
    }

    #[test]
    // One single-letter binding per decoded kind (`n`amespace, `c`onfigMap, `b`inding, ...).
    #[allow(clippy::many_single_char_names)]
    fn namespace_configmap_binding_delete() {
        let n = core::Namespace {
            metadata: Some(om("team", "")),
            ..Default::default()
        };
        let v = decode(&encode_envelope("v1", "Namespace", n.encode_to_vec())).expect("decodes");
        assert_eq!(v["metadata"]["name"], "team");
        assert!(v["metadata"].get("namespace").is_none());
        let c = core::ConfigMap {
            metadata: Some(om("c", "d")),
            data: BTreeMap::from([("k".to_string(), "v".to_string())]),
            ..Default::default()
        };
        assert_eq!(
            decode(&encode_envelope("v1", "ConfigMap", c.encode_to_vec())).expect("ok")["data"]["k"],
            "v"
        );
        let b = rbac::RoleBinding {
            metadata: Some(om("b", "d")),
            subjects: vec![rbac::Subject {
                kind: Some("ServiceAccount".into()),
                name: Some("sa".into()),
                ..Default::default()
            }],
            role_ref: Some(rbac::RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: Some("Role".into()),
                name: Some("r".into()),
            }),
        };
        let v = decode(&encode_envelope(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            b.encode_to_vec(),
        ))
        .expect("ok");
        assert_eq!(v["roleRef"]["name"], "r");
        assert_eq!(v["subjects"][0]["kind"], "ServiceAccount");
        let d = meta::DeleteOptions {
            dry_run: vec!["All".into()],
            preconditions: Some(meta::Preconditions {
                uid: Some("u".into()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let v = decode(&encode_envelope("v1", "DeleteOptions", d.encode_to_vec())).expect("ok");
        assert_eq!(v["dryRun"], json!(["All"]));
        assert_eq!(v["preconditions"]["uid"], "u");
    }

    #[test]
    fn rejects() {
        assert_eq!(decode(b"nope").expect_err("no magic").code(), 400);
        assert_eq!(decode(b"k8s\0\xff\xff").expect_err("garbage").code(), 400);
        let e = decode(&encode_envelope("apps/v1", "Deployment", vec![])).expect_err("unsupported");
        assert_eq!(e.code(), 415);
        assert!(e.message.contains("apps/v1/Deployment"));
    }
}
