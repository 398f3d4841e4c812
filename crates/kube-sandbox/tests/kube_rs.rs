//! kube-sandbox driven by kube-rs as an operator drives a cluster: a CRD and custom resources
//! (defaults, validation, CEL, generation, `/status`, conflicts, server-side apply, finalizers,
//! dryRun, selectors, pagination), raw watches (resume, bookmarks, initial events, 410 Gone
//! after compaction), kube-runtime's `watcher` in both list modes, a `Controller` that sees
//! creates and updates and writes status, and the `Recorder` (create, then PATCH of a series).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{api_error, eventually, install_crd, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResource;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use kube_sandbox::SandboxConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The test kind (typed view of the fixture CRD).
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "ecspower.dev",
    version = "v1alpha1",
    kind = "EcsInstancePower",
    namespaced,
    status = "PowerStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct PowerSpec {
    instance_id: String,
    region_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    desired_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    force_stop: Option<bool>,
}

/// Status.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PowerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<Retry>,
}

/// A condition.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Retry state.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Retry {
    attempts: i64,
}

fn power(name: &str, instance: &str) -> EcsInstancePower {
    let mut p = EcsInstancePower::new(
        name,
        PowerSpec {
            instance_id: instance.into(),
            region_id: "cn-hangzhou".into(),
            desired_state: None,
            force_stop: None,
        },
    );
    p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    p
}

fn code(
    r: Result<impl std::fmt::Debug, kube::Error>,
) -> anyhow::Result<(u16, String, kube::core::Status)> {
    match r {
        Ok(v) => anyhow::bail!("expected an API error, got {v:?}"),
        Err(e) => {
            let s = api_error(&e)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("not an API error: {e}"))?;
            Ok((s.code, s.reason.clone(), s))
        }
    }
}

