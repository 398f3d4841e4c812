//! The credentials the emulator accepts: configured access keys (optionally with a fixed STS
//! `securityToken`) and temporary `STS.` keys issued by AssumeRoleWithOIDC, which carry a
//! security token and an expiration. Secrets and tokens never appear in `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Deserialize;

/// A configured access key pair (`accessKeys:` in the state file).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessKey {
    /// `AccessKeyId`.
    pub id: String,
    /// `AccessKeySecret`.
    pub secret: String,
    /// When set, requests with this key must carry this `SecurityToken`.
    #[serde(default)]
    pub security_token: Option<String>,
}

impl AccessKey {
    /// A key pair without a security token.
    #[must_use]
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            security_token: None,
        }
    }

    /// Requires this security token with the key.
    #[must_use]
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Temporary credentials handed out by AssumeRoleWithOIDC.
#[derive(Clone)]
pub struct IssuedCredentials {
    /// `STS.…` access key id.
    pub access_key_id: String,
    /// Its secret.
    pub access_key_secret: String,
    /// The security token to send with it.
    pub security_token: String,
    /// When it stops working.
    pub expiration: jiff::Timestamp,
}

impl fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// What the verifier needs to know about a key.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub secret: String,
    pub security_token: Option<String>,
    pub expires: Option<jiff::Timestamp>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Every accepted key by id.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    keys: HashMap<String, KeyEntry>,
}

/// How long expired STS keys are remembered (to answer `InvalidSecurityToken.Expired`).
const EXPIRED_MEMORY: Duration = Duration::from_secs(3600);

impl KeyRing {
    /// A ring with the configured keys.
    pub(crate) fn new(keys: &[AccessKey]) -> Self {
        let mut ring = Self::default();
        for key in keys {
            ring.add(key.clone());
        }
        ring
    }

    /// Adds or replaces a configured key.
    pub(crate) fn add(&mut self, key: AccessKey) {
        self.keys.insert(
            key.id,
            KeyEntry {
                secret: key.secret,
                security_token: key.security_token,
                expires: None,
            },
        );
    }

    /// Looks a key up.
    pub(crate) fn get(&self, id: &str) -> Option<&KeyEntry> {
        self.keys.get(id)
    }

    /// Issues temporary credentials valid for `duration` from `now`.
    pub(crate) fn issue_sts(
        &mut self,
        duration: Duration,
        now: jiff::Timestamp,
    ) -> IssuedCredentials {
        self.keys.retain(|_, k| {
            k.expires.is_none_or(|e| {
                now.duration_since(e)
                    < jiff::SignedDuration::try_from(EXPIRED_MEMORY).unwrap_or_default()
            })
        });
        let mut rng = rand::rng();
        let mut word = |n: usize| -> String {
            (&mut rng)
                .sample_iter(&Alphanumeric)
                .take(n)
                .map(char::from)
                .collect()
        };
        let access_key_id = format!("STS.{}", word(25));
        let access_key_secret = word(44);
        let mut token_bytes = [0u8; 96];
        rand::rng().fill(&mut token_bytes[..]);
        let security_token = format!("CAIS{}", STANDARD.encode(token_bytes));
        let expiration = now
            .checked_add(jiff::SignedDuration::try_from(duration).unwrap_or_default())
            .unwrap_or(now);
        self.keys.insert(
            access_key_id.clone(),
            KeyEntry {
                secret: access_key_secret.clone(),
                security_token: Some(security_token.clone()),
                expires: Some(expiration),
            },
        );
        IssuedCredentials {
            access_key_id,
            access_key_secret,
            security_token,
            expiration,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let key = AccessKey::new("AK1", "very-secret").with_security_token("tok-123");
        let shown = format!("{key:?}");
        assert!(shown.contains("AK1"));
        assert!(
            !shown.contains("very-secret") && !shown.contains("tok-123"),
            "{shown}"
        );
        let mut ring = KeyRing::new(&[key]);
        let issued = ring.issue_sts(Duration::from_secs(900), jiff::Timestamp::now());
        let shown = format!("{issued:?} {ring:?}");
        assert!(
            !shown.contains(&issued.access_key_secret) && !shown.contains(&issued.security_token)
        );
    }

    #[test]
    fn issued_keys_verify_with_their_token_until_expiry() {
        let mut ring = KeyRing::default();
        let now = jiff::Timestamp::now();
        let issued = ring.issue_sts(Duration::from_secs(3600), now);
        assert!(issued.access_key_id.starts_with("STS."));
        let entry = ring.get(&issued.access_key_id).unwrap();
        assert_eq!(entry.secret, issued.access_key_secret);
        assert_eq!(
            entry.security_token.as_deref(),
            Some(issued.security_token.as_str())
        );
        assert_eq!(entry.expires, Some(issued.expiration));
        assert_eq!(issued.expiration.duration_since(now).as_secs(), 3600);
    }

    #[test]
    fn parses_keys_from_yaml() {
        let keys: Vec<AccessKey> = serde_yaml::from_str(
            "[{id: AK1, secret: S1}, {id: AK2, secret: S2, securityToken: T}]",
        )
        .unwrap();
        assert_eq!(keys[1].security_token.as_deref(), Some("T"));
        assert!(serde_yaml::from_str::<Vec<AccessKey>>("[{id: AK1}]").is_err());
    }
}
