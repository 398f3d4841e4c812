//! Every action over HTTP: Describe* (filters and paging), Start/Stop/RebootInstance with their
//! state machine, locks, StoppedMode, DryRun and region handling.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use std::time::Duration;

use ecs_emulator::{ChargeType, Instance, Status, StoppedMode};
use fixture::{REGION, config, described_status, start, wait_until};

fn ids(reply: &client::Reply) -> Vec<String> {
    reply.body["Instances"]["Instance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn describe_instances_reports_the_fields_the_operator_reads() {
    let (emu, client) = start(config(&[])).await;
    let mut locked = Instance::new("i-locked", REGION, Status::Stopped).with_lock("financial");
    locked.charge_type = ChargeType::PrePaid;
    locked.expired_time = Some("2030-06-01T00:00:00Z".parse().unwrap());
    locked.stopped_mode = Some(StoppedMode::StopCharging);
    emu.upsert_instance(locked).unwrap();
    let r = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("InstanceIds", "[\"i-locked\"]")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let i = &r.body["Instances"]["Instance"][0];
    assert_eq!(i["Status"], "Stopped");
    assert_eq!(i["StoppedMode"], "StopCharging");
    assert_eq!(i["ExpiredTime"], "2030-06-01T00:00Z");
    assert_eq!(i["InstanceChargeType"], "PrePaid");
    assert_eq!(
        i["OperationLocks"]["LockReason"][0]["LockReason"],
        "financial"
    );
    assert_eq!(i["RegionId"], REGION);
}

#[tokio::test]
async fn describe_instances_filters() {
    let (emu, client) = start(config(&[
        ("i-1", Status::Running),
        ("i-2", Status::Stopped),
        ("i-3", Status::Running),
    ]))
    .await;
    emu.upsert_instance(Instance::new("i-bj", "cn-beijing", Status::Running))
        .unwrap();
    let all = client
        .call("DescribeInstances", &[("RegionId", REGION)])
        .await;
    assert_eq!(ids(&all), ["i-1", "i-2", "i-3"]);
    assert_eq!(all.body["TotalCount"], 3);
    let running = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("Status", "Running")],
        )
        .await;
    assert_eq!(ids(&running), ["i-1", "i-3"]);
    let some = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("InstanceIds", "[\"i-3\",\"i-missing\",\"i-bj\"]"),
            ],
        )
        .await;
    assert_eq!(
        ids(&some),
        ["i-3"],
        "unknown and other-region ids are omitted"
    );
    let bj = client
        .call("DescribeInstances", &[("RegionId", "cn-beijing")])
        .await;
    assert_eq!(ids(&bj), ["i-bj"]);
    let bad_status = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("Status", "Sleeping")],
        )
        .await;
    assert_eq!(
        (bad_status.status, bad_status.code()),
        (404, "InvalidStatus.NotFound")
    );
    let bad_ids = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("InstanceIds", "i-1,i-2")],
        )
        .await;
    assert_eq!(bad_ids.code(), "InvalidParameter");
    let too_many: Vec<String> = (0..101).map(|n| format!("i-{n}")).collect();
    let r = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("InstanceIds", &serde_json::to_string(&too_many).unwrap()),
            ],
        )
        .await;
    assert_eq!(r.code(), "InvalidParameter");
    let dry = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("DryRun", "true")],
        )
        .await;
    assert_eq!((dry.status, dry.code()), (400, "DryRunOperation"));
}

