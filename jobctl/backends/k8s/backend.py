"""The Kubernetes backend: the official `kubernetes` client against any cluster, no operator or CRD.

Objects jobctl creates for job ``<name>``, in this order: ``<name>-spec``, a ConfigMap holding the resolved spec
that is NOT owned by the Job (written first: it outlives TTL cleanup so ``jobctl eval`` can still build an eval
Job, and it tells a later ``submit`` that the name was used, even after a crash mid-submit; the job directory on
the shared volume, with its checkpoints, is not reachable from a laptop); the NetworkPolicy ``<name>`` (and the
PodGroup with ``scheduler: volcano``), which must exist before the first pod, owned by the Job right after it is
created; the Indexed Job ``<name>``; then the rendered ConfigMap ``<name>-config`` and Service ``<name>``, owned by
the Job from their creation so that its deletion or TTL cleanup cascades (its pods wait for the ConfigMap volume:
the kubelet retries the mount). An interrupted submit (error or Ctrl-C) deletes what it created. ``jobctl
delete`` removes all of it.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

from contract.ckpt_names import BEST_NAME
from contract.env import JobLayout, Var
from jobctl.backends.base import (
    COMPLETE,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    UNKNOWN,
    Backend,
    BackendError,
    JobInfo,
    JobNotFound,
    PodInfo,
    WaitTimeout,
    add_history_summary,
    keep_line,
    last_json_line,
    latest_progress,
    latest_restart,
    spec_from_yaml,
)
from jobctl.backends.k8s import gang as k8s_gang
from jobctl.backends.k8s import history as k8s_history
from jobctl.backends.k8s.api import ApiError, Caller, api_client, default_namespace
from jobctl.backends.k8s.logs import LogCursor, iter_lines
from jobctl.backends.k8s.objects import pod_index, termination_grace
from jobctl.render import JOB_NAME_LABEL, config_map_name, eval_job_name, resolve_kube_version, rings_config_name

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from jobctl.spec import JobSpec

__all__ = ["K8sBackend", "api_client", "default_namespace"]

T = TypeVar("T")
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY = {"app.kubernetes.io/managed-by": "jobctl"}
CONTAINER = "trainer"
# Deleting a Job (Foreground) waits for its pods' termination grace; this much more for the kubelet and controllers.
DELETE_MARGIN_SECONDS = 120.0
STREAM_TIMEOUT = (10.0, 600.0)  # a log stream silent this long is re-attached (progress lines come every minute)
INTERIM = {"FailureTarget": "failing", "SuccessCriteriaMet": "succeeded"}  # 1.31+: before Failed / Complete
_SAVED = re.compile(r"rank=0 saved (\S+)")


def record_name(name: str) -> str:
    return f"{name}-spec"


def _note(message: str) -> None:
    from jobctl import output

    output.note(message)


class K8sBackend(Backend):
    name = "k8s"

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        poll_seconds: float = 2.0,
        *,
        caller: Caller | None = None,
        note: Callable[[str], None] = _note,
    ) -> None:
        from kubernetes import client as k8s

        self.client = client
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
        self.version_api = k8s.VersionApi(client)

    # plumbing ---------------------------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one API call (timeout, retries); errors become a BackendError naming what failed and why."""
        # Without not_found_ok every error raises, so the result is whatever fn returned.
        return cast(T, self.caller(what, fn, *args, not_found_ok=False, **kwargs))

    def get(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """A read that returns None on 404."""
        return self.caller(what, fn, *args, not_found_ok=True, **kwargs)

    def delete_quietly(self, what: str, fn: Callable[..., Any], name: str, **kwargs: Any) -> bool:
        """Delete, ignoring 404; True if something was deleted."""
        return self.caller(f"delete {what} {name}", fn, name, self.namespace, not_found_ok=True, **kwargs) is not None

    def read_job_or_none(self, name: str) -> Any:
        return self.get("read Job", self.batch.read_namespaced_job, name, self.namespace)

    def server_version(self) -> str:
        """The API server's "major.minor"."""
        info = self.call("read the server version", self.version_api.get_code)
        minor = re.sub(r"\D.*$", "", str(info.minor))
        return f"{info.major}.{minor}"

    # submit -----------------------------------------------------------------------------------------------

    def check_name(self, spec: JobSpec, *, resume: bool, replace: bool) -> None:
        """Refuse a name in use: a live Job, or a spec record (its job directory may hold checkpoints)."""
        name = spec.name
        if replace:  # whatever exists of the name, also leftovers of an interrupted submit
            with contextlib.suppress(JobNotFound):
                self.delete(name, wait=True)
            return
        job = self.read_job_or_none(name)
        record = self.get("read ConfigMap", self.core.read_namespaced_config_map, record_name(name), self.namespace)
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
        self.admit(objects)
        record = self.write_record(spec)
        try:
            self.create_job_and_owned(objects)
        except BaseException:
            if not resume:  # a resumed job's record was there before and still describes its directory
                self.remove(record)
            raise
        ns = self.namespace
        return (
            f"job {spec.name} created in namespace {ns}; follow it with `jobctl logs {spec.name} -f -n {ns}`, "
            f"`jobctl status {spec.name} -n {ns}` or `kubectl logs -n {ns} -f job/{spec.name}`"
        )

    def admit(self, objects: list[dict[str, Any]]) -> None:
        """Server-side dry runs: admission errors surface before anything exists. The Job's dry run does not
        meet pod admission (Pod Security, ResourceQuota, LimitRange, pod webhooks), so a Pod of its template
        is dry-run too; otherwise those failures would only show later as FailedCreate events on the Job."""
        for obj in objects:
            self.create(obj, dry_run=True)
        for job in (o for o in objects if o["kind"] == "Job"):
            name = job["metadata"]["name"]
            template = job["spec"]["template"]
            metadata = {**template.get("metadata", {}), "name": f"{name}-admission-check"}
            metadata["labels"] = {**metadata.get("labels", {}), JOB_NAME_LABEL: name}
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
            what = f"dry-run create a Pod of Job {name} (pod admission: Pod Security, quota, LimitRange, webhooks)"
            try:
                self.call(
                    what, self.core.create_namespaced_pod, self.namespace, quantities_as_strings(pod), dry_run="All"
                )
            except ApiError as exc:
                if "does not support dry run" not in exc.message:
                    raise
                self.note(f"note: a pod admission webhook does not support dry run, so it was not checked: {exc}")

    def create_job_and_owned(self, objects: list[dict[str, Any]]) -> None:
        """Create the Job, then the other objects owned by it from the start. All or nothing, also on Ctrl-C."""
        job = next(o for o in objects if o["kind"] == "Job")
        # Before the Job, owned right after: Volcano looks for the PodGroup when the first pod arrives, and no pod
        # may run before its NetworkPolicy exists.
        first = [o for o in objects if o["kind"] in (*k8s_gang.CUSTOM, "NetworkPolicy")]
        created: list[dict[str, Any]] = []
        try:
            for early in first:
                self.create(early)
                created.append(early)
            result = self.create(job)
            created.append(job)
            owner = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job["metadata"]["name"],
                "uid": result.metadata.uid,
                "blockOwnerDeletion": True,
            }
            for early in first:
                self.set_owner(early, owner)
            for obj in objects:
                if obj is not job and obj not in first:
                    owned = {**obj, "metadata": {**obj["metadata"], "ownerReferences": [owner]}}
                    self.create(owned)
                    created.append(owned)
        except BaseException as exc:
            for obj in reversed(created):  # nothing half created
                self.remove(obj)
            if not isinstance(exc, BackendError):
                self.note(f"interrupted: removed the {len(created)} object(s) this submit had created")
            raise

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> Any:
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
        try:
            return self.call(
                what, creators[kind], self.namespace, quantities_as_strings(obj), idempotent=False, **kwargs
            )
        except ApiError as exc:
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
        """Only for objects that must exist before their owner: a PodGroup before its Job's first pod (Volcano looks
        for it then), the NetworkPolicy so that no pod of the job runs unprotected."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in k8s_gang.CUSTOM:
            return k8s_gang.set_owner(self, obj, owner)
        self.call(
            f"set the owner of {kind} {name}",
            self.networking.patch_namespaced_network_policy,
            name,
            self.namespace,
            {"metadata": {"ownerReferences": [owner]}},
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

    def write_record(self, spec: JobSpec) -> dict[str, Any]:
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
        return record

    # delete -----------------------------------------------------------------------------------------------

    def delete(self, name: str, wait: bool = False, keep_record: bool = False) -> None:
        """Delete the Job (Foreground: pods first), its eval Job and the ConfigMaps/Service it owns or left."""
        jobs = {job: self.read_job_or_none(job) for job in (name, eval_job_name(name))}
        deleted = False
        for job in jobs:
            deleted |= self.delete_quietly(
                "Job", self.batch.delete_namespaced_job, job, propagation_policy="Foreground"
            )
        # Owned objects go with the Job; delete them directly too in case they were left without an owner.
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
            self.wait_gone(
                [job for job, found in jobs.items() if found is not None], max(map(termination_grace, jobs.values()))
            )

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

    # status / list ----------------------------------------------------------------------------------------

    def read_job(self, name: str) -> Any:
        job = self.read_job_or_none(name)
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
        return sorted(result.items, key=lambda p: (pod_index(p), _created(p)))

    def status(self, name: str) -> JobInfo:
        job = self.read_job(name)
        pods = self.pods_of(name)
        info = self.summary(job)
        info.pods = current_pods(pods)
        info.restarts = sum(p.restarts for p in info.pods)
        if info.phase == RUNNING and _interim(job) is None and not any(p.phase == "Running" for p in info.pods):
            info.phase = PENDING
        newest_pod0 = next((p for p in reversed(pods) if pod_index(p) == 0), None)
        if newest_pod0 is not None and newest_pod0.status and newest_pod0.status.phase != "Pending":
            lines = self.available_log(newest_pod0.metadata.name, tail=400, quiet=True) or []
            info.progress = latest_progress(lines)
            restart = latest_restart(lines)
            if restart is not None:
                info.restarts, info.max_restarts, info.last_restart = restart
            saved = [m.group(1) for m in map(_SAVED.search, lines) if m]
            info.checkpoint = saved[-1] if saved else None
        info.explanation = self.explain(job, info, pods)
        best_checkpoint = str(JobLayout.in_pod(name).ckpt_dir / BEST_NAME)
        add_history_summary(info, k8s_history.history_from_pods(self, name) or [], best_checkpoint)
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
        """One line on why a job is Pending, Failed, or on its way to an end (the 1.31+ interim conditions)."""
        failing = _first_failure(current(pods))
        interim = _interim(job)
        if info.phase == FAILED or interim is not None:
            condition = interim or _condition(job, "Failed")
            word = INTERIM.get(condition.type, "") + ": " if interim is not None else ""
            text = f"{word}{condition.reason}: {condition.message}" if condition else "the Job failed"
            text += f"; first failing {failing}" if failing else ""
            if interim is not None:
                text += f"; waiting for {_terminating(job, pods)} pod(s) to terminate"
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
        # The Job controller reports pods it could not create (admission, quota) as events on the Job.
        event = (self.last_warning("Pod", pods[-1].metadata.name) if pods else None) or self.last_warning(
            "Job", job.metadata.name
        )
        if event:
            return event
        if pods:
            return "pods are starting (pulling the image or mounting volumes)"
        return "no pods yet: the Job controller has not created them (quota, admission or a suspended queue)"

    def last_warning(self, kind: str, name: str) -> str | None:
        events = self.call(
            "list events",
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        warnings = sorted((e for e in events.items if e.type == "Warning"), key=_event_time)
        if not warnings:
            return None
        event = warnings[-1]
        return f"{kind.lower()} {name}: {event.reason}: {event.message}"

    # logs -------------------------------------------------------------------------------------------------

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

    def index_of_rank(self, job: Any, rank: int) -> int:
        env = {e.name: e.value for e in (job.spec.template.spec.containers[0].env or [])}
        per_pod = int(env.get(Var.DEVICES_PER_POD) or 1)
        return rank // per_pod

    def logs(self, name: str, out: TextIO, *, follow: bool, rank: int | None) -> None:
        job = self.read_job(name)
        index = None if rank is None else self.index_of_rank(job, rank)
        if not follow:
            for pod in current(self.pods_of(name)):
                if index is None or pod_index(pod) == index:
                    for line in self.available_log(pod.metadata.name) or []:
                        if keep_line(line, rank):
                            out.write(line + "\n")
            return
        self.follow(name, out, index, rank)

    def follow(self, name: str, out: TextIO, index: int | None, rank: int | None) -> None:
        """Stream every pod of the job (re-attaching to cut streams and replacement pods) until the Job ends."""
        lines: queue.Queue[str] = queue.Queue()
        followed: dict[str, threading.Thread] = {}
        while True:
            job = self.read_job_or_none(name)
            if job is None:
                self.note(f"Job {name} was deleted (TTL cleanup or a delete): treating it as finished")
            for pod in self.pods_of(name) if job is not None else []:
                pod_name = pod.metadata.name
                started = pod.status is not None and pod.status.phase in ("Running", "Succeeded", "Failed")
                if pod_name in followed or not started or (index is not None and pod_index(pod) != index):
                    continue
                thread = threading.Thread(target=self.stream_pod, args=(pod_name, lines), daemon=True)
                thread.start()
                followed[pod_name] = thread
            finished = job is None or _job_phase(job) in FINISHED
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
            self.sleep(self.poll_seconds)

    def stream_pod(self, pod: str, lines: queue.Queue[str]) -> None:
        """Follow one pod's log; while the pod runs, re-attach whenever the stream ends (idle timeouts, API
        server restarts, resets), resuming after the last line delivered. Ends when the pod is done or gone."""
        cursor = LogCursor()
        last_read = False
        while True:
            since = cursor.attach()
            with contextlib.suppress(Exception):  # a cut stream, a reset, a timeout: re-attach below
                response = self.core.read_namespaced_pod_log(
                    pod,
                    self.namespace,
                    container=CONTAINER,
                    follow=True,
                    timestamps=True,
                    _preload_content=False,
                    _request_timeout=self.stream_timeout,
                    **({"since_seconds": since} if since is not None else {}),
                )
                for raw in iter_lines(response, keep_partial=last_read):
                    line = cursor.admit(raw)
                    if line is not None:
                        lines.put(line)
            if last_read:
                return
            state = self.pod_state(pod)
            if state == "gone":
                return
            last_read = state == "done"  # one more read for what the container wrote before it ended
            if not last_read:
                self.sleep(self.poll_seconds)

    def pod_state(self, pod: str) -> str:
        """ "running" (or not started), "done" or "gone"."""
        try:
            found = self.get("read pod", self.core.read_namespaced_pod, pod, self.namespace)
        except BackendError:
            return "running"  # try again later; the Job's end stops the follower
        if found is None:
            return "gone"
        return "done" if found.status and found.status.phase in ("Succeeded", "Failed") else "running"

    # wait -------------------------------------------------------------------------------------------------

    def wait(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        """Until the Job's terminal condition (not the 1.31+ interim ones) or for_phase. A Job that disappears
        after it was seen was cleaned up (TTL) or deleted: that is an end too, of unknown outcome."""
        deadline = None if timeout is None else self.clock() + timeout
        self.read_job(name)  # a clear error for a Job that never existed
        while True:
            job = self.read_job_or_none(name)
            if job is None:
                self.note(f"Job {name} was deleted (TTL cleanup or a delete): treating it as finished")
                return UNKNOWN
            phase = _job_phase(job)
            if phase in FINISHED or phase == for_phase:
                return phase
            if deadline is not None and self.clock() >= deadline:
                raise WaitTimeout(f"Job {name} is still {phase} after {timeout:g} s")
            self.sleep(self.poll_seconds)

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

    def history(self, name: str) -> list[dict[str, Any]]:
        """From pod 0's logs while its pods exist, else from the shared volume (jobctl.backends.k8s.history)."""
        found = k8s_history.history_from_pods(self, name)
        return found if found is not None else k8s_history.history_from_volume(self, self.load_spec(name))

    def evaluate(self, spec: JobSpec, checkpoint: str, data: str | None, kube_version: str | None = None) -> dict:
        """Run trainer.evaluate as the one-device Job ``<name>-eval``, wait, read its result line, delete it."""
        from jobctl.render import render_eval

        # "latest": the pod's checkpoint directory; trainer.evaluate takes its newest valid checkpoint.
        target = spec.ckpt_dir if checkpoint == "latest" else checkpoint
        if not target.startswith("/"):
            target = f"{spec.ckpt_dir}/{target}"
        version = kube_version or resolve_kube_version(self.server_version(), older_as_oldest=True)
        data_dir = data or spec.val_dir
        if data_dir is None:
            raise BackendError("--data: the job's spec has no validation set (data.val_subpath); pass --data", 2)
        objects = render_eval(spec, target, data_dir, version)
        job_name = eval_job_name(spec.name)
        old = self.read_job_or_none(job_name)
        self.delete_quietly("Job", self.batch.delete_namespaced_job, job_name, propagation_policy="Foreground")
        self.delete_quietly("ConfigMap", self.core.delete_namespaced_config_map, config_map_name(job_name))
        self.delete_quietly("NetworkPolicy", self.networking.delete_namespaced_network_policy, job_name)
        self.wait_gone([job_name], termination_grace(old))
        self.admit(objects)
        self.create_job_and_owned(objects)
        phase = self.wait(job_name, for_phase=None, timeout=None)
        if phase == UNKNOWN:
            raise BackendError(f"the eval Job {job_name} was deleted before jobctl read its result; run eval again")
        pods = self.pods_of(job_name)
        text = "\n".join(self.available_log(pods[-1].metadata.name) or []) if pods else ""
        result = last_json_line(text)
        if phase != COMPLETE or result is None:
            tail = "\n".join(text.splitlines()[-15:])
            raise BackendError(
                f"the eval Job {job_name} ended {phase} without a result (kept for `kubectl describe job/{job_name}`;"
                f" the next eval or `jobctl delete {spec.name}` removes it); its log ends:\n{tail}"
            )
        self.delete_quietly("Job", self.batch.delete_namespaced_job, job_name, propagation_policy="Background")
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


