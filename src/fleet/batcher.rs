//! The coalescing batcher: items submitted under a batch key go out together, up to `max_items`
//! per call, through the [`AdaptiveLimiter`].
//!
//! - **Submit returns at once** with a [`Ticket`]; nothing is held while the item waits. The
//!   submitter may await the outcome with a bound and come back later ([`Batcher::ticket`]).
//! - **Idempotent intents**: every item carries an intent id. Re-submitting an id that is queued,
//!   in flight or done joins it (no duplicate item, no second call); a done outcome is kept until
//!   [`Batcher::forget`] or `outcome_ttl`.
//! - **Windows**: a key asks for a token when it holds `max_items`, when no item came for `idle`,
//!   or when its oldest item has waited `max_wait` (per key kind: reads and writes differ).
//! - **Late binding**: the batch is sealed only when the limiter grants the token, so while tokens
//!   are scarce every call carries `max_items` whatever the timers say.
//! - **Lanes**: a key asks for its token in the best lane among its items, and asks again if a
//!   better-lane item arrives while it waits (the limiter's wait is cancel-safe).
//! - **Results by id**: the caller's send function answers `(id, result)` pairs; each ticket gets
//!   its own, never by position. A requested id missing from the answer is [`Outcome::Missing`];
//!   an id that was not requested is ignored and counted.
//! - **Throttled or not sent**: the batch is re-queued whole at the front of its key and goes out
//!   again with a later token; waiting for the limiter is never an error.
//! - **Replacement**: a queued intent can be cancelled or replaced; once sealed into a batch (in
//!   flight, or re-queued after a throttled answer) it cannot, and its outcome must be awaited.
//!
//! Generic over the key, id, item and result types: the ECS gateway supplies the send function.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::limiter::{AdaptiveLimiter, Lane, Permit};
use crate::compact::Compact;

/// A batch key: items with equal keys may share a call. It names the limiter key its calls spend
/// and the windows of its kind.
pub trait BatchKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// The limiter key (e.g. account, region and action) the batch's call is paced by.
    type LimiterKey: Hash + Eq + Clone + Send + Sync + 'static;

    /// The limiter key of this batch key.
    fn limiter_key(&self) -> Self::LimiterKey;

    /// The windows of this key's kind.
    fn windows(&self) -> BatchWindows;
}

/// How a key gathers items before it asks for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWindows {
    /// Most items per call.
    pub max_items: usize,
    /// Ask for a token when no item came for this long.
    pub idle: Duration,
    /// Ask for a token when the oldest item has waited this long.
    pub max_wait: Duration,
}

impl BatchWindows {
    /// Reads (an urgent `DescribeInstances`): 100 IDs, 100 ms idle, 500 ms at most.
    pub const READS: BatchWindows = BatchWindows {
        max_items: 100,
        idle: Duration::from_millis(100),
        max_wait: Duration::from_millis(500),
    };

    /// Writes (`StartInstances` / `StopInstances`): 100 IDs, 250 ms idle, 1 s at most.
    pub const WRITES: BatchWindows = BatchWindows {
        max_items: 100,
        idle: Duration::from_millis(250),
        max_wait: Duration::from_secs(1),
    };
}

/// What the send function answers for one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<I, R> {
    /// Per-item results, matched to the items by id.
    Results(Vec<(I, R)>),
    /// The whole call was throttled: re-queued whole, the limiter slows down.
    Throttled {
        /// The server's retry-after hint.
        retry_after: Option<Duration>,
    },
    /// Nothing was sent (e.g. connection refused): re-queued whole, retried through the limiter.
    NotSent,
}

/// The final outcome of one intent.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<R> {
    /// The call answered for this intent.
    Answered(R),
    /// The call was answered but said nothing about this intent (for a write: ambiguous).
    Missing,
    /// Cancelled or replaced while queued; never sent.
    Replaced,
}

/// Where an intent is.
#[derive(Debug, Clone, PartialEq)]
pub enum IntentState<R> {
    /// Waiting for its batch to be sealed; it can still be replaced.
    Queued,
    /// Sealed into a batch (sent, or re-queued whole after a throttled answer).
    InFlight,
    /// Finished.
    Done(Outcome<R>),
}

/// Why an intent could not be cancelled or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefusedReplace {
    /// It is in a sealed batch: its outcome must be awaited.
    #[error("the intent is in flight")]
    InFlight,
    /// It has finished.
    #[error("the intent has finished")]
    Done,
    /// No such intent.
    #[error("no such intent")]
    Unknown,
}

/// Why a batch was sealed when it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// It held `max_items` when the token came (whatever asked for the token).
    Full,
    /// No item came for the idle window.
    Idle,
    /// Its oldest item waited the longest window.
    MaxWait,
    /// A throttled or unsent batch going out again, whole.
    Requeued,
}

impl FlushReason {
    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Full => "full",
            FlushReason::Idle => "idle",
            FlushReason::MaxWait => "max_wait",
            FlushReason::Requeued => "requeued",
        }
    }
}

/// One sealed batch, as reported to the [`BatchObserver`].
#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    /// Why it was sealed now.
    pub reason: FlushReason,
    /// The lane its token was granted in.
    pub lane: Lane,
    /// Items in the call.
    pub size: usize,
    /// From the submission of its oldest item to the seal.
    pub waited: Duration,
    /// 0 for the first send; counts re-sends after throttled or unsent calls.
    pub attempt: u32,
}

