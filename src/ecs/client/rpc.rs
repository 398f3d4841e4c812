//! One signed RPC request: the common parameters (`Action`, `Format=JSON`, the product's
//! `Version`, `AccessKeyId`, `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`,
//! `SignatureNonce`, `Timestamp`, and `SecurityToken` for STS credentials) around an action's own
//! parameters, signed with [`signature::sign`](crate::ecs::signature::sign) and laid out as the
//! percent-encoded query string the [`EcsClient`](super::EcsClient) posts.
//!
//! The same builder serves every RPC product signed with V1: the [`RpcApi`] names the product
//! and its API version (ECS `2014-05-26`, STS `2015-04-01`). Building is a pure function of its
//! inputs (the nonce and timestamp are passed in), so the exact bytes on the wire are unit-tested
//! here.

use std::collections::BTreeMap;

use crate::ecs::credentials::Credentials;
use crate::ecs::redaction::Redactor;
use crate::ecs::signature::{canonical_query, percent_encode, sign};

/// The HTTP method every call is sent with (parameters in the query, empty body).
pub const METHOD: &str = "POST";
/// ECS OpenAPI version.
pub const API_VERSION: &str = "2014-05-26";

/// What differs between RPC products that share the V1 signer: the product's name (for logs)
/// and its API `Version`. Where a product's calls go is the caller's business (ECS: per region;
/// STS: one configured endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcApi {
    /// The product, e.g. `Ecs`.
    pub product: &'static str,
    /// The `Version` parameter, e.g. `2014-05-26`.
    pub version: &'static str,
}

/// The ECS OpenAPI.
pub const ECS: RpcApi = RpcApi {
    product: "Ecs",
    version: API_VERSION,
};

/// The STS OpenAPI (`GetCallerIdentity`, signed like ECS calls).
pub const STS: RpcApi = RpcApi {
    product: "Sts",
    version: crate::ecs::rrsa::STS_API_VERSION,
};

/// A request ready to send.
#[derive(Clone)]
pub struct SignedRequest {
    /// The full query string (every parameter percent-encoded, `Signature` last).
    pub query: String,
    /// Knows this request's sensitive values (signature, security token, the query itself), to
    /// scrub them from anything the endpoint sends back.
    pub redactor: Redactor,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest").finish_non_exhaustive()
    }
}

