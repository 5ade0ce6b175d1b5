"""One "run a one-shot Job and read its log" for the eval Job and the metrics reader: replace any Job of that name
(and the objects rendered with it), create the new ones, wait for the end, read the last pod's log."""

from __future__ import annotations

from typing import Any

from jobctl.backends.k8s.client import Client
from jobctl.backends.k8s.readers import termination_grace
from jobctl.backends.k8s.submit import admit_objects, create_job_and_owned


def run_once(client: Client, objects: list[dict[str, Any]], *, admit: bool = True) -> tuple[str, str, list[str]]:
    """(Job name, its end phase, its last pod's log lines); the caller deletes the Job (or keeps a failed one)."""
    job_name = next(o for o in objects if o["kind"] == "Job")["metadata"]["name"]
    old = client.read_job_or_none(job_name)
    for obj in sorted(objects, key=lambda o: o["kind"] != "Job"):  # the Job first: its pods stop while we go on
        policy = {"propagation_policy": "Foreground"} if obj["kind"] == "Job" else {}
        client.delete(obj["kind"], obj["metadata"]["name"], **policy)
    client.wait_gone([job_name], termination_grace(old))
    if admit:
        admit_objects(client, objects)
    create_job_and_owned(client, objects)
    phase = client.wait_job(job_name, for_phase=None, timeout=None)
    pods = client.pods_of(job_name)
    lines = (client.available_log(pods[-1].metadata.name) or []) if pods else []
    return job_name, phase, lines


def delete_job(client: Client, name: str) -> None:
    client.delete("Job", name, propagation_policy="Background")
