//! The `ecs-power-operator` binary as a process: `crd` prints the committed CRD, bad flags fail with
//! a clear message, `run` logs JSON when asked, serves its probes, and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube_sandbox::Sandbox;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-operator");

#[test]
fn crd_prints_the_committed_file() {
    let out = Command::new(BIN).arg("crd").output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string("crds/ecsinstancepowers.ecspower.dev.yaml").unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    for (args, expected) in [
        (vec!["run", "--resync-interval", "5x"], "unknown unit"),
        (
            vec!["run", "--ecs-endpoint-style", "private"],
            "possible values: public, vpc",
        ),
        (
            vec!["run", "--max-concurrent-reconciles", "0"],
            "--max-concurrent-reconciles",
        ),
        (vec!["run", "--metrics-addr", "localhost"], "--metrics-addr"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{stderr}"
        );
    }
    // An invalid endpoint is refused before anything starts (no cluster needed to see it).
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "--ecs-endpoint",
            "ftp://example.com",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_json_serves_probes_and_stops_on_sigterm() {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--log-format",
            "json",
            "--metrics-addr",
            "127.0.0.1:0",
            "--ecs-endpoint",
            "http://127.0.0.1:9",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK-binary-test")
        .env(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "binary-test-secret-value",
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The start-up line carries the metrics address.
    let mut lines = Vec::new();
    let metrics = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the operator logs its start");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        lines.push(line);
        if let Some(addr) = value["metrics"].as_str() {
            break addr.to_string();
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    // Without the CRD the operator is alive but not ready, and says why.
    let warned = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a warning about the missing CRD");
        lines.push(line.clone());
        if line.contains("is the CRD installed") {
            break line;
        }
    };
    assert!(warned.contains("\"level\":\"WARN\""), "{warned}");
    let ready = http
        .get(format!("http://{metrics}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    install_crd(&kubeconfig).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("http://{metrics}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if ready.as_ref().is_ok_and(|s| *s == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered 200: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = http
        .get(format!("http://{metrics}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        lines.push(line);
    }
    let all = lines.join("\n");
    assert!(all.contains("shutdown signal received"), "{all}");
    assert!(
        !all.contains("binary-test-secret-value"),
        "a secret reached the logs"
    );
    sandbox.shutdown().await;
}

async fn install_crd(kubeconfig: &std::path::Path) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client);
    api.create(
        &Default::default(),
        &ecs_power_operator::api::EcsInstancePower::crd(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_works_even_before_the_first_list() {
    // No CRD: the watch never lists. The operator must still exit promptly on SIGTERM.
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--ecs-endpoint",
            "http://127.0.0.1:9",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("ecs-power-operator starting")),
        "the operator did not start"
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit within 25 s of SIGTERM (the kubelet waits 30 s)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    sandbox.shutdown().await;
}
