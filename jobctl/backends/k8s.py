"""The Kubernetes backend: the official `kubernetes` client against any cluster, no operator or CRD.

Objects jobctl creates for job ``<name>``: the rendered ConfigMap ``<name>-config``, Service ``<name>``,
NetworkPolicy ``<name>`` and Indexed Job ``<name>`` (the others then owned by the Job, so its deletion or TTL
cleanup cascades), plus ``<name>-spec``: a ConfigMap holding the resolved spec that is NOT owned by the Job. It
outlives TTL cleanup so ``jobctl eval`` can still build an eval Job, and it tells ``submit`` that the name was used
before (the job directory on the shared volume, with its checkpoints, is not reachable from a laptop). ``jobctl
delete`` removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

from jobctl.backends import k8s_gang
from jobctl.backends.base import (
    COMPLETE,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    Backend,
    BackendError,
    JobInfo,
    JobNotFound,
    PodInfo,
    WaitTimeout,
    keep_line,
    last_json_line,
    latest_progress,
    spec_from_yaml,
)
from jobctl.render import JOB_NAME_LABEL, config_map_name, eval_job_name, rings_config_name
from trainer.launcher.contract import Var

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from jobctl.spec import JobSpec

T = TypeVar("T")
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY = {"app.kubernetes.io/managed-by": "jobctl"}
CONTAINER = "trainer"
_SAVED = re.compile(r"rank=0 saved (\S+)")
_VERSION = re.compile(r"^(\d+)\.(\d+)")


def record_name(name: str) -> str:
    return f"{name}-spec"


def clamp_version(version: str, supported: list[str]) -> str:
    """The server's minor version clamped into the supported range ("1.28" -> oldest, "1.40" -> newest)."""

    def key(text: str) -> tuple[int, int]:
        match = _VERSION.match(text)
        return (int(match.group(1)), int(match.group(2))) if match else (0, 0)

    ordered = sorted(supported, key=key)
    wanted = key(version)
    if wanted <= key(ordered[0]):
        return ordered[0]
    if wanted >= key(ordered[-1]):
        return ordered[-1]
    return next(v for v in ordered if key(v) >= wanted)


def api_client(context: str | None) -> ApiClient:
    """A client from the kubeconfig (``--context`` or its current context), else the in-cluster service account."""
    from kubernetes import client, config

    try:
        # The client reads $KUBECONFIG once, at import; read it now so a changed environment counts.
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"), context=context)
    except (config.ConfigException, FileNotFoundError, OSError) as exc:
        if context is not None:
            raise BackendError(f"--context {context}: cannot load it from the kubeconfig: {exc}", exit_code=2) from None
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            raise BackendError(
                f"no Kubernetes cluster configured: {exc}. Set KUBECONFIG or --context, or use --backend local",
                exit_code=2,
            ) from None
        return client.ApiClient(configuration)


