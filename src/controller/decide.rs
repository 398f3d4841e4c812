//! The **decide** step of the reconcile: a pure function from the spec, the effective desired power
//! state, what observe saw, the previous status (read into a [`StatusView`]) and the time to a
//! [`Plan`].
//!
//! This is where the safety rules live, so they are tested as a table: no write call while the
//! instance carries an operation lock, while `suspend` is set, before `status.retry.nextAttemptTime`
//! of a failed write call (which the report step sets after every failed write, a fixed re-check
//! interval out for a terminal error), or while a transition is in flight.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::EcsInstancePowerSpec;
use crate::ecs::{ErrorClass, InstanceObservation, InstanceStatus, Verdict, catalogue};
use crate::vocabulary::{action, lock, reason};

use super::desired::PowerState;
use super::retry;
use super::view::StatusView;

/// The ECS write call a plan makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteCall {
    /// `StartInstance`.
    Start,
    /// `StopInstance`.
    Stop,
}

impl WriteCall {
    /// The ECS action name.
    pub fn action(self) -> &'static str {
        match self {
            WriteCall::Start => action::START_INSTANCE,
            WriteCall::Stop => action::STOP_INSTANCE,
        }
    }

    /// The write call of an ECS action name (`None` for any other action).
    pub fn from_action(name: &str) -> Option<Self> {
        [WriteCall::Start, WriteCall::Stop]
            .into_iter()
            .find(|call| call.action() == name)
    }

    /// The transition this call starts.
    pub fn transition(self) -> Transition {
        match self {
            WriteCall::Start => Transition::Starting,
            WriteCall::Stop => Transition::Stopping,
        }
    }
}

/// Why a plan waits for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The instance is starting towards the desired Running state.
    Starting,
    /// The instance is stopping towards the desired Stopped state.
    Stopping,
    /// Any other transitory state (Pending, or moving away from the desired state).
    WaitingForTransition,
}

impl Transition {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Transition::Starting => reason::STARTING,
            Transition::Stopping => reason::STOPPING,
            Transition::WaitingForTransition => reason::WAITING_FOR_TRANSITION,
        }
    }
}

/// What the reconciler does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The instance is in the desired state: nothing to do.
    Ready,
    /// A transition is in flight: re-observe after the delay, no write call.
    Wait {
        /// What the instance is waiting for.
        transition: Transition,
        /// When to look again.
        after: Duration,
    },
    /// Make the write call (with `DryRun` when the spec says so).
    Write(WriteCall),
    /// Progress needs someone to act (a lock, a missing instance, a terminal error): no write call.
    Stall(Verdict),
    /// `suspend` is set and the instance is not in the desired state: report only.
    Suspended,
    /// Backing off after an error: no call before this time.
    Hold {
        /// The end of the write gate.
        until: Timestamp,
    },
    /// `dryRun` is set and ECS already approved this generation's call: do not repeat it.
    DryRunDone,
}

/// Everything decide looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The resource's spec (`suspend`, `dryRun`).
    pub spec: &'a EcsInstancePowerSpec,
    /// The effective desired power state.
    pub desired: PowerState,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// What observe saw; `None` when `DescribeInstances` did not return the instance.
    pub observed: Option<&'a InstanceObservation>,
    /// The status written by the previous reconcile, read once.
    pub status: &'a StatusView,
    /// When the referenced credentials changed since the last reconcile, a terminal error or a
    /// retry gate of the previous attempt no longer holds.
    pub credentials_changed: bool,
    /// Now.
    pub now: Timestamp,
}

/// A `StartInstance` / `StopInstance` accepted less than this long ago still counts as in flight even if
/// `DescribeInstances` does not show the transitory state yet, so a lagging read never doubles a call.
pub const SETTLE: Duration = Duration::from_secs(10);

