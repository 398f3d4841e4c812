//! Who may control which instance, end to end in one process (kube-sandbox, ecs-emulator, the
//! operator): one owner per instance ID, and the `EcsPowerAccessPolicy` for the operator's own
//! credentials. The emulator's call log is the oracle: a claimed or refused resource makes no ECS
//! call at all (not even `DescribeInstances` for an ID or region denial).
#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use ecs_emulator::{CallRecord, Instance, Status};
use ecs_power_operator::api::{
    CONDITION_READY, CONDITION_STALLED, EcsInstancePower, EcsInstancePowerStatus,
    EcsPowerAccessPolicy,
};
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::{Harness, Options, REGION, TEAM_AK, TEAM_SECRET, condition, running, stopped};

async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn create_in(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    let obj: EcsInstancePower = serde_json::from_value(json!({
        "apiVersion": "ecspower.dev/v1alpha1",
        "kind": "EcsInstancePower",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap();
    Api::<EcsInstancePower>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

async fn set_rules(client: &Client, rules: serde_json::Value) {
    ecs_power_operator::sandbox::install_access_policy(client, rules)
        .await
        .unwrap();
}

/// Polls the resource until `check` accepts its status (every 25 ms, at most 30 s).
async fn wait_in(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&EcsInstancePowerStatus) -> bool,
) -> EcsInstancePower {
    let api = Api::<EcsInstancePower>::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let obj = api.get(name).await.unwrap();
        if obj.status.as_ref().is_some_and(&check) {
            return obj;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {ns}/{name}: {what}; status: {}",
            serde_json::to_string_pretty(&obj.status).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_reason(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> EcsInstancePower {
    wait_in(client, ns, name, &format!("Ready={status} {reason}"), |s| {
        condition(s, CONDITION_READY) == Some((status.into(), reason.into()))
    })
    .await
}

fn ready_message(obj: &EcsInstancePower) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_READY))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Waits until a Warning event with this reason exists for `ns/name`.
async fn wait_warning(client: &Client, ns: &str, name: &str, reason: &str) -> Event {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let found = support::eventually(Duration::from_secs(15), || async {
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")
            })
    })
    .await;
    found.unwrap_or_else(|| panic!("no Warning event {reason} for {ns}/{name}"))
}

fn named(calls: &[CallRecord], instance: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.instance_ids.iter().any(|i| i == instance))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_for_one_instance_make_one_write_and_the_second_is_claimed() {
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-fight")],
        resync: "1s",
        ..Options::default()
    })
    .await;
    let web = h
        .create(
            "web-1",
            json!({"instanceId": "i-fight", "regionId": REGION, "desiredState": "Running"}),
        )
        .await;
    h.wait_ready("web-1", "True", "Running").await;
    h.create_younger(
        "fight",
        json!({"instanceId": "i-fight", "regionId": REGION, "desiredState": "Stopped"}),
        &web,
    )
    .await;
    let claimed = wait_reason(&h.client, "default", "fight", "False", "InstanceClaimed").await;
    let status = claimed.status.as_ref().unwrap();
    assert_eq!(
        condition(status, CONDITION_STALLED),
        Some(("True".into(), "InstanceClaimed".into()))
    );
    assert!(
        ready_message(&claimed).contains("default/web-1"),
        "{}",
        ready_message(&claimed)
    );
    wait_warning(&h.client, "default", "fight", "InstanceClaimed").await;
    // Two resync intervals pass (the sweep reads the instance at least twice more) ...
    let reads_before = h.calls("i-fight", "DescribeInstances").len();
    let resynced = support::eventually(Duration::from_secs(20), || async {
        (h.calls("i-fight", "DescribeInstances").len() >= reads_before + 2).then_some(())
    })
    .await;
    assert!(resynced.is_some(), "the instance was not re-observed");
    // ... and the instance was started once and never stopped.
    assert_eq!(h.starts("i-fight").len(), 1, "{:?}", h.writes("i-fight"));
    assert!(h.stops("i-fight").is_empty(), "{:?}", h.stops("i-fight"));
    h.wait_ready("web-1", "True", "Running").await;
    // Still claimed, and none of the claimed resource's calls reached ECS.
    wait_reason(&h.client, "default", "fight", "False", "InstanceClaimed").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_owner_hands_the_instance_over_at_once_observing_first() {
    // A long resync: only the watch can explain a prompt handover.
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-handover")],
        resync: "5m",
        ..Options::default()
    })
    .await;
    let owner = h
        .create(
            "owner",
            json!({"instanceId": "i-handover", "regionId": REGION, "desiredState": "Running"}),
        )
        .await;
    h.wait_ready("owner", "True", "Running").await;
    h.create_younger(
        "next",
        json!({"instanceId": "i-handover", "regionId": REGION, "desiredState": "Stopped"}),
        &owner,
    )
    .await;
    wait_reason(&h.client, "default", "next", "False", "InstanceClaimed").await;
    let seq_at_delete = h.emulator.call_log().last().map_or(0, |c| c.seq);
    h.api()
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_ready("next", "True", "Stopped").await;
    let after: Vec<CallRecord> = h
        .all_calls("i-handover")
        .into_iter()
        .filter(|c| c.seq > seq_at_delete)
        .collect();
    let first = after.first().expect("calls after the handover");
    assert_eq!(first.action, "DescribeInstances", "{after:?}");
    assert_eq!(h.stops("i-handover").len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_a_grant_gets_not_granted_and_no_ecs_call_and_one_with_a_grant_converges()
 {
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-teama"), stopped("i-teamb")],
        access_rules: Some(json!([
            {"name": "team-a-boxes", "namespaces": {"names": ["team-a"]},
             "regions": [REGION], "instanceIds": ["i-teama"]}
        ])),
        ..Options::default()
    })
    .await;
    create_namespace(&h.client, "team-a", json!({})).await;
    create_namespace(&h.client, "team-b", json!({})).await;
    create_in(
        &h.client,
        "team-b",
        "box",
        json!({"instanceId": "i-teamb", "regionId": REGION}),
    )
    .await;
    create_in(
        &h.client,
        "team-a",
        "box",
        json!({"instanceId": "i-teama", "regionId": REGION}),
    )
    .await;
    wait_reason(&h.client, "team-a", "box", "True", "Running").await;
    let denied = wait_reason(&h.client, "team-b", "box", "False", "NotGranted").await;
    let status = denied.status.as_ref().unwrap();
    assert_eq!(
        condition(status, CONDITION_STALLED),
        Some(("True".into(), "NotGranted".into()))
    );
    let message = ready_message(&denied);
    for needle in ["team-b", "i-teamb", REGION, "Start", "cluster admin"] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    assert!(status.instance_status.is_none(), "{status:?}");
    wait_warning(&h.client, "team-b", "box", "NotGranted").await;
    assert_eq!(named(&h.emulator.call_log(), "i-teamb"), 0);
    // The policy's status: valid, and the rule's usage.
    let policies = Api::<EcsPowerAccessPolicy>::all(h.client.clone());
    let reported = support::eventually(Duration::from_secs(15), || async {
        let status = policies.get("default").await.unwrap().status?;
        let usage: Vec<(String, i32, i32)> = status
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.resources, r.denied))
            .collect();
        let valid = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Valid");
        (valid
            && status.observed_generation == Some(1)
            && usage == vec![("team-a-boxes".to_string(), 1, 0)])
        .then_some(())
    })
    .await;
    assert!(
        reported.is_some(),
        "policy status: {:?}",
        policies.get("default").await.unwrap().status
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_grant_then_flipping_the_desired_state_makes_no_write() {
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-revoke")],
        access_rules: Some(json!([
            {"name": "default-ns", "namespaces": {"names": ["default"]}, "anyInstance": true}
        ])),
        ..Options::default()
    })
    .await;
    h.create(
        "web-1",
        json!({"instanceId": "i-revoke", "regionId": REGION}),
    )
    .await;
    h.wait_ready("web-1", "True", "Running").await;
    let writes = h.writes("i-revoke").len();
    // Revoke: the rule now names another namespace.
    set_rules(
        &h.client,
        json!([{"name": "default-ns", "namespaces": {"names": ["team-x"]}, "anyInstance": true}]),
    )
    .await;
    h.wait_ready("web-1", "False", "NotGranted").await;
    // Revocation by itself changed nothing on ECS.
    assert_eq!(h.writes("i-revoke").len(), writes);
    h.patch_spec("web-1", json!({"desiredState": "Stopped"}))
        .await;
    let obj = h
        .wait_status(
            "web-1",
            Duration::from_secs(30),
            "NotGranted for generation 2",
            |s| {
                s.observed_generation == Some(2)
                    && condition(s, CONDITION_READY) == Some(("False".into(), "NotGranted".into()))
            },
        )
        .await;
    assert!(
        ready_message(&obj).contains("Stop"),
        "{}",
        ready_message(&obj)
    );
    assert_eq!(
        h.writes("i-revoke").len(),
        writes,
        "{:?}",
        h.writes("i-revoke")
    );
    assert_eq!(
        h.emulator.instance("i-revoke").map(|i| i.status),
        Some(Status::Running)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelling_a_namespace_into_a_rule_converges_without_a_restart() {
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-label")],
        resync: "5m",
        access_rules: Some(json!([
            {"name": "labelled", "namespaces": {"matchLabels": {"ecspower.dev/team": "a"}},
             "anyInstance": true}
        ])),
        ..Options::default()
    })
    .await;
    create_namespace(&h.client, "team-c", json!({"env": "dev"})).await;
    create_in(
        &h.client,
        "team-c",
        "box",
        json!({"instanceId": "i-label", "regionId": REGION}),
    )
    .await;
    wait_reason(&h.client, "team-c", "box", "False", "NotGranted").await;
    assert_eq!(named(&h.emulator.call_log(), "i-label"), 0);
    Api::<Namespace>::all(h.client.clone())
        .patch(
            "team-c",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"ecspower.dev/team": "a"}}})),
        )
        .await
        .unwrap();
    wait_reason(&h.client, "team-c", "box", "True", "Running").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_policy_refuses_every_operator_credential_resource_but_not_a_secret_one() {
    let h = Harness::start_with(Options {
        instances: vec![running("i-ops1"), running("i-ops2"), stopped("i-team")],
        resync: "5m",
        ..Options::default()
    })
    .await;
    h.create_secret(
        "team-ecs",
        &[("accessKeyId", TEAM_AK), ("accessKeySecret", TEAM_SECRET)],
    )
    .await;
    for (name, id) in [("ops-1", "i-ops1"), ("ops-2", "i-ops2")] {
        h.create(name, json!({"instanceId": id, "regionId": REGION}))
            .await;
    }
    h.create(
        "team",
        json!({"instanceId": "i-team", "regionId": REGION, "credentialsSecretRef": {"name": "team-ecs"}}),
    )
    .await;
    for name in ["ops-1", "ops-2", "team"] {
        h.wait_ready(name, "True", "Running").await;
    }
    Api::<EcsPowerAccessPolicy>::all(h.client.clone())
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    for name in ["ops-1", "ops-2"] {
        let obj = h.wait_ready(name, "False", "NotGranted").await;
        assert!(
            ready_message(&obj).contains("no EcsPowerAccessPolicy named default"),
            "{}",
            ready_message(&obj)
        );
    }
    // The Secret-credential resource is not governed by default: it still acts.
    h.patch_spec("team", json!({"desiredState": "Stopped"}))
        .await;
    h.wait_ready("team", "True", "Stopped").await;
    assert_eq!(h.stops("i-team").len(), 1);
    assert!(h.stops("i-ops1").is_empty() && h.stops("i-ops2").is_empty());
    h.wait_ready("team", "True", "Stopped").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_flag_a_secret_credential_resource_needs_a_grant_too() {
    let h = Harness::start_with(Options {
        instances: vec![stopped("i-flag")],
        access_rules: None,
        extra_flags: vec!["--access-policy-for-secrets"],
        ..Options::default()
    })
    .await;
    h.create_secret(
        "team-ecs",
        &[("accessKeyId", TEAM_AK), ("accessKeySecret", TEAM_SECRET)],
    )
    .await;
    h.create(
        "team",
        json!({"instanceId": "i-flag", "regionId": REGION, "credentialsSecretRef": {"name": "team-ecs"}}),
    )
    .await;
    h.wait_ready("team", "False", "NotGranted").await;
    assert_eq!(named(&h.emulator.call_log(), "i-flag"), 0);
    set_rules(
        &h.client,
        json!([{"name": "default-ns", "namespaces": {"names": ["default"]}, "anyInstance": true}]),
    )
    .await;
    h.wait_ready("team", "True", "Running").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_rule_reads_the_instance_and_refuses_a_mismatch_without_copying_what_it_saw() {
    let h = Harness::start_with(Options {
        instances: vec![
            Instance::new("i-tagged", REGION, Status::Stopped).with_tag("team", "a"),
            Instance::new("i-other", REGION, Status::Stopped).with_tag("team", "b"),
        ],
        access_rules: Some(json!([
            {"name": "team-a-tags", "allNamespaces": true, "instanceTags": {"team": "a"}}
        ])),
        ..Options::default()
    })
    .await;
    h.create(
        "tagged",
        json!({"instanceId": "i-tagged", "regionId": REGION}),
    )
    .await;
    h.create(
        "other",
        json!({"instanceId": "i-other", "regionId": REGION}),
    )
    .await;
    h.create(
        "missing",
        json!({"instanceId": "i-missing", "regionId": REGION}),
    )
    .await;
    h.wait_ready("tagged", "True", "Running").await;
    let other = h.wait_ready("other", "False", "NotGranted").await;
    let missing = h.wait_ready("missing", "False", "NotGranted").await;
    // No observed field in a refused resource's status, and a mismatched instance reads exactly
    // like a missing one.
    for obj in [&other, &missing] {
        let status = obj.status.as_ref().unwrap();
        assert!(status.instance_status.is_none(), "{status:?}");
        assert!(status.last_observed_time.is_none(), "{status:?}");
    }
    assert_eq!(
        ready_message(&other).replace("i-other", "ID"),
        ready_message(&missing).replace("i-missing", "ID")
    );
    assert!(h.writes("i-other").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_policy_named_default_is_accepted() {
    let h = Harness::start(vec![]).await;
    let other: EcsPowerAccessPolicy = serde_json::from_value(json!({
        "apiVersion": "ecspower.dev/v1alpha1",
        "kind": "EcsPowerAccessPolicy",
        "metadata": {"name": "team-a"},
        "spec": {"rules": [{"name": "x", "allNamespaces": true, "anyInstance": true}]},
    }))
    .unwrap();
    let err = Api::<EcsPowerAccessPolicy>::all(h.client.clone())
        .create(&PostParams::default(), &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("named default"), "{err}");
    h.stop().await;
}
