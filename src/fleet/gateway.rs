//! The fleet gateway: the one place between the reconciles and the signed ECS client where calls
//! are spent, shared by every resource of the operator.
//!
//! Where it sits: the reconcile's **observe** step asks [`Fleet::observe`] (the observed-state
//! cache, or a read submitted to the read [`Batcher`]); its **act** step submits a write intent
//! ([`Fleet::submit_write`]) to the write batcher; its **collect** step ([`Fleet::collect`]) picks
//! up a finished write. None of them waits for a token or a batch: each returns at once, and the
//! resource is re-queued through the trigger channel (given to kube-runtime's `reconcile_on`)
//! when its read or write finishes or its observation changes. The per-group [`sweep`](Fleet)
//! describes every tracked instance once per resync interval into the same cache.
//!
//! - Groups are (credentials identity, region); batch keys add the account (from STS
//!   `GetCallerIdentity`, looked up once per AccessKey ID, falling back to the AccessKey ID) and,
//!   for writes, the action and the stop options. Every call is paced by the [`AdaptiveLimiter`]
//!   keyed by (account, region, action), shared by all credentials of one account.
//! - Reads are `DescribeInstances` of up to 100 IDs (`MaxResults=100`); writes are
//!   `StartInstances` / `StopInstances` with `SuccessFirst`, each instance's code read by ID.
//! - A throttled call is re-queued whole (the batcher's rule); a write that was sent and may or
//!   may not have been carried out is reported as ambiguous and verified by a read before any
//!   re-send.
//! - An ID missing from a sweep answer is not found only after two consecutive misses; an ID
//!   missing from an urgent read is not found at once.
//! - Everything passes the write gate (see [`Fleet::set_gate`]): a write intent is submitted only
//!   after the reconcile's own admission, a write batch is admitted again when it is sent and
//!   carries that admission's deadline (inside the lease's validity under leader election), and
//!   a closed gate holds read batches and sweep rounds, so a follower makes no ECS call.
//! - Every write entry passes the [`WriteCheck`] (see [`Fleet::set_write_check`]: the instance's
//!   claim and the access policy) again right before its batch is sent: an entry it refuses is
//!   withdrawn (never sent, and its resource is re-queued), so a revoked grant stops the next
//!   write even when it was already queued.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, UNIX_EPOCH};

use futures::future::BoxFuture;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::EcsInstancePower;
use crate::compact::Compact;
use crate::controller::decide::{SETTLE, WriteCall};
use crate::controller::gate::{Admission, WriteGate};
use crate::ecs::{
    BatchOutcome, CallOptions, CallerIdentity, Credentials, EcsClient, EcsError, ErrorClass,
    InstanceObservation, InstanceResult, InstanceStatus, StopOptions, WriteOutcome, classify,
};
use crate::metrics::Metrics;

use super::batcher::{
    Answer, BatchKey, BatchObserver, BatchWindows, Batcher, BatcherOptions, Flush, IntentState,
    Outcome,
};
use super::limiter::{AdaptiveLimiter, Lane, LimiterConfig, Permit, WallClock};
use super::limits::{EcsAction, RateLimits};

/// A resource, as the trigger channel names it.
pub type ResourceRef = ObjectRef<EcsInstancePower>;

/// The batch calls the gateway makes, behind a trait so that the gateway (and the reconcile over
/// it) runs against a fake in tests. [`EcsClient`] is the production implementation.
pub trait FleetEcs: Send + Sync {
    /// `DescribeInstances` for up to 100 IDs of one region, `MaxResults=100`.
    fn describe_instances<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_ids: &'a [&'a str],
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<Vec<InstanceObservation>, EcsError>>;

    /// `StartInstances`, `SuccessFirst`.
    fn start_instances<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_ids: &'a [&'a str],
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<BatchOutcome, EcsError>>;

    /// `StopInstances`, `SuccessFirst`.
    fn stop_instances<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_ids: &'a [&'a str],
        stop: &'a StopOptions,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<BatchOutcome, EcsError>>;

    /// STS `GetCallerIdentity`.
    fn caller_identity<'a>(
        &'a self,
        creds: &'a Credentials,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<CallerIdentity, EcsError>>;
}

impl FleetEcs for EcsClient {
    fn describe_instances<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_ids: &'a [&'a str],
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<Vec<InstanceObservation>, EcsError>> {
        Box::pin(self.describe_instances_with(creds, region_id, instance_ids, options))
    }

    fn start_instances<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_ids: &'a [&'a str],
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<BatchOutcome, EcsError>> {
        Box::pin(EcsClient::start_instances(
            self,
            creds,
            region_id,
            instance_ids,
            options,
        ))
    }

    fn stop_instances<'a>(
        &'a self,
        creds: &'a Credentials,
        region_id: &'a str,
        instance_ids: &'a [&'a str],
        stop: &'a StopOptions,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<BatchOutcome, EcsError>> {
        Box::pin(EcsClient::stop_instances(
            self,
            creds,
            region_id,
            instance_ids,
            stop,
            options,
        ))
    }

    fn caller_identity<'a>(
        &'a self,
        creds: &'a Credentials,
        options: &'a CallOptions,
    ) -> BoxFuture<'a, Result<CallerIdentity, EcsError>> {
        Box::pin(self.caller_identity_with(creds, options))
    }
}

/// The last check of a write entry, right before its batch is sent: whether `resource` may still
/// make `call`. An entry can wait in its batch for minutes (a throttled action is held to the next
/// minute), and the reconcile that would cancel it may never get that far (its Secret gone, the
/// API server unreachable), so the check looks at the resource as it is now: it still exists, is
/// not suspended, its spec is still the `generation` the write was decided for, it still owns
/// its instance and the access policy still grants the call (`tags` are the instance's tags from
/// the observation the write was decided on).
pub trait WriteCheck: Send + Sync {
    /// Whether the entry may be sent.
    fn admits(
        &self,
        resource: &ResourceRef,
        generation: Option<i64>,
        call: WriteCall,
        tags: Option<&BTreeMap<String, String>>,
    ) -> bool;
}

/// Who signs and where: calls of one group may share a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    /// The credentials identity: for a Secret's credentials the AccessKey ID and a hash of the
    /// whole set (never logged), or [`Group::OPERATOR`] for the operator's own (whose keys rotate
    /// under RRSA).
    pub identity: String,
    /// The region.
    pub region: String,
}

impl Group {
    /// The identity of the operator's own credentials.
    pub const OPERATOR: &'static str = "operator";
}

/// The key of one adaptive limiter: every call of one account, region and action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimiterKey {
    /// The account ID (or the AccessKey ID when STS could not say).
    pub account: Arc<str>,
    /// The region (empty for STS).
    pub region: String,
    /// The action.
    pub action: EcsAction,
}

/// The batch key of reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    account: Arc<str>,
    group: Group,
    max_items: usize,
}

impl BatchKey for ReadKey {
    type LimiterKey = LimiterKey;

    fn limiter_key(&self) -> LimiterKey {
        LimiterKey {
            account: self.account.clone(),
            region: self.group.region.clone(),
            action: EcsAction::DescribeInstances,
        }
    }

