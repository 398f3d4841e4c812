"""What the chart renders: the Deployment contract, credentials only through secretKeyRef,
least-privilege RBAC in cluster and namespaced mode, RRSA, and the opt-in objects."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, find, kinds, render, run_helm


def container(docs: list[dict]) -> dict:
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def env_of(docs: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in container(docs)["env"]}


def chart_yaml() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


# --- Deployment ---------------------------------------------------------------------------------


def test_default_install_renders_exactly_the_operator_objects():
    assert kinds(render()) == [
        "ClusterRole",
        "ClusterRole",  # the access model's cluster-scoped reads
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "EcsPowerAccessPolicy",  # deny by default: accessPolicy.rules is empty
        "PodDisruptionBudget",
        "Role",  # the Lease, for leader election (two replicas by default)
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]


def test_deployment_is_two_replicas_with_leader_election_rolled_and_spread():
    # Changed on purpose: the chart used to run one replica replaced with Recreate (no leader
    # election); two replicas elect a leader, so updates roll and a PDB keeps one through drains.
    docs = render()
    spec = find(docs, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    env = env_of(docs)
    assert env["LEADER_ELECT"]["value"] == "true"
    assert env["LEADER_ELECT_LEASE_DURATION"]["value"] == "15s"
    assert env["LEADER_ELECT_RENEW_DEADLINE"]["value"] == "10s"
    assert env["LEADER_ELECT_RETRY_PERIOD"]["value"] == "2s"
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["namespace"] == NAMESPACE
    assert pdb["spec"]["minAvailable"] == 1
    selector = spec["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    pod = spec["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == selector
    lease_roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election")]
    assert len(lease_roles) == 1


def test_one_replica_without_leader_election_is_replaced_with_recreate():
    docs = render(sets=("replicaCount=1",))
    spec = find(docs, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert "LEADER_ELECT" not in env_of(docs)
    assert "PodDisruptionBudget" not in kinds(docs)
    assert "affinity" not in spec["template"]["spec"]
    assert "topologySpreadConstraints" not in spec["template"]["spec"]
    # Asked for with one replica: elected, rolled, but no PDB (it would block every drain).
    docs = render(sets=("replicaCount=1", "leaderElection.enabled=true"))
    assert find(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert env_of(docs)["LEADER_ELECT"]["value"] == "true"
    assert "PodDisruptionBudget" not in kinds(docs)


def test_own_affinity_and_spread_replace_the_defaults():
    docs = render(sets=("affinity.nodeAffinity.x=1", "spreadReplicas=false"))
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["affinity"] == {"nodeAffinity": {"x": 1}}
    assert "topologySpreadConstraints" not in pod


def test_probes_hit_healthz_and_readyz_on_the_metrics_port():
    c = container(render())
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]


def test_metrics_addr_follows_the_metrics_port():
    docs = render(sets=("operator.metricsPort=9100", "service.port=9100"))
    assert env_of(docs)["METRICS_ADDR"]["value"] == "0.0.0.0:9100"
    assert container(docs)["ports"][0]["containerPort"] == 9100
    assert find(docs, "Service")["spec"]["ports"][0]["port"] == 9100


def test_resources_have_requests_and_limits():
    r = container(render())["resources"]
    assert set(r["requests"]) == {"cpu", "memory"}
    assert "memory" in r["limits"] and "cpu" in r["limits"]


def test_pod_and_container_are_hardened():
    docs = render()
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_operator_runs_the_run_subcommand_with_pod_identity_env():
    docs = render()
    c = container(docs)
    assert c["args"] == ["run"]
    env = env_of(docs)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RESYNC_INTERVAL"]["value"] == "5m"
    assert env["MAX_CONCURRENT_RECONCILES"]["value"] == "8"
    assert env["ECS_ENDPOINT_STYLE"]["value"] == "public"
    assert env["LOG_FORMAT"]["value"] == "json"
    assert env["RUST_LOG"]["value"] == "info"
    assert env["ECS_BATCH_SIZE"]["value"] == "100"
    # Unset options are not passed at all, so the operator's own defaults apply.
    assert "WATCH_NAMESPACE" not in env and "ECS_ENDPOINT" not in env
    assert "ECS_RATE_LIMITS" not in env


def test_operator_values_map_to_their_env_twins():
    env = env_of(
        render(
            sets=(
                "operator.ecsEndpoint=http://ecs-proxy.internal:8080",
                "operator.ecsEndpointStyle=vpc",
                "operator.resyncInterval=90s",
                "operator.maxConcurrentReconciles=3",
                "operator.logFormat=text",
                "operator.logLevel=debug",
                "operator.ecsRateLimits={StartInstances=5/s,DescribeInstances=600/m}",
                "operator.ecsBatchSize=50",
            )
        )
    )
    assert env["ECS_RATE_LIMITS"]["value"] == "StartInstances=5/s,DescribeInstances=600/m"
    assert env["ECS_BATCH_SIZE"]["value"] == "50"
    assert env["ECS_ENDPOINT"]["value"] == "http://ecs-proxy.internal:8080"
    assert env["ECS_ENDPOINT_STYLE"]["value"] == "vpc"
    assert env["RESYNC_INTERVAL"]["value"] == "90s"
    assert env["MAX_CONCURRENT_RECONCILES"]["value"] == "3"
    assert env["LOG_FORMAT"]["value"] == "text"
    assert env["RUST_LOG"]["value"] == "debug"


def test_image_defaults_to_app_version_and_digest_wins():
    assert container(render())["image"].endswith(":" + chart_yaml()["appVersion"])
    digest = "sha256:" + "ab" * 32
    image = container(render(sets=(f"image.digest={digest}", "image.tag=ignored")))["image"]
    assert image.endswith("@" + digest)


# --- Credentials --------------------------------------------------------------------------------


def test_credentials_are_never_plain_values(configuration):
    _, files, sets = configuration
    for e in env_of(render(*files, sets=sets)).values():
        if e["name"].startswith(("ALIBABA_CLOUD_ACCESS_KEY", "ALIBABA_CLOUD_SECURITY_TOKEN")):
            assert "value" not in e, f"{e['name']} has a plain value"
            assert "secretKeyRef" in e["valueFrom"], e


def test_without_existing_secret_no_access_key_env_is_set():
    env = env_of(render())
    assert not any(name.startswith("ALIBABA_CLOUD_") for name in env)


def test_existing_secret_is_read_through_secret_key_ref():
    env = env_of(render("namespaced-values.yaml"))
    refs = {n: env[n]["valueFrom"]["secretKeyRef"] for n in env if n.startswith("ALIBABA_CLOUD_")}
    assert refs == {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": {"name": "ecs-credentials", "key": "accessKeyId", "optional": False},
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": {
            "name": "ecs-credentials",
            "key": "accessKeySecret",
            "optional": False,
        },
        # A security token is only there for STS credentials: the key may be absent.
        "ALIBABA_CLOUD_SECURITY_TOKEN": {"name": "ecs-credentials", "key": "securityToken", "optional": True},
    }


def test_secret_key_names_and_optional_are_configurable():
    env = env_of(
        render(
            sets=(
                "credentials.existingSecret=ak",
                "credentials.accessKeyIdKey=id",
                "credentials.accessKeySecretKey=secret",
                "credentials.securityTokenKey=",
                "credentials.optional=true",
            )
        )
    )
    assert env["ALIBABA_CLOUD_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "ak",
        "key": "id",
        "optional": True,
    }
    assert env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "secret"
    assert "ALIBABA_CLOUD_SECURITY_TOKEN" not in env


# --- RRSA ---------------------------------------------------------------------------------------


def test_rrsa_role_name_annotates_the_service_account_only():
    docs = render("rrsa-values.yaml", sets=("serviceAccount.annotations.team=platform",))
    sa = find(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "pod-identity.alibabacloud.com/role-name": "ecs-power-operator",
        "team": "platform",
    }
    # ACK's pod-identity webhook injects env and token volume itself.
    assert not any(n.startswith("ALIBABA_CLOUD_") for n in env_of(docs))
    assert "volumes" not in find(docs, "Deployment")["spec"]["template"]["spec"]


def test_no_rrsa_annotation_by_default():
    assert "annotations" not in find(render(), "ServiceAccount")["metadata"]


def test_manual_rrsa_sts_region_and_vpc_endpoint_map_to_their_env():
    env = env_of(render("rrsa-manual-values.yaml"))
    assert env["ALIBABA_CLOUD_STS_REGION"] == {"name": "ALIBABA_CLOUD_STS_REGION", "value": "cn-hangzhou"}
    assert env["ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"] == {"name": "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "value": "true"}
    # Region alone: the public regional endpoint, so no VPC variable.
    env = env_of(render("rrsa-manual-values.yaml", sets=("rrsa.manual.vpcEndpoint=false",)))
    assert env["ALIBABA_CLOUD_STS_REGION"]["value"] == "cn-hangzhou"
    assert "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED" not in env
    # Neither: the operator's default, the central sts.aliyuncs.com.
    env = env_of(
        render("rrsa-manual-values.yaml", sets=("rrsa.manual.stsRegion=", "rrsa.manual.vpcEndpoint=false"))
    )
    assert "ALIBABA_CLOUD_STS_REGION" not in env and "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED" not in env
    assert "ALIBABA_CLOUD_ROLE_ARN" in env


STS_VALUE_ERRORS = [
    (("rrsa.manual.vpcEndpoint=true", "rrsa.manual.stsRegion="), "rrsa.manual.vpcEndpoint needs rrsa.manual.stsRegion"),
    (
        ("rrsa.manual.enabled=false", "rrsa.manual.stsRegion=cn-hangzhou", "rrsa.manual.vpcEndpoint=false"),
        "apply only with rrsa.manual.enabled=true",
    ),
]


@pytest.mark.parametrize("sets,message", STS_VALUE_ERRORS, ids=["vpc-without-region", "region-without-manual"])
def test_sts_values_that_would_be_ignored_are_refused(sets, message):
    args = ["template", RELEASE, str(CHART), "--values", str(CHART / "ci" / "rrsa-manual-values.yaml")]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args, check=False)
    assert proc.returncode != 0, f"--set {sets} was accepted"
    assert message in proc.stderr, proc.stderr


def test_manual_rrsa_projects_the_oidc_token_and_sets_the_env():
    docs = render("rrsa-manual-values.yaml")
    env = env_of(docs)
    assert env["ALIBABA_CLOUD_ROLE_ARN"]["value"] == "acs:ram::1234567890123456:role/ecs-power-operator"
    assert env["ALIBABA_CLOUD_OIDC_PROVIDER_ARN"]["value"].endswith(":oidc-provider/ack-rrsa-c0123456789abcdef")
    token_file = env["ALIBABA_CLOUD_OIDC_TOKEN_FILE"]["value"]
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    (mount,) = container(docs)["volumeMounts"]
    assert mount["readOnly"] is True
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"]
    (source,) = volume["projected"]["sources"]
    sat = source["serviceAccountToken"]
    assert sat["audience"] == "sts.aliyuncs.com"
    assert sat["expirationSeconds"] == 3600
    assert token_file == f"{mount['mountPath']}/{sat['path']}"


# --- RBAC ---------------------------------------------------------------------------------------

# Exactly what the operator does (test_install_on_sandbox.py runs it behind an authorizer that
# enforces the rules and records every request): list/watch its resources, merge-patch their
# /status, list/watch EcsPowerSchedules and merge-patch their /status, list/watch Secrets (re-queue on change) and get the one a resource references, and
# write events.k8s.io/v1 Events (kube-runtime's Recorder creates them and patches repeats). No PUT
# on /status and no core ("") events: nothing in the operator makes those requests.
OPERATOR_RULES = {
    ("ecspower.dev", "ecsinstancepowers"): {"get", "list", "watch"},
    ("ecspower.dev", "ecsinstancepowers/status"): {"get", "patch"},
    ("ecspower.dev", "ecspowerschedules"): {"list", "watch"},
    ("ecspower.dev", "ecspowerschedules/status"): {"patch"},
    ("", "secrets"): {"get", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
# Cluster-scoped, in both modes: the access policy (and its status) and Namespace metadata.
ACCESS_RULES = {
    ("ecspower.dev", "ecspoweraccesspolicies"): {"list", "watch"},
    ("ecspower.dev", "ecspoweraccesspolicies/status"): {"patch"},
    ("", "namespaces"): {"list", "watch"},
}
ACCESS_ROLE = f"{RELEASE}-access"


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_rbac_has_no_wildcards(configuration):
    _, files, sets = configuration
    for doc in render(*files, sets=sets):
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], f"{doc['kind']}/{doc['metadata']['name']}: {rule}"


def test_cluster_mode_grants_exactly_the_operator_rules():
    docs = render()
    role = find(docs, "ClusterRole", RELEASE)
    assert grants(role) == OPERATOR_RULES
    assert grants(find(docs, "ClusterRole", ACCESS_ROLE)) == ACCESS_RULES
    binding = find(docs, "ClusterRoleBinding", RELEASE)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    assert find(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == RELEASE


def test_secrets_are_read_only_and_events_create_and_patch(configuration):
    _, files, sets = configuration
    for doc in render(*files, sets=sets):
        if doc["kind"] in ("Role", "ClusterRole"):
            g = grants(doc)
            if ("", "secrets") in g:
                assert g[("", "secrets")] <= {"get", "list", "watch"}
            if ("events.k8s.io", "events") in g:
                assert g[("events.k8s.io", "events")] == {"create", "patch"}
            # kube-runtime's Recorder writes events.k8s.io/v1 only.
            assert ("", "events") not in g, f"{doc['kind']}/{doc['metadata']['name']} grants core events"
            # Status is only ever merge-patched; the spec is never written.
            assert "update" not in g.get(("ecspower.dev", "ecsinstancepowers/status"), set())
            assert g.get(("ecspower.dev", "ecsinstancepowers"), set()) <= {"get", "list", "watch"}


def test_namespaced_mode_uses_a_role_in_the_watched_namespace():
    docs = render("namespaced-values.yaml")
    # The only cluster-wide grant: the access model's cluster-scoped reads.
    assert [d["metadata"]["name"] for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")] == [
        ACCESS_ROLE,
        ACCESS_ROLE,
    ]
    assert grants(find(docs, "ClusterRole", ACCESS_ROLE)) == ACCESS_RULES
    assert find(docs, "ClusterRoleBinding", ACCESS_ROLE)["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    role = find(docs, "Role", "ecs-power-operator")
    assert role["metadata"]["namespace"] == "team-a"
    assert grants(role) == OPERATOR_RULES
    binding = find(docs, "RoleBinding", "ecs-power-operator")
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] == role["metadata"]["name"]
    # The ServiceAccount lives in the release namespace, not in the watched one.
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    assert env_of(docs)["WATCH_NAMESPACE"]["value"] == "team-a"


def test_leader_election_leases_only_when_enabled():
    assert not any(
        ("coordination.k8s.io", "leases") in grants(d)
        for d in render(sets=("replicaCount=1",))
        if d["kind"] in ("Role", "ClusterRole")
    )
    docs = render("monitoring-values.yaml")
    lease_roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election")]
    assert len(lease_roles) == 1
    assert lease_roles[0]["metadata"]["namespace"] == NAMESPACE
    assert grants(lease_roles[0]) == LEASE_RULES
    binding = find(docs, "RoleBinding", lease_roles[0]["metadata"]["name"])
    assert binding["subjects"][0]["name"] == RELEASE


def test_rbac_create_false_renders_no_rbac():
    docs = render(sets=("rbac.create=false", "leaderElection.enabled=true"))
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(kinds(docs))


def test_existing_service_account_is_used_when_not_created():
    docs = render(sets=("serviceAccount.create=false", "serviceAccount.name=preexisting"))
    assert "ServiceAccount" not in kinds(docs)
    assert find(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "preexisting"
    assert find(docs, "ClusterRoleBinding", RELEASE)["subjects"][0]["name"] == "preexisting"
    assert find(docs, "ClusterRoleBinding", ACCESS_ROLE)["subjects"][0]["name"] == "preexisting"


# --- Service, ServiceMonitor, NetworkPolicy -------------------------------------------------------


def pod_labels(docs: list[dict]) -> dict[str, str]:
    return find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]


def test_metrics_service_selects_the_operator_pod():
    docs = render()
    svc = find(docs, "Service")
    assert svc["spec"]["selector"].items() <= pod_labels(docs).items()
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert find(docs, "Deployment")["spec"]["selector"]["matchLabels"].items() <= pod_labels(docs).items()


def test_service_monitor_and_network_policy_are_opt_in():
    assert "ServiceMonitor" not in kinds(render())
    assert "NetworkPolicy" not in kinds(render())


def test_service_monitor_scrapes_the_metrics_service():
    docs = render("monitoring-values.yaml")
    sm = find(docs, "ServiceMonitor")
    svc = find(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"


def test_network_policy_admits_metrics_and_only_needed_egress():
    docs = render("monitoring-values.yaml")
    np = find(docs, "NetworkPolicy")["spec"]
    assert np["podSelector"]["matchLabels"].items() <= pod_labels(docs).items()
    assert np["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = np["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    ports = sorted((p["protocol"], p["port"]) for rule in np["egress"] for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 443), ("TCP", 6443), ("UDP", 53)]


def test_network_policy_with_no_egress_allowed_denies_all_egress():
    docs = render(
        sets=(
            "networkPolicy.enabled=true",
            "networkPolicy.egress.dns=false",
            "networkPolicy.egress.ports=null",
        )
    )
    assert find(docs, "NetworkPolicy")["spec"]["egress"] == []


# --- values.schema.json and cross-value checks -------------------------------------------------

BAD_VALUES = [
    ("operator.logFormat=xml", "/operator/logFormat"),
    ("operator.ecsEndpointStyle=private", "/operator/ecsEndpointStyle"),
    ("operator.resyncInterval=5min", "/operator/resyncInterval"),
    ("operator.maxConcurrentReconciles=0", "/operator/maxConcurrentReconciles"),
    ("operator.ecsBatchSize=101", "/operator/ecsBatchSize"),
    ("operator.ecsRateLimits={StartInstances=fast}", "/operator/ecsRateLimits"),
    ("operator.metricsPort=70000", "/operator/metricsPort"),
    ("operator.watchNamespace=Team_A", "/operator/watchNamespace"),
    ("operator.ecsEndpoint=ecs.example.com", "/operator/ecsEndpoint"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("image.digest=latest", "/image/digest"),
    # There is no way to pass an AccessKey as a value.
    ("credentials.accessKeyId=LTAI5tExample", "accessKeyId"),
    ("credentials.accessKeySecret=s3cr3t", "accessKeySecret"),
    ("replicaCount=0", "replicaCount"),
    ("rrsa.manual.tokenExpirationSeconds=60", "/rrsa/manual/tokenExpirationSeconds"),
    ("rrsa.manual.enabled=true", "/rrsa/manual/roleArn"),
    ("rrsa.manual.stsRegion=Hangzhou", "/rrsa/manual/stsRegion"),
    ("rrsa.manual.vpcEndpoint=yes", "/rrsa/manual/vpcEndpoint"),
    ("serviceMonitor.enabled=yes", "/serviceMonitor/enabled"),
    ("resources=null", "resources"),
]


@pytest.mark.parametrize("bad,where", BAD_VALUES, ids=[b for b, _ in BAD_VALUES])
def test_values_schema_rejects_bad_values(bad, where):
    proc = run_helm("template", RELEASE, str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0, f"--set {bad} was accepted"
    assert where in proc.stderr, proc.stderr


def test_rrsa_webhook_and_manual_mode_exclude_each_other():
    proc = run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--values",
        str(CHART / "ci" / "rrsa-manual-values.yaml"),
        "--set",
        "rrsa.roleName=ecs-power-operator",
        check=False,
    )
    assert proc.returncode != 0
    assert "exclude each other" in proc.stderr, proc.stderr


def test_notes_explain_the_credential_mode():
    def notes(*sets: str) -> str:
        args = ["install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE]
        for s in sets:
            args += ["--set", s]
        return run_helm(*args).stdout.split("NOTES:", 1)[1]

    assert "none configured" in notes()
    assert "pod-identity.alibabacloud.com/injection=on" in notes("rrsa.roleName=r")
    assert f"Secret {NAMESPACE}/ak" in notes("credentials.existingSecret=ak")
    assert "namespace team-a only" in notes("operator.watchNamespace=team-a")
    manual = (
        "rrsa.manual.enabled=true",
        "rrsa.manual.roleArn=acs:ram::1:role/r",
        "rrsa.manual.oidcProviderArn=acs:ram::1:oidc-provider/p",
    )
    assert "exchanged at sts.aliyuncs.com." in notes(*manual)
    assert "exchanged at sts-vpc.cn-hangzhou.aliyuncs.com." in notes(
        *manual, "rrsa.manual.stsRegion=cn-hangzhou", "rrsa.manual.vpcEndpoint=true"
    )


# --- EcsPowerAccessPolicy -------------------------------------------------------------------------


def test_access_policy_is_rendered_from_values_and_valid_against_its_crd():
    crd = yaml.safe_load((CHART / "crds" / "ecspoweraccesspolicies.ecspower.dev.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # Default: the policy exists with no rule (deny by default).
    policy = find(render(), "EcsPowerAccessPolicy")
    assert policy["metadata"]["name"] == "default" and "namespace" not in policy["metadata"]
    assert policy["spec"] == {"rules": []}
    # The rule that restores the behaviour of earlier versions.
    docs = render(
        sets=(
            "accessPolicy.rules[0].name=everything",
            "accessPolicy.rules[0].allNamespaces=true",
            "accessPolicy.rules[0].anyInstance=true",
        )
    )
    spec = find(docs, "EcsPowerAccessPolicy")["spec"]
    assert spec == {"rules": [{"name": "everything", "allNamespaces": True, "anyInstance": True}]}
    jsonschema.validate(spec, schema)
    # Managed elsewhere: not rendered; applied to Secret credentials too: the flag's env twin.
    assert "EcsPowerAccessPolicy" not in kinds(render(sets=("accessPolicy.create=false",)))
    assert "ACCESS_POLICY_FOR_SECRETS" not in env_of(render())
    env = env_of(render(sets=("accessPolicy.applyToSecretCredentials=true",)))
    assert env["ACCESS_POLICY_FOR_SECRETS"]["value"] == "true"
