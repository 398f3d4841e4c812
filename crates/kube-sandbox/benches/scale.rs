//! Scale benchmark of kube-sandbox with 10,000 custom resources, run by
//! `cargo bench -p kube-sandbox` (not in CI). Prints:
//! - create rate (32 concurrent clients over loopback HTTP),
//! - LIST latency of all 10,000 objects (p50 / p99 / max of 20 LISTs),
//! - watch delivery latency to two concurrent watchers, from the moment a write is sent to the
//!   moment each watcher has decoded the event (p50 / p99), during the bulk create and for 1,000
//!   sequential updates.
//!
//! Targets: LIST of 10,000 under 200 ms; p99 watch delivery under 10 ms on loopback.
//!
//! `cargo test --all-targets` also runs this target (without `--bench`): it then does a quick
//! smoke run with 200 objects so the benchmark keeps working, without the 10,000-object cost.

// A report: rates and percentiles are computed in `f64`; precision beyond 2^52 and the rounding
// of a percentile's index do not matter here.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use kube_sandbox::Sandbox;
use serde_json::json;

const CONCURRENCY: usize = 32;
const CRD_YAML: &str = include_str!("../tests/fixtures/crd.yaml");

type Sent = Arc<Mutex<HashMap<String, Instant>>>;
type Latencies = Arc<Mutex<Vec<Duration>>>;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn spawn_watcher(
    api: Api<DynamicObject>,
    rv: String,
    sent: Sent,
    out: Latencies,
    want: usize,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        let mut got = 0;
        while got < want {
            let Some(ev) = stream.try_next().await? else {
                anyhow::bail!("watch ended early after {got} events")
            };
            let obj = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
                WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
                _ => continue,
            };
            let now = Instant::now();
            let key = format!(
                "{}@{}",
                obj.name_any(),
                obj.data["spec"]["regionId"].as_str().unwrap_or("")
            );
            let started = sent
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .get(&key)
                .copied();
            if let Some(t) = started {
                out.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(now.duration_since(t));
                got += 1;
            }
        }
        Ok(())
    })
}

async fn run(objects: usize, updates: usize) -> anyhow::Result<()> {
    let sb = Sandbox::start("127.0.0.1:0".parse()?).await?;
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml())?;
    let client =
        Client::try_from(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &serde_yaml::from_str(CRD_YAML)?)
        .await?;
    let ar = ApiResource {
        group: "ecspower.dev".into(),
        version: "v1alpha1".into(),
        api_version: "ecspower.dev/v1alpha1".into(),
        kind: "EcsInstancePower".into(),
        plural: "ecsinstancepowers".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();

    // Phase 1: bulk create, watched by two watchers.
    let sent: Sent = Arc::new(Mutex::new(HashMap::with_capacity(objects)));
    let bulk: [Latencies; 2] = [Arc::default(), Arc::default()];
    let watchers: Vec<_> = bulk
        .iter()
        .map(|l| spawn_watcher(api.clone(), rv.clone(), sent.clone(), l.clone(), objects))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            let sent = sent.clone();
            async move {
                let name = format!("power-{i:05}");
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
                    "metadata": {"name": name, "labels": {"bench": "scale"}},
                    "spec": {"instanceId": format!("i-{i:08x}"), "regionId": "cn-hangzhou"}}))?;
                sent.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(format!("{name}@cn-hangzhou"), Instant::now());
                api.create(&PostParams::default(), &obj).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let create_time = start.elapsed();
    for w in watchers {
        tokio::time::timeout(Duration::from_secs(60), w).await???;
    }

    // Phase 2: LIST of everything.
    let mut lists = Vec::new();
    let mut bytes = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        lists.push(t.elapsed());
        anyhow::ensure!(l.items.len() == objects, "listed {} objects", l.items.len());
        bytes = serde_json::to_vec(&l)?.len();
    }
    let mut raw = Vec::new();
    let http = client.clone();
    for _ in 0..20 {
        let req =
            http::Request::get("/apis/ecspower.dev/v1alpha1/namespaces/default/ecsinstancepowers")
                .body(Vec::new())?;
        let t = Instant::now();
        let text = http.request_text(req).await?;
        raw.push(t.elapsed());
        anyhow::ensure!(text.len() > 1000, "short list");
    }

    // Phase 3: sequential updates, watched by two fresh watchers.
    let rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let steady: [Latencies; 2] = [Arc::default(), Arc::default()];
    let watchers: Vec<_> = steady
        .iter()
        .map(|l| spawn_watcher(api.clone(), rv.clone(), sent.clone(), l.clone(), updates))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..updates {
        let name = format!("power-{i:05}");
        let region = format!("cn-r{i}");
        sent.lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(format!("{name}@{region}"), Instant::now());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"regionId": region}})),
        )
        .await?;
    }
    for w in watchers {
        tokio::time::timeout(Duration::from_secs(60), w).await???;
    }

    println!("kube-sandbox scale benchmark: {objects} custom resources, loopback HTTP, 2 watchers");
    println!(
        "create:            {objects} objects in {:.2} s = {:.0} objects/s ({CONCURRENCY} concurrent clients)",
        create_time.as_secs_f64(),
        objects as f64 / create_time.as_secs_f64()
    );
    println!(
        "LIST all (kube-rs, incl. decode): p50 {} p99 {} max {} ({} KiB)",
        ms(percentile(&mut lists.clone(), 0.5)),
        ms(percentile(&mut lists.clone(), 0.99)),
        ms(percentile(&mut lists, 1.0)),
        bytes / 1024
    );
    println!(
        "LIST all (raw HTTP body):         p50 {} p99 {} max {}",
        ms(percentile(&mut raw.clone(), 0.5)),
        ms(percentile(&mut raw.clone(), 0.99)),
        ms(percentile(&mut raw, 1.0))
    );
    for (label, set) in [
        ("bulk create (32 concurrent writers)", &bulk),
        ("sequential updates", &steady),
    ] {
        for (i, l) in set.iter().enumerate() {
            let mut v = l.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
            println!(
                "watch delivery, {label}, watcher {}: n={} p50 {} p99 {}",
                i + 1,
                v.len(),
                ms(percentile(&mut v.clone(), 0.5)),
                ms(percentile(&mut v, 0.99))
            );
        }
    }
    sb.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return Ok(());
    }
    let (objects, updates) = if args.iter().any(|a| a == "--bench") {
        (10_000, 1_000)
    } else {
        (200, 50)
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(objects, updates))
}
