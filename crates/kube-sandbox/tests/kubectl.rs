//! kube-sandbox driven by the real `kubectl` from PATH (≥ 1.29), the way users and the
//! operator's end-to-end tests drive it: CRD apply and `wait --for=condition=Established`,
//! custom resources with printer columns, `explain`, server-side apply, merge / JSON patches,
//! `/status` patches and `wait --for=condition=Ready`, schema and CEL rejections (422), typed
//! protobuf writes (`create namespace|secret|configmap|serviceaccount`), strategic-merge
//! re-apply of a Deployment, namespace deletion, and `get -w` seeing an update.
//! Without kubectl on PATH these tests FAIL and say so: they are never skipped silently.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kube_sandbox::{Sandbox, SandboxConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CR_YAML: &str = include_str!("fixtures/cr.yaml");
const CR_INVALID_YAML: &str = include_str!("fixtures/cr-invalid.yaml");
const TIMEOUT: Duration = Duration::from_secs(60);

fn find_kubectl() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("kubectl was not found on PATH: these tests drive the real kubectl (>= 1.29); install it (or add it to PATH) and rerun"))
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
    _dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    async fn new(sb: &Sandbox) -> anyhow::Result<Self> {
        let bin = find_kubectl()?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        sb.write_kubeconfig(&kubeconfig)?;
        let k = Self {
            bin,
            kubeconfig,
            cache: dir.path().join("cache"),
            _dir: dir,
        };
        let v = k.ok(&["version", "--client", "-o", "json"]).await?;
        let v: serde_json::Value = serde_json::from_str(&v)?;
        let minor: u32 = v["clientVersion"]["minor"]
            .as_str()
            .unwrap_or("0")
            .trim_end_matches('+')
            .parse()
            .unwrap_or(0);
        anyhow::ensure!(
            minor >= 29,
            "kubectl on PATH is 1.{minor}; these tests need kubectl >= 1.29"
        );
        Ok(k)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c.env_remove("KUBECONFIG").kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Out> {
        let mut c = self.command(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
        }
        let out = tokio::time::timeout(TIMEOUT, child.wait_with_output()).await??;
        Ok(Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ok_stdin(args, None).await
    }

    async fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let o = self.run(args, stdin).await?;
        anyhow::ensure!(
            o.code == 0,
            "kubectl {args:?} exited {}: {}{}",
            o.code,
            o.stderr,
            o.stdout
        );
        Ok(o.stdout)
    }

    async fn fails(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let o = self.run(args, stdin).await?;
        anyhow::ensure!(
            o.code != 0,
            "kubectl {args:?} succeeded but should have failed: {}",
            o.stdout
        );
        Ok(o.stderr)
    }
}

async fn setup() -> anyhow::Result<(Sandbox, Kubectl)> {
    let sb = Sandbox::start_with("127.0.0.1:0".parse()?, SandboxConfig::default()).await?;
    let k = Kubectl::new(&sb).await?;
    Ok((sb, k))
}

async fn install_crd(k: &Kubectl) -> anyhow::Result<()> {
    let out = k
        .ok_stdin(&["apply", "-f", "-"], Some(common::CRD_YAML))
        .await?;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/ecsinstancepowers.ecspower.dev created"
        ),
        "{out}"
    );
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/ecsinstancepowers.ecspower.dev",
            "--timeout=20s",
        ])
        .await?;
    assert!(out.contains("condition met"), "{out}");
    Ok(())
}

