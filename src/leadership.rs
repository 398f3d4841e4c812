//! Leader election on a `coordination.k8s.io/v1` Lease, feeding the write gate.
//!
//! Where it sits: [`crate::run`] starts one [`Elector`] per process when `--leader-elect` is on.
//! The elector opens the controller's [`WriteGate`] while this replica holds the lease, up to the
//! lease's local validity, closes it when the lease is lost (the process then exits), and tells
//! the controller when it acquired the lease so that every resource is observed again.
//!
//! ```text
//! acquire: every RetryPeriod (jittered): GET lease ─ 404 → create ─┐
//!          held by another and not expired (local clock) → wait   ├─► leading: gate open until
//!          free / expired / empty holder → PUT with resourceVersion┘   renew start + RenewDeadline
//! renew:   every RetryPeriod: GET + PUT (resourceVersion); failures until the validity ends → lost
//! release: (after the controller drained) fresh GET; still ours → holder "", duration 1 s
//! ```
//!
//! The algorithm is client-go's, written here on `Api<Lease>` rather than wrapping
//! `kube-lease-manager`, because the gate needs guarantees that crate does not give: it keeps
//! reporting leadership while renewals fail, sets no request timeout, renews and releases without
//! the `resourceVersion` just read (so a lost race goes unnoticed), does not recreate a deleted
//! Lease, and does not expose when a renewal last succeeded, which is what bounds every write.
//!
//! Time: expiry is judged by this process's monotonic clock (tokio's, so paused-time tests drive
//! it): a lease held by someone else expires `leaseDurationSeconds` after this process last saw
//! the record change, whatever the other node's clock wrote into `renewTime`. The leader's own
//! validity counts from the start of its last successful renewal, so it ends before any follower
//! may take over (`RenewDeadline < LeaseDuration`).

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controller::gate::WriteGate;
use crate::metrics::Metrics;

/// client-go's jitter factor: the acquire loop waits RetryPeriod × [1, 1.2), and the renew
/// deadline must exceed RetryPeriod × this factor.
pub const JITTER_FACTOR: f64 = 1.2;

/// The timings and names of one election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// Who this replica is (the pod's name plus a random suffix).
    pub identity: String,
    /// How long a follower waits after it last saw the record change before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps writing after the start of its last successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a candidate tries to acquire.
    pub retry_period: Duration,
}

/// Timings that break the election's guarantees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The lease duration must exceed the renew deadline.
    #[error(
        "--leader-elect-lease-duration ({lease:?}) must be greater than --leader-elect-renew-deadline ({renew:?})"
    )]
    LeaseNotLongerThanRenew {
        /// The lease duration.
        lease: Duration,
        /// The renew deadline.
        renew: Duration,
    },
    /// The renew deadline must exceed the retry period times the jitter factor.
    #[error(
        "--leader-elect-renew-deadline ({renew:?}) must be greater than --leader-elect-retry-period ({retry:?}) × {JITTER_FACTOR}"
    )]
    RenewNotLongerThanRetry {
        /// The renew deadline.
        renew: Duration,
        /// The retry period.
        retry: Duration,
    },
    /// A Lease records its duration in whole seconds.
    #[error(
        "--leader-elect-lease-duration ({0:?}) must be a whole number of seconds, at least 1 s"
    )]
    LeaseNotWholeSeconds(Duration),
    /// No namespace for the Lease.
    #[error("no namespace for the Lease: set --leader-elect-resource-namespace or POD_NAMESPACE")]
    NoNamespace,
}

