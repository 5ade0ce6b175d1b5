"""The in-memory snapshot file: the complete training state of one pod at a step boundary (pure: stdlib only).

One file per pod, ``<snapshot dir>/snapshot.bin`` (the dir is ``JOBCTL_SNAPSHOT_DIR``, pod memory: ``/dev/shm``),
written by the pod's first rank from its host copy of the training state and read back by the launcher (which
only checks it and tells its peers about it) and by the trainer (which restores it). Layout, little-endian:

    magic    8 bytes  b"RXSNAP1\\n"
    length   8 bytes  header length H (uint64)
    hcrc     4 bytes  CRC-32 of the header bytes
    header   H bytes  UTF-8 JSON: step, epoch, payload_bytes, crc32 (of the payload), arrays [{name, dtype, shape,
                      offset, nbytes}], meta (the checkpoint's trainer_meta), pod, time
    payload           the arrays' bytes, each at its offset (C order), payload_bytes in all

A snapshot is written to ``.snapshot-<pid>.tmp`` in the same directory and renamed over ``snapshot.bin``, so the
previous one stays whole until the new one is complete (the one before it is kept as ``.snapshot.spare`` for its
memory, never read). A reader checks the magic, the header's CRC, the file's
size and (``verify``) the payload's CRC: a half-written or damaged file is never used, and the reason says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"RXSNAP1\n"
NAME = "snapshot.bin"
TEMP_PREFIX = ".snapshot-"
TEMP_SUFFIX = ".tmp"
SPARE = ".snapshot.spare"  # the superseded snapshot, whose memory the next write reuses
_PREFIX = struct.Struct("<8sQI")  # magic, header length, header CRC-32
_CHUNK = 16 << 20  # CRC and copies in 16 MB pieces: bounded extra memory, and a copy can be interrupted
ALIGN = 64


# The training state's bytes (every parameter of the training network: weights, BN statistics, moments, global
# step, loss scale; fp32) per architecture: fixed + per_class * num_classes, without the learning-rate table.
# Measured from trainer.model (checked by tests/test_snapshot.py); jobctl sizes the pods' memory with it, so it
# lives here, without MindSpore.
STATE_BYTES: dict[str, tuple[int, int]] = {
    "resnext101_64x4d": (652_061_704, 16_392),
    "resnext101_32x4d": (337_581_064, 16_392),
    "resnext50_32x4d": (184_112_136, 16_392),
    "resnext_tiny": (2_895_368, 4_104),
}
# A pod's memory holds the current snapshot and the superseded one whose pages the next write reuses (SPARE).
POD_COPIES = 2
MARGIN_BYTES = 16 << 20  # the learning-rate table (4 bytes a step) and the header, per copy


def state_bytes(arch: str, num_classes: int) -> int:
    fixed, per_class = STATE_BYTES[arch]
    return fixed + per_class * num_classes


def pod_memory_bytes(arch: str, num_classes: int) -> int:
    """What a pod's snapshots take in its memory (/dev/shm) at most."""
    return POD_COPIES * (state_bytes(arch, num_classes) + MARGIN_BYTES)


class SnapshotError(ValueError):
    """A snapshot file that must not be used; the message says why (half written, damaged, not a snapshot)."""


@dataclass(frozen=True)
class SnapshotHeader:
    step: int
    epoch: int
    payload_bytes: int
    crc32: int
    arrays: list[dict[str, Any]]
    meta: dict[str, Any]
    pod: int = 0
    time: str = ""

    @property
    def checksum(self) -> str:
        """The payload's CRC-32 as the rendezvous fragments carry it."""
        return f"{self.crc32:08x}"

    def to_bytes(self) -> bytes:
        fields = {
            "step": self.step,
            "epoch": self.epoch,
            "payload_bytes": self.payload_bytes,
            "crc32": self.crc32,
            "arrays": self.arrays,
            "meta": self.meta,
            "pod": self.pod,
            "time": self.time,
        }
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> SnapshotHeader:
        data = json.loads(raw)
        return cls(
            step=int(data["step"]),
            epoch=int(data["epoch"]),
            payload_bytes=int(data["payload_bytes"]),
            crc32=int(data["crc32"]),
            arrays=list(data["arrays"]),
            meta=dict(data["meta"]),
            pod=int(data.get("pod", 0)),
            time=str(data.get("time", "")),
        )


