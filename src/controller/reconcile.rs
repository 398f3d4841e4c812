//! One reconcile of one `EcsInstancePower`, as a list of named steps:
//!
//! ```text
//! due (ledger) → desired (schedule) → credentials → observe (ECS) → decide (pure) → act (ECS)
//!              → report (pure) → write status → publish event → record (ledger)
//! ```
//!
//! kube-runtime's `Controller` calls [`reconcile`] and, when a step fails (the Kubernetes API
//! failed), [`error_policy`]. Each step is a small function; each failure has its own [`Error`]
//! variant with a stable [`category`](Error::category). ECS failures are not errors here: they are
//! outcomes, reported in status and events, with the requeue time of their retry class. The three
//! side effects (the write call, the status write, the event) pass the [`WriteGate`](super::gate)
//! first; a refused one is not made and the resource is requeued.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{EcsInstancePower, EcsInstancePowerStatus};
use crate::ecs::{
    Credentials, EcsError, InstanceObservation, StartInstance, StopInstance, WriteOutcome,
};
use crate::vocabulary::condition;

use super::context::Context;
use super::credentials::{self, Problem};
use super::decide::{self, Plan, WriteCall};
use super::desired;
use super::gate::Edge;
use super::ledger::{Due, Inputs};
use super::report::{self, Outcome, Report, Severity};
use super::status;
use super::view::StatusView;

/// Why a reconcile failed (ECS failures are reported in status instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource has no namespace (the CRD is namespaced, so this is a bug upstream).
    #[error("the resource has no namespace")]
    NoNamespace,
    /// The credentials step could not read the referenced Secret.
    #[error("cannot read the credentials Secret: {0}")]
    ReadSecret(#[source] kube::Error),
    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    WriteStatus(#[source] status::WriteError),
}

impl Error {
    /// A stable PascalCase category, for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "NoNamespace",
            Error::ReadSecret(_) => "ReadSecret",
            Error::WriteStatus(_) => "WriteStatus",
        }
    }
}

/// Reconciles one resource.
///
/// # Errors
/// [`Error`] when the Kubernetes API fails; the controller retries through [`error_policy`].
pub async fn reconcile(obj: Arc<EcsInstancePower>, ctx: Arc<Context>) -> Result<Action, Error> {
    let pass = Pass::begin(&ctx, &obj)?;
    let credentials_changed = match ctx.ledger.check(&pass.key, &pass.inputs, pass.started) {
        Due::Later(remaining) => return write_pending(&ctx, &obj, &pass.key, remaining).await,
        Due::Now {
            credentials_changed,
        } => credentials_changed,
    };
    let previous = previous_status(&ctx, &pass.key, &obj);
    let resolution = desired::resolve(
        &obj.spec,
        ctx.schedule(&obj).as_deref(),
        &previous,
        Timestamp::now(),
    );
    let steer = Steer::new(&obj, &previous, resolution.as_ref().ok());
    let (c, o, p, prev, st) = (&*ctx, &*obj, &pass, &previous, &steer);
    let finish = |happened| finish(c, o, p, prev, st, happened);
    // Steps that decide whether this resource may be managed at all go here, before credentials.
    let resolution = match resolution {
        Ok(resolution) => resolution,
        Err(problem) => return finish(Happened::NoCredentials(problem)).await,
    };
    let creds = match resolve_credentials(&ctx, &obj, &pass.namespace).await? {
        Ok(creds) => creds,
        Err(problem) => return finish(Happened::NoCredentials(problem)).await,
    };
    let observed = match observe(&ctx, &obj, &creds).await {
        Ok(observed) => observed,
        Err(error) => return finish(Happened::ObserveFailed(error)).await,
    };
    // No state to hold (unmanaged, or applied already with enforcement OnTransition): the observed
    // state is taken as desired, so decide makes no write call.
    let desired = resolution
        .hold
        .or_else(|| observed.as_ref().and_then(observed_power))
        .unwrap_or(steer.desired);
    if let Ok(mut now) = steer.desired_now.lock() {
        *now = desired;
    }
    let plan = decide(&obj, desired, observed.as_ref(), prev, credentials_changed);
    let happened = match plan {
        Plan::Write(call) => match act(&ctx, &obj, &creds, call).await {
            Some(result) => Happened::Acted(observed, call, result),
            None => return Ok(requeue_fenced(&ctx)),
        },
        plan => Happened::Planned(observed, plan),
    };
    finish(happened).await
}