impl ElectionConfig {
    /// Checks client-go's inequalities: lease duration > renew deadline > retry period × 1.2, all
    /// positive, and a lease duration of whole seconds.
    ///
    /// # Errors
    /// The first inequality that does not hold.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration.is_zero() || self.lease_duration.subsec_nanos() != 0 {
            return Err(ConfigError::LeaseNotWholeSeconds(self.lease_duration));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotLongerThanRenew {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.retry_period.is_zero()
            || self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR)
        {
            return Err(ConfigError::RenewNotLongerThanRetry {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        if self.namespace.is_empty() {
            return Err(ConfigError::NoNamespace);
        }
        Ok(())
    }

    /// The timeout of every gated write: half the renew deadline, and short enough to fit the
    /// validity left in steady state (renew deadline − retry period × 1.2, a renewal being due
    /// every retry period). 5 s with the defaults (15 s / 10 s / 2 s).
    pub fn write_timeout(&self) -> Duration {
        let steady = self
            .renew_deadline
            .saturating_sub(self.retry_period.mul_f64(JITTER_FACTOR));
        (self.renew_deadline / 2).min(steady)
    }

    /// The timeout of one lease request: half the renew deadline (as controller-runtime sets it),
    /// so a hung request leaves time for another attempt before the validity ends.
    pub fn request_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// This replica's identity: `POD_NAME` (else the host name) plus a random suffix, so that a
/// restarted pod with the same name is a new candidate.
pub fn identity(pod_name: Option<&str>) -> String {
    let base = pod_name
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "ecs-power-operator".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}_{}", &suffix[..12])
}

/// How a term of leadership ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// Renewals failed until the lease's local validity ended.
    #[error("could not renew the lease within the renew deadline")]
    RenewDeadline,
    /// Someone else holds the lease now.
    #[error("the lease is held by {0} now")]
    TakenBy(String),
}

/// What one acquire-or-renew attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the lease, valid until the given instant.
    Leading(Instant),
    /// Someone else holds an unexpired lease.
    HeldBy(String),
    /// Someone else wrote first (409 on create or update); try again later.
    Conflict,
}

/// The last lease record seen and when this process saw it change.
#[derive(Debug, Clone)]
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

/// One candidate in one election.
pub struct Elector {
    api: Api<Lease>,
    config: ElectionConfig,
    gate: Arc<WriteGate>,
    metrics: Arc<Metrics>,
    observed: Option<Observed>,
    valid_until: Option<Instant>,
}

/// Why an attempt failed (the Kubernetes API failed or did not answer in time).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The API server answered with an error.
    #[error("lease request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The API server did not answer within the request timeout.
    #[error("lease request timed out")]
    Timeout,
}

impl Elector {
    /// A candidate on `api` (a client with request timeouts of its own, used for nothing else);
    /// it drives `gate` and the leader metrics.
    pub fn new(
        api: Api<Lease>,
        config: ElectionConfig,
        gate: Arc<WriteGate>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Elector {
            api,
            config,
            gate,
            metrics,
            observed: None,
            valid_until: None,
        }
    }

