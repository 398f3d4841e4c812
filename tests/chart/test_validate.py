"""Every rendered built-in object passes kubernetes-validate --strict (offline schemas) at the oldest
Kubernetes version the chart admits and at the newest the validator bundles."""

from __future__ import annotations

import copy

import kubernetes_validate
import kubernetes_validate.utils as kv
import pytest

from conftest import chart_min_kube_version, find, render

# Kinds that are not built into Kubernetes: no bundled schema; checked structurally in test_render.py.
NOT_BUILT_IN = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("ecspower.dev/v1alpha1", "EcsPowerAccessPolicy"),  # the operator's own kind: test_render.py
}


def versions() -> list[str]:
    return [chart_min_kube_version(), kv.major_minor(kv.latest_version())]


def test_the_validator_bundles_the_versions_we_claim():
    bundled = {kv.major_minor(v) for v in kv.all_versions()}
    for version in versions():
        assert version in bundled, f"kubernetes-validate has no schemas for {version}: {sorted(bundled)}"


@pytest.mark.parametrize("version", versions())
def test_rendered_objects_are_valid_kubernetes(configuration, version):
    _, files, sets = configuration
    docs = render(*files, sets=sets, kube_version=f"{version}.0", include_crds=True)
    checked = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in NOT_BUILT_IN:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid at {version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            pytest.fail(f"no schema for built-in {doc['apiVersion']} {doc['kind']}: {e.message}")
        checked += 1
    assert checked >= 5


def test_strict_validation_rejects_an_unknown_field():
    # Guards the test above against validating nothing: a typo in a Deployment must fail.
    deployment = copy.deepcopy(find(render(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kv.ValidationError):
        kubernetes_validate.validate(deployment, chart_min_kube_version(), strict=True)