#[tokio::test]
async fn describe_instances_pages_with_next_token() {
    let names: Vec<String> = (0..25).map(|n| format!("i-{n:03}")).collect();
    let list: Vec<(&str, Status)> = names
        .iter()
        .map(|n| (n.as_str(), Status::Running))
        .collect();
    let (_emu, client) = start(config(&list)).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut params = vec![("RegionId", REGION), ("MaxResults", "10")];
        if !token.is_empty() {
            params.push(("NextToken", token.as_str()));
        }
        let r = client.call("DescribeInstances", &params).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["TotalCount"], 25);
        seen.extend(ids(&r));
        pages += 1;
        token = r.body["NextToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);
    let bad = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("NextToken", "zz-not-hex")],
        )
        .await;
    assert_eq!(bad.code(), "InvalidParameter");
    let over = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("MaxResults", "101")],
        )
        .await;
    assert_eq!(over.code(), "InvalidParameter");
    // Token paging within InstanceIds.
    let r = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("MaxResults", "1"),
                ("InstanceIds", "[\"i-005\",\"i-002\"]"),
            ],
        )
        .await;
    assert_eq!(ids(&r), ["i-002"]);
    let next = r.body["NextToken"].as_str().unwrap().to_owned();
    let r = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("MaxResults", "1"),
                ("InstanceIds", "[\"i-005\",\"i-002\"]"),
                ("NextToken", &next),
            ],
        )
        .await;
    assert_eq!(ids(&r), ["i-005"]);
    assert_eq!(r.body["NextToken"], "");
}

#[tokio::test]
async fn describe_instances_pages_with_page_number() {
    let names: Vec<String> = (0..7).map(|n| format!("i-{n}")).collect();
    let list: Vec<(&str, Status)> = names
        .iter()
        .map(|n| (n.as_str(), Status::Stopped))
        .collect();
    let (_emu, client) = start(config(&list)).await;
    let r = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("PageNumber", "2"), ("PageSize", "3")],
        )
        .await;
    assert_eq!(ids(&r), ["i-3", "i-4", "i-5"]);
    assert_eq!(
        (
            r.body["PageNumber"].as_u64(),
            r.body["PageSize"].as_u64(),
            r.body["TotalCount"].as_u64()
        ),
        (Some(2), Some(3), Some(7))
    );
    let last = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("PageNumber", "3"), ("PageSize", "3")],
        )
        .await;
    assert_eq!(ids(&last), ["i-6"]);
}

#[tokio::test]
async fn describe_instance_status_pages() {
    let names: Vec<String> = (0..12).map(|n| format!("i-{n:02}")).collect();
    let list: Vec<(&str, Status)> = names
        .iter()
        .map(|n| (n.as_str(), Status::Running))
        .collect();
    let (_emu, client) = start(config(&list)).await;
    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        let number = page.to_string();
        let r = client
            .call(
                "DescribeInstanceStatus",
                &[
                    ("RegionId", REGION),
                    ("PageSize", "5"),
                    ("PageNumber", &number),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let total = r.body["TotalCount"].as_u64().unwrap();
        for s in r.body["InstanceStatuses"]["InstanceStatus"]
            .as_array()
            .unwrap()
        {
            assert_eq!(s["Status"], "Running");
            seen.push(s["InstanceId"].as_str().unwrap().to_owned());
        }
        if page * 5 >= total {
            break;
        }
        page += 1;
    }
    assert_eq!(seen, names);
    let some = client
        .call(
            "DescribeInstanceStatus",
            &[
                ("RegionId", REGION),
                ("InstanceId.1", "i-03"),
                ("InstanceId.2", "i-nope"),
            ],
        )
        .await;
    assert_eq!(some.body["TotalCount"], 1);
    let big = client
        .call(
            "DescribeInstanceStatus",
            &[("RegionId", REGION), ("PageSize", "51")],
        )
        .await;
    assert_eq!(big.code(), "InvalidParameter");
}

#[tokio::test]
async fn describe_instance_attribute_and_regions() {
    let (emu, client) = start(config(&[("i-a", Status::Running)])).await;
    emu.upsert_instance(Instance::new("i-sh", "cn-shanghai", Status::Stopped))
        .unwrap();
    let r = client
        .call("DescribeInstanceAttribute", &[("InstanceId", "i-sh")])
        .await;
    assert_eq!(
        (r.status, r.body["RegionId"].as_str()),
        (200, Some("cn-shanghai"))
    );
    assert_eq!(r.body["StoppedMode"], "KeepCharging");
    let wrong_region = client
        .call(
            "DescribeInstanceAttribute",
            &[("InstanceId", "i-sh"), ("RegionId", REGION)],
        )
        .await;
    assert_eq!(wrong_region.code(), "InvalidInstanceId.NotFound");
    let missing = client
        .call("DescribeInstanceAttribute", &[("InstanceId", "i-zz")])
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "InvalidInstanceId.NotFound")
    );
    let regions = client.call("DescribeRegions", &[]).await;
    let names: Vec<&str> = regions.body["Regions"]["Region"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RegionId"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cn-hangzhou", "cn-shanghai"]);
}