    fn windows(&self) -> BatchWindows {
        BatchWindows {
            max_items: self.max_items,
            ..BatchWindows::READS
        }
    }
}

/// The batch key of writes: one action and one set of stop options per call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteKey {
    account: Arc<str>,
    group: Group,
    call: WriteCall,
    stop: StopOptions,
    max_items: usize,
}

impl WriteKey {
    fn action(&self) -> EcsAction {
        match self.call {
            WriteCall::Start => EcsAction::StartInstances,
            WriteCall::Stop => EcsAction::StopInstances,
        }
    }
}

impl BatchKey for WriteKey {
    type LimiterKey = LimiterKey;

    fn limiter_key(&self) -> LimiterKey {
        LimiterKey {
            account: self.account.clone(),
            region: self.group.region.clone(),
            action: self.action(),
        }
    }

    /// The batcher's write windows (250 ms idle, 1 s at most), so a lone write (a user's change,
    /// a handover) goes out within a quarter of a second. A fleet changed at once still fills its
    /// calls: its writes queue behind the rate limiter, and a batch is sealed only when its token
    /// comes (late binding).
    fn windows(&self) -> BatchWindows {
        BatchWindows {
            max_items: self.max_items,
            ..BatchWindows::WRITES
        }
    }
}

/// A read intent: one instance of one group (one read in flight per instance).
pub type ReadId = (Group, String);

#[derive(Clone)]
struct ReadItem {
    creds: Credentials,
    sweep: bool,
}

/// A write intent: one write of one generation of one resource (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteId {
    /// The resource's `metadata.uid`.
    pub uid: String,
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
    /// Start or stop.
    pub call: WriteCall,
}

#[derive(Clone)]
struct WriteItem {
    instance_id: String,
    creds: Credentials,
    /// The resource (for the write check).
    resource: ResourceRef,
    /// The instance's tags as observed when the write was decided.
    tags: Option<BTreeMap<String, String>>,
}

/// One write entry's answer, by its id.
type WriteAnswer = (WriteId, WriteResult);

/// What a write call said about one intent.
#[derive(Debug, Clone)]
pub struct WriteResult {
    /// The instance's result, or the batch-level error of the call.
    pub result: Result<InstanceResult, EcsError>,
    /// The call's `RequestId`.
    pub request_id: Option<String>,
}

/// How fresh an observation a reconcile needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A read sent after `after` (a new resource, a new generation, a transition check).
    Fresh {
        /// The read must have been sent at or after this instant.
        after: Instant,
        /// The lane the read waits in.
        lane: Lane,
    },
    /// Anything the cache holds that is at most `max_age` old (steady state: the sweep keeps it
    /// that fresh); otherwise a background read.
    Cached {
        /// The oldest acceptable observation.
        max_age: Duration,
    },
}

/// A read's result as the cache keeps it.
pub type Read = Result<Option<InstanceObservation>, EcsError>;

/// What [`Fleet::observe`] found.
#[derive(Debug, Clone)]
pub enum Observed {
    /// The observation (or the read's error).
    Ready(Read),
    /// A read is on its way; the resource is re-queued when it is done.
    Pending,
}

/// A finished write, as the collect step reports it.
#[derive(Debug, Clone)]
pub struct FinishedWrite {
    /// The write.
    pub call: WriteCall,
    /// The observation the write was decided on.
    pub observed: Option<InstanceObservation>,
    /// Accepted (`Ok`), refused or failed (`Err`, with the per-instance code as an API error).
    pub result: Result<WriteOutcome, EcsError>,
    /// The instance may or may not have been acted on: verify by a read before any re-send.
    pub ambiguous: bool,
    /// When the call was last sent (tokio clock), or submitted if it never was; the read that
    /// verifies an ambiguous answer must be taken at least the settle time later. Not the
    /// submission time: an entry can wait a minute for its batch (a throttled action is held to
    /// the next minute), and a read taken after the submission but before the send proves
    /// nothing about the call.
    pub sent: Instant,
}

/// What the collect step does.
#[derive(Debug, Clone)]
pub enum Collected {
    /// No write of this resource is pending: observe and decide.
    Nothing,
    /// A write is queued or in flight for this resource: wait (re-queued when it finishes).
    Wait,
    /// A write finished: report it.
    Finished(Box<FinishedWrite>),
}

/// A write to submit.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The resource (re-queued when the write finishes).
    pub resource: ResourceRef,
    /// The intent.
    pub id: WriteId,
    /// Who signs and where.
    pub group: Group,
    /// The credentials.
    pub creds: Credentials,
    /// The instance.
    pub instance_id: String,
    /// `StopInstances`' options (ignored for starts).
    pub stop: StopOptions,
    /// The observation the write was decided on.
    pub observed: Option<InstanceObservation>,
    /// User for new resources and spec changes, Background for drift corrections.
    pub lane: Lane,
}

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The ceilings per action.
    pub limits: RateLimits,
    /// IDs per batch call (1..=100; 1 turns batching off).
    pub batch_size: usize,
    /// The sweep interval (`--resync-interval`).
    pub resync: Duration,
    /// How the limiters adapt.
    pub limiter: LimiterConfig,
    /// The wall clock of the minute holds.
    pub clock: WallClock,
    /// Bound on each ECS call (all its pages).
    pub call_timeout: Duration,
    /// Bound on an account lookup before falling back to the AccessKey ID.
    pub lookup_timeout: Duration,
}

impl FleetConfig {
    /// The production settings for these limits, batch size and resync interval.
    pub fn new(limits: RateLimits, batch_size: usize, resync: Duration) -> Self {
        FleetConfig {
            limits,
            batch_size: batch_size.clamp(1, crate::ecs::batch::MAX_IDS_PER_BATCH),
            resync,
            limiter: LimiterConfig::default(),
            clock: WallClock::system(),
            call_timeout: Duration::from_secs(30),
            lookup_timeout: Duration::from_secs(5),
        }
    }
}

struct Entry {
    read: Read,
    /// When the read that produced it was sent.
    at: Instant,
    /// Consecutive sweep answers without the instance.
    misses: u8,
    /// The last write call sent for the instance that may have been carried out.
    wrote: Option<Wrote>,
    /// What the newest successful read showed, kept through failed reads after it.
    seen: Option<Seen>,
}

/// What a successful read showed, for the last check of a queued write: a failed read after a
/// read that showed a lock must not make the lock forgotten.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When the read was sent.
    at: Instant,
    /// The instance had a lock.
    locked: bool,
    /// The write call the instance was already at, or heading for (`Running` or `Starting`: a
    /// start; `Stopped` or `Stopping`: a stop).
    there: Option<WriteCall>,
}

impl Seen {
    fn of(read: &Read, at: Instant) -> Option<Seen> {
        let Ok(found) = read else {
            return None;
        };
        Some(Seen {
            at,
            locked: found.as_ref().is_some_and(|o| !o.lock_reasons.is_empty()),
            there: found.as_ref().and_then(|o| match o.status {
                InstanceStatus::Running | InstanceStatus::Starting => Some(WriteCall::Start),
                InstanceStatus::Stopped | InstanceStatus::Stopping => Some(WriteCall::Stop),
                _ => None,
            }),
        })
    }
}

