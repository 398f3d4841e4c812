//! The operator's vocabulary, defined once: condition types and statuses, condition reasons (the
//! ECS ones the catalogue picks and the controller's own), ECS action names, lock reasons and the
//! words of `status.instanceStatus`. Every other module names these constants instead of writing
//! the strings out, so a reason cannot be spelled two ways, and the README's tables can be checked
//! against one list.

/// Condition types and statuses (kstatus-compatible, so Flux, Argo CD and `kubectl wait` read them).
pub mod condition {
    /// Condition type: the instance is in the desired state.
    pub const READY: &str = "Ready";
    /// Condition type: the operator expects progress without help (a transition or a retry).
    pub const RECONCILING: &str = "Reconciling";
    /// Condition type: progress needs someone to act.
    pub const STALLED: &str = "Stalled";
    /// Condition status `True`.
    pub const TRUE: &str = "True";
    /// Condition status `False`.
    pub const FALSE: &str = "False";
}

/// Every condition reason: the `Ready` reasons of the ECS error catalogue, and the controller's
/// own for states and transitions. Each is a valid Kubernetes condition reason (CamelCase) and is
/// also the event reason.
pub mod reason {
    /// `InvalidInstanceId.NotFound`, or the instance absent from `DescribeInstances`.
    pub const INSTANCE_NOT_FOUND: &str = "InstanceNotFound";
    /// `IncorrectInstanceStatus`: the instance is not in a state that allows the call.
    pub const INCORRECT_INSTANCE_STATUS: &str = "IncorrectInstanceStatus";
    /// `OperationConflict`: another operation on the resource is in progress.
    pub const OPERATION_CONFLICT: &str = "OperationConflict";
    /// `InstanceLockedForSecurity`, or an `OperationLocks` entry `security`.
    pub const INSTANCE_LOCKED_FOR_SECURITY: &str = "InstanceLockedForSecurity";
    /// Any other `OperationLocks` entry (`financial`, `recycling`, …).
    pub const INSTANCE_LOCKED: &str = "InstanceLocked";
    /// `InsufficientBalance`.
    pub const INSUFFICIENT_BALANCE: &str = "InsufficientBalance";
    /// `InstanceExpired`, `InstanceExpiredOrInArrears`.
    pub const INSTANCE_EXPIRED: &str = "InstanceExpired";
    /// `DiskInArrears`.
    pub const DISK_IN_ARREARS: &str = "DiskInArrears";
    /// `DiskError`.
    pub const DISK_ERROR: &str = "DiskError";
    /// `InstanceNotReady`.
    pub const INSTANCE_NOT_READY: &str = "InstanceNotReady";
    /// `OperationDenied.NoStock`.
    pub const NO_STOCK: &str = "NoStock";
    /// `LackResource`.
    pub const LACK_RESOURCE: &str = "LackResource";
    /// `InvalidDedicatedHost.NotEnoughResource`.
    pub const DEDICATED_HOST_NOT_ENOUGH_RESOURCE: &str = "InvalidDedicatedHostNotEnoughResource";
    /// `Invalid.PrivatePoolOptions.NoStock`.
    pub const PRIVATE_POOL_NO_STOCK: &str = "InvalidPrivatePoolOptionsNoStock";
    /// `OperationDenied.SpotPriceLowerThanPublicPrice`.
    pub const SPOT_PRICE_LOWER_THAN_PUBLIC_PRICE: &str = "SpotPriceLowerThanPublicPrice";
    /// `InvalidParameter.KMSKeyId.KMSUnauthorized`.
    pub const KMS_UNAUTHORIZED: &str = "KMSUnauthorized";
    /// `QuotaExceed.ElasticQuota`.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// `InternalError`, `UnknownError`, any other HTTP ≥ 500 except 502/503/504.
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// `ServiceUnavailable*`, HTTP 502/503/504.
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
    /// `Throttling*`, `Rejected.Throttling`.
    pub const THROTTLED: &str = "Throttled";
    /// `InvalidAccessKeyId.*`, `SignatureDoesNotMatch`, `IncompleteSignature`,
    /// `InvalidSecurityToken.*`.
    pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
    /// `Forbidden.*`.
    pub const FORBIDDEN: &str = "Forbidden";
    /// `InvalidTimeStamp.Expired`, `IllegalTimestamp`, `SignatureNonceUsed`.
    pub const REQUEST_REJECTED: &str = "RequestRejected";
    /// No answer from the endpoint (connect error, reset, timeout).
    pub const ECS_UNREACHABLE: &str = "EcsUnreachable";
    /// An answer that could not be understood.
    pub const MALFORMED_RESPONSE: &str = "MalformedResponse";
    /// The client refused to send a call with invalid input (a bug, not an ECS answer).
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    /// Fallback when an ECS code leaves nothing usable as a reason.
    pub const UNKNOWN_ECS_ERROR: &str = "UnknownEcsError";
    /// The Secret named by `credentialsSecretRef` does not exist.
    pub const CREDENTIALS_NOT_FOUND: &str = "CredentialsNotFound";
    /// The credentials Secret (or the operator's environment) lacks a key, or it is empty; or
    /// the RRSA settings or token file are unusable.
    pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
    /// STS could not exchange the RRSA token for now: unreachable, HTTP ≥ 500, throttled, or an
    /// answer that could not be understood.
    pub const STS_UNAVAILABLE: &str = "StsUnavailable";
    /// Ready=True: the instance is running, as desired.
    pub const RUNNING: &str = "Running";
    /// Ready=True: the instance is stopped, as desired.
    pub const STOPPED: &str = "Stopped";
    /// Reconciling: the instance is starting towards the desired Running state.
    pub const STARTING: &str = "Starting";
    /// Reconciling: the instance is stopping towards the desired Stopped state.
    pub const STOPPING: &str = "Stopping";
    /// Reconciling: any other transitory state (Pending, or moving away from the desired state).
    pub const WAITING_FOR_TRANSITION: &str = "WaitingForTransition";
    /// Reconciling: a retryable error is being retried.
    pub const RETRYING: &str = "Retrying";
    /// Ready=False while `spec.suspend` is set and the instance is not in the desired state.
    pub const SUSPENDED: &str = "Suspended";
    /// Ready=True when ECS approved a dry-run call.
    pub const DRY_RUN_SUCCEEDED: &str = "DryRunSucceeded";
    /// The EcsPowerSchedule named by `scheduleRef` does not exist.
    pub const SCHEDULE_NOT_FOUND: &str = "ScheduleNotFound";
    /// The EcsPowerSchedule named by `scheduleRef` is invalid (its own Ready condition says why).
    pub const SCHEDULE_INVALID: &str = "ScheduleInvalid";
    /// Ready=True: the schedule's `actions` exclude the state it names now, so the operator leaves
    /// the instance alone (`StopOnly` while Running, `StartOnly` while Stopped).
    pub const UNMANAGED: &str = "Unmanaged";
    /// Another resource (the oldest naming the instance) owns the instance: this one makes no ECS
    /// call.
    pub const INSTANCE_CLAIMED: &str = "InstanceClaimed";
    /// The access policy grants this namespace no use of the operator's own credentials for this
    /// instance, region and action: no ECS call.
    pub const NOT_GRANTED: &str = "NotGranted";
    /// Access policy Ready=False: a rule is invalid (it grants nothing).
    pub const INVALID: &str = "Invalid";
    /// Schedule Ready=True: the schedule is valid.
    pub const VALID: &str = "Valid";
    /// Schedule Ready=False: the time zone is not a known IANA name.
    pub const INVALID_TIME_ZONE: &str = "InvalidTimeZone";
    /// Schedule Ready=False: a window, holiday or exception is malformed, or not exactly one window
    /// list is set.
    pub const INVALID_WINDOW: &str = "InvalidWindow";
    /// Schedule Ready=False: exceptions with different states overlap.
    pub const OVERLAPPING_EXCEPTIONS: &str = "OverlappingExceptions";
}

