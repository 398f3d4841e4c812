//! Alibaba Cloud access keys, and where the operator finds them.
//!
//! Every ECS call is signed with a [`Credentials`]. The controller takes them from the Secret a
//! resource names in `credentialsSecretRef` ([`Credentials::from_secret_data`]) or, when it names
//! none, from the operator's own [`OperatorCredentials`]: the `ALIBABA_CLOUD_*` static keys
//! ([`Credentials::from_env`]), else RRSA ([`super::rrsa`]). Secret values live in
//! [`SecretString`], whose `Debug` prints `<redacted>` and which has no `Display`, so they cannot
//! slip into a log line by accident; no [`CredentialsError`] ever holds one.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;

use super::rrsa::{RrsaConfig, RrsaProvider};

/// Secret key holding the AccessKey ID.
pub const SECRET_KEY_ACCESS_KEY_ID: &str = "accessKeyId";
/// Secret key holding the AccessKey secret.
pub const SECRET_KEY_ACCESS_KEY_SECRET: &str = "accessKeySecret";
/// Optional Secret key holding an STS security token.
pub const SECRET_KEY_SECURITY_TOKEN: &str = "securityToken";

/// Environment variable holding the operator's AccessKey ID.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the operator's AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Optional environment variable holding an STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// A secret string: its `Debug` prints `<redacted>`, it has no `Display`; read it with
/// [`SecretString::expose`] only where the value is really needed (signing, sending).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// One set of Alibaba Cloud credentials: an AccessKey pair, plus a security token for STS keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The AccessKey ID (not secret; `STS.…` for STS credentials).
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: SecretString,
    /// The STS security token, sent as `SecurityToken` when present.
    pub security_token: Option<SecretString>,
}