/// A write call that may have been carried out, as the cache entry of its instance keeps it.
#[derive(Debug, Clone, Copy)]
struct Wrote {
    /// When it was sent.
    sent: Instant,
    /// ECS's answer did not say whether it was carried out.
    unknown: bool,
}

impl Entry {
    /// Whether this read may stand for the instance: sent at or after `after`, never before the
    /// last write call sent for the instance that may have been carried out, and for a `cached`
    /// need (any recent read would do) not less than [`SETTLE`] after it. Whatever a resource
    /// asks for, a read that cannot have seen its own write is never handed out as if it had:
    /// the status that remembers the write can be lost, a delayed answer can land after the
    /// write, and a wait that began earlier can lower `after`.
    fn serves(&self, after: Instant, cached: bool) -> bool {
        self.at >= after && self.floor(cached).is_none_or(|floor| self.at >= floor)
    }

    /// The earliest send time of a read that may stand for the instance after its last write.
    fn floor(&self, cached: bool) -> Option<Instant> {
        self.wrote
            .map(|w| if cached { w.sent + SETTLE } else { w.sent })
    }

    /// How far an earlier wait may lower a fresh need's `after`: not below the settle time of a
    /// write whose outcome is unknown (a reconcile that began after it settled verifies it, and
    /// takes no read sent before then).
    fn lowest(&self) -> Option<Instant> {
        self.wrote.filter(|w| w.unknown).map(|w| w.sent + SETTLE)
    }
}

struct GroupState {
    /// The credentials to sign the group's sweep with: the latest a resource of the group was
    /// reconciled with. One set per group, not per instance: a Secret's group identity hashes the
    /// whole set (every resource of the group has the same), and the operator's own keys rotate
    /// for all of its resources at once.
    creds: Credentials,
    /// Tracked instances and the resources that use them (almost always one: a list with room
    /// for exactly one, not a hash set per instance).
    ids: HashMap<String, Vec<ResourceRef>>,
    sweeping: bool,
}

enum Account {
    Looking(HashSet<ResourceRef>),
    Known(Arc<str>),
}

struct PendingWrite {
    id: WriteId,
    resource: ResourceRef,
    observed: Option<InstanceObservation>,
    submitted: Instant,
    /// When its batch was last handed to ECS (a throttled batch is sent again).
    sent: Option<Instant>,
}

impl State {
    /// Shrinks the maps of work in progress (writes, waits, wakes) once a burst has drained; the
    /// per-instance cache and tracking keep their size.
    fn compact(&mut self) {
        self.waiting.compact();
        self.awaiting.compact();
        self.writes.compact();
        self.ambiguous.compact();
        self.news.compact();
        self.withdrawn.compact();
        self.deferred.compact();
    }
}

#[derive(Default)]
struct State {
    cache: HashMap<ReadId, Entry>,
    groups: HashMap<Group, GroupState>,
    /// What each resource is tracked as.
    tracked: HashMap<ResourceRef, ReadId>,
    /// Resources waiting for a read of an instance (almost always one: a list, not a hash set).
    waiting: HashMap<ReadId, Vec<ResourceRef>>,
    /// Since when a waiting resource has needed its read (so that the reconcile re-queued by the
    /// read's completion accepts it).
    awaiting: HashMap<ResourceRef, Instant>,
    /// Pending writes by resource uid.
    writes: HashMap<String, PendingWrite>,
    /// Resources whose last write was ambiguous (for the verified re-send count).
    ambiguous: HashSet<String>,
    accounts: HashMap<String, Account>,
    /// Resources re-queued by the gateway and not yet reconciled.
    news: HashSet<ResourceRef>,
    /// Write entries the write check withdrew before their batch was sent (never sent).
    withdrawn: HashSet<WriteId>,
    /// Resources to be woken when a read may be sent for them (after their write settled).
    deferred: HashSet<ResourceRef>,
}

/// The fleet gateway; see the module documentation.
pub struct Fleet {
    ecs: Arc<dyn FleetEcs>,
    config: FleetConfig,
    limiter: AdaptiveLimiter<LimiterKey>,
    reads: Batcher<ReadKey, ReadId, ReadItem, ()>,
    writes: Batcher<WriteKey, WriteId, WriteItem, WriteResult>,
    metrics: Arc<Metrics>,
    trigger: mpsc::UnboundedSender<ResourceRef>,
    state: Mutex<State>,
    fallback_logged: AtomicBool,
    shutdown: CancellationToken,
    /// The write gate: a sweep round, a read batch and a write batch are sent only while it lets
    /// this replica call ECS (a follower makes no ECS call at all).
    gate: Mutex<Arc<WriteGate>>,
    /// The last check of every write entry (none: every entry is sent).
    check: Mutex<Option<Arc<dyn WriteCheck>>>,
}

struct Observer {
    metrics: Arc<Metrics>,
    action: &'static str,
}

impl<K> BatchObserver<K> for Observer {
    fn flushed(&self, _key: &K, flush: &Flush) {
        self.metrics
            .fleet
            .flushed(self.action, flush.reason.as_str(), flush.size, flush.waited);
    }
}

impl Fleet {
    /// A gateway over `ecs`. `trigger` re-queues a resource (its receiver goes to the
    /// controller's `reconcile_on`). Needs a tokio runtime.
    pub fn new(
        ecs: Arc<dyn FleetEcs>,
        config: FleetConfig,
        metrics: Arc<Metrics>,
        trigger: mpsc::UnboundedSender<ResourceRef>,
    ) -> Arc<Fleet> {
        let limits = config.limits.clone();
        let limiter =
            AdaptiveLimiter::with_clock(config.limiter, config.clock, move |k: &LimiterKey| {
                limits.ceiling(k.action)
            });
        Arc::new_cyclic(|weak: &Weak<Fleet>| {
            let (r, w) = (weak.clone(), weak.clone());
            let reads = Batcher::new(
                limiter.clone(),
                move |key, items| {
                    let fleet = r.upgrade();
                    async move {
                        match fleet {
                            Some(fleet) => fleet.send_reads(key, items).await,
                            None => Answer::Results(Vec::new()),
                        }
                    }
                },
                BatcherOptions {
                    // Reads land in the cache; their tickets are not kept.
                    outcome_ttl: Duration::ZERO,
                    observer: Some(Arc::new(Observer {
                        metrics: metrics.clone(),
                        action: EcsAction::DescribeInstances.as_str(),
                    })),
                },
            );
            let writes = Batcher::new(
                limiter.clone(),
                move |key, items| {
                    let fleet = w.upgrade();
                    async move {
                        match fleet {
                            Some(fleet) => fleet.send_writes(key, items).await,
                            None => Answer::Results(Vec::new()),
                        }
                    }
                },
                BatcherOptions {
                    outcome_ttl: Duration::from_secs(30 * 60),
                    observer: Some(Arc::new(Observer {
                        metrics: metrics.clone(),
                        action: "write",
                    })),
                },
            );
            Fleet {
                ecs,
                config,
                limiter,
                reads,
                writes,
                metrics,
                trigger,
                state: Mutex::new(State::default()),
                fallback_logged: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                gate: Mutex::new(Arc::new(WriteGate::default())),
                check: Mutex::new(None),
            }
        })
    }

