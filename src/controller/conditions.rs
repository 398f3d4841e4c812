//! Conditions helper: sets `Ready` / `Reconciling` / `Stalled` on a status while keeping
//! `lastTransitionTime` when a condition's status does not change. Used by the report
//! step only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::vocabulary::condition;

/// The desired value of one condition; `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `"True"` or `"False"`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Stable human-readable message (no `RequestId`, no timestamp).
    pub message: String,
}

impl Desired {
    /// A condition with status True.
    pub fn truthy(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Desired {
            status: condition::TRUE,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// A condition with status False.
    pub fn falsy(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Desired {
            status: condition::FALSE,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Sets (or with `None` removes) the condition `type_` in `conditions`.
///
/// `lastTransitionTime` changes only when the condition's status changes (or it is new); reason,
/// message and `observedGeneration` are updated in place.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    desired: Option<Desired>,
    generation: Option<i64>,
    now: &Time,
) {
    let position = conditions.iter().position(|c| c.type_ == type_);
    match (position, desired) {
        (Some(i), None) => {
            conditions.remove(i);
        }
        (None, None) => {}
        (Some(i), Some(d)) => {
            let c = &mut conditions[i];
            if c.status != d.status {
                c.last_transition_time = now.clone();
                c.status = d.status.to_string();
            }
            c.reason = d.reason;
            c.message = d.message;
            c.observed_generation = generation;
        }
        (None, Some(d)) => conditions.push(Condition {
            type_: type_.to_string(),
            status: d.status.to_string(),
            reason: d.reason,
            message: d.message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            "Ready",
            Some(Desired::falsy("Starting", "m1")),
            Some(1),
            &at(10),
        );
        assert_eq!(conditions[0].last_transition_time, at(10));

        set(
            &mut conditions,
            "Ready",
            Some(Desired::falsy("NoStock", "m2")),
            Some(2),
            &at(20),
        );
        assert_eq!(
            conditions[0].last_transition_time,
            at(10),
            "same status keeps the time"
        );
        assert_eq!(conditions[0].reason, "NoStock");
        assert_eq!(conditions[0].observed_generation, Some(2));

        set(
            &mut conditions,
            "Ready",
            Some(Desired::truthy("Running", "m3")),
            Some(2),
            &at(30),
        );
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions[0].status, "True");
    }

    #[test]
    fn none_removes_and_order_is_kept() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            "Ready",
            Some(Desired::falsy("A", "a")),
            None,
            &at(1),
        );
        set(
            &mut conditions,
            "Reconciling",
            Some(Desired::truthy("B", "b")),
            None,
            &at(1),
        );
        set(&mut conditions, "Stalled", None, None, &at(1));
        assert_eq!(conditions.len(), 2);
        set(&mut conditions, "Reconciling", None, None, &at(2));
        assert_eq!(
            conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            ["Ready"]
        );
    }
}
