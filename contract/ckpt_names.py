"""Checkpoint file names in a run directory: ``<arch>-<epoch>_<global step>[-rank<N>].ckpt`` and ``best.ckpt``.

Pure Python, shared by the trainer (which writes them) and jobctl (which finds the newest one without MindSpore).
Temporary files (``.tmp-<pid>-<name>.ckpt``) never match.
"""

from __future__ import annotations

import re
from typing import NamedTuple

BEST_NAME = "best.ckpt"
_NAME_RE = re.compile(r"^(?P<arch>[A-Za-z0-9_]+)-(?P<epoch>\d+)_(?P<step>\d+)(?:-rank(?P<rank>\d+))?\.ckpt$")


class CheckpointName(NamedTuple):
    arch: str
    epoch: int
    step: int
    rank: int


def checkpoint_name(arch: str, epoch: int, step: int, rank: int = 0) -> str:
    suffix = f"-rank{rank}" if rank else ""
    return f"{arch}-{epoch}_{step}{suffix}.ckpt"


def parse_checkpoint_name(name: str) -> CheckpointName | None:
    match = _NAME_RE.match(name)
    if match is None:
        return None
    return CheckpointName(match["arch"], int(match["epoch"]), int(match["step"]), int(match["rank"] or 0))
