//! One end-to-end environment per test: kube-sandbox (a real HTTP Kubernetes API, in-process so a
//! test can expire its watches) and ecs-emulator (a real HTTP ECS endpoint with a call log,
//! in-process) on loopback ports chosen by the OS, the committed CRD installed with `kubectl apply`,
//! and the operator BINARY as a child process. Everything lives in a fresh temp dir; dropping the
//! environment kills the operator(s), stops both servers and removes the dir. When a test fails,
//! the operators' logs and the emulator's call log are printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ecs_emulator::{AccessKey, CallRecord, Config, Emulator};
use kube_sandbox::Sandbox;
use serde_json::Value;
use tempfile::TempDir;

use crate::kubectl::Kubectl;
use crate::operator::{Launch, Operator};

/// The operator's own access key (env `ALIBABA_CLOUD_ACCESS_KEY_ID`).
pub const OPERATOR_AK: &str = "LTAI-e2e-operator";
/// Its secret.
pub const OPERATOR_SECRET: &str = "e2e-operator-secret-5d4c3b2a";

/// How long a test waits for the operator to converge (far beyond the scaled delays).
pub const CONVERGE: Duration = Duration::from_secs(20);

/// What a call answered for `instance`: the call's error code, else the instance's own code in
/// a batch answer (`None` when it was accepted).
pub fn code_for(call: &CallRecord, instance: &str) -> Option<String> {
    if let Some(code) = &call.error_code {
        return Some(code.clone());
    }
    call.instance_results
        .iter()
        .find(|r| r.instance_id == instance)
        .filter(|r| r.code != "200")
        .map(|r| r.code.clone())
}

/// The committed CRD, as users install it.
pub fn crd_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/ecsinstancepowers.ecspower.dev.yaml")
}

/// The committed schedule CRD, as users install it.
pub fn schedule_crd_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/ecspowerschedules.ecspower.dev.yaml")
}

/// The committed access policy CRD, as users install it.
pub fn access_policy_crd_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/ecspoweraccesspolicies.ecspower.dev.yaml")
}

/// The access policy the environment starts with: one rule granting every namespace every
/// instance (the behaviour before the policy existed), so scenarios about other things are
/// unaffected by it.
pub const GRANT_EVERYTHING: &str = "apiVersion: ecspower.dev/v1alpha1
kind: EcsPowerAccessPolicy
metadata:
  name: default
spec:
  rules:
  - {name: everything, allNamespaces: true, anyInstance: true}
";

/// A file of `examples/`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// kube-sandbox + ecs-emulator + kubectl + the operator binary.
pub struct Env {
    /// Operators started so far; the last one is the current one. Declared first: killed first.
    operators: Vec<Operator>,
    pub kubectl: Kubectl,
    pub emulator: Emulator,
    pub sandbox: Sandbox,
    kubeconfig: PathBuf,
    dir: TempDir,
}

impl Env {
    /// Starts the servers with this emulator state file (the emulator's YAML; the operator's key is
    /// added), installs the CRD with kubectl, and starts the operator binary.
    pub async fn start(state: &str) -> Env {
        let mut env = Env::without_operator(state).await;
        env.start_operator().await;
        env
    }

    /// [`Env::start`] without the operator (schema tests).
    pub async fn without_operator(state: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ecs-power-e2e-")
            .tempdir()
            .unwrap();
        let mut config = Config::from_yaml(state).unwrap();
        config
            .access_keys
            .push(AccessKey::new(OPERATOR_AK, OPERATOR_SECRET));
        let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sandbox.write_kubeconfig(&kubeconfig).unwrap();
        let kubectl = Kubectl::new(&kubeconfig, dir.path()).await;
        let crd = crd_path();
        let out = kubectl.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
        assert!(
            out.contains("ecsinstancepowers.ecspower.dev created"),
            "{out}"
        );
        let crd = schedule_crd_path();
        let out = kubectl.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
        assert!(
            out.contains("ecspowerschedules.ecspower.dev created"),
            "{out}"
        );
        let crd = access_policy_crd_path();
        let out = kubectl.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
        assert!(
            out.contains("ecspoweraccesspolicies.ecspower.dev created"),
            "{out}"
        );
        for crd in [
            "crd/ecsinstancepowers.ecspower.dev",
            "crd/ecspowerschedules.ecspower.dev",
            "crd/ecspoweraccesspolicies.ecspower.dev",
        ] {
            kubectl
                .wait(crd, "condition=Established", Duration::from_secs(10))
                .await;
        }
        kubectl.apply(GRANT_EVERYTHING).await;
        Env {
            operators: Vec::new(),
            kubectl,
            emulator,
            sandbox,
            kubeconfig,
            dir,
        }
    }

    /// Starts another operator process (the previous one, if any, should be gone) and waits
    /// until it is ready.
    pub async fn start_operator(&mut self) -> &mut Operator {
        self.start_operator_logging("text").await
    }

    /// [`Env::start_operator`] with this `--log-format`.
    pub async fn start_operator_logging(&mut self, log_format: &str) -> &mut Operator {
        self.start_operator_with(log_format, &[]).await
    }

