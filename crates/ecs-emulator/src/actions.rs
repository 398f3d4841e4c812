//! The API actions the emulator serves, one file per family: the Describe calls, the single
//! power calls (Start/Stop/RebootInstance), the batch calls (Start/StopInstances), and STS
//! AssumeRoleWithOIDC and GetCallerIdentity. Each takes the decoded parameters and answers the action's fields or an
//! [`EcsError`]; the gateway has already authenticated, throttled and applied request faults.

mod batch;
mod describe_instance_attribute;
mod describe_instance_status;
mod describe_instances;
mod describe_regions;
mod power;
mod rules;
mod sts;
mod view;

use std::time::Instant;

use serde_json::{Map, Value};

use crate::catalogue::EcsError;
use crate::emulator::Shared;
use crate::protocol::Params;
use crate::signature::Principal;

/// ECS API version served.
pub const ECS_VERSION: &str = "2014-05-26";
/// STS API version served (AssumeRoleWithOIDC, GetCallerIdentity).
pub const STS_VERSION: &str = "2015-04-01";

/// Every action served.
pub const ACTIONS: &[&str] = &[
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeInstanceAttribute",
    "DescribeRegions",
    "StartInstance",
    "StopInstance",
    "RebootInstance",
    "StartInstances",
    "StopInstances",
    "AssumeRoleWithOIDC",
    "GetCallerIdentity",
];

const WRITE_ACTIONS: &[&str] = &[
    "StartInstance",
    "StopInstance",
    "RebootInstance",
    "StartInstances",
    "StopInstances",
];

/// Whether the emulator serves this action.
#[must_use]
pub fn is_known(action: &str) -> bool {
    ACTIONS.contains(&action)
}

/// Whether the action changes instance state.
#[must_use]
pub fn is_write(action: &str) -> bool {
    WRITE_ACTIONS.contains(&action)
}

/// Whether the action is anonymous (no signature).
pub(crate) fn is_anonymous(action: &str) -> bool {
    action == "AssumeRoleWithOIDC"
}

/// The API version an action belongs to.
pub(crate) fn version_of(action: &str) -> &'static str {
    if matches!(action, "AssumeRoleWithOIDC" | "GetCallerIdentity") {
        STS_VERSION
    } else {
        ECS_VERSION
    }
}

/// Whether the request wants per-instance answers (SuccessFirst batches).
pub(crate) fn is_per_instance(action: &str, params: &Params) -> bool {
    matches!(action, "StartInstances" | "StopInstances")
        && params.get("BatchOptimization") == Some("SuccessFirst")
}

/// What an action sees.
pub(crate) struct Context<'a> {
    pub shared: &'a Shared,
    pub params: &'a Params,
    /// The authenticated caller (`None` for anonymous actions).
    pub principal: Option<&'a Principal>,
    pub now: Instant,
    pub now_ts: jiff::Timestamp,
}

/// The fields of a successful answer (`RequestId` is added by the renderer).
pub(crate) type Answer = Result<Map<String, Value>, EcsError>;

/// Runs an action.
pub(crate) fn dispatch(action: &str, ctx: &Context<'_>) -> Answer {
    match action {
        "DescribeInstances" => describe_instances::run(ctx),
        "DescribeInstanceStatus" => describe_instance_status::run(ctx),
        "DescribeInstanceAttribute" => describe_instance_attribute::run(ctx),
        "DescribeRegions" => describe_regions::run(ctx),
        "StartInstance" => power::run(ctx, rules::Op::Start),
        "StopInstance" => power::run(ctx, rules::Op::Stop),
        "RebootInstance" => power::run(ctx, rules::Op::Reboot),
        "StartInstances" => batch::run(ctx, rules::Op::Start),
        "StopInstances" => batch::run(ctx, rules::Op::Stop),
        "AssumeRoleWithOIDC" => sts::run(ctx),
        "GetCallerIdentity" => sts::caller_identity(ctx),
        _ => Err(EcsError::of("InvalidAction.NotFound")),
    }
}

/// Builds a JSON object from pairs.
pub(crate) fn object<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_action_is_known() {
        assert!(WRITE_ACTIONS.iter().all(|a| is_known(a)));
        assert!(!is_known("RunInstances"));
        assert_eq!(version_of("AssumeRoleWithOIDC"), STS_VERSION);
        assert_eq!(version_of("GetCallerIdentity"), STS_VERSION);
        assert_eq!(version_of("StartInstance"), ECS_VERSION);
    }
}
