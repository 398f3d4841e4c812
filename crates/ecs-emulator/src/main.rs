//! `ecs-emulator`: serves a local ECS OpenAPI endpoint. Prints `listening on http://HOST:PORT`
//! as its first stdout line, logs to stderr, and stops on Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use ecs_emulator::{Config, Emulator};

/// A local Alibaba Cloud ECS OpenAPI endpoint for tests and sandboxes.
#[derive(Debug, Parser)]
#[command(name = "ecs-emulator", version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "ECS_EMULATOR_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// State file (YAML: accessKeys, transitionDelay, qps, instances, faults, …). Without it the
    /// emulator starts with a default key pair and three instances (see the README).
    #[arg(long, env = "ECS_EMULATOR_STATE")]
    state: Option<PathBuf>,
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
    let config = if let Some(path) = &args.state {
        Config::load(path)?
    } else {
        eprintln!(
            "ecs-emulator: no --state given; using the default configuration: access key id {:?} \
             (its secret is in the crate README), instances i-emu0001 (Running), i-emu0002 (Stopped), \
             i-emu0003 (Running, security lock) in cn-hangzhou",
            ecs_emulator::config::DEFAULT_ACCESS_KEY_ID,
        );
        Config::sandbox_default()
    };
    let instances = config.instances.len();
    let emulator = Emulator::start(args.listen, config)
        .await
        .context("starting the emulator")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", emulator.url())?;
        out.flush()?;
    }
    tracing::info!(url = %emulator.url(), instances, "ECS emulator ready");
    wait_for_signal().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
