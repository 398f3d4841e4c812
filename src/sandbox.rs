//! `ecs-power-operator sandbox`: the whole product on one machine, with no cluster and no cloud
//! account. One process runs kube-sandbox (an in-memory Kubernetes API server),
//! ecs-emulator (a local ECS endpoint seeded with a few instances) and the operator, installs the
//! CRDs and an `EcsPowerAccessPolicy` granting the demo namespace ([`DEMO_NAMESPACE`]) the
//! operator's own credentials, writes a kubeconfig and prints what to type next.
//!
//! Everything is in memory and gone on Ctrl-C. The operator runs exactly as `run` does, only with
//! the emulator's endpoint and key.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser};
use ecs_emulator::{AccessKey, Emulator, Instance, Status};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, CustomResourceExt};
use kube_sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

use crate::api::EcsInstancePower;
use crate::cli::Cli;
use crate::ecs::{Credentials, OperatorCredentials};
use crate::run;

/// The region of the seeded instances.
pub const REGION: &str = "cn-hangzhou";
/// The operator's own key in the sandbox.
pub const OPERATOR_KEY: (&str, &str) = ("sandbox-operator-key", "sandbox-operator-secret");
/// The key of `examples/secret-ref.yaml`'s Secret.
pub const TEAM_KEY: (&str, &str) = ("sandbox-team-a-key", "sandbox-team-a-secret");

/// The seeded instances: (id, initial status, locks, what the matching example shows).
pub const INSTANCES: [(&str, Status, &[&str], &str); 7] = [
    (
        "i-demo0001",
        Status::Stopped,
        &[],
        "examples/start.yaml starts it",
    ),
    (
        "i-demo0002",
        Status::Running,
        &[],
        "examples/stop.yaml stops it",
    ),
    (
        "i-demo0003",
        Status::Stopped,
        &[],
        "examples/dry-run.yaml asks ECS without starting it",
    ),
    (
        "i-demo0004",
        Status::Stopped,
        &[crate::vocabulary::lock::SECURITY],
        "examples/locked.yaml: security lock, Stalled",
    ),
    (
        "i-demo0005",
        Status::Stopped,
        &[],
        "examples/secret-ref.yaml starts it with a Secret's key",
    ),
    (
        "i-demo0006",
        Status::Stopped,
        &[],
        "examples/scheduled.yaml runs it in office hours (examples/schedule-office-hours.yaml)",
    ),
    (
        "i-demo0007",
        Status::Stopped,
        &[],
        "examples/not-granted.yaml: namespace team-b has no grant, NotGranted",
    ),
];

/// The namespace the sandbox's access policy grants (every example but not-granted.yaml uses it).
pub const DEMO_NAMESPACE: &str = "default";

/// The rules of the sandbox's `EcsPowerAccessPolicy`: the demo namespace may start and stop every
/// instance with the operator's own credentials; no other namespace may.
pub fn demo_rules() -> serde_json::Value {
    serde_json::json!([{
        "name": "sandbox-demo",
        "namespaces": {"names": [DEMO_NAMESPACE]},
        "anyInstance": true,
    }])
}

/// Flags of `sandbox`.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Where to write the kubeconfig for kubectl. Default: `ecs-power-operator-sandbox/kubeconfig`
    /// in the system's temporary directory.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Address of the Kubernetes API server (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub kube_listen: SocketAddr,

    /// Address of the ECS endpoint (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ecs_listen: SocketAddr,

    /// How long the emulated instances stay Starting / Stopping.
    #[arg(long, default_value = "3s", value_parser = crate::cli::parse_duration)]
    pub transition_delay: Duration,
}

/// A running sandbox.
pub struct Running {
    /// The Kubernetes API server.
    pub sandbox: Sandbox,
    /// The ECS endpoint.
    pub emulator: Emulator,
    /// Where the kubeconfig was written.
    pub kubeconfig: PathBuf,
    /// The operator's `/metrics` address.
    pub metrics_addr: SocketAddr,
    operator: run::Running,
    shutdown: CancellationToken,
}

impl Running {
    /// Stops the operator, then the servers.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.operator.wait().await;
        self.sandbox.shutdown().await;
        self.emulator.shutdown().await;
    }
}

