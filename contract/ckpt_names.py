"""Checkpoint file names in a run directory: ``<arch>-<epoch>_<global step>[-rank<N>].<ext>`` and ``best.<ext>``,
where ``<ext>`` is the file format (``ckpt_format``): ``ckpt`` (MindSpore's protobuf) or ``safetensors``.

Pure Python, shared by the trainer (which writes them) and jobctl (which finds the newest one without MindSpore).
Temporary files (``.tmp-<pid>-<name>``) never match.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# ckpt_format -> file suffix; the first is the default format.
SUFFIXES = {"ckpt": ".ckpt", "safetensors": ".safetensors"}
BEST_NAME = "best.ckpt"  # of the default format; best_name(fmt) for another
_NAME_RE = re.compile(
    r"^(?P<arch>[A-Za-z0-9_]+)-(?P<epoch>\d+)_(?P<step>\d+)(?:-rank(?P<rank>\d+))?\.(?P<format>ckpt|safetensors)$"
)


class CheckpointName(NamedTuple):
    arch: str
    epoch: int
    step: int
    rank: int
    format: str = "ckpt"


def checkpoint_name(arch: str, epoch: int, step: int, rank: int = 0, fmt: str = "ckpt") -> str:
    suffix = f"-rank{rank}" if rank else ""
    return f"{arch}-{epoch}_{step}{suffix}{SUFFIXES[fmt]}"


def best_name(fmt: str = "ckpt") -> str:
    return f"best{SUFFIXES[fmt]}"


def format_of(name: str) -> str | None:
    """The checkpoint format a file name says (by suffix), or None."""
    return next((fmt for fmt, suffix in SUFFIXES.items() if name.endswith(suffix)), None)


def parse_checkpoint_name(name: str) -> CheckpointName | None:
    match = _NAME_RE.match(name)
    if match is None:
        return None
    rank = int(match["rank"] or 0)
    return CheckpointName(match["arch"], int(match["epoch"]), int(match["step"]), rank, match["format"])
