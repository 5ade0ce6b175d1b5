"""Reading a job directory from outside the pods: status, logs and eval from any shell that can see it.

The layout itself is the pod contract's (contract.env.JobLayout); this adds the readers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import files
from contract.ckpt_files import list_checkpoints, newest_complete
from contract.ckpt_names import parse_checkpoint_name
from contract.layout import JobLayout

_RANK_LOG = re.compile(r"^rank-(\d+)\.log$")


@dataclass(frozen=True)
class CheckpointFile:
    """A step checkpoint on disk, by name (jobctl never loads one: that is the trainer's)."""

    path: Path
    epoch: int
    step: int


@dataclass(frozen=True)
class JobDir(JobLayout):
    """The contract's job-directory layout (``<shared>/jobs/<name>``) plus the readers status and eval need."""

    @classmethod
    def of(cls, shared: str | Path, name: str) -> JobDir:
        return cls(Path(shared).resolve() / "jobs" / name)

    def exists(self) -> bool:
        return self.root.is_dir()

    def create(self) -> None:
        for directory in (self.ckpt_dir, self.logs_dir, self.eval_dir, self.rendezvous_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # Checkpoints ------------------------------------------------------------------------------------------

    def checkpoints(self) -> list[CheckpointFile]:
        """Rank 0's step checkpoints, oldest first (best.ckpt, temporaries and set-aside ``*.corrupt`` excluded)."""
        return [_named(path) for path in list_checkpoints(self.ckpt_dir)]

    def has_checkpoints(self) -> bool:
        return bool(self.checkpoints())

    def newest_checkpoint(self) -> CheckpointFile | None:
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


def list_job_dirs(shared: str | Path) -> list[JobDir]:
    jobs = Path(shared).resolve() / "jobs"
    if not jobs.is_dir():
        return []
    return [JobDir(path) for path in sorted(jobs.iterdir()) if path.is_dir()]


def _named(path: Path) -> CheckpointFile:
    parsed = parse_checkpoint_name(path.name)
    assert parsed is not None  # list_checkpoints returns only parsable names
    return CheckpointFile(path, parsed.epoch, parsed.step)


def write_atomic(path: Path, text: str) -> None:
    """:func:`contract.files.write_atomic`, creating the parent directory first."""
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