/// Hooks for metrics; every method defaults to nothing.
pub trait BatchObserver<K>: Send + Sync {
    /// A batch was sealed and is being sent.
    fn flushed(&self, _key: &K, _flush: &Flush) {}
    /// A batch was re-queued whole (`throttled`: the call was throttled; otherwise not sent).
    fn requeued(&self, _key: &K, _throttled: bool) {}
    /// An answer named `count` ids that were not in the batch (ignored).
    fn unrequested(&self, _key: &K, _count: usize) {}
}

/// Tuning and hooks.
pub struct BatcherOptions<K> {
    /// How long a done outcome is kept for a submitter to come back for it.
    pub outcome_ttl: Duration,
    /// Metrics hooks.
    pub observer: Option<Arc<dyn BatchObserver<K>>>,
}

impl<K> Default for BatcherOptions<K> {
    fn default() -> Self {
        BatcherOptions {
            outcome_ttl: Duration::from_secs(10 * 60),
            observer: None,
        }
    }
}

/// Intents by state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntentCounts {
    /// Waiting for a batch.
    pub queued: usize,
    /// In a sealed batch.
    pub in_flight: usize,
    /// Finished, outcome kept.
    pub done: usize,
}

/// A submitter's handle on its intent's outcome. Cheap; as many as wanted.
#[derive(Debug, Clone)]
pub struct Ticket<R> {
    rx: watch::Receiver<IntentState<R>>,
    joined: bool,
}

impl<R: Clone> Ticket<R> {
    /// Whether the submission joined an intent that already existed.
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// The intent's state now.
    pub fn state(&self) -> IntentState<R> {
        self.rx.borrow().clone()
    }

    /// Waits for the outcome. Cancel-safe: dropping the future loses nothing.
    pub async fn outcome(&mut self) -> Outcome<R> {
        loop {
            if let IntentState::Done(outcome) = &*self.rx.borrow_and_update() {
                return outcome.clone();
            }
            if self.rx.changed().await.is_err() {
                // The intent is gone; its last state says how it ended.
                return match &*self.rx.borrow() {
                    IntentState::Done(outcome) => outcome.clone(),
                    _ => Outcome::Replaced,
                };
            }
        }
    }

    /// Waits at most `bound` for the outcome; `None` means "come back later".
    pub async fn outcome_within(&mut self, bound: Duration) -> Option<Outcome<R>> {
        tokio::time::timeout(bound, self.outcome()).await.ok()
    }
}

type SendFn<K, I, T, R> = dyn Fn(K, Vec<(I, T)>) -> BoxFuture<'static, Answer<I, R>> + Send + Sync;

/// The coalescing batcher; clones share state. Needs a tokio runtime: each key with queued items
/// has one task that seals its batches, and each sealed batch is sent by its own task.
pub struct Batcher<K: BatchKey, I, T, R> {
    shared: Arc<Shared<K, I, T, R>>,
}

