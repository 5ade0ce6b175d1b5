"""Rendered pods as local processes: what the local backend runs for each index of a rendered Indexed Job.

Each index becomes a PodPlan: the container's command, its env with downward-API fields mapped to local values
(JOB_COMPLETION_INDEX, POD_NAME ``<job>-<i>``, POD_IP/NODE_IP 127.0.0.1, the Job's uid) and volume mount paths
mapped to local directories (a subPath is a folder of the volume's directory; Secrets come from
$JOBCTL_LOCAL_SECRETS/<secret>/<key>; NetworkPolicies are not emulated: local pods share this machine's network).
FailureRules reads the Job's ``podFailurePolicy``/``backoffLimit`` so a replacement
pod is started under the same rules Kubernetes would apply.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobctl.backends.base import (
    PENDING,
    BackendError,
)
from jobctl.jobdir import JobDir, write_atomic
from trainer.launcher.contract import EXIT_GROUP_CHANGED, FAIL_JOB_EXIT_CODES, Var

LOCALHOST = "127.0.0.1"
PROGRESS_KEYS = ("epoch", "max_epoch", "step", "total_steps", "loss", "lr", "img_per_sec", "eta_seconds")
POLL_SECONDS = 0.2
RESTART_DELAY_SECONDS = 1.0
# Local processes need not wait Kubernetes' 30 s default before SIGKILL; the trainer saves at the next step.
MAX_GRACE_SECONDS = 30.0
_VAR_REF = re.compile(r"\$\$|\$\((\w+)\)")
# Kubernetes Secrets are not reachable locally: a pod's secretKeyRef, envFrom secretRef and secret volumes read
# <this folder>/<secret>/<key> files instead (the layout a mounted Secret has).
LOCAL_SECRETS_ENV = "JOBCTL_LOCAL_SECRETS"


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


def find_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def training_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = find_kind(objects, "Job")
    if len(jobs) != 1:
        raise BackendError(f"expected exactly one Job among the rendered objects, found {len(jobs)}")
    return jobs[0]


def _volume_dirs(
    pod_spec: dict[str, Any], objects: list[dict[str, Any]], local: Path, shared: Path, pod_dir: Path
) -> dict[str, Path]:
    """Each pod volume as a local directory: ConfigMaps under ``local``, emptyDirs in the pod's own ``pod_dir``
    (which the controller empties when it replaces the pod, as a node drops a pod's emptyDirs)."""
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in find_kind(objects, "ConfigMap")}
    dirs: dict[str, Path] = {}
    for volume in pod_spec.get("volumes", []):
        name = volume["name"]
        if "hostPath" in volume:
            dirs[name] = Path(volume["hostPath"]["path"])
        elif "persistentVolumeClaim" in volume:
            # Only the shared volume can be a claim locally; the data volume is a host path (--data).
            dirs[name] = shared
        elif "secret" in volume:
            dirs[name] = local_secret_dir(volume["secret"]["secretName"])
        elif "configMap" in volume:
            data = config_maps.get(volume["configMap"]["name"], {})
            target = local / "volumes" / name
            items = volume["configMap"].get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                if item["key"] in data:
                    write_atomic(target / item["path"], data[item["key"]])
            target.mkdir(parents=True, exist_ok=True)
            dirs[name] = target
        elif "emptyDir" in volume:  # the pod's own: its in-memory snapshots live in one (/dev/shm)
            dirs[name] = pod_dir / name
            dirs[name].mkdir(parents=True, exist_ok=True)
        else:  # downwardAPI, projected: an empty local directory is the closest equivalent
            dirs[name] = local / "volumes" / name
            dirs[name].mkdir(parents=True, exist_ok=True)
    return dirs


def local_secret_dir(secret: str) -> Path:
    """The local stand-in of a Secret: $JOBCTL_LOCAL_SECRETS/<secret>/ (BackendError, exit 2, without it)."""
    root = os.environ.get(LOCAL_SECRETS_ENV, "").strip()
    folder = Path(root).expanduser() / secret if root else None
    if folder is None or not folder.is_dir():
        where = f"{folder} is not a folder" if folder else f"{LOCAL_SECRETS_ENV} is not set"
        raise BackendError(
            f"the job uses Secret {secret!r}, which the local backend cannot read from a cluster ({where}); set "
            f"{LOCAL_SECRETS_ENV}=DIR with one file per key in DIR/{secret}/ (the layout of a mounted Secret)",
            exit_code=2,
        )
    return folder


def _secret_value(secret: str, key: str, env_name: str = "") -> str:
    try:
        folder = local_secret_dir(secret)
    except BackendError as exc:
        raise BackendError(f"env {env_name}: {exc.message}" if env_name else exc.message, exc.exit_code) from None
    path = folder / key
    try:
        return path.read_text().rstrip("\n")
    except OSError as exc:
        raise BackendError(f"Secret {secret!r} key {key!r}: cannot read {path}: {exc.strerror}", exit_code=2) from None