    /// The shared limiter (for the single calls, which take a permit of their own).
    pub fn limiter(&self) -> &AdaptiveLimiter<LimiterKey> {
        &self.limiter
    }

    /// Whether writes are batched (`--ecs-batch-size` above 1). With a batch size of 1 every write
    /// is the single `StartInstance` / `StopInstance`, paced by the same limiters.
    pub fn batches_writes(&self) -> bool {
        self.config.batch_size > 1
    }

    /// The sweep interval.
    pub fn resync(&self) -> Duration {
        self.config.resync
    }

    /// Puts the gateway behind `gate` (open by default; leader election gives a leased one).
    pub fn set_gate(&self, gate: Arc<WriteGate>) {
        *self.gate.lock().unwrap_or_else(PoisonError::into_inner) = gate;
    }

    /// Checks every write entry right before its batch is sent (the claim and access policy).
    pub fn set_write_check(&self, check: Arc<dyn WriteCheck>) {
        *self.check.lock().unwrap_or_else(PoisonError::into_inner) = Some(check);
    }

    fn write_check(&self) -> Option<Arc<dyn WriteCheck>> {
        self.check
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn gate(&self) -> Arc<WriteGate> {
        self.gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the sweeps.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes `resource` at `at` (once, however often it asks meanwhile).
    fn defer(self: &Arc<Self>, state: &mut State, resource: &ResourceRef, at: Instant) {
        if !state.deferred.insert(resource.clone()) {
            return;
        }
        let (fleet, resource) = (Arc::downgrade(self), resource.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(fleet) = fleet.upgrade()
                && fleet.lock().deferred.remove(&resource)
            {
                fleet.wake(resource);
            }
        });
    }

    fn wake(&self, resource: ResourceRef) {
        self.lock().news.insert(resource.clone());
        // A closed channel means the controller has stopped: nothing left to wake.
        let _ = self.trigger.send(resource);
    }

    /// Whether the gateway re-queued `resource` since it last asked (a read or write finished, its
    /// observation changed, its account became known): then the reconcile looks even when its
    /// next observation is not due.
    pub fn take_news(&self, resource: &ResourceRef) -> bool {
        self.lock().news.remove(resource)
    }

    /// The account of `creds`, if known; otherwise starts its lookup (once per AccessKey ID) and
    /// re-queues `resource` when it is known. Never fails: when STS cannot say, the AccessKey ID
    /// stands for the account.
    pub fn account(
        self: &Arc<Self>,
        creds: &Credentials,
        resource: &ResourceRef,
    ) -> Option<Arc<str>> {
        let mut state = self.lock();
        match state.accounts.get_mut(&creds.access_key_id) {
            Some(Account::Known(account)) => return Some(account.clone()),
            Some(Account::Looking(waiting)) => {
                waiting.insert(resource.clone());
                return None;
            }
            None => {}
        }
        state.accounts.insert(
            creds.access_key_id.clone(),
            Account::Looking(HashSet::from([resource.clone()])),
        );
        drop(state);
        tokio::spawn(Arc::clone(self).look_up(creds.clone()));
        None
    }

    async fn look_up(self: Arc<Self>, creds: Credentials) {
        let key = LimiterKey {
            account: Arc::from(format!("key:{}", creds.access_key_id)),
            region: String::new(),
            action: EcsAction::GetCallerIdentity,
        };
        let lookup = async {
            let permit = self.limiter.acquire(key, Lane::User).await;
            let options = CallOptions::with_timeout(self.config.lookup_timeout);
            let answer = self.ecs.caller_identity(&creds, &options).await;
            report_permit(permit, answer.as_ref().err());
            answer
        };
        let answer = tokio::time::timeout(self.config.lookup_timeout * 2, lookup).await;
        let account: Arc<str> = match answer {
            Ok(Ok(identity)) => {
                debug!(account = %short_hash(&identity.account_id), "account of a credential looked up");
                Arc::from(identity.account_id)
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in time".to_string(),
                };
                if self.fallback_logged.swap(true, Ordering::Relaxed) {
                    debug!(error = %why, "STS GetCallerIdentity failed; keyed by AccessKey ID");
                } else {
                    warn!(
                        error = %why,
                        "STS GetCallerIdentity failed: ECS rate limits are kept per AccessKey ID instead of per \
                         account (credentials of one account no longer share a limiter); logged once"
                    );
                }
                Arc::from(format!("key:{}", creds.access_key_id))
            }
        };
        let waiting = {
            let mut state = self.lock();
            match state
                .accounts
                .insert(creds.access_key_id.clone(), Account::Known(account))
            {
                Some(Account::Looking(waiting)) => waiting,
                _ => HashSet::new(),
            }
        };
        for resource in waiting {
            self.wake(resource);
        }
    }

    /// **observe** through the cache: the observation when one fresh enough is held, else a read
    /// submitted (one per instance in flight) and [`Observed::Pending`]. Tracks the instance for
    /// the sweep.
    pub fn observe(
        self: &Arc<Self>,
        resource: &ResourceRef,
        group: &Group,
        creds: &Credentials,
        instance_id: &str,
        need: Need,
    ) -> Observed {
        let id: ReadId = (group.clone(), instance_id.to_string());
        let resource = &bare(resource);
        let now = Instant::now();
        let (after, lane) = {
            let mut state = self.lock();
            self.track(&mut state, resource, &id, creds);
            let cached = matches!(need, Need::Cached { .. });
            let (after, lane) = match need {
                Need::Fresh { after, lane } => {
                    let lowered = state
                        .awaiting
                        .get(resource)
                        .map_or(after, |since| (*since).min(after));
                    let lowest = state.cache.get(&id).and_then(Entry::lowest);
                    let after = lowest.map_or(lowered, |lowest| lowered.max(lowest.min(after)));
                    (after, lane)
                }
                Need::Cached { max_age } => {
                    (now.checked_sub(max_age).unwrap_or(now), Lane::Background)
                }
            };
            if let Some(entry) = state.cache.get(&id) {
                if entry.serves(after, cached) {
                    let read = entry.read.clone();
                    state.awaiting.remove(resource);
                    return Observed::Ready(read);
                }
                if let Some(floor) = entry.floor(cached).filter(|floor| *floor > now) {
                    // (Cached only: a fresh need's floor is a send time, in the past.) No read
                    // sent before the floor will do: none is sent before it either (one would be
                    // answered and asked for again until then). Woken at the floor.
                    self.defer(&mut state, resource, floor);
                    return Observed::Pending;
                }
            }
            state.awaiting.entry(resource.clone()).or_insert(after);
            let waiting = state.waiting.entry(id.clone()).or_default();
            if !waiting.contains(resource) {
                waiting.reserve_exact(1);
                waiting.push(resource.clone());
            }
            (after, lane)
        };
        let Some(account) = self.account(creds, resource) else {
            return Observed::Pending;
        };
        debug!(resource = %resource, ?lane, since = ?now.saturating_duration_since(after), "read submitted");
        let key = ReadKey {
            account,
            group: group.clone(),
            max_items: self.config.batch_size,
        };
        let item = ReadItem {
            creds: creds.clone(),
            sweep: false,
        };
        self.reads.submit(key, lane, id, item);
        Observed::Pending
    }

