"""The opt-in monitoring objects: the PrometheusRule (its shape, its runbook links, its expressions
proven by `promtool test rules` against sample series in alerts_test.yaml) and the Grafana
dashboard ConfigMap; every metric they use is one the operator registers in src/metrics.rs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import CHART, NAMESPACE, REPO, chart_min_kube_version, find, kinds, render, run_helm

PROMTOOL = REPO / ".tools" / "bin" / "promtool"
RULES_TEST = REPO / "tests" / "chart" / "alerts_test.yaml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
DASHBOARD = CHART / "dashboards" / "ecs-power-operator.json"
METRICS_RS = REPO / "src" / "metrics.rs"

ALERTS = {
    "EcsPowerResourcesStalled",
    "EcsPowerResourcesNotReady",
    "EcsPowerEcsThrottled",
    "EcsPowerNoLeader",
    "EcsPowerReconcileErrors",
    "EcsPowerCredentialsRejected",
}


def monitoring() -> list[dict]:
    return render("monitoring-values.yaml")


def rules_of(docs: list[dict]) -> list[dict]:
    rule = find(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


# --- PrometheusRule -----------------------------------------------------------------------------


def test_alerts_and_dashboard_are_off_by_default():
    docs = render()
    assert "PrometheusRule" not in kinds(docs)
    assert not [d for d in docs if d["kind"] == "ConfigMap"]


def test_prometheus_rule_has_every_alert_with_severity_and_a_runbook_paragraph():
    docs = monitoring()
    rule = find(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = rules_of(docs)
    assert {r["alert"] for r in rules} == ALERTS
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS_DOC.read_text().splitlines()
        if line.startswith("#")
    }
    for r in rules:
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert re.fullmatch(r"\d+m", r["for"]), r
        assert r["labels"]["severity"] == "critical"
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        url = r["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/ecspower/ecs-power-operator/blob/main/docs/operations.md#")
        anchor = url.split("#", 1)[1]
        assert anchor == r["alert"].lower()
        assert anchor in headings, f"{r['alert']}: no heading '{anchor}' in docs/operations.md"
        # Scoped to this release's scrape job, so two installs never mix.
        assert f'namespace="{NAMESPACE}",job="ecs-power-operator-metrics"' in r["expr"], r["expr"]


def test_no_leader_alert_only_with_leader_election():
    docs = render(sets=("prometheusRule.enabled=true", "replicaCount=1"))
    assert {r["alert"] for r in rules_of(docs)} == ALERTS - {"EcsPowerNoLeader"}
    docs = render(sets=("prometheusRule.enabled=true",))  # two replicas: leader election on
    assert "EcsPowerNoLeader" in {r["alert"] for r in rules_of(docs)}


def test_schema_rejects_a_bad_alert_duration():
    proc = run_helm(
        "template", "x", str(CHART),
        "--set", "prometheusRule.enabled=true",
        "--set", "prometheusRule.stalledFor=soon",
        check=False,
    )
    assert proc.returncode != 0
    assert "stalledFor" in proc.stderr


# --- Grafana dashboard --------------------------------------------------------------------------


def test_dashboard_configmap_is_labelled_for_the_sidecar_and_valid():
    docs = monitoring()
    cm = find(docs, "ConfigMap")
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    kubernetes_validate.validate(cm, chart_min_kube_version(), strict=True)
    (body,) = cm["data"].values()
    dashboard = json.loads(body)
    assert dashboard == json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needle in [
        "ecs_power_resources{",
        "ecs_power_resources_by_condition{",
        "ecs_power_ecs_calls_total{",
        'code!="Success"',
        "ecs_power_ecs_call_duration_seconds_bucket{",
        "ecs_power_leader{",
        "ecs_power_fleet_batch_size_bucket{",
        "ecs_power_fleet_limiter_rate{",
    ]:
        assert needle in exprs, f"the dashboard shows nothing with {needle}"
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]


# --- metric names -------------------------------------------------------------------------------


def exposed_metric_names() -> set[str]:
    """The names the operator exposes, read from the registrations in src/metrics.rs: the registry
    prefix `ecs_power`, the fleet sub-registry's `fleet`, the unit suffix, and the suffixes
    prometheus-client adds (`_total` for counters; `_bucket`, `_sum`, `_count` for histograms)."""
    source = METRICS_RS.read_text()
    kinds_by_field = {
        name: kind
        for name, kind in re.findall(r"^\s+(\w+): (?:Family<\w+, )?(Counter|Gauge|Histogram)\b", source, re.M)
    }
    fleet_part, main_part = source.split("impl Default for Metrics", 1)
    assert 'sub_registry_with_prefix("fleet")' in fleet_part
    assert 'Registry::with_prefix("ecs_power")' in main_part
    pattern = re.compile(
        r'register(_with_unit)?\(\s*"(\w+)",\s*"[^"]*",\s*(prometheus_client::registry::Unit::Seconds,\s*)?(\w+)\.clone\(\)'
    )
    names: set[str] = set()
    for prefix, part in (("ecs_power_fleet_", fleet_part), ("ecs_power_", main_part)):
        for _, name, seconds, field in pattern.findall(part):
            base = prefix + name + ("_seconds" if seconds else "")
            kind = kinds_by_field[field]
            if kind == "Counter":
                names.add(base + "_total")
            elif kind == "Histogram":
                names.update(base + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(base)
    return names


def test_the_metric_name_reader_sees_the_registrations():
    names = exposed_metric_names()
    for expected in [
        "ecs_power_leader",
        "ecs_power_reconcile_errors_total",
        "ecs_power_fleet_throttled_total",
        "ecs_power_fleet_limiter_rate",
        "ecs_power_ecs_call_duration_seconds_bucket",
        "ecs_power_fleet_batch_size_bucket",
        "ecs_power_resources_by_condition",
    ]:
        assert expected in names, sorted(names)
    assert "ecs_power_leader_total" not in names and "ecs_power_fleet_throttled" not in names


def test_every_metric_the_rules_and_dashboard_use_is_registered():
    names = exposed_metric_names()
    rule_exprs = [r["expr"] for r in rules_of(monitoring())]
    dashboard = json.loads(DASHBOARD.read_text())
    dash_exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    dash_exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {m for e in rule_exprs + dash_exprs for m in re.findall(r"\becs_power_\w+", e)}
    assert len(used) >= 12
    unknown = sorted(used - names)
    assert not unknown, f"metrics not registered in src/metrics.rs: {unknown}"


# --- promtool test rules ------------------------------------------------------------------------


def rules_file(rules: list[dict]) -> str:
    return yaml.safe_dump({"groups": [{"name": "ecs-power-operator", "rules": rules}]})


def promtool_test(tmp_path, rules: list[dict]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(rules_file(rules))
    shutil.copy(RULES_TEST, tmp_path / "alerts_test.yaml")
    return subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def promtool():
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip(
            f"SKIPPED LOUDLY: promtool not found at {PROMTOOL}, so the alert expressions are NOT tested: "
            "run scripts/setup-test-tools.sh (it unpacks Debian's prometheus package with apt-get download)"
        )
    return PROMTOOL


def test_promtool_alerts_fire_on_sample_series_and_stay_quiet_when_healthy(promtool, tmp_path):
    rules = rules_of(monitoring())
    (tmp_path / "checked.yaml").write_text(rules_file(rules))
    check = subprocess.run(
        [str(promtool), "check", "rules", str(tmp_path / "checked.yaml")], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    proc = promtool_test(tmp_path, rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_catches_a_broken_rule(promtool, tmp_path):
    # Guards the test above: summing the replicas' gauges (instead of max) must fail the cases.
    rules = rules_of(monitoring())
    for r in rules:
        if r["alert"] == "EcsPowerResourcesStalled":
            r["expr"] = r["expr"].replace("max by", "sum by")
    proc = promtool_test(tmp_path, rules)
    assert proc.returncode != 0
    assert "EcsPowerResourcesStalled" in proc.stdout + proc.stderr
