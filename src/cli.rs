//! Command line of the `ecs-power-operator` binary: the subcommands `run` (the default), `crd`,
//! `schedule preview` and `sandbox`, and the flags of `run` with their environment twins. Parsing and validation only
//! (durations, addresses, the ECS endpoint through `Endpoint::from_options`); `main.rs` picks the
//! subcommand and [`crate::run`] assembles the process from the parsed values.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ecs::{Endpoint, EndpointError, EndpointStyle};
use crate::fleet::{RateLimit, RateLimitError, RateLimits};

/// Keeps Alibaba Cloud ECS instances in the power state declared by `EcsInstancePower` resources.
#[derive(Debug, Parser)]
#[command(name = "ecs-power-operator", version, about)]
pub struct Cli {
    /// The subcommand; `run` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run`, accepted without the subcommand too (`run` is the default).
    #[command(flatten)]
    pub run: RunArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against the cluster of the current kubeconfig / in-cluster config (default).
    Run(RunArgs),
    /// Print the `CustomResourceDefinitions` as one YAML stream (`--name` for one of them).
    Crd(CrdArgs),
    /// Work with `EcsPowerSchedule` manifests without a cluster.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Try it without a cluster or a cloud account: an in-memory Kubernetes API server, a local
    /// ECS endpoint with a few instances, and the operator, in one process.
    #[cfg(feature = "sandbox")]
    Sandbox(crate::sandbox::SandboxArgs),
}

/// Flags of `crd`.
#[derive(Debug, Clone, Args)]
pub struct CrdArgs {
    /// Print only this CRD, for example `ecspowerschedules.ecspower.dev` (its file name in crds/).
    #[arg(long)]
    pub name: Option<String>,
}

/// `schedule` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ScheduleCommand {
    /// Print every transition of an EcsPowerSchedule manifest between two instants (`from <= t <
    /// until`), evaluated exactly as the operator evaluates it. Exits 2 when the schedule is invalid.
    Preview(PreviewArgs),
}

/// Flags of `schedule preview`.
#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// The EcsPowerSchedule manifest (YAML).
    #[arg(long)]
    pub file: std::path::PathBuf,
    /// The first instant (RFC 3339), inclusive.
    #[arg(long, value_parser = parse_timestamp)]
    pub from: jiff::Timestamp,
    /// The last instant (RFC 3339), exclusive.
    #[arg(long, value_parser = parse_timestamp)]
    pub until: jiff::Timestamp,
    /// `table` (default: UTC and local time) or `json` (one object a line).
    #[arg(long, value_enum, default_value_t = PreviewOutput::Table)]
    pub output: PreviewOutput,
}

/// Output format of `schedule preview`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreviewOutput {
    /// A table with the UTC and the local time.
    Table,
    /// One JSON object a line: `{"time":…,"state":…,"source":…}`.
    Json,
}

/// An RFC 3339 instant.
fn parse_timestamp(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .map_err(|e| format!("{text:?} is not an RFC 3339 instant: {e}"))
}

