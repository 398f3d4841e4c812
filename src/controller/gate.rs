//! The write gate: one switch checked at the side-effect edges of a reconcile (the ECS write call,
//! the status write, the event) and by everything else that would call ECS. Open by default; under
//! leader election it starts closed and the elector keeps it open only while this replica holds
//! the lease, up to the lease's local validity (the start of the last successful renewal plus the
//! renew deadline). ECS has no fencing token, so time is the guard: a write is admitted only if its
//! own timeout ends before that validity, and it is sent with that deadline. A replica that must
//! not write (a follower, an operator that lost its lease or is shutting down) keeps its caches
//! warm but makes no ECS call at all. A side effect refused at the gate is not made, the resource
//! is requeued, and the refusal is counted in `ecs_power_fenced_writes_total{edge}`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Where a side effect leaves the reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    /// `StartInstance` / `StopInstance` (one call or one entry of a batch).
    Act,
    /// The status write.
    Status,
    /// An event on the resource.
    Event,
}

impl Edge {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Act => "act",
            Edge::Status => "status",
            Edge::Event => "event",
        }
    }
}

/// The gate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No leader election: everything passes, with the callers' own timeouts.
    Open,
    /// Nothing passes.
    Closed,
    /// Leading: writes pass while they can finish before this instant.
    LeasedUntil(Instant),
}

/// A write the gate let through: it must be finished (or abandoned) by `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// When the write must be over; `None` without leader election (the callers' own timeouts).
    pub deadline: Option<Instant>,
}

/// Whether side effects may leave this replica.
#[derive(Debug)]
pub struct WriteGate {
    state: Mutex<State>,
    write_timeout: Duration,
}

impl Default for WriteGate {
    fn default() -> Self {
        WriteGate {
            state: Mutex::new(State::Open),
            write_timeout: Duration::ZERO,
        }
    }
}

impl WriteGate {
    /// A gate for leader election: closed until [`lease_valid_until`](Self::lease_valid_until)
    /// opens it; every admitted write gets `write_timeout`, and is admitted only if it ends before
    /// the lease's validity.
    pub fn leased(write_timeout: Duration) -> Self {
        WriteGate {
            state: Mutex::new(State::Closed),
            write_timeout,
        }
    }

    fn state(&self) -> State {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, state: State) {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// Whether this replica may call ECS (and make side effects) now: always without leader
    /// election, and while the lease is locally valid under it. Reads (observations, sweeps) ask
    /// this; writes ask [`admit`](Self::admit).
    pub fn is_open(&self) -> bool {
        match self.state() {
            State::Open => true,
            State::Closed => false,
            State::LeasedUntil(until) => Instant::now() < until,
        }
    }

    /// Admits one write: `None` when the gate is closed, or when a write started now with the
    /// gate's write timeout would not end before the lease's validity.
    pub fn admit(&self) -> Option<Admission> {
        match self.state() {
            State::Open => Some(Admission { deadline: None }),
            State::Closed => None,
            State::LeasedUntil(until) => {
                let deadline = Instant::now() + self.write_timeout;
                (deadline <= until).then_some(Admission {
                    deadline: Some(deadline),
                })
            }
        }
    }

    /// The timeout every admitted write gets under leader election (zero without).
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// Lets side effects through without a time bound (no leader election).
    pub fn open(&self) {
        self.set(State::Open);
    }

    /// Refuses side effects from now on.
    pub fn close(&self) {
        self.set(State::Closed);
    }

    /// Leading, with the lease valid (locally) until `until`: writes that end before it pass.
    /// A closed gate stays closed once the lease is lost: only the elector calls this, while
    /// leading.
    pub fn lease_valid_until(&self, until: Instant) {
        self.set(State::LeasedUntil(until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_by_default_and_switchable() {
        let gate = WriteGate::default();
        assert!(gate.is_open());
        assert_eq!(gate.admit(), Some(Admission { deadline: None }));
        gate.close();
        assert!(!gate.is_open());
        assert_eq!(gate.admit(), None);
        gate.open();
        assert!(gate.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn leased_gate_admits_only_writes_that_end_before_the_validity() {
        let gate = WriteGate::leased(Duration::from_secs(5));
        assert!(!gate.is_open(), "a follower's gate starts closed");
        assert_eq!(gate.admit(), None);
        let start = Instant::now();
        gate.lease_valid_until(start + Duration::from_secs(10));
        assert!(gate.is_open());
        assert_eq!(
            gate.admit(),
            Some(Admission {
                deadline: Some(start + Duration::from_secs(5))
            })
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        // Ends exactly at the validity: still admitted.
        assert!(gate.admit().is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(gate.admit(), None, "a write would outlive the lease");
        assert!(gate.is_open(), "reads still pass while the lease is valid");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!gate.is_open(), "past the validity nothing passes");
        gate.lease_valid_until(Instant::now() + Duration::from_secs(10));
        assert!(gate.admit().is_some());
        gate.close();
        assert_eq!(gate.admit(), None);
    }
}
