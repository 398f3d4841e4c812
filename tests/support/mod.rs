//! Shared harness of the operator's in-process tests: kube-sandbox (a real HTTP Kubernetes API),
//! ecs-emulator (a real HTTP ECS endpoint with a call log) and the operator itself, started with
//! the same code path as `ecs-power-operator run`, on loopback ports chosen by the OS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod logs;
pub mod process;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ecs_emulator::{AccessKey, CallRecord, Config, Emulator, Instance, Status};
use ecs_power_operator::api::{CONDITION_READY, EcsInstancePower, EcsInstancePowerStatus};
use ecs_power_operator::cli::Cli;
use ecs_power_operator::ecs::{Credentials, OperatorCredentials};
use ecs_power_operator::run::{self, Running};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

/// The namespace the tests use.
pub const NS: &str = "default";
/// The region of the emulated instances.
pub const REGION: &str = "cn-hangzhou";
/// The access key the emulator accepts; used as the operator's own credentials.
pub const AK: &str = "LTAI-operator-key";
/// Its secret: a value the log test looks for.
pub const AK_SECRET: &str = "operator-secret-9f8e7d6c5b4a";
/// A second key, for resources that reference a Secret.
pub const TEAM_AK: &str = "LTAI-team-key";
/// Its secret: a value the log test looks for.
pub const TEAM_SECRET: &str = "team-secret-0a1b2c3d4e5f";

/// How the harness starts the operator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Emulated instances (all in [`REGION`]).
    pub instances: Vec<Instance>,
    /// How long Starting / Stopping last in the emulator.
    pub transition_delay: Duration,
    /// `--resync-interval`.
    pub resync: &'static str,
    /// `--time-scale`.
    pub time_scale: &'static str,
    /// Give the operator credentials of its own.
    pub operator_credentials: bool,
    /// Point the operator at this endpoint instead of the emulator (a dead one, say).
    pub ecs_endpoint: Option<String>,
    /// The rules of the `EcsPowerAccessPolicy` installed before the operator starts (`None`: no
    /// policy, deny by default). By default one rule grants everything (the behaviour before the
    /// policy existed), so tests about other things are unaffected by it.
    pub access_rules: Option<serde_json::Value>,
    /// Extra flags for `ecs-power-operator run`.
    pub extra_flags: Vec<&'static str>,
}

/// The one rule that grants every namespace every instance.
pub fn grant_everything() -> serde_json::Value {
    serde_json::json!([{"name": "everything", "allNamespaces": true, "anyInstance": true}])
}

impl Default for Options {
    fn default() -> Self {
        Options {
            instances: Vec::new(),
            transition_delay: Duration::from_millis(300),
            resync: "5m",
            time_scale: "0.05",
            operator_credentials: true,
            ecs_endpoint: None,
            access_rules: Some(grant_everything()),
            extra_flags: Vec::new(),
        }
    }
}

/// A stopped instance in [`REGION`].
pub fn stopped(id: &str) -> Instance {
    Instance::new(id, REGION, Status::Stopped)
}

/// A running instance in [`REGION`].
pub fn running(id: &str) -> Instance {
    Instance::new(id, REGION, Status::Running)
}

