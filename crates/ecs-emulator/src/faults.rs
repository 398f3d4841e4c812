//! Fault injection: scripted failures per instance and action, for a number of requests or
//! forever, optionally with a probability. A fault answers with an ECS error code (any code of
//! the catalogue, or another with an explicit HTTP status), adds latency, or breaks the
//! transport (connection reset, truncated body, non-JSON text, random bytes, HTML 502 page).
//! With `afterAction` the action runs first (its state change happens) and then the transport
//! breaks or the latency is added: the write is applied but the client sees a reset, a broken
//! body or, with a latency longer than its timeout, no answer in time.
//!
//! The gateway asks for faults after authentication and throttling, before the action runs.
//! Batch actions with `BatchOptimization=SuccessFirst` ask per instance, so an instance's code
//! fault becomes that instance's entry in `InstanceResponses`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalogue::{self, EcsError};
use crate::config::duration;

/// `times` value meaning "fire on every matching request".
pub const FOREVER: i64 = -1;

/// A broken transport instead of an ECS answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransportFault {
    /// The TCP connection is reset (RST) without a response.
    Reset,
    /// A 200 response whose body stops before its `Content-Length`, then the connection closes.
    Truncated,
    /// A 200 `application/json` response whose body is not JSON.
    NonJson,
    /// A 200 `application/json` response whose body is random bytes (not even UTF-8).
    Garbage,
    /// A 502 `text/html` page, as a load balancer in front of ECS sends.
    Html502,
}

impl TransportFault {
    /// The camelCase name used in the state file and the call log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Truncated => "truncated",
            Self::NonJson => "nonJson",
            Self::Garbage => "garbage",
            Self::Html502 => "html502",
        }
    }
}

/// One scripted fault. In the state file and the admin API: `instance`, `action`, `code`,
/// `httpStatus`, `message`, `kind`, `latency`, `times`, `probability`, `afterAction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Only requests naming this instance id; `None` matches any request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Only this action (`*` or `None` = every action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Answer with this ECS error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// HTTP status for `code`; default: the catalogue's status (required for other codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// `Message` for `code`; default: the catalogue's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Break the transport instead of answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TransportFault>,
    /// Delay the answer by this much (alone, or before `code`/`kind`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::option"
    )]
    pub latency: Option<Duration>,
    /// How many matching requests it fires on; `-1` (the default) means forever.
    #[serde(default = "forever")]
    pub times: i64,
    /// Fire on a matching request with this probability (0 < p ≤ 1); default always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Run the action first (its state change happens), then break the response (`kind`) or
    /// delay it (a latency-only fault).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_action: bool,
}

fn forever() -> i64 {
    FOREVER
}

impl Fault {
    fn blank() -> Self {
        Self {
            instance: None,
            action: None,
            code: None,
            http_status: None,
            message: None,
            kind: None,
            latency: None,
            times: FOREVER,
            probability: None,
            after_action: false,
        }
    }

    /// A fault answering with an ECS error code (status and message from the catalogue).
    #[must_use]
    pub fn error(code: impl Into<String>) -> Self {
        Self {
            code: Some(code.into()),
            ..Self::blank()
        }
    }

    /// A fault breaking the transport.
    #[must_use]
    pub fn transport(kind: TransportFault) -> Self {
        Self {
            kind: Some(kind),
            ..Self::blank()
        }
    }

    /// A fault adding latency only.
    #[must_use]
    pub fn delay(latency: Duration) -> Self {
        Self {
            latency: Some(latency),
            ..Self::blank()
        }
    }

    /// Restricts it to requests naming this instance.
    #[must_use]
    pub fn for_instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// Restricts it to one action.
    #[must_use]
    pub fn for_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Fires on the next `n` matching requests only.
    #[must_use]
    pub fn times(mut self, n: i64) -> Self {
        self.times = n;
        self
    }

    /// Fires with probability `p`.
    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    /// Overrides the HTTP status.
    #[must_use]
    pub fn http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// Overrides the message.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds latency before the fault's answer.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Lets the action run before the transport breaks or the latency is added.
    #[must_use]
    pub fn after_action(mut self) -> Self {
        self.after_action = true;
        self
    }

