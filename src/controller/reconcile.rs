//! One reconcile of one `EcsInstancePower`: schedule check → credentials → **observe** → **decide**
//! → **act** → **report** (DESIGN §4). kube-runtime's `Controller` calls [`reconcile`] and, when it
//! returns an error (the Kubernetes API failed), [`error_policy`].
//!
//! ECS failures are not errors here: they are outcomes, reported in status and events, with the
//! requeue time of their retry class.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{EcsInstancePower, EcsInstancePowerStatus};
use crate::ecs::{Credentials, EcsError, StartInstance, StopInstance, WriteOutcome};

use super::context::Context;
use super::credentials;
use super::decide::{self, Plan, WriteCall};
use super::report::{self, Outcome, Report, Severity};
use super::ledger::{Due, Inputs};

/// Why a reconcile failed (ECS failures are reported in status instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed (reading the Secret, patching the status).
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// The resource has no namespace (the CRD is namespaced, so this is a bug upstream).
    #[error("the resource has no namespace")]
    NoNamespace,
    /// The status could not be encoded.
    #[error("cannot encode the status: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Reconciles one resource.
///
/// # Errors
/// [`Error`] when the Kubernetes API fails; the controller retries through [`error_policy`].
pub async fn reconcile(obj: Arc<EcsInstancePower>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*obj);
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let inputs = Inputs {
        uid: obj.metadata.uid.clone(),
        generation: obj.metadata.generation,
        credentials: ctx.secret_version(&obj),
    };
    let started = Instant::now();
    let credentials_changed = match ctx.ledger.check(&key, &inputs, started) {
        Due::Later(remaining) => {
            // Our own status write, a label edit, a relist: nothing ECS could answer differently.
            // Only a status the last reconcile could not write is still to be written.
            if let Some(status) = ctx.ledger.take_unwritten(&key) {
                if let Err(err) = patch_status(&ctx, &obj, &namespace, &status).await {
                    ctx.ledger.keep_unwritten(&key, status);
                    return Err(err);
                }
                debug!(resource = %key, "wrote the status a previous reconcile could not write");
            }
            debug!(resource = %key, ?remaining, "no relevant change; next observation not due");
            ctx.metrics.reconciled("skipped");
            return Ok(Action::requeue(remaining));
        }
        Due::Now {
            credentials_changed,
        } => credentials_changed,
    };

    // A status computed earlier but not written (the patch failed) is newer than the cached one.
    let previous = ctx
        .ledger
        .take_unwritten(&key)
        .unwrap_or_else(|| obj.status.clone().unwrap_or_default());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let resolved = credentials::resolve(secrets, &obj, ctx.operator_credentials.as_ref()).await?;
    let now = Timestamp::now();
    // The report's time is taken after the ECS calls, so `lastAction.time` is when ECS accepted
    // the call, not when the reconcile began (calls can take seconds).
    let desired = super::desired::effective(&obj.spec);
    let input = |now| report::Input {
        spec: &obj.spec,
        desired,
        generation: obj.metadata.generation,
        previous: &previous,
        now,
        resync: ctx.resync,
        time_scale: ctx.time_scale,
    };
    let report = match resolved {
        Err(problem) => report::report(
            input(now),
            Outcome::NoCredentials(&problem),
            &mut rand::rng(),
        ),
        Ok(creds) => match ctx
            .ecs
            .describe_instance(&creds, &obj.spec.region_id, &obj.spec.instance_id)
            .await
        {
            Err(error) => report::report(
                input(Timestamp::now()),
                Outcome::ObserveFailed(&error),
                &mut rand::rng(),
            ),
            Ok(observed) => {
                let view = super::view::StatusView::read(&previous);
                let plan = decide::decide(decide::Input {
                    spec: &obj.spec,
                    desired,
                    generation: obj.metadata.generation,
                    observed: observed.as_ref(),
                    status: &view,
                    credentials_changed,
                    now,
                });
                let outcome = match plan {
                    Plan::Write(call) => Some((call, act(&ctx, &obj, &creds, call).await)),
                    _ => None,
                };
                let outcome = match &outcome {
                    Some((call, result)) => Outcome::Acted {
                        observed: observed.as_ref(),
                        call: *call,
                        result,
                    },
                    None => Outcome::Planned {
                        observed: observed.as_ref(),
                        plan: &plan,
                    },
                };
                report::report(input(Timestamp::now()), outcome, &mut rand::rng())
            }
        },
    };

    log_report(&key, &report);
    if report.status_changed
        && let Err(err) = patch_status(&ctx, &obj, &namespace, &report.status).await
    {
        // Keep the schedule (backoff, transition polls) and the status; the next reconcile writes
        // it without calling ECS, or builds on it when the next observation is due.
        ctx.ledger
            .record_unwritten(key, inputs, started + report.requeue, report.status);
        return Err(err);
    }
    if let Some(note) = &report.event {
        publish(&ctx, &obj, note).await;
    }
    ctx.ledger.record(key, inputs, started + report.requeue);
    ctx.metrics.reconciled(report.result.as_str());
    Ok(Action::requeue(report.requeue))
}

