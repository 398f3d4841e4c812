//! The one ECS error catalogue: every ECS outcome → a `Ready` condition reason and a
//! retry class, in one place.
//!
//! The controller calls [`classify`] on every [`EcsError`] and [`classify_lock`] on every
//! `OperationLocks` entry that `DescribeInstances` reports; the [`Verdict`] it gets names the
//! condition reason (a valid Kubernetes condition reason, CamelCase) and the [`ErrorClass`] that
//! picks the retry schedule. The reason strings themselves, the ECS ones and the controller's own,
//! are defined once in [`crate::vocabulary`]; this module decides which one applies.

use super::credentials::CredentialsError;
use super::error::EcsError;

/// Every condition reason, the ECS ones and the controller's own, defined once in the vocabulary.
pub use crate::vocabulary::reason;

/// How the controller retries after a failure of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Needs someone to act: no write call, re-check every 10 min or when the spec/Secret changes.
    Terminal,
    /// The instance is busy or in the wrong state: re-observe after 2–5 s.
    Conflict,
    /// ECS has no capacity right now: back off 30 s → 30 min.
    Capacity,
    /// Probably gone on its own soon: back off 1 s → 5 min.
    Transient,
    /// Rate-limited: back off 2 s → 5 min and slow the shared limiter down.
    Throttled,
}

impl ErrorClass {
    /// The class name, for logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "Terminal",
            Self::Conflict => "Conflict",
            Self::Capacity => "Capacity",
            Self::Transient => "Transient",
            Self::Throttled => "Throttled",
        }
    }

    /// Whether the operator retries the write call by itself (everything but `Terminal`).
    #[must_use]
    pub const fn is_retryable(self) -> bool {
        !matches!(self, Self::Terminal)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the catalogue says about one failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// The `Ready` condition reason (CamelCase, matches `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`).
    pub reason: String,
    /// The retry class.
    pub class: ErrorClass,
}

impl Verdict {
    fn new(reason: impl Into<String>, class: ErrorClass) -> Self {
        Self {
            reason: reason.into(),
            class,
        }
    }
}

/// Classifies an ECS call failure.
#[must_use]
pub fn classify(err: &EcsError) -> Verdict {
    match err {
        EcsError::Api {
            code, http_status, ..
        } => classify_code(code, *http_status),
        EcsError::HttpStatus { http_status, .. } => classify_status(*http_status)
            .unwrap_or_else(|| Verdict::new(reason::MALFORMED_RESPONSE, ErrorClass::Transient)),
        EcsError::Unreachable { .. } => {
            Verdict::new(reason::ECS_UNREACHABLE, ErrorClass::Transient)
        }
        EcsError::Malformed { .. } => {
            Verdict::new(reason::MALFORMED_RESPONSE, ErrorClass::Transient)
        }
        EcsError::InvalidRequest { .. } => {
            Verdict::new(reason::INVALID_REQUEST, ErrorClass::Terminal)
        }
    }
}

/// Classifies one `OperationLocks` entry of `DescribeInstances`: `security` →
/// `InstanceLockedForSecurity`, anything else (`financial`, `recycling`, …) → `InstanceLocked`.
/// Both are terminal: no write call while a lock is present.
#[must_use]
pub fn classify_lock(lock_reason: &str) -> Verdict {
    if lock_reason
        .trim()
        .eq_ignore_ascii_case(crate::vocabulary::lock::SECURITY)
    {
        Verdict::new(reason::INSTANCE_LOCKED_FOR_SECURITY, ErrorClass::Terminal)
    } else {
        Verdict::new(reason::INSTANCE_LOCKED, ErrorClass::Terminal)
    }
}

