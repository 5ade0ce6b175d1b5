"""The k8s backend's gang-scheduling part: Volcano PodGroups (created before the Job, then owned by it like the
Service and ConfigMaps) and the one line on why a job waits for its gang (PodGroup phase and conditions, Kueue's
admission of the Job's Workload). k8s.py calls these hooks; the Role in k8s/rbac.yaml grants what they call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobctl.backends.base import BackendError
from jobctl.render import KUEUE_QUEUE_LABEL, VOLCANO_SCHEDULER

if TYPE_CHECKING:
    from jobctl.backends.k8s.backend import K8sBackend

# kind -> (group, version, plural) of the custom objects jobctl creates.
CUSTOM = {"PodGroup": ("scheduling.volcano.sh", "v1beta1", "podgroups")}
KUEUE_WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
# PodGroup phases in which the gang has not started yet (volcano-sh/apis scheduling/v1beta1 types.go).
WAITING_PHASES = ("Pending", "Inqueue")


def _api(backend: K8sBackend) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(backend.client)


def create(backend: K8sBackend, obj: dict[str, Any], dry_run: bool) -> None:
    group, version, plural = CUSTOM[obj["kind"]]
    what = f"{'dry-run ' if dry_run else ''}create {obj['kind']} {obj['metadata']['name']}"
    kwargs = {"dry_run": "All"} if dry_run else {}
    create_fn = _api(backend).create_namespaced_custom_object
    try:
        backend.call(what, create_fn, group, version, backend.namespace, plural, obj, **kwargs)
    except BackendError as exc:
        if "HTTP 404" not in exc.message:
            raise
        raise BackendError(
            f"{what}: the cluster serves no {plural}.{group} API; install Volcano or choose --scheduler kueue|default",
            exit_code=2,
        ) from None


def set_owner(backend: K8sBackend, obj: dict[str, Any], owner: dict[str, Any]) -> None:
    group, version, plural = CUSTOM[obj["kind"]]
    name = obj["metadata"]["name"]
    patch = {"metadata": {"ownerReferences": [owner]}}
    patch_fn = _api(backend).patch_namespaced_custom_object
    backend.call(
        f"set the owner of {obj['kind']} {name}",
        patch_fn,
        group,
        version,
        backend.namespace,
        plural,
        name,
        patch,
        _content_type="application/merge-patch+json",
    )


def remove(backend: K8sBackend, obj: dict[str, Any]) -> None:
    group, version, plural = CUSTOM[obj["kind"]]
    delete_fn = _api(backend).delete_namespaced_custom_object
    backend.get(f"delete {obj['kind']}", delete_fn, group, version, backend.namespace, plural, obj["metadata"]["name"])


def explain_waiting(backend: K8sBackend, job: Any) -> str | None:
    """Why a Pending job's gang has not started, or None when it is not waiting for one."""
    template = job.spec.template
    if template.spec.scheduler_name == VOLCANO_SCHEDULER:
        return _podgroup_reason(backend, job.metadata.name)
    if (job.metadata.labels or {}).get(KUEUE_QUEUE_LABEL) and job.spec.suspend:
        return _kueue_reason(backend, job)
    return None


def _podgroup_reason(backend: K8sBackend, name: str) -> str | None:
    group, version, plural = CUSTOM["PodGroup"]
    read = _api(backend).get_namespaced_custom_object
    found = backend.get(f"read PodGroup {name}", read, group, version, backend.namespace, plural, name)
    if found is None:
        return f"PodGroup {name} is missing: Volcano will not schedule the pods (resubmit with jobctl submit --replace)"
    status = found.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase not in WAITING_PHASES:
        return None
    minimum = (found.get("spec") or {}).get("minMember")
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True" or c.get("message")]
    detail = ""
    if conditions:
        last = conditions[-1]
        detail = f"; {last.get('type', '')} {last.get('reason', '')}: {last.get('message', '')}".rstrip(": ")
    queue = (found.get("spec") or {}).get("queue") or "default"
    waiting = f"waiting for its gang: PodGroup {name} is {phase} in Volcano queue {queue}"
    return f"{waiting} (needs {minimum} pods at once){detail}"


def _kueue_reason(backend: K8sBackend, job: Any) -> str:
    group, version, plural = KUEUE_WORKLOADS
    queue = job.metadata.labels[KUEUE_QUEUE_LABEL]
    listing = _api(backend).list_namespaced_custom_object
    selector = f"{KUEUE_JOB_UID_LABEL}={job.metadata.uid}"
    found = backend.get(
        "list Kueue Workloads", listing, group, version, backend.namespace, plural, label_selector=selector
    )
    items = (found or {}).get("items") or []
    if not items:
        return (
            f"suspended, waiting for Kueue: no Workload yet for LocalQueue {queue} (is Kueue running, the queue there?)"
        )
    conditions = {c.get("type"): c for c in (items[0].get("status") or {}).get("conditions") or []}
    for kind in ("Admitted", "QuotaReserved"):
        cond = conditions.get(kind)
        if cond and cond.get("status") == "False" and cond.get("message"):
            return (
                f"suspended, waiting for Kueue admission in LocalQueue {queue}: {cond.get('reason')}: {cond['message']}"
            )
    return f"suspended, waiting for Kueue admission in LocalQueue {queue} (the whole Job is admitted at once)"