def _secret_env(secret: str) -> dict[str, str]:
    files = sorted(p for p in local_secret_dir(secret).iterdir() if p.is_file() and not p.name.startswith("."))
    return {p.name: _secret_value(secret, p.name) for p in files}


def _mount_map(container: dict[str, Any], volume_dirs: dict[str, Path]) -> list[tuple[str, str]]:
    """(mountPath, local path) pairs, longest mount path first so /data/train wins over /data."""
    mounts = []
    for mount in container.get("volumeMounts", []):
        base = volume_dirs.get(mount["name"])
        if base is None:
            continue
        local = base / mount["subPath"] if mount.get("subPath") else base
        mounts.append((mount["mountPath"].rstrip("/") or "/", str(local)))
    return sorted(mounts, key=lambda pair: len(pair[0]), reverse=True)


def map_path(value: str, mounts: list[tuple[str, str]]) -> str:
    """A pod path under a mount → the local path; other values unchanged."""
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return local + value[len(mount_path) :]
    return value


def _field_value(field_path: str, index: int, pod_name: str, namespace: str, job_uid: str) -> str:
    if field_path == "metadata.name":
        return pod_name
    if field_path == "metadata.namespace":
        return namespace
    if field_path in ("status.podIP", "status.hostIP", "status.podIPs", "status.hostIPs"):
        return LOCALHOST
    if field_path == "spec.nodeName":
        return socket.gethostname()
    if "job-completion-index" in field_path:
        return str(index)
    if "controller-uid" in field_path:
        return job_uid
    return ""


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ is a literal $, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


def pod_work_dir(job_dir: JobDir, index: int) -> Path:
    return job_dir.local_dir / "work" / f"{job_dir.name}-{index}"


def pod_volumes_dir(job_dir: JobDir, index: int) -> Path:
    """Pod ``index``'s emptyDir volumes (its /dev/shm among them): gone when the pod is replaced."""
    return job_dir.local_dir / "pods" / f"{job_dir.name}-{index}"


def termination_log(job_dir: JobDir, index: int) -> Path:
    """Where pod ``index``'s launcher writes why it ended. Kubernetes keeps that file on the node, not on the
    shared volume, and so does the local backend: a full shared volume must not swallow the reason."""
    key = hashlib.sha256(str(job_dir.root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "jobctl-termination" / key / f"pod-{index}"


def plan_pods(objects: list[dict[str, Any]], job_dir: JobDir, shared: Path, master_port: int) -> list[PodPlan]:
    """One PodPlan per index of the rendered Indexed Job."""
    job = training_job(objects)
    job_name = job["metadata"]["name"]
    namespace = job["metadata"].get("namespace", "default")
    job_uid = job["metadata"].get("uid", "")
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in find_kind(objects, "ConfigMap")}
    plans = []
    for index in range(int(job["spec"].get("completions", 1))):
        pod_dir = pod_volumes_dir(job_dir, index)
        mounts = _mount_map(container, _volume_dirs(pod_spec, objects, job_dir.local_dir, shared, pod_dir))
        pod_name = f"{job_name}-{index}"
        env: dict[str, str] = {Var.POD_INDEX: str(index)}
        for source in container.get("envFrom", []):
            env.update(config_maps.get(source.get("configMapRef", {}).get("name", ""), {}))
            if "secretRef" in source:
                env.update(_secret_env(source["secretRef"]["name"]))
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = map_path(_expand(str(var["value"]), env), mounts)
            elif "fieldRef" in var.get("valueFrom", {}):
                field_path = var["valueFrom"]["fieldRef"]["fieldPath"]
                env[var["name"]] = _field_value(field_path, index, pod_name, namespace, job_uid)
            elif "secretKeyRef" in var.get("valueFrom", {}):
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = _secret_value(ref["name"], ref["key"], var["name"])
            elif "configMapKeyRef" in var.get("valueFrom", {}):
                ref = var["valueFrom"]["configMapKeyRef"]
                env[var["name"]] = config_maps.get(ref["name"], {}).get(ref["key"], "")
            else:
                raise BackendError(
                    f"env var {var['name']} of the rendered pod uses {sorted(var.get('valueFrom', {}))}, which the "
                    "local backend cannot provide; run this job with --backend k8s"
                )
        # Pod 0 is this machine; several local jobs may run at once, so each gets its own port.
        env[Var.MASTER_ADDR] = LOCALHOST
        env[Var.MASTER_PORT] = str(master_port)
        # Kubernetes keeps the container's termination-message file; locally it lives in the pod's work dir.
        env[Var.TERMINATION_LOG] = str(termination_log(job_dir, index))
        argv = [map_path(_expand(arg, env), mounts) for arg in container.get("command", []) + container.get("args", [])]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the image's python is this venv's locally
        plans.append(PodPlan(index, pod_name, argv, env, pod_work_dir(job_dir, index)))
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


# The supervisor (runs detached, one per local job) ----------------------------------------------------------


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