    fn track(
        self: &Arc<Self>,
        state: &mut State,
        resource: &ResourceRef,
        id: &ReadId,
        creds: &Credentials,
    ) {
        match state.tracked.get(resource) {
            // Every reconcile of every resource passes here: an unchanged entry is kept, not
            // replaced by fresh copies of the same strings (long-lived allocations renewed each
            // resync scatter over the allocator's pages and keep them resident).
            Some(old) if old == id => {}
            Some(old) => {
                let old = old.clone();
                untrack_in(state, resource, &old);
                state.tracked.insert(resource.clone(), id.clone());
            }
            None => {
                state.tracked.insert(resource.clone(), id.clone());
            }
        }
        let group = state
            .groups
            .entry(id.0.clone())
            .or_insert_with(|| GroupState {
                creds: creds.clone(),
                ids: HashMap::new(),
                sweeping: false,
            });
        group.creds = creds.clone();
        let refs = group.ids.entry(id.1.clone()).or_default();
        if !refs.contains(resource) {
            refs.reserve_exact(1);
            refs.push(resource.clone());
        }
        if !group.sweeping {
            group.sweeping = true;
            tokio::spawn(Arc::clone(self).sweep(id.0.clone()));
        }
    }

    /// Stops tracking a deleted resource (its instance leaves the sweep when no other resource
    /// uses it) and drops what the gateway kept for it.
    pub fn untrack(&self, resource: &ResourceRef) {
        let mut state = self.lock();
        if let Some(id) = state.tracked.get(resource).cloned() {
            untrack_in(&mut state, resource, &id);
        }
        state.awaiting.remove(resource);
        state.news.remove(resource);
        state.deferred.remove(resource);
        // A deleted resource's queued write is cancelled; one in flight finishes unreported.
        let gone: Vec<(String, WriteId)> = state
            .writes
            .iter()
            .filter(|(_, p)| &p.resource == resource)
            .map(|(uid, p)| (uid.clone(), p.id.clone()))
            .collect();
        for (uid, id) in gone {
            let _ = self.writes.cancel(&id);
            state.writes.remove(&uid);
            state.ambiguous.remove(&uid);
            state.withdrawn.remove(&id);
        }
        state.compact();
    }

    /// Keeps only the resources `keep` accepts (after a relist).
    pub fn retain(&self, keep: impl Fn(&ResourceRef) -> bool) {
        let gone: Vec<ResourceRef> = {
            let state = self.lock();
            state.tracked.keys().filter(|r| !keep(r)).cloned().collect()
        };
        for resource in gone {
            self.untrack(&resource);
        }
    }

    /// Records one read's result in the cache and re-queues whoever needs to know: resources
    /// waiting for this read, and every resource tracked for the instance when what is observed
    /// changed.
    fn record(&self, id: &ReadId, read: Read, at: Instant, sweep: bool) {
        let wake = self.record_locked(&mut self.lock(), id, read, at, sweep);
        // Woken only once the lock is released (waking takes it again).
        drop_wake(self, wake);
    }

    /// [`Fleet::record`] under the lock: updates the entry and says whom to wake.
    // A method like its neighbours, though it needs only the state it is handed.
    #[allow(clippy::unused_self)]
    fn record_locked(
        &self,
        state: &mut State,
        id: &ReadId,
        read: Read,
        at: Instant,
        sweep: bool,
    ) -> Vec<ResourceRef> {
        let mut wake: Vec<ResourceRef> = state.waiting.remove(id).unwrap_or_default();
        let seen = Seen::of(&read, at);
        if seen.is_some()
            && let Some(entry) = state.cache.get_mut(id)
            && entry.seen.is_none_or(|s| s.at < at)
        {
            entry.seen = seen;
        }
        let previous = state.cache.get(id);
        if previous.is_some_and(|e| at < e.at) {
            // The late answer of a read sent before the one the entry holds (a latency spike):
            // the newer observation stays, and whoever waited looks at it.
            return wake;
        }
        let (read, misses) = match read {
            Ok(None) if sweep => {
                let misses = previous.map_or(1, |e| e.misses.saturating_add(1));
                if misses < 2 && previous.is_some() {
                    // One miss is not enough to call the instance gone: keep what was seen.
                    if let Some(entry) = state.cache.get_mut(id) {
                        entry.misses = misses;
                    }
                    return wake;
                }
                (Ok(None), misses)
            }
            Ok(found) => {
                let misses = u8::from(found.is_none());
                (Ok(found), misses)
            }
            Err(e) => (Err(e), previous.map_or(0, |e| e.misses)),
        };
        let changed = previous.is_none_or(|p| !same_observation(&p.read, &read));
        if changed
            && let Some(group) = state.groups.get(&id.0)
            && let Some(refs) = group.ids.get(&id.1)
        {
            wake.extend(refs.iter().cloned());
        }
        // Updated in place, and an unchanged observation keeps the one already there: the sweep
        // reads every instance every interval, and replacing each entry with a fresh copy of the
        // same answer would only churn the allocator (long-lived entries scattered among
        // short-lived answers keep more memory resident).
        if let Some(entry) = state.cache.get_mut(id) {
            if changed || read.is_err() {
                entry.read = read;
            }
            entry.at = at;
            entry.misses = misses;
        } else {
            let entry = Entry {
                read,
                at,
                misses,
                wrote: None,
                seen,
            };
            state.cache.insert(id.clone(), entry);
        }
        // Every read lands here, a sweep's within an interval: the tables of a burst go with it.
        state.compact();
        wake
    }

    async fn send_reads(&self, key: ReadKey, items: Vec<(ReadId, ReadItem)>) -> Answer<ReadId, ()> {
        let Some((_, first)) = items.first() else {
            return Answer::Results(Vec::new());
        };
        if !self.gate().is_open() {
            // Not leading (any more): no ECS call. Kept queued; a replica that lost its lease
            // exits, one that leads again sends it.
            debug!(ids = items.len(), "read batch held at the write gate");
            return Answer::NotSent;
        }
        let sent_at = Instant::now();
        let ids: Vec<&str> = items.iter().map(|((_, id), _)| id.as_str()).collect();
        if items.iter().all(|(_, item)| item.sweep) {
            self.metrics.fleet.sweep_call();
        }
        let options = CallOptions::with_timeout(self.config.call_timeout);
        let answer = self
            .ecs
            .describe_instances(&first.creds, &key.group.region, &ids, &options)
            .await;
        match answer {
            Err(e) if classify(&e).class == ErrorClass::Throttled => {
                self.metrics.fleet.throttled(
                    EcsAction::DescribeInstances.as_str(),
                    e.code().unwrap_or(""),
                );
                return Answer::Throttled {
                    retry_after: e.retry_after(),
                };
            }
            Err(e) => {
                for (id, item) in &items {
                    self.record(id, Err(e.clone()), sent_at, item.sweep);
                }
            }
            Ok(found) => {
                let mut by_id: HashMap<String, InstanceObservation> = found
                    .into_iter()
                    .map(|o| (o.instance_id.clone(), o))
                    .collect();
                for (id, item) in &items {
                    self.record(id, Ok(by_id.remove(&id.1)), sent_at, item.sweep);
                }
            }
        }
        Answer::Results(items.into_iter().map(|(id, _)| (id, ())).collect())
    }

