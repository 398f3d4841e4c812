//! The access decision: may this namespace use the operator's own credentials to make this action
//! on this instance in this region? One pure function, [`decide`], over the policy (its name and
//! spec), the namespace (name and labels), the region, the instance, the action and, once read,
//! the instance's tags.
//!
//! - Deny by default: no policy, or a policy not named `default`, allows nothing.
//! - A resource is allowed when ANY valid rule allows it. A rule allows when it selects the
//!   namespace (`allNamespaces`, listed by name, or all of a non-empty `matchLabels` on it), the
//!   region (`regions` empty or listing it), the action (`actions` absent or listing it) and the
//!   instance: every instance condition it sets holds (`instanceIds` lists the ID, the instance
//!   carries all of `instanceTags`) or it sets `anyInstance`.
//! - An invalid rule (no name, a repeated name, no instance condition, an empty action list)
//!   grants nothing; the other rules still count.
//! - Tags are known only after a `DescribeInstances`: while unknown, a decision that only a tag rule
//!   could allow is [`Verdict::NeedTags`]; every other denial needs no ECS call at all. A missing
//!   instance is judged with no tags, so its denial reads exactly like a mismatch.

use std::collections::{BTreeMap, HashSet};

use crate::api::{ACCESS_POLICY_NAME, AccessAction, AccessRule, EcsPowerAccessPolicySpec};

/// One question to the policy.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The resource's namespace.
    pub namespace: &'a str,
    /// That namespace's labels (empty when unknown).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// `spec.regionId`.
    pub region: &'a str,
    /// `spec.instanceId`.
    pub instance_id: &'a str,
    /// The action asked for.
    pub action: AccessAction,
    /// The instance's ECS tags once `DescribeInstances` answered (empty for a missing instance);
    /// `None` before.
    pub tags: Option<&'a BTreeMap<String, String>>,
}

/// The policy as the decision sees it: the object's name and its spec.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// `metadata.name` (only `default` counts).
    pub name: &'a str,
    /// The spec.
    pub spec: &'a EcsPowerAccessPolicySpec,
}

/// What the policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this rule (the first that allows, in the policy's order).
    Allow {
        /// The rule's name.
        rule: String,
    },
    /// Refused.
    Deny(Denial),
    /// Only a tag rule could allow it: read the instance's tags first (a `DescribeInstances`).
    NeedTags,
}

impl Verdict {
    /// Whether this verdict allows the action.
    pub fn allows(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// There is no policy named `default`: deny by default.
    NoPolicy,
    /// No valid rule of the policy allows it.
    NoRule,
}

impl Denial {
    /// The condition message for a refused request: which namespace, instance, region and action,
    /// and what to do. It never says why a particular rule did not match, so a missing instance and
    /// a tag mismatch read the same.
    pub fn message(self, request: &Request<'_>) -> String {
        let why = match self {
            Denial::NoPolicy => format!(
                "there is no EcsPowerAccessPolicy named {ACCESS_POLICY_NAME} (deny by default)"
            ),
            Denial::NoRule => {
                format!("no rule of EcsPowerAccessPolicy {ACCESS_POLICY_NAME} grants it")
            }
        };
        format!(
            "namespace {} may not {} instance {} in region {} with the operator's own credentials: \
             {why}; ask a cluster admin for a rule in EcsPowerAccessPolicy {ACCESS_POLICY_NAME}, or \
             set spec.credentialsSecretRef to a Secret with your own credentials",
            request.namespace,
            request.action.as_str(),
            request.instance_id,
            request.region,
        )
    }
}

/// Decides one request. Pure: same input, same verdict.
pub fn decide(policy: Option<Policy<'_>>, request: &Request<'_>) -> Verdict {
    let Some(policy) = policy.filter(|p| p.name == ACCESS_POLICY_NAME) else {
        return Verdict::Deny(Denial::NoPolicy);
    };
    let invalid = invalid_rules(&policy.spec.rules);
    let mut need_tags = false;
    for (index, rule) in policy.spec.rules.iter().enumerate() {
        if invalid.iter().any(|(i, _)| *i == index) {
            continue;
        }
        match judge(rule, request) {
            RuleVerdict::Allow => {
                return Verdict::Allow {
                    rule: rule.name.clone(),
                };
            }
            RuleVerdict::NeedTags => need_tags = true,
            RuleVerdict::Deny => {}
        }
    }
    if need_tags {
        Verdict::NeedTags
    } else {
        Verdict::Deny(Denial::NoRule)
    }
}

/// The invalid rules of a policy, by index, with what is wrong (for the policy's status). An
/// invalid rule grants nothing.
pub fn invalid_rules(rules: &[AccessRule]) -> Vec<(usize, String)> {
    let mut seen = HashSet::new();
    let mut invalid = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let problem = if rule.name.is_empty() {
            Some(format!("rule #{} has no name", index + 1))
        } else if !seen.insert(rule.name.as_str()) {
            Some(format!("rule {} is defined more than once", rule.name))
        } else if rule.instance_ids.is_empty()
            && rule.instance_tags.is_empty()
            && !rule.any_instance
        {
            Some(format!(
                "rule {} names no instances: set instanceIds, instanceTags or anyInstance: true",
                rule.name
            ))
        } else if rule.actions.as_ref().is_some_and(Vec::is_empty) {
            Some(format!(
                "rule {} grants no action: list Start and/or Stop, or leave actions out",
                rule.name
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            invalid.push((index, problem));
        }
    }
    invalid
}

/// Whether a rule selects a namespace (the instance, region and action aside).
pub fn selects_namespace(
    rule: &AccessRule,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if rule.all_namespaces {
        return true;
    }
    let Some(selector) = &rule.namespaces else {
        return false;
    };
    selector.names.iter().any(|n| n == namespace)
        || (!selector.match_labels.is_empty()
            && selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v)))
}

/// What one rule says about a request (validity aside: see [`invalid_rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleVerdict {
    /// The rule allows it.
    Allow,
    /// The rule does not allow it.
    Deny,
    /// The rule allows it if the instance carries its tags (not known yet).
    NeedTags,
}

/// What one rule says about a request, whether or not the rule is valid.
pub fn judge(rule: &AccessRule, request: &Request<'_>) -> RuleVerdict {
    let selected = selects_namespace(rule, request.namespace, request.namespace_labels)
        && (rule.regions.is_empty() || rule.regions.iter().any(|r| r == request.region))
        && rule
            .actions
            .as_ref()
            .is_none_or(|actions| actions.contains(&request.action));
    let id_holds =
        rule.instance_ids.is_empty() || rule.instance_ids.iter().any(|i| i == request.instance_id);
    if !selected || !id_holds {
        return RuleVerdict::Deny;
    }
    if rule.instance_tags.is_empty() {
        return RuleVerdict::Allow;
    }
    match request.tags {
        None => RuleVerdict::NeedTags,
        Some(tags)
            if rule
                .instance_tags
                .iter()
                .all(|(k, v)| tags.get(k) == Some(v)) =>
        {
            RuleVerdict::Allow
        }
        Some(_) => RuleVerdict::Deny,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
