//! The `ecs-power-operator` binary: `run` (default), `crd`, `schedule preview`, `sandbox`.

use std::process::ExitCode;

use clap::Parser;
use ecs_power_operator::cli::{Cli, Command, CrdArgs, PreviewArgs, ScheduleCommand};
use ecs_power_operator::{api, power_schedule, run, telemetry};

/// mimalloc (its v2 line) rather than the C library's allocator. Measured with
/// `cargo bench --bench operator` at 10,000 resources: with glibc's malloc the operator stayed at
/// about 140 MiB resident for about 70 MiB of peak live heap (per-allocation headers on millions
/// of small strings and map entries, and freed memory that stays resident; `MALLOC_ARENA_MAX=2`
/// changed nothing), with mimalloc v2 at about 90-95 MiB (v3 kept about 110 MiB). The image is
/// built on musl, whose allocator is slow under many threads: this is one allocator on both.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd(args)) => crd(&args),
        Some(Command::Schedule(ScheduleCommand::Preview(args))) => preview(&args),
        Some(Command::Run(args)) => operate(args),
        #[cfg(feature = "sandbox")]
        Some(Command::Sandbox(args)) => sandbox(args, cli.run.log_format),
        None => operate(cli.run),
    }
}

/// `crd`: every CRD as one YAML stream, or the one `--name` names.
fn crd(args: &CrdArgs) -> ExitCode {
    let rendered = match &args.name {
        None => api::all_crds_yaml(),
        Some(name) => api::crds_yaml().map(|all| {
            all.into_iter()
                .find(|(n, _)| n == name || format!("{n}.yaml") == *name)
                .map(|(_, yaml)| yaml)
                .unwrap_or_default()
        }),
    };
    match rendered {
        Ok(yaml) if !yaml.is_empty() => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            let names: Vec<String> = api::crds_yaml()
                .map(|all| all.into_iter().map(|(n, _)| n).collect())
                .unwrap_or_default();
            eprintln!(
                "error: no CRD named {:?}; known: {}",
                args.name.as_deref().unwrap_or_default(),
                names.join(", ")
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: cannot render the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `schedule preview`: exit 0 with the transitions, 1 when the file cannot be read, 2 when the
/// schedule is invalid.
fn preview(args: &PreviewArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let json = args.output == ecs_power_operator::cli::PreviewOutput::Json;
    match power_schedule::preview::run(&text, args.from, args.until, json) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn operate(args: ecs_power_operator::cli::RunArgs) -> ExitCode {
    block_on(args.log_format, async move {
        let config = kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!("cannot connect to Kubernetes (in-cluster config or KUBECONFIG): {e}")
        })?;
        let client = kube::Client::try_from(config.clone())
            .map_err(|e| anyhow::anyhow!("cannot build the Kubernetes client: {e}"))?;
        // The Lease gets a client of its own whose every request ends within half the renew
        // deadline, so a hung connection cannot hold a renewal past the lease's validity.
        let lease_client = if args.leader_elect {
            let timeout = args.leader_elect_renew_deadline / 2;
            let mut lease_config = config;
            lease_config.connect_timeout = Some(timeout);
            lease_config.read_timeout = Some(timeout);
            lease_config.write_timeout = Some(timeout);
            Some(kube::Client::try_from(lease_config).map_err(|e| {
                anyhow::anyhow!("cannot build the Kubernetes client for the lease: {e}")
            })?)
        } else {
            None
        };
        run::run(client, lease_client, &args, run::shutdown_on_signals()).await
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
