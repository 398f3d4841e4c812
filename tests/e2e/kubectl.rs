//! The real `kubectl` (≥ 1.29) as a user runs it: found on `PATH` (or `$KUBECTL`), pointed at one
//! test's kube-sandbox with its own kubeconfig, discovery cache and `HOME`, every call bounded by a
//! timeout and killed if the test ends first. A missing or too old kubectl FAILS the test with
//! instructions; it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The oldest kubectl these tests support (server-side field validation).
pub const MIN_MINOR: u32 = 29;

/// Upper bound of one kubectl call (its own `--timeout` is always shorter).
// Longer than the longest `kubectl wait --timeout` a test asks for (90 s: a throttled action is
// held to the next wall-clock minute), so that kubectl, not this guard, reports a timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

const HOW_TO_GET_IT: &str = "the end-to-end tests drive the real kubectl (>= 1.29) and are never \
    skipped. Put kubectl on PATH or set KUBECTL=/path/to/kubectl. On the project's development \
    machines /usr/bin/kubectl is 1.32 and the Google Cloud SDK ships versioned copies beside it \
    (/usr/lib/google-cloud-sdk/bin/kubectl.1.27 … kubectl.1.33); elsewhere \
    install it from https://kubernetes.io/docs/tasks/tools/";

/// The kubectl binary: `$KUBECTL` when set, else the first `kubectl` on `PATH`.
pub fn find() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "KUBECTL={} is not a file: {HOW_TO_GET_IT}",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("kubectl is required but was not found on PATH: {HOW_TO_GET_IT}"))
}

/// What one kubectl call printed.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// kubectl bound to one sandbox.
#[derive(Debug)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
    home: PathBuf,
    /// `gitVersion` of the client, e.g. `v1.32.4`.
    pub version: String,
}

impl Kubectl {
    /// kubectl with this kubeconfig; caches and `HOME` under `dir`. Checks the client version.
    pub async fn new(kubeconfig: &Path, dir: &Path) -> Kubectl {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut kubectl = Kubectl {
            bin: find(),
            kubeconfig: kubeconfig.to_path_buf(),
            cache_dir: dir.join("kube-cache"),
            home,
            version: String::new(),
        };
        let out = kubectl.ok(&["version", "--client", "-o", "json"]).await;
        let v: Value = serde_json::from_str(&out).unwrap();
        let minor: u32 = v["clientVersion"]["minor"]
            .as_str()
            .unwrap_or("0")
            .trim_end_matches('+')
            .parse()
            .unwrap_or(0);
        assert!(
            minor >= MIN_MINOR,
            "{} is kubectl 1.{minor}: {HOW_TO_GET_IT}",
            kubectl.bin.display()
        );
        kubectl.version = v["clientVersion"]["gitVersion"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        kubectl
    }

    /// Runs `kubectl ARGS` (with `stdin` piped in when given).
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {CALL_TIMEOUT:?}"))
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub async fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None).await
    }

    /// [`Kubectl::ok`] with input.
    pub async fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin).await;
        assert!(
            out.code == 0,
            "kubectl {args:?} exited {}:\nstderr: {}\nstdout: {}",
            out.code,
            out.stderr,
            out.stdout
        );
        out.stdout
    }

    /// Runs kubectl expecting it to fail; returns stderr.
    pub async fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin).await;
        assert!(
            out.code != 0,
            "kubectl {args:?} succeeded but should have failed:\n{}",
            out.stdout
        );
        out.stderr
    }

    /// `kubectl patch ecspower NAME --type=merge -p PATCH`.
    pub async fn merge_patch(&self, name: &str, patch: &str) -> String {
        self.ok(&["patch", "ecspower", name, "--type=merge", "-p", patch])
            .await
    }

    /// `kubectl apply -f -`.
    pub async fn apply(&self, yaml: &str) -> String {
        self.ok_stdin(&["apply", "-f", "-"], Some(yaml)).await
    }

    /// `kubectl get RESOURCE -o json`.
    pub async fn get_json(&self, resource: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", resource, "-o", "json"]).await).unwrap()
    }

    /// `kubectl wait --for=FOR RESOURCE --timeout=…`; panics with kubectl's stderr on timeout.
    pub async fn wait(&self, resource: &str, condition: &str, timeout: Duration) {
        let for_ = format!("--for={condition}");
        let timeout = format!("--timeout={}s", timeout.as_secs().max(1));
        let out = self.run(&["wait", &for_, resource, &timeout], None).await;
        assert!(
            out.code == 0 && out.stdout.contains("condition met"),
            "kubectl wait {for_} {resource} {timeout} failed ({}): {}{}",
            out.code,
            out.stderr,
            out.stdout
        );
    }

    /// Events whose `involvedObject.name` is `name`, oldest first (`kubectl get events`).
    pub async fn events(&self, name: &str) -> Vec<Value> {
        let selector = format!("involvedObject.name={name}");
        let out = self
            .ok(&["get", "events", "--field-selector", &selector, "-o", "json"])
            .await;
        let list: Value = serde_json::from_str(&out).unwrap();
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|e| {
            (
                e["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse::<u64>().ok())
                    .unwrap_or_default(),
            )
        });
        items
    }
}
