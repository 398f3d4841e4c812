//! The controller: kube-runtime's `Controller` over `EcsInstancePower`, plus a watch on Secrets'
//! metadata so that creating or fixing a referenced Secret re-queues the resources that use it, a
//! watch on `EcsPowerSchedule`s that does the same for the resources that follow a schedule, and
//! watches on the `EcsPowerAccessPolicy` and on Namespace metadata that re-queue the resources the
//! policy governs (all of them, or those of the relabelled namespace). A resource created or
//! deleted re-queues the others naming its instance, so a claim changes hands at once.
//!
//! ```text
//! watch EcsInstancePower ────┐
//! watch Secret metadata ─────┤
//! watch EcsPowerSchedule ────┤
//! watch EcsPowerAccessPolicy ┤
//! watch Namespace metadata ──┴─► Controller ─► reconcile: due (ledger) → desired → access
//!                               → credentials → observe (ECS) → decide (pure) → act (ECS)
//!                               → report (pure) → write status → publish event
//! ```
//!
//! - [`reconcile`]: the pipeline as named steps; [`decide`] and [`report`] are pure and
//!   table-tested; [`view`] reads the previous status once for decide; [`desired`] resolves the
//!   effective desired power state.
//! - [`ledger`]: why a reconcile triggered by our own status write makes no ECS call.
//! - [`credentials`]: which credentials sign a resource's calls; [`ecs_handle`]: the ECS calls,
//!   behind a trait; the fleet gateway ([`crate::fleet::gateway`]) batches and paces them and
//!   re-queues resources through `reconcile_on`.
//! - [`access`]: the claim of an instance and the access policy, checked before observing and
//!   right before every write (and, through the gateway's write check, every batch entry);
//!   [`access_status`]: the policy's status.
//! - [`gate`]: the write gate at the side-effect edges; [`status`]: the status write.
//! - [`events`]: kube-runtime's event `Recorder`, renewed so that its cache stays bounded.
//! - [`retry`]: backoff per error class; [`conditions`]: condition bookkeeping.

pub mod access;
pub mod access_status;
pub mod clock;
pub mod conditions;
pub mod context;
pub mod credentials;
pub mod decide;
pub mod desired;
pub mod ecs_handle;
pub mod events;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod gate;
pub mod ledger;
#[cfg(test)]
mod props;
pub mod reconcile;
pub mod report;
pub mod retry;
pub mod schedule_notes;
pub mod schedule_status;
pub mod status;
pub mod view;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::api::{EcsInstancePower, EcsPowerAccessPolicy, EcsPowerSchedule};
use crate::ecs::{EcsClient, OperatorCredentials};
use crate::fleet::{Fleet, FleetConfig, RateLimits};
use crate::metrics::Metrics;

pub use access::PolicyScope;
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
    /// Which resources the access policy governs (`--access-policy-for-secrets`).
    pub access_scope: PolicyScope,
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
    policies: AtomicBool,
    namespaces: AtomicBool,
}

impl Synced {
    /// Whether the Secret metadata cache holds its first list.
    pub fn secrets_synced(&self) -> bool {
        self.secrets.load(Ordering::Relaxed)
    }

    /// Whether the caches of the access policy and of Namespace metadata hold their first list
    /// (before, no resource is judged: an empty cache would refuse every one).
    pub fn access_synced(&self) -> bool {
        self.policies.load(Ordering::Relaxed) && self.namespaces.load(Ordering::Relaxed)
    }

