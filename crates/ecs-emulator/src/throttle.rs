//! Rate limits, as ECS applies them, checked right after authentication:
//!
//! - `qps:` (per access key and action): a token bucket per (access key, action) holding at
//!   most one second of requests and refilled at the configured rate. The key `*` sets a limit
//!   for every action without its own; a limit of 0 throttles every call.
//! - `rateLimits:` (per account, region and action, as ECS counts them: every credential of an
//!   account spends the same budget): per action (or `*`) a `perSecond` token bucket (burst of
//!   one second) and a `perMinute` window of wall-clock minutes: once N calls were accepted in
//!   minute T, every further call in T is throttled, and calls are accepted again from T+1.
//!   With `holdMinute`, any throttled call (bucket or window) blocks that (account, region,
//!   action) for the rest of its minute, as ECS documents ("throttled in minute T, callable
//!   again from T+1"). With `retryAfter`, throttled answers carry `x-acs-retry-after`
//!   (milliseconds until a call would be accepted).
//!
//! A throttled request (answered `Throttling.User`) consumes nothing and does not act. Time is
//! passed in ([`Throttle::admit`] takes the wall-clock now), so tests run minutes instantly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-account limits of one action (`rateLimits.actions.<Action>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionLimit {
    /// Token bucket: this many calls per second, bursts of at most one second's worth
    /// (0 = every call throttled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    /// At most this many accepted calls per wall-clock minute (0 = every call throttled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
}

impl ActionLimit {
    /// A per-second limit.
    #[must_use]
    pub fn per_second(rate: u32) -> Self {
        Self {
            per_second: Some(rate),
            per_minute: None,
        }
    }

    /// A per-minute limit.
    #[must_use]
    pub fn per_minute(count: u32) -> Self {
        Self {
            per_second: None,
            per_minute: Some(count),
        }
    }

    /// Adds a per-minute limit.
    #[must_use]
    pub fn and_per_minute(mut self, count: u32) -> Self {
        self.per_minute = Some(count);
        self
    }
}

/// Per-(account, region, action) limits (`rateLimits:` in the state file and in
/// `/_emulator/settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    /// Limits by action name; `*` applies to every action without its own.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionLimit>,
    /// Send `x-acs-retry-after` (milliseconds) on throttled answers.
    #[serde(default)]
    pub retry_after: bool,
    /// A throttled call blocks its (account, region, action) until the next wall-clock minute.
    #[serde(default)]
    pub hold_minute: bool,
}

impl RateLimits {
    /// Limits for these actions.
    #[must_use]
    pub fn new(actions: impl IntoIterator<Item = (impl Into<String>, ActionLimit)>) -> Self {
        Self {
            actions: actions.into_iter().map(|(a, l)| (a.into(), l)).collect(),
            ..Self::default()
        }
    }

    /// Sends `x-acs-retry-after` on throttled answers.
    #[must_use]
    pub fn with_retry_after(mut self) -> Self {
        self.retry_after = true;
        self
    }

    /// Blocks an action for the rest of the minute once it was throttled.
    #[must_use]
    pub fn with_hold_minute(mut self) -> Self {
        self.hold_minute = true;
        self
    }

    /// Checks that every action named is one the emulator serves (or `*`).
    ///
    /// # Errors
    /// A message naming the unknown action.
    pub fn validate(&self) -> Result<(), String> {
        match self
            .actions
            .keys()
            .find(|a| *a != "*" && !crate::actions::is_known(a))
        {
            Some(bad) => Err(format!(
                "rateLimits names {bad:?}, which is not an action the emulator serves"
            )),
            None => Ok(()),
        }
    }

    fn limit_for(&self, action: &str) -> Option<ActionLimit> {
        self.actions
            .get(action)
            .or_else(|| self.actions.get("*"))
            .copied()
    }
}

/// Who is calling what, for the limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub access_key: &'a str,
    pub account: &'a str,
    pub region: &'a str,
    pub action: &'a str,
}

/// A refusal: how long until a call would be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Throttled {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: jiff::Timestamp,
}

impl Bucket {
    fn full(rate: f64, now: jiff::Timestamp) -> Self {
        Self {
            tokens: rate,
            last: now,
        }
    }

