//! URL paths of the Kubernetes API: discovery (`/api`, `/apis/...`), `/version`, health,
//! OpenAPI, and resource paths (`/api/v1/namespaces/ns/secrets/name`,
//! `/apis/group/version/plural/name/status`, legacy `/watch/` prefixes).

/// A resource URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace segment, if any.
    pub namespace: Option<String>,
    /// Plural.
    pub plural: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`).
    pub subresource: Option<String>,
    /// Under the deprecated `/watch/` prefix.
    pub legacy_watch: bool,
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`.
    Root,
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    Api,
    /// `/apis`.
    Apis,
    /// `/apis/<group>`.
    ApiGroup(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion(String, String),
    /// `/openapi/v2`.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/<api/v1 | apis/g/v>`.
    OpenApiV3(String),
    /// A resource path.
    Resource(ResourcePath),
    /// Anything else.
    NotFound,
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let (legacy_watch, rest) = match rest.split_first() {
        Some((&"watch", tail)) => (true, tail),
        _ => (false, rest),
    };
    let (namespace, rest) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"))
    {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 || rest.iter().any(|s| s.is_empty()) {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: rest[0].to_string(),
        name: rest.get(1).map(|s| (*s).to_string()),
        subresource: rest.get(2).map(|s| (*s).to_string()),
        legacy_watch,
    })
}

/// Percent-decodes one path segment (`%3A` → `:`); malformed escapes are kept as written.
fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request path.
pub fn parse(path: &str) -> Route {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Route::Root;
    }
    let decoded: Vec<String> = trimmed.split('/').map(decode_segment).collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::Api,
        ["api", v] => Route::GroupVersion(String::new(), (*v).to_string()),
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis"] => Route::Apis,
        ["apis", g] => Route::ApiGroup((*g).to_string()),
        ["apis", g, v] => Route::GroupVersion((*g).to_string(), (*v).to_string()),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        let r = res("/api/v1/namespaces/d/secrets/s");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.plural.as_str(),
                r.name.as_deref()
            ),
            ("", Some("d"), "secrets", Some("s"))
        );
        let r = res("/api/v1/namespaces/foo");
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("foo"), None)
        );
        let r = res("/api/v1/namespaces/foo/status");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("foo"), Some("status"))
        );
        let r = res("/apis/ecspower.dev/v1alpha1/namespaces/d/ecsinstancepowers/x/status");
        assert_eq!(
            (
                r.group.as_str(),
                r.version.as_str(),
                r.subresource.as_deref()
            ),
            ("ecspower.dev", "v1alpha1", Some("status"))
        );
        let r = res("/apis/ecspower.dev/v1alpha1/ecsinstancepowers");
        assert_eq!((r.namespace, r.name), (None, None));
        let r = res("/api/v1/watch/namespaces/d/configmaps");
        assert!(r.legacy_watch);
        assert_eq!(r.namespace.as_deref(), Some("d"));
        assert_eq!(parse("/apis/g/v/a/b/c/d"), Route::NotFound);
        let r = res("/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aop%2");
        assert_eq!(r.name.as_deref(), Some("system:op%2"));
    }

    #[test]
    fn other_paths() {
        assert_eq!(parse("/version"), Route::Version);
        assert_eq!(parse("/api"), Route::Api);
        assert_eq!(
            parse("/api/v1"),
            Route::GroupVersion(String::new(), "v1".into())
        );
        assert_eq!(parse("/apis/apps"), Route::ApiGroup("apps".into()));
        assert_eq!(
            parse("/openapi/v3/apis/ecspower.dev/v1alpha1"),
            Route::OpenApiV3("apis/ecspower.dev/v1alpha1".into())
        );
        assert_eq!(parse("/"), Route::Root);
        assert_eq!(parse("/nope"), Route::NotFound);
    }
}
