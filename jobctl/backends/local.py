"""The local backend: the rendered Indexed Job as local process groups (no cluster).

`submit` writes the job directory and starts a detached supervisor (``python -m jobctl.backends.local supervise
<job_dir>``, its own session) that plays the Job controller for the rendered Job: each index is a "pod" running
the container's command with its env, downward-API fields mapped to local values (JOB_COMPLETION_INDEX, POD_NAME
``<job>-<i>``, POD_IP/NODE_IP 127.0.0.1) and volume mount paths mapped to local directories. A failed index gets
a new pod under the Job's rules: ``podFailurePolicy`` (exit 2 → FailJob, 75 → Ignore) and ``backoffLimit``.

Everything the other commands need lives in ``<job_dir>/local/``: ``state.json`` (written only by the supervisor),
``supervisor.pid``, ``pod-<i>.log`` (each pod's stdout, appended across replacements), ``volumes/`` (ConfigMap
files and emptyDirs) and ``work/pod-<i>`` (each pod's working directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from jobctl.backends.base import (
    COMPLETE,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    UNKNOWN,
    Backend,
    BackendError,
    JobInfo,
    JobNotFound,
    PodInfo,
    WaitTimeout,
    keep_line,
    last_json_line,
    latest_progress,
    spec_from_yaml,
)
from jobctl.jobdir import JobDir, list_job_dirs, tail_lines, write_atomic
from jobctl.platforms import platform_info

if TYPE_CHECKING:
    from jobctl.spec import JobSpec

LOCALHOST = "127.0.0.1"
PROGRESS_KEYS = ("epoch", "max_epoch", "step", "total_steps", "loss", "lr", "img_per_sec", "eta_seconds")
REJOIN_EXIT = 75  # the launcher's "group changed, start me again" (docs/INTERFACES.md)
FAIL_JOB_EXIT = 2
POLL_SECONDS = 0.2
RESTART_DELAY_SECONDS = 1.0
# Local processes need not wait Kubernetes' 30 s default before SIGKILL; the trainer saves at the next step.
MAX_GRACE_SECONDS = 30.0
_VAR_REF = re.compile(r"\$\$|\$\((\w+)\)")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _volume_dirs(pod_spec: dict[str, Any], objects: list[dict[str, Any]], local: Path, shared: Path) -> dict[str, Path]:
    """Each pod volume as a local directory (ConfigMaps and emptyDirs are materialised under ``local``)."""
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in find_kind(objects, "ConfigMap")}
    dirs: dict[str, Path] = {}
    for volume in pod_spec.get("volumes", []):
        name = volume["name"]
        if "hostPath" in volume:
            dirs[name] = Path(volume["hostPath"]["path"])
        elif "persistentVolumeClaim" in volume:
            # Only the shared volume can be a claim locally; the data volume is a host path (--data).
            dirs[name] = shared
        elif "configMap" in volume:
            data = config_maps.get(volume["configMap"]["name"], {})
            target = local / "volumes" / name
            items = volume["configMap"].get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                if item["key"] in data:
                    write_atomic(target / item["path"], data[item["key"]])
            target.mkdir(parents=True, exist_ok=True)
            dirs[name] = target
        else:  # emptyDir, downwardAPI, projected: an empty local directory is the closest equivalent
            dirs[name] = local / "volumes" / name
            dirs[name].mkdir(parents=True, exist_ok=True)
    return dirs


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


def plan_pods(objects: list[dict[str, Any]], job_dir: JobDir, shared: Path, master_port: int) -> list[PodPlan]:
    """One PodPlan per index of the rendered Indexed Job."""
    job = training_job(objects)
    job_name = job["metadata"]["name"]
    namespace = job["metadata"].get("namespace", "default")
    job_uid = job["metadata"].get("uid", "")
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in find_kind(objects, "ConfigMap")}
    mounts = _mount_map(container, _volume_dirs(pod_spec, objects, job_dir.local_dir, shared))
    plans = []
    for index in range(int(job["spec"].get("completions", 1))):
        pod_name = f"{job_name}-{index}"
        env: dict[str, str] = {"JOB_COMPLETION_INDEX": str(index)}
        for source in container.get("envFrom", []):
            env.update(config_maps.get(source.get("configMapRef", {}).get("name", ""), {}))
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = map_path(_expand(str(var["value"]), env), mounts)
            elif "fieldRef" in var.get("valueFrom", {}):
                field_path = var["valueFrom"]["fieldRef"]["fieldPath"]
                env[var["name"]] = _field_value(field_path, index, pod_name, namespace, job_uid)
            elif "configMapKeyRef" in var.get("valueFrom", {}):
                ref = var["valueFrom"]["configMapKeyRef"]
                env[var["name"]] = config_maps.get(ref["name"], {}).get(ref["key"], "")
            else:
                raise BackendError(
                    f"env var {var['name']} of the rendered pod uses {sorted(var.get('valueFrom', {}))}, which the "
                    "local backend cannot provide; run this job with --backend k8s"
                )
        # Pod 0 is this machine; several local jobs may run at once, so each gets its own port.
        env["JOBCTL_MASTER_ADDR"] = LOCALHOST
        env["JOBCTL_MASTER_PORT"] = str(master_port)
        argv = [map_path(_expand(arg, env), mounts) for arg in container.get("command", []) + container.get("args", [])]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the image's python is this venv's locally
        plans.append(PodPlan(index, pod_name, argv, env, job_dir.local_dir / "work" / pod_name))
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
            rules = [("FailJob", "In", {FAIL_JOB_EXIT}), ("Ignore", "In", {REJOIN_EXIT})]
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


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a container runtime reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    def __init__(self, job_dir: JobDir, objects: list[dict[str, Any]], shared: Path) -> None:
        self.job_dir = job_dir
        self.job = training_job(objects)
        self.rules = FailureRules.from_job(self.job)
        grace = self.job["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", MAX_GRACE_SECONDS)
        self.grace = min(float(grace), MAX_GRACE_SECONDS)
        self.port = free_port()
        self.plans = plan_pods(objects, job_dir, shared, self.port)
        self.pods = [PodState(plan.index, plan.name) for plan in self.plans]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restart_at: dict[int, float] = {}
        self.failures = 0
        self.phase = PENDING
        self.reason: str | None = None
        self.message: str | None = None
        self.started = now_iso()
        self.finished: str | None = None
        self.stopping = False  # we signalled the pods: their exits are ours, not failures
        self.delete_requested = False

    # state.json --------------------------------------------------------------------------------------

    def write_state(self) -> None:
        state = {
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "supervisor_pid": os.getpid(),
            "master_port": self.port,
            "failures": self.failures,
            "backoff_limit": self.rules.backoff_limit,
            "started": self.started,
            "finished": self.finished,
            "pods": [vars(pod) for pod in self.pods],
        }
        write_atomic(self.job_dir.local_dir / "state.json", json.dumps(state, indent=2) + "\n")

    # pods --------------------------------------------------------------------------------------------

    def pod_log(self, index: int) -> Path:
        return self.job_dir.local_dir / f"pod-{index}.log"

    def start(self, index: int) -> None:
        plan, pod = self.plans[index], self.pods[index]
        plan.cwd.mkdir(parents=True, exist_ok=True)
        with self.pod_log(index).open("ab") as log:
            attempt = len(pod.exit_codes) + 1
            log.write(f"[jobctl] pod {plan.name} attempt {attempt} starting at {now_iso()}\n".encode())
            log.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **plan.env}
            proc = subprocess.Popen(
                plan.argv,
                env=env,
                cwd=plan.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stopping it reaches the trainers too
            )
        self.procs[index] = proc
        pod.pid, pod.phase, pod.started = proc.pid, RUNNING, now_iso()

    def signal_pods(self, sig: int) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        """SIGTERM every running pod's group, SIGKILL what is left after the grace period."""
        self.stopping = True
        self.signal_pods(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.procs and time.monotonic() < deadline:
            self.reap()
            time.sleep(POLL_SECONDS)
        self.signal_pods(signal.SIGKILL)
        while self.procs:
            self.reap()
            time.sleep(POLL_SECONDS / 4)

    def reap(self) -> list[tuple[int, int]]:
        """Finished pods as (index, exit code); their state is updated."""
        done = []
        for index, proc in list(self.procs.items()):
            returncode = proc.poll()
            if returncode is None:
                continue
            del self.procs[index]
            code = exit_code_of(returncode)
            pod = self.pods[index]
            pod.exit_codes.append(code)
            pod.pid = None
            pod.phase = "Succeeded" if code == 0 else FAILED
            done.append((index, code))
        return done

    def fail(self, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = FAILED, reason, message
        self.stop_all()  # the final state is written once every pod has stopped, as the Job controller does

    def handle_exit(self, index: int, code: int) -> None:
        pod = self.pods[index]
        if code == 0 or self.stopping:
            return
        action = self.rules.action(code)
        described = f"pod {pod.name} exited with code {code}"
        if action in ("FailJob", "FailIndex"):
            self.fail("PodFailurePolicy", f"{described}, which fails the job at once (podFailurePolicy {action})")
            return
        if action == "Count":
            pod.failures += 1
            self.failures += 1
            used = pod.failures if self.rules.per_index else self.failures
            if used > self.rules.backoff_limit:
                self.fail(
                    "BackoffLimitExceeded",
                    f"{described}; {used} failures exceed backoffLimit {self.rules.backoff_limit} (max_restarts)",
                )
                return
        pod.restarts += 1
        pod.phase = PENDING
        self.restart_at[index] = time.monotonic() + RESTART_DELAY_SECONDS

    def succeeded(self) -> bool:
        """All indexes succeeded, or a successPolicy rule (succeededIndexes / succeededCount) is met."""
        done = {pod.index for pod in self.pods if pod.phase == "Succeeded"}
        if len(done) == len(self.pods):
            return True
        for rule in (self.job["spec"].get("successPolicy") or {}).get("rules", []):
            indexes = parse_indexes(rule["succeededIndexes"]) if "succeededIndexes" in rule else set(done)
            count = int(rule.get("succeededCount", len(indexes)))
            if indexes <= done and len(indexes & done) >= count:
                return True
        return False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "delete_requested", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "delete_requested", True))
        try:
            for index in range(len(self.plans)):
                self.start(index)
            self.phase = RUNNING
            self.write_state()
            while self.phase == RUNNING:
                self.step()
                time.sleep(POLL_SECONDS)
        except Exception as exc:  # never leave pods running without a supervisor
            self.fail("SupervisorError", f"the local supervisor failed: {exc!r} (see local/supervisor.log)")
            raise
        finally:
            self.finished = now_iso()
            self.write_state()
        return 0 if self.phase == COMPLETE else 1

    def step(self) -> None:
        """One pass of the controller: reap, apply the failure rules, start replacements, check success."""
        if self.delete_requested:
            self.fail("Deleted", "the job was deleted (jobctl delete)")
            return
        changed = False
        for index, code in self.reap():
            changed = True
            self.handle_exit(index, code)
            if self.phase != RUNNING:
                return
        for index, when in list(self.restart_at.items()):
            if time.monotonic() >= when:
                del self.restart_at[index]
                self.start(index)
                changed = True
        if self.succeeded():
            self.phase, self.reason, self.message = COMPLETE, "Completed", "the job's success criteria are met"
            self.stop_all()  # as the Job controller does once a successPolicy is met
        elif changed:
            self.write_state()


