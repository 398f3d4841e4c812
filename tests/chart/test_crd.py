"""The chart carries the very CRD file in crds/ (byte for byte), and installs it."""

from __future__ import annotations

import pytest
import yaml

from conftest import CHART_CRD, CHART_SCHEDULE_CRD, ROOT_CRD, ROOT_SCHEDULE_CRD, render


def test_chart_crd_is_byte_identical_to_crds_dir():
    if not ROOT_CRD.exists():
        pytest.fail(f"{ROOT_CRD} is missing: generate it with `cargo run -- crd > {ROOT_CRD.name}`", pytrace=False)
    if not CHART_CRD.exists():
        pytest.fail(f"{CHART_CRD} is missing: run scripts/render-deploy.sh", pytrace=False)
    assert CHART_SCHEDULE_CRD.read_bytes() == ROOT_SCHEDULE_CRD.read_bytes(), (
        f"{CHART_SCHEDULE_CRD} differs from {ROOT_SCHEDULE_CRD}: run scripts/render-deploy.sh"
    )
    assert CHART_CRD.read_bytes() == ROOT_CRD.read_bytes(), (
        f"{CHART_CRD} differs from {ROOT_CRD}: run scripts/render-deploy.sh to copy it into the chart"
    )


def test_chart_installs_the_crd():
    if not CHART_CRD.exists():
        pytest.fail(f"{CHART_CRD} is missing: run scripts/render-deploy.sh", pytrace=False)
    crds = [d for d in render(include_crds=True) if d["kind"] == "CustomResourceDefinition"]
    assert sorted(crds, key=lambda c: c["metadata"]["name"]) == [
        yaml.safe_load(CHART_CRD.read_text()),
        yaml.safe_load((CHART_CRD.parent / "ecspoweraccesspolicies.ecspower.dev.yaml").read_text()),
        yaml.safe_load(CHART_SCHEDULE_CRD.read_text()),
    ]
    policy = crds[[c["metadata"]["name"] for c in crds].index("ecspoweraccesspolicies.ecspower.dev")]
    assert policy["spec"]["scope"] == "Cluster"
    root = policy["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert {"rule": "self.metadata.name == 'default'"}.items() <= root["x-kubernetes-validations"][0].items()
    schedule = crds[[c["metadata"]["name"] for c in crds].index("ecspowerschedules.ecspower.dev")]
    assert schedule["spec"]["names"]["shortNames"] == ["ecsps"]
    assert schedule["spec"]["scope"] == "Namespaced"
    crd = crds[[c["metadata"]["name"] for c in crds].index("ecsinstancepowers.ecspower.dev")]
    assert crd["metadata"]["name"] == "ecsinstancepowers.ecspower.dev"
    assert crd["spec"]["group"] == "ecspower.dev"
    assert crd["spec"]["names"]["kind"] == "EcsInstancePower"
    assert crd["spec"]["scope"] == "Namespaced"
