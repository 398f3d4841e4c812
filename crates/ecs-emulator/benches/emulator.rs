//! Benchmark (not a test): shows the emulator is never the bottleneck.
//!
//! 1. Requests per second of V1-signed `DescribeInstances` (`InstanceIds` with one id, as the
//!    operator observes) over loopback with a few concurrent keep-alive clients in this process.
//! 2. Heap bytes per emulated instance at 100,000 instances, measured with a counting global
//!    allocator (bytes allocated minus bytes freed while the instances are added), plus the
//!    resident-set growth for comparison.
//!
//! Run: `cargo bench -p ecs-emulator` (env `BENCH_SECONDS`, `BENCH_CLIENTS` to change the load).
//! Under `cargo test --all-targets` (no `--bench` argument) it only does a short smoke run
//! (debug build, small sizes) to prove the benchmark still works, and says so.

// A report: rates and byte counts are computed in `f64`/`i64`; precision beyond 2^52 and counts
// beyond `i64::MAX` do not occur in a benchmark run.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

#[path = "../tests/support/client.rs"]
mod client;

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ecs_emulator::{AccessKey, Config, Emulator, Instance, Status};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn instance_id(n: usize) -> String {
    format!("i-bp67acfmxazb{n:08}")
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Sizes of one run.
#[derive(Clone, Copy)]
struct Scale {
    millis: u64,
    clients: u64,
    instances: usize,
}

async fn throughput(scale: Scale) -> anyhow::Result<()> {
    let millis = scale.millis;
    let clients = scale.clients;
    let config = Config {
        access_keys: vec![AccessKey::new("AKBENCH", "bench-secret")],
        transition_delay: Duration::ZERO,
        instances: (0..1000)
            .map(|n| Instance::new(instance_id(n), "cn-hangzhou", Status::Running))
            .collect(),
        ..Config::default()
    };
    let emu = Emulator::start(local(), config).await?;
    let base = emu.url();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let warmup = Duration::from_millis(500);
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + Duration::from_millis(millis);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client::Client::new(&base, "AKBENCH", "bench-secret");
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut n = c as usize;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let ids = format!("[\"{}\"]", instance_id(n % 1000));
                n += 7;
                let reply = client
                    .call(
                        "DescribeInstances",
                        &[("RegionId", "cn-hangzhou"), ("InstanceIds", &ids)],
                    )
                    .await;
                if now >= measure_from {
                    if reply.status == 200
                        && reply.body["Instances"]["Instance"][0]["Status"] == "Running"
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let logged = emu.call_log().len();
    println!(
        "signed DescribeInstances over loopback: {:.0} requests/s ({ok} ok, {failed} failed, {clients} keep-alive clients, {elapsed:.1} s, {logged} call records kept; clients and server share the machine's {} cores)",
        ok as f64 / elapsed,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    );
    emu.shutdown().await;
    anyhow::ensure!(failed == 0, "{failed} requests failed");
    Ok(())
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

async fn memory(scale: Scale) -> anyhow::Result<()> {
    let count = scale.instances;
    let config = Config {
        access_keys: vec![AccessKey::new("AKBENCH", "bench-secret")],
        ..Config::default()
    };
    let emu = Emulator::start(local(), config).await?;
    let ids: Vec<String> = (0..count).map(instance_id).collect();
    let rss_before = rss_bytes();
    let region = Region::new(GLOBAL);
    for (n, id) in ids.into_iter().enumerate() {
        let status = if n % 2 == 0 {
            Status::Running
        } else {
            Status::Stopped
        };
        emu.upsert_instance(Instance::new(id, "cn-hangzhou", status))?;
    }
    let stats = region.change();
    let rss_after = rss_bytes();
    let net = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    println!(
        "memory at {count} instances: {:.0} bytes of heap per instance ({} allocations net, counting allocator){}",
        net as f64 / count as f64,
        stats.allocations as i64 - stats.deallocations as i64,
        match (rss_before, rss_after) {
            (Some(b), Some(a)) => format!(
                "; resident set grew {:.0} bytes per instance",
                (a.saturating_sub(b)) as f64 / count as f64
            ),
            _ => String::new(),
        }
    );
    anyhow::ensure!(emu.instances().len() == count, "instances missing");
    emu.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let scale = if benchmarking {
        Scale {
            millis: env_number("BENCH_SECONDS", 5) * 1000,
            clients: env_number("BENCH_CLIENTS", 8),
            instances: 100_000,
        }
    } else {
        println!(
            "ecs-emulator benchmark: smoke run only (not started by `cargo bench`, so the numbers below mean nothing); \
             run `cargo bench -p ecs-emulator` for real numbers"
        );
        Scale {
            millis: 300,
            clients: 2,
            instances: 1_000,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        throughput(scale).await?;
        memory(scale).await
    })
}