    /// Refills up to `now` (never backwards) and says whether a token is available; when not,
    /// how long until one is.
    fn refill(&mut self, rate: f64, now: jiff::Timestamp) -> Result<(), Duration> {
        let elapsed = now.duration_since(self.last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if now > self.last {
            self.last = now;
        }
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    bucket: Option<Bucket>,
    minute: i64,
    count: u32,
    held: Option<i64>,
}

/// The limits and their buckets and windows.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    qps: BTreeMap<String, u32>,
    key_buckets: HashMap<(String, String), Bucket>,
    rates: RateLimits,
    windows: HashMap<(String, String, String), Window>,
}

/// The wall-clock minute `now` is in, and how long until the next one starts.
fn minute_of(now: jiff::Timestamp) -> (i64, Duration) {
    let ms = now.as_millisecond();
    let minute = ms.div_euclid(60_000);
    let left = (minute + 1) * 60_000 - ms;
    (minute, Duration::from_millis(left.unsigned_abs()))
}

impl Throttle {
    /// Per-key limits per action (`*` = any other action) and per-account limits.
    pub(crate) fn new(qps: BTreeMap<String, u32>, rates: RateLimits) -> Self {
        Self {
            qps,
            rates,
            ..Self::default()
        }
    }

    /// The per-key limits.
    pub(crate) fn qps(&self) -> &BTreeMap<String, u32> {
        &self.qps
    }

    /// The per-account limits.
    pub(crate) fn rate_limits(&self) -> &RateLimits {
        &self.rates
    }

    /// Whether throttled answers carry `x-acs-retry-after`.
    pub(crate) fn sends_retry_after(&self) -> bool {
        self.rates.retry_after
    }

    /// Replaces every per-key limit and forgets their buckets.
    pub(crate) fn set_qps(&mut self, limits: BTreeMap<String, u32>) {
        self.qps = limits;
        self.key_buckets.clear();
    }

    /// Replaces the per-account limits and forgets their buckets and windows.
    pub(crate) fn set_rate_limits(&mut self, rates: RateLimits) {
        self.rates = rates;
        self.windows.clear();
    }