/// Classifies a failure to obtain credentials.
///
/// - A Secret or the environment missing a key, an empty or malformed value, unusable RRSA
///   settings or token file → `CredentialsInvalid`, terminal (someone has to fix the setup).
/// - STS refusing the RRSA exchange with a 4xx code (`AuthenticationFail.OIDCToken.*`,
///   `EntityNotExist.Role`, `EntityNotExist.OIDCProvider`, `InvalidParameter.*`, `NoPermission`,
///   …) → `CredentialsRejected`, terminal.
/// - STS unreachable, answering HTTP ≥ 500 or `InternalError` / `ServiceUnavailable*` /
///   `Throttling*`, or something that is not an STS answer → `StsUnavailable`, transient. (STS
///   throttling is not the ECS `Throttled` class: it must not slow the ECS limiter down.)
#[must_use]
pub fn classify_credentials(err: &CredentialsError) -> Verdict {
    match err {
        CredentialsError::Missing { .. }
        | CredentialsError::Empty { .. }
        | CredentialsError::NotUtf8 { .. }
        | CredentialsError::ControlCharacter { .. }
        | CredentialsError::Invalid { .. }
        | CredentialsError::TokenFile { .. } => {
            Verdict::new(reason::CREDENTIALS_INVALID, ErrorClass::Terminal)
        }
        CredentialsError::Exchange {
            code, http_status, ..
        } => {
            let family = |prefix: &str| code == prefix || code.starts_with(&format!("{prefix}."));
            let passing = *http_status >= 500
                || [
                    "InternalError",
                    "UnknownError",
                    "ServiceUnavailable",
                    "Throttling",
                ]
                .into_iter()
                .any(family)
                || code == "Rejected.Throttling";
            if passing {
                Verdict::new(reason::STS_UNAVAILABLE, ErrorClass::Transient)
            } else {
                Verdict::new(reason::CREDENTIALS_REJECTED, ErrorClass::Terminal)
            }
        }
        CredentialsError::StsUnavailable { .. } => {
            Verdict::new(reason::STS_UNAVAILABLE, ErrorClass::Transient)
        }
    }
}

/// The HTTP status a per-instance result is classified with: a batch answer is HTTP 200 and each
/// entry carries only a `Code`, so no status rule (≥ 500) can apply; any status below 500 leaves
/// the code table and the "code without its dots" rule, which is exactly how a single call's error
/// with that code is classified.
const PER_INSTANCE_STATUS: u16 = 400;

/// Classifies the `Code` of one entry of a batch answer (`InstanceResponses.InstanceResponse[]`
/// of `StartInstances` / `StopInstances` with `BatchOptimization=SuccessFirst`; `"200"` means
/// accepted and is not classified). It gives the same reason and class as [`classify`] gives a
/// single `StartInstance` / `StopInstance` that failed with that code, so a resource reports the
/// same condition whichever way its write was sent.
#[must_use]
pub fn classify_instance_code(code: &str) -> Verdict {
    classify_code(code, PER_INSTANCE_STATUS)
}

