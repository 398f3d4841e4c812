//! kube-sandbox: an in-memory Kubernetes API server that speaks the real HTTP API well enough
//! for `kubectl` (≥ 1.29) and kube-rs (`Api`, `kube_runtime::Controller`, `watcher`,
//! `Recorder`) to work against it as against a cluster. It serves the operator's end-to-end
//! tests, scale benchmarks and the `ecs-power-operator sandbox` command.
//!
//! Layers, outside in: [`server`] (HTTP routing, bodies, parameters) → [`rest`] (verbs and their
//! semantics) → [`store`] (objects, resourceVersions, history, watch broadcast), with
//! [`registry`] / [`crd`] / [`builtin`] describing the served resources, [`schema`] + [`cel`]
//! validating custom resources, [`patch`] for PATCH formats, [`table`] for `kubectl get`
//! output, [`discovery`] / [`openapi`] for clients' discovery, and [`protobuf`] for typed
//! client-go writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let sb = kube_sandbox::Sandbox::start("127.0.0.1:0".parse()?).await?;
//! sb.write_kubeconfig("/tmp/kubeconfig")?;
//! println!("{}", sb.url());
//! sb.compact_and_break_watches(); // watches end; resuming from an old version gets 410 Gone
//! sb.shutdown().await;
//! # Ok(()) }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]

pub mod api_error;
pub mod builtin;
pub mod cel;
pub mod crd;
pub mod discovery;
pub mod events;
pub mod faults;
pub mod field_error;
pub mod jsonpath;
pub mod kubeconfig;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resource;
pub mod rest;
pub mod sandbox;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;

pub use sandbox::{Sandbox, SandboxConfig, SandboxError};
