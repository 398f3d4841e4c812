//! The state file: YAML with access keys, the transition delay, per-action QPS limits per key,
//! per-account rate limits (`rateLimits`), the instances and the faults, plus
//! `defaultStoppedMode`, `timestampWindow`, `callLogCapacity` and `oidc`. Also the documented default used when the
//! binary starts without `--state`.

pub mod duration;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::credentials::AccessKey;
use crate::faults::Fault;
use crate::state::{Instance, Status, StoppedMode};
use crate::throttle::RateLimits;

/// Access key id of the default configuration.
pub const DEFAULT_ACCESS_KEY_ID: &str = "emulator-access-key";
/// Access key secret of the default configuration.
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "emulator-secret";

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the format.
    #[error("state file is not valid: {0}")]
    Parse(#[from] serde_yaml::Error),
    /// A value is out of range or inconsistent.
    #[error("state file is not valid: {0}")]
    Invalid(String),
}

/// STS AssumeRoleWithOIDC settings (`oidc:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// The only `RoleArn` accepted.
    pub role_arn: String,
    /// The only `OIDCProviderArn` accepted.
    pub provider_arn: String,
    /// Credential lifetime when the request gives no `DurationSeconds` (default 3600).
    #[serde(default = "default_duration_seconds")]
    pub duration_seconds: u32,
    /// Upper bound on the lifetime actually granted, which may be below STS's 900 s minimum so
    /// tests can watch credentials expire (default: none).
    #[serde(default)]
    pub max_duration_seconds: Option<u32>,
}

fn default_duration_seconds() -> u32 {
    3600
}

/// The emulator's whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Accepted access keys.
    #[serde(default)]
    pub access_keys: Vec<AccessKey>,
    /// How long Starting and Stopping last (default 2s).
    #[serde(default = "default_transition_delay", with = "duration")]
    pub transition_delay: Duration,
    /// QPS limit per action and access key (`*` = every other action).
    #[serde(default)]
    pub qps: BTreeMap<String, u32>,
    /// Limits per (account, region, action): per-second buckets and per-minute windows.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The instances.
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// Faults active from the start.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// StoppedMode of a stop that names none (default KeepCharging).
    #[serde(default = "default_stopped_mode")]
    pub default_stopped_mode: StoppedMode,
    /// Accepted clock difference of `Timestamp` / `x-acs-date` (default 15m).
    #[serde(default = "default_timestamp_window", with = "duration")]
    pub timestamp_window: Duration,
    /// How many call records are kept (default 100000).
    #[serde(default = "default_call_log_capacity")]
    pub call_log_capacity: usize,
    /// AssumeRoleWithOIDC; absent means the action answers `EntityNotExist.Role`.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

fn default_transition_delay() -> Duration {
    Duration::from_secs(2)
}

fn default_stopped_mode() -> StoppedMode {
    StoppedMode::KeepCharging
}

fn default_timestamp_window() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_call_log_capacity() -> usize {
    100_000
}

impl Default for Config {
    /// An empty emulator: no keys, no instances, defaults for the rest.
    fn default() -> Self {
        Self {
            access_keys: Vec::new(),
            transition_delay: default_transition_delay(),
            qps: BTreeMap::new(),
            rate_limits: RateLimits::default(),
            instances: Vec::new(),
            faults: Vec::new(),
            default_stopped_mode: default_stopped_mode(),
            timestamp_window: default_timestamp_window(),
            call_log_capacity: default_call_log_capacity(),
            oidc: None,
        }
    }
}

impl Config {
    /// Parses and validates YAML (JSON is YAML too).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_yaml::from_str(text)?
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a state file.
    ///
    /// # Errors
    /// Any [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The configuration of `ecs-emulator` without `--state`: key
    /// [`DEFAULT_ACCESS_KEY_ID`] / [`DEFAULT_ACCESS_KEY_SECRET`], a 2 s transition delay and
    /// three instances in `cn-hangzhou`: `i-emu0001` Running, `i-emu0002` Stopped and
    /// `i-emu0003` Running with a `security` lock.
    #[must_use]
    pub fn sandbox_default() -> Self {
        Self {
            access_keys: vec![AccessKey::new(
                DEFAULT_ACCESS_KEY_ID,
                DEFAULT_ACCESS_KEY_SECRET,
            )],
            instances: vec![
                Instance::new("i-emu0001", "cn-hangzhou", Status::Running),
                Instance::new("i-emu0002", "cn-hangzhou", Status::Stopped),
                Instance::new("i-emu0003", "cn-hangzhou", Status::Running).with_lock("security"),
            ],
            ..Self::default()
        }
    }

