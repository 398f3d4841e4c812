//! The controller: kube-runtime's `Controller` over `EcsInstancePower`, plus a watch on Secrets'
//! metadata so that creating or fixing a referenced Secret re-queues the resources that use it, and
//! a watch on `EcsPowerSchedule`s that does the same for the resources that follow a schedule.
//!
//! ```text
//! watch EcsInstancePower ─┐
//! watch Secret metadata ──┤
//! watch EcsPowerSchedule ─┴─► Controller ─► reconcile: due (ledger) → credentials → observe (ECS)
//!                               → desired → decide (pure) → act (ECS) → report (pure)
//!                               → write status → publish event
//! ```
//!
//! - [`reconcile`]: the pipeline as named steps; [`decide`] and [`report`] are pure and
//!   table-tested; [`view`] reads the previous status once for decide; [`desired`] resolves the
//!   effective desired power state.
//! - [`ledger`]: why a reconcile triggered by our own status write makes no ECS call.
//! - [`credentials`]: which credentials sign a resource's calls; [`ecs_handle`]: the ECS calls,
//!   behind a trait; the fleet gateway ([`crate::fleet::gateway`]) batches and paces them and
//!   re-queues resources through `reconcile_on`.
//! - [`gate`]: the write gate at the side-effect edges; [`status`]: the status write.
//! - [`events`]: kube-runtime's event `Recorder`, renewed so that its cache stays bounded.
//! - [`retry`]: backoff per error class; [`conditions`]: condition bookkeeping.

pub mod conditions;
pub mod context;
pub mod credentials;
pub mod decide;
pub mod desired;
pub mod ecs_handle;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod gate;
pub mod ledger;
pub mod reconcile;
pub mod report;
pub mod retry;
pub mod schedule_status;
pub mod status;
pub mod view;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::api::{EcsInstancePower, EcsPowerSchedule};
use crate::ecs::{EcsClient, OperatorCredentials};
use crate::fleet::{Fleet, FleetConfig, RateLimits};
use crate::metrics::Metrics;

pub use context::Context;
use ledger::Ledger;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; `None` for all.
    pub watch_namespace: Option<String>,
    /// Steady-state re-observation interval.
    pub resync: Duration,
    /// Reconciles at the same time.
    pub concurrency: u16,
    /// Multiplies backoff, poll and re-check delays (1.0 in production).
    pub time_scale: f64,
    /// The event reporter (controller name and pod name).
    pub reporter: Reporter,
    /// `--ecs-rate-limit`: the ceiling of each ECS action, per account and region.
    pub rate_limits: RateLimits,
    /// `--ecs-batch-size`: instance IDs per batch call (1 turns batching off).
    pub batch_size: usize,
}

/// A built controller, ready to [`run`](Operator::run).
pub struct Operator {
    controller: Controller<EcsInstancePower>,
    context: Arc<Context>,
    concurrency: u16,
    synced: Arc<Synced>,
    fleet: Arc<Fleet>,
    /// The resources' cache, for the schedules' `status.instances`.
    resources: Store<EcsInstancePower>,
}

/// Readiness: both watches (resources, Secret metadata) have received their first list.
#[derive(Debug, Default)]
pub struct Synced {
    resources: AtomicBool,
    secrets: AtomicBool,
}

impl Synced {
    /// Whether the Secret metadata cache holds its first list.
    pub fn secrets_synced(&self) -> bool {
        self.secrets.load(Ordering::Relaxed)
    }

    /// Whether the resource cache holds its first list.
    pub fn resources_synced(&self) -> bool {
        self.resources.load(Ordering::Relaxed)
    }

    /// What readiness still waits for, or `None` when ready.
    pub fn waiting_for(&self) -> Option<&'static str> {
        match (
            self.resources.load(Ordering::Relaxed),
            self.secrets.load(Ordering::Relaxed),
        ) {
            (true, true) => None,
            (false, _) => Some("the first list of EcsInstancePower resources"),
            (true, false) => Some("the first list of Secret metadata"),
        }
    }
}

