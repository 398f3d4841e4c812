//! Benchmark (not a test): what the operator costs at scale, against kube-sandbox and ecs-emulator
//! over loopback HTTP.
//!
//! 1. Convergence: N stopped instances, N `EcsInstancePower` resources created at once; time until
//!    every one is Ready=True, and ECS calls per resource on the way (one `DescribeInstances`, one
//!    `StartInstance`, one `DescribeInstances` after the 2 s transition poll is the minimum).
//! 2. Steady state: after convergence, ECS calls during one resync interval (target: zero write
//!    calls, at most one `DescribeInstances` per resource).
//! 3. Resident memory of this process (operator + sandbox + emulator) after convergence.
//! 4. Fleet on ECS's rate limits: N resources (default 10,000) against an emulator that limits
//!    `StartInstances` / `StartInstance` to 5/s and `DescribeInstances` to 10/s per account and region
//!    (holding a throttled action to the next minute, as ECS does), transitions of 2 s, with
//!    `--ecs-rate-limit` matching those limits: convergence time T against the lower bound
//!    max(⌈N/100⌉ / `R_start`, 2⌈N/100⌉ / `R_describe`) + transition, ECS calls per resource while
//!    converging, calls per resource per resync in steady state, throttled share, accepted starts
//!    per instance, RSS (after convergence and after the steady-state window); then the same fleet with `--ecs-batch-size 1` (batching off) as the
//!    baseline, capped in time and projected (said so in the output). Env `BENCH_FLEET`
//!    (default 10000; 0 skips), `BENCH_BASELINE_CAP_SECS` (default 120; 0 skips the baseline),
//!    `BENCH_STEADY_INTERVALS` (default 0: further resync intervals of steady state, the RSS after
//!    each), `BENCH_OPERATOR_WRAPPER` (a command the operator runs under, e.g. `heaptrack -o /tmp/op`;
//!    unset: none), `BENCH_OPERATOR_SIGNAL` (how the operator is stopped, default `TERM`; `KILL`
//!    under heaptrack reports the steady-state heap as leaked); `MIMALLOC_*` variables are passed on to the operator (its allocator's options).
//!
//! Run: `cargo bench --bench operator` (env `BENCH_RESOURCES`, default 1000; `BENCH_CONCURRENCY`,
//! default 16). Under `cargo test --all-targets` (no `--bench` argument) it does a smoke run with
//! 50 resources to prove the benchmark still works, and says so.

// A report: rates, ratios and projections are computed in `f64`; precision beyond 2^52 and the
// rounding of whole limits do not matter here.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use ecs_emulator::{AccessKey, ActionLimit, Config, Emulator, Instance, RateLimits, Status};
use ecs_power_operator::api::{CONDITION_READY, EcsInstancePower};
use ecs_power_operator::cli::Cli;
use ecs_power_operator::ecs::{Credentials, OperatorCredentials};
use futures::StreamExt;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube_sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

const REGION: &str = "cn-hangzhou";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn instance_id(n: usize) -> String {
    format!("i-bench{n:08}")
}

fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The resident memory of another process, from `/proc/<pid>/status`: all of it, and its
/// anonymous part (the heap, stacks) and file-backed part (the binary's pages and libraries).
fn process_memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

/// A process's resident memory, in MiB.
#[derive(Clone, Copy)]
struct Memory {
    rss: f64,
    anon: f64,
    file: f64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MiB (anonymous {:.1}, file-backed {:.1})",
            self.rss, self.anon, self.file
        )
    }
}

/// The first process under `pid` (itself included, depth first) whose executable is `binary`.
fn descendant_running(pid: u32, binary: &str) -> Option<u32> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let target = std::fs::canonicalize(binary).ok();
    if exe.is_some() && exe == target {
        return Some(pid);
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find_map(|child| descendant_running(child, binary))
}

