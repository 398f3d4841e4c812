//! One reconcile of one `EcsInstancePower`, as a list of named steps:
//!
//! ```text
//! due (ledger) → desired (schedule) → access (claim, policy) → credentials → collect (fleet)
//!              → observe (ECS) → [access, with tags] → decide (pure) → act (ECS: access again
//!              right before the write) → report (pure) → write status → publish event
//!              → record (ledger)
//! ```
//!
//! **access** refuses a resource that does not own its instance (`InstanceClaimed`) or that the
//! access policy does not grant (`NotGranted`) before any ECS call; a grant that only a tag rule
//! could give is checked again once observe has read the instance's tags, and a refusal then
//! copies nothing observed into the status.
//!
//! With the fleet gateway in the context, **collect** reports a write that finished since the last
//! reconcile, **observe** reads the gateway's observed-state cache (or submits a batched read) and
//! **act** submits a write intent to the gateway's batches. None of them holds the controller slot
//! while a read, a write or a rate-limit token is outstanding: the reconcile returns and the
//! gateway re-queues the resource when it is done. Without a gateway, observe and act call ECS
//! directly.
//!
//! kube-runtime's `Controller` calls [`reconcile`] and, when a step fails (the Kubernetes API
//! failed), [`error_policy`]. Each step is a small function; each failure has its own [`Error`]
//! variant with a stable [`category`](Error::category). ECS failures are not errors here: they are
//! outcomes, reported in status and events, with the requeue time of their retry class. The three
//! side effects (the write call, the status write, the event) pass the [`WriteGate`](super::gate)
//! first and are bounded by the deadline it gives (the lease's validity under leader election); a
//! refused one is not made and the resource is requeued. A replica whose gate is closed (a
//! follower) makes no ECS call at all: its reconciles requeue at once, and the resources are
//! queued again, observed first, when it becomes the leader.

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
    CallOptions, Credentials, EcsError, InstanceObservation, StartInstance, StopInstance,
    StopOptions, WriteOutcome,
};
use crate::fleet::gateway::{self, Collected, FinishedWrite, WriteId, WriteRequest};
use crate::fleet::{Fleet, Group, Lane, Need, Observed};
use crate::vocabulary::{condition, reason};

use super::access::{Check, access_action};
use super::context::Context;
use super::credentials::{self, Problem};
use super::decide::{self, Plan, WriteCall};
use super::desired;
use super::gate::{Admission, Edge};
use super::ledger::{Due, Inputs};
use super::report::{self, Outcome, Report, Severity};
use super::schedule_notes;
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
    /// The status write did not finish by the deadline the write gate gave it (the lease's
    /// validity); it may or may not have been applied.
    #[error("the status write did not finish before the write deadline")]
    WriteDeadline,
}

impl Error {
    /// A stable PascalCase category, for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "NoNamespace",
            Error::ReadSecret(_) => "ReadSecret",
            Error::WriteStatus(_) => "WriteStatus",
            Error::WriteDeadline => "WriteDeadline",
        }
    }
}