/// The ECS error code table, then the HTTP status rules, then "the code without its dots".
fn classify_code(code: &str, http_status: u16) -> Verdict {
    use ErrorClass::{Capacity, Conflict, Terminal, Throttled, Transient};
    let known = match code {
        "InvalidInstanceId.NotFound" => Some((reason::INSTANCE_NOT_FOUND, Terminal)),
        "IncorrectInstanceStatus" => Some((reason::INCORRECT_INSTANCE_STATUS, Conflict)),
        // An unknown 4xx code would be terminal; but ECS documents this 409 as "another operation
        // is in progress, try again" (and every official SDK's retry policy retries it): it is
        // the same situation as IncorrectInstanceStatus, so re-observe.
        "OperationConflict" => Some((reason::OPERATION_CONFLICT, Conflict)),
        "InstanceLockedForSecurity" => Some((reason::INSTANCE_LOCKED_FOR_SECURITY, Terminal)),
        "InsufficientBalance" => Some((reason::INSUFFICIENT_BALANCE, Terminal)),
        "InstanceExpired" | "InstanceExpiredOrInArrears" => {
            Some((reason::INSTANCE_EXPIRED, Terminal))
        }
        "DiskInArrears" => Some((reason::DISK_IN_ARREARS, Terminal)),
        "DiskError" => Some((reason::DISK_ERROR, Terminal)),
        "InstanceNotReady" => Some((reason::INSTANCE_NOT_READY, Transient)),
        "OperationDenied.NoStock" => Some((reason::NO_STOCK, Capacity)),
        // The "newer online page" StartInstance codes that say the zone, the dedicated host or
        // the private pool has no room right now. Like NoStock this usually resolves itself when
        // capacity frees up, and hammering ECS does not help: capacity back-off (30 s → 30 min),
        // each with its own reason so users can tell which pool ran dry.
        "LackResource" => Some((reason::LACK_RESOURCE, Capacity)),
        "InvalidDedicatedHost.NotEnoughResource" => {
            Some((reason::DEDICATED_HOST_NOT_ENOUGH_RESOURCE, Capacity))
        }
        "Invalid.PrivatePoolOptions.NoStock" => Some((reason::PRIVATE_POOL_NO_STOCK, Capacity)),
        "OperationDenied.SpotPriceLowerThanPublicPrice" => {
            Some((reason::SPOT_PRICE_LOWER_THAN_PUBLIC_PRICE, Terminal))
        }
        "InvalidParameter.KMSKeyId.KMSUnauthorized" => Some((reason::KMS_UNAUTHORIZED, Terminal)),
        "QuotaExceed.ElasticQuota" => Some((reason::QUOTA_EXCEEDED, Terminal)),
        "InternalError" | "UnknownError" => Some((reason::INTERNAL_ERROR, Transient)),
        "Rejected.Throttling" => Some((reason::THROTTLED, Throttled)),
        "SignatureDoesNotMatch" | "IncompleteSignature" => {
            Some((reason::CREDENTIALS_REJECTED, Terminal))
        }
        "InvalidTimeStamp.Expired" | "IllegalTimestamp" | "SignatureNonceUsed" => {
            Some((reason::REQUEST_REJECTED, Transient))
        }
        _ => None,
    }
    .or_else(|| {
        let family = |prefix: &str| code == prefix || code.starts_with(&format!("{prefix}."));
        if family("ServiceUnavailable") {
            Some((reason::SERVICE_UNAVAILABLE, Transient))
        } else if family("Throttling") {
            Some((reason::THROTTLED, Throttled))
        } else if family("InvalidAccessKeyId") || family("InvalidSecurityToken") {
            Some((reason::CREDENTIALS_REJECTED, Terminal))
        } else if family("Forbidden") {
            Some((reason::FORBIDDEN, Terminal))
        } else {
            None
        }
    });
    if let Some((reason, class)) = known {
        return Verdict::new(reason, class);
    }
    if let Some(verdict) = classify_status(http_status) {
        return verdict;
    }
    Verdict::new(reason_from_code(code), Terminal)
}

/// The rule for any other HTTP status ≥ 500: 502/503/504 → `ServiceUnavailable`, others →
/// `InternalError`, both transient. `None` below 500.
fn classify_status(http_status: u16) -> Option<Verdict> {
    match http_status {
        502..=504 => Some(Verdict::new(
            reason::SERVICE_UNAVAILABLE,
            ErrorClass::Transient,
        )),
        500.. => Some(Verdict::new(reason::INTERNAL_ERROR, ErrorClass::Transient)),
        _ => None,
    }
}

/// Longest reason made from an ECS code.
const MAX_CODE_REASON_LEN: usize = 128;