#[tokio::test]
async fn kubectl_manages_custom_resources() -> anyhow::Result<()> {
    let (sb, k) = setup().await?;
    install_crd(&k).await?;
    let out = k.ok_stdin(&["apply", "-f", "-"], Some(CR_YAML)).await?;
    assert!(
        out.contains("ecsinstancepower.ecspower.dev/web-1 created"),
        "{out}"
    );

    // Printer columns (Table), short name, defaults.
    let table = k.ok(&["get", "ecspower"]).await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "INSTANCE", "DESIRED", "ACTUAL", "READY", "REASON", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["web-1", "i-abc123", "Running"], "{table}");
    assert!(
        row.last()
            .is_some_and(|age| age.ends_with('s') || age.ends_with('m')),
        "age column: {table}"
    );

    // explain reads the CRD schema from /openapi/v3.
    let explain = k.ok(&["explain", "ecsinstancepowers.spec"]).await?;
    assert!(
        explain.contains("instanceId") && explain.contains("The ECS instance ID."),
        "{explain}"
    );

    // Schema violations: 422 with the API server's messages.
    let err = k
        .fails(&["apply", "-f", "-"], Some(CR_INVALID_YAML))
        .await?;
    assert!(
        err.contains("The EcsInstancePower \"bad-1\" is invalid"),
        "{err}"
    );
    assert!(err.contains("spec.desiredState: Unsupported value: \"Paused\": supported values: \"Running\", \"Stopped\""), "{err}");
    assert!(err.contains("spec.instanceId: Invalid value: \"not-an-instance\": spec.instanceId in body should match '^i-[0-9a-z]+$'"), "{err}");
    // Unknown fields: kubectl's default strict validation is done by the server.
    let unknown = CR_YAML.replace("regionId: cn-hangzhou", "regionId: cn-hangzhou\n  bogus: 1");
    let err = k.fails(&["apply", "-f", "-"], Some(&unknown)).await?;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );

    // Patches: merge and JSON; generation follows spec changes.
    k.ok(&[
        "patch",
        "ecspower",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"desiredState":"Stopped"}}"#,
    ])
    .await?;
    k.ok(&[
        "patch",
        "ecspower",
        "web-1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/forceStop","value":true}]"#,
    ])
    .await?;
    let got = k
        .ok(&[
            "get",
            "ecspower",
            "web-1",
            "-o",
            "jsonpath={.metadata.generation} {.spec.desiredState} {.spec.forceStop}",
        ])
        .await?;
    assert_eq!(got, "3 Stopped true");
    // CEL transition rule.
    let err = k
        .fails(
            &[
                "patch",
                "ecspower",
                "web-1",
                "--type=merge",
                "-p",
                r#"{"spec":{"instanceId":"i-other"}}"#,
            ],
            None,
        )
        .await?;
    assert!(
        err.contains("spec.instanceId: Invalid value: \"string\": instanceId is immutable"),
        "{err}"
    );

    // Server-side apply.
    let ssa = CR_YAML.replace("regionId: cn-hangzhou", "regionId: cn-shanghai");
    let out = k
        .ok_stdin(&["apply", "--server-side", "-f", "-"], Some(&ssa))
        .await?;
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(
        k.ok(&[
            "get",
            "ecspower",
            "web-1",
            "-o",
            "jsonpath={.spec.regionId}"
        ])
        .await?,
        "cn-shanghai"
    );

    // /status subresource and a condition wait, as kstatus-aware tools do.
    let status = r#"{"status":{"instanceStatus":"Stopped","conditions":[{"type":"Ready","status":"True","reason":"Stopped"}]}}"#;
    k.ok(&[
        "patch",
        "ecspower",
        "web-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .await?;
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Ready",
            "ecspower/web-1",
            "--timeout=20s",
        ])
        .await?;
    assert!(out.contains("condition met"), "{out}");
    let table = k.ok(&["get", "ecspower", "web-1", "--no-headers"]).await?;
    let row: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(
        row[..6],
        ["web-1", "i-abc123", "Stopped", "Stopped", "True", "Stopped"],
        "{table}"
    );

    // Finalizers: delete waits for them; removing the last one deletes.
    k.ok(&[
        "patch",
        "ecspower",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["ecspower.dev/test"]}}"#,
    ])
    .await?;
    k.ok(&["delete", "ecspower", "web-1", "--wait=false"])
        .await?;
    assert!(
        !k.ok(&[
            "get",
            "ecspower",
            "web-1",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .await?
        .is_empty()
    );
    k.ok(&[
        "patch",
        "ecspower",
        "web-1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await?;
    k.ok(&["wait", "--for=delete", "ecspower/web-1", "--timeout=20s"])
        .await?;

    // dryRun=server creates nothing.
    k.ok_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(CR_YAML))
        .await?;
    let err = k.fails(&["get", "ecspower", "web-1"], None).await?;
    assert!(
        err.contains("NotFound") && err.contains("\"web-1\" not found"),
        "{err}"
    );

    k.ok(&["delete", "crd", "ecsinstancepowers.ecspower.dev"])
        .await?;
    assert!(
        sb.objects_of("apiextensions.k8s.io", "customresourcedefinitions")
            .is_empty()
    );
    sb.shutdown().await;
    Ok(())
}

const DEPLOYMENT: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: op, namespace: team-a}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: op, namespace: team-a, labels: {app: op}}
spec:
  replicas: 1
  selector: {matchLabels: {app: op}}
  template:
    metadata: {labels: {app: op}}
    spec:
      serviceAccountName: op
      containers:
      - name: op
        image: op:v1
        env: [{name: A, value: "1"}]
        ports: [{containerPort: 8080, name: metrics}]
