"""The chart's RBAC, request by request, with the authorizer of rbac_proxy.py (the one that
test_install_on_sandbox.py puts in front of the running operator): every request the operator makes
is allowed, in cluster-wide and in namespaced mode, and what it never needs is refused.

The "operator's requests" below are the URLs kube-rs sends for what the operator does (the live
test records the real ones and checks the same rules against them)."""

from __future__ import annotations

import pytest

from conftest import NAMESPACE, RELEASE, render
from rbac_proxy import Attributes, authorize, forbidden_message, request_attributes, service_account_grants

CR = "/apis/ecspower.dev/v1alpha1"


def operator_requests(ns: str | None) -> list[tuple[str, str]]:
    """What the operator requests when it watches namespace `ns` (None: all namespaces)."""
    scope = f"/namespaces/{ns}" if ns else ""
    team = ns or "team-a"
    return [
        ("GET", f"{CR}{scope}/ecsinstancepowers?limit=500"),
        ("GET", f"{CR}{scope}/ecsinstancepowers?watch=true&resourceVersion=12&allowWatchBookmarks=true"),
        ("GET", f"/api/v1{scope}/secrets"),
        ("GET", f"/api/v1{scope}/secrets?watch=true&resourceVersion=12"),
        ("GET", f"/api/v1/namespaces/{team}/secrets/team-a-ecs"),
        # the access model (cluster-scoped): the policy, its status, Namespace metadata
        ("GET", f"{CR}/ecspoweraccesspolicies?limit=500"),
        ("GET", f"{CR}/ecspoweraccesspolicies?watch=true&resourceVersion=12"),
        ("PATCH", f"{CR}/ecspoweraccesspolicies/default/status"),
        ("GET", "/api/v1/namespaces" + (f"?fieldSelector=metadata.name%3D{ns}" if ns else "")),
        ("GET", "/api/v1/namespaces?watch=true&resourceVersion=12"),
        ("PATCH", f"{CR}/namespaces/{team}/ecsinstancepowers/web-1/status"),
        ("GET", f"{CR}{scope}/ecspowerschedules?limit=500"),
        ("GET", f"{CR}{scope}/ecspowerschedules?watch=true&resourceVersion=12&allowWatchBookmarks=true"),
        ("PATCH", f"{CR}/namespaces/{team}/ecspowerschedules/office-hours/status"),
        ("POST", f"/apis/events.k8s.io/v1/namespaces/{team}/events"),
        ("PATCH", f"/apis/events.k8s.io/v1/namespaces/{team}/events/web-1.17a2b3c4d5e6f708"),
        # leader election (two replicas by default), in the release namespace
        ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/ecs-power-operator"),
        ("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"),
        ("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/ecs-power-operator"),
        # discovery, allowed to everyone by system:discovery
        ("GET", "/apis/ecspower.dev/v1alpha1"),
        ("GET", "/version"),
    ]


