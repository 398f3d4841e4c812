//! The adaptive rate limiter: one pacing state per key (the caller keys it by account, region and
//! ECS action), shared by every clone, with priority lanes.
//!
//! - **Pacing**: calls are spaced `1 / rate` apart (a token bucket of one token), so a burst never
//!   trips ECS's per-second limit. The rate starts at `start_fraction` (0.9) of the configured
//!   ceiling and never goes above it.
//! - **Throttled** ([`Permit::throttled`] or [`AdaptiveLimiter::on_throttled`]): the rate is
//!   multiplied by `decrease_factor` (0.7), and the key is held until the later of the server's
//!   retry-after and the start of the next wall-clock minute (ECS: throttled in minute T, accepted
//!   again from T+1). Further throttled answers during that hold (calls already in flight) extend it
//!   but do not cut the rate again.
//! - **Probe**: after a hold exactly one call goes out; other waiters wait for its answer. Success
//!   reopens the key; a throttled probe cuts again and holds to the next minute.
//! - **Recovery**: each success at least `clean_interval` (a minute) after the last change adds
//!   `increase_fraction` of the ceiling, up to the ceiling: the rate climbs back over minutes.
//! - **Lanes**: among the waiters of one key, [`Lane::User`] goes first, then [`Lane::Check`], then
//!   [`Lane::Background`]; when background work waits it still gets at least one grant in
//!   `background_share` (1 in 10), so the sweep is never starved. FIFO within a lane.
//! - **Cancel safety**: a waiter takes its token in the same synchronous step that completes
//!   [`AdaptiveLimiter::acquire`]; dropping the future before that leaves the queue and takes
//!   nothing. A probe permit dropped without an answer frees the probe for the next caller.
//!
//! Time comes from `tokio::time`, and the minute boundaries from a [`WallClock`] that maps tokio
//! instants onto a wall-clock epoch captured once, so paused-time tests move "wall clock" minutes
//! deterministically. The limiter is generic over its key and knows nothing about ECS.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::limits::Rate;

/// The longest server retry-after honoured: a malformed or absurd header must not stall an action
/// for hours (the per-minute hold and the probe still apply).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// How late a due waiter may be woken (tokio timers have millisecond granularity) and still keep the
/// pacing schedule instead of starting a new interval from its wake-up.
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// Who is waiting for a token, in priority order (`User` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// A user's change: a new resource, a new generation, a schedule transition.
    User,
    /// A check after a write (is the transition done?).
    Check,
    /// The sweep and drift corrections: never starved, but served last.
    Background,
}

impl Lane {
    /// Every lane, highest priority first.
    pub const ALL: [Lane; 3] = [Lane::User, Lane::Check, Lane::Background];

    /// The lane's position in [`Lane::ALL`] (and in [`LimiterState::waiting`]).
    pub fn index(self) -> usize {
        match self {
            Lane::User => 0,
            Lane::Check => 1,
            Lane::Background => 2,
        }
    }

    /// A metric label: `user`, `check`, `background`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::User => "user",
            Lane::Check => "check",
            Lane::Background => "background",
        }
    }
}

/// How the limiter adapts. The defaults are the documented behaviour; tests may shorten them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// The starting rate as a fraction of the ceiling.
    pub start_fraction: f64,
    /// The rate is multiplied by this on a throttled answer.
    pub decrease_factor: f64,
    /// The rate never drops below this fraction of the ceiling.
    pub floor_fraction: f64,
    /// Each clean interval adds this fraction of the ceiling, up to the ceiling.
    pub increase_fraction: f64,
    /// How long the rate must run without a throttled answer before it climbs one step.
    pub clean_interval: Duration,
    /// While background work waits, at least one grant in this many goes to it.
    pub background_share: u32,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            start_fraction: 0.9,
            decrease_factor: 0.7,
            floor_fraction: 0.05,
            increase_fraction: 0.05,
            clean_interval: Duration::from_secs(60),
            background_share: 10,
        }
    }
}

/// Maps tokio instants onto the wall clock: the wall time captured at construction plus the tokio
/// time elapsed since. Under paused tokio time the wall clock moves with it.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    wall_epoch: Duration,
    instant_epoch: Instant,
}

