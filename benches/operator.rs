//! Benchmark (not a test): what the operator costs at scale, against kube-sandbox and ecs-emulator
//! over loopback HTTP.
//!
//! 1. Convergence: N stopped instances, N `EcsInstancePower` resources created at once; time until
//!    every one is Ready=True, and ECS calls per resource on the way (one DescribeInstances, one
//!    StartInstance, one DescribeInstances after the 2 s transition poll is the minimum).
//! 2. Steady state: after convergence, ECS calls during one resync interval (target: zero write
//!    calls, at most one DescribeInstances per resource).
//! 3. Resident memory of this process (operator + sandbox + emulator) after convergence.
//!
//! Run: `cargo bench --bench operator` (env `BENCH_RESOURCES`, default 1000; `BENCH_CONCURRENCY`,
//! default 16). Under `cargo test --all-targets` (no `--bench` argument) it does a smoke run with
//! 50 resources to prove the benchmark still works, and says so.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use clap::Parser;
use ecs_emulator::{AccessKey, Config, Emulator, Instance, Status};
use ecs_power_operator::api::{CONDITION_READY, EcsInstancePower};
use ecs_power_operator::cli::Cli;
use ecs_power_operator::ecs::{Credentials, OperatorCredentials};
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
        "  ECS calls per resource to converge: {:>7.2} DescribeInstances, {:.2} StartInstance",
        per(describes),
        per(starts)
    );
    println!(
        "  steady state, one resync ({} s):    {:>7.2} DescribeInstances/resource, {steady_writes} write calls",
        resync.as_secs(),
        per(steady_describes)
    );
    if let Some(rss) = rss {
        println!("  resident memory (all three):        {rss:>7.1} MiB");
    }
    assert_eq!(starts, resources, "exactly one StartInstance per resource");
    assert_eq!(steady_writes, 0, "no write call in steady state");

    shutdown.cancel();
    running.wait().await;
    sandbox.shutdown().await;
    emulator.shutdown().await;
}
