"""A small in-memory stand-in for the Kubernetes API server, so jobctl's k8s backend is tested through the real
`kubernetes` client over HTTP on 127.0.0.1 (via a generated kubeconfig).

It stands in for exactly the endpoints jobctl uses:
- ``GET /version``;
- namespaced ``configmaps``, ``services``, ``pods``, ``events`` (core/v1), ``jobs`` (batch/v1),
  ``networkpolicies`` (networking.k8s.io/v1), ``podgroups``
  (scheduling.volcano.sh/v1beta1) and ``workloads`` (kueue.x-k8s.io/v1beta1): create (with
  ``dryRun=All``: validated against nothing, not stored), read, list (``labelSelector`` and ``fieldSelector`` as
  ``key=value`` equalities), JSON merge patch, delete (the ``propagationPolicy`` is recorded; objects whose
  ownerReferences name the deleted uid go with it, as the garbage collector would do);
- ``pods/<name>/log`` with ``tailLines`` and ``follow`` (streams appended text until the test closes the log).

It does NOT run any controller: creating a Job makes no pods and sets no status; tests add pods, logs and Job
conditions themselves (``put``, ``set_job_status``, ``append_log``). No schema validation, admission, auth, watch,
resourceVersion conflicts or strategic-merge semantics (every patch is a JSON merge patch).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

KINDS = {"configmaps": "ConfigMap", "services": "Service", "pods": "Pod", "events": "Event", "jobs": "Job"}
# Custom resources jobctl uses with --scheduler volcano|kueue (served as plainly as the built-in kinds).
KINDS |= {"podgroups": "PodGroup", "workloads": "Workload", "networkpolicies": "NetworkPolicy"}
_PATH = re.compile(
    r"^/(?:api/v1|apis/batch/v1|apis/networking\.k8s\.io/v1|apis/scheduling\.volcano\.sh/v1beta1|apis/kueue\.x-k8s\.io/v1beta1)"
    r"/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?(?:/(log))?$"
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _dotted(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _matches(obj: dict[str, Any], labels: str | None, fields: str | None) -> bool:
    for term in filter(None, (labels or "").split(",")):
        key, _, value = term.partition("=")
        if (obj.get("metadata", {}).get("labels") or {}).get(key) != value:
            return False
    for term in filter(None, (fields or "").split(",")):
        key, _, value = term.partition("=")
        if str(_dotted(obj, key)) != value:
            return False
    return True


class KubeDouble:
    def __init__(self, major: str = "1", minor: str = "31") -> None:
        self.version = {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{major}.{minor.rstrip('+')}.0",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.closed_logs: set[tuple[str, str]] = set()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # lifecycle ----------------------------------------------------------------------------------------

    def __enter__(self) -> KubeDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.closed_logs.update(self.logs)
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path, context: str = "double", namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": context, "context": {"cluster": "double", "user": "tester", "namespace": namespace}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # test hooks ---------------------------------------------------------------------------------------

    def put(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as the API server would (uid, creationTimestamp, namespace filled in)."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z")
        meta["namespace"] = namespace
        meta["resourceVersion"] = str(len(self.requests) + 1)
        stored.setdefault("kind", KINDS[plural])
        stored.setdefault("apiVersion", "batch/v1" if plural == "jobs" else "v1")
        with self.lock:
            self.objects[(plural, namespace, meta["name"])] = stored
        return stored

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self.objects.get((plural, namespace, name)))

    def names(self, plural: str, namespace: str) -> list[str]:
        with self.lock:
            return sorted(n for (p, ns, n) in self.objects if p == plural and ns == namespace)

    def set_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            self.objects[("jobs", namespace, name)]["status"] = status

    def append_log(self, namespace: str, pod: str, text: str) -> None:
        with self.lock:
            self.logs[(namespace, pod)] = self.logs.get((namespace, pod), "") + text

    def close_log(self, namespace: str, pod: str) -> None:
        with self.lock:
            self.closed_logs.add((namespace, pod))

    def calls(self, method: str, path_part: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and path_part in r["path"]]

    # HTTP ---------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                double._serve(self, "GET")

            def do_POST(self) -> None:
                double._serve(self, "POST")

            def do_PATCH(self) -> None:
                double._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                double._serve(self, "DELETE")

        return Handler

    def _send(self, handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _status(self, handler: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message}
        self._send(handler, code, {**body, "code": code})

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"null") if length else None
        with self.lock:
            self.requests.append({"method": method, "path": url.path, "query": query, "body": body})
        if url.path.rstrip("/") == "/version":
            self._send(handler, 200, self.version)
            return
        match = _PATH.match(url.path)
        if not match or match.group(2) not in KINDS:
            self._status(handler, 404, "NotFound", f"the double does not serve {url.path}")
            return
        namespace, plural, name, log = match.groups()
        if log:
            self._log(handler, namespace, name, query)
        elif name is None and method == "GET":
            with self.lock:
                items = [
                    copy.deepcopy(o)
                    for (p, ns, _), o in self.objects.items()
                    if p == plural
                    and ns == namespace
                    and _matches(o, query.get("labelSelector"), query.get("fieldSelector"))
                ]
            items.sort(key=lambda o: o["metadata"]["creationTimestamp"])
            kind = KINDS[plural]
            self._send(handler, 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": items})
        elif name is None and method == "POST":
            self._create(handler, namespace, plural, body or {}, query)
        elif method == "GET":
            found = self.get(plural, namespace, name)
            if found is None:
                self._status(handler, 404, "NotFound", f'{plural} "{name}" not found')
            else:
                self._send(handler, 200, found)
        elif method == "PATCH":
            self._patch(handler, namespace, plural, name, body)
        elif method == "DELETE":
            self._delete(handler, namespace, plural, name, body or {})
        else:
            self._status(handler, 405, "MethodNotAllowed", f"{method} {url.path}")

    def _create(
        self, handler: BaseHTTPRequestHandler, namespace: str, plural: str, body: dict[str, Any], query: dict[str, str]
    ) -> None:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            self._status(handler, 422, "Invalid", "metadata.name: Required value")
            return
        if self.get(plural, namespace, name) is not None:
            self._status(handler, 409, "AlreadyExists", f'{plural} "{name}" already exists')
            return
        if query.get("dryRun") == "All":
            self._send(handler, 201, body)
            return
        self._send(handler, 201, self.put(plural, namespace, body))

    def _patch(self, handler: BaseHTTPRequestHandler, namespace: str, plural: str, name: str, body: Any) -> None:
        if handler.headers.get("Content-Type", "").startswith("application/json-patch"):
            self._status(handler, 415, "UnsupportedMediaType", "the double only applies merge patches")
            return
        with self.lock:
            key = (plural, namespace, name)
            if key not in self.objects:
                missing = True
            else:
                missing = False
                self.objects[key] = merge_patch(self.objects[key], body)
                result = copy.deepcopy(self.objects[key])
        if missing:
            self._status(handler, 404, "NotFound", f'{plural} "{name}" not found')
        else:
            self._send(handler, 200, result)

    def _delete(
        self, handler: BaseHTTPRequestHandler, namespace: str, plural: str, name: str, body: dict[str, Any]
    ) -> None:
        with self.lock:
            obj = self.objects.pop((plural, namespace, name), None)
            if obj is not None:  # the garbage collector's part: dependents of the deleted uid go too
                uid = obj["metadata"]["uid"]
                for key, other in list(self.objects.items()):
                    owners = other["metadata"].get("ownerReferences") or []
                    if key[1] == namespace and any(o.get("uid") == uid for o in owners):
                        del self.objects[key]
        if obj is None:
            self._status(handler, 404, "NotFound", f'{plural} "{name}" not found')
        else:
            self._send(handler, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})

    def _log(self, handler: BaseHTTPRequestHandler, namespace: str, pod: str, query: dict[str, str]) -> None:
        if self.get("pods", namespace, pod) is None:
            self._status(handler, 404, "NotFound", f'pods "{pod}" not found')
            return
        key = (namespace, pod)
        with self.lock:
            text = self.logs.get(key, "")
        if query.get("follow") != "true":
            if "tailLines" in query:
                text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]) :])
            data = text.encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        handler.send_response(200)  # HTTP/1.0: the body ends when the connection closes
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()
        sent = 0
        while True:
            with self.lock:
                text = self.logs.get(key, "")
                closed = key in self.closed_logs
            if len(text) > sent:
                handler.wfile.write(text[sent:].encode())
                handler.wfile.flush()
                sent = len(text)
            if closed:
                return
            time.sleep(0.02)
