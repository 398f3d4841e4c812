//! What every reconcile shares: the Kubernetes client, the event recorder, the ECS handle, the fleet
//! gateway, the operator's own credentials, metrics, the ledger of observations, the write gate, the
//! access guard and the cache of referenced Secrets' metadata. Built once by [`crate::controller::Operator`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{EcsInstancePower, EcsPowerSchedule};
use crate::ecs::OperatorCredentials;
use crate::fleet::Fleet;
use crate::metrics::Metrics;

use super::Synced;
use super::access::AccessGuard;
use super::ecs_handle::EcsHandle;
use super::events::EventRecorder;
use super::gate::{Admission, Edge, WriteGate};
use super::ledger::Ledger;

/// Shared state of the reconciler.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes events on resources (kube-runtime's `Recorder`, its cache bounded).
    pub recorder: EventRecorder,
    /// The ECS calls (the ECS client in production, a fake in tests). With a fleet gateway only
    /// the single write calls (dry runs, `initLocalDisk`) go here; without one, every call.
    pub ecs: Arc<dyn EcsHandle>,
    /// The fleet gateway: the observed-state cache, batched reads and writes, and the shared
    /// rate limiters. `None` makes every reconcile call ECS directly (one resource at a time).
    pub fleet: Option<Arc<Fleet>>,
    /// The operator's own credentials, for resources without `credentialsSecretRef`.
    pub operator_credentials: Option<OperatorCredentials>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// When each resource is next observed (shared with the watch that prunes it).
    pub ledger: Arc<Ledger>,
    /// Metadata of Secrets (no data), to notice changes of referenced ones.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// EcsPowerSchedules, for resources with desiredState Scheduled.
    pub schedules: Store<EcsPowerSchedule>,
    /// Side effects pass here first.
    pub gate: Arc<WriteGate>,
    /// Who may control which instance: the claims and the access policy.
    pub access: AccessGuard,
    /// Whether the watches have synced.
    pub synced: Arc<Synced>,
    /// `--resync-interval`.
    pub resync: Duration,
    /// `--time-scale`: multiplies backoff, poll and re-check delays.
    pub time_scale: f64,
    /// The wall clock schedules are evaluated with (the system clock; tests move it forward).
    pub clock: super::clock::Clock,
}

impl Context {
    /// Whether the write gate lets a side effect through at `edge`, and by when it must be over
    /// (the lease's validity bounds it under leader election); a refusal is counted.
    pub fn gate_admit(&self, edge: Edge) -> Option<Admission> {
        let admission = self.gate.admit();
        if admission.is_none() {
            self.metrics.fenced(edge.as_str());
        }
        admission
    }

    /// Whether the write gate lets a side effect through at `edge` (see [`Self::gate_admit`],
    /// which also gives the deadline a write must keep).
    pub fn gate_allows(&self, edge: Edge) -> bool {
        self.gate_admit(edge).is_some()
    }

    /// Whether this replica may call ECS at all (a follower may not, not even to read).
    pub fn may_call_ecs(&self) -> bool {
        self.gate.is_open()
    }

    /// The EcsPowerSchedule `obj` references, from the cache (`None` without a reference or when it
    /// does not exist).
    pub fn schedule(&self, obj: &EcsInstancePower) -> Option<Arc<EcsPowerSchedule>> {
        let reference = obj.spec.schedule_ref.as_ref()?;
        let key = ObjectRef::new(&reference.name)
            .within(obj.metadata.namespace.as_deref().unwrap_or_default());
        self.schedules.get(&key)
    }

    /// The `resourceVersion` of the schedule `obj` references: `None` without a reference,
    /// `Some("")` when it does not exist.
    pub fn schedule_version(&self, obj: &EcsInstancePower) -> Option<String> {
        obj.spec.schedule_ref.as_ref()?;
        Some(
            self.schedule(obj)
                .and_then(|s| s.metadata.resource_version.clone())
                .unwrap_or_default(),
        )
    }

    /// The `resourceVersion` of the Secret `obj` references: `None` without a reference or before
    /// the Secret cache has synced, `Some("")` when the Secret does not exist.
    pub fn secret_version(&self, obj: &EcsInstancePower) -> Option<String> {
        let reference = obj.spec.credentials_secret_ref.as_ref()?;
        if !self.synced.secrets_synced() {
            return None;
        }
        let key = ObjectRef::new(&reference.name)
            .within(obj.metadata.namespace.as_deref().unwrap_or_default());
        Some(
            self.secrets
                .get(&key)
                .and_then(|s| s.metadata.resource_version.clone())
                .unwrap_or_default(),
        )
    }
}