    /// Only the access caches synced (for tests that build a context by hand).
    #[cfg(test)]
    pub(crate) fn access_only() -> Self {
        let synced = Synced::default();
        synced.policies.store(true, Ordering::Relaxed);
        synced.namespaces.store(true, Ordering::Relaxed);
        synced
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
            (true, true) if self.access_synced() => None,
            (false, _) => Some("the first list of EcsInstancePower resources"),
            (true, false) => Some("the first list of Secret metadata"),
            (true, true) => Some("the first list of EcsPowerAccessPolicies and Namespace metadata"),
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
        // Who may control which instance: the claims (over the resource cache), the access
        // policy and the namespaces' labels.
        let (policy_store, policy_writer) = reflector::store();
        let (namespace_store, namespace_writer) = reflector::store();
        let access = access::AccessGuard::new(
            store.clone(),
            policy_store,
            namespace_store,
            settings.access_scope,
        );
        fleet.set_write_check(Arc::new(access.clone()));
        // A resource created or deleted re-queues the others naming its instance (a claim changes
        // hands at once).
        let (claims_tx, claims_rx) = tokio::sync::mpsc::unbounded_channel();
        // Every resource of a (re)list, re-queued once the list is complete (see `listed`).
        let (listed_tx, listed_rx) = tokio::sync::mpsc::unbounded_channel();
        let events = reflector::reflector(
            writer,
            watcher(resources, watcher::Config::default().any_semantic())
                .default_backoff()
                .modify(lean),
        )
        .inspect({
            let (synced, ledger, store, fleet, access) = (
                synced.clone(),
                ledger.clone(),
                store.clone(),
                fleet.clone(),
                access.clone(),
            );
            move |event| {
                on_resource_event(event, &synced, &ledger, &fleet, &store);
                if let Ok(event) = event {
                    access.observe(event);
                }
                for claimant in claim_changes(event, &access) {
                    let _ = claims_tx.send(claimant);
                }
            }
        })
        .inspect(listed(store.clone(), listed_tx))
        .filter_map(|event| std::future::ready(applied_in_store(event)));
        let received = |rx: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<EcsInstancePower>>| {
            futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|resource| (resource, rx))
            })
        };
        let triggers = futures::stream::select(
            received(triggers),
            futures::stream::select(received(claims_rx), received(listed_rx)),
        );
        let controller = Controller::for_stream(events, store.clone()).reconcile_on(triggers);

        // The access policy (cluster-scoped; only `default` counts): a change of its spec (a new
        // generation), its creation or its deletion re-queues every resource it governs (they turn
        // NotGranted at once on deletion). Its own status writes re-queue nothing.
        let policies: Api<EcsPowerAccessPolicy> = Api::all(client.clone());
        let policy_changes = reflector::reflector(
            policy_writer,
            watcher(policies, watcher::Config::default().any_semantic())
                .default_backoff()
                .inspect({
                    let synced = synced.clone();
                    move |event| {
                        if matches!(event, Ok(watcher::Event::InitDone)) {
                            synced.policies.store(true, Ordering::Relaxed);
                        }
                    }
                }),
        )
        .filter_map({
            let seen = std::sync::Mutex::new(std::collections::HashMap::new());
            move |event| {
                std::future::ready(
                    changed_policy(event, &seen).and_then(|r| logged(r, "EcsPowerAccessPolicy")),
                )
            }
        });
        let governed = access.clone();
        let controller = controller.watches_stream(policy_changes, move |_policy| {
            let resources = governed.governed(None);
            debug!(
                resources = resources.len(),
                "access policy changed; re-queueing"
            );
            resources
        });
        // Namespace metadata (labels select namespaces in rules): a change re-queues the governed
        // resources of that namespace. Only the watched namespace when there is one.
        let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let namespace_config = match &settings.watch_namespace {
            Some(ns) => watcher::Config::default()
                .any_semantic()
                .fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default().any_semantic(),
        };
        let namespace_changes = reflector::reflector(
            namespace_writer,
            watcher(namespaces, namespace_config)
                .default_backoff()
                .inspect({
                    let synced = synced.clone();
                    move |event| {
                        if matches!(event, Ok(watcher::Event::InitDone)) {
                            synced.namespaces.store(true, Ordering::Relaxed);
                        }
                    }
                }),
        )
        .filter_map(|event| {
            std::future::ready(changed_object(event).and_then(|r| logged(r, "Namespace")))
        });
        let governed = access.clone();
        let controller = controller.watches_stream(namespace_changes, move |namespace| {
            governed.governed(Some(&namespace.name_any()))
        });

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
        .touched_objects()
        .filter_map(|secret| std::future::ready(logged(secret, "Secret")));
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
        .filter_map(|event| {
            std::future::ready(changed_schedule(event).and_then(|r| logged(r, "EcsPowerSchedule")))
        });
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
            access,
            synced: synced.clone(),
            resync: settings.resync,
            time_scale: settings.time_scale,
            clock: clock::Clock::default(),
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
        let access_status = tokio::spawn(access_status::run(self.context.clone()));
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
                    // Watch errors are logged where each watch is built (`logged`), never queued.
                    Err(controller::Error::QueueError(err)) => {
                        warn!(error = %err, "a watch failed");
                    }
                    Err(err) => debug!(error = %err, "reconcile did not complete"),
                    Ok(_) => {}
                }
                futures::future::ready(())
            })
            .await;
        gauges.abort();
        schedule_status.abort();
        access_status.abort();
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
        Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => ledger.seen(obj),
        _ => {}
    }
}

