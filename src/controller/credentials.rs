//! Credential resolution, the first step of a reconcile (before observe): which credentials sign
//! this resource's ECS calls.
//!
//! With `spec.credentialsSecretRef`, that Secret in the resource's own namespace and nothing else: a
//! missing Secret is `CredentialsNotFound` and never falls back to the operator's own credentials,
//! so a typo cannot run a namespace's resources on the operator's keys. Without it, the operator's
//! credentials (environment or RRSA). Failures are reported with messages that name the Secret and
//! the key, never a value.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::api::EcsInstancePower;
use crate::ecs::catalogue::reason;
use crate::ecs::{Credentials, ErrorClass, OperatorCredentials, Verdict, classify_credentials};

/// Why no usable credentials could be found for a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Reason and class (`CredentialsNotFound` / `CredentialsInvalid` / `CredentialsRejected`,
    /// terminal; `StsUnavailable`, transient).
    pub verdict: Verdict,
    /// A stable message for the condition: names the Secret and key, never a value.
    pub message: String,
}

/// Resolves the credentials for `obj`.
///
/// # Errors
/// `Ok(Err(problem))` when the credentials are missing or unusable (reported in status);
/// `Err(kube::Error)` when the Secret could not be read for another reason (API server down,
/// forbidden): the reconcile fails and is retried.
pub async fn resolve(
    secrets: Api<Secret>,
    obj: &EcsInstancePower,
    operator: Option<&OperatorCredentials>,
) -> Result<Result<Credentials, Problem>, kube::Error> {
    let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(reference) = &obj.spec.credentials_secret_ref {
        let Some(secret) = secrets.get_opt(&reference.name).await? else {
            return Ok(Err(Problem {
                verdict: not_found(),
                message: format!(
                    "Secret {namespace}/{} named by spec.credentialsSecretRef does not exist; create it with the keys \
                     accessKeyId and accessKeySecret (and securityToken for STS keys)",
                    reference.name
                ),
            }));
        };
        let data = secret.data.unwrap_or_default();
        return Ok(Credentials::from_secret_data(&data).map_err(|err| Problem {
            verdict: classify_credentials(&err),
            message: format!(
                "Secret {namespace}/{} named by spec.credentialsSecretRef is unusable: {err}",
                reference.name
            ),
        }));
    }
    let Some(operator) = operator else {
        return Ok(Err(Problem {
            verdict: not_found(),
            message: "spec.credentialsSecretRef is not set and the operator has no credentials of its own: set \
                      ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (or RRSA) on the operator, or \
                      reference a Secret"
                .to_string(),
        }));
    };
    Ok(operator.credentials().await.map_err(|err| Problem {
        verdict: classify_credentials(&err),
        message: format!("the operator's own credentials are unusable: {err}"),
    }))
}

fn not_found() -> Verdict {
    Verdict {
        reason: reason::CREDENTIALS_NOT_FOUND.to_string(),
        class: ErrorClass::Terminal,
    }
}
