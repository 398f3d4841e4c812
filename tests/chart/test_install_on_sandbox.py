"""The chart, installed on kube-sandbox, and the operator run as that installation would run it.

Two installations, each in a fresh sandbox (the module fixture is parametrized):
  - `deploy`: `kubectl apply --server-side -k deploy/` (cluster-wide RBAC, credentials from the
    optional Secret ecs-power-operator-credentials), as docs/install.md shows;
  - `helm`: `helm install` of charts/ecs-power-operator with `operator.watchNamespace=default` (the
    namespaced Role + RoleBinding variant) and `credentials.existingSecret` (`helm upgrade` and
    `helm uninstall` are checked by a test with a sandbox of its own).
Then the Deployment is read back from the sandbox, the operator binary is run exactly as that
Deployment would run it in its pod, as its ServiceAccount, and the examples are reconciled against
ecs-emulator.

What "as the pod would" means here (no kubelet, no container runtime):
  - argv is the container's command (else the image ENTRYPOINT, /ecs-power-operator = $OPERATOR_BIN)
    followed by its args; the environment is the container's env and nothing else, each entry
    resolved as the kubelet does: `value`, `valueFrom.fieldRef` (POD_NAME is a made-up pod name of
    the Deployment, POD_NAMESPACE its namespace) and `valueFrom.secretKeyRef` (read from the Secret
    created in the sandbox, optional keys and Secrets honoured);
  - three overrides, and only these, because the process runs on this machine and not in a pod:
    ECS_ENDPOINT = the emulator (the chart's default is the real regional endpoint),
    METRICS_ADDR = 127.0.0.1:0 (port 8080 may be taken; the probes are sent to the bound port), and
    ECS_POWER_TIME_SCALE = 0.05 (shorter ECS poll delays, so the test is quick);
  - the Kubernetes connection is a kubeconfig (KUBECONFIG) holding the ServiceAccount's token, the
    counterpart of the in-cluster token file; it points at rbac_proxy.RbacProxy, which enforces
    the RBAC rules bound to that ServiceAccount *as they were read back from the sandbox* (the
    sandbox itself has no authorization) and records every request.

Binaries come from KUBE_SANDBOX_BIN, ECS_EMULATOR_BIN and OPERATOR_BIN (scripts/test.sh builds them
with `cargo build --workspace --bins` and sets them); kubectl from PATH.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import CHART, DEPLOY, REPO, run_helm
from rbac_proxy import RbacProxy, service_account_grants

NAMESPACE = "ecs-power-operator"
CREDENTIALS_SECRET = "ecs-power-operator-credentials"
# The emulator's default state (no --state): this key pair is accepted.
EMULATOR_KEY_ID, EMULATOR_KEY_SECRET = "emulator-access-key", "emulator-secret"
# examples/secret-ref.yaml's Secret holds this pair.
TEAM_KEY_ID, TEAM_KEY_SECRET = "sandbox-team-a-key", "sandbox-team-a-secret"
# The image's ENTRYPOINT (Dockerfile); tests/chart/test_dockerfile.py checks they agree.
IMAGE_ENTRYPOINT = "/ecs-power-operator"
OVERRIDES = {"METRICS_ADDR": "127.0.0.1:0", "ECS_POWER_TIME_SCALE": "0.05"}  # + ECS_ENDPOINT
TIMEOUT = 30.0  # bound of every wait below


# --- processes ----------------------------------------------------------------------------------


def binary(var: str) -> str:
    path = os.environ.get(var)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            f"{var} must name the built binary (got {path!r}): scripts/test.sh runs "
            "`cargo build --workspace --bins` and sets KUBE_SANDBOX_BIN, ECS_EMULATOR_BIN and OPERATOR_BIN",
            pytrace=False,
        )
    return path


def kubectl_binary() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl (>= 1.29) is required on PATH for the install test", pytrace=False)
    return path


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Process:
    """A child process whose output is collected line by line in a background thread."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str):
        self.name = name
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            line = ANSI.sub("", raw.rstrip("\n"))
            self.lines.append(line)
            self._queue.put(line)

    def wait_for_line(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} (exit code {self.proc.poll()}):\n" + self.output()
                    ) from None
                continue
            if m := re.search(pattern, line):
                return m

    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, as the kubelet sends; SIGKILL after `grace` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(method: str, url: str, body=None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(what: str, probe, timeout: float = TIMEOUT, interval: float = 0.2):
    """Polls `probe()` until it returns something truthy; fails naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last and last[0]:
            return last[1]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last[1] if last else None}")


# --- the installed sandbox ------------------------------------------------------------------------


@dataclass
class Sandbox:
    """kube-sandbox + ecs-emulator, with kubectl bound to the sandbox as its admin."""

    tmp: Path
    sandbox: Process
    emulator: Process
    url: str
    emulator_url: str
    kubeconfig: Path
    cleanup: list = field(default_factory=list)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl as the sandbox's admin, with a discovery cache of this sandbox only."""
        cache = str(self.tmp / "kube-cache")
        argv = [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), "--cache-dir", cache, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            failed = f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            pytest.fail(failed, pytrace=False)
        return proc

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def emulator_admin(self, method: str, path: str, body=None):
        status, text = http(method, f"{self.emulator_url}/_emulator/{path}", body)
        assert 200 <= status < 300, f"emulator {method} {path}: {status} {text}"
        return json.loads(text) if text.strip().startswith(("{", "[")) else text


def start_sandbox(tmp: Path) -> Sandbox:
    kubeconfig = tmp / "admin.kubeconfig"
    quiet = {**os.environ, "RUST_LOG": "warn"}
    sandbox = Process(
        [binary("KUBE_SANDBOX_BIN"), "--listen", "127.0.0.1:0", "--kubeconfig", str(kubeconfig)], quiet, "kube-sandbox"
    )
    emulator = Process([binary("ECS_EMULATOR_BIN"), "--listen", "127.0.0.1:0"], quiet, "ecs-emulator")
    url = sandbox.wait_for_line(r"^listening on (http://\S+)").group(1)
    emulator_url = emulator.wait_for_line(r"^listening on (http://\S+)").group(1)
    sandbox.wait_for_line(r"^kubeconfig written to ")
    return Sandbox(tmp, sandbox, emulator, url, emulator_url, kubeconfig)


@dataclass
class Operator:
    process: Process
    proxy: RbacProxy
    deployment: dict
    container: dict
    env: dict[str, str]
    metrics_addr: str


def resolve_env(sb: Sandbox, deployment: dict, container: dict, pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it (only the forms the chart can render)."""
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    assert "envFrom" not in container, "envFrom is not resolved by this test: extend resolve_env"
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "spec.serviceAccountName": pod.get("serviceAccountName", "default"),
    }
    secrets_cache: dict[str, dict | None] = {}

    def secret(name: str) -> dict | None:
        if name not in secrets_cache:
            proc = sb.kubectl("-n", namespace, "get", "secret", name, "-o", "json", "--ignore-not-found")
            secrets_cache[name] = json.loads(proc.stdout) if proc.stdout.strip() else None
        return secrets_cache[name]

    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            assert "$(" not in entry["value"], f"{name}: $(VAR) expansion is not resolved by this test"
            env[name] = entry["value"]
        elif "fieldRef" in entry.get("valueFrom", {}):
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            assert path in fields, f"{name}: fieldRef {path} is not resolved by this test"
            env[name] = fields[path]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            obj = secret(ref["name"])
            data = (obj or {}).get("data") or {}
            if ref["key"] in data:
                env[name] = base64.b64decode(data[ref["key"]]).decode()
            else:
                # The kubelet refuses to start the container (CreateContainerConfigError) unless optional.
                assert ref.get("optional"), f"{name}: Secret {namespace}/{ref['name']} key {ref['key']} is missing"
        else:
            pytest.fail(f"{name}: env source {entry} is not resolved by this test", pytrace=False)
    return env


def start_operator(sb: Sandbox, deployment: dict, grants_override: list | None = None, tag: str = "pod") -> Operator:
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    service_account = pod["serviceAccountName"]
    assert pod.get("automountServiceAccountToken", True), "the pod would get no ServiceAccount token"

    # Authentication + RBAC as on a cluster: the ServiceAccount's token, its bindings as stored.
    objects = {
        "clusterroles": sb.get("clusterroles")["items"],
        "clusterrolebindings": sb.get("clusterrolebindings")["items"],
        "roles": sb.get("roles", "--all-namespaces")["items"],
        "rolebindings": sb.get("rolebindings", "--all-namespaces")["items"],
    }
    user = f"system:serviceaccount:{namespace}:{service_account}"
    grants = service_account_grants(objects, namespace, service_account)
    assert grants, f"nothing in the sandbox binds a role to {user}"
    if grants_override is not None:
        grants = grants_override
    token = secrets.token_urlsafe(24)
    proxy = RbacProxy(sb.url, grants, user, token).__enter__()
    sb.cleanup.append(lambda: proxy.__exit__(None, None, None))
    kubeconfig = sb.tmp / f"operator-{tag}.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sandbox", "cluster": {"server": proxy.url}}],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": "pod", "context": {"cluster": "sandbox", "user": user, "namespace": namespace}}],
                "current-context": "pod",
            }
        )
    )

    pod_name = f"{deployment['metadata']['name']}-6f7d9c8b5-x2k4q"
    env = resolve_env(sb, deployment, container, pod_name)
    env.update(OVERRIDES, ECS_ENDPOINT=sb.emulator_url, KUBECONFIG=str(kubeconfig))
    command = container.get("command") or [IMAGE_ENTRYPOINT]
    assert command[0] == IMAGE_ENTRYPOINT, f"unexpected container command {command}"
    argv = [binary("OPERATOR_BIN"), *command[1:], *container.get("args", [])]
    process = Process(argv, env, f"ecs-power-operator ({tag})")
    sb.cleanup.append(process.stop)
    # The address it bound, from its start-up line (LOG_FORMAT json or text).
    started = process.wait_for_line(r'ecs-power-operator starting.*\bmetrics"?[=:]"?([0-9.]+:[0-9]+)')
    metrics_addr = started.group(1)
    return Operator(process, proxy, deployment, container, env, metrics_addr)


@dataclass
class Install:
    how: str  # "deploy" or "helm"
    sb: Sandbox
    op: Operator
    objects: list[dict]  # what was installed, as rendered
    output: str  # of kubectl apply / helm install
    watch_namespace: str | None
    reconciled: dict[str, dict] = field(default_factory=dict)  # example resource name -> its status


def helm(sb: Sandbox, *args: str) -> str:
    return run_helm(*args, "--kubeconfig", str(sb.kubeconfig), "--namespace", NAMESPACE).stdout


def install_deploy(sb: Sandbox) -> tuple[list[dict], str]:
    out = sb.kubectl("apply", "--server-side", "-k", str(DEPLOY)).stdout
    objects = []
    for name in yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]:
        objects += [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    return objects, out


HELM_SETS = (
    "operator.watchNamespace=default",
    f"credentials.existingSecret={CREDENTIALS_SECRET}",
    # The access policy grants the examples' namespace the operator's own credentials (deny by
    # default otherwise).
    "accessPolicy.rules[0].name=examples",
    "accessPolicy.rules[0].namespaces.names[0]=default",
    "accessPolicy.rules[0].anyInstance=true",
)

# What a user of deploy/ does before relying on the operator's credentials (docs/credentials.md):
# a rule for the namespace of the examples, next to deploy/'s example rule.
GRANT_EXAMPLES = '{"spec":{"rules":[{"name":"examples","namespaces":{"names":["default"]},"anyInstance":true}]}}'



def install_helm(sb: Sandbox) -> tuple[list[dict], str]:
    args = ["install", "ecs-power-operator", str(CHART), "--create-namespace"]
    for s in HELM_SETS:
        args += ["--set", s]
    out = helm(sb, *args)
    manifest = helm(sb, "get", "manifest", "ecs-power-operator")
    crds = [d for f in sorted((CHART / "crds").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return crds + [d for d in yaml.safe_load_all(manifest) if d], out


@pytest.fixture(scope="module", params=["deploy", "helm"])
def installed(request, tmp_path_factory):
    """A fresh sandbox with the chart installed, the credentials Secret created, the operator running."""
    how = request.param
    sb = start_sandbox(tmp_path_factory.mktemp(f"install-{how}"))
    try:
        # examples/secret-ref.yaml's Secret holds this key pair; the emulator starts with its own only.
        sb.emulator_admin("POST", "access-keys", {"id": TEAM_KEY_ID, "secret": TEAM_KEY_SECRET})
        objects, out = install_deploy(sb) if how == "deploy" else install_helm(sb)
        sb.kubectl("wait", "--for=condition=Established", "--timeout=10s", "crd/ecsinstancepowers.ecspower.dev")
        sb.kubectl("wait", "--for=condition=Established", "--timeout=10s", "crd/ecspowerschedules.ecspower.dev")
        sb.kubectl("wait", "--for=condition=Established", "--timeout=10s", "crd/ecspoweraccesspolicies.ecspower.dev")
        if how == "deploy":
            # As docs/install.md tells users: the policy once its CRD is established, then a rule.
            sb.kubectl("apply", "--server-side", "-f", str(DEPLOY / "access-policy.yaml"))
            sb.kubectl("patch", "ecspoweraccesspolicy", "default", "--type=merge", "-p", GRANT_EXAMPLES)
        # As docs/install.md tells users (kubectl sends this typed create as protobuf).
        sb.kubectl(
            "-n", NAMESPACE, "create", "secret", "generic", CREDENTIALS_SECRET,
            f"--from-literal=accessKeyId={EMULATOR_KEY_ID}", f"--from-literal=accessKeySecret={EMULATOR_KEY_SECRET}",
        )
        deployment = sb.get("-n", NAMESPACE, "deployment", "ecs-power-operator")
        op = start_operator(sb, deployment)
        yield Install(how, sb, op, objects, out, "default" if how == "helm" else None)
    finally:
        for stop in reversed(sb.cleanup):
            stop()
        sb.sandbox.stop()
        sb.emulator.stop()


# --- tests ----------------------------------------------------------------------------------------


def stored_kind(doc: dict) -> str:
    """kubectl's fully qualified resource name of a document's kind, e.g. deployment.apps."""
    group = doc["apiVersion"].rpartition("/")[0]
    return doc["kind"].lower() + (f".{group}" if group else "")


def test_every_object_is_accepted_and_stored(installed):
    inst = installed
    kinds = {d["kind"] for d in inst.objects}
    assert {"CustomResourceDefinition", "ServiceAccount", "Deployment", "Service"} <= kinds
    if inst.how == "deploy":
        assert {"Namespace", "ClusterRole", "ClusterRoleBinding"} <= kinds
        assert inst.output.count("serverside-applied") == len(inst.objects), inst.output
    else:
        assert {"Role", "RoleBinding"} <= kinds
        # Cluster-wide only the access model's cluster-scoped reads (the policy, Namespace metadata).
        cluster_wide = [d["metadata"]["name"] for d in inst.objects if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        assert cluster_wide == ["ecs-power-operator-access"] * 2, cluster_wide
        assert "STATUS: deployed" in inst.output, inst.output
        # Helm's release record, stored as a (protobuf-encoded) Secret.
        releases = inst.sb.get("-n", NAMESPACE, "secrets", "-l", "owner=helm,name=ecs-power-operator")["items"]
        assert [r["metadata"]["labels"]["status"] for r in releases] == ["deployed"]
    for doc in inst.objects:
        meta = doc["metadata"]
        args = ["-n", meta.get("namespace", NAMESPACE)] if doc["kind"] not in CLUSTER_KINDS else []
        stored = inst.sb.get(*args, stored_kind(doc), meta["name"])
        if doc["kind"] in ("ClusterRole", "Role"):
            assert stored["rules"] == doc["rules"]
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert stored["roleRef"] == doc["roleRef"] and stored["subjects"] == doc["subjects"]
        if doc["kind"] in ("Deployment", "Service"):
            for key in set(doc["spec"]) - {"clusterIP", "clusterIPs"}:
                assert stored["spec"][key] == doc["spec"][key], f"{doc['kind']} spec.{key} changed on the way"


CLUSTER_KINDS = {"CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"}


def test_operator_runs_with_the_deployments_command_and_env(installed):
    op = installed.op
    assert op.container["args"] == ["run"]
    env = op.env
    assert env["POD_NAMESPACE"] == NAMESPACE and env["POD_NAME"].startswith("ecs-power-operator-")
    assert env["LEADER_ELECT"] == "true"  # two replicas by default
    # From the Secret through secretKeyRef; the optional securityToken key is absent, so no variable.
    assert env["ALIBABA_CLOUD_ACCESS_KEY_ID"] == EMULATOR_KEY_ID
    assert env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] == EMULATOR_KEY_SECRET
    assert "ALIBABA_CLOUD_SECURITY_TOKEN" not in env
    assert env.get("WATCH_NAMESPACE") == installed.watch_namespace
    declared = {e["name"] for e in op.container["env"]}
    assert set(env) - declared <= {"KUBECONFIG", "ECS_ENDPOINT", "ECS_POWER_TIME_SCALE"}
    assert op.process.proc.poll() is None, op.process.output()


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def wait_ready(sb: Sandbox, name: str, reason: str) -> dict:
    def probe():
        obj = sb.get("-n", "default", "ecsinstancepower", name)
        ready = condition(obj, "Ready")
        return (ready.get("status") == "True" and ready.get("reason") == reason, obj.get("status"))

    return wait_until(f"{name} Ready=True reason {reason}", probe)


def reconcile_example(inst: Install, example: str, name: str, instance_id: str) -> dict:
    """Seeds the example's instance Stopped, applies the example, waits for Ready=True reason
    Running; once per installation (later callers get the status of the first run)."""
    if name not in inst.reconciled:
        seed = {"id": instance_id, "region": "cn-hangzhou", "status": "Stopped", "transitionDelay": "300ms"}
        inst.sb.emulator_admin("POST", "instances", seed)
        inst.sb.kubectl("apply", "-f", str(REPO / "examples" / example))
        inst.reconciled[name] = wait_ready(inst.sb, name, "Running")
    return inst.reconciled[name]


def test_start_example_is_reconciled_with_the_secret_key_ref_credentials(installed):
    sb = installed.sb
    status = reconcile_example(installed, "start.yaml", "web-1", "i-demo0001")
    assert status["instanceStatus"] == "Running"
    assert sb.emulator_admin("GET", "instances/i-demo0001")["status"] == "Running"
    # Signed with the key pair that reached the operator through the Deployment's secretKeyRefs.
    # (StartInstances through the fleet gateway's batches, StartInstance when not batched.)
    starts = [
        c
        for action in ("StartInstance", "StartInstances")
        for c in sb.emulator_admin("GET", f"calls?action={action}&instance=i-demo0001")
    ]
    assert starts and all(c["accessKeyId"] == EMULATOR_KEY_ID and c["httpStatus"] == 200 for c in starts), starts
    # The Recorder's events.k8s.io/v1 Events were accepted.
    events = sb.get("-n", "default", "events.v1.events.k8s.io")["items"]
    assert any(e.get("regarding", {}).get("name") == "web-1" for e in events), events


def test_secret_ref_example_is_reconciled_with_the_referenced_secret(installed):
    sb = installed.sb
    reconcile_example(installed, "secret-ref.yaml", "team-1", "i-demo0005")
    starts = [
        c
        for action in ("StartInstance", "StartInstances")
        for c in sb.emulator_admin("GET", f"calls?action={action}&instance=i-demo0005")
    ]
    assert starts and all(c["accessKeyId"] == TEAM_KEY_ID for c in starts), starts


def test_probes_of_the_deployment_answer(installed):
    op = installed.op
    ports = {p["name"]: p["containerPort"] for p in op.container["ports"]}
    declared = {e["name"]: e.get("value") for e in op.container["env"]}
    for probe in ("livenessProbe", "readinessProbe"):
        get = op.container[probe]["httpGet"]
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        # In the pod the operator listens where the probe knocks ...
        assert declared["METRICS_ADDR"].rsplit(":", 1)[1] == str(port), (probe, declared["METRICS_ADDR"], port)
        # ... and here on the port it bound instead (METRICS_ADDR=127.0.0.1:0).
        url = f"http://{op.metrics_addr}{get['path']}"
        wait_until(f"{probe} {get['path']} to answer 200", lambda: (http("GET", url)[0] == 200, http("GET", url)))


# Rules the chart grants that this run need not exercise: `get` of a resource (the controller lists
# and watches), `get` on /status, and `patch` of an Event (the Recorder patches only an Event it
# records a second time).
ALLOWED_UNUSED = {
    ("ecspower.dev", "ecsinstancepowers", "get"),
    ("ecspower.dev", "ecsinstancepowers/status", "get"),
    ("events.k8s.io", "events", "patch"),
}


def schedule_example(inst: Install) -> dict:
    """Applies examples/schedule-office-hours.yaml and waits until the operator has written its
    status (Ready=True reason Valid, a state and the next transition)."""
    inst.sb.kubectl("apply", "-f", str(REPO / "examples" / "schedule-office-hours.yaml"))

    def probe():
        obj = inst.sb.get("-n", "default", "ecspowerschedule", "office-hours")
        status = obj.get("status") or {}
        ready = condition(obj, "Ready")
        done = ready.get("status") == "True" and ready.get("reason") == "Valid" and "nextTransition" in status
        return (done and status.get("state") in ("Running", "Stopped"), status)

    return wait_until("office-hours status written", probe)


def test_operator_needed_exactly_the_granted_rbac(installed):
    op = installed.op
    reconcile_example(installed, "start.yaml", "web-1", "i-demo0001")
    reconcile_example(installed, "secret-ref.yaml", "team-1", "i-demo0005")
    schedule_example(installed)
    assert not op.proxy.unauthenticated, op.proxy.unauthenticated
    denied = op.proxy.denied()
    assert not denied, "the chart's RBAC refused requests the operator made:\n" + "\n".join(
        f"{d.method} {d.target} ({d.attrs.verb} {d.attrs.group}/{d.attrs.resource})" for d in denied
    )
    # Two replicas elect a leader: the Lease is read, created and renewed (an update every retry
    # period) in the release namespace.
    def lease_verbs():
        verbs = {d.attrs.verb for d in op.proxy.snapshot() if d.attrs.resource == "leases"}
        return {"get", "create", "update"} <= verbs, sorted(verbs)

    wait_until("the Lease read, created and renewed", lease_verbs)
    decisions = [d for d in op.proxy.snapshot() if d.attrs.is_resource]
    used = {(d.attrs.group, d.attrs.resource, d.attrs.verb) for d in decisions}
    granted = {
        (group, resource, verb)
        for grant in op.proxy.grants
        for rule in grant.rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted - used <= ALLOWED_UNUSED, f"granted but never requested: {sorted(granted - used - ALLOWED_UNUSED)}"
    assert {
        ("ecspower.dev", "ecsinstancepowers", "list"),
        ("ecspower.dev", "ecsinstancepowers", "watch"),
        ("ecspower.dev", "ecsinstancepowers/status", "patch"),
        ("ecspower.dev", "ecspowerschedules", "list"),
        ("ecspower.dev", "ecspowerschedules", "watch"),
        ("ecspower.dev", "ecspowerschedules/status", "patch"),  # the schedule status writer
        ("ecspower.dev", "ecspoweraccesspolicies", "list"),
        ("ecspower.dev", "ecspoweraccesspolicies", "watch"),
        ("ecspower.dev", "ecspoweraccesspolicies/status", "patch"),
        ("", "namespaces", "list"),  # metadata only: rules select namespaces by labels
        ("", "namespaces", "watch"),
        ("", "secrets", "list"),  # metadata only, see below
        ("", "secrets", "watch"),
        ("", "secrets", "get"),  # the Secret of examples/secret-ref.yaml
        ("events.k8s.io", "events", "create"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    } <= used, sorted(used)
    # Status is written with merge patches on /status only.
    for resource in ("ecsinstancepowers/status", "ecspowerschedules/status"):
        assert {d.content_type for d in decisions if d.attrs.resource == resource} == {
            "application/merge-patch+json"
        }, resource
    # The Secret watch asks for metadata only (PartialObjectMetadata), never Secret data.
    for d in decisions:
        if d.attrs.resource == "secrets" and d.attrs.verb in ("list", "watch"):
            assert "as=PartialObjectMetadata" in d.accept, (d.target, d.accept)
    # Namespaced install: every request stays in the watched namespace, but for the Lease, which
    # lives in the release namespace (changed on purpose with leader election on by default), and
    # the cluster-scoped access policy and Namespace metadata (only the watched namespace's, by a
    # field selector).
    assert {d.attrs.namespace for d in decisions if d.attrs.resource == "leases"} == {NAMESPACE}
    cluster_scoped = {"namespaces", "ecspoweraccesspolicies", "ecspoweraccesspolicies/status"}
    if installed.watch_namespace:
        assert {
            d.attrs.namespace for d in decisions if d.attrs.resource not in cluster_scoped | {"leases"}
        } == {installed.watch_namespace}, sorted({(d.attrs.namespace, d.target) for d in decisions})
        for d in decisions:
            if d.attrs.resource == "namespaces":
                assert f"metadata.name%3D{installed.watch_namespace}" in d.target or (
                    f"metadata.name={installed.watch_namespace}" in d.target
                ), d.target
    # Namespace metadata is watched as metadata only (PartialObjectMetadata).
    for d in decisions:
        if d.attrs.resource == "namespaces":
            assert "as=PartialObjectMetadata" in d.accept, (d.target, d.accept)


@pytest.mark.parametrize("installed", ["deploy"], indirect=True)
def test_the_authorizer_is_real_an_operator_without_rbac_is_refused_and_not_ready(installed):
    sb = installed.sb
    deployment = sb.get("-n", NAMESPACE, "deployment", "ecs-power-operator")
    op = start_operator(sb, deployment, grants_override=[], tag="no-rbac")
    denied = wait_until(
        "the list of EcsInstancePowers to be refused",
        lambda: (d := [x for x in op.proxy.denied() if x.attrs.resource == "ecsinstancepowers"], d),
    )
    assert denied[0].attrs.verb == "list" and denied[0].status == 403
    code, _ = http("GET", f"http://{op.metrics_addr}/readyz")
    assert code == 503, "an operator whose list is forbidden must not report ready"
    # Known: an operator whose first list never succeeds does not exit on SIGTERM (kube-runtime's
    # runner waits for the store to be ready), so the kubelet would kill it after the grace period.
    op.process.stop(grace=1.0)


def test_helm_upgrade_then_uninstall_keeps_the_crd_and_resources(tmp_path):
    """docs/install.md "Upgrade" and "Uninstall", on a sandbox of its own."""
    sb = start_sandbox(tmp_path)
    try:
        install_helm(sb)
        sb.kubectl("apply", "-f", str(REPO / "examples" / "start.yaml"))
        helm(sb, "upgrade", "ecs-power-operator", str(CHART), "--reuse-values", "--set", "operator.resyncInterval=90s")
        pod = sb.get("-n", NAMESPACE, "deployment", "ecs-power-operator")["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["RESYNC_INTERVAL"] == "90s" and env["WATCH_NAMESPACE"] == "default"  # reused
        releases = sb.get("-n", NAMESPACE, "secrets", "-l", "owner=helm,name=ecs-power-operator")["items"]
        assert sorted(r["metadata"]["labels"]["status"] for r in releases) == ["deployed", "superseded"]
        helm(sb, "uninstall", "ecs-power-operator")
        assert not sb.get("-n", NAMESPACE, "deployments,services,serviceaccounts,secrets")["items"]
        assert not sb.get("-n", "default", "roles,rolebindings")["items"]
        # Helm never deletes a chart's CRDs: the resources stay.
        assert sb.get("crd", "ecsinstancepowers.ecspower.dev")
        assert [i["metadata"]["name"] for i in sb.get("-n", "default", "ecsinstancepowers")["items"]] == ["web-1"]
    finally:
        sb.sandbox.stop()
        sb.emulator.stop()
