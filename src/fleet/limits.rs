//! The rate-limit configuration: one ceiling per ECS API action, from `--ecs-rate-limit
//! ACTION=RATE` (repeatable) or its env twin `ECS_RATE_LIMITS` (a comma-separated list), over
//! conservative defaults.
//!
//! The adaptive limiter never sends faster than these ceilings; it starts just under them and backs
//! off when ECS throttles. ECS counts every action separately, per account and region, for every
//! caller of the account (the console, Terraform and other tools included), so a ceiling is a share
//! of the account's budget, not the whole of it.
//!
//! Pure parsing and lookup: [`RateLimit`] (one `ACTION=RATE`, what clap parses), [`RateLimits`]
//! (the full table), [`Rate`] (`5/s`, `300/m`, `0.5/s`) and [`EcsAction`]. Each type implements
//! `FromStr` and `Display`, and `Display` writes what `FromStr` reads.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The ECS (and STS) API actions the operator calls, each with its own rate budget.
///
/// `StartInstance` and `StartInstances` are separate APIs with separate limits in ECS (and so are
/// the stop pair): they never share a budget here either. The single calls are used only where the
/// batch call cannot do the job (`initLocalDisk`, dry runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EcsAction {
    /// `DescribeInstances`: the sweep and urgent reads, up to 100 IDs per call.
    DescribeInstances,
    /// `StartInstance`: one instance (`initLocalDisk`, dry runs).
    StartInstance,
    /// `StopInstance`: one instance (dry runs).
    StopInstance,
    /// `StartInstances`: up to 100 instances with `BatchOptimization=SuccessFirst`.
    StartInstances,
    /// `StopInstances`: up to 100 instances with `BatchOptimization=SuccessFirst`.
    StopInstances,
    /// STS `GetCallerIdentity`: the account ID behind a credential (cached per credential).
    GetCallerIdentity,
}

impl EcsAction {
    /// Every action, in a stable order (metrics, docs, defaults).
    pub const ALL: [EcsAction; 6] = [
        EcsAction::DescribeInstances,
        EcsAction::StartInstance,
        EcsAction::StopInstance,
        EcsAction::StartInstances,
        EcsAction::StopInstances,
        EcsAction::GetCallerIdentity,
    ];

    /// The API name as ECS (or STS) spells it, e.g. `StartInstances`.
    pub fn as_str(self) -> &'static str {
        match self {
            EcsAction::DescribeInstances => "DescribeInstances",
            EcsAction::StartInstance => "StartInstance",
            EcsAction::StopInstance => "StopInstance",
            EcsAction::StartInstances => "StartInstances",
            EcsAction::StopInstances => "StopInstances",
            EcsAction::GetCallerIdentity => "GetCallerIdentity",
        }
    }

    /// The conservative ceiling used when no `--ecs-rate-limit` names this action.
    ///
    /// Alibaba Cloud publishes no default API rate limits for ECS: each account reads its own in
    /// Quota Center ("API Rate Limits"), and they are shared with every other caller of the account.
    /// The lowest limits we have seen in practice are 5 calls/s for the start and stop actions and
    /// 10 calls/s for `DescribeInstances`; the defaults take less than half of those, leaving the rest
    /// to the console and other tools. With 100 IDs per batch call that is still 200 starts or stops
    /// and 500 observed instances per second: a sweep of 10,000 instances costs 20 s of budget.
    /// `GetCallerIdentity` is called once per credential, so 1/s is plenty.
    pub fn default_rate(self) -> Rate {
        match self {
            EcsAction::DescribeInstances => Rate::per_second(4.0),
            EcsAction::StartInstance
            | EcsAction::StopInstance
            | EcsAction::StartInstances
            | EcsAction::StopInstances => Rate::per_second(2.0),
            EcsAction::GetCallerIdentity => Rate::per_second(1.0),
        }
    }
}

impl fmt::Display for EcsAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EcsAction {
    type Err = RateLimitError;

    /// Exact API names only (`StartInstances`, not `startinstances`): a misspelt action is an error,
    /// never a silently ignored limit.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        EcsAction::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| RateLimitError::UnknownAction {
                name: name.to_owned(),
            })
    }
}

/// The unit a [`Rate`] was written in; kept so that `Display` gives back what the user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    /// `/s`
    Second,
    /// `/m`
    Minute,
}

/// A number of calls per second or per minute: `5/s`, `300/m`, `0.5/s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    calls: f64,
    unit: RateUnit,
}

impl Rate {
    /// The slowest rate accepted: one call per hour (anything slower is a typo, and the limiter's
    /// pacing interval must stay representable).
    pub const MIN_PER_SECOND: f64 = 1.0 / 3600.0;

    /// `calls` per second. Callers pass literals; parsed input goes through `FromStr`, which checks.
    pub const fn per_second(calls: f64) -> Rate {
        Rate {
            calls,
            unit: RateUnit::Second,
        }
    }

    /// `calls` per minute.
    pub const fn per_minute(calls: f64) -> Rate {
        Rate {
            calls,
            unit: RateUnit::Minute,
        }
    }

