//! The credentials the emulator accepts: configured access keys (optionally with a fixed STS
//! `securityToken`) and temporary `STS.` keys issued by AssumeRoleWithOIDC, which carry a
//! security token and an expiration. Every key belongs to an Alibaba Cloud account (what the
//! per-account rate limits count and STS GetCallerIdentity answers): a configured key names its
//! `accountId` or belongs to [`DEFAULT_ACCOUNT_ID`]; an issued key belongs to the account of its
//! role ARN (`acs:ram::<account>:role/<name>`). Secrets and tokens never appear in `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Deserialize;

/// The account of every key that names none: two keys without `accountId` are two
/// credentials of one account and share its rate limits.
pub const DEFAULT_ACCOUNT_ID: &str = "1234567890123456";

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
    /// The account the key belongs to; `None` means [`DEFAULT_ACCOUNT_ID`].
    #[serde(default)]
    pub account_id: Option<String>,
    /// The RAM user the key belongs to; `None` means the account's own (root) key.
    #[serde(default)]
    pub user_name: Option<String>,
}

impl AccessKey {
    /// A key pair without a security token.
    #[must_use]
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            security_token: None,
            account_id: None,
            user_name: None,
        }
    }

    /// Requires this security token with the key.
    #[must_use]
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// Puts the key in this account.
    #[must_use]
    pub fn in_account(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }

    /// Makes the key a RAM user's key.
    #[must_use]
    pub fn for_user(mut self, user_name: impl Into<String>) -> Self {
        self.user_name = Some(user_name.into());
        self
    }

    /// The account the key belongs to.
    #[must_use]
    pub fn account(&self) -> &str {
        self.account_id.as_deref().unwrap_or(DEFAULT_ACCOUNT_ID)
    }

    /// Checks the fields a state file or an admin call may get wrong.
    ///
    /// # Errors
    /// A message naming the bad field (never the secret).
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() || self.secret.is_empty() {
            return Err("an access key needs an id and a secret".to_owned());
        }
        if let Some(account) = &self.account_id
            && (account.is_empty() || !account.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(format!(
                "access key {}: accountId {account:?} must be digits",
                self.id
            ));
        }
        if self
            .user_name
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            return Err(format!("access key {}: userName is empty", self.id));
        }
        Ok(())
    }

    fn identity(&self) -> Identity {
        let account = self.account().to_owned();
        match &self.user_name {
            None => Identity {
                arn: format!("acs:ram::{account}:root"),
                user_id: account.clone(),
                principal_id: account.clone(),
                identity_type: IdentityType::Account,
                role_id: String::new(),
                account_id: account,
            },
            Some(user) => {
                let user_id = numeric_id('2', &format!("{account}/{user}"));
                Identity {
                    arn: format!("acs:ram::{account}:user/{user}"),
                    principal_id: user_id.clone(),
                    user_id,
                    identity_type: IdentityType::RamUser,
                    role_id: String::new(),
                    account_id: account,
                }
            }
        }
    }
}

/// What kind of principal a credential is (`IdentityType` of GetCallerIdentity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityType {
    /// The account's own key.
    Account,
    /// A RAM user's key.
    RamUser,
    /// STS credentials of an assumed role.
    AssumedRoleUser,
}

impl IdentityType {
    /// The name STS uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "Account",
            Self::RamUser => "RAMUser",
            Self::AssumedRoleUser => "AssumedRoleUser",
        }
    }
}

/// Who a credential belongs to, as STS GetCallerIdentity describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `AccountId`: the account whose rate limits the credential spends.
    pub account_id: String,
    /// `Arn`: `acs:ram::<account>:root`, `…:user/<name>` or `…:assumed-role/<role>/<session>`.
    pub arn: String,
    /// `UserId`: the account id, the RAM user's id, or `<roleId>:<session>`.
    pub user_id: String,
    /// `PrincipalId`: as `UserId`.
    pub principal_id: String,
    /// `IdentityType`.
    pub identity_type: IdentityType,
    /// `RoleId`: the role's id for assumed roles, else empty.
    pub role_id: String,
}

impl Identity {
    /// The identity of STS credentials for `role_arn` (`acs:ram::<account>:role/<name>`) and
    /// a session name; a role ARN of another shape belongs to [`DEFAULT_ACCOUNT_ID`].
    #[must_use]
    pub fn assumed_role(role_arn: &str, session: &str) -> Self {
        let (account, role) = parse_role_arn(role_arn).unwrap_or((
            DEFAULT_ACCOUNT_ID,
            role_arn.rsplit('/').next().unwrap_or(role_arn),
        ));
        let role_id = role_id(role_arn);
        let principal = format!("{role_id}:{session}");
        Self {
            account_id: account.to_owned(),
            arn: format!("acs:ram::{account}:assumed-role/{role}/{session}"),
            user_id: principal.clone(),
            principal_id: principal,
            identity_type: IdentityType::AssumedRoleUser,
            role_id,
        }
    }
}

