//! The instance store: every emulated instance, keyed and ordered by id, and their power state
//! machine (Stopped → Starting → Running, Running → Stopping → Stopped, Running → Stopping →
//! Starting → Running for a reboot).
//!
//! Transitions are computed lazily from timestamps: a record remembers when its transition began
//! and how long a phase lasts, and every read settles it to what the clock says. There are no
//! timers, so 100,000 instances cost only their memory. A delay of zero completes on the next
//! observation.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use super::instance::{Instance, Status, StoppedMode};

/// Which transition is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransitionKind {
    /// Starting, then Running.
    Start,
    /// Stopping, then Stopped.
    Stop,
    /// Stopping, then Starting, then Running.
    Reboot,
}

#[derive(Debug, Clone, Copy)]
struct Transition {
    kind: TransitionKind,
    began: Instant,
    phase: Duration,
}

impl Transition {
    /// The status `elapsed` after the transition began, and whether it is finished.
    // One arm per (kind, phase), read as the transition table; merging equal answers would hide it.
    #[allow(clippy::match_same_arms)]
    fn status_after(self, elapsed: Duration) -> (Status, bool) {
        match self.kind {
            TransitionKind::Start if elapsed < self.phase => (Status::Starting, false),
            TransitionKind::Start => (Status::Running, true),
            TransitionKind::Stop if elapsed < self.phase => (Status::Stopping, false),
            TransitionKind::Stop => (Status::Stopped, true),
            TransitionKind::Reboot if elapsed < self.phase => (Status::Stopping, false),
            TransitionKind::Reboot if elapsed < self.phase.saturating_mul(2) => {
                (Status::Starting, false)
            }
            TransitionKind::Reboot => (Status::Running, true),
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    instance: Instance,
    transition: Option<Transition>,
    /// When it last became Running (seconds since the epoch), for `StartTime`.
    started_at: Option<i64>,
}

/// The instances and the defaults their transitions use.
#[derive(Debug)]
pub(crate) struct InstanceStore {
    records: BTreeMap<String, Record>,
    transition_delay: Duration,
    default_stopped_mode: StoppedMode,
}

impl InstanceStore {
    /// An empty store.
    pub(crate) fn new(transition_delay: Duration, default_stopped_mode: StoppedMode) -> Self {
        Self {
            records: BTreeMap::new(),
            transition_delay,
            default_stopped_mode,
        }
    }

    /// How long Starting and Stopping last unless an instance overrides it.
    pub(crate) fn transition_delay(&self) -> Duration {
        self.transition_delay
    }

    /// Changes the default delay; transitions already in flight keep theirs.
    pub(crate) fn set_transition_delay(&mut self, delay: Duration) {
        self.transition_delay = delay;
    }

    /// The stopped mode a stop without `StoppedMode` uses.
    pub(crate) fn default_stopped_mode(&self) -> StoppedMode {
        self.default_stopped_mode
    }

    /// Changes the default stopped mode.
    pub(crate) fn set_default_stopped_mode(&mut self, mode: StoppedMode) {
        self.default_stopped_mode = mode;
    }

    /// Number of instances.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Removes every instance.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }

    /// Adds or replaces an instance. A status of Starting or Stopping begins that transition now.
    pub(crate) fn upsert(&mut self, instance: Instance, now: Instant) {
        let id = instance.id.clone();
        let status = instance.status;
        let started_at = (status == Status::Running).then(now_secs);
        self.records.insert(
            id.clone(),
            Record {
                instance,
                transition: None,
                started_at,
            },
        );
        self.begin_for_status(&id, status, now);
    }

    /// Removes an instance; false when it did not exist.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        self.records.remove(id).is_some()
    }

    /// Sets the status now, cancelling any transition; Starting/Stopping begin a transition.
    /// False when the instance does not exist.
    pub(crate) fn set_status(&mut self, id: &str, status: Status, now: Instant) -> bool {
        let Some(record) = self.records.get_mut(id) else {
            return false;
        };
        record.transition = None;
        record.instance.status = status;
        if status == Status::Running {
            record.started_at = Some(now_secs());
        }
        self.begin_for_status(id, status, now);
        true
    }

    fn begin_for_status(&mut self, id: &str, status: Status, now: Instant) {
        match status {
            Status::Starting => {
                self.begin(id, TransitionKind::Start, now);
            }
            Status::Stopping => {
                self.begin(id, TransitionKind::Stop, now);
            }
            _ => {}
        }
    }

    /// Begins a transition now and returns the status it shows at once. The caller has checked
    /// that the current status allows it.
    pub(crate) fn begin(&mut self, id: &str, kind: TransitionKind, now: Instant) -> Option<Status> {
        let default_delay = self.transition_delay;
        let record = self.records.get_mut(id)?;
        let phase = record.instance.transition_delay.unwrap_or(default_delay);
        let transition = Transition {
            kind,
            began: now,
            phase,
        };
        // The first phase is always shown, even with a zero delay: the call itself answers the
        // transitory status and the next observation settles it.
        let status = match kind {
            TransitionKind::Start => Status::Starting,
            TransitionKind::Stop | TransitionKind::Reboot => Status::Stopping,
        };
        record.transition = Some(transition);
        record.instance.status = status;
        Some(status)
    }

    /// The instance as the clock says it is now, or `None` when absent.
    pub(crate) fn observe(&mut self, id: &str, now: Instant) -> Option<&mut Instance> {
        let record = self.records.get_mut(id)?;
        settle(record, now);
        Some(&mut record.instance)
    }

    /// Like [`observe`](Self::observe), with `StartTime` (seconds since the epoch).
    pub(crate) fn observe_with_start(
        &mut self,
        id: &str,
        now: Instant,
    ) -> Option<(&Instance, Option<i64>)> {
        let record = self.records.get_mut(id)?;
        settle(record, now);
        Some((&record.instance, record.started_at))
    }

    /// Visits instances in id order, starting after `after` (exclusive) when given, settling each
    /// first; the visitor returns false to stop.
    pub(crate) fn scan(
        &mut self,
        after: Option<&str>,
        now: Instant,
        mut visit: impl FnMut(&Instance, Option<i64>) -> bool,
    ) {
        let range = match after {
            Some(a) => self
                .records
                .range_mut::<str, _>((Bound::Excluded(a), Bound::Unbounded)),
            None => self.records.range_mut::<str, _>(..),
        };
        for (_, record) in range {
            settle(record, now);
            if !visit(&record.instance, record.started_at) {
                break;
            }
        }
    }

    /// Every instance, settled, in id order.
    pub(crate) fn snapshot(&mut self, now: Instant) -> Vec<Instance> {
        let mut out = Vec::with_capacity(self.records.len());
        self.scan(None, now, |i, _| {
            out.push(i.clone());
            true
        });
        out
    }

    /// The ids in a set of regions (distinct region names, sorted).
    pub(crate) fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = self
            .records
            .values()
            .map(|r| r.instance.region.clone())
            .collect();
        regions.sort();
        regions.dedup();
        regions
    }
}

