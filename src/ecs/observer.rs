//! The hook through which every finished ECS call is counted (metrics live elsewhere).
//!
//! The [`client`](super::client) calls [`CallObserver::on_call`] once per HTTP request it sends
//! (each `DescribeInstances` page counts; the STS `GetCallerIdentity` call too). A batch call
//! (`StartInstances`, `StopInstances`) is also reported by [`CallObserver::on_batch`] with its size
//! before it is sent, and each entry of its answer by [`CallObserver::on_instance_result`]. The
//! metrics module implements the trait; tests and tools that do not count use [`NoopObserver`].
//! Outcomes form a small bounded set so they can be metric labels.

use std::time::Duration;

/// Outcome label of a successful call.
pub const OUTCOME_SUCCESS: &str = "Success";
/// Outcome label of a call that got no answer.
pub const OUTCOME_UNREACHABLE: &str = "EcsUnreachable";
/// Outcome label of an answer that could not be understood.
pub const OUTCOME_MALFORMED: &str = "MalformedResponse";
/// Outcome label of a non-JSON answer with status ≥ 500.
pub const OUTCOME_HTTP_5XX: &str = "HttpStatus5xx";
/// Per-instance outcome label of a requested instance that the batch answer does not mention.
pub const OUTCOME_MISSING: &str = "Missing";
/// Per-instance outcome label of an answer entry for an instance that was not requested (or that
/// repeats one already answered): ignored.
pub const OUTCOME_UNREQUESTED: &str = "Unrequested";
/// Outcome label used instead of an ECS code that does not look like one (too long, odd
/// characters), so a misbehaving endpoint cannot blow up label cardinality.
pub const OUTCOME_UNRECOGNISED_CODE: &str = "UnrecognisedCode";

/// Receives one notification per finished ECS call.
pub trait CallObserver: Send + Sync {
    /// One finished ECS call. `outcome` is `"Success"`, `"DryRunOperation"` (or
    /// `"DRYRUN.SUCCESS"`), the ECS error code, `"EcsUnreachable"`, `"MalformedResponse"` or
    /// `"HttpStatus5xx"` (bounded set).
    fn on_call(&self, action: &'static str, outcome: &str, elapsed: Duration);

    /// A batch call (`StartInstances` / `StopInstances`) of `batch_size` instance IDs is about to
    /// be sent; its [`CallObserver::on_call`] follows when it finishes.
    fn on_batch(&self, action: &'static str, batch_size: usize) {
        let _ = (action, batch_size);
    }

    /// One entry of a batch answer: `outcome` is "Success", the per-instance ECS code (bounded as
    /// for [`CallObserver::on_call`]), "Missing" (requested, not in the answer) or "Unrequested"
    /// (in the answer, not requested; ignored).
    fn on_instance_result(&self, action: &'static str, outcome: &str) {
        let _ = (action, outcome);
    }
}

/// A [`CallObserver`] that ignores every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl CallObserver for NoopObserver {
    fn on_call(&self, _action: &'static str, _outcome: &str, _elapsed: Duration) {}
}

/// The outcome label for an ECS error code: the code itself when it looks like one
/// (1–64 characters of `A-Za-z0-9._-`), [`OUTCOME_UNRECOGNISED_CODE`] otherwise.
#[must_use]
pub fn code_label(code: &str) -> &str {
    let looks_like_code = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if looks_like_code {
        code
    } else {
        OUTCOME_UNRECOGNISED_CODE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_labels_are_bounded() {
        assert_eq!(
            code_label("OperationDenied.NoStock"),
            "OperationDenied.NoStock"
        );
        assert_eq!(code_label("DRYRUN.SUCCESS"), "DRYRUN.SUCCESS");
        assert_eq!(code_label(""), OUTCOME_UNRECOGNISED_CODE);
        assert_eq!(code_label("has space"), OUTCOME_UNRECOGNISED_CODE);
        assert_eq!(code_label(&"A".repeat(65)), OUTCOME_UNRECOGNISED_CODE);
        NoopObserver.on_call("StartInstance", "Success", Duration::ZERO);
        NoopObserver.on_batch("StartInstances", 100);
        NoopObserver.on_instance_result("StartInstances", OUTCOME_MISSING);
    }
}