/// `(account, role name)` of `acs:ram::<account>:role/<name>`.
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, resource) = rest.split_once(':')?;
    let role = resource.strip_prefix("role/")?;
    (!account.is_empty() && account.chars().all(|c| c.is_ascii_digit()) && !role.is_empty())
        .then_some((account, role))
}

/// The id STS gives a role: 18 digits starting with 3, stable for one role ARN.
pub(crate) fn role_id(role_arn: &str) -> String {
    numeric_id('3', role_arn)
}

/// A stable id of 16 (users) or 18 (roles) digits derived from `seed` (FNV-1a).
fn numeric_id(lead: char, seed: &str) -> String {
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    if lead == '3' {
        format!("{lead}{:017}", hash % 100_000_000_000_000_000)
    } else {
        format!("{lead}{:015}", hash % 1_000_000_000_000_000)
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("user_name", &self.user_name)
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
    pub identity: Identity,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("expires", &self.expires)
            .field("identity", &self.identity)
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
        let identity = key.identity();
        self.keys.insert(
            key.id,
            KeyEntry {
                secret: key.secret,
                security_token: key.security_token,
                expires: None,
                identity,
            },
        );
    }

    /// Looks a key up.
    pub(crate) fn get(&self, id: &str) -> Option<&KeyEntry> {
        self.keys.get(id)
    }

    /// Issues temporary credentials for `identity`, valid for `duration` from `now`.
    pub(crate) fn issue_sts(
        &mut self,
        identity: Identity,
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
                identity,
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

    const ROLE: &str = "acs:ram::5555000011112222:role/ecs-power-operator";

    #[test]
    fn keys_belong_to_the_default_account_unless_they_name_one() {
        let plain = AccessKey::new("AK1", "S1").identity();
        assert_eq!(plain.account_id, DEFAULT_ACCOUNT_ID);
        assert_eq!(plain.arn, format!("acs:ram::{DEFAULT_ACCOUNT_ID}:root"));
        assert_eq!(plain.identity_type, IdentityType::Account);
        assert_eq!(plain.user_id, DEFAULT_ACCOUNT_ID);
        let user = AccessKey::new("AK2", "S2")
            .in_account("42")
            .for_user("alice")
            .identity();
        assert_eq!(user.account_id, "42");
        assert_eq!(user.arn, "acs:ram::42:user/alice");
        assert_eq!(user.identity_type.as_str(), "RAMUser");
        assert_eq!(user.user_id.len(), 16);
        assert_eq!(user.user_id, user.principal_id);
        assert!(
            AccessKey::new("AK", "S")
                .in_account("12a")
                .validate()
                .is_err()
        );
        assert!(AccessKey::new("AK", "S").for_user(" ").validate().is_err());
        assert!(
            AccessKey::new("AK", "S")
                .in_account("42")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn an_assumed_role_belongs_to_the_account_of_its_arn() {
        let id = Identity::assumed_role(ROLE, "sess");
        assert_eq!(id.account_id, "5555000011112222");
        assert_eq!(
            id.arn,
            "acs:ram::5555000011112222:assumed-role/ecs-power-operator/sess"
        );
        assert_eq!(id.role_id.len(), 18);
        assert!(id.role_id.starts_with('3'));
        assert_eq!(id.principal_id, format!("{}:sess", id.role_id));
        assert_eq!(id.role_id, role_id(ROLE), "stable per role");
        let odd = Identity::assumed_role("not-an-arn", "s");
        assert_eq!(odd.account_id, DEFAULT_ACCOUNT_ID);
    }

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
        let issued = ring.issue_sts(
            Identity::assumed_role(ROLE, "s"),
            Duration::from_secs(900),
            jiff::Timestamp::now(),
        );
        let shown = format!("{issued:?} {ring:?}");
        assert!(
            !shown.contains(&issued.access_key_secret) && !shown.contains(&issued.security_token)
        );
    }

    #[test]
    fn issued_keys_verify_with_their_token_until_expiry() {
        let mut ring = KeyRing::default();
        let now = jiff::Timestamp::now();
        let issued = ring.issue_sts(
            Identity::assumed_role(ROLE, "s"),
            Duration::from_secs(3600),
            now,
        );
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