#[tokio::test]
// One short name per answer checked in sequence (`c` for the HTTP code, ...), as in the other
// scenarios of this file.
#[allow(clippy::many_single_char_names)]
async fn custom_resources_behave_like_on_a_cluster() -> anyhow::Result<()> {
    let (sb, client) = start(SandboxConfig::default()).await?;
    install_crd(&client).await?;
    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");

    // Create: defaults applied, generation 1, server metadata set.
    let created = api
        .create(&PostParams::default(), &power("web", "i-abc"))
        .await?;
    assert_eq!(created.spec.desired_state.as_deref(), Some("Running"));
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let (c, reason, _) = code(
        api.create(&PostParams::default(), &power("web", "i-abc"))
            .await,
    )?;
    assert_eq!((c, reason.as_str()), (409, "AlreadyExists"));

    // Status cannot be set on create; spec changes bump generation, metadata changes do not.
    let mut with_status = power("web2", "i-def");
    with_status.status = Some(PowerStatus {
        instance_status: Some("Running".into()),
        ..PowerStatus::default()
    });
    assert!(
        api.create(&PostParams::default(), &with_status)
            .await?
            .status
            .is_none()
    );
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
        )
        .await?;
    assert_eq!(p.metadata.generation, Some(2));
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "x"}}})),
        )
        .await?;
    assert_eq!(p.metadata.generation, Some(2));

    // /status separation.
    let s = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"instanceStatus": "Stopped"}})),
        )
        .await?;
    assert_eq!(
        s.status.as_ref().and_then(|s| s.instance_status.as_deref()),
        Some("Stopped")
    );
    assert_eq!(s.metadata.generation, Some(2));
    let m = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"instanceStatus": "Bogus"}, "spec": {"forceStop": true}}),
            ),
        )
        .await?;
    assert_eq!(
        m.status.as_ref().and_then(|s| s.instance_status.as_deref()),
        Some("Stopped")
    );
    assert_eq!(m.metadata.generation, Some(3));
    let st = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"forceStop": false}, "status": {"instanceStatus": "Running"}}),
            ),
        )
        .await?;
    assert_eq!(st.spec.force_stop, Some(true), "/status ignores spec");

    // Stale update: 409 Conflict; a no-op update keeps the resourceVersion.
    let mut stale = created.clone();
    stale.spec.desired_state = Some("Running".into());
    let (c, reason, _) = code(api.replace("web", &PostParams::default(), &stale).await)?;
    assert_eq!((c, reason.as_str()), (409, "Conflict"));
    let current = api.get("web").await?;
    let same = api.replace("web", &PostParams::default(), &current).await?;
    assert_eq!(same.resource_version(), current.resource_version());

    // Schema validation: 422 Invalid with field causes.
    let mut bad = power("bad", "not-an-id");
    bad.spec.desired_state = Some("Paused".into());
    let (c, reason, status) = code(api.create(&PostParams::default(), &bad).await)?;
    assert_eq!((c, reason.as_str()), (422, "Invalid"));
    let causes: BTreeSet<(String, String)> = status
        .details
        .map(|d| d.causes.into_iter().map(|c| (c.field, c.reason)).collect())
        .unwrap_or_default();
    assert!(
        causes.contains(&("spec.instanceId".into(), "FieldValueInvalid".into())),
        "{causes:?}"
    );
    assert!(
        causes.contains(&("spec.desiredState".into(), "FieldValueNotSupported".into())),
        "{causes:?}"
    );
    let (c, _, status) = code(
        api.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceId": "i-zzz"}})),
        )
        .await,
    )?;
    assert_eq!(c, 422);
    assert!(
        status.message.contains("instanceId is immutable"),
        "{}",
        status.message
    );

    // Unknown fields are pruned (fieldValidation defaults to Warn); Strict rejects them.
    let dynamic = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<EcsInstancePower>(&()),
    );
    let extra: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower", "metadata": {"name": "extra"},
        "spec": {"instanceId": "i-1", "regionId": "cn-hangzhou", "bogus": true}}))?;
    let pruned = dynamic.create(&PostParams::default(), &extra).await?;
    assert!(pruned.data["spec"].get("bogus").is_none());
    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..PatchParams::default()
    };
    let (c, _, status) = code(
        dynamic
            .patch(
                "extra",
                &strict,
                &Patch::Merge(json!({"spec": {"bogus": 1}})),
            )
            .await,
    )?;
    assert_eq!(c, 400);
    assert!(
        status.message.contains("unknown field \"spec.bogus\""),
        "{}",
        status.message
    );

    // Server-side apply on /status: fields a manager stops applying are removed.
    let ssa = PatchParams::apply("sandbox-test").force();
    let first = json!({"apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower", "metadata": {"name": "web"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Reconciling", "status": "True"}], "retry": {"attempts": 2}}});
    let a = api.patch_status("web", &ssa, &Patch::Apply(&first)).await?;
    assert_eq!(a.status.as_ref().map(|s| s.conditions.len()), Some(2));
    let second = json!({"apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower", "metadata": {"name": "web"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let b = api
        .patch_status("web", &ssa, &Patch::Apply(&second))
        .await?;
    let bs = b.status.clone().unwrap_or_default();
    assert_eq!(
        bs.conditions,
        vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: None
        }]
    );
    assert_eq!(bs.retry, None);
    assert_eq!(
        bs.instance_status.as_deref(),
        Some("Running"),
        "fields set by other writers stay"
    );
    let (c, _, _) = code(
        api.patch("web", &PatchParams::default(), &Patch::Apply(&second))
            .await,
    )?;
    assert_eq!(c, 422, "apply without fieldManager is invalid");
    // Apply creates when absent.
    let applied = api
        .patch("applied", &ssa, &Patch::Apply(json!({"apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": "applied"}, "spec": {"instanceId": "i-9", "regionId": "cn-beijing"}})))
        .await?;
    assert_eq!(applied.spec.desired_state.as_deref(), Some("Running"));

    // dryRun creates nothing.
    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &power("dry", "i-d"),
        )
        .await?;
    assert_eq!(dry.name_any(), "dry");
    assert_eq!(code(api.get("dry").await)?.0, 404);

    // Selectors.
    let by_label = api
        .list(&ListParams::default().labels("app=web,tier=x"))
        .await?;
    assert_eq!(
        by_label
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        vec!["web"]
    );
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=web2"))
        .await?;
    assert_eq!(by_field.items.len(), 1);

    // Finalizers: delete marks, removing the last finalizer deletes.
    api.patch(
        "web2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["ecspower.dev/cleanup"]}})),
    )
    .await?;
    api.delete("web2", &DeleteParams::default()).await?;
    let marked = api.get("web2").await?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "web2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert_eq!(code(api.get("web2").await)?.0, 404);

    // Deleting the CRD removes its objects.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.delete(common::CRD_NAME, &DeleteParams::default())
        .await?;
    assert!(
        sb.objects_of("ecspower.dev", "ecsinstancepowers")
            .is_empty()
    );
    assert_eq!(code(api.list(&ListParams::default()).await)?.0, 404);
    sb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn lists_paginate_with_continue_tokens() -> anyhow::Result<()> {
    let (sb, client) = start(SandboxConfig::default()).await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..25 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{i:02}")}, "data": {"i": i.to_string()}}),
        )?;
        api.create(&PostParams::default(), &cm).await?;
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        pages += 1;
        names.extend(page.items.iter().map(ResourceExt::name_any));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    assert_eq!(names.first().map(String::as_str), Some("cm-00"));
    assert_eq!(names.last().map(String::as_str), Some("cm-24"));
    // A continue token from before a compaction has expired.
    let first = api.list(&ListParams::default().limit(10)).await?;
    sb.compact_and_break_watches();
    let t = first.metadata.continue_.unwrap_or_default();
    let (c, reason, _) = code(
        api.list(&ListParams::default().limit(10).continue_token(&t))
            .await,
    )?;
    assert_eq!((c, reason.as_str()), (410, "Expired"));
    sb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn raw_watches_resume_bookmark_and_expire() -> anyhow::Result<()> {
    let config = SandboxConfig {
        bookmark_interval: Duration::from_millis(200),
        ..SandboxConfig::default()
    };
    let (sb, client) = start(config).await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv0 = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let cm = |name: &str| -> anyhow::Result<ConfigMap> {
        Ok(serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"w": "1"}}}),
        )?)
    };
    api.create(&PostParams::default(), &cm("a")?).await?;

    // Resume from rv0: the create is replayed; then bookmarks arrive on an idle watch.
    let mut stream = api
        .watch(&WatchParams::default().labels("w=1"), &rv0)
        .await?
        .boxed();
    let first = tokio::time::timeout(WAIT, stream.try_next()).await??;
    assert!(
        matches!(first, Some(WatchEvent::Added(ref o)) if o.name_any() == "a"),
        "{first:?}"
    );
    let bookmark = tokio::time::timeout(WAIT, stream.try_next()).await??;
    assert!(
        matches!(bookmark, Some(WatchEvent::Bookmark(_))),
        "{bookmark:?}"
    );
    // Leaving the label selection is a DELETED for this watch.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"w": "2"}}})),
    )
    .await?;
    let left = loop {
        // Bookmarks are skipped.
        let event = tokio::time::timeout(WAIT, stream.try_next()).await??;
        if !matches!(event, Some(WatchEvent::Bookmark(_))) {
            break event;
        }
    };
    assert!(
        matches!(left, Some(WatchEvent::Deleted(ref o)) if o.name_any() == "a"),
        "{left:?}"
    );

    // Streaming list: initial ADDED events, then the initial-events-end bookmark.
    let mut streaming = api
        .watch(&WatchParams::streaming_lists(), "")
        .await?
        .boxed();
    let added = tokio::time::timeout(WAIT, streaming.try_next()).await??;
    assert!(matches!(added, Some(WatchEvent::Added(_))), "{added:?}");
    let end = tokio::time::timeout(WAIT, streaming.try_next()).await??;
    match end {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(
                b.metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
        }
        other => anyhow::bail!("expected the initial-events-end bookmark, got {other:?}"),
    }

    // timeoutSeconds ends a watch.
    let mut short = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await?
        .boxed();
    let ended = tokio::time::timeout(WAIT, async {
        let mut n = 0;
        while let Some(ev) = short.next().await {
            ev?;
            n += 1;
        }
        anyhow::Ok(n)
    })
    .await;
    assert!(
        matches!(ended, Ok(Ok(1))),
        "watch with timeoutSeconds=1 should end after the initial event: {ended:?}"
    );

    // Breaking watches ends the streams; resuming from rv0 is now 410 Gone.
    sb.compact_and_break_watches();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(ev) = stream.next().await {
            if ev.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "watch did not end after compact_and_break_watches"
    );
    let mut expired = api.watch(&WatchParams::default(), &rv0).await?.boxed();
    match tokio::time::timeout(WAIT, expired.try_next()).await?? {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => anyhow::bail!("expected a 410 ERROR event, got {other:?}"),
    }
    sb.shutdown().await;
    Ok(())
}

