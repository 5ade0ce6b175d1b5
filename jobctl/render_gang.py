"""(pure) How a job's pods are started together: Volcano's PodGroup, Kueue's queue and admission, and the warning
for a multi-pod job that nothing starts all at once. Part of jobctl.render (which re-exports the names).

An elastic job (min_devices below devices) asks for less: its gang is its fewest pods. Volcano's PodGroup then
needs only ``min_pods`` pods (and their resources) at once; Kueue gets ``kueue.x-k8s.io/job-min-parallelism``
(partial admission, beta since Kueue 0.5): when the ClusterQueue's quota cannot hold every pod, even after
borrowing and preemption, Kueue admits the Job with the largest parallelism that fits, at least ``min_pods``, and
lowers ``spec.parallelism`` to it (``completions`` stays the number of pods). The Job then runs the lowest indexes
(pod 0 among them); they train without the others after ``shrink_after`` seconds, and the indexes not started run
only once those end: at the end of training, when they find the job complete and exit 0 at once. What it does not
do: grow the job back when quota frees up later (the admitted parallelism stays for the Workload's life), or help
with a node lost after admission (that pod's replacement waits for a node like any pod; the launchers shrink).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jobctl.spec import QUANTITY, JobSpec, SpecError

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kueue Topology-Aware Scheduling, per pod template (kueue.sigs.k8s.io "Run Workloads with Topology-Aware Scheduling").
KUEUE_TOPOLOGY_ANNOTATION = {
    "required": "kueue.x-k8s.io/podset-required-topology",
    "preferred": "kueue.x-k8s.io/podset-preferred-topology",
}
# Kueue partial admission (kueue.sigs.k8s.io "Run A Kubernetes Job", Partial admission): 0 < value < parallelism.
KUEUE_MIN_PARALLELISM_ANNOTATION = "kueue.x-k8s.io/job-min-parallelism"
# Volcano: the pods' scheduler and the annotation naming their PodGroup (volcano-sh/volcano docs).
VOLCANO_SCHEDULER = "volcano"
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
PODGROUP_API_VERSION = "scheduling.volcano.sh/v1beta1"


def gang_warning(spec: JobSpec) -> str | None:
    """The one-line warning for a multi-pod job that nothing starts all at once."""
    if spec.scheduler != "default" or spec.pods < 2:
        return None
    return (
        f"warning: {spec.name} has {spec.pods} pods and scheduler default: nothing prevents a partial start (pods "
        "holding devices while waiting for the rest); pass --scheduler volcano or --scheduler kueue --queue NAME"
    )


def kueue_job_annotations(spec: JobSpec) -> dict[str, str]:
    """The Job's own annotations for Kueue: partial admission down to the fewest pods of an elastic job."""
    if spec.scheduler == "kueue" and spec.elastic:
        return {KUEUE_MIN_PARALLELISM_ANNOTATION: str(spec.min_pods)}
    return {}


def pod_group(spec: JobSpec, group_labels: dict[str, str], requests: dict[str, Any]) -> dict[str, Any]:
    """Volcano's gang: start no pod until the job's fewest pods fit (minMember = pods, or min_pods for an elastic
    job; minResources = their requests). Volcano schedules the other pods as they fit, and an elastic job's pods
    train without them meanwhile."""
    resource, members = spec.accel.resource, spec.min_pods
    totals = {key: _times(value, members) for key, value in requests.items()}
    if resource and resource not in totals:  # NVIDIA: requests default to the limits
        totals[resource] = str(spec.per_pod * members)
    body: dict[str, Any] = {"minMember": members, "minResources": totals}
    if spec.queue:
        body["queue"] = spec.queue
    if spec.priority_class:
        body["priorityClassName"] = spec.priority_class
    return {
        "apiVersion": PODGROUP_API_VERSION,
        "kind": "PodGroup",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": group_labels},
        "spec": body,
    }


def _times(quantity: object, factor: int) -> str:
    """A Kubernetes quantity multiplied, keeping its suffix ("96" x 2 = "192", "384Gi" x 2 = "768Gi", "500m")."""
    text = str(quantity)
    match = QUANTITY.fullmatch(text)
    if not match:
        raise SpecError(f"{text!r} is not a Kubernetes quantity")
    suffix = match.group(3) or ""
    number = Decimal(text[: len(text) - len(suffix)] if suffix else text) * factor
    shown = str(int(number)) if number == number.to_integral_value() else str(number.normalize())
    return f"{shown}{suffix}"
