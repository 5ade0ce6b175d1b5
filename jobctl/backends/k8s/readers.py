"""Pure readers of the Job and pod objects (as the kubernetes client returns them): a Job's phase and conditions,
its pods' indexes, the newest pod per index, exit codes and termination messages; no API calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobctl import platforms
from jobctl.backends.base import COMPLETE, FAILED, PENDING, RUNNING, PodInfo

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
CONTAINER = "trainer"
INTERIM = {"FailureTarget": "failing", "SuccessCriteriaMet": "succeeded"}  # 1.31+: before Failed / Complete


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


def quantities_as_strings(obj: Any) -> Any:
    """A copy with resource quantities as strings: the API takes `8` or `"8"`, the client's models only strings."""
    if isinstance(obj, list):
        return [quantities_as_strings(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key in ("limits", "requests") and isinstance(value, dict):
            out[key] = {k: str(v) if isinstance(v, int | float) else v for k, v in value.items()}
        else:
            out[key] = quantities_as_strings(value)
    return out


def condition(job: Any, kind: str) -> Any:
    for cond in (job.status.conditions or []) if job.status else []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def interim(job: Any) -> Any:
    """The 1.31+ FailureTarget / SuccessCriteriaMet condition of a Job whose pods are still terminating."""
    if condition(job, "Complete") is not None or condition(job, "Failed") is not None:
        return None
    return next((c for kind in INTERIM if (c := condition(job, kind)) is not None), None)


def job_phase(job: Any) -> str:
    if condition(job, "Complete") is not None:
        return COMPLETE
    if condition(job, "Failed") is not None:
        return FAILED
    # status.active excludes terminating pods: a Job with an interim condition runs until they have stopped.
    if interim(job) is not None or (job.status and (job.status.active or 0) > 0):
        return RUNNING
    return PENDING


def terminating(job: Any, pods: list[Any]) -> int:
    """Pods still stopping: status.terminating (1.28+), else the pods not yet in a terminal phase."""
    counted = job.status.terminating if job.status else None
    if counted is not None:
        return int(counted)
    return sum(1 for p in pods if not (p.status and p.status.phase in ("Succeeded", "Failed")))


def event_time(event: Any) -> datetime:
    """When an event last happened (lastTimestamp, eventTime or creation: whichever its reporter filled)."""
    for stamp in (event.last_timestamp, event.event_time, event.first_timestamp, event.metadata.creation_timestamp):
        if isinstance(stamp, datetime):
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def termination_message(pod: Any) -> str | None:
    """The container's termination message (the launcher's one-line reason, or the log tail with
    FallbackToLogsOnError): first non-empty line, trimmed."""
    container = trainer_container(pod)
    for state in (container.state, container.last_state) if container is not None else ():
        terminated = state.terminated if state is not None else None
        if terminated is not None and terminated.message:
            line = next((x.strip() for x in terminated.message.splitlines() if x.strip()), "")
            return (line[:197] + "...") if len(line) > 200 else line or None
    return None


def first_failure(pods: list[Any]) -> str | None:
    """ "pod P exited C (Reason): message" of the first current pod that failed."""
    for pod, info in zip(current(pods), current_pods(pods), strict=True):
        if info.exit_code not in (None, 0):
            message = termination_message(pod)
            text = f"pod {info.name} exited {info.exit_code} ({info.reason or 'Error'})"
            return f"{text}: {message}" if message else text
    return None


def trainer_container(pod: Any) -> Any:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return next((s for s in statuses if s.name == CONTAINER), statuses[0] if statuses else None)


def pod_created(pod: Any) -> str:
    stamp = pod.metadata.creation_timestamp
    return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp or "")


def current(pods: list[Any]) -> list[Any]:
    """The newest pod of each index (older ones were replaced after a failure)."""
    newest: dict[int, Any] = {}
    for pod in pods:  # sorted by index, then creation
        newest[pod_index(pod)] = pod
    return [newest[i] for i in sorted(newest)]


def current_pods(pods: list[Any]) -> list[PodInfo]:
    """Per index: the newest pod, with its replacements counted as restarts."""
    infos = []
    for pod in current(pods):
        index = pod_index(pod)
        replaced = sum(1 for p in pods if pod_index(p) == index) - 1
        status = pod.status
        container = trainer_container(pod)
        restarts = replaced + (container.restart_count or 0 if container else 0)
        exit_code = reason = None
        if container is not None and container.state is not None:
            if container.state.terminated is not None:
                exit_code = container.state.terminated.exit_code
                reason = container.state.terminated.reason
            elif container.state.waiting is not None:
                reason = container.state.waiting.reason
        infos.append(
            PodInfo(
                index=index,
                name=pod.metadata.name,
                phase=status.phase if status and status.phase else PENDING,
                restarts=restarts,
                node=pod.spec.node_name if pod.spec else None,
                exit_code=exit_code,
                reason=reason or (status.reason if status else None),
            )
        )
    return infos