/// The tail of every observing reconcile: **report** → **write status** → **publish event** →
/// record the observation in the ledger.
async fn finish(
    ctx: &Context,
    obj: &EcsInstancePower,
    pass: &Pass,
    previous: &EcsInstancePowerStatus,
    steer: &Steer,
    happened: Happened,
) -> Result<Action, Error> {
    let mut report = report_step(ctx, obj, previous, steer.desired_now(), &happened);
    steer.apply(&mut report, previous, &happened);
    log_report(&pass.key, &report);
    let due = pass.started + report.requeue;
    if report.status_changed && !write_status(ctx, obj, pass, due, &report.status).await? {
        return Ok(requeue_fenced(ctx));
    }
    if let Some(note) = &report.event {
        publish(ctx, obj, note).await;
    }
    ctx.ledger
        .record(pass.key.clone(), pass.inputs.clone(), due);
    ctx.metrics.reconciled(report.result.as_str());
    Ok(Action::requeue(report.requeue))
}

/// What the desired step resolved, for the tail of the reconcile: the desired state of the
/// report, and the next `status.schedule` with the time of the next transition.
struct Steer {
    desired: desired::PowerState,
    desired_now: std::sync::Mutex<desired::PowerState>,
    hold: Option<desired::PowerState>,
    schedule: Option<crate::api::InstanceScheduleStatus>,
    /// Keep the previous `status.schedule` (the schedule could not be resolved).
    keep: bool,
}

impl Steer {
    fn new(
        obj: &EcsInstancePower,
        previous: &EcsInstancePowerStatus,
        resolution: Option<&desired::Resolution>,
    ) -> Self {
        let hold = resolution.and_then(|r| r.hold);
        let desired = hold.unwrap_or_else(|| desired::effective(&obj.spec));
        Steer {
            desired,
            desired_now: std::sync::Mutex::new(desired),
            hold,
            schedule: resolution.map_or_else(|| previous.schedule.clone(), |r| r.schedule.clone()),
            keep: resolution.is_none(),
        }
    }

    /// The desired state the report describes (the observed one when there is nothing to hold).
    fn desired_now(&self) -> desired::PowerState {
        self.desired_now.lock().map_or(self.desired, |d| *d)
    }

    /// Puts `status.schedule` into the report: `appliedState` becomes the held state once the
    /// instance is in it or ECS accepted the call; the requeue comes no later than the next
    /// transition (a passed transition is a due observation, so the ledger records that time too).
    fn apply(&self, report: &mut Report, previous: &EcsInstancePowerStatus, happened: &Happened) {
        let Some(mut schedule) = self.schedule.clone() else {
            return;
        };
        if !self.keep {
            let reached = matches!(
                happened,
                Happened::Planned(_, Plan::Ready) | Happened::Acted(_, _, Ok(_))
            );
            if let (Some(hold), true) = (self.hold, reached)
                && schedule.applied_state.as_deref() != Some(hold.as_str())
            {
                schedule.applied_state = Some(hold.as_str().to_string());
                schedule.applied_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::now(),
                ));
            }
            if let Some(next) = &schedule.next_transition {
                let until = next.time.0.duration_since(Timestamp::now());
                let until = Duration::try_from(until).unwrap_or_default();
                report.requeue = report.requeue.min(until + Duration::from_millis(50));
            }
        }
        if previous.schedule.as_ref() != Some(&schedule) {
            report.status.schedule = Some(schedule);
            report.status_changed = true;
        }
    }
}

