//! The `ecs-power-operator` binary as a process: `crd` prints the committed CRD, bad flags fail with
//! a clear message, `run` logs JSON when asked, serves its probes, and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use kube_sandbox::Sandbox;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-power-operator");

#[test]
fn crd_prints_the_committed_files() {
    let files = [
        "ecsinstancepowers.ecspower.dev",
        "ecspowerschedules.ecspower.dev",
        "ecspoweraccesspolicies.ecspower.dev",
    ];
    let committed: Vec<String> = files
        .iter()
        .map(|name| std::fs::read_to_string(format!("crds/{name}.yaml")).unwrap())
        .collect();
    // `crd`: all of them, as one YAML stream (for `kubectl apply -f -`).
    let out = Command::new(BIN).arg("crd").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed.join("---\n")
    );
    // `crd --name NAME`: exactly its committed file.
    for (name, file) in files.iter().zip(&committed) {
        let out = Command::new(BIN)
            .args(["crd", "--name", name])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(&String::from_utf8(out.stdout).unwrap(), file, "{name}");
    }
    let out = Command::new(BIN)
        .args(["crd", "--name", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn schedule_preview_prints_the_dst_instants_and_exits_2_on_an_invalid_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.yaml");
    std::fs::write(
        &file,
        "apiVersion: ecspower.dev/v1alpha1\nkind: EcsPowerSchedule\nmetadata: {name: dst}\n\
         spec:\n  timeZone: Europe/Berlin\n  runningWindows:\n\
         \x20 - {days: [Sun], start: \"02:30\", end: \"05:00\"}\n",
    )
    .unwrap();
    let preview = |from: &str, until: &str, json: bool| {
        let mut args = vec![
            "schedule",
            "preview",
            "--file",
            file.to_str().unwrap(),
            "--from",
            from,
            "--until",
            until,
        ];
        if json {
            args.extend(["--output", "json"]);
        }
        Command::new(BIN).args(&args).output().unwrap()
    };
    let out = preview("2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"time\":\"2026-03-29T01:00:00Z\",\"state\":\"Running\",\"source\":\"Window\"}\n\
         {\"time\":\"2026-03-29T03:00:00Z\",\"state\":\"Stopped\",\"source\":\"Default\"}\n"
    );
    // The fall-back Sunday: 02:30 is its first occurrence, 00:30Z; `until` is exclusive.
    let out = preview("2026-10-25T00:00:00Z", "2026-10-25T04:00:00Z", true);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"time\":\"2026-10-25T00:30:00Z\",\"state\":\"Running\",\"source\":\"Window\"}\n"
    );
    // The table shows the local time too.
    let out = preview("2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", false);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("2026-03-29 03:00 +02:00"), "{table}");
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    // An invalid time zone: exit 2 with the reason the controller reports.
    std::fs::write(
        &file,
        "apiVersion: ecspower.dev/v1alpha1\nkind: EcsPowerSchedule\nmetadata: {name: bad}\n\
         spec:\n  timeZone: Mars/Olympus\n  runningWindows: []\n",
    )
    .unwrap();
    let out = preview("2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", false);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidTimeZone"));
    // Overlapping exceptions with different states: exit 2, OverlappingExceptions, no output.
    std::fs::write(
        &file,
        "apiVersion: ecspower.dev/v1alpha1\nkind: EcsPowerSchedule\nmetadata: {name: bad}\n\
         spec:\n  timeZone: Europe/Berlin\n  runningWindows: []\n  exceptions:\n\
         \x20 - {name: a, state: Running, start: \"2026-03-29T01:00\", end: \"2026-03-29T05:00\"}\n\
         \x20 - {name: b, state: Stopped, start: \"2026-03-29T04:00\", end: \"2026-03-29T06:00\"}\n",
    )
    .unwrap();
    let out = preview("2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z", true);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OverlappingExceptions"));
    assert!(out.stdout.is_empty());
}

#[test]
fn schedule_preview_prints_the_new_york_spring_forward_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedule.yaml");
    // 02:30 does not exist in New York on 2026-03-08: the first instant after the gap, 03:00 EDT.
    std::fs::write(
        &file,
        "apiVersion: ecspower.dev/v1alpha1\nkind: EcsPowerSchedule\nmetadata: {name: ny}\n\
         spec:\n  timeZone: America/New_York\n  runningWindows:\n\
         \x20 - {days: [Sun], start: \"02:30\", end: \"05:00\"}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "schedule",
            "preview",
            "--file",
            file.to_str().unwrap(),
            "--from",
            "2026-03-08T00:00:00Z",
            "--until",
            "2026-03-09T00:00:00Z",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"time\":\"2026-03-08T07:00:00Z\",\"state\":\"Running\",\"source\":\"Window\"}\n\
         {\"time\":\"2026-03-08T09:00:00Z\",\"state\":\"Stopped\",\"source\":\"Default\"}\n"
    );
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
    let (sandbox, _dir, kubeconfig) = empty_cluster().await;
    let mut child = spawn_run(
        &kubeconfig,
        &["--log-format", "json"],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK-binary-test"),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "binary-test-secret-value",
            ),
        ],
    );
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
    ecs_power_operator::sandbox::install_crd(&client(&kubeconfig).await)
        .await
        .unwrap();
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

    let status = terminate(&mut child, Duration::from_secs(15));
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

/// kube-sandbox without the operator's CRD, and a kubeconfig for it.
async fn empty_cluster() -> (Sandbox, tempfile::TempDir, PathBuf) {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).unwrap();
    (sandbox, dir, kubeconfig)
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// `ecs-power-operator run` against `kubeconfig`, a dead ECS endpoint, an OS-chosen metrics port,
/// `RUST_LOG=info`; stderr piped.
fn spawn_run(kubeconfig: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(BIN)
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--ecs-endpoint",
            "http://127.0.0.1:9",
        ])
        .args(extra_args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Sends SIGTERM and waits at most `limit` for the exit.
fn terminate(child: &mut Child, limit: Duration) -> ExitStatus {
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit within {limit:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_works_even_before_the_first_list() {
    // No CRD: the watch never lists. The operator must still exit promptly on SIGTERM.
    let (sandbox, _dir, kubeconfig) = empty_cluster().await;
    let mut child = spawn_run(&kubeconfig, &[], &[]);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("ecs-power-operator starting")),
        "the operator did not start"
    );
    // Within the kubelet's 30 s grace period.
    let status = terminate(&mut child, Duration::from_secs(25));
    assert!(status.success(), "{status:?}");
    sandbox.shutdown().await;
}
