//! Operator processes for the tests that run the binary (`tests/ha.rs`, `tests/soak.rs`): a
//! [`Replica`] (killed and reaped on drop, its log printed when the test fails), a cuttable TCP
//! [`Proxy`] in front of the API server, and small HTTP and client helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy to the API server that can be cut (every connection closed, new ones closed at
/// once) and restored.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        if flag.load(Ordering::SeqCst) {
                            continue;
                        }
                        let flag = flag.clone();
                        connections.spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else { return };
                            let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                            let watch_cut = async {
                                while !flag.load(Ordering::SeqCst) {
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                            };
                            tokio::select! { _ = copy => {}, () = watch_cut => {} }
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Proxy { addr, cut, task }
    }

    /// Closes every connection and every new one until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An operator process; killed (`SIGKILL`) and reaped on drop, its log printed when a test fails.
pub struct Replica {
    /// Its name in messages.
    pub name: String,
    /// The process, until it exited or was killed.
    pub child: Option<Child>,
    /// The file its stderr goes to.
    pub log: PathBuf,
}

impl Replica {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal_term(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}; log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `/readyz` answers 200 (caches synced: a healthy standby or a leader).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status}; log:\n{}", self.name, self.log());
            }
            let addr = self.log().lines().find_map(metrics_addr);
            if let Some(addr) = addr
                && http_get(addr, "/readyz")
                    .await
                    .is_some_and(|(c, _)| c == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready; log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}\n-----", self.name, self.log());
        }
    }
}

/// The metrics address an operator logs when it starts.
pub fn metrics_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("ecs-power-operator starting") {
        return None;
    }
    line.split_once("metrics=")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// A kube client for a kubeconfig.
pub async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}
