//! Request authentication, as the ECS API gateway does it: signature V1 (HMAC-SHA1 over the
//! parameters) or V3 (ACS3-HMAC-SHA256 over the canonical request), checked against the
//! configured and STS-issued keys (`SecurityToken` included), with a ±window on the timestamp
//! and a per-key nonce cache that refuses replays. Both verifiers are written from the
//! documentation and checked against the published known-answer vectors (ECS-API.md §1–2).
//!
//! Order of checks: signature parameters present → timestamp well-formed and within the
//! window → access key known → not expired → security token matches → signature → nonce unused.

pub(crate) mod nonce;
pub mod percent;
pub mod v1;
pub mod v3;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::call_log::SignatureScheme;
use crate::catalogue::EcsError;
use crate::credentials::{Identity, KeyEntry, KeyRing};
use crate::emulator::lock;
use crate::protocol::RpcRequest;
use nonce::NonceCache;

const REDACTED: &str = "******";

/// A request that passed authentication.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub access_key_id: String,
    pub scheme: SignatureScheme,
    /// Who the key belongs to.
    pub identity: Identity,
}

/// A request that did not, with what it claimed (for the call log).
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub access_key_id: Option<String>,
    pub scheme: SignatureScheme,
    pub error: EcsError,
}

/// What authentication consults.
pub(crate) struct Verifier<'a> {
    pub keys: &'a Mutex<KeyRing>,
    pub nonces: &'a Mutex<NonceCache>,
    /// Accepted clock difference either way.
    pub window: Duration,
    pub now: jiff::Timestamp,
    pub instant: Instant,
}

/// The claims common to both schemes, once extracted.
struct Claims<'r> {
    access_key_id: &'r str,
    timestamp: &'r str,
    nonce: &'r str,
    security_token: Option<&'r str>,
}

