//! STS (Version 2015-04-01). AssumeRoleWithOIDC (anonymous) exchanges an OIDC token for
//! temporary `STS.` credentials that then authenticate ECS calls with their `SecurityToken`
//! until `Expiration`; they belong to the account of the role ARN. The emulator checks
//! `RoleArn` and `OIDCProviderArn` against `oidc:` in the state file and the token's shape and
//! `exp` claim; it does not verify the token's signature (there is no issuer to ask).
//! GetCallerIdentity (signed like any call, STS credentials included) answers who the
//! credentials belong to: `AccountId`, `Arn`, `UserId`, `PrincipalId`, `IdentityType`, `RoleId`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{Answer, Context};
use crate::catalogue::EcsError;
use crate::credentials::{Identity, role_id};
use crate::emulator::lock;

fn claims(token: &str) -> Result<serde_json::Map<String, Value>, EcsError> {
    let invalid = || EcsError::of("AuthenticationFail.OIDCToken.Invalid");
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| invalid())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid()),
    }
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// GetCallerIdentity: the identity of the signing key (the gateway has authenticated it).
pub(super) fn caller_identity(ctx: &Context<'_>) -> Answer {
    let identity = &ctx
        .principal
        .ok_or_else(|| EcsError::missing_common("AccessKeyId"))?
        .identity;
    Ok(super::object([
        ("AccountId", json!(identity.account_id)),
        ("Arn", json!(identity.arn)),
        ("UserId", json!(identity.user_id)),
        ("PrincipalId", json!(identity.principal_id)),
        ("IdentityType", json!(identity.identity_type.as_str())),
        ("RoleId", json!(identity.role_id)),
    ]))
}

pub(super) fn run(ctx: &Context<'_>) -> Answer {
    let p = ctx.params;
    let role_arn = p.required("RoleArn")?;
    let provider_arn = p.required("OIDCProviderArn")?;
    let token = p.required("OIDCToken")?;
    if !(4..=20_000).contains(&token.len()) {
        return Err(EcsError::invalid(
            "OIDCToken",
            "must be 4 to 20000 characters",
        ));
    }
    let session = p.non_empty("RoleSessionName").unwrap_or("emulator-session");
    if !(2..=64).contains(&session.len())
        || !session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'))
    {
        return Err(EcsError::invalid(
            "RoleSessionName",
            "2 to 64 characters of [A-Za-z0-9.@_-]",
        ));
    }
    let requested = match p.non_empty("DurationSeconds") {
        None => None,
        Some(d) => Some(
            d.parse::<u32>()
                .ok()
                .filter(|d| (900..=43_200).contains(d))
                .ok_or_else(|| EcsError::of("InvalidParameter.DurationSeconds"))?,
        ),
    };
    let oidc = lock(&ctx.shared.oidc)
        .clone()
        .ok_or_else(|| EcsError::of("EntityNotExist.Role"))?;
    if role_arn != oidc.role_arn {
        return Err(EcsError::of("EntityNotExist.Role"));
    }
    if provider_arn != oidc.provider_arn {
        return Err(EcsError::of("EntityNotExist.OIDCProvider"));
    }
    let claims = claims(token)?;
    let now = ctx.now_ts;
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        && exp <= now.as_second()
    {
        return Err(EcsError::of("AuthenticationFail.OIDCToken.Expired"));
    }
    let mut seconds = requested.unwrap_or(oidc.duration_seconds);
    if let Some(max) = oidc.max_duration_seconds {
        seconds = seconds.min(max);
    }
    let issued = lock(&ctx.shared.keys).issue_sts(
        Identity::assumed_role(role_arn, session),
        Duration::from_secs(u64::from(seconds)),
        now,
    );
    let claim = |name: &str| {
        claims
            .get(name)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    let time_claim = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_i64)
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(rfc3339)
            .unwrap_or_default()
    };
    Ok(super::object([
        (
            "Credentials",
            json!({
                "AccessKeyId": issued.access_key_id,
                "AccessKeySecret": issued.access_key_secret,
                "SecurityToken": issued.security_token,
                "Expiration": rfc3339(issued.expiration),
            }),
        ),
        (
            "AssumedRoleUser",
            json!({
                "AssumedRoleId": format!("{}:{session}", role_id(role_arn)),
                "Arn": format!("{role_arn}/{session}"),
            }),
        ),
        (
            "OIDCTokenInfo",
            json!({
                "Subject": claim("sub"),
                "Issuer": claim("iss"),
                "ClientIds": match claims.get("aud") {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                    Some(Value::String(s)) => s.clone(),
                    _ => String::new(),
                },
                "ExpirationTime": time_claim("exp"),
                "IssuanceTime": time_claim("iat"),
                "VerificationInfo": "Success",
            }),
        ),
        ("SourceIdentity", json!("")),
    ]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_claims() {
        let c = claims(&jwt(r#"{"sub":"system:serviceaccount:ns:sa","exp":1}"#)).unwrap();
        assert_eq!(c["sub"], "system:serviceaccount:ns:sa");
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in ["abcd", "a.b", "a.!!!.c", &jwt("[1]"), "a.b.c.d"] {
            assert_eq!(
                claims(bad).unwrap_err().code,
                "AuthenticationFail.OIDCToken.Invalid",
                "{bad}"
            );
        }
    }
}
