//! The **report** step of the reconcile: from what happened in one reconcile, the next status,
//! the event to publish and when to reconcile again.
//!
//! Pure, like `decide`: the reconciler calls it and then writes the status only when
//! [`Report::status_changed`] says so. Condition messages are stable across retries and never hold a
//! `RequestId` or a timestamp (those go to `lastError` / `lastAction`), so a retry rewrites only
//! `status.retry` and `status.lastError`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::Rng;

use crate::api::{
    EcsInstancePowerSpec, EcsInstancePowerStatus, LastAction, LastError, RetryStatus,
};
use crate::ecs::{EcsError, ErrorClass, InstanceObservation, Verdict, WriteOutcome, classify};
use crate::vocabulary::condition::{
    READY as CONDITION_READY, RECONCILING as CONDITION_RECONCILING, STALLED as CONDITION_STALLED,
};
use crate::vocabulary::{action, condition, instance_status, reason};

use super::conditions::{self, Desired};
use super::credentials::Problem;
use super::decide::{Plan, WriteCall};
use super::desired::PowerState;
use super::retry::{self, BackoffPolicy};

/// What happened in one reconcile.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// No usable credentials: nothing was called.
    NoCredentials(&'a Problem),
    /// `DescribeInstances` failed.
    ObserveFailed(&'a EcsError),
    /// Observed and decided; no write call was made (the plan needs none).
    Planned {
        /// The observation (`None`: ECS does not report the instance).
        observed: Option<&'a InstanceObservation>,
        /// The plan of `decide`.
        plan: &'a Plan,
    },
    /// Observed, decided on a write call, and made it.
    Acted {
        /// The observation the call was decided on.
        observed: Option<&'a InstanceObservation>,
        /// The write call.
        call: WriteCall,
        /// What ECS answered.
        result: &'a Result<WriteOutcome, EcsError>,
    },
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Progress or success.
    Normal,
    /// An error or something that needs attention.
    Warning,
}

/// An event to publish on the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    /// Normal or Warning.
    pub severity: Severity,
    /// The condition reason.
    pub reason: String,
    /// What happened, for `kubectl describe`.
    pub note: String,
    /// The operator's action (`Observe`, `StartInstance`, …).
    pub action: String,
}

/// The result of one reconcile, for the `reconciles_total{result}` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// In the desired state (or dry run approved).
    Ready,
    /// A transition in flight.
    Progressing,
    /// A write call was accepted.
    Acted,
    /// A retryable error; retrying.
    Retrying,
    /// Needs someone to act.
    Stalled,
    /// `suspend` is set.
    Suspended,
    /// Waiting for the retry gate.
    BackingOff,
}

impl ResultKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Ready => "ready",
            ResultKind::Progressing => "progressing",
            ResultKind::Acted => "acted",
            ResultKind::Retrying => "retrying",
            ResultKind::Stalled => "stalled",
            ResultKind::Suspended => "suspended",
            ResultKind::BackingOff => "backing_off",
        }
    }
}

/// What the report step produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The next status.
    pub status: EcsInstancePowerStatus,
    /// Whether it differs from the previous one in anything but `lastObservedTime`.
    pub status_changed: bool,
    /// The event to publish, if any.
    pub event: Option<EventNote>,
    /// When to reconcile again.
    pub requeue: Duration,
    /// For metrics and logs.
    pub result: ResultKind,
}

/// Everything the report step reads besides the outcome.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The resource's spec.
    pub spec: &'a EcsInstancePowerSpec,
    /// The effective desired power state.
    pub desired: PowerState,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The status before this reconcile.
    pub previous: &'a EcsInstancePowerStatus,
    /// Now.
    pub now: Timestamp,
    /// `--resync-interval`.
    pub resync: Duration,
    /// Multiplies every backoff, poll and re-check delay (not the resync); 1.0 in production, less
    /// in tests and demos (`--time-scale`).
    pub time_scale: f64,
    /// The message of `Ready=True` reason `Unmanaged` when the schedule leaves the instance alone
    /// now (its `actions` exclude the state it names): an instance at rest or in a transition
    /// nobody asked the operator for is reported that way, not as the desired state.
    pub unmanaged: Option<&'a str>,
}

/// Computes the next status, event and requeue time.
pub fn report(input: Input<'_>, outcome: Outcome<'_>, rng: &mut impl Rng) -> Report {
    let mut builder = Builder::new(input);
    match outcome {
        Outcome::NoCredentials(problem) => {
            builder.failed(&problem.verdict, problem.message.clone(), None, None, rng)
        }
        Outcome::ObserveFailed(error) => {
            let verdict = classify(error);
            let message = error_message(action::DESCRIBE_INSTANCES, error, &verdict);
            builder.failed(
                &verdict,
                message,
                Some((action::DESCRIBE_INSTANCES, error)),
                None,
                rng,
            )
        }
        Outcome::Planned { observed, plan } => {
            builder.observed(observed);
            builder.planned(plan, observed, rng)
        }
        Outcome::Acted {
            observed,
            call,
            result,
        } => {
            builder.observed(observed);
            match result {
                Ok(outcome) => builder.accepted(call, outcome, rng),
                Err(error) => {
                    let verdict = classify(error);
                    let message = error_message(call.action(), error, &verdict);
                    let observed_status = observed.map(|o| o.status.as_str().to_string());
                    builder.failed(
                        &verdict,
                        message,
                        Some((call.action(), error)),
                        observed_status,
                        rng,
                    )
                }
            }
        }
    }
}

