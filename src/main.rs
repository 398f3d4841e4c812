//! The `ecs-power-operator` binary: `run` (default), `crd`, `sandbox`.

use std::process::ExitCode;

use clap::Parser;
use ecs_power_operator::cli::{Cli, Command};
use ecs_power_operator::{api, run, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => match api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Run(args)) => operate(args),
        #[cfg(feature = "sandbox")]
        Some(Command::Sandbox(args)) => sandbox(args, cli.run.log_format),
        None => operate(cli.run),
    }
}

fn operate(args: ecs_power_operator::cli::RunArgs) -> ExitCode {
    block_on(args.log_format, async move {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("cannot connect to Kubernetes (in-cluster config or KUBECONFIG): {e}")
        })?;
        run::run(client, &args, run::shutdown_on_signals()).await
    })
}

#[cfg(feature = "sandbox")]
fn sandbox(
    args: ecs_power_operator::sandbox::SandboxArgs,
    log_format: ecs_power_operator::cli::LogFormat,
) -> ExitCode {
    block_on(log_format, ecs_power_operator::sandbox::main(args))
}

/// Sets up logging and the runtime, runs `job`, and turns its error into a message and exit code.
fn block_on(
    log_format: ecs_power_operator::cli::LogFormat,
    job: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    if let Err(e) = telemetry::init(log_format) {
        eprintln!("error: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
