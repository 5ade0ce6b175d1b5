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

The parts: ``client`` (API calls and the table of kinds), ``submit`` (dry runs, all-or-nothing creation),
``readers`` (pure readers of Job/pod objects), ``status``, ``logs``, ``oneshot`` (eval and the metrics reader),
``gang`` (PodGroup/Kueue explanations), ``history``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from contract import names
from jobctl.backends.base import (
    COMPLETE,
    FINISHED,
    UNKNOWN,
    Backend,
    BackendError,
    JobInfo,
    JobNotFound,
    last_json_line,
    spec_from_yaml,
)
from jobctl.backends.k8s import history as k8s_history
from jobctl.backends.k8s import logs as k8s_logs
from jobctl.backends.k8s import status as k8s_status
from jobctl.backends.k8s.api import api_client, default_namespace
from jobctl.backends.k8s.client import INSTANCE_LABEL, Client
from jobctl.backends.k8s.oneshot import delete_job, run_once
from jobctl.backends.k8s.readers import job_phase, termination_grace
from jobctl.backends.k8s.submit import admit_objects, create_job_and_owned
from jobctl.render import render_eval, resolve_kube_version

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from jobctl.spec import JobSpec

__all__ = ["K8sBackend", "api_client", "default_namespace"]

MANAGED_BY = {"app.kubernetes.io/managed-by": "jobctl"}
TRAINER_SELECTOR = "app.kubernetes.io/managed-by=jobctl,app.kubernetes.io/component=trainer"
SPEC_SELECTOR = "app.kubernetes.io/managed-by=jobctl,app.kubernetes.io/component=spec"


