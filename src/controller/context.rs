//! What every reconcile shares: the Kubernetes client, the event recorder, the ECS client, the
//! operator's own credentials, metrics, the ledger of observations and the cache of referenced
//! Secrets' metadata. Built once by [`crate::controller::Operator`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::EcsInstancePower;
use crate::ecs::{EcsClient, OperatorCredentials};
use crate::metrics::Metrics;

use super::Synced;
use super::ledger::Ledger;

/// Shared state of the reconciler.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes events on resources.
    pub recorder: Recorder,
    /// The ECS client.
    pub ecs: EcsClient,
    /// The operator's own credentials, for resources without `credentialsSecretRef`.
    pub operator_credentials: Option<OperatorCredentials>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// When each resource is next observed (shared with the watch that prunes it).
    pub ledger: Arc<Ledger>,
    /// Metadata of Secrets (no data), to notice changes of referenced ones.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Whether the watches have synced.
    pub synced: Arc<Synced>,
    /// `--resync-interval`.
    pub resync: Duration,
    /// `--time-scale`: multiplies backoff, poll and re-check delays.
    pub time_scale: f64,
}

impl Context {
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
