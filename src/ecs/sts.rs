//! STS `GetCallerIdentity`: which Alibaba Cloud account a set of credentials belongs to.
//!
//! Where it sits: ECS rate limits are per account and region, shared by every credential of the
//! account, so a caller that shares a limiter between credentials needs each credential's account
//! ID. [`EcsClient::caller_identity`](super::EcsClient::caller_identity) asks STS (RPC, `Version`
//! `2015-04-01`, signed with the same V1 signer as the ECS calls) at the endpoint
//! [`sts_endpoint_for`](super::rrsa::sts_endpoint_for) selects, and this module reads the answer:
//! `{"RequestId","AccountId","UserId","Arn","IdentityType","PrincipalId","RoleId"}`.

use serde_json::Value;

/// STS action name of `GetCallerIdentity`.
pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";

/// Who a set of credentials is, as STS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// `AccountId`: the Alibaba Cloud account (UID) the credentials belong to.
    pub account_id: String,
    /// `Arn`, e.g. `acs:ram::<account>:user/<name>` or
    /// `acs:ram::<account>:assumed-role/<role>/<session>`.
    pub arn: Option<String>,
    /// `UserId`: the RAM user's ID, the role's ID for an assumed role, or the account ID.
    pub user_id: Option<String>,
    /// `IdentityType`: `Account`, `RAMUser` or `AssumedRoleUser`.
    pub identity_type: Option<String>,
    /// `PrincipalId`, when reported.
    pub principal_id: Option<String>,
    /// `RoleId`, for an assumed role.
    pub role_id: Option<String>,
    /// The STS `RequestId`.
    pub request_id: Option<String>,
}

/// Why a 2xx `GetCallerIdentity` body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityAnswerError {
    /// Not a JSON object.
    #[error("not a GetCallerIdentity answer: not a JSON object")]
    NotJson,
    /// No `AccountId`.
    #[error("GetCallerIdentity answer has no AccountId")]
    NoAccountId,
}

impl CallerIdentity {
    /// Parses a 2xx `GetCallerIdentity` body (strings or numbers; empty means absent).
    ///
    /// # Errors
    /// [`IdentityAnswerError`] when the body is not a JSON object or has no `AccountId`.
    pub fn parse(body: &[u8]) -> Result<Self, IdentityAnswerError> {
        let root: Value = serde_json::from_slice(body).map_err(|_| IdentityAnswerError::NotJson)?;
        if !root.is_object() {
            return Err(IdentityAnswerError::NotJson);
        }
        let field = |name: &str| {
            let text = match root.get(name)? {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            (!text.is_empty()).then_some(text)
        };
        Ok(Self {
            account_id: field("AccountId").ok_or(IdentityAnswerError::NoAccountId)?,
            arn: field("Arn"),
            user_id: field("UserId"),
            identity_type: field("IdentityType"),
            principal_id: field("PrincipalId"),
            role_id: field("RoleId"),
            request_id: field("RequestId"),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_assumed_role() {
        let body = br#"{"RequestId":"R-1","AccountId":"1234567890123456","UserId":"300800000000000000",
            "Arn":"acs:ram::1234567890123456:assumed-role/ecs-power/session","IdentityType":"AssumedRoleUser",
            "PrincipalId":"300800000000000000:session","RoleId":"300800000000000000"}"#;
        assert_eq!(
            CallerIdentity::parse(body).unwrap(),
            CallerIdentity {
                account_id: "1234567890123456".into(),
                arn: Some("acs:ram::1234567890123456:assumed-role/ecs-power/session".into()),
                user_id: Some("300800000000000000".into()),
                identity_type: Some("AssumedRoleUser".into()),
                principal_id: Some("300800000000000000:session".into()),
                role_id: Some("300800000000000000".into()),
                request_id: Some("R-1".into()),
            }
        );
    }

    #[test]
    fn account_id_is_required() {
        assert_eq!(
            CallerIdentity::parse(br#"{"AccountId":"","Arn":"a"}"#),
            Err(IdentityAnswerError::NoAccountId)
        );
        assert_eq!(
            CallerIdentity::parse(b"[1]"),
            Err(IdentityAnswerError::NotJson)
        );
        assert_eq!(
            CallerIdentity::parse(b"<html>"),
            Err(IdentityAnswerError::NotJson)
        );
        let numeric = CallerIdentity::parse(br#"{"AccountId":1234}"#).unwrap();
        assert_eq!(numeric.account_id, "1234");
        assert_eq!(numeric.arn, None);
    }
}