    /// [`Env::start_operator`] with this `--log-format` and more environment variables.
    pub async fn start_operator_with(
        &mut self,
        log_format: &str,
        env: &[(&str, &str)],
    ) -> &mut Operator {
        let label = format!("operator-{}", self.operators.len() + 1);
        let endpoint = self.emulator.url();
        let operator = Operator::spawn(Launch {
            log: self.dir.path().join(format!("{label}.log")),
            label,
            kubeconfig: &self.kubeconfig,
            ecs_endpoint: &endpoint,
            access_key: (OPERATOR_AK, OPERATOR_SECRET),
            log_format,
            env,
        });
        self.operators.push(operator);
        let current = self.operators.last_mut().unwrap();
        current.wait_ready().await;
        current
    }

    /// The current operator.
    pub fn operator(&mut self) -> &mut Operator {
        self.operators.last_mut().expect("an operator was started")
    }

    // ----- the resource, through kubectl -----

    /// `kubectl get ecspower/NAME -o json`.
    pub async fn get(&self, name: &str) -> Value {
        self.kubectl.get_json(&format!("ecspower/{name}")).await
    }

    /// Waits with `kubectl wait` until the Ready condition has this reason, then returns the
    /// object after checking the condition's status.
    pub async fn wait_ready_reason(&self, name: &str, status: &str, reason: &str) -> Value {
        self.kubectl
            .wait(
                &format!("ecspower/{name}"),
                &format!(r#"jsonpath={{.status.conditions[?(@.type=="Ready")].reason}}={reason}"#),
                CONVERGE,
            )
            .await;
        let obj = self.get(name).await;
        assert_eq!(
            condition(&obj, "Ready"),
            Some((status.to_string(), reason.to_string())),
            "{obj:#}"
        );
        obj
    }

    /// Polls `kubectl get -o json` (every 200 ms, at most `limit`) until `check` accepts the object.
    pub async fn poll(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let obj = self.get(name).await;
            if check(&obj) {
                return obj;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {name}: {what}; last object:\n{obj:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (bounded) until `kubectl get events` shows an event with this reason for `name`.
    pub async fn wait_event(&self, name: &str, reason: &str) -> Value {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let events = self.kubectl.events(name).await;
            if let Some(event) = events.iter().find(|e| e["reason"] == reason) {
                return event.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no event with reason {reason} for {name}; events:\n{events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The reasons of the events about `name`, oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.kubectl
            .events(name)
            .await
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    // ----- the emulator's call log -----

    /// Calls of this action naming this instance, in arrival order.
    pub fn calls(&self, instance: &str, action: &str) -> Vec<CallRecord> {
        self.all_calls(instance)
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }

    /// Starts naming this instance, single (`StartInstance`) or batched (`StartInstances`).
    pub fn starts(&self, instance: &str) -> Vec<CallRecord> {
        self.all_calls(instance)
            .into_iter()
            .filter(|c| c.action == "StartInstance" || c.action == "StartInstances")
            .collect()
    }

    /// Stops naming this instance, single (`StopInstance`) or batched (`StopInstances`).
    pub fn stops(&self, instance: &str) -> Vec<CallRecord> {
        self.all_calls(instance)
            .into_iter()
            .filter(|c| c.action == "StopInstance" || c.action == "StopInstances")
            .collect()
    }

    /// Write calls (start/stop/reboot, single or batch) naming this instance.
    pub fn writes(&self, instance: &str) -> Vec<CallRecord> {
        self.all_calls(instance)
            .into_iter()
            .filter(CallRecord::is_write)
            .collect()
    }

    /// Every call naming this instance.
    pub fn all_calls(&self, instance: &str) -> Vec<CallRecord> {
        self.emulator
            .call_log()
            .into_iter()
            .filter(|c| c.instance_ids.iter().any(|i| i == instance))
            .collect()
    }

    /// Polls the call log (every 10 ms, at most `limit`) until `check` accepts it.
    pub async fn wait_calls(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&[CallRecord]) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !check(&self.emulator.call_log()) {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for the call log: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Kill every operator before the servers go away (and print their logs on failure).
        self.operators.clear();
        if std::thread::panicking() {
            eprintln!("----- emulator call log -----");
            for c in self.emulator.call_log() {
                eprintln!(
                    "#{} {} {} {:?} key={} dryRun={} -> {:?} {}",
                    c.seq,
                    c.time,
                    c.action,
                    c.instance_ids,
                    c.access_key_id.as_deref().unwrap_or("-"),
                    c.dry_run,
                    c.http_status,
                    c.error_code.as_deref().unwrap_or("")
                );
            }
            eprintln!("----- kubectl {} -----", self.kubectl.version);
        }
    }
}

/// `(status, reason)` of a condition of the object, if present.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// A condition's `message`.
pub fn message(obj: &Value, type_: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// `Some((status, reason))`, for comparisons with [`condition`].
// An `Option` because it is compared with `condition`'s answer.
#[allow(clippy::unnecessary_wraps)]
pub fn pair(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.to_string(), reason.to_string()))
}
