//! The ECS error catalogue: every error code the emulator answers with, in one table, with its
//! documented HTTP status and message (DESIGN §3, ECS-API.md §4–5), and [`EcsError`], the error
//! value that the gateway, the actions and the fault injector produce and `protocol` renders.

use std::fmt;

/// One row of the catalogue: an ECS error code with its documented HTTP status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The ECS `Code`, e.g. `OperationDenied.NoStock`.
    pub code: &'static str,
    /// The HTTP status ECS documents for it.
    pub status: u16,
    /// The default `Message`.
    pub message: &'static str,
}

const fn row(code: &'static str, status: u16, message: &'static str) -> CodeInfo {
    CodeInfo {
        code,
        status,
        message,
    }
}

/// Every code the emulator knows, with its documented status. Faults name codes from here; a
/// fault with another code must give its `httpStatus` explicitly.
pub const CATALOGUE: &[CodeInfo] = &[
    // Instance errors (StartInstance / StopInstance / RebootInstance tables, DESIGN §3).
    row(
        "InvalidInstanceId.NotFound",
        404,
        "The specified InstanceId does not exist.",
    ),
    row(
        "IncorrectInstanceStatus",
        403,
        "The current status of the resource does not support this operation.",
    ),
    row(
        "InstanceLockedForSecurity",
        403,
        "The specified operation is denied as your instance is locked for security reasons.",
    ),
    row(
        "InsufficientBalance",
        403,
        "Your account does not have enough balance.",
    ),
    row(
        "InstanceExpired",
        403,
        "The specified instance has expired.",
    ),
    row(
        "InstanceExpiredOrInArrears",
        403,
        "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
    ),
    row(
        "DiskInArrears",
        403,
        "The operation is denied due to the disk of the instance is in arrears.",
    ),
    row(
        "DiskError",
        403,
        "The current status of the disk does not support this operation.",
    ),
    row(
        "InstanceNotReady",
        403,
        "The specified instance is not ready for use.",
    ),
    row(
        "OperationDenied.NoStock",
        403,
        "The resource is out of stock in the specified zone. Please try other types, or choose other regions and zones.",
    ),
    row(
        "OperationDenied.SpotPriceLowerThanPublicPrice",
        403,
        "The specified spot type is not exist or spot price lower than public price.",
    ),
    row(
        "InvalidParameter.KMSKeyId.KMSUnauthorized",
        403,
        "ECS service have no right to access your KMS.",
    ),
    row(
        "InvalidParameter.KMSKeyId.NotFound",
        403,
        "The specified KMSKeyId does not exist.",
    ),
    row(
        "QuotaExceed.ElasticQuota",
        403,
        "No additional quota is available for the specified ECS instance type.",
    ),
    row(
        "InstanceType.ParameterMismatch",
        403,
        "The specified instance type does not support this operation.",
    ),
    row(
        "InvalidInstanceId.NotSupport",
        403,
        "The specified instance does not support this operation.",
    ),
    row(
        "LackResource",
        400,
        "There's no enough resource on the specified host.",
    ),
    row(
        "InvalidDedicatedHost.NotEnoughResource",
        400,
        "The dedicated host has not enough resource.",
    ),
    row(
        "InvalidInstance.NotFoundSystemDisk",
        400,
        "The specified instance has no system disk.",
    ),
    row(
        "Invalid.PrivatePoolOptions.NoStock",
        400,
        "The private pool has no stock.",
    ),
    // Server side.
    row(
        "InternalError",
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    row(
        "UnknownError",
        500,
        "The request processing has failed due to some unknown error.",
    ),
    row(
        "ServiceUnavailable",
        503,
        "The request has failed due to a temporary failure of the server.",
    ),
    row(
        "ServiceUnavailable.RegionMaintaining",
        503,
        "The region is under maintenance, please try again later.",
    ),
    // Throttling.
    row(
        "Throttling",
        400,
        "Request was denied due to request throttling.",
    ),
    row(
        "Throttling.User",
        400,
        "Request was denied due to user flow control.",
    ),
    row(
        "Throttling.Api",
        400,
        "Request was denied due to api flow control.",
    ),
    row(
        "Rejected.Throttling",
        400,
        "Request was denied due to throttling.",
    ),
    // Authentication and request checks (common codes).
    row(
        "InvalidAccessKeyId.NotFound",
        400,
        "Specified access key is not found.",
    ),
    row(
        "InvalidAccessKeyId.Inactive",
        400,
        "Specified access key is disabled.",
    ),
    row(
        "SignatureDoesNotMatch",
        400,
        "Specified signature is not matched with our calculation.",
    ),
    row(
        "IncompleteSignature",
        400,
        "The request signature does not conform to Aliyun standards.",
    ),
    row(
        "InvalidSecurityToken.Expired",
        400,
        "Specified SecurityToken is expired.",
    ),
    row(
        "InvalidSecurityToken.MismatchWithAccessKey",
        400,
        "Specified SecurityToken mismatch with the AccessKey.",
    ),
    row(
        "InvalidSecurityToken.Malformed",
        400,
        "Specified SecurityToken is malformed.",
    ),
    row(
        "InvalidTimeStamp.Expired",
        400,
        "Specified time stamp or date value is expired.",
    ),
    row(
        "IllegalTimestamp",
        400,
        "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied or is in an illegal format.",
    ),
    row(
        "SignatureNonceUsed",
        400,
        "Specified signature nonce was used already.",
    ),
    row(
        "MissingParameter",
        400,
        "The input parameter that is mandatory for processing this request is not supplied.",
    ),
    row(
        "InvalidParameter",
        400,
        "The specified parameter is not valid.",
    ),
    row(
        "IdempotentParameterMismatch",
        400,
        "The request uses the same client token as a previous, but non-identical request.",
    ),
    row(
        "InvalidVersion",
        400,
        "Specified parameter Version is not valid.",
    ),
    row(
        "Forbidden.AccessKeyDisabled",
        403,
        "The Access Key is disabled.",
    ),
    row(
        "Forbidden.RAM",
        403,
        "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
    ),
    row(
        "Forbidden.Unauthorized",
        403,
        "A required authorization for the specified action is not supplied.",
    ),
    row(
        "Forbidden.SubUser",
        403,
        "The specified action is not available for you.",
    ),
    row(
        "Forbidden.RiskControl",
        403,
        "This operation is forbidden by Aliyun RiskControl system.",
    ),
    row(
        "Forbidden.NotSupportRAM",
        403,
        "This action does not support accessed by RAM mode.",
    ),
    row("InvalidAction", 403, "Specified action is not valid."),
    row(
        "InvalidAction.NotFound",
        404,
        "Specified api is not found, please check your url and method.",
    ),
    row(
        "UnsupportedHTTPMethod",
        403,
        "This http method is not supported.",
    ),
    row(
        "ChargeTypeViolation",
        403,
        "The operation is not permitted due to charge type of the instance.",
    ),
    row(
        "InvalidRegionId.NotFound",
        404,
        "The specified RegionId does not exist.",
    ),
    row(
        "OperationConflict",
        409,
        "Request was denied due to conflict with a previous request, please try again later.",
    ),
    // DescribeInstances filters.
    row(
        "InvalidTag.Mismatch",
        400,
        "The specified Tag.n.Key and Tag.n.Value are not match.",
    ),
    row(
        "InvalidStatus.NotFound",
        404,
        "The specified Status is not found.",
    ),
    row(
        "InvalidInstanceChargeType.NotFound",
        404,
        "The InstanceChargeType does not exist in our records.",
    ),
    row(
        "InvalidLockReason.NotFound",
        404,
        "The specified LockReason is not found.",
    ),
    // Dry runs are answered as errors.
    row(
        "DryRunOperation",
        400,
        "Request validation has been passed with DryRun flag set.",
    ),
    row(
        "DRYRUN.SUCCESS",
        400,
        "This request is a dryrun request with successful result.",
    ),
    // STS (AssumeRoleWithOIDC).
    row("EntityNotExist.Role", 404, "The role not exists."),
    row(
        "EntityNotExist.OIDCProvider",
        404,
        "The specified OIDC provider does not exist.",
    ),
    row(
        "AuthenticationFail.OIDCToken.Expired",
        400,
        "This JsonWebToken is expired.",
    ),
    row(
        "AuthenticationFail.OIDCToken.Invalid",
        400,
        "The OIDC token is invalid.",
    ),
    row(
        "InvalidParameter.DurationSeconds",
        400,
        "The parameter DurationSeconds is invalid.",
    ),
];

/// Looks a code up in [`CATALOGUE`].
#[must_use]
pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    CATALOGUE.iter().find(|row| row.code == code)
}

