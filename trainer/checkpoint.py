"""Checkpoints on the shared volume: atomic save, newest valid one for resume, pruning, pretrained init.

A checkpoint is one self-describing file: the training network's parameters (weights, BN statistics, optimizer
moments, ``global_step``) and a JSON ``trainer_meta`` holding arch, image_size, num_classes, classes, epoch, step
and the flat config. Two formats, told apart by the suffix (``trainer.ckpt_format``): ``.ckpt``
(``mindspore.save_checkpoint`` with CRC; ``trainer_meta`` a string parameter, plus ``epoch_num``/``step_num``) and
``.safetensors`` (MindSpore's CRC and ``trainer_meta`` in the header metadata). Files live flat in ``ckpt_path`` as
``<arch>-<epoch>_<step>.<ext>`` (``-rank<N>`` appended for the copies other ranks write when ``is_save_on_master``
is off; resume reads only rank 0's files) and ``best.<ext>``; resume, evaluation and export read both formats.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import log as ms_log
from mindspore import nn

from contract.ckpt_files import incomplete_reason, list_checkpoints, set_aside
from contract.ckpt_names import BEST_NAME, best_name, checkpoint_name, format_of
from contract.files import DiskFullError, fsync_dir, is_disk_full
from trainer import ckpt_format

__all__ = ["BEST_NAME", "Checkpoint", "CheckpointError", "CorruptCheckpointError", "best_name", "checkpoint_name"]
__all__ += ["Snapshot", "list_checkpoints"]

META_KEY = "trainer_meta"
TEMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1
# Saved for completeness but never restored: the current run's config decides them.
_NOT_RESTORED = ("learning_rate", "momentum", "epoch_num", "step_num", META_KEY)
# Optimizer/training state: not part of a pretrained initialisation.
_TRAIN_STATE_PREFIXES = ("moments.", "accum.", "global_step", "learning_rate", "momentum", "scale_sense")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (unreadable, not ours, wrong architecture or classes)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that cannot be read back (truncated, CRC mismatch): set aside, never chosen again."""


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


@dataclass(frozen=True)
class Snapshot:
    """Host copies of every parameter of a cell (weights, BN statistics, moments, global_step) taken at one step
    boundary: what a background save writes while training goes on."""

    arrays: list[tuple[str, np.ndarray]] = field(repr=False)

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for _, array in self.arrays)

    def save_list(self) -> list[dict[str, Any]]:
        """``mindspore.save_checkpoint``'s list form; the tensors share the snapshot's memory (no second copy)."""
        return [{"name": name, "data": ms.Tensor.from_numpy(array)} for name, array in self.arrays]


def snapshot(cell: nn.Cell, reuse: Snapshot | None = None) -> Snapshot:
    """Copy ``cell``'s parameters to host memory. Call it at a step boundary: on CPU ``asnumpy`` is a view of the
    live buffer the next step updates in place, hence the copy. ``reuse``, an earlier snapshot of the same cell
    whose write is done, is overwritten in place: fresh pages cost ~1.6 s per 668 MB here, a copy into touched
    ones 0.2 s."""
    params = [(param.name, param.asnumpy()) for _, param in cell.parameters_and_names()]
    same = reuse is not None and [(n, a.shape, a.dtype) for n, a in reuse.arrays] == [
        (n, a.shape, a.dtype) for n, a in params
    ]
    if reuse is None or not same:
        return Snapshot([(name, array.copy()) for name, array in params])
    for (_, target), (_, source) in zip(reuse.arrays, params, strict=True):
        np.copyto(target, source)
    return reuse