impl WallClock {
    /// Now, from the system clock.
    pub fn system() -> WallClock {
        WallClock::starting_at(SystemTime::now())
    }

    /// A clock that reads `wall` at the current tokio instant (tests pick the second of the minute).
    pub fn starting_at(wall: SystemTime) -> WallClock {
        WallClock {
            wall_epoch: wall.duration_since(UNIX_EPOCH).unwrap_or_default(),
            instant_epoch: Instant::now(),
        }
    }

    /// The wall-clock time at `at`.
    pub fn wall(&self, at: Instant) -> SystemTime {
        UNIX_EPOCH + self.wall_epoch + at.saturating_duration_since(self.instant_epoch)
    }

    /// The instant the wall-clock minute after the one containing `at` starts.
    pub fn next_minute(&self, at: Instant) -> Instant {
        const MINUTE_NANOS: u128 = 60_000_000_000;
        let since_epoch = self.wall_epoch + at.saturating_duration_since(self.instant_epoch);
        // The remainder is below one minute in nanoseconds, so it fits a u64.
        let into_minute = u64::try_from(since_epoch.as_nanos() % MINUTE_NANOS).unwrap_or(0);
        at + Duration::from_secs(60).saturating_sub(Duration::from_nanos(into_minute))
    }
}

/// What a key's limiter looks like now, for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterState {
    /// The current rate, in calls per second.
    pub rate: f64,
    /// The configured ceiling, in calls per second.
    pub ceiling: f64,
    /// While the key is held after a throttled answer: when the hold ends.
    pub blocked_until: Option<Instant>,
    /// `blocked_until` on the wall clock.
    pub blocked_until_wall: Option<SystemTime>,
    /// A probe call is out; nothing else is granted until it is answered.
    pub probing: bool,
    /// Waiters per lane, indexed by [`Lane::index`].
    pub waiting: [usize; 3],
    /// Throttled answers seen since start.
    pub throttles: u64,
}

/// One adaptive limiter per key; clones share state.
pub struct AdaptiveLimiter<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for AdaptiveLimiter<K> {
    fn clone(&self) -> Self {
        AdaptiveLimiter {
            shared: Arc::clone(&self.shared),
        }
    }
}

type CeilingFn<K> = dyn Fn(&K) -> Rate + Send + Sync;

struct Shared<K> {
    config: LimiterConfig,
    clock: WallClock,
    ceiling: Box<CeilingFn<K>>,
    state: Mutex<State<K>>,
}

struct State<K> {
    keys: HashMap<K, KeyState>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Open,
    /// Nothing is granted before `until`; the first grant after it is the probe.
    Hold {
        until: Instant,
    },
    /// The probe `id` is out; nothing else is granted until it is answered or dropped.
    Probe {
        id: u64,
    },
}

struct KeyState {
    ceiling: f64,
    rate: f64,
    /// The earliest instant the next token may be granted.
    next_at: Instant,
    phase: Phase,
    /// The last rate change (or the start): the clean interval is counted from here.
    last_change: Instant,
    throttles: u64,
    /// Waiter ids per lane; ids grow, so the first is the oldest.
    waiters: [BTreeSet<u64>; 3],
    /// Grants to other lanes since background work last got one, while it waited.
    since_background: u32,
    notify: Arc<Notify>,
}

impl KeyState {
    fn new(config: &LimiterConfig, ceiling: Rate, now: Instant) -> KeyState {
        let ceiling = ceiling.as_per_second();
        KeyState {
            ceiling,
            rate: ceiling * config.start_fraction.clamp(0.0, 1.0),
            next_at: now,
            phase: Phase::Open,
            last_change: now,
            throttles: 0,
            waiters: Default::default(),
            since_background: 0,
            notify: Arc::new(Notify::new()),
        }
    }

    /// The lane the next grant goes to, if anyone waits.
    fn chosen_lane(&self, background_share: u32) -> Option<Lane> {
        let background_waits = !self.waiters[Lane::Background.index()].is_empty();
        if background_waits && self.since_background.saturating_add(1) >= background_share {
            return Some(Lane::Background);
        }
        Lane::ALL
            .into_iter()
            .find(|lane| !self.waiters[lane.index()].is_empty())
    }

