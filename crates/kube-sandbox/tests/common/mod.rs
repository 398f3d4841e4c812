//! Shared helpers of kube-sandbox's integration tests: a sandbox with a kube client, the test
//! CRD fixture, and bounded polling.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kube_sandbox::{Sandbox, SandboxConfig};

/// The test CRD (shaped like the operator's `EcsInstancePower`).
pub const CRD_YAML: &str = include_str!("../fixtures/crd.yaml");
/// Its name.
pub const CRD_NAME: &str = "ecsinstancepowers.ecspower.dev";

/// Starts a sandbox on a free loopback port and builds a kube client from its kubeconfig.
pub async fn start(config: SandboxConfig) -> anyhow::Result<(Sandbox, Client)> {
    let sb = Sandbox::start_with("127.0.0.1:0".parse()?, config).await?;
    let kc = Kubeconfig::from_yaml(&sb.kubeconfig_yaml())?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok((sb, Client::try_from(cfg)?))
}

/// Installs the test CRD and waits for `Established`.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(CRD_YAML)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd).await?;
    let established = kube::runtime::wait::await_condition(
        api,
        CRD_NAME,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established).await??;
    Ok(())
}

/// Polls `check` every 25 ms until it yields `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The API error inside a kube error, if it is one.
pub fn api_error(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s.as_ref()),
        _ => None,
    }
}