async fn watcher_sees_changes(config: watcher::Config) -> anyhow::Result<()> {
    let (sb, client) = start(SandboxConfig::default()).await?;
    install_crd(&client).await?;
    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &power("before", "i-1"))
        .await?;
    let seen = Arc::new(Mutex::new(Vec::<(String, Option<String>)>::new()));
    let sink = seen.clone();
    let task = tokio::spawn(
        watcher(api.clone(), config)
            .default_backoff()
            .applied_objects()
            .for_each(move |o| {
                if let Ok(o) = o {
                    sink.lock()
                        .map(|mut v| v.push((o.name_any(), o.spec.desired_state.clone())))
                        .ok();
                }
                async {}
            }),
    );
    let has = |name: &'static str, state: &'static str| {
        let seen = seen.clone();
        move || {
            let found = seen.lock().is_ok_and(|v| {
                v.iter()
                    .any(|(n, s)| n == name && s.as_deref() == Some(state))
            });
            async move { Ok(found.then_some(())) }
        }
    };
    eventually(WAIT, "the existing object", has("before", "Running")).await?;
    api.create(&PostParams::default(), &power("after", "i-2"))
        .await?;
    eventually(WAIT, "a created object", has("after", "Running")).await?;
    api.patch(
        "after",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
    )
    .await?;
    eventually(WAIT, "an update", has("after", "Stopped")).await?;
    // The watch breaks with 410 on resume; the watcher relists and keeps going.
    sb.compact_and_break_watches();
    api.create(&PostParams::default(), &power("recovered", "i-3"))
        .await?;
    eventually(
        WAIT,
        "an object created after the watch broke",
        has("recovered", "Running"),
    )
    .await?;
    task.abort();
    sb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn watcher_list_watch_mode() -> anyhow::Result<()> {
    watcher_sees_changes(watcher::Config::default()).await
}

