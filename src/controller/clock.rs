//! The wall clock that schedules are evaluated with: the system clock, optionally shifted by an
//! offset. The operator never shifts it; in-process tests move it forward to let scheduled
//! transitions pass without waiting for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// The system clock plus an offset (zero unless a test advanced it); clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Now, by this clock.
    pub fn now(&self) -> Timestamp {
        let offset = SignedDuration::from_millis(self.offset_ms.load(Ordering::Relaxed));
        Timestamp::now()
            .saturating_add(offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    /// Moves this clock (and every clone) forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_runs_ahead_of_the_system_clock_in_every_clone() {
        let clock = Clock::default();
        let copy = clock.clone();
        clock.advance(SignedDuration::from_hours(3));
        let ahead = copy.now().duration_since(Timestamp::now());
        assert!(ahead >= SignedDuration::from_mins(179), "{ahead:?}");
        assert!(ahead <= SignedDuration::from_mins(181), "{ahead:?}");
    }
}
