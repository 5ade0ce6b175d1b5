"""Rendered pods as local processes (the processes runner of jobctl.backends.local.interpreter).

Each index becomes a PodPlan: the interpreted pod's command and env (downward-API fields with local values, Secrets
from $JOBCTL_LOCAL_SECRETS/<secret>/<key>) with in-pod paths mapped to the local folders behind their mounts;
NetworkPolicies are not emulated: local pods share this machine's network. FailureRules reads the Job's
``podFailurePolicy``/``backoffLimit`` so a replacement pod is started under the same rules Kubernetes would apply.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.env import EXIT_GROUP_CHANGED, FAIL_JOB_EXIT_CODES, Var
from jobctl.backends.base import (
    PENDING,
)
from jobctl.backends.local.interpreter import (  # noqa: F401  (re-exported for the backend)
    LOCAL_SECRETS_ENV,
    LOCALHOST,
    Volumes,
    find_kind,
    interpret,
    local_secret_dir,
    training_job,
)
from jobctl.jobdir import JobDir

PROGRESS_KEYS = ("epoch", "max_epoch", "step", "total_steps", "loss", "lr", "img_per_sec", "eta_seconds")
POLL_SECONDS = 0.2
RESTART_DELAY_SECONDS = 1.0
# Local processes need not wait Kubernetes' 30 s default before SIGKILL; the trainer saves at the next step.
MAX_GRACE_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


# Rendered pod → local process ------------------------------------------------------------------------------


@dataclass
class PodPlan:
    """How to start one index: the container's command and env with cluster values replaced by local ones."""

    index: int
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path

    def process_env(self) -> dict[str, str]:
        """The environment the pod's process starts with (this machine's, then the pod's)."""
        return {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}


def map_path(value: str, mounts: list[tuple[str, str]]) -> str:
    """A pod path under a mount → the local path; other values unchanged."""
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return local + value[len(mount_path) :]
    return value


def pod_work_dir(job_dir: JobDir, index: int) -> Path:
    return job_dir.local_dir / "work" / f"{job_dir.name}-{index}"


def pod_volumes_dir(job_dir: JobDir, index: int) -> Path:
    """Pod ``index``'s emptyDir volumes (its /dev/shm among them): gone when the pod is replaced (the controller
    empties them then, as a node drops a pod's emptyDirs)."""
    return job_dir.local_dir / "pods" / f"{job_dir.name}-{index}"


