"""An authenticating, authorizing reverse proxy in front of kube-sandbox, standing in for the API
server's ServiceAccount authentication and RBAC authorizer (kube-sandbox has neither).

The operator is pointed at the proxy with a kubeconfig holding the ServiceAccount's bearer token.
The proxy answers 401 to any other token, works out the request's attributes the way the API
server does (verb, API group, resource, subresource, namespace, name), allows it only when a rule
of the (Cluster)Roles bound to that ServiceAccount in the sandbox allows it (403 `Forbidden` with
the API server's wording otherwise), forwards allowed requests (watches streamed as they come) and
records every decision, so a test can assert both that nothing was denied and what was used.

Discovery and other non-resource URLs (`/api`, `/apis/...`, `/version`, `/openapi/...`) are allowed
as the `system:discovery` ClusterRole allows them to every authenticated user on a cluster.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


@dataclass(frozen=True)
class Attributes:
    """What the API server's authorizer sees of a request (k8s.io/apiserver RequestInfo)."""

    verb: str
    group: str = ""
    resource: str = ""  # "ecsinstancepowers" or "ecsinstancepowers/status"
    namespace: str = ""
    name: str = ""
    non_resource_path: str = ""  # set for /api, /apis, /version, ... instead of the fields above

    @property
    def is_resource(self) -> bool:
        return not self.non_resource_path


def request_attributes(method: str, target: str) -> Attributes:
    """Verb and resource of an HTTP request, following the API server's RequestInfoFactory."""
    split = urlsplit(target)
    query = parse_qs(split.query)
    parts = [p for p in split.path.split("/") if p]
    http_verb = method.upper()
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return Attributes(verb=http_verb.lower(), non_resource_path=split.path)
    if not rest:  # /api/v1, /apis/<group>/<version>: discovery
        return Attributes(verb=http_verb.lower(), non_resource_path=split.path)
    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # the namespace object itself
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    watch = legacy_watch or query.get("watch", [""])[0].lower() in ("true", "1")
    if http_verb in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if name else "list")
    elif http_verb == "POST":
        verb = "create"
    elif http_verb == "PUT":
        verb = "update"
    elif http_verb == "PATCH":
        verb = "patch"
    elif http_verb == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = http_verb.lower()
    return Attributes(verb=verb, group=group, resource=resource, namespace=namespace, name=name)


def rule_allows(rule: dict, attrs: Attributes) -> bool:
    """One PolicyRule against resource attributes (wildcards honoured, as RBAC does)."""
    if not attrs.is_resource:
        return False
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    if attrs.verb not in verbs and "*" not in verbs:
        return False
    if attrs.group not in groups and "*" not in groups:
        return False
    # rbac/v1 ResourceMatches: "*", the exact "resource[/subresource]", or "*/subresource".
    sub = attrs.resource.partition("/")[2]
    if not (attrs.resource in resources or "*" in resources or (sub and f"*/{sub}" in resources)):
        return False
    if names and attrs.name not in names:
        return False
    return True


@dataclass
class Grant:
    """Rules that apply cluster-wide (namespace "") or in one namespace, and where they came from."""

    namespace: str
    rules: list[dict]
    source: str


def service_account_grants(objects: dict[str, list[dict]], namespace: str, name: str) -> list[Grant]:
    """The rules bound to ServiceAccount namespace/name by the (Cluster)RoleBindings in `objects`
    (lists of clusterroles, clusterrolebindings, roles, rolebindings as read from the cluster)."""

    def bound(binding: dict) -> bool:
        return any(
            s.get("kind") == "ServiceAccount" and s.get("name") == name and s.get("namespace") == namespace
            for s in binding.get("subjects") or []
        )

    cluster_roles = {r["metadata"]["name"]: r for r in objects["clusterroles"]}
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in objects["roles"]}
    grants: list[Grant] = []
    for b in objects["clusterrolebindings"]:
        if bound(b) and b["roleRef"]["kind"] == "ClusterRole" and b["roleRef"]["name"] in cluster_roles:
            role = cluster_roles[b["roleRef"]["name"]]
            grants.append(Grant("", role.get("rules") or [], f"ClusterRoleBinding/{b['metadata']['name']}"))
    for b in objects["rolebindings"]:
        if not bound(b):
            continue
        ns = b["metadata"]["namespace"]
        ref = b["roleRef"]
        role = cluster_roles.get(ref["name"]) if ref["kind"] == "ClusterRole" else roles.get((ns, ref["name"]))
        if role is not None:
            grants.append(Grant(ns, role.get("rules") or [], f"RoleBinding/{ns}/{b['metadata']['name']}"))
    return grants