#[tokio::test]
async fn watcher_streaming_list_mode() -> anyhow::Result<()> {
    watcher_sees_changes(watcher::Config::default().streaming_lists()).await
}

struct Ctx {
    api: Api<EcsInstancePower>,
    recorder: Recorder,
    seen: Mutex<BTreeSet<(String, i64)>>,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

async fn reconcile(obj: Arc<EcsInstancePower>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let generation = obj.metadata.generation.unwrap_or(0);
    ctx.seen
        .lock()
        .map(|mut s| s.insert((obj.name_any(), generation)))
        .ok();
    let status = json!({"apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower", "metadata": {"name": obj.name_any()},
        "status": {"observedGeneration": generation, "instanceStatus": obj.spec.desired_state,
            "conditions": [{"type": "Ready", "status": "True", "reason": obj.spec.desired_state}]}});
    ctx.api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply("sandbox-controller").force(),
            &Patch::Apply(&status),
        )
        .await?;
    let event = RecordedEvent {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("state held".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &obj.object_ref(&())).await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<EcsInstancePower>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test]
async fn controller_sees_creates_and_updates_and_records_events() -> anyhow::Result<()> {
    let (sb, client) = start(SandboxConfig::default()).await?;
    install_crd(&client).await?;
    let api: Api<EcsInstancePower> = Api::namespaced(client.clone(), "default");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sandbox-controller".into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        recorder,
        seen: Mutex::new(BTreeSet::new()),
    });
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    api.create(&PostParams::default(), &power("web", "i-abc"))
        .await?;
    let saw = |generation: i64| {
        let ctx = ctx.clone();
        move || {
            let found = ctx
                .seen
                .lock()
                .is_ok_and(|s| s.contains(&("web".to_string(), generation)));
            async move { Ok(found.then_some(())) }
        }
    };
    eventually(WAIT, "a reconcile of the create", saw(1)).await?;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
    )
    .await?;
    eventually(WAIT, "a reconcile of the update", saw(2)).await?;
    let api2 = api.clone();
    eventually(WAIT, "status written for generation 2", move || {
        let api = api2.clone();
        async move {
            let o = api.get("web").await?;
            let s = o.status.unwrap_or_default();
            Ok((s.observed_generation == Some(2)
                && s.instance_status.as_deref() == Some("Stopped"))
            .then_some(()))
        }
    })
    .await?;

    // Events: created through events.k8s.io/v1, repeats PATCHed as a series, visible as core events.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let ev2 = events.clone();
    eventually(WAIT, "a repeated event series", move || {
        let events = ev2.clone();
        async move {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("Reconciled")
                        && e.series.as_ref().is_some_and(|s| s.count >= 2)
                })
                .then_some(()))
        }
    })
    .await?;
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=web,reason=Reconciled"))
        .await?;
    assert!(!listed.items.is_empty());
    assert!(
        listed
            .items
            .iter()
            .all(|e| e.involved_object.kind.as_deref() == Some("EcsInstancePower"))
    );
    task.abort();
    sb.shutdown().await;
    Ok(())
}

