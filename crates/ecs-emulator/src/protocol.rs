//! The RPC protocol of the ECS OpenAPI: a request is GET or POST on `/` with parameters in the
//! query string or an `application/x-www-form-urlencoded` body, signed with V1 (parameters) or
//! V3 (`Authorization: ACS3-HMAC-SHA256 …` headers). This module turns an HTTP request into an
//! `RpcRequest` and renders answers (`render`) as JSON or, with `Format=XML`, XML.

pub(crate) mod params;
pub(crate) mod render;
pub mod xml;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::catalogue::EcsError;
pub(crate) use params::Params;

/// Answer encoding requested by `Format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `Format=JSON` (any case), the default here.
    Json,
    /// `Format=XML`.
    Xml,
}

/// A parsed RPC request.
#[derive(Debug)]
pub(crate) struct RpcRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Decoded pairs of the URL query only (V3 signs these).
    pub query: Vec<(String, String)>,
    /// Query and form body together.
    pub params: Params,
}

fn decode(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl RpcRequest {
    /// Decodes the query and, for form bodies, the body.
    ///
    /// # Errors
    /// `InvalidParameter` when a parameter name repeats.
    pub(crate) fn parse(
        method: Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Self, EcsError> {
        let query = decode(uri.query().unwrap_or("").as_bytes());
        let mut params = Params::default();
        params.extend(query.iter().cloned())?;
        let is_form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if is_form && !body.is_empty() {
            params.extend(decode(&body))?;
        }
        Ok(Self {
            method,
            path: uri.path().to_owned(),
            headers,
            body,
            query,
            params,
        })
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the request carries a V3 `Authorization` header.
    pub(crate) fn is_v3(&self) -> bool {
        self.header("authorization")
            .is_some_and(|a| a.trim_start().starts_with("ACS3-"))
    }

    /// `Action`: the `x-acs-action` header for V3, else the parameter.
    pub(crate) fn action(&self) -> Option<&str> {
        let header = if self.is_v3() {
            self.header("x-acs-action")
        } else {
            None
        };
        header
            .or_else(|| self.params.get("Action"))
            .filter(|a| !a.is_empty())
    }

    /// `Version`: the `x-acs-version` header for V3, else the parameter.
    pub(crate) fn version(&self) -> Option<&str> {
        let header = if self.is_v3() {
            self.header("x-acs-version")
        } else {
            None
        };
        header.or_else(|| self.params.get("Version"))
    }

    /// The requested answer format.
    pub(crate) fn format(&self) -> Format {
        match self.params.get("Format") {
            Some(f) if f.eq_ignore_ascii_case("xml") => Format::Xml,
            _ => Format::Json,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn parse(uri: &str, content_type: Option<&str>, body: &str) -> Result<RpcRequest, EcsError> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(ct).unwrap(),
            );
        }
        RpcRequest::parse(
            Method::POST,
            &uri.parse().unwrap(),
            headers,
            Bytes::from(body.to_owned()),
        )
    }

    #[test]
    fn merges_query_and_form_body() {
        let r = parse(
            "/?Action=StartInstance&Timestamp=2024-01-01T00%3A00%3A00Z",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            "InstanceId=i-a&Note=a+b",
        )
        .unwrap();
        assert_eq!(r.action(), Some("StartInstance"));
        assert_eq!(r.params.get("Timestamp"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(r.params.get("Note"), Some("a b"));
        assert_eq!(r.query.len(), 2);
    }

    #[test]
    fn ignores_non_form_bodies_and_rejects_duplicates() {
        let r = parse("/?Action=A", Some("application/json"), "{\"x\":1}").unwrap();
        assert_eq!(r.params.iter().count(), 1);
        assert!(parse("/?A=1", Some("application/x-www-form-urlencoded"), "A=2").is_err());
    }

    #[test]
    fn format_and_v3_detection() {
        let mut r = parse("/?Format=xml", None, "").unwrap();
        assert_eq!(r.format(), Format::Xml);
        assert!(!r.is_v3());
        r.headers.insert(
            "authorization",
            HeaderValue::from_static("ACS3-HMAC-SHA256 Credential=a"),
        );
        r.headers.insert(
            "x-acs-action",
            HeaderValue::from_static("DescribeInstances"),
        );
        assert!(r.is_v3());
        assert_eq!(r.action(), Some("DescribeInstances"));
        assert_eq!(parse("/", None, "").unwrap().format(), Format::Json);
    }
}