def _condition(job: Any, kind: str) -> Any:
    for cond in (job.status.conditions or []) if job.status else []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def _interim(job: Any) -> Any:
    """The 1.31+ FailureTarget / SuccessCriteriaMet condition of a Job whose pods are still terminating."""
    if _condition(job, "Complete") is not None or _condition(job, "Failed") is not None:
        return None
    return next((c for kind in INTERIM if (c := _condition(job, kind)) is not None), None)


def _job_phase(job: Any) -> str:
    if _condition(job, "Complete") is not None:
        return COMPLETE
    if _condition(job, "Failed") is not None:
        return FAILED
    # status.active excludes terminating pods: a Job with an interim condition runs until they have stopped.
    if _interim(job) is not None or (job.status and (job.status.active or 0) > 0):
        return RUNNING
    return PENDING


def _terminating(job: Any, pods: list[Any]) -> int:
    """Pods still stopping: status.terminating (1.28+), else the pods not yet in a terminal phase."""
    counted = job.status.terminating if job.status else None
    if counted is not None:
        return int(counted)
    return sum(1 for p in pods if not (p.status and p.status.phase in ("Succeeded", "Failed")))


def _event_time(event: Any) -> datetime:
    """When an event last happened (lastTimestamp, eventTime or creation: whichever its reporter filled)."""
    for stamp in (event.last_timestamp, event.event_time, event.first_timestamp, event.metadata.creation_timestamp):
        if isinstance(stamp, datetime):
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def termination_message(pod: Any) -> str | None:
    """The container's termination message (the launcher's one-line reason, or the log tail with
    FallbackToLogsOnError): first non-empty line, trimmed."""
    container = _container(pod)
    for state in (container.state, container.last_state) if container is not None else ():
        terminated = state.terminated if state is not None else None
        if terminated is not None and terminated.message:
            line = next((x.strip() for x in terminated.message.splitlines() if x.strip()), "")
            return (line[:197] + "...") if len(line) > 200 else line or None
    return None


