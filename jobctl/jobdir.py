"""The job directory: one layout on the shared volume for both backends (docs/INTERFACES.md).

``<shared>/jobs/<name>/`` holds the resolved spec, the trainer config, checkpoints, per-rank logs, eval results
and the rendezvous files. In a pod ``<shared>`` is ``/shared``; locally it is ``--shared``. This module is pure
path logic plus small readers, so status and eval work from any shell that can see the directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import files
from trainer.ckpt_files import list_checkpoints, newest_complete
from trainer.ckpt_names import parse_checkpoint_name

POD_SHARED_ROOT = "/shared"

_RANK_LOG = re.compile(r"^rank-(\d+)\.log$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    epoch: int
    step: int


@dataclass(frozen=True)
class JobDir:
    """Paths of one job's directory; ``root`` is ``<shared>/jobs/<name>``."""

    root: Path

    @classmethod
    def of(cls, shared: str | Path, name: str) -> JobDir:
        return cls(Path(shared).resolve() / "jobs" / name)

    @staticmethod
    def pod_path(name: str) -> str:
        """The same directory as a pod sees it."""
        return f"{POD_SHARED_ROOT}/jobs/{name}"

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def train_file(self) -> Path:
        return self.root / "train.yaml"

    @property
    def ckpt_dir(self) -> Path:
        return self.root / "ckpt"

    @property
    def status_file(self) -> Path:
        return self.ckpt_dir / "status.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def rendezvous_dir(self) -> Path:
        return self.root / "rendezvous"

    @property
    def local_dir(self) -> Path:
        """The local backend's own state (pod stdout, supervisor pid, ConfigMap files); unused on Kubernetes."""
        return self.root / "local"

    def exists(self) -> bool:
        return self.root.is_dir()

    def create(self) -> None:
        for directory in (self.ckpt_dir, self.logs_dir, self.eval_dir, self.rendezvous_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # Checkpoints ------------------------------------------------------------------------------------------

    def checkpoints(self) -> list[Checkpoint]:
        """Rank 0's step checkpoints, oldest first (best.ckpt, temporaries and set-aside ``*.corrupt`` excluded)."""
        return [_named(path) for path in list_checkpoints(self.ckpt_dir)]

    def has_checkpoints(self) -> bool:
        return bool(self.checkpoints())

    def newest_checkpoint(self) -> Checkpoint | None:
        """The newest step checkpoint that is complete (a cheap structural check: a truncated file is skipped)."""
        path = newest_complete(self.ckpt_dir)
        return _named(path) if path is not None else None

    # Status and logs --------------------------------------------------------------------------------------

    def read_status(self) -> dict[str, Any] | None:
        """The trainer's status.json, or None when it is missing or half written."""
        try:
            data = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def rank_logs(self) -> dict[int, Path]:
        """Per-rank log files written by the launcher, by global rank."""
        logs: dict[int, Path] = {}
        if self.logs_dir.is_dir():
            for path in self.logs_dir.iterdir():
                match = _RANK_LOG.match(path.name)
                if match:
                    logs[int(match.group(1))] = path
        return dict(sorted(logs.items()))

    def rank_log(self, rank: int) -> Path:
        return self.logs_dir / f"rank-{rank}.log"

    def eval_results(self) -> list[Path]:
        return sorted(self.eval_dir.glob("*.json")) if self.eval_dir.is_dir() else []


def list_job_dirs(shared: str | Path) -> list[JobDir]:
    jobs = Path(shared).resolve() / "jobs"
    if not jobs.is_dir():
        return []
    return [JobDir(path) for path in sorted(jobs.iterdir()) if path.is_dir()]


def _named(path: Path) -> Checkpoint:
    parsed = parse_checkpoint_name(path.name)
    assert parsed is not None  # list_checkpoints returns only parsable names
    return Checkpoint(path, parsed.epoch, parsed.step)


def write_atomic(path: Path, text: str) -> None:
    """:func:`trainer.files.write_atomic`, creating the parent directory first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, text)


def tail_lines(path: Path, max_bytes: int = 64 * 1024) -> list[str]:
    """The last lines of a (possibly large) log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > max_bytes and lines else lines
