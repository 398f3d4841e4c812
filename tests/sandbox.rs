//! `ecs-power-operator sandbox`: every manifest in `examples/` works in it and ends in the state
//! its comment promises; and the binary prints the banner with the kubeconfig it wrote.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ecs_power_operator::api::{CONDITION_READY, EcsInstancePower, EcsPowerSchedule};
use ecs_power_operator::sandbox::{self, SandboxArgs};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::Deserialize;

async fn client(kubeconfig: &std::path::Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Creates every document of an example file, as `kubectl apply -f` would.
async fn apply_example(client: &Client, path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        match value["kind"].as_str() {
            Some("Namespace") => {
                let ns: Namespace = serde_yaml::from_value(value).unwrap();
                Api::<Namespace>::all(client.clone())
                    .create(&PostParams::default(), &ns)
                    .await
                    .unwrap();
            }
            Some("Secret") => {
                let secret: Secret = serde_yaml::from_value(value).unwrap();
                Api::<Secret>::namespaced(client.clone(), "default")
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
            Some("EcsPowerSchedule") => {
                let obj: EcsPowerSchedule = serde_yaml::from_value(value).unwrap();
                Api::<EcsPowerSchedule>::namespaced(client.clone(), "default")
                    .create(&PostParams::default(), &obj)
                    .await
                    .unwrap();
            }
            Some("EcsInstancePower") => {
                let obj: EcsInstancePower = serde_yaml::from_value(value).unwrap();
                Api::<EcsInstancePower>::namespaced(client.clone(), &namespace)
                    .create(&PostParams::default(), &obj)
                    .await
                    .unwrap();
            }
            other => panic!("{path}: unexpected kind {other:?}"),
        }
    }
}

async fn wait_ready(client: &Client, path: &str, name: &str, status: &str, reason: &str) {
    let namespace = if path.ends_with("not-granted.yaml") {
        "team-b"
    } else {
        "default"
    };
    let api = Api::<EcsInstancePower>::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let obj = api.get(name).await.unwrap();
        let ready = obj
            .status
            .as_ref()
            .and_then(|s| s.condition(CONDITION_READY));
        if ready.is_some_and(|c| c.status == status && c.reason == reason) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: expected Ready={status} {reason}, status is {:?}",
            obj.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `name` is Ready with the reason its schedule's effective state gives, the schedule
/// evaluated now agrees, and the emulated instance is in that state.
async fn wait_scheduled(client: &Client, emulator: &ecs_emulator::Emulator, name: &str, id: &str) {
    let api = Api::<EcsInstancePower>::namespaced(client.clone(), "default");
    let schedules = Api::<EcsPowerSchedule>::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let obj = api.get(name).await.unwrap();
        let schedule = schedules.get("office-hours").await.unwrap();
        let compiled = ecs_power_operator::power_schedule::compile(&schedule.spec).unwrap();
        let now = ecs_power_operator::power_schedule::evaluate(&compiled, jiff::Timestamp::now());
        let status = obj.status.clone().unwrap_or_default();
        let effective = status
            .schedule
            .as_ref()
            .and_then(|s| s.effective_state.clone());
        let ready = status.condition(CONDITION_READY);
        let instance = emulator.instance(id).map(|i| i.status.as_str().to_string());
        if effective.as_deref() == Some(now.state.as_str())
            && ready.is_some_and(|c| c.status == "True" && c.reason == now.state.as_str())
            && instance.as_deref() == Some(now.state.as_str())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: expected {:?} by the schedule, status is {status:?}, instance {instance:?}",
            now.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_reaches_the_state_it_promises() {
    let dir = tempfile::tempdir().unwrap();
    let args = SandboxArgs {
        kubeconfig: Some(dir.path().join("kubeconfig")),
        kube_listen: "127.0.0.1:0".parse().unwrap(),
        ecs_listen: "127.0.0.1:0".parse().unwrap(),
        transition_delay: Duration::from_millis(200),
    };
    let running = sandbox::start(&args).await.unwrap();
    let banner = sandbox::banner(&running);
    assert!(banner.contains(&format!(
        "export KUBECONFIG={}",
        dir.path().join("kubeconfig").display()
    )));
    let client = client(&dir.path().join("kubeconfig")).await;
    let examples = [
        ("examples/start.yaml", "web-1", "True", "Running"),
        ("examples/stop.yaml", "db-1", "True", "Stopped"),
        (
            "examples/dry-run.yaml",
            "dry-run-1",
            "True",
            "DryRunSucceeded",
        ),
        (
            "examples/locked.yaml",
            "locked-1",
            "False",
            "InstanceLockedForSecurity",
        ),
        ("examples/secret-ref.yaml", "team-1", "True", "Running"),
        (
            "examples/not-granted.yaml",
            "build-box",
            "False",
            "NotGranted",
        ),
    ];
    let listed: Vec<String> = std::fs::read_dir("examples")
        .unwrap()
        .map(|e| format!("examples/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| {
            std::path::Path::new(p)
                .extension()
                .is_some_and(|e| e == "yaml")
        })
        .collect();
    // The schedule and its instance are checked below.
    let scheduled = [
        "examples/schedule-office-hours.yaml",
        "examples/scheduled.yaml",
    ];
    for path in &listed {
        assert!(
            examples.iter().any(|(p, ..)| p == path) || scheduled.contains(&path.as_str()),
            "{path} is not covered by this test"
        );
    }
    for (path, ..) in examples {
        apply_example(&client, path).await;
    }
    for path in scheduled {
        apply_example(&client, path).await;
    }
    for (path, name, status, reason) in examples {
        wait_ready(&client, path, name, status, reason).await;
    }
    // The scheduled instance is in the state office hours give it now, and says so.
    wait_scheduled(&client, &running.emulator, "dev-1", "i-demo0006").await;
    // The denied example made no ECS call at all.
    assert!(
        running
            .emulator
            .call_log()
            .iter()
            .all(|c| !c.instance_ids.iter().any(|i| i == "i-demo0007")),
        "an ECS call named the instance of examples/not-granted.yaml"
    );
    // The Secret example's calls are signed with the Secret's key, not the operator's.
    let team_calls: Vec<_> = running
        .emulator
        .call_log()
        .into_iter()
        .filter(|c| c.instance_ids.iter().any(|i| i == "i-demo0005"))
        .collect();
    assert!(!team_calls.is_empty());
    assert!(
        team_calls
            .iter()
            .all(|c| c.access_key_id.as_deref() == Some(sandbox::TEAM_KEY.0))
    );
    running.stop().await;
}

#[test]
fn the_binary_prints_the_banner_and_writes_the_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecs-power-operator"))
        .args(["sandbox", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("_emulator/calls");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(
        text.contains("kubectl apply -f examples/start.yaml"),
        "{text}"
    );
    assert!(
        text.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{text}"
    );
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(written.contains("server: http://127.0.0.1:"), "{written}");
}