    /// Checks that the fault means something.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.code.is_none() && self.kind.is_none() && self.latency.is_none() {
            return Err("a fault needs a code, a kind or a latency".to_owned());
        }
        if self.code.is_some() && self.kind.is_some() {
            return Err("a fault has either a code or a kind, not both".to_owned());
        }
        if let Some(code) = &self.code {
            if code.trim().is_empty() {
                return Err("fault code is empty".to_owned());
            }
            if catalogue::lookup(code).is_none() && self.http_status.is_none() {
                return Err(format!(
                    "fault code {code:?} is not in the catalogue: give its httpStatus"
                ));
            }
        }
        if self.code.is_none() && (self.http_status.is_some() || self.message.is_some()) {
            return Err("httpStatus and message only apply to a fault with a code".to_owned());
        }
        if let Some(status) = self.http_status
            && !(400..=599).contains(&status)
        {
            return Err(format!(
                "fault httpStatus {status} must be within 400..=599"
            ));
        }
        if self.times == 0 || self.times < FOREVER {
            return Err(format!(
                "fault times {} must be a positive count or -1 (forever)",
                self.times
            ));
        }
        if let Some(p) = self.probability
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(format!("fault probability {p} must be within (0, 1]"));
        }
        if let Some(action) = &self.action
            && action != "*"
            && !crate::actions::is_known(action)
        {
            return Err(format!(
                "fault action {action:?} is not an action the emulator serves"
            ));
        }
        if self.after_action && self.code.is_some() {
            return Err(
                "afterAction applies to a fault with a kind or a latency only, not a code"
                    .to_owned(),
            );
        }
        Ok(())
    }

    fn matches_action(&self, action: &str) -> bool {
        self.action
            .as_deref()
            .is_none_or(|a| a == "*" || a == action)
    }

    fn is_code(&self) -> bool {
        self.code.is_some()
    }

    fn error_answer(&self) -> Option<EcsError> {
        let code = self.code.as_deref()?;
        let mut error = EcsError::of(code);
        if let Some(status) = self.http_status {
            error = error.with_status(status);
        }
        if let Some(message) = &self.message {
            error = error.with_message(message.clone());
        }
        Some(error)
    }
}

/// A fault as listed by the admin API and the library: its id and definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultEntry {
    /// The id `DELETE /_emulator/faults/{id}` takes.
    pub id: u64,
    /// What remains of it (`times` counts down).
    #[serde(flatten)]
    pub fault: Fault,
}

/// What fired for a request or an instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Fired {
    /// Total latency to add before the action.
    pub latency: Duration,
    /// Total latency to add after the action (latency-only `afterAction` faults).
    pub latency_after: Duration,
    /// The answer replacing the action's, if any.
    pub outcome: Option<Outcome>,
}

/// The answer a fault imposes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// An ECS error answer.
    Error(EcsError),
    /// A broken transport; `after_action` lets the action run first.
    Transport {
        kind: TransportFault,
        after_action: bool,
    },
}

/// What a fault lookup is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// A whole request naming these instances. With `per_instance` (SuccessFirst batches),
    /// instance-scoped code faults are left for [`Scope::Instance`].
    Request {
        ids: &'a [String],
        per_instance: bool,
    },
    /// One instance of a per-instance batch: only its code faults.
    Instance(&'a str),
}

/// The active faults, in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    entries: Vec<FaultEntry>,
    next_id: u64,
}

impl FaultSet {
    /// Adds a validated fault and returns its id.
    pub(crate) fn add(&mut self, fault: Fault) -> u64 {
        self.next_id += 1;
        self.entries.push(FaultEntry {
            id: self.next_id,
            fault,
        });
        self.next_id
    }

    /// Removes one fault; false when there was none with that id.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        before != self.entries.len()
    }

    /// Removes every fault.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The active faults.
    pub(crate) fn list(&self) -> Vec<FaultEntry> {
        self.entries.clone()
    }

    /// Fires the faults matching `action` and `scope`: every matching latency-only fault adds
    /// its latency; the first matching code or transport fault decides the answer. `roll`
    /// returns a uniform number in [0, 1) for probabilistic faults. Fired faults count down and
    /// disappear when spent.
    pub(crate) fn fire(
        &mut self,
        action: &str,
        scope: Scope<'_>,
        mut roll: impl FnMut() -> f64,
    ) -> Fired {
        let mut fired = Fired::default();
        let mut spent = Vec::new();
        for entry in &mut self.entries {
            let f = &entry.fault;
            if !f.matches_action(action) || !in_scope(f, scope) {
                continue;
            }
            let decides = f.code.is_some() || f.kind.is_some();
            if decides && fired.outcome.is_some() {
                continue;
            }
            if let Some(p) = f.probability
                && roll() >= p
            {
                continue;
            }
            if f.after_action && !decides {
                fired.latency_after += f.latency.unwrap_or_default();
            } else {
                fired.latency += f.latency.unwrap_or_default();
            }
            if let Some(error) = f.error_answer() {
                fired.outcome = Some(Outcome::Error(error));
            } else if let Some(kind) = f.kind {
                fired.outcome = Some(Outcome::Transport {
                    kind,
                    after_action: f.after_action,
                });
            }
            if entry.fault.times > 0 {
                entry.fault.times -= 1;
                if entry.fault.times == 0 {
                    spent.push(entry.id);
                }
            }
        }
        if !spent.is_empty() {
            self.entries.retain(|e| !spent.contains(&e.id));
        }
        fired
    }
}

