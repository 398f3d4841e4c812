//! The status of the `EcsPowerAccessPolicy`: a pure function of the policy and of the resources it
//! governs, and a small loop that writes it when it changes (only while the status edge of the
//! write gate is open, the leader).
//!
//! - `Ready`: True, reason `Valid`; or False, reason `Invalid`, naming every invalid rule (an
//!   invalid rule grants nothing, the others still count).
//! - `rules[]`, per rule: `resources`, the governed resources it matches (namespace, region,
//!   instance ID, action; tag rules count the resources the operator let through after reading
//!   the tags) that are not refused; `denied`, the governed resources in the namespaces it selects
//!   that report `NotGranted`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

use crate::access::policy::{self, Request, RuleVerdict};
use crate::api::{ACCESS_POLICY_NAME, EcsPowerAccessPolicy, EcsPowerAccessPolicyStatus, RuleUsage};
use crate::vocabulary::{condition::READY as CONDITION_READY, reason};

use super::access::access_action;
use super::conditions::{self, Desired};
use super::context::Context;
use super::desired;
use super::gate::Edge;

/// One governed resource, as the status counts it.
#[derive(Debug, Clone, Copy)]
pub struct Governed<'a> {
    /// The resource's request (its desired action; tags unknown).
    pub request: Request<'a>,
    /// Whether it reports `NotGranted`.
    pub refused: bool,
}

/// The status of `policy` over these governed resources; the `Ready` condition keeps its
/// `lastTransitionTime` while its status stays the same.
pub fn status(
    policy: &EcsPowerAccessPolicy,
    governed: &[Governed<'_>],
    now: Timestamp,
) -> EcsPowerAccessPolicyStatus {
    let generation = policy.metadata.generation;
    let rules = &policy.spec.rules;
    let invalid = policy::invalid_rules(rules);
    let ready = if invalid.is_empty() {
        Desired::truthy(reason::VALID, "The policy is valid")
    } else {
        let problems: Vec<&str> = invalid.iter().map(|(_, p)| p.as_str()).collect();
        Desired::falsy(
            reason::INVALID,
            format!("invalid rules grant nothing: {}", problems.join("; ")),
        )
    };
    let mut conditions = policy.status.clone().unwrap_or_default().conditions;
    conditions::set(
        &mut conditions,
        CONDITION_READY,
        Some(ready),
        generation,
        &Time(now),
    );
    let usage = rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let valid = !invalid.iter().any(|(i, _)| *i == index);
            let count = |f: &dyn Fn(&Governed<'_>) -> bool| {
                i32::try_from(governed.iter().filter(|g| f(g)).count()).unwrap_or(i32::MAX)
            };
            RuleUsage {
                name: rule.name.clone(),
                resources: count(&|g| {
                    valid && !g.refused && policy::judge(rule, &g.request) != RuleVerdict::Deny
                }),
                denied: count(&|g| {
                    g.refused
                        && policy::selects_namespace(
                            rule,
                            g.request.namespace,
                            g.request.namespace_labels,
                        )
                }),
            }
        })
        .collect();
    EcsPowerAccessPolicyStatus {
        observed_generation: generation,
        conditions,
        rules: usage,
    }
}

/// How often the loop compares the computed status with the cached one.
const TICK: Duration = Duration::from_secs(2);