/// Reconciles one resource.
///
/// # Errors
/// [`Error`] when the Kubernetes API fails; the controller retries through [`error_policy`].
pub async fn reconcile(obj: Arc<EcsInstancePower>, ctx: Arc<Context>) -> Result<Action, Error> {
    let pass = Pass::begin(&ctx, &obj)?;
    if !ctx.may_call_ecs() {
        return Ok(requeue_following(&ctx, &pass.key));
    }
    if !ctx.synced.access_synced() {
        // Judged only once the access policy and the namespaces are known.
        ctx.metrics.reconciled("pending");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let credentials_changed = match due(&ctx, &pass) {
        Ok(credentials_changed) => credentials_changed,
        Err(remaining) => return write_pending(&ctx, &obj, &pass.key, remaining).await,
    };
    let previous = previous_status(&ctx, &pass.key, &obj);
    let resolution = resolve_desired(&ctx, &obj, &previous);
    let steer = Steer::new(&obj, &previous, resolution.as_ref().ok());
    let (c, o, p, prev, st) = (&*ctx, &*obj, &pass, &previous, &steer);
    let finish = |happened, desired| finish(c, o, p, prev, st, desired, happened);
    // Steps that decide whether this resource may be managed at all go here, before credentials.
    let resolution = match resolution {
        Ok(resolution) => resolution,
        Err(problem) => return finish(Happened::NoCredentials(problem), steer.desired).await,
    };
    let wanted = access_action(steer.desired.toward());
    let need_tags = match ctx.access.check(&obj, wanted, None) {
        Check::Allowed => false,
        Check::NeedTags => true,
        Check::Refused(problem) => {
            return finish(refused(&ctx, &pass, problem), steer.desired).await;
        }
    };
    let creds = match resolve_credentials(&ctx, &obj, &pass.namespace).await? {
        Ok(creds) => creds,
        Err(problem) => return finish(Happened::NoCredentials(problem), steer.desired).await,
    };
    match collect(&ctx, &obj, steer.desired) {
        Collected::Nothing => {}
        Collected::Wait => return Ok(pending(&ctx)),
        Collected::Finished(write) => {
            return finish(Happened::from_write(*write), steer.desired).await;
        }
    }
    let observed = match observe(&ctx, &obj, &pass, &creds, &previous).await {
        Some(Ok(observed)) => observed,
        Some(Err(error)) => return finish(Happened::ObserveFailed(error), steer.desired).await,
        None => return Ok(pending(&ctx)),
    };
    if need_tags {
        let no_tags = std::collections::BTreeMap::new();
        let tags = observed.as_ref().map_or(&no_tags, |o| &o.tags);
        if let Some(problem) = refusal(ctx.access.check(&obj, wanted, Some(tags))) {
            return finish(refused(&ctx, &pass, problem), steer.desired).await;
        }
    }
    let (desired, plan) = plan(
        &obj,
        &resolution,
        &steer,
        observed.as_ref(),
        prev,
        credentials_changed,
    );
    match act_step(&ctx, &obj, &pass, &creds, plan, observed, &previous).await {
        Ok(happened) => finish(happened, desired).await,
        Err(action) => Ok(action),
    }
}

/// **desired**: the effective desired state, from the spec and the referenced schedule.
fn resolve_desired(
    ctx: &Context,
    obj: &EcsInstancePower,
    previous: &EcsInstancePowerStatus,
) -> Result<desired::Resolution, Problem> {
    desired::resolve(
        &obj.spec,
        ctx.schedule(obj).as_deref(),
        previous,
        ctx.clock.now(),
    )
}

/// **due**: whether this reconcile observes now (`Ok(credentials_changed)`), or only writes a
/// status an earlier reconcile could not write and waits this long (`Err(remaining)`). News from
/// the fleet gateway (a finished read or write, a changed observation) makes it due at once.
fn due(ctx: &Context, pass: &Pass) -> Result<bool, Duration> {
    let news = ctx.fleet.as_ref().is_some_and(|f| f.take_news(&pass.key));
    match ctx.ledger.check(&pass.key, &pass.inputs, pass.started) {
        Due::Later(remaining) if !news => Err(remaining),
        Due::Later(_) => Ok(false),
        Due::Now {
            credentials_changed,
        } => Ok(credentials_changed),
    }
}

/// **decide**, with the effective desired state: with no state to hold (unmanaged, or applied
/// already with enforcement `OnTransition`) the state the instance is in or heading for is taken
/// as desired, and no write call is planned. Returns the desired state the report describes
/// and the plan.
fn plan(
    obj: &EcsInstancePower,
    resolution: &desired::Resolution,
    steer: &Steer,
    observed: Option<&InstanceObservation>,
    previous: &EcsInstancePowerStatus,
    credentials_changed: bool,
) -> (desired::PowerState, Plan) {
    let desired = resolution
        .hold
        .or_else(|| observed.and_then(observed_power))
        .unwrap_or(steer.desired);
    let plan = decide(obj, desired, observed, previous, credentials_changed);
    if resolution.hold.is_none() && matches!(plan, Plan::Write(_)) {
        return (desired, Plan::Ready);
    }
    (desired, plan)
}

/// **act** for a write plan: what happened, or the requeue when the write is fenced or pending.
async fn act_step(
    ctx: &Context,
    obj: &EcsInstancePower,
    pass: &Pass,
    creds: &Credentials,
    plan: Plan,
    observed: Option<InstanceObservation>,
    previous: &EcsInstancePowerStatus,
) -> Result<Happened, Action> {
    let Plan::Write(call) = plan else {
        return Ok(Happened::Planned(observed, plan));
    };
    match act(ctx, obj, pass, creds, call, observed.as_ref(), previous).await {
        Acted::Done(result) => Ok(Happened::Acted(observed, call, result, None)),
        Acted::Fenced => Err(requeue_fenced(ctx)),
        Acted::Pending => Err(pending(ctx)),
        Acted::Refused(problem) => Ok(refused(ctx, pass, problem)),
    }
}

/// **access**, refused: the resource makes no ECS call; its instance leaves the gateway's sweep
/// and a write it queued is cancelled (one already sealed into a batch is withdrawn by the
/// gateway's own check).
fn refused(ctx: &Context, pass: &Pass, problem: Problem) -> Happened {
    if let Some(fleet) = &ctx.fleet {
        fleet.untrack(&pass.key);
    }
    Happened::Refused(problem)
}

/// The problem of a refusal; a check that still needs tags once they are known refuses too.
fn refusal(check: Check) -> Option<Problem> {
    match check {
        Check::Allowed => None,
        Check::Refused(problem) => Some(problem),
        Check::NeedTags => Some(Problem {
            verdict: crate::ecs::Verdict {
                reason: reason::NOT_GRANTED.to_string(),
                class: crate::ecs::ErrorClass::Terminal,
            },
            message: "the access policy could not decide with the instance's tags".to_string(),
        }),
    }
}

/// The access check of a write call, right before it is made (or submitted to a batch): the
/// claim and the policy may have changed since the reconcile began.
fn write_refused(
    ctx: &Context,
    obj: &EcsInstancePower,
    call: WriteCall,
    observed: Option<&InstanceObservation>,
) -> Option<Problem> {
    refusal(
        ctx.access
            .check(obj, access_action(call), observed.map(|o| &o.tags)),
    )
}

/// The tail of every observing reconcile: **report** → **write status** → **publish event** →
/// record the observation in the ledger.
async fn finish(
    ctx: &Context,
    obj: &EcsInstancePower,
    pass: &Pass,
    previous: &EcsInstancePowerStatus,
    steer: &Steer,
    desired: desired::PowerState,
    happened: Happened,
) -> Result<Action, Error> {
    let input = (desired, steer.unmanaged.as_deref());
    let mut report = report_step(ctx, obj, previous, input, &happened);
    if let (Happened::Refused(_), Some(event)) = (&happened, report.event.as_mut()) {
        event.action = crate::vocabulary::action::CHECK_ACCESS.to_string();
    }
    let notes = steer.apply(&mut report, previous, &happened, ctx);
    count_schedule_and_cause(ctx, obj, previous, steer, &notes, &happened);
    if let Happened::Acted(_, _, _, Some(sent)) = &happened {
        hold_until_settled(&mut report, *sent);
    }
    log_report(&pass.key, &report);
    let due = pass.started + report.requeue;
    // A status an earlier reconcile could not write is written even when this one adds nothing.
    let write = report.status_changed || ctx.ledger.has_unwritten(&pass.key);
    if write && !write_status(ctx, obj, pass, due, &report.status).await? {
        return Ok(requeue_fenced(ctx));
    }
    if let Some(note) = &report.event {
        publish(ctx, obj, note).await;
    }
    for note in &notes.events {
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
    hold: Option<desired::PowerState>,
    schedule: Option<crate::api::InstanceScheduleStatus>,
    /// Keep the previous `status.schedule` (the schedule could not be resolved).
    keep: bool,
    /// The `Ready` message while the schedule leaves the instance unmanaged.
    unmanaged: Option<String>,
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
            hold,
            schedule: resolution.map_or_else(
                || previous.schedule.as_deref().cloned(),
                |r| r.schedule.clone(),
            ),
            keep: resolution.is_none(),
            unmanaged: resolution.and_then(|r| r.unmanaged.clone()),
        }
    }

    /// Puts `status.schedule` into the report: `appliedState` becomes the held state once the
    /// instance is in it or ECS accepted the call; the requeue comes no later than the next
    /// transition (a passed transition is a due observation, so the ledger records that time too).
    /// Returns what the change of `status.schedule` tells (its Events, lag and lateness).
    fn apply(
        &self,
        report: &mut Report,
        previous: &EcsInstancePowerStatus,
        happened: &Happened,
        ctx: &Context,
    ) -> schedule_notes::Notes {
        let Some(mut schedule) = self.schedule.clone() else {
            return schedule_notes::Notes::default();
        };
        let now = ctx.clock.now();
        let mut notes = schedule_notes::Notes::default();
        if !self.keep {
            notes = schedule_notes::notes(
                previous.schedule.as_deref(),
                &schedule,
                now,
                schedule_notes::late_after(ctx.resync),
            );
            let reached = matches!(
                happened,
                Happened::Planned(_, Plan::Ready) | Happened::Acted(_, _, Ok(_), _)
            );
            if let (Some(hold), true) = (self.hold, reached)
                && schedule.applied_state.as_deref() != Some(hold.as_str())
            {
                schedule.applied_state = Some(hold.as_str().to_string());
                schedule.applied_time =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
            }
            if let Some(next) = &schedule.next_transition {
                let until = next.time.0.duration_since(now);
                let until = Duration::try_from(until).unwrap_or_default();
                report.requeue = report.requeue.min(until + Duration::from_millis(50));
            }
        }
        if previous.schedule.as_deref() != Some(&schedule) {
            report.status.schedule = Some(Box::new(schedule));
            report.status_changed = true;
        }
        notes
    }
}

