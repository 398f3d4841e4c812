//! The write gate: one switch checked at the three side-effect edges of a reconcile (the ECS write
//! call, the status write, the event). Open by default; a replica that must not write (a follower
//! under leader election, an operator shutting down) closes it and keeps its caches warm. A side
//! effect refused at a closed gate is not made, the resource is requeued, and the refusal is counted
//! in `ecs_power_fenced_writes_total{edge}`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Where a side effect leaves the reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edge {
    /// `StartInstance` / `StopInstance`.
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

/// Whether side effects may leave this replica.
#[derive(Debug)]
pub struct WriteGate {
    open: AtomicBool,
}

impl Default for WriteGate {
    fn default() -> Self {
        WriteGate {
            open: AtomicBool::new(true),
        }
    }
}

impl WriteGate {
    /// Whether side effects may be made now.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Lets side effects through.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Refuses side effects from now on.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_by_default_and_switchable() {
        let gate = WriteGate::default();
        assert!(gate.is_open());
        gate.close();
        assert!(!gate.is_open());
        gate.open();
        assert!(gate.is_open());
    }
}