#[tokio::test]
async fn start_and_stop_go_through_their_transitions() {
    let mut cfg = config(&[("i-a", Status::Stopped)]);
    cfg.transition_delay = Duration::from_millis(2000);
    let (_emu, client) = start(cfg).await;
    let r = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["RequestId"].is_string());
    assert_eq!(described_status(&client, "i-a").await, "Starting");
    let again = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(
        (again.status, again.code()),
        (403, "IncorrectInstanceStatus")
    );
    assert!(
        wait_until(Duration::from_secs(15), || async {
            described_status(&client, "i-a").await == "Running"
        })
        .await
    );
    let running_again = client.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(
        (running_again.status, running_again.code()),
        (403, "IncorrectInstanceStatus")
    );

    let stop = client
        .call(
            "StopInstance",
            &[
                ("InstanceId", "i-a"),
                ("StoppedMode", "StopCharging"),
                ("ForceStop", "true"),
            ],
        )
        .await;
    assert_eq!(stop.status, 200, "{}", stop.text);
    assert_eq!(described_status(&client, "i-a").await, "Stopping");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            described_status(&client, "i-a").await == "Stopped"
        })
        .await
    );
    let attr = client
        .call("DescribeInstanceAttribute", &[("InstanceId", "i-a")])
        .await;
    assert_eq!(attr.body["StoppedMode"], "StopCharging");
    let stop_again = client.call("StopInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(stop_again.code(), "IncorrectInstanceStatus");
    let bad_mode = client
        .call(
            "StopInstance",
            &[("InstanceId", "i-a"), ("StoppedMode", "Sometimes")],
        )
        .await;
    assert_eq!(bad_mode.code(), "InvalidParameter");
}

#[tokio::test]
async fn zero_delay_completes_on_the_next_observation() {
    let (_emu, client) = start(config(&[("i-a", Status::Stopped)])).await;
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        200
    );
    assert_eq!(described_status(&client, "i-a").await, "Running");
}

#[tokio::test]
async fn reboot_stops_and_starts_again() {
    let mut cfg = config(&[("i-a", Status::Running), ("i-b", Status::Stopped)]);
    cfg.transition_delay = Duration::from_millis(1000);
    let (_emu, client) = start(cfg).await;
    let r = client
        .call(
            "RebootInstance",
            &[("InstanceId", "i-a"), ("ForceStop", "false")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(described_status(&client, "i-a").await, "Stopping");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            described_status(&client, "i-a").await == "Starting"
        })
        .await
    );
    assert!(
        wait_until(Duration::from_secs(15), || async {
            described_status(&client, "i-a").await == "Running"
        })
        .await
    );
    let stopped = client
        .call("RebootInstance", &[("InstanceId", "i-b")])
        .await;
    assert_eq!(stopped.code(), "IncorrectInstanceStatus");
}

