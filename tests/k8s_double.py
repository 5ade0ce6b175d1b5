"""A small in-memory stand-in for the Kubernetes API server, so jobctl's k8s backend is tested through the real
`kubernetes` client over HTTP/1.1 on 127.0.0.1 (via a generated kubeconfig).

Endpoints (exactly those jobctl uses):
- ``GET /version``;
- namespaced ``configmaps``, ``services``, ``pods``, ``events`` (core/v1), ``jobs`` (batch/v1), ``networkpolicies``
  (networking.k8s.io/v1), ``podgroups`` (scheduling.volcano.sh/v1beta1) and ``workloads`` (kueue.x-k8s.io/v1beta1):
  create (with ``dryRun=All``: admitted but not stored), read, list (``labelSelector`` / ``fieldSelector`` as
  ``key=value`` equalities), JSON merge patch, delete;
- ``pods/<name>/log`` with ``tailLines``, ``timestamps``, ``sinceSeconds``/``sinceTime`` and ``follow``.

Real behaviour each part models, and where it is documented:
- Authentication: every request needs the kubeconfig's bearer token, else ``401 Unauthorized`` (a Status whose
  message is just "Unauthorized", as kube-apiserver answers an expired token). ``deny(verb, plural)`` answers
  ``403 Forbidden`` with RBAC's message ("User ... cannot create resource ..."). (kubernetes.io/docs/reference/
  access-authn-authz/authentication, .../rbac)
- The kubelet's log endpoint (``validateContainerLogStatus`` in pkg/kubelet/kubelet_pods.go): a container that has
  not run yet answers ``400 BadRequest`` 'container "trainer" in pod "p" is waiting to start: ContainerCreating'
  (ErrImagePull / ImagePullBackOff have their own texts; no container status at all: "... - no logs yet").
  ``timestamps=true`` prefixes every line with its RFC3339Nano time; ``sinceSeconds`` / ``sinceTime`` drop older
  lines (PodLogOptions in k8s.io/api/core/v1/types.go). Follow streams are chunked; ``cut_streams`` ends them
  mid-run, cleanly (the kubelet's ``streamingConnectionIdleTimeout``, 4 h by default) or abruptly (an API server
  restart or a load balancer's idle timeout resetting the connection).
- API Priority and Fairness: ``fail_next(..., 429, retry_after=N)`` rejects a request with ``Retry-After``
  (kubernetes.io/docs/concepts/cluster-administration/flow-control); the same hook gives a transient 5xx.
  ``hang_next`` accepts a request and never answers (a half-open connection).
- Foreground deletion (kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion): a
  ``propagationPolicy: Foreground`` delete of an object with dependents sets its ``deletionTimestamp`` and the
  ``foregroundDeletion`` finalizer; it stays readable until its dependents are gone, which takes
  ``deletion_delay`` seconds (the pods' termination grace). Without dependents, or with Background, it goes at
  once and its dependents with it (the garbage collector).
- The TTL-after-finished controller (kubernetes.io/docs/concepts/workloads/controllers/ttlafterfinished): a Job
  with ``ttlSecondsAfterFinished`` is deleted (with its dependents) that many seconds after it finished.
- The Job controller's condition sequence since 1.31 (kubernetes.io/docs/concepts/workloads/controllers/job/
  #termination-of-job-pods): ``finish_job`` first adds ``FailureTarget`` / ``SuccessCriteriaMet``, sets
  ``active`` to 0 and ``terminating`` to the pods still stopping, and adds ``Failed`` / ``Complete`` only
  ``delay`` seconds later, when they have terminated. Before 1.31 the terminal condition comes at once.
- Pod admission (Pod Security, ResourceQuota, LimitRange, pod webhooks) runs on pods only, never on the Job that
  makes them: ``reject_pods`` makes every Pod create, dry run included, answer 403 with that message.

Time is ``clock`` (replaceable by a test's fake clock); the controllers above act lazily, at the next request.
It does NOT model: a Job controller that creates pods (tests add pods, logs and statuses with ``put``,
``set_job_status``, ``append_log``), schema validation, watch, resourceVersion conflicts, strategic merge patch
(every patch is a JSON merge patch), second-precision timestamps (creationTimestamp here has microseconds and
strictly increases), or webhooks that refuse dry runs.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

KINDS = {"configmaps": "ConfigMap", "services": "Service", "pods": "Pod", "events": "Event", "jobs": "Job"}
# Custom resources jobctl uses with --scheduler volcano|kueue (served as plainly as the built-in kinds).
KINDS |= {"podgroups": "PodGroup", "workloads": "Workload", "networkpolicies": "NetworkPolicy"}
KINDS |= {"deployments": "Deployment"}  # `jobctl tensorboard`'s
_PATH = re.compile(
    r"^/(?:api/v1|apis/batch/v1|apis/apps/v1|apis/networking\.k8s\.io/v1|apis/scheduling\.volcano\.sh/v1beta1|apis/kueue\.x-k8s\.io/v1beta1)"
    r"/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?(?:/(log))?$"
)
TOKEN = "not-a-secret"
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}


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


def rfc3339(stamp: datetime, nano: bool = False) -> str:
    if nano:  # RFC3339Nano as Go writes it: trailing zeros of the fraction dropped
        fraction = f"{stamp.microsecond:06d}000".rstrip("0")
        return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Fault:
    """A canned failure for the next ``times`` requests whose method and path match."""

    method: str
    path_part: str
    status: int = 0  # 0: hang (never answer)
    times: int = 1
    retry_after: int | None = None
    message: str = ""
    released: threading.Event = field(default_factory=threading.Event)


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
        self.logs: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        self.closed_logs: set[tuple[str, str]] = set()
        self.cuts: dict[tuple[str, str], tuple[int, bool]] = {}  # pod -> (cut generation, abrupt)
        self.requests: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.denied: set[tuple[str, str]] = set()
        self.reject_pods: str | None = None
        self.token = TOKEN
        self.clock: Callable[[], float] = time.monotonic
        self.deletion_delay = 0.0
        self.pending: list[tuple[float, Callable[[], None]]] = []  # (due on clock, controller action)
        self.lock = threading.RLock()
        self._last_created = datetime.now(UTC)
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
            for fault in self.faults:
                fault.released.set()
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
            "users": [{"name": "tester", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "double", "user": "tester", "namespace": namespace}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # test hooks: objects ------------------------------------------------------------------------------

    def put(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as the API server would (uid, creationTimestamp, namespace filled in)."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        with self.lock:
            # Strictly increasing, so replacement pods sort after the pods they replace without a test sleeping.
            self._last_created = max(datetime.now(UTC), self._last_created + timedelta(microseconds=1))
            meta.setdefault("creationTimestamp", rfc3339(self._last_created))
            meta["namespace"] = namespace
            meta["resourceVersion"] = str(len(self.requests) + 1)
            stored.setdefault("kind", KINDS[plural])
            stored.setdefault("apiVersion", "batch/v1" if plural == "jobs" else "v1")
            self.objects[(plural, namespace, meta["name"])] = stored
        return stored

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            self._run_controllers()
            return copy.deepcopy(self.objects.get((plural, namespace, name)))

    def names(self, plural: str, namespace: str) -> list[str]:
        with self.lock:
            self._run_controllers()
            return sorted(n for (p, ns, n) in self.objects if p == plural and ns == namespace)

    def set_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            job = self.objects[("jobs", namespace, name)]
            job["status"] = status
            if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions", [])):
                self._schedule_ttl(job)

    def finish_job(
        self, namespace: str, name: str, terminal: str, *, reason: str = "", message: str = "", delay: float = 0.0
    ) -> None:
        """The Job controller ending a Job: interim condition now (1.31+), the terminal one after ``delay``."""
        interim = {"Failed": "FailureTarget", "Complete": "SuccessCriteriaMet"}[terminal]
        with self.lock:
            job = self.objects[("jobs", namespace, name)]
            status = job.setdefault("status", {})
            running = int(status.get("active") or 0)
            terminal_cond = {"type": terminal, "status": "True", "reason": reason, "message": message}
            if int(self.version["minor"].rstrip("+")) < 31:
                self.set_job_status(namespace, name, {**status, "active": 0, "conditions": [terminal_cond]})
                return
            interim_cond = {**terminal_cond, "type": interim}
            job["status"] = {**status, "active": 0, "terminating": running, "conditions": [interim_cond]}

            def terminate() -> None:
                done = {**job["status"], "terminating": 0, "conditions": [interim_cond, terminal_cond]}
                self.set_job_status(namespace, name, done)

            self.pending.append((self.clock() + delay, terminate))

    # test hooks: logs ---------------------------------------------------------------------------------

    def append_log(self, namespace: str, pod: str, text: str) -> None:
        with self.lock:
            lines = self.logs.setdefault((namespace, pod), [])
            lines.extend((datetime.now(UTC), line) for line in text.splitlines())

    def close_log(self, namespace: str, pod: str) -> None:
        with self.lock:
            self.closed_logs.add((namespace, pod))

    def cut_streams(self, namespace: str, pod: str, *, abrupt: bool = False) -> None:
        """End the pod's open follow streams now, though the pod runs on."""
        with self.lock:
            generation, _ = self.cuts.get((namespace, pod), (0, False))
            self.cuts[(namespace, pod)] = (generation + 1, abrupt)

    # test hooks: faults -------------------------------------------------------------------------------

    def fail_next(
        self, method: str, path_part: str, status: int, *, times: int = 1, retry_after: int | None = None
    ) -> Fault:
        reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}.get(status, "Error")
        message = "storage is (re)initializing" if status >= 500 else "Too many requests, please try again later."
        fault = Fault(method, path_part, status, times, retry_after, f"{reason}: {message}")
        with self.lock:
            self.faults.append(fault)
        return fault

    def hang_next(self, method: str, path_part: str) -> Fault:
        fault = Fault(method, path_part, status=0)
        with self.lock:
            self.faults.append(fault)
        return fault

    def deny(self, verb: str, plural: str) -> None:
        self.denied.add((verb, plural))

    def calls(self, method: str, path_part: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and path_part in r["path"]]

    # controllers (lazy) -------------------------------------------------------------------------------

    def _run_controllers(self) -> None:
        now = self.clock()
        due = [action for when, action in self.pending if when <= now]
        self.pending = [(when, action) for when, action in self.pending if when > now]
        for action in due:
            action()

    def _schedule_ttl(self, job: dict[str, Any]) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        key = ("jobs", job["metadata"]["namespace"], job["metadata"]["name"])
        uid = job["metadata"]["uid"]

        def expire() -> None:
            if (self.objects.get(key) or {}).get("metadata", {}).get("uid") == uid:
                self._remove(key)

        self.pending.append((self.clock() + ttl, expire))

    def _dependents(self, key: tuple[str, str, str]) -> list[tuple[str, str, str]]:
        uid = self.objects[key]["metadata"]["uid"]
        return [
            other_key
            for other_key, other in self.objects.items()
            if other_key[1] == key[1]
            and any(o.get("uid") == uid for o in other["metadata"].get("ownerReferences") or [])
        ]

    def _remove(self, key: tuple[str, str, str]) -> None:
        """Delete an object and, as the garbage collector does, its dependents."""
        if key not in self.objects:
            return
        for dependent in self._dependents(key):
            self._remove(dependent)
        del self.objects[key]

    # HTTP ---------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the real API server

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

    def _send(
        self, handler: BaseHTTPRequestHandler, code: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _status(
        self,
        handler: BaseHTTPRequestHandler,
        code: int,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message}
        self._send(handler, code, {**body, "code": code}, headers)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_part in path:
                    fault.times -= 1
                    return fault
        return None

    def _refused(self, handler: BaseHTTPRequestHandler, method: str, path: str, plural: str | None) -> bool:
        """Authentication, RBAC and injected faults; True if the request was answered with an error."""
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            self._status(handler, 401, "Unauthorized", "Unauthorized")
            return True
        verb = "list" if method == "GET" and plural and path.rstrip("/").endswith(plural) else VERBS.get(method, "")
        if plural and (verb, plural) in self.denied:
            group = "batch" if plural == "jobs" else ""
            resource = f"{plural}.batch" if group else plural
            message = (
                f'{resource} is forbidden: User "system:serviceaccount:team-a:jobctl" cannot {verb} resource '
                f'"{plural}" in API group "{group}" in the namespace "team-a"'
            )
            self._status(handler, 403, "Forbidden", message)
            return True
        fault = self._take_fault(method, path)
        if fault is None:
            return False
        if fault.status == 0:  # half-open: the request was read, no answer ever comes
            fault.released.wait(60)
            handler.close_connection = True
            return True
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        reason, _, message = fault.message.partition(": ")
        self._status(handler, fault.status, reason, message, headers)
        return True

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"null") if length else None
        with self.lock:
            self.requests.append({"method": method, "path": url.path, "query": query, "body": body})
            self._run_controllers()
        match = _PATH.match(url.path)
        if self._refused(handler, method, url.path, match.group(2) if match else None):
            return
        if url.path.rstrip("/") == "/version":
            self._send(handler, 200, self.version)
            return
        if not match or match.group(2) not in KINDS:
            self._status(handler, 404, "NotFound", f"the double does not serve {url.path}")
            return
        namespace, plural, name, log = match.groups()
        if log:
            self._log(handler, namespace, name, query)
        elif name is None and method == "GET":
            self._list(handler, namespace, plural, query)
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
            self._delete(handler, namespace, plural, name, query, body or {})
        else:
            self._status(handler, 405, "MethodNotAllowed", f"{method} {url.path}")

    def _list(self, handler: BaseHTTPRequestHandler, namespace: str, plural: str, query: dict[str, str]) -> None:
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (p, ns, _), o in self.objects.items()
                if p == plural
                and ns == namespace
                and _matches(o, query.get("labelSelector"), query.get("fieldSelector"))
            ]
        items.sort(key=lambda o: o["metadata"]["name"])  # the real server lists by key (name), not by time
        kind = KINDS[plural]
        self._send(handler, 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": items})

    def _create(
        self, handler: BaseHTTPRequestHandler, namespace: str, plural: str, body: dict[str, Any], query: dict[str, str]
    ) -> None:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            self._status(handler, 422, "Invalid", "metadata.name: Required value")
            return
        if plural == "pods" and self.reject_pods:  # pod admission, which the Job's own dry run never meets
            self._status(handler, 403, "Forbidden", f'pods "{name}" is forbidden: {self.reject_pods}')
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
            result = None
            if key in self.objects:
                self.objects[key] = merge_patch(self.objects[key], body)
                result = copy.deepcopy(self.objects[key])
        if result is None:
            self._status(handler, 404, "NotFound", f'{plural} "{name}" not found')
        else:
            self._send(handler, 200, result)

    def _delete(
        self,
        handler: BaseHTTPRequestHandler,
        namespace: str,
        plural: str,
        name: str,
        query: dict[str, str],
        body: dict[str, Any],
    ) -> None:
        key = (plural, namespace, name)
        policy = query.get("propagationPolicy") or body.get("propagationPolicy") or "Background"
        with self.lock:
            obj = self.objects.get(key)
            if obj is not None:
                self._start_deletion(key, policy)
        if obj is None:
            self._status(handler, 404, "NotFound", f'{plural} "{name}" not found')
        elif plural in ("services", "pods"):  # their registries answer with the deleted object, others a Status
            self._send(handler, 200, obj)
        else:
            self._send(handler, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})

    def _start_deletion(self, key: tuple[str, str, str], policy: str) -> None:
        obj = self.objects[key]
        dependents = self._dependents(key)
        if policy != "Foreground" or not dependents or self.deletion_delay <= 0:
            self._remove(key)
            return
        if obj["metadata"].get("deletionTimestamp"):
            return  # already being deleted
        stamp = rfc3339(datetime.now(UTC))
        obj["metadata"]["deletionTimestamp"] = stamp
        obj["metadata"]["finalizers"] = ["foregroundDeletion"]
        for dependent in dependents:
            self.objects[dependent]["metadata"]["deletionTimestamp"] = stamp
        uid = obj["metadata"]["uid"]

        def finish() -> None:  # the dependents' grace is over: they go, then the owner's finalizer is removed
            if (self.objects.get(key) or {}).get("metadata", {}).get("uid") == uid:
                self._remove(key)

        self.pending.append((self.clock() + self.deletion_delay, finish))

    # logs (the kubelet's part) ------------------------------------------------------------------------

    def _not_started(self, pod: dict[str, Any], container: str) -> str | None:
        """validateContainerLogStatus: why there are no logs of a container that has not run yet, else None."""
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == container), None)
        where = f'container "{container}" in pod "{pod["metadata"]["name"]}"'
        if status is None:
            return f"{where} is waiting to start - no logs yet"
        state, last = status.get("state") or {}, status.get("lastState") or {}
        if "running" in state or "terminated" in state or "terminated" in last:
            return None
        reason = (state.get("waiting") or {}).get("reason") or ""
        texts = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}
        return f"{where} is waiting to start: {texts.get(reason, reason)}"

    def _log_lines(self, key: tuple[str, str], query: dict[str, str], start: int) -> list[str]:
        with self.lock:
            entries = list(self.logs.get(key, []))[start:]
        since: datetime | None = None
        if "sinceSeconds" in query:
            since = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"]))
        elif "sinceTime" in query:
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
        stamps = query.get("timestamps") == "true"
        return [
            (f"{rfc3339(when, nano=True)} {line}" if stamps else line) + "\n"
            for when, line in entries
            if since is None or when >= since
        ]

    def _log(self, handler: BaseHTTPRequestHandler, namespace: str, pod: str, query: dict[str, str]) -> None:
        found = self.get("pods", namespace, pod)
        if found is None:
            self._status(handler, 404, "NotFound", f'pods "{pod}" not found')
            return
        waiting = self._not_started(found, query.get("container", "trainer"))
        if waiting:
            self._status(handler, 400, "BadRequest", waiting)
            return
        key = (namespace, pod)
        if query.get("follow") != "true":
            lines = self._log_lines(key, query, 0)
            if "tailLines" in query:
                lines = lines[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
            data = "".join(lines).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        self._follow(handler, key, query)

    def _follow(self, handler: BaseHTTPRequestHandler, key: tuple[str, str], query: dict[str, str]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        with self.lock:
            generation = self.cuts.get(key, (0, False))[0]
        sent = 0
        while True:
            with self.lock:
                total = len(self.logs.get(key, []))
                closed = key in self.closed_logs
                cut_generation, abrupt = self.cuts.get(key, (0, False))
            if total > sent:
                data = "".join(self._log_lines(key, query, sent)).encode()
                sent = total
                if data:
                    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    handler.wfile.flush()
            if cut_generation != generation and abrupt:  # a reset: no final chunk, the connection just goes
                handler.close_connection = True
                handler.wfile.flush()
                handler.connection.shutdown(2)
                return
            if closed or cut_generation != generation:
                handler.wfile.write(b"0\r\n\r\n")
                handler.wfile.flush()
                return
            time.sleep(0.02)
