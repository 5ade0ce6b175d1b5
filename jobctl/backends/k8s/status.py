"""A Kubernetes job's status: its phase, pods and progress, what the stored spec says (devices, platform), and one
line on why it is Pending, Failed or on its way to an end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contract.ckpt_names import best_name
from contract.layout import JobLayout
from contract.lines import parse_saved
from jobctl.backends.base import FAILED, PENDING, RUNNING, JobInfo, add_history_summary, latest_progress, latest_restart
from jobctl.backends.k8s import gang
from jobctl.backends.k8s.client import Client
from jobctl.backends.k8s.history import history_from_pods
from jobctl.backends.k8s.readers import (
    INTERIM,
    condition,
    current,
    current_pods,
    event_time,
    first_failure,
    interim,
    job_phase,
    pod_index,
    terminating,
)

if TYPE_CHECKING:
    from jobctl.spec import JobSpec


def summary(job: Any, namespace: str, spec: JobSpec | None) -> JobInfo:
    """A Job's line in `jobctl list`/`status`: devices and platform from its stored spec (none: left empty)."""
    created = job.metadata.creation_timestamp
    return JobInfo(
        name=job.metadata.name,
        namespace=job.metadata.namespace or namespace,
        phase=job_phase(job),
        platform=spec.platform if spec is not None else "",
        devices=spec.devices if spec is not None else 0,
        pods_total=int(job.spec.completions or 0),
        restarts=int(job.status.failed or 0) if job.status else 0,
        created=created.isoformat() if hasattr(created, "isoformat") else created,
    )


def status(client: Client, job: Any, spec: JobSpec | None) -> JobInfo:
    name = job.metadata.name
    pods = client.pods_of(name)
    info = summary(job, client.namespace, spec)
    info.pods = current_pods(pods)
    info.restarts = sum(p.restarts for p in info.pods)
    if info.phase == RUNNING and interim(job) is None and not any(p.phase == "Running" for p in info.pods):
        info.phase = PENDING
    newest_pod0 = next((p for p in reversed(pods) if pod_index(p) == 0), None)
    if newest_pod0 is not None and newest_pod0.status and newest_pod0.status.phase != "Pending":
        lines = client.available_log(newest_pod0.metadata.name, tail=400, quiet=True) or []
        info.progress = latest_progress(lines)
        restart = latest_restart(lines)
        if restart is not None:
            info.restarts, info.max_restarts, info.last_restart = restart
        saved = [found for found in map(parse_saved, lines) if found]
        info.checkpoint = saved[-1] if saved else None
    info.explanation = explain(client, job, info, pods)
    best_format = str(spec.train.get("ckpt_format", "ckpt")) if spec is not None else "ckpt"  # its trainer keys
    best_checkpoint = str(JobLayout.in_pod(name).ckpt_dir / best_name(best_format))
    add_history_summary(info, history_from_pods(client, name) or [], best_checkpoint)
    return info


def explain(client: Client, job: Any, info: JobInfo, pods: list[Any]) -> str | None:
    """One line on why a job is Pending, Failed, or on its way to an end (the 1.31+ interim conditions)."""
    failing = first_failure(current(pods))
    ending = interim(job)
    if info.phase == FAILED or ending is not None:
        cond = ending or condition(job, "Failed")
        word = INTERIM.get(cond.type, "") + ": " if ending is not None else ""
        text = f"{word}{cond.reason}: {cond.message}" if cond else "the Job failed"
        text += f"; first failing {failing}" if failing else ""
        if ending is not None:
            text += f"; waiting for {terminating(job, pods)} pod(s) to terminate"
        return text
    if info.phase != PENDING:
        return None
    return gang.explain_waiting(client, job) or _why_pending(client, job, pods)


def _why_pending(client: Client, job: Any, pods: list[Any]) -> str:
    if condition(job, "Suspended") is not None:
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
    event = (last_warning(client, "Pod", pods[-1].metadata.name) if pods else None) or last_warning(
        client, "Job", job.metadata.name
    )
    if event:
        return event
    if pods:
        return "pods are starting (pulling the image or mounting volumes)"
    return "no pods yet: the Job controller has not created them (quota, admission or a suspended queue)"


def last_warning(client: Client, kind: str, name: str) -> str | None:
    events = client.call(
        "list events",
        client.core.list_namespaced_event,
        client.namespace,
        field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
    )
    warnings = sorted((e for e in events.items if e.type == "Warning"), key=event_time)
    if not warnings:
        return None
    event = warnings[-1]
    return f"{kind.lower()} {name}: {event.reason}: {event.message}"
