//! `ecs-power-operator run`: assembles the process from the parsed flags: ECS client, operator
//! credentials, controller, HTTP endpoint, and shutdown. Also used in-process by `sandbox` and by
//! the tests, with a Kubernetes client of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::controller::{Operator, Settings};
use crate::ecs::{EcsClient, EcsClientConfig, Endpoint, OperatorCredentials};
use crate::metrics::Metrics;
use crate::server::{self, Health};

/// The name events are reported under.
pub const CONTROLLER_NAME: &str = "ecs-power-operator";

/// Runs the operator against `client` until `shutdown` is cancelled; then lets reconciles in flight
/// finish and returns.
///
/// # Errors
/// Bad flags (an invalid `--ecs-endpoint`), unusable operator credentials in the environment, or a
/// `--metrics-addr` that cannot be bound.
pub async fn run(
    client: Client,
    args: &RunArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = match &args.ecs_endpoint {
        Some(url) => Endpoint::override_url(url)?,
        None => args.endpoint(),
    };
    let metrics = Arc::new(Metrics::new());
    let ecs =
        EcsClient::new(EcsClientConfig::new(endpoint.clone()).with_observer(metrics.clone()))?;
    let operator_credentials = OperatorCredentials::discover().map_err(|e| {
        anyhow::anyhow!("the operator's credentials in the environment are unusable: {e}")
    })?;
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
        reporter: Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        },
    };
    let operator = Operator::new(client, settings, ecs, operator_credentials, metrics.clone());
    let store = operator.store();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = server::bind(args.metrics_addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr)
    })?;
    info!(
        metrics = %listener.local_addr()?,
        endpoint = ?endpoint,
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        resync = ?args.resync_interval,
        "ecs-power-operator starting"
    );
    let health = Health {
        metrics,
        store: store.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(server::serve(listener, health, shutdown.clone()));
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            ready.store(true, Ordering::Relaxed);
            info!("resource cache synced; ready");
        }
    });
    let stop = shutdown.clone();
    operator.run(async move { stop.cancelled().await }).await;
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server failed"),
        Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
        _ => {}
    }
    Ok(())
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
