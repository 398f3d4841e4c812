//! Backoff per error class: how long the controller waits before the next ECS call for
//! a resource after an error, and how often it polls a transition or re-checks a steady state.
//!
//! Pure functions of (class, attempt, random draw): the random source is injected so the schedule is
//! unit-tested exactly. The resulting attempt count and next attempt time are kept in
//! `status.retry` by the report step, so backoff survives an operator restart.

use std::time::Duration;

use rand::Rng;

use crate::api::RetryStatus;
use crate::ecs::ErrorClass;

/// How often a write call that failed with a terminal error is tried again (the resource itself is
/// observed every resync interval meanwhile).
pub const TERMINAL_RECHECK: Duration = Duration::from_secs(10 * 60);

/// Consecutive conflict errors re-observed every 2–5 s before the transient schedule takes over.
pub const CONFLICT_ATTEMPTS: i32 = 5;

/// First and largest delay of one class: delays grow as `base * 2^(attempt-1)` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay ceiling of the first attempt (also the floor of every delay).
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl BackoffPolicy {
    /// The policy of an error class, or `None` for terminal errors (no retry of the write call).
    pub fn for_class(class: ErrorClass) -> Option<BackoffPolicy> {
        let (base, max) = match class {
            ErrorClass::Transient => (1, 300),
            ErrorClass::Throttled => (2, 300),
            ErrorClass::Capacity => (30, 1800),
            // Conflict means "the instance is not in the state the call needs": re-observe soon.
            ErrorClass::Conflict => (2, 5),
            ErrorClass::Terminal => return None,
        };
        Some(BackoffPolicy {
            base: Duration::from_secs(base),
            max: Duration::from_secs(max),
        })
    }

    /// The exponential ceiling for the given 1-based attempt.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The delay before the next attempt: full jitter between the base and the ceiling, so that
    /// resources failing together (a regional outage, throttling) do not retry together.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        if ceiling <= self.base {
            return ceiling;
        }
        let span = u64::try_from(ceiling.saturating_sub(self.base).as_millis()).unwrap_or(u64::MAX);
        self.base + Duration::from_millis(rng.random_range(0..=span))
    }

    /// The range of delays for condition messages, such as `1 s to 5 min`.
    pub fn span(&self) -> String {
        format!("{} to {}", short(self.base), short(self.max))
    }
}