/// Counts a change of the effective scheduled state, and a write call ECS accepted by its cause
/// (with the transition lag when a scheduled edge led to it).
fn count_schedule_and_cause(
    ctx: &Context,
    obj: &EcsInstancePower,
    previous: &EcsInstancePowerStatus,
    steer: &Steer,
    notes: &schedule_notes::Notes,
    happened: &Happened,
) {
    if let Some(state) = &notes.transition {
        ctx.metrics.schedule_transition(state);
    }
    let Happened::Acted(_, call, Ok(outcome), _) = happened else {
        return;
    };
    if outcome.dry_run {
        return;
    }
    let schedule = steer.schedule.as_ref().filter(|_| !steer.keep);
    let cause = schedule_notes::cause(obj.metadata.generation, previous, schedule, notes.late);
    ctx.metrics.acted(call.action(), cause.as_str());
    if let (schedule_notes::Cause::Schedule | schedule_notes::Cause::CatchUp, Some(lag)) =
        (cause, notes.lag)
    {
        ctx.metrics.transition_lag(lag);
    }
}

/// The power state an observed instance is in or heading for, when it has one.
fn observed_power(observed: &InstanceObservation) -> Option<desired::PowerState> {
    use crate::ecs::InstanceStatus;
    match observed.status {
        InstanceStatus::Running | InstanceStatus::Starting => Some(desired::PowerState::Running),
        InstanceStatus::Stopped | InstanceStatus::Stopping => Some(desired::PowerState::Stopped),
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
            key: key_of(obj),
            namespace: obj.namespace().ok_or(Error::NoNamespace)?,
            inputs: ledger_inputs(ctx, obj),
            started: Instant::now(),
        })
    }
}