/// The current time as ECS wants it: UTC `yyyy-MM-ddTHH:mm:ssZ`.
#[must_use]
pub fn timestamp_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A fresh `SignatureNonce` (UUID v4).
#[must_use]
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Builds and signs one call of `api`. `params` are the action's own parameters; a name given
/// twice keeps the last value, and an action parameter never overrides a common one.
#[must_use]
pub fn build(
    credentials: &Credentials,
    api: RpcApi,
    action: &str,
    params: &[(&str, String)],
    nonce: &str,
    timestamp: &str,
) -> SignedRequest {
    let mut all: BTreeMap<String, String> = params
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let common = [
        ("Action", action),
        ("Format", "JSON"),
        ("Version", api.version),
        ("AccessKeyId", credentials.access_key_id.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", timestamp),
    ];
    for (name, value) in common {
        all.insert(name.to_owned(), value.to_owned());
    }
    all.remove("Signature");
    all.remove("SecurityToken");
    if let Some(token) = &credentials.security_token {
        all.insert("SecurityToken".to_owned(), token.expose().to_owned());
    }
    let signature = sign(METHOD, &all, credentials.access_key_secret.expose());
    let query = format!(
        "{}&Signature={}",
        canonical_query(&all),
        percent_encode(&signature)
    );
    let mut redactor = Redactor::new();
    redactor.add(&signature);
    redactor.add(credentials.access_key_secret.expose());
    if let Some(token) = &credentials.security_token {
        redactor.add(token.expose());
    }
    redactor.add(&query);
    SignedRequest { query, redactor }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new("testid", "testsecret", token.map(str::to_owned))
    }

    #[test]
    fn exact_query_for_a_start_instance() {
        let request = build(
            &creds(None),
            ECS,
            "StartInstance",
            &[("InstanceId", "i-bp67acfmxazb4ph00001".to_owned())],
            "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            "2024-05-01T08:00:00Z",
        );
        let expected_params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "StartInstance"),
            ("Format", "JSON"),
            ("InstanceId", "i-bp67acfmxazb4ph00001"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // The same parameters signed with GET give the published ECS-shaped known answer
        // `3VhlmaOjQQOB8oN7NjSO52siViw=`; the client sends POST, so its signature is the POST one.
        assert_eq!(
            sign("GET", &expected_params, "testsecret"),
            "3VhlmaOjQQOB8oN7NjSO52siViw="
        );
        let post_signature = sign("POST", &expected_params, "testsecret");
        assert_eq!(
            request.query,
            format!(
                "AccessKeyId=testid&Action=StartInstance&Format=JSON&InstanceId=i-bp67acfmxazb4ph00001&SignatureMethod=HMAC-SHA1&SignatureNonce=0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9&SignatureVersion=1.0&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26&Signature={}",
                percent_encode(&post_signature)
            )
        );
        assert!(!request.query.contains("SecurityToken"));
        assert!(!request.query.contains("testsecret"));
    }

    /// The batch call as the client builds it reproduces the published ECS-shaped known answer
    /// for POST `StartInstances` with a security token (`z4/IDdD4Z8JJQP37TnuAc6NgW7U=`).
    #[test]
    fn start_instances_batch_reproduces_the_known_answer() {
        let params: Vec<(String, String)> = crate::ecs::batch::params(
            "cn-hangzhou",
            &["i-bp67acfmxazb4ph00001", "i-bp67acfmxazb4ph00002"],
            None,
        );
        let params: Vec<(&str, String)> = params
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let request = build(
            &creds(Some("CAIS+sts/token==")),
            ECS,
            "StartInstances",
            &params,
            "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            "2024-05-01T08:00:00Z",
        );
        assert!(
            request
                .query
                .ends_with("&Signature=z4%2FIDdD4Z8JJQP37TnuAc6NgW7U%3D"),
            "{}",
            request.query
        );
        assert!(request.query.contains("&BatchOptimization=SuccessFirst&"));
        assert!(
            request
                .query
                .contains("&InstanceId.1=i-bp67acfmxazb4ph00001&")
        );
        assert!(
            request
                .query
                .contains("&InstanceId.2=i-bp67acfmxazb4ph00002&")
        );
    }

    #[test]
    fn the_product_sets_the_version() {
        let request = build(&creds(None), STS, "GetCallerIdentity", &[], "n", "t");
        assert!(
            request.query.contains("&Version=2015-04-01&"),
            "{}",
            request.query
        );
        assert!(request.query.contains("Action=GetCallerIdentity&"));
        let ecs = build(&creds(None), ECS, "StartInstance", &[], "n", "t");
        assert!(ecs.query.contains("&Version=2014-05-26&"), "{}", ecs.query);
    }

    #[test]
    fn security_token_is_sent_and_signed() {
        let with = build(
            &creds(Some("CAIS+sts/token==")),
            ECS,
            "StartInstance",
            &[("InstanceId", "i-a".to_owned())],
            "n",
            "t",
        );
        assert!(
            with.query
                .contains("&SecurityToken=CAIS%2Bsts%2Ftoken%3D%3D&")
        );
        let without = build(
            &creds(None),
            ECS,
            "StartInstance",
            &[("InstanceId", "i-a".to_owned())],
            "n",
            "t",
        );
        let signature = |q: &str| q.rsplit("&Signature=").next().map(str::to_owned);
        assert_ne!(signature(&with.query), signature(&without.query));
        let scrubbed = with
            .redactor
            .redact("token CAIS%252Bsts%252Ftoken%253D%253D");
        assert_eq!(scrubbed, "token <redacted>");
    }

    #[test]
    fn action_params_cannot_override_common_ones() {
        let request = build(
            &creds(None),
            ECS,
            "DescribeInstances",
            &[
                ("Action", "StopInstance".to_owned()),
                ("Signature", "forged".to_owned()),
                ("SecurityToken", "smuggled".to_owned()),
            ],
            "n",
            "t",
        );
        assert!(request.query.contains("Action=DescribeInstances&"));
        assert!(!request.query.contains("forged") && !request.query.contains("smuggled"));
        assert_eq!(request.query.matches("Signature=").count(), 1);
    }

    #[test]
    fn timestamp_and_nonce_shapes() {
        let ts = timestamp_now();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert!(
            jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%SZ", &ts).is_ok(),
            "{ts}"
        );
        let a = new_nonce();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_nonce());
    }
}