/// The resources a watch event hands to the controller: those the store already holds. kube-runtime's
/// `applied_objects()` also yields each object of a (re)list as it arrives, but the reflector
/// swaps the listed objects into the store only at the end of the list: a reconcile started
/// before then finds nothing in the store, and the request is dropped (`ObjectNotFound`, no
/// retry). A resource deleted and created again while the watch was broken (410 Gone) was so
/// never reconciled, found by the soak test. Listed objects are re-queued by [`listed`] instead,
/// once the store holds them; errors are logged here ([`logged`]).
fn applied_in_store(
    event: Result<watcher::Event<EcsInstancePower>, watcher::Error>,
) -> Option<Result<EcsInstancePower, watcher::Error>> {
    match logged(event, "EcsInstancePower")? {
        Ok(watcher::Event::Apply(obj)) => Some(Ok(obj)),
        _ => None,
    }
}

/// At the end of every (re)list, re-queues every resource the store now holds: the controller's
/// trigger for listed objects (see [`applied_in_store`]). A reconcile of an unchanged resource
/// costs no ECS call (the ledger), so this is as cheap as kube-runtime's own trigger per listed
/// object.
fn listed(
    store: Store<EcsInstancePower>,
    tx: tokio::sync::mpsc::UnboundedSender<ObjectRef<EcsInstancePower>>,
) -> impl FnMut(&Result<watcher::Event<EcsInstancePower>, watcher::Error>) {
    move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            for obj in store.state() {
                let _ = tx.send(reconcile::key_of(&obj));
            }
        }
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
    changed_object(event)
}

/// A watch's item for the controller, its error logged here instead: each watch backs off and
/// relists on its own, and an error never enters the controller's queue. kube-runtime's applier
/// splits its queue into objects and errors over one shared peekable stream; while any watch kept
/// failing (a CRD not installed, a missing RBAC rule), the other triggers (the gateway's
/// re-queues, a new leader's first reconciles) were seen held back until that watch's next backoff
/// wake-up, seconds later. 410 Gone (the watch fell behind etcd's compaction) is routine.
fn logged<K>(result: Result<K, watcher::Error>, what: &str) -> Option<Result<K, watcher::Error>> {
    match result {
        Ok(obj) => Some(Ok(obj)),
        Err(watcher::Error::WatchError(status)) if status.code == 410 => {
            debug!(watch = what, error = %status, "watch expired (410 Gone); relisting");
            None
        }
        Err(error) => {
            warn!(watch = what, error = %error, "a watch failed (retrying with backoff): {}", hint(what));
            None
        }
    }
}

/// What to check when the watch of `what` keeps failing.
fn hint(what: &str) -> &'static str {
    match what {
        "EcsInstancePower" => {
            "is the CRD installed (`ecs-power-operator crd | kubectl apply -f -`), and does RBAC allow \
             list/watch on ecsinstancepowers?"
        }
        "Secret" => "does RBAC allow list/watch on secrets?",
        "Namespace" => "does RBAC allow list/watch on namespaces?",
        _ => {
            "are the CRDs installed (`ecs-power-operator crd | kubectl apply -f -`), and does RBAC \
             allow list/watch on ecspowerschedules and ecspoweraccesspolicies?"
        }
    }
}

/// The last (uid, generation) seen per policy name.
/// kubectl's copy of the whole manifest it last applied, on every object `kubectl apply` wrote.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads before a resource enters the cache: `managedFields` (one
/// entry per writer, kubectl, Argo CD and the operator itself, a few hundred bytes to kilobytes
/// each on a real API server) and kubectl's last-applied annotation (a second copy of the
/// manifest). At 10,000 resources that is megabytes of cache the reconcile never looks at.
fn lean(obj: &mut EcsInstancePower) {
    // `None`, not an emptied list: the list's capacity would stay allocated.
    obj.metadata.managed_fields = None;
    obj.annotations_mut().remove(LAST_APPLIED);
}

type PolicyVersions = std::collections::HashMap<String, (Option<String>, Option<i64>)>;

/// The policy a watch event is about when what it grants may have changed: created, deleted, or
/// a new generation (`seen`: the last generation per name; a status write keeps the generation).
fn changed_policy(
    event: Result<watcher::Event<EcsPowerAccessPolicy>, watcher::Error>,
    seen: &std::sync::Mutex<PolicyVersions>,
) -> Option<Result<EcsPowerAccessPolicy, watcher::Error>> {
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match event {
        Ok(watcher::Event::Delete(policy)) => {
            seen.remove(&policy.name_any());
            Some(Ok(policy))
        }
        Ok(watcher::Event::Apply(policy) | watcher::Event::InitApply(policy)) => {
            let version = (policy.metadata.uid.clone(), policy.metadata.generation);
            (seen.insert(policy.name_any(), version.clone()) != Some(version)).then_some(Ok(policy))
        }
        Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
        Err(error) => Some(Err(error)),
    }
}