    fn interval(&self) -> Duration {
        Duration::try_from_secs_f64(1.0 / self.rate).unwrap_or(Duration::MAX)
    }

    fn floor(&self, config: &LimiterConfig) -> f64 {
        (self.ceiling * config.floor_fraction).max(Rate::MIN_PER_SECOND)
    }
}

enum Decision {
    Granted {
        probe: Option<u64>,
    },
    /// This waiter is next; its token is due at this instant.
    At(Instant),
    /// Someone else is next (or a probe is out): wait for a change.
    NotYourTurn,
}

/// Who reports a success: a permit knows whether it was the probe; a bare key does not.
#[derive(Clone, Copy)]
enum Reporter {
    Key,
    Permit { probe: Option<u64> },
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> AdaptiveLimiter<K> {
    /// A limiter whose ceiling for a key is `ceiling(key)` (looked up once, when the key is first
    /// used), on the system wall clock.
    pub fn new(
        config: LimiterConfig,
        ceiling: impl Fn(&K) -> Rate + Send + Sync + 'static,
    ) -> AdaptiveLimiter<K> {
        AdaptiveLimiter::with_clock(config, WallClock::system(), ceiling)
    }

    /// As [`AdaptiveLimiter::new`], with the given wall clock (tests).
    pub fn with_clock(
        config: LimiterConfig,
        clock: WallClock,
        ceiling: impl Fn(&K) -> Rate + Send + Sync + 'static,
    ) -> AdaptiveLimiter<K> {
        AdaptiveLimiter {
            shared: Arc::new(Shared {
                config,
                clock,
                ceiling: Box::new(ceiling),
                state: Mutex::new(State {
                    keys: HashMap::new(),
                    next_id: 0,
                }),
            }),
        }
    }

    /// The wall clock the minute holds are computed on.
    pub fn clock(&self) -> WallClock {
        self.shared.clock
    }

    /// Waits for `key`'s next token in `lane`. Cancel-safe: dropping the future before it completes
    /// takes no token and leaves no trace.
    pub async fn acquire(&self, key: K, lane: Lane) -> Permit<K> {
        let (id, notify) = {
            let mut state = self.shared.lock();
            let id = state.next_id;
            state.next_id += 1;
            let ks = self.shared.key_state(&mut state, &key);
            ks.waiters[lane.index()].insert(id);
            (id, Arc::clone(&ks.notify))
        };
        let mut waiter = Waiter {
            shared: &self.shared,
            key: &key,
            lane,
            id,
            queued: true,
        };
        let probe = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so a change in between still wakes us.
            notified.as_mut().enable();
            match waiter.try_grant() {
                Decision::Granted { probe } => break probe,
                Decision::At(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
                Decision::NotYourTurn => notified.await,
            }
        };
        waiter.queued = false;
        drop(waiter);
        Permit {
            shared: Arc::clone(&self.shared),
            key,
            lane,
            probe,
            answered: false,
        }
    }

    /// Reports a throttled answer for `key` (a call that went out without a [`Permit`] in hand, or
    /// when the permit is gone); prefer [`Permit::throttled`].
    pub fn on_throttled(&self, key: &K, retry_after: Option<Duration>) {
        self.shared.throttled(key, retry_after);
    }

    /// Reports a non-throttled answer for `key`; ends a probe in flight. Prefer
    /// [`Permit::succeeded`], which ends only its own probe.
    pub fn on_success(&self, key: &K) {
        self.shared.succeeded(key, Reporter::Key);
    }

    /// The state of `key`, if it has been used.
    pub fn state(&self, key: &K) -> Option<LimiterState> {
        let state = self.shared.lock();
        state.keys.get(key).map(|ks| self.shared.describe(ks))
    }

    /// Every key's state, for metrics.
    pub fn snapshot(&self) -> Vec<(K, LimiterState)> {
        let state = self.shared.lock();
        state
            .keys
            .iter()
            .map(|(k, ks)| (k.clone(), self.shared.describe(ks)))
            .collect()
    }
}

impl<K: Hash + Eq + Clone> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key_state<'s>(&self, state: &'s mut State<K>, key: &K) -> &'s mut KeyState {
        state
            .keys
            .entry(key.clone())
            .or_insert_with(|| KeyState::new(&self.config, (self.ceiling)(key), Instant::now()))
    }

    fn throttled(&self, key: &K, retry_after: Option<Duration>) {
        let now = Instant::now();
        let retry_after = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
        let until = self.clock.next_minute(now).max(now + retry_after);
        let mut state = self.lock();
        let config = self.config;
        let ks = self.key_state(&mut state, key);
        ks.throttles += 1;
        ks.phase = match ks.phase {
            // Answers to calls sent before the hold began: extend it, do not cut again.
            Phase::Hold { until: held } => Phase::Hold {
                until: held.max(until),
            },
            Phase::Open | Phase::Probe { .. } => {
                ks.rate = (ks.rate * config.decrease_factor).max(ks.floor(&config));
                ks.last_change = now;
                tracing::debug!(rate = ks.rate, "ECS throttled: rate cut, action held");
                Phase::Hold { until }
            }
        };
        ks.notify.notify_waiters();
    }

    fn succeeded(&self, key: &K, reporter: Reporter) {
        let now = Instant::now();
        let mut state = self.lock();
        let config = self.config;
        let ks = self.key_state(&mut state, key);
        match (ks.phase, reporter) {
            (Phase::Probe { .. }, Reporter::Key) => reopen(ks, now),
            (Phase::Probe { id }, Reporter::Permit { probe: Some(p) }) if p == id => {
                reopen(ks, now);
            }
            (Phase::Open, _)
                if ks.rate < ks.ceiling && now >= ks.last_change + config.clean_interval =>
            {
                ks.rate = (ks.rate + ks.ceiling * config.increase_fraction).min(ks.ceiling);
                ks.last_change = now;
            }
            // A clean interval not over yet, or a late answer to a call sent before the hold or
            // to an older probe.
            _ => {}
        }
    }

    /// A probe permit dropped without an answer: the probe slot is free again.
    fn probe_abandoned(&self, key: &K, probe: u64) {
        let mut state = self.lock();
        if let Some(ks) = state.keys.get_mut(key)
            && ks.phase == (Phase::Probe { id: probe })
        {
            ks.phase = Phase::Hold {
                until: Instant::now(),
            };
            ks.notify.notify_waiters();
        }
    }

    fn describe(&self, ks: &KeyState) -> LimiterState {
        let now = Instant::now();
        let blocked_until = match ks.phase {
            Phase::Hold { until } if until > now => Some(until),
            _ => None,
        };
        LimiterState {
            rate: ks.rate,
            ceiling: ks.ceiling,
            blocked_until,
            blocked_until_wall: blocked_until.map(|at| self.clock.wall(at)),
            probing: matches!(ks.phase, Phase::Probe { .. }),
            waiting: Lane::ALL.map(|lane| ks.waiters[lane.index()].len()),
            throttles: ks.throttles,
        }
    }
}