/// **act**: the write call of the plan, with the spec's options.
async fn act(
    ctx: &Context,
    obj: &EcsInstancePower,
    creds: &Credentials,
    call: WriteCall,
) -> Result<WriteOutcome, EcsError> {
    let spec = &obj.spec;
    match call {
        WriteCall::Start => {
            let request = StartInstance {
                instance_id: spec.instance_id.clone(),
                init_local_disk: spec.init_local_disk,
                dry_run: spec.dry_run,
            };
            ctx.ecs
                .start_instance(creds, &spec.region_id, &request)
                .await
        }
        WriteCall::Stop => {
            let request = StopInstance {
                instance_id: spec.instance_id.clone(),
                stopped_mode: spec.stopped_mode,
                force_stop: spec.force_stop,
                dry_run: spec.dry_run,
            };
            ctx.ecs
                .stop_instance(creds, &spec.region_id, &request)
                .await
        }
    }
}

/// The status fields, each written explicitly (as `null` when absent) so that a JSON merge patch
/// removes what the new status no longer has.
const STATUS_FIELDS: [&str; 7] = [
    "observedGeneration",
    "instanceStatus",
    "lastObservedTime",
    "conditions",
    "lastAction",
    "lastError",
    "retry",
];

async fn patch_status(
    ctx: &Context,
    obj: &EcsInstancePower,
    namespace: &str,
    status: &EcsInstancePowerStatus,
) -> Result<(), Error> {
    let mut value = serde_json::to_value(status)?;
    if let Some(map) = value.as_object_mut() {
        for field in STATUS_FIELDS {
            map.entry(field).or_insert(serde_json::Value::Null);
        }
    }
    let api: Api<EcsInstancePower> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({ "status": value });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, obj: &EcsInstancePower, note: &report::EventNote) {
    let event = Event {
        type_: match note.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        },
        reason: note.reason.clone(),
        note: Some(note.note.clone()),
        action: note.action.clone(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        // An event is a courtesy: losing one must not fail the reconcile.
        warn!(resource = %ObjectRef::from_obj(obj), error = %err, "could not publish an event");
    }
}

fn log_report(key: &ObjectRef<EcsInstancePower>, report: &Report) {
    let ready = report.status.condition(crate::api::CONDITION_READY);
    let (status, reason) =
        ready.map_or(("Unknown", ""), |c| (c.status.as_str(), c.reason.as_str()));
    match (&report.event, report.status.last_error.as_ref()) {
        (Some(event), Some(error)) if event.severity == Severity::Warning => warn!(
            resource = %key,
            ready = status,
            reason,
            code = %error.code,
            request_id = error.request_id.as_deref().unwrap_or(""),
            requeue = ?report.requeue,
            "{}", event.note
        ),
        (Some(event), _) => {
            info!(resource = %key, ready = status, reason, requeue = ?report.requeue, "{}", event.note)
        }
        (None, _) => {
            debug!(resource = %key, ready = status, reason, requeue = ?report.requeue, "reconciled")
        }
    }
}

/// What the controller does when [`reconcile`] fails: log, count, and retry soon. The retry keeps
/// the schedule: it writes a pending status or observes only when the observation is due, so a
/// failing API server never multiplies ECS calls.
pub fn error_policy(obj: Arc<EcsInstancePower>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*obj);
    warn!(resource = %key, error = %error, "reconcile failed; retrying");
    ctx.metrics.reconciled("error");
    let jitter = rand::random_range(0..5_000);
    Action::requeue(Duration::from_secs(5) + Duration::from_millis(jitter))
}