def authorize(grants: list[Grant], attrs: Attributes) -> str | None:
    """The grant that allows the request, or None. Non-resource URLs: discovery GETs only."""
    if not attrs.is_resource:
        return "system:discovery" if attrs.verb in ("get", "head") else None
    for grant in grants:
        if grant.namespace and grant.namespace != attrs.namespace:
            continue
        if any(rule_allows(rule, attrs) for rule in grant.rules):
            return grant.source
    return None


def forbidden_message(user: str, attrs: Attributes) -> str:
    """The API server's wording of an RBAC denial."""
    what = attrs.resource.split("/")[0]
    sub = attrs.resource.partition("/")[2]
    text = f'{what} "{attrs.name}" is forbidden' if attrs.name else f"{what} is forbidden"
    text += f': User "{user}" cannot {attrs.verb} resource "{what}"'
    if sub:
        text = text.replace(f'resource "{what}"', f'resource "{what}/{sub}"')
    text += f' in API group "{attrs.group}"'
    text += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    return text


@dataclass
class Decision:
    """One request the proxy saw."""

    method: str
    target: str
    accept: str
    content_type: str
    attrs: Attributes
    allowed_by: str | None
    status: int | None = None


class RbacProxy:
    """`with RbacProxy(upstream, grants, user, token) as proxy: proxy.url ...`"""

    def __init__(self, upstream: str, grants: list[Grant], user: str, token: str):
        up = urlsplit(upstream)
        self.upstream_host, self.upstream_port = up.hostname, up.port
        self.grants = grants
        self.user = user
        self.token = token
        self.decisions: list[Decision] = []
        self.unauthenticated: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rbac-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RbacProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Decision]:
        with self._lock:
            return list(self.decisions)

    def denied(self) -> list[Decision]:
        return [d for d in self.snapshot() if d.allowed_by is None]

    def _record(self, decision: Decision) -> None:
        with self._lock:
            self.decisions.append(decision)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply_json(self, code: int, obj: dict) -> None:
                payload = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _handle(self) -> None:
                body = self._body()
                if self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    with proxy._lock:
                        proxy.unauthenticated.append(f"{self.command} {self.path}")
                    self._reply_json(
                        401,
                        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": "Unauthorized", "reason": "Unauthorized", "code": 401},
                    )
                    return
                attrs = request_attributes(self.command, self.path)
                decision = Decision(self.command, self.path, self.headers.get("Accept", ""),
                                    self.headers.get("Content-Type", ""), attrs, authorize(proxy.grants, attrs))
                proxy._record(decision)
                if decision.allowed_by is None:
                    decision.status = 403
                    self._reply_json(
                        403,
                        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": forbidden_message(proxy.user, attrs), "reason": "Forbidden",
                         "details": {"name": attrs.name, "group": attrs.group,
                                     "kind": attrs.resource.split("/")[0]},
                         "code": 403},
                    )
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=None)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    resp = upstream.getresponse()
                    decision.status = resp.status
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_BY_HOP:
                            self.send_header(k, v)
                    length = resp.getheader("Content-Length")
                    if length is not None:
                        payload = resp.read()
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                    # Streamed (watches): relay each piece as it arrives, chunked.
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                    while True:
                        piece = resp.read1(65536)
                        if not piece:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        return Handler
