"""Step checkpoints in a run directory (pure Python: jobctl uses it without MindSpore).

- :func:`list_checkpoints`: one rank's ``<arch>-<epoch>_<step>[-rank<N>].ckpt|.safetensors`` files, oldest first.
- :func:`incomplete_reason`: a cheap structural check that catches a truncated file without reading it (either
  format, by suffix).
- :func:`crc_mismatch`: MindSpore's own CRC check (one sequential read of the file), for a file whose structure
  is intact but whose bytes are not (a bit flip): what ``jobctl status`` must not name as the newest checkpoint.
- :func:`set_aside`: rename a bad checkpoint to ``<name>.corrupt`` so no lister sees it again, but a person can.

A MindSpore ``.ckpt`` is a sequence of serialized ``Checkpoint { repeated Value value = 1; }`` messages (one per
parameter slice), so the file is a run of top-level fields with tag byte ``0x0a`` (field 1, length-delimited) and a
varint length, followed, because the trainer saves with ``crc_check=True``, by the 17-byte trailer
``b"crc_num" + crc.to_bytes(10, "big")``. Walking the tags and lengths with seeks reads a few bytes per parameter.
A ``.safetensors`` file is complete when its JSON header parses and the file holds exactly the data the header's
offsets promise (``contract.safetensors_layout``). The full load (CRC over the content) in ``trainer.checkpoint``
stays the authority; this check never passes a file that the load would find truncated.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from contract import safetensors_layout
from contract.ckpt_names import format_of, parse_checkpoint_name
from contract.files import fresh_listdir
from contract.layout import STATUS_FILE

CORRUPT_SUFFIX = ".corrupt"
_FIELD_1_BYTES = 0x0A  # protobuf key: field number 1, wire type 2 (length-delimited)
_CRC_TRAILER = b"crc_num"
_CRC_TRAILER_SIZE = len(_CRC_TRAILER) + 10


def list_checkpoints(directory: str | Path, rank: int = 0) -> list[Path]:
    """``rank``'s step checkpoints in ``directory`` of either format, oldest first (by global step); best.*,
    temporaries and set-aside ``*.corrupt`` files excluded.

    On a shared volume seen through a client cache (NFS) a listing may be older than the newest checkpoint by the
    cache time: it is taken fresh where the reader may write (:func:`contract.files.fresh_listdir`), and the
    checkpoint that status.json names (opened by name, so read afresh: close-to-open) joins it, also for a
    read-only reader: no reader picks an older state than rank 0 has reported."""
    root = Path(directory)
    if not root.is_dir():
        return []
    try:
        names = set(fresh_listdir(root))
    except FileNotFoundError:
        return []
    if rank == 0:
        names.update(_named_in_status(root))
    found = []
    for name in names:
        parsed = parse_checkpoint_name(name)
        if parsed and parsed.rank == rank and (root / name).is_file():
            found.append((parsed.step, parsed.epoch, root / name))
    return [path for _, _, path in sorted(found)]


def _named_in_status(root: Path) -> list[str]:
    """The file name of status.json's ``checkpoint`` (a path as its writer saw it), if any."""
    try:
        status = json.loads((root / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return []
    named = status.get("checkpoint") if isinstance(status, dict) else None
    return [os.path.basename(named)] if isinstance(named, str) and named else []


def incomplete_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be a complete checkpoint (e.g. ``truncated at byte 4096 of 8192``), or None."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if format_of(Path(path).name) == "safetensors":
                return safetensors_layout.incomplete_reason(handle, size)
            return _scan(handle, size)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"


def _scan(handle: BinaryIO, size: int) -> str | None:
    position = 0
    while position < size:
        if size - position == _CRC_TRAILER_SIZE and handle.read(len(_CRC_TRAILER)) == _CRC_TRAILER:
            return None
        handle.seek(position)
        head = handle.read(11)  # the key byte and at most 10 bytes of varint length
        if head[0] != _FIELD_1_BYTES:
            return f"no checkpoint record at byte {position} of {size}"
        length, used = _varint(head, 1)
        if length is None:
            return f"truncated at byte {size} (inside a record header at byte {position})"
        position += used + length
        if position > size:
            return f"truncated at byte {size} of at least {position}"
        handle.seek(position)
    return f"truncated at byte {size}: no CRC trailer" if size else "empty file"


_CRC_CHUNK = 4 << 20
# (path, size, mtime_ns) -> crc_mismatch's answer: `status --watch` re-checks a file only when it changed.
_crc_checked: dict[tuple[str, int, int], str | None] = {}


def crc_mismatch(path: str | Path) -> str | None:
    """Why ``path``'s content does not match its CRC trailer (the CRC-32 of everything before it, as MindSpore's
    ``load_checkpoint(crc_check=True)`` computes it), or None when it matches. Reads the whole file once; the
    answer is remembered per (size, mtime)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _crc_checked:
        _crc_checked[key] = (
            _crc_of(path, stat.st_size) if format_of(str(path)) != "safetensors" else _st_crc(path, stat)
        )
    return _crc_checked[key]


def _st_crc(path: str | Path, stat: os.stat_result) -> str | None:
    try:
        with open(path, "rb") as handle:
            return safetensors_layout.crc_mismatch(handle, stat.st_size)
    except (OSError, safetensors_layout.HeaderError, KeyError, TypeError, ValueError) as exc:
        return f"cannot check its CRC: {exc}"


def _crc_of(path: str | Path, size: int) -> str | None:
    if size < _CRC_TRAILER_SIZE:
        return "no CRC trailer"
    crc, left = 0, size - _CRC_TRAILER_SIZE
    try:
        with open(path, "rb") as handle:
            while left:
                block = handle.read(min(_CRC_CHUNK, left))
                if not block:
                    return f"truncated at byte {size - _CRC_TRAILER_SIZE - left}"
                crc, left = zlib.crc32(block, crc), left - len(block)
            trailer = handle.read(_CRC_TRAILER_SIZE)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if trailer[: len(_CRC_TRAILER)] != _CRC_TRAILER:
        return "no CRC trailer"
    stored = int.from_bytes(trailer[len(_CRC_TRAILER) :], "big")
    return None if stored == crc else f"CRC mismatch (stored {stored}, content {crc}): the file is corrupt"


def _varint(data: bytes, start: int) -> tuple[int | None, int]:
    """The base-128 varint at ``data[start:]`` and the bytes used up to its end; (None, 0) if cut off."""
    value, shift = 0, 0
    for index in range(start, len(data)):
        value |= (data[index] & 0x7F) << shift
        if not data[index] & 0x80:
            return value, index + 1
        shift += 7
    return None, 0


def set_aside(path: str | Path) -> Path | None:
    """Rename ``path`` to ``<name>.corrupt``; the new path, or None when it is gone or the rename is refused
    (another rank got there first, a read-only volume)."""
    source = Path(path)
    target = source.with_name(source.name + CORRUPT_SUFFIX)
    try:
        os.replace(source, target)
    except OSError:
        return None
    return target


def newest_complete(
    directory: str | Path, rank: int = 0, log: Callable[[str], None] | None = None, crc: bool = False
) -> Path | None:
    """The newest of ``rank``'s checkpoints that passes :func:`incomplete_reason` (and, with ``crc``, its CRC:
    the one resume and eval would use); nothing is renamed."""
    for path in reversed(list_checkpoints(directory, rank)):
        reason = incomplete_reason(path) or (crc_mismatch(path) if crc else None)
        if reason is None:
            return path
        if log is not None:
            log(f"skipping checkpoint {path}: {reason}")
    return None
