//! The batch write calls `StartInstances` and `StopInstances`: their parameters, and their answers
//! read per instance.
//!
//! Where it sits: a fleet-wide caller gathers the writes of many resources of one (credentials,
//! region, action, options) and sends up to [`MAX_IDS_PER_BATCH`] of them in one call through
//! [`EcsClient::start_instances`](super::EcsClient::start_instances) /
//! [`EcsClient::stop_instances`](super::EcsClient::stop_instances). The rules:
//!
//! - Always `BatchOptimization=SuccessFirst`: ECS acts on each instance separately and answers
//!   `InstanceResponses.InstanceResponse[]`, one entry per instance, with `Code` (`"200"` =
//!   accepted), `Message`, `InstanceId`, `PreviousStatus`, `CurrentStatus`. (The default,
//!   `AllTogether`, would fail the whole batch for one bad instance.)
//! - IDs go as `InstanceId.1` … `InstanceId.N`, 1 ≤ N ≤ 100, no duplicates; anything else is
//!   refused before sending.
//! - The answer is read **by `InstanceId`, never by position**. A requested ID absent from the
//!   answer is [`InstanceResult::Missing`]: its outcome is unknown (it may or may not have been
//!   acted on), never assumed accepted. An entry for an ID that was not requested, a second entry
//!   for an ID already answered, or an entry without an ID or code is ignored and counted in
//!   [`BatchOutcome::unexpected`].
//! - Each refused entry's `Code` is classified by
//!   [`classify_instance_code`], which gives the same
//!   reason and class as a single call that failed with that code.
//! - No `DryRun`: with `SuccessFirst` a dry run only ever answers `DRYRUN.SUCCESS`, so it checks
//!   nothing per instance; dry runs use the single calls. `StartInstances` has no `InitLocalDisk`
//!   either: such starts use the single `StartInstance`.
//! - A batch-level failure (throttling, signature, HTTP ≥ 500, no answer) is one
//!   [`EcsError`](super::EcsError) for the whole batch.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::catalogue::{Verdict, classify_instance_code};
use super::error::{MESSAGE_CHARS, truncate_chars};
use super::instance::InstanceStatus;
use super::observer::{OUTCOME_MISSING, OUTCOME_SUCCESS, code_label};
use super::power::StoppedMode;
use super::redaction::Redactor;

/// ECS action name of `StartInstances`.
pub const START_INSTANCES: &str = "StartInstances";
/// ECS action name of `StopInstances`.
pub const STOP_INSTANCES: &str = "StopInstances";
/// Most instance IDs one `StartInstances` / `StopInstances` call takes.
pub const MAX_IDS_PER_BATCH: usize = 100;
/// The `BatchOptimization` every batch call is sent with.
pub const SUCCESS_FIRST: &str = "SuccessFirst";
/// The per-instance `Code` of an accepted instance.
pub const ACCEPTED_CODE: &str = "200";

/// `StopInstances`' options, the same for every instance of the batch (a different combination is
/// a different batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StopOptions {
    /// `ForceStop=true`: power off without waiting for the guest OS.
    pub force_stop: bool,
    /// `StoppedMode`; `None` leaves the account default.
    pub stopped_mode: Option<StoppedMode>,
}

/// What became of one requested instance in a batch call ECS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceResult {
    /// `Code` `"200"`: ECS accepted the start or stop of this instance.
    Accepted {
        /// `PreviousStatus`, when reported.
        previous_status: Option<InstanceStatus>,
        /// `CurrentStatus`, when reported (usually `Starting` / `Stopping`).
        current_status: Option<InstanceStatus>,
    },
    /// Any other `Code`: ECS refused this instance.
    Refused {
        /// The per-instance ECS code, e.g. `OperationDenied.NoStock`.
        code: String,
        /// The per-instance message (redacted, at most 1024 characters).
        message: String,
        /// The code's reason and class, as for a single call failing with it.
        verdict: Verdict,
    },
    /// Requested, but the answer has no entry for it: the outcome is unknown.
    Missing,
}

impl InstanceResult {
    /// Whether this instance may or may not have been acted on, so that its write must be
    /// verified by a read before it is sent again: [`InstanceResult::Missing`], and a refusal
    /// whose code is ECS's own failure (`InternalError`, `UnknownError`, `ServiceUnavailable*`),
    /// the per-instance counterpart of a single call's HTTP ≥ 500.
    #[must_use]
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Self::Missing => true,
            Self::Accepted { .. } => false,
            Self::Refused { code, .. } => {
                code == "InternalError"
                    || code == "UnknownError"
                    || code == "ServiceUnavailable"
                    || code.starts_with("ServiceUnavailable.")
            }
        }
    }

    /// The observer's outcome label: "Success", the code (bounded) or "Missing".
    #[must_use]
    pub fn outcome_label(&self) -> &str {
        match self {
            Self::Accepted { .. } => OUTCOME_SUCCESS,
            Self::Refused { code, .. } => code_label(code),
            Self::Missing => OUTCOME_MISSING,
        }
    }
}

