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
    if let Err(e) = telemetry::init(args.log_format) {
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
    let result = runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("cannot connect to Kubernetes (in-cluster config or KUBECONFIG): {e}")
        })?;
        run::run(client, &args, run::shutdown_on_signals()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "sandbox")]
fn sandbox(
    args: ecs_power_operator::sandbox::SandboxArgs,
    log_format: ecs_power_operator::cli::LogFormat,
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
    match runtime.block_on(ecs_power_operator::sandbox::main(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