def never_needed(ns: str | None) -> list[tuple[str, str]]:
    team = ns or "team-a"
    return [
        ("PUT", f"{CR}/namespaces/{team}/ecsinstancepowers/web-1/status"),  # status is merge-patched
        ("PATCH", f"{CR}/namespaces/{team}/ecsinstancepowers/web-1"),  # the spec is the user's
        ("PATCH", f"{CR}/namespaces/{team}/ecspowerschedules/office-hours"),  # so is a schedule's
        ("PUT", f"{CR}/namespaces/{team}/ecspowerschedules/office-hours/status"),
        ("POST", f"{CR}/namespaces/{team}/ecspowerschedules"),
        ("PUT", f"{CR}/namespaces/{team}/ecsinstancepowers/web-1"),
        ("POST", f"{CR}/namespaces/{team}/ecsinstancepowers"),
        ("DELETE", f"{CR}/namespaces/{team}/ecsinstancepowers/web-1"),
        ("POST", f"/api/v1/namespaces/{team}/secrets"),  # Secrets are read-only
        ("PATCH", f"/api/v1/namespaces/{team}/secrets/team-a-ecs"),
        ("DELETE", f"/api/v1/namespaces/{team}/secrets/team-a-ecs"),
        ("POST", f"/api/v1/namespaces/{team}/events"),  # core events: the Recorder uses events.k8s.io
        ("DELETE", f"/apis/events.k8s.io/v1/namespaces/{team}/events/x"),
        ("GET", f"/api/v1/namespaces/{team}/configmaps"),
        ("GET", f"/api/v1/namespaces/{team}"),  # Namespaces are listed and watched, never read one by one
        ("PATCH", f"/api/v1/namespaces/{team}"),
        ("PATCH", f"{CR}/ecspoweraccesspolicies/default"),  # the policy's spec is the admin's
        ("DELETE", f"{CR}/ecspoweraccesspolicies/default"),
        ("POST", f"{CR}/ecspoweraccesspolicies"),
        ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/ecs-power-operator"),
        ("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        ("POST", "/api/v1/pods"),  # non-discovery write
    ]


def grants_of(docs: list[dict]):
    by_kind = {"clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding", "roles": "Role",
               "rolebindings": "RoleBinding"}
    objects = {plural: [d for d in docs if d["kind"] == kind] for plural, kind in by_kind.items()}
    return service_account_grants(objects, NAMESPACE, RELEASE)


MODES = [("cluster", (), None), ("namespaced", ("operator.watchNamespace=team-a",), "team-a")]


@pytest.mark.parametrize("sets,ns", [m[1:] for m in MODES], ids=[m[0] for m in MODES])
def test_every_request_of_the_operator_is_allowed(sets, ns):
    grants = grants_of(render(sets=sets))
    for method, url in operator_requests(ns):
        assert authorize(grants, request_attributes(method, url)), f"{method} {url} is refused"


@pytest.mark.parametrize("sets,ns", [m[1:] for m in MODES], ids=[m[0] for m in MODES])
def test_what_the_operator_never_needs_is_refused(sets, ns):
    grants = grants_of(render(sets=sets + ("leaderElection.enabled=true",)))
    for method, url in never_needed(ns):
        attrs = request_attributes(method, url)
        if attrs.resource == "leases":
            continue  # granted with leaderElection.enabled, checked below
        assert authorize(grants, attrs) is None, f"{method} {url} is allowed"


def test_namespaced_mode_reaches_no_other_namespace():
    grants = grants_of(render(sets=("operator.watchNamespace=team-a",)))
    for method, url in operator_requests("team-b") + operator_requests(None):
        attrs = request_attributes(method, url)
        # The Lease lives in the release namespace (checked below); the access policy and Namespace
        # metadata are cluster-scoped (a ClusterRole in both modes).
        cluster_scoped = attrs.resource in ("namespaces", "ecspoweraccesspolicies", "ecspoweraccesspolicies/status")
        if attrs.is_resource and attrs.namespace != "team-a" and attrs.resource != "leases" and not cluster_scoped:
            assert authorize(grants, attrs) is None, f"{method} {url} is allowed outside team-a"


def test_leases_only_with_leader_election_and_only_in_the_release_namespace():
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/ecs-power-operator"
    # One replica without leader election: no Lease access. Two replicas (the default) elect.
    assert authorize(grants_of(render(sets=("replicaCount=1",))), request_attributes("GET", lease)) is None
    assert authorize(grants_of(render()), request_attributes("PUT", lease))
    grants = grants_of(render(sets=("replicaCount=1", "leaderElection.enabled=true")))
    assert authorize(grants, request_attributes("GET", lease))
    assert authorize(grants, request_attributes("PUT", lease))
    assert authorize(grants, request_attributes("DELETE", lease)) is None
    assert authorize(grants, request_attributes("GET", lease.replace(NAMESPACE, "default"))) is None


REQUESTS = [
    ("GET", "/api/v1/secrets?watch=true", Attributes("watch", "", "secrets")),
    ("GET", "/api/v1/watch/namespaces/a/secrets", Attributes("watch", "", "secrets", "a")),
    ("GET", "/api/v1/namespaces/a/secrets/s", Attributes("get", "", "secrets", "a", "s")),
    ("GET", "/api/v1/namespaces/a", Attributes("get", "", "namespaces", "a", "a")),
    (
        "DELETE",
        f"{CR}/namespaces/a/ecsinstancepowers",
        Attributes("deletecollection", "ecspower.dev", "ecsinstancepowers", "a"),
    ),
    (
        "PATCH",
        f"{CR}/namespaces/a/ecsinstancepowers/x/status",
        Attributes("patch", "ecspower.dev", "ecsinstancepowers/status", "a", "x"),
    ),
    ("GET", "/apis/ecspower.dev", Attributes("get", non_resource_path="/apis/ecspower.dev")),
    ("GET", "/openapi/v3", Attributes("get", non_resource_path="/openapi/v3")),
]


@pytest.mark.parametrize("method,url,expected", REQUESTS, ids=[f"{m} {u}" for m, u, _ in REQUESTS])
def test_request_attributes_follow_the_api_servers_request_info(method, url, expected):
    assert request_attributes(method, url) == expected


def test_denials_read_like_the_api_servers():
    user = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
    assert forbidden_message(user, request_attributes("GET", "/api/v1/secrets")) == (
        f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" at the cluster scope'
    )
    assert forbidden_message(user, request_attributes("PUT", f"{CR}/namespaces/a/ecsinstancepowers/x/status")) == (
        f'ecsinstancepowers "x" is forbidden: User "{user}" cannot update resource "ecsinstancepowers/status" '
        'in API group "ecspower.dev" in the namespace "a"'
    )
