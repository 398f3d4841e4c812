//! What the server knows about one served resource (a group/version/plural): its kind, scope,
//! subresources, how objects are stored (the storage key shared across versions and views),
//! naming rule, schema (custom resources) and table layout. Built-in kinds come from
//! [`crate::builtin`], custom ones from [`crate::crd`].

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use crate::jsonpath::JsonPath;
use crate::object::metadata_validation::NameRule;
use crate::schema::Schema;

/// Where a resource's objects live, whatever version or view they are served in:
/// `(group, plural)`. `events.k8s.io/v1` events share core `events` storage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey {
    /// Storage group.
    pub group: String,
    /// Storage plural.
    pub resource: String,
}

impl StorageKey {
    /// A key.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// How a served view maps to the stored form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Same fields; only `apiVersion` differs (custom resources, conversion strategy None).
    Identity,
    /// `events.k8s.io/v1` Event over core `v1` Event storage.
    EventsV1,
}

/// A CRD printer column.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    /// Header.
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    /// Optional format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 shows in the default output, more only with `-o wide`.
    pub priority: i64,
    /// Where the value is.
    pub path: JsonPath,
}

/// Which columns a Table response has.
#[derive(Debug, Clone)]
pub enum TableLayout {
    /// Name, Created At.
    Default,
    /// Name, Status, Age.
    Namespace,
    /// Name, Type, Data, Age.
    Secret,
    /// Name, Data, Age.
    ConfigMap,
    /// Last Seen, Type, Reason, Object, Message.
    Event,
    /// Name, Ready, Up-to-date, Available, Age.
    Deployment,
    /// Name, Holder, Age.
    Lease,
    /// Name, Type, Cluster-IP, Ports, Age.
    Service,
    /// Name, Created At.
    Crd,
    /// Name, Secrets, Age.
    ServiceAccount,
    /// A CRD's `additionalPrinterColumns` after Name.
    Custom(Vec<PrinterColumn>),
}

/// One served resource.
#[derive(Debug, Clone)]
// Independent facts about a resource as the API server's discovery reports them (namespaced,
// generation, subresources, ...), not states of one machine.
#[allow(clippy::struct_excessive_bools)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// `v1` or `group/version`.
    pub api_version: String,
    /// Plural (URL segment).
    pub plural: String,
    /// Singular.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// List kind.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`ns`, `ecspower`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status_subresource: bool,
    /// Maintains `metadata.generation`.
    pub generation: bool,
    /// Storage key.
    pub storage: StorageKey,
    /// `apiVersion` objects are stored with.
    pub storage_api_version: String,
    /// View codec.
    pub codec: Codec,
    /// PUT of a missing object creates it.
    pub create_on_update: bool,
    /// PUT without `metadata.resourceVersion` is allowed.
    pub unconditional_update: bool,
    /// DELETE answers with the object rather than a success `Status`.
    pub return_deleted_object: bool,
    /// Name rule.
    pub name_rule: NameRule,
    /// Structural schema (custom resources).
    pub schema: Option<Arc<Schema>>,
    /// The schema as written in the CRD (OpenAPI, `kubectl explain`).
    pub raw_schema: Option<Value>,
    /// Table layout.
    pub table: TableLayout,
    /// The CRD that defines this resource, if any.
    pub crd: Option<String>,
}

impl ResourceType {
    /// A built-in resource with the common defaults (namespaced, JSON as stored, no status
    /// subresource, no generation, subdomain names).
    pub fn builtin(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Self {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.clone(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            namespaced: true,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            generation: false,
            storage: StorageKey::new(group, plural),
            storage_api_version: api_version,
            codec: Codec::Identity,
            create_on_update: false,
            unconditional_update: true,
            return_deleted_object: false,
            name_rule: NameRule::Subdomain,
            schema: None,
            raw_schema: None,
            table: TableLayout::Default,
            crd: None,
        }
    }

    /// True for custom resources.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// The stored object as this view serves it.
    pub fn to_view<'a>(&self, stored: &'a Value) -> Cow<'a, Value> {
        match self.codec {
            Codec::EventsV1 => Cow::Owned(crate::events::core_to_v1(stored)),
            Codec::Identity => {
                if stored.get("apiVersion").and_then(Value::as_str)
                    == Some(self.api_version.as_str())
                {
                    Cow::Borrowed(stored)
                } else {
                    let mut v = stored.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
                    }
                    Cow::Owned(v)
                }
            }
        }
    }

    /// An object in this view converted to the stored form.
    pub fn to_storage(&self, view: Value) -> Value {
        match self.codec {
            Codec::EventsV1 => crate::events::v1_to_core(&view),
            Codec::Identity => {
                let mut v = view;
                if let Some(m) = v.as_object_mut() {
                    m.insert(
                        "apiVersion".into(),
                        Value::String(self.storage_api_version.clone()),
                    );
                    m.insert("kind".into(), Value::String(self.kind.clone()));
                }
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn views_rewrite_api_version_only_when_needed() {
        let mut rt = ResourceType::builtin("ecspower.dev", "v1beta1", "things", "Thing");
        rt.storage_api_version = "ecspower.dev/v1alpha1".into();
        let stored =
            json!({"apiVersion": "ecspower.dev/v1alpha1", "kind": "Thing", "spec": {"a": 1}});
        let view = rt.to_view(&stored);
        assert!(matches!(view, Cow::Owned(_)));
        assert_eq!(view["apiVersion"], "ecspower.dev/v1beta1");
        let back = rt.to_storage(view.into_owned());
        assert_eq!(back, stored);
        let same = ResourceType::builtin("", "v1", "secrets", "Secret");
        assert!(matches!(
            same.to_view(&json!({"apiVersion": "v1"})),
            Cow::Borrowed(_)
        ));
    }
}
