//! The ECS side of the pipeline: everything the controller needs to observe and change the power
//! state of Alibaba Cloud ECS instances, one instance at a time or in batches of up to 100.
//!
//! ```text
//! controller ── observe ──► EcsClient::describe_instance(s)[_with] ──┐
//!            ── act ─────► EcsClient::{start,stop}_instance[_with] ───┤  signature (RPC V1,
//!            ── batch ───► EcsClient::{start,stop}_instances ────────┤   HMAC-SHA1, per product)
//!            ── account ─► EcsClient::caller_identity (STS) ─────────┼─► endpoint (regional /
//!                                                                     │   VPC / override; STS)
//!            ◄── InstanceObservation / WriteOutcome / BatchOutcome ───┤  CallObserver (metrics)
//!            ◄── EcsError { delivery, retry_after } ──► catalogue::classify ─► Verdict
//! ```
//!
//! - [`credentials`]: [`Credentials`] from a Secret or the environment; secrets are redacted.
//! - [`rrsa`]: the operator's credentials from RRSA (STS `AssumeRoleWithOIDC`), refreshed; the
//!   STS endpoint selection.
//! - [`signature`]: the hand-written RPC signature V1, with its published known answers.
//! - [`endpoint`]: which URL a region's calls go to.
//! - [`client`]: [`EcsClient`], the calls, timeouts and per-call deadlines ([`CallOptions`]),
//!   body cap, logging, observer.
//! - [`instance`], [`power`] and [`batch`]: what the calls take and return; [`sts`]: who a set of
//!   credentials is ([`CallerIdentity`]).
//! - [`error`]: [`EcsError`] and whether its request reached ECS ([`Delivery`]);
//!   [`catalogue`]: the error classification table (reason and retry class per ECS code).
//! - `http`: the reqwest client, capped body reads and error chains shared with RRSA.
//! - [`observer`]: the [`CallObserver`] hook for metrics; [`redaction`]: scrubbing echoed secrets.

pub mod batch;
pub mod catalogue;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod error;
mod http;
pub mod instance;
pub mod observer;
pub mod power;
pub mod redaction;
pub mod rrsa;
pub mod signature;
pub mod sts;

pub use batch::{BatchOutcome, InstanceResult, StopOptions};
pub use catalogue::{
    ErrorClass, Verdict, classify, classify_credentials, classify_instance_code, classify_lock,
};
pub use client::{CallOptions, ClientBuildError, EcsClient, EcsClientConfig};
pub use credentials::{Credentials, CredentialsError, OperatorCredentials, SecretString};
pub use endpoint::{Endpoint, EndpointError, EndpointStyle};
pub use error::{Delivery, EcsError};
pub use instance::{InstanceObservation, InstanceStatus};
pub use observer::{CallObserver, NoopObserver};
pub use power::{StartInstance, StopInstance, StoppedMode, WriteOutcome};
pub use rrsa::{RefreshWindow, RrsaConfig, RrsaProvider, RrsaSession, sts_endpoint_for};
pub use sts::CallerIdentity;
