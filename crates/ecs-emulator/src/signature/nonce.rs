//! The nonce cache: `SignatureNonce` / `x-acs-signature-nonce` values seen per access key, kept
//! for twice the timestamp window (a request older or newer than the window is refused anyway),
//! so a replay within the window is answered `SignatureNonceUsed`. Expiry is in arrival order,
//! so purging is amortised O(1). Entries are 64-bit keyed hashes of (key id, nonce), about 40
//! bytes each, so a long run at a thousand requests per second stays well under 100 MB; a
//! false "used" needs a 64-bit collision with a per-process random key.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Seen nonces with their expiry.
#[derive(Debug)]
pub(crate) struct NonceCache {
    seen: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
    retention: Duration,
    hasher: RandomState,
}

impl NonceCache {
    /// A cache remembering each nonce for `retention`.
    pub(crate) fn new(retention: Duration) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            retention,
            hasher: RandomState::new(),
        }
    }

    /// Records the nonce; false when this key already used it within the retention.
    pub(crate) fn check_and_insert(&mut self, access_key: &str, nonce: &str, now: Instant) -> bool {
        self.purge(now);
        let key = self.hasher.hash_one((access_key, nonce));
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back((now + self.retention, key));
        true
    }

    fn purge(&mut self, now: Instant) {
        while let Some((expiry, _)) = self.order.front() {
            if *expiry > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
    }

    /// Number of remembered nonces.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_reuse_per_key() {
        let mut c = NonceCache::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(c.check_and_insert("AK1", "n1", now));
        assert!(!c.check_and_insert("AK1", "n1", now));
        assert!(c.check_and_insert("AK2", "n1", now));
        assert!(c.check_and_insert("AK1", "n2", now));
    }

    #[test]
    fn forgets_after_retention() {
        let mut c = NonceCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(c.check_and_insert("AK1", "n1", t0));
        assert!(c.check_and_insert("AK1", "n2", t0 + Duration::from_millis(500)));
        assert!(c.check_and_insert("AK1", "n3", t0 + Duration::from_millis(1100)));
        assert_eq!(c.len(), 2, "n1 expired");
        assert!(c.check_and_insert("AK1", "n1", t0 + Duration::from_millis(1100)));
    }
}