/// The power state an observed instance is in, when it is in one.
fn observed_power(observed: &InstanceObservation) -> Option<desired::PowerState> {
    match observed.status {
        crate::ecs::InstanceStatus::Running => Some(desired::PowerState::Running),
        crate::ecs::InstanceStatus::Stopped => Some(desired::PowerState::Stopped),
        _ => None,
    }
}

/// What one reconcile works on: the resource's key and namespace, the inputs its observation
/// depends on, and when it started (due times count from there).
struct Pass {
    key: ObjectRef<EcsInstancePower>,
    namespace: String,
    inputs: Inputs,
    started: Instant,
}

impl Pass {
    fn begin(ctx: &Context, obj: &EcsInstancePower) -> Result<Self, Error> {
        Ok(Pass {
            key: ObjectRef::from_obj(obj),
            namespace: obj.namespace().ok_or(Error::NoNamespace)?,
            inputs: ledger_inputs(ctx, obj),
            started: Instant::now(),
        })
    }
}

/// What observe, decide and act produced, owned (the report step borrows it).
enum Happened {
    NoCredentials(Problem),
    ObserveFailed(EcsError),
    Planned(Option<InstanceObservation>, Plan),
    Acted(
        Option<InstanceObservation>,
        WriteCall,
        Result<WriteOutcome, EcsError>,
    ),
}

/// **due**, its inputs: what an observation depends on.
fn ledger_inputs(ctx: &Context, obj: &EcsInstancePower) -> Inputs {
    Inputs {
        uid: obj.metadata.uid.clone(),
        generation: obj.metadata.generation,
        credentials: ctx.secret_version(obj),
        schedule: ctx.schedule_version(obj),
    }
}

/// **due**, not yet: nothing ECS could answer differently (our own status write, a label edit, a
/// relist). Only a status the last reconcile could not write is still to be written.
async fn write_pending(
    ctx: &Context,
    obj: &EcsInstancePower,
    key: &ObjectRef<EcsInstancePower>,
    remaining: Duration,
) -> Result<Action, Error> {
    if let Some(pending) = ctx.ledger.take_unwritten(key) {
        if !ctx.gate_allows(Edge::Status) {
            ctx.ledger.keep_unwritten(key, pending);
            return Ok(requeue_fenced(ctx));
        }
        let api = Api::namespaced(
            ctx.client.clone(),
            obj.namespace().as_deref().unwrap_or_default(),
        );
        if let Err(err) = status::write(&api, obj, &pending).await {
            ctx.ledger.keep_unwritten(key, pending);
            return Err(Error::WriteStatus(err));
        }
        debug!(resource = %key, "wrote the status a previous reconcile could not write");
    }
    debug!(resource = %key, ?remaining, "no relevant change; next observation not due");
    ctx.metrics.reconciled("skipped");
    Ok(Action::requeue(remaining))
}

/// The status this reconcile builds on: one computed earlier but not written (the patch failed)
/// is newer than the cached one.
fn previous_status(
    ctx: &Context,
    key: &ObjectRef<EcsInstancePower>,
    obj: &EcsInstancePower,
) -> EcsInstancePowerStatus {
    ctx.ledger
        .take_unwritten(key)
        .unwrap_or_else(|| obj.status.clone().unwrap_or_default())
}

/// **credentials**: which credentials sign this resource's calls.
async fn resolve_credentials(
    ctx: &Context,
    obj: &EcsInstancePower,
    namespace: &str,
) -> Result<Result<Credentials, Problem>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    credentials::resolve(secrets, obj, ctx.operator_credentials.as_ref())
        .await
        .map_err(Error::ReadSecret)
}

/// **observe**: DescribeInstances for the resource's instance.
async fn observe(
    ctx: &Context,
    obj: &EcsInstancePower,
    creds: &Credentials,
) -> Result<Option<InstanceObservation>, EcsError> {
    ctx.ecs
        .describe_instance(creds, &obj.spec.region_id, &obj.spec.instance_id)
        .await
}