fn settle(record: &mut Record, now: Instant) {
    let Some(t) = record.transition else {
        return;
    };
    let (status, done) = t.status_after(now.saturating_duration_since(t.began));
    record.instance.status = status;
    if done {
        record.transition = None;
        if status == Status::Running {
            record.started_at = Some(now_secs());
        }
    }
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn store(delay_ms: u64) -> InstanceStore {
        InstanceStore::new(Duration::from_millis(delay_ms), StoppedMode::KeepCharging)
    }

    fn status(s: &mut InstanceStore, id: &str, now: Instant) -> Status {
        s.observe(id, now).unwrap().status
    }

    #[test]
    fn start_goes_through_starting_to_running() {
        let mut s = store(1000);
        let t0 = Instant::now();
        s.upsert(Instance::new("i-a", "r", Status::Stopped), t0);
        assert_eq!(
            s.begin("i-a", TransitionKind::Start, t0),
            Some(Status::Starting)
        );
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(999)),
            Status::Starting
        );
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_secs(1)),
            Status::Running
        );
        // Settled for good: an earlier clock reading does not bring Starting back.
        assert_eq!(status(&mut s, "i-a", t0), Status::Running);
    }

    #[test]
    fn stop_goes_through_stopping_to_stopped() {
        let mut s = store(500);
        let t0 = Instant::now();
        s.upsert(Instance::new("i-a", "r", Status::Running), t0);
        assert_eq!(
            s.begin("i-a", TransitionKind::Stop, t0),
            Some(Status::Stopping)
        );
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(499)),
            Status::Stopping
        );
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(500)),
            Status::Stopped
        );
    }

    #[test]
    fn reboot_stops_then_starts() {
        let mut s = store(100);
        let t0 = Instant::now();
        s.upsert(Instance::new("i-a", "r", Status::Running), t0);
        s.begin("i-a", TransitionKind::Reboot, t0);
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(50)),
            Status::Stopping
        );
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(150)),
            Status::Starting
        );
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(200)),
            Status::Running
        );
    }

    #[test]
    fn zero_delay_completes_on_next_observation() {
        let mut s = store(0);
        let t0 = Instant::now();
        s.upsert(Instance::new("i-a", "r", Status::Stopped), t0);
        assert_eq!(
            s.begin("i-a", TransitionKind::Start, t0),
            Some(Status::Starting)
        );
        assert_eq!(status(&mut s, "i-a", t0), Status::Running);
    }

    #[test]
    fn per_instance_delay_overrides_the_default() {
        let mut s = store(10_000);
        let t0 = Instant::now();
        s.upsert(
            Instance::new("i-a", "r", Status::Stopped)
                .with_transition_delay(Duration::from_millis(10)),
            t0,
        );
        s.begin("i-a", TransitionKind::Start, t0);
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(10)),
            Status::Running
        );
    }

    #[test]
    fn upserting_a_transitory_status_begins_the_transition() {
        let mut s = store(100);
        let t0 = Instant::now();
        s.upsert(Instance::new("i-a", "r", Status::Starting), t0);
        assert_eq!(status(&mut s, "i-a", t0), Status::Starting);
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(100)),
            Status::Running
        );
        assert!(s.set_status("i-a", Status::Stopping, t0));
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_millis(100)),
            Status::Stopped
        );
        assert!(!s.set_status("i-missing", Status::Running, t0));
    }

    #[test]
    fn set_status_cancels_a_transition() {
        let mut s = store(100);
        let t0 = Instant::now();
        s.upsert(Instance::new("i-a", "r", Status::Stopped), t0);
        s.begin("i-a", TransitionKind::Start, t0);
        s.set_status("i-a", Status::Stopped, t0);
        assert_eq!(
            status(&mut s, "i-a", t0 + Duration::from_secs(5)),
            Status::Stopped
        );
    }

    #[test]
    fn scan_resumes_after_a_cursor_in_id_order() {
        let mut s = store(0);
        let t0 = Instant::now();
        for id in ["i-c", "i-a", "i-b"] {
            s.upsert(Instance::new(id, "r", Status::Running), t0);
        }
        let mut seen = Vec::new();
        s.scan(Some("i-a"), t0, |i, _| {
            seen.push(i.id.clone());
            true
        });
        assert_eq!(seen, ["i-b", "i-c"]);
        assert_eq!(s.len(), 3);
        assert!(s.remove("i-b"));
        assert!(!s.remove("i-b"));
        assert_eq!(s.snapshot(t0).len(), 2);
    }
}
