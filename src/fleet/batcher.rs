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
    /// A batcher whose calls are paced by `limiter` and made by `send`.
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
    pub fn cancel(&self, id: &I) -> Result<(), RefusedReplace> {
        let mut state = self.shared.lock();
        self.shared.cancel(&mut state, id)
    }

    /// Replaces the queued intent `old` by a new submission, atomically (the desired state flipped
    /// while the old write was queued). Refused once `old` is in flight or done: then the caller
    /// waits for its outcome first.
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
    }

    /// The sealing task of one key: waits for a window to close, takes a token, seals, hands the
    /// batch to a sending task, and exits when the key has nothing left.
    async fn run_key(self: Arc<Self>, key: K) {
        let windows = key.windows();
        let limiter_key = key.limiter_key();
        loop {
            let (trigger, lane) = match self.wait_for_window(&key, windows).await {
                Some(due) => due,
                None => return,
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
                self.requeue(key, batch, true);
                return;
            }
            Answer::NotSent => {
                drop(permit);
                self.requeue(key, batch, false);
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

    fn requeue(self: &Arc<Self>, key: K, mut batch: Sealed<I, T>, throttled: bool) {
        if let Some(observer) = &self.options.observer {
            observer.requeued(&key, throttled);
        }
        batch.attempt += 1;
        let mut state = self.lock();
        let queue = state
            .keys
            .entry(key.clone())
            .or_insert_with(|| KeyQueue::new(Instant::now()));
        queue.requeued.push_front(batch);
        self.wake(queue, &key);
    }
}
