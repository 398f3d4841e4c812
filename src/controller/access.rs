//! The access guard: the reconcile's (and the fleet gateway's) view of who may control which
//! instance, fed from the controller's caches (resources, the `EcsPowerAccessPolicy`, Namespace
//! metadata) into the pure decisions of [`crate::access`].
//!
//! It is asked before a resource observes its instance (no ECS call at all for a claimed
//! instance or an ID / region denial), after the observation when only a tag rule could grant it,
//! and again right before every write call and every batch entry, so a revocation stops the next
//! write. It never starts or stops anything itself.
//!
//! As the gateway's [`WriteCheck`] it also holds the one cache that knows a resource as it is now,
//! so the last check of a batch entry asks it whether the resource was suspended, deleted or
//! given a new spec while the entry waited; that part is about the resource, not about access,
//! and would move with the check if the cache ever gets another owner.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tracing::debug;

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
    claims: Arc<Mutex<ClaimIndex>>,
}

/// The resources naming each instance, kept from the resource watch's events, so a claim check
/// looks at the few resources of one instance instead of scanning the whole cache (every
/// reconcile asks, and at 10,000 resources a scan per reconcile is quadratic work). `instanceId`
/// is immutable (a CEL rule on the CRD), so an object stays under the instance it was added with.
#[derive(Debug, Default)]
struct ClaimIndex {
    /// Whether the watch's first list has been indexed: until then (and in tests that fill a
    /// cache by hand) the cache is scanned instead.
    ready: bool,
    /// Keys without resourceVersion or uid (never read; equality ignores them).
    by_instance: HashMap<String, Vec<ResourceRef>>,
    /// The list under way (a relist replaces the index when it ends).
    relist: Option<Vec<(ResourceRef, String)>>,
}

impl ClaimIndex {
    fn insert(&mut self, key: ResourceRef, instance: String) {
        let refs = self.by_instance.entry(instance).or_default();
        if !refs.contains(&key) {
            // Almost always the only one: room for exactly one (a first push would make room for
            // four, a few hundred bytes per instance at fleet scale).
            refs.reserve_exact(1);
            refs.push(key);
        }
    }

    fn remove(&mut self, key: &ResourceRef, instance: &str) {
        if let Some(refs) = self.by_instance.get_mut(instance) {
            refs.retain(|r| r != key);
            if refs.is_empty() {
                self.by_instance.remove(instance);
            }
        }
    }
}

