//! The HTTP server: an axum router (`/_emulator/*` → admin, everything else → the gateway)
//! served over HTTP/1.1 keep-alive connections by hyper. The accept loop is our own so that a
//! `reset` fault can abort its connection with a real TCP RST (`SO_LINGER` 0) and so shutdown
//! can drain connections gracefully.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::emulator::{Shared, lock};
use crate::protocol::render::ResetConnection;

/// The whole application.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    crate::admin::router()
        .fallback(any(crate::gateway::handle))
        .with_state(shared)
}

/// Error returned to hyper to make it drop a connection a `reset` fault aborts.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by an injected fault")]
struct ResetByFault;

/// A running accept loop.
#[derive(Debug)]
pub(crate) struct Server {
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Serves `router` on `listener` until shut down.
    pub(crate) fn spawn(listener: TcpListener, router: Router) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, router, rx));
        Self {
            shutdown,
            task: Mutex::new(Some(task)),
        }
    }

    /// Asks the loop and its connections to stop.
    pub(crate) fn signal_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Stops and waits until every connection has finished.
    pub(crate) async fn shutdown(&self) {
        self.signal_shutdown();
        let task = lock(&self.task).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "emulator server task ended abnormally");
        }
    }
}

async fn accept_loop(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(stream: TcpStream, router: Router, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket lets a `reset` fault set SO_LINGER 0 after hyper owns it.
    let (stream, handle) = match split_handle(stream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "cannot prepare connection");
            return;
        }
    };
    let handle = Arc::new(handle);
    let service = service_fn(move |req: http::Request<Incoming>| {
        let router = router.clone();
        let handle = Arc::clone(&handle);
        async move {
            let response = router
                .oneshot(req)
                .await
                .unwrap_or_else(|never| match never {});
            if response.extensions().get::<ResetConnection>().is_some() {
                let _ = socket2::SockRef::from(&*handle).set_linger(Some(Duration::ZERO));
                return Err(ResetByFault);
            }
            Ok(response)
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let handle = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, handle))
}
