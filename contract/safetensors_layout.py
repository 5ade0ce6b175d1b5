"""The safetensors file layout, written and read here side by side (pure Python: jobctl scans files with it).

A file is: 8 bytes little-endian N, N bytes of JSON header (space-padded to a multiple of 8), then the data.
The header maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data,
tensors packed in header order) plus an optional ``"__metadata__"`` of string values. That is Hugging Face's format
as ``safetensors`` and ``mindspore.load_checkpoint(..., format="safetensors")`` read it. The trainer's metadata:
``format: ms`` and ``crc_num`` (MindSpore's CRC over sorted names and tensor bytes, checked by its loader) and
``trainer_meta`` (the JSON that ``.ckpt`` files keep as a string parameter).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO, NamedTuple

SUFFIX = ".safetensors"
METADATA_KEY = "__metadata__"
_LENGTH = struct.Struct("<Q")
_ALIGN = 8
MAX_HEADER = 100_000_000  # the safetensors library refuses larger headers too
# numpy dtype name -> safetensors dtype (the ones a trainer checkpoint holds, and their neighbours)
DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "bool": "BOOL",
}


class TensorEntry(NamedTuple):
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]
    nbytes: int


class HeaderError(ValueError):
    """Not a (complete) safetensors header."""


def encode_header(tensors: Sequence[TensorEntry], metadata: Mapping[str, str]) -> bytes:
    """The length prefix and JSON header for ``tensors`` stored in this order, right after the header."""
    header: dict[str, Any] = {METADATA_KEY: dict(metadata)} if metadata else {}
    offset = 0
    for entry in tensors:
        if entry.dtype not in DTYPES:
            raise ValueError(f"tensor {entry.name}: dtype {entry.dtype} has no safetensors equivalent")
        header[entry.name] = {
            "dtype": DTYPES[entry.dtype],
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % _ALIGN)
    return _LENGTH.pack(len(text)) + text


def read_header(handle: BinaryIO, size: int) -> tuple[dict[str, Any], int]:
    """The parsed header and the byte where the data starts; HeaderError when the file cannot hold one."""
    prefix = handle.read(_LENGTH.size)
    if len(prefix) < _LENGTH.size:
        raise HeaderError(f"truncated at byte {size}: no header length")
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_HEADER:
        raise HeaderError(f"header length {length} is implausible (not a safetensors file)")
    if _LENGTH.size + length > size:
        raise HeaderError(f"truncated at byte {size} of at least {_LENGTH.size + length} (inside the header)")
    try:
        header = json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    return header, _LENGTH.size + length


def data_size(header: Mapping[str, Any]) -> int:
    """The bytes of data the header promises (the largest end offset)."""
    ends = [0]
    for name, entry in header.items():
        if name == METADATA_KEY:
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(v, int) for v in offsets)):
            raise HeaderError(f"tensor {name!r} has no data_offsets")
        ends.append(offsets[1])
    return max(ends)


def incomplete_reason(handle: BinaryIO, size: int) -> str | None:
    """Why the file is not a complete safetensors file (header, then exactly the data it promises), or None."""
    try:
        header, start = read_header(handle, size)
        expected = start + data_size(header)
    except HeaderError as exc:
        return str(exc) if size else "empty file"
    if size < expected:
        return f"truncated at byte {size} of {expected}"
    if size > expected:
        return f"{size - expected} bytes after the data the header describes"
    return None


def metadata(handle: BinaryIO, size: int) -> dict[str, str]:
    """The header's string metadata ({} when there is none)."""
    header, _ = read_header(handle, size)
    found = header.get(METADATA_KEY) or {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def crc_mismatch(handle: BinaryIO, size: int, crc_key: str = "crc_num") -> str | None:
    """Why the data does not match the header's MindSpore CRC (``crc_key`` in the metadata), or None when it does
    or the file carries none. The CRC as MindSpore's loader computes it: crc32 over each tensor's name and
    ``bytes(tensor)`` in sorted name order, where ``bytes()`` of a 0-d integer tensor is ``value`` zero bytes."""
    import zlib

    header, start = read_header(handle, size)
    expected = (header.get(METADATA_KEY) or {}).get(crc_key)
    if expected is None:
        return None
    crc = 0
    for name in sorted(n for n in header if n != METADATA_KEY):
        entry = header[name]
        begin, end = entry["data_offsets"]
        handle.seek(start + begin)
        data = handle.read(end - begin)
        if len(data) != end - begin:
            return f"truncated inside tensor {name!r}"
        if not entry.get("shape") and entry.get("dtype", "")[:1] in ("I", "U"):
            data = bytes(int.from_bytes(data, "little", signed=entry["dtype"].startswith("I")))
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(data, crc)
    return None if str(crc) == str(expected) else f"CRC {crc} does not match the header's {expected}"
