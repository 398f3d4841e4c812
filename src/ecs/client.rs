//! The operator's ECS client: `DescribeInstances`, `StartInstance` and `StopInstance`, the batch
//! `StartInstances` and `StopInstances`, and STS `GetCallerIdentity`, over the RPC API.
//!
//! The controller holds one [`EcsClient`] (cheap to clone: one shared connection pool) and calls
//! it with the [`Credentials`] of the resource at hand. Each call is signed (`rpc`, for the
//! product's API version), sent (`transport`, within the client's timeout or the call's
//! [`CallOptions::deadline`], whichever ends first), interpreted (success, dry run, per-instance
//! batch results, [`EcsError`] with its [`Delivery`](super::error::Delivery) and
//! `x-acs-retry-after`), logged at `debug` (action, region, instance IDs, HTTP status, ECS code,
//! request ID, elapsed time — never a secret, the signature, the token or the URL) and reported
//! to the [`CallObserver`] for metrics.

mod rpc;
mod transport;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::batch::{
    self, BatchOutcome, MAX_IDS_PER_BATCH, START_INSTANCES, STOP_INSTANCES, StopOptions,
};
use super::credentials::Credentials;
use super::endpoint::Endpoint;
use super::error::EcsError;
use super::instance::{DescribeInstancesPage, InstanceObservation};
use super::observer::{
    CallObserver, NoopObserver, OUTCOME_HTTP_5XX, OUTCOME_MALFORMED, OUTCOME_SUCCESS,
    OUTCOME_UNREACHABLE, OUTCOME_UNREQUESTED, code_label,
};
use super::power::{
    DRY_RUN_CODES, START_INSTANCE, STOP_INSTANCE, StartInstance, StopInstance, WriteOutcome,
};
use super::sts::{CallerIdentity, GET_CALLER_IDENTITY};
use rpc::RpcApi;
use transport::RawAnswer;

pub use transport::MAX_BODY_BYTES;

/// ECS action name of `DescribeInstances`.
pub const DESCRIBE_INSTANCES: &str = "DescribeInstances";
/// Most instance IDs one `DescribeInstances` call accepts.
pub const MAX_IDS_PER_DESCRIBE: usize = 100;
/// Most pages one `describe_instances` follows before calling the answer malformed.
const MAX_PAGES: usize = 100;

/// Per-call options: a bound on the call's whole duration.
///
/// The client's own `request_timeout` bounds each HTTP request; a deadline also bounds the call
/// as a whole (every page of a `DescribeInstances`, connecting, sending and reading the answer).
/// Each request is sent with the timeout `min(request_timeout, deadline − now)`, so no part of
/// the call runs past the deadline; when the deadline has already passed, nothing is sent and
/// the call fails with [`EcsError::Unreachable`] `{ request_sent: false }`. A caller that must
/// not act after a point in time (for example the end of a lease's local validity) passes that
/// point, minus its own margin, as the deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// No part of the call runs past this instant (tokio's clock, so paused-time tests see it).
    pub deadline: Option<tokio::time::Instant>,
}

impl CallOptions {
    /// Options with `deadline`.
    #[must_use]
    pub fn with_deadline(deadline: tokio::time::Instant) -> Self {
        Self {
            deadline: Some(deadline),
        }
    }

    /// Options whose deadline is `timeout` from now.
    #[must_use]
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::with_deadline(tokio::time::Instant::now() + timeout)
    }

    /// The timeout for the next HTTP request: `request_timeout`, cut to what is left before the
    /// deadline; `None` when the deadline has passed.
    fn request_timeout(&self, request_timeout: Duration) -> Option<Duration> {
        match self.deadline {
            None => Some(request_timeout),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                (!left.is_zero()).then(|| left.min(request_timeout))
            }
        }
    }
}