impl Operator {
    /// Builds the controller and its watches.
    pub fn new(
        client: Client,
        settings: Settings,
        ecs: EcsClient,
        operator_credentials: Option<OperatorCredentials>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (resources, secrets): (Api<EcsInstancePower>, Api<PartialObjectMeta<Secret>>) =
            match &settings.watch_namespace {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
        // Our own reflector rather than `Controller::new`, to see the end of the first list: that is
        // readiness. (`Store::wait_until_ready` wakes a single waiter, and the controller is one.)
        let (store, writer) = reflector::store();
        let synced = Arc::new(Synced::default());
        let ledger = Arc::new(Ledger::default());
        let ecs = Arc::new(ecs);
        // The gateway re-queues a resource when its read or write finishes or its observation
        // changes: a stream of triggers into the controller.
        let (trigger, triggers) = tokio::sync::mpsc::unbounded_channel();
        let fleet = Fleet::new(
            ecs.clone(),
            FleetConfig::new(
                settings.rate_limits.clone(),
                settings.batch_size,
                settings.resync,
            ),
            metrics.clone(),
            trigger,
        );
        fleet.log_config();
        let events = reflector::reflector(
            writer,
            watcher(resources, watcher::Config::default().any_semantic()).default_backoff(),
        )
        .inspect({
            let (synced, ledger, store, fleet) =
                (synced.clone(), ledger.clone(), store.clone(), fleet.clone());
            move |event| on_resource_event(event, &synced, &ledger, &fleet, &store)
        });
        let triggers = futures::stream::unfold(triggers, |mut rx| async move {
            rx.recv().await.map(|resource| (resource, rx))
        });
        let controller =
            Controller::for_stream(events.applied_objects(), store.clone()).reconcile_on(triggers);

        let (secret_store, secret_writer) = reflector::store();
        // Metadata only: the operator never caches Secret data, it reads a Secret when it needs it.
        let secret_changes = reflector::reflector(
            secret_writer,
            watcher(secrets, watcher::Config::default().any_semantic())
                .default_backoff()
                .inspect({
                    let synced = synced.clone();
                    move |event| on_secret_event(event, &synced)
                }),
        )
        .touched_objects();
        let users_store = store.clone();
        let controller = controller.watches_stream(secret_changes, move |secret| {
            secret_users(&users_store, &secret)
        });

        let schedules: Api<EcsPowerSchedule> = match &settings.watch_namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (schedule_store, schedule_writer) = reflector::store();
        let schedule_changes = reflector::reflector(
            schedule_writer,
            watcher(schedules, watcher::Config::default().any_semantic()).default_backoff(),
        )
        .filter_map(|event| std::future::ready(changed_schedule(event)));
        let users_store = store.clone();
        let controller = controller.watches_stream(schedule_changes, move |schedule| {
            schedule_users(&users_store, &schedule)
        });

        let context = Arc::new(Context {
            recorder: events::EventRecorder::new(client.clone(), settings.reporter),
            client,
            ecs,
            fleet: Some(fleet.clone()),
            operator_credentials,
            metrics,
            ledger,
            gate: Arc::new(gate::WriteGate::default()),
            secrets: secret_store,
            schedules: schedule_store,
            synced: synced.clone(),
            resync: settings.resync,
            time_scale: settings.time_scale,
        });
        Operator {
            controller,
            context,
            concurrency: settings.concurrency,
            synced,
            fleet,
            resources: store,
        }
    }

    /// The controller's cache of resources (for metrics and readiness).
    pub fn store(&self) -> Store<EcsInstancePower> {
        self.controller.store()
    }

    /// The write gate every side effect passes (open until someone closes it).
    pub fn gate(&self) -> Arc<gate::WriteGate> {
        self.context.gate.clone()
    }

    /// Queues every cached resource whenever `trigger` yields (a new leader observes every
    /// resource once, reads first).
    #[must_use]
    pub fn reconcile_all_on(
        mut self,
        trigger: impl futures::Stream<Item = ()> + Send + 'static,
    ) -> Self {
        self.controller = self.controller.reconcile_all_on(trigger);
        self
    }

    /// Replaces the write gate (leader election starts with a closed one).
    #[must_use]
    pub fn with_gate(mut self, gate: Arc<gate::WriteGate>) -> Self {
        self.fleet.set_gate(gate.clone());
        if let Some(context) = Arc::get_mut(&mut self.context) {
            context.gate = gate;
        }
        self
    }

    /// Becomes true once the first list of resources has been received (readiness).
    pub fn synced(&self) -> Arc<Synced> {
        self.synced.clone()
    }

    /// Runs until `shutdown` completes, then finishes the reconciles in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let config = controller::Config::default().concurrency(self.concurrency);
        info!(concurrency = self.concurrency, "controller started");
        let fleet = self.fleet.clone();
        let schedule_status = tokio::spawn(schedule_status::run(
            self.context.clone(),
            self.resources.clone(),
        ));
        let gauges = tokio::spawn({
            let fleet = fleet.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    fleet.publish_gauges();
                }
            }
        });
        self.controller
            .with_config(config)
            .graceful_shutdown_on(shutdown)
            .run(reconcile::reconcile, reconcile::error_policy, self.context)
            .for_each(|result| {
                match result {
                    // 410 Gone: the watch fell behind (etcd compaction); kube-runtime relists.
                    Err(controller::Error::QueueError(watcher::Error::WatchError(status)))
                        if status.code == 410 =>
                    {
                        debug!(error = %status, "watch expired (410 Gone); relisting");
                    }
                    Err(controller::Error::QueueError(err)) => warn!(
                        error = %err,
                        "a watch failed (retrying with backoff): is the CRD installed (`ecs-power-operator crd | \
                         kubectl apply -f -`), and does RBAC allow list/watch on ecsinstancepowers and secrets?"
                    ),
                    Err(err) => debug!(error = %err, "reconcile did not complete"),
                    Ok(_) => {}
                }
                futures::future::ready(())
            })
            .await;
        gauges.abort();
        schedule_status.abort();
        fleet.shutdown();
        info!("controller stopped");
    }
}