    async fn send_writes(
        &self,
        key: WriteKey,
        items: Vec<(WriteId, WriteItem)>,
    ) -> Answer<WriteId, WriteResult> {
        let (items, withdrawn) = self.check_entries(&key.group, key.call, items);
        let Some((_, first)) = items.first() else {
            return Answer::Results(withdrawn);
        };
        // Two resources naming one instance share its entry (ECS refuses repeated IDs).
        let mut ids: Vec<&str> = Vec::with_capacity(items.len());
        for (_, item) in &items {
            if !ids.contains(&item.instance_id.as_str()) {
                ids.push(&item.instance_id);
            }
        }
        // Every entry passed the gate when it was submitted; the batch passes it again now it is
        // sent, and the call ends before the lease's validity (the admission's deadline).
        let Some(admission) = self.gate().admit() else {
            for _ in &items {
                self.metrics.fenced("act");
            }
            debug!(
                ids = ids.len(),
                "write batch refused at the write gate; re-queued"
            );
            return Answer::NotSent;
        };
        let options = write_options(self.config.call_timeout, admission);
        let region = &key.group.region;
        let sent = Instant::now();
        let answer = match key.call {
            WriteCall::Start => {
                self.ecs
                    .start_instances(&first.creds, region, &ids, &options)
                    .await
            }
            WriteCall::Stop => {
                self.ecs
                    .stop_instances(&first.creds, region, &ids, &key.stop, &options)
                    .await
            }
        };
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err(e) if classify(&e).class == ErrorClass::Throttled => {
                self.metrics
                    .fleet
                    .throttled(key.action().as_str(), e.code().unwrap_or(""));
                return Answer::Throttled {
                    retry_after: e.retry_after(),
                };
            }
            Err(EcsError::Unreachable {
                request_sent: false,
                ..
            }) => return Answer::NotSent,
            Err(e) => {
                if e.delivery() == crate::ecs::Delivery::Unknown {
                    self.wrote(&key.group, sent, ids.iter().map(|id| (*id, true)));
                }
                let results = items
                    .into_iter()
                    .map(|(id, _)| {
                        let result = WriteResult {
                            result: Err(e.clone()),
                            request_id: e.request_id().map(str::to_string),
                        };
                        (id, result)
                    })
                    .collect();
                return Answer::Results(results);
            }
        };
        self.wrote(
            &key.group,
            sent,
            ids.iter().filter_map(|id| {
                let unknown = match outcome.results.get(*id) {
                    Some(InstanceResult::Accepted { .. }) => false,
                    Some(refused) if !refused.is_ambiguous() => return None,
                    _ => true,
                };
                Some((*id, unknown))
            }),
        );
        let mut results: Vec<(WriteId, WriteResult)> = items
            .into_iter()
            .filter_map(|(id, item)| {
                let result = outcome.results.get(&item.instance_id)?.clone();
                Some((
                    id,
                    WriteResult {
                        result: Ok(result),
                        request_id: outcome.request_id.clone(),
                    },
                ))
            })
            .collect();
        results.extend(withdrawn);
        Answer::Results(results)
    }

    /// Notes in each instance's cache entry a write call sent at `sent` that may have been
    /// carried out (`unknown`: the answer did not say), so that no read from before it, or from
    /// too soon after it, stands for the instance again ([`Entry::serves`]). An instance without
    /// an entry has no read to guard: every later read is sent after the call.
    fn wrote<'a>(
        &self,
        group: &Group,
        sent: Instant,
        landed: impl IntoIterator<Item = (&'a str, bool)>,
    ) {
        let mut state = self.lock();
        for (instance_id, unknown) in landed {
            if let Some(entry) = state
                .cache
                .get_mut(&(group.clone(), instance_id.to_string()))
            {
                entry.wrote = Some(Wrote { sent, unknown });
            }
        }
    }

    /// The last check of every entry of a batch about to be sent: the admitted entries, and an
    /// answer for each withdrawn one (recorded as withdrawn: its resource's collect step finds
    /// nothing, and its reconcile decides again and reports). An entry is withdrawn when the
    /// write check refuses it, or when a read sent after the write was submitted shows the
    /// instance locked or already where the write would take it: an entry can wait minutes for
    /// its batch (a throttled action is held to the next minute), and that read is newer than
    /// the one the write was decided on.
    fn check_entries(
        &self,
        group: &Group,
        call: WriteCall,
        items: Vec<(WriteId, WriteItem)>,
    ) -> (Vec<(WriteId, WriteItem)>, Vec<WriteAnswer>) {
        let check = self.write_check();
        let (admitted, refused): (Vec<_>, Vec<_>) = items.into_iter().partition(|(id, item)| {
            check.as_ref().is_none_or(|check| {
                check.admits(&item.resource, id.generation, call, item.tags.as_ref())
            })
        });
        let mut state = self.lock();
        let (admitted, overtaken): (Vec<_>, Vec<_>) = admitted
            .into_iter()
            .partition(|(id, item)| !overtaken_by_a_read(&state, group, id, &item.instance_id));
        let now = Instant::now();
        for (id, _) in &admitted {
            if let Some(pending) = state.writes.get_mut(&id.uid).filter(|p| p.id == *id) {
                pending.sent = Some(now);
            }
        }
        if refused.is_empty() && overtaken.is_empty() {
            return (admitted, Vec::new());
        }
        let refused = refused.into_iter().chain(overtaken);
        let withdrawn = refused
            .into_iter()
            .map(|(id, item)| {
                debug!(resource = %item.resource, ?call, "write entry withdrawn: no longer allowed");
                state.withdrawn.insert(id.clone());
                let placeholder = WriteResult {
                    result: Ok(InstanceResult::Missing),
                    request_id: None,
                };
                (id, placeholder)
            })
            .collect();
        (admitted, withdrawn)
    }

    /// **collect**: a finished write of this resource (reported now), a write still queued or in
    /// flight (wait), or nothing. A queued write that no longer matches the desired write
    /// (`wanted`: the write the current desired state leads to, for this generation) is
    /// cancelled; an in-flight one is waited for.
    pub fn collect(&self, uid: &str, generation: Option<i64>, wanted: WriteCall) -> Collected {
        let mut state = self.lock();
        let Some(pending) = state.writes.get(uid) else {
            return Collected::Nothing;
        };
        let id = pending.id.clone();
        match self.writes.state(&id) {
            None => {
                state.writes.remove(uid);
                Collected::Nothing
            }
            Some(IntentState::Done(outcome)) => {
                let Some(pending) = state.writes.remove(uid) else {
                    return Collected::Nothing;
                };
                self.writes.forget(&id);
                if state.withdrawn.remove(&id) {
                    // Never sent: the write check refused it (the reconcile checks again).
                    return Collected::Nothing;
                }
                let Some(finished) = finish_write(id.call, pending, outcome) else {
                    return Collected::Nothing;
                };
                if finished.ambiguous {
                    state.ambiguous.insert(uid.to_string());
                    self.metrics.fleet.ambiguous_write();
                } else {
                    state.ambiguous.remove(uid);
                }
                Collected::Finished(Box::new(finished))
            }
            Some(IntentState::Queued) if id.generation == generation && id.call == wanted => {
                Collected::Wait
            }
            Some(IntentState::Queued) => match self.writes.cancel(&id) {
                Ok(()) => {
                    state.writes.remove(uid);
                    self.metrics.fleet.replaced_write();
                    debug!(uid, "queued write replaced: the desired state changed");
                    Collected::Nothing
                }
                Err(_) => Collected::Wait,
            },
            Some(IntentState::InFlight) => Collected::Wait,
        }
    }

    /// **act** through the write batcher: submits the intent (joining it if it exists) and
    /// returns at once; the resource is re-queued when the write finishes. `false` when the
    /// account is still being looked up (the resource is re-queued when it is known).
    pub fn submit_write(self: &Arc<Self>, request: WriteRequest) -> bool {
        let Some(account) = self.account(&request.creds, &request.resource) else {
            return false;
        };
        let uid = request.id.uid.clone();
        {
            let mut state = self.lock();
            if state.ambiguous.remove(&uid) {
                self.metrics.fleet.verified_resend();
            }
            state.writes.insert(
                uid,
                PendingWrite {
                    id: request.id.clone(),
                    resource: bare(&request.resource),
                    observed: request.observed.clone(),
                    submitted: Instant::now(),
                    sent: None,
                },
            );
        }
        let key = WriteKey {
            account,
            group: request.group,
            call: request.id.call,
            stop: match request.id.call {
                WriteCall::Start => StopOptions::default(),
                WriteCall::Stop => request.stop,
            },
            max_items: self.config.batch_size,
        };
        let item = WriteItem {
            instance_id: request.instance_id,
            creds: request.creds,
            tags: request.observed.as_ref().map(|o| o.tags.clone()),
            resource: request.resource.clone(),
        };
        let mut ticket = self.writes.submit(key, request.lane, request.id, item);
        if !ticket.joined() {
            let (fleet, resource) = (Arc::downgrade(self), request.resource);
            tokio::spawn(async move {
                ticket.outcome().await;
                if let Some(fleet) = fleet.upgrade() {
                    fleet.wake(resource);
                }
            });
        }
        true
    }

    /// A permit for one single call (`StartInstance` / `StopInstance`: dry runs and
    /// `initLocalDisk`), in the user lane of the account's limiter for that action. `None` while
    /// the account is looked up.
    pub async fn single_permit(
        self: &Arc<Self>,
        creds: &Credentials,
        resource: &ResourceRef,
        region: &str,
        call: WriteCall,
    ) -> Option<Permit<LimiterKey>> {
        let account = self.account(creds, resource)?;
        let action = match call {
            WriteCall::Start => EcsAction::StartInstance,
            WriteCall::Stop => EcsAction::StopInstance,
        };
        let key = LimiterKey {
            account,
            region: region.to_string(),
            action,
        };
        Some(self.limiter.acquire(key, Lane::User).await)
    }

    /// Publishes the gauges (intents by state, limiter states).
    pub fn publish_gauges(&self) {
        let fleet = &self.metrics.fleet;
        for (kind, counts) in [
            ("read", self.reads.counts()),
            ("write", self.writes.counts()),
        ] {
            fleet.intents(kind, "queued", counts.queued);
            fleet.intents(kind, "in_flight", counts.in_flight);
            fleet.intents(kind, "done", counts.done);
        }
        let clock = self.limiter.clock();
        for (key, state) in self.limiter.snapshot() {
            let blocked = state
                .blocked_until
                .map(|at| clock.wall(at))
                .and_then(|wall| wall.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            fleet.limiter(
                &short_hash(&key.account),
                &key.region,
                key.action.as_str(),
                state.rate,
                state.ceiling,
                blocked,
            );
        }
    }

    /// The sweep of one group: every resync interval (phase jittered once, ±10 %), every tracked ID in
    /// chunks of the batch size, the chunks spread over the interval, in the background lane.
    /// Ends when the group has nothing tracked or the gateway shuts down.
    async fn sweep(self: Arc<Self>, group: Group) {
        let interval = self.config.resync.max(Duration::from_millis(100));
        // The first round one interval (±10 %) after the group's first instance: the reconcile
        // that tracked it has just read it, and groups created together drift apart.
        let phase = interval.mul_f64(rand::random_range(0.9..1.1));
        let mut round = Instant::now() + phase;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(round) => {}
                () = self.shutdown.cancelled() => return,
            }
            let ids: Vec<String> = {
                let mut state = self.lock();
                let Some(tracked) = state.groups.get_mut(&group) else {
                    return;
                };
                if tracked.ids.is_empty() {
                    state.groups.remove(&group);
                    return;
                }
                tracked.ids.keys().cloned().collect()
            };
            let chunks: Vec<&[String]> = ids.chunks(self.config.batch_size).collect();
            let gap =
                interval.mul_f64(0.9) / u32::try_from(chunks.len()).unwrap_or(u32::MAX).max(1);
            for (i, chunk) in chunks.iter().enumerate() {
                if i > 0 {
                    tokio::select! {
                        () = tokio::time::sleep(gap) => {}
                        () = self.shutdown.cancelled() => return,
                    }
                }
                if !self.gate().is_open() {
                    // A follower keeps tracking its instances but reads none of them.
                    continue;
                }
                // Only what is still tracked (a resource may have been deleted since the round
                // began): looked up per chunk, not a copy of the whole group's IDs per chunk.
                let (still, creds): (Vec<&String>, Option<Credentials>) = {
                    let state = self.lock();
                    state.groups.get(&group).map_or_else(
                        || (Vec::new(), None),
                        |g| {
                            let still = chunk.iter().filter(|i| g.ids.contains_key(*i)).collect();
                            (still, Some(g.creds.clone()))
                        },
                    )
                };
                let account = creds.as_ref().and_then(|c| self.known_account(c));
                let mut swept = 0;
                for instance in still {
                    let (Some(account), Some(creds)) = (account.clone(), creds.as_ref()) else {
                        continue;
                    };
                    swept += 1;
                    let key = ReadKey {
                        account,
                        group: group.clone(),
                        max_items: self.config.batch_size,
                    };
                    let item = ReadItem {
                        creds: creds.clone(),
                        sweep: true,
                    };
                    self.reads.submit(
                        key,
                        Lane::Background,
                        (group.clone(), instance.clone()),
                        item,
                    );
                }
                self.metrics.fleet.swept(swept);
            }
            round += interval;
            if round < Instant::now() {
                round = Instant::now();
            }
            debug!(region = %group.region, ids = ids.len(), "sweep round submitted");
        }
    }

    fn known_account(&self, creds: &Credentials) -> Option<Arc<str>> {
        match self.lock().accounts.get(&creds.access_key_id) {
            Some(Account::Known(account)) => Some(account.clone()),
            _ => None,
        }
    }

    /// Logs the configuration once at start.
    pub fn log_config(&self) {
        info!(
            batch_size = self.config.batch_size,
            rate_limits = %self.config.limits,
            "fleet gateway: ECS calls batched and paced per account, region and action"
        );
    }
}