def supervise(root: Path) -> int:
    job_dir = JobDir(root)
    meta = json.loads((job_dir.local_dir / "job.json").read_text())
    return Supervisor(job_dir, meta["objects"], Path(meta["shared"])).run()


# The backend (runs in the CLI) -----------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    """True if pid is a live (not zombie) supervisor; between fork and exec its cmdline is still the CLI's."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"jobctl" in cmdline


class LocalBackend(Backend):
    name = "local"

    def __init__(self, shared: str | Path) -> None:
        self.shared = Path(shared).resolve()

    def job_dir(self, name: str) -> JobDir:
        return JobDir.of(self.shared, name)

    def read_state(self, job_dir: JobDir) -> dict[str, Any] | None:
        try:
            state = json.loads((job_dir.local_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def supervisor_pid(self, job_dir: JobDir) -> int | None:
        try:
            return int((job_dir.local_dir / "supervisor.pid").read_text())
        except (OSError, ValueError):
            return None

    def is_active(self, job_dir: JobDir) -> bool:
        pid = self.supervisor_pid(job_dir)
        return pid is not None and _process_alive(pid)

    def phase(self, job_dir: JobDir) -> str:
        state = self.read_state(job_dir)
        if state is None:
            return PENDING if self.is_active(job_dir) else UNKNOWN
        if state["phase"] not in FINISHED and not self.is_active(job_dir):
            return UNKNOWN  # the supervisor died without writing a final state (e.g. a reboot)
        return str(state["phase"])

    def require(self, name: str) -> JobDir:
        job_dir = self.job_dir(name)
        if not job_dir.local_dir.is_dir():
            raise JobNotFound(
                f"no local job named {name!r} under {self.shared}/jobs; check the name and --shared "
                "(jobctl list --backend local --shared DIR shows the jobs there)"
            )
        return job_dir

    # submit / delete -----------------------------------------------------------------------------------

    def submit(self, spec: JobSpec, objects: list[dict[str, Any]], *, resume: bool, replace: bool) -> str:
        job_dir = self.job_dir(spec.name)
        if replace:
            if job_dir.local_dir.is_dir():
                self.delete(spec.name)
            job_dir.remove()
        elif self.is_active(job_dir):
            raise BackendError(
                f"a local job named {spec.name!r} is still running; pick another --name, "
                f"`jobctl delete {spec.name} --backend local` it, or pass --replace",
                exit_code=2,
            )
        if job_dir.has_checkpoints() and not resume:
            raise BackendError(
                f"name: the job directory {job_dir.root} already holds checkpoints; pass --resume to continue "
                "from them, --replace to start over (deletes them), or choose another --name",
                exit_code=2,
            )
        config_map = _config_map_data(objects)
        existed = job_dir.exists()
        try:
            pid = self._start(job_dir, objects, config_map)
        except BaseException:  # nothing half written: a failed submit leaves no job behind
            shutil.rmtree(job_dir.local_dir, ignore_errors=True)
            if not existed:
                job_dir.remove()
            raise
        flags = f"--backend local --shared {self.shared}"
        return (
            f"job {spec.name} started locally (supervisor pid {pid}, job directory {job_dir.root}); follow it "
            f"with `jobctl logs {spec.name} -f {flags}` or `jobctl status {spec.name} {flags}`"
        )

    def _start(self, job_dir: JobDir, objects: list[dict[str, Any]], config_map: dict[str, str]) -> int:
        """Write the job directory and start the detached supervisor; returns its pid."""
        shutil.rmtree(job_dir.rendezvous_dir, ignore_errors=True)  # belongs to one submission (INTERFACES.md)
        job_dir.create()
        write_atomic(job_dir.spec_file, config_map.get("spec.yaml", ""))
        write_atomic(job_dir.train_file, config_map.get("train.yaml", ""))
        shutil.rmtree(job_dir.local_dir, ignore_errors=True)
        job_dir.local_dir.mkdir(parents=True)
        training_job(objects)["metadata"]["uid"] = str(uuid.uuid4())  # as the API server assigns one on create
        meta = {"objects": objects, "shared": str(self.shared), "submitted": now_iso()}
        write_atomic(job_dir.local_dir / "job.json", json.dumps(meta, indent=1))
        plan_pods(objects, job_dir, self.shared, 0)  # fail here, not in the detached process, on unmappable pods
        with (job_dir.local_dir / "supervisor.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobctl.backends.local", "supervise", str(job_dir.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI and its terminal
                close_fds=True,
            )
        write_atomic(job_dir.local_dir / "supervisor.pid", f"{proc.pid}\n")
        return proc.pid

    def delete(self, name: str) -> None:
        job_dir = self.require(name)
        pid = self.supervisor_pid(job_dir)
        if pid is not None and _process_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + MAX_GRACE_SECONDS + 10
            while _process_alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
            if _process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        # Pods whose supervisor died earlier still run in their own groups; stop those too.
        for pod in (self.read_state(job_dir) or {}).get("pods", []):
            if pod.get("pid"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pod["pid"]), signal.SIGKILL)
        shutil.rmtree(job_dir.local_dir, ignore_errors=True)

    # status / list -------------------------------------------------------------------------------------

    def status(self, name: str) -> JobInfo:
        return self._info(self.require(name))

    def list_jobs(self) -> list[JobInfo]:
        return [self._info(jd, brief=True) for jd in list_job_dirs(self.shared) if jd.local_dir.is_dir()]

    def _info(self, job_dir: JobDir, brief: bool = False) -> JobInfo:
        state = self.read_state(job_dir) or {}
        meta = _read_json(job_dir.local_dir / "job.json")
        job = training_job(meta["objects"]) if meta else {}
        env = {v["name"]: v.get("value") for v in _container(job).get("env", [])} if job else {}
        pods = [
            PodInfo(
                index=p["index"],
                name=p["name"],
                phase=p["phase"],
                restarts=p["restarts"],
                node="localhost",
                exit_code=p["exit_codes"][-1] if p["exit_codes"] else None,
            )
            for p in state.get("pods", [])
        ]
        phase = self.phase(job_dir)
        info = JobInfo(
            name=job_dir.name,
            namespace="local",
            phase=phase,
            platform=str(env.get("JOBCTL_PLATFORM", "")),
            devices=int(env.get("JOBCTL_NUM_PODS") or 0) * int(env.get("JOBCTL_DEVICES_PER_POD") or 0),
            pods_total=int(job.get("spec", {}).get("completions", 0)) if job else 0,
            restarts=sum(p.restarts for p in pods),
            created=meta.get("submitted") if meta else None,
            pods=pods,
        )
        if brief:
            return info
        # The trainer's status.json is on this machine (unlike on a cluster): it beats parsing a log tail.
        status = job_dir.read_status()
        if status is not None and status.get("total_steps"):
            info.progress = {key: status.get(key) for key in PROGRESS_KEYS}
        else:
            lines = [line for i in range(len(pods)) for line in tail_lines(job_dir.local_dir / f"pod-{i}.log")]
            info.progress = latest_progress(lines)
        newest = job_dir.newest_checkpoint()
        info.checkpoint = str(newest.path) if newest else None
        if phase == FAILED:
            info.explanation = f"{state.get('reason')}: {state.get('message')}"
        elif phase == UNKNOWN:
            info.explanation = (
                f"the local supervisor is gone without a final state (see {job_dir.local_dir}/supervisor.log); "
                "`jobctl delete` it and resubmit"
            )
        elif phase == PENDING:
            info.explanation = "the supervisor is starting the pods"
        return info

    # logs / wait ---------------------------------------------------------------------------------------

    def logs(self, name: str, out: TextIO, *, follow: bool, rank: int | None) -> None:
        job_dir = self.require(name)
        count = int(training_job(_read_json(job_dir.local_dir / "job.json")["objects"])["spec"]["completions"])
        paths = [job_dir.local_dir / f"pod-{i}.log" for i in range(count)]
        if not follow:
            for path in paths:
                for line in _read_lines(path):
                    if keep_line(line, rank):
                        out.write(line + "\n")
            return
        positions = dict.fromkeys(paths, 0)
        partial = dict.fromkeys(paths, "")
        while True:
            finished = self.phase(job_dir) in (*FINISHED, UNKNOWN) or not job_dir.local_dir.is_dir()
            for path in paths:
                try:
                    with path.open("rb") as handle:
                        handle.seek(positions[path])
                        chunk = handle.read()
                        positions[path] = handle.tell()
                except OSError:
                    continue
                text = partial[path] + chunk.decode("utf-8", "replace")
                *complete, partial[path] = text.split("\n")
                for line in complete:
                    if keep_line(line, rank):
                        out.write(line + "\n")
            out.flush()
            if finished:  # one last read after the final state, so nothing written before it is lost
                return
            time.sleep(0.5)

    def wait(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        job_dir = self.require(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            phase = self.phase(job_dir)
            if phase in FINISHED or phase == UNKNOWN:
                return phase
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {name} is still {phase} after {timeout:g} s")
            time.sleep(0.5)

    # eval ----------------------------------------------------------------------------------------------

    def load_spec(self, name: str) -> JobSpec:
        spec_file = self.job_dir(name).spec_file
        try:
            text = spec_file.read_text()
        except OSError:
            raise JobNotFound(
                f"no job directory with a spec.yaml for {name!r} under {self.shared}/jobs; check the name and --shared"
            ) from None
        return spec_from_yaml(text, str(spec_file))

    def evaluate(self, spec: JobSpec, checkpoint: str, data: str | None) -> dict[str, Any]:
        job_dir = self.job_dir(spec.name)
        ckpt = _resolve_checkpoint(job_dir, checkpoint)
        data_dir = data or _local_val_dir(spec)
        if not data_dir or not Path(data_dir).is_dir():
            raise BackendError(
                f"--data: {data_dir!r} is not a directory; pass the validation set (class folders) with --data DIR",
                exit_code=2,
            )
        platform = platform_info(spec.platform).trainer_platform
        argv = [sys.executable, "-m", "trainer.evaluate", "--data_dir", str(data_dir), "--platform", platform]
        # This machine's cores, not a cluster node's: MindSpore refuses more data workers than CPUs.
        workers = min(int(spec.train.get("num_parallel_workers", 8)), os.cpu_count() or 1)
        argv += ["--pretrained", str(ckpt), "--num_parallel_workers", str(workers)]
        argv += ["--output_dir", str(job_dir.eval_dir)]  # eval/<checkpoint stem>.json, as the eval Job writes it
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        result = last_json_line(proc.stdout)
        if proc.returncode != 0 or result is None:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise BackendError(f"trainer.evaluate exited with code {proc.returncode} on {ckpt}:\n{tail}")
        return result


def _container(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"]["spec"]["containers"][0])


def _config_map_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    for cm in find_kind(objects, "ConfigMap"):
        if "spec.yaml" in cm.get("data", {}):
            return dict(cm["data"])
    raise BackendError("the rendered objects hold no ConfigMap with spec.yaml; this is a jobctl.render bug")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _resolve_checkpoint(job_dir: JobDir, checkpoint: str) -> Path:
    if checkpoint == "latest":
        newest = job_dir.newest_checkpoint()
        if newest is None:
            raise BackendError(
                f"--checkpoint latest: {job_dir.ckpt_dir} holds no checkpoint yet; wait for the job to save one "
                "(`jobctl status` shows the newest) or pass --checkpoint PATH",
                exit_code=2,
            )
        return newest.path
    path = Path(checkpoint)
    if not path.is_absolute() and not path.exists():
        path = job_dir.ckpt_dir / checkpoint
    if not path.exists():
        raise BackendError(f"--checkpoint: {checkpoint} does not exist; pass latest or a .ckpt file", exit_code=2)
    return path


def _local_val_dir(spec: JobSpec) -> str | None:
    """The job's validation directory on this machine (the data volume is a host path locally)."""
    if spec.data.host_path is None or spec.data.val_subpath is None:
        return None
    return str(Path(spec.data.host_path) / spec.data.val_subpath)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "supervise":
        print("usage: python -m jobctl.backends.local supervise JOB_DIR", file=sys.stderr)
        return 2
    return supervise(Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