/// Starts the sandbox: servers, CRD, kubeconfig, operator.
///
/// # Errors
/// An address that cannot be bound, a kubeconfig that cannot be written, or a CRD that does not
/// become established.
pub async fn start(args: &SandboxArgs) -> anyhow::Result<Running> {
    let instances = INSTANCES
        .iter()
        .map(|(id, status, locks, _)| {
            locks
                .iter()
                .fold(Instance::new(*id, REGION, *status), |instance, lock| {
                    instance.with_lock(*lock)
                })
        })
        .collect();
    let emulator = Emulator::start(
        args.ecs_listen,
        ecs_emulator::Config {
            access_keys: vec![
                AccessKey::new(OPERATOR_KEY.0, OPERATOR_KEY.1),
                AccessKey::new(TEAM_KEY.0, TEAM_KEY.1),
            ],
            transition_delay: args.transition_delay,
            instances,
            ..ecs_emulator::Config::default()
        },
    )
    .await
    .context("cannot start the ECS emulator")?;
    let sandbox = Sandbox::start(args.kube_listen)
        .await
        .context("cannot start the Kubernetes API server")?;
    let kubeconfig = match &args.kubeconfig {
        Some(path) => path.clone(),
        None => std::env::temp_dir()
            .join("ecs-power-operator-sandbox")
            .join("kubeconfig"),
    };
    if let Some(dir) = kubeconfig.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    sandbox
        .write_kubeconfig(&kubeconfig)
        .context("cannot write the kubeconfig")?;

    let client = client(&sandbox).await?;
    install_crd(&client).await?;
    install_access_policy(&client, demo_rules()).await?;

    let cli = Cli::try_parse_from([
        "ecs-power-operator",
        "--ecs-endpoint",
        &emulator.url(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--resync-interval",
        "1m",
    ])?;
    let credentials =
        OperatorCredentials::Env(Credentials::new(OPERATOR_KEY.0, OPERATOR_KEY.1, None));
    let shutdown = CancellationToken::new();
    let operator = run::start(client, &cli.run, Some(credentials), shutdown.clone()).await?;
    let metrics_addr = operator.metrics_addr;
    Ok(Running {
        sandbox,
        emulator,
        kubeconfig,
        metrics_addr,
        operator,
        shutdown,
    })
}

/// A Kubernetes client for `sandbox`, from the kubeconfig it serves.
///
/// # Errors
/// When the kubeconfig cannot be turned into a client (it always can, short of a bug).
pub async fn client(sandbox: &Sandbox) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(&sandbox.kubeconfig_yaml())?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Creates (or replaces the spec of) the `EcsPowerAccessPolicy` named `default` with these rules.
///
/// # Errors
/// When the API server refuses the policy.
pub async fn install_access_policy(
    client: &Client,
    rules: serde_json::Value,
) -> anyhow::Result<()> {
    let api: Api<crate::api::EcsPowerAccessPolicy> = Api::all(client.clone());
    let policy = serde_json::json!({
        "apiVersion": "ecspower.dev/v1alpha1",
        "kind": "EcsPowerAccessPolicy",
        "metadata": {"name": crate::api::ACCESS_POLICY_NAME},
        "spec": {"rules": rules},
    });
    api.patch(
        crate::api::ACCESS_POLICY_NAME,
        &kube::api::PatchParams::apply("ecs-power-operator-sandbox").force(),
        &kube::api::Patch::Apply(&policy),
    )
    .await
    .context("cannot install the EcsPowerAccessPolicy")?;
    Ok(())
}

/// Installs the operator's CRDs and waits until they are established.
///
/// # Errors
/// When the API server refuses a CRD or does not establish it within 10 s.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        EcsInstancePower::crd(),
        crate::api::EcsPowerSchedule::crd(),
        crate::api::EcsPowerAccessPolicy::crd(),
    ] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("cannot install the CRD {name}"))?;
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(10), established)
            .await
            .with_context(|| format!("the CRD {name} did not become established within 10 s"))??;
    }
    Ok(())
}

/// What the sandbox prints once it is up.
pub fn banner(running: &Running) -> String {
    let mut out = String::new();
    // Writing into a `String` cannot fail.
    let _ = write_banner(&mut out, running);
    out
}

fn write_banner(out: &mut String, running: &Running) -> std::fmt::Result {
    let kubeconfig = running.kubeconfig.display();
    out.push_str("ecs-power-operator sandbox is running: an in-memory Kubernetes API, a local ECS endpoint and the operator.\n");
    out.push_str("Nothing leaves this machine; everything is gone when you press Ctrl-C.\n\n");
    writeln!(
        out,
        "  Kubernetes API   {}   (kubeconfig: {kubeconfig})",
        running.sandbox.url()
    )?;
    writeln!(
        out,
        "  ECS endpoint     {}   (region {REGION})",
        running.emulator.url()
    )?;
    writeln!(
        out,
        "  operator         http://{}/metrics  /healthz  /readyz\n",
        running.metrics_addr
    )?;
    out.push_str("Emulated instances:\n");
    for (id, status, locks, what) in INSTANCES {
        let locked = if locks.is_empty() {
            String::new()
        } else {
            format!(", locked: {}", locks.join(","))
        };
        writeln!(out, "  {id}  {}{locked}  {what}", status.as_str())?;
    }
    out.push_str("\nIn another terminal, from the repository root:\n");
    writeln!(out, "  export KUBECONFIG={kubeconfig}")?;
    out.push_str("  kubectl apply -f examples/start.yaml\n");
    out.push_str("  kubectl get ecspower -w\n");
    out.push_str("  kubectl describe ecspower web-1\n");
    out.push_str("  kubectl apply -f examples/stop.yaml -f examples/dry-run.yaml -f examples/locked.yaml -f examples/secret-ref.yaml\n");
    out.push_str("  kubectl apply -f examples/not-granted.yaml   # namespace team-b has no grant: NotGranted\n");
    out.push_str("  kubectl get ecspoweraccesspolicy default -o yaml   # who may use the operator's credentials\n");
    out.push_str("  kubectl get ecspower\n");
    out.push_str(
        "  kubectl apply -f examples/schedule-office-hours.yaml -f examples/scheduled.yaml\n",
    );
    out.push_str(
        "  kubectl get ecsps; kubectl get ecspower dev-1 -o wide    # one scheduled instance\n",
    );
    out.push_str("  kubectl get events --field-selector involvedObject.kind=EcsInstancePower\n");
    writeln!(
        out,
        "  curl -s {}/_emulator/calls    # every ECS call the operator made",
        running.emulator.url()
    )
}

/// `ecs-power-operator sandbox`: start, print, wait for Ctrl-C / SIGTERM, stop.
///
/// # Errors
/// As [`start`].
pub async fn main(args: SandboxArgs) -> anyhow::Result<()> {
    let running = start(&args).await?;
    println!("{}", banner(&running));
    run::shutdown_on_signals().cancelled().await;
    running.stop().await;
    Ok(())
}