/// Watch events of resources, after the cache applied them: the end of a (re)list is readiness and
/// drops the ledger entries (and the gateway's tracking) of resources that no longer exist; a
/// delete drops its entry and stops its instance's sweep at once.
fn on_resource_event(
    event: &Result<watcher::Event<EcsInstancePower>, watcher::Error>,
    synced: &Synced,
    ledger: &Ledger,
    fleet: &Fleet,
    store: &Store<EcsInstancePower>,
) {
    match event {
        Ok(watcher::Event::InitDone) => {
            synced.resources.store(true, Ordering::Relaxed);
            ledger.retain(|key| store.get(key).is_some());
            fleet.retain(|key| store.get(key).is_some());
        }
        Ok(watcher::Event::Delete(obj)) => {
            let key = ObjectRef::from_obj(obj);
            ledger.forget(&key);
            fleet.untrack(&key);
        }
        _ => {}
    }
}

/// Watch events of Secret metadata: the end of the first list is readiness.
fn on_secret_event(
    event: &Result<watcher::Event<PartialObjectMeta<Secret>>, watcher::Error>,
    synced: &Synced,
) {
    if matches!(event, Ok(watcher::Event::InitDone)) {
        synced.secrets.store(true, Ordering::Relaxed);
    }
}

/// The schedule a watch event is about, deletions included (its users then report
/// `ScheduleNotFound` at once); the markers of a relist carry none.
fn changed_schedule(
    event: Result<watcher::Event<EcsPowerSchedule>, watcher::Error>,
) -> Option<Result<EcsPowerSchedule, watcher::Error>> {
    match event {
        Ok(
            watcher::Event::Apply(schedule)
            | watcher::Event::InitApply(schedule)
            | watcher::Event::Delete(schedule),
        ) => Some(Ok(schedule)),
        Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
        Err(error) => Some(Err(error)),
    }
}

/// The resources in the cache whose `scheduleRef` names this schedule (same namespace): a change
/// of the schedule (created, fixed, edited) re-queues them.
fn schedule_users(
    store: &Store<EcsInstancePower>,
    schedule: &EcsPowerSchedule,
) -> Vec<ObjectRef<EcsInstancePower>> {
    let namespace = schedule.namespace();
    let name = schedule.name_any();
    let users: Vec<ObjectRef<EcsInstancePower>> = store
        .state()
        .iter()
        .filter(|r| {
            r.namespace() == namespace
                && r.spec.schedule_ref.as_ref().is_some_and(|s| s.name == name)
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect();
    if !users.is_empty() {
        debug!(schedule = %name, resources = users.len(), "schedule changed; re-queueing");
    }
    users
}

/// The resources in the cache whose `credentialsSecretRef` names this Secret (same namespace): a
/// change of the Secret re-queues them.
fn secret_users(
    store: &Store<EcsInstancePower>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<EcsInstancePower>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    let users: Vec<ObjectRef<EcsInstancePower>> = store
        .state()
        .iter()
        .filter(|r| {
            r.namespace() == namespace
                && r.spec
                    .credentials_secret_ref
                    .as_ref()
                    .is_some_and(|s| s.name == name)
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect();
    if !users.is_empty() {
        debug!(secret = %name, resources = users.len(), "referenced Secret changed; re-queueing");
    }
    users
}