/// Writes the policy's status whenever it changes, until the task is dropped.
pub async fn run(ctx: Arc<Context>) {
    let mut written: Option<EcsPowerAccessPolicyStatus> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(policy) = ctx.access.policy() else {
            written = None;
            continue;
        };
        // A follower writes nothing and is not fenced: only a leader whose lease cannot cover
        // the write counts as fenced.
        if !ctx.may_call_ecs() || !ctx.gate_allows(Edge::Status) {
            continue;
        }
        let resources = ctx.access.governed_resources();
        // Each namespace's labels once, not once per resource (thousands of resources share a
        // few namespaces).
        let mut labels: HashMap<&str, BTreeMap<String, String>> = HashMap::new();
        for r in &resources {
            let namespace = r.metadata.namespace.as_deref().unwrap_or_default();
            labels
                .entry(namespace)
                .or_insert_with(|| ctx.access.labels_of(namespace));
        }
        let governed: Vec<Governed<'_>> = resources
            .iter()
            .filter_map(|r| {
                let namespace = r.metadata.namespace.as_deref().unwrap_or_default();
                Some((r, namespace, labels.get(namespace)?))
            })
            .map(|(r, namespace, labels)| Governed {
                request: Request {
                    namespace,
                    namespace_labels: labels,
                    region: &r.spec.region_id,
                    instance_id: &r.spec.instance_id,
                    action: access_action(desired::effective(&r.spec).toward()),
                    tags: None,
                },
                refused: r
                    .status
                    .as_ref()
                    .and_then(|s| s.condition(CONDITION_READY))
                    .is_some_and(|c| c.reason == reason::NOT_GRANTED),
            })
            .collect();
        // The status last written is newer than a cache that has not seen it yet: building on it
        // keeps the condition's lastTransitionTime, so a lagging cache causes no rewrite.
        let mut base = (*policy).clone();
        if let Some(written) = written
            .as_ref()
            .filter(|w| w.observed_generation == policy.metadata.generation)
        {
            base.status = Some(written.clone());
        }
        let next = status(&base, &governed, Timestamp::now());
        if policy.status.as_ref() == Some(&next) || written.as_ref() == Some(&next) {
            continue;
        }
        match write(&ctx, &next).await {
            Ok(()) => {
                debug!(policy = %ObjectRef::from_obj(&*policy), "access policy status written");
                written = Some(next);
            }
            Err(error) => warn!(%error, "cannot write the EcsPowerAccessPolicy status"),
        }
    }
}

/// Patches the policy's status subresource.
async fn write(ctx: &Context, status: &EcsPowerAccessPolicyStatus) -> Result<(), kube::Error> {
    let api: Api<EcsPowerAccessPolicy> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        ACCESS_POLICY_NAME,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::api::AccessAction;

    fn policy(rules: &serde_json::Value) -> EcsPowerAccessPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsPowerAccessPolicy",
            "metadata": {"name": "default", "generation": 3},
            "spec": {"rules": rules},
        }))
        .unwrap()
    }

    fn ready(status: &EcsPowerAccessPolicyStatus) -> (String, String, String) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
            .unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn usage_per_rule_and_validity() {
        let p = policy(&serde_json::json!([
            {"name": "team-a", "namespaces": {"names": ["team-a"]}, "instanceIds": ["i-a1", "i-a2"]},
            {"name": "stop-only", "namespaces": {"names": ["team-b"]}, "anyInstance": true,
             "actions": ["Stop"]},
        ]));
        let none = BTreeMap::new();
        let request = |namespace, instance_id, action| Request {
            namespace,
            namespace_labels: &none,
            region: "cn-hangzhou",
            instance_id,
            action,
            tags: None,
        };
        let governed = [
            Governed {
                request: request("team-a", "i-a1", AccessAction::Start),
                refused: false,
            },
            Governed {
                request: request("team-a", "i-zz", AccessAction::Start),
                refused: true,
            },
            Governed {
                request: request("team-b", "i-b1", AccessAction::Stop),
                refused: false,
            },
            Governed {
                request: request("team-b", "i-b2", AccessAction::Start),
                refused: true,
            },
        ];
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let s = status(&p, &governed, now);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(ready(&s).0, "True");
        assert_eq!(ready(&s).1, "Valid");
        let usage: Vec<(&str, i32, i32)> = s
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.resources, r.denied))
            .collect();
        assert_eq!(usage, vec![("team-a", 1, 1), ("stop-only", 1, 1)]);

        let bad = policy(&serde_json::json!([
            {"name": "loose", "allNamespaces": true},
            {"name": "ok", "allNamespaces": true, "anyInstance": true},
        ]));
        let s = status(&bad, &governed, now);
        let (status, reason, message) = ready(&s);
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
        assert!(message.contains("loose"), "{message}");
        assert_eq!(s.rules[0].resources, 0, "an invalid rule grants nothing");
    }
}