/// How an [`EcsClient`] talks to ECS.
#[derive(Clone)]
pub struct EcsClientConfig {
    /// Where calls go.
    pub endpoint: Endpoint,
    /// Where STS `GetCallerIdentity` goes (a base URL without trailing `/`); `None` derives it
    /// from `endpoint`: the override URL when there is one, else `https://sts.aliyuncs.com`.
    /// [`sts_endpoint_for`](crate::ecs::rrsa::sts_endpoint_for) computes it from the
    /// environment's STS settings.
    pub sts_endpoint: Option<String>,
    /// Limit for establishing a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Limit for a whole call, body included (default 15 s).
    pub request_timeout: Duration,
    /// Told about every finished call (default: [`NoopObserver`]).
    pub observer: Arc<dyn CallObserver>,
}

impl Default for EcsClientConfig {
    fn default() -> Self {
        Self {
            endpoint: Endpoint::default(),
            sts_endpoint: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            observer: Arc::new(NoopObserver),
        }
    }
}

impl fmt::Debug for EcsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsClientConfig")
            .field("endpoint", &self.endpoint)
            .field("sts_endpoint", &self.sts_endpoint)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl EcsClientConfig {
    /// The default configuration with `endpoint`.
    #[must_use]
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            ..Self::default()
        }
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the whole-call timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the STS endpoint for `GetCallerIdentity` (a base URL such as
    /// `https://sts-vpc.cn-hangzhou.aliyuncs.com`).
    #[must_use]
    pub fn with_sts_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sts_endpoint = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Sets the call observer.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }
}

/// The HTTP client could not be built (for example, no TLS trust roots could be loaded).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the ECS HTTP client: {detail}")]
pub struct ClientBuildError {
    /// What failed.
    pub detail: String,
}

/// A client for the ECS OpenAPI (RPC, version 2014-05-26, signature V1), and for the one STS
/// call the operator signs (`GetCallerIdentity`, version 2015-04-01, the same signer).
#[derive(Clone)]
pub struct EcsClient {
    http: reqwest::Client,
    endpoint: Arc<Endpoint>,
    sts_endpoint: Arc<str>,
    request_timeout: Duration,
    observer: Arc<dyn CallObserver>,
}

impl fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsClient")
            .field("endpoint", &self.endpoint)
            .field("sts_endpoint", &self.sts_endpoint)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// One call about to be made: what it is about, for the log line and the observer.
struct Call<'a> {
    api: RpcApi,
    action: &'static str,
    /// Where it goes (no trailing `/`).
    base_url: String,
    /// The region, for the log line (`None` for STS).
    region_id: Option<&'a str>,
    instance_ids: &'a str,
    params: Vec<(String, String)>,
    /// The number of instance IDs of a batch call, for [`CallObserver::on_batch`].
    batch_size: Option<usize>,
}

impl<'a> Call<'a> {
    /// An ECS call about `region_id`.
    fn ecs(
        client: &EcsClient,
        action: &'static str,
        region_id: &'a str,
        instance_ids: &'a str,
        params: Vec<(String, String)>,
    ) -> Self {
        Self {
            api: rpc::ECS,
            action,
            base_url: client.endpoint.base_url(region_id),
            region_id: Some(region_id),
            instance_ids,
            params,
            batch_size: None,
        }
    }
}

