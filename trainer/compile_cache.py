"""MindSpore's graph compile cache, scoped to the graph it holds (pure Python: no MindSpore).

With ``MS_COMPILER_CACHE_ENABLE=1`` MindSpore 2.10 saves the compiled graph under ``MS_COMPILER_CACHE_PATH`` and,
on the next run, loads it if the *entry script's* source hash matches ("Use the compilation cache and execute the
backend actions only. Be aware of correctness risks."). Nothing else is checked: modules found on ``sys.path``
(all of ``trainer/``) are left out of the hash, and so are the config and input shapes. Measured on CPU: a cache
written with 10 classes fails a 12-class run in ApplyMomentum; one written at 32 px silently runs a 48-px run.
So the trainer scopes the cache to a key of everything that shapes the graph: the MindSpore version, the trainer's
source, the config (less keys that never reach the graph), the class count, world size and learning-rate table
length. A restart of the same job hits; anything else gets a fresh directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from contract.env import COMPILE_CACHE_ENABLE, COMPILE_CACHE_PATH

# Config keys that never reach the compiled graph: a rerun that changes only these still hits the cache.
OUTSIDE_THE_GRAPH = frozenset(
    {"data_dir", "val_dir", "ckpt_path", "pretrained", "ckpt_interval", "keep_checkpoint_max", "log_interval"}
    | {"eval_interval", "max_steps", "num_parallel_workers", "async_save", "is_save_on_master", "eval_batch_size"}
)
_SOURCE = Path(__file__).resolve().parent


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(COMPILE_CACHE_ENABLE, "").strip() == "1" and bool(environ.get(COMPILE_CACHE_PATH, "").strip())


def graph_key(identity: Mapping[str, Any], source_dir: Path = _SOURCE) -> str:
    """A short hash of ``identity`` (what shapes the graph) and of every ``*.py`` under ``source_dir``."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for path in sorted(source_dir.rglob("*.py")):
        digest.update(path.relative_to(source_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def scope(environ: MutableMapping[str, str], identity: Mapping[str, Any]) -> Path | None:
    """Point ``MS_COMPILER_CACHE_PATH`` at ``<given path>/graph-<key>`` (MindSpore reads it when it compiles, so
    this runs before the first compile); None when the cache is off."""
    if not enabled(environ):
        return None
    scoped = Path(environ[COMPILE_CACHE_PATH].strip()) / f"graph-{graph_key(identity)}"
    environ[COMPILE_CACHE_PATH] = str(scoped)
    return scoped


def config_identity(flat_config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat_config.items() if k not in OUTSIDE_THE_GRAPH}


def holds_a_graph(path: Path, rank: int) -> bool:
    """Whether an earlier run left ``rank``'s compiled graph there (MindSpore writes
    ``rank_<rank>/graph_cache/*.mindir``)."""
    return any((path / f"rank_{rank}" / "graph_cache").glob("*.mindir"))