/// Decides the next step. Pure: same input, same plan.
pub fn decide(input: Input<'_>) -> Plan {
    let Input {
        spec,
        desired,
        generation,
        observed,
        status,
        credentials_changed,
        now,
    } = input;
    let Some(observed) = observed else {
        return Plan::Stall(Verdict {
            reason: catalogue::reason::INSTANCE_NOT_FOUND.to_string(),
            class: ErrorClass::Terminal,
        });
    };
    // A write call accepted moments ago that DescribeInstances may not reflect yet.
    let recent = status
        .last_real_write(now)
        .filter(|(_, since)| *since < SETTLE);
    let needed = match (&observed.status, desired) {
        (InstanceStatus::Running, PowerState::Running)
        | (InstanceStatus::Stopped, PowerState::Stopped) => {
            // The desired state flipped right after a call the other way was accepted: the read
            // may lag behind that call, so do not declare Ready on it yet.
            return match recent {
                Some((write, since)) if write.call != desired.toward() => Plan::Wait {
                    transition: Transition::WaitingForTransition,
                    after: retry::transition_poll(Some(since)),
                },
                _ => Plan::Ready,
            };
        }
        (InstanceStatus::Stopped, PowerState::Running) => Some(WriteCall::Start),
        (InstanceStatus::Running, PowerState::Stopped) => Some(WriteCall::Stop),
        _ => None,
    };
    if spec.suspend {
        return Plan::Suspended;
    }
    if let Some(lock) = preferred_lock(&observed.lock_reasons) {
        return Plan::Stall(catalogue::classify_lock(lock));
    }
    let Some(call) = needed else {
        let transition = match (&observed.status, desired) {
            (InstanceStatus::Starting, PowerState::Running) => Transition::Starting,
            (InstanceStatus::Stopping, PowerState::Stopped) => Transition::Stopping,
            _ => Transition::WaitingForTransition,
        };
        let elapsed = status.last_real_write(now).map(|(_, since)| since);
        return Plan::Wait {
            transition,
            after: retry::transition_poll(elapsed),
        };
    };

    let same_generation =
        status.observed_generation.is_some() && status.observed_generation == generation;
    if same_generation {
        // The gate is set after a failed write call (observe and credential failures are retried
        // by re-observing, and a successful observation ends them). A changed Secret lifts only a
        // terminal gate (Stalled): backoff for throttling or capacity is not the Secret's business.
        if let Some(until) = status.write_gate_until(now)
            && now < until
            && !(credentials_changed && status.stalled)
        {
            return Plan::Hold { until };
        }
        if spec.dry_run && status.dry_run_approved_at.as_deref() == Some(observed.status.as_str()) {
            return Plan::DryRunDone;
        }
    }
    // The same call was accepted moments ago (even for an older generation): wait for the read.
    if let Some((_, since)) = recent.filter(|(w, _)| w.call == call) {
        return Plan::Wait {
            transition: call.transition(),
            after: retry::transition_poll(Some(since)),
        };
    }
    Plan::Write(call)
}

