//! Which URL an ECS call goes to.
//!
//! By default every region has its own public endpoint `https://ecs.<region>.aliyuncs.com`; inside
//! an Alibaba Cloud VPC the operator can use `https://ecs-vpc.<region>.aliyuncs.com`
//! (`--ecs-endpoint-style vpc`). `--ecs-endpoint URL` overrides the endpoint for every region: the
//! ECS emulator in tests and the sandbox, or a proxy. The [`client`](super::client) asks
//! [`Endpoint::base_url`] for each call and posts to `<base_url>/`.

use std::fmt;
use std::str::FromStr;

/// Public or VPC-internal regional endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EndpointStyle {
    /// `ecs.<region>.aliyuncs.com`.
    #[default]
    Public,
    /// `ecs-vpc.<region>.aliyuncs.com` (reachable only from inside an Alibaba Cloud VPC).
    Vpc,
}

impl EndpointStyle {
    /// `public` or `vpc`, as on the command line.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Vpc => "vpc",
        }
    }
}

impl fmt::Display for EndpointStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndpointStyle {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Self::Public),
            "vpc" => Ok(Self::Vpc),
            _ => Err(EndpointError::UnknownStyle(s.to_owned())),
        }
    }
}

/// A bad `--ecs-endpoint` or `--ecs-endpoint-style`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The style is neither `public` nor `vpc`.
    #[error("unknown endpoint style {0:?}: expected `public` or `vpc`")]
    UnknownStyle(String),
    /// The override is not an absolute `http`/`https` URL without query, fragment or credentials.
    #[error("invalid ECS endpoint {url:?}: {detail}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// Where ECS calls go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The region's own endpoint.
    Regional {
        /// Public or VPC-internal.
        style: EndpointStyle,
    },
    /// One endpoint for every region, e.g. `http://127.0.0.1:9090` (stored without a trailing
    /// `/`). Build it with [`Endpoint::override_url`] to have it checked.
    Override(String),
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::Regional {
            style: EndpointStyle::Public,
        }
    }
}

impl Endpoint {
    /// An override endpoint, checked: absolute `http`/`https` URL with a host and no query,
    /// fragment or user info. A trailing `/` is dropped.
    ///
    /// # Errors
    /// [`EndpointError::InvalidUrl`] otherwise.
    pub fn override_url(url: &str) -> Result<Self, EndpointError> {
        let invalid = |detail: &str| EndpointError::InvalidUrl {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("user info is not allowed"));
        }
        Ok(Self::Override(
            parsed.as_str().trim_end_matches('/').to_owned(),
        ))
    }

    /// The endpoint from the command line: the override when given, else the regional style.
    ///
    /// # Errors
    /// As [`Endpoint::override_url`].
    pub fn from_options(
        override_url: Option<&str>,
        style: EndpointStyle,
    ) -> Result<Self, EndpointError> {
        match override_url.map(str::trim).filter(|s| !s.is_empty()) {
            Some(url) => Self::override_url(url),
            None => Ok(Self::Regional { style }),
        }
    }

    /// The base URL (no trailing `/`) for calls about `region_id`.
    #[must_use]
    pub fn base_url(&self, region_id: &str) -> String {
        match self {
            Self::Regional {
                style: EndpointStyle::Public,
            } => format!("https://ecs.{region_id}.aliyuncs.com"),
            Self::Regional {
                style: EndpointStyle::Vpc,
            } => format!("https://ecs-vpc.{region_id}.aliyuncs.com"),
            Self::Override(url) => url.trim_end_matches('/').to_owned(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn regional_urls() {
        assert_eq!(
            Endpoint::default().base_url("cn-hangzhou"),
            "https://ecs.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            Endpoint::Regional {
                style: EndpointStyle::Vpc
            }
            .base_url("ap-southeast-1"),
            "https://ecs-vpc.ap-southeast-1.aliyuncs.com"
        );
    }

    #[test]
    fn override_is_used_for_every_region() {
        let endpoint = Endpoint::override_url("http://127.0.0.1:9090/").unwrap();
        assert_eq!(endpoint, Endpoint::Override("http://127.0.0.1:9090".into()));
        assert_eq!(endpoint.base_url("cn-hangzhou"), "http://127.0.0.1:9090");
        assert_eq!(endpoint.base_url("us-west-1"), "http://127.0.0.1:9090");
        assert_eq!(
            Endpoint::Override("http://proxy:8080/ecs/".into()).base_url("x"),
            "http://proxy:8080/ecs"
        );
    }

    #[test]
    fn bad_overrides_are_rejected() {
        for url in [
            "",
            "127.0.0.1:9090",
            "ftp://host",
            "http://host/?a=b",
            "http://host/#frag",
            "http://user:pw@host",
            "not a url",
        ] {
            assert!(Endpoint::override_url(url).is_err(), "{url:?}");
        }
    }

    #[test]
    fn from_options() {
        assert_eq!(
            Endpoint::from_options(None, EndpointStyle::Vpc).unwrap(),
            Endpoint::Regional {
                style: EndpointStyle::Vpc
            }
        );
        assert_eq!(
            Endpoint::from_options(Some("  "), EndpointStyle::Public).unwrap(),
            Endpoint::default()
        );
        assert_eq!(
            Endpoint::from_options(Some("https://ecs.example.test"), EndpointStyle::Vpc).unwrap(),
            Endpoint::Override("https://ecs.example.test".into())
        );
    }

    #[test]
    fn styles_parse() {
        assert_eq!("vpc".parse::<EndpointStyle>().unwrap(), EndpointStyle::Vpc);
        assert_eq!(
            "Public".parse::<EndpointStyle>().unwrap(),
            EndpointStyle::Public
        );
        assert!("internal".parse::<EndpointStyle>().is_err());
        assert_eq!(EndpointStyle::Vpc.to_string(), "vpc");
    }
}
