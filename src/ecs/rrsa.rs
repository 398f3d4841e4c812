//! RRSA (RAM Roles for Service Accounts): the operator's own credentials as temporary STS keys.
//!
//! Where it sits: one source of [`OperatorCredentials`](super::OperatorCredentials), the
//! credentials the reconcile resolves for a resource without `credentialsSecretRef`
//! (static keys from the environment first, then RRSA). The controller asks
//! [`RrsaProvider::credentials`] before each ECS call and signs with what it gets; this module
//! exchanges the pod's projected service-account token at STS (`AssumeRoleWithOIDC`, an anonymous
//! RPC call) and keeps the answer until it is due for refresh.
//!
//! ```text
//! reconcile ─► OperatorCredentials::credentials ─► RrsaProvider::credentials
//!                                                    │ cached and fresh? ─► cached Credentials
//!                                                    └ else (one caller at a time): read token
//!                                                      file ─► POST STS AssumeRoleWithOIDC
//!                                                      (anonymous) ─► cache ─► Credentials
//! ```
//!
//! Configuration is what ACK's `ack-pod-identity-webhook` injects ([`RrsaConfig::from_lookup`]).
//! The token file is read again at every exchange (the kubelet rotates it). The refresh rule is
//! [`RefreshWindow::for_lifetime`]. Nothing here logs or returns the token, the AccessKey secret or the
//! security token: errors carry the token file's path, STS's code and its message with the token
//! scrubbed out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

use super::credentials::{Credentials, CredentialsError};
use super::endpoint::{Endpoint, EndpointError};
use super::error::EcsError;
use super::http::BodyError;
use super::redaction::Redactor;
use super::signature::canonical_query;

/// Environment variable: the RAM role to assume (`acs:ram::<uid>:role/<name>`).
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
/// Environment variable: the cluster's OIDC provider (`acs:ram::<uid>:oidc-provider/ack-rrsa-…`).
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
/// Environment variable: the projected service-account token file.
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
/// Optional environment variable: the STS `RoleSessionName` (2–64 of `[A-Za-z0-9.@_-]`).
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
/// Optional environment variable: the STS endpoint, a host (`sts-vpc.cn-hangzhou.aliyuncs.com`,
/// meaning `https://…`) or an `http(s)://` URL.
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
/// Optional environment variable: the region whose STS endpoint to use.
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
/// Optional environment variable: `true` selects `sts-vpc.<region>.aliyuncs.com`.
pub const ENV_VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";

/// The STS endpoint when neither an endpoint nor a region is configured.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
/// STS OpenAPI version.
pub const STS_API_VERSION: &str = "2015-04-01";
/// STS action name.
pub const ASSUME_ROLE_WITH_OIDC: &str = "AssumeRoleWithOIDC";
/// Requested lifetime of the STS credentials (STS's default; every role allows at least this).
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// How long after a failed exchange the next one is attempted (callers meanwhile get the cached
/// credentials while usable, else the same error).
pub const DEFAULT_FAILURE_COOLDOWN: Duration = Duration::from_secs(5);

/// Largest token file read (STS accepts tokens of at most 20,000 characters).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// Largest STS answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Refresh at least this long before expiry …
const MIN_REFRESH_MARGIN: SignedDuration = SignedDuration::from_secs(180);
/// … and never hand out credentials with less than this left (unless the lifetime is tiny).
const MIN_USABLE_REMAINING: SignedDuration = SignedDuration::from_secs(60);

/// RRSA settings, normally read from the environment the ACK pod-identity webhook injects.
///
/// Holds no secret: the token stays in its file until an exchange reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsaConfig {
    /// `RoleArn`.
    pub role_arn: String,
    /// `OIDCProviderArn`.
    pub oidc_provider_arn: String,
    /// The token file, read at every exchange.
    pub token_file: PathBuf,
    /// `RoleSessionName`.
    pub role_session_name: String,
    /// STS base URL without trailing `/`, e.g. `https://sts-vpc.cn-hangzhou.aliyuncs.com`.
    pub sts_endpoint: String,
    /// `DurationSeconds` asked for.
    pub duration_seconds: u32,
    /// Pause after a failed exchange before the next attempt.
    pub failure_cooldown: Duration,
    /// Limit for connecting to STS.
    pub connect_timeout: Duration,
    /// Limit for a whole exchange.
    pub request_timeout: Duration,
}

