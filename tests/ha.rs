//! High availability end to end: two operator BINARIES with `--leader-elect` against kube-sandbox
//! and ecs-emulator (in-process, real HTTP), each signing with its own AccessKeyId so that the
//! emulator's call log names the replica that wrote. Short lease timings (2 s / 1.5 s / 0.5 s)
//! keep the hand-overs quick; every wait is bounded polling.
//!
//! - only the leader calls ECS; `kill -9` of the leader in the middle of 100 transitions: the
//!   follower leads within a lease duration (plus its polling), every resource converges, and no
//!   instance gets a second accepted start (`StartInstance` or an entry of `StartInstances`);
//! - SIGTERM of the leader: it releases the lease and the follower's first write comes within 3 s;
//! - the leader's Kubernetes connection cut (a TCP proxy in between) while ECS still answers: its
//!   ECS writes stop by the renew deadline, it exits non-zero, and the follower's writes all come
//!   after its last one.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod support;

use std::fmt::Write as _;
use std::fs::File;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecs_emulator::{AccessKey, CallRecord, Config, Emulator};
use ecs_power_operator::api::EcsInstancePower;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use kube_sandbox::Sandbox;
use support::process::{Proxy, Replica, client_for};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-operator");
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(500);
const LEASE_NAME: &str = "ecs-power-operator";
const CONVERGE: Duration = Duration::from_secs(60);

/// Replica `a` or `b`: its access key.
fn key(replica: &str) -> String {
    format!("LTAI-ha-{replica}")
}

/// kube-sandbox + ecs-emulator with `instances` stopped instances and the two replicas' keys.
struct Ha {
    replicas: Vec<Replica>,
    emulator: Emulator,
    sandbox: Sandbox,
    client: Client,
    dir: TempDir,
}

impl Ha {
    async fn start(instances: usize, transition: &str) -> Ha {
        let dir = tempfile::Builder::new()
            .prefix("ecs-power-ha-")
            .tempdir()
            .unwrap();
        let mut state = format!("transitionDelay: {transition}\ninstances:\n");
        for i in 0..instances {
            writeln!(
                state,
                "  - {{id: i-ha{i:04}, region: cn-hangzhou, status: Stopped}}"
            )
            .unwrap();
        }
        let mut config = Config::from_yaml(&state).unwrap();
        for replica in ["a", "b"] {
            config
                .access_keys
                .push(AccessKey::new(key(replica), format!("secret-{replica}")));
        }
        let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = client_for(&sandbox.kubeconfig_yaml()).await;
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        // The EcsPowerSchedule CRD is deliberately not installed (an upgrade that skipped the new
        // CRD): its watch keeps failing, and that must not slow the hand-over down.
        crds.create(&PostParams::default(), &EcsInstancePower::crd())
            .await
            .unwrap();
        crds.create(
            &PostParams::default(),
            &ecs_power_operator::api::EcsPowerAccessPolicy::crd(),
        )
        .await
        .unwrap();
        // One rule granting everything: these tests are about leadership, not access (retried
        // until the policy's CRD is served).
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = ecs_power_operator::sandbox::install_access_policy(
            &client,
            serde_json::json!([{"name": "everything", "allNamespaces": true, "anyInstance": true}]),
        )
        .await
        {
            assert!(
                Instant::now() < deadline,
                "cannot install the access policy: {e:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let ha = Ha {
            replicas: Vec::new(),
            emulator,
            sandbox,
            client,
            dir,
        };
        // The CRD is served once a list answers.
        let api = ha.resources();
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.list(&kube::api::ListParams::default()).await.is_err() {
            assert!(Instant::now() < deadline, "CRD not served");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        ha
    }

    fn resources(&self) -> Api<EcsInstancePower> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Starts replica `name` (`a` or `b`), reaching the API server at `api` (the sandbox itself
    /// or a proxy), and waits until it is ready.
    async fn spawn(&mut self, name: &str, api: SocketAddr) -> usize {
        let kubeconfig = self.dir.path().join(format!("kubeconfig-{name}"));
        let yaml = self
            .sandbox
            .kubeconfig_yaml()
            .replace(&self.sandbox.addr().to_string(), &api.to_string());
        std::fs::write(&kubeconfig, yaml).unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(BIN)
            .args([
                "run",
                "--ecs-endpoint",
                &self.emulator.url(),
                "--metrics-addr",
                "127.0.0.1:0",
                "--time-scale",
                "0.05",
                "--leader-elect",
                "--leader-elect-lease-duration",
                "2s",
                "--leader-elect-renew-deadline",
                "1500ms",
                "--leader-elect-retry-period",
                "500ms",
                "--leader-elect-resource-namespace",
                "default",
                // Small batches at a modest rate, so that a fleet's writes are spread over a few
                // seconds and a handover can happen in the middle of them.
                "--ecs-batch-size",
                "10",
                "--ecs-rate-limit",
                "StartInstances=4/s",
            ])
            .env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", format!("replica-{name}"))
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key(name))
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", format!("secret-{name}"))
            .env("RUST_LOG", "info,ecs_power_operator=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        self.replicas.push(Replica {
            name: name.to_string(),
            child: Some(child),
            log,
        });
        let replica = self.replicas.last_mut().unwrap();
        replica.wait_ready().await;
        self.replicas.len() - 1
    }

    async fn holder(&self) -> String {
        Api::<Lease>::namespaced(self.client.clone(), "default")
            .get_opt(LEASE_NAME)
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    }

    async fn wait_leader(&self, name: &str, limit: Duration) -> Instant {
        let prefix = format!("replica-{name}_");
        let deadline = Instant::now() + limit;
        loop {
            if self.holder().await.starts_with(&prefix) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not lead within {limit:?}; holder {:?}",
                self.holder().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create(&self, range: std::ops::Range<usize>) {
        for i in range {
            let obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
                "apiVersion": "ecspower.dev/v1alpha1",
                "kind": "EcsInstancePower",
                "metadata": {"name": format!("r{i:04}"), "namespace": "default"},
                "spec": {"instanceId": format!("i-ha{i:04}"), "regionId": "cn-hangzhou", "desiredState": "Running"}
            }))
            .unwrap();
            self.resources()
                .create(&PostParams::default(), &obj)
                .await
                .unwrap();
        }
    }

