"""One client of the Kubernetes API for jobctl: every call through ``k8s_api.Caller`` (timeout, retries, errors as
a BackendError naming what failed), ONE table of the kinds jobctl creates, patches, reads and deletes (the PodGroup
and the NetworkPolicy are rows like the others), and the waits on Jobs.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jobctl.backends.base import FINISHED, UNKNOWN, BackendError, WaitTimeout
from jobctl.backends.k8s.api import ApiError, Caller
from jobctl.backends.k8s.readers import CONTAINER, job_phase, pod_created, pod_index, quantities_as_strings
from jobctl.render import JOB_NAME_LABEL

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

T = TypeVar("T")
INSTANCE_LABEL = "app.kubernetes.io/instance"
# Deleting a Job (Foreground) waits for its pods' termination grace; this much more for the kubelet and controllers.
DELETE_MARGIN_SECONDS = 120.0
MERGE_PATCH = "application/merge-patch+json"
STREAM_TIMEOUT = (10.0, 600.0)  # a log stream silent this long is re-attached (progress lines come every minute)


@dataclass(frozen=True)
class Kind:
    """How the API serves one kind: which client (``api``) and the suffix of its ``*_namespaced_<suffix>`` methods;
    a custom resource also has its (group, version, plural) and a hint for a cluster that does not serve it."""

    api: str  # "core", "batch", "networking" or "custom"
    suffix: str
    custom: tuple[str, str, str] | None = None
    missing_api_hint: str = ""
    before_job: bool = False  # created before the Job (then owned by it), see K8sBackend


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("core", "config_map"),
    "Service": Kind("core", "service"),
    "Job": Kind("batch", "job"),
    # No pod may run before its NetworkPolicy exists.
    "NetworkPolicy": Kind("networking", "network_policy", before_job=True),
    # Volcano looks for the PodGroup when the first pod arrives.
    "PodGroup": Kind(
        "custom",
        "custom_object",
        ("scheduling.volcano.sh", "v1beta1", "podgroups"),
        "install Volcano or choose --scheduler kueue|default",
        before_job=True,
    ),
}


def stderr_note(message: str) -> None:
    from jobctl import output

    output.note(message)


class Client:
    """The namespace's API, with the clock, sleep and poll interval the waits use (tests replace them)."""

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        poll_seconds: float = 2.0,
        *,
        caller: Caller | None = None,
        note: Callable[[str], None] = stderr_note,
    ) -> None:
        from kubernetes import client as k8s

        self.api_client = client
        self.namespace = namespace
        self.poll_seconds = poll_seconds
        self.caller = caller or Caller(client.configuration.host)
        self.note = note  # progress and warnings for people (stderr)
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.stream_timeout: Any = STREAM_TIMEOUT
        self.core = k8s.CoreV1Api(client)
        self.batch = k8s.BatchV1Api(client)
        self.networking = k8s.NetworkingV1Api(client)
        self.custom = k8s.CustomObjectsApi(client)
        self.version_api = k8s.VersionApi(client)

    # calls ------------------------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call (timeout, retries); errors become a BackendError naming what failed and why."""
        # Without not_found_ok every error raises, so the result is whatever fn returned.
        return cast(T, self.caller(what, fn, *args, not_found_ok=False, **kwargs))

    def get(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """A read that returns None on 404."""
        return self.caller(what, fn, *args, not_found_ok=True, **kwargs)

    def server_version(self) -> str:
        """The API server's "major.minor"."""
        info = self.call("read the server version", self.version_api.get_code)
        minor = re.sub(r"\D.*$", "", str(info.minor))
        return f"{info.major}.{minor}"

    # the kinds table --------------------------------------------------------------------------------------

    def _method(self, kind: str, verb: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """The client method for ``verb`` of ``kind`` and the arguments before the name/body ones."""
        row = KINDS.get(kind)
        if row is None:
            raise BackendError(f"jobctl does not know how to {verb} a {kind}; this is a jobctl bug")
        verb = "get" if (verb == "read" and row.custom) else verb
        fn = getattr(getattr(self, row.api), f"{verb}_namespaced_{row.suffix}")
        if row.custom is None:
            return fn, ()
        group, version, plural = row.custom
        return fn, (group, version, self.namespace, plural)

    def _args(self, kind: str, verb: str, *rest: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Core kinds take (name, namespace, body) or (namespace, body); custom ones (g, v, ns, plural, ...)."""
        fn, prefix = self._method(kind, verb)
        if prefix:
            return fn, (*prefix, *rest)
        if verb == "create":
            return fn, (self.namespace, *rest)
        return fn, (rest[0], self.namespace, *rest[1:])

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> Any:
        kind, name = obj["kind"], obj["metadata"]["name"]
        fn, args = self._args(kind, "create", quantities_as_strings(obj))
        what = f"{'dry-run ' if dry_run else ''}create {kind} {name}"
        kwargs = {"dry_run": "All"} if dry_run else {}
        try:
            return self.call(what, fn, *args, idempotent=False, **kwargs)
        except ApiError as exc:
            if exc.status == 404 and KINDS[kind].missing_api_hint:
                plural, group = KINDS[kind].custom[2], KINDS[kind].custom[0]  # type: ignore[index]
                hint = KINDS[kind].missing_api_hint
                raise BackendError(f"{what}: the cluster serves no {plural}.{group} API; {hint}", 2) from None
            if exc.status != 409:
                raise
            instance = (obj["metadata"].get("labels") or {}).get(INSTANCE_LABEL, name)
            raise ApiError(
                f"{exc.message} (left over from an earlier or interrupted submit? `jobctl delete {instance}` or "
                "`jobctl submit --replace` removes it)",
                status=409,
                exit_code=2,
            ) from None

    def set_owner(self, obj: dict[str, Any], owner: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        fn, args = self._args(kind, "patch", name, {"metadata": {"ownerReferences": [owner]}})
        self.call(f"set the owner of {kind} {name}", fn, *args, _content_type=MERGE_PATCH)

    def read(self, kind: str, name: str) -> Any:
        """The object, or None when there is none."""
        fn, args = self._args(kind, "read", name)
        return self.get(f"read {kind} {name}" if KINDS[kind].custom else f"read {kind}", fn, *args)

    def delete(self, kind: str, name: str, **kwargs: Any) -> bool:
        """Delete, ignoring 404; True if something was deleted."""
        fn, args = self._args(kind, "delete", name)
        return self.get(f"delete {kind} {name}", fn, *args, **kwargs) is not None

    def remove(self, obj: dict[str, Any]) -> None:
        """Delete what a failed submit created, never raising (the first error is the one to show)."""
        with contextlib.suppress(BackendError):
            self.delete(obj["kind"], obj["metadata"]["name"], propagation_policy="Background")

    def list_custom(self, what: str, coordinates: tuple[str, str, str], selector: str) -> Any:
        group, version, plural = coordinates
        fn = self.custom.list_namespaced_custom_object
        return self.get(what, fn, group, version, self.namespace, plural, label_selector=selector)

    # Jobs and pods ----------------------------------------------------------------------------------------

    def read_job_or_none(self, name: str) -> Any:
        return self.read("Job", name)

    def pods_of(self, name: str) -> list[Any]:
        selector = f"{JOB_NAME_LABEL}={name}"
        result = self.call("list pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        return sorted(result.items, key=lambda p: (pod_index(p), pod_created(p)))

    def pod_log_lines(self, pod: str, tail: int | None = None) -> list[str]:
        kwargs: dict[str, Any] = {"container": CONTAINER}
        if tail is not None:
            kwargs["tail_lines"] = tail
        text = self.get("read pod log", self.core.read_namespaced_pod_log, pod, self.namespace, **kwargs)
        return str(text or "").splitlines()

    def available_log(self, pod: str, tail: int | None = None, quiet: bool = False) -> list[str] | None:
        """The pod's log, or None (said on stderr unless quiet) while there is none: the kubelet answers 400 for a
        container that has not started (image pull, volume mounts) and errors for a node that is gone."""
        try:
            return self.pod_log_lines(pod, tail)
        except BackendError as exc:
            if not quiet:
                self.note(f"pod {pod}: no log to show yet, skipped ({exc.message})")
            return None

    def wait_gone(self, jobs: list[str], grace: float) -> None:
        """Wait until the Jobs are gone: with Foreground deletion only after their pods (which save and stop
        within their termination grace) are."""
        budget = grace + DELETE_MARGIN_SECONDS
        deadline = self.clock() + budget
        for job in jobs:
            told = None
            while self.read_job_or_none(job) is not None:
                pods = len(self.pods_of(job))
                if pods != told:
                    self.note(
                        f"waiting for Job {job} to be deleted: {pods} pod(s) still stopping "
                        f"(termination grace {grace:g} s; giving up after {budget:g} s)"
                    )
                    told = pods
                if self.clock() > deadline:
                    raise BackendError(
                        f"Job {job} is still being deleted after {budget:g} s ({pods} pod(s) left); see "
                        f"`kubectl get pods -n {self.namespace} -l {JOB_NAME_LABEL}={job}` (an unreachable node or "
                        "a finalizer can hold them) and try again"
                    )
                self.sleep(self.poll_seconds)

    def wait_job(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        """Until the Job's terminal condition (not the 1.31+ interim ones) or for_phase. A Job that disappears
        after it was seen was cleaned up (TTL) or deleted: that is an end too, of unknown outcome."""
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            job = self.read_job_or_none(name)
            if job is None:
                self.note(f"Job {name} was deleted (TTL cleanup or a delete): treating it as finished")
                return UNKNOWN
            phase = job_phase(job)
            if phase in FINISHED or phase == for_phase:
                return phase
            if deadline is not None and self.clock() >= deadline:
                raise WaitTimeout(f"Job {name} is still {phase} after {timeout:g} s")
            self.sleep(self.poll_seconds)
