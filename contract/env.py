"""The pod contract: what jobctl puts into a training pod and what the launcher reads back.

Pure (no MindSpore, no I/O): the one home of the ``JOBCTL_*`` env names, the in-pod paths, the job-directory
layout and the exit codes. ``jobctl.render`` turns a :class:`PodEnv` into a container's env list, the local
backend maps that list to a process env, and the launcher parses it back with :meth:`PodEnv.from_environ`.
Facts reach the pod once: the platform, the data and checkpoint paths travel here, never in ``train.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from contract.layout import TRAIN_CONFIG_KEY, JobLayout

# --- exit codes (launcher and trainer) ----------------------------------------------------------------------
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2  # the Job's podFailurePolicy fails the whole Job: retrying cannot help
EXIT_PERMANENT = 3  # a failure retrying cannot fix (a full volume, a diverged loss): the Job fails (FailJob)
EXIT_GROUP_CHANGED = 75  # EX_TEMPFAIL: a peer failed or stopped; this pod rejoins (podFailurePolicy: Ignore)
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped after saving
EXIT_RESTARTS_SPENT = 76  # the group failed more often than max_restarts allows: the Job fails (FailJob)
# Exit codes after which retrying cannot help: the rendered Job's podFailurePolicy fails the whole Job on them.
FAIL_JOB_EXIT_CODES = (EXIT_BAD_INPUT, EXIT_PERMANENT, EXIT_RESTARTS_SPENT)


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a shell or container runtime reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


# --- in-pod paths (the shared volume's and the job directory's: contract.layout) ---------------------------
DATA_MOUNT = "/data"
CONFIG_MOUNT = "/etc/jobctl"
PODINFO_MOUNT = "/etc/podinfo"
ANNOTATIONS_FILE = f"{PODINFO_MOUNT}/annotations"
HCCN_CONF = "/etc/hccn.conf"
CONTROLLER_RANKTABLE_MOUNT = "/user/serverid/devindex/config"  # where Ascend's hccl-controller mounts hccl.json
SHM_MOUNT = "/dev/shm"
SNAPSHOT_DIR = f"{SHM_MOUNT}/jobctl-snapshot"  # the pod's snapshot memory (contract.snapshot_file), in the shm volume
# Pods run with a read-only root filesystem; what MindSpore, CANN and Python write outside the job's folder goes to
# two emptyDirs: HOME and TMPDIR point at SCRATCH_MOUNT (caches, CANN's ~/ascend/log, tempfile), and the working
# directory is WORK_MOUNT (MindSpore's rank_*/ graph dumps, kernel_meta/, cuda_meta_*/).
SCRATCH_MOUNT = "/tmp"
WORK_MOUNT = "/workspace"
SCRATCH_ENV: dict[str, str] = {"HOME": SCRATCH_MOUNT, "TMPDIR": SCRATCH_MOUNT}
TERMINATION_LOG = "/dev/termination-log"  # Kubernetes' default terminationMessagePath
MASTER_PORT = 8118
LAUNCHER_MODULE = "trainer.launch"
TRAINER_MODULE = "trainer.train"
EVALUATE_MODULE = "trainer.evaluate"
EXPORT_MODULE = "trainer.export"

# --- platform families and launch modes ---------------------------------------------------------------------
Family = Literal["cpu", "gpu", "ascend"]
FAMILIES: tuple[Family, ...] = get_args(Family)
TrainerPlatform = Literal["CPU", "GPU", "Ascend"]  # trainer --platform
TRAINER_PLATFORM: dict[Family, TrainerPlatform] = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}
# msrun: MindSpore's dynamic cluster (one scheduler process on pod 0, workers everywhere), started directly the way
# msrun would; ranktable: the pods build the HCCL rank table; controller: Ascend's hccl-controller writes it.
Launcher = Literal["msrun", "ranktable", "controller"]
LAUNCHERS: tuple[Launcher, ...] = get_args(Launcher)
RANK_TABLE_LAUNCHERS: tuple[Launcher, ...] = ("ranktable", "controller")
# Trainer keys the launcher passes as flags (from this env); the ConfigMap's train.yaml never holds them.
LAUNCH_KEYS = ("platform", "data_dir", "val_dir", "ckpt_path", "is_distributed")

# The Job controller's label with the Job's uid on every pod: keys the rendezvous per submission.
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


class Var:
    """Env names of the contract."""

    JOB_NAME = "JOBCTL_JOB_NAME"
    FAMILY = "JOBCTL_PLATFORM"
    LAUNCHER = "JOBCTL_LAUNCHER"
    NUM_PODS = "JOBCTL_NUM_PODS"
    DEVICES_PER_POD = "JOBCTL_DEVICES_PER_POD"
    MASTER_ADDR = "JOBCTL_MASTER_ADDR"
    MASTER_PORT = "JOBCTL_MASTER_PORT"
    JOB_DIR = "JOBCTL_JOB_DIR"
    TRAIN_CONFIG = "JOBCTL_TRAIN_CONFIG"
    DATA_DIR = "JOBCTL_DATA_DIR"
    VAL_DIR = "JOBCTL_VAL_DIR"
    RENDEZVOUS_TIMEOUT = "JOBCTL_RENDEZVOUS_TIMEOUT"
    STALL_TIMEOUT = "JOBCTL_STALL_TIMEOUT"
    STOP_GRACE = "JOBCTL_STOP_GRACE"
    TRAINER_MODULE = "JOBCTL_TRAINER_MODULE"
    ANNOTATIONS_FILE = "JOBCTL_ANNOTATIONS_FILE"
    HCCN_CONF = "JOBCTL_HCCN_CONF"
    RUN_ID = "JOBCTL_RUN_ID"
    TERMINATION_LOG = "JOBCTL_TERMINATION_LOG"
    MAX_RESTARTS = "JOBCTL_MAX_RESTARTS"  # the group's restart budget: in-place restarts and pod replacements
    SNAPSHOT_DIR = "JOBCTL_SNAPSHOT_DIR"  # the pod's memory for snapshots (under /dev/shm); unset: no snapshots
    MIN_PODS = "JOBCTL_MIN_PODS"  # elastic: the group may shrink to this many pods (unset: num_pods, not elastic)
    SHRINK_AFTER = "JOBCTL_SHRINK_AFTER"  # elastic: seconds to wait for a missing pod before training without it
    # Set by the launcher for each trainer it starts (the trainer reports them in status.json):
    RESTARTS = "JOBCTL_RESTARTS"  # restarts so far (= the rendezvous attempt number)
    LAST_FAILURE = "JOBCTL_LAST_FAILURE"  # what ended the previous attempt, e.g. "rank 5 exited with code 137"
    SNAPSHOT_WRITE = "JOBCTL_SNAPSHOT_WRITE"  # the pod's first rank only: write snapshots into this pod-memory dir
    RESUME_FROM = "JOBCTL_RESUME_FROM"  # the snapshot file the group agreed on (unset: the newest checkpoint)
    RESUME_SOURCE = "JOBCTL_RESUME_SOURCE"  # where it came from, for the logs: "snapshot of pod 1 at step 812"
    MEMBERS = "JOBCTL_MEMBERS"  # the pods training in this attempt, "0,1,3" (contract.group)
    # Set by Kubernetes (Indexed Jobs), the downward API and the Ascend device plugin.
    POD_INDEX = "JOB_COMPLETION_INDEX"
    POD_NAME = "POD_NAME"
    POD_IP = "POD_IP"
    NODE_IP = "NODE_IP"
    VISIBLE_DEVICES = "ASCEND_VISIBLE_DEVICES"
    RANK_TABLE_FILE = "RANK_TABLE_FILE"


# MindSpore's compile cache: the launcher points it at the job directory; the trainer scopes it per graph.
COMPILE_CACHE_ENABLE = "MS_COMPILER_CACHE_ENABLE"
COMPILE_CACHE_PATH = "MS_COMPILER_CACHE_PATH"

# Downward-API fields the renderer maps into the env (the local backend gives local values for them).
DOWNWARD_FIELDS: dict[str, str] = {
    Var.POD_NAME: "metadata.name",
    Var.POD_IP: "status.podIP",
    Var.NODE_IP: "status.hostIP",
    Var.RUN_ID: f"metadata.labels['{JOB_UID_LABEL}']",
}
# Env names a spec's extra env may not set: the renderer, Kubernetes or the launcher own them.
RESERVED_ENV_PREFIXES = ("JOBCTL_", "MS_")
RESERVED_ENV_NAMES = frozenset(
    {Var.POD_INDEX, Var.POD_NAME, Var.POD_IP, Var.NODE_IP, Var.VISIBLE_DEVICES, Var.RANK_TABLE_FILE}
    | {"RANK_ID", "RANK_SIZE", "DEVICE_ID", "ASCEND_DEVICE_ID", "NVIDIA_VISIBLE_DEVICES"}
    | {"ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"}
)
DEFAULT_RENDEZVOUS_TIMEOUT = 600
DEFAULT_STALL_TIMEOUT = 1800
DEFAULT_STOP_GRACE = 30
DEFAULT_SHRINK_AFTER = 60  # a replacement on a healthy node starts within it; past it the node is likely gone


class ContractError(ValueError):
    """The pod env breaks the contract; the message names every bad variable (exit code EXIT_BAD_INPUT)."""


# --- the pod env --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodEnv:
    """Everything a training pod's launcher is told. The first block is rendered; the rest comes from the pod."""

    job_name: str
    family: Family
    launcher: Launcher
    num_pods: int
    devices_per_pod: int
    master_addr: str
    job_dir: Path
    data_dir: str
    val_dir: str | None = None
    master_port: int = MASTER_PORT
    train_config: Path = Path(CONFIG_MOUNT) / TRAIN_CONFIG_KEY
    rendezvous_timeout: float = DEFAULT_RENDEZVOUS_TIMEOUT
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    max_restarts: int = 0
    stop_grace: float = DEFAULT_STOP_GRACE
    trainer_module: str = TRAINER_MODULE
    annotations_file: Path = Path(ANNOTATIONS_FILE)
    hccn_conf: Path = Path(HCCN_CONF)
    controller_table: Path = Path(CONTROLLER_RANKTABLE_MOUNT) / "hccl.json"
    termination_log: Path | None = Path(TERMINATION_LOG)  # None: nowhere (a launcher run by hand)
    snapshot_dir: Path | None = None  # the pod's memory for snapshots; None: snapshots off
    min_pods: int = 0  # elastic: the fewest pods the group may train with; 0: num_pods (not elastic)
    shrink_after: float = DEFAULT_SHRINK_AFTER
    # From Kubernetes, the downward API and the device plugin:
    pod_index: int = 0
    pod_name: str = ""
    pod_ip: str = ""
    node_ip: str = ""
    run_id: str = ""  # the Job's uid
    visible_devices: str | None = None

    @property
    def world_size(self) -> int:
        return self.num_pods * self.devices_per_pod

    @property
    def fewest_pods(self) -> int:
        """The fewest pods this job trains with: ``min_pods``, or all of them when it is not elastic."""
        return self.min_pods or self.num_pods

    @property
    def elastic(self) -> bool:
        return self.fewest_pods < self.num_pods

    @property
    def layout(self) -> JobLayout:
        return JobLayout(self.job_dir)

    @property
    def trainer_platform(self) -> str:
        return TRAINER_PLATFORM[self.family]

    def global_rank(self, local_index: int) -> int:
        return self.pod_index * self.devices_per_pod + local_index

    def rendered_values(self) -> dict[str, str]:
        """The values jobctl renders as plain env (defaults left out, so the pod spec stays short)."""
        values = {
            Var.JOB_NAME: self.job_name,
            Var.FAMILY: self.family,
            Var.LAUNCHER: self.launcher,
            Var.NUM_PODS: str(self.num_pods),
            Var.DEVICES_PER_POD: str(self.devices_per_pod),
            Var.MASTER_ADDR: self.master_addr,
            Var.MASTER_PORT: str(self.master_port),
            Var.JOB_DIR: str(self.job_dir),
            Var.TRAIN_CONFIG: str(self.train_config),
            Var.DATA_DIR: self.data_dir,
            **({Var.VAL_DIR: self.val_dir} if self.val_dir else {}),
            Var.RENDEZVOUS_TIMEOUT: _number(self.rendezvous_timeout),
            Var.STALL_TIMEOUT: _number(self.stall_timeout),
            Var.MAX_RESTARTS: str(self.max_restarts),
            **({Var.TERMINATION_LOG: str(self.termination_log)} if self.termination_log else {}),
            **({Var.SNAPSHOT_DIR: str(self.snapshot_dir)} if self.snapshot_dir else {}),
            **(self._elastic_values() if self.elastic else {}),
        }
        optional = {
            Var.STOP_GRACE: (_number(self.stop_grace), _number(DEFAULT_STOP_GRACE)),
            Var.TRAINER_MODULE: (self.trainer_module, TRAINER_MODULE),
        }
        values.update({name: value for name, (value, default) in optional.items() if value != default})
        return values

    def _elastic_values(self) -> dict[str, str]:
        return {Var.MIN_PODS: str(self.min_pods), Var.SHRINK_AFTER: _number(self.shrink_after)}

    def to_container_env(self) -> list[dict[str, Any]]:
        """The container's ``env`` list: the rendered values, then the downward-API fields."""
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in self.rendered_values().items()]
        env += [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": p}}} for k, p in DOWNWARD_FIELDS.items()]
        return env

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], hostname: str = "") -> PodEnv:
        """Parse the env, or raise ContractError naming every missing or bad variable at once."""
        return _parse(_Reader(environ), hostname)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Reader:
    """Collects every problem with the env so the message names them all at once."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None, hint: str = "") -> str:
        value = self.environ.get(name, "").strip()
        if value:
            return value
        if default is None:
            self.problems.append(f"{name} is not set{hint}")
            return ""
        return default

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self.text(name, default, f" (one of {', '.join(choices)})").lower()
        if value and value not in choices:
            self.problems.append(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, name: str, default: float | None, low: float, high: float = float("inf")) -> float:
        return float(self._parsed(name, default, low, high, float))

    def whole(self, name: str, default: int | None, low: int, high: float = float("inf")) -> int:
        return int(self._parsed(name, default, low, high, int))

    def _parsed(
        self, name: str, default: float | None, low: float, high: float, kind: type[float] | type[int]
    ) -> float:
        raw = self.text(name, None if default is None else _number(default))
        if not raw:
            return low
        try:
            value = kind(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}")
            return low
        if not low <= value <= high:
            bounds = f">= {low:g}" if high == float("inf") else f"between {low:g} and {high:g}"
            self.problems.append(f"{name}={raw!r} must be {bounds}")
            return low
        return value


def _parse(r: _Reader, hostname: str) -> PodEnv:
    family = r.choice(Var.FAMILY, FAMILIES)
    launcher = r.choice(Var.LAUNCHER, LAUNCHERS, "ranktable" if family == "ascend" else "msrun")
    if launcher in RANK_TABLE_LAUNCHERS and family not in ("ascend", ""):
        r.problems.append(f"{Var.LAUNCHER}={launcher} needs {Var.FAMILY}=ascend (got {family}); use msrun")
    tables = launcher in RANK_TABLE_LAUNCHERS
    num_pods = r.whole(Var.NUM_PODS, None, 1)
    pod_ip = r.text(Var.POD_IP, "" if tables else None, " (downward API status.podIP)")
    node_ip = r.text(Var.NODE_IP, pod_ip, " (downward API status.hostIP)")
    if tables and not node_ip:
        r.problems.append(f"{Var.NODE_IP} is not set (downward API status.hostIP); the rank table's server_id needs it")
    env = PodEnv(
        job_name=r.text(Var.JOB_NAME),
        family=family,  # type: ignore[arg-type]  # checked by choice()
        launcher=launcher,  # type: ignore[arg-type]
        num_pods=num_pods,
        devices_per_pod=r.whole(Var.DEVICES_PER_POD, None, 1),
        master_addr=r.text(Var.MASTER_ADDR, None if launcher == "msrun" else ""),
        master_port=r.whole(Var.MASTER_PORT, MASTER_PORT, 1, 65535),
        job_dir=Path(r.text(Var.JOB_DIR)),
        train_config=Path(r.text(Var.TRAIN_CONFIG)),
        data_dir=r.text(Var.DATA_DIR),
        val_dir=r.text(Var.VAL_DIR, "") or None,
        rendezvous_timeout=r.number(Var.RENDEZVOUS_TIMEOUT, DEFAULT_RENDEZVOUS_TIMEOUT, 1),
        stall_timeout=r.number(Var.STALL_TIMEOUT, DEFAULT_STALL_TIMEOUT, 1),
        max_restarts=r.whole(Var.MAX_RESTARTS, 0, 0),
        stop_grace=r.number(Var.STOP_GRACE, DEFAULT_STOP_GRACE, 0),
        trainer_module=r.text(Var.TRAINER_MODULE, TRAINER_MODULE),
        annotations_file=Path(r.text(Var.ANNOTATIONS_FILE, ANNOTATIONS_FILE)),
        hccn_conf=Path(r.text(Var.HCCN_CONF, HCCN_CONF)),
        controller_table=Path(r.text(Var.RANK_TABLE_FILE, f"{CONTROLLER_RANKTABLE_MOUNT}/hccl.json")),
        termination_log=Path(r.text(Var.TERMINATION_LOG, "")) if r.environ.get(Var.TERMINATION_LOG) else None,
        snapshot_dir=Path(r.text(Var.SNAPSHOT_DIR, "")) if r.environ.get(Var.SNAPSHOT_DIR, "").strip() else None,
        min_pods=r.whole(Var.MIN_PODS, None, 1, max(num_pods, 1)) if r.environ.get(Var.MIN_PODS, "").strip() else 0,
        shrink_after=r.number(Var.SHRINK_AFTER, DEFAULT_SHRINK_AFTER, 0),
        pod_index=r.whole(Var.POD_INDEX, 0 if num_pods == 1 else None, 0, max(num_pods - 1, 0)),
        pod_name=r.text(Var.POD_NAME, hostname),
        pod_ip=pod_ip,
        node_ip=node_ip,
        run_id=r.text(Var.RUN_ID, ""),
        visible_devices=r.text(Var.VISIBLE_DEVICES, "") or None,
    )
    if r.problems:
        raise ContractError(
            "the pod environment is incomplete: " + "; ".join(r.problems) + ". These variables come from the "
            "rendered Job (jobctl render) or the local backend; fix the spec or set them by hand."
        )
    return env
