//! Property tests of the pure pipeline, decide then report, over random histories: a resource's
//! status is grown by a random sequence of reconciles (random observations, spec edits, time
//! steps and ECS answers, the write's answer included), so every status checked is one the
//! operator can actually reach. At every step:
//!
//! - decide never plans a write while suspended, while the instance is locked, while the retry
//!   gate of the same generation holds, or while the same call was accepted less than SETTLE ago
//!   (in flight), and only plans the call that moves a stable instance toward the desired state;
//! - decide is deterministic;
//! - the status written is a fixed point: reporting the same planned outcome again, on the status
//!   just written, changes nothing.
#![allow(clippy::unwrap_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::decide::{self, Plan, SETTLE, WriteCall};
use super::desired::{self, PowerState};
use super::fixtures::{seen, spec};
use super::report::{self, Outcome};
use super::view::StatusView;
use crate::api::{DesiredState, EcsInstancePowerSpec, EcsInstancePowerStatus};
use crate::ecs::{EcsError, InstanceObservation, InstanceStatus, WriteOutcome};

/// One reconcile of the random history.
#[derive(Debug, Clone)]
struct Step {
    /// Seconds since the previous step.
    after: u16,
    /// A spec edit first (a new generation), if any.
    edit: Option<(DesiredState, bool)>,
    /// What `DescribeInstances` shows (`None`: the instance is not found).
    observed: Option<(InstanceStatus, bool)>,
    /// ECS's answer, should the plan be a write.
    answer: Answer,
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Accepted,
    Code(&'static str, u16),
    Unreachable,
}

fn statuses() -> impl Strategy<Value = InstanceStatus> {
    prop_oneof![
        Just(InstanceStatus::Running),
        Just(InstanceStatus::Stopped),
        Just(InstanceStatus::Starting),
        Just(InstanceStatus::Stopping),
        Just(InstanceStatus::Pending),
    ]
}

fn answers() -> impl Strategy<Value = Answer> {
    prop_oneof![
        3 => Just(Answer::Accepted),
        1 => Just(Answer::Code("OperationDenied.NoStock", 403)),
        1 => Just(Answer::Code("InternalError", 500)),
        1 => Just(Answer::Code("IncorrectInstanceStatus", 403)),
        1 => Just(Answer::Code("Throttling.User", 400)),
        1 => Just(Answer::Code("InstanceLockedForSecurity", 403)),
        1 => Just(Answer::Code("InvalidAccessKeyId.NotFound", 404)),
        1 => Just(Answer::Unreachable),
    ]
}

fn steps() -> impl Strategy<Value = Step> {
    (
        0u16..400,
        proptest::option::weighted(
            0.2,
            (
                prop_oneof![Just(DesiredState::Running), Just(DesiredState::Stopped)],
                proptest::bool::weighted(0.2),
            ),
        ),
        proptest::option::weighted(0.95, (statuses(), proptest::bool::weighted(0.1))),
        answers(),
    )
        .prop_map(|(after, edit, observed, answer)| Step {
            after,
            edit,
            observed,
            answer,
        })
}

fn result(answer: Answer) -> Result<WriteOutcome, EcsError> {
    match answer {
        Answer::Accepted => Ok(WriteOutcome {
            request_id: Some("req".into()),
            dry_run: false,
        }),
        Answer::Code(code, http_status) => Err(EcsError::Api {
            code: code.into(),
            message: "m".into(),
            http_status,
            request_id: Some("req".into()),
            retry_after: None,
        }),
        Answer::Unreachable => Err(EcsError::Unreachable {
            detail: "reset".into(),
            request_sent: true,
        }),
    }
}

fn report_input<'a>(
    spec: &'a EcsInstancePowerSpec,
    generation: i64,
    previous: &'a EcsInstancePowerStatus,
    now: Timestamp,
) -> report::Input<'a> {
    report::Input {
        spec,
        desired: desired::effective(spec),
        generation: Some(generation),
        previous,
        now,
        resync: std::time::Duration::from_secs(300),
        time_scale: 1.0,
        unmanaged: None,
    }
}

/// The write a stable instance needs to reach `desired`, if any.
fn needed(observed: &InstanceObservation, desired: PowerState) -> Option<WriteCall> {
    match (&observed.status, desired) {
        (InstanceStatus::Stopped, PowerState::Running) => Some(WriteCall::Start),
        (InstanceStatus::Running, PowerState::Stopped) => Some(WriteCall::Stop),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn decide_and_report_keep_their_promises_over_random_histories(
        history in proptest::collection::vec(steps(), 1..40),
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut spec = spec(DesiredState::Running);
        let mut generation = 1;
        let mut status = EcsInstancePowerStatus::default();
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        for step in history {
            now += SignedDuration::from_secs(i64::from(step.after));
            if let Some((desired_state, suspend)) = step.edit {
                spec.desired_state = desired_state;
                spec.suspend = suspend;
                generation += 1;
            }
            let observed = step.observed.map(|(s, locked)| seen(s, if locked { &["security"] } else { &[] }));
            let view = StatusView::read(&status);
            let desired = desired::effective(&spec);
            let input = decide::Input {
                spec: &spec,
                desired,
                generation: Some(generation),
                observed: observed.as_ref(),
                status: &view,
                credentials_changed: false,
                now,
            };
            let plan = decide::decide(input);
            prop_assert_eq!(&plan, &decide::decide(input), "decide is not deterministic");

            if let Plan::Write(call) = plan {
                let observed = observed.as_ref().unwrap();
                prop_assert!(!spec.suspend, "a write while suspended");
                prop_assert!(observed.lock_reasons.is_empty(), "a write while locked");
                prop_assert_eq!(Some(call), needed(observed, desired), "a write that does not move toward the desired state");
                let same_generation = view.observed_generation == Some(generation);
                if same_generation && let Some(until) = view.write_gate_until(now) {
                    prop_assert!(now >= until, "a write before the retry gate {until}");
                }
                if let Some((write, since)) = view.last_real_write(now) {
                    prop_assert!(
                        write.call != call || since >= SETTLE,
                        "the same write again {since:?} after it was accepted"
                    );
                }
                let result = result(step.answer);
                let outcome = Outcome::Acted { observed: Some(observed), call, result: &result };
                status = report::report(report_input(&spec, generation, &status, now), outcome, &mut rng).status;
            } else {
                let outcome = Outcome::Planned { observed: observed.as_ref(), plan: &plan };
                let first = report::report(report_input(&spec, generation, &status, now), outcome, &mut rng);
                let again = report::report(report_input(&spec, generation, &first.status, now), outcome, &mut rng);
                prop_assert!(!again.status_changed, "not a fixed point: {:?}\nthen {:?}", first.status, again.status);
                prop_assert_eq!(&again.status, &first.status);
                status = first.status;
            }
        }
    }
}
