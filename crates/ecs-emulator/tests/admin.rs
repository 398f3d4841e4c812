//! The admin API under `/_emulator/`, the library control surface, reset, and the binary's
//! command line (`--listen`, `--state`, first stdout line).

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ecs_emulator::{Config, Fault, Instance, Status};
use fixture::{AK, REGION, SECRET, config, described_status, start};
use serde_json::{Value, json};

async fn admin(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = client::http().request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn instances_can_be_added_changed_and_removed() {
    let (emu, client) = start(config(&[])).await;
    let base = format!("{}/_emulator", emu.url());
    let (s, body) = admin(
        reqwest::Method::POST,
        format!("{base}/instances"),
        Some(json!([{"id": "i-a", "region": REGION, "status": "Stopped"}, {"id": "i-b", "region": REGION, "status": "Running", "locks": ["security"]}])),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(described_status(&client, "i-a").await, "Stopped");

    let (s, body) = admin(
        reqwest::Method::PATCH,
        format!("{base}/instances/i-a"),
        Some(json!({"status": "Running", "locks": ["financial"]})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["locks"][0].as_str()),
        (Some("Running"), Some("financial"))
    );
    let (s, body) = admin(
        reqwest::Method::PATCH,
        format!("{base}/instances/i-a"),
        Some(json!({"locks": null})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.get("locks").is_none(), "{body}");

    let (s, _) = admin(
        reqwest::Method::PUT,
        format!("{base}/instances/i-c"),
        Some(json!({"region": "cn-beijing", "status": "Stopped"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(emu.instance("i-c").unwrap().region, "cn-beijing");
    let (s, _) = admin(
        reqwest::Method::PUT,
        format!("{base}/instances/i-c"),
        Some(json!({"id": "i-d", "region": "r"})),
    )
    .await;
    assert_eq!(s, 400);

    let (s, body) = admin(reqwest::Method::GET, format!("{base}/instances/i-b"), None).await;
    assert_eq!((s, body["locks"][0].as_str()), (200, Some("security")));
    let (s, body) = admin(reqwest::Method::GET, format!("{base}/instances"), None).await;
    assert_eq!((s, body.as_array().unwrap().len()), (200, 3));
    let (s, _) = admin(
        reqwest::Method::DELETE,
        format!("{base}/instances/i-b"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = admin(reqwest::Method::GET, format!("{base}/instances/i-b"), None).await;
    assert_eq!(s, 404);
    let (s, body) = admin(
        reqwest::Method::POST,
        format!("{base}/instances"),
        Some(json!({"id": "i-x", "region": REGION, "status": "Asleep"})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = admin(
        reqwest::Method::POST,
        format!("{base}/instances"),
        Some(json!({"id": "", "region": REGION})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = admin(
        reqwest::Method::PATCH,
        format!("{base}/instances/i-nope"),
        Some(json!({"status": "Running"})),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn faults_calls_settings_keys_and_reset() {
    let (emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    let base = format!("{}/_emulator", emu.url());
    let (s, body) = admin(
        reqwest::Method::POST,
        format!("{base}/faults"),
        Some(json!({"instance": "i-a", "action": "StartInstance", "code": "OperationDenied.NoStock", "times": 1})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let id = body["ids"][0].as_u64().unwrap();
    let (_, list) = admin(reqwest::Method::GET, format!("{base}/faults"), None).await;
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["code"], "OperationDenied.NoStock");
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .code(),
        "OperationDenied.NoStock"
    );
    let (_, list) = admin(reqwest::Method::GET, format!("{base}/faults"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 0, "spent fault removed");
    let (s, _) = admin(
        reqwest::Method::POST,
        format!("{base}/faults"),
        Some(json!({"kind": "explode"})),
    )
    .await;
    assert_eq!(s, 400);
    let (_, body) = admin(
        reqwest::Method::POST,
        format!("{base}/faults"),
        Some(json!([{"code": "InternalError"}, {"kind": "html502"}])),
    )
    .await;
    let second = body["ids"][1].as_u64().unwrap();
    let (s, _) = admin(
        reqwest::Method::DELETE,
        format!("{base}/faults/{second}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = admin(
        reqwest::Method::DELETE,
        format!("{base}/faults/{second}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = admin(reqwest::Method::DELETE, format!("{base}/faults"), None).await;
    assert_eq!(s, 204);
    assert!(emu.faults().is_empty());

    client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    client
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    let (_, calls) = admin(
        reqwest::Method::GET,
        format!("{base}/calls?action=StartInstance&instance=i-a"),
        None,
    )
    .await;
    let calls = calls.as_array().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["httpStatus"], 200);
    let last_seq = calls[1]["seq"].as_u64().unwrap();
    let (_, after) = admin(
        reqwest::Method::GET,
        format!("{base}/calls?since={last_seq}"),
        None,
    )
    .await;
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["action"], "DescribeInstances");
    let text = serde_json::to_string(&calls).unwrap();
    assert!(!text.contains(SECRET) && !text.contains("Signature\""));

    let (s, settings) = admin(reqwest::Method::PATCH, format!("{base}/settings"), Some(json!({"transitionDelay": "5s", "qps": {"StopInstance": 0}, "defaultStoppedMode": "StopCharging"}))).await;
    assert_eq!(s, 200, "{settings}");
    assert_eq!(
        (
            settings["transitionDelay"].as_str(),
            settings["qps"]["StopInstance"].as_u64()
        ),
        (Some("5s"), Some(0))
    );
    assert_eq!(
        client
            .call("StopInstance", &[("InstanceId", "i-a")])
            .await
            .code(),
        "Throttling.User"
    );
    let (s, _) = admin(
        reqwest::Method::PATCH,
        format!("{base}/settings"),
        Some(json!({"qps": {"Nope": 1}})),
    )
    .await;
    assert_eq!(s, 400);
    let (_, settings) = admin(reqwest::Method::GET, format!("{base}/settings"), None).await;
    assert_eq!(settings["instanceCount"], 1);

    let (s, _) = admin(
        reqwest::Method::POST,
        format!("{base}/access-keys"),
        Some(json!({"id": "AK9", "secret": "S9"})),
    )
    .await;
    assert_eq!(s, 204);
    let extra = client::Client::new(&emu.url(), "AK9", "S9");
    assert_eq!(
        extra
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200
    );

    let (s, _) = admin(reqwest::Method::POST, format!("{base}/reset"), None).await;
    assert_eq!(s, 204);
    assert!(emu.call_log().is_empty());
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
    assert_eq!(
        extra
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .code(),
        "InvalidAccessKeyId.NotFound"
    );
    assert_eq!(
        client
            .call("StopInstance", &[("InstanceId", "i-a")])
            .await
            .code(),
        "IncorrectInstanceStatus",
        "qps reset"
    );
    let (_, health) = admin(reqwest::Method::GET, format!("{base}/healthz"), None).await;
    assert_eq!(health, "ok");
}

#[tokio::test]
async fn library_control_surface() {
    let (emu, client) = start(config(&[])).await;
    emu.upsert_instance(Instance::new("i-a", REGION, Status::Running))
        .unwrap();
    assert!(
        emu.upsert_instance(Instance::new("", REGION, Status::Running))
            .is_err()
    );
    assert!(emu.set_status("i-a", Status::Stopped));
    assert!(!emu.set_status("i-zz", Status::Stopped));
    assert_eq!(described_status(&client, "i-a").await, "Stopped");
    emu.set_transition_delay(Duration::from_secs(60));
    client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Starting);
    let id = emu.add_fault(Fault::error("InternalError")).unwrap();
    assert!(emu.remove_fault(id));
    assert!(emu.remove_instance("i-a"));
    assert!(emu.instances().is_empty());
    assert!(emu.url().starts_with("http://127.0.0.1:"));
    emu.reset();
    emu.shutdown().await;
    assert!(
        client::http()
            .get(format!("{}/_emulator/healthz", emu.url()))
            .send()
            .await
            .is_err(),
        "no longer listening"
    );
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecs-emulator"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (Running(child), line)
}

#[tokio::test]
async fn binary_serves_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.yaml");
    std::fs::write(
        &path,
        format!("accessKeys: [{{id: {AK}, secret: {SECRET}}}]\ntransitionDelay: 0s\ninstances:\n  - {{id: i-file, region: {REGION}, status: Stopped}}\n"),
    )
    .unwrap();
    let (_child, line) = spawn(&["--listen", "127.0.0.1:0", "--state", path.to_str().unwrap()]);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"));
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let client = client::Client::new(url, AK, SECRET);
    assert_eq!(described_status(&client, "i-file").await, "Stopped");
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-file")])
            .await
            .status,
        200
    );
    assert_eq!(described_status(&client, "i-file").await, "Running");
}

#[tokio::test]
async fn binary_without_state_uses_the_documented_default() {
    let (mut child, line) = spawn(&["--listen", "127.0.0.1:0"]);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let defaults = Config::sandbox_default();
    let key = &defaults.access_keys[0];
    let client = client::Client::new(&url, &key.id, &key.secret);
    assert_eq!(described_status(&client, "i-emu0001").await, "Running");
    assert_eq!(described_status(&client, "i-emu0002").await, "Stopped");
    child.0.kill().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("no --state given"), "{stderr}");
    assert!(!stderr.contains(&key.secret), "the secret is not printed");
}

#[test]
fn binary_rejects_a_bad_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "instances: [{id: i-a, region: r, status: Sideways}]").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-emulator"))
        .args(["--listen", "127.0.0.1:0", "--state", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("state file is not valid"), "{stderr}");
}