struct Builder<'a> {
    input: Input<'a>,
    status: EcsInstancePowerStatus,
    now: Time,
}

impl<'a> Builder<'a> {
    fn new(input: Input<'a>) -> Self {
        let mut status = input.previous.clone();
        status.observed_generation = input.generation;
        Builder {
            input,
            status,
            now: Time(input.now),
        }
    }

    fn scaled(&self, delay: Duration) -> Duration {
        let scale = self.input.time_scale;
        if scale.is_finite() && scale > 0.0 && scale < 1.0 {
            delay.mul_f64(scale)
        } else {
            delay
        }
    }

    fn instance(&self) -> &str {
        &self.input.spec.instance_id
    }

    fn desired(&self) -> &'static str {
        self.input.desired.as_str()
    }

    /// A successful `DescribeInstances`: records what it saw, and ends a backoff of failed
    /// observations (or missing credentials); a backoff of write calls stays.
    fn observed(&mut self, observed: Option<&InstanceObservation>) {
        let write_backoff = self.status.retry.as_ref().is_some_and(|r| {
            r.action
                .as_deref()
                .and_then(WriteCall::from_action)
                .is_some()
        });
        if !write_backoff {
            self.status.retry = None;
        }
        self.status.instance_status = Some(match observed {
            Some(o) => o.status.as_str().to_string(),
            None => instance_status::NOT_FOUND.to_string(),
        });
        self.status.last_observed_time = Some(self.now.clone());
    }

    fn set(&mut self, type_: &str, desired: Option<Desired>) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            desired,
            self.input.generation,
            &self.now,
        );
    }

    /// When a stalled resource is observed again: the terminal re-check, or one resync interval
    /// when that comes first.
    fn recheck(&self, rng: &mut impl Rng) -> Duration {
        self.scaled(retry::TERMINAL_RECHECK)
            .min(retry::resync_delay(self.input.resync, rng))
    }

    /// Ready=True: no error, no retry.
    fn ready(&mut self, reason: &str, message: String) {
        self.set(CONDITION_READY, Some(Desired::truthy(reason, message)));
        self.set(CONDITION_RECONCILING, None);
        self.set(CONDITION_STALLED, None);
        self.status.retry = None;
        self.status.last_error = None;
    }

    /// Ready=False and Reconciling=True with the same reason.
    fn progressing(&mut self, reason: &str, message: String) {
        self.set(
            CONDITION_READY,
            Some(Desired::falsy(reason, message.clone())),
        );
        self.set(
            CONDITION_RECONCILING,
            Some(Desired::truthy(reason, message)),
        );
        self.set(CONDITION_STALLED, None);
        self.status.retry = None;
    }

    /// Ready=False and Stalled=True with the same reason.
    fn stalled(&mut self, reason: &str, message: String) {
        self.set(
            CONDITION_READY,
            Some(Desired::falsy(reason, message.clone())),
        );
        self.set(CONDITION_RECONCILING, None);
        self.set(CONDITION_STALLED, Some(Desired::truthy(reason, message)));
    }

    fn planned(
        mut self,
        plan: &Plan,
        observed: Option<&InstanceObservation>,
        rng: &mut impl Rng,
    ) -> Report {
        let observed_status = observed
            .map_or(instance_status::NOT_FOUND, |o| o.status.as_str())
            .to_string();
        let (requeue, result) = match plan {
            Plan::Ready | Plan::Wait { .. } if self.input.unmanaged.is_some() => {
                let message = self.input.unmanaged.unwrap_or_default().to_string();
                self.ready(reason::UNMANAGED, message);
                let requeue = match plan {
                    Plan::Wait { after, .. } => self.scaled(*after),
                    _ => retry::resync_delay(self.input.resync, rng),
                };
                (requeue, ResultKind::Ready)
            }
            Plan::Ready => {
                self.ready(
                    self.desired(),
                    format!(
                        "Instance {} is {}, as desired",
                        self.instance(),
                        self.desired()
                    ),
                );
                (
                    retry::resync_delay(self.input.resync, rng),
                    ResultKind::Ready,
                )
            }
            Plan::Wait { transition, after } => {
                let message = format!(
                    "Instance {} is {observed_status}; waiting for it to be {}",
                    self.instance(),
                    self.desired()
                );
                self.progressing(transition.reason(), message);
                (self.scaled(*after), ResultKind::Progressing)
            }
            Plan::Stall(verdict) => {
                let message = match observed {
                    None => format!(
                        "DescribeInstances in region {} does not return instance {}: check spec.instanceId, \
                         spec.regionId and that the credentials belong to the instance's account",
                        self.input.spec.region_id,
                        self.instance()
                    ),
                    Some(o) => format!(
                        "Instance {} carries the ECS operation lock(s) {}; no StartInstance or StopInstance is sent \
                         while it is locked. {}",
                        self.instance(),
                        o.lock_reasons.join(", "),
                        lock_hint(&verdict.reason)
                    ),
                };
                self.stalled(&verdict.reason, message);
                self.status.retry = None;
                (self.recheck(rng), ResultKind::Stalled)
            }
            Plan::Suspended => {
                let message = format!(
                    "spec.suspend is set: observing only; instance {} is {observed_status}, desired {}",
                    self.instance(),
                    self.desired()
                );
                self.set(
                    CONDITION_READY,
                    Some(Desired::falsy(reason::SUSPENDED, message)),
                );
                self.set(CONDITION_RECONCILING, None);
                self.set(CONDITION_STALLED, None);
                self.status.retry = None;
                (
                    retry::resync_delay(self.input.resync, rng),
                    ResultKind::Suspended,
                )
            }
            Plan::Hold { until } => {
                let wait =
                    Duration::try_from(until.duration_since(self.input.now)).unwrap_or_default();
                // Observed again at least every resync interval while the gate holds.
                let wait = wait.max(self.scaled(Duration::from_secs(1)));
                (
                    wait.min(retry::resync_delay(self.input.resync, rng)),
                    ResultKind::BackingOff,
                )
            }
            Plan::DryRunDone => (
                retry::resync_delay(self.input.resync, rng),
                ResultKind::Ready,
            ),
            // A write plan that was not acted on: nothing happened; look again soon.
            Plan::Write(_) => (
                self.scaled(retry::transition_poll(None)),
                ResultKind::Progressing,
            ),
        };
        self.finish(requeue, result, None)
    }

    fn accepted(mut self, call: WriteCall, outcome: &WriteOutcome, rng: &mut impl Rng) -> Report {
        self.status.last_action = Some(LastAction {
            action: call.action().to_string(),
            request_id: outcome.request_id.clone(),
            time: self.now.clone(),
            dry_run: outcome.dry_run,
        });
        self.status.last_error = None;
        if outcome.dry_run {
            let message = format!(
                "dryRun: ECS approved {} with DryRun=true for instance {} (now {}); nothing was changed",
                call.action(),
                self.instance(),
                self.status.instance_status.as_deref().unwrap_or("unknown"),
            );
            self.ready(reason::DRY_RUN_SUCCEEDED, message.clone());
            let event = EventNote {
                severity: Severity::Normal,
                reason: reason::DRY_RUN_SUCCEEDED.to_string(),
                note: message,
                action: call.action().to_string(),
            };
            let requeue = retry::resync_delay(self.input.resync, rng);
            return self.finish(requeue, ResultKind::Ready, Some(event));
        }
        let reason = call.transition().reason();
        self.progressing(
            reason,
            format!(
                "{} accepted; waiting for instance {} to be {}",
                call.action(),
                self.instance(),
                self.desired()
            ),
        );
        let event = EventNote {
            severity: Severity::Normal,
            reason: reason.to_string(),
            note: format!(
                "ECS accepted {} for instance {} (RequestId {})",
                call.action(),
                self.instance(),
                outcome.request_id.as_deref().unwrap_or("none")
            ),
            action: call.action().to_string(),
        };
        let requeue = self.scaled(retry::transition_poll(Some(Duration::ZERO)));
        self.finish(requeue, ResultKind::Acted, Some(event))
    }

    fn failed(
        mut self,
        verdict: &Verdict,
        message: String,
        call: Option<(&str, &EcsError)>,
        observed_status: Option<String>,
        rng: &mut impl Rng,
    ) -> Report {
        if let Some(status) = observed_status {
            self.status.instance_status = Some(status);
            self.status.last_observed_time = Some(self.now.clone());
        }
        let previous = self.input.previous;
        let action = call.map(|(action, _)| action);
        let same_generation = previous.observed_generation == self.input.generation;
        let attempts = retry::attempt(
            previous.retry.as_deref().filter(|_| same_generation),
            verdict.class,
            action,
        );
        // A conflict that does not go away within a few re-observations (say, a disk being
        // replaced) is backed off like a transient error instead of every 2–5 s forever.
        let class = match verdict.class {
            ErrorClass::Conflict if attempts > retry::CONFLICT_ATTEMPTS => ErrorClass::Transient,
            class => class,
        };
        let delay = match BackoffPolicy::for_class(class) {
            Some(policy) => policy.delay(u32::try_from(attempts).unwrap_or(1), rng),
            None => retry::TERMINAL_RECHECK,
        };
        let delay = self.scaled(delay);
        let next = self.input.now + SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO);
        self.status.retry = Some(Box::new(RetryStatus {
            attempts,
            class: Some(verdict.class.as_str().to_string()),
            action: action.map(str::to_string),
            next_attempt_time: Time(next),
        }));
        // A terminal failure repeats its call only at the re-check, but the instance is observed
        // every resync interval, so a lifted lock or a fixed account is noticed within one.
        let requeue = if verdict.class.is_retryable() {
            delay
        } else {
            delay.min(retry::resync_delay(self.input.resync, rng))
        };
        self.status.last_error = Some(Box::new(match call {
            Some((action, error)) => LastError {
                action: Some(action.to_string()),
                code: error
                    .code()
                    .map_or_else(|| verdict.reason.clone(), str::to_string),
                message: error
                    .message()
                    .map_or_else(|| error.to_string(), str::to_string),
                http_status: error.http_status().map(i32::from),
                request_id: error.request_id().map(str::to_string),
                time: self.now.clone(),
            },
            None => LastError {
                action: None,
                code: verdict.reason.clone(),
                message: message.clone(),
                http_status: None,
                request_id: None,
                time: self.now.clone(),
            },
        }));
        let result = if verdict.class.is_retryable() {
            self.set(
                CONDITION_READY,
                Some(Desired::falsy(&verdict.reason, message.clone())),
            );
            self.set(
                CONDITION_RECONCILING,
                Some(Desired::truthy(reason::RETRYING, message.clone())),
            );
            self.set(CONDITION_STALLED, None);
            ResultKind::Retrying
        } else {
            self.stalled(&verdict.reason, message.clone());
            ResultKind::Stalled
        };
        let event = EventNote {
            severity: Severity::Warning,
            reason: verdict.reason.clone(),
            note: message,
            action: call
                .map_or(action::RESOLVE_CREDENTIALS, |(action, _)| action)
                .to_string(),
        };
        self.finish(requeue, result, Some(event))
    }

    fn finish(self, requeue: Duration, result: ResultKind, event: Option<EventNote>) -> Report {
        let status_changed =
            without_observed_time(&self.status) != without_observed_time(self.input.previous);
        let event = event.or_else(|| self.ready_changed_event());
        Report {
            status: self.status,
            status_changed,
            event,
            requeue,
            result,
        }
    }

    /// A Normal or Warning event when the Ready condition changed status or reason.
    fn ready_changed_event(&self) -> Option<EventNote> {
        let new = self.status.condition(CONDITION_READY)?;
        let old = self.input.previous.condition(CONDITION_READY);
        if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
            return None;
        }
        let stalled = self
            .status
            .condition(CONDITION_STALLED)
            .is_some_and(|c| c.status == condition::TRUE);
        Some(EventNote {
            severity: if stalled {
                Severity::Warning
            } else {
                Severity::Normal
            },
            reason: new.reason.clone(),
            note: new.message.clone(),
            action: action::OBSERVE.to_string(),
        })
    }
}

