//! Shared setup for the integration tests: an in-process emulator with one key and a client.

#![allow(dead_code, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ecs_emulator::{AccessKey, Config, Emulator, Instance, Status};

use super::client::Client;

pub const AK: &str = "AKTEST";
pub const SECRET: &str = "test-secret-value";
pub const REGION: &str = "cn-hangzhou";

pub fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A config with the test key, no delay, and these instances in `cn-hangzhou`.
pub fn config(instances: &[(&str, Status)]) -> Config {
    Config {
        access_keys: vec![AccessKey::new(AK, SECRET)],
        transition_delay: Duration::ZERO,
        instances: instances
            .iter()
            .map(|(id, s)| Instance::new(*id, REGION, *s))
            .collect(),
        ..Config::default()
    }
}

pub async fn start(config: Config) -> (Emulator, Client) {
    let emu = Emulator::start(local(), config)
        .await
        .expect("emulator starts");
    let client = Client::new(&emu.url(), AK, SECRET);
    (emu, client)
}

/// Polls `check` every 20 ms until it is true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `Status` `DescribeInstances` reports for one instance, or "absent".
pub async fn described_status(client: &Client, id: &str) -> String {
    let ids = format!("[\"{id}\"]");
    let reply = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("InstanceIds", &ids)],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["Instances"]["Instance"]
        .get(0)
        .and_then(|i| i["Status"].as_str())
        .unwrap_or("absent")
        .to_owned()
}
