//! Per-action QPS limits per access key (`qps:` in the state file): a token bucket per
//! (access key, action) holding at most one second of requests and refilled at the configured
//! rate. A request finding the bucket empty is answered `Throttling.User` and does not consume.
//! The key `*` sets a limit for every action without its own; a limit of 0 throttles every call.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limits and the buckets.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    limits: BTreeMap<String, u32>,
    buckets: HashMap<(String, String), Bucket>,
}

impl Throttle {
    /// Limits per action (`*` = any other action).
    pub(crate) fn new(limits: BTreeMap<String, u32>) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
        }
    }

    /// The configured limits.
    pub(crate) fn limits(&self) -> &BTreeMap<String, u32> {
        &self.limits
    }

    /// Replaces every limit and forgets the buckets.
    pub(crate) fn set_limits(&mut self, limits: BTreeMap<String, u32>) {
        self.limits = limits;
        self.buckets.clear();
    }

    fn limit_for(&self, action: &str) -> Option<u32> {
        self.limits
            .get(action)
            .or_else(|| self.limits.get("*"))
            .copied()
    }

    /// Takes a token for this key and action; false means throttled.
    pub(crate) fn admit(&mut self, access_key: &str, action: &str, now: Instant) -> bool {
        let Some(qps) = self.limit_for(action) else {
            return true;
        };
        if qps == 0 {
            return false;
        }
        let rate = f64::from(qps);
        let bucket = self
            .buckets
            .entry((access_key.to_owned(), action.to_owned()))
            .or_insert(Bucket {
                tokens: rate,
                last: now,
            });
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn allows_a_burst_of_qps_then_throttles() {
        let mut t = Throttle::new(limits(&[("StartInstance", 3)]));
        let now = Instant::now();
        let admitted = (0..5)
            .filter(|_| t.admit("AK1", "StartInstance", now))
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn refills_at_the_rate() {
        let mut t = Throttle::new(limits(&[("StartInstance", 2)]));
        let t0 = Instant::now();
        assert!(t.admit("AK1", "StartInstance", t0));
        assert!(t.admit("AK1", "StartInstance", t0));
        assert!(!t.admit("AK1", "StartInstance", t0));
        assert!(!t.admit("AK1", "StartInstance", t0 + Duration::from_millis(400)));
        assert!(t.admit("AK1", "StartInstance", t0 + Duration::from_millis(600)));
    }

    #[test]
    fn is_per_key_and_per_action() {
        let mut t = Throttle::new(limits(&[("StartInstance", 1)]));
        let now = Instant::now();
        assert!(t.admit("AK1", "StartInstance", now));
        assert!(!t.admit("AK1", "StartInstance", now));
        assert!(t.admit("AK2", "StartInstance", now));
        assert!(t.admit("AK1", "StopInstance", now), "unlimited action");
    }

    #[test]
    fn star_and_zero() {
        let mut t = Throttle::new(limits(&[("*", 0), ("DescribeInstances", 100)]));
        let now = Instant::now();
        assert!(!t.admit("AK1", "StartInstance", now));
        assert!(t.admit("AK1", "DescribeInstances", now));
        t.set_limits(BTreeMap::new());
        assert!(t.admit("AK1", "StartInstance", now));
        assert!(t.limits().is_empty());
    }
}