/// Why credentials could not be read. Names the key or variable, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A required key or variable is absent.
    #[error("`{key}` is missing")]
    Missing {
        /// The Secret key or environment variable.
        key: &'static str,
    },
    /// A required key or variable is present but empty (after trimming trailing newlines).
    #[error("`{key}` is empty")]
    Empty {
        /// The Secret key or environment variable.
        key: &'static str,
    },
    /// The value is not valid UTF-8.
    #[error("`{key}` is not valid UTF-8")]
    NotUtf8 {
        /// The Secret key or environment variable.
        key: &'static str,
    },
    /// The value contains a control character (for example a newline in the middle).
    #[error("`{key}` contains a control character")]
    ControlCharacter {
        /// The Secret key or environment variable.
        key: &'static str,
    },
    /// A setting is present but unusable, such as a malformed `ALIBABA_CLOUD_STS_ENDPOINT` or
    /// `ALIBABA_CLOUD_ROLE_SESSION_NAME` (settings that hold no secret).
    #[error("`{key}` is invalid: {detail}")]
    Invalid {
        /// The environment variable.
        key: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The RRSA OIDC token file could not be read, is empty or is not text.
    #[error("cannot use the OIDC token file {path}: {detail}")]
    TokenFile {
        /// The file's path (the token itself is never shown).
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// STS answered `AssumeRoleWithOIDC` with an error code (`AuthenticationFail.OIDCToken.*`,
    /// `EntityNotExist.Role`, `NoPermission`, `Throttling`, …). The message has the token
    /// scrubbed out.
    #[error("STS AssumeRoleWithOIDC failed: {code} (HTTP {http_status}): {message}")]
    Exchange {
        /// The STS error code.
        code: String,
        /// The STS error message.
        message: String,
        /// The HTTP status of the answer.
        http_status: u16,
        /// The STS `RequestId`, for support tickets.
        request_id: Option<String>,
    },
    /// STS could not be reached, answered something that is not an STS answer (an HTML error
    /// page, a body cut short), or handed out credentials that are already too close to expiry.
    #[error("STS unavailable: {detail}")]
    StsUnavailable {
        /// What went wrong (never the token, a secret or the request body).
        detail: String,
        /// The HTTP status, when an answer arrived.
        http_status: Option<u16>,
    },
}

impl CredentialsError {
    /// The STS error code, for [`CredentialsError::Exchange`].
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Exchange { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of the STS answer, when there was one.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Exchange { http_status, .. } => Some(*http_status),
            Self::StsUnavailable { http_status, .. } => *http_status,
            _ => None,
        }
    }

    /// The STS `RequestId`, when the answer carried one.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Exchange { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

impl Credentials {
    /// Builds credentials from static keys (already trimmed and checked by the caller).
    #[must_use]
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::new(access_key_secret),
            security_token: security_token.map(SecretString::new),
        }
    }

    /// Reads the `data` of a Kubernetes Secret with keys `accessKeyId`, `accessKeySecret` and
    /// optional `securityToken`.
    ///
    /// Trailing newlines (which `kubectl create secret --from-file` keeps) are trimmed. A missing,
    /// empty or non-UTF-8 required key is an error naming the key; an empty `securityToken` counts
    /// as absent.
    ///
    /// # Errors
    /// [`CredentialsError`] naming the offending key.
    pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Result<Self, CredentialsError> {
        let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            data.get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.0.clone())
                        .map_err(|_| CredentialsError::NotUtf8 { key })
                })
                .transpose()
        };
        Self::from_values(
            [
                SECRET_KEY_ACCESS_KEY_ID,
                SECRET_KEY_ACCESS_KEY_SECRET,
                SECRET_KEY_SECURITY_TOKEN,
            ],
            get,
        )
    }

    /// Reads `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and optional
    /// `ALIBABA_CLOUD_SECURITY_TOKEN` from the process environment.
    ///
    /// `Ok(None)` when neither the ID nor the secret is set (the operator has no static keys).
    ///
    /// # Errors
    /// [`CredentialsError`] naming the variable when only one of the pair is set, a value is empty
    /// or not UTF-8.
    pub fn from_env() -> Result<Option<Self>, CredentialsError> {
        Self::from_env_lookup(|name| std::env::var_os(name))
    }

    /// Like [`Credentials::from_env`], with `lookup` standing in for the process environment.
    ///
    /// # Errors
    /// As [`Credentials::from_env`].
    pub fn from_env_lookup<F>(lookup: F) -> Result<Option<Self>, CredentialsError>
    where
        F: Fn(&str) -> Option<std::ffi::OsString>,
    {
        let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            lookup(key)
                .map(|value| {
                    value
                        .into_string()
                        .map_err(|_| CredentialsError::NotUtf8 { key })
                })
                .transpose()
        };
        if get(ENV_ACCESS_KEY_ID)?.is_none() && get(ENV_ACCESS_KEY_SECRET)?.is_none() {
            return Ok(None);
        }
        Self::from_values(
            [ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN],
            get,
        )
        .map(Some)
    }

    /// Shared reading rules: `keys` are (id, secret, token) names, `get` returns a raw value.
    fn from_values<G>(keys: [&'static str; 3], get: G) -> Result<Self, CredentialsError>
    where
        G: Fn(&'static str) -> Result<Option<String>, CredentialsError>,
    {
        let [id_key, secret_key, token_key] = keys;
        let required = |key: &'static str| -> Result<String, CredentialsError> {
            let raw = get(key)?.ok_or(CredentialsError::Missing { key })?;
            clean(key, &raw)?.ok_or(CredentialsError::Empty { key })
        };
        let access_key_id = required(id_key)?;
        let access_key_secret = required(secret_key)?;
        let security_token = match get(token_key)? {
            Some(raw) => clean(token_key, &raw)?,
            None => None,
        };
        Ok(Self::new(access_key_id, access_key_secret, security_token))
    }
}

/// Trims trailing `\n` / `\r`; `None` when nothing is left; rejects other control characters.
fn clean(key: &'static str, raw: &str) -> Result<Option<String>, CredentialsError> {
    let trimmed = raw.trim_end_matches(['\n', '\r']);
    if trimmed.chars().any(char::is_control) {
        return Err(CredentialsError::ControlCharacter { key });
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// Where the operator's own credentials come from, for resources without `credentialsSecretRef`.
///
/// In this order, first found wins: static keys from the environment ([`Credentials::from_env`]),
/// then RRSA (STS `AssumeRoleWithOIDC` with the projected service-account token named by
/// `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`, `ALIBABA_CLOUD_OIDC_TOKEN_FILE`,
/// see [`RrsaProvider`]). Clones share one RRSA session.
#[derive(Debug, Clone)]
pub enum OperatorCredentials {
    /// Static keys from `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `_SECURITY_TOKEN`.
    Env(Credentials),
    /// Temporary STS keys obtained (and refreshed) with the RRSA OIDC token.
    Rrsa(RrsaProvider),
}

impl OperatorCredentials {
    /// Finds the operator's credentials in the process environment; `Ok(None)` when none is set.
    ///
    /// # Errors
    /// [`CredentialsError`] when a source is present but unusable: half of a static key pair, one
    /// or two of the three RRSA variables (naming the missing one), a malformed STS endpoint.
    pub fn discover() -> Result<Option<Self>, CredentialsError> {
        Self::discover_with(|name| std::env::var_os(name))
    }

    /// Like [`OperatorCredentials::discover`], with `lookup` standing in for the environment.
    ///
    /// Static keys win over RRSA when both are configured. Nothing is read from the token file
    /// and STS is not called here: the first [`OperatorCredentials::credentials`] does that.
    ///
    /// # Errors
    /// As [`OperatorCredentials::discover`].
    pub fn discover_with<F>(lookup: F) -> Result<Option<Self>, CredentialsError>
    where
        F: Fn(&str) -> Option<std::ffi::OsString>,
    {
        if let Some(credentials) = Credentials::from_env_lookup(&lookup)? {
            return Ok(Some(Self::Env(credentials)));
        }
        match RrsaConfig::from_lookup(&lookup)? {
            Some(config) => Ok(Some(Self::Rrsa(RrsaProvider::new(config)?))),
            None => Ok(None),
        }
    }

    /// The credentials to sign the next call with.
    ///
    /// For RRSA this exchanges the token at STS when there are no credentials yet or the cached
    /// ones are due for refresh ([`RrsaProvider::credentials`]); concurrent callers share one
    /// exchange.
    ///
    /// # Errors
    /// None for `Env`; for `Rrsa`, a token file that cannot be read, an STS rejection
    /// ([`CredentialsError::Exchange`]) or an unreachable STS ([`CredentialsError::StsUnavailable`]).
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Self::Env(credentials) => Ok(credentials.clone()),
            Self::Rrsa(provider) => provider.credentials().await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: BTreeMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_secret_data_and_trims_trailing_newlines() {
        let creds = Credentials::from_secret_data(&data(&[
            ("accessKeyId", b"AK1\n"),
            ("accessKeySecret", b"S3cr3t-value\r\n"),
            ("securityToken", b"tok+en==\n"),
        ]))
        .unwrap();
        assert_eq!(creds.access_key_id, "AK1");
        assert_eq!(creds.access_key_secret.expose(), "S3cr3t-value");
        assert_eq!(creds.security_token.as_ref().unwrap().expose(), "tok+en==");
    }

    #[test]
    fn security_token_is_optional_and_empty_means_absent() {
        let without = Credentials::from_secret_data(&data(&[
            ("accessKeyId", b"AK1"),
            ("accessKeySecret", b"S1"),
        ]))
        .unwrap();
        assert_eq!(without.security_token, None);
        let empty = Credentials::from_secret_data(&data(&[
            ("accessKeyId", b"AK1"),
            ("accessKeySecret", b"S1"),
            ("securityToken", b"\n"),
        ]))
        .unwrap();
        assert_eq!(empty.security_token, None);
    }

    #[test]
    fn secret_data_errors_name_the_key_never_the_value() {
        let cases: Vec<(BTreeMap<String, ByteString>, CredentialsError)> = vec![
            (
                data(&[("accessKeySecret", b"hunter2")]),
                CredentialsError::Missing { key: "accessKeyId" },
            ),
            (
                data(&[("accessKeyId", b"AK1")]),
                CredentialsError::Missing {
                    key: "accessKeySecret",
                },
            ),
            (
                data(&[("accessKeyId", b"\n"), ("accessKeySecret", b"hunter2")]),
                CredentialsError::Empty { key: "accessKeyId" },
            ),
            (
                data(&[("accessKeyId", b"AK1"), ("accessKeySecret", b"")]),
                CredentialsError::Empty {
                    key: "accessKeySecret",
                },
            ),
            (
                data(&[("accessKeyId", b"AK1"), ("accessKeySecret", b"hun\xffter2")]),
                CredentialsError::NotUtf8 {
                    key: "accessKeySecret",
                },
            ),
            (
                data(&[
                    ("accessKeyId", b"AK1"),
                    ("accessKeySecret", b"hunter2"),
                    ("securityToken", b"\xfe"),
                ]),
                CredentialsError::NotUtf8 {
                    key: "securityToken",
                },
            ),
            (
                data(&[("accessKeyId", b"AK1"), ("accessKeySecret", b"hun\nter2")]),
                CredentialsError::ControlCharacter {
                    key: "accessKeySecret",
                },
            ),
        ];
        for (input, expected) in cases {
            let err = Credentials::from_secret_data(&input).unwrap_err();
            assert_eq!(err, expected);
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains("hunter2") && !text.contains("ter2"),
                "{text}"
            );
        }
    }

    #[test]
    fn debug_output_contains_no_secret() {
        let creds = Credentials::new("AK1", "very-secret-value", Some("sts-token-value".into()));
        let debug = format!("{creds:?}");
        assert!(debug.contains("AK1"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(!debug.contains("sts-token-value"), "{debug}");
        let pretty = format!("{creds:#?}");
        assert!(!pretty.contains("very-secret-value") && !pretty.contains("sts-token-value"));
        let operator = format!("{:?}", OperatorCredentials::Env(creds));
        assert!(!operator.contains("very-secret-value") && !operator.contains("sts-token-value"));
    }

    #[test]
    fn env_with_keys() {
        let creds = Credentials::from_env_lookup(env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S1\n"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "T1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(creds, Credentials::new("AK1", "S1", Some("T1".into())));
    }

    #[test]
    fn env_without_keys_is_none() {
        assert_eq!(Credentials::from_env_lookup(env(&[])).unwrap(), None);
        assert_eq!(
            Credentials::from_env_lookup(env(&[("ALIBABA_CLOUD_SECURITY_TOKEN", "T1")])).unwrap(),
            None
        );
    }

    #[test]
    fn env_half_configured_is_an_error() {
        assert_eq!(
            Credentials::from_env_lookup(env(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK1")])),
            Err(CredentialsError::Missing {
                key: "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
            })
        );
        assert_eq!(
            Credentials::from_env_lookup(env(&[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S1"),
            ])),
            Err(CredentialsError::Empty {
                key: "ALIBABA_CLOUD_ACCESS_KEY_ID"
            })
        );
    }

    #[test]
    fn env_non_utf8_is_an_error() {
        use std::os::unix::ffi::OsStringExt as _;
        let lookup = |name: &str| match name {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some(OsString::from("AK1")),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some(OsString::from_vec(vec![0x66, 0xff])),
            _ => None,
        };
        assert_eq!(
            Credentials::from_env_lookup(lookup),
            Err(CredentialsError::NotUtf8 {
                key: "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
            })
        );
    }

    #[tokio::test]
    async fn operator_credentials_from_env() {
        let found = OperatorCredentials::discover_with(env(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            found.credentials().await.unwrap(),
            Credentials::new("AK1", "S1", None)
        );
        assert!(
            OperatorCredentials::discover_with(env(&[]))
                .unwrap()
                .is_none()
        );
    }

    const RRSA: [(&str, &str); 3] = [
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/op"),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/ack-rrsa-c1",
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/var/run/secrets/token"),
    ];

    #[test]
    fn design_order_static_keys_then_rrsa() {
        let mut both = RRSA.to_vec();
        both.extend([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S1"),
        ]);
        assert!(matches!(
            OperatorCredentials::discover_with(env(&both)).unwrap(),
            Some(OperatorCredentials::Env(_))
        ));
        let found = OperatorCredentials::discover_with(env(&RRSA))
            .unwrap()
            .unwrap();
        let OperatorCredentials::Rrsa(provider) = &found else {
            panic!("expected RRSA, got {found:?}");
        };
        assert_eq!(provider.config().role_arn, "acs:ram::1:role/op");
        assert_eq!(provider.config().sts_endpoint, "https://sts.aliyuncs.com");
        // Half a static pair is an error even when RRSA is configured: no silent fallback.
        let mut half = RRSA.to_vec();
        half.push(("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK1"));
        assert_eq!(
            OperatorCredentials::discover_with(env(&half)).unwrap_err(),
            CredentialsError::Missing {
                key: "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
            }
        );
        // Two of the three RRSA variables: the error names the third.
        assert_eq!(
            OperatorCredentials::discover_with(env(&RRSA[..2])).unwrap_err(),
            CredentialsError::Missing {
                key: "ALIBABA_CLOUD_OIDC_TOKEN_FILE"
            }
        );
    }
}
