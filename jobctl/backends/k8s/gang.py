"""The k8s backend's gang-scheduling part: Volcano PodGroups (created before the Job, then owned by it like the
Service and ConfigMaps) and the one line on why a job waits for its gang (PodGroup phase and conditions, Kueue's
admission of the Job's Workload). The PodGroup is a row of the client's table of kinds; the Role in k8s/rbac.yaml
grants what is called here.
"""

from __future__ import annotations

from typing import Any

from jobctl.backends.k8s.client import Client
from jobctl.render import KUEUE_QUEUE_LABEL, VOLCANO_SCHEDULER

KUEUE_WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
# PodGroup phases in which the gang has not started yet (volcano-sh/apis scheduling/v1beta1 types.go).
WAITING_PHASES = ("Pending", "Inqueue")


def explain_waiting(client: Client, job: Any) -> str | None:
    """Why a Pending job's gang has not started, or None when it is not waiting for one."""
    template = job.spec.template
    if template.spec.scheduler_name == VOLCANO_SCHEDULER:
        return _podgroup_reason(client, job.metadata.name)
    if (job.metadata.labels or {}).get(KUEUE_QUEUE_LABEL) and job.spec.suspend:
        return _kueue_reason(client, job)
    return None


def _podgroup_reason(client: Client, name: str) -> str | None:
    found = client.read("PodGroup", name)
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


def _kueue_reason(client: Client, job: Any) -> str:
    queue = job.metadata.labels[KUEUE_QUEUE_LABEL]
    found = client.list_custom("list Kueue Workloads", KUEUE_WORKLOADS, f"{KUEUE_JOB_UID_LABEL}={job.metadata.uid}")
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