/// An ECS error answer: what the client receives as `Code`, `Message` and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsError {
    /// The ECS `Code`.
    pub code: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The `Message`.
    pub message: String,
}

impl EcsError {
    /// The error for a catalogue code with its documented status and message.
    ///
    /// A code that is not in the catalogue gets HTTP 400 and a generic message; callers that
    /// accept arbitrary codes (faults) check [`lookup`] first.
    #[must_use]
    pub fn of(code: &str) -> Self {
        match lookup(code) {
            Some(info) => Self {
                code: info.code.to_owned(),
                status: info.status,
                message: info.message.to_owned(),
            },
            None => Self {
                code: code.to_owned(),
                status: 400,
                message: format!("The request was rejected with {code}."),
            },
        }
    }

    /// Replaces the message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Replaces the HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// `MissingParameter` naming the parameter, as the API gateway words it.
    #[must_use]
    pub fn missing(name: &str) -> Self {
        Self::of("MissingParameter").with_message(format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ))
    }

    /// `Missing<Name>` for a missing common (signature) parameter, e.g. `MissingTimestamp`.
    #[must_use]
    pub fn missing_common(name: &str) -> Self {
        Self {
            code: format!("Missing{name}"),
            status: 400,
            message: format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        }
    }

    /// `InvalidParameter` naming the parameter and why.
    #[must_use]
    pub fn invalid(name: &str, why: &str) -> Self {
        Self::of("InvalidParameter").with_message(format!(
            "The specified parameter \"{name}\" is not valid: {why}"
        ))
    }

    /// `InvalidInstanceId.NotFound`.
    #[must_use]
    pub fn instance_not_found() -> Self {
        Self::of("InvalidInstanceId.NotFound")
    }
}