/// An action's parameters with owned names.
fn owned(params: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// An interpreted answer: the value, its outcome label and request id.
struct Interpreted<T> {
    value: T,
    outcome: String,
    request_id: Option<String>,
}

impl EcsClient {
    /// Builds a client (one connection pool, shared by clones).
    ///
    /// Installs rustls' `ring` crypto provider as the process default when none is installed
    /// yet (reqwest is built with `rustls-no-provider`).
    ///
    /// # Errors
    /// [`ClientBuildError`] when the HTTP client cannot be built.
    pub fn new(config: EcsClientConfig) -> Result<Self, ClientBuildError> {
        let http =
            super::http::client(config.connect_timeout, config.request_timeout).map_err(|e| {
                ClientBuildError {
                    detail: super::http::error_chain(&e),
                }
            })?;
        let sts_endpoint = config.sts_endpoint.clone().unwrap_or_else(|| {
            crate::ecs::rrsa::sts_endpoint_for(|_| None, &config.endpoint)
                .unwrap_or_else(|_| crate::ecs::rrsa::DEFAULT_STS_ENDPOINT.to_owned())
        });
        Ok(Self {
            http,
            endpoint: Arc::new(config.endpoint),
            sts_endpoint: Arc::from(sts_endpoint.trim_end_matches('/')),
            request_timeout: config.request_timeout,
            observer: config.observer,
        })
    }

    /// The endpoint calls go to.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The STS base URL `GetCallerIdentity` goes to.
    #[must_use]
    pub fn sts_endpoint(&self) -> &str {
        &self.sts_endpoint
    }

    /// `DescribeInstances` for up to 100 instances of one region, following `NextToken` pages.
    ///
    /// Instances ECS does not report (deleted, wrong region, never existed) are simply not in the
    /// result; neither is anything ECS reports that was not asked for. No call is made for an
    /// empty list. Every page is asked for with `MaxResults=100` (ECS's default is 10).
    ///
    /// # Errors
    /// [`EcsError::InvalidRequest`] for more than 100 IDs, an empty ID or a malformed region ID
    /// (no call is made); otherwise the call's [`EcsError`].
    pub async fn describe_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_ids: &[&str],
    ) -> Result<Vec<InstanceObservation>, EcsError> {
        self.describe_instances_with(creds, region_id, instance_ids, &CallOptions::default())
            .await
    }

    /// [`EcsClient::describe_instances`] with per-call options (all pages within the deadline).
    ///
    /// # Errors
    /// As [`EcsClient::describe_instances`].
    pub async fn describe_instances_with(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_ids: &[&str],
        options: &CallOptions,
    ) -> Result<Vec<InstanceObservation>, EcsError> {
        check_region(region_id)?;
        if instance_ids.len() > MAX_IDS_PER_DESCRIBE {
            return Err(EcsError::InvalidRequest {
                detail: format!(
                    "DescribeInstances takes at most {MAX_IDS_PER_DESCRIBE} instance IDs, got {}",
                    instance_ids.len()
                ),
            });
        }
        for id in instance_ids {
            check_instance_id(id)?;
        }
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids_json =
            serde_json::to_string(instance_ids).map_err(|e| EcsError::InvalidRequest {
                detail: format!("cannot encode instance IDs: {e}"),
            })?;
        let ids_for_log = instance_ids.join(",");
        let mut found = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![
                ("RegionId", region_id.to_owned()),
                ("InstanceIds", ids_json.clone()),
                ("MaxResults", MAX_IDS_PER_DESCRIBE.to_string()),
            ];
            if let Some(token) = &next_token {
                params.push(("NextToken", token.clone()));
            }
            let call = Call::ecs(
                self,
                DESCRIBE_INSTANCES,
                region_id,
                &ids_for_log,
                owned(params),
            );
            let page = self.call(creds, call, options, interpret_describe).await?;
            found.extend(
                page.instances
                    .into_iter()
                    .filter(|i| instance_ids.contains(&i.instance_id.as_str())),
            );
            match page.next_token {
                Some(token) if Some(&token) == next_token.as_ref() => {
                    return Err(EcsError::Malformed {
                        http_status: 200,
                        detail: "DescribeInstances returned the same NextToken twice".into(),
                    });
                }
                Some(token) => next_token = Some(token),
                None => return Ok(found),
            }
        }
        Err(EcsError::Malformed {
            http_status: 200,
            detail: format!("DescribeInstances did not finish within {MAX_PAGES} pages"),
        })
    }

    /// `DescribeInstances` for one instance: `None` when ECS does not report it.
    ///
    /// # Errors
    /// As [`EcsClient::describe_instances`].
    pub async fn describe_instance(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_id: &str,
    ) -> Result<Option<InstanceObservation>, EcsError> {
        self.describe_instance_with(creds, region_id, instance_id, &CallOptions::default())
            .await
    }

    /// [`EcsClient::describe_instance`] with per-call options.
    ///
    /// # Errors
    /// As [`EcsClient::describe_instances`].
    pub async fn describe_instance_with(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_id: &str,
        options: &CallOptions,
    ) -> Result<Option<InstanceObservation>, EcsError> {
        let found = self
            .describe_instances_with(creds, region_id, &[instance_id], options)
            .await?;
        Ok(found.into_iter().find(|i| i.instance_id == instance_id))
    }

    /// `StartInstance`. A dry run that ECS answers with `DryRunOperation` is
    /// `Ok(WriteOutcome { dry_run: true, .. })`.
    ///
    /// # Errors
    /// [`EcsError::InvalidRequest`] for an empty instance ID or malformed region ID; otherwise
    /// the call's [`EcsError`].
    pub async fn start_instance(
        &self,
        creds: &Credentials,
        region_id: &str,
        request: &StartInstance,
    ) -> Result<WriteOutcome, EcsError> {
        self.start_instance_with(creds, region_id, request, &CallOptions::default())
            .await
    }

    /// [`EcsClient::start_instance`] with per-call options.
    ///
    /// # Errors
    /// As [`EcsClient::start_instance`].
    pub async fn start_instance_with(
        &self,
        creds: &Credentials,
        region_id: &str,
        request: &StartInstance,
        options: &CallOptions,
    ) -> Result<WriteOutcome, EcsError> {
        check_region(region_id)?;
        check_instance_id(&request.instance_id)?;
        let call = Call::ecs(
            self,
            START_INSTANCE,
            region_id,
            &request.instance_id,
            owned(request.params()),
        );
        let dry_run = request.dry_run;
        self.call(creds, call, options, |answer, redactor| {
            interpret_write(answer, redactor, dry_run)
        })
        .await
    }

    /// `StopInstance`. A dry run that ECS answers with `DryRunOperation` is
    /// `Ok(WriteOutcome { dry_run: true, .. })`.
    ///
    /// # Errors
    /// As [`EcsClient::start_instance`].
    pub async fn stop_instance(
        &self,
        creds: &Credentials,
        region_id: &str,
        request: &StopInstance,
    ) -> Result<WriteOutcome, EcsError> {
        self.stop_instance_with(creds, region_id, request, &CallOptions::default())
            .await
    }

    /// [`EcsClient::stop_instance`] with per-call options.
    ///
    /// # Errors
    /// As [`EcsClient::start_instance`].
    pub async fn stop_instance_with(
        &self,
        creds: &Credentials,
        region_id: &str,
        request: &StopInstance,
        options: &CallOptions,
    ) -> Result<WriteOutcome, EcsError> {
        check_region(region_id)?;
        check_instance_id(&request.instance_id)?;
        let call = Call::ecs(
            self,
            STOP_INSTANCE,
            region_id,
            &request.instance_id,
            owned(request.params()),
        );
        let dry_run = request.dry_run;
        self.call(creds, call, options, |answer, redactor| {
            interpret_write(answer, redactor, dry_run)
        })
        .await
    }

    /// `StartInstances` for 1–100 instances of one region, `BatchOptimization=SuccessFirst`: each
    /// instance is started or refused on its own, and the answer is read per instance by ID
    /// (see [`crate::ecs::batch`]). No `DryRun`, no `InitLocalDisk`: those use
    /// [`EcsClient::start_instance`].
    ///
    /// # Errors
    /// [`EcsError::InvalidRequest`] (nothing sent) for no IDs, more than 100, a repeated or
    /// malformed ID or a malformed region ID; otherwise the batch-level [`EcsError`] (throttling,
    /// signature, HTTP ≥ 500, no answer, an answer without per-instance results), one for the
    /// whole batch.
    pub async fn start_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_ids: &[&str],
        options: &CallOptions,
    ) -> Result<BatchOutcome, EcsError> {
        self.batch(
            creds,
            region_id,
            instance_ids,
            START_INSTANCES,
            None,
            options,
        )
        .await
    }

    /// `StopInstances` for 1–100 instances of one region with the same `stop` options,
    /// `BatchOptimization=SuccessFirst`, read per instance by ID as
    /// [`EcsClient::start_instances`]. No `DryRun`: dry runs use [`EcsClient::stop_instance`].
    ///
    /// # Errors
    /// As [`EcsClient::start_instances`].
    pub async fn stop_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_ids: &[&str],
        stop: &StopOptions,
        options: &CallOptions,
    ) -> Result<BatchOutcome, EcsError> {
        self.batch(
            creds,
            region_id,
            instance_ids,
            STOP_INSTANCES,
            Some(stop),
            options,
        )
        .await
    }

    /// STS `GetCallerIdentity` with `creds`, at [`EcsClient::sts_endpoint`]: the account the
    /// credentials belong to.
    ///
    /// # Errors
    /// The call's [`EcsError`] (STS's error codes arrive as [`EcsError::Api`]); an answer without
    /// `AccountId` is [`EcsError::Malformed`].
    pub async fn caller_identity(&self, creds: &Credentials) -> Result<CallerIdentity, EcsError> {
        self.caller_identity_with(creds, &CallOptions::default())
            .await
    }

    /// [`EcsClient::caller_identity`] with per-call options.
    ///
    /// # Errors
    /// As [`EcsClient::caller_identity`].
    pub async fn caller_identity_with(
        &self,
        creds: &Credentials,
        options: &CallOptions,
    ) -> Result<CallerIdentity, EcsError> {
        let call = Call {
            api: rpc::STS,
            action: GET_CALLER_IDENTITY,
            base_url: self.sts_endpoint.to_string(),
            region_id: None,
            instance_ids: "",
            params: Vec::new(),
            batch_size: None,
        };
        self.call(creds, call, options, interpret_identity).await
    }

    /// Checks, sends and reads one batch call, and reports its per-instance results.
    async fn batch(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_ids: &[&str],
        action: &'static str,
        stop: Option<&StopOptions>,
        options: &CallOptions,
    ) -> Result<BatchOutcome, EcsError> {
        check_region(region_id)?;
        if instance_ids.is_empty() || instance_ids.len() > MAX_IDS_PER_BATCH {
            return Err(EcsError::InvalidRequest {
                detail: format!(
                    "{action} takes 1 to {MAX_IDS_PER_BATCH} instance IDs, got {}",
                    instance_ids.len()
                ),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for id in instance_ids {
            check_instance_id(id)?;
            if !seen.insert(*id) {
                return Err(EcsError::InvalidRequest {
                    detail: format!("{action}: instance ID {id:?} is given twice"),
                });
            }
        }
        let ids_for_log = instance_ids.join(",");
        let call = Call {
            batch_size: Some(instance_ids.len()),
            ..Call::ecs(
                self,
                action,
                region_id,
                &ids_for_log,
                batch::params(region_id, instance_ids, stop),
            )
        };
        let outcome = self
            .call(creds, call, options, |answer, redactor| {
                interpret_batch(answer, redactor, instance_ids)
            })
            .await?;
        for result in outcome.results.values() {
            self.observer
                .on_instance_result(action, result.outcome_label());
        }
        for _ in 0..outcome.unexpected {
            self.observer
                .on_instance_result(action, OUTCOME_UNREQUESTED);
        }
        if outcome.unexpected > 0 {
            tracing::debug!(
                action,
                region = region_id,
                unexpected = outcome.unexpected,
                request_id = outcome.request_id.as_deref(),
                "ECS batch answer had entries that were not asked for; ignored"
            );
        }
        Ok(outcome)
    }

    /// Signs, sends, interprets, logs and reports one call.
    async fn call<T, F>(
        &self,
        creds: &Credentials,
        call: Call<'_>,
        options: &CallOptions,
        interpret: F,
    ) -> Result<T, EcsError>
    where
        F: FnOnce(&RawAnswer, &crate::ecs::redaction::Redactor) -> Result<Interpreted<T>, EcsError>,
    {
        let Some(timeout) = options.request_timeout(self.request_timeout) else {
            tracing::debug!(
                action = call.action,
                region = call.region_id,
                instance_ids = call.instance_ids,
                "ECS call not sent: its deadline has passed"
            );
            return Err(EcsError::Unreachable {
                detail: "the call's deadline passed before it was sent".to_owned(),
                request_sent: false,
            });
        };
        let params: Vec<(&str, String)> = call
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let request = rpc::build(
            creds,
            call.api,
            call.action,
            &params,
            &rpc::new_nonce(),
            &rpc::timestamp_now(),
        );
        if let Some(size) = call.batch_size {
            self.observer.on_batch(call.action, size);
        }
        let started = Instant::now();
        let sent = transport::send(&self.http, &call.base_url, &request, timeout).await;
        let http_status = sent.as_ref().ok().map(|a| a.http_status);
        let result = sent.and_then(|answer| {
            let retry_after = answer.retry_after();
            interpret(&answer, &request.redactor).map_err(|e| e.with_retry_after(retry_after))
        });
        let elapsed = started.elapsed();
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(done) => {
                tracing::debug!(
                    product = call.api.product,
                    action = call.action,
                    region = call.region_id,
                    instance_ids = call.instance_ids,
                    http_status,
                    outcome = done.outcome.as_str(),
                    request_id = done.request_id.as_deref(),
                    elapsed_ms,
                    "ECS call succeeded"
                );
                self.observer.on_call(call.action, &done.outcome, elapsed);
                Ok(done.value)
            }
            Err(err) => {
                let outcome = outcome_of(&err);
                tracing::debug!(
                    product = call.api.product,
                    action = call.action,
                    region = call.region_id,
                    instance_ids = call.instance_ids,
                    http_status,
                    code = err.code(),
                    outcome,
                    delivery = err.delivery().as_str(),
                    retry_after_ms = err
                        .retry_after()
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    request_id = err.request_id(),
                    elapsed_ms,
                    error = %err,
                    "ECS call failed"
                );
                self.observer.on_call(call.action, outcome, elapsed);
                Err(err)
            }
        }
    }
}

/// The observer's outcome label for a failed call.
fn outcome_of(err: &EcsError) -> &str {
    match err {
        EcsError::Api { code, .. } => code_label(code),
        EcsError::Unreachable { .. } => OUTCOME_UNREACHABLE,
        EcsError::HttpStatus { .. } => OUTCOME_HTTP_5XX,
        EcsError::Malformed { .. } | EcsError::InvalidRequest { .. } => OUTCOME_MALFORMED,
    }
}

/// A `DescribeInstances` page: 2xx with the expected JSON, or an error.
fn interpret_describe(
    answer: &RawAnswer,
    redactor: &crate::ecs::redaction::Redactor,
) -> Result<Interpreted<DescribeInstancesPage>, EcsError> {
    if !is_success(answer.http_status) {
        return Err(EcsError::from_error_response(
            answer.http_status,
            &answer.body,
            redactor,
        ));
    }
    let page = DescribeInstancesPage::parse(&answer.body).map_err(|e| EcsError::Malformed {
        http_status: answer.http_status,
        detail: redactor.redact(&e.to_string()),
    })?;
    Ok(Interpreted {
        request_id: page.request_id.clone(),
        value: page,
        outcome: OUTCOME_SUCCESS.to_owned(),
    })
}

/// The body of a successful write call.
#[derive(Deserialize)]
struct WriteBody {
    #[serde(rename = "RequestId", alias = "requestId")]
    request_id: Option<String>,
}

/// A StartInstance/StopInstance answer: 2xx `{"RequestId"}`, a dry-run verdict, or an error.
fn interpret_write(
    answer: &RawAnswer,
    redactor: &crate::ecs::redaction::Redactor,
    dry_run: bool,
) -> Result<Interpreted<WriteOutcome>, EcsError> {
    if is_success(answer.http_status) {
        let body: WriteBody =
            serde_json::from_slice(&answer.body).map_err(|e| EcsError::Malformed {
                http_status: answer.http_status,
                detail: redactor.redact(&format!("not a JSON object with RequestId: {e}")),
            })?;
        let request_id = body.request_id.filter(|s| !s.is_empty());
        return Ok(Interpreted {
            value: WriteOutcome {
                request_id: request_id.clone(),
                dry_run,
            },
            outcome: OUTCOME_SUCCESS.to_owned(),
            request_id,
        });
    }
    let err = EcsError::from_error_response(answer.http_status, &answer.body, redactor);
    match &err {
        EcsError::Api {
            code, request_id, ..
        } if dry_run && DRY_RUN_CODES.contains(&code.as_str()) => Ok(Interpreted {
            value: WriteOutcome {
                request_id: request_id.clone(),
                dry_run: true,
            },
            outcome: code.clone(),
            request_id: request_id.clone(),
        }),
        _ => Err(err),
    }
}

/// A StartInstances/StopInstances answer: 2xx with per-instance results, or an error.
fn interpret_batch(
    answer: &RawAnswer,
    redactor: &crate::ecs::redaction::Redactor,
    requested: &[&str],
) -> Result<Interpreted<BatchOutcome>, EcsError> {
    if !is_success(answer.http_status) {
        return Err(EcsError::from_error_response(
            answer.http_status,
            &answer.body,
            redactor,
        ));
    }
    let outcome = batch::parse_answer(&answer.body, requested, redactor).map_err(|e| {
        EcsError::Malformed {
            http_status: answer.http_status,
            detail: e.to_string(),
        }
    })?;
    Ok(Interpreted {
        request_id: outcome.request_id.clone(),
        value: outcome,
        outcome: OUTCOME_SUCCESS.to_owned(),
    })
}

/// A `GetCallerIdentity` answer: 2xx with an `AccountId`, or an error.
fn interpret_identity(
    answer: &RawAnswer,
    redactor: &crate::ecs::redaction::Redactor,
) -> Result<Interpreted<CallerIdentity>, EcsError> {
    if !is_success(answer.http_status) {
        return Err(EcsError::from_error_response(
            answer.http_status,
            &answer.body,
            redactor,
        ));
    }
    let identity = CallerIdentity::parse(&answer.body).map_err(|e| EcsError::Malformed {
        http_status: answer.http_status,
        detail: e.to_string(),
    })?;
    Ok(Interpreted {
        request_id: identity.request_id.clone(),
        value: identity,
        outcome: OUTCOME_SUCCESS.to_owned(),
    })
}

fn is_success(http_status: u16) -> bool {
    (200..300).contains(&http_status)
}

/// Region IDs go into a host name: only `a-z`, `0-9` and `-`, 1–64 characters.
fn check_region(region_id: &str) -> Result<(), EcsError> {
    let ok = !region_id.is_empty()
        && region_id.len() <= 64
        && region_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EcsError::InvalidRequest {
            detail: format!("malformed region ID {region_id:?}"),
        })
    }
}

/// Instance IDs must be non-empty, short, and free of whitespace and control characters.
fn check_instance_id(instance_id: &str) -> Result<(), EcsError> {
    let ok = !instance_id.is_empty()
        && instance_id.len() <= 128
        && !instance_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(EcsError::InvalidRequest {
            detail: format!("malformed instance ID {instance_id:?}"),
        })
    }
}