/// An ECS code as a condition reason: only ASCII letters and digits kept (so `InvalidParameter.Foo`
/// → `InvalidParameterFoo`), starting with a letter (`Ecs` is put in front otherwise), at most
/// 128 characters; `UnknownEcsError` when nothing is left.
fn reason_from_code(code: &str) -> String {
    let kept: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_CODE_REASON_LEN)
        .collect();
    match kept.chars().next() {
        None => reason::UNKNOWN_ECS_ERROR.to_owned(),
        Some(first) if first.is_ascii_alphabetic() => kept,
        Some(_) => format!("Ecs{kept}"),
    }
}

/// Every code of the table and one member of each family, with the HTTP status a single call
/// gets it with: the cases of the tests that prove per-instance (batch) codes and single-call
/// errors are classified alike, here and over HTTP in the client's tests.
#[cfg(test)]
pub(crate) const CODES_WITH_STATUS: &[(&str, u16)] = &[
    ("InvalidInstanceId.NotFound", 404),
    ("IncorrectInstanceStatus", 403),
    ("OperationConflict", 409),
    ("InstanceLockedForSecurity", 403),
    ("InsufficientBalance", 403),
    ("InstanceExpired", 403),
    ("InstanceExpiredOrInArrears", 403),
    ("DiskInArrears", 403),
    ("DiskError", 403),
    ("InstanceNotReady", 403),
    ("InstanceNotReady", 500),
    ("OperationDenied.NoStock", 403),
    ("LackResource", 400),
    ("InvalidDedicatedHost.NotEnoughResource", 400),
    ("Invalid.PrivatePoolOptions.NoStock", 400),
    ("OperationDenied.SpotPriceLowerThanPublicPrice", 403),
    ("InvalidParameter.KMSKeyId.KMSUnauthorized", 403),
    ("QuotaExceed.ElasticQuota", 403),
    ("InternalError", 500),
    ("UnknownError", 500),
    ("ServiceUnavailable", 503),
    ("ServiceUnavailable.RegionMaintaining", 503),
    ("Throttling", 400),
    ("Throttling.User", 400),
    ("Rejected.Throttling", 400),
    ("InvalidAccessKeyId.NotFound", 400),
    ("InvalidSecurityToken.Expired", 400),
    ("SignatureDoesNotMatch", 400),
    ("IncompleteSignature", 400),
    ("Forbidden.RAM", 403),
    ("InvalidTimeStamp.Expired", 400),
    ("IllegalTimestamp", 400),
    ("SignatureNonceUsed", 400),
    ("InvalidInstanceId.NotSupport", 403),
    ("InstanceType.ParameterMismatch", 403),
    ("InvalidParameter.KMSKeyId.NotFound", 403),
    ("MissingParameter", 400),
];

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::{Capacity, Conflict, Terminal, Throttled, Transient};

    fn api(code: &str, http_status: u16) -> EcsError {
        EcsError::Api {
            code: code.into(),
            message: "m".into(),
            http_status,
            request_id: Some("R".into()),
            retry_after: None,
        }
    }

    /// `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, the Kubernetes condition reason pattern.
    fn is_valid_reason(reason: &str) -> bool {
        let bytes = reason.as_bytes();
        let Some((first, rest)) = bytes.split_first() else {
            return false;
        };
        if !first.is_ascii_alphabetic() {
            return false;
        }
        if let Some(last) = rest.last()
            && !(last.is_ascii_alphanumeric() || *last == b'_')
        {
            return false;
        }
        rest.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b',' | b':'))
            && reason.len() <= 1024
    }

    fn check(table: &[(&str, u16, &str, ErrorClass)]) {
        for (code, status, reason, class) in table {
            let verdict = classify(&api(code, *status));
            assert_eq!(
                verdict,
                Verdict::new(*reason, *class),
                "code {code} (HTTP {status})"
            );
            assert!(is_valid_reason(&verdict.reason), "{verdict:?}");
        }
    }

    /// Every code of the catalogue's table, with the HTTP status ECS documents for it.
    #[test]
    fn design_table() {
        check(&[
            (
                "InvalidInstanceId.NotFound",
                404,
                "InstanceNotFound",
                Terminal,
            ),
            (
                "IncorrectInstanceStatus",
                403,
                "IncorrectInstanceStatus",
                Conflict,
            ),
            (
                "InstanceLockedForSecurity",
                403,
                "InstanceLockedForSecurity",
                Terminal,
            ),
            ("InsufficientBalance", 403, "InsufficientBalance", Terminal),
            ("InstanceExpired", 403, "InstanceExpired", Terminal),
            (
                "InstanceExpiredOrInArrears",
                403,
                "InstanceExpired",
                Terminal,
            ),
            ("DiskInArrears", 403, "DiskInArrears", Terminal),
            ("DiskError", 403, "DiskError", Terminal),
            ("InstanceNotReady", 403, "InstanceNotReady", Transient),
            ("InstanceNotReady", 500, "InstanceNotReady", Transient),
            ("OperationDenied.NoStock", 403, "NoStock", Capacity),
            (
                "OperationDenied.SpotPriceLowerThanPublicPrice",
                403,
                "SpotPriceLowerThanPublicPrice",
                Terminal,
            ),
            (
                "InvalidParameter.KMSKeyId.KMSUnauthorized",
                403,
                "KMSUnauthorized",
                Terminal,
            ),
            ("QuotaExceed.ElasticQuota", 403, "QuotaExceeded", Terminal),
            ("InternalError", 500, "InternalError", Transient),
            ("UnknownError", 500, "InternalError", Transient),
            ("UnknownError", 400, "InternalError", Transient),
            ("ServiceUnavailable", 503, "ServiceUnavailable", Transient),
            (
                "ServiceUnavailable.RegionMaintaining",
                503,
                "ServiceUnavailable",
                Transient,
            ),
            ("SomethingNew", 500, "InternalError", Transient),
            ("SomethingNew", 501, "InternalError", Transient),
            ("SomethingNew", 502, "ServiceUnavailable", Transient),
            ("SomethingNew", 503, "ServiceUnavailable", Transient),
            ("SomethingNew", 504, "ServiceUnavailable", Transient),
            ("Throttling", 400, "Throttled", Throttled),
            ("Throttling.User", 400, "Throttled", Throttled),
            ("Throttling.Api", 400, "Throttled", Throttled),
            ("Rejected.Throttling", 400, "Throttled", Throttled),
            (
                "InvalidAccessKeyId.NotFound",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            (
                "InvalidAccessKeyId.Inactive",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            (
                "SignatureDoesNotMatch",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            ("IncompleteSignature", 400, "CredentialsRejected", Terminal),
            (
                "InvalidSecurityToken.Expired",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            (
                "InvalidSecurityToken.Malformed",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            ("Forbidden.RAM", 403, "Forbidden", Terminal),
            ("Forbidden.AccessKeyDisabled", 403, "Forbidden", Terminal),
            (
                "InvalidTimeStamp.Expired",
                400,
                "RequestRejected",
                Transient,
            ),
            ("IllegalTimestamp", 400, "RequestRejected", Transient),
            ("SignatureNonceUsed", 400, "RequestRejected", Transient),
            ("InvalidParameter.Foo", 400, "InvalidParameterFoo", Terminal),
        ]);
    }

    /// The whole documented `StartInstance` error table, including the newer online codes.
    #[test]
    fn start_instance_table() {
        check(&[
            (
                "InvalidInstanceId.NotFound",
                404,
                "InstanceNotFound",
                Terminal,
            ),
            (
                "IncorrectInstanceStatus",
                403,
                "IncorrectInstanceStatus",
                Conflict,
            ),
            (
                "InstanceLockedForSecurity",
                403,
                "InstanceLockedForSecurity",
                Terminal,
            ),
            ("InsufficientBalance", 403, "InsufficientBalance", Terminal),
            ("InstanceExpired", 403, "InstanceExpired", Terminal),
            ("InstanceNotReady", 403, "InstanceNotReady", Transient),
            ("InstanceNotReady", 500, "InstanceNotReady", Transient),
            ("DiskError", 403, "DiskError", Terminal),
            ("DiskInArrears", 403, "DiskInArrears", Terminal),
            ("OperationDenied.NoStock", 403, "NoStock", Capacity),
            (
                "OperationDenied.SpotPriceLowerThanPublicPrice",
                403,
                "SpotPriceLowerThanPublicPrice",
                Terminal,
            ),
            (
                "InvalidParameter.KMSKeyId.KMSUnauthorized",
                403,
                "KMSUnauthorized",
                Terminal,
            ),
            ("QuotaExceed.ElasticQuota", 403, "QuotaExceeded", Terminal),
            ("InternalError", 500, "InternalError", Transient),
            ("LackResource", 400, "LackResource", Capacity),
            (
                "InvalidDedicatedHost.NotEnoughResource",
                400,
                "InvalidDedicatedHostNotEnoughResource",
                Capacity,
            ),
            (
                "InvalidInstance.NotFoundSystemDisk",
                400,
                "InvalidInstanceNotFoundSystemDisk",
                Terminal,
            ),
            (
                "Invalid.PrivatePoolOptions.NoStock",
                400,
                "InvalidPrivatePoolOptionsNoStock",
                Capacity,
            ),
            (
                "InvalidParameter.KMSKeyId.NotFound",
                403,
                "InvalidParameterKMSKeyIdNotFound",
                Terminal,
            ),
        ]);
    }

    /// The documented `StopInstance` error table.
    #[test]
    fn stop_instance_table() {
        check(&[
            (
                "InvalidInstanceId.NotFound",
                404,
                "InstanceNotFound",
                Terminal,
            ),
            (
                "IncorrectInstanceStatus",
                403,
                "IncorrectInstanceStatus",
                Conflict,
            ),
            (
                "InstanceLockedForSecurity",
                403,
                "InstanceLockedForSecurity",
                Terminal,
            ),
            ("DiskError", 403, "DiskError", Terminal),
            (
                "InstanceType.ParameterMismatch",
                403,
                "InstanceTypeParameterMismatch",
                Terminal,
            ),
            (
                "InstanceExpiredOrInArrears",
                403,
                "InstanceExpired",
                Terminal,
            ),
            (
                "InvalidInstanceId.NotSupport",
                403,
                "InvalidInstanceIdNotSupport",
                Terminal,
            ),
            (
                "InvalidParameter.KMSKeyId.KMSUnauthorized",
                403,
                "KMSUnauthorized",
                Terminal,
            ),
            ("InternalError", 500, "InternalError", Transient),
        ]);
    }

    /// The common codes of the ECS API (documented and seen from the gateway).
    #[test]
    fn common_codes() {
        check(&[
            ("IllegalTimestamp", 400, "RequestRejected", Transient),
            ("IncompleteSignature", 400, "CredentialsRejected", Terminal),
            (
                "InvalidAccessKeyId.NotFound",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            ("SignatureNonceUsed", 400, "RequestRejected", Transient),
            ("Throttling", 400, "Throttled", Throttled),
            ("MissingParameter", 400, "MissingParameter", Terminal),
            ("InvalidParameter", 400, "InvalidParameter", Terminal),
            ("UnknownError", 400, "InternalError", Transient),
            (
                "IdempotentParameterMismatch",
                400,
                "IdempotentParameterMismatch",
                Terminal,
            ),
            ("InsufficientBalance", 400, "InsufficientBalance", Terminal),
            ("Forbidden.AccessKeyDisabled", 403, "Forbidden", Terminal),
            ("Forbidden.RAM", 403, "Forbidden", Terminal),
            ("Forbidden.Unauthorized", 403, "Forbidden", Terminal),
            ("Forbidden.SubUser", 403, "Forbidden", Terminal),
            ("Forbidden.RiskControl", 403, "Forbidden", Terminal),
            ("Forbidden.NotSupportRAM", 403, "Forbidden", Terminal),
            ("InvalidAction", 403, "InvalidAction", Terminal),
            (
                "UnsupportedHTTPMethod",
                403,
                "UnsupportedHTTPMethod",
                Terminal,
            ),
            ("ChargeTypeViolation", 403, "ChargeTypeViolation", Terminal),
            (
                "InvalidInstanceId.NotFound",
                404,
                "InstanceNotFound",
                Terminal,
            ),
            (
                "InvalidRegionId.NotFound",
                404,
                "InvalidRegionIdNotFound",
                Terminal,
            ),
            ("OperationConflict", 409, "OperationConflict", Conflict),
            ("InternalError", 500, "InternalError", Transient),
            ("ServiceUnavailable", 503, "ServiceUnavailable", Transient),
            (
                "ServiceUnavailable.RegionMaintaining",
                503,
                "ServiceUnavailable",
                Transient,
            ),
            (
                "SignatureDoesNotMatch",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            (
                "InvalidTimeStamp.Expired",
                400,
                "RequestRejected",
                Transient,
            ),
            (
                "InvalidAccessKeyId.Inactive",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            (
                "InvalidSecurityToken.Expired",
                400,
                "CredentialsRejected",
                Terminal,
            ),
            ("Throttling.User", 400, "Throttled", Throttled),
            ("Throttling.Api", 400, "Throttled", Throttled),
            ("Rejected.Throttling", 400, "Throttled", Throttled),
        ]);
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        // `ThrottlingX` is not the Throttling family, `ForbiddenFruit` not Forbidden.
        check(&[
            ("ThrottlingX", 400, "ThrottlingX", Terminal),
            ("ForbiddenFruit", 403, "ForbiddenFruit", Terminal),
            ("Forbidden", 403, "Forbidden", Terminal),
        ]);
    }

    #[test]
    fn odd_codes_still_give_valid_reasons() {
        check(&[
            ("", 400, "UnknownEcsError", Terminal),
            ("...", 400, "UnknownEcsError", Terminal),
            ("400", 400, "Ecs400", Terminal),
            (
                "Weird-Code_with spaces!",
                400,
                "WeirdCodewithspaces",
                Terminal,
            ),
            ("中文Code", 400, "Code", Terminal),
        ]);
        let long = "A".repeat(10_000);
        let verdict = classify(&api(&long, 400));
        assert_eq!(verdict.reason.len(), MAX_CODE_REASON_LEN);
        assert!(is_valid_reason(&verdict.reason));
    }

    #[test]
    fn transport_errors() {
        assert_eq!(
            classify(&EcsError::Unreachable {
                detail: "timed out".into(),
                request_sent: true,
            }),
            Verdict::new("EcsUnreachable", Transient)
        );
        assert_eq!(
            classify(&EcsError::Malformed {
                http_status: 200,
                detail: "x".into()
            }),
            Verdict::new("MalformedResponse", Transient)
        );
        for (status, reason) in [
            (500, "InternalError"),
            (502, "ServiceUnavailable"),
            (503, "ServiceUnavailable"),
            (504, "ServiceUnavailable"),
            (599, "InternalError"),
        ] {
            assert_eq!(
                classify(&EcsError::HttpStatus {
                    http_status: status,
                    snippet: "Bad Gateway".into(),
                    retry_after: None,
                }),
                Verdict::new(reason, Transient),
                "HTTP {status}"
            );
        }
        assert_eq!(
            classify(&EcsError::InvalidRequest {
                detail: "101 ids".into()
            }),
            Verdict::new("InvalidRequest", Terminal)
        );
    }

    #[test]
    fn locks() {
        assert_eq!(
            classify_lock("security"),
            Verdict::new("InstanceLockedForSecurity", Terminal)
        );
        for other in [
            "financial",
            "recycling",
            "Recycling",
            "dedicatedhostfinancial",
            "refunded",
            "",
        ] {
            assert_eq!(
                classify_lock(other),
                Verdict::new("InstanceLocked", Terminal),
                "{other}"
            );
        }
    }

    #[test]
    fn credentials_and_controller_reasons_are_valid() {
        assert_eq!(
            classify_credentials(&CredentialsError::Missing { key: "accessKeyId" }),
            Verdict::new("CredentialsInvalid", Terminal)
        );
        for r in [
            reason::CREDENTIALS_NOT_FOUND,
            reason::CREDENTIALS_INVALID,
            reason::STS_UNAVAILABLE,
            reason::INSTANCE_NOT_FOUND,
            reason::INSTANCE_LOCKED,
            reason::UNKNOWN_ECS_ERROR,
        ] {
            assert!(is_valid_reason(r), "{r}");
        }
    }

    #[test]
    fn credential_failures() {
        let invalid = Verdict::new("CredentialsInvalid", Terminal);
        let rejected = Verdict::new("CredentialsRejected", Terminal);
        let unavailable = Verdict::new("StsUnavailable", Transient);
        let exchange = |code: &str, http_status: u16| CredentialsError::Exchange {
            code: code.into(),
            message: "m".into(),
            http_status,
            request_id: None,
        };
        let cases = [
            (
                CredentialsError::Empty {
                    key: "accessKeySecret",
                },
                &invalid,
            ),
            (CredentialsError::NotUtf8 { key: "accessKeyId" }, &invalid),
            (
                CredentialsError::ControlCharacter {
                    key: "accessKeySecret",
                },
                &invalid,
            ),
            (
                CredentialsError::Missing {
                    key: "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                },
                &invalid,
            ),
            (
                CredentialsError::Invalid {
                    key: "ALIBABA_CLOUD_STS_ENDPOINT",
                    detail: "d".into(),
                },
                &invalid,
            ),
            (
                CredentialsError::TokenFile {
                    path: "/t".into(),
                    detail: "d".into(),
                },
                &invalid,
            ),
            (
                exchange("AuthenticationFail.OIDCToken.Expired", 400),
                &rejected,
            ),
            (
                exchange("AuthenticationFail.OIDCToken.Invalid", 400),
                &rejected,
            ),
            (exchange("EntityNotExist.Role", 404), &rejected),
            (exchange("EntityNotExist.OIDCProvider", 404), &rejected),
            (exchange("InvalidParameter.RoleArn", 400), &rejected),
            (exchange("NoPermission", 403), &rejected),
            (exchange("MissingOIDCToken", 400), &rejected),
            (exchange("InternalError", 500), &unavailable),
            (exchange("ServiceUnavailable", 503), &unavailable),
            (exchange("Throttling.User", 400), &unavailable),
            (exchange("Throttling", 400), &unavailable),
            (exchange("Rejected.Throttling", 400), &unavailable),
            (exchange("SomethingNew", 502), &unavailable),
            (exchange("ThrottlingX", 400), &rejected),
            (
                CredentialsError::StsUnavailable {
                    detail: "d".into(),
                    http_status: None,
                },
                &unavailable,
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(&classify_credentials(&err), expected, "{err:?}");
        }
    }

    #[test]
    fn class_properties() {
        assert!(!Terminal.is_retryable());
        for class in [Conflict, Capacity, Transient, Throttled] {
            assert!(class.is_retryable());
            assert_eq!(class.to_string(), class.as_str());
        }
    }

    #[test]
    fn per_instance_codes_are_classified_like_single_calls() {
        for &(code, status) in CODES_WITH_STATUS {
            assert_eq!(
                classify_instance_code(code),
                classify(&api(code, status)),
                "{code} (HTTP {status})"
            );
        }
    }
}
