//! The `ecs-power-operator` binary: `run` (default), `crd`, `schedule preview`, `sandbox`.

use std::process::ExitCode;

use clap::Parser;
use ecs_power_operator::cli::{Cli, Command, CrdArgs, PreviewArgs, ScheduleCommand};
use ecs_power_operator::{api, power_schedule, run, telemetry};

/// mimalloc (its v2 line) rather than the C library's allocator. Measured with
/// `cargo bench --bench operator` at 10,000 resources: with glibc's malloc the operator stayed at
/// about 140 MiB resident for about 70 MiB of peak live heap (per-allocation headers on millions
/// of small strings and map entries, and freed memory that stays resident; `MALLOC_ARENA_MAX=2`
/// changed nothing), with mimalloc v2 at about 90-95 MiB (v3 kept about 110 MiB); at the time, before
/// the compaction of drained maps and the purge options below (now about 82 MiB). The image is
/// built on musl, whose allocator is slow under many threads: this is one allocator on both.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options that give freed memory back to the OS sooner (each also settable as
/// `MIMALLOC_<NAME>` in the environment, which this overrides): pages purged as soon as they are
/// free (`purge_delay` 0, not 10 ms later), and so whole arenas (`arena_purge_mult` 1, not 10 ×
/// the delay), and the pages of exited threads (`abandoned_page_purge`). Measured with
/// `cargo bench --bench operator` at 10,000 resources: steady-state RSS about 82 MiB with them,
/// 87-92 MiB without; convergence time the same. The option numbers are mimalloc v2's
/// `mi_option_e` (checked against the linked library by a test below).
mod allocator {
    use std::ffi::{c_int, c_long};

    pub const ABANDONED_PAGE_PURGE: c_int = 12;
    pub const PURGE_DELAY: c_int = 15;
    pub const ARENA_PURGE_MULT: c_int = 24;

    /// The options [`tune`] sets, and their values.
    pub const TUNED: [(c_int, c_long); 3] = [
        (PURGE_DELAY, 0),
        (ARENA_PURGE_MULT, 1),
        (ABANDONED_PAGE_PURGE, 1),
    ];

    // The one place of this workspace with `unsafe`: mimalloc's option setter has no safe wrapper
    // (the `mimalloc` crate exposes none, and its `extended` feature would only add the same
    // declaration).
    #[allow(unsafe_code)]
    mod ffi {
        use std::ffi::{c_int, c_long};

        unsafe extern "C" {
            fn mi_option_set(option: c_int, value: c_long);
            #[cfg(test)]
            fn mi_option_get(option: c_int) -> c_long;
        }

        /// Sets an option. mimalloc's setter is not thread safe: called before any thread starts.
        pub fn set(option: c_int, value: c_long) {
            // SAFETY: a plain store into mimalloc's option table (the numbers are checked in
            // range by `super::tests`); no other thread exists yet to race it.
            unsafe { mi_option_set(option, value) }
        }

        /// Reads an option.
        #[cfg(test)]
        pub fn get(option: c_int) -> c_long {
            // SAFETY: a plain read of mimalloc's option table.
            unsafe { mi_option_get(option) }
        }
    }

    /// Applies [`TUNED`]: first thing in `main`, before the runtime's threads.
    pub fn tune() {
        for (option, value) in TUNED {
            ffi::set(option, value);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_option_numbers_are_those_of_the_linked_mimalloc() {
            if std::env::vars().any(|(k, _)| k.starts_with("MIMALLOC_")) {
                eprintln!(
                    "SKIPPED: MIMALLOC_* is set in the environment, so the defaults this test recognises the options by are not in effect"
                );
                return;
            }
            // Each option known by its default (mimalloc v2's options.c), its neighbours too so a
            // shifted enum cannot pass: eager_commit_delay 1, purge_delay 10, os_tag 100,
            // max_errors 32, max_segment_reclaim 10, arena_purge_mult 10, purge_extend_delay 1,
            // generic_collect 10,000; abandoned_page_purge 0 between deprecated options at 0.
            let defaults = [
                (11, 0),
                (ABANDONED_PAGE_PURGE, 0),
                (13, 0),
                (14, 1),
                (PURGE_DELAY, 10),
                (18, 100),
                (19, 32),
                (21, 10),
                (ARENA_PURGE_MULT, 10),
                (25, 1),
                (36, 10_000),
            ];
            for (option, value) in defaults {
                assert_eq!(ffi::get(option), value, "option {option}");
            }
            tune();
            for (option, value) in TUNED {
                assert_eq!(ffi::get(option), value, "option {option} after tune");
            }
        }
    }
}

fn main() -> ExitCode {
    allocator::tune();
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
