//! The access guard: the reconcile's (and the fleet gateway's) view of who may control which
//! instance, fed from the controller's caches (resources, the `EcsPowerAccessPolicy`, Namespace
//! metadata) into the pure decisions of [`crate::access`].
//!
//! It is asked before a resource observes its instance (no ECS call at all for a claimed
//! instance or an ID / region denial), after the observation when only a tag rule could grant it,
//! and again right before every write call and every batch entry, so a revocation stops the next
//! write. It never starts or stops anything itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::access::claims::{self, Claimant};
use crate::access::policy::{self, Policy, Request, Verdict as PolicyVerdict};
use crate::api::{ACCESS_POLICY_NAME, AccessAction, EcsInstancePower, EcsPowerAccessPolicy};
use crate::ecs::{ErrorClass, Verdict};
use crate::fleet::gateway::{ResourceRef, WriteCheck};
use crate::vocabulary::reason;

use super::credentials::Problem;
use super::decide::WriteCall;

/// Which resources the access policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyScope {
    /// Only resources on the operator's own credentials (no `credentialsSecretRef`): a Secret's
    /// RAM identity scopes the others.
    #[default]
    OperatorCredentials,
    /// Every resource, Secret credentials too (`--access-policy-for-secrets`).
    AllResources,
}

/// What the guard says about one resource and action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It may go ahead.
    Allowed,
    /// Only a tag rule could grant it: read the instance, then ask again with its tags.
    NeedTags,
    /// Refused (`InstanceClaimed` or `NotGranted`, terminal): no ECS call for it.
    Refused(Problem),
}

/// The guard; cheap to clone (it holds cache handles).
#[derive(Clone)]
pub struct AccessGuard {
    resources: Store<EcsInstancePower>,
    policies: Store<EcsPowerAccessPolicy>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    scope: PolicyScope,
}

impl AccessGuard {
    /// A guard over these caches.
    pub fn new(
        resources: Store<EcsInstancePower>,
        policies: Store<EcsPowerAccessPolicy>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        scope: PolicyScope,
    ) -> Self {
        AccessGuard {
            resources,
            policies,
            namespaces,
            scope,
        }
    }