"#;

#[tokio::test]
async fn kubectl_creates_builtin_kinds_with_protobuf_and_applies_manifests() -> anyhow::Result<()> {
    let (sb, k) = setup().await?;
    // Typed creates: client-go sends these as protobuf.
    assert!(
        k.ok(&["create", "namespace", "team-a"])
            .await?
            .contains("namespace/team-a created")
    );
    let out = k
        .ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "team-a",
            "--from-literal=accessKeyId=AK1",
            "--from-literal=accessKeySecret=S1",
        ])
        .await?;
    assert!(out.contains("secret/creds created"), "{out}");
    let ak = k
        .ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.accessKeyId}",
        ])
        .await?;
    assert_eq!(ak, "QUsx", "base64 of AK1");
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "--from-literal=mode=test",
    ])
    .await?;
    k.ok(&["create", "serviceaccount", "helper", "-n", "team-a"])
        .await?;
    let secrets = k.ok(&["get", "secrets", "-n", "team-a"]).await?;
    let row: Vec<&str> = secrets
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["creds", "Opaque", "2"], "{secrets}");
    let err = k
        .fails(
            &[
                "create",
                "secret",
                "generic",
                "x",
                "-n",
                "nowhere",
                "--from-literal=a=b",
            ],
            None,
        )
        .await?;
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    let err = k.fails(&["create", "namespace", "team-a"], None).await?;
    assert!(err.contains("AlreadyExists"), "{err}");

    // Client-side apply of built-ins, then a re-apply computed as a strategic merge patch.
    k.ok_stdin(&["apply", "-f", "-"], Some(DEPLOYMENT)).await?;
    let changed = DEPLOYMENT
        .replace("op:v1", "op:v2")
        .replace("value: \"1\"", "value: \"2\"");
    let out = k.ok_stdin(&["apply", "-f", "-"], Some(&changed)).await?;
    assert!(
        out.contains("deployment.apps/op configured")
            && out.contains("serviceaccount/op unchanged"),
        "{out}"
    );
    let got = k
        .ok(&["get", "deploy", "op", "-n", "team-a", "-o", "jsonpath={.metadata.generation} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}"])
        .await?;
    assert_eq!(got, "2 op:v2 2");

    // Deleting the namespace deletes what is in it.
    k.ok(&["delete", "namespace", "team-a", "--timeout=20s"])
        .await?;
    assert!(
        sb.objects()
            .iter()
            .all(|o| kube_sandbox::object::namespace(o) != "team-a")
    );
    let ns = k.ok(&["get", "ns", "-o", "name"]).await?;
    assert!(!ns.contains("team-a"), "{ns}");
    sb.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn kubectl_get_watch_sees_an_update() -> anyhow::Result<()> {
    let (sb, k) = setup().await?;
    install_crd(&k).await?;
    k.ok_stdin(&["apply", "-f", "-"], Some(CR_YAML)).await?;
    let mut child = k
        .command(&["get", "ecspower", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await??
        .unwrap_or_default();
    assert!(first.starts_with("NAME"), "{first}");
    let listed = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await??
        .unwrap_or_default();
    assert!(
        listed.contains("web-1") && listed.contains("Running"),
        "{listed}"
    );
    k.ok(&[
        "patch",
        "ecspower",
        "web-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"desiredState":"Stopped"}}"#,
    ])
    .await?;
    let update = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await??
        .unwrap_or_default();
    let cells: Vec<&str> = update.split_whitespace().collect();
    assert_eq!(cells[..3], ["web-1", "i-abc123", "Stopped"], "{update}");
    child.kill().await?;
    sb.shutdown().await;
    Ok(())
}