def layout_arrays(arrays: Iterable[tuple[str, str, tuple[int, ...], int]]) -> tuple[list[dict[str, Any]], int]:
    """(name, dtype, shape, nbytes) per array -> the header's array entries with offsets, and the payload size."""
    entries, end = [], 0
    for name, dtype, shape, nbytes in arrays:
        offset = -(-end // ALIGN) * ALIGN  # each array starts aligned; the payload ends with the last one
        entries.append({"name": name, "dtype": dtype, "shape": list(shape), "offset": offset, "nbytes": nbytes})
        end = offset + nbytes
    return entries, end


def payload_crc(buffers: Iterable[memoryview], entries: list[dict[str, Any]]) -> int:
    """CRC-32 of the payload as written: each buffer, then zero padding up to the next entry's offset."""
    crc, position = 0, 0
    for buffer, entry in zip(buffers, entries, strict=True):
        if entry["offset"] > position:
            crc = zlib.crc32(bytes(entry["offset"] - position), crc)
        for start in range(0, len(buffer), _CHUNK):
            crc = zlib.crc32(buffer[start : start + _CHUNK], crc)
        position = entry["offset"] + len(buffer)
    return crc


def write(directory: Path, header: SnapshotHeader, buffers: list[memoryview]) -> Path:
    """Write the snapshot atomically: into a temporary file, then renamed over ``snapshot.bin``; returns its path.

    The temporary reuses the memory of the snapshot before the current one (kept as ``.snapshot.spare``, a second
    name of the superseded file): writing into pages tmpfs already holds is ~6x faster than into fresh ones, and
    the pod's memory holds at most two snapshots, as it would anyway while the next one is written."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp, current, spare = directory / f"{TEMP_PREFIX}{os.getpid()}{TEMP_SUFFIX}", directory / NAME, directory / SPARE
    raw = header.to_bytes()
    try:
        _reuse(spare, current, tmp)
        with open(tmp, "r+b" if tmp.exists() else "wb") as out:
            out.write(_PREFIX.pack(MAGIC, len(raw), zlib.crc32(raw)))
            out.write(raw)
            position = 0
            for buffer, entry in zip(buffers, header.arrays, strict=True):
                if entry["offset"] > position:
                    out.write(bytes(entry["offset"] - position))
                out.write(buffer)
                position = entry["offset"] + len(buffer)
            out.truncate()
        spare.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.link(current, spare)  # the superseded snapshot's memory, reused by the next write
        os.replace(tmp, current)
    finally:
        tmp.unlink(missing_ok=True)
    return current


def _reuse(spare: Path, current: Path, tmp: Path) -> None:
    """Take the spare's memory as the temporary, unless a writer killed between its two renames left the spare a
    second name of the current snapshot (writing into it would damage the current one)."""
    with contextlib.suppress(FileNotFoundError):
        if current.exists() and os.path.samefile(spare, current):
            spare.unlink()
        else:
            os.replace(spare, tmp)


def _read_prefix(handle: BinaryIO, path: Path) -> tuple[SnapshotHeader, int]:
    prefix = handle.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise SnapshotError(f"snapshot {path} is cut short ({len(prefix)} bytes)")
    magic, length, hcrc = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise SnapshotError(f"{path} is not a snapshot (magic {magic!r})")
    raw = handle.read(length)
    if len(raw) != length or zlib.crc32(raw) != hcrc:
        raise SnapshotError(f"snapshot {path} has a cut-short or damaged header")
    try:
        return SnapshotHeader.from_bytes(raw), _PREFIX.size + length
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot {path} has an unreadable header ({exc})") from None


def read_header(path: Path, verify: bool = True) -> tuple[SnapshotHeader, int]:
    """The header and the payload's offset in the file; SnapshotError when the file must not be used. ``verify``
    also checks the payload's CRC (a pass over the whole file)."""
    try:
        with open(path, "rb") as handle:
            header, start = _read_prefix(handle, path)
            size = os.fstat(handle.fileno()).st_size
            if size != start + header.payload_bytes:
                raise SnapshotError(
                    f"snapshot {path} is cut short ({size} bytes, {start + header.payload_bytes} expected)"
                )
            if verify:
                crc = 0
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    crc = zlib.crc32(chunk, crc)
                if crc != header.crc32:
                    raise SnapshotError(f"snapshot {path} is damaged (checksum {crc:08x}, {header.checksum} written)")
    except OSError as exc:
        raise SnapshotError(f"snapshot {path} is unreadable ({exc.strerror or exc})") from None
    return header, start


def temporaries(directory: Path) -> list[Path]:
    """Half-written snapshots (a writer killed during the copy)."""
    try:
        return sorted(directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))
    except OSError:
        return []


def copy(source: Path, target: Path) -> None:
    """Copy a snapshot file atomically (temporary name in the target's directory, fsync, rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}{TEMP_SUFFIX}")
    try:
        with open(source, "rb") as src, open(tmp, "wb") as out:
            for chunk in _chunks(src):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    yield from iter(lambda: handle.read(_CHUNK), b"")
