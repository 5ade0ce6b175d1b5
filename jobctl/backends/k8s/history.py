"""A Kubernetes job's metrics history (for `jobctl plot` and `jobctl status`).

While pod 0's pods exist, the history is rebuilt from their logs (rank 0's progress and validation lines and its
``metrics {json}`` attempt lines: contract.metrics.history_from_log), oldest pod first. Once the Job is cleaned up,
a one-pod Job ``<name>-metrics`` prints ``<job dir>/metrics.jsonl`` from the shared volume, reaching it the way
``jobctl eval``'s Job does (same volumes, node selector and tolerations; no accelerator, a tenth of a core).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from contract import names
from contract.layout import JobLayout
from contract.metrics import history_from_log, parse_records
from jobctl.backends.base import COMPLETE, BackendError
from jobctl.backends.k8s.client import Client
from jobctl.backends.k8s.oneshot import delete_job, run_once
from jobctl.backends.k8s.readers import pod_index
from jobctl.render import render_eval

if TYPE_CHECKING:
    from jobctl.spec import JobSpec

READER_TTL_SECONDS = 600
READER_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
_STARTED = ("Running", "Succeeded", "Failed")


def history_from_pods(client: Client, name: str) -> list[dict[str, Any]] | None:
    """The history in the logs of every pod of index 0 (replacements included); None when there are none."""
    pods = [p for p in client.pods_of(name) if pod_index(p) == 0 and p.status and p.status.phase in _STARTED]
    if not pods:
        return None
    # A pod that failed before its container ran has no log (the kubelet answers 400): it adds nothing.
    lines = [line for pod in pods for line in client.available_log(pod.metadata.name, quiet=True) or []]
    return history_from_log(lines)


def reader_job(spec: JobSpec, kube_version: str) -> dict[str, Any]:
    """The eval Job of ``spec`` turned into a one-shot `cat` of metrics.jsonl on the shared volume."""
    rendered = copy.deepcopy(render_eval(spec, spec.ckpt_dir, spec.val_dir or "/data", kube_version))
    job = next(o for o in rendered if o["kind"] == "Job")  # its NetworkPolicy is the eval Job's: not needed here
    name = names.metrics_job(spec.name)
    job["metadata"]["name"] = name
    labels = {**job["metadata"]["labels"], "app.kubernetes.io/component": "metrics"}
    job["metadata"]["labels"] = labels
    job["spec"]["template"]["metadata"]["labels"] = dict(labels)
    job["spec"].update(ttlSecondsAfterFinished=READER_TTL_SECONDS, backoffLimit=0)  # a missing file stays missing
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    job_dir = str(JobLayout.in_pod(spec.name).root)  # the job's own folder of the shared volume, nothing else
    shared = [m for m in container["volumeMounts"] if m["name"] == "shared" and m["mountPath"] == job_dir]
    container.update(
        command=["cat", str(JobLayout.in_pod(spec.name).metrics_file)],
        env=[],
        resources=READER_RESOURCES,
        volumeMounts=[{**m, "readOnly": True} for m in shared],
    )
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] == "shared"]
    return job


def history_from_volume(client: Client, spec: JobSpec, kube_version: str) -> list[dict[str, Any]]:
    """Run the reader Job, wait for it, parse its log, delete it."""
    try:
        name, phase, lines = run_once(client, [reader_job(spec, kube_version)], admit=False)
    finally:
        delete_job(client, names.metrics_job(spec.name))
    if phase != COMPLETE:
        tail = "\n".join(lines[-5:])
        raise BackendError(
            f"job {spec.name}: its pods are gone and the Job {name} could not read "
            f"{JobLayout.in_pod(spec.name).metrics_file} from the shared volume ({phase}):\n{tail}"
        )
    return parse_records(lines)