    /// Checks cross-field rules: unique non-empty key ids and secrets, valid unique instances,
    /// valid faults, known QPS actions, a positive timestamp window.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let mut key_ids = HashSet::new();
        for key in &self.access_keys {
            if key.id.trim().is_empty() || key.secret.is_empty() {
                return invalid("an access key has an empty id or secret".to_owned());
            }
            key.validate().map_err(ConfigError::Invalid)?;
            if !key_ids.insert(key.id.as_str()) {
                return invalid(format!("access key {} is listed twice", key.id));
            }
        }
        let mut ids = HashSet::new();
        for instance in &self.instances {
            instance.validate().map_err(ConfigError::Invalid)?;
            if !ids.insert(instance.id.as_str()) {
                return invalid(format!("instance {} is listed twice", instance.id));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            fault
                .validate()
                .map_err(|m| ConfigError::Invalid(format!("faults[{i}]: {m}")))?;
        }
        for action in self.qps.keys() {
            if action != "*" && !crate::actions::is_known(action) {
                return invalid(format!(
                    "qps names {action:?}, which is not an action the emulator serves"
                ));
            }
        }
        self.rate_limits.validate().map_err(ConfigError::Invalid)?;
        if self.timestamp_window.is_zero() {
            return invalid("timestampWindow must be positive".to_owned());
        }
        if let Some(oidc) = &self.oidc
            && (oidc.role_arn.is_empty() || oidc.provider_arn.is_empty())
        {
            return invalid("oidc needs roleArn and providerArn".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = r"
accessKeys: [{id: AK1, secret: S1}]          # optional securityToken per key
transitionDelay: 2s                           # Starting/Stopping last this long
qps: {StartInstance: 10}                      # per action and access key; excess → Throttling.User
instances:
  - {id: i-abc, region: cn-hangzhou, status: Stopped, locks: []}   # locks: [security], [financial], …
faults:
  - {instance: i-abc, action: StartInstance, code: OperationDenied.NoStock, times: -1}  # -1 = forever
";

    #[test]
    fn parses_the_design_example() {
        let c = Config::from_yaml(DESIGN_EXAMPLE).unwrap();
        assert_eq!(c.access_keys, [AccessKey::new("AK1", "S1")]);
        assert_eq!(c.transition_delay, Duration::from_secs(2));
        assert_eq!(c.qps["StartInstance"], 10);
        assert_eq!(c.instances[0].id, "i-abc");
        assert_eq!(c.faults[0].times, -1);
        assert_eq!(c.timestamp_window, Duration::from_secs(900));
    }

    #[test]
    fn parses_the_readme_example() {
        let text = include_str!("../examples/state.yaml");
        let c = Config::from_yaml(text).unwrap();
        assert!(c.oidc.is_some());
        assert!(c.instances.len() >= 3);
    }

    #[test]
    fn empty_file_is_the_empty_config() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
    }

    #[test]
    fn default_config_is_valid() {
        Config::sandbox_default().validate().unwrap();
    }

    #[test]
    fn rejects_inconsistent_files() {
        for bad in [
            "accessKeys: [{id: AK1, secret: S1}, {id: AK1, secret: S2}]",
            "accessKeys: [{id: '', secret: S1}]",
            "instances: [{id: i-a, region: r}, {id: i-a, region: r}]",
            "faults: [{instance: i-a}]",
            "qps: {StartInstanse: 1}",
            "rateLimits: {actions: {StartInstanse: {perSecond: 1}}}",
            "rateLimits: {StartInstances: {perSecond: 1}}",
            "accessKeys: [{id: AK1, secret: S1, accountId: abc}]",
            "transitionDelay: forever",
            "timestampWindow: 0s",
            "colour: blue",
            "oidc: {roleArn: '', providerArn: p}",
        ] {
            assert!(Config::from_yaml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_reports_the_path() {
        let err = Config::load(Path::new("/nonexistent/state.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/state.yaml"));
    }
}
