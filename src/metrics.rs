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
//! - `ecs_power_resources_by_condition{condition,status,reason}`: resources by the status and
//!   reason of each of their `Ready`, `Reconciling` and `Stalled` conditions, also computed at
//!   scrape time; a resource with no `Ready` condition yet counts as `Ready` `Unknown` with reason
//!   `NotObserved`. Reasons are the operator's bounded vocabulary, never free text.
//! - Schedules: `ecs_power_schedules{state}` (`Running`, `Stopped`, `Invalid`) and
//!   `ecs_power_schedule_next_transition_timestamp_seconds` (the soonest next transition of any
//!   schedule, Unix time; 0 without one), set by the schedule status loop;
//!   `ecs_power_schedule_transitions_total{state}`: changes of a resource's effective scheduled
//!   state; `ecs_power_schedule_transition_lag_seconds`: from a scheduled edge to ECS accepting the
//!   write call it led to; `ecs_power_schedule_overrides_active`: resources whose
//!   `scheduleOverride` holds now (scrape time). `ecs_power_actions_total{action,cause}`: write calls
//!   ECS accepted, by cause (`spec`, `schedule`, `override`, `drift`, `catch-up`). In
//!   `ecs_power_resources`, `desired` is the effective desired state (`Running`, `Stopped`, or for a
//!   scheduled resource also `Unmanaged`, and `Unknown` while its schedule is missing or invalid).
//! - The fleet gateway's (see [`FleetMetrics`]): `ecs_power_fleet_batch_size{action}`,
//!   `ecs_power_fleet_flushes_total{action,reason}`, `ecs_power_fleet_submit_to_send_seconds{action}`,
//!   `ecs_power_fleet_intents{kind,state}`, `ecs_power_fleet_limiter_rate{account,region,action}`
//!   (and `_ceiling`, `_blocked_until_seconds`), `ecs_power_fleet_throttled_total{action,code}`,
//!   `ecs_power_fleet_ambiguous_writes_total`, `ecs_power_fleet_verified_resends_total`,
//!   `ecs_power_fleet_replaced_writes_total`, `ecs_power_fleet_sweep_calls_total`,
//!   `ecs_power_fleet_swept_resources_total`. No instance ID is ever a label; the account is a
//!   short hash.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, EcsInstancePower};
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
struct ConditionLabels {
    condition: String,
    status: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    action: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleStateLabels {
    state: String,
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
    resources_by_condition: Family<ConditionLabels, Gauge>,
    leader: Gauge,
    leader_transitions: Counter,
    actions: Family<CauseLabels, Counter>,
    schedules: Family<ScheduleStateLabels, Gauge>,
    schedule_next_transition: Gauge,
    schedule_transitions: Family<ScheduleStateLabels, Counter>,
    transition_lag: Histogram,
    overrides_active: Gauge,
    /// The fleet gateway's metrics.
    pub fleet: FleetMetrics,
    render_lock: std::sync::Mutex<()>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlushLabels {
    action: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntentLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimiterLabels {
    account: String,
    region: String,
    action: String,
}

/// The fleet gateway's metrics: batches, intents, the adaptive limiters, throttled answers,
/// ambiguous writes and the sweep.
#[derive(Debug)]
pub struct FleetMetrics {
    batch_size: Family<ActionLabels, Histogram>,
    flushes: Family<FlushLabels, Counter>,
    submit_to_send: Family<ActionLabels, Histogram>,
    intents: Family<IntentLabels, Gauge>,
    limiter_rate: Family<LimiterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    limiter_ceiling: Family<LimiterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    limiter_blocked_until: Family<LimiterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    throttled: Family<CallLabels, Counter>,
    ambiguous_writes: Counter,
    verified_resends: Counter,
    replaced_writes: Counter,
    sweep_calls: Counter,
    swept_resources: Counter,
}

impl FleetMetrics {
    fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("fleet");
        let batch_size = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 99.0, 100.0])
        });
        registry.register(
            "batch_size",
            "Instance IDs per batch call, by action",
            batch_size.clone(),
        );
        let flushes = Family::<FlushLabels, Counter>::default();
        registry.register(
            "flushes",
            "Batches sealed, by action and flush reason",
            flushes.clone(),
        );
        let submit_to_send = Family::<ActionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 14))
        });
        registry.register_with_unit(
            "submit_to_send",
            "Time from the submission of a batch's oldest item to its send",
            prometheus_client::registry::Unit::Seconds,
            submit_to_send.clone(),
        );
        let intents = Family::<IntentLabels, Gauge>::default();
        registry.register(
            "intents",
            "Read and write intents by state (queue depth is state=queued)",
            intents.clone(),
        );
        let limiter_rate = Family::default();
        registry.register(
            "limiter_rate",
            "Current pacing rate (calls/s) per account hash, region and action",
            limiter_rate.clone(),
        );
        let limiter_ceiling = Family::default();
        registry.register(
            "limiter_ceiling",
            "Configured ceiling (calls/s) per account hash, region and action",
            limiter_ceiling.clone(),
        );
        let limiter_blocked_until = Family::default();
        registry.register(
            "limiter_blocked_until_seconds",
            "Unix time until which an action is held after a throttled answer (0: not held)",
            limiter_blocked_until.clone(),
        );
        let throttled = Family::<CallLabels, Counter>::default();
        registry.register(
            "throttled",
            "Throttled answers by action and code",
            throttled.clone(),
        );
        let ambiguous_writes = Counter::default();
        registry.register(
            "ambiguous_writes",
            "Writes whose outcome is unknown (verified by a read before any re-send)",
            ambiguous_writes.clone(),
        );
        let verified_resends = Counter::default();
        registry.register(
            "verified_resends",
            "Writes sent again after an ambiguous one, once a read showed the old state",
            verified_resends.clone(),
        );
        let replaced_writes = Counter::default();
        registry.register(
            "replaced_writes",
            "Queued writes cancelled because the desired state changed",
            replaced_writes.clone(),
        );
        let sweep_calls = Counter::default();
        registry.register(
            "sweep_calls",
            "DescribeInstances calls made for the sweep",
            sweep_calls.clone(),
        );
        let swept_resources = Counter::default();
        registry.register(
            "swept_resources",
            "Instance IDs submitted by the sweep",
            swept_resources.clone(),
        );
        FleetMetrics {
            batch_size,
            flushes,
            submit_to_send,
            intents,
            limiter_rate,
            limiter_ceiling,
            limiter_blocked_until,
            throttled,
            ambiguous_writes,
            verified_resends,
            replaced_writes,
            sweep_calls,
            swept_resources,
        }
    }

    /// One sealed batch of `action`.
    pub fn flushed(&self, action: &str, reason: &str, size: usize, waited: Duration) {
        let labels = ActionLabels {
            action: action.to_string(),
        };
        self.batch_size
            .get_or_create(&labels)
            .observe(f64::from(u32::try_from(size).unwrap_or(u32::MAX)));
        self.submit_to_send
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
        self.flushes
            .get_or_create(&FlushLabels {
                action: action.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// One throttled answer.
    pub fn throttled(&self, action: &str, code: &str) {
        self.throttled
            .get_or_create(&CallLabels {
                action: action.to_string(),
                code: crate::ecs::observer::code_label(code).to_string(),
            })
            .inc();
    }

    /// Intents of `kind` (`read`, `write`) in `state` now.
    pub fn intents(&self, kind: &str, state: &str, count: usize) {
        self.intents
            .get_or_create(&IntentLabels {
                kind: kind.to_string(),
                state: state.to_string(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A limiter's state now; `account` is already a short hash.
    pub fn limiter(
        &self,
        account: &str,
        region: &str,
        action: &str,
        rate: f64,
        ceiling: f64,
        blocked_until_unix: f64,
    ) {
        let labels = LimiterLabels {
            account: account.to_string(),
            region: region.to_string(),
            action: action.to_string(),
        };
        self.limiter_rate.get_or_create(&labels).set(rate);
        self.limiter_ceiling.get_or_create(&labels).set(ceiling);
        self.limiter_blocked_until
            .get_or_create(&labels)
            .set(blocked_until_unix);
    }

    /// A write whose outcome is unknown.
    pub fn ambiguous_write(&self) {
        self.ambiguous_writes.inc();
    }

    /// A write sent again after an ambiguous one was verified by a read.
    pub fn verified_resend(&self) {
        self.verified_resends.inc();
    }

    /// A queued write cancelled because the desired state changed.
    pub fn replaced_write(&self) {
        self.replaced_writes.inc();
    }

    /// One sweep call.
    pub fn sweep_call(&self) {
        self.sweep_calls.inc();
    }

    /// Instance IDs submitted by the sweep.
    pub fn swept(&self, count: usize) {
        self.swept_resources.inc_by(count as u64);
    }
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
        let resources_by_condition = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "resources_by_condition",
            "EcsInstancePower resources by condition type, status and reason",
            resources_by_condition.clone(),
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
        let actions = Family::<CauseLabels, Counter>::default();
        registry.register(
            "actions",
            "Write calls ECS accepted, by action and cause (spec, schedule, override, drift, catch-up)",
            actions.clone(),
        );
        let schedules = Family::<ScheduleStateLabels, Gauge>::default();
        registry.register(
            "schedules",
            "EcsPowerSchedules by state now (Running, Stopped, Invalid)",
            schedules.clone(),
        );
        let schedule_next_transition = Gauge::default();
        registry.register_with_unit(
            "schedule_next_transition_timestamp",
            "Unix time of the soonest next transition of any schedule (0: none)",
            prometheus_client::registry::Unit::Seconds,
            schedule_next_transition.clone(),
        );
        let schedule_transitions = Family::<ScheduleStateLabels, Counter>::default();
        registry.register(
            "schedule_transitions",
            "Changes of a resource's effective scheduled state, by the new state",
            schedule_transitions.clone(),
        );
        let transition_lag = Histogram::new([
            0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
        ]);
        registry.register_with_unit(
            "schedule_transition_lag",
            "Time from a scheduled edge to ECS accepting the write call it led to",
            prometheus_client::registry::Unit::Seconds,
            transition_lag.clone(),
        );
        let overrides_active = Gauge::default();
        registry.register(
            "schedule_overrides_active",
            "Resources whose scheduleOverride holds now",
            overrides_active.clone(),
        );
        let fleet = FleetMetrics::register(&mut registry);
        Metrics {
            actions,
            schedules,
            schedule_next_transition,
            schedule_transitions,
            transition_lag,
            overrides_active,
            registry,
            leader,
            leader_transitions,
            reconciles,
            reconcile_errors,
            fenced_writes,
            ecs_calls,
            ecs_latency,
            resources,
            resources_by_condition,
            fleet,
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

    /// Counts one write call ECS accepted (`StartInstance`, `StopInstance`), by its cause.
    pub fn acted(&self, action: &str, cause: &str) {
        self.actions
            .get_or_create(&CauseLabels {
                action: action.to_string(),
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Counts one change of a resource's effective scheduled state.
    pub fn schedule_transition(&self, state: &str) {
        self.schedule_transitions
            .get_or_create(&ScheduleStateLabels {
                state: state.to_string(),
            })
            .inc();
    }

    /// Observes the time from a scheduled edge to ECS accepting the write call it led to.
    pub fn transition_lag(&self, lag: Duration) {
        self.transition_lag.observe(lag.as_secs_f64());
    }

    /// Sets the schedule gauges: how many schedules are in each state now (`Running`, `Stopped`,
    /// `Invalid`) and the soonest next transition of any of them.
    pub fn set_schedules(&self, by_state: &[(&str, usize)], next: Option<jiff::Timestamp>) {
        self.schedules.clear();
        for (state, count) in by_state {
            self.schedules
                .get_or_create(&ScheduleStateLabels {
                    state: (*state).to_string(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.schedule_next_transition
            .set(next.map_or(0, jiff::Timestamp::as_second));
    }

    /// Renders the text exposition format, refreshing the per-state and per-condition gauges from
    /// `resources` first.
    pub fn render(&self, resources: &[Arc<EcsInstancePower>]) -> String {
        // Concurrent scrapes would interleave clear and refill; one at a time.
        let _guard = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.resources.clear();
        self.resources_by_condition.clear();
        let overrides = resources
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.schedule.as_ref())
                    .and_then(|s| s.override_status.as_ref())
                    .is_some_and(|o| o.active)
            })
            .count();
        self.overrides_active
            .set(i64::try_from(overrides).unwrap_or(i64::MAX));
        for r in resources {
            self.count_conditions(r);
            let observed = r
                .status
                .as_ref()
                .and_then(|s| s.instance_status.clone())
                .unwrap_or_else(|| "Unknown".into());
            let labels = StateLabels {
                desired: crate::controller::desired::label(r).to_string(),
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

impl Metrics {
    /// Adds one resource's `Ready`, `Reconciling` and `Stalled` conditions to the per-condition
    /// gauge; a missing `Ready` condition counts as `Unknown` / `NotObserved`, a missing
    /// `Reconciling` or `Stalled` condition is not counted.
    fn count_conditions(&self, resource: &EcsInstancePower) {
        let conditions = resource
            .status
            .as_ref()
            .map_or(&[][..], |s| s.conditions.as_slice());
        for type_ in [CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED] {
            let labels = match conditions.iter().find(|c| c.type_ == type_) {
                Some(c) => ConditionLabels {
                    condition: type_.to_string(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                },
                None if type_ == CONDITION_READY => ConditionLabels {
                    condition: type_.to_string(),
                    status: "Unknown".to_string(),
                    reason: "NotObserved".to_string(),
                },
                None => continue,
            };
            self.resources_by_condition.get_or_create(&labels).inc();
        }
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

    #[test]
    fn schedule_metrics_and_the_effective_desired_label() {
        let metrics = Metrics::new();
        let resource = |status: serde_json::Value| -> Arc<EcsInstancePower> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
                    "metadata": {"name": "dev"},
                    "spec": {"instanceId": "i-a", "regionId": "cn-hangzhou",
                             "desiredState": "Scheduled", "scheduleRef": {"name": "office"}},
                    "status": status,
                }))
                .unwrap(),
            )
        };
        let unmanaged = resource(serde_json::json!({
            "instanceStatus": "Stopped",
            "schedule": {"name": "office", "effectiveState": "Unmanaged"},
        }));
        let overridden = resource(serde_json::json!({
            "instanceStatus": "Running",
            "schedule": {"name": "office", "effectiveState": "Running", "source": "Override",
                         "override": {"state": "Running", "active": true}},
        }));
        let missing = resource(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "ScheduleNotFound",
                            "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "schedule": {"name": "office", "effectiveState": "Running"},
        }));
        metrics.acted("StartInstance", "catch-up");
        metrics.schedule_transition("Running");
        metrics.transition_lag(Duration::from_secs(3));
        metrics.set_schedules(
            &[("Running", 2), ("Stopped", 0), ("Invalid", 1)],
            Some("2026-12-23T18:00:00Z".parse().unwrap()),
        );
        let text = metrics.render(&[unmanaged, overridden, missing]);
        for sample in [
            "ecs_power_resources{desired=\"Unmanaged\",observed=\"Stopped\"} 1",
            "ecs_power_resources{desired=\"Running\",observed=\"Running\"} 1",
            "ecs_power_resources{desired=\"Unknown\",observed=\"Unknown\"} 1",
            "ecs_power_schedule_overrides_active 1",
            "ecs_power_actions_total{action=\"StartInstance\",cause=\"catch-up\"} 1",
            "ecs_power_schedule_transitions_total{state=\"Running\"} 1",
            "ecs_power_schedule_transition_lag_seconds_bucket{le=\"5.0\"} 1",
            "ecs_power_schedules{state=\"Invalid\"} 1",
            "ecs_power_schedule_next_transition_timestamp_seconds 1798048800",
        ] {
            assert!(text.contains(sample), "missing {sample} in {text}");
        }
    }

    fn with_conditions(name: &str, conditions: &serde_json::Value) -> Arc<EcsInstancePower> {
        let mut resource: EcsInstancePower = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1",
            "kind": "EcsInstancePower",
            "metadata": {"name": name},
            "spec": {"instanceId": "i-a", "regionId": "cn-hangzhou"},
        }))
        .unwrap();
        let status = serde_json::json!({ "conditions": conditions });
        resource.status = Some(serde_json::from_value(status).unwrap());
        Arc::new(resource)
    }

    fn condition(type_: &str, status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        })
    }

    #[test]
    fn counts_resources_by_condition_status_and_reason() {
        let metrics = Metrics::new();
        let stalled = with_conditions(
            "a",
            &serde_json::json!([
                condition("Ready", "False", "CredentialsRejected"),
                condition("Reconciling", "False", "CredentialsRejected"),
                condition("Stalled", "True", "CredentialsRejected"),
            ]),
        );
        let ready = with_conditions(
            "b",
            &serde_json::json!([
                condition("Ready", "True", "Running"),
                condition("Stalled", "False", "Running"),
            ]),
        );
        let spec: EcsInstancePowerSpec = serde_json::from_value(
            serde_json::json!({"instanceId": "i-c", "regionId": "cn-hangzhou"}),
        )
        .unwrap();
        let fresh = Arc::new(EcsInstancePower::new("c", spec));
        let text = metrics.render(&[stalled.clone(), stalled, ready.clone(), fresh]);
        let line = |condition: &str, status: &str, reason: &str, n: u32| {
            format!(
                "ecs_power_resources_by_condition{{condition=\"{condition}\",status=\"{status}\",reason=\"{reason}\"}} {n}\n"
            )
        };
        for expected in [
            line("Ready", "False", "CredentialsRejected", 2),
            line("Reconciling", "False", "CredentialsRejected", 2),
            line("Stalled", "True", "CredentialsRejected", 2),
            line("Ready", "True", "Running", 1),
            line("Stalled", "False", "Running", 1),
            line("Ready", "Unknown", "NotObserved", 1),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in {text}");
        }
        // Only Ready is counted when absent: the fresh resource adds no Stalled or Reconciling series.
        let series = text
            .lines()
            .filter(|l| l.starts_with("ecs_power_resources_by_condition{"))
            .count();
        assert_eq!(series, 6, "{text}");
        // Recomputed at each scrape: a resource that became Ready moves out of its old series.
        let text = metrics.render(&[ready]);
        assert!(!text.contains("CredentialsRejected"), "{text}");
        assert!(
            text.contains(&line("Ready", "True", "Running", 1)),
            "{text}"
        );
    }
}