/// The resource's key without the uid and resourceVersion [`ObjectRef::from_obj`] copies into it
/// (its equality and hash ignore both): the ledger keeps one key per resource for as long as the
/// resource lives.
pub(crate) fn key_of(obj: &EcsInstancePower) -> ObjectRef<EcsInstancePower> {
    gateway::resource_key(&obj.name_any(), obj.metadata.namespace.as_deref())
}

/// What observe, decide and act produced, owned (the report step borrows it).
enum Happened {
    NoCredentials(Problem),
    /// The claim or the access policy refused the resource: no ECS call, nothing observed kept.
    Refused(Problem),
    ObserveFailed(EcsError),
    Planned(Option<InstanceObservation>, Plan),
    /// The write call, what it answered, and for an ambiguous answer when it was sent.
    Acted(
        Option<InstanceObservation>,
        WriteCall,
        Result<WriteOutcome, EcsError>,
        Option<Instant>,
    ),
}

impl Happened {
    fn from_write(write: FinishedWrite) -> Self {
        let ambiguous = write.ambiguous.then_some(write.sent);
        Happened::Acted(write.observed, write.call, write.result, ambiguous)
    }
}

/// What **act** did.
enum Acted {
    /// The call was made and answered (or failed).
    Done(Result<WriteOutcome, EcsError>),
    /// The write gate refused it.
    Fenced,
    /// Submitted to the gateway (or waiting for the account): the gateway re-queues the resource.
    Pending,
    /// The claim or the access policy refused the write right before it.
    Refused(Problem),
}

