//! The operator's ECS client: DescribeInstances, StartInstance and StopInstance over the RPC API.
//!
//! The controller holds one [`EcsClient`] (cheap to clone: one shared connection pool) and calls
//! it with the [`Credentials`] of the resource at hand. Each call is signed (`rpc`), sent
//! (`transport`), interpreted (success, dry run, [`EcsError`]), logged at `debug` (action,
//! region, instance IDs, HTTP status, ECS code, request ID, elapsed time — never a secret, the
//! signature, the token or the URL) and reported to the [`CallObserver`] for metrics.

mod rpc;
mod transport;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::credentials::Credentials;
use super::endpoint::Endpoint;
use super::error::EcsError;
use super::instance::{DescribeInstancesPage, InstanceObservation};
use super::observer::{
    CallObserver, NoopObserver, OUTCOME_HTTP_5XX, OUTCOME_MALFORMED, OUTCOME_SUCCESS,
    OUTCOME_UNREACHABLE, code_label,
};
use super::power::{
    DRY_RUN_CODES, START_INSTANCE, STOP_INSTANCE, StartInstance, StopInstance, WriteOutcome,
};
use transport::RawAnswer;

pub use transport::MAX_BODY_BYTES;

/// ECS action name of DescribeInstances.
pub const DESCRIBE_INSTANCES: &str = "DescribeInstances";
/// Most instance IDs one DescribeInstances call accepts.
pub const MAX_IDS_PER_DESCRIBE: usize = 100;
/// Most pages one `describe_instances` follows before calling the answer malformed.
const MAX_PAGES: usize = 100;

/// How an [`EcsClient`] talks to ECS.
#[derive(Clone)]
pub struct EcsClientConfig {
    /// Where calls go.
    pub endpoint: Endpoint,
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

/// A client for the ECS OpenAPI (RPC, version 2014-05-26, signature V1).
#[derive(Clone)]
pub struct EcsClient {
    http: reqwest::Client,
    endpoint: Arc<Endpoint>,
    request_timeout: Duration,
    observer: Arc<dyn CallObserver>,
}

impl fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsClient")
            .field("endpoint", &self.endpoint)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// One call about to be made: what it is about, for the log line and the observer.
struct Call<'a> {
    action: &'static str,
    region_id: &'a str,
    instance_ids: &'a str,
    params: Vec<(&'static str, String)>,
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
        Ok(Self {
            http,
            endpoint: Arc::new(config.endpoint),
            request_timeout: config.request_timeout,
            observer: config.observer,
        })
    }

    /// The endpoint calls go to.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// DescribeInstances for up to 100 instances of one region, following `NextToken` pages.
    ///
    /// Instances ECS does not report (deleted, wrong region, never existed) are simply not in the
    /// result; neither is anything ECS reports that was not asked for. No call is made for an
    /// empty list.
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
            let call = Call {
                action: DESCRIBE_INSTANCES,
                region_id,
                instance_ids: &ids_for_log,
                params,
            };
            let page = self.call(creds, call, interpret_describe).await?;
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

    /// DescribeInstances for one instance: `None` when ECS does not report it.
    ///
    /// # Errors
    /// As [`EcsClient::describe_instances`].
    pub async fn describe_instance(
        &self,
        creds: &Credentials,
        region_id: &str,
        instance_id: &str,
    ) -> Result<Option<InstanceObservation>, EcsError> {
        let found = self
            .describe_instances(creds, region_id, &[instance_id])
            .await?;
        Ok(found.into_iter().find(|i| i.instance_id == instance_id))
    }

    /// StartInstance. A dry run that ECS answers with `DryRunOperation` is
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
        check_region(region_id)?;
        check_instance_id(&request.instance_id)?;
        let call = Call {
            action: START_INSTANCE,
            region_id,
            instance_ids: &request.instance_id,
            params: request.params(),
        };
        let dry_run = request.dry_run;
        self.call(creds, call, |answer, redactor| {
            interpret_write(answer, redactor, dry_run)
        })
        .await
    }

    /// StopInstance. A dry run that ECS answers with `DryRunOperation` is
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
        check_region(region_id)?;
        check_instance_id(&request.instance_id)?;
        let call = Call {
            action: STOP_INSTANCE,
            region_id,
            instance_ids: &request.instance_id,
            params: request.params(),
        };
        let dry_run = request.dry_run;
        self.call(creds, call, |answer, redactor| {
            interpret_write(answer, redactor, dry_run)
        })
        .await
    }

    /// Signs, sends, interprets, logs and reports one call.
    async fn call<T, F>(
        &self,
        creds: &Credentials,
        call: Call<'_>,
        interpret: F,
    ) -> Result<T, EcsError>
    where
        F: FnOnce(RawAnswer, &crate::ecs::redaction::Redactor) -> Result<Interpreted<T>, EcsError>,
    {
        let request = rpc::build(
            creds,
            call.action,
            &call.params,
            &rpc::new_nonce(),
            &rpc::timestamp_now(),
        );
        let base_url = self.endpoint.base_url(call.region_id);
        let started = Instant::now();
        let sent = transport::send(&self.http, &base_url, &request, self.request_timeout).await;
        let http_status = sent.as_ref().ok().map(|a| a.http_status);
        let result = sent.and_then(|answer| interpret(answer, &request.redactor));
        let elapsed = started.elapsed();
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(done) => {
                tracing::debug!(
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
                    action = call.action,
                    region = call.region_id,
                    instance_ids = call.instance_ids,
                    http_status,
                    code = err.code(),
                    outcome,
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

/// A DescribeInstances page: 2xx with the expected JSON, or an error.
fn interpret_describe(
    answer: RawAnswer,
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
    answer: RawAnswer,
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