class K8sBackend(Backend):
    name = "k8s"

    def __init__(self, client: ApiClient, namespace: str, poll_seconds: float = 2.0) -> None:
        from kubernetes import client as k8s

        self.client = client
        self.namespace = namespace
        self.poll_seconds = poll_seconds
        self.core = k8s.CoreV1Api(client)
        self.batch = k8s.BatchV1Api(client)
        self.networking = k8s.NetworkingV1Api(client)
        self.version_api = k8s.VersionApi(client)

    # plumbing ---------------------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call; errors become a BackendError naming what failed and the server's message."""
        # Without _not_found_ok every error raises, so the result is whatever fn returned.
        return cast(T, self.call_or_none(what, fn, *args, **kwargs, _not_found_ok=False))

    def call_or_none(
        self, what: str, fn: Callable[..., T], *args: Any, _not_found_ok: bool = True, **kwargs: Any
    ) -> T | None:
        """Like call; with _not_found_ok a 404 gives None (a read or delete of something that is not there)."""
        from kubernetes.client.exceptions import ApiException
        from pydantic import ValidationError
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:  # the client validates responses; a proxy's error page fails that
            raise BackendError(f"{what}: the API server's answer is not what the client expects: {exc}") from None
        except ApiException as exc:
            if exc.status == 404 and _not_found_ok:
                return None
            message = exc.reason
            with contextlib.suppress(ValueError, TypeError):
                message = json.loads(exc.body or "{}").get("message", message)
            code = 2 if exc.status in (400, 403, 409, 422) else 1
            hint = " (the Role in k8s/ grants what jobctl needs)" if exc.status == 403 else ""
            raise BackendError(f"{what}: HTTP {exc.status} {message}{hint}", exit_code=code) from None
        except HTTPError as exc:
            host = self.client.configuration.host
            raise BackendError(f"{what}: cannot reach the Kubernetes API at {host}: {exc}") from None

    def get(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """A read that returns None on 404."""
        return self.call_or_none(what, fn, *args)

    def delete_quietly(self, what: str, fn: Callable[..., Any], name: str, **kwargs: Any) -> bool:
        """Delete, ignoring 404; True if something was deleted."""
        return self.call_or_none(f"delete {what} {name}", fn, name, self.namespace, **kwargs) is not None

    def server_version(self) -> str:
        """The API server's "major.minor"."""
        info = self.call("read the server version", self.version_api.get_code)
        minor = re.sub(r"\D.*$", "", str(info.minor))
        return f"{info.major}.{minor}"

    # submit -----------------------------------------------------------------------------------------------

    def check_name(self, spec: JobSpec, *, resume: bool, replace: bool) -> None:
        """Refuse a name in use: a live Job, or a spec record (its job directory may hold checkpoints)."""
        name = spec.name
        job = self.get("read Job", self.batch.read_namespaced_job, name, self.namespace)
        record = self.get("read ConfigMap", self.core.read_namespaced_config_map, record_name(name), self.namespace)
        if replace:
            if job is not None or record is not None:
                self.delete(name, wait=True)
            return
        if job is not None and _job_phase(job) not in FINISHED:
            raise BackendError(
                f"name: a Job {name!r} is still running in namespace {self.namespace}; choose another --name, "
                f"`jobctl delete {name}`, or pass --replace",
                exit_code=2,
            )
        if (record is not None or job is not None) and not resume:
            evidence = f"Job {name}" if job is not None else f"ConfigMap {record_name(name)}"
            raise BackendError(
                f"name: a job {name!r} ran before in namespace {self.namespace} ({evidence}); its "
                f"job directory /shared/jobs/{name} may hold checkpoints, which jobctl cannot check from here. Pass "
                "--resume to continue from them, --replace to delete the old job's objects, or choose another --name",
                exit_code=2,
            )
        if job is not None:  # finished and resuming: the old objects would clash with the new ones
            self.delete(name, wait=True, keep_record=True)

    def submit(self, spec: JobSpec, objects: list[dict[str, Any]], *, resume: bool, replace: bool) -> str:
        self.check_name(spec, resume=resume, replace=replace)
        self.create_owned(objects, spec.name)
        try:
            self.write_record(spec)
        except BackendError:
            self.delete(spec.name)
            raise
        ns = self.namespace
        return (
            f"job {spec.name} created in namespace {ns}; follow it with `jobctl logs {spec.name} -f -n {ns}`, "
            f"`jobctl status {spec.name} -n {ns}` or `kubectl logs -n {ns} -f job/{spec.name}`"
        )

    def create_owned(self, objects: list[dict[str, Any]], job_name: str) -> None:
        """Create ConfigMaps, Service, then the Job; make the others owned by the Job. All or nothing."""
        ordered = sorted(objects, key=lambda o: {"ConfigMap": 0, "Service": 1, "Job": 3}.get(o["kind"], 2))
        for obj in ordered:  # server-side dry run first: admission errors surface before anything exists
            self.create(obj, dry_run=True)
        created: list[dict[str, Any]] = []
        try:
            for obj in ordered:
                self.create(obj)
                created.append(obj)
            job = self.call("read Job", self.batch.read_namespaced_job, job_name, self.namespace)
            owner = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job_name,
                "uid": job.metadata.uid,
                "blockOwnerDeletion": True,
            }
            for obj in created:
                if obj["kind"] != "Job":
                    self.set_owner(obj, owner)
        except BackendError:
            for obj in reversed(created):  # nothing half created
                self.remove(obj)
            raise

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in k8s_gang.CUSTOM:
            return k8s_gang.create(self, obj, dry_run)
        creators: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
            "NetworkPolicy": self.networking.create_namespaced_network_policy,
            "Job": self.batch.create_namespaced_job,
        }
        if kind not in creators:
            raise BackendError(f"jobctl does not know how to create a {kind} ({name}); this is a jobctl bug")
        what = f"{'dry-run ' if dry_run else ''}create {kind} {name}"
        kwargs = {"dry_run": "All"} if dry_run else {}
        self.call(what, creators[kind], self.namespace, quantities_as_strings(obj), **kwargs)

    def set_owner(self, obj: dict[str, Any], owner: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in k8s_gang.CUSTOM:
            return k8s_gang.set_owner(self, obj, owner)
        patch = {"metadata": {"ownerReferences": [owner]}}
        patcher = {"ConfigMap": self.core.patch_namespaced_config_map, "Service": self.core.patch_namespaced_service}
        patcher["NetworkPolicy"] = self.networking.patch_namespaced_network_policy
        self.call(
            f"set the owner of {kind} {name}",
            patcher[kind],
            name,
            self.namespace,
            patch,
            _content_type="application/merge-patch+json",
        )

    def remove(self, obj: dict[str, Any]) -> None:
        if obj["kind"] in k8s_gang.CUSTOM:
            with contextlib.suppress(BackendError):
                k8s_gang.remove(self, obj)
            return
        deleters: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.delete_namespaced_config_map,
            "Service": self.core.delete_namespaced_service,
            "NetworkPolicy": self.networking.delete_namespaced_network_policy,
            "Job": self.batch.delete_namespaced_job,
        }
        with contextlib.suppress(BackendError):
            self.delete_quietly(
                obj["kind"], deleters[obj["kind"]], obj["metadata"]["name"], propagation_policy="Background"
            )

    def write_record(self, spec: JobSpec) -> None:
        record = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": record_name(spec.name),
                "labels": {INSTANCE_LABEL: spec.name, "app.kubernetes.io/component": "spec", **MANAGED_BY},
            },
            "data": {"spec.yaml": spec.to_yaml()},
        }
        self.delete_quietly("ConfigMap", self.core.delete_namespaced_config_map, record_name(spec.name))
        self.create(record)

    # delete -----------------------------------------------------------------------------------------------

    def delete(self, name: str, wait: bool = False, keep_record: bool = False) -> None:
        """Delete the Job (Foreground: pods first), its eval Job and the ConfigMaps/Service it owns or left."""
        deleted = False
        for job in (name, eval_job_name(name)):
            deleted |= self.delete_quietly(
                "Job", self.batch.delete_namespaced_job, job, propagation_policy="Foreground"
            )
        # Owned objects go with the Job; delete them directly too in case the owner patch never happened.
        maps = [config_map_name(name), config_map_name(eval_job_name(name)), rings_config_name(name)]
        maps += [] if keep_record else [record_name(name)]
        for cm in maps:
            deleted |= self.delete_quietly("ConfigMap", self.core.delete_namespaced_config_map, cm)
        deleted |= self.delete_quietly("Service", self.core.delete_namespaced_service, name)
        for policy in (name, eval_job_name(name)):
            self.delete_quietly("NetworkPolicy", self.networking.delete_namespaced_network_policy, policy)
        if not deleted:
            raise JobNotFound(f"no job {name!r} in namespace {self.namespace}; `jobctl list -n NS` shows the jobs")
        if wait:
            self.wait_gone([name, eval_job_name(name)])

    def wait_gone(self, jobs: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for job in jobs:
            while self.get("read Job", self.batch.read_namespaced_job, job, self.namespace) is not None:
                if time.monotonic() > deadline:
                    raise BackendError(f"Job {job} is still being deleted after {timeout:g} s; try again later")
                time.sleep(self.poll_seconds)

    # status / list ----------------------------------------------------------------------------------------

    def read_job(self, name: str) -> Any:
        job = self.get("read Job", self.batch.read_namespaced_job, name, self.namespace)
        if job is None:
            record = self.get("read ConfigMap", self.core.read_namespaced_config_map, record_name(name), self.namespace)
            hint = (
                " (it finished and was cleaned up; `jobctl eval` still works from its spec record)"
                if record is not None
                else "; `jobctl list` shows the jobs"
            )
            raise JobNotFound(f"no Job {name!r} in namespace {self.namespace}{hint}")
        return job

    def pods_of(self, name: str) -> list[Any]:
        result = self.call(
            "list pods",
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{JOB_NAME_LABEL}={name}",
        )
        return sorted(result.items, key=lambda p: (_pod_index(p), _created(p)))

    def status(self, name: str) -> JobInfo:
        job = self.read_job(name)
        pods = self.pods_of(name)
        info = self.summary(job)
        info.pods = current_pods(pods)
        info.restarts = sum(p.restarts for p in info.pods)
        if info.phase == RUNNING and not any(p.phase == "Running" for p in info.pods):
            info.phase = PENDING
        newest_pod0 = next((p for p in reversed(pods) if _pod_index(p) == 0), None)
        if newest_pod0 is not None and newest_pod0.status and newest_pod0.status.phase != "Pending":
            lines = self.pod_log_lines(newest_pod0.metadata.name, tail=400)
            info.progress = latest_progress(lines)
            saved = [m.group(1) for m in map(_SAVED.search, lines) if m]
            info.checkpoint = saved[-1] if saved else None
        info.explanation = self.explain(job, info, pods)
        return info

    def summary(self, job: Any) -> JobInfo:
        env = {e.name: e.value for e in (job.spec.template.spec.containers[0].env or [])}
        created = job.metadata.creation_timestamp
        return JobInfo(
            name=job.metadata.name,
            namespace=job.metadata.namespace or self.namespace,
            phase=_job_phase(job),
            platform=str(env.get(Var.FAMILY) or ""),
            devices=int(env.get(Var.NUM_PODS) or 0) * int(env.get(Var.DEVICES_PER_POD) or 0),
            pods_total=int(job.spec.completions or 0),
            restarts=int(job.status.failed or 0) if job.status else 0,
            created=created.isoformat() if hasattr(created, "isoformat") else created,
        )

    def list_jobs(self) -> list[JobInfo]:
        result = self.call(
            "list Jobs",
            self.batch.list_namespaced_job,
            self.namespace,
            label_selector="app.kubernetes.io/managed-by=jobctl,app.kubernetes.io/component=trainer",
        )
        return [self.summary(job) for job in result.items]

    def explain(self, job: Any, info: JobInfo, pods: list[Any]) -> str | None:
        """One line on why a job is Pending or Failed."""
        if info.phase == FAILED:
            condition = _condition(job, "Failed")
            text = f"{condition.reason}: {condition.message}" if condition else "the Job failed"
            failed = [p for p in info.pods if p.exit_code not in (None, 0)]
            if failed:
                first = failed[0]
                text += f"; first failing pod {first.name} exited {first.exit_code} ({first.reason or 'Error'})"
            return text
        if info.phase != PENDING:
            return None
        gang = k8s_gang.explain_waiting(self, job)
        if gang:
            return gang
        if _condition(job, "Suspended") is not None:
            return "the Job is suspended (queued by Kueue or suspended by hand)"
        for pod in pods:
            for cond in (pod.status.conditions or []) if pod.status else []:
                if cond.type == "PodScheduled" and cond.status == "False":
                    return f"pod {pod.metadata.name} is not scheduled: {cond.reason}: {cond.message}"
            for status in (pod.status.container_statuses or []) if pod.status else []:
                waiting = status.state.waiting if status.state else None
                if waiting and waiting.reason not in (None, "ContainerCreating", "PodInitializing"):
                    return f"pod {pod.metadata.name} is waiting: {waiting.reason}: {waiting.message or ''}".rstrip(": ")
        if pods:
            event = self.last_warning(pods[-1].metadata.name)
            if event:
                return event
            return "pods are starting (pulling the image or mounting volumes)"
        return "no pods yet: the Job controller has not created them (quota, admission or a suspended queue)"

    def last_warning(self, pod_name: str) -> str | None:
        events = self.call(
            "list events",
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.name={pod_name}",
        )
        warnings = [e for e in events.items if e.type == "Warning"]
        if not warnings:
            return None
        event = warnings[-1]
        return f"pod {pod_name}: {event.reason}: {event.message}"

    # logs -------------------------------------------------------------------------------------------------

    def pod_log_lines(self, pod: str, tail: int | None = None) -> list[str]:
        kwargs: dict[str, Any] = {"container": CONTAINER}
        if tail is not None:
            kwargs["tail_lines"] = tail
        text = self.get("read pod log", lambda: self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs))
        return str(text or "").splitlines()

    def index_of_rank(self, job: Any, rank: int) -> int:
        env = {e.name: e.value for e in (job.spec.template.spec.containers[0].env or [])}
        per_pod = int(env.get(Var.DEVICES_PER_POD) or 1)
        return rank // per_pod

    def logs(self, name: str, out: TextIO, *, follow: bool, rank: int | None) -> None:
        job = self.read_job(name)
        index = None if rank is None else self.index_of_rank(job, rank)
        if not follow:
            for pod in current(self.pods_of(name)):
                if index is None or _pod_index(pod) == index:
                    for line in self.pod_log_lines(pod.metadata.name):
                        if keep_line(line, rank):
                            out.write(line + "\n")
            return
        self.follow(name, out, index, rank)

    def follow(self, name: str, out: TextIO, index: int | None, rank: int | None) -> None:
        """Stream every pod of the job (re-attaching to replacement pods) until the Job finishes."""
        lines: queue.Queue[str] = queue.Queue()
        followed: dict[str, threading.Thread] = {}
        while True:
            job = self.read_job(name)
            for pod in self.pods_of(name):
                pod_name = pod.metadata.name
                started = pod.status is not None and pod.status.phase in ("Running", "Succeeded", "Failed")
                if pod_name in followed or not started or (index is not None and _pod_index(pod) != index):
                    continue
                thread = threading.Thread(target=self.stream_pod, args=(pod_name, lines), daemon=True)
                thread.start()
                followed[pod_name] = thread
            finished = _job_phase(job) in FINISHED
            if finished:
                for thread in followed.values():
                    thread.join(timeout=10)
            while not lines.empty():
                line = lines.get()
                if keep_line(line, rank):
                    out.write(line + "\n")
            out.flush()
            if finished:
                return
            time.sleep(self.poll_seconds)

    def stream_pod(self, pod: str, lines: queue.Queue[str]) -> None:
        with contextlib.suppress(Exception):  # a pod deleted mid-stream just ends its stream
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, container=CONTAINER, follow=True, _preload_content=False
            )
            for line in _iter_lines(response):
                lines.put(line)

    # wait -------------------------------------------------------------------------------------------------

    def wait(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            phase = _job_phase(self.read_job(name))
            if phase in FINISHED or phase == for_phase:
                return phase
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"Job {name} is still {phase} after {timeout:g} s")
            time.sleep(self.poll_seconds)

    # eval -------------------------------------------------------------------------------------------------

    def load_spec(self, name: str) -> JobSpec:
        for cm in (record_name(name), config_map_name(name)):
            found = self.get("read ConfigMap", self.core.read_namespaced_config_map, cm, self.namespace)
            if found is not None and "spec.yaml" in (found.data or {}):
                return spec_from_yaml(found.data["spec.yaml"], f"ConfigMap {cm}")
        raise JobNotFound(
            f"no spec of job {name!r} in namespace {self.namespace} (neither ConfigMap {record_name(name)} nor "
            f"{config_map_name(name)}); check the name and -n"
        )

    def evaluate(self, spec: JobSpec, checkpoint: str, data: str | None, kube_version: str | None = None) -> dict:
        """Run trainer.evaluate as the one-device Job ``<name>-eval``, wait, and read its result line."""
        from jobctl.render import render_eval

        # "latest": the pod's checkpoint directory; trainer.evaluate takes its newest valid checkpoint.
        target = spec.ckpt_dir if checkpoint == "latest" else checkpoint
        if not target.startswith("/"):
            target = f"{spec.ckpt_dir}/{target}"
        version = kube_version or clamp_version(self.server_version(), _supported())
        data_dir = data or spec.val_dir
        if data_dir is None:
            raise BackendError("--data: the job's spec has no validation set (data.val_subpath); pass --data", 2)
        objects = render_eval(spec, target, data_dir, version)
        job_name = eval_job_name(spec.name)
        self.delete_quietly("Job", self.batch.delete_namespaced_job, job_name, propagation_policy="Foreground")
        self.delete_quietly("ConfigMap", self.core.delete_namespaced_config_map, config_map_name(job_name))
        self.delete_quietly("NetworkPolicy", self.networking.delete_namespaced_network_policy, job_name)
        self.wait_gone([job_name])
        self.create_owned(objects, job_name)
        phase = self.wait(job_name, for_phase=None, timeout=None)
        pods = self.pods_of(job_name)
        text = "\n".join(self.pod_log_lines(pods[-1].metadata.name)) if pods else ""
        result = last_json_line(text)
        if phase != COMPLETE or result is None:
            tail = "\n".join(text.splitlines()[-15:])
            raise BackendError(f"the eval Job {job_name} ended {phase} without a result; its log ends:\n{tail}")
        return result