impl<K: BatchKey, I, T, R> Clone for Batcher<K, I, T, R> {
    fn clone(&self) -> Self {
        Batcher {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K: BatchKey, I, T, R> {
    limiter: AdaptiveLimiter<K::LimiterKey>,
    send: Box<SendFn<K, I, T, R>>,
    options: BatcherOptions<K>,
    state: Mutex<State<K, I, T, R>>,
}

struct State<K, I, T, R> {
    intents: HashMap<I, Intent<K, R>>,
    keys: HashMap<K, KeyQueue<I, T>>,
    /// Done intents in completion order, for expiry.
    done: VecDeque<(Instant, I)>,
    seq: u64,
}

struct Intent<K, R> {
    key: K,
    /// Its place in the key's queue while queued.
    slot: Option<(Lane, u64)>,
    done_at: Option<Instant>,
    tx: watch::Sender<IntentState<R>>,
}

struct Queued<I, T> {
    id: I,
    item: T,
    at: Instant,
}

struct Sealed<I, T> {
    lane: Lane,
    items: Vec<(I, T)>,
    oldest: Instant,
    attempt: u32,
}

struct KeyQueue<I, T> {
    /// Priority order: lane, then submission.
    queued: BTreeMap<(Lane, u64), Queued<I, T>>,
    /// Sealed batches to send again, first in front.
    requeued: VecDeque<Sealed<I, T>>,
    /// The submission time of the oldest queued item.
    first_at: Option<Instant>,
    last_at: Instant,
    notify: Arc<Notify>,
    /// Whether the key's sealing task runs.
    running: bool,
}

impl<I, T> KeyQueue<I, T> {
    fn new(now: Instant) -> Self {
        KeyQueue {
            queued: BTreeMap::new(),
            requeued: VecDeque::new(),
            first_at: None,
            last_at: now,
            notify: Arc::new(Notify::new()),
            running: false,
        }
    }

    fn best_lane(&self) -> Option<Lane> {
        let queued = self.queued.keys().next().map(|(lane, _)| *lane);
        let requeued = self.requeued.front().map(|b| b.lane);
        queued.into_iter().chain(requeued).min()
    }

    fn refresh_first_at(&mut self) {
        self.first_at = self.queued.values().map(|q| q.at).min();
    }
}

/// What a key's sealing task does next.
enum Step {
    Exit,
    Wait(Instant),
    Flush(FlushReason, Lane),
}

impl<K, I, T, R> Batcher<K, I, T, R>
where
    K: BatchKey,
    I: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    /// A batcher whose calls are paced by `limiter` and made by `send`. `send` gets the key and the
    /// sealed items with their ids and must bound its own time (the ECS client has timeouts): a
    /// call that never returns keeps its items in flight.
    pub fn new<S, F>(
        limiter: AdaptiveLimiter<K::LimiterKey>,
        send: S,
        options: BatcherOptions<K>,
    ) -> Self
    where
        S: Fn(K, Vec<(I, T)>) -> F + Send + Sync + 'static,
        F: Future<Output = Answer<I, R>> + Send + 'static,
    {
        Batcher {
            shared: Arc::new(Shared {
                limiter,
                send: Box::new(move |key, items| Box::pin(send(key, items))),
                options,
                state: Mutex::new(State {
                    intents: HashMap::new(),
                    keys: HashMap::new(),
                    done: VecDeque::new(),
                    seq: 0,
                }),
            }),
        }
    }

    /// Submits intent `id` (the item `item`) under `key` in `lane` and returns at once. An id that
    /// is already known joins the existing intent (its key and item stay; a better lane lifts a
    /// queued one).
    pub fn submit(&self, key: K, lane: Lane, id: I, item: T) -> Ticket<R> {
        let mut state = self.shared.lock();
        self.shared.expire(&mut state);
        self.shared.submit(&mut state, key, lane, id, item)
    }

    /// A new ticket for a known intent (a submitter coming back for its outcome).
    pub fn ticket(&self, id: &I) -> Option<Ticket<R>> {
        let state = self.shared.lock();
        state.intents.get(id).map(|intent| Ticket {
            rx: intent.tx.subscribe(),
            joined: true,
        })
    }

    /// The state of a known intent.
    pub fn state(&self, id: &I) -> Option<IntentState<R>> {
        let state = self.shared.lock();
        state
            .intents
            .get(id)
            .map(|intent| intent.tx.borrow().clone())
    }

    /// Cancels a queued intent: its tickets see [`Outcome::Replaced`] and the id is forgotten.
    ///
    /// # Errors
    /// [`RefusedReplace`] when the intent is in flight, done or unknown.
    pub fn cancel(&self, id: &I) -> Result<(), RefusedReplace> {
        let mut state = self.shared.lock();
        self.shared.cancel(&mut state, id)
    }

    /// Replaces the queued intent `old` by a new submission, atomically (the desired state flipped
    /// while the old write was queued). Refused once `old` is in flight or done: then the caller
    /// waits for its outcome first.
    ///
    /// # Errors
    /// [`RefusedReplace`] when `old` is in flight, done or unknown.
    pub fn replace(
        &self,
        old: &I,
        key: K,
        lane: Lane,
        id: I,
        item: T,
    ) -> Result<Ticket<R>, RefusedReplace> {
        let mut state = self.shared.lock();
        self.shared.cancel(&mut state, old)?;
        Ok(self.shared.submit(&mut state, key, lane, id, item))
    }

    /// Drops a done intent's kept outcome (so the same id may be submitted afresh) and returns it;
    /// `None` (and nothing dropped) when the intent is unknown or not done.
    pub fn forget(&self, id: &I) -> Option<Outcome<R>> {
        let mut state = self.shared.lock();
        let outcome = match &*state.intents.get(id)?.tx.borrow() {
            IntentState::Done(outcome) => outcome.clone(),
            _ => return None,
        };
        state.intents.remove(id);
        state.intents.compact();
        Some(outcome)
    }

    /// Intents by state.
    pub fn counts(&self) -> IntentCounts {
        let state = self.shared.lock();
        let mut counts = IntentCounts::default();
        for intent in state.intents.values() {
            match &*intent.tx.borrow() {
                IntentState::Queued => counts.queued += 1,
                IntentState::InFlight => counts.in_flight += 1,
                IntentState::Done(_) => counts.done += 1,
            }
        }
        counts
    }
}

impl<K, I, T, R> Shared<K, I, T, R>
where
    K: BatchKey,
    I: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    fn lock(&self) -> MutexGuard<'_, State<K, I, T, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn submit(
        self: &Arc<Self>,
        state: &mut State<K, I, T, R>,
        key: K,
        lane: Lane,
        id: I,
        item: T,
    ) -> Ticket<R> {
        if let Some(intent) = state.intents.get_mut(&id) {
            if let Some((old_lane, seq)) = intent.slot
                && lane < old_lane
                && let Some(queue) = state.keys.get_mut(&intent.key)
                && let Some(queued) = queue.queued.remove(&(old_lane, seq))
            {
                queue.queued.insert((lane, seq), queued);
                intent.slot = Some((lane, seq));
                queue.notify.notify_waiters();
            }
            return Ticket {
                rx: intent.tx.subscribe(),
                joined: true,
            };
        }
        let now = Instant::now();
        state.seq += 1;
        let seq = state.seq;
        let queue = state
            .keys
            .entry(key.clone())
            .or_insert_with(|| KeyQueue::new(now));
        if queue.queued.is_empty() {
            queue.first_at = Some(now);
        }
        queue.last_at = now;
        queue.queued.insert(
            (lane, seq),
            Queued {
                id: id.clone(),
                item,
                at: now,
            },
        );
        self.wake(queue, &key);
        let (tx, rx) = watch::channel(IntentState::Queued);
        state.intents.insert(
            id,
            Intent {
                key,
                slot: Some((lane, seq)),
                done_at: None,
                tx,
            },
        );
        Ticket { rx, joined: false }
    }

    /// Starts the key's sealing task, or tells the running one that its queue changed.
    fn wake(self: &Arc<Self>, queue: &mut KeyQueue<I, T>, key: &K) {
        if queue.running {
            queue.notify.notify_waiters();
        } else {
            queue.running = true;
            tokio::spawn(Arc::clone(self).run_key(key.clone()));
        }
    }

