"""`helm lint --strict` and `helm template` succeed for every tested value set and Kubernetes version."""

from __future__ import annotations

import kubernetes_validate.utils as kv

from conftest import CHART, CI_VALUES, chart_min_kube_version, render, run_helm


def test_lint_strict_passes(configuration):
    _, files, sets = configuration
    args = ["lint", "--strict", str(CHART)]
    for name in files:
        args += ["--values", str(CI_VALUES / name)]
    for s in sets:
        args += ["--set", s]
    out = run_helm(*args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_template_renders_at_the_oldest_and_newest_supported_kubernetes(configuration):
    _, files, sets = configuration
    for version in (chart_min_kube_version(), kv.major_minor(kv.latest_version())):
        docs = render(*files, sets=sets, kube_version=f"{version}.0")
        assert any(d["kind"] == "Deployment" for d in docs), f"no Deployment at {version}"


def test_kube_version_below_the_chart_minimum_is_refused():
    major, minor = chart_min_kube_version().split(".")
    proc = run_helm(
        "template", "x", str(CHART), "--kube-version", f"{major}.{int(minor) - 1}.0", check=False
    )
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr, proc.stderr
