//! The `ecs-power-operator` binary as a child process: started with a clean environment (its
//! kubeconfig, its ECS credentials, `RUST_LOG`), stderr captured to a file, and killed and reaped
//! when the guard is dropped, so no test leaves a process behind even when it fails. On a failing
//! test the guard prints the operator's log.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The operator binary built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-operator");

/// How the operator is started.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// A name for messages (`operator-1`, …).
    pub label: String,
    pub kubeconfig: &'a Path,
    /// `--ecs-endpoint`.
    pub ecs_endpoint: &'a str,
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `ALIBABA_CLOUD_ACCESS_KEY_SECRET`.
    pub access_key: (&'a str, &'a str),
    /// Where stderr goes.
    pub log: PathBuf,
    /// `--log-format`: `text` or `json`.
    pub log_format: &'a str,
    /// More environment variables (flags' env twins).
    pub env: &'a [(&'a str, &'a str)],
}

/// A running operator process; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Operator {
    label: String,
    child: Option<Child>,
    log: PathBuf,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: Option<SocketAddr>,
}

impl Operator {
    /// Starts `ecs-power-operator run` with `--time-scale 0.05` (every backoff, poll and re-check
    /// 20 times shorter) and a free metrics port.
    pub fn spawn(launch: Launch<'_>) -> Operator {
        let stderr = File::create(&launch.log).unwrap();
        let child = Command::new(BIN)
            .args([
                "run",
                "--ecs-endpoint",
                launch.ecs_endpoint,
                "--metrics-addr",
                "127.0.0.1:0",
                "--resync-interval",
                "5m",
                "--time-scale",
                "0.05",
                "--log-format",
                launch.log_format,
            ])
            .env_clear()
            .env("KUBECONFIG", launch.kubeconfig)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", launch.access_key.0)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", launch.access_key.1)
            .env("RUST_LOG", "info,ecs_power_operator=debug")
            .env("NO_COLOR", "1")
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Operator {
            label: launch.label,
            child: Some(child),
            log: launch.log,
            metrics_addr: None,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the operator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the operator logged its start line and `/readyz` answers 200 (its
    /// caches are synced), and returns the metrics address. Panics with the log if it exits.
    pub async fn wait_ready(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "{} exited with {status} during start-up; log:\n{}",
                    self.label,
                    self.log()
                );
            }
            if self.metrics_addr.is_none() {
                self.metrics_addr = self.log().lines().find_map(metrics_addr);
            }
            if let Some(addr) = self.metrics_addr
                && http_get(addr, "/readyz")
                    .await
                    .is_some_and(|(code, _)| code == 200)
            {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 20 s; log:\n{}",
                self.label,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash or an evicted pod would do it; waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (what Kubernetes sends on pod deletion); waits (bounded) for the exit status.
    pub async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let pid = self.pid().expect("the operator is running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("the operator is running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?} of SIGTERM; log:\n{}",
                self.label,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log (stderr) -----\n{}\n----- end of {} log -----",
                self.label,
                self.log(),
                self.label
            );
        }
    }
}

/// The metrics address in the start line, in either log format:
/// `… ecs-power-operator starting metrics=127.0.0.1:PORT …` or
/// `{"message":"ecs-power-operator starting","metrics":"127.0.0.1:PORT",…}`.
fn metrics_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("ecs-power-operator starting") {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["metrics"].as_str()?.parse().ok();
    }
    line.split_once("metrics=")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A minimal HTTP/1.1 GET (the operator's health endpoints): `(status, body)`, `None` when the
/// connection fails.
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
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((code, body))
}