/// `coordination.k8s.io/v1` Leases as leader election uses them: create (409 when it exists),
/// get (404 when absent), update carrying the resourceVersion just read (409 when stale),
/// delete, and a watch that sees every change.
#[tokio::test]
async fn leases_serve_leader_election() -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

    let (sb, client) = start(SandboxConfig::default()).await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    assert!(leases.get_opt("leader").await?.is_none());
    let mut watch = leases
        .watch(&WatchParams::default().fields("metadata.name=leader"), "0")
        .await?
        .boxed();
    let lease = |holder: &str| Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease("a")).await?;
    let again = leases
        .create(&PostParams::default(), &lease("b"))
        .await
        .unwrap_err();
    assert_eq!(api_error(&again).map(|s| s.code), Some(409));

    // Update with the version just read; then the same (now stale) version is a conflict.
    let mut update = created.clone();
    update.spec = lease("b").spec;
    let updated = leases
        .replace("leader", &PostParams::default(), &update)
        .await?;
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let mut stale = created.clone();
    stale.spec = lease("c").spec;
    let conflict = leases
        .replace("leader", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_error(&conflict).map(|s| s.code), Some(409));
    let read = leases.get("leader").await?;
    assert_eq!(
        read.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );

    leases.delete("leader", &DeleteParams::default()).await?;
    assert!(leases.get_opt("leader").await?.is_none());
    leases.create(&PostParams::default(), &lease("d")).await?;

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(WAIT, watch.try_next())
            .await??
            .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
        match event {
            WatchEvent::Added(l) => seen.push(format!("added {}", holder_of(&l))),
            WatchEvent::Modified(l) => seen.push(format!("modified {}", holder_of(&l))),
            WatchEvent::Deleted(l) => seen.push(format!("deleted {}", holder_of(&l))),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
        }
    }
    assert_eq!(seen, ["added a", "modified b", "deleted b", "added d"]);
    sb.shutdown().await;
    Ok(())
}

fn holder_of(lease: &k8s_openapi::api::coordination::v1::Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}