/// The options of a batch write admitted by the gate: the gateway's call timeout, cut to the
/// admission's deadline (inside the lease's validity under leader election).
fn write_options(call_timeout: Duration, admission: Admission) -> CallOptions {
    let timeout = CallOptions::with_timeout(call_timeout);
    match (timeout.deadline, admission.deadline) {
        (Some(own), Some(lease)) => CallOptions::with_deadline(own.min(lease)),
        (own, None) => CallOptions { deadline: own },
        (None, lease) => CallOptions { deadline: lease },
    }
}

fn drop_wake(fleet: &Fleet, wake: Vec<ResourceRef>) {
    let unique: HashSet<ResourceRef> = wake.into_iter().collect();
    for resource in unique {
        fleet.wake(resource);
    }
}

/// `resource` without its `extra` (`resourceVersion` and uid, which its equality and hash ignore
/// and the gateway never reads): the form the gateway keeps, two allocations fewer per copy.
fn bare(resource: &ResourceRef) -> ResourceRef {
    resource_key(&resource.name, resource.namespace.as_deref())
}

/// The key of the resource `name` in `namespace`, with no `extra`: the form kept for as long as a
/// resource lives (the gateway's maps, the controller's ledger).
pub fn resource_key(name: &str, namespace: Option<&str>) -> ResourceRef {
    let key = ResourceRef::new(name);
    match namespace {
        Some(namespace) => key.within(namespace),
        None => key,
    }
}