impl RrsaConfig {
    /// Settings from explicit values and the defaults: endpoint `https://sts.aliyuncs.com`, a
    /// session name `ecs-power-operator-<unix millis>`, 3600 s, 5 s cooldown, 5 s / 10 s timeouts.
    #[must_use]
    pub fn new(
        role_arn: impl Into<String>,
        oidc_provider_arn: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            role_arn: role_arn.into(),
            oidc_provider_arn: oidc_provider_arn.into(),
            token_file: token_file.into(),
            role_session_name: default_session_name(),
            sts_endpoint: DEFAULT_STS_ENDPOINT.to_owned(),
            duration_seconds: DEFAULT_DURATION_SECONDS,
            failure_cooldown: DEFAULT_FAILURE_COOLDOWN,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Reads the RRSA variables through `lookup` (standing in for the environment).
    ///
    /// `Ok(None)` when none of `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE` is set (an empty value counts as unset). The STS endpoint
    /// is, in this order (as the official credential providers choose it):
    /// `ALIBABA_CLOUD_STS_ENDPOINT` (a bare host means `https://host`); with
    /// `ALIBABA_CLOUD_STS_REGION`, `sts-vpc.<region>.aliyuncs.com` when
    /// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`, else `sts.<region>.aliyuncs.com`; else
    /// `sts.aliyuncs.com`.
    ///
    /// # Errors
    /// [`CredentialsError::Missing`] / [`CredentialsError::Empty`] naming the first absent one of
    /// the three when only some are set; [`CredentialsError::Invalid`] for a malformed endpoint,
    /// region or session name; [`CredentialsError::NotUtf8`] for a non-UTF-8 value.
    pub fn from_lookup<F>(lookup: F) -> Result<Option<Self>, CredentialsError>
    where
        F: Fn(&str) -> Option<std::ffi::OsString>,
    {
        let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match lookup(key) {
                None => Ok(None),
                Some(value) => {
                    let text = value
                        .into_string()
                        .map_err(|_| CredentialsError::NotUtf8 { key })?;
                    let trimmed = text.trim();
                    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
                }
            }
        };
        let role_arn = get(ENV_ROLE_ARN)?;
        let provider_arn = get(ENV_OIDC_PROVIDER_ARN)?;
        let token_file = lookup(ENV_OIDC_TOKEN_FILE)
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty());
        if role_arn.is_none() && provider_arn.is_none() && token_file.is_none() {
            return Ok(None);
        }
        let required = |value: Option<String>, key: &'static str| {
            value.ok_or_else(|| match lookup(key) {
                Some(_) => CredentialsError::Empty { key },
                None => CredentialsError::Missing { key },
            })
        };
        let role_arn = required(role_arn, ENV_ROLE_ARN)?;
        let provider_arn = required(provider_arn, ENV_OIDC_PROVIDER_ARN)?;
        let Some(token_file) = token_file else {
            return Err(match lookup(ENV_OIDC_TOKEN_FILE) {
                Some(_) => CredentialsError::Empty {
                    key: ENV_OIDC_TOKEN_FILE,
                },
                None => CredentialsError::Missing {
                    key: ENV_OIDC_TOKEN_FILE,
                },
            });
        };
        for (key, value) in [
            (ENV_ROLE_ARN, &role_arn),
            (ENV_OIDC_PROVIDER_ARN, &provider_arn),
        ] {
            if value.chars().any(char::is_control) {
                return Err(CredentialsError::ControlCharacter { key });
            }
        }
        let mut config = Self::new(role_arn, provider_arn, token_file);
        if let Some(name) = get(ENV_ROLE_SESSION_NAME)? {
            check_session_name(&name)?;
            config.role_session_name = name;
        }
        let settings = StsSettings::from_lookup(&lookup)?;
        config.sts_endpoint = sts_endpoint(
            settings.endpoint.as_deref(),
            settings.region.as_deref(),
            settings.vpc,
        )?;
        Ok(Some(config))
    }
}

/// The STS endpoint for signed STS calls other than the RRSA exchange (`GetCallerIdentity`),
/// chosen like the RRSA exchange's with one addition for `--ecs-endpoint`. In this order:
/// `ALIBABA_CLOUD_STS_ENDPOINT` (a bare host means `https://host`); else, when `ecs_endpoint` is
/// an override (`--ecs-endpoint`: an emulator, a test server or a proxy), that same URL, since
/// an RPC endpoint tells products apart by `Action` and `Version`; else with
/// `ALIBABA_CLOUD_STS_REGION`, `sts-vpc.<region>.aliyuncs.com` when
/// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`, else `sts.<region>.aliyuncs.com`; else
/// `sts.aliyuncs.com`. `lookup` stands in for the environment. Returns a base URL without a
/// trailing `/`.
///
/// # Errors
/// [`CredentialsError::Invalid`] for a malformed endpoint or region,
/// [`CredentialsError::NotUtf8`] for a non-UTF-8 value.
pub fn sts_endpoint_for<F>(lookup: F, ecs_endpoint: &Endpoint) -> Result<String, CredentialsError>
where
    F: Fn(&str) -> Option<std::ffi::OsString>,
{
    let settings = StsSettings::from_lookup(&lookup)?;
    match (&settings.endpoint, ecs_endpoint) {
        (None, Endpoint::Override(url)) => Ok(url.trim_end_matches('/').to_owned()),
        _ => sts_endpoint(
            settings.endpoint.as_deref(),
            settings.region.as_deref(),
            settings.vpc,
        ),
    }
}

/// The three STS endpoint variables, trimmed (empty means unset).
struct StsSettings {
    endpoint: Option<String>,
    region: Option<String>,
    vpc: bool,
}

impl StsSettings {
    fn from_lookup<F>(lookup: &F) -> Result<Self, CredentialsError>
    where
        F: Fn(&str) -> Option<std::ffi::OsString>,
    {
        let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match lookup(key) {
                None => Ok(None),
                Some(value) => {
                    let text = value
                        .into_string()
                        .map_err(|_| CredentialsError::NotUtf8 { key })?;
                    let trimmed = text.trim();
                    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
                }
            }
        };
        Ok(Self {
            endpoint: get(ENV_STS_ENDPOINT)?,
            region: get(ENV_STS_REGION)?,
            vpc: get(ENV_VPC_ENDPOINT_ENABLED)?.is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

/// `ecs-power-operator-<unix millis>`: 32 characters of `[a-z0-9-]`, valid for STS.
fn default_session_name() -> String {
    format!("ecs-power-operator-{}", Timestamp::now().as_millisecond())
}

/// STS `RoleSessionName`: 2–64 characters of `[A-Za-z0-9.@_-]`, as STS requires.
fn check_session_name(name: &str) -> Result<(), CredentialsError> {
    let ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CredentialsError::Invalid {
            key: ENV_ROLE_SESSION_NAME,
            detail: "expected 2 to 64 characters of [A-Za-z0-9.@_-]".to_owned(),
        })
    }
}

/// The STS base URL: explicit endpoint, else regional (VPC or public), else central.
fn sts_endpoint(
    explicit: Option<&str>,
    region: Option<&str>,
    vpc: bool,
) -> Result<String, CredentialsError> {
    if let Some(endpoint) = explicit {
        let url = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("https://{endpoint}")
        };
        return match Endpoint::override_url(&url) {
            Ok(Endpoint::Override(base)) => Ok(base),
            Ok(Endpoint::Regional { .. }) => Err(CredentialsError::Invalid {
                key: ENV_STS_ENDPOINT,
                detail: "not a URL".to_owned(),
            }),
            Err(EndpointError::InvalidUrl { detail, .. }) => Err(CredentialsError::Invalid {
                key: ENV_STS_ENDPOINT,
                detail,
            }),
            Err(other @ EndpointError::UnknownStyle(_)) => Err(CredentialsError::Invalid {
                key: ENV_STS_ENDPOINT,
                detail: other.to_string(),
            }),
        };
    }
    match region {
        Some(region) => {
            let ok = region.len() <= 64
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(CredentialsError::Invalid {
                    key: ENV_STS_REGION,
                    detail: "expected a region ID such as cn-hangzhou".to_owned(),
                });
            }
            let prefix = if vpc { "sts-vpc" } else { "sts" };
            Ok(format!("https://{prefix}.{region}.aliyuncs.com"))
        }
        None => Ok(DEFAULT_STS_ENDPOINT.to_owned()),
    }
}

