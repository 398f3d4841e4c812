//! `kube-sandbox`: runs the in-memory Kubernetes API server until interrupted. Prints
//! `listening on http://HOST:PORT` as the first line of stdout and, with `--kubeconfig`,
//! writes a kubeconfig pointing at itself.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kube_sandbox::{Sandbox, SandboxConfig};

/// An in-memory Kubernetes API server for tests, benchmarks and demos (plain HTTP, no auth).
#[derive(Debug, Parser)]
#[command(name = "kube-sandbox", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "KUBE_SANDBOX_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this file.
    #[arg(long, env = "KUBE_SANDBOX_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Changes kept for watch resume (older resourceVersions answer 410 Gone).
    #[arg(long, default_value_t = SandboxConfig::default().history_capacity)]
    history_capacity: usize,
    /// Seconds between BOOKMARK events on idle watches that allow them.
    #[arg(long, default_value_t = 30)]
    bookmark_interval_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = SandboxConfig {
        history_capacity: args.history_capacity,
        bookmark_interval: Duration::from_secs(args.bookmark_interval_seconds.max(1)),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start_with(args.listen, config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", sandbox.url())?;
        out.flush()?;
    }
    if let Some(path) = &args.kubeconfig {
        sandbox.write_kubeconfig(path)?;
        println!("kubeconfig written to {}", path.display());
    }
    wait_for_signal()
        .await
        .context("waiting for a shutdown signal")?;
    sandbox.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