    /// The rate in calls per second.
    pub fn as_per_second(&self) -> f64 {
        match self.unit {
            RateUnit::Second => self.calls,
            RateUnit::Minute => self.calls / 60.0,
        }
    }

    /// The time between two calls at this rate.
    pub fn interval(&self) -> Duration {
        Duration::try_from_secs_f64(1.0 / self.as_per_second()).unwrap_or(Duration::MAX)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Second => "s",
            RateUnit::Minute => "m",
        };
        write!(f, "{}/{unit}", self.calls)
    }
}

impl FromStr for Rate {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        let invalid = |reason: &str| RateLimitError::InvalidRate {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (number, unit) = input
            .split_once('/')
            .ok_or_else(|| invalid("expected CALLS/s or CALLS/m, e.g. 5/s or 300/m"))?;
        let unit = match unit.trim() {
            "s" => RateUnit::Second,
            "m" => RateUnit::Minute,
            _ => return Err(invalid("the unit must be s (per second) or m (per minute)")),
        };
        let number = number.trim();
        // Plain decimals only: f64's parser would also take "inf", "NaN" and "1e3".
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(invalid(
                "the number of calls must be a decimal such as 5 or 0.5",
            ));
        }
        let calls: f64 = number
            .parse()
            .map_err(|_| invalid("the number of calls must be a decimal such as 5 or 0.5"))?;
        let rate = Rate { calls, unit };
        if rate.as_per_second() < Rate::MIN_PER_SECOND {
            return Err(invalid("the rate must be at least one call per hour"));
        }
        Ok(rate)
    }
}

/// One `ACTION=RATE` setting, as `--ecs-rate-limit` takes it (e.g. `StartInstances=5/s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// The action the ceiling applies to.
    pub action: EcsAction,
    /// The ceiling.
    pub rate: Rate,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.action, self.rate)
    }
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (action, rate) =
            s.trim()
                .split_once('=')
                .ok_or_else(|| RateLimitError::MissingEquals {
                    input: s.trim().to_owned(),
                })?;
        Ok(RateLimit {
            action: action.parse()?,
            rate: rate.parse()?,
        })
    }
}

/// The ceiling of every action: the defaults, overridden per action by the configured limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// Indexed like [`EcsAction::ALL`].
    rates: [Rate; 6],
    /// Which entries were configured rather than defaulted (for `Display` and logs).
    configured: [bool; 6],
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            rates: EcsAction::ALL.map(EcsAction::default_rate),
            configured: [false; 6],
        }
    }
}

impl RateLimits {
    /// The defaults with `limits` applied on top. An action given twice is an error: with a
    /// repeatable flag the second value is more likely a mistake than an intended override.
    ///
    /// # Errors
    /// [`RateLimitError::DuplicateAction`] when an action is given twice.
    pub fn from_limits(
        limits: impl IntoIterator<Item = RateLimit>,
    ) -> Result<RateLimits, RateLimitError> {
        let mut table = RateLimits::default();
        for limit in limits {
            let i = index(limit.action);
            if table.configured[i] {
                return Err(RateLimitError::DuplicateAction {
                    action: limit.action,
                });
            }
            table.rates[i] = limit.rate;
            table.configured[i] = true;
        }
        Ok(table)
    }

    /// The ceiling of `action`.
    pub fn ceiling(&self, action: EcsAction) -> Rate {
        self.rates[index(action)]
    }

    /// Whether `action`'s ceiling was configured (as opposed to its default).
    pub fn is_configured(&self, action: EcsAction) -> bool {
        self.configured[index(action)]
    }
}

fn index(action: EcsAction) -> usize {
    EcsAction::ALL
        .iter()
        .position(|a| *a == action)
        .unwrap_or_default()
}

impl FromStr for RateLimits {
    type Err = RateLimitError;

    /// A comma-separated list, as `ECS_RATE_LIMITS` holds it: `StartInstances=5/s,
    /// DescribeInstances=600/m`. Empty entries are skipped, so an empty string means the defaults.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let limits = s
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<RateLimit>, _>>()?;
        RateLimits::from_limits(limits)
    }
}

impl fmt::Display for RateLimits {
    /// Every configured limit, comma-separated (what `FromStr` reads back); the defaults are left
    /// out, so the defaults display as an empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for action in EcsAction::ALL {
            if self.is_configured(action) {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(
                    f,
                    "{}",
                    RateLimit {
                        action,
                        rate: self.ceiling(action)
                    }
                )?;
            }
        }
        Ok(())
    }
}

/// Why a rate-limit setting was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// No `=` between the action and the rate.
    #[error("invalid rate limit {input:?}: expected ACTION=RATE, e.g. StartInstances=5/s")]
    MissingEquals {
        /// The offending entry.
        input: String,
    },
    /// The action is not one the operator calls.
    #[error(
        "unknown ECS action {name:?} in a rate limit: expected one of DescribeInstances, \
         StartInstance, StopInstance, StartInstances, StopInstances, GetCallerIdentity"
    )]
    UnknownAction {
        /// The name as given.
        name: String,
    },
    /// The rate does not parse or is out of range.
    #[error("invalid rate {input:?}: {reason}")]
    InvalidRate {
        /// The rate as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same action was given twice.
    #[error("rate limit for {action} given more than once")]
    DuplicateAction {
        /// The repeated action.
        action: EcsAction,
    },
}

