//! Injected failures, for fault and soak tests: a rule answers a share of the matching requests
//! (method, and a path fragment such as `/status`) with `409 Conflict` or `500 InternalError`
//! before they reach the REST layer, as a busy or failing API server does. Off unless a test sets
//! rules ([`crate::sandbox::Sandbox::set_faults`]); the draws come from a seeded generator so a run
//! can be repeated, and every answer given is counted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Method;

use crate::api_error::ApiError;

/// What a firing rule answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAnswer {
    /// `409 Conflict` (a stale write, as under contention).
    Conflict,
    /// `500 InternalError` (etcd or the API server failing).
    InternalError,
}

/// One rule: requests with `method` whose path contains `path_contains` fail with `answer`
/// with probability `probability` (0..=1).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The HTTP method matched (`PATCH` for status patches).
    pub method: Method,
    /// A fragment of the request path (`/status`); empty matches every path.
    pub path_contains: String,
    /// The answer.
    pub answer: FaultAnswer,
    /// The share of matching requests that fail.
    pub probability: f64,
}

/// The rules in force, their generator and counters.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
    conflicts: AtomicU64,
    internal_errors: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<FaultRule>,
    seed: u64,
}

impl Faults {
    /// Replaces the rules and reseeds the generator (no rules: no injected failure).
    pub fn set(&self, rules: Vec<FaultRule>, seed: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.rules = rules;
        state.seed = seed;
    }

    /// How many `409` and `500` answers were injected so far.
    pub fn injected(&self) -> (u64, u64) {
        (
            self.conflicts.load(Ordering::Relaxed),
            self.internal_errors.load(Ordering::Relaxed),
        )
    }

    /// The injected failure for this request, if a rule fires.
    pub fn check(&self, method: &Method, path: &str) -> Option<ApiError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.rules.is_empty() {
            return None;
        }
        // Each matching rule draws in turn; the first that fires answers.
        let mut fired = None;
        for index in 0..state.rules.len() {
            let rule = &state.rules[index];
            if rule.method != *method || !path.contains(&rule.path_contains) {
                continue;
            }
            let probability = rule.probability;
            if next_unit(&mut state.seed) < probability {
                fired = Some(state.rules[index].clone());
                break;
            }
        }
        let rule = fired?;
        Some(match rule.answer {
            FaultAnswer::Conflict => {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
                ApiError::conflict(
                    "",
                    "injected",
                    "",
                    "the object has been modified; please apply your changes to the latest version \
                     and try again (injected)",
                )
            }
            FaultAnswer::InternalError => {
                self.internal_errors.fetch_add(1, Ordering::Relaxed);
                ApiError::internal("etcdserver: request timed out (injected)")
            }
        })
    }
}

/// A uniform draw in `[0, 1)` from a splitmix64 state.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss)]
    let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(probability: f64) -> FaultRule {
        FaultRule {
            method: Method::PATCH,
            path_contains: "/status".into(),
            answer: FaultAnswer::Conflict,
            probability,
        }
    }

    #[test]
    fn no_rules_no_failure() {
        let faults = Faults::default();
        assert!(faults.check(&Method::PATCH, "/apis/x/status").is_none());
    }

    #[test]
    fn a_rule_matches_method_and_path_and_fires_about_its_share() {
        let faults = Faults::default();
        faults.set(vec![rule(0.25)], 7);
        assert!(faults.check(&Method::GET, "/apis/x/status").is_none());
        assert!(faults.check(&Method::PATCH, "/apis/x").is_none());
        let fired = (0..4_000)
            .filter(|_| faults.check(&Method::PATCH, "/apis/x/status").is_some())
            .count();
        assert!((800..1_200).contains(&fired), "{fired}");
        assert_eq!(faults.injected().0, fired as u64);
        let error = {
            faults.set(vec![rule(1.0)], 1);
            faults.check(&Method::PATCH, "/a/status").unwrap()
        };
        assert_eq!(error.code(), 409);
    }

    #[test]
    fn every_matching_rule_draws_so_both_answers_come() {
        let faults = Faults::default();
        let mut internal = rule(0.2);
        internal.answer = FaultAnswer::InternalError;
        faults.set(vec![rule(0.2), internal], 11);
        for _ in 0..1_000 {
            let _ = faults.check(&Method::PATCH, "/a/status");
        }
        let (conflicts, errors) = faults.injected();
        assert!(conflicts > 100 && errors > 100, "{conflicts} {errors}");
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let draws = |seed| {
            let faults = Faults::default();
            faults.set(vec![rule(0.5)], seed);
            (0..64)
                .map(|_| faults.check(&Method::PATCH, "/status").is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }
}
