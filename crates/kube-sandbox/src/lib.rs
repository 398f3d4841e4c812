//! kube-sandbox