/// Whether a read sent after the write `id` was submitted shows its instance locked, or already
/// where the write would take it (running or starting for a start, stopped or stopping for a
/// stop).
fn overtaken_by_a_read(state: &State, group: &Group, id: &WriteId, instance_id: &str) -> bool {
    let Some(pending) = state.writes.get(&id.uid).filter(|p| p.id == *id) else {
        return false;
    };
    // The newest successful read: a failed one after it says nothing.
    let Some(seen) = state
        .cache
        .get(&(group.clone(), instance_id.to_string()))
        .and_then(|e| e.seen)
        .filter(|s| s.at > pending.submitted)
    else {
        return false;
    };
    seen.locked || seen.there == Some(id.call)
}

fn untrack_in(state: &mut State, resource: &ResourceRef, id: &ReadId) {
    state.tracked.remove(resource);
    if let Some(group) = state.groups.get_mut(&id.0)
        && let Some(refs) = group.ids.get_mut(&id.1)
    {
        refs.retain(|r| r != resource);
        if refs.is_empty() {
            group.ids.remove(&id.1);
            state.cache.remove(id);
        }
    }
    if let Some(waiting) = state.waiting.get_mut(id) {
        waiting.retain(|r| r != resource);
    }
}

/// Whether two reads say the same thing (status, locks, found or not; errors by code).
fn same_observation(a: &Read, b: &Read) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.code() == b.code() && a.delivery() == b.delivery(),
        _ => false,
    }
}

fn report_permit(permit: Permit<LimiterKey>, error: Option<&EcsError>) {
    match error {
        Some(e) if classify(e).class == ErrorClass::Throttled => permit.throttled(e.retry_after()),
        Some(EcsError::Unreachable {
            request_sent: false,
            ..
        }) => drop(permit),
        _ => permit.succeeded(),
    }
}

impl Fleet {
    /// Reports a single call's answer to its permit (throttled, nothing sent, or answered) and
    /// counts a throttled one.
    pub fn report_single(
        &self,
        permit: Permit<LimiterKey>,
        result: &Result<WriteOutcome, EcsError>,
    ) {
        if let Err(e) = result
            && classify(e).class == ErrorClass::Throttled
        {
            self.metrics
                .fleet
                .throttled(permit.key().action.as_str(), e.code().unwrap_or(""));
        }
        report_permit(permit, result.as_ref().err());
    }
}

/// The write's outcome in the reconcile's terms; `None` for a replaced intent (never sent).
fn finish_write(
    call: WriteCall,
    pending: PendingWrite,
    outcome: Outcome<WriteResult>,
) -> Option<FinishedWrite> {
    let missing = || EcsError::Malformed {
        http_status: 200,
        detail: format!(
            "the {} answer does not mention the instance",
            batch_action(call)
        ),
    };
    let (result, ambiguous) = match outcome {
        Outcome::Replaced => return None,
        Outcome::Missing => (Err(missing()), true),
        Outcome::Answered(WriteResult { result, request_id }) => match result {
            Ok(InstanceResult::Accepted { .. }) => (
                Ok(WriteOutcome {
                    request_id,
                    dry_run: false,
                }),
                false,
            ),
            Ok(instance @ InstanceResult::Refused { .. }) => {
                let ambiguous = instance.is_ambiguous();
                let InstanceResult::Refused { code, message, .. } = instance else {
                    return None;
                };
                (
                    Err(EcsError::Api {
                        code,
                        message,
                        // The HTTP status of the answer that carried the per-instance code.
                        http_status: 200,
                        request_id,
                        retry_after: None,
                    }),
                    ambiguous,
                )
            }
            Ok(InstanceResult::Missing) => (Err(missing()), true),
            Err(e) => {
                let ambiguous = e.delivery() == crate::ecs::Delivery::Unknown;
                (Err(e), ambiguous)
            }
        },
    };
    Some(FinishedWrite {
        call,
        observed: pending.observed,
        result,
        ambiguous,
        sent: pending.sent.unwrap_or(pending.submitted),
    })
}

fn batch_action(call: WriteCall) -> &'static str {
    match call {
        WriteCall::Start => EcsAction::StartInstances.as_str(),
        WriteCall::Stop => EcsAction::StopInstances.as_str(),
    }
}

/// A short hash of a whole set of credentials, to tell apart two sets with one AccessKey ID (never
/// logged; it only separates batch groups).
pub fn credentials_hash(creds: &Credentials) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    creds.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A short, stable hash of an account ID for metric labels (the ID itself is not exposed).
pub fn short_hash(account: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    account.hash(&mut hasher);
    format!("{:08x}", hasher.finish() & 0xffff_ffff)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
mod tests;
