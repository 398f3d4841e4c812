//! ecs-power-operator: keeps Alibaba Cloud ECS instances in the power state declared by
//! `EcsInstancePower` custom resources.
//!
//! - [`access`]: who may control which instance: one owner per instance ID, and the access
//!   policy for the operator's own credentials (pure decisions).
//! - [`api`]: the custom resources (spec, status, CRD).
//! - [`ecs`]: the ECS OpenAPI client (signature, errors and their classification, credentials).
//! - [`controller`]: observe → decide → act → report, on kube-runtime's `Controller`.
//! - [`fleet`]: fleet scale on ECS's rate limits: the adaptive rate limiter, its configuration and
//!   the coalescing batcher.
//! - [`leadership`]: leader election on a Lease, which opens and closes the controller's write
//!   gate.
//! - [`power_schedule`]: power schedules evaluated (pure): state, since, next transitions.
//! - [`metrics`], [`server`], [`telemetry`]: what operators of the operator look at.
//! - [`vocabulary`]: condition types, reasons, ECS action names and lock reasons, defined once.
//! - `compact`: shrinking the maps and queues a burst filled, once it has passed.
//! - [`cli`] and [`run`]: the binary's command line and process assembly; `sandbox` (feature
//!   `sandbox`, on by default): the operator with an in-memory API server and a local ECS endpoint.

pub mod access;
pub mod api;
pub mod cli;
mod compact;
pub mod controller;
pub mod ecs;
pub mod fleet;
pub mod leadership;
pub mod metrics;
pub mod power_schedule;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod server;
pub mod telemetry;
pub mod vocabulary;