/// Event reasons of schedules that are not condition reasons.
pub mod schedule_event {
    /// The effective scheduled state of an instance changed.
    pub const SCHEDULE_TRANSITION: &str = "ScheduleTransition";
    /// An instance's `scheduleOverride` began to hold.
    pub const OVERRIDE_STARTED: &str = "OverrideStarted";
    /// An instance's `scheduleOverride` ended.
    pub const OVERRIDE_EXPIRED: &str = "OverrideExpired";
    /// A transition was acted on late (after operator downtime): the instance caught up with the
    /// state at that moment, without replaying the missed windows.
    pub const TRANSITION_LATE: &str = "TransitionLate";
}

/// ECS action names, and the operator's own actions in events.
pub mod action {
    pub use crate::ecs::client::DESCRIBE_INSTANCES;
    pub use crate::ecs::power::{START_INSTANCE, STOP_INSTANCE};

    /// Event action: the operator observed the instance (a changed Ready condition).
    pub const OBSERVE: &str = "Observe";
    /// Event action: the operator looked for the credentials of a resource.
    pub const RESOLVE_CREDENTIALS: &str = "ResolveCredentials";
    /// Event action: the operator applied a resource's schedule.
    pub const SCHEDULE: &str = "Schedule";
    /// Event action: the operator checked the instance's claim and the access policy.
    pub const CHECK_ACCESS: &str = "CheckAccess";
}

/// `OperationLocks` reasons that `DescribeInstances` reports and the operator treats specially.
pub mod lock {
    /// A lock set by Alibaba Cloud security; every other lock reason (`financial`, `recycling`, …)
    /// is reported as `InstanceLocked`.
    pub const SECURITY: &str = "security";
}

/// The words of `status.instanceStatus` that are not an ECS `Status`.
pub mod instance_status {
    /// `DescribeInstances` did not return the instance.
    pub const NOT_FOUND: &str = "NotFound";
}