#[tokio::test]
async fn dry_run_validates_and_changes_nothing() {
    let (emu, client) = start(config(&[
        ("i-a", Status::Stopped),
        ("i-r", Status::Running),
    ]))
    .await;
    let ok = client
        .call(
            "StartInstance",
            &[("InstanceId", "i-a"), ("DryRun", "true")],
        )
        .await;
    assert_eq!((ok.status, ok.code()), (400, "DryRunOperation"));
    assert_eq!(emu.instance("i-a").unwrap().status, Status::Stopped);
    let wrong_state = client
        .call(
            "StartInstance",
            &[("InstanceId", "i-r"), ("DryRun", "true")],
        )
        .await;
    assert_eq!(wrong_state.code(), "IncorrectInstanceStatus");
    let missing = client
        .call("StopInstance", &[("InstanceId", "i-x"), ("DryRun", "true")])
        .await;
    assert_eq!(missing.code(), "InvalidInstanceId.NotFound");
    let stop = client
        .call("StopInstance", &[("InstanceId", "i-r"), ("DryRun", "true")])
        .await;
    assert_eq!(stop.code(), "DryRunOperation");
    let reboot = client
        .call(
            "RebootInstance",
            &[("InstanceId", "i-r"), ("DryRun", "true")],
        )
        .await;
    assert_eq!(reboot.code(), "DryRunOperation");
    assert_eq!(emu.instance("i-r").unwrap().status, Status::Running);
    let bad = client
        .call(
            "StartInstance",
            &[("InstanceId", "i-a"), ("DryRun", "maybe")],
        )
        .await;
    assert_eq!(bad.code(), "InvalidParameter");
}

#[tokio::test]
async fn locks_block_power_actions() {
    let (emu, client) = start(config(&[])).await;
    emu.upsert_instance(Instance::new("i-sec", REGION, Status::Stopped).with_lock("security"))
        .unwrap();
    emu.upsert_instance(Instance::new("i-fin", REGION, Status::Stopped).with_lock("financial"))
        .unwrap();
    emu.upsert_instance(Instance::new("i-finr", REGION, Status::Running).with_lock("financial"))
        .unwrap();
    let r = client
        .call("StartInstance", &[("InstanceId", "i-sec")])
        .await;
    assert_eq!((r.status, r.code()), (403, "InstanceLockedForSecurity"));
    let r = client
        .call("StartInstance", &[("InstanceId", "i-fin")])
        .await;
    assert_eq!((r.status, r.code()), (403, "InsufficientBalance"));
    let r = client
        .call("StopInstance", &[("InstanceId", "i-finr")])
        .await;
    assert_eq!((r.status, r.code()), (403, "InstanceExpiredOrInArrears"));
    emu.set_locks("i-sec", vec![]).unwrap();
    assert_eq!(
        client
            .call("StartInstance", &[("InstanceId", "i-sec")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn single_actions_respect_a_region_when_given() {
    let (emu, client) = start(config(&[])).await;
    emu.upsert_instance(Instance::new("i-bj", "cn-beijing", Status::Stopped))
        .unwrap();
    let wrong = client
        .call(
            "StartInstance",
            &[("InstanceId", "i-bj"), ("RegionId", REGION)],
        )
        .await;
    assert_eq!(wrong.code(), "InvalidInstanceId.NotFound");
    let right = client
        .call(
            "StartInstance",
            &[("InstanceId", "i-bj"), ("RegionId", "cn-beijing")],
        )
        .await;
    assert_eq!(right.status, 200);
    let none = client.call("StopInstance", &[("InstanceId", "i-bj")]).await;
    assert_eq!(
        none.status, 200,
        "any endpoint finds the instance by id: {}",
        none.text
    );
}

#[tokio::test]
async fn prepaid_instances_keep_charging_and_expire() {
    let (emu, client) = start(config(&[])).await;
    let mut sub = Instance::new("i-sub", REGION, Status::Running);
    sub.charge_type = ChargeType::PrePaid;
    emu.upsert_instance(sub.clone()).unwrap();
    client
        .call(
            "StopInstance",
            &[("InstanceId", "i-sub"), ("StoppedMode", "StopCharging")],
        )
        .await;
    assert_eq!(
        emu.instance("i-sub").unwrap().stopped_mode,
        Some(StoppedMode::KeepCharging)
    );
    sub.status = Status::Stopped;
    sub.expired_time = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2));
    emu.upsert_instance(sub).unwrap();
    let r = client
        .call("StartInstance", &[("InstanceId", "i-sub")])
        .await;
    assert_eq!((r.status, r.code()), (403, "InstanceExpired"));
}

#[tokio::test]
async fn describe_instances_without_max_results_answers_ten_and_a_next_token() {
    let names: Vec<String> = (0..100).map(|n| format!("i-{n:03}")).collect();
    let list: Vec<(&str, Status)> = names
        .iter()
        .map(|n| (n.as_str(), Status::Running))
        .collect();
    let (_emu, client) = start(config(&list)).await;
    let all = serde_json::to_string(&names).unwrap();
    let r = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("InstanceIds", &all)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), names[..10], "ECS's default MaxResults is 10");
    let token = r.body["NextToken"].as_str().unwrap();
    assert!(!token.is_empty());
    let next = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("InstanceIds", &all),
                ("NextToken", token),
            ],
        )
        .await;
    assert_eq!(ids(&next), names[10..20]);
    let full = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("InstanceIds", &all),
                ("MaxResults", "100"),
            ],
        )
        .await;
    assert_eq!(ids(&full), names);
    assert_eq!(full.body["NextToken"], "");
}