class K8sBackend(Backend):
    name = "k8s"

    def __init__(self, client: ApiClient, namespace: str, poll_seconds: float = 2.0, **options: Any) -> None:
        """``options``: Client's ``caller`` and ``note``."""
        self.api = Client(client, namespace, poll_seconds, **options)
        self.namespace = namespace

    # The waits' clock and sleep live on the client; tests replace them through the backend.
    @property
    def clock(self) -> Callable[[], float]:
        return self.api.clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self.api.clock = value

    @property
    def sleep(self) -> Callable[[float], None]:
        return self.api.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], None]) -> None:
        self.api.sleep = value

    # submit -----------------------------------------------------------------------------------------------

    def check_name(self, spec: JobSpec, *, resume: bool, replace: bool) -> None:
        """Refuse a name in use: a live Job, or a spec record (its job directory may hold checkpoints)."""
        name = spec.name
        if replace:  # whatever exists of the name, also leftovers of an interrupted submit
            with contextlib.suppress(JobNotFound):
                self.delete(name, wait=True)
            return
        job = self.api.read_job_or_none(name)
        record = self.api.read("ConfigMap", names.spec_record(name))
        if job is not None and job_phase(job) not in FINISHED:
            raise BackendError(
                f"name: a Job {name!r} is still running in namespace {self.namespace}; choose another --name, "
                f"`jobctl delete {name}`, or pass --replace",
                exit_code=2,
            )
        if (record is not None or job is not None) and not resume:
            evidence = f"Job {name}" if job is not None else f"ConfigMap {names.spec_record(name)}"
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
        admit_objects(self.api, objects)
        record = self.write_record(spec)
        try:
            create_job_and_owned(self.api, objects)
        except BaseException:
            if not resume:  # a resumed job's record was there before and still describes its directory
                self.api.remove(record)
            raise
        ns = self.namespace
        return (
            f"job {spec.name} created in namespace {ns}; follow it with `jobctl logs {spec.name} -f -n {ns}`, "
            f"`jobctl status {spec.name} -n {ns}` or `kubectl logs -n {ns} -f job/{spec.name}`"
        )

    @staticmethod
    def record_of(spec: JobSpec) -> dict[str, Any]:
        """The spec record: a ConfigMap not owned by the Job (see the module's docstring)."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": names.spec_record(spec.name),
                "labels": {INSTANCE_LABEL: spec.name, "app.kubernetes.io/component": "spec", **MANAGED_BY},
            },
            "data": {"spec.yaml": spec.to_yaml()},
        }

    def write_record(self, spec: JobSpec) -> dict[str, Any]:
        record = self.record_of(spec)
        self.api.delete("ConfigMap", names.spec_record(spec.name))
        self.api.create(record)
        return record

    # delete -----------------------------------------------------------------------------------------------

    def delete(self, name: str, wait: bool = False, keep_record: bool = False) -> None:
        """Delete the Job (Foreground: pods first), its eval Job and the ConfigMaps/Service it owns or left."""
        jobs = {job: self.api.read_job_or_none(job) for job in (name, names.eval_job(name))}
        deleted = False
        for job in jobs:
            deleted |= self.api.delete("Job", job, propagation_policy="Foreground")
        # Owned objects go with the Job; delete them directly too in case they were left without an owner.
        maps = [names.config_map(name), names.config_map(names.eval_job(name)), names.rings_config(name)]
        maps += [] if keep_record else [names.spec_record(name)]
        for cm in maps:
            deleted |= self.api.delete("ConfigMap", cm)
        deleted |= self.api.delete("Service", name)
        for policy in (name, names.eval_job(name)):
            self.api.delete("NetworkPolicy", policy)
        if not deleted:
            raise JobNotFound(f"no job {name!r} in namespace {self.namespace}; `jobctl list -n NS` shows the jobs")
        if wait:
            self.api.wait_gone(
                [job for job, found in jobs.items() if found is not None], max(map(termination_grace, jobs.values()))
            )

    # status / list / logs / wait --------------------------------------------------------------------------

    def read_job(self, name: str) -> Any:
        job = self.api.read_job_or_none(name)
        if job is None:
            record = self.api.read("ConfigMap", names.spec_record(name))
            hint = (
                " (it finished and was cleaned up; `jobctl eval` still works from its spec record)"
                if record is not None
                else "; `jobctl list` shows the jobs"
            )
            raise JobNotFound(f"no Job {name!r} in namespace {self.namespace}{hint}")
        return job

    def status(self, name: str) -> JobInfo:
        job = self.read_job(name)
        return k8s_status.status(self.api, job, self.stored_spec(name))

    def list_jobs(self) -> list[JobInfo]:
        jobs = self.api.call(
            "list Jobs", self.api.batch.list_namespaced_job, self.namespace, label_selector=TRAINER_SELECTOR
        )
        records = self.api.call(
            "list ConfigMaps", self.api.core.list_namespaced_config_map, self.namespace, label_selector=SPEC_SELECTOR
        )
        specs = {}
        for cm in records.items:
            with contextlib.suppress(BackendError):
                spec = spec_from_yaml((cm.data or {}).get("spec.yaml", ""), f"ConfigMap {cm.metadata.name}")
                specs[spec.name] = spec
        return [k8s_status.summary(job, self.namespace, specs.get(job.metadata.name)) for job in jobs.items]

    def stored_spec(self, name: str) -> JobSpec | None:
        """The job's stored spec (what status shows of it), None when neither ConfigMap holds one."""
        try:
            return self.load_spec(name)
        except BackendError:
            return None

    def logs(self, name: str, out: TextIO, *, follow: bool, rank: int | None) -> None:
        self.read_job(name)  # a clear error for a Job that does not exist
        spec = None if rank is None else self.load_spec(name)
        index = None if rank is None or spec is None else rank // spec.per_pod
        k8s_logs.write_logs(self.api, name, out, follow=follow, index=index, rank=rank)

    def wait(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        self.read_job(name)  # a clear error for a Job that never existed
        return self.api.wait_job(name, for_phase=for_phase, timeout=timeout)

    # stored spec, history, eval ---------------------------------------------------------------------------

    def load_spec(self, name: str) -> JobSpec:
        for cm in (names.spec_record(name), names.config_map(name)):
            found = self.api.read("ConfigMap", cm)
            if found is not None and "spec.yaml" in (found.data or {}):
                return spec_from_yaml(found.data["spec.yaml"], f"ConfigMap {cm}")
        raise JobNotFound(
            f"no spec of job {name!r} in namespace {self.namespace} (neither ConfigMap {names.spec_record(name)} nor "
            f"{names.config_map(name)}); check the name and -n"
        )

    def history(self, name: str) -> list[dict[str, Any]]:
        """From pod 0's logs while its pods exist, else from the shared volume (jobctl.backends.k8s.history)."""
        found = k8s_history.history_from_pods(self.api, name)
        if found is not None:
            return found
        version = resolve_kube_version(self.api.server_version(), older_as_oldest=True)
        return k8s_history.history_from_volume(self.api, self.load_spec(name), version)

    def evaluate(self, spec: JobSpec, checkpoint: str, data: str | None, kube_version: str | None = None) -> dict:
        """Run trainer.evaluate as the one-device Job ``<name>-eval``, wait, read its result line, delete it."""
        # "latest": the pod's checkpoint directory; trainer.evaluate takes its newest valid checkpoint.
        target = spec.ckpt_dir if checkpoint == "latest" else checkpoint
        if not target.startswith("/"):
            target = f"{spec.ckpt_dir}/{target}"
        version = kube_version or resolve_kube_version(self.api.server_version(), older_as_oldest=True)
        data_dir = data or spec.val_dir
        if data_dir is None:
            raise BackendError("--data: the job's spec has no validation set (data.val_subpath); pass --data", 2)
        job_name, phase, lines = run_once(self.api, render_eval(spec, target, data_dir, version))
        if phase == UNKNOWN:
            raise BackendError(f"the eval Job {job_name} was deleted before jobctl read its result; run eval again")
        text = "\n".join(lines)
        result = last_json_line(text)
        if phase != COMPLETE or result is None:
            tail = "\n".join(lines[-15:])
            raise BackendError(
                f"the eval Job {job_name} ended {phase} without a result (kept for `kubectl describe job/{job_name}`;"
                f" the next eval or `jobctl delete {spec.name}` removes it); its log ends:\n{tail}"
            )
        delete_job(self.api, job_name)
        return result