/// A batch call ECS answered with HTTP 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The call's `RequestId`.
    pub request_id: Option<String>,
    /// One result per requested instance ID, keyed by that ID.
    pub results: BTreeMap<String, InstanceResult>,
    /// Answer entries that were ignored: for IDs that were not requested, repeats of an ID
    /// already answered, or entries without an `InstanceId` or `Code`.
    pub unexpected: usize,
}

/// The action's own parameters: `RegionId`, `InstanceId.1..N`, `BatchOptimization=SuccessFirst`,
/// and for `StopInstances` `ForceStop=true` / `StoppedMode` when they say something.
#[must_use]
pub fn params(
    region_id: &str,
    instance_ids: &[&str],
    stop: Option<&StopOptions>,
) -> Vec<(String, String)> {
    let mut params = vec![
        ("RegionId".to_owned(), region_id.to_owned()),
        ("BatchOptimization".to_owned(), SUCCESS_FIRST.to_owned()),
    ];
    params.extend(
        instance_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("InstanceId.{}", i + 1), (*id).to_owned())),
    );
    if let Some(stop) = stop {
        if stop.force_stop {
            params.push(("ForceStop".to_owned(), "true".to_owned()));
        }
        if let Some(mode) = stop.stopped_mode {
            params.push(("StoppedMode".to_owned(), mode.as_str().to_owned()));
        }
    }
    params
}

/// Why a 2xx batch answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchAnswerError {
    /// Not a JSON object with `InstanceResponses.InstanceResponse` as an array.
    #[error("not a batch answer: {0}")]
    Shape(&'static str),
}

/// Reads a 2xx `StartInstances` / `StopInstances` body for the `requested` IDs.
///
/// # Errors
/// [`BatchAnswerError`] when the body is not a JSON object with an
/// `InstanceResponses.InstanceResponse` array (the whole batch's outcome is then unknown).
pub fn parse_answer(
    body: &[u8],
    requested: &[&str],
    redactor: &Redactor,
) -> Result<BatchOutcome, BatchAnswerError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|_| BatchAnswerError::Shape("not JSON"))?;
    let entries = root
        .get("InstanceResponses")
        .and_then(|r| r.get("InstanceResponse"))
        .and_then(Value::as_array)
        .ok_or(BatchAnswerError::Shape(
            "no InstanceResponses.InstanceResponse array",
        ))?;
    let wanted: BTreeSet<&str> = requested.iter().copied().collect();
    let mut results = BTreeMap::new();
    let mut unexpected = 0;
    for entry in entries {
        let id = text(entry.get("InstanceId"));
        let code = text(entry.get("Code"));
        let (Some(id), Some(code)) = (id, code) else {
            unexpected += 1;
            continue;
        };
        if !wanted.contains(id.as_str()) || results.contains_key(&id) {
            unexpected += 1;
            continue;
        }
        let status = |name: &str| text(entry.get(name)).map(|s| InstanceStatus::parse(&s));
        let result = if code == ACCEPTED_CODE {
            InstanceResult::Accepted {
                previous_status: status("PreviousStatus"),
                current_status: status("CurrentStatus"),
            }
        } else {
            let code = redactor.redact(&code);
            InstanceResult::Refused {
                verdict: classify_instance_code(&code),
                message: truncate_chars(
                    &redactor.redact(&text(entry.get("Message")).unwrap_or_default()),
                    MESSAGE_CHARS,
                ),
                code,
            }
        };
        results.insert(id, result);
    }
    for id in requested {
        results
            .entry((*id).to_owned())
            .or_insert(InstanceResult::Missing);
    }
    Ok(BatchOutcome {
        request_id: text(root.get("RequestId")),
        results,
        unexpected,
    })
}

