//! `StartInstances` / `StopInstances`: `InstanceId.N`, both `BatchOptimization` modes, `DryRun`,
//! `InstanceResponses`, and per-instance faults.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use ecs_emulator::{Fault, Instance, Status};
use fixture::{REGION, config, start};

fn responses(r: &client::Reply) -> Vec<(String, String, String, String)> {
    r.body["InstanceResponses"]["InstanceResponse"]
        .as_array()
        .unwrap_or_else(|| panic!("no InstanceResponses in {}", r.text))
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (
                s("InstanceId"),
                s("Code"),
                s("PreviousStatus"),
                s("CurrentStatus"),
            )
        })
        .collect()
}

fn row(id: &str, code: &str, prev: &str, cur: &str) -> (String, String, String, String) {
    (
        id.to_owned(),
        code.to_owned(),
        prev.to_owned(),
        cur.to_owned(),
    )
}

#[tokio::test]
async fn all_together_starts_every_instance() {
    let mut cfg = config(&[("i-a", Status::Stopped), ("i-b", Status::Stopped)]);
    cfg.transition_delay = std::time::Duration::from_secs(30);
    let (emu, client) = start(cfg).await;
    let r = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-b"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        responses(&r),
        [
            row("i-a", "200", "Stopped", "Starting"),
            row("i-b", "200", "Stopped", "Starting")
        ]
    );
    assert_eq!(
        r.body["InstanceResponses"]["InstanceResponse"][0]["Message"],
        "success"
    );
    assert_eq!(emu.instance("i-b").unwrap().status, Status::Starting);
}

#[tokio::test]
async fn all_together_is_all_or_nothing() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-r", Status::Running),
    ]))
    .await;
    let r = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-r"),
                ("BatchOptimization", "AllTogether"),
            ],
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "IncorrectInstanceStatus"));
    assert_eq!(
        emu.instance("i-a").unwrap().status,
        Status::Stopped,
        "nothing changed"
    );
    let missing = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-zz"),
            ],
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "InvalidInstanceId.NotFound")
    );
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
    let other_region = client
        .call(
            "StartInstances",
            &[("RegionId", "cn-beijing"), ("InstanceId.1", "i-a")],
        )
        .await;
    assert_eq!(other_region.code(), "InvalidInstanceId.NotFound");
}

#[tokio::test]
async fn success_first_answers_per_instance() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-r", Status::Running),
    ]))
    .await;
    emu.upsert_instance(Instance::new("i-sec", REGION, Status::Stopped).with_lock("security"))
        .unwrap();
    let r = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-r"),
                ("InstanceId.3", "i-zz"),
                ("InstanceId.4", "i-sec"),
                ("BatchOptimization", "SuccessFirst"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        responses(&r),
        [
            row("i-a", "200", "Stopped", "Starting"),
            row("i-r", "IncorrectInstanceStatus", "Running", "Running"),
            row("i-zz", "InvalidInstanceId.NotFound", "", ""),
            row("i-sec", "InstanceLockedForSecurity", "Stopped", "Stopped"),
        ]
    );
    assert_eq!(
        emu.instance("i-a").unwrap().status,
        Status::Running,
        "zero delay settles on observation"
    );
}

#[tokio::test]
async fn stop_instances_in_both_modes() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Running),
        ("i-b", Status::Running),
        ("i-s", Status::Stopped),
    ]))
    .await;
    let r = client
        .call(
            "StopInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-b"),
                ("StoppedMode", "StopCharging"),
                ("ForceStop", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        responses(&r),
        [
            row("i-a", "200", "Running", "Stopping"),
            row("i-b", "200", "Running", "Stopping")
        ]
    );
    let attr = client
        .call("DescribeInstanceAttribute", &[("InstanceId", "i-b")])
        .await;
    assert_eq!(
        (
            attr.body["Status"].as_str(),
            attr.body["StoppedMode"].as_str()
        ),
        (Some("Stopped"), Some("StopCharging"))
    );
    let all = client
        .call(
            "StopInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-s"),
                ("BatchOptimization", "AllTogether"),
            ],
        )
        .await;
    assert_eq!(all.code(), "IncorrectInstanceStatus");
    emu.set_status("i-a", Status::Running);
    let sf = client
        .call(
            "StopInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-s"),
                ("InstanceId.2", "i-a"),
                ("BatchOptimization", "SuccessFirst"),
            ],
        )
        .await;
    assert_eq!(
        responses(&sf),
        [
            row("i-s", "IncorrectInstanceStatus", "Stopped", "Stopped"),
            row("i-a", "200", "Running", "Stopping")
        ]
    );
}

#[tokio::test]
async fn batch_dry_runs() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-r", Status::Running),
    ]))
    .await;
    let ok = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("DryRun", "true"),
            ],
        )
        .await;
    assert_eq!((ok.status, ok.code()), (400, "DRYRUN.SUCCESS"));
    let failing = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-r"),
                ("DryRun", "true"),
            ],
        )
        .await;
    assert_eq!(
        failing.code(),
        "IncorrectInstanceStatus",
        "AllTogether dry runs validate"
    );
    let sf = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-r"),
                ("DryRun", "true"),
                ("BatchOptimization", "SuccessFirst"),
            ],
        )
        .await;
    assert_eq!(
        sf.code(),
        "DRYRUN.SUCCESS",
        "SuccessFirst dry runs always succeed, as ECS documents"
    );
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
}

#[tokio::test]
async fn batch_parameter_checks() {
    let (_emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    let none = client.call("StartInstances", &[("RegionId", REGION)]).await;
    assert_eq!(none.code(), "MissingParameter");
    let no_region = client
        .call("StartInstances", &[("InstanceId.1", "i-a")])
        .await;
    assert_eq!(no_region.code(), "MissingParameter");
    let dup = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-a"),
            ],
        )
        .await;
    assert_eq!(dup.code(), "InvalidParameter");
    let over = client
        .call(
            "StartInstances",
            &[("RegionId", REGION), ("InstanceId.101", "i-a")],
        )
        .await;
    assert_eq!(over.code(), "InvalidParameter");
    let mode = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("BatchOptimization", "Fast"),
            ],
        )
        .await;
    assert_eq!(mode.code(), "InvalidParameter");
    let ids: Vec<(String, String)> = (1..=100)
        .map(|n| (format!("InstanceId.{n}"), format!("i-x{n}")))
        .collect();
    let mut params: Vec<(&str, &str)> = ids.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    params.push(("RegionId", REGION));
    params.push(("BatchOptimization", "SuccessFirst"));
    let hundred = client.call("StartInstances", &params).await;
    assert_eq!(responses(&hundred).len(), 100, "{}", hundred.text);
}

#[tokio::test]
async fn faults_apply_per_instance_or_to_the_whole_batch() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-b", Status::Stopped),
    ]))
    .await;
    emu.add_fault(
        Fault::error("OperationDenied.NoStock")
            .for_instance("i-b")
            .for_action("StartInstances"),
    )
    .unwrap();
    let sf = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-b"),
                ("BatchOptimization", "SuccessFirst"),
            ],
        )
        .await;
    assert_eq!(
        responses(&sf),
        [
            row("i-a", "200", "Stopped", "Starting"),
            row("i-b", "OperationDenied.NoStock", "Stopped", "Stopped")
        ]
    );
    emu.set_status("i-a", Status::Stopped);
    let all = client
        .call(
            "StartInstances",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-b"),
            ],
        )
        .await;
    assert_eq!((all.status, all.code()), (403, "OperationDenied.NoStock"));
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
}
