"""Reading the objects the Job controller makes from ours: a pod's completion index, a Job's termination grace."""

from __future__ import annotations

from typing import Any

from jobctl import platforms

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def pod_index(pod: Any) -> int:
    labels = pod.metadata.labels or {}
    annotations = pod.metadata.annotations or {}
    value = labels.get(INDEX_LABEL, annotations.get(INDEX_LABEL, "0"))
    return int(value) if str(value).isdigit() else 0


def termination_grace(job: Any) -> float:
    """The termination grace of a Job's pods (what a Foreground delete of it waits for)."""
    spec = job.spec.template.spec if job is not None else None
    seconds = spec.termination_grace_period_seconds if spec is not None else None
    return float(platforms.TERMINATION_GRACE_SECONDS if seconds is None else seconds)
