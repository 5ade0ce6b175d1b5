"""Checkpoints on the shared volume: atomic save, newest valid one for resume, pruning, pretrained init.

A checkpoint is one self-describing ``.ckpt`` (``mindspore.save_checkpoint`` with CRC): the training network's
parameters (weights, BN statistics, optimizer moments, ``global_step``) plus ``epoch_num``/``step_num`` and a JSON
string ``trainer_meta`` holding arch, image_size, num_classes, classes, epoch, step and the flat config. Files
live flat in ``ckpt_path`` as ``<arch>-<epoch>_<step>.ckpt`` (``-rank<N>`` appended for the copies other ranks
write when ``is_save_on_master`` is off; resume reads only rank 0's files) and ``best.ckpt``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mindspore as ms
from mindspore import nn

from trainer.ckpt_names import BEST_NAME, checkpoint_name, parse_checkpoint_name
from trainer.progress import fsync_dir

__all__ = ["BEST_NAME", "Checkpoint", "CheckpointError", "checkpoint_name"]

META_KEY = "trainer_meta"
FORMAT_VERSION = 1
# Saved for completeness but never restored: the current run's config decides them.
_NOT_RESTORED = ("learning_rate", "momentum", "epoch_num", "step_num", META_KEY)
# Optimizer/training state: not part of a pretrained initialisation.
_TRAIN_STATE_PREFIXES = ("moments.", "accum.", "global_step", "learning_rate", "momentum", "scale_sense")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (unreadable, not ours, wrong architecture or classes)."""


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    params: dict[str, Any] = field(repr=False)

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


def list_checkpoints(directory: str | Path, rank: int = 0) -> list[Path]:
    """``rank``'s step checkpoints in ``directory``, oldest first (by step, then epoch); best.ckpt excluded."""
    found = []
    root = Path(directory)
    if not root.is_dir():
        return []
    for path in root.iterdir():
        parsed = parse_checkpoint_name(path.name)
        if parsed and parsed.rank == rank:
            found.append((parsed.step, parsed.epoch, path))
    return [path for _, _, path in sorted(found)]


def save(cell: nn.Cell, path: str | Path, meta: dict[str, Any], extra_params: dict[str, Any] | None = None) -> Path:
    """Write ``cell``'s parameters and ``meta`` atomically: temp file in the same directory, fsync, rename."""
    target = Path(path)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")  # ends in .ckpt so MindSpore keeps the name
    record = dict(meta, format_version=FORMAT_VERSION)
    append = {"epoch_num": int(meta["epoch"]), "step_num": int(meta["step"]), META_KEY: json.dumps(record)}
    try:
        ms.save_checkpoint(cell, str(tmp), append_dict=append, crc_check=True)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return target


def load(path: str | Path) -> Checkpoint:
    """Read and CRC-check a checkpoint written by :func:`save`; CheckpointError if it is unusable."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    try:
        params = ms.load_checkpoint(str(source), crc_check=True)
    except (ValueError, RuntimeError, OSError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {source} is unreadable ({_first_line(exc)})") from exc
    raw = params.get(META_KEY)
    if not isinstance(raw, str):
        raise CheckpointError(
            f"checkpoint {source} has no trainer metadata (arch, image size, classes); "
            "it was not written by trainer.train"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {source} has corrupt trainer metadata: {exc}") from exc
    return Checkpoint(path=source, meta=meta, params=params)


def newest_valid(directory: str | Path, log: Callable[[str], None] = print) -> Checkpoint | None:
    """The newest rank-0 checkpoint in ``directory`` that loads; corrupt ones are reported and skipped."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return load(path)
        except CheckpointError as exc:
            log(f"skipping {exc}")
    return None


def prune(directory: str | Path, keep: int, rank: int = 0) -> list[Path]:
    """Delete all but ``rank``'s newest ``keep`` step checkpoints; best.ckpt is never counted or removed."""
    doomed = list_checkpoints(directory, rank)[:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def remove_stale_temporaries(directory: str | Path) -> None:
    """Temporary files of a save that was killed halfway."""
    for path in Path(directory).glob(".tmp-*.ckpt"):
        path.unlink(missing_ok=True)


def check_matches(ckpt: Checkpoint, arch: str, classes: Iterable[str] | None, what: str) -> None:
    """CheckpointError unless ``ckpt`` was trained for ``arch`` (and ``classes``, when given)."""
    if ckpt.meta.get("arch") != arch:
        raise CheckpointError(
            f"{what} {ckpt.path} holds architecture {ckpt.meta.get('arch')!r} but this run is {arch!r}; "
            f"use --arch {ckpt.meta.get('arch')} or point --ckpt_path/--pretrained elsewhere"
        )
    if classes is not None and list(ckpt.meta.get("classes", [])) != list(classes):
        raise CheckpointError(
            f"{what} {ckpt.path} was trained on {len(ckpt.meta.get('classes', []))} classes that differ from "
            f"the {len(list(classes))} class folders of the data dir; use the matching data or another ckpt_path"
        )


def restore_training_state(train_net: nn.Cell, ckpt: Checkpoint) -> None:
    """Load weights, BN statistics, optimizer moments and global_step into the training network."""
    params = {k: v for k, v in ckpt.params.items() if k not in _NOT_RESTORED}
    missing, _ = ms.load_param_into_net(train_net, params, strict_load=True)
    wanted = [name for name in missing if name not in _NOT_RESTORED]
    if wanted:
        raise CheckpointError(
            f"checkpoint {ckpt.path} lacks {len(wanted)} parameter(s) of this network (e.g. {wanted[:3]}); "
            "it does not match the configured model"
        )


def load_weights(net: nn.Cell, ckpt: Checkpoint) -> list[str]:
    """Network weights only (for pretrained init, evaluation and export); returns the names not loaded."""
    own = net.parameters_dict()
    params = {
        _strip(k): v
        for k, v in ckpt.params.items()
        if k not in _NOT_RESTORED and not k.startswith(_TRAIN_STATE_PREFIXES) and isinstance(v, ms.Parameter)
    }
    # A head of another size (fine-tuning on different classes) stays freshly initialised.
    params = {k: v for k, v in params.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    missing, _ = ms.load_param_into_net(net, params, strict_load=False)
    return list(missing)


def _strip(name: str) -> str:
    # Checkpoints of Model-built networks prefix the backbone's names.
    for prefix in ("network.", "_backbone."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