    /// Takes a token for this call from every limit that applies, or none at all when one of
    /// them refuses.
    pub(crate) fn admit(&mut self, c: Caller<'_>, now: jiff::Timestamp) -> Result<(), Throttled> {
        let (minute, to_next_minute) = minute_of(now);
        let mut wait: Option<Duration> = None;
        let mut refuse = |d: Duration| wait = Some(wait.map_or(d, |w| w.max(d)));

        let qps = self
            .qps
            .get(c.action)
            .or_else(|| self.qps.get("*"))
            .copied();
        let mut key_bucket = None;
        match qps {
            None => {}
            Some(0) => refuse(Duration::from_secs(1)),
            Some(rate) => {
                let rate = f64::from(rate);
                let bucket = self
                    .key_buckets
                    .entry((c.access_key.to_owned(), c.action.to_owned()))
                    .or_insert_with(|| Bucket::full(rate, now));
                match bucket.refill(rate, now) {
                    Ok(()) => key_bucket = Some(bucket),
                    Err(d) => refuse(d),
                }
            }
        }

        let mut window = None;
        if let Some(limit) = self.rates.limit_for(c.action) {
            let w = self
                .windows
                .entry((
                    c.account.to_owned(),
                    c.region.to_owned(),
                    c.action.to_owned(),
                ))
                .or_insert(Window {
                    bucket: None,
                    minute,
                    count: 0,
                    held: None,
                });
            if w.minute != minute {
                w.minute = minute;
                w.count = 0;
            }
            if w.held == Some(minute) {
                refuse(to_next_minute);
            }
            if let Some(n) = limit.per_minute
                && w.count >= n
            {
                refuse(to_next_minute);
            }
            match limit.per_second {
                None => {}
                Some(0) => refuse(to_next_minute),
                Some(rate) => {
                    let rate = f64::from(rate);
                    let bucket = w.bucket.get_or_insert_with(|| Bucket::full(rate, now));
                    if let Err(d) = bucket.refill(rate, now) {
                        refuse(d);
                    }
                }
            }
            window = Some(w);
        }

        if let Some(retry) = wait {
            if self.rates.hold_minute
                && let Some(w) = window
            {
                w.held = Some(minute);
                return Err(Throttled {
                    retry_after: to_next_minute,
                });
            }
            return Err(Throttled {
                retry_after: retry.max(Duration::from_millis(1)),
            });
        }
        if let Some(b) = key_bucket {
            b.tokens -= 1.0;
        }
        if let Some(w) = window {
            w.count += 1;
            if let Some(b) = &mut w.bucket {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;

    fn limits(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn qps(pairs: &[(&str, u32)]) -> Throttle {
        Throttle::new(limits(pairs), RateLimits::default())
    }

    fn key<'a>(access_key: &'a str, action: &'a str) -> Caller<'a> {
        Caller {
            access_key,
            account: "1",
            region: "cn-hangzhou",
            action,
        }
    }

    fn acct<'a>(access_key: &'a str, account: &'a str, region: &'a str) -> Caller<'a> {
        Caller {
            access_key,
            account,
            region,
            action: "StartInstances",
        }
    }

    /// 12:00:00.000 UTC of some day: the start of a wall-clock minute.
    fn minute_start() -> Timestamp {
        "2030-01-01T12:00:00Z".parse().unwrap()
    }

    fn ms(n: i64) -> SignedDuration {
        SignedDuration::from_millis(n)
    }

    #[test]
    fn allows_a_burst_of_qps_then_throttles() {
        let mut t = qps(&[("StartInstance", 3)]);
        let now = Timestamp::now();
        let admitted = (0..5)
            .filter(|_| t.admit(key("AK1", "StartInstance"), now).is_ok())
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn refills_at_the_rate() {
        let mut t = qps(&[("StartInstance", 2)]);
        let t0 = Timestamp::now();
        let c = key("AK1", "StartInstance");
        assert!(t.admit(c, t0).is_ok());
        assert!(t.admit(c, t0).is_ok());
        let refused = t.admit(c, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(t.admit(c, t0 + ms(400)).is_err());
        assert!(t.admit(c, t0 + ms(600)).is_ok());
    }

    #[test]
    fn is_per_key_and_per_action() {
        let mut t = qps(&[("StartInstance", 1)]);
        let now = Timestamp::now();
        assert!(t.admit(key("AK1", "StartInstance"), now).is_ok());
        assert!(t.admit(key("AK1", "StartInstance"), now).is_err());
        assert!(t.admit(key("AK2", "StartInstance"), now).is_ok());
        assert!(
            t.admit(key("AK1", "StopInstance"), now).is_ok(),
            "unlimited action"
        );
    }

    #[test]
    fn star_and_zero() {
        let mut t = qps(&[("*", 0), ("DescribeInstances", 100)]);
        let now = Timestamp::now();
        assert!(t.admit(key("AK1", "StartInstance"), now).is_err());
        assert!(t.admit(key("AK1", "DescribeInstances"), now).is_ok());
        t.set_qps(BTreeMap::new());
        assert!(t.admit(key("AK1", "StartInstance"), now).is_ok());
        assert!(t.qps().is_empty());
    }

    #[test]
    fn the_per_second_bucket_is_shared_by_the_keys_of_one_account_and_region() {
        let mut t = Throttle::new(
            BTreeMap::new(),
            RateLimits::new([("StartInstances", ActionLimit::per_second(2))]),
        );
        let t0 = minute_start() + ms(10_000);
        assert!(t.admit(acct("AK1", "A", "r1"), t0).is_ok());
        assert!(t.admit(acct("AK2", "A", "r1"), t0).is_ok());
        let refused = t.admit(acct("AK1", "A", "r1"), t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(
            t.admit(acct("AK3", "B", "r1"), t0).is_ok(),
            "another account"
        );
        assert!(
            t.admit(acct("AK1", "A", "r2"), t0).is_ok(),
            "another region"
        );
        assert!(t.admit(acct("AK2", "A", "r1"), t0 + ms(500)).is_ok());
        assert!(t.admit(acct("AK2", "A", "r1"), t0 + ms(500)).is_err());
    }

    #[test]
    fn the_minute_window_refuses_the_rest_of_minute_t_and_accepts_from_t_plus_1() {
        let mut t = Throttle::new(
            BTreeMap::new(),
            RateLimits::new([("StartInstances", ActionLimit::per_minute(3))]),
        );
        let t0 = minute_start() + ms(50_000);
        for i in 0..3 {
            assert!(t.admit(acct("AK1", "A", "r"), t0 + ms(i)).is_ok());
        }
        let refused = t.admit(acct("AK2", "A", "r"), t0 + ms(3)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(9_997));
        assert!(
            t.admit(acct("AK1", "A", "r"), minute_start() + ms(59_999))
                .is_err(),
            "the last millisecond of minute T"
        );
        let next = minute_start() + ms(60_000);
        for _ in 0..3 {
            assert!(t.admit(acct("AK1", "A", "r"), next).is_ok());
        }
        assert!(t.admit(acct("AK1", "A", "r"), next).is_err());
    }

    #[test]
    fn a_throttled_call_consumes_nothing() {
        // A per-key limit refuses: the account's minute count and bucket are untouched.
        let mut t = Throttle::new(
            limits(&[("StartInstances", 1)]),
            RateLimits::new([(
                "StartInstances",
                ActionLimit::per_second(10).and_per_minute(2),
            )]),
        );
        let t0 = minute_start();
        assert!(t.admit(acct("AK1", "A", "r"), t0).is_ok());
        for _ in 0..5 {
            assert!(t.admit(acct("AK1", "A", "r"), t0).is_err());
        }
        assert!(t.admit(acct("AK2", "A", "r"), t0).is_ok(), "second of two");
        assert!(t.admit(acct("AK3", "A", "r"), t0).is_err(), "window full");
    }

    #[test]
    fn hold_minute_blocks_the_rest_of_the_minute_after_any_throttle() {
        let mut t = Throttle::new(
            BTreeMap::new(),
            RateLimits::new([("StartInstances", ActionLimit::per_second(1))]).with_hold_minute(),
        );
        let t0 = minute_start() + ms(30_000);
        assert!(t.admit(acct("AK1", "A", "r"), t0).is_ok());
        let refused = t.admit(acct("AK1", "A", "r"), t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        assert!(
            t.admit(acct("AK1", "A", "r"), t0 + ms(29_000)).is_err(),
            "bucket refilled, still held"
        );
        assert!(
            t.admit(acct("AK1", "A", "r"), minute_start() + ms(60_000))
                .is_ok()
        );
    }

    #[test]
    fn star_limits_and_replacing_them_forgets_the_windows() {
        let mut t = Throttle::new(
            BTreeMap::new(),
            RateLimits::new([("*", ActionLimit::per_minute(1))]),
        );
        let now = minute_start();
        let describe = Caller {
            action: "DescribeInstances",
            ..acct("AK1", "A", "r")
        };
        assert!(t.admit(describe, now).is_ok());
        assert!(t.admit(describe, now).is_err());
        assert!(t.admit(acct("AK1", "A", "r"), now).is_ok(), "own window");
        t.set_rate_limits(RateLimits::new([("*", ActionLimit::per_minute(1))]));
        assert!(t.admit(describe, now).is_ok());
        t.set_rate_limits(RateLimits::new([("*", ActionLimit::per_second(0))]));
        assert!(t.admit(describe, now).is_err());
        assert!(t.rate_limits().actions.contains_key("*"));
    }

    #[test]
    fn rate_limits_parse_and_validate() {
        let r: RateLimits = serde_yaml::from_str(
            "{actions: {StartInstances: {perSecond: 5, perMinute: 300}, '*': {perSecond: 20}}, retryAfter: true}",
        )
        .unwrap();
        assert_eq!(
            r.actions["StartInstances"],
            ActionLimit::per_second(5).and_per_minute(300)
        );
        assert!(r.retry_after && !r.hold_minute);
        r.validate().unwrap();
        let bad = RateLimits::new([("StartInstanse", ActionLimit::per_second(1))]);
        assert!(bad.validate().is_err());
        assert!(serde_yaml::from_str::<RateLimits>("{actions: {X: {perHour: 1}}}").is_err());
    }
}
