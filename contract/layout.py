"""The job directory ``<shared>/jobs/<name>/`` (docs/INTERFACES.md): every path in it, spelled once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARED_MOUNT = "/shared"  # the shared volume in a pod
TRAIN_CONFIG_KEY = "train.yaml"  # the trainer's keys: a file of the job directory and a key of its ConfigMap
SPEC_KEY = "spec.yaml"  # the resolved spec: likewise
CKPT_DIR = "ckpt"  # the trainer's --ckpt_path, under the job directory
STATUS_FILE = "status.json"  # rank 0's status, in the checkpoint directory (contract.progress)


@dataclass(frozen=True)
class JobLayout:
    """Paths of one job's directory ``<shared>/jobs/<name>``; in a pod ``<shared>`` is SHARED_MOUNT."""

    root: Path

    @classmethod
    def of(cls, shared: str | Path, name: str) -> JobLayout:
        return cls(Path(shared) / "jobs" / name)

    @classmethod
    def in_pod(cls, name: str) -> JobLayout:
        return cls.of(SHARED_MOUNT, name)

    @property
    def name(self) -> str:
        return self.root.name

    spec_file = property(lambda self: self.root / SPEC_KEY)
    train_file = property(lambda self: self.root / TRAIN_CONFIG_KEY)
    ckpt_dir = property(lambda self: self.root / CKPT_DIR)
    status_file = property(lambda self: self.root / CKPT_DIR / STATUS_FILE)
    logs_dir = property(lambda self: self.root / "logs")
    eval_dir = property(lambda self: self.root / "eval")
    rendezvous_dir = property(lambda self: self.root / "rendezvous")
    local_dir = property(lambda self: self.root / "local")  # the local backend's own state
    scheduler_log = property(lambda self: self.root / "logs" / "scheduler.log")
    compile_cache_dir = property(lambda self: self.root / "compile-cache")  # graph-<key>/: trainer.compile_cache
    metrics_file = property(lambda self: self.root / "metrics.jsonl")  # rank 0's metrics history (contract.metrics)
    tensorboard_dir = property(lambda self: self.root / "tensorboard")  # rank 0's TensorBoard event files

    def rank_log(self, rank: int) -> Path:
        return self.logs_dir / f"rank-{rank}.log"

    def launcher_log(self, pod_index: int) -> Path:
        return self.logs_dir / f"launcher-{pod_index}.log"