/// A stable-within-the-process hash of a fingerprint's text.
fn hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A resource's key without its resourceVersion and uid.
fn bare_key(obj: &EcsInstancePower) -> ResourceRef {
    let key = ObjectRef::new(&obj.name_any());
    match obj.metadata.namespace.as_deref() {
        Some(namespace) => key.within(namespace),
        None => key,
    }
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
            claims: Arc::default(),
        }
    }

    /// Keeps the claim index in step with the resource watch (call it with every event, after
    /// the cache applied it).
    pub fn observe(&self, event: &watcher::Event<EcsInstancePower>) {
        let mut index = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Init => index.relist = Some(Vec::new()),
            watcher::Event::InitApply(obj) => {
                let entry = (bare_key(obj), obj.spec.instance_id.clone());
                match index.relist.as_mut() {
                    Some(relist) => relist.push(entry),
                    None => index.insert(entry.0, entry.1),
                }
            }
            watcher::Event::InitDone => {
                let relist = index.relist.take().unwrap_or_default();
                index.by_instance.clear();
                for (key, instance) in relist {
                    index.insert(key, instance);
                }
                index.ready = true;
            }
            watcher::Event::Apply(obj) => {
                index.insert(bare_key(obj), obj.spec.instance_id.clone());
            }
            watcher::Event::Delete(obj) => index.remove(&bare_key(obj), &obj.spec.instance_id),
        }
    }

    /// The cached resources naming `instance_id`.
    fn naming(&self, instance_id: &str) -> Vec<std::sync::Arc<EcsInstancePower>> {
        let refs = {
            let index = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
            if !index.ready {
                drop(index);
                return self
                    .resources
                    .state_filter(|r| r.spec.instance_id == instance_id);
            }
            index
                .by_instance
                .get(instance_id)
                .cloned()
                .unwrap_or_default()
        };
        refs.iter()
            .filter_map(|r| self.resources.get(r))
            .filter(|r| r.spec.instance_id == instance_id)
            .collect()
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
    pub fn fingerprint(&self, obj: &EcsInstancePower) -> u64 {
        let owner = self.other_owner(obj).unwrap_or_default();
        if !self.governs(obj) {
            return hash(&format!("owner={owner}"));
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
        // Kept per resource by the ledger: a hash, not the text.
        hash(&format!("owner={owner};policy={policy};labels={labels:?}"))
    }

    /// Whether the policy applies to `obj` (by its credentials and the scope).
    pub fn governs(&self, obj: &EcsInstancePower) -> bool {
        self.scope == PolicyScope::AllResources || obj.spec.credentials_secret_ref.is_none()
    }

    /// `namespace/name` of the resource that owns `obj`'s instance when it is not `obj`.
    fn other_owner(&self, obj: &EcsInstancePower) -> Option<String> {
        let me = ObjectRef::from_obj(obj);
        let mut others = self.naming(&obj.spec.instance_id);
        others.retain(|r| ObjectRef::from_obj(&**r) != me);
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
        self.naming(instance_id)
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
    /// A batch entry is sent only while its resource still exists, is not suspended, has the spec
    /// the write was decided for (no newer generation in the cache), still owns its instance and
    /// the policy still grants the call.
    fn admits(
        &self,
        resource: &ResourceRef,
        generation: Option<i64>,
        call: WriteCall,
        tags: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let Some(obj) = self.resources.get(resource) else {
            return false;
        };
        let superseded = obj
            .metadata
            .generation
            .zip(generation)
            .is_some_and(|(now, then)| now > then);
        if obj.spec.suspend || superseded {
            debug!(resource = %resource, ?generation, "write entry superseded: the spec changed or suspend is set");
            return false;
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kube::runtime::reflector;

    use super::*;

    fn resource(name: &str, instance: &str) -> EcsInstancePower {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"instanceId": instance, "regionId": "cn-hangzhou", "desiredState": "Running"}
        }))
        .unwrap()
    }

    fn names(guard: &AccessGuard, instance: &str) -> Vec<String> {
        let mut names: Vec<String> = guard
            .claimants(instance)
            .iter()
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_decided_before_a_suspend_or_a_spec_change_is_not_admitted() {
        let (resources, mut writer) = reflector::store();
        let guard = crate::controller::fixtures::access_granting_everything_over(resources);
        let key = bare_key(&resource("a", "i-1"));
        let mut at = |generation: i64, suspend: bool| {
            let mut obj = resource("a", "i-1");
            obj.metadata.generation = Some(generation);
            obj.spec.suspend = suspend;
            writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
            obj
        };
        at(1, false);
        assert!(guard.admits(&key, Some(1), WriteCall::Start, None));
        // The desired state flipped: the start decided for generation 1 is superseded.
        at(2, false);
        assert!(!guard.admits(&key, Some(1), WriteCall::Start, None));
        assert!(guard.admits(&key, Some(2), WriteCall::Stop, None));
        // Suspended: nothing goes, whatever generation it was decided for.
        at(3, true);
        assert!(!guard.admits(&key, Some(2), WriteCall::Stop, None));
        assert!(!guard.admits(&key, Some(3), WriteCall::Stop, None));
        // Deleted: nothing goes.
        let obj = at(4, false);
        assert!(guard.admits(&key, Some(4), WriteCall::Stop, None));
        writer.apply_watcher_event(&watcher::Event::Delete(obj));
        assert!(!guard.admits(&key, Some(4), WriteCall::Stop, None));
    }

    #[test]
    fn the_claim_index_follows_the_watch_and_scans_before_its_first_list() {
        let (resources, mut writer) = reflector::store();
        let (policies, _) = reflector::store();
        let (namespaces, _) = reflector::store();
        let guard = AccessGuard::new(resources, policies, namespaces, PolicyScope::default());
        let both = |guard: &AccessGuard, writer: &mut reflector::store::Writer<_>, e| {
            writer.apply_watcher_event(&e);
            guard.observe(&e);
        };
        // A cache filled without the index (before the first list): scanned.
        writer.apply_watcher_event(&watcher::Event::Apply(resource("a", "i-1")));
        assert_eq!(names(&guard, "i-1"), ["a"]);

        both(&guard, &mut writer, watcher::Event::Init);
        both(
            &guard,
            &mut writer,
            watcher::Event::InitApply(resource("a", "i-1")),
        );
        both(
            &guard,
            &mut writer,
            watcher::Event::InitApply(resource("b", "i-1")),
        );
        // The list is not over: the old view holds.
        assert_eq!(names(&guard, "i-1"), ["a"]);
        both(&guard, &mut writer, watcher::Event::InitDone);
        assert_eq!(names(&guard, "i-1"), ["a", "b"]);

        // b moves to another instance; c arrives; a is deleted.
        both(
            &guard,
            &mut writer,
            watcher::Event::Apply(resource("b", "i-2")),
        );
        both(
            &guard,
            &mut writer,
            watcher::Event::Apply(resource("c", "i-1")),
        );
        assert_eq!(names(&guard, "i-1"), ["a", "c"]);
        assert_eq!(names(&guard, "i-2"), ["b"]);
        both(
            &guard,
            &mut writer,
            watcher::Event::Delete(resource("a", "i-1")),
        );
        assert_eq!(names(&guard, "i-1"), ["c"]);
        // The owner of i-1 is now c, and c sees no other owner.
        assert_eq!(guard.other_owner(&resource("c", "i-1")), None);
        assert_eq!(
            guard.other_owner(&resource("d", "i-1")),
            Some("ns/c".to_string())
        );

        // A relist without c drops it.
        both(&guard, &mut writer, watcher::Event::Init);
        both(
            &guard,
            &mut writer,
            watcher::Event::InitApply(resource("b", "i-2")),
        );
        both(&guard, &mut writer, watcher::Event::InitDone);
        assert!(names(&guard, "i-1").is_empty());
        assert_eq!(names(&guard, "i-2"), ["b"]);
    }
}