fn reopen(ks: &mut KeyState, now: Instant) {
    ks.phase = Phase::Open;
    ks.last_change = now;
    ks.notify.notify_waiters();
}

/// A queued `acquire`; removes itself from the queue when dropped before its grant.
struct Waiter<'a, K: Hash + Eq + Clone> {
    shared: &'a Shared<K>,
    key: &'a K,
    lane: Lane,
    id: u64,
    queued: bool,
}

impl<K: Hash + Eq + Clone> Waiter<'_, K> {
    fn try_grant(&self) -> Decision {
        let now = Instant::now();
        let config = self.shared.config;
        let mut state = self.shared.lock();
        let next_probe = state.next_id;
        let Some(ks) = state.keys.get_mut(self.key) else {
            return Decision::NotYourTurn;
        };
        let lane = self.lane.index();
        if ks.chosen_lane(config.background_share) != Some(self.lane)
            || ks.waiters[lane].first() != Some(&self.id)
        {
            return Decision::NotYourTurn;
        }
        let due = match ks.phase {
            Phase::Open => ks.next_at,
            Phase::Hold { until } => until.max(ks.next_at),
            Phase::Probe { .. } => return Decision::NotYourTurn,
        };
        if now < due {
            return Decision::At(due);
        }
        ks.waiters[lane].remove(&self.id);
        if self.lane == Lane::Background {
            ks.since_background = 0;
        } else if !ks.waiters[Lane::Background.index()].is_empty() {
            ks.since_background = ks.since_background.saturating_add(1);
        }
        let probe = match ks.phase {
            Phase::Hold { .. } => {
                ks.phase = Phase::Probe { id: next_probe };
                Some(next_probe)
            }
            _ => None,
        };
        // A waiter woken a little late (timer granularity) keeps the schedule, so the rate does not
        // drift down; one that came after an idle spell starts a fresh interval.
        ks.next_at = ks.next_at.max(now.checked_sub(TIMER_SLACK).unwrap_or(now)) + ks.interval();
        ks.notify.notify_waiters();
        if probe.is_some() {
            state.next_id += 1;
        }
        Decision::Granted { probe }
    }
}