/// Flags of the operator itself.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// ECS endpoint for every region (tests, the emulator, proxies), e.g. `http://127.0.0.1:9090`.
    /// Default: `https://ecs.<regionId>.aliyuncs.com` per resource.
    #[arg(long, env = "ECS_ENDPOINT", global = true)]
    pub ecs_endpoint: Option<String>,

    /// Which regional endpoint to use when `--ecs-endpoint` is unset: `public`
    /// (`ecs.<region>.aliyuncs.com`) or `vpc` (`ecs-vpc.<region>.aliyuncs.com`).
    #[arg(long, env = "ECS_ENDPOINT_STYLE", value_enum, default_value_t = EndpointStyleArg::Public, global = true)]
    pub ecs_endpoint_style: EndpointStyleArg,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", global = true)]
    pub watch_namespace: Option<String>,

    /// How often a resource in its desired state is re-observed to catch drift (±10 % jitter),
    /// e.g. `30s`, `5m`, `1h`.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration, global = true)]
    pub resync_interval: Duration,

    /// How many resources are reconciled at the same time.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..), global = true)]
    pub max_concurrent_reconciles: u16,

    /// The ceiling of one ECS API action, per account and region, as `ACTION=RATE` with RATE like
    /// `5/s` or `300/m` (repeatable; `ECS_RATE_LIMITS` takes a comma-separated list). Read your
    /// account's limits in Quota Center ("API Rate Limits", product ECS) and give the operator its
    /// share: every caller of the account spends the same budget. Actions: `DescribeInstances`,
    /// `StartInstances`, `StopInstances`, `StartInstance`, `StopInstance`, `GetCallerIdentity`. Unset
    /// actions use conservative defaults (4/s for `DescribeInstances`, 2/s for the writes).
    #[arg(
        long = "ecs-rate-limit",
        env = "ECS_RATE_LIMITS",
        value_delimiter = ',',
        global = true
    )]
    pub ecs_rate_limits: Vec<RateLimit>,

    /// Instance IDs per `StartInstances` / `StopInstances` / `DescribeInstances` call, 1 to 100
    /// (1 turns batching off).
    #[arg(long, env = "ECS_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100), global = true)]
    pub ecs_batch_size: u16,

    /// Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "METRICS_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub metrics_addr: SocketAddr,

    /// Multiplies every backoff, transition-poll and re-check delay (not the resync interval), for
    /// tests and demos: `0.05` turns the 30 s `NoStock` back-off into 1.5 s. Between 0 and 1.
    #[arg(long, env = "ECS_POWER_TIME_SCALE", default_value_t = 1.0, value_parser = parse_time_scale, hide = true, global = true)]
    pub time_scale: f64,

    /// Apply the `EcsPowerAccessPolicy` to every resource, those with `credentialsSecretRef` too
    /// (default: only to resources on the operator's own credentials, since a Secret's RAM
    /// identity scopes the others). `--access-policy-for-secrets` alone means `true`.
    #[arg(long, env = "ACCESS_POLICY_FOR_SECRETS", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, global = true)]
    pub access_policy_for_secrets: bool,

    /// Elect a leader among the replicas through a `coordination.k8s.io/v1` Lease: only the
    /// leader calls ECS and writes; the others keep their caches warm and take over when it
    /// goes. `--leader-elect` alone means `true`.
    #[arg(long, env = "LEADER_ELECT", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, global = true)]
    pub leader_elect: bool,

    /// How long a follower waits, after it last saw the lease renewed, before taking over
    /// (whole seconds).
    #[arg(long, env = "LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, global = true)]
    pub leader_elect_lease_duration: Duration,

    /// How long the leader keeps writing after its last successful renewal began; it stops
    /// writing and exits when renewals fail that long.
    #[arg(long, env = "LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration, global = true)]
    pub leader_elect_renew_deadline: Duration,

    /// How often the leader renews the lease and a follower tries to acquire it.
    #[arg(long, env = "LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration, global = true)]
    pub leader_elect_retry_period: Duration,

    /// The Lease's name.
    #[arg(
        long,
        env = "LEADER_ELECT_RESOURCE_NAME",
        default_value = "ecs-power-operator",
        global = true
    )]
    pub leader_elect_resource_name: String,

    /// The Lease's namespace (default: `POD_NAMESPACE`, else the client's default namespace).
    #[arg(long, env = "LEADER_ELECT_RESOURCE_NAMESPACE", global = true)]
    pub leader_elect_resource_namespace: Option<String>,

    /// Log format: `text` for people, `json` for log pipelines. Levels come from `RUST_LOG`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// The rate-limit table: the defaults with `--ecs-rate-limit` applied.
    ///
    /// # Errors
    /// An action given more than once.
    pub fn rate_limits(&self) -> Result<RateLimits, RateLimitError> {
        RateLimits::from_limits(self.ecs_rate_limits.iter().copied())
    }

    /// The ECS endpoint selection these flags describe.
    ///
    /// # Errors
    /// An `--ecs-endpoint` that is not an absolute http(s) URL (see [`Endpoint::override_url`]).
    pub fn endpoint(&self) -> Result<Endpoint, EndpointError> {
        let style = match self.ecs_endpoint_style {
            EndpointStyleArg::Public => EndpointStyle::Public,
            EndpointStyleArg::Vpc => EndpointStyle::Vpc,
        };
        Endpoint::from_options(self.ecs_endpoint.as_deref(), style)
    }

    /// The election these flags describe, `None` without `--leader-elect`. The namespace falls
    /// back to `POD_NAMESPACE`, then to `default_namespace`; the identity is `POD_NAME` plus a
    /// random suffix.
    ///
    /// # Errors
    /// Timings that break client-go's inequalities (lease duration > renew deadline > retry
    /// period × 1.2), or no namespace.
    pub fn election(
        &self,
        default_namespace: &str,
    ) -> Result<Option<crate::leadership::ElectionConfig>, crate::leadership::ConfigError> {
        if !self.leader_elect {
            return Ok(None);
        }
        let namespace = self
            .leader_elect_resource_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| default_namespace.to_string());
        let config = crate::leadership::ElectionConfig {
            name: self.leader_elect_resource_name.clone(),
            namespace,
            identity: crate::leadership::identity(std::env::var("POD_NAME").ok().as_deref()),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        config.validate()?;
        Ok(Some(config))
    }
}