/// kube-sandbox + ecs-emulator + the operator.
pub struct Harness {
    pub sandbox: Sandbox,
    pub emulator: Emulator,
    pub client: Client,
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl Harness {
    /// Starts everything with these instances and default options.
    pub async fn start(instances: Vec<Instance>) -> Harness {
        Harness::start_with(Options {
            instances,
            ..Options::default()
        })
        .await
    }

    /// Starts everything.
    pub async fn start_with(options: Options) -> Harness {
        logs::capture();
        let emulator = Emulator::start(
            "127.0.0.1:0".parse().unwrap(),
            Config {
                access_keys: vec![
                    AccessKey::new(AK, AK_SECRET),
                    AccessKey::new(TEAM_AK, TEAM_SECRET),
                ],
                transition_delay: options.transition_delay,
                instances: options.instances.clone(),
                ..Config::default()
            },
        )
        .await
        .unwrap();
        let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = ecs_power_operator::sandbox::client(&sandbox).await.unwrap();
        install_crd(&client).await;
        if let Some(rules) = &options.access_rules {
            ecs_power_operator::sandbox::install_access_policy(&client, rules.clone())
                .await
                .unwrap();
        }

        let endpoint = options
            .ecs_endpoint
            .clone()
            .unwrap_or_else(|| emulator.url());
        let mut args = vec![
            "ecs-power-operator",
            "--ecs-endpoint",
            &endpoint,
            "--metrics-addr",
            "127.0.0.1:0",
            "--resync-interval",
            options.resync,
            "--time-scale",
            options.time_scale,
        ];
        args.extend(options.extra_flags.iter().copied());
        let cli = Cli::try_parse_from(args).unwrap();
        let credentials = options
            .operator_credentials
            .then(|| OperatorCredentials::Env(Credentials::new(AK, AK_SECRET, None)));
        let shutdown = CancellationToken::new();
        let running = run::start(client.clone(), &cli.run, credentials, shutdown.clone())
            .await
            .unwrap();
        let metrics_addr = running.metrics_addr;
        Harness {
            sandbox,
            emulator,
            client,
            metrics_addr,
            shutdown,
            running: Some(running),
        }
    }

    /// The resources' API in [`NS`].
    pub fn api(&self) -> Api<EcsInstancePower> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Creates a resource from its spec (JSON, camelCase as users write it).
    pub async fn create(&self, name: &str, spec: serde_json::Value) -> EcsInstancePower {
        let obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1",
            "kind": "EcsInstancePower",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }))
        .unwrap();
        self.api()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap()
    }

    /// Creates `name` strictly younger than `older` (creation times have second precision, and
    /// on a tie the claim goes by namespace/name): waits, bounded, for the next second first.
    pub async fn create_younger(
        &self,
        name: &str,
        spec: serde_json::Value,
        older: &EcsInstancePower,
    ) -> EcsInstancePower {
        let created = older
            .metadata
            .creation_timestamp
            .as_ref()
            .expect("the API server sets creationTimestamp")
            .0;
        let later = eventually(Duration::from_secs(3), || async {
            (jiff::Timestamp::now().as_second() > created.as_second()).then_some(())
        })
        .await;
        assert!(later.is_some(), "the clock did not pass {created}");
        self.create(name, spec).await
    }

    /// Merge-patches a resource's spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        let patch = serde_json::json!({ "spec": spec });
        self.api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Creates the Secret `name` with the team key (or the given data).
    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "stringData": data.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), NS)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Polls the resource (every 25 ms, at most `limit`) until `check` accepts its status.
    pub async fn wait_status(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        check: impl Fn(&EcsInstancePowerStatus) -> bool,
    ) -> EcsInstancePower {
        let api = self.api();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let obj = api.get(name).await.unwrap();
            if obj.status.as_ref().is_some_and(&check) {
                return obj;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {name}: {what}; last status: {}",
                serde_json::to_string_pretty(&obj.status).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the Ready condition has this status and reason.
    pub async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> EcsInstancePower {
        self.wait_status(
            name,
            Duration::from_secs(30),
            &format!("Ready={status} reason {reason}"),
            |s| condition(s, CONDITION_READY) == Some((status.to_string(), reason.to_string())),
        )
        .await
    }

    /// The emulator's call log for this instance and action.
    pub fn calls(&self, instance: &str, action: &str) -> Vec<CallRecord> {
        self.emulator
            .call_log()
            .into_iter()
            .filter(|c| c.action == action && c.instance_ids.iter().any(|i| i == instance))
            .collect()
    }

    /// Starts of this instance, single (`StartInstance`) or batched (`StartInstances`): one entry
    /// per write call that named it.
    pub fn starts(&self, instance: &str) -> Vec<CallRecord> {
        let mut calls = self.calls(instance, "StartInstance");
        calls.extend(self.calls(instance, "StartInstances"));
        calls.sort_by_key(|c| c.seq);
        calls
    }

    /// Stops of this instance, single (`StopInstance`) or batched (`StopInstances`).
    pub fn stops(&self, instance: &str) -> Vec<CallRecord> {
        let mut calls = self.calls(instance, "StopInstance");
        calls.extend(self.calls(instance, "StopInstances"));
        calls.sort_by_key(|c| c.seq);
        calls
    }

    /// Write calls (start/stop/reboot) for this instance.
    pub fn writes(&self, instance: &str) -> Vec<CallRecord> {
        self.all_calls(instance)
            .into_iter()
            .filter(CallRecord::is_write)
            .collect()
    }

    /// Every call naming this instance.
    pub fn all_calls(&self, instance: &str) -> Vec<CallRecord> {
        self.emulator
            .call_log()
            .into_iter()
            .filter(|c| c.instance_ids.iter().any(|i| i == instance))
            .collect()
    }

    /// Events about the resource `name` (core/v1 view), oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), NS);
        let mut events: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events
    }

    /// Waits until an event with this reason exists for `name`.
    pub async fn wait_event(&self, name: &str, reason: &str) -> Event {
        let found = eventually(Duration::from_secs(15), || async {
            self.events(name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await;
        found.unwrap_or_else(|| panic!("no event with reason {reason} for {name}"))
    }

    /// GET on the operator's HTTP endpoint: (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.metrics_addr))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The value of one sample in `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    /// Stops the operator (graceful), the sandbox and the emulator.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(20), running.wait())
                .await
                .expect("operator stops within 20 s");
        }
        self.sandbox.shutdown().await;
        self.emulator.shutdown().await;
    }
}

/// (status, reason) of a condition.
pub fn condition(status: &EcsInstancePowerStatus, type_: &str) -> Option<(String, String)> {
    status
        .condition(type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Installs the operator's CRD and waits until it is established.
pub async fn install_crd(client: &Client) {
    ecs_power_operator::sandbox::install_crd(client)
        .await
        .unwrap();
}

/// Polls `check` every 25 ms until it yields `Some`, or returns `None` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
