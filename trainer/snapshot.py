"""In-memory snapshots, the trainer's side: write the host copy of the training state to the pod's memory, pace the
snapshots, and restore one the launcher chose (format: contract.snapshot_file; protocol: docs/INTERFACES.md).

One rank per pod writes (the launcher gives it ``JOBCTL_SNAPSHOT_WRITE=<dir>``, a directory in the pod's memory,
not the process's, so it outlives a trainer crash). The state is the one host copy a background checkpoint save
takes at the step boundary (trainer.checkpoint.snapshot): weights, BN statistics, optimizer moments, global_step
(the data position and the learning-rate position follow from it) and the loss scale. A checkpoint due at the same
step is written from the same copy, so training pays for one copy, not two.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np

from contract import snapshot_file
from contract.env import Var
from contract.files import utc_timestamp
from trainer.checkpoint import Checkpoint, CorruptCheckpointError, Snapshot

BUDGET = 0.03  # the default interval keeps a snapshot's measured cost under this share of a step
MAX_AUTO_INTERVAL = 1000
_STEPS_KEPT = 50


@dataclass(frozen=True)
class ResumeChoice:
    """What the launcher chose for this attempt: a snapshot file and how to say where it came from."""

    path: Path
    source: str  # "snapshot of pod 1 at step 812"


def resume_choice(environ: Mapping[str, str]) -> ResumeChoice | None:
    path = environ.get(Var.RESUME_FROM, "").strip()
    if not path:
        return None
    return ResumeChoice(Path(path), environ.get(Var.RESUME_SOURCE, "").strip() or f"snapshot {path}")


def writer_dir(environ: Mapping[str, str]) -> Path | None:
    """This rank's pod-memory directory when it is the pod's snapshot writer, else None."""
    value = environ.get(Var.SNAPSHOT_WRITE, "").strip()
    return Path(value) if value else None


def write(directory: Path, state: Snapshot, meta: dict[str, Any], pod: int) -> snapshot_file.SnapshotHeader:
    """Write ``state`` (the host copy) as this pod's snapshot; atomic (temporary, then rename)."""
    names = [(name, str(array.dtype), array.shape, array.nbytes) for name, array in state.arrays]
    entries, size = snapshot_file.layout_arrays(names)
    buffers = [np.ascontiguousarray(array).data.cast("B") for _, array in state.arrays]
    header = snapshot_file.SnapshotHeader(
        step=int(meta["step"]),
        epoch=int(meta["epoch"]),
        payload_bytes=size,
        crc32=snapshot_file.payload_crc(buffers, entries),
        arrays=entries,
        meta=meta,
        pod=pod,
        time=utc_timestamp(),
    )
    snapshot_file.write(directory, header, buffers)
    return header


def load(path: Path) -> Checkpoint:
    """A snapshot file as a :class:`Checkpoint` to restore (CRC-checked while read); CorruptCheckpointError when
    it must not be used."""
    try:
        header, start = snapshot_file.read_header(path, verify=False)
        with open(path, "rb") as handle:
            handle.seek(start)
            payload = bytearray(header.payload_bytes)
            got = handle.readinto(payload)
    except (snapshot_file.SnapshotError, OSError) as exc:
        raise CorruptCheckpointError(str(exc)) from None
    if got != header.payload_bytes or zlib.crc32(payload) != header.crc32:
        raise CorruptCheckpointError(f"snapshot {path} is damaged (its checksum does not match)")
    params: dict[str, Any] = {}
    for entry in header.arrays:
        count = int(np.prod(entry["shape"], dtype=np.int64))
        array = np.frombuffer(payload, dtype=entry["dtype"], count=count, offset=entry["offset"])
        params[entry["name"]] = ms.Parameter(ms.Tensor(array.reshape(entry["shape"])), name=entry["name"])
    meta = dict(header.meta, step=header.step, epoch=header.epoch)
    return Checkpoint(path=path, meta=meta, params=params)


class SnapshotPacer:
    """When a snapshot is due: every ``interval`` steps, or (``interval`` None) the shortest interval whose
    measured cost stays under BUDGET of a step. A snapshot's cost is the training thread's copy plus what the steps
    run while the writer thread works take beyond the median step (the writer competes for the host's CPU)."""

    def __init__(self, interval: int | None, log: Callable[[str], None]) -> None:
        self.fixed = interval
        self.interval = interval or 1
        self.logged = self.interval  # the interval the log last named
        self.log = log
        self.last: int | None = None  # step of the newest snapshot taken
        self.normal: deque[float] = deque(maxlen=_STEPS_KEPT)
        self.copy_seconds = 0.0
        self.excess = 0.0
        self.measuring = False
        self.seen_steps = 0

    def due(self, step: int) -> bool:
        return self.last is None or step - self.last >= self.interval

    def taken(self, step: int, copy_seconds: float) -> None:
        self.last, self.copy_seconds, self.excess, self.measuring = step, copy_seconds, 0.0, True

    def step_done(self, seconds: float, steps: int, writing: bool) -> None:
        """After each step (or chunk of ``steps``): its duration, and whether a snapshot write was running."""
        self.seen_steps += 1
        if self.seen_steps == 1:
            return  # the first step compiles the graph
        per_step = seconds / steps
        if writing and self.normal:
            self.excess += max(0.0, per_step - statistics.median(self.normal)) * steps
        elif not writing:
            self.normal.append(per_step)
            if self.measuring:
                self.measuring = False
                self._adapt()

    def _adapt(self) -> None:
        if self.fixed is not None or not self.normal:
            return
        step = statistics.median(self.normal)
        cost = self.copy_seconds + self.excess
        interval = min(MAX_AUTO_INTERVAL, max(1, math.ceil(cost / (BUDGET * step)))) if step > 0 else 1
        if abs(interval - self.logged) > self.logged // 4:  # said again only when it moves by more than a quarter
            self.log(
                f"snapshot interval now {interval} step(s): a snapshot costs {cost:.3f} s "
                f"(copy {self.copy_seconds:.3f} s), a step {step:.3f} s"
            )
            self.logged = interval
        self.interval = interval


def pod_index(environ: Mapping[str, str]) -> int:
    try:
        return int(environ.get(Var.POD_INDEX, "0"))
    except ValueError:
        return 0


def describe(header: snapshot_file.SnapshotHeader, seconds: float, directory: Path) -> str:
    mb = header.payload_bytes / 1e6
    return f"snapshot of step {header.step} in {directory} ({mb:.1f} MB in {seconds:.2f} s, off the training thread)"
