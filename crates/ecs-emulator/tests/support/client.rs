//! A small signing ECS client for the integration tests and the benchmark, written here from the
//! ECS documentation (ECS-API.md §1–2) and deliberately not sharing code with the emulator's
//! verifier: its own percent-encoding, canonical strings and HMACs.

#![allow(dead_code)]

use std::fmt::Write as _;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A reqwest builder that works whichever TLS features the workspace unifies onto reqwest: with
/// `rustls-no-provider` (the operator's choice) reqwest panics unless a provider is installed.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A plain HTTP client for requests the tests build by hand.
pub fn http() -> reqwest::Client {
    http_builder().build().expect("http client")
}

/// RFC 3986 encoding with the ECS rules, byte by byte.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn now_stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Signs `params` (which must include the common ones) with V1 and returns the query string.
pub fn v1_query(method: &str, secret: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let canonical: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    let canonical = canonical.join("&");
    let to_sign = format!("{method}&%2F&{}", pct(&canonical));
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("hmac key");
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("{canonical}&Signature={}", pct(&signature))
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub body: serde_json::Value,
    pub content_type: String,
    /// `x-acs-retry-after`, when sent.
    pub retry_after: Option<String>,
}

impl Reply {
    /// The error `Code`, or "" on success.
    pub fn code(&self) -> &str {
        self.body.get("Code").and_then(|c| c.as_str()).unwrap_or("")
    }
}

/// A signing client for one key.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub access_key_id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Client {
    pub fn new(base: &str, access_key_id: &str, secret: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            access_key_id: access_key_id.to_owned(),
            secret: secret.to_owned(),
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The full V1 parameter set for an ECS call.
    pub fn v1_params(&self, action: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Version".into(), version_of(action).into()),
            ("Format".into(), "JSON".into()),
            ("AccessKeyId".into(), self.access_key_id.clone()),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureVersion".into(), "1.0".into()),
            ("SignatureNonce".into(), uuid::Uuid::new_v4().to_string()),
            ("Timestamp".into(), now_stamp()),
        ];
        if let Some(t) = &self.token {
            all.push(("SecurityToken".into(), t.clone()));
        }
        for (k, v) in params {
            all.retain(|(name, _)| name != k);
            all.push(((*k).to_owned(), (*v).to_owned()));
        }
        all
    }

    /// Sends a V1-signed POST with every parameter in the query (as the operator does).
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Reply {
        let all = self.v1_params(action, params);
        self.send_v1("POST", &all).await
    }

    /// Sends a V1-signed request with the given method and raw parameter set.
    pub async fn send_v1(&self, method: &str, all: &[(String, String)]) -> Reply {
        let query = v1_query(method, &self.secret, all);
        let url = format!("{}/?{query}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        into_reply(req.send().await.expect("request sent")).await
    }

    /// Sends a V1-signed POST with the parameters in a form body.
    pub async fn call_form(&self, action: &str, params: &[(&str, &str)]) -> Reply {
        let all = self.v1_params(action, params);
        let query = v1_query("POST", &self.secret, &all);
        let resp = self
            .http
            .post(format!("{}/", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(query)
            .send()
            .await
            .expect("request sent");
        into_reply(resp).await
    }

    /// Sends an ACS3-HMAC-SHA256 POST with the parameters in the query.
    pub async fn call_v3(&self, action: &str, params: &[(&str, &str)]) -> Reply {
        let host = self.base.trim_start_matches("http://").to_owned();
        let mut sorted: Vec<(&str, &str)> = params.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let canonical_query: Vec<String> = sorted
            .iter()
            .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
            .collect();
        let canonical_query = canonical_query.join("&");
        let payload = hex::encode(Sha256::digest(b""));
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-acs-action".into(), action.into()),
            ("x-acs-version".into(), version_of(action).into()),
            ("x-acs-date".into(), now_stamp()),
            (
                "x-acs-signature-nonce".into(),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            ("x-acs-content-sha256".into(), payload.clone()),
        ];
        if let Some(t) = &self.token {
            headers.push(("x-acs-security-token".into(), t.clone()));
        }
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical =
            format!("POST\n/\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload}");
        let to_sign = format!(
            "ACS3-HMAC-SHA256\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).expect("hmac key");
        mac.update(to_sign.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let mut req = self.http.post(format!("{}/?{canonical_query}", self.base));
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k, v);
        }
        req = req.header(
            "authorization",
            format!(
                "ACS3-HMAC-SHA256 Credential={},SignedHeaders={signed},Signature={signature}",
                self.access_key_id
            ),
        );
        into_reply(req.send().await.expect("request sent")).await
    }
}

/// Sends an anonymous RPC call (STS) with the parameters in the query.
pub async fn anonymous(base: &str, action: &str, version: &str, params: &[(&str, &str)]) -> Reply {
    let mut all: Vec<(String, String)> = vec![
        ("Action".into(), action.into()),
        ("Version".into(), version.into()),
        ("Format".into(), "JSON".into()),
        ("Timestamp".into(), now_stamp()),
    ];
    all.extend(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let query: Vec<String> = all
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    let resp = http()
        .post(format!(
            "{}/?{}",
            base.trim_end_matches('/'),
            query.join("&")
        ))
        .send()
        .await
        .expect("request sent");
    into_reply(resp).await
}

pub async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let retry_after = resp
        .headers()
        .get("x-acs-retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        text,
        body,
        content_type,
        retry_after,
    }
}

/// The API version of an action: STS's for the STS actions, else ECS's.
pub fn version_of(action: &str) -> &'static str {
    if matches!(action, "GetCallerIdentity" | "AssumeRoleWithOIDC") {
        "2015-04-01"
    } else {
        "2014-05-26"
    }
}