impl<K: Hash + Eq + Clone> Drop for Waiter<'_, K> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let mut state = self.shared.lock();
        if let Some(ks) = state.keys.get_mut(self.key) {
            ks.waiters[self.lane.index()].remove(&self.id);
            // If it was next in line, the one after it must look again.
            ks.notify.notify_waiters();
        }
    }
}

/// The right to make one call for a key. Report its answer with [`Permit::succeeded`] or
/// [`Permit::throttled`]; dropping it unreported means "no answer" (nothing sent, or an error that
/// says nothing about rate), which frees the probe slot if this was the probe.
pub struct Permit<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
    key: K,
    lane: Lane,
    probe: Option<u64>,
    answered: bool,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Permit<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("lane", &self.lane)
            .field("probe", &self.probe.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Permit<K> {
    /// The key the permit was granted for.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The lane it was granted in.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// Whether this is the single probe call after a hold.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// The call was answered and not throttled (whatever else the answer said).
    pub fn succeeded(mut self) {
        self.answered = true;
        self.shared
            .succeeded(&self.key, Reporter::Permit { probe: self.probe });
    }

    /// The call was throttled; `retry_after` is the server's hint, if any.
    pub fn throttled(mut self, retry_after: Option<Duration>) {
        self.answered = true;
        self.shared.throttled(&self.key, retry_after);
    }
}

impl<K: Hash + Eq + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        if let (false, Some(probe)) = (self.answered, self.probe) {
            self.shared.probe_abandoned(&self.key, probe);
        }
    }
}

#[cfg(test)]
// Rates here are exact values from configuration, compared exactly on purpose.
#[allow(clippy::unwrap_used, clippy::panic, clippy::float_cmp)]
mod tests {
    use super::*;

