"""Rendered pods as local processes (the processes runner of jobctl.backends.local.interpreter).

Each index becomes a PodPlan: the interpreted pod's command and env (downward-API fields with local values, Secrets
from $JOBCTL_LOCAL_SECRETS/<secret>/<key>) with in-pod paths mapped to the local folders behind their mounts;
NetworkPolicies are not emulated: local pods share this machine's network. FailureRules reads the Job's
``podFailurePolicy``/``backoffLimit`` so a replacement pod is started under the same rules Kubernetes would apply.
"""

from __future__ import annotations

import hashlib
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


def map_path(value: str, mounts: list[tuple[str, str]]) -> str:
    """A pod path under a mount → the local path; other values unchanged."""
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return local + value[len(mount_path) :]
    return value


def pod_work_dir(job_dir: JobDir, index: int) -> Path:
    return job_dir.local_dir / "work" / f"{job_dir.name}-{index}"


def termination_log(job_dir: JobDir, index: int) -> Path:
    """Where pod ``index``'s launcher writes why it ended. Kubernetes keeps that file on the node, not on the
    shared volume, and so does the local backend: a full shared volume must not swallow the reason."""
    key = hashlib.sha256(str(job_dir.root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "jobctl-termination" / key / f"pod-{index}"


def plan_pods(objects: list[dict[str, Any]], job_dir: JobDir, shared: Path, master_port: int) -> list[PodPlan]:
    """One PodPlan per index of the rendered Indexed Job: the interpreter's pods, with in-pod paths mapped to
    the local folders behind their mounts (longest mount path first, so /data/train wins over /data)."""
    where = Volumes(scratch=job_dir.local_dir, host_dirs={}, claim_dir=shared, empty_dirs=True)
    plans = []
    for pod in interpret(objects, where):
        mounts = sorted(((m.path, str(m.source)) for m in pod.mounts if m.source), key=lambda m: -len(m[0]))
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


@dataclass
class FailureRules:
    """``backoffLimit`` / ``backoffLimitPerIndex`` and the exit-code rules of ``podFailurePolicy``."""

    backoff_limit: int = 6
    per_index: bool = False
    exit_rules: list[tuple[str, str, set[int]]] = field(default_factory=list)  # (action, operator, values)

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> FailureRules:
        spec = job["spec"]
        rules = []
        for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
            codes = rule.get("onExitCodes")
            if codes:
                rules.append((rule["action"], codes["operator"], set(codes["values"])))
        if not rules:  # the pod contract's defaults, for a Job rendered without podFailurePolicy
            rules = [("FailJob", "In", set(FAIL_JOB_EXIT_CODES)), ("Ignore", "In", {EXIT_GROUP_CHANGED})]
        if spec.get("backoffLimitPerIndex") is not None:
            return cls(int(spec["backoffLimitPerIndex"]), True, rules)
        return cls(int(spec.get("backoffLimit", 6)), False, rules)

    def action(self, exit_code: int) -> str:
        """FailJob, FailIndex, Ignore or Count: the first matching rule wins, as in Kubernetes."""
        for action, operator, values in self.exit_rules:
            if (operator == "In") == (exit_code in values):
                return action
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
    restarts: int = 0
    failures: int = 0
    exit_codes: list[int] = field(default_factory=list)
    started: str | None = None
    message: str | None = None  # the last exit's termination message