    /// The election's configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Until when this replica's lease is valid by its own clock; `None` when not leading.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    /// One client-go `tryAcquireOrRenew`: read the lease (create it on 404), give up when another
    /// holder's lease has not expired by the local clock, else write our record with the
    /// `resourceVersion` just read. Every request is bounded by the request timeout.
    ///
    /// # Errors
    /// The API server failed or did not answer in time.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, AttemptError> {
        let start = Instant::now();
        let timeout = self.config.request_timeout();
        let current = bounded(timeout, self.api.get_opt(&self.config.name)).await?;
        let now = Instant::now();
        let Some(lease) = current else {
            let record = self.record(None);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(record.clone()),
            };
            return match bounded(timeout, self.api.create(&PostParams::default(), &lease)).await {
                Ok(_) => Ok(self.won(record, start)),
                Err(AttemptError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                    Ok(Attempt::Conflict)
                }
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|o| o.spec != spec);
        if changed {
            self.observed = Some(Observed {
                spec: spec.clone(),
                at: now,
            });
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.config.identity;
        if !holder.is_empty() && !ours {
            let duration = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            );
            let seen = self.observed.as_ref().map_or(now, |o| o.at);
            if seen + duration > now {
                return Ok(Attempt::HeldBy(holder));
            }
        }
        let record = self.record(Some(&spec));
        let mut update = lease;
        update.spec = Some(record.clone());
        // `update` carries the resourceVersion just read: a 409 means someone else wrote first.
        match bounded(
            timeout,
            self.api
                .replace(&self.config.name, &PostParams::default(), &update),
        )
        .await
        {
            Ok(_) => Ok(self.won(record, start)),
            Err(AttemptError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                Ok(Attempt::Conflict)
            }
            Err(e) => Err(e),
        }
    }

    /// Our record, built on the one read (`None` when creating).
    fn record(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(jiff::Timestamp::now());
        let ours = previous
            .is_some_and(|p| p.holder_identity.as_deref() == Some(self.config.identity.as_str()));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds()),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(match previous {
                Some(_) if !ours => transitions.saturating_add(1),
                _ => transitions,
            }),
            ..LeaseSpec::default()
        }
    }

    /// Our write went through: the lease is valid until the attempt's start plus the renew
    /// deadline, and the gate opens up to there.
    fn won(&mut self, record: LeaseSpec, start: Instant) -> Attempt {
        self.observed = Some(Observed {
            spec: record,
            at: Instant::now(),
        });
        let until = start + self.config.renew_deadline;
        if self.valid_until.is_none() {
            info!(identity = %self.config.identity, lease = %self.config.name, "acquired the lease; leading");
            self.metrics.leader_transition();
        }
        self.valid_until = Some(until);
        self.gate.lease_valid_until(until);
        self.metrics.set_leader(true);
        Attempt::Leading(until)
    }

    /// Tries every RetryPeriod (× [1, 1.2)) until this replica leads; `false` when `stop` was
    /// cancelled first.
    pub async fn acquire(&mut self, stop: &CancellationToken) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading(_)) => return true,
                Ok(Attempt::HeldBy(holder)) => {
                    debug!(%holder, "the lease is held; following");
                }
                Ok(Attempt::Conflict) => debug!("another candidate wrote the lease first"),
                Err(e) => warn!(error = %e, "cannot read or write the lease; retrying"),
            }
            let wait = self
                .config
                .retry_period
                .mul_f64(1.0 + rand::random_range(0.0..(JITTER_FACTOR - 1.0)));
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Renews every RetryPeriod while leading. Returns `Ok(())` when `stop` is cancelled (still
    /// leading: the caller releases), or how the lease was lost; the gate is closed then.
    ///
    /// # Errors
    /// [`Lost`]: renewals failed until the validity ended, or someone else holds the lease.
    pub async fn renew(&mut self, stop: &CancellationToken) -> Result<(), Lost> {
        let mut next = Instant::now() + self.config.retry_period;
        loop {
            let Some(until) = self.valid_until else {
                return Err(self.lose(Lost::RenewDeadline));
            };
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(next.min(until)) => {}
            }
            if Instant::now() >= until {
                return Err(self.lose(Lost::RenewDeadline));
            }
            let attempt = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(until) => None,
                attempt = self.try_acquire_or_renew() => Some(attempt),
            };
            next = Instant::now() + self.config.retry_period;
            match attempt {
                None => return Err(self.lose(Lost::RenewDeadline)),
                Some(Ok(Attempt::Leading(_))) => {}
                Some(Ok(Attempt::HeldBy(holder))) => return Err(self.lose(Lost::TakenBy(holder))),
                Some(Ok(Attempt::Conflict)) => {
                    debug!("the lease changed under the renewal; retrying");
                }
                Some(Err(e)) => warn!(error = %e, "cannot renew the lease; retrying"),
            }
        }
    }

    /// Closes the gate and forgets the lease.
    fn lose(&mut self, why: Lost) -> Lost {
        self.gate.close();
        self.valid_until = None;
        self.metrics.set_leader(false);
        warn!(identity = %self.config.identity, reason = %why, "lost the lease; no more writes");
        why
    }

    /// Gives the lease up (after the controller drained): closes the gate, reads the lease afresh
    /// and, only if it is still ours, writes an empty holder with a 1 s duration (with the
    /// `resourceVersion` just read), so that a follower takes over within its retry period.
    /// Returns whether it released.
    ///
    /// # Errors
    /// The API server failed or did not answer in time.
    pub async fn release(&mut self) -> Result<bool, AttemptError> {
        self.gate.close();
        let was_leading = self.valid_until.take().is_some();
        self.metrics.set_leader(false);
        let timeout = self.config.request_timeout();
        let Some(mut lease) = bounded(timeout, self.api.get_opt(&self.config.name)).await? else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            debug!(was_leading, "the lease is not ours; nothing to release");
            return Ok(false);
        }
        let now = MicroTime(jiff::Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..LeaseSpec::default()
        });
        match bounded(
            timeout,
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease),
        )
        .await
        {
            Ok(_) => {
                info!(identity = %self.config.identity, "released the lease");
                Ok(true)
            }
            Err(AttemptError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                debug!("the lease changed before the release; not ours to clear");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// A lease request bounded by `timeout`.
async fn bounded<T>(
    timeout: Duration,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, AttemptError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result.map_err(AttemptError::Kube),
        Err(_) => Err(AttemptError::Timeout),
    }
}