fn without_observed_time(status: &EcsInstancePowerStatus) -> EcsInstancePowerStatus {
    EcsInstancePowerStatus {
        last_observed_time: None,
        ..status.clone()
    }
}

/// A stable condition message for a failed call: the action, what ECS said (code and HTTP status,
/// never the `RequestId`, the ECS message or anything else that changes between attempts), and what
/// happens next.
pub fn error_message(action: &str, error: &EcsError, verdict: &Verdict) -> String {
    let what = match error {
        EcsError::Api {
            code, http_status, ..
        } => format!("ECS answered {code} (HTTP {http_status})"),
        EcsError::Unreachable { .. } => {
            "the ECS endpoint could not be reached (connection error or timeout)".into()
        }
        EcsError::Malformed { http_status, .. } => {
            format!("ECS returned a response that could not be parsed (HTTP {http_status})")
        }
        EcsError::HttpStatus { http_status, .. } => {
            format!("the ECS endpoint answered HTTP {http_status}")
        }
        EcsError::InvalidRequest { .. } => "the request is invalid and was not sent".into(),
    };
    format!("{action} failed: {what}. {}", next_step(verdict))
}

/// What the operator does next, and what a person can do, per reason and class. The delays are
/// rendered from the backoff constants of [`retry`], so the text cannot drift from the behaviour.
fn next_step(verdict: &Verdict) -> String {
    let recheck = retry::every(retry::TERMINAL_RECHECK);
    match verdict.reason.as_str() {
        reason::CREDENTIALS_REJECTED => format!(
            "ECS rejected the credentials: check the AccessKey pair (or STS token) and that it is enabled. Re-checked \
             {recheck} and at once when the Secret or the spec changes."
        ),
        reason::FORBIDDEN => format!(
            "The credentials lack a RAM permission for this call (ecs:DescribeInstances, ecs:StartInstance, \
             ecs:StopInstance). Re-checked {recheck}."
        ),
        reason::INSUFFICIENT_BALANCE => {
            format!("Top up the Alibaba Cloud account. Re-checked {recheck}.")
        }
        reason::INSTANCE_EXPIRED => {
            format!("Renew the subscription instance. Re-checked {recheck}.")
        }
        reason::INSTANCE_NOT_FOUND => {
            format!("Check spec.instanceId and spec.regionId. Re-checked {recheck}.")
        }
        _ => match (verdict.class, BackoffPolicy::for_class(verdict.class)) {
            (ErrorClass::Throttled, Some(policy)) => format!(
                "The ECS API rate limit was hit; retrying with backoff ({}).",
                policy.span()
            ),
            (ErrorClass::Capacity, Some(policy)) => format!(
                "ECS has no capacity for this instance right now; retrying with backoff ({}).",
                policy.span()
            ),
            (ErrorClass::Conflict, _) => {
                "The instance is not in a state that allows this call (another operation may be in \
                 progress); re-checking in a few seconds."
                    .to_string()
            }
            (ErrorClass::Terminal, _) | (_, None) => format!(
                "This needs someone to act; re-checked {recheck} and at once when the spec or the referenced \
                 Secret changes."
            ),
            (ErrorClass::Transient, Some(policy)) => {
                format!("Retrying with backoff ({}).", policy.span())
            }
        },
    }
}