fn in_scope(f: &Fault, scope: Scope<'_>) -> bool {
    match scope {
        Scope::Request { ids, per_instance } => match &f.instance {
            None => true,
            Some(id) => ids.contains(id) && !(per_instance && f.is_code()),
        },
        Scope::Instance(id) => f.is_code() && f.instance.as_deref() == Some(id),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn request(set: &mut FaultSet, action: &str, named: &[&str]) -> Fired {
        let named = ids(named);
        set.fire(
            action,
            Scope::Request {
                ids: &named,
                per_instance: false,
            },
            || 0.0,
        )
    }

    fn code(f: &Fired) -> Option<&str> {
        match &f.outcome {
            Some(Outcome::Error(e)) => Some(e.code.as_str()),
            _ => None,
        }
    }

    #[test]
    fn parses_the_design_example() {
        let f: Fault = serde_yaml::from_str(
            "{instance: i-abc, action: StartInstance, code: OperationDenied.NoStock, times: -1}",
        )
        .unwrap();
        assert_eq!(
            f,
            Fault::error("OperationDenied.NoStock")
                .for_instance("i-abc")
                .for_action("StartInstance")
        );
        f.validate().unwrap();
    }

    #[test]
    fn parses_transport_and_latency_faults() {
        let f: Fault = serde_yaml::from_str(
            "{action: DescribeInstances, kind: html502, latency: 50ms, times: 2}",
        )
        .unwrap();
        assert_eq!(f.kind, Some(TransportFault::Html502));
        assert_eq!(f.latency, Some(Duration::from_millis(50)));
        f.validate().unwrap();
        let nj: Fault = serde_yaml::from_str("{kind: nonJson}").unwrap();
        assert_eq!(nj.kind, Some(TransportFault::NonJson));
    }

    #[test]
    fn validation_rejects_meaningless_faults() {
        assert!(Fault::blank().validate().is_err());
        assert!(Fault::error("X.Unknown").validate().is_err());
        Fault::error("X.Unknown")
            .http_status(418)
            .validate()
            .unwrap();
        assert!(
            Fault::error("InternalError")
                .http_status(200)
                .validate()
                .is_err()
        );
        assert!(Fault::error("InternalError").times(0).validate().is_err());
        assert!(Fault::error("InternalError").times(-2).validate().is_err());
        assert!(
            Fault::error("InternalError")
                .probability(0.0)
                .validate()
                .is_err()
        );
        assert!(
            Fault::error("InternalError")
                .probability(1.5)
                .validate()
                .is_err()
        );
        assert!(
            Fault::error("InternalError")
                .for_action("StartInstanse")
                .validate()
                .is_err()
        );
        assert!(
            Fault::error("InternalError")
                .after_action()
                .validate()
                .is_err()
        );
        let mut both = Fault::error("InternalError");
        both.kind = Some(TransportFault::Reset);
        assert!(both.validate().is_err());
    }

    #[test]
    fn after_action_latency_is_added_after_the_action() {
        let mut set = FaultSet::default();
        set.add(
            Fault::delay(Duration::from_secs(30))
                .for_action("StartInstance")
                .after_action()
                .times(1),
        );
        set.add(Fault::delay(Duration::from_millis(5)).for_action("StartInstance"));
        let fired = request(&mut set, "StartInstance", &["i-a"]);
        assert_eq!(fired.latency, Duration::from_millis(5));
        assert_eq!(fired.latency_after, Duration::from_secs(30));
        assert!(fired.outcome.is_none());
        assert_eq!(set.list().len(), 1, "the one-shot fault is spent");
        let garbage: Fault = serde_yaml::from_str("{kind: garbage, afterAction: true}").unwrap();
        assert_eq!(garbage.kind, Some(TransportFault::Garbage));
        garbage.validate().unwrap();
        Fault::delay(Duration::from_secs(1))
            .after_action()
            .validate()
            .unwrap();
    }

    #[test]
    fn counts_down_and_disappears() {
        let mut set = FaultSet::default();
        set.add(
            Fault::error("InternalError")
                .for_action("StartInstance")
                .times(2),
        );
        assert_eq!(
            code(&request(&mut set, "StartInstance", &["i-a"])),
            Some("InternalError")
        );
        assert_eq!(set.list()[0].fault.times, 1);
        assert_eq!(
            code(&request(&mut set, "StartInstance", &["i-a"])),
            Some("InternalError")
        );
        assert_eq!(code(&request(&mut set, "StartInstance", &["i-a"])), None);
        assert!(set.list().is_empty());
    }

    #[test]
    fn forever_stays() {
        let mut set = FaultSet::default();
        set.add(Fault::error("OperationDenied.NoStock"));
        for _ in 0..5 {
            assert_eq!(
                code(&request(&mut set, "StartInstance", &[])),
                Some("OperationDenied.NoStock")
            );
        }
        assert_eq!(set.list().len(), 1);
    }

    #[test]
    fn matches_instance_and_action() {
        let mut set = FaultSet::default();
        set.add(
            Fault::error("InternalError")
                .for_instance("i-a")
                .for_action("StopInstance"),
        );
        assert_eq!(code(&request(&mut set, "StopInstance", &["i-b"])), None);
        assert_eq!(code(&request(&mut set, "StartInstance", &["i-a"])), None);
        assert_eq!(
            code(&request(&mut set, "StopInstance", &["i-a"])),
            Some("InternalError")
        );
    }

    #[test]
    fn status_and_message_overrides_apply() {
        let mut set = FaultSet::default();
        set.add(
            Fault::error("InstanceNotReady")
                .http_status(500)
                .message("not yet"),
        );
        match request(&mut set, "StartInstance", &[]).outcome {
            Some(Outcome::Error(e)) => {
                assert_eq!((e.status, e.message.as_str()), (500, "not yet"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn probability_uses_the_roll() {
        let mut set = FaultSet::default();
        set.add(Fault::error("InternalError").probability(0.5).times(1));
        let none = set.fire(
            "DescribeInstances",
            Scope::Request {
                ids: &[],
                per_instance: false,
            },
            || 0.7,
        );
        assert!(none.outcome.is_none());
        assert_eq!(set.list().len(), 1, "an unfired fault is not consumed");
        let hit = set.fire(
            "DescribeInstances",
            Scope::Request {
                ids: &[],
                per_instance: false,
            },
            || 0.2,
        );
        assert_eq!(code(&hit), Some("InternalError"));
        assert!(set.list().is_empty());
    }

    #[test]
    fn latency_accumulates_and_first_decider_wins() {
        let mut set = FaultSet::default();
        set.add(Fault::delay(Duration::from_millis(10)));
        set.add(Fault::transport(TransportFault::Reset).with_latency(Duration::from_millis(5)));
        set.add(Fault::error("InternalError"));
        let fired = request(&mut set, "StartInstance", &[]);
        assert_eq!(fired.latency, Duration::from_millis(15));
        assert_eq!(
            fired.outcome,
            Some(Outcome::Transport {
                kind: TransportFault::Reset,
                after_action: false
            })
        );
    }

    #[test]
    fn per_instance_scope_leaves_code_faults_to_instances() {
        let mut set = FaultSet::default();
        set.add(Fault::error("OperationDenied.NoStock").for_instance("i-a"));
        let named = ids(&["i-a", "i-b"]);
        let req = set.fire(
            "StartInstances",
            Scope::Request {
                ids: &named,
                per_instance: true,
            },
            || 0.0,
        );
        assert!(req.outcome.is_none());
        assert_eq!(
            code(&set.fire("StartInstances", Scope::Instance("i-b"), || 0.0)),
            None
        );
        assert_eq!(
            code(&set.fire("StartInstances", Scope::Instance("i-a"), || 0.0)),
            Some("OperationDenied.NoStock")
        );
    }

    #[test]
    fn remove_and_clear() {
        let mut set = FaultSet::default();
        let a = set.add(Fault::error("InternalError"));
        set.add(Fault::error("UnknownError"));
        assert!(set.remove(a));
        assert!(!set.remove(a));
        assert_eq!(set.list().len(), 1);
        set.clear();
        assert!(set.list().is_empty());
    }
}