/// `--ecs-endpoint-style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointStyleArg {
    /// `ecs.<region>.aliyuncs.com`
    Public,
    /// `ecs-vpc.<region>.aliyuncs.com`
    Vpc,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses `--time-scale`: a number in (0, 1].
///
/// # Errors
/// A message for clap when the input is not a positive finite number.
pub fn parse_time_scale(input: &str) -> Result<f64, String> {
    match input.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!(
            "invalid time scale {input:?}: expected a number greater than 0 and at most 1"
        )),
    }
}

/// The longest duration a flag accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parses `500ms`, `30s`, `5m`, `1h`, `1h30m` (and a bare number of seconds).
///
/// # Errors
/// A message for clap when the input is not a duration this parser understands.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {input:?}: expected a number before the unit"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {input:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            other => {
                return Err(format!(
                    "invalid duration {input:?}: unknown unit {other:?} (use ms, s, m or h)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total > MAX_DURATION {
        return Err(format!("invalid duration {input:?}: at most 30 days"));
    }
    if total.is_zero() {
        return Err(format!(
            "invalid duration {input:?}: must be greater than zero"
        ));
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubernetes_users_write_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        for bad in [
            "",
            "m",
            "5x",
            "-1s",
            "0s",
            "5 m",
            "5124095576030431h",
            "31d",
            "745h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn run_is_the_default_and_flags_have_defaults() {
        let cli = Cli::try_parse_from(["ecs-power-operator"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.resync_interval, Duration::from_secs(300));
        assert_eq!(cli.run.metrics_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(
            cli.run.endpoint().unwrap(),
            Endpoint::Regional {
                style: EndpointStyle::Public
            }
        );
        let cli = Cli::try_parse_from([
            "ecs-power-operator",
            "run",
            "--ecs-endpoint",
            "http://127.0.0.1:9090/",
            "--resync-interval",
            "30s",
        ])
        .unwrap();
        let Some(Command::Run(args)) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(
            args.endpoint().unwrap(),
            Endpoint::Override("http://127.0.0.1:9090".into())
        );
        assert!(
            Cli::try_parse_from(["ecs-power-operator", "--max-concurrent-reconciles", "0"])
                .is_err()
        );
    }

    #[test]
    fn leader_election_flags_default_like_client_go_and_are_checked() {
        let cli = Cli::try_parse_from(["ecs-power-operator"]).unwrap();
        assert!(!cli.run.leader_elect);
        assert_eq!(cli.run.election("ns").unwrap(), None);
        let cli = Cli::try_parse_from([
            "ecs-power-operator",
            "--leader-elect",
            "--leader-elect-resource-namespace",
            "ops",
        ])
        .unwrap();
        let config = cli.run.election("ns").unwrap().unwrap();
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));
        assert_eq!(config.name, "ecs-power-operator");
        assert_eq!(config.namespace, "ops");
        assert_eq!(config.write_timeout(), Duration::from_secs(5));
        let cli = Cli::try_parse_from(["ecs-power-operator", "--leader-elect=false"]).unwrap();
        assert!(!cli.run.leader_elect);
        for (lease, renew, retry) in [
            ("10s", "10s", "2s"),
            ("15s", "10s", "9s"),
            ("1500ms", "1s", "200ms"),
        ] {
            let cli = Cli::try_parse_from([
                "ecs-power-operator",
                "--leader-elect",
                "--leader-elect-resource-namespace=ops",
                "--leader-elect-lease-duration",
                lease,
                "--leader-elect-renew-deadline",
                renew,
                "--leader-elect-retry-period",
                retry,
            ])
            .unwrap();
            assert!(cli.run.election("ns").is_err(), "{lease}/{renew}/{retry}");
        }
    }
}