async fn ready_count(api: &Api<EcsInstancePower>) -> usize {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.condition(CONDITION_READY))
                .is_some_and(|c| c.status == "True")
        })
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let resources = if full {
        env_number("BENCH_RESOURCES", 1000)
    } else {
        50
    };
    let concurrency = env_number("BENCH_CONCURRENCY", 16);
    let resync = if full {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(3)
    };
    if !full {
        println!(
            "operator benchmark: smoke run ({resources} resources, debug build); `cargo bench --bench operator` measures"
        );
    }

    let emulator = Emulator::start(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            access_keys: vec![AccessKey::new("AKBENCH", "bench-secret")],
            transition_delay: Duration::ZERO,
            instances: (0..resources)
                .map(|n| Instance::new(instance_id(n), REGION, Status::Stopped))
                .collect(),
            ..Config::default()
        },
    )
    .await
    .unwrap();
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = ecs_power_operator::sandbox::client(&sandbox).await.unwrap();
    ecs_power_operator::sandbox::install_crd(&client)
        .await
        .unwrap();
    // One rule granting everything: the benchmark measures the operator, not the access policy.
    ecs_power_operator::sandbox::install_access_policy(
        &client,
        serde_json::json!([{"name": "everything", "allNamespaces": true, "anyInstance": true}]),
    )
    .await
    .unwrap();

    let resync_arg = format!("{}s", resync.as_secs());
    let concurrency_arg = concurrency.to_string();
    let cli = Cli::try_parse_from([
        "ecs-power-operator",
        "--ecs-endpoint",
        &emulator.url(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--resync-interval",
        &resync_arg,
        "--max-concurrent-reconciles",
        &concurrency_arg,
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    let credentials = OperatorCredentials::Env(Credentials::new("AKBENCH", "bench-secret", None));
    let running = ecs_power_operator::run::start(
        client.clone(),
        &cli.run,
        Some(credentials),
        shutdown.clone(),
    )
    .await
    .unwrap();

    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    for n in 0..resources {
        let obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": format!("r-{n}"), "namespace": "default"},
            "spec": {"instanceId": instance_id(n), "regionId": REGION},
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
    let created = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready_count(&api).await < resources {
        assert!(Instant::now() < deadline, "not converged within 300 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converged = started.elapsed();
    let calls = emulator.call_log();
    let count = |action: &str| calls.iter().filter(|c| c.action == action).count();
    let (describes, starts) = (count("DescribeInstances"), count("StartInstance"));
    let batch_starts = count("StartInstances");
    let started_ids: usize = calls
        .iter()
        .filter(|c| c.action == "StartInstance" || c.action == "StartInstances")
        .map(|c| c.accepted_instances().len())
        .sum();
    let rss = rss_mib();

    // Steady state: one resync interval (+10 % jitter) of calls.
    let seq = calls.last().map_or(0, |c| c.seq);
    tokio::time::sleep(resync.mul_f64(1.1)).await;
    let steady = emulator.call_log_since(seq);
    let steady_writes = steady.iter().filter(|c| c.is_write()).count();
    let steady_describes = steady
        .iter()
        .filter(|c| c.action == "DescribeInstances")
        .count();

    let per = |n: usize| n as f64 / resources as f64;
    println!(
        "operator benchmark: {resources} resources, --max-concurrent-reconciles {concurrency}, 2 cores shared with kube-sandbox and ecs-emulator"
    );
    println!(
        "  create {resources} resources:           {:>8.2} s",
        created.as_secs_f64()
    );
    println!(
        "  all Ready=True after:              {:>8.2} s (transition poll 2 s)",
        converged.as_secs_f64()
    );
    println!(
        "  ECS calls per resource to converge: {:>7.2} DescribeInstances, {:.2} StartInstance, {:.3} StartInstances",
        per(describes),
        per(starts),
        per(batch_starts)
    );
    println!(
        "  steady state, one resync ({} s):    {:>7.2} DescribeInstances/resource, {steady_writes} write calls",
        resync.as_secs(),
        per(steady_describes)
    );
    if let Some(rss) = rss {
        println!("  resident memory (all three):        {rss:>7.1} MiB");
    }
    assert_eq!(
        started_ids, resources,
        "exactly one accepted start per resource"
    );
    assert_eq!(steady_writes, 0, "no write call in steady state");

    shutdown.cancel();
    running.wait().await;
    sandbox.shutdown().await;
    emulator.shutdown().await;

    let fleet = if full {
        env_number("BENCH_FLEET", 10_000)
    } else {
        200
    };
    if fleet == 0 {
        return;
    }
    let cap = Duration::from_secs(if full {
        env_number("BENCH_BASELINE_CAP_SECS", 120) as u64
    } else {
        20
    });
    let batched = fleet_run(fleet, 100, None, full).await;
    let baseline = if cap.is_zero() {
        None
    } else {
        Some(fleet_run(fleet, 1, Some(cap), full).await)
    };
    print_fleet(fleet, &batched, baseline.as_ref());
}

/// ECS's limits in the fleet run, per account, region and action.
const R_START: f64 = 5.0;
const R_DESCRIBE: f64 = 10.0;
const TRANSITION: Duration = Duration::from_secs(2);

/// What one fleet run measured.
struct FleetResult {
    batch_size: usize,
    /// All resources created.
    created: Duration,
    /// All Ready (from the first create), or the projection when capped.
    converged: Duration,
    /// Ready when the run ended (less than all when capped).
    ready: usize,
    /// Instances with an accepted start when the run ended.
    started_instances: usize,
    capped: bool,
    calls: usize,
    describes: usize,
    start_calls: usize,
    throttled: usize,
    max_accepted_starts: usize,
    steady_calls_per_resource: Option<f64>,
    resync: Duration,
    rss: Option<Memory>,
    /// The operator's RSS again after the steady-state window (two resync intervals of sweeps),
    /// then after each further interval `BENCH_STEADY_INTERVALS` asks for.
    rss_steady: Vec<Memory>,
}

async fn fleet_run(n: usize, batch_size: usize, cap: Option<Duration>, full: bool) -> FleetResult {
    let limits = RateLimits {
        hold_minute: true,
        ..RateLimits::new([
            ("StartInstances", ActionLimit::per_second(R_START as u32)),
            ("StartInstance", ActionLimit::per_second(R_START as u32)),
            (
                "DescribeInstances",
                ActionLimit::per_second(R_DESCRIBE as u32),
            ),
        ])
    };
    let emulator = Emulator::start(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            access_keys: vec![AccessKey::new("AKBENCH", "bench-secret")],
            transition_delay: TRANSITION,
            rate_limits: limits,
            instances: (0..n)
                .map(|i| Instance::new(instance_id(i), REGION, Status::Stopped))
                .collect(),
            ..Config::default()
        },
    )
    .await
    .unwrap();
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = ecs_power_operator::sandbox::client(&sandbox).await.unwrap();
    ecs_power_operator::sandbox::install_crd(&client)
        .await
        .unwrap();
    // One rule granting everything: the benchmark measures the operator, not the access policy.
    ecs_power_operator::sandbox::install_access_policy(
        &client,
        serde_json::json!([{"name": "everything", "allNamespaces": true, "anyInstance": true}]),
    )
    .await
    .unwrap();
    // Long enough for one sweep of the fleet (⌈n/100⌉ calls at the describe rate) to fit.
    let resync = if full {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    };
    let resync_arg = format!("{}s", resync.as_secs());
    let batch_arg = batch_size.to_string();
    // The operator as its own process (the release binary), so that its memory is its own.
    let kubeconfig = std::env::temp_dir().join(format!(
        "ecs-power-bench-{}-{batch_size}.kubeconfig",
        std::process::id()
    ));
    sandbox.write_kubeconfig(&kubeconfig).unwrap();
    // `BENCH_OPERATOR_WRAPPER` (e.g. `heaptrack -o /tmp/op`): a command that runs the operator,
    // for profiling it.
    let wrapper: Vec<String> = std::env::var("BENCH_OPERATOR_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let binary = env!("CARGO_BIN_EXE_ecs-power-operator");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = std::process::Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => std::process::Command::new(binary),
    };
    command
        .args([
            "run",
            "--ecs-endpoint",
            &emulator.url(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--resync-interval",
            &resync_arg,
            "--max-concurrent-reconciles",
            "16",
            "--ecs-batch-size",
            &batch_arg,
            "--ecs-rate-limit",
            "StartInstances=5/s",
            "--ecs-rate-limit",
            "StartInstance=5/s",
            "--ecs-rate-limit",
            "DescribeInstances=10/s",
        ])
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKBENCH")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "bench-secret")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // `MIMALLOC_*` (the allocator's options, e.g. `MIMALLOC_PURGE_DELAY=0`) reach the operator:
    // for trying them against its memory.
    command.envs(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")));
    if !wrapper.is_empty() {
        // The wrapper (a script, often) needs the tools on the PATH.
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
    }
    let mut spawned = command.spawn().unwrap();

    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    // The operator's own process: the spawned one, or the wrapper's descendant running the binary.
    let operator = if wrapper.is_empty() {
        spawned.id()
    } else {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = descendant_running(spawned.id(), binary) {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "the wrapper did not start the operator"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let started = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let manifest = serde_json::json!({
                    "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
                    "metadata": {"name": format!("r-{i}"), "namespace": "default"},
                    "spec": {"instanceId": instance_id(i), "regionId": REGION},
                });
                // As `kubectl apply` (or Argo CD's client-side apply) writes it: with a copy of
                // the manifest in an annotation, which the operator does not keep in its cache.
                let mut obj: EcsInstancePower = serde_json::from_value(manifest.clone()).unwrap();
                obj.metadata.annotations = Some(
                    [(
                        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                        manifest.to_string(),
                    )]
                    .into(),
                );
                api.create(&PostParams::default(), &obj).await.unwrap();
            }
        })
        .await;
    let created = started.elapsed();
    let deadline = started + cap.unwrap_or(Duration::from_secs(900));
    let mut ready = ready_count(&api).await;
    let mut last_print = Instant::now();
    // Listing every resource is itself work for the shared cores: poll less often for big fleets.
    let poll = if n > 1000 {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(250)
    };
    while ready < n && Instant::now() < deadline {
        tokio::time::sleep(poll).await;
        ready = ready_count(&api).await;
        if last_print.elapsed() >= Duration::from_secs(15) {
            println!(
                "  … batch size {batch_size}: {ready}/{n} Ready after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    let capped = ready < n;
    let calls = emulator.call_log();
    let started_instances: usize = {
        let mut ids: Vec<&str> = calls
            .iter()
            .filter(|c| c.action == "StartInstances" || c.action == "StartInstance")
            .flat_map(|c| c.accepted_instances())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let converged = if capped {
        // A linear projection of the work done so far: every resource needs its start accepted
        // and then its Ready (the baseline is throughput-bound, so progress is about linear).
        let done = (started_instances + ready).max(1) as f64;
        elapsed.mul_f64(2.0 * n as f64 / done)
    } else {
        elapsed
    };
    let count =
        |pred: &dyn Fn(&ecs_emulator::CallRecord) -> bool| calls.iter().filter(|c| pred(c)).count();
    let describes = count(&|c| c.action == "DescribeInstances");
    let start_calls = count(&|c| c.action == "StartInstances" || c.action == "StartInstance");
    let throttled = count(&|c| c.is_throttled());
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.action == "StartInstances" || c.action == "StartInstance")
    {
        for id in c.accepted_instances() {
            *accepted.entry(id).or_default() += 1;
        }
    }
    let rss = process_memory(operator);
    let steady_calls_per_resource = if capped {
        None
    } else {
        // Steady state: let the transition checks finish, then two resync intervals of calls
        // (the sweep spreads its calls over an interval, so one window cuts a round in two).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let seq = emulator.call_log().last().map_or(0, |c| c.seq);
        tokio::time::sleep(resync * 2).await;
        let steady = emulator.call_log_since(seq);
        Some(steady.len() as f64 / n as f64 / 2.0)
    };
    let mut rss_steady: Vec<Memory> = steady_calls_per_resource
        .and_then(|_| process_memory(operator))
        .into_iter()
        .collect();
    // `BENCH_STEADY_INTERVALS` more resync intervals of steady state, the RSS after each: a
    // longer look at whether memory settles (default none).
    if full && !capped {
        for _ in 0..env_number("BENCH_STEADY_INTERVALS", 0) {
            tokio::time::sleep(resync).await;
            rss_steady.extend(process_memory(operator));
        }
    }
    // `BENCH_OPERATOR_SIGNAL=KILL` under heaptrack: what it reports as leaked is then the heap
    // live in steady state (a graceful exit frees much of it first).
    let signal = format!(
        "-{}",
        std::env::var("BENCH_OPERATOR_SIGNAL").unwrap_or_else(|_| "TERM".to_string())
    );
    let _ = std::process::Command::new("kill")
        .args([signal.as_str(), &operator.to_string()])
        .status();
    let _ = spawned.wait();
    let _ = std::fs::remove_file(&kubeconfig);
    sandbox.shutdown().await;
    emulator.shutdown().await;
    FleetResult {
        batch_size,
        created,
        converged,
        ready,
        started_instances,
        capped,
        calls: calls.len(),
        describes,
        start_calls,
        throttled,
        max_accepted_starts: accepted.values().copied().max().unwrap_or(0),
        steady_calls_per_resource,
        resync,
        rss,
        rss_steady,
    }
}

fn print_fleet(n: usize, batched: &FleetResult, baseline: Option<&FleetResult>) {
    let chunks = n.div_ceil(100) as f64;
    let bound = (chunks / R_START).max(2.0 * chunks / R_DESCRIBE) + TRANSITION.as_secs_f64();
    println!(
        "fleet on ECS's rate limits: {n} resources, emulator limits StartInstances/StartInstance {R_START}/s and \
         DescribeInstances {R_DESCRIBE}/s per account and region (throttled: held to the next minute), \
         transitions {} s, --ecs-rate-limit set to the same, --max-concurrent-reconciles 16",
        TRANSITION.as_secs()
    );
    println!(
        "  lower bound: max({chunks}/{R_START}, 2·{chunks}/{R_DESCRIBE}) + {} = {bound:.1} s",
        TRANSITION.as_secs()
    );
    if baseline.is_none() {
        println!("  (baseline skipped: BENCH_BASELINE_CAP_SECS=0)");
    }
    for r in std::iter::once(batched).chain(baseline) {
        let t = r.converged.as_secs_f64();
        println!("  --ecs-batch-size {}:", r.batch_size);
        println!(
            "    resources created after:          {:>9.1} s (T counts from the first create)",
            r.created.as_secs_f64()
        );
        if r.capped {
            println!(
                "    T (PROJECTED, run capped):        {t:>9.1} s (capped; at the cap {} of {n} started and {} Ready; \
                 projected linearly as cap × 2N / (started + Ready))",
                r.started_instances, r.ready
            );
        } else {
            println!("    T (all Ready):                    {t:>9.1} s");
        }
        println!(
            "    T / bound:                        {:>9.2}{}",
            t / bound,
            if r.capped { " (projected)" } else { "" }
        );
        // Per resource worked on: all of them, or (capped) those whose start was accepted.
        let worked = if r.capped { r.started_instances } else { n };
        let per = |x: usize| x as f64 / worked.max(1) as f64;
        println!(
            "    ECS calls per resource{} {:>6.3} ({:.3} DescribeInstances, {:.3} start calls; {} calls)",
            if r.capped {
                " started (capped):"
            } else {
                " (converging):"
            },
            per(r.calls),
            per(r.describes),
            per(r.start_calls),
            r.calls
        );
        match r.steady_calls_per_resource {
            Some(c) => println!(
                "    steady state, per resource per resync ({} s): {c:.4} calls",
                r.resync.as_secs()
            ),
            None => println!("    steady state: not measured (run capped)"),
        }
        println!(
            "    throttled share:                  {:>8.2} % ({} of {} calls)",
            100.0 * r.throttled as f64 / r.calls.max(1) as f64,
            r.throttled,
            r.calls
        );
        println!(
            "    most accepted starts for one instance: {}",
            r.max_accepted_starts
        );
        if let Some(rss) = r.rss {
            println!("    operator RSS (its own process, after convergence): {rss}");
        }
        if let Some((first, more)) = r.rss_steady.split_first() {
            println!("    operator RSS after two resync intervals of steady state: {first}");
            if !more.is_empty() {
                for m in more {
                    println!("    … then after a further interval: {m}");
                }
            }
        }
    }
    println!(
        "  targets: T ≤ 1.2 × bound ({:.1} s), ≤ 0.02 calls/resource/resync, ≤ 1 % throttled, RSS ≤ 100 MiB, \
         at most one accepted start per instance",
        1.2 * bound
    );
}
