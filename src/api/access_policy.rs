//! The `EcsPowerAccessPolicy` custom resource: which namespaces may use the operator's own
//! credentials, for which instances, regions and actions.
//!
//! Data only, like the rest of [`crate::api`]: cluster-scoped, and only the object named `default`
//! counts (a CEL rule on the CRD refuses any other name). The decision over a spec lives in
//! [`crate::access`]; doc comments here are `kubectl explain` text.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only name of an EcsPowerAccessPolicy that counts.
pub const ACCESS_POLICY_NAME: &str = "default";

/// Which namespaces may use the operator's own credentials (environment or RRSA), for which
/// instances, regions and actions. Deny by default: without this object, no namespace may.
// kube's `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ecspower.dev",
    version = "v1alpha1",
    kind = "EcsPowerAccessPolicy",
    plural = "ecspoweraccesspolicies",
    singular = "ecspoweraccesspolicy",
    shortname = "ecspap",
    status = "EcsPowerAccessPolicyStatus",
    derive = "PartialEq",
    doc = "Which namespaces may use the operator's own credentials for which ECS instances, regions and actions. Cluster-scoped; only the object named default counts.",
    validation = Rule::new("self.metadata.name == 'default'").message("only the EcsPowerAccessPolicy named default counts: name it default"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EcsPowerAccessPolicySpec {
    /// The grants. A resource is allowed when ANY rule allows it; with no rule, nothing is allowed.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub rules: Vec<AccessRule>,
}

/// One grant: namespaces × regions × instances × actions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.instanceIds) && size(self.instanceIds) > 0) || (has(self.instanceTags) && size(self.instanceTags) > 0) || (has(self.anyInstance) && self.anyInstance)").message("a rule names its instances: set instanceIds, instanceTags or anyInstance: true"))]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    /// The rule's name: required and unique among the rules; shown in status and messages.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The namespaces this rule selects: those listed by name, and those whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceSelector>,
    /// Every namespace (the explicit way to say it; an empty selector selects none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    /// The regions, for example `cn-hangzhou`. Empty: any region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The instances, by ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    /// The instances carrying ALL these ECS tags (key → value). Needs a DescribeInstances to read
    /// the tags before anything else is decided.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_tags: BTreeMap<String, String>,
    /// Every instance in the rule's regions (the explicit way to say it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_instance: bool,
    /// The actions granted: `Start`, `Stop`. Default: both. `[Stop]` is a cost guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<AccessAction>>,
}

/// Namespaces by name or by labels.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespaces carrying all these labels. An empty map matches nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// A power action a rule grants.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessAction {
    /// StartInstance / StartInstances.
    Start,
    /// StopInstance / StopInstances.
    Stop,
}

impl AccessAction {
    /// The name, as written in a rule.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessAction::Start => "Start",
            AccessAction::Stop => "Stop",
        }
    }
}

/// What the operator reports about the policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcsPowerAccessPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: True with reason `Valid`, or False with reason `Invalid` naming the bad rule (an
    /// invalid rule grants nothing; the others still count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Per rule: how many resources it grants, and how many in its namespaces it refuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleUsage>,
}

/// The usage of one rule.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuleUsage {
    /// The rule's name.
    pub name: String,
    /// Resources on the operator's credentials this rule grants.
    pub resources: i32,
    /// Resources in the namespaces this rule selects that no rule grants.
    pub denied: i32,
}