    /// 12:00:30 UTC on some day: half a minute before a wall-clock minute starts.
    fn half_past() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 / 60 * 60 + 30)
    }

    fn limiter(ceiling: f64) -> AdaptiveLimiter<&'static str> {
        limiter_with(LimiterConfig::default(), ceiling)
    }

    fn limiter_with(config: LimiterConfig, ceiling: f64) -> AdaptiveLimiter<&'static str> {
        AdaptiveLimiter::with_clock(config, WallClock::starting_at(half_past()), move |_| {
            Rate::per_second(ceiling)
        })
    }

    /// A limiter that runs at exactly `per_second` from the start.
    fn exact(per_second: f64) -> AdaptiveLimiter<&'static str> {
        let config = LimiterConfig {
            start_fraction: 1.0,
            ..LimiterConfig::default()
        };
        limiter_with(config, per_second)
    }

    fn rate(l: &AdaptiveLimiter<&'static str>) -> f64 {
        l.state(&"k").map(|s| s.rate).unwrap_or_default()
    }

    /// Bounded polling: yields until `cond` holds (tasks spawned under paused time need polls).
    async fn until(mut cond: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn paces_at_nine_tenths_of_the_ceiling_and_never_above() {
        let l = limiter(10.0);
        let start = Instant::now();
        for _ in 0..91 {
            l.acquire("k", Lane::User).await.succeeded();
        }
        // 91 grants at 9/s: the first at once, then one every 1/9 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((elapsed - 10.0).abs() < 0.01, "{elapsed}");
        let state = l.state(&"k").unwrap();
        assert!((state.rate - 9.0).abs() < 1e-9 && state.ceiling == 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_without_retry_after_holds_to_the_next_minute_then_probes_once() {
        let l = limiter(10.0);
        let start = Instant::now();
        l.acquire("k", Lane::User).await.throttled(None);
        let state = l.state(&"k").unwrap();
        assert_eq!(state.blocked_until, Some(start + Duration::from_secs(30)));
        assert_eq!(
            state.blocked_until_wall,
            Some(half_past() + Duration::from_secs(30))
        );
        assert!((state.rate - 6.3).abs() < 1e-9, "{}", state.rate);
        assert_eq!(state.throttles, 1);

        let probe = l.acquire("k", Lane::User).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30), "held to 12:01:00");
        assert!(probe.is_probe());
        // Nothing else goes out while the probe is unanswered, however long it takes.
        let second = tokio::spawn({
            let l = l.clone();
            async move { l.acquire("k", Lane::User).await.is_probe() }
        });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!second.is_finished());
        assert!(l.state(&"k").unwrap().probing);
        probe.succeeded();
        assert_eq!(second.await.ok(), Some(false), "an ordinary grant follows");
        assert_eq!(start.elapsed(), Duration::from_secs(50));
        assert!(
            (rate(&l) - 6.3).abs() < 1e-9,
            "the cut rate stays until it climbs"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_when_longer_than_the_minute_and_not_shortening_it() {
        let l = limiter(10.0);
        let start = Instant::now();
        l.on_throttled(&"k", Some(Duration::from_secs(5)));
        assert_eq!(
            l.state(&"k").unwrap().blocked_until,
            Some(start + Duration::from_secs(30)),
            "a short retry-after does not end the hold before the next minute"
        );
        l.acquire("k", Lane::User)
            .await
            .throttled(Some(Duration::from_secs(90)));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        let state = l.state(&"k").unwrap();
        assert_eq!(state.blocked_until, Some(start + Duration::from_secs(120)));
        assert!(
            (state.rate - 9.0 * 0.7 * 0.7).abs() < 1e-9,
            "a throttled probe cuts again"
        );
        let probe = l.acquire("k", Lane::User).await;
        assert!(probe.is_probe());
        assert_eq!(start.elapsed(), Duration::from_secs(120));
        // A retry-after beyond the cap is capped.
        probe.throttled(Some(Duration::from_secs(86_400)));
        assert_eq!(
            l.state(&"k").unwrap().blocked_until,
            Some(start + Duration::from_secs(120) + MAX_RETRY_AFTER)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_from_calls_already_in_flight_extend_the_hold_without_cutting_again() {
        let l = limiter(10.0);
        let in_flight: Vec<_> = [
            l.acquire("k", Lane::User).await,
            l.acquire("k", Lane::User).await,
            l.acquire("k", Lane::User).await,
        ]
        .into();
        for permit in in_flight {
            permit.throttled(None);
        }
        let state = l.state(&"k").unwrap();
        assert!((state.rate - 6.3).abs() < 1e-9, "one cut: {}", state.rate);
        assert_eq!(state.throttles, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn recovers_over_minutes_up_to_the_ceiling_and_never_above() {
        let l = limiter(10.0);
        l.on_throttled(&"k", None);
        l.acquire("k", Lane::User).await.succeeded();
        let start = Instant::now();
        let mut changes = vec![(start, rate(&l))];
        while start.elapsed() < Duration::from_secs(15 * 60) {
            l.acquire("k", Lane::Background).await.succeeded();
            if rate(&l) != changes[changes.len() - 1].1 {
                changes.push((Instant::now(), rate(&l)));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for pair in changes.windows(2) {
            let ((t0, r0), (t1, r1)) = (pair[0], pair[1]);
            assert!(t1 - t0 >= Duration::from_secs(60), "{changes:?}");
            assert!(r1 > r0 && r1 - r0 <= 0.5 + 1e-9, "{changes:?}");
        }
        let rates: Vec<f64> = changes.iter().map(|(_, r)| *r).collect();
        assert!(rates.iter().all(|r| *r <= 10.0), "{rates:?}");
        assert_eq!(rates.last().copied(), Some(10.0), "{rates:?}");
        // 6.3 -> 10 in steps of 0.5 a minute: eight clean minutes.
        assert_eq!(rates.len(), 9, "{rates:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_are_served_user_then_check_then_background() {
        let l = exact(1.0);
        let _first = l.acquire("k", Lane::User).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        for lane in [Lane::Background, Lane::Check, Lane::User] {
            let (l, order) = (l.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let permit = l.acquire("k", lane).await;
                order.lock().unwrap().push(permit.lane());
            });
        }
        until(|| l.state(&"k").unwrap().waiting == [1, 1, 1]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            *order.lock().unwrap(),
            vec![Lane::User, Lane::Check, Lane::Background]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn background_gets_one_grant_in_ten_while_users_keep_it_busy() {
        let l = limiter(100.0);
        let _first = l.acquire("k", Lane::User).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        for lane in
            std::iter::repeat_n(Lane::Background, 5).chain(std::iter::repeat_n(Lane::User, 40))
        {
            let (l, order) = (l.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let permit = l.acquire("k", lane).await;
                order.lock().unwrap().push(permit.lane());
            });
        }
        until(|| l.state(&"k").unwrap().waiting == [40, 0, 5]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 45);
        let background: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, lane)| **lane == Lane::Background)
            .map(|(i, _)| i + 1)
            .collect();
        // The 10th, 20th, 30th and 40th grants, then the last one once the users are served.
        assert_eq!(background, vec![10, 20, 30, 40, 45]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_acquire_takes_no_token_and_leaves_the_queue() {
        let l = exact(1.0);
        let start = Instant::now();
        let _first = l.acquire("k", Lane::User).await;
        // A background waiter queued behind a user waiter...
        let background = tokio::spawn({
            let l = l.clone();
            async move {
                l.acquire("k", Lane::Background).await;
                Instant::now()
            }
        });
        until(|| l.state(&"k").unwrap().waiting == [0, 0, 1]).await;
        // ...and the user waiter, due at 1 s, dropped at 0.5 s.
        let dropped =
            tokio::time::timeout(Duration::from_millis(500), l.acquire("k", Lane::User)).await;
        assert!(dropped.is_err());
        assert_eq!(l.state(&"k").unwrap().waiting, [0, 0, 1]);
        // The background waiter is not stranded and gets the token the user would have had.
        let granted = background.await.ok();
        assert_eq!(
            granted,
            Some(start + Duration::from_secs(1)),
            "no token lost"
        );
        l.acquire("k", Lane::Check).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_probe_frees_the_probe_slot() {
        let l = limiter(10.0);
        l.on_throttled(&"k", None);
        let probe = l.acquire("k", Lane::User).await;
        assert!(probe.is_probe());
        drop(probe); // e.g. connection refused: nothing was sent
        let again = l.acquire("k", Lane::User).await;
        assert!(again.is_probe(), "the next call probes instead");
        // A late success reported by a non-probe caller does not end someone else's probe.
        l.shared.succeeded(&"k", Reporter::Permit { probe: None });
        assert!(l.state(&"k").unwrap().probing);
        again.succeeded();
        assert!(!l.state(&"k").unwrap().probing);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent() {
        let l = exact(1.0);
        let start = Instant::now();
        l.on_throttled(&"a", None);
        l.acquire("b", Lane::User).await;
        l.acquire("c", Lane::User).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(l.snapshot().len(), 3);
    }

    #[test]
    fn the_next_minute_starts_at_the_wall_clock_boundary() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = WallClock::starting_at(half_past());
            let now = Instant::now();
            assert_eq!(clock.next_minute(now), now + Duration::from_secs(30));
            let on_boundary = now + Duration::from_secs(30);
            assert_eq!(
                clock.next_minute(on_boundary),
                on_boundary + Duration::from_secs(60),
                "throttled at second 0 of minute T: accepted from T+1"
            );
            assert_eq!(
                clock.wall(on_boundary),
                half_past() + Duration::from_secs(30)
            );
        });
    }
}
