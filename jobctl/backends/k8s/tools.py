"""The cluster forms of `jobctl export` (a one-shot Job through oneshot.run_once) and `jobctl tensorboard` (a
Deployment and a Service, created and deleted here); the objects come from jobctl.render_tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contract.layout import SHARED_MOUNT
from jobctl.backends.base import COMPLETE, UNKNOWN, BackendError
from jobctl.backends.k8s.client import Client
from jobctl.backends.k8s.oneshot import delete_job, run_once
from jobctl.backends.k8s.submit import admit_objects
from jobctl.render_tools import render_export, render_tensorboard

if TYPE_CHECKING:
    from jobctl.spec import JobSpec

# A replaced TensorBoard Deployment must be gone before its name is reused (its pod has the default 30 s grace).
TENSORBOARD_GONE_SECONDS = 60.0


def export(client: Client, spec: JobSpec, checkpoint: str, file_format: str, kube_version: str) -> str:
    """Run ``<name>-export``, wait, read the written file's in-pod path (trainer.export's last line), delete it."""
    target = spec.ckpt_dir if checkpoint == "latest" else checkpoint
    if not target.startswith("/"):
        target = f"{spec.ckpt_dir}/{target}"
    job_name, phase, lines = run_once(client, render_export(spec, target, file_format, kube_version))
    if phase == UNKNOWN:
        raise BackendError(f"the export Job {job_name} was deleted before jobctl read its result; run export again")
    written = lines[-1].strip() if lines else ""
    if phase != COMPLETE or not written.startswith(f"{spec.job_dir}/"):
        tail = "\n".join(lines[-15:])
        raise BackendError(
            f"the export Job {job_name} ended {phase} without writing a file (kept for `kubectl describe "
            f"job/{job_name}`; the next export or `jobctl delete {spec.name}` removes it); its log ends:\n{tail}"
        )
    delete_job(client, job_name)
    return written


def on_volume(spec: JobSpec, in_pod: str) -> str:
    """Where an in-pod path of the job's folder is on the shared volume (the claim, or the nodes' folder)."""
    relative = in_pod.removeprefix(f"{SHARED_MOUNT}/")
    if spec.shared.claim:
        return f"{relative} on PersistentVolumeClaim {spec.shared.claim}"
    return f"{spec.shared.host_path}/{relative} on the node folder"


def start_tensorboard(client: Client, specs: list[JobSpec], kube_version: str) -> str:
    """Replace the TensorBoard objects of ``specs`` (dry runs first: pod admission refuses before anything
    changes); returns their name."""
    objects = render_tensorboard(specs, kube_version)
    name = objects[0]["metadata"]["name"]
    delete_tensorboard(client, name)
    _wait_gone(client, name)
    admit_objects(client, objects)
    created: list[dict[str, Any]] = []
    try:
        for obj in objects:  # the NetworkPolicy first: the pod never runs unprotected
            client.create(obj)
            created.append(obj)
    except BaseException:
        for obj in reversed(created):
            client.remove(obj)
        raise
    return name


def delete_tensorboard(client: Client, name: str) -> bool:
    """Delete the Deployment (its pod with it), Service and NetworkPolicy named ``name``; True if any existed."""
    deleted = client.delete("Deployment", name, propagation_policy="Foreground")
    for kind in ("Service", "NetworkPolicy"):
        deleted |= client.delete(kind, name)
    return deleted


def _wait_gone(client: Client, name: str) -> None:
    deadline = client.clock() + TENSORBOARD_GONE_SECONDS
    while client.read("Deployment", name) is not None:
        if client.clock() > deadline:
            raise BackendError(f"Deployment {name} is still being deleted after {TENSORBOARD_GONE_SECONDS:g} s")
        client.sleep(client.poll_seconds)