/// A delay in the short form of condition messages: `30 s`, `5 min`, `2 h`.
pub fn short(delay: Duration) -> String {
    let secs = delay.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A recurring delay in the words of condition messages: `every 10 minutes`, `every minute`.
pub fn every(delay: Duration) -> String {
    let secs = delay.as_secs();
    match secs {
        60 => "every minute".to_string(),
        s if s >= 60 && s % 60 == 0 => format!("every {} minutes", s / 60),
        1 => "every second".to_string(),
        s => format!("every {s} seconds"),
    }
}

/// The attempt number of a failure of `class` in `action` (`None`: no call could be made), given
/// the retry state of the same generation: the count continues only for the same class and the
/// same call; anything else starts again at 1.
pub fn attempt(previous: Option<&RetryStatus>, class: ErrorClass, action: Option<&str>) -> i32 {
    match previous {
        Some(r) if r.class.as_deref() == Some(class.as_str()) && r.action.as_deref() == action => {
            r.attempts.saturating_add(1)
        }
        _ => 1,
    }
}

/// How long to wait before re-observing a transition in flight: 2 s at first, growing with the time
/// the transition has already taken, at most 15 s.
pub fn transition_poll(elapsed: Option<Duration>) -> Duration {
    const MIN: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(15);
    match elapsed {
        Some(elapsed) => (elapsed / 4).clamp(MIN, MAX),
        // Someone else started the transition; we do not know when.
        None => Duration::from_secs(5),
    }
}

/// The steady-state resync delay with ±10 % jitter, so that resources created together do not all
/// hit the ECS API in the same second forever.
pub fn resync_delay(interval: Duration, rng: &mut impl Rng) -> Duration {
    let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX / 2);
    let tenth = millis / 10;
    let low = millis - tenth;
    Duration::from_millis(rng.random_range(low..=low + 2 * tenth))
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn each_class_has_the_design_schedule() {
        let secs = |c| BackoffPolicy::for_class(c).map(|p| (p.base.as_secs(), p.max.as_secs()));
        assert_eq!(secs(ErrorClass::Transient), Some((1, 300)));
        assert_eq!(secs(ErrorClass::Throttled), Some((2, 300)));
        assert_eq!(secs(ErrorClass::Capacity), Some((30, 1800)));
        assert_eq!(secs(ErrorClass::Conflict), Some((2, 5)));
        assert_eq!(secs(ErrorClass::Terminal), None);
    }

    #[test]
    fn ceilings_grow_exponentially_and_stop_at_max() {
        let p = BackoffPolicy::for_class(ErrorClass::Capacity).expect("capacity retries");
        let ceilings: Vec<u64> = (1..=8).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [30, 60, 120, 240, 480, 960, 1800, 1800]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1800));
    }

    #[test]
    fn delays_stay_between_base_and_ceiling_and_are_jittered() {
        let p = BackoffPolicy::for_class(ErrorClass::Transient).expect("transient retries");
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(p.delay(1, &mut rng), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..50).map(|_| p.delay(6, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= p.base && *d <= p.ceiling(6)));
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "no jitter: {delays:?}"
        );
    }

    #[test]
    fn transitions_are_polled_between_2_and_15_seconds() {
        assert_eq!(
            transition_poll(Some(Duration::ZERO)),
            Duration::from_secs(2)
        );
        assert_eq!(
            transition_poll(Some(Duration::from_secs(20))),
            Duration::from_secs(5)
        );
        assert_eq!(
            transition_poll(Some(Duration::from_secs(600))),
            Duration::from_secs(15)
        );
        assert_eq!(transition_poll(None), Duration::from_secs(5));
    }

    #[test]
    fn attempts_count_one_class_of_one_call() {
        use ErrorClass::{Capacity, Conflict, Terminal, Throttled, Transient};
        let at = |attempts, class: ErrorClass, action: Option<&str>| RetryStatus {
            attempts,
            class: Some(class.as_str().to_string()),
            action: action.map(str::to_string),
            next_attempt_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        let describe = Some("DescribeInstances");
        let start = Some("StartInstance");
        let stop = Some("StopInstance");
        let table: [(Option<RetryStatus>, ErrorClass, Option<&str>, i32); 11] = [
            // Nothing before: the first attempt.
            (None, Capacity, start, 1),
            // The same class of the same call: the count goes on.
            (Some(at(1, Capacity, start)), Capacity, start, 2),
            (Some(at(5, Transient, describe)), Transient, describe, 6),
            (Some(at(2, Throttled, stop)), Throttled, stop, 3),
            (Some(at(3, Conflict, start)), Conflict, start, 4),
            (Some(at(1, Terminal, None)), Terminal, None, 2),
            // Another class, or another call: a new count.
            (Some(at(5, Transient, describe)), Capacity, start, 1),
            (Some(at(5, Transient, start)), Throttled, start, 1),
            (Some(at(4, Capacity, start)), Capacity, stop, 1),
            (Some(at(2, Terminal, None)), Transient, describe, 1),
            // A status written before the count named its class: a new count.
            (
                Some(RetryStatus {
                    class: None,
                    action: None,
                    ..at(5, Transient, None)
                }),
                Transient,
                describe,
                1,
            ),
        ];
        for (previous, class, action, expected) in table {
            assert_eq!(
                attempt(previous.as_ref(), class, action),
                expected,
                "{previous:?} then {class} in {action:?}"
            );
        }
    }

    #[test]
    fn messages_render_the_constants() {
        let span = |c| BackoffPolicy::for_class(c).map(|p| p.span());
        assert_eq!(span(ErrorClass::Transient).as_deref(), Some("1 s to 5 min"));
        assert_eq!(span(ErrorClass::Throttled).as_deref(), Some("2 s to 5 min"));
        assert_eq!(
            span(ErrorClass::Capacity).as_deref(),
            Some("30 s to 30 min")
        );
        assert_eq!(every(TERMINAL_RECHECK), "every 10 minutes");
        assert_eq!(every(Duration::from_secs(60)), "every minute");
        assert_eq!(every(Duration::from_secs(20)), "every 20 seconds");
        assert_eq!(short(Duration::from_secs(7200)), "2 h");
    }

    #[test]
    fn resync_is_jittered_by_ten_percent() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let d = resync_delay(Duration::from_secs(300), &mut rng);
            assert!(
                d >= Duration::from_secs(270) && d <= Duration::from_secs(330),
                "{d:?}"
            );
        }
    }
}