    /// The claim, then the policy, for `action` on `obj`'s instance (`tags`: once observed; an
    /// empty map for a missing instance).
    pub fn check(
        &self,
        obj: &EcsInstancePower,
        action: AccessAction,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Check {
        if let Some(owner) = self.other_owner(obj) {
            return Check::Refused(Problem {
                verdict: terminal(reason::INSTANCE_CLAIMED),
                message: format!(
                    "instance {} is claimed by {owner} (the oldest EcsInstancePower naming it): this \
                     resource makes no ECS call while that one exists; delete one of them",
                    obj.spec.instance_id
                ),
            });
        }
        if !self.governs(obj) {
            return Check::Allowed;
        }
        let namespace = obj.namespace().unwrap_or_default();
        let labels = self.namespace_labels(&namespace);
        let request = Request {
            namespace: &namespace,
            namespace_labels: &labels,
            region: &obj.spec.region_id,
            instance_id: &obj.spec.instance_id,
            action,
            tags,
        };
        let policy = self.policies.get(&ObjectRef::new(ACCESS_POLICY_NAME));
        let policy = policy.as_deref().map(|p| Policy {
            name: p.metadata.name.as_deref().unwrap_or_default(),
            spec: &p.spec,
        });
        match policy::decide(policy, &request) {
            PolicyVerdict::Allow { .. } => Check::Allowed,
            PolicyVerdict::NeedTags => Check::NeedTags,
            PolicyVerdict::Deny(denial) => Check::Refused(Problem {
                verdict: terminal(reason::NOT_GRANTED),
                message: denial.message(&request),
            }),
        }
    }

    /// What the check depends on, as one string for the ledger: a change (a new owner, an edited
    /// policy, a relabelled namespace) makes the next reconcile observe at once.
    pub fn fingerprint(&self, obj: &EcsInstancePower) -> String {
        let owner = self.other_owner(obj).unwrap_or_default();
        if !self.governs(obj) {
            return format!("owner={owner}");
        }
        // The policy's identity and generation: its status writes change neither.
        let policy = self
            .policies
            .get(&ObjectRef::new(ACCESS_POLICY_NAME))
            .map(|p| {
                format!(
                    "{}@{}",
                    p.metadata.uid.as_deref().unwrap_or_default(),
                    p.metadata.generation.unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let namespace = obj.namespace().unwrap_or_default();
        let labels = self.namespace_labels(&namespace);
        format!("owner={owner};policy={policy};labels={labels:?}")
    }

    /// Whether the policy applies to `obj` (by its credentials and the scope).
    pub fn governs(&self, obj: &EcsInstancePower) -> bool {
        self.scope == PolicyScope::AllResources || obj.spec.credentials_secret_ref.is_none()
    }

    /// `namespace/name` of the resource that owns `obj`'s instance when it is not `obj`.
    fn other_owner(&self, obj: &EcsInstancePower) -> Option<String> {
        let me = ObjectRef::from_obj(obj);
        let others = self.resources.state_filter(|r| {
            r.spec.instance_id == obj.spec.instance_id && ObjectRef::from_obj(r) != me
        });
        let mine = claimant(obj);
        let candidates: Vec<Claimant<'_>> = others
            .iter()
            .map(|r| claimant(r))
            .chain(std::iter::once(mine))
            .collect();
        let owner = claims::owner(&candidates)?;
        (owner != mine).then(|| format!("{}/{}", owner.namespace, owner.name))
    }

    /// The resources (in the cache) naming `instance_id`.
    pub fn claimants(&self, instance_id: &str) -> Vec<ResourceRef> {
        self.resources
            .state_filter(|r| r.spec.instance_id == instance_id)
            .iter()
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }

    /// The resources the policy governs in `namespace` (`None`: in every namespace).
    pub fn governed(&self, namespace: Option<&str>) -> Vec<ResourceRef> {
        self.resources
            .state_filter(|r| {
                self.governs(r) && namespace.is_none_or(|ns| r.namespace().as_deref() == Some(ns))
            })
            .iter()
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }

    /// The policy that counts (`default`), from the cache.
    pub fn policy(&self) -> Option<std::sync::Arc<EcsPowerAccessPolicy>> {
        self.policies.get(&ObjectRef::new(ACCESS_POLICY_NAME))
    }

    /// The resources (in the cache) the policy governs.
    pub fn governed_resources(&self) -> Vec<std::sync::Arc<EcsInstancePower>> {
        self.resources.state_filter(|r| self.governs(r))
    }

    /// A namespace's labels, from the cache (empty when unknown).
    pub fn labels_of(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespace_labels(namespace)
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
    }
}

impl WriteCheck for AccessGuard {
    /// A batch entry is sent only while its resource still exists, still owns its instance and the
    /// policy still grants the call.
    fn admits(
        &self,
        resource: &ResourceRef,
        call: WriteCall,
        tags: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let Some(obj) = self.resources.get(resource) else {
            return false;
        };
        self.check(&obj, access_action(call), tags) == Check::Allowed
    }
}

/// The policy's name for a write call.
pub fn access_action(call: WriteCall) -> AccessAction {
    match call {
        WriteCall::Start => AccessAction::Start,
        WriteCall::Stop => AccessAction::Stop,
    }
}

fn claimant(obj: &EcsInstancePower) -> Claimant<'_> {
    Claimant {
        created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
        namespace: obj.metadata.namespace.as_deref().unwrap_or_default(),
        name: obj.metadata.name.as_deref().unwrap_or_default(),
    }
}

fn terminal(reason: &str) -> Verdict {
    Verdict {
        reason: reason.to_string(),
        class: ErrorClass::Terminal,
    }
}