fn lock_hint(reason: &str) -> String {
    if reason == reason::INSTANCE_LOCKED_FOR_SECURITY {
        "A security lock is set by Alibaba Cloud security: see the ECS console and the security notices."
            .to_string()
    } else {
        format!(
            "Resolve the lock (for example, overdue payment) in the ECS console; re-checked {}.",
            retry::every(retry::TERMINAL_RECHECK)
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::api::DesiredState;
    use crate::controller::decide::Transition;
    use crate::ecs::InstanceStatus;

    use crate::controller::fixtures::{seen, spec};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn run(
        spec: &EcsInstancePowerSpec,
        previous: &EcsInstancePowerStatus,
        now: Timestamp,
        outcome: Outcome<'_>,
    ) -> Report {
        let input = Input {
            spec,
            desired: crate::controller::desired::effective(spec),
            generation: Some(1),
            previous,
            now,
            resync: Duration::from_secs(300),
            time_scale: 1.0,
            unmanaged: None,
        };
        report(input, outcome, &mut StdRng::seed_from_u64(3))
    }

    /// The report after `StartInstance` on a Stopped instance whose desired state is Running.
    fn start(
        previous: &EcsInstancePowerStatus,
        now: Timestamp,
        write: &Result<WriteOutcome, EcsError>,
    ) -> Report {
        let observed = seen(InstanceStatus::Stopped, &[]);
        let outcome = Outcome::Acted {
            observed: Some(&observed),
            call: WriteCall::Start,
            result: write,
        };
        run(&spec(DesiredState::Running), previous, now, outcome)
    }

    fn cond<'s>(status: &'s EcsInstancePowerStatus, type_: &str) -> Option<(&'s str, &'s str)> {
        status
            .condition(type_)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    fn api_error(code: &str, http_status: u16, request_id: &str) -> EcsError {
        EcsError::Api {
            code: code.into(),
            message: format!("message of {code}"),
            http_status,
            request_id: Some(request_id.into()),
            retry_after: None,
        }
    }

    #[test]
    fn an_unmanaged_instance_is_ready_with_reason_unmanaged_at_rest_and_in_transition() {
        let spec = spec(DesiredState::Running);
        let message = "EcsPowerSchedule office-hours says Running now and its actions exclude that \
                       state: instance i-x is left as it is";
        for (status, plan) in [
            (InstanceStatus::Stopped, Plan::Ready),
            (
                InstanceStatus::Starting,
                Plan::Wait {
                    transition: crate::controller::decide::Transition::Starting,
                    after: Duration::from_secs(5),
                },
            ),
        ] {
            let observed = seen(status, &[]);
            let input = Input {
                spec: &spec,
                desired: crate::controller::desired::PowerState::Stopped,
                generation: Some(1),
                previous: &EcsInstancePowerStatus::default(),
                now: at(0),
                resync: Duration::from_secs(300),
                time_scale: 1.0,
                unmanaged: Some(message),
            };
            let outcome = Outcome::Planned {
                observed: Some(&observed),
                plan: &plan,
            };
            let report = report(input, outcome, &mut StdRng::seed_from_u64(3));
            assert_eq!(
                cond(&report.status, CONDITION_READY),
                Some(("True", "Unmanaged"))
            );
            let ready = report.status.condition(CONDITION_READY).unwrap();
            assert_eq!(ready.message, message);
            assert!(report.status.condition(CONDITION_RECONCILING).is_none());
        }
    }

    #[test]
    fn ready_then_steady_state_writes_nothing() {
        let spec = spec(DesiredState::Running);
        let observed = seen(InstanceStatus::Running, &[]);
        let first = run(
            &spec,
            &EcsInstancePowerStatus::default(),
            at(0),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &Plan::Ready,
            },
        );
        assert!(first.status_changed);
        assert_eq!(
            cond(&first.status, CONDITION_READY),
            Some(("True", "Running"))
        );
        assert_eq!(first.status.instance_status.as_deref(), Some("Running"));
        assert_eq!(first.status.observed_generation, Some(1));
        assert_eq!(
            first.event.as_ref().map(|e| e.reason.as_str()),
            Some("Running")
        );
        assert!(
            first.requeue >= Duration::from_secs(270) && first.requeue <= Duration::from_secs(330)
        );

        let again = run(
            &spec,
            &first.status,
            at(300),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &Plan::Ready,
            },
        );
        assert!(
            !again.status_changed,
            "a resync that finds nothing new must not write status"
        );
        assert!(again.event.is_none());
    }

    #[test]
    fn accepted_start_records_the_action_and_progresses() {
        let write = Ok(WriteOutcome {
            request_id: Some("RID-1".into()),
            dry_run: false,
        });
        let r = start(&EcsInstancePowerStatus::default(), at(0), &write);
        assert_eq!(
            cond(&r.status, CONDITION_READY),
            Some(("False", "Starting"))
        );
        assert_eq!(
            cond(&r.status, CONDITION_RECONCILING),
            Some(("True", "Starting"))
        );
        assert_eq!(cond(&r.status, CONDITION_STALLED), None);
        let action = r.status.last_action.as_ref().unwrap();
        assert_eq!(
            (action.action.as_str(), action.request_id.as_deref()),
            ("StartInstance", Some("RID-1"))
        );
        assert_eq!(r.requeue, Duration::from_secs(2));
        assert_eq!(r.result, ResultKind::Acted);
        let event = r.event.unwrap();
        assert!(
            event.note.contains("RID-1"),
            "the event carries the RequestId for support"
        );
        for c in &r.status.conditions {
            assert!(
                !c.message.contains("RID-1"),
                "conditions never carry a RequestId"
            );
        }
    }

    #[test]
    fn capacity_errors_back_off_with_growing_attempts_and_stable_conditions() {
        let mut status = EcsInstancePowerStatus::default();
        let mut ceilings = Vec::new();
        let mut conditions_seen = Vec::new();
        for attempt in 1..=4 {
            let error = Err(api_error(
                "OperationDenied.NoStock",
                403,
                &format!("RID-{attempt}"),
            ));
            let r = start(&status, at(attempt * 1000), &error);
            assert_eq!(cond(&r.status, CONDITION_READY), Some(("False", "NoStock")));
            assert_eq!(
                cond(&r.status, CONDITION_RECONCILING),
                Some(("True", "Retrying"))
            );
            assert_eq!(
                cond(&r.status, CONDITION_STALLED),
                None,
                "capacity errors do not stall"
            );
            let retry = r.status.retry.clone().unwrap();
            assert_eq!(retry.attempts, i32::try_from(attempt).unwrap());
            let policy = BackoffPolicy::for_class(ErrorClass::Capacity).unwrap();
            assert!(
                r.requeue >= policy.base
                    && r.requeue <= policy.ceiling(u32::try_from(attempt).unwrap())
            );
            assert_eq!(
                retry.next_attempt_time.0,
                at(attempt * 1000) + SignedDuration::try_from(r.requeue).unwrap()
            );
            let error = r.status.last_error.clone().unwrap();
            assert_eq!(error.code, "OperationDenied.NoStock");
            assert_eq!(
                error.request_id.as_deref(),
                Some(format!("RID-{attempt}").as_str())
            );
            assert_eq!(error.action.as_deref(), Some("StartInstance"));
            ceilings.push(r.requeue);
            conditions_seen.push(
                r.status
                    .conditions
                    .iter()
                    .map(|c| (c.message.clone(), c.last_transition_time.clone()))
                    .collect::<Vec<_>>(),
            );
            status = r.status;
        }
        assert!(
            conditions_seen.windows(2).all(|w| w[0] == w[1]),
            "conditions must not change between retries"
        );
    }

    #[test]
    fn a_lasting_conflict_backs_off_like_a_transient_error() {
        let error = Err(api_error("IncorrectInstanceStatus", 403, "RID"));
        let mut status = EcsInstancePowerStatus::default();
        let mut requeues = Vec::new();
        for attempt in 0..12 {
            let r = start(&status, at(attempt * 100_000), &error);
            requeues.push(r.requeue);
            status = r.status;
        }
        assert!(
            requeues[..5].iter().all(|d| *d <= Duration::from_secs(5)),
            "{requeues:?}"
        );
        assert!(requeues[11] > Duration::from_secs(5), "{requeues:?}");
    }

    #[test]
    fn terminal_write_error_stalls_and_schedules_the_recheck() {
        let error = Err(api_error("InsufficientBalance", 403, "RID"));
        let r = start(&EcsInstancePowerStatus::default(), at(0), &error);
        assert_eq!(
            cond(&r.status, CONDITION_READY),
            Some(("False", "InsufficientBalance"))
        );
        assert_eq!(
            cond(&r.status, CONDITION_STALLED),
            Some(("True", "InsufficientBalance"))
        );
        assert_eq!(cond(&r.status, CONDITION_RECONCILING), None);
        // The write call is repeated at the terminal re-check; the instance is observed again
        // within one resync interval (300 s ± 10 % here).
        let retry = r.status.retry.as_ref().unwrap();
        assert_eq!(retry.next_attempt_time, Time(at(600)));
        assert_eq!(retry.class.as_deref(), Some("Terminal"));
        assert!(r.requeue <= Duration::from_secs(330), "{:?}", r.requeue);
        assert_eq!(r.event.unwrap().severity, Severity::Warning);
    }

    fn describe_failures(attempts: i32) -> EcsInstancePowerStatus {
        EcsInstancePowerStatus {
            observed_generation: Some(1),
            retry: Some(Box::new(RetryStatus {
                attempts,
                class: Some("Transient".into()),
                action: Some("DescribeInstances".into()),
                next_attempt_time: Time(at(0)),
            })),
            last_error: Some(Box::new(LastError {
                action: Some("DescribeInstances".into()),
                code: "InternalError".into(),
                message: "m".into(),
                http_status: Some(500),
                request_id: None,
                time: Time(at(-1)),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn a_no_stock_after_transient_describe_failures_backs_off_from_the_first_capacity_step() {
        let error = Err(api_error("OperationDenied.NoStock", 403, "RID"));
        let r = start(&describe_failures(5), at(0), &error);
        let retry = r.status.retry.as_ref().unwrap();
        assert_eq!(retry.attempts, 1);
        assert_eq!(retry.class.as_deref(), Some("Capacity"));
        assert_eq!(retry.action.as_deref(), Some("StartInstance"));
        assert_eq!(
            retry.next_attempt_time,
            Time(at(30)),
            "the first capacity step"
        );
        assert_eq!(r.requeue, Duration::from_secs(30));
    }

    #[test]
    fn a_throttle_after_transient_failures_backs_off_from_the_first_throttled_step() {
        let mut previous = describe_failures(5);
        previous.retry.as_mut().unwrap().action = Some("StartInstance".into());
        let error = Err(api_error("Throttling.User", 400, "RID"));
        let r = start(&previous, at(0), &error);
        let retry = r.status.retry.as_ref().unwrap();
        assert_eq!(
            (retry.attempts, retry.class.as_deref()),
            (1, Some("Throttled"))
        );
        assert_eq!(r.requeue, Duration::from_secs(2));
    }

    #[test]
    fn a_successful_observation_ends_an_observation_failure_backoff() {
        let spec = spec(DesiredState::Running);
        let observed = seen(InstanceStatus::Stopped, &[]);
        // Nothing else in this plan touches the retry state.
        let r = run(
            &spec,
            &describe_failures(3),
            at(0),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &Plan::DryRunDone,
            },
        );
        assert!(r.status.retry.is_none(), "{:?}", r.status.retry);
        // A backoff of a write call stays until the write succeeds (decide holds it).
        let mut writes = describe_failures(3);
        writes.retry.as_mut().unwrap().action = Some("StartInstance".into());
        let until = at(100);
        let r = run(
            &spec,
            &writes,
            at(0),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &Plan::Hold { until },
            },
        );
        assert_eq!(r.status.retry, writes.retry);
        assert_eq!(r.requeue, Duration::from_secs(100));
    }

    #[test]
    fn a_successful_write_ends_a_write_backoff() {
        let mut previous = describe_failures(4);
        previous.retry.as_mut().unwrap().action = Some("StartInstance".into());
        previous.retry.as_mut().unwrap().class = Some("Capacity".into());
        let accepted = Ok(WriteOutcome {
            request_id: Some("RID".into()),
            dry_run: false,
        });
        let r = start(&previous, at(0), &accepted);
        assert!(r.status.retry.is_none());
        assert!(r.status.last_error.is_none());
    }

    #[test]
    fn a_lock_stall_and_a_long_write_gate_are_observed_again_within_one_resync_interval() {
        let spec = spec(DesiredState::Running);
        let observed = seen(InstanceStatus::Stopped, &["financial"]);
        let plan = Plan::Stall(crate::ecs::classify_lock("financial"));
        let outcome = Outcome::Planned {
            observed: Some(&observed),
            plan: &plan,
        };
        let r = run(&spec, &EcsInstancePowerStatus::default(), at(0), outcome);
        assert_eq!(r.result, ResultKind::Stalled);
        assert!(r.requeue <= Duration::from_secs(330), "{:?}", r.requeue);
        let observed = seen(InstanceStatus::Stopped, &[]);
        let hold = Plan::Hold { until: at(1800) };
        let outcome = Outcome::Planned {
            observed: Some(&observed),
            plan: &hold,
        };
        let r = run(&spec, &EcsInstancePowerStatus::default(), at(0), outcome);
        assert!(r.requeue <= Duration::from_secs(330), "{:?}", r.requeue);
    }

    #[test]
    fn locks_and_missing_instances_stall_without_an_error_record() {
        let spec = spec(DesiredState::Running);
        let observed = seen(InstanceStatus::Stopped, &["security"]);
        let plan = Plan::Stall(crate::ecs::classify_lock("security"));
        let r = run(
            &spec,
            &EcsInstancePowerStatus::default(),
            at(0),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &plan,
            },
        );
        assert_eq!(
            cond(&r.status, CONDITION_STALLED),
            Some(("True", "InstanceLockedForSecurity"))
        );
        assert!(
            r.status
                .condition(CONDITION_READY)
                .unwrap()
                .message
                .contains("security")
        );
        assert!(r.status.last_error.is_none());
        let plan = Plan::Stall(Verdict {
            reason: reason::INSTANCE_NOT_FOUND.into(),
            class: ErrorClass::Terminal,
        });
        let r = run(
            &spec,
            &EcsInstancePowerStatus::default(),
            at(0),
            Outcome::Planned {
                observed: None,
                plan: &plan,
            },
        );
        assert_eq!(r.status.instance_status.as_deref(), Some("NotFound"));
        assert_eq!(
            cond(&r.status, CONDITION_READY),
            Some(("False", "InstanceNotFound"))
        );
    }

    #[test]
    fn dry_run_success_is_ready_and_suspend_is_not() {
        let spec = spec(DesiredState::Running);
        let observed = seen(InstanceStatus::Stopped, &[]);
        let write = Ok(WriteOutcome {
            request_id: Some("RID".into()),
            dry_run: true,
        });
        let r = start(&EcsInstancePowerStatus::default(), at(0), &write);
        assert_eq!(
            cond(&r.status, CONDITION_READY),
            Some(("True", "DryRunSucceeded"))
        );
        assert!(r.status.last_action.unwrap().dry_run);
        let r = run(
            &spec,
            &EcsInstancePowerStatus::default(),
            at(0),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &Plan::Suspended,
            },
        );
        assert_eq!(
            cond(&r.status, CONDITION_READY),
            Some(("False", "Suspended"))
        );
        assert_eq!(cond(&r.status, CONDITION_RECONCILING), None);
        assert_eq!(cond(&r.status, CONDITION_STALLED), None);
    }

    #[test]
    fn observe_and_credential_failures_keep_the_last_observation() {
        let spec = spec(DesiredState::Running);
        let previous = EcsInstancePowerStatus {
            instance_status: Some("Stopped".into()),
            ..Default::default()
        };
        let error = EcsError::Unreachable {
            detail: "connection refused".into(),
            request_sent: false,
        };
        let r = run(&spec, &previous, at(0), Outcome::ObserveFailed(&error));
        assert_eq!(r.status.instance_status.as_deref(), Some("Stopped"));
        assert_eq!(
            cond(&r.status, CONDITION_READY),
            Some(("False", "EcsUnreachable"))
        );
        assert_eq!(
            cond(&r.status, CONDITION_RECONCILING),
            Some(("True", "Retrying"))
        );
        assert_eq!(
            r.status.last_error.as_ref().unwrap().action.as_deref(),
            Some("DescribeInstances")
        );
        let problem = Problem {
            verdict: Verdict {
                reason: reason::CREDENTIALS_NOT_FOUND.into(),
                class: ErrorClass::Terminal,
            },
            message: "Secret team-a/x does not exist".into(),
        };
        let r = run(&spec, &previous, at(0), Outcome::NoCredentials(&problem));
        assert_eq!(
            cond(&r.status, CONDITION_STALLED),
            Some(("True", "CredentialsNotFound"))
        );
        assert_eq!(
            r.status.last_error.as_ref().unwrap().code,
            "CredentialsNotFound"
        );
    }

    #[test]
    fn waiting_for_a_transition_clears_a_stale_retry() {
        let spec = spec(DesiredState::Running);
        let observed = seen(InstanceStatus::Starting, &[]);
        let previous = EcsInstancePowerStatus {
            observed_generation: Some(1),
            retry: Some(Box::new(RetryStatus {
                attempts: 3,
                class: Some("Capacity".into()),
                action: Some("StartInstance".into()),
                next_attempt_time: Time(at(100)),
            })),
            ..Default::default()
        };
        let plan = Plan::Wait {
            transition: Transition::Starting,
            after: Duration::from_secs(5),
        };
        let r = run(
            &spec,
            &previous,
            at(0),
            Outcome::Planned {
                observed: Some(&observed),
                plan: &plan,
            },
        );
        assert!(r.status.retry.is_none());
        assert_eq!(
            cond(&r.status, CONDITION_RECONCILING),
            Some(("True", "Starting"))
        );
        assert_eq!(r.requeue, Duration::from_secs(5));
    }

    #[test]
    fn messages_never_carry_request_ids_or_ecs_messages() {
        let verdict = Verdict {
            reason: "InternalError".into(),
            class: ErrorClass::Transient,
        };
        let message = error_message(
            "StartInstance",
            &api_error("InternalError", 500, "RID-XYZ"),
            &verdict,
        );
        assert!(
            !message.contains("RID-XYZ") && !message.contains("message of"),
            "{message}"
        );
        assert!(
            message.starts_with("StartInstance failed: ECS answered InternalError (HTTP 500).")
        );
    }
}
