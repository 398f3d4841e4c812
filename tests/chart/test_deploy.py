"""deploy/ is exactly what scripts/render-deploy.sh renders from the chart, and it is a valid
kustomization of valid Kubernetes objects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv
import pytest
import yaml

from conftest import DEPLOY, REPO, chart_min_kube_version

# Hand-written sources that live in deploy/ and are inputs, not outputs, of the render.
SOURCES = {"argocd/health.lua"}


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy")
    proc = subprocess.run(
        [str(REPO / "scripts" / "render-deploy.sh"), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/render-deploy.sh --out failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return out


def test_deploy_dir_matches_a_fresh_render(fresh):
    committed = {k: v for k, v in files_under(DEPLOY).items() if k not in SOURCES}
    rendered = files_under(fresh)
    assert sorted(committed) == sorted(rendered), "deploy/ has other files than the render: run scripts/render-deploy.sh"
    stale = [name for name in rendered if committed[name] != rendered[name]]
    assert not stale, f"deploy/ is stale ({', '.join(stale)}): run scripts/render-deploy.sh"


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    manifests = {
        k
        for k in files_under(DEPLOY)
        if k.endswith(".yaml")
        and k not in ("kustomization.yaml", "access-policy.yaml")  # the policy: applied after its CRD
        and not k.startswith("argocd/")
    }
    assert set(kustomization["resources"]) == manifests


def test_deploy_manifests_are_valid_kubernetes():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    seen = set()
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if not doc:
                continue
            for version in (chart_min_kube_version(), kv.major_minor(kv.latest_version())):
                kubernetes_validate.validate(doc, version, strict=True)
            seen.add(doc["kind"])
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole"} <= seen


def test_kubernetes_validate_cli_passes_on_deploy():
    # The same check with the validator's own command line, as a user would run it.
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = [str(DEPLOY / name) for name in kustomization["resources"]]
    for version in (chart_min_kube_version(), kv.major_minor(kv.latest_version())):
        proc = subprocess.run(
            [str(REPO / ".venv" / "bin" / "kubernetes-validate"), "--strict", "--kubernetes-version", version, *files],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "WARN" not in proc.stdout and "ERROR" not in proc.stdout, proc.stdout
        assert proc.stdout.count(" passed for resource ") >= 7, proc.stdout


def test_deploy_reads_operator_credentials_from_an_optional_secret():
    docs = [d for d in yaml.safe_load_all((DEPLOY / "ecs-power-operator.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["ALIBABA_CLOUD_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "ecs-power-operator-credentials", "key": "accessKeyId", "optional": True}
    cluster_scoped = ("ClusterRole", "ClusterRoleBinding", "EcsPowerAccessPolicy")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] not in cluster_scoped} == {
        "ecs-power-operator"
    }


def test_deploy_ships_an_example_access_policy_valid_against_its_crd():
    (policy,) = [d for d in yaml.safe_load_all((DEPLOY / "access-policy.yaml").read_text()) if d]
    assert policy["kind"] == "EcsPowerAccessPolicy"
    assert policy["metadata"]["name"] == "default"
    assert "namespace" not in policy["metadata"]
    crd = yaml.safe_load((DEPLOY / "crds" / "ecspoweraccesspolicies.ecspower.dev.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    jsonschema.validate(policy["spec"], schema)
    (rule,) = policy["spec"]["rules"]
    assert rule["namespaces"]["names"] == ["team-a"] and rule["instanceTags"]