/// **decide**: the pure plan, from the previous status read once.
fn decide(
    obj: &EcsInstancePower,
    desired: desired::PowerState,
    observed: Option<&InstanceObservation>,
    previous: &EcsInstancePowerStatus,
    credentials_changed: bool,
) -> Plan {
    decide::decide(decide::Input {
        spec: &obj.spec,
        desired,
        generation: obj.metadata.generation,
        observed,
        status: &StatusView::read(previous),
        credentials_changed,
        now: Timestamp::now(),
    })
}

/// **act**: the write call of the plan, with the spec's options; `None` when the write gate
/// refused it (nothing was sent).
async fn act(
    ctx: &Context,
    obj: &EcsInstancePower,
    creds: &Credentials,
    call: WriteCall,
) -> Option<Result<WriteOutcome, EcsError>> {
    if !ctx.gate_allows(Edge::Act) {
        return None;
    }
    let spec = &obj.spec;
    let result = match call {
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
    };
    Some(result)
}

/// **report**: the next status, event and requeue time. Its time is taken after the ECS calls, so
/// `lastAction.time` is when ECS accepted the call, not when the reconcile began.
fn report_step(
    ctx: &Context,
    obj: &EcsInstancePower,
    previous: &EcsInstancePowerStatus,
    desired: desired::PowerState,
    happened: &Happened,
) -> Report {
    let input = report::Input {
        spec: &obj.spec,
        desired,
        generation: obj.metadata.generation,
        previous,
        now: Timestamp::now(),
        resync: ctx.resync,
        time_scale: ctx.time_scale,
    };
    let outcome = match happened {
        Happened::NoCredentials(problem) => Outcome::NoCredentials(problem),
        Happened::ObserveFailed(error) => Outcome::ObserveFailed(error),
        Happened::Planned(observed, plan) => Outcome::Planned {
            observed: observed.as_ref(),
            plan,
        },
        Happened::Acted(observed, call, result) => Outcome::Acted {
            observed: observed.as_ref(),
            call: *call,
            result,
        },
    };
    report::report(input, outcome, &mut rand::rng())
}

/// **write status**: `Ok(false)` when the write gate refused it. A status that could not be written
/// is kept in the ledger with the next due time (backoff, transition polls): the next reconcile
/// writes it without calling ECS, or builds on it when the next observation is due.
async fn write_status(
    ctx: &Context,
    obj: &EcsInstancePower,
    pass: &Pass,
    due: Instant,
    new: &EcsInstancePowerStatus,
) -> Result<bool, Error> {
    let keep = || {
        let (key, inputs) = (pass.key.clone(), pass.inputs.clone());
        ctx.ledger.record_unwritten(key, inputs, due, new.clone());
    };
    if !ctx.gate_allows(Edge::Status) {
        keep();
        return Ok(false);
    }
    let api = Api::namespaced(ctx.client.clone(), &pass.namespace);
    if let Err(err) = status::write(&api, obj, new).await {
        keep();
        return Err(Error::WriteStatus(err));
    }
    Ok(true)
}

/// **publish event**: an event is a courtesy; losing one (or a closed gate) does not fail the
/// reconcile.
async fn publish(ctx: &Context, obj: &EcsInstancePower, note: &report::EventNote) {
    if !ctx.gate_allows(Edge::Event) {
        return;
    }
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
        warn!(resource = %ObjectRef::from_obj(obj), error = %err, "could not publish an event");
    }
}

/// A side effect was refused at the write gate: look again after one resync interval (the
/// ledger keeps no observation, so the next reconcile observes afresh).
fn requeue_fenced(ctx: &Context) -> Action {
    ctx.metrics.reconciled("fenced");
    Action::requeue(ctx.resync)
}

fn log_report(key: &ObjectRef<EcsInstancePower>, report: &Report) {
    let ready = report.status.condition(condition::READY);
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
    warn!(resource = %key, error = %error, category = error.category(), "reconcile failed; retrying");
    ctx.metrics.reconciled("error");
    ctx.metrics.reconcile_failed(error.category());
    let jitter = rand::random_range(0..5_000);
    Action::requeue(Duration::from_secs(5) + Duration::from_millis(jitter))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
