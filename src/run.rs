//! `ecs-power-operator run`: assembles the process from the parsed flags: ECS client, operator
//! credentials, controller, HTTP endpoint, leader election (with `--leader-elect`), and shutdown. Also used in-process by `sandbox` and by
//! the tests, with a Kubernetes client of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::controller::gate::WriteGate;
use crate::controller::{Operator, PolicyScope, Settings};
use crate::ecs::{EcsClient, EcsClientConfig, OperatorCredentials};
use crate::leadership::Elector;
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
/// With `--leader-elect`, `lease_client` (a client with request timeouts of its own) reads and
/// writes the Lease; losing the lease ends the run with an error (the process exits non-zero).
pub async fn run(
    client: Client,
    lease_client: Option<Client>,
    args: &RunArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let operator_credentials = OperatorCredentials::discover().map_err(|e| {
        anyhow::anyhow!("the operator's credentials in the environment are unusable: {e}")
    })?;
    start_with(client, lease_client, args, operator_credentials, shutdown)
        .await?
        .finish()
        .await
}

/// A started operator.
pub struct Running {
    /// The address `/metrics`, `/healthz` and `/readyz` are served on.
    pub metrics_addr: SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the operator has stopped (after its shutdown token is cancelled, or after it
    /// lost its lease).
    pub async fn wait(self) {
        if let Err(e) = self.finish().await {
            warn!(error = %e, "operator stopped with an error");
        }
    }

    /// Waits until the operator has stopped; an error when it stopped because it lost its lease.
    ///
    /// # Errors
    /// The lease was lost, or the operator task failed.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("operator task failed: {e}"))?
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
    start_with(client, None, args, operator_credentials, shutdown).await
}

/// [`start`] with a dedicated client for the Lease (`None`: the main client).
///
/// # Errors
/// As [`start`], and leader-election timings that break client-go's inequalities.
pub async fn start_with(
    client: Client,
    lease_client: Option<Client>,
    args: &RunArgs,
    operator_credentials: Option<OperatorCredentials>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let election = args.election(client.default_namespace())?;
    let endpoint = args.endpoint()?;
    let metrics = Arc::new(Metrics::new());
    let mut ecs_config = EcsClientConfig::new(endpoint.clone()).with_observer(metrics.clone());
    // Where STS GetCallerIdentity goes: the environment's STS settings, else the ECS override.
    match crate::ecs::sts_endpoint_for(|key| std::env::var_os(key), &endpoint) {
        Ok(url) => ecs_config = ecs_config.with_sts_endpoint(url),
        Err(e) => {
            warn!(error = %e, "unusable STS endpoint setting; GetCallerIdentity uses the default");
        }
    }
    let ecs = EcsClient::new(ecs_config)?;
    if operator_credentials.is_some() {
        info!("operator credentials found; resources without credentialsSecretRef use them");
    } else {
        warn!(
            "no operator credentials (ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET or RRSA): resources without \
         credentialsSecretRef will report CredentialsNotFound"
        );
    }
    let settings = Settings {
        watch_namespace: args.watch_namespace.clone(),
        resync: args.resync_interval,
        concurrency: args.max_concurrent_reconciles,
        time_scale: args.time_scale,
        rate_limits: args.rate_limits()?,
        batch_size: usize::from(args.ecs_batch_size),
        access_scope: if args.access_policy_for_secrets {
            PolicyScope::AllResources
        } else {
            PolicyScope::OperatorCredentials
        },
        reporter: Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        },
    };
    let lease_client = lease_client.unwrap_or_else(|| client.clone());
    let mut operator = Operator::new(client, settings, ecs, operator_credentials, metrics.clone());
    let elector = if let Some(config) = election {
        let gate = Arc::new(WriteGate::leased(config.write_timeout()));
        operator = operator.with_gate(gate.clone());
        info!(
            identity = %config.identity,
            lease = %format!("{}/{}", config.namespace, config.name),
            write_timeout = ?config.write_timeout(),
            "leader election on; following until the lease is acquired"
        );
        let api = Api::namespaced(lease_client, &config.namespace);
        let (acquired_tx, acquired_rx) = futures::channel::mpsc::unbounded();
        operator = operator.reconcile_all_on(acquired_rx);
        Some((
            Elector::new(api, config, gate, metrics.clone()),
            acquired_tx,
        ))
    } else {
        metrics.set_leader(true);
        None
    };
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
    // Leader election: acquire, then renew until the controller has drained (release) or the
    // lease is lost (gate closed, shutdown, error).
    let drained = CancellationToken::new();
    let election = elector.map(|(mut elector, acquired)| {
        let (drained, shutdown) = (drained.clone(), shutdown.clone());
        tokio::spawn(async move {
            if !elector.acquire(&shutdown).await {
                return Ok(());
            }
            // Every resource is observed once by the new leader (reads first).
            let _ = acquired.unbounded_send(());
            let outcome = elector.renew(&drained).await;
            match outcome {
                Ok(()) => match elector.release().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        warn!(error = %e, "could not release the lease; it expires on its own");
                        Ok(())
                    }
                },
                Err(lost) => {
                    shutdown.cancel();
                    Err(anyhow::anyhow!("leader election lost: {lost}"))
                }
            }
        })
    });
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
        drained.cancel();
        let result = match election {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("leader election task failed: {e}"))),
            None => Ok(()),
        };
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            _ => {}
        }
        result
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
