"""Creating a job's objects: server-side dry runs first (also of a Pod of the Job's template, for pod admission),
then the objects that must precede the Job, the Job, and the rest owned by it; all or nothing, also on Ctrl-C."""

from __future__ import annotations

from typing import Any

from jobctl.backends.base import BackendError
from jobctl.backends.k8s.api import ApiError
from jobctl.backends.k8s.client import KINDS, Client
from jobctl.backends.k8s.readers import quantities_as_strings
from jobctl.render import JOB_NAME_LABEL


def admit_objects(client: Client, objects: list[dict[str, Any]]) -> None:
    """Server-side dry runs: admission errors surface before anything exists. The Job's dry run does not
    meet pod admission (Pod Security, ResourceQuota, LimitRange, pod webhooks), so a Pod of its template
    is dry-run too; otherwise those failures would only show later as FailedCreate events on the Job."""
    for obj in objects:
        client.create(obj, dry_run=True)
    for job in (o for o in objects if o["kind"] == "Job"):
        name = job["metadata"]["name"]
        template = job["spec"]["template"]
        metadata = {**template.get("metadata", {}), "name": f"{name}-admission-check"}
        metadata["labels"] = {**metadata.get("labels", {}), JOB_NAME_LABEL: name}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
        what = f"dry-run create a Pod of Job {name} (pod admission: Pod Security, quota, LimitRange, webhooks)"
        try:
            client.call(
                what, client.core.create_namespaced_pod, client.namespace, quantities_as_strings(pod), dry_run="All"
            )
        except ApiError as exc:
            if "does not support dry run" not in exc.message:
                raise
            client.note(f"note: a pod admission webhook does not support dry run, so it was not checked: {exc}")


def create_job_and_owned(client: Client, objects: list[dict[str, Any]]) -> None:
    """Create the Job, then the other objects owned by it from the start. All or nothing, also on Ctrl-C."""
    job = next(o for o in objects if o["kind"] == "Job")
    # Before the Job, owned right after (KINDS says which: the PodGroup, the NetworkPolicy).
    first = [o for o in objects if KINDS[o["kind"]].before_job]
    created: list[dict[str, Any]] = []
    try:
        for early in first:
            client.create(early)
            created.append(early)
        result = client.create(job)
        created.append(job)
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": result.metadata.uid,
            "blockOwnerDeletion": True,
        }
        for early in first:
            client.set_owner(early, owner)
        for obj in objects:
            if obj is not job and obj not in first:
                owned = {**obj, "metadata": {**obj["metadata"], "ownerReferences": [owner]}}
                client.create(owned)
                created.append(owned)
    except BaseException as exc:
        for obj in reversed(created):  # nothing half created
            client.remove(obj)
        if not isinstance(exc, BackendError):
            client.note(f"interrupted: removed the {len(created)} object(s) this submit had created")
        raise