#[cfg(test)]
// Rates here are exact values from configuration, compared exactly on purpose.
#[allow(clippy::unwrap_used, clippy::panic, clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_per_second_and_per_minute_with_decimals() {
        let cases = [
            ("5/s", 5.0),
            ("300/m", 5.0),
            ("0.5/s", 0.5),
            (" 30 / m ", 0.5),
            ("1/m", 1.0 / 60.0),
        ];
        for (input, per_second) in cases {
            let rate: Rate = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(
                (rate.as_per_second() - per_second).abs() < 1e-12,
                "{input} -> {}",
                rate.as_per_second()
            );
        }
        assert_eq!(Rate::per_second(4.0).interval(), Duration::from_millis(250));
    }

    #[test]
    fn bad_rates_are_errors_that_say_why() {
        let cases = [
            ("5", "expected CALLS/s"),
            ("5/h", "unit must be s"),
            ("/s", "decimal"),
            ("-1/s", "decimal"),
            ("inf/s", "decimal"),
            ("NaN/s", "decimal"),
            ("1e3/s", "decimal"),
            ("1.2.3/s", "decimal"),
            ("0/s", "at least one call per hour"),
            ("0.01/m", "at least one call per hour"),
        ];
        for (input, needle) in cases {
            match input.parse::<Rate>() {
                Err(e) => assert!(e.to_string().contains(needle), "{input}: {e}"),
                Ok(r) => panic!("{input} accepted as {r}"),
            }
        }
        assert!(
            "0.5/m".parse::<Rate>().is_ok(),
            "30 per hour is slow but fine"
        );
    }

    #[test]
    fn display_round_trips() {
        for input in ["5/s", "300/m", "0.5/s", "2.25/m"] {
            let rate: Rate = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(rate.to_string(), input);
        }
        for input in ["StartInstances=5/s", "DescribeInstances=600/m"] {
            let limit: RateLimit = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(limit.to_string(), input);
            assert_eq!(limit.to_string().parse::<RateLimit>(), Ok(limit));
        }
        let table: RateLimits = "StopInstances=1/s,DescribeInstances=600/m"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        // Displayed in the stable action order, configured entries only.
        assert_eq!(
            table.to_string(),
            "DescribeInstances=600/m,StopInstances=1/s"
        );
        assert_eq!(table.to_string().parse::<RateLimits>(), Ok(table));
        assert_eq!(RateLimits::default().to_string(), "");
    }

    #[test]
    fn every_action_parses_by_its_exact_name_only() {
        for action in EcsAction::ALL {
            assert_eq!(action.as_str().parse::<EcsAction>(), Ok(action));
        }
        for bad in [
            "startinstances",
            "RebootInstance",
            "DescribeInstanceStatus",
            "",
        ] {
            assert_eq!(
                bad.parse::<EcsAction>(),
                Err(RateLimitError::UnknownAction { name: bad.into() })
            );
        }
        let e = "StartInstancez=5/s".parse::<RateLimit>().unwrap_err();
        assert!(e.to_string().contains("StartInstancez"), "{e}");
        assert!(e.to_string().contains("StartInstances"), "{e}");
        assert_eq!(
            "StartInstances:5/s".parse::<RateLimit>(),
            Err(RateLimitError::MissingEquals {
                input: "StartInstances:5/s".into()
            })
        );
    }

    #[test]
    fn limits_override_defaults_per_action_and_keep_single_and_batch_apart() {
        let table: RateLimits = "StartInstances=5/s, DescribeInstances=600/m,"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            table.ceiling(EcsAction::StartInstances),
            Rate::per_second(5.0)
        );
        assert_eq!(
            table.ceiling(EcsAction::DescribeInstances).as_per_second(),
            10.0
        );
        // The single call keeps its own (default) budget.
        assert_eq!(
            table.ceiling(EcsAction::StartInstance),
            EcsAction::StartInstance.default_rate()
        );
        assert!(table.is_configured(EcsAction::StartInstances));
        assert!(!table.is_configured(EcsAction::StartInstance));
        assert_eq!("".parse::<RateLimits>(), Ok(RateLimits::default()));
    }

    #[test]
    fn an_action_given_twice_is_an_error() {
        assert_eq!(
            "StopInstances=1/s,StopInstances=2/s".parse::<RateLimits>(),
            Err(RateLimitError::DuplicateAction {
                action: EcsAction::StopInstances
            })
        );
    }

    #[test]
    fn defaults_are_positive_and_under_the_lowest_known_limits() {
        for action in EcsAction::ALL {
            let rate = RateLimits::default().ceiling(action).as_per_second();
            let lowest_known = match action {
                EcsAction::DescribeInstances => 10.0,
                _ => 5.0,
            };
            assert!(rate > 0.0 && rate <= lowest_known / 2.0, "{action}: {rate}");
        }
    }
}