def quantities_as_strings(obj: Any) -> Any:
    """A copy with resource quantities as strings: the API takes `8` or `"8"`, the client's models only strings."""
    if isinstance(obj, list):
        return [quantities_as_strings(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key in ("limits", "requests") and isinstance(value, dict):
            out[key] = {k: str(v) if isinstance(v, int | float) else v for k, v in value.items()}
        else:
            out[key] = quantities_as_strings(value)
    return out


def _supported() -> list[str]:
    from jobctl.render import SUPPORTED_KUBE_VERSIONS

    return list(SUPPORTED_KUBE_VERSIONS)


def _iter_lines(response: Any) -> Iterator[str]:
    buffer = b""
    for chunk in response.stream(4096, decode_content=True):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


def _condition(job: Any, kind: str) -> Any:
    for cond in (job.status.conditions or []) if job.status else []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def _job_phase(job: Any) -> str:
    if _condition(job, "Complete") is not None:
        return COMPLETE
    if _condition(job, "Failed") is not None:
        return FAILED
    if job.status and (job.status.active or 0) > 0:
        return RUNNING
    return PENDING


def _pod_index(pod: Any) -> int:
    labels = pod.metadata.labels or {}
    annotations = pod.metadata.annotations or {}
    value = labels.get(INDEX_LABEL, annotations.get(INDEX_LABEL, "0"))
    return int(value) if str(value).isdigit() else 0


def _created(pod: Any) -> str:
    stamp = pod.metadata.creation_timestamp
    return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp or "")


def current(pods: list[Any]) -> list[Any]:
    """The newest pod of each index (older ones were replaced after a failure)."""
    newest: dict[int, Any] = {}
    for pod in pods:  # sorted by index, then creation
        newest[_pod_index(pod)] = pod
    return [newest[i] for i in sorted(newest)]


def current_pods(pods: list[Any]) -> list[PodInfo]:
    """Per index: the newest pod, with its replacements counted as restarts."""
    infos = []
    for pod in current(pods):
        index = _pod_index(pod)
        replaced = sum(1 for p in pods if _pod_index(p) == index) - 1
        status = pod.status
        container = (status.container_statuses or [None])[0] if status else None
        restarts = replaced + (container.restart_count or 0 if container else 0)
        exit_code = reason = None
        if container is not None and container.state is not None:
            if container.state.terminated is not None:
                exit_code = container.state.terminated.exit_code
                reason = container.state.terminated.reason
            elif container.state.waiting is not None:
                reason = container.state.waiting.reason
        infos.append(
            PodInfo(
                index=index,
                name=pod.metadata.name,
                phase=status.phase if status and status.phase else PENDING,
                restarts=restarts,
                node=pod.spec.node_name if pod.spec else None,
                exit_code=exit_code,
                reason=reason or (status.reason if status else None),
            )
        )
    return infos