    // A method like its neighbours, though it needs only the state it is handed.
    #[allow(clippy::unused_self)]
    fn cancel(&self, state: &mut State<K, I, T, R>, id: &I) -> Result<(), RefusedReplace> {
        let intent = state.intents.get(id).ok_or(RefusedReplace::Unknown)?;
        let Some(slot) = intent.slot else {
            return Err(match &*intent.tx.borrow() {
                IntentState::Done(_) => RefusedReplace::Done,
                _ => RefusedReplace::InFlight,
            });
        };
        if let Some(queue) = state.keys.get_mut(&intent.key) {
            queue.queued.remove(&slot);
            queue.refresh_first_at();
            queue.notify.notify_waiters();
        }
        if let Some(intent) = state.intents.remove(id) {
            intent.tx.send_replace(IntentState::Done(Outcome::Replaced));
        }
        Ok(())
    }

    /// Drops done outcomes older than the ttl.
    fn expire(&self, state: &mut State<K, I, T, R>) {
        let now = Instant::now();
        while let Some((at, _)) = state.done.front() {
            if now.saturating_duration_since(*at) < self.options.outcome_ttl {
                break;
            }
            if let Some((at, id)) = state.done.pop_front()
                && state.intents.get(&id).and_then(|i| i.done_at) == Some(at)
            {
                state.intents.remove(&id);
            }
        }
        // A fleet's worth of intents converged and expired: their tables go too.
        state.intents.compact();
        state.done.compact();
    }

    /// The sealing task of one key: waits for a window to close, takes a token, seals, hands the
    /// batch to a sending task, and exits when the key has nothing left.
    async fn run_key(self: Arc<Self>, key: K) {
        let windows = key.windows();
        let limiter_key = key.limiter_key();
        loop {
            let Some((trigger, lane)) = self.wait_for_window(&key, windows).await else {
                return;
            };
            let Some(permit) = self.take_token(&key, &limiter_key, lane).await else {
                continue;
            };
            if let Some((batch, flush)) = self.seal(&key, windows, trigger, permit.lane()) {
                if let Some(observer) = &self.options.observer {
                    observer.flushed(&key, &flush);
                }
                tokio::spawn(Arc::clone(&self).deliver(key.clone(), batch, permit));
            }
        }
    }