impl Verifier<'_> {
    /// Authenticates an ECS request with V1 or V3, whichever it carries.
    pub(crate) fn authenticate(&self, req: &RpcRequest) -> Result<Principal, Rejection> {
        if req.is_v3() {
            self.v3(req)
        } else {
            self.v1(req)
        }
    }

    fn reject(scheme: SignatureScheme, ak: Option<&str>, error: EcsError) -> Rejection {
        Rejection {
            access_key_id: ak.map(str::to_owned),
            scheme,
            error,
        }
    }

    /// Timestamp, key, expiry and token checks; returns the key's entry.
    fn check_claims(&self, claims: &Claims<'_>, ts_name: &str) -> Result<KeyEntry, EcsError> {
        let ts: jiff::Timestamp = claims.timestamp.parse().map_err(|_| {
            EcsError::of("IllegalTimestamp").with_message(format!(
                "The input parameter \"{ts_name}\" is not in the format yyyy-MM-ddTHH:mm:ssZ."
            ))
        })?;
        let skew = self.now.duration_since(ts).unsigned_abs();
        if skew > self.window {
            return Err(EcsError::of("InvalidTimeStamp.Expired"));
        }
        let entry = lock(self.keys)
            .get(claims.access_key_id)
            .cloned()
            .ok_or_else(|| EcsError::of("InvalidAccessKeyId.NotFound"))?;
        if entry.expires.is_some_and(|e| e <= self.now) {
            return Err(EcsError::of("InvalidSecurityToken.Expired"));
        }
        let given = claims.security_token.filter(|t| !t.is_empty());
        if given != entry.security_token.as_deref() {
            return Err(EcsError::of("InvalidSecurityToken.MismatchWithAccessKey"));
        }
        Ok(entry)
    }

    fn check_nonce(&self, claims: &Claims<'_>) -> Result<(), EcsError> {
        if lock(self.nonces).check_and_insert(claims.access_key_id, claims.nonce, self.instant) {
            Ok(())
        } else {
            Err(EcsError::of("SignatureNonceUsed"))
        }
    }

    fn v1(&self, req: &RpcRequest) -> Result<Principal, Rejection> {
        let scheme = SignatureScheme::V1;
        let p = &req.params;
        let ak = p.non_empty("AccessKeyId");
        let fail = |e: EcsError| Self::reject(scheme, ak, e);
        let required = |name: &str| {
            p.non_empty(name)
                .ok_or_else(|| EcsError::missing_common(name))
        };
        let access_key_id = required("AccessKeyId").map_err(fail)?;
        let signature = required("Signature").map_err(fail)?;
        let method = required("SignatureMethod").map_err(fail)?;
        if method != "HMAC-SHA1" {
            return Err(fail(EcsError::of("IncompleteSignature").with_message(
                format!("SignatureMethod {method:?} is not supported; use HMAC-SHA1."),
            )));
        }
        let version = required("SignatureVersion").map_err(fail)?;
        if version != "1.0" {
            return Err(fail(EcsError::of("IncompleteSignature").with_message(
                format!("SignatureVersion {version:?} is not supported; use 1.0."),
            )));
        }
        if p.non_empty("SignatureType").is_some() {
            return Err(fail(EcsError::of("IncompleteSignature").with_message(
                "SignatureType (bearer tokens) is not supported by the emulator.",
            )));
        }
        let claims = Claims {
            access_key_id,
            timestamp: required("Timestamp").map_err(fail)?,
            nonce: required("SignatureNonce").map_err(fail)?,
            security_token: p.get("SecurityToken"),
        };
        let entry = self.check_claims(&claims, "Timestamp").map_err(fail)?;
        let method = req.method.as_str();
        let sts = v1::string_to_sign(method, p.iter());
        if !v1::verify(&entry.secret, &sts, signature) {
            let shown = if claims.security_token.is_some() {
                v1::string_to_sign(
                    method,
                    p.iter().map(|(k, v)| {
                        if k == "SecurityToken" {
                            (k, REDACTED)
                        } else {
                            (k, v)
                        }
                    }),
                )
            } else {
                sts
            };
            return Err(fail(EcsError::of("SignatureDoesNotMatch").with_message(format!(
                "Specified signature is not matched with our calculation. server string to sign is:{shown}"
            ))));
        }
        self.check_nonce(&claims).map_err(fail)?;
        Ok(Principal {
            access_key_id: access_key_id.to_owned(),
            scheme,
            identity: entry.identity,
        })
    }

    fn v3(&self, req: &RpcRequest) -> Result<Principal, Rejection> {
        let scheme = SignatureScheme::V3;
        let incomplete = |why: String| EcsError::of("IncompleteSignature").with_message(why);
        let auth = v3::Authorization::parse(req.header("authorization").unwrap_or(""))
            .map_err(|why| Self::reject(scheme, None, incomplete(why)))?;
        let ak = Some(auth.credential.as_str());
        let fail = |e: EcsError| Self::reject(scheme, ak, e);
        if auth.algorithm != v3::ALGORITHM {
            return Err(fail(incomplete(format!(
                "Signature algorithm {:?} is not supported; use {}.",
                auth.algorithm,
                v3::ALGORITHM
            ))));
        }
        let header = |name: &str| {
            req.header(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| incomplete(format!("The header {name} is required.")))
        };
        let date = header("x-acs-date").map_err(fail)?;
        let nonce = header("x-acs-signature-nonce").map_err(fail)?;
        let content_sha = header("x-acs-content-sha256").map_err(fail)?;
        let unsigned: Vec<&str> = req
            .headers
            .keys()
            .map(http::HeaderName::as_str)
            .filter(|n| {
                (n.starts_with("x-acs-") || *n == "host")
                    && !auth.signed_headers.iter().any(|s| s == n)
            })
            .collect();
        if !unsigned.is_empty() {
            return Err(fail(incomplete(format!(
                "Every x-acs-* header and host must be signed; not signed: {}.",
                unsigned.join(", ")
            ))));
        }
        let claims = Claims {
            access_key_id: &auth.credential,
            timestamp: date,
            nonce,
            security_token: req.header("x-acs-security-token"),
        };
        let entry = self.check_claims(&claims, "x-acs-date").map_err(fail)?;
        if !content_sha.eq_ignore_ascii_case(&v3::sha256_hex(&req.body)) {
            return Err(fail(EcsError::of("SignatureDoesNotMatch").with_message(
                "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
            )));
        }
        let (headers, signed) = v3::canonical_headers(&req.headers, &auth.signed_headers);
        let query = v3::canonical_query(req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let canonical = v3::canonical_request(
            req.method.as_str(),
            &req.path,
            &query,
            &headers,
            &signed,
            content_sha,
        );
        let sts = v3::string_to_sign(&canonical);
        if !v3::verify(&entry.secret, &sts, &auth.signature) {
            let shown = match claims.security_token.filter(|t| !t.is_empty()) {
                Some(token) => canonical.replace(token, REDACTED),
                None => canonical,
            };
            return Err(fail(EcsError::of("SignatureDoesNotMatch").with_message(format!(
                "Specified signature does not match our calculation. server string to sign is:{sts} canonical request is:{shown}"
            ))));
        }
        self.check_nonce(&claims).map_err(fail)?;
        Ok(Principal {
            access_key_id: auth.credential.clone(),
            scheme,
            identity: entry.identity,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method};

    use super::*;
    use crate::credentials::AccessKey;

    struct Fixture {
        keys: Mutex<KeyRing>,
        nonces: Mutex<NonceCache>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                keys: Mutex::new(KeyRing::new(&[
                    AccessKey::new("AK1", "S1"),
                    AccessKey::new("STS.AK", "S2").with_security_token("TOKEN-XYZ"),
                ])),
                nonces: Mutex::new(NonceCache::new(Duration::from_secs(1800))),
            }
        }

        fn verifier(&self, now: jiff::Timestamp) -> Verifier<'_> {
            Verifier {
                keys: &self.keys,
                nonces: &self.nonces,
                window: Duration::from_secs(900),
                now,
                instant: Instant::now(),
            }
        }
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    fn ts(t: jiff::Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// A V1-signed GET, signed here with the documented algorithm.
    fn v1_request(
        ak: &str,
        secret: &str,
        extra: &[(&str, &str)],
        timestamp: &str,
        nonce: &str,
    ) -> RpcRequest {
        let mut params: Vec<(String, String)> = [
            ("AccessKeyId", ak),
            ("Action", "DescribeInstances"),
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0"),
            ("Timestamp", timestamp),
            ("Version", "2014-05-26"),
        ]
        .iter()
        .chain(extra.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sts = v1::string_to_sign("GET", params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        params.push(("Signature".to_owned(), v1::sign(secret, &sts)));
        let query = params
            .iter()
            .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        RpcRequest::parse(
            Method::GET,
            &format!("/?{query}").parse().unwrap(),
            HeaderMap::new(),
            Bytes::new(),
        )
        .unwrap()
    }

    fn code(r: Result<Principal, Rejection>) -> String {
        match r {
            Ok(_) => "OK".to_owned(),
            Err(rej) => rej.error.code,
        }
    }

    #[test]
    fn v1_accepts_a_good_signature_once() {
        let f = Fixture::new();
        let now = now();
        let req = v1_request("AK1", "S1", &[], &ts(now), "n-1");
        let p = f.verifier(now).authenticate(&req).unwrap();
        assert_eq!(
            (p.access_key_id.as_str(), p.scheme),
            ("AK1", SignatureScheme::V1)
        );
        assert_eq!(
            code(f.verifier(now).authenticate(&req)),
            "SignatureNonceUsed"
        );
    }

    #[test]
    fn v1_rejections() {
        let f = Fixture::new();
        let now = now();
        let v = f.verifier(now);
        assert_eq!(
            code(v.authenticate(&v1_request("AK1", "wrong", &[], &ts(now), "a"))),
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            code(v.authenticate(&v1_request("AK9", "S1", &[], &ts(now), "b"))),
            "InvalidAccessKeyId.NotFound"
        );
        let stale = ts(now - jiff::SignedDuration::from_mins(16));
        assert_eq!(
            code(v.authenticate(&v1_request("AK1", "S1", &[], &stale, "c"))),
            "InvalidTimeStamp.Expired"
        );
        let future = ts(now + jiff::SignedDuration::from_mins(16));
        assert_eq!(
            code(v.authenticate(&v1_request("AK1", "S1", &[], &future, "d"))),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            code(v.authenticate(&v1_request("AK1", "S1", &[], "yesterday", "e"))),
            "IllegalTimestamp"
        );
        let within = ts(now - jiff::SignedDuration::from_mins(14));
        assert_eq!(
            code(v.authenticate(&v1_request("AK1", "S1", &[], &within, "f"))),
            "OK"
        );
    }

    #[test]
    fn v1_missing_parameters() {
        let f = Fixture::new();
        let req = RpcRequest::parse(
            Method::GET,
            &"/?Action=DescribeInstances".parse().unwrap(),
            HeaderMap::new(),
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(
            code(f.verifier(now()).authenticate(&req)),
            "MissingAccessKeyId"
        );
        let req = RpcRequest::parse(
            Method::GET,
            &"/?AccessKeyId=AK1".parse().unwrap(),
            HeaderMap::new(),
            Bytes::new(),
        )
        .unwrap();
        let rej = f.verifier(now()).authenticate(&req).unwrap_err();
        assert_eq!(rej.error.code, "MissingSignature");
        assert_eq!(rej.access_key_id.as_deref(), Some("AK1"));
    }

    #[test]
    fn v1_security_token_must_match_and_is_never_echoed() {
        let f = Fixture::new();
        let now = now();
        let v = f.verifier(now);
        let ok = v1_request(
            "STS.AK",
            "S2",
            &[("SecurityToken", "TOKEN-XYZ")],
            &ts(now),
            "t1",
        );
        assert_eq!(code(v.authenticate(&ok)), "OK");
        let missing = v1_request("STS.AK", "S2", &[], &ts(now), "t2");
        assert_eq!(
            code(v.authenticate(&missing)),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        let wrong = v1_request(
            "STS.AK",
            "S2",
            &[("SecurityToken", "OTHER")],
            &ts(now),
            "t3",
        );
        assert_eq!(
            code(v.authenticate(&wrong)),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        let unexpected = v1_request(
            "AK1",
            "S1",
            &[("SecurityToken", "TOKEN-XYZ")],
            &ts(now),
            "t4",
        );
        assert_eq!(
            code(v.authenticate(&unexpected)),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        let bad_sig = v1_request(
            "STS.AK",
            "nope",
            &[("SecurityToken", "TOKEN-XYZ")],
            &ts(now),
            "t5",
        );
        let rej = v.authenticate(&bad_sig).unwrap_err();
        assert_eq!(rej.error.code, "SignatureDoesNotMatch");
        assert!(
            !rej.error.message.contains("TOKEN-XYZ"),
            "{}",
            rej.error.message
        );
        assert!(
            rej.error
                .message
                .contains("server string to sign is:GET&%2F&")
        );
    }

    #[test]
    fn expired_sts_keys_are_refused() {
        let f = Fixture::new();
        let now = now();
        let issued = lock(&f.keys).issue_sts(
            crate::credentials::Identity::assumed_role("acs:ram::1:role/r", "s"),
            Duration::from_secs(1),
            now - jiff::SignedDuration::from_secs(10),
        );
        let req = v1_request(
            &issued.access_key_id,
            &issued.access_key_secret,
            &[("SecurityToken", &issued.security_token)],
            &ts(now),
            "x",
        );
        assert_eq!(
            code(f.verifier(now).authenticate(&req)),
            "InvalidSecurityToken.Expired"
        );
    }

    /// A V3-signed POST, signed here with the documented algorithm.
    fn v3_request(
        ak: &str,
        secret: &str,
        date: &str,
        nonce: &str,
        token: Option<&str>,
        body: &str,
    ) -> RpcRequest {
        let query = "RegionId=cn-hangzhou&InstanceIds=%5B%22i-a%22%5D";
        let mut headers = HeaderMap::new();
        let payload = v3::sha256_hex(body.as_bytes());
        for (k, v) in [
            ("host", "127.0.0.1:9090"),
            ("x-acs-action", "DescribeInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", date),
            ("x-acs-signature-nonce", nonce),
            ("x-acs-content-sha256", payload.as_str()),
        ] {
            headers.insert(k, HeaderValue::from_str(v).unwrap());
        }
        if let Some(t) = token {
            headers.insert("x-acs-security-token", HeaderValue::from_str(t).unwrap());
        }
        let signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        let (ch, sh) = v3::canonical_headers(&headers, &signed);
        let cq = v3::canonical_query([("RegionId", "cn-hangzhou"), ("InstanceIds", "[\"i-a\"]")]);
        let cr = v3::canonical_request("POST", "/", &cq, &ch, &sh, &payload);
        let sig = v3::sign(secret, &v3::string_to_sign(&cr));
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={sh},Signature={sig}"
            ))
            .unwrap(),
        );
        headers.insert("user-agent", HeaderValue::from_static("unsigned is fine"));
        RpcRequest::parse(
            Method::POST,
            &format!("/?{query}").parse().unwrap(),
            headers,
            Bytes::from(body.to_owned()),
        )
        .unwrap()
    }

    #[test]
    fn v3_accepts_a_good_signature_once() {
        let f = Fixture::new();
        let now = now();
        let req = v3_request("AK1", "S1", &ts(now), "v3-1", None, "");
        let p = f.verifier(now).authenticate(&req).unwrap();
        assert_eq!(p.scheme, SignatureScheme::V3);
        assert_eq!(
            code(f.verifier(now).authenticate(&req)),
            "SignatureNonceUsed"
        );
    }

    #[test]
    fn v3_rejections() {
        let f = Fixture::new();
        let now = now();
        let v = f.verifier(now);
        assert_eq!(
            code(v.authenticate(&v3_request("AK1", "bad", &ts(now), "a", None, ""))),
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            code(v.authenticate(&v3_request("AK7", "S1", &ts(now), "b", None, ""))),
            "InvalidAccessKeyId.NotFound"
        );
        let stale = ts(now - jiff::SignedDuration::from_mins(20));
        assert_eq!(
            code(v.authenticate(&v3_request("AK1", "S1", &stale, "c", None, ""))),
            "InvalidTimeStamp.Expired"
        );
        assert_eq!(
            code(v.authenticate(&v3_request(
                "STS.AK",
                "S2",
                &ts(now),
                "d",
                Some("TOKEN-XYZ"),
                "a=b"
            ))),
            "OK"
        );
        let rej = v
            .authenticate(&v3_request(
                "STS.AK",
                "zz",
                &ts(now),
                "e",
                Some("TOKEN-XYZ"),
                "",
            ))
            .unwrap_err();
        assert!(!rej.error.message.contains("TOKEN-XYZ"));
        let mut tampered = v3_request("AK1", "S1", &ts(now), "f", None, "a=b");
        tampered.body = Bytes::from_static(b"a=c");
        assert_eq!(code(v.authenticate(&tampered)), "SignatureDoesNotMatch");
        let mut unsigned = v3_request("AK1", "S1", &ts(now), "g", None, "");
        unsigned
            .headers
            .insert("x-acs-extra", HeaderValue::from_static("1"));
        assert_eq!(code(v.authenticate(&unsigned)), "IncompleteSignature");
        let mut sm3 = v3_request("AK1", "S1", &ts(now), "h", None, "");
        sm3.headers.insert(
            "authorization",
            HeaderValue::from_static(
                "ACS3-HMAC-SM3 Credential=AK1,SignedHeaders=host,Signature=00",
            ),
        );
        assert_eq!(code(v.authenticate(&sm3)), "IncompleteSignature");
    }
}