impl fmt::Display for EcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for EcsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            assert!(
                CATALOGUE[i + 1..].iter().all(|b| b.code != a.code),
                "duplicate code {}",
                a.code
            );
        }
    }

    #[test]
    fn design_table_codes_have_their_documented_status() {
        let expected = [
            ("InvalidInstanceId.NotFound", 404),
            ("IncorrectInstanceStatus", 403),
            ("InstanceLockedForSecurity", 403),
            ("InsufficientBalance", 403),
            ("InstanceExpired", 403),
            ("InstanceExpiredOrInArrears", 403),
            ("DiskInArrears", 403),
            ("DiskError", 403),
            ("InstanceNotReady", 403),
            ("OperationDenied.NoStock", 403),
            ("OperationDenied.SpotPriceLowerThanPublicPrice", 403),
            ("InvalidParameter.KMSKeyId.KMSUnauthorized", 403),
            ("QuotaExceed.ElasticQuota", 403),
            ("InternalError", 500),
            ("UnknownError", 500),
            ("ServiceUnavailable", 503),
            ("OperationConflict", 409),
        ];
        for (code, status) in expected {
            assert_eq!(EcsError::of(code).status, status, "{code}");
        }
    }

    #[test]
    fn unknown_code_defaults_to_400() {
        let e = EcsError::of("Some.Unknown");
        assert_eq!((e.code.as_str(), e.status), ("Some.Unknown", 400));
    }

    #[test]
    fn missing_names_the_parameter() {
        let e = EcsError::missing("RegionId");
        assert_eq!(e.code, "MissingParameter");
        assert!(e.message.contains("\"RegionId\""));
        assert_eq!(
            EcsError::missing_common("Timestamp").code,
            "MissingTimestamp"
        );
    }
}