/// When a set of STS credentials is refreshed, and until when it may still be handed out.
///
/// With `lifetime` = `Expiration` − the time the answer arrived:
/// - **refresh** when `margin = min(max(180 s, lifetime / 4), lifetime / 2)` is left: for the
///   usual 3600 s that is 15 minutes before expiry (as the official Python provider does), for
///   STS's minimum of 900 s it is 225 s (above the Go provider's 180 s), and a lifetime shorter
///   than 6 minutes (only emulators grant those) is refreshed at half-life;
/// - when that refresh fails, the cached credentials are still **handed out** while more than
///   `min(60 s, margin / 2)` is left (a warning is logged), so an ECS call made with them has
///   time to finish; after that the caller gets the exchange error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshWindow {
    /// From here on the next caller exchanges again.
    pub refresh_at: Timestamp,
    /// After this the credentials are no longer handed out.
    pub usable_until: Timestamp,
}

impl RefreshWindow {
    /// The refresh window of credentials obtained at `obtained` that expire at `expiration`.
    #[must_use]
    pub fn for_lifetime(obtained: Timestamp, expiration: Timestamp) -> Self {
        let lifetime = expiration
            .duration_since(obtained)
            .max(SignedDuration::ZERO);
        let margin = (lifetime / 4).max(MIN_REFRESH_MARGIN).min(lifetime / 2);
        let keep = MIN_USABLE_REMAINING.min(margin / 2);
        let before = |d: SignedDuration| expiration.checked_sub(d).unwrap_or(expiration);
        Self {
            refresh_at: before(margin),
            usable_until: before(keep),
        }
    }
}

/// What is known about the current STS session: nothing secret, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsaSession {
    /// The `STS.…` AccessKey ID.
    pub access_key_id: String,
    /// When STS said they expire.
    pub expiration: Timestamp,
    /// When the answer arrived.
    pub obtained_at: Timestamp,
    /// Refresh and hand-out limits ([`RefreshWindow::for_lifetime`]).
    pub refresh_window: RefreshWindow,
    /// `AssumedRoleUser.Arn` (`<role arn>/<session name>`), when STS sent it.
    pub assumed_role_arn: Option<String>,
    /// `OIDCTokenInfo.Subject` (`system:serviceaccount:<ns>:<sa>`), when STS sent it.
    pub subject: Option<String>,
    /// The STS `RequestId` of the exchange.
    pub request_id: Option<String>,
}

/// Obtains and refreshes the operator's STS credentials with the RRSA token.
///
/// Cheap to clone (an `Arc` inside); clones share the cached credentials. Safe for concurrent
/// reconciles: at most one exchange is in flight. Callers that arrive meanwhile get the cached
/// credentials at once while those are still usable (a refresh does not hold anyone up), and
/// otherwise wait for the exchange's outcome instead of starting their own.
#[derive(Clone)]
pub struct RrsaProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: RrsaConfig,
    http: reqwest::Client,
    /// What is known; held only briefly, never across an `.await`.
    state: std::sync::Mutex<State>,
    /// Held for the whole of an exchange: the single flight.
    exchange_lock: tokio::sync::Mutex<()>,
    /// Finished exchanges, successful or not.
    exchanges: AtomicU64,
}

/// What [`RrsaProvider::peek`] found.
enum Peek {
    /// The answer, without an exchange.
    Done(Result<Credentials, CredentialsError>),
    /// An exchange is due; `usable` are cached credentials that may still be handed out.
    Exchange { usable: Option<Credentials> },
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    last_failure: Option<Failure>,
}

struct Cached {
    credentials: Credentials,
    session: RrsaSession,
}

struct Failure {
    at: Instant,
    error: CredentialsError,
}

impl fmt::Debug for RrsaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("RrsaProvider")
            .field("role_arn", &c.role_arn)
            .field("oidc_provider_arn", &c.oidc_provider_arn)
            .field("token_file", &c.token_file)
            .field("role_session_name", &c.role_session_name)
            .field("sts_endpoint", &c.sts_endpoint)
            .finish_non_exhaustive()
    }
}

