//! The kubeconfig the sandbox writes: one cluster at `http://HOST:PORT` (no TLS), one context
//! `kube-sandbox` with namespace `default`, and a user with no credentials (the sandbox does
//! no authentication; an `Authorization` header is accepted and ignored).

/// A kubeconfig for a server at `url`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-sandbox
  cluster:
    server: {url}
contexts:
- name: kube-sandbox
  context:
    cluster: kube-sandbox
    user: kube-sandbox
    namespace: default
current-context: kube-sandbox
preferences: {{}}
users:
- name: kube-sandbox
  user: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_yaml() {
        let y: serde_json::Value =
            serde_yaml::from_str(&kubeconfig_yaml("http://127.0.0.1:1234")).expect("yaml");
        assert_eq!(
            y["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(y["current-context"], "kube-sandbox");
        assert_eq!(y["contexts"][0]["context"]["namespace"], "default");
    }
}