def save(source: nn.Cell | Snapshot, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the parameters of ``source`` (a cell, or a :class:`Snapshot` of one) and ``meta`` atomically: temp
    file in the same directory, fsync, rename.

    MindSpore writes ``.tmp-<pid>-<name>.tmp`` and renames it to our ``.tmp-<pid>-<name>.ckpt``; both are removed
    if anything fails. A ``.safetensors`` target is written by trainer.ckpt_format straight to our temporary. Out
    of space or quota raises :class:`DiskFullError` naming the directory and checkpoint. Safe on a
    background thread: nothing here touches the training network when ``source`` is a snapshot."""
    target = Path(path)
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")  # keeps the suffix so MindSpore keeps it
    record = dict(meta, format_version=FORMAT_VERSION)
    try:
        if format_of(target.name) == "safetensors":
            arrays = source.arrays if isinstance(source, Snapshot) else _host_arrays(source)
            ckpt_format.write_safetensors(arrays, tmp, {META_KEY: json.dumps(record)})
        else:
            append = {"epoch_num": int(meta["epoch"]), "step_num": int(meta["step"]), META_KEY: json.dumps(record)}
            with _own_failure_report():
                saved = source.save_list() if isinstance(source, Snapshot) else source
                ms.save_checkpoint(saved, str(tmp), append_dict=append, crc_check=True)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(target.parent, f"saving {target.name}", exc.errno or errno.ENOSPC) from exc
        raise
    finally:
        for temporary in (tmp, tmp.with_suffix(".tmp")):
            temporary.unlink(missing_ok=True)
    return target


def _host_arrays(cell: nn.Cell) -> list[tuple[str, np.ndarray]]:
    """A synchronous save's parameters as host arrays (written before the next step changes them)."""
    return [(param.name, param.asnumpy()) for _, param in cell.parameters_and_names()]


@contextlib.contextmanager
def _own_failure_report() -> Iterator[None]:
    """MindSpore logs a CRITICAL "Failed to save the checkpoint file" guess before re-raising the error; the
    caller reports the error itself (a full volume as one line), so that record is dropped."""
    logger = ms_log._get_logger()
    drop = _DropSaveFailure()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


class _DropSaveFailure(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to save the checkpoint file")


def load(path: str | Path) -> Checkpoint:
    """Read and CRC-check a checkpoint written by :func:`save`; CheckpointError if it is unusable."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    try:
        if format_of(source.name) == "safetensors":
            params, metadata = ckpt_format.read_safetensors(source)
            raw: Any = metadata.get(META_KEY)
        else:
            params = ms.load_checkpoint(str(source), crc_check=True)
            raw = params.get(META_KEY)
    except Exception as exc:  # each format's reader has its own errors (safetensors: SafetensorError)
        raise CorruptCheckpointError(f"checkpoint {source} is unreadable ({_first_line(exc)})") from exc
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


def newest_valid(
    directory: str | Path, log: Callable[[str], None] = print, set_aside_bad: bool = True
) -> Checkpoint | None:
    """The newest rank-0 checkpoint in ``directory`` that loads (CRC-checked). An unreadable one is reported and,
    with ``set_aside_bad`` (the rank that owns the files), renamed to ``<name>.corrupt`` so nothing picks it again."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return load(path)
        except CheckpointError as exc:  # also "does not exist": another rank set it aside meanwhile
            log(f"skipping {exc}{set_aside_if_corrupt(path, exc, set_aside_bad)}")
    return None


def prune(
    directory: str | Path, keep: int, rank: int = 0, saved: Path | None = None, log: Callable[[str], None] = print
) -> list[Path]:
    """Delete all but ``rank``'s newest ``keep`` complete step checkpoints; best.ckpt is never counted or removed.

    Incomplete files (the cheap structural check) are set aside first, so they neither count towards ``keep`` nor
    push a good checkpoint out; ``saved`` (the checkpoint just written) is never deleted."""
    complete = []
    for path in list_checkpoints(directory, rank):
        reason = incomplete_reason(path)
        if reason is None:
            complete.append(path)
        else:
            log(f"skipping checkpoint {path} is unreadable ({reason}){_set_aside(path)}")
    doomed = [path for path in complete[:-keep] if path != saved] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Temporary files of a save that was killed halfway or ran out of space: ours (``.tmp-*.ckpt``,
    ``.tmp-*.safetensors``) and the one MindSpore writes before renaming it to ours (``.tmp-*.tmp``)."""
    patterns = ("*.ckpt", "*.safetensors", "*.tmp")
    found = [path for pattern in patterns for path in Path(directory).glob(TEMP_PREFIX + pattern)]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _set_aside(path: Path) -> str:
    moved = set_aside(path)
    return f"; set aside as {moved.name}" if moved else ""


def set_aside_if_corrupt(path: Path, exc: CheckpointError, owner: bool) -> str:
    """Set ``path`` aside when ``exc`` says it is corrupt and this rank owns the files; the log line's ending."""
    return _set_aside(path) if owner and isinstance(exc, CorruptCheckpointError) else ""


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


def network_from_checkpoint(ckpt: Checkpoint) -> nn.Cell:
    """The checkpoint's architecture with its weights, in inference mode (evaluation, export)."""
    from trainer.model import build_model

    net = build_model(ckpt.meta["arch"], int(ckpt.meta["num_classes"]))
    missing = load_weights(net, ckpt)
    if missing:
        raise CheckpointError(f"checkpoint {ckpt.path} lacks weights for {', '.join(missing[:5])}")
    net.set_train(False)
    return net


def _strip(name: str) -> str:
    # Checkpoints of Model-built networks prefix the backbone's names.
    for prefix in ("network.", "_backbone."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
