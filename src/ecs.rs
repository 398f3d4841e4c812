//! The ECS side of the pipeline: everything the controller needs to observe and change the power
//! state of Alibaba Cloud ECS instances.
//!
//! ```text
//! controller ── observe ──► EcsClient::describe_instance ─┐
//!            ── act ─────► EcsClient::{start,stop}_instance ┤  signature (RPC V1, HMAC-SHA1)
//!                                                          ├─► endpoint (regional / VPC / override)
//!            ◄── InstanceObservation / WriteOutcome ───────┤  CallObserver (metrics)
//!            ◄── EcsError ──► catalogue::classify ─► Verdict { reason, class }
//! ```
//!
//! - [`credentials`]: [`Credentials`] from a Secret or the environment; secrets are redacted.
//! - [`rrsa`]: the operator's credentials from RRSA (STS `AssumeRoleWithOIDC`), refreshed.
//! - [`signature`]: the hand-written RPC signature V1 (ECS-API.md §1), with its known answers.
//! - [`endpoint`]: which URL a region's calls go to.
//! - [`client`]: [`EcsClient`], the three calls, timeouts, body cap, logging, observer.
//! - [`instance`] and [`power`]: what the calls take and return.
//! - [`error`]: [`EcsError`]; [`catalogue`]: THE error classification table (DESIGN §3).
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