    fn calls_by(&self, replica: &str) -> Vec<CallRecord> {
        let key = key(replica);
        self.emulator
            .call_log()
            .into_iter()
            .filter(|c| c.access_key_id.as_deref() == Some(key.as_str()))
            .collect()
    }

    /// Instances whose start or stop `replica` had accepted (one entry per instance and call).
    fn accepted_by(&self, replica: &str) -> usize {
        self.writes_by(replica)
            .iter()
            .map(|c| c.accepted_instances().len())
            .sum()
    }

    fn writes_by(&self, replica: &str) -> Vec<CallRecord> {
        self.calls_by(replica)
            .into_iter()
            .filter(CallRecord::is_write)
            .collect()
    }

    /// Every instance in `range` is Running and its resource Ready.
    async fn wait_converged(&self, range: std::ops::Range<usize>) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let list = self
                .resources()
                .list(&kube::api::ListParams::default())
                .await
                .unwrap();
            let ready = range
                .clone()
                .filter(|i| {
                    list.items.iter().any(|r| {
                        r.metadata.name.as_deref() == Some(&format!("r{i:04}"))
                            && r.status.as_ref().is_some_and(|s| {
                                s.instance_status.as_deref() == Some("Running")
                                    && s.conditions
                                        .iter()
                                        .any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    })
                })
                .count();
            if ready == range.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ready}/{} converged after {CONVERGE:?}",
                range.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// No instance got a second accepted StartInstance.
    fn assert_one_accepted_start_each(&self) {
        let mut accepted = std::collections::BTreeMap::<String, usize>::new();
        for c in self.emulator.call_log() {
            if c.action.starts_with("StartInstance") {
                for id in c.accepted_instances() {
                    *accepted.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
        let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "started twice: {twice:?}");
    }
}

fn last_time(calls: &[CallRecord]) -> Option<jiff::Timestamp> {
    calls.iter().map(|c| c.time).max()
}

fn first_time(calls: &[CallRecord]) -> Option<jiff::Timestamp> {
    calls.iter().map(|c| c.time).min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_calls_ecs_and_kill_9_hands_over_without_a_second_start() {
    const N: usize = 100;
    let mut ha = Ha::start(N, "3s").await;
    let addr = ha.sandbox.addr();
    let a = ha.spawn("a", addr).await;
    ha.wait_leader("a", Duration::from_secs(5)).await;
    ha.spawn("b", addr).await;
    ha.create(0..N).await;

    // In the middle of the transitions: some started, not all.
    let deadline = Instant::now() + CONVERGE;
    while ha.accepted_by("a") < N / 3 {
        assert!(Instant::now() < deadline, "the leader does not write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(ha.calls_by("b").is_empty(), "the follower called ECS");
    let lease = Api::<Lease>::namespaced(ha.client.clone(), "default");
    ha.replicas[a].kill();
    let killed = Instant::now();
    let a_last_renew = lease
        .get(LEASE_NAME)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap();

    let led = ha.wait_leader("b", LEASE + RETRY * 4).await;
    let b_acquired = lease
        .get(LEASE_NAME)
        .await
        .unwrap()
        .spec
        .unwrap()
        .acquire_time
        .unwrap();
    // The follower takes over a lease duration after it last saw the record change, at its next
    // attempt: at most one jittered retry period to see the last renewal, one to act after.
    let handover = b_acquired.0.duration_since(a_last_renew.0);
    assert!(
        handover.unsigned_abs() <= LEASE + RETRY.mul_f64(2.4),
        "took over {handover:?} after the last renewal ({:?} after the kill)",
        led - killed
    );

    ha.wait_converged(0..N).await;
    ha.assert_one_accepted_start_each();
    let (a_writes, b_writes) = (ha.writes_by("a"), ha.writes_by("b"));
    assert!(!b_writes.is_empty(), "the new leader finished the rest");
    assert!(
        last_time(&a_writes) < first_time(&b_writes),
        "the writers' windows overlap"
    );
    assert_eq!(
        ha.accepted_by("a") + ha.accepted_by("b"),
        N,
        "one accepted start per instance, no other write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_the_follower_writes_within_3_seconds() {
    let mut ha = Ha::start(6, "200ms").await;
    let addr = ha.sandbox.addr();
    let a = ha.spawn("a", addr).await;
    ha.wait_leader("a", Duration::from_secs(5)).await;
    ha.spawn("b", addr).await;
    ha.create(0..3).await;
    ha.wait_converged(0..3).await;
    assert!(ha.calls_by("b").is_empty(), "the follower called ECS");

    ha.replicas[a].signal_term();
    let term = Instant::now();
    ha.create(3..6).await;
    let status = ha.replicas[a].exit_status(Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    let deadline = term + Duration::from_secs(3);
    while ha.writes_by("b").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the follower did not write within 3 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ha.wait_converged(0..6).await;
    ha.assert_one_accepted_start_each();
    assert!(last_time(&ha.writes_by("a")) < first_time(&ha.writes_by("b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_kubernetes_stops_writing_by_the_renew_deadline() {
    const N: usize = 60;
    let mut ha = Ha::start(N, "3s").await;
    // Replica a reaches the API server through a proxy that the test cuts.
    let proxy = Proxy::start(ha.sandbox.addr()).await;
    let a = ha.spawn("a", proxy.addr).await;
    ha.wait_leader("a", Duration::from_secs(5)).await;
    let b = ha.spawn("b", ha.sandbox.addr()).await;
    // The resources exist before a is cut: it keeps working through its queue from its cache.
    ha.emulator
        .set_qps(
            [
                ("StartInstance".to_string(), 20),
                ("StartInstances".to_string(), 20),
            ]
            .into_iter()
            .collect(),
        )
        .unwrap();
    ha.create(0..N).await;
    let deadline = Instant::now() + CONVERGE;
    while ha.accepted_by("a") < 5 {
        assert!(Instant::now() < deadline, "the leader does not write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.cut();
    let cut = jiff::Timestamp::now();

    // a loses the lease: it stops writing and exits non-zero.
    let status = ha.replicas[a].exit_status(Duration::from_secs(30)).await;
    assert!(
        !status.success(),
        "losing the lease exits non-zero: {status}"
    );
    let a_last = last_time(&ha.writes_by("a")).unwrap();
    let after_cut = a_last.duration_since(cut);
    assert!(
        after_cut.unsigned_abs() <= RENEW || after_cut.is_negative(),
        "a wrote {after_cut:?} after the cut (renew deadline {RENEW:?})"
    );
    ha.wait_leader("b", LEASE + RETRY * 4).await;
    ha.wait_converged(0..N).await;
    let b_writes = ha.writes_by("b");
    assert!(
        first_time(&b_writes).is_none_or(|first| first > a_last),
        "the follower wrote before the old leader's last write"
    );
    ha.assert_one_accepted_start_each();
    drop(ha.replicas.remove(b));
}