def _first_failure(pods: list[Any]) -> str | None:
    """ "pod P exited C (Reason): message" of the first current pod that failed."""
    for pod, info in zip(current(pods), current_pods(pods), strict=True):
        if info.exit_code not in (None, 0):
            message = termination_message(pod)
            text = f"pod {info.name} exited {info.exit_code} ({info.reason or 'Error'})"
            return f"{text}: {message}" if message else text
    return None


def _container(pod: Any) -> Any:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return next((s for s in statuses if s.name == CONTAINER), statuses[0] if statuses else None)


def _created(pod: Any) -> str:
    stamp = pod.metadata.creation_timestamp
    return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp or "")


def current(pods: list[Any]) -> list[Any]:
    """The newest pod of each index (older ones were replaced after a failure)."""
    newest: dict[int, Any] = {}
    for pod in pods:  # sorted by index, then creation
        newest[pod_index(pod)] = pod
    return [newest[i] for i in sorted(newest)]


def current_pods(pods: list[Any]) -> list[PodInfo]:
    """Per index: the newest pod, with its replacements counted as restarts."""
    infos = []
    for pod in current(pods):
        index = pod_index(pod)
        replaced = sum(1 for p in pods if pod_index(p) == index) - 1
        status = pod.status
        container = _container(pod)
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
