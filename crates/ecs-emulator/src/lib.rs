//! ecs-emulator: a local Alibaba Cloud ECS OpenAPI endpoint (RPC, signature V1 and V3) that
//! the official SDKs cannot tell from the real one for the actions the operator uses
//! (Describe*, Start/Stop/Reboot, batch Start/Stop, STS AssumeRoleWithOIDC and
//! GetCallerIdentity). It runs as a
//! binary (`ecs-emulator --listen ADDR --state FILE`) or in-process ([`Emulator`]) for the
//! operator's tests, the sandbox and the benchmarks.
//!
//! Request path: `server` (HTTP) → `gateway` (parameters, action, `signature`, `throttle`
//! per key and per account, `faults`) → `actions` (on `state`) → `protocol` rendering; every request lands in the
//! `call_log`. `admin` serves `/_emulator/`. `config` reads the state file; `catalogue` holds
//! every error code with its documented HTTP status.

pub mod actions;
mod admin;
pub mod call_log;
pub mod catalogue;
pub mod config;
pub mod credentials;
mod emulator;
pub mod faults;
mod gateway;
pub mod protocol;
mod server;
pub mod signature;
pub mod state;
mod throttle;

pub use call_log::{CallRecord, InstanceResult, SignatureScheme};
pub use catalogue::EcsError;
pub use config::{Config, ConfigError, OidcConfig};
pub use credentials::{AccessKey, DEFAULT_ACCOUNT_ID, Identity, IdentityType, IssuedCredentials};
pub use emulator::{Emulator, EmulatorError};
pub use faults::{FOREVER, Fault, FaultEntry, TransportFault};
pub use state::{ChargeType, Instance, Status, StoppedMode};
pub use throttle::{ActionLimit, RateLimits};