impl RrsaProvider {
    /// A provider with `config`; no exchange happens until the first
    /// [`RrsaProvider::credentials`].
    ///
    /// Installs rustls' `ring` crypto provider as the process default when none is installed yet.
    ///
    /// # Errors
    /// [`CredentialsError::StsUnavailable`] when the HTTP client cannot be built.
    pub fn new(config: RrsaConfig) -> Result<Self, CredentialsError> {
        let http =
            super::http::client(config.connect_timeout, config.request_timeout).map_err(|e| {
                CredentialsError::StsUnavailable {
                    detail: format!("cannot build the STS HTTP client: {}", error_chain(e)),
                    http_status: None,
                }
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                state: std::sync::Mutex::new(State::default()),
                exchange_lock: tokio::sync::Mutex::new(()),
                exchanges: AtomicU64::new(0),
            }),
        })
    }

    /// The settings in use.
    #[must_use]
    pub fn config(&self) -> &RrsaConfig {
        &self.inner.config
    }

    /// How many exchanges have finished (successful or not) since the provider was built.
    #[must_use]
    pub fn exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Acquire)
    }

    /// The current session, if an exchange has succeeded (it may be past its refresh time).
    #[must_use]
    pub fn session(&self) -> Option<RrsaSession> {
        self.state().cached.as_ref().map(|c| c.session.clone())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; should that change, the data is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Credentials to sign the next ECS call with.
    ///
    /// Cached credentials are returned until their refresh time ([`RefreshWindow`]); then the caller
    /// that gets there first exchanges the token file's current content at STS. Meanwhile other
    /// callers get the cached credentials while they are still usable, else they wait for that
    /// exchange and take its result. After a failed exchange no new one is tried for
    /// [`RrsaConfig::failure_cooldown`]; meanwhile, and when the refresh itself fails, callers get
    /// the cached credentials while they are still usable, else the exchange's error.
    ///
    /// # Errors
    /// [`CredentialsError::TokenFile`], [`CredentialsError::Exchange`] (STS refused),
    /// [`CredentialsError::StsUnavailable`] (no usable answer).
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let seen = self.exchanges();
        let usable = match self.peek(seen) {
            Peek::Done(result) => return result,
            Peek::Exchange { usable } => usable,
        };
        let _flight = match usable {
            // Someone is refreshing already: don't wait for them.
            Some(credentials) => match self.inner.exchange_lock.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(credentials),
            },
            None => self.inner.exchange_lock.lock().await,
        };
        // Whoever held the lock before us may have done the work.
        let usable = match self.peek(seen) {
            Peek::Done(result) => return result,
            Peek::Exchange { usable } => usable,
        };
        let outcome = self.exchange().await;
        let mut state = self.state();
        self.inner.exchanges.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(cached) => {
                let credentials = cached.credentials.clone();
                state.cached = Some(cached);
                state.last_failure = None;
                Ok(credentials)
            }
            Err(error) => {
                state.last_failure = Some(Failure {
                    at: Instant::now(),
                    error: error.clone(),
                });
                match (usable, &state.cached) {
                    (Some(credentials), Some(cached)) => {
                        tracing::warn!(
                            role_arn = self.inner.config.role_arn.as_str(),
                            access_key_id = cached.session.access_key_id.as_str(),
                            expiration = %cached.session.expiration,
                            usable_until = %cached.session.refresh_window.usable_until,
                            error = %error,
                            "RRSA credential refresh failed; using the cached STS credentials meanwhile"
                        );
                        Ok(credentials)
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Decides from the state alone: fresh credentials, a recent failure to repeat (or to
    /// bridge with usable credentials), or an exchange to make. `seen` is the exchange count when
    /// the caller arrived: a change means an exchange finished while it waited.
    fn peek(&self, seen: u64) -> Peek {
        let state = self.state();
        let now = Timestamp::now();
        if let Some(cached) = &state.cached
            && now < cached.session.refresh_window.refresh_at
        {
            return Peek::Done(Ok(cached.credentials.clone()));
        }
        let usable = state
            .cached
            .as_ref()
            .filter(|c| now < c.session.refresh_window.usable_until)
            .map(|c| c.credentials.clone());
        if let Some(failure) = &state.last_failure {
            let raced = self.exchanges() != seen;
            if raced || failure.at.elapsed() < self.inner.config.failure_cooldown {
                return Peek::Done(usable.ok_or_else(|| failure.error.clone()));
            }
        }
        Peek::Exchange { usable }
    }

    /// One exchange: read the token, call STS, check the answer. Logs its outcome.
    async fn exchange(&self) -> Result<Cached, CredentialsError> {
        let config = &self.inner.config;
        let started = Instant::now();
        let result = self.exchange_once().await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(cached) => tracing::info!(
                role_arn = config.role_arn.as_str(),
                sts_endpoint = config.sts_endpoint.as_str(),
                subject = cached.session.subject.as_deref(),
                access_key_id = cached.session.access_key_id.as_str(),
                expiration = %cached.session.expiration,
                refresh_at = %cached.session.refresh_window.refresh_at,
                request_id = cached.session.request_id.as_deref(),
                elapsed_ms,
                "obtained STS credentials with the RRSA token"
            ),
            Err(error) => tracing::debug!(
                role_arn = config.role_arn.as_str(),
                sts_endpoint = config.sts_endpoint.as_str(),
                token_file = %config.token_file.display(),
                code = error.code(),
                http_status = error.http_status(),
                request_id = error.request_id(),
                elapsed_ms,
                error = %error,
                "STS AssumeRoleWithOIDC failed"
            ),
        }
        result
    }

    async fn exchange_once(&self) -> Result<Cached, CredentialsError> {
        let config = &self.inner.config;
        let token = read_token(&config.token_file).await?;
        let mut redactor = Redactor::new();
        redactor.add(&token);
        let request = assume_role_request(config, &token, &Timestamp::now());
        let response = self
            .inner
            .http
            .post(format!("{}/?{}", config.sts_endpoint, request.query))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(request.body)
            .send()
            .await
            .map_err(|e| CredentialsError::StsUnavailable {
                detail: redactor.redact(&error_chain(e)),
                http_status: None,
            })?;
        let http_status = response.status().as_u16();
        let body = read_answer(response, http_status, &redactor).await?;
        if !(200..300).contains(&http_status) {
            return Err(error_answer(http_status, &body, &redactor));
        }
        let answer = parse_answer(&body, http_status)?;
        // Scrub the new secrets too, in case they ever end up in a message below.
        redactor.add(&answer.access_key_secret);
        redactor.add(&answer.security_token);
        let obtained_at = Timestamp::now();
        let refresh_window = RefreshWindow::for_lifetime(obtained_at, answer.expiration);
        if refresh_window.usable_until <= obtained_at {
            // No timestamp in the message: it may become a condition message, which must stay
            // the same across retries so that repeating a failure does not rewrite the status.
            tracing::debug!(expiration = %answer.expiration, "STS credentials expire too soon");
            return Err(CredentialsError::StsUnavailable {
                detail:
                    "STS handed out credentials that expire too soon to use (is the clock right?)"
                        .to_owned(),
                http_status: Some(http_status),
            });
        }
        Ok(Cached {
            credentials: Credentials::new(
                answer.access_key_id.clone(),
                answer.access_key_secret,
                Some(answer.security_token),
            ),
            session: RrsaSession {
                access_key_id: answer.access_key_id,
                expiration: answer.expiration,
                obtained_at,
                refresh_window,
                assumed_role_arn: answer.assumed_role_arn,
                subject: answer.subject,
                request_id: answer.request_id,
            },
        })
    }
}

/// The query string and form body of one `AssumeRoleWithOIDC` call.
struct AssumeRoleRequest {
    /// `Action`, `Format`, `Version`, `Timestamp`: nothing sensitive goes into the URL.
    query: String,
    /// `RoleArn`, `OIDCProviderArn`, `OIDCToken`, `RoleSessionName`, `DurationSeconds`.
    body: String,
}

/// Builds the anonymous `AssumeRoleWithOIDC` call as the official Go credential provider sends it:
/// `Action`, `Format`, `Version`, `Timestamp` in the query, everything else in a form body.
fn assume_role_request(config: &RrsaConfig, token: &str, now: &Timestamp) -> AssumeRoleRequest {
    let timestamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let query: BTreeMap<String, String> = [
        ("Action", ASSUME_ROLE_WITH_OIDC),
        ("Format", "JSON"),
        ("Version", STS_API_VERSION),
        ("Timestamp", timestamp.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let duration = config.duration_seconds.to_string();
    let body: BTreeMap<String, String> = [
        ("RoleArn", config.role_arn.as_str()),
        ("OIDCProviderArn", config.oidc_provider_arn.as_str()),
        ("OIDCToken", token),
        ("RoleSessionName", config.role_session_name.as_str()),
        ("DurationSeconds", duration.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    AssumeRoleRequest {
        query: canonical_query(&query),
        body: canonical_query(&body),
    }
}

/// Reads the token file afresh: trimmed, non-empty UTF-8, at most 64 KiB.
async fn read_token(path: &std::path::Path) -> Result<String, CredentialsError> {
    let fail = |detail: String| CredentialsError::TokenFile {
        path: path.display().to_string(),
        detail,
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(fail(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".to_owned()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(fail("the file is empty".to_owned()));
    }
    Ok(token.to_owned())
}

/// Reads at most [`MAX_ANSWER_BYTES`] of the answer.
async fn read_answer(
    response: reqwest::Response,
    http_status: u16,
    redactor: &Redactor,
) -> Result<Vec<u8>, CredentialsError> {
    super::http::read_capped(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| CredentialsError::StsUnavailable {
            detail: match e {
                BodyError::TooLarge => format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                BodyError::CutShort { read, error } => {
                    format!(
                        "answer cut short after {read} bytes: {}",
                        redactor.redact(&error_chain(error))
                    )
                }
            },
            http_status: Some(http_status),
        })
}

/// A non-2xx answer: an STS error code becomes [`CredentialsError::Exchange`], anything else
/// (a proxy's HTML page, an empty body) [`CredentialsError::StsUnavailable`].
fn error_answer(http_status: u16, body: &[u8], redactor: &Redactor) -> CredentialsError {
    match EcsError::from_error_response(http_status, body, redactor) {
        EcsError::Api {
            code,
            message,
            http_status,
            request_id,
            ..
        } => CredentialsError::Exchange {
            code,
            message,
            http_status,
            request_id,
        },
        other => CredentialsError::StsUnavailable {
            detail: match other {
                EcsError::HttpStatus { snippet, .. } => snippet,
                EcsError::Malformed { detail, .. } => detail,
                rest => rest.to_string(),
            },
            http_status: Some(http_status),
        },
    }
}

/// The fields of a successful `AssumeRoleWithOIDC` answer.
struct Answer {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: Timestamp,
    assumed_role_arn: Option<String>,
    subject: Option<String>,
    request_id: Option<String>,
}

/// Picks the answer apart by hand, so no parser error message can quote a secret.
fn parse_answer(body: &[u8], http_status: u16) -> Result<Answer, CredentialsError> {
    let malformed = |detail: String| CredentialsError::StsUnavailable {
        detail: format!("malformed AssumeRoleWithOIDC answer: {detail}"),
        http_status: Some(http_status),
    };
    let root: Value = serde_json::from_slice(body).map_err(|_| malformed("not JSON".to_owned()))?;
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let credentials = root
        .get("Credentials")
        .filter(|v| v.is_object())
        .ok_or_else(|| malformed("no Credentials object".to_owned()))?;
    let field = |name: &str| {
        text(credentials.get(name)).ok_or_else(|| malformed(format!("no Credentials.{name}")))
    };
    let access_key_id = field("AccessKeyId")?;
    let access_key_secret = field("AccessKeySecret")?;
    let security_token = field("SecurityToken")?;
    let expiration_text = field("Expiration")?;
    let expiration = expiration_text.parse::<Timestamp>().map_err(|_| {
        malformed(format!(
            "Credentials.Expiration {expiration_text:?} is not an RFC 3339 time"
        ))
    })?;
    if [&access_key_id, &access_key_secret, &security_token]
        .iter()
        .any(|v| v.chars().any(char::is_control))
    {
        return Err(malformed(
            "a credential contains a control character".to_owned(),
        ));
    }
    Ok(Answer {
        access_key_id,
        access_key_secret,
        security_token,
        expiration,
        assumed_role_arn: text(root.get("AssumedRoleUser").and_then(|u| u.get("Arn"))),
        subject: text(root.get("OIDCTokenInfo").and_then(|i| i.get("Subject"))),
        request_id: text(root.get("RequestId")),
    })
}

/// An HTTP error and its sources as one line, without the URL.
fn error_chain(err: reqwest::Error) -> String {
    super::http::error_chain(&err.without_url())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: BTreeMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    const ROLE: &str = "acs:ram::1234567890123456:role/ecs-power-operator";
    const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123";
    const TOKEN_FILE: &str = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (ENV_ROLE_ARN, ROLE),
            (ENV_OIDC_PROVIDER_ARN, PROVIDER),
            (ENV_OIDC_TOKEN_FILE, TOKEN_FILE),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        pairs
    }

    #[test]
    fn reads_the_three_variables_with_defaults() {
        let config = RrsaConfig::from_lookup(env(&base())).unwrap().unwrap();
        assert_eq!(config.role_arn, ROLE);
        assert_eq!(config.oidc_provider_arn, PROVIDER);
        assert_eq!(config.token_file, PathBuf::from(TOKEN_FILE));
        assert_eq!(config.sts_endpoint, "https://sts.aliyuncs.com");
        assert_eq!(config.duration_seconds, 3600);
        assert!(config.role_session_name.starts_with("ecs-power-operator-"));
        check_session_name(&config.role_session_name).unwrap();
    }

    #[test]
    fn nothing_set_is_none() {
        assert_eq!(RrsaConfig::from_lookup(env(&[])).unwrap(), None);
        // Endpoint settings alone do not configure RRSA.
        assert_eq!(
            RrsaConfig::from_lookup(env(&[
                (ENV_STS_REGION, "cn-hangzhou"),
                (ENV_VPC_ENDPOINT_ENABLED, "true"),
                (ENV_ROLE_ARN, " "),
            ]))
            .unwrap(),
            None
        );
    }

    #[test]
    fn partial_configuration_names_the_missing_variable() {
        let cases: &[(&[(&str, &str)], CredentialsError)] = &[
            (
                &[(ENV_ROLE_ARN, ROLE)],
                CredentialsError::Missing {
                    key: ENV_OIDC_PROVIDER_ARN,
                },
            ),
            (
                &[(ENV_ROLE_ARN, ROLE), (ENV_OIDC_PROVIDER_ARN, PROVIDER)],
                CredentialsError::Missing {
                    key: ENV_OIDC_TOKEN_FILE,
                },
            ),
            (
                &[(ENV_OIDC_TOKEN_FILE, TOKEN_FILE)],
                CredentialsError::Missing { key: ENV_ROLE_ARN },
            ),
            (
                &[
                    (ENV_ROLE_ARN, ""),
                    (ENV_OIDC_PROVIDER_ARN, PROVIDER),
                    (ENV_OIDC_TOKEN_FILE, TOKEN_FILE),
                ],
                CredentialsError::Empty { key: ENV_ROLE_ARN },
            ),
            (
                &[
                    (ENV_ROLE_ARN, ROLE),
                    (ENV_OIDC_PROVIDER_ARN, PROVIDER),
                    (ENV_OIDC_TOKEN_FILE, ""),
                ],
                CredentialsError::Empty {
                    key: ENV_OIDC_TOKEN_FILE,
                },
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                RrsaConfig::from_lookup(env(pairs)).unwrap_err(),
                *expected,
                "{pairs:?}"
            );
            assert!(expected.to_string().contains("ALIBABA_CLOUD_"));
        }
    }

    #[test]
    fn endpoint_selection() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "https://sts.aliyuncs.com"),
            (
                &[(ENV_STS_REGION, "cn-hangzhou")],
                "https://sts.cn-hangzhou.aliyuncs.com",
            ),
            (
                &[
                    (ENV_STS_REGION, "cn-hangzhou"),
                    (ENV_VPC_ENDPOINT_ENABLED, "true"),
                ],
                "https://sts-vpc.cn-hangzhou.aliyuncs.com",
            ),
            (
                &[
                    (ENV_STS_REGION, "ap-southeast-1"),
                    (ENV_VPC_ENDPOINT_ENABLED, "TRUE"),
                ],
                "https://sts-vpc.ap-southeast-1.aliyuncs.com",
            ),
            (
                &[
                    (ENV_STS_REGION, "cn-hangzhou"),
                    (ENV_VPC_ENDPOINT_ENABLED, "false"),
                ],
                "https://sts.cn-hangzhou.aliyuncs.com",
            ),
            // The VPC flag means nothing without a region (as in the official providers).
            (
                &[(ENV_VPC_ENDPOINT_ENABLED, "true")],
                "https://sts.aliyuncs.com",
            ),
            // What the ACK webhook injects: the explicit endpoint wins.
            (
                &[
                    (ENV_STS_ENDPOINT, "sts-vpc.cn-beijing.aliyuncs.com"),
                    (ENV_STS_REGION, "cn-hangzhou"),
                    (ENV_VPC_ENDPOINT_ENABLED, "true"),
                ],
                "https://sts-vpc.cn-beijing.aliyuncs.com",
            ),
            (
                &[(ENV_STS_ENDPOINT, "https://sts.example.test/")],
                "https://sts.example.test",
            ),
            (
                &[(ENV_STS_ENDPOINT, "http://127.0.0.1:9090")],
                "http://127.0.0.1:9090",
            ),
            (
                &[(ENV_STS_ENDPOINT, "  localhost:8443  ")],
                "https://localhost:8443",
            ),
        ];
        for (extra, expected) in cases {
            let config = RrsaConfig::from_lookup(env(&with(extra))).unwrap().unwrap();
            assert_eq!(config.sts_endpoint, *expected, "{extra:?}");
        }
    }

    #[test]
    fn sts_endpoint_for_signed_calls() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a Endpoint, &'a str);
        let regional = Endpoint::default();
        let emulator = Endpoint::Override("http://127.0.0.1:9090".into());
        let cases: [Case<'_>; 6] = [
            (&[], &regional, "https://sts.aliyuncs.com"),
            (&[], &emulator, "http://127.0.0.1:9090"),
            (
                &[("ALIBABA_CLOUD_STS_REGION", "cn-beijing")],
                &regional,
                "https://sts.cn-beijing.aliyuncs.com",
            ),
            (
                &[
                    ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
                    ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
                ],
                &regional,
                "https://sts-vpc.cn-beijing.aliyuncs.com",
            ),
            // The override beats the region, the explicit endpoint beats the override.
            (
                &[("ALIBABA_CLOUD_STS_REGION", "cn-beijing")],
                &emulator,
                "http://127.0.0.1:9090",
            ),
            (
                &[(
                    "ALIBABA_CLOUD_STS_ENDPOINT",
                    "sts-vpc.cn-hangzhou.aliyuncs.com",
                )],
                &emulator,
                "https://sts-vpc.cn-hangzhou.aliyuncs.com",
            ),
        ];
        for (vars, ecs, expected) in cases {
            assert_eq!(
                sts_endpoint_for(env(vars), ecs).unwrap(),
                expected,
                "{vars:?} {ecs:?}"
            );
        }
        assert!(matches!(
            sts_endpoint_for(
                env(&[("ALIBABA_CLOUD_STS_REGION", "Bad Region")]),
                &regional
            ),
            Err(CredentialsError::Invalid { .. })
        ));
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(ENV_STS_ENDPOINT, "ftp://sts.example")], ENV_STS_ENDPOINT),
            (
                &[(ENV_STS_ENDPOINT, "http://sts.example/?a=b")],
                ENV_STS_ENDPOINT,
            ),
            (
                &[(ENV_STS_ENDPOINT, "https://user:pw@sts.example")],
                ENV_STS_ENDPOINT,
            ),
            (&[(ENV_STS_ENDPOINT, "bad host name")], ENV_STS_ENDPOINT),
            (&[(ENV_STS_REGION, "cn-hangzhou/evil")], ENV_STS_REGION),
            (&[(ENV_STS_REGION, "CN-HANGZHOU")], ENV_STS_REGION),
            (&[(ENV_ROLE_SESSION_NAME, "a")], ENV_ROLE_SESSION_NAME),
            (
                &[(ENV_ROLE_SESSION_NAME, "has space")],
                ENV_ROLE_SESSION_NAME,
            ),
        ];
        for (extra, key) in cases {
            let err = RrsaConfig::from_lookup(env(&with(extra))).unwrap_err();
            assert!(
                matches!(&err, CredentialsError::Invalid { key: k, .. } if k == key),
                "{extra:?} gave {err:?}"
            );
            // User info in a URL is never echoed.
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        let config = RrsaConfig::from_lookup(env(&with(&[(
            ENV_ROLE_SESSION_NAME,
            "op.erator@cluster_1-x",
        )])))
        .unwrap()
        .unwrap();
        assert_eq!(config.role_session_name, "op.erator@cluster_1-x");
    }

    #[test]
    fn non_utf8_variable_is_named() {
        use std::os::unix::ffi::OsStringExt as _;
        let lookup = |name: &str| match name {
            ENV_ROLE_ARN => Some(OsString::from_vec(vec![0x61, 0xff])),
            ENV_OIDC_PROVIDER_ARN => Some(OsString::from(PROVIDER)),
            ENV_OIDC_TOKEN_FILE => Some(OsString::from(TOKEN_FILE)),
            _ => None,
        };
        assert_eq!(
            RrsaConfig::from_lookup(lookup),
            Err(CredentialsError::NotUtf8 { key: ENV_ROLE_ARN })
        );
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn refresh_rule() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let secs = |s: i64| t0.checked_add(SignedDuration::from_secs(s)).unwrap();
        let millis = |ms: i64| t0.checked_add(SignedDuration::from_millis(ms)).unwrap();
        // (lifetime s, refresh at, usable until)
        let cases = [
            // Usual 1 h: refresh 15 min before, hand out until 60 s before.
            (secs(3600), secs(2700), secs(3540)),
            // 12 h: a quarter is 3 h.
            (secs(43_200), secs(32_400), secs(43_140)),
            // STS's minimum of 15 min: 225 s margin (above 180 s).
            (secs(900), secs(675), secs(840)),
            // 10 min: at least 180 s before expiry.
            (secs(600), secs(420), secs(540)),
            // Short lifetimes (emulators): half-life, usable until a quarter is left.
            (secs(6), secs(3), millis(4500)),
            (secs(300), secs(150), secs(240)),
        ];
        for (expiration, refresh_at, usable_until) in cases {
            let s = RefreshWindow::for_lifetime(t0, expiration);
            assert_eq!(
                s,
                RefreshWindow {
                    refresh_at,
                    usable_until
                },
                "expiring {expiration}"
            );
            assert!(
                t0 < s.refresh_at && s.refresh_at < s.usable_until && s.usable_until < expiration
            );
        }
        // Already expired (clock skew): nothing is usable.
        let past = RefreshWindow::for_lifetime(t0, secs(-10));
        assert!(past.usable_until <= t0 && past.refresh_at <= t0);
    }

    #[test]
    fn request_carries_the_token_in_the_body_only() {
        let mut config = RrsaConfig::new(ROLE, PROVIDER, TOKEN_FILE);
        config.role_session_name = "sess".to_owned();
        let request = assume_role_request(&config, "eyJ.tok+en/=", &ts("2026-01-02T03:04:05Z"));
        assert_eq!(
            request.query,
            "Action=AssumeRoleWithOIDC&Format=JSON&Timestamp=2026-01-02T03%3A04%3A05Z&Version=2015-04-01"
        );
        assert_eq!(
            request.body,
            "DurationSeconds=3600&OIDCProviderArn=acs%3Aram%3A%3A1234567890123456%3Aoidc-provider%2Fack-rrsa-c123\
             &OIDCToken=eyJ.tok%2Ben%2F%3D&RoleArn=acs%3Aram%3A%3A1234567890123456%3Arole%2Fecs-power-operator\
             &RoleSessionName=sess"
        );
    }

    #[test]
    fn parses_the_answer() {
        let body = br#"{"RequestId":"R1","AssumedRoleUser":{"AssumedRoleId":"3:s","Arn":"acs:ram::1:role/r/s"},
            "Credentials":{"AccessKeyId":"STS.abc","AccessKeySecret":"sec-ret","SecurityToken":"CAIS-tok","Expiration":"2026-01-01T01:00:00Z"},
            "OIDCTokenInfo":{"Subject":"system:serviceaccount:ops:op"}}"#;
        let a = parse_answer(body, 200).unwrap();
        assert_eq!(a.access_key_id, "STS.abc");
        assert_eq!(a.access_key_secret, "sec-ret");
        assert_eq!(a.security_token, "CAIS-tok");
        assert_eq!(a.expiration, ts("2026-01-01T01:00:00Z"));
        assert_eq!(a.assumed_role_arn.as_deref(), Some("acs:ram::1:role/r/s"));
        assert_eq!(a.subject.as_deref(), Some("system:serviceaccount:ops:op"));
        assert_eq!(a.request_id.as_deref(), Some("R1"));
    }

    #[test]
    fn malformed_answers_never_quote_secrets() {
        for body in [
            "not json sec-ret".to_owned(),
            r#"{"Credentials":"sec-ret"}"#.to_owned(),
            r#"{"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"sec-ret","SecurityToken":"CAIS-tok"}}"#
                .to_owned(),
            r#"{"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"sec-ret","SecurityToken":"CAIS-tok","Expiration":"tomorrow"}}"#
                .to_owned(),
            r#"{"Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":7,"SecurityToken":"CAIS-tok","Expiration":"2026-01-01T01:00:00Z"}}"#
                .to_owned(),
            "{\"Credentials\":{\"AccessKeyId\":\"STS.a\",\"AccessKeySecret\":\"sec\\nret\",\"SecurityToken\":\"CAIS-tok\",\"Expiration\":\"2026-01-01T01:00:00Z\"}}"
                .to_owned(),
        ] {
            let Err(err) = parse_answer(body.as_bytes(), 200) else {
                panic!("{body} parsed");
            };
            assert!(
                matches!(err, CredentialsError::StsUnavailable { http_status: Some(200), .. }),
                "{err:?}"
            );
            let text = format!("{err} {err:?}");
            assert!(!text.contains("sec-ret") && !text.contains("CAIS-tok"), "{text}");
        }
    }

    #[test]
    fn error_answers() {
        let mut redactor = Redactor::new();
        redactor.add("eyJ.secret-token.sig");
        let err = error_answer(
            400,
            br#"{"RequestId":"R2","Code":"AuthenticationFail.OIDCToken.Invalid","Message":"bad token eyJ.secret-token.sig"}"#,
            &redactor,
        );
        assert_eq!(
            err,
            CredentialsError::Exchange {
                code: "AuthenticationFail.OIDCToken.Invalid".into(),
                message: "bad token <redacted>".into(),
                http_status: 400,
                request_id: Some("R2".into()),
            }
        );
        assert_eq!(err.code(), Some("AuthenticationFail.OIDCToken.Invalid"));
        assert_eq!(err.http_status(), Some(400));
        assert_eq!(err.request_id(), Some("R2"));
        assert!(!err.to_string().contains("R2"), "no request id in Display");
        let html = error_answer(502, b"<h1>Bad Gateway</h1>", &redactor);
        assert_eq!(
            html,
            CredentialsError::StsUnavailable {
                detail: "Bad Gateway".into(),
                http_status: Some(502)
            }
        );
        assert!(matches!(
            error_answer(404, b"nope", &redactor),
            CredentialsError::StsUnavailable {
                http_status: Some(404),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn token_file_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  eyJ.a.b\n").unwrap();
        assert_eq!(read_token(&path).await.unwrap(), "eyJ.a.b");
        std::fs::write(&path, "\n").unwrap();
        let empty = read_token(&path).await.unwrap_err();
        assert!(
            matches!(&empty, CredentialsError::TokenFile { detail, .. } if detail.contains("empty"))
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_token(&path).await.is_err());
        let missing = read_token(&dir.path().join("absent")).await.unwrap_err();
        assert!(missing.to_string().contains("absent"), "{missing}");
    }

    /// The controller runs reconciles on a multi-threaded runtime: the futures must be `Send`.
    #[test]
    fn credential_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let provider = RrsaProvider::new(RrsaConfig::new(ROLE, PROVIDER, TOKEN_FILE)).unwrap();
        is_send(&provider.credentials());
        let operator = crate::ecs::OperatorCredentials::Rrsa(provider);
        is_send(&operator.credentials());
    }

    #[tokio::test]
    async fn debug_shows_settings_but_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJ.never-shown.sig").unwrap();
        let provider = RrsaProvider::new(RrsaConfig::new(ROLE, PROVIDER, &path)).unwrap();
        let shown = format!(
            "{provider:?} {:?}",
            crate::ecs::OperatorCredentials::Rrsa(provider.clone())
        );
        assert!(shown.contains(ROLE) && shown.contains("token"), "{shown}");
        assert!(!shown.contains("never-shown"), "{shown}");
        assert_eq!(provider.exchanges(), 0);
        assert_eq!(provider.session(), None);
    }

    #[tokio::test]
    async fn unreachable_sts_is_sts_unavailable_and_cooled_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJ.unreachable-token.sig").unwrap();
        // A port that was free a moment ago: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = RrsaConfig::new(ROLE, PROVIDER, &path);
        config.sts_endpoint = format!("http://127.0.0.1:{port}");
        config.failure_cooldown = Duration::from_secs(60);
        let provider = RrsaProvider::new(config).unwrap();
        let err = provider.credentials().await.unwrap_err();
        assert!(
            matches!(
                &err,
                CredentialsError::StsUnavailable {
                    http_status: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains("unreachable-token"), "{err}");
        assert!(!err.to_string().contains("127.0.0.1"), "no URL: {err}");
        // Within the cooldown the same error comes back without a new attempt.
        assert_eq!(provider.credentials().await.unwrap_err(), err);
        assert_eq!(provider.exchanges(), 1);
    }
}