    async fn wait_for_window(&self, key: &K, windows: BatchWindows) -> Option<(FlushReason, Lane)> {
        loop {
            let notify = {
                let state = self.lock();
                Arc::clone(&state.keys.get(key)?.notify)
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.step(key, windows) {
                Step::Exit => return None,
                Step::Flush(reason, lane) => return Some((reason, lane)),
                Step::Wait(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
            }
        }
    }

    fn step(&self, key: &K, windows: BatchWindows) -> Step {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(queue) = state.keys.get_mut(key) else {
            return Step::Exit;
        };
        let Some(lane) = queue.best_lane() else {
            // Under the lock: a submission after this starts a new task.
            state.keys.remove(key);
            return Step::Exit;
        };
        if !queue.requeued.is_empty() {
            return Step::Flush(FlushReason::Requeued, lane);
        }
        if queue.queued.len() >= windows.max_items {
            return Step::Flush(FlushReason::Full, lane);
        }
        let idle_at = queue.last_at + windows.idle;
        let max_at = queue.first_at.unwrap_or(now) + windows.max_wait;
        if now >= max_at {
            Step::Flush(FlushReason::MaxWait, lane)
        } else if now >= idle_at {
            Step::Flush(FlushReason::Idle, lane)
        } else {
            Step::Wait(idle_at.min(max_at))
        }
    }

    /// Waits for the key's token in its best lane; asks again in a better lane if one shows up,
    /// and gives up (taking nothing) if the queue empties while waiting.
    async fn take_token(
        &self,
        key: &K,
        limiter_key: &K::LimiterKey,
        mut lane: Lane,
    ) -> Option<Permit<K::LimiterKey>> {
        'lane: loop {
            let acquire = self.limiter.acquire(limiter_key.clone(), lane);
            tokio::pin!(acquire);
            loop {
                let notify = {
                    let state = self.lock();
                    Arc::clone(&state.keys.get(key)?.notify)
                };
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let best = {
                    let state = self.lock();
                    state.keys.get(key).and_then(KeyQueue::best_lane)
                };
                match best {
                    None => return None,
                    Some(best) if best < lane => {
                        lane = best;
                        continue 'lane;
                    }
                    Some(_) => {}
                }
                tokio::select! {
                    permit = &mut acquire => return Some(permit),
                    () = &mut notified => {}
                }
            }
        }
    }

    /// Seals the key's next batch now that its token is granted: a re-queued batch first, whole;
    /// otherwise up to `max_items` queued items in lane and submission order.
    fn seal(
        &self,
        key: &K,
        windows: BatchWindows,
        trigger: FlushReason,
        lane: Lane,
    ) -> Option<(Sealed<I, T>, Flush)> {
        let now = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;
        let queue = state.keys.get_mut(key)?;
        let (batch, reason) = if let Some(batch) = queue.requeued.pop_front() {
            (batch, FlushReason::Requeued)
        } else {
            let mut items = Vec::with_capacity(windows.max_items.min(queue.queued.len()));
            let mut oldest = now;
            while items.len() < windows.max_items {
                let Some((_, queued)) = queue.queued.pop_first() else {
                    break;
                };
                if let Some(intent) = state.intents.get_mut(&queued.id) {
                    intent.slot = None;
                    intent.tx.send_replace(IntentState::InFlight);
                }
                oldest = oldest.min(queued.at);
                items.push((queued.id, queued.item));
            }
            if items.is_empty() {
                return None;
            }
            queue.refresh_first_at();
            let reason = if items.len() >= windows.max_items {
                FlushReason::Full
            } else {
                trigger
            };
            let batch = Sealed {
                lane,
                items,
                oldest,
                attempt: 0,
            };
            (batch, reason)
        };
        let flush = Flush {
            reason,
            lane,
            size: batch.items.len(),
            waited: now.saturating_duration_since(batch.oldest),
            attempt: batch.attempt,
        };
        Some((batch, flush))
    }

    /// Sends one sealed batch and hands each item its own outcome, or re-queues the batch whole.
    async fn deliver(self: Arc<Self>, key: K, batch: Sealed<I, T>, permit: Permit<K::LimiterKey>) {
        let answer = (self.send)(key.clone(), batch.items.clone()).await;
        let results = match answer {
            Answer::Results(results) => {
                permit.succeeded();
                results
            }
            Answer::Throttled { retry_after } => {
                permit.throttled(retry_after);
                self.requeue(&key, batch, true);
                return;
            }
            Answer::NotSent => {
                drop(permit);
                self.requeue(&key, batch, false);
                return;
            }
        };
        let mut by_id: HashMap<I, Option<R>> = batch
            .items
            .iter()
            .map(|(id, _)| (id.clone(), None))
            .collect();
        let mut unrequested = 0;
        for (id, result) in results {
            match by_id.get_mut(&id) {
                Some(slot @ None) => *slot = Some(result),
                // A repeated id: the first answer stands.
                Some(Some(_)) => {}
                None => unrequested += 1,
            }
        }
        if unrequested > 0 {
            tracing::debug!(
                unrequested,
                "batch answer named ids that were not requested"
            );
            if let Some(observer) = &self.options.observer {
                observer.unrequested(&key, unrequested);
            }
        }
        let now = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;
        for (id, _) in batch.items {
            let outcome = match by_id.remove(&id).flatten() {
                Some(result) => Outcome::Answered(result),
                None => Outcome::Missing,
            };
            if let Some(intent) = state.intents.get_mut(&id) {
                intent.done_at = Some(now);
                intent.tx.send_replace(IntentState::Done(outcome));
                state.done.push_back((now, id));
            }
        }
    }

    fn requeue(self: &Arc<Self>, key: &K, mut batch: Sealed<I, T>, throttled: bool) {
        if let Some(observer) = &self.options.observer {
            observer.requeued(key, throttled);
        }
        batch.attempt += 1;
        let mut state = self.lock();
        let queue = state
            .keys
            .entry(key.clone())
            .or_insert_with(|| KeyQueue::new(Instant::now()));
        queue.requeued.push_front(batch);
        self.wake(queue, key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::fleet::limiter::{LimiterConfig, WallClock};
    use crate::fleet::limits::Rate;

    /// A batch key: reads or writes (each its own limiter key and windows) and a write option.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Key {
        write: bool,
        option: u8,
    }

    const READ: Key = Key {
        write: false,
        option: 0,
    };
    const WRITE: Key = Key {
        write: true,
        option: 0,
    };

    impl BatchKey for Key {
        type LimiterKey = bool;
        fn limiter_key(&self) -> bool {
            self.write
        }
        fn windows(&self) -> BatchWindows {
            if self.write {
                BatchWindows::WRITES
            } else {
                BatchWindows::READS
            }
        }
    }

    /// What the fake ECS does with the next call (default: answer every id).
    enum Script {
        Throttle(Option<Duration>),
        NotSent,
        /// Answer once the gate is opened.
        Gated(Arc<Notify>),
        /// Leave out one requested id and add one that was not requested.
        Partial {
            omit: u32,
            extra: u32,
        },
    }

    #[derive(Debug, Clone)]
    struct Call {
        key: Key,
        ids: Vec<u32>,
        at: Instant,
    }

    #[derive(Default)]
    struct Recorder {
        flushes: Mutex<Vec<(Key, Flush)>>,
        requeued: Mutex<Vec<bool>>,
        unrequested: Mutex<usize>,
    }

    impl BatchObserver<Key> for Recorder {
        fn flushed(&self, key: &Key, flush: &Flush) {
            self.flushes
                .lock()
                .unwrap()
                .push((key.clone(), flush.clone()));
        }
        fn requeued(&self, _key: &Key, throttled: bool) {
            self.requeued.lock().unwrap().push(throttled);
        }
        fn unrequested(&self, _key: &Key, count: usize) {
            *self.unrequested.lock().unwrap() += count;
        }
    }

    struct Harness {
        batcher: Batcher<Key, u32, u32, u64>,
        limiter: AdaptiveLimiter<bool>,
        calls: Arc<Mutex<Vec<Call>>>,
        script: Arc<Mutex<VecDeque<Script>>>,
        recorder: Arc<Recorder>,
        start: Instant,
    }

    /// The answer for an item: its own value, so a mix-up by position shows.
    fn value(id: u32) -> u64 {
        u64::from(id) * 10 + 7
    }

    /// A batcher over a limiter running at exactly `per_second`, on a wall clock 30 s before a
    /// minute starts.
    fn harness(per_second: f64) -> Harness {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000 / 60 * 60 + 30);
        let config = LimiterConfig {
            start_fraction: 1.0,
            ..LimiterConfig::default()
        };
        let limiter =
            AdaptiveLimiter::with_clock(config, WallClock::starting_at(wall), move |_| {
                Rate::per_second(per_second)
            });
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let recorder = Arc::new(Recorder::default());
        let send = {
            let (calls, script) = (Arc::clone(&calls), Arc::clone(&script));
            move |key: Key, items: Vec<(u32, u32)>| {
                let ids: Vec<u32> = items.iter().map(|(id, _)| *id).collect();
                calls.lock().unwrap().push(Call {
                    key,
                    ids: ids.clone(),
                    at: Instant::now(),
                });
                let step = script.lock().unwrap().pop_front();
                async move {
                    // Answers in reverse order: results must be matched by id.
                    let answer =
                        |ids: &[u32]| ids.iter().rev().map(|id| (*id, value(*id))).collect();
                    match step {
                        None => Answer::Results(answer(&ids)),
                        Some(Script::Throttle(retry_after)) => Answer::Throttled { retry_after },
                        Some(Script::NotSent) => Answer::NotSent,
                        Some(Script::Gated(gate)) => {
                            gate.notified().await;
                            Answer::Results(answer(&ids))
                        }
                        Some(Script::Partial { omit, extra }) => {
                            let mut results: Vec<(u32, u64)> = answer(&ids);
                            results.retain(|(id, _)| *id != omit);
                            results.push((extra, 1));
                            Answer::Results(results)
                        }
                    }
                }
            }
        };
        let options = BatcherOptions {
            observer: Some(Arc::clone(&recorder) as Arc<dyn BatchObserver<Key>>),
            ..BatcherOptions::default()
        };
        Harness {
            batcher: Batcher::new(limiter.clone(), send, options),
            limiter,
            calls,
            script,
            recorder,
            start: Instant::now(),
        }
    }

    impl Harness {
        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
        fn flushes(&self) -> Vec<(Key, Flush)> {
            self.recorder.flushes.lock().unwrap().clone()
        }
        fn since_start(&self, at: Instant) -> Duration {
            at - self.start
        }
    }

    async fn answered(ticket: &mut Ticket<u64>) -> u64 {
        match ticket.outcome_within(Duration::from_secs(3600)).await {
            Some(Outcome::Answered(v)) => v,
            other => panic!("not answered: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_of_ten_thousand_goes_out_in_full_batches() {
        let h = harness(5.0);
        // A submitter with no concurrency at all: one loop, nothing awaited.
        let mut tickets: Vec<_> = (0..10_000)
            .map(|id| (id, h.batcher.submit(WRITE, Lane::User, id, id)))
            .collect();
        for (id, ticket) in &mut tickets {
            assert_eq!(answered(ticket).await, value(*id));
        }
        let calls = h.calls();
        assert_eq!(calls.len(), 100, "ceil(10,000 / 100)");
        assert!(calls.iter().all(|c| c.ids.len() == 100));
        assert!(
            h.flushes()
                .iter()
                .all(|(_, f)| f.reason == FlushReason::Full)
        );
        // 100 calls at 5/s: the lower bound, 19.8 s.
        assert_eq!(h.since_start(calls[99].at), Duration::from_millis(19_800));
        assert_eq!(h.batcher.counts().done, 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_key_flushes_after_the_idle_window() {
        let h = harness(5.0);
        let mut tickets: Vec<_> = (0..3)
            .map(|id| h.batcher.submit(WRITE, Lane::User, id, id))
            .collect();
        for ticket in &mut tickets {
            answered(ticket).await;
        }
        let calls = h.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(h.since_start(calls[0].at), BatchWindows::WRITES.idle);
        assert_eq!(h.flushes()[0].1.reason, FlushReason::Idle);
        assert_eq!(h.flushes()[0].1.waited, BatchWindows::WRITES.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_flushes_at_the_longest_window() {
        let h = harness(5.0);
        // One read every 60 ms: never idle for 100 ms, so the 500 ms window closes the batch.
        let mut tickets = Vec::new();
        for id in 0..20 {
            tickets.push(h.batcher.submit(READ, Lane::Check, id, id));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        for ticket in &mut tickets {
            answered(ticket).await;
        }
        let calls = h.calls();
        assert_eq!(h.since_start(calls[0].at), BatchWindows::READS.max_wait);
        assert_eq!(
            calls[0].ids,
            (0..9).collect::<Vec<_>>(),
            "0, 60, ..., 480 ms"
        );
        let (_, first) = &h.flushes()[0];
        assert_eq!((first.reason, first.size), (FlushReason::MaxWait, 9));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_sealed_when_the_token_comes_not_when_the_timer_fires() {
        // One call per 10 s, items at 33 a second: each timer fires long before the token.
        let h = harness(0.1);
        let mut tickets = Vec::new();
        for id in 0..1000 {
            tickets.push(h.batcher.submit(WRITE, Lane::User, id, id));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        for ticket in &mut tickets {
            answered(ticket).await;
        }
        let sizes: Vec<usize> = h.calls().iter().map(|c| c.ids.len()).collect();
        // The first token is free: the 1 s window closes with 34 items (0..=990 ms).
        assert_eq!(sizes[0], 34);
        assert_eq!(sizes.len(), 1 + (1000 - 34usize).div_ceil(100), "{sizes:?}");
        assert!(
            sizes[1..sizes.len() - 1].iter().all(|s| *s == 100),
            "{sizes:?}"
        );
        let reasons: Vec<FlushReason> = h.flushes().iter().map(|(_, f)| f.reason).collect();
        assert_eq!(reasons[0], FlushReason::MaxWait);
        assert!(
            reasons[1..reasons.len() - 1]
                .iter()
                .all(|r| *r == FlushReason::Full)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn different_options_never_share_a_call() {
        let h = harness(5.0);
        let key = |option| Key {
            write: true,
            option,
        };
        let mut tickets: Vec<_> = (0..250u32)
            .map(|id| {
                let option = [0, 0, 1, 1, 2][id as usize % 5];
                h.batcher.submit(key(option), Lane::User, id, id)
            })
            .collect();
        for ticket in &mut tickets {
            answered(ticket).await;
        }
        let mut calls = h.calls();
        calls.sort_by_key(|c| c.key.option);
        let sizes: Vec<(u8, usize)> = calls.iter().map(|c| (c.key.option, c.ids.len())).collect();
        assert_eq!(sizes, vec![(0, 100), (1, 100), (2, 50)]);
        for call in &calls {
            let expected = [0, 0, 1, 1, 2];
            assert!(
                call.ids
                    .iter()
                    .all(|id| expected[*id as usize % 5] == call.key.option)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_batch_goes_again_whole_at_the_next_minute_then_recovers() {
        let h = harness(5.0);
        h.script.lock().unwrap().push_back(Script::Throttle(None));
        let mut tickets: Vec<_> = (0..100)
            .map(|id| h.batcher.submit(WRITE, Lane::User, id, id))
            .collect();
        // While held, the intents wait in flight: no error, no outcome yet.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(tickets[0].state(), IntentState::InFlight);
        assert_eq!(h.batcher.cancel(&0), Err(RefusedReplace::InFlight));
        // Items submitted meanwhile do not join the throttled batch.
        let mut later = h.batcher.submit(WRITE, Lane::User, 100, 100);
        for (id, ticket) in tickets.iter_mut().enumerate() {
            assert_eq!(answered(ticket).await, value(u32::try_from(id).unwrap()));
        }
        answered(&mut later).await;
        let calls = h.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].ids, calls[1].ids, "re-sent whole, same items");
        assert_eq!(
            h.since_start(calls[1].at),
            Duration::from_secs(30),
            "the next minute"
        );
        assert_eq!(calls[2].ids, vec![100]);
        let limiter = h.limiter.state(&true).unwrap();
        assert_eq!(limiter.throttles, 1);
        assert!(limiter.rate < 5.0);
        let (_, resent) = &h.flushes()[1];
        assert_eq!((resent.reason, resent.attempt), (FlushReason::Requeued, 1));
        assert_eq!(*h.recorder.requeued.lock().unwrap(), vec![true]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_beyond_the_minute_is_honoured() {
        let h = harness(5.0);
        h.script
            .lock()
            .unwrap()
            .push_back(Script::Throttle(Some(Duration::from_secs(75))));
        let mut ticket = h.batcher.submit(READ, Lane::User, 1, 1);
        answered(&mut ticket).await;
        let calls = h.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(h.since_start(calls[1].at), Duration::from_millis(75_100));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsent_batch_is_retried_through_the_limiter_without_slowing_it() {
        let h = harness(5.0);
        h.script.lock().unwrap().push_back(Script::NotSent);
        let mut ticket = h.batcher.submit(WRITE, Lane::User, 1, 1);
        assert_eq!(answered(&mut ticket).await, value(1));
        let calls = h.calls();
        assert_eq!(calls.len(), 2);
        // Next token, 200 ms later: not a throttle, no hold.
        assert_eq!(calls[1].at - calls[0].at, Duration::from_millis(200));
        assert_eq!(h.limiter.state(&true).unwrap().throttles, 0);
        assert_eq!(*h.recorder.requeued.lock().unwrap(), vec![false]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_better_lane_arriving_while_waiting_lifts_the_whole_key() {
        let h = harness(1.0);
        // The only token of the first second goes elsewhere, so every key waits.
        let _busy = h.limiter.acquire(true, Lane::User).await;
        let sweep = Key {
            write: true,
            option: 1,
        };
        let checks = Key {
            write: true,
            option: 2,
        };
        let mut a = h.batcher.submit(sweep.clone(), Lane::Background, 1, 1);
        let mut b = h.batcher.submit(checks.clone(), Lane::Check, 2, 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.limiter.state(&true).unwrap().waiting, [0, 1, 1]);
        // A user's change for the sweep's key: that key now waits in the user lane.
        let mut c = h.batcher.submit(sweep.clone(), Lane::User, 3, 3);
        for ticket in [&mut a, &mut b, &mut c] {
            answered(ticket).await;
        }
        let calls = h.calls();
        assert_eq!(calls[0].key, sweep);
        assert_eq!(calls[0].ids, vec![3, 1], "user lane first within the key");
        assert_eq!(calls[1].key, checks);
        assert_eq!(h.flushes()[0].1.lane, Lane::User);
    }

    #[tokio::test(start_paused = true)]
    async fn a_duplicate_intent_joins_the_pending_one() {
        let h = harness(5.0);
        let mut first = h.batcher.submit(WRITE, Lane::User, 7, 7);
        let mut second = h.batcher.submit(WRITE, Lane::User, 7, 7);
        assert!(!first.joined() && second.joined());
        assert_eq!(answered(&mut first).await, value(7));
        assert_eq!(answered(&mut second).await, value(7));
        // After it is done, the same intent gets the kept outcome, and nothing is sent again.
        let mut again = h.batcher.submit(WRITE, Lane::User, 7, 7);
        assert_eq!(
            again.state(),
            IntentState::Done(Outcome::Answered(value(7)))
        );
        answered(&mut again).await;
        assert_eq!(h.calls().len(), 1);
        assert_eq!(h.calls()[0].ids, vec![7]);
        // Once forgotten, the id is new again.
        assert_eq!(h.batcher.forget(&7), Some(Outcome::Answered(value(7))));
        let mut fresh = h.batcher.submit(WRITE, Lane::User, 7, 7);
        assert!(!fresh.joined());
        answered(&mut fresh).await;
        assert_eq!(h.calls().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_intent_can_be_replaced_but_not_one_in_flight() {
        let h = harness(5.0);
        let start_key = WRITE;
        let stop_key = Key {
            write: true,
            option: 9,
        };
        // Queued: the start is replaced by the stop, and only the stop is sent.
        let mut start = h.batcher.submit(start_key.clone(), Lane::User, 1, 1);
        let mut stop = h
            .batcher
            .replace(&1, stop_key.clone(), Lane::User, 2, 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(start.outcome().await, Outcome::Replaced);
        assert_eq!(answered(&mut stop).await, value(2));
        assert_eq!(h.calls().len(), 1);
        assert_eq!(
            (h.calls()[0].key.clone(), h.calls()[0].ids.clone()),
            (stop_key.clone(), vec![2])
        );
        assert_eq!(h.batcher.state(&1), None, "a replaced intent is forgotten");

        // In flight: refused; the stop waits for the start's outcome.
        let gate = Arc::new(Notify::new());
        h.script
            .lock()
            .unwrap()
            .push_back(Script::Gated(Arc::clone(&gate)));
        let mut start = h.batcher.submit(start_key, Lane::User, 3, 3);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(start.state(), IntentState::InFlight);
        assert_eq!(
            h.batcher.replace(&3, stop_key, Lane::User, 4, 4).err(),
            Some(RefusedReplace::InFlight)
        );
        gate.notify_one();
        assert_eq!(answered(&mut start).await, value(3));
        assert_eq!(h.batcher.cancel(&3), Err(RefusedReplace::Done));
        assert_eq!(h.batcher.cancel(&99), Err(RefusedReplace::Unknown));
        assert_eq!(h.calls().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn results_are_matched_by_id_and_a_missing_id_is_reported_as_missing() {
        let h = harness(5.0);
        h.script.lock().unwrap().push_back(Script::Partial {
            omit: 3,
            extra: 999,
        });
        let mut tickets: Vec<_> = (0..6)
            .map(|id| (id, h.batcher.submit(READ, Lane::User, id, id)))
            .collect();
        for (id, ticket) in &mut tickets {
            let outcome = ticket.outcome().await;
            if *id == 3 {
                assert_eq!(outcome, Outcome::Missing);
            } else {
                assert_eq!(
                    outcome,
                    Outcome::Answered(value(*id)),
                    "reversed answer, by id"
                );
            }
        }
        assert_eq!(*h.recorder.unrequested.lock().unwrap(), 1);
        assert_eq!(
            h.calls().len(),
            1,
            "a missing id is not re-sent by the batcher"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_submitter_that_stops_waiting_loses_nothing() {
        let h = harness(0.1);
        let _busy = h.limiter.acquire(true, Lane::User).await;
        let mut ticket = h.batcher.submit(WRITE, Lane::User, 5, 5);
        // A reconcile waits a short bound, gives up its slot and comes back later.
        assert_eq!(
            ticket.outcome_within(Duration::from_millis(500)).await,
            None
        );
        drop(ticket);
        assert_eq!(h.batcher.state(&5), Some(IntentState::Queued));
        tokio::time::sleep(Duration::from_secs(20)).await;
        let mut back = h.batcher.ticket(&5).unwrap();
        assert_eq!(back.state(), IntentState::Done(Outcome::Answered(value(5))));
        assert_eq!(answered(&mut back).await, value(5));
        assert_eq!(h.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn done_outcomes_expire_after_their_ttl() {
        let h = harness(5.0);
        let mut ticket = h.batcher.submit(READ, Lane::User, 1, 1);
        answered(&mut ticket).await;
        tokio::time::sleep(BatcherOptions::<Key>::default().outcome_ttl).await;
        // Expiry runs on the next submission.
        h.batcher.submit(READ, Lane::User, 2, 2);
        assert_eq!(h.batcher.state(&1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_of_expired_intents_gives_its_tables_back() {
        let h = harness(50.0);
        let mut tickets: Vec<_> = (0..5_000)
            .map(|id| h.batcher.submit(WRITE, Lane::User, id, id))
            .collect();
        for ticket in &mut tickets {
            answered(ticket).await;
        }
        let capacity = |h: &Harness| {
            let state = h.batcher.shared.lock();
            (state.intents.capacity(), state.done.capacity())
        };
        let (intents, done) = capacity(&h);
        assert!(intents >= 5_000 && done >= 5_000, "{intents}, {done}");
        tokio::time::sleep(BatcherOptions::<Key>::default().outcome_ttl).await;
        h.batcher.submit(READ, Lane::User, 9_999, 9_999);
        let (intents, done) = capacity(&h);
        assert!(
            intents <= 2 * crate::compact::KEEP && done <= 2 * crate::compact::KEEP,
            "{intents}, {done}"
        );
        assert_eq!(h.batcher.state(&9_999), Some(IntentState::Queued));
    }
}
