"""MindSpore's graph-compile cache on the shared volume, so a restarted rank (or a resubmitted job) skips the compile.

MindSpore reads MS_COMPILER_CACHE_ENABLE=1 and MS_COMPILER_CACHE_PATH (documented in its environment variable list;
it keeps one ``rank_<RANK_ID>/`` below the path). The path is keyed by everything the graph depends on: the trainer
config, the trainer's flags, the world size and the MindSpore version, so a changed config or a new MindSpore never
reuses a stale graph.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from trainer.launcher.contract import PodEnv

ENABLE = "MS_COMPILER_CACHE_ENABLE"
PATH = "MS_COMPILER_CACHE_PATH"


def _mindspore_version() -> str:
    try:
        return metadata.version("mindspore")  # without importing it: the launcher never loads MindSpore
    except metadata.PackageNotFoundError:
        return "none"


def cache_dir(env: PodEnv, command: Sequence[str]) -> Path:
    digest = hashlib.sha256()
    with contextlib.suppress(OSError):  # checked before anything starts: an unreadable one never reaches a trainer
        digest.update(env.train_config.read_bytes())
    for part in (*command[3:], str(env.world_size), env.family, _mindspore_version()):
        digest.update(b"\0" + part.encode())
    return env.layout.compile_cache_dir / digest.hexdigest()[:16]


def cache_env(path: Path) -> dict[str, str]:
    return {ENABLE: "1", PATH: str(path)}


def describe(path: Path) -> str:
    """What a person needs to know: reused (how much) or fresh."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    if files:
        return f"compile cache {path}: reusing {len(files)} cached file(s) from an earlier run"
    return f"compile cache {path}: empty, the first compile fills it"