def _empty_dir(own: Path, mount_path: str) -> Path:
    """The pod's own folder for the emptyDir mounted at ``mount_path`` (/dev/shm -> <own>/dev_shm)."""
    folder = own / (mount_path.strip("/").replace("/", "_") or "root")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def termination_log(job_dir: JobDir, index: int) -> Path:
    """Where pod ``index``'s launcher writes why it ended. Kubernetes keeps that file on the node, not on the
    shared volume, and so does the local backend: a full shared volume must not swallow the reason."""
    key = hashlib.sha256(str(job_dir.root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "jobctl-termination" / key / f"pod-{index}"


def view_mountpoint(job_dir: JobDir, index: int) -> Path:
    """Where pod ``index`` sees the shared volume through its own caching view (``--shared-cache``): off the
    shared volume (a view inside the directory it shows would show itself), one fixed place per index."""
    key = hashlib.sha256(str(job_dir.root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "jobctl-views" / key / f"pod-{index}"


def _through(source: Path, shared: Path, view: Path | None) -> str:
    """A mount's local folder; one on the shared volume seen through the pod's view when it has one."""
    if view is not None and source.is_relative_to(shared):
        return str(view / source.relative_to(shared))
    return str(source)


def plan_pods(
    objects: list[dict[str, Any]], job_dir: JobDir, shared: Path, master_port: int, *, views: bool = False
) -> list[PodPlan]:
    """One PodPlan per index of the rendered Indexed Job: the interpreter's pods, with in-pod paths mapped to
    the local folders behind their mounts (longest mount path first, so /data/train wins over /data); with
    ``views`` each pod's shared volume is its ``view_mountpoint`` (the controller mounts a caching view of
    ``shared`` there before the pod starts)."""
    where = Volumes(scratch=job_dir.local_dir, host_dirs={}, claim_dir=shared, empty_dirs=False)
    plans = []
    for pod in interpret(objects, where):
        view = view_mountpoint(job_dir, pod.index) if views else None
        own = pod_volumes_dir(job_dir, pod.index)  # each pod's emptyDirs are its own, as on a node
        sources = [
            (m.path, _through(m.source, shared, view) if m.source else str(_empty_dir(own, m.path))) for m in pod.mounts
        ]
        mounts = sorted(sources, key=lambda m: -len(m[0]))
        env = {key: map_path(value, mounts) for key, value in pod.env.items()}
        # Pod 0 is this machine; several local jobs may run at once, so each gets its own port.
        env[Var.MASTER_ADDR] = LOCALHOST
        env[Var.MASTER_PORT] = str(master_port)
        # Kubernetes keeps the container's termination-message file on the node; so does the local backend.
        env[Var.TERMINATION_LOG] = str(termination_log(job_dir, pod.index))
        argv = [map_path(arg, mounts) for arg in pod.command]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the image's python is this venv's locally
        plans.append(PodPlan(pod.index, pod.name, argv, env, pod_work_dir(job_dir, pod.index)))
    return plans


# The Job controller's failure rules -----------------------------------------------------------------------


DISRUPTION_TARGET = "DisruptionTarget"  # the pod condition of a pod lost with its node (or evicted, preempted)


@dataclass(frozen=True)
class PolicyRule:
    """One ``podFailurePolicy`` rule: ``onExitCodes`` (exit_codes) or ``onPodConditions`` (conditions, status True)."""

    action: str
    operator: str = "In"
    exit_codes: frozenset[int] | None = None
    conditions: frozenset[str] = frozenset()

    def matches(self, exit_code: int, conditions: frozenset[str]) -> bool:
        if self.exit_codes is not None:
            return (self.operator == "In") == (exit_code in self.exit_codes)
        return bool(self.conditions & conditions)


@dataclass
class FailureRules:
    """``backoffLimit`` / ``backoffLimitPerIndex`` and the rules of ``podFailurePolicy``, in their order."""

    backoff_limit: int = 6
    per_index: bool = False
    rules: list[PolicyRule] = field(default_factory=list)

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> FailureRules:
        spec = job["spec"]
        rules = []
        for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
            codes = rule.get("onExitCodes")
            if codes:
                rules.append(PolicyRule(rule["action"], codes["operator"], frozenset(codes["values"])))
            wanted = {c["type"] for c in rule.get("onPodConditions") or [] if c.get("status", "True") == "True"}
            if wanted:
                rules.append(PolicyRule(rule["action"], conditions=frozenset(wanted)))
        if not rules:  # the pod contract's defaults, for a Job rendered without podFailurePolicy
            rules = [
                PolicyRule("FailJob", exit_codes=frozenset(FAIL_JOB_EXIT_CODES)),
                PolicyRule("Ignore", exit_codes=frozenset({EXIT_GROUP_CHANGED})),
            ]
        if spec.get("backoffLimitPerIndex") is not None:
            return cls(int(spec["backoffLimitPerIndex"]), True, rules)
        return cls(int(spec.get("backoffLimit", 6)), False, rules)

    def action(self, exit_code: int, conditions: frozenset[str] = frozenset()) -> str:
        """FailJob, FailIndex, Ignore or Count for a pod that ended with ``exit_code`` and pod ``conditions``
        (DISRUPTION_TARGET for one lost with its node): the first matching rule wins, as in Kubernetes."""
        for rule in self.rules:
            if rule.matches(exit_code, conditions):
                return rule.action
        return "Count"


def parse_indexes(text: str) -> set[int]:
    """A Job index list such as "0", "1,3-5"."""
    found: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


# The controller (runs detached, one per local job) ----------------------------------------------------------


@dataclass
class PodState:
    index: int
    name: str
    phase: str = PENDING
    pid: int | None = None
    start_ticks: int | None = None  # the pid's start time: with it, a later reader knows the pid is still this pod
    restarts: int = 0
    failures: int = 0
    exit_codes: list[int] = field(default_factory=list)
    started: str | None = None
    message: str | None = None  # the last exit's termination message
    fault: dict[str, Any] | None = None  # while `jobctl fault` holds the pod down: its Fault.to_json()
