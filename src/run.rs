//! `ecs-power-operator run`: assembles the process from the parsed flags: ECS client, operator
//! credentials, controller, HTTP endpoint, and shutdown. Also used in-process by `sandbox` and by
//! the tests, with a Kubernetes client of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::controller::{Operator, Settings};
use crate::ecs::{EcsClient, EcsClientConfig, OperatorCredentials};
use crate::metrics::Metrics;
use crate::server::{self, Health};

/// How long reconciles in flight may take to finish after the shutdown signal: more than one ECS
/// request timeout (15 s), less than the chart's `terminationGracePeriodSeconds` (30 s). Before the
/// first list nothing can be in flight, and shutdown is immediate.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "ecs-power-operator";

/// Runs the operator against `client` with the operator credentials of the environment until
/// `shutdown` is cancelled; then lets reconciles in flight finish and returns.
///
/// # Errors
/// Bad flags (an invalid `--ecs-endpoint`), unusable operator credentials in the environment, or a
/// `--metrics-addr` that cannot be bound.
pub async fn run(
    client: Client,
    args: &RunArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let operator_credentials = OperatorCredentials::discover().map_err(|e| {
        anyhow::anyhow!("the operator's credentials in the environment are unusable: {e}")
    })?;
    start(client, args, operator_credentials, shutdown)
        .await?
        .wait()
        .await;
    Ok(())
}

/// A started operator.
pub struct Running {
    /// The address `/metrics`, `/healthz` and `/readyz` are served on.
    pub metrics_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until the operator has stopped (after its shutdown token is cancelled).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "operator task failed");
        }
    }
}

/// Starts the operator with the given operator credentials (`None`: resources must reference a
/// Secret). Returns once the HTTP endpoint is bound; the controller runs in a task until
/// `shutdown` is cancelled.
///
/// # Errors
/// An invalid `--ecs-endpoint`, or a `--metrics-addr` that cannot be bound.
pub async fn start(
    client: Client,
    args: &RunArgs,
    operator_credentials: Option<OperatorCredentials>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let endpoint = args.endpoint()?;
    let metrics = Arc::new(Metrics::new());
    let mut ecs_config = EcsClientConfig::new(endpoint.clone()).with_observer(metrics.clone());
    // Where STS GetCallerIdentity goes: the environment's STS settings, else the ECS override.
    match crate::ecs::sts_endpoint_for(|key| std::env::var_os(key), &endpoint) {
        Ok(url) => ecs_config = ecs_config.with_sts_endpoint(url),
        Err(e) => {
            warn!(error = %e, "unusable STS endpoint setting; GetCallerIdentity uses the default")
        }
    }
    let ecs = EcsClient::new(ecs_config)?;
    match &operator_credentials {
        Some(_) => {
            info!("operator credentials found; resources without credentialsSecretRef use them")
        }
        None => warn!(
            "no operator credentials (ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET or RRSA): resources without \
             credentialsSecretRef will report CredentialsNotFound"
        ),
    }
    let settings = Settings {
        watch_namespace: args.watch_namespace.clone(),
        resync: args.resync_interval,
        concurrency: args.max_concurrent_reconciles,
        time_scale: args.time_scale,
        rate_limits: args.rate_limits()?,
        batch_size: usize::from(args.ecs_batch_size),
        reporter: Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        },
    };
    let operator = Operator::new(client, settings, ecs, operator_credentials, metrics.clone());
    let store = operator.store();
    let ready = operator.synced();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr)
        })?;
    let metrics_addr = listener.local_addr()?;
    info!(
        metrics = %metrics_addr,
        endpoint = ?endpoint,
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        resync = ?args.resync_interval,
        "ecs-power-operator starting"
    );
    let health = Health {
        metrics,
        store,
        ready,
    };
    let server = tokio::spawn(server::serve(listener, health, shutdown.clone()));
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        let grace = shutdown.clone();
        let synced = operator.synced();
        // kube-runtime finishes the reconciles in flight on shutdown, but waits for the first list
        // before it looks at the signal: bound the wait so SIGTERM works even when the CRD is
        // missing or the API server is unreachable.
        tokio::select! {
            () = operator.run(async move { stop.cancelled().await }) => {}
            () = async move {
                grace.cancelled().await;
                if synced.resources_synced() {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                }
            } => warn!(grace = ?SHUTDOWN_GRACE, "reconciles did not finish after the shutdown signal; exiting anyway"),
        }
        shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            _ => {}
        }
    });
    Ok(Running { metrics_addr, task })
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown signal received; finishing reconciles in flight");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