/// The lock that explains the most: `security` first, then the first one listed.
fn preferred_lock(locks: &[String]) -> Option<&str> {
    locks
        .iter()
        .find(|l| l.eq_ignore_ascii_case(lock::SECURITY))
        .or_else(|| locks.first())
        .map(String::as_str)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{DesiredState, EcsInstancePowerStatus, LastAction, LastError, RetryStatus};
    use crate::controller::conditions::{self, Desired};
    use crate::controller::desired;

    use crate::controller::fixtures::{seen, spec};

    /// A write call ECS accepted at `time`.
    fn accepted(action: &str, time: Time, dry_run: bool) -> LastAction {
        LastAction {
            action: action.into(),
            request_id: None,
            time,
            dry_run,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn secs_ago(s: i64) -> Time {
        Time(now() - jiff::SignedDuration::from_secs(s))
    }

    struct Case {
        desired: DesiredState,
        observed: Option<InstanceObservation>,
        suspend: bool,
        dry_run: bool,
        status: EcsInstancePowerStatus,
        credentials_changed: bool,
    }

    impl Case {
        fn new(desired: DesiredState, observed: InstanceStatus) -> Self {
            Case {
                desired,
                observed: Some(seen(observed, &[])),
                suspend: false,
                dry_run: false,
                status: EcsInstancePowerStatus {
                    observed_generation: Some(1),
                    ..Default::default()
                },
                credentials_changed: false,
            }
        }
        fn decide(&self) -> Plan {
            let mut spec = spec(self.desired);
            spec.suspend = self.suspend;
            spec.dry_run = self.dry_run;
            decide(Input {
                spec: &spec,
                desired: desired::effective(&spec),
                generation: Some(1),
                observed: self.observed.as_ref(),
                status: &StatusView::read(&self.status),
                credentials_changed: self.credentials_changed,
                now: now(),
            })
        }
    }

    use DesiredState::{Running as WantRunning, Stopped as WantStopped};
    use InstanceStatus as S;

    #[test]
    fn desired_times_observed_state() {
        let table = [
            (WantRunning, S::Running, "Ready"),
            (WantRunning, S::Stopped, "Write(Start)"),
            (WantRunning, S::Starting, "Wait(Starting)"),
            (WantRunning, S::Stopping, "Wait(WaitingForTransition)"),
            (WantRunning, S::Pending, "Wait(WaitingForTransition)"),
            (
                WantRunning,
                S::Other("Weird".into()),
                "Wait(WaitingForTransition)",
            ),
            (WantStopped, S::Stopped, "Ready"),
            (WantStopped, S::Running, "Write(Stop)"),
            (WantStopped, S::Stopping, "Wait(Stopping)"),
            (WantStopped, S::Starting, "Wait(WaitingForTransition)"),
            (WantStopped, S::Pending, "Wait(WaitingForTransition)"),
        ];
        for (desired, observed, expected) in table {
            let plan = Case::new(desired, observed.clone()).decide();
            assert_eq!(
                short(&plan),
                expected,
                "desired {desired:?}, observed {observed:?}"
            );
        }
    }

    fn short(plan: &Plan) -> String {
        match plan {
            Plan::Ready => "Ready".into(),
            Plan::Wait { transition, .. } => format!("Wait({transition:?})"),
            Plan::Write(call) => format!("Write({call:?})"),
            Plan::Stall(v) => format!("Stall({})", v.reason),
            Plan::Suspended => "Suspended".into(),
            Plan::Hold { .. } => "Hold".into(),
            Plan::DryRunDone => "DryRunDone".into(),
        }
    }

    #[test]
    fn missing_instance_stalls() {
        let mut case = Case::new(WantRunning, S::Stopped);
        case.observed = None;
        assert_eq!(short(&case.decide()), "Stall(InstanceNotFound)");
    }

    #[test]
    fn locks_stall_before_any_write_but_not_a_satisfied_state() {
        for (locks, reason) in [
            (vec!["security"], "InstanceLockedForSecurity"),
            (vec!["financial"], "InstanceLocked"),
            (vec!["financial", "security"], "InstanceLockedForSecurity"),
            (vec!["recycling"], "InstanceLocked"),
        ] {
            let mut case = Case::new(WantRunning, S::Stopped);
            case.observed = Some(seen(S::Stopped, &locks));
            assert_eq!(
                short(&case.decide()),
                format!("Stall({reason})"),
                "{locks:?}"
            );
            // Locks also stop a stop, and a transition wait is not needed while locked.
            let mut case = Case::new(WantStopped, S::Running);
            case.observed = Some(seen(S::Running, &locks));
            assert_eq!(short(&case.decide()), format!("Stall({reason})"));
        }
        let mut case = Case::new(WantRunning, S::Running);
        case.observed = Some(seen(S::Running, &["security"]));
        assert_eq!(short(&case.decide()), "Ready");
    }

    #[test]
    fn suspend_is_observe_only() {
        for (desired, observed, expected) in [
            (WantRunning, S::Stopped, "Suspended"),
            (WantStopped, S::Running, "Suspended"),
            (WantRunning, S::Starting, "Suspended"),
            (WantRunning, S::Running, "Ready"),
        ] {
            let mut case = Case::new(desired, observed);
            case.suspend = true;
            assert_eq!(short(&case.decide()), expected);
        }
    }

    fn failed_write(case: &mut Case, code: &str, gate_secs: i64) {
        case.status.retry = Some(Box::new(RetryStatus {
            attempts: 2,
            class: None,
            action: Some("StartInstance".into()),
            next_attempt_time: Time(now() + jiff::SignedDuration::from_secs(gate_secs)),
        }));
        case.status.last_error = Some(Box::new(LastError {
            action: Some("StartInstance".into()),
            code: code.into(),
            message: "m".into(),
            http_status: Some(403),
            request_id: None,
            time: secs_ago(1),
        }));
    }

    #[test]
    fn retry_gate_holds_until_next_attempt_time() {
        let mut case = Case::new(WantRunning, S::Stopped);
        failed_write(&mut case, "OperationDenied.NoStock", 30);
        assert_eq!(short(&case.decide()), "Hold");
        // Passed gate: write again.
        case.status.retry.as_mut().unwrap().next_attempt_time = secs_ago(1);
        assert_eq!(short(&case.decide()), "Write(Start)");
        // A new generation resets the gate.
        case.status.retry.as_mut().unwrap().next_attempt_time =
            Time(now() + jiff::SignedDuration::from_secs(30));
        case.status.observed_generation = Some(0);
        assert_eq!(short(&case.decide()), "Write(Start)");
        // A touched Secret does not lift a capacity or throttling gate (only a terminal one).
        case.status.observed_generation = Some(1);
        case.credentials_changed = true;
        assert_eq!(short(&case.decide()), "Hold");
        // The gate never delays reaching Ready or seeing a transition.
        case.credentials_changed = false;
        case.observed = Some(seen(S::Running, &[]));
        assert_eq!(short(&case.decide()), "Ready");
    }

    #[test]
    fn only_a_failed_write_gates_writes() {
        // A gate left by a failed DescribeInstances (or missing credentials) ends with the first
        // successful observation.
        let mut case = Case::new(WantRunning, S::Stopped);
        failed_write(&mut case, "InvalidAccessKeyId.NotFound", 590);
        case.status.last_error.as_mut().unwrap().action = Some("DescribeInstances".into());
        assert_eq!(short(&case.decide()), "Write(Start)");
        case.status.last_error.as_mut().unwrap().action = None;
        assert_eq!(short(&case.decide()), "Write(Start)");
    }

    #[test]
    fn skewed_clocks_do_not_block_writes_forever() {
        // A lastAction in the future is stale, not "just accepted".
        let mut case = Case::new(WantRunning, S::Stopped);
        case.status.last_action = Some(accepted(
            "StartInstance",
            Time(now() + jiff::SignedDuration::from_secs(3600)),
            false,
        ));
        assert_eq!(short(&case.decide()), "Write(Start)");
        // A gate a day out is capped to 30 minutes.
        let mut case = Case::new(WantRunning, S::Stopped);
        failed_write(&mut case, "OperationDenied.NoStock", 86_400);
        let Plan::Hold { until } = case.decide() else {
            panic!("expected Hold")
        };
        assert_eq!(until, now() + jiff::SignedDuration::from_secs(1800));
    }

    #[test]
    fn a_terminal_write_error_waits_for_its_recheck_then_tries_once_more() {
        // The report step gates a terminal error 10 minutes out (TERMINAL_RECHECK).
        let mut case = Case::new(WantRunning, S::Stopped);
        let t = Time(now());
        conditions::set(
            &mut case.status.conditions,
            "Ready",
            Some(Desired::falsy("InsufficientBalance", "m")),
            Some(1),
            &t,
        );
        conditions::set(
            &mut case.status.conditions,
            "Stalled",
            Some(Desired::truthy("InsufficientBalance", "m")),
            Some(1),
            &t,
        );
        case.status.last_error = Some(Box::new(LastError {
            action: Some("StartInstance".into()),
            code: "InsufficientBalance".into(),
            message: "m".into(),
            http_status: Some(403),
            request_id: None,
            time: t,
        }));
        case.status.retry = Some(Box::new(RetryStatus {
            attempts: 1,
            class: Some("Terminal".into()),
            action: Some("StartInstance".into()),
            next_attempt_time: Time(
                now() + jiff::SignedDuration::try_from(retry::TERMINAL_RECHECK).unwrap(),
            ),
        }));
        assert_eq!(short(&case.decide()), "Hold");
        // The Secret was fixed: try at once.
        case.credentials_changed = true;
        assert_eq!(short(&case.decide()), "Write(Start)");
        // The spec changed: try at once.
        case.credentials_changed = false;
        case.status.observed_generation = Some(0);
        assert_eq!(short(&case.decide()), "Write(Start)");
        // The re-check time came: one more write call (the user may have topped up the account).
        case.status.observed_generation = Some(1);
        case.status.retry.as_mut().unwrap().next_attempt_time = secs_ago(1);
        assert_eq!(short(&case.decide()), "Write(Start)");
    }

    #[test]
    fn dry_run_is_not_repeated_once_approved() {
        let mut case = Case::new(WantRunning, S::Stopped);
        case.dry_run = true;
        assert_eq!(short(&case.decide()), "Write(Start)");
        let t = Time(now());
        conditions::set(
            &mut case.status.conditions,
            "Ready",
            Some(Desired::truthy("DryRunSucceeded", "m")),
            Some(1),
            &t,
        );
        case.status.instance_status = Some("Stopped".into());
        assert_eq!(short(&case.decide()), "DryRunDone");
        // The instance changed state meanwhile: ask ECS again.
        case.observed = Some(seen(S::Running, &[]));
        case.desired = WantStopped;
        assert_eq!(short(&case.decide()), "Write(Stop)");
        // dryRun switched off (new generation): real call.
        let mut case = Case::new(WantRunning, S::Stopped);
        case.status.observed_generation = Some(0);
        assert_eq!(short(&case.decide()), "Write(Start)");
    }

    #[test]
    fn a_just_accepted_call_is_not_repeated_while_the_read_lags() {
        let mut case = Case::new(WantRunning, S::Stopped);
        case.status.last_action = Some(accepted("StartInstance", secs_ago(3), false));
        assert_eq!(short(&case.decide()), "Wait(Starting)");
        case.status.last_action.as_mut().unwrap().time = secs_ago(60);
        assert_eq!(short(&case.decide()), "Write(Start)");
        // A dry run does not count.
        case.status.last_action = Some(accepted("StartInstance", secs_ago(3), true));
        assert_eq!(short(&case.decide()), "Write(Start)");
    }

    #[test]
    fn a_lagging_read_after_an_accepted_call_is_not_trusted() {
        // An unrelated spec edit (new generation) right after a start: no second StartInstance.
        let mut case = Case::new(WantRunning, S::Stopped);
        case.status.last_action = Some(accepted("StartInstance", secs_ago(3), false));
        case.status.observed_generation = Some(0);
        assert_eq!(short(&case.decide()), "Wait(Starting)");
        // Desired flipped to Stopped right after the start was accepted; a read that still says
        // Stopped is not Ready yet.
        case.desired = WantStopped;
        assert_eq!(short(&case.decide()), "Wait(WaitingForTransition)");
        // Once the call is older than SETTLE the read is believed.
        case.status.last_action.as_mut().unwrap().time = secs_ago(60);
        assert_eq!(short(&case.decide()), "Ready");
    }

    #[test]
    fn transition_poll_grows_with_the_time_since_the_call() {
        let mut case = Case::new(WantRunning, S::Starting);
        case.status.last_action = Some(accepted("StartInstance", secs_ago(1), false));
        let Plan::Wait { after: early, .. } = case.decide() else {
            panic!()
        };
        case.status.last_action.as_mut().unwrap().time = secs_ago(120);
        let Plan::Wait { after: late, .. } = case.decide() else {
            panic!()
        };
        assert_eq!(early, Duration::from_secs(2));
        assert_eq!(late, Duration::from_secs(15));
    }
}