#[tokio::test]
async fn describe_instances_shows_and_filters_tags() {
    let mut cfg = config(&[("i-plain", Status::Running)]);
    cfg.instances.push(
        Instance::new("i-web", REGION, Status::Running)
            .with_tag("team", "web")
            .with_tag("env", "prod"),
    );
    cfg.instances
        .push(Instance::new("i-db", REGION, Status::Stopped).with_tag("team", "db"));
    let (emu, client) = start(cfg).await;
    let r = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("InstanceIds", r#"["i-web","i-plain"]"#),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.body["Instances"]["Instance"].as_array().unwrap();
    assert_eq!(items[0]["InstanceId"], "i-plain");
    assert_eq!(items[0]["Tags"], serde_json::json!({"Tag": []}));
    assert_eq!(
        items[1]["Tags"]["Tag"],
        serde_json::json!([
            {"TagKey": "env", "TagValue": "prod"},
            {"TagKey": "team", "TagValue": "web"}
        ])
    );
    let xml = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("InstanceIds", r#"["i-web"]"#),
                ("Format", "XML"),
            ],
        )
        .await;
    assert!(
        xml.text.contains(
            "<Tags><Tag><TagKey>env</TagKey><TagValue>prod</TagValue></Tag><Tag><TagKey>team</TagKey><TagValue>web</TagValue></Tag></Tags>"
        ),
        "{}",
        xml.text
    );

    let by_key = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("Tag.1.Key", "team")],
        )
        .await;
    assert_eq!(ids(&by_key), ["i-db", "i-web"]);
    let by_pair = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "web"),
                ("Tag.2.Key", "env"),
            ],
        )
        .await;
    assert_eq!(ids(&by_pair), ["i-web"]);
    let mismatch = client
        .call(
            "DescribeInstances",
            &[("RegionId", REGION), ("Tag.1.Value", "web")],
        )
        .await;
    assert_eq!(
        (mismatch.status, mismatch.code()),
        (400, "InvalidTag.Mismatch")
    );

    let admin = client::http()
        .patch(format!("{}/_emulator/instances/i-plain", emu.url()))
        .json(&serde_json::json!({"tags": [{"key": "team", "value": "web"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let body: serde_json::Value = admin.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!({"team": "web"}));
    assert_eq!(
        emu.instance("i-plain")
            .unwrap()
            .tags
            .get("team")
            .map(String::as_str),
        Some("web")
    );
    let web = client
        .call(
            "DescribeInstances",
            &[
                ("RegionId", REGION),
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "web"),
            ],
        )
        .await;
    assert_eq!(ids(&web), ["i-plain", "i-web"]);
}