/// A JSON string or number as trimmed text; `None` for null, empty or other shapes.
fn text(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ecs::catalogue::ErrorClass;

    #[test]
    fn params_number_ids_from_one_and_say_only_what_is_needed() {
        let p = params("cn-hangzhou", &["i-1", "i-2"], None);
        assert_eq!(
            p,
            vec![
                ("RegionId".to_owned(), "cn-hangzhou".to_owned()),
                ("BatchOptimization".to_owned(), "SuccessFirst".to_owned()),
                ("InstanceId.1".to_owned(), "i-1".to_owned()),
                ("InstanceId.2".to_owned(), "i-2".to_owned()),
            ]
        );
        let stop = StopOptions {
            force_stop: true,
            stopped_mode: Some(StoppedMode::StopCharging),
        };
        let p = params("cn-hangzhou", &["i-1"], Some(&stop));
        assert!(p.contains(&("ForceStop".to_owned(), "true".to_owned())));
        assert!(p.contains(&("StoppedMode".to_owned(), "StopCharging".to_owned())));
        let plain = params("cn-hangzhou", &["i-1"], Some(&StopOptions::default()));
        assert_eq!(plain.len(), 3);
    }

    #[test]
    fn answers_are_read_by_id_not_position() {
        let body = br#"{"RequestId":"B-1","InstanceResponses":{"InstanceResponse":[
            {"Code":"OperationDenied.NoStock","Message":"sold out","InstanceId":"i-2","PreviousStatus":"Stopped","CurrentStatus":"Stopped"},
            {"Code":"200","Message":"success","InstanceId":"i-1","PreviousStatus":"Stopped","CurrentStatus":"Starting"},
            {"Code":"200","InstanceId":"i-stranger"},
            {"Code":"IncorrectInstanceStatus","InstanceId":"i-1"},
            {"Code":"200"},
            {"InstanceId":"i-3"}
        ]}}"#;
        let out = parse_answer(body, &["i-1", "i-2", "i-3"], &Redactor::new()).unwrap();
        assert_eq!(out.request_id.as_deref(), Some("B-1"));
        assert_eq!(out.unexpected, 4);
        assert_eq!(
            out.results["i-1"],
            InstanceResult::Accepted {
                previous_status: Some(InstanceStatus::Stopped),
                current_status: Some(InstanceStatus::Starting),
            }
        );
        let InstanceResult::Refused {
            code,
            message,
            verdict,
        } = &out.results["i-2"]
        else {
            panic!("{:?}", out.results["i-2"]);
        };
        assert_eq!(code, "OperationDenied.NoStock");
        assert_eq!(message, "sold out");
        assert_eq!(verdict.reason, "NoStock");
        assert_eq!(verdict.class, ErrorClass::Capacity);
        assert_eq!(out.results["i-3"], InstanceResult::Missing);
        assert!(out.results["i-3"].is_ambiguous());
        assert!(!out.results["i-1"].is_ambiguous());
        assert!(!out.results["i-2"].is_ambiguous());
        assert_eq!(out.results.len(), 3);
    }

    #[test]
    fn ecs_failures_per_instance_are_ambiguous() {
        let body = br#"{"InstanceResponses":{"InstanceResponse":[
            {"Code":"InternalError","InstanceId":"i-1"},
            {"Code":"ServiceUnavailable.RegionMaintaining","InstanceId":"i-2"},
            {"Code":200,"InstanceId":"i-3"}
        ]}}"#;
        let out = parse_answer(body, &["i-1", "i-2", "i-3"], &Redactor::new()).unwrap();
        assert!(out.results["i-1"].is_ambiguous());
        assert!(out.results["i-2"].is_ambiguous());
        assert_eq!(out.results["i-3"].outcome_label(), "Success");
        assert_eq!(out.request_id, None);
    }

    #[test]
    fn unusable_answers() {
        for body in [
            &b"<html>"[..],
            br#"{"RequestId":"R"}"#,
            br#"{"InstanceResponses":{"InstanceResponse":{}}}"#,
            br"[]",
        ] {
            assert!(
                parse_answer(body, &["i-1"], &Redactor::new()).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let empty = parse_answer(
            br#"{"InstanceResponses":{"InstanceResponse":[]}}"#,
            &["i-1"],
            &Redactor::new(),
        )
        .unwrap();
        assert_eq!(empty.results["i-1"], InstanceResult::Missing);
    }

    #[test]
    fn echoed_secrets_are_redacted() {
        let mut redactor = Redactor::new();
        redactor.add("CAIS+sts/token==");
        let body = br#"{"InstanceResponses":{"InstanceResponse":[
            {"Code":"Weird","Message":"token CAIS+sts/token== echoed","InstanceId":"i-1"}]}}"#;
        let out = parse_answer(body, &["i-1"], &redactor).unwrap();
        let text = format!("{out:?}");
        assert!(!text.contains("CAIS"), "{text}");
    }
}
