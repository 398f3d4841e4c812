//! [`Sandbox`]: the running server (in-process, for tests, benchmarks and the operator's
//! `sandbox` command), its configuration and the admin hooks tests use (read every object,
//! compact the history and break the open watches).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::resource::StorageKey;
use crate::rest::{Target, WriteOptions, watch::WatchConfig};
use crate::server::{App, router};
use crate::store::Store;

/// Tunables of a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Changes kept for watch resume; resuming from an older resourceVersion answers 410 Gone.
    pub history_capacity: usize,
    /// Changes a watch may fall behind before it is closed (the client then resumes).
    pub watch_buffer: usize,
    /// How often idle watches that allow bookmarks get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Longest watch (and the length of a watch without `timeoutSeconds`).
    pub max_watch_timeout: Duration,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            history_capacity: 100_000,
            watch_buffer: 65_536,
            bookmark_interval: Duration::from_secs(30),
            max_watch_timeout: Duration::from_secs(1800),
            max_body_bytes: 3 * 1024 * 1024,
        }
    }
}

/// Why a sandbox could not start or write its kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    WriteKubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A bootstrap object was refused (a bug).
    #[error("bootstrap failed: {0}")]
    Bootstrap(#[from] crate::api_error::ApiError),
}

/// A running in-memory Kubernetes API server.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    store: Arc<Store>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    faults: Arc<crate::faults::Faults>,
}

const BOOTSTRAP_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

impl Sandbox {
    /// Starts a sandbox on `addr` (port 0 picks a free port) with the default configuration.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::start_with`].
    pub async fn start(addr: SocketAddr) -> Result<Self, SandboxError> {
        Self::start_with(addr, SandboxConfig::default()).await
    }

    /// Starts a sandbox with a configuration.
    ///
    /// # Errors
    ///
    /// [`SandboxError::Bind`] when `addr` cannot be bound, [`SandboxError::Bootstrap`] when a
    /// bootstrap object is refused.
    pub async fn start_with(addr: SocketAddr, config: SandboxConfig) -> Result<Self, SandboxError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SandboxError::Bind { addr, source })?;
        let mut local = listener
            .local_addr()
            .map_err(|source| SandboxError::Bind { addr, source })?;
        if local.ip().is_unspecified() {
            local.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let store = Arc::new(Store::new(config.history_capacity, config.watch_buffer));
        bootstrap(&store)?;
        let shutdown = CancellationToken::new();
        let faults = Arc::new(crate::faults::Faults::default());
        let app = Arc::new(App {
            faults: faults.clone(),
            store: store.clone(),
            watch: WatchConfig {
                bookmark_interval: config.bookmark_interval,
                max_timeout: config.max_watch_timeout,
            },
            shutdown: shutdown.clone(),
            addr: local,
            max_body: config.max_body_bytes,
        });
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router(app))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "kube-sandbox server stopped");
            }
        });
        tracing::info!(url = %format!("http://{local}"), "kube-sandbox listening");
        Ok(Self {
            addr: local,
            store,
            shutdown,
            task: Some(task),
            faults,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this sandbox.
    pub fn kubeconfig_yaml(&self) -> String {
        crate::kubeconfig::kubeconfig_yaml(&self.url())
    }

    /// Writes [`Sandbox::kubeconfig_yaml`] to `path`.
    ///
    /// # Errors
    ///
    /// [`SandboxError::WriteKubeconfig`] when the file cannot be written.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), SandboxError> {
        let path = path.as_ref();
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| {
            SandboxError::WriteKubeconfig {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Forgets the change history (every resourceVersion handed out so far expires, so resuming a
    /// watch from one gets `410 Gone`) and ends every open watch.
    pub fn compact_and_break_watches(&self) {
        self.store.write().compact();
        self.store.break_watches();
    }

    /// Fails a share of the matching requests with `409` or `500` (see [`crate::faults`]);
    /// an empty list turns injection off. `seed` makes the draws repeatable.
    pub fn set_faults(&self, rules: Vec<crate::faults::FaultRule>, seed: u64) {
        self.faults.set(rules, seed);
    }

    /// How many `409` and `500` answers were injected so far.
    pub fn injected_faults(&self) -> (u64, u64) {
        self.faults.injected()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store.read().rv()
    }

    /// Every stored object (stored form), by resource then namespace and name.
    pub fn objects(&self) -> Vec<Value> {
        let st = self.store.read();
        let mut keys = st.storage_keys();
        keys.sort();
        keys.iter()
            .flat_map(|k| {
                st.range(k, None, None)
                    .map(|(_, e)| (*e.object).clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Stored objects of one resource (`group` "" for core, `resource` the plural).
    pub fn objects_of(&self, group: &str, resource: &str) -> Vec<Value> {
        let st = self.store.read();
        st.range(&StorageKey::new(group, resource), None, None)
            .map(|(_, e)| (*e.object).clone())
            .collect()
    }

    /// Stops the server and ends every watch.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn bootstrap(store: &Store) -> Result<(), SandboxError> {
    let rt = store
        .read()
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| crate::api_error::ApiError::internal("namespaces are not registered"))?;
    for ns in BOOTSTRAP_NAMESPACES {
        let t = Target {
            rt: rt.clone(),
            namespace: None,
            name: None,
            status: false,
        };
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        crate::rest::create::create(store, &t, obj, &WriteOptions::default())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_serves_and_stops() {
        let sb = Sandbox::start("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("starts");
        assert!(sb.url().starts_with("http://127.0.0.1:"));
        assert!(sb.kubeconfig_yaml().contains(&sb.url()));
        let names: Vec<String> = sb
            .objects_of("", "namespaces")
            .iter()
            .map(|o| crate::object::name(o).to_string())
            .collect();
        assert_eq!(
            names,
            vec!["default", "kube-node-lease", "kube-public", "kube-system"]
        );
        let rv = sb.resource_version();
        sb.compact_and_break_watches();
        assert_eq!(sb.resource_version(), rv + 1);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("kubeconfig");
        sb.write_kubeconfig(&path).expect("writes");
        assert!(
            std::fs::read_to_string(&path)
                .expect("reads")
                .contains("kube-sandbox")
        );
        assert!(matches!(
            sb.write_kubeconfig(dir.path().join("no/such/dir")),
            Err(SandboxError::WriteKubeconfig { .. })
        ));
        sb.shutdown().await;
    }
}