/// **due**, its inputs: what an observation depends on.
fn ledger_inputs(ctx: &Context, obj: &EcsInstancePower) -> Inputs {
    Inputs {
        uid: obj.metadata.uid.clone(),
        generation: obj.metadata.generation,
        credentials: ctx.secret_version(obj),
        schedule: ctx.schedule_version(obj),
        access: ctx.access.fingerprint(obj),
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
    if let Some(pending) = ctx.ledger.unwritten(key) {
        let Some(admission) = ctx.gate_admit(Edge::Status) else {
            return Ok(requeue_fenced(ctx));
        };
        let api = Api::namespaced(
            ctx.client.clone(),
            obj.namespace().as_deref().unwrap_or_default(),
        );
        // On failure the status stays in the ledger for the next reconcile.
        let version = within(admission, status::write(&api, obj, &pending))
            .await
            .and_then(|r| r.map_err(Error::WriteStatus))?;
        ctx.ledger.clear_unwritten(key);
        ctx.ledger.record_written(obj, version, pending);
        debug!(resource = %key, "wrote the status a previous reconcile could not write");
    }
    debug!(resource = %key, ?remaining, "no relevant change; next observation not due");
    ctx.metrics.reconciled("skipped");
    Ok(Action::requeue(remaining))
}

/// The status this reconcile builds on: one computed earlier but not written (the patch failed),
/// or one written that the cache does not hold yet, is newer than the cached one. An unwritten
/// one stays in the ledger until a status is written: this reconcile may end before it writes
/// (a failed Secret read), and the status can be the only record of a write call ECS received.
fn previous_status(
    ctx: &Context,
    key: &ObjectRef<EcsInstancePower>,
    obj: &EcsInstancePower,
) -> EcsInstancePowerStatus {
    ctx.ledger
        .unwritten(key)
        .or_else(|| ctx.ledger.written_ahead_of(obj))
        .unwrap_or_else(|| obj.status.clone().unwrap_or_default())
}

/// A read, a write or an account lookup is outstanding: nothing is reported or recorded (the next
/// reconcile is due at once), the gateway re-queues the resource when it is done, and a long
/// fallback requeue covers a lost trigger. A status a previous reconcile could not write stays in
/// the ledger.
fn pending(ctx: &Context) -> Action {
    ctx.metrics.reconciled("pending");
    Action::requeue(ctx.resync.clamp(Duration::from_secs(1), PENDING_FALLBACK))
}

/// The longest a reconcile waiting for the gateway sleeps without a trigger.
const PENDING_FALLBACK: Duration = Duration::from_secs(30);

/// An ambiguous write (the instance may or may not have been acted on) is not sent again before a
/// read taken at least [`decide::SETTLE`] after it shows the old state: its retry gate and the
/// next reconcile are put at least that far out.
fn hold_until_settled(report: &mut Report, sent: Instant) {
    let remaining = (sent + decide::SETTLE).saturating_duration_since(Instant::now());
    let settled = Timestamp::now()
        + jiff::SignedDuration::try_from(remaining).unwrap_or(jiff::SignedDuration::ZERO);
    if let Some(retry) = report.status.retry.as_mut()
        && retry.next_attempt_time.0 < settled
    {
        retry.next_attempt_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(settled);
        report.status_changed = true;
    }
    report.requeue = report.requeue.max(remaining);
}

/// **collect**: a write submitted to the fleet gateway by an earlier reconcile of this resource.
/// A queued write the desired state no longer leads to is cancelled (replaced); one in flight is
/// waited for (a stop waits for the start's answer).
fn collect(ctx: &Context, obj: &EcsInstancePower, desired: desired::PowerState) -> Collected {
    let (Some(fleet), Some(uid)) = (&ctx.fleet, obj.metadata.uid.as_deref()) else {
        return Collected::Nothing;
    };
    fleet.collect(uid, obj.metadata.generation, desired.toward())
}

/// The group of a resource's calls: a Secret's credentials (AccessKey ID and a hash of the whole
/// set, so two Secrets with one key ID but different secrets never share a signed call), or the
/// operator's identity (its keys rotate under RRSA, its group does not).
fn group(obj: &EcsInstancePower, creds: &Credentials) -> Group {
    Group {
        identity: match obj.spec.credentials_secret_ref {
            Some(_) => format!(
                "{}#{}",
                creds.access_key_id,
                gateway::credentials_hash(creds)
            ),
            None => Group::OPERATOR.to_string(),
        },
        region: obj.spec.region_id.clone(),
    }
}

/// Whether the previous status is a steady state, observed by the sweep: Ready, suspended or
/// stalled.
fn steady(previous: &EcsInstancePowerStatus) -> bool {
    let is_true = |type_: &str| {
        previous
            .condition(type_)
            .is_some_and(|c| c.status == condition::TRUE)
    };
    is_true(condition::READY)
        || is_true(condition::STALLED)
        || previous
            .condition(condition::READY)
            .is_some_and(|c| c.reason == reason::SUSPENDED)
}

/// How fresh an observation this reconcile needs: a new resource, a new generation or changed
/// credentials read afresh in the user lane; a scheduled look at a steady resource takes the
/// sweep's cache; anything in progress (a transition poll, a retry, a post-write check) reads
/// afresh in the check lane.
fn need(ctx: &Context, pass: &Pass, previous: &EcsInstancePowerStatus) -> Need {
    if !ctx.ledger.scheduled(&pass.key, &pass.inputs) {
        Need::Fresh {
            after: pass.started,
            lane: Lane::User,
        }
    } else if steady(previous) {
        Need::Cached {
            max_age: cached_max_age(ctx, previous),
        }
    } else {
        Need::Fresh {
            after: pass.started,
            lane: Lane::Check,
        }
    }
}

/// The oldest sweep read a scheduled look at a steady resource accepts: two resync intervals,
/// but never a read taken before, or less than [`decide::SETTLE`] after, this resource's last
/// write call (accepted, refused or of unknown outcome). A steady status can follow right after a
/// write (a Secret gone missing stalls the resource), and a read from before the write, or one
/// lagging behind it, would say the write never happened. The gateway keeps the same floor for
/// the writes it sends (`Entry::serves`); this one, read from the status, also covers the single
/// calls (`dryRun`, `initLocalDisk`), which do not go through it.
fn cached_max_age(ctx: &Context, previous: &EcsInstancePowerStatus) -> Duration {
    let limit = ctx.resync.saturating_mul(2);
    StatusView::read(previous)
        .last_write_call_at()
        .map_or(limit, |at| {
            let since =
                Duration::try_from(Timestamp::now().duration_since(at)).unwrap_or(Duration::ZERO);
            limit.min(since.saturating_sub(decide::SETTLE))
        })
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

/// **observe**: the resource's instance, from the fleet gateway (`None`: a read is on its way) or
/// by `DescribeInstances` directly.
async fn observe(
    ctx: &Context,
    obj: &EcsInstancePower,
    pass: &Pass,
    creds: &Credentials,
    previous: &EcsInstancePowerStatus,
) -> Option<Result<Option<InstanceObservation>, EcsError>> {
    let Some(fleet) = &ctx.fleet else {
        return Some(
            ctx.ecs
                .describe_instance(creds, &obj.spec.region_id, &obj.spec.instance_id)
                .await,
        );
    };
    let need = need(ctx, pass, previous);
    match fleet.observe(
        &pass.key,
        &group(obj, creds),
        creds,
        &obj.spec.instance_id,
        need,
    ) {
        Observed::Ready(read) => Some(read),
        Observed::Pending => None,
    }
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

/// **act**: the write call of the plan, with the spec's options. Through the fleet gateway a
/// write joins a batch (`StartInstances` / `StopInstances`) and the reconcile returns at once; a dry
/// run or a start with `initLocalDisk` (which the batch calls cannot express), and every write when
/// batching is off (`--ecs-batch-size 1`), is the single call, made with a user-lane token of the
/// shared rate limiter.
async fn act(
    ctx: &Context,
    obj: &EcsInstancePower,
    pass: &Pass,
    creds: &Credentials,
    call: WriteCall,
    observed: Option<&InstanceObservation>,
    previous: &EcsInstancePowerStatus,
) -> Acted {
    // Every write, a batch entry as much as a single call, passes the gate first; a batch is
    // checked again when it is sent.
    let Some(admission) = ctx.gate_admit(Edge::Act) else {
        return Acted::Fenced;
    };
    if let Some(problem) = write_refused(ctx, obj, call, observed) {
        return Acted::Refused(problem);
    }
    let spec = &obj.spec;
    let single = spec.dry_run
        || (call == WriteCall::Start && spec.init_local_disk)
        || ctx.fleet.as_ref().is_some_and(|f| !f.batches_writes());
    let permit = match &ctx.fleet {
        Some(fleet) if !single => {
            let Some(uid) = obj.metadata.uid.clone() else {
                return Acted::Done(single_call(ctx, obj, creds, call, admission).await);
            };
            // A drift correction of a steady resource yields to users' changes.
            let lane = if ctx.ledger.scheduled(&pass.key, &pass.inputs) && steady(previous) {
                Lane::Background
            } else {
                Lane::User
            };
            fleet.submit_write(WriteRequest {
                resource: pass.key.clone(),
                id: WriteId {
                    uid,
                    generation: obj.metadata.generation,
                    call,
                },
                group: group(obj, creds),
                creds: creds.clone(),
                instance_id: spec.instance_id.clone(),
                stop: StopOptions {
                    force_stop: spec.force_stop,
                    stopped_mode: spec.stopped_mode,
                },
                observed: observed.cloned(),
                lane,
            });
            return Acted::Pending;
        }
        Some(fleet) => match single_permit(fleet, obj, pass, creds, call).await {
            Some(permit) => Some(permit),
            None => return Acted::Pending,
        },
        None => None,
    };
    // Waiting for the permit may have taken a while: the lease must still cover the call.
    let admission = if permit.is_some() {
        match ctx.gate_admit(Edge::Act) {
            Some(admission) => admission,
            None => return Acted::Fenced,
        }
    } else {
        admission
    };
    // The same for the access policy: a grant revoked while this call waited stops it.
    // (An unused permit is dropped: nothing was sent.)
    if let Some(problem) = write_refused(ctx, obj, call, observed) {
        return Acted::Refused(problem);
    }
    let result = single_call(ctx, obj, creds, call, admission).await;
    if let (Some(permit), Some(fleet)) = (permit, &ctx.fleet) {
        fleet.report_single(permit, &result);
    }
    Acted::Done(result)
}

async fn single_permit(
    fleet: &Arc<Fleet>,
    obj: &EcsInstancePower,
    pass: &Pass,
    creds: &Credentials,
    call: WriteCall,
) -> Option<crate::fleet::Permit<gateway::LimiterKey>> {
    fleet
        .single_permit(creds, &pass.key, &obj.spec.region_id, call)
        .await
}

/// `StartInstance` / `StopInstance` for this resource's instance.
async fn single_call(
    ctx: &Context,
    obj: &EcsInstancePower,
    creds: &Credentials,
    call: WriteCall,
    admission: Admission,
) -> Result<WriteOutcome, EcsError> {
    let options = CallOptions {
        deadline: admission.deadline,
    };
    let spec = &obj.spec;
    match call {
        WriteCall::Start => {
            let request = StartInstance {
                instance_id: spec.instance_id.clone(),
                init_local_disk: spec.init_local_disk,
                dry_run: spec.dry_run,
            };
            ctx.ecs
                .start_instance(creds, &spec.region_id, &request, options)
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
                .stop_instance(creds, &spec.region_id, &request, options)
                .await
        }
    }
}

/// **report**: the next status, event and requeue time. Its time is taken after the ECS calls, so
/// `lastAction.time` is when ECS accepted the call, not when the reconcile began.
fn report_step(
    ctx: &Context,
    obj: &EcsInstancePower,
    previous: &EcsInstancePowerStatus,
    (desired, unmanaged): (desired::PowerState, Option<&str>),
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
        unmanaged,
    };
    let outcome = match happened {
        Happened::NoCredentials(problem) | Happened::Refused(problem) => {
            Outcome::NoCredentials(problem)
        }
        Happened::ObserveFailed(error) => Outcome::ObserveFailed(error),
        Happened::Planned(observed, plan) => Outcome::Planned {
            observed: observed.as_ref(),
            plan,
        },
        Happened::Acted(observed, call, result, _) => Outcome::Acted {
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
    let Some(admission) = ctx.gate_admit(Edge::Status) else {
        keep();
        return Ok(false);
    };
    let api = Api::namespaced(ctx.client.clone(), &pass.namespace);
    match within(admission, status::write(&api, obj, new))
        .await
        .and_then(|r| r.map_err(Error::WriteStatus))
    {
        Ok(version) => {
            ctx.ledger.record_written(obj, version, new.clone());
            Ok(true)
        }
        Err(err) => {
            keep();
            Err(err)
        }
    }
}

/// **publish event**: an event is a courtesy; losing one (or a closed gate) does not fail the
/// reconcile.
async fn publish(ctx: &Context, obj: &EcsInstancePower, note: &report::EventNote) {
    let Some(admission) = ctx.gate_admit(Edge::Event) else {
        return;
    };
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
    match within(
        admission,
        ctx.recorder.publish(&event, &obj.object_ref(&())),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            warn!(resource = %ObjectRef::from_obj(obj), error = %err, "could not publish an event");
        }
        Err(_) => warn!(
            resource = %ObjectRef::from_obj(obj),
            "could not publish an event before the write deadline"
        ),
    }
}

/// Runs a Kubernetes write within the deadline of its admission (none without leader election).
async fn within<T>(
    admission: Admission,
    write: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    match admission.deadline {
        None => Ok(write.await),
        Some(deadline) => tokio::time::timeout_at(deadline, write)
            .await
            .map_err(|_| Error::WriteDeadline),
    }
}

/// This replica does not lead: no ECS call, no side effect. Look again after one resync interval;
/// acquiring the lease queues every resource at once.
fn requeue_following(ctx: &Context, key: &ObjectRef<EcsInstancePower>) -> Action {
    debug!(resource = %key, "not the leader; no ECS call");
    ctx.metrics.reconciled("following");
    Action::requeue(ctx.resync)
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
            info!(resource = %key, ready = status, reason, requeue = ?report.requeue, "{}", event.note);
        }
        (None, _) => {
            debug!(resource = %key, ready = status, reason, requeue = ?report.requeue, "reconciled");
        }
    }
}

/// What the controller does when [`reconcile`] fails: log, count, and retry soon. The retry keeps
/// the schedule: it writes a pending status or observes only when the observation is due, so a
/// failing API server never multiplies ECS calls.
// kube-runtime's `Controller::run` passes the object and the context by value.
#[allow(clippy::needless_pass_by_value)]
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