/// The object a watch event is about, deletions included; the markers of a relist carry none.
fn changed_object<K>(
    event: Result<watcher::Event<K>, watcher::Error>,
) -> Option<Result<K, watcher::Error>> {
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

/// The other resources naming the instance of a resource just created or deleted: the claim of
/// that instance may have changed hands. (A status write or an edit changes no claim: the
/// instance ID is immutable and creation times never change.)
fn claim_changes(
    event: &Result<watcher::Event<EcsInstancePower>, watcher::Error>,
    access: &access::AccessGuard,
) -> Vec<ObjectRef<EcsInstancePower>> {
    let (obj, deleted) = match event {
        Ok(watcher::Event::Delete(obj)) => (obj, true),
        Ok(watcher::Event::Apply(obj)) if obj.status.is_none() => (obj, false),
        _ => return Vec::new(),
    };
    let me = ObjectRef::from_obj(obj);
    let others: Vec<ObjectRef<EcsInstancePower>> = access
        .claimants(&obj.spec.instance_id)
        .into_iter()
        .filter(|r| *r != me)
        .collect();
    if !others.is_empty() {
        debug!(resource = %me, deleted, others = others.len(), "claim of an instance may have changed; re-queueing");
    }
    others
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_no_managed_fields_and_no_last_applied_copy() {
        let mut obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {
                "name": "web", "namespace": "default",
                "annotations": {LAST_APPLIED: "{\"spec\":{}}", "team": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"instanceId": "i-1", "regionId": "cn-hangzhou"},
        }))
        .unwrap();
        lean(&mut obj);
        assert!(obj.managed_fields().is_empty());
        assert_eq!(
            obj.annotations().keys().collect::<Vec<_>>(),
            ["team"],
            "other annotations stay"
        );
        assert_eq!(obj.spec.instance_id, "i-1");
    }

    fn resource(name: &str) -> EcsInstancePower {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"instanceId": "i-1", "regionId": "cn-hangzhou"},
        }))
        .unwrap()
    }

    /// The soak test's lost resource: deleted and created again while the watch was broken, it
    /// came back in the relist, and the controller was handed it before the store held it.
    #[tokio::test]
    async fn a_relisted_resource_reaches_the_controller_only_once_the_store_holds_it() {
        let (store, writer) = reflector::store::<EcsInstancePower>();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(resource("a"))),
            Ok(watcher::Event::InitApply(resource("b"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(resource("c"))),
            Ok(watcher::Event::Delete(resource("a"))),
            Err(watcher::Error::NoResourceVersion),
        ]);
        let handed = reflector::reflector(writer, events)
            .inspect(listed(store.clone(), tx))
            .filter_map(|event| std::future::ready(applied_in_store(event)));
        futures::pin_mut!(handed);
        let mut objects = Vec::new();
        while let Some(obj) = handed.next().await {
            let obj = obj.unwrap();
            assert!(
                store.get(&ObjectRef::from_obj(&obj)).is_some(),
                "{} handed to the controller before the store held it",
                obj.name_any()
            );
            objects.push(obj.name_any());
        }
        assert_eq!(
            objects,
            ["c"],
            "only a watch's Apply is handed over as an object"
        );
        let mut requeued = Vec::new();
        while let Ok(key) = rx.try_recv() {
            requeued.push(key.name);
        }
        requeued.sort();
        assert_eq!(
            requeued,
            ["a", "b"],
            "the listed resources, re-queued at the list's end"
        );
    }

    fn policy(uid: &str, generation: i64, resource_version: &str) -> EcsPowerAccessPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsPowerAccessPolicy",
            "metadata": {"name": "default", "uid": uid, "generation": generation,
                         "resourceVersion": resource_version},
            "spec": {"rules": []},
        }))
        .unwrap()
    }

    #[test]
    fn only_a_new_generation_a_new_policy_or_a_deletion_re_queues_the_governed_resources() {
        let seen = std::sync::Mutex::new(std::collections::HashMap::new());
        let changed = |event| changed_policy(Ok(event), &seen).is_some();
        assert!(changed(watcher::Event::InitApply(policy("u1", 1, "10"))));
        // Its own status write: a new resourceVersion, the same generation.
        assert!(!changed(watcher::Event::Apply(policy("u1", 1, "11"))));
        assert!(changed(watcher::Event::Apply(policy("u1", 2, "12"))));
        assert!(changed(watcher::Event::Delete(policy("u1", 2, "13"))));
        // Deleted and created again: another object, generation 1 again.
        assert!(changed(watcher::Event::Apply(policy("u2", 1, "14"))));
        assert!(!changed(watcher::Event::InitDone));
    }
}
