//! Prometheus metrics (prometheus-client), served on `/metrics` by [`crate::server`].
//!
//! - `ecs_power_reconciles_total{result}`: reconciles by result (`ready`, `acted`, `retrying`, …,
//!   `skipped` when nothing relevant changed, `error` when the Kubernetes API failed).
//! - `ecs_power_reconcile_errors_total{category}`: failed reconciles by the failing step's
//!   category (`WriteStatus`, `ReadSecret`, …).
//! - `ecs_power_fenced_writes_total{edge}`: side effects refused at a closed write gate, by edge
//!   (`act`, `status`, `event`).
//! - `ecs_power_leader`: 1 while this replica may write (it holds the lease, or runs without leader
//!   election), else 0; `ecs_power_leader_transitions_total`: times this replica acquired the lease.
//! - `ecs_power_ecs_calls_total{action,code}`: ECS calls by action and outcome code (`Success`, the
//!   ECS error code, `EcsUnreachable`, …), fed by the ECS client's [`CallObserver`] hook.
//! - `ecs_power_ecs_call_duration_seconds{action}`: ECS call latency.
//! - `ecs_power_resources{desired,observed}`: resources by desired and last observed state,
//!   computed from the controller's cache at scrape time.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::EcsInstancePower;
use crate::ecs::CallObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabels {
    edge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    action: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    desired: String,
    observed: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<CategoryLabels, Counter>,
    fenced_writes: Family<EdgeLabels, Counter>,
    ecs_calls: Family<CallLabels, Counter>,
    ecs_latency: Family<ActionLabels, Histogram>,
    resources: Family<StateLabels, Gauge>,
    leader: Gauge,
    leader_transitions: Counter,
    render_lock: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ecs_power");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by the category of the failing step",
            reconcile_errors.clone(),
        );
        let fenced_writes = Family::<EdgeLabels, Counter>::default();
        registry.register(
            "fenced_writes",
            "Side effects refused at a closed write gate, by edge",
            fenced_writes.clone(),
        );
        let ecs_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "ecs_calls",
            "ECS API calls by action and outcome code",
            ecs_calls.clone(),
        );
        let ecs_latency = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register_with_unit(
            "ecs_call_duration",
            "ECS API call latency",
            prometheus_client::registry::Unit::Seconds,
            ecs_latency.clone(),
        );
        let resources = Family::<StateLabels, Gauge>::default();
        registry.register(
            "resources",
            "EcsInstancePower resources by desired and observed state",
            resources.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica may write (holds the lease or runs without leader election)",
            leader.clone(),
        );
        let leader_transitions = Counter::default();
        registry.register(
            "leader_transitions",
            "Times this replica acquired the lease",
            leader_transitions.clone(),
        );
        Metrics {
            registry,
            leader,
            leader_transitions,
            reconciles,
            reconcile_errors,
            fenced_writes,
            ecs_calls,
            ecs_latency,
            resources,
            render_lock: std::sync::Mutex::new(()),
        }
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one failed reconcile by the category of the failing step.
    pub fn reconcile_failed(&self, category: &str) {
        self.reconcile_errors
            .get_or_create(&CategoryLabels {
                category: category.to_string(),
            })
            .inc();
    }

    /// Counts one side effect refused at a closed write gate.
    pub fn fenced(&self, edge: &str) {
        self.fenced_writes
            .get_or_create(&EdgeLabels {
                edge: edge.to_string(),
            })
            .inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts one acquisition of the lease.
    pub fn leader_transition(&self) {
        self.leader_transitions.inc();
    }

    /// Renders the text exposition format, refreshing the per-state gauge from `resources` first.
    pub fn render(&self, resources: &[Arc<EcsInstancePower>]) -> String {
        // Concurrent scrapes would interleave clear and refill; one at a time.
        let _guard = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.resources.clear();
        for r in resources {
            let observed = r
                .status
                .as_ref()
                .and_then(|s| s.instance_status.clone())
                .unwrap_or_else(|| "Unknown".into());
            let labels = StateLabels {
                desired: crate::controller::desired::effective(&r.spec)
                    .as_str()
                    .to_string(),
                observed,
            };
            self.resources.get_or_create(&labels).inc();
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl CallObserver for Metrics {
    fn on_call(&self, action: &'static str, outcome: &str, elapsed: Duration) {
        self.ecs_calls
            .get_or_create(&CallLabels {
                action: action.to_string(),
                code: outcome.to_string(),
            })
            .inc();
        self.ecs_latency
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::api::EcsInstancePowerSpec;

    #[test]
    fn renders_every_family() {
        let metrics = Metrics::new();
        metrics.reconciled("ready");
        metrics.on_call(
            "StartInstance",
            "OperationDenied.NoStock",
            Duration::from_millis(20),
        );
        let spec: EcsInstancePowerSpec = serde_json::from_value(
            serde_json::json!({"instanceId": "i-a", "regionId": "cn-hangzhou"}),
        )
        .unwrap();
        let resource = Arc::new(EcsInstancePower::new("web-1", spec));
        let text = metrics.render(&[resource.clone(), resource]);
        assert!(
            text.contains("ecs_power_reconciles_total{result=\"ready\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "ecs_power_ecs_calls_total{action=\"StartInstance\",code=\"OperationDenied.NoStock\"} 1"
        ));
        assert!(
            text.contains("ecs_power_ecs_call_duration_seconds_count{action=\"StartInstance\"} 1")
        );
        assert!(text.contains("ecs_power_resources{desired=\"Running\",observed=\"Unknown\"} 2"));
        // The gauge is recomputed at each scrape, not accumulated.
        let text = metrics.render(&[]);
        assert!(!text.contains("observed=\"Unknown\"} 2"));
    }
}
