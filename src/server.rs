//! The operator's HTTP endpoint (`--metrics-addr`): `/metrics` (Prometheus text format),
//! `/healthz` (the process serves requests) and `/readyz` (the watches of resources and of Secret
//! metadata have received their first list). Probes of the Helm chart point here.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::EcsInstancePower;
use crate::controller::Synced;
use crate::metrics::Metrics;

/// What the endpoints read.
#[derive(Clone)]
pub struct Health {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// The controller's cache, for the per-state gauge.
    pub store: Store<EcsInstancePower>,
    /// Whether the watches have synced.
    pub ready: Arc<Synced>,
}

/// The router.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    let body = health.metrics.render(&health.store.state());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(health): State<Health>) -> (StatusCode, String) {
    match health.ready.waiting_for() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(what) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for {what}\n"),
        ),
    }
}

/// Serves until `shutdown` is cancelled.
///
/// # Errors
/// When serving fails.
pub async fn serve(
    listener: TcpListener,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
