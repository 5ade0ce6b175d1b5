"""The two checkpoint file formats (``ckpt_format``) and the converter between them.

- ``ckpt``: ``mindspore.save_checkpoint`` with CRC; ``trainer_meta`` is a string parameter of the file.
- ``safetensors``: written here, streamed array by array (no second copy of the parameters in memory), in the layout
  of :mod:`contract.safetensors_layout`, with MindSpore's ``crc_num`` in the metadata so that
  ``mindspore.load_checkpoint(..., format="safetensors", crc_check=True)`` verifies it, and ``trainer_meta`` in the
  metadata too. MindSpore 2.10's own ``save_checkpoint(..., format="safetensors")`` cannot carry it: a string in
  ``append_dict`` fails there (``SafetensorError: Unknown dtype "str64"``), and ``ckpt_to_safetensors`` fails
  the same way on our ``.ckpt`` files (their ``trainer_meta`` string). So the converter
  (``python -m trainer.convert``) reads with :func:`trainer.checkpoint.load` and writes with
  :func:`trainer.checkpoint.save`: every parameter and the metadata cross over.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np

from contract import safetensors_layout as layout

CRC_KEY = "crc_num"


def crc_num(arrays: Sequence[tuple[str, np.ndarray]]) -> int:
    """MindSpore's safetensors CRC: crc32 over every name and ``bytes(tensor)``, in sorted name order. ``bytes()``
    exactly as its loader computes it: for a 0-d integer array that is ``value`` zero bytes (``__index__``), not
    the array's bytes (e.g. a scalar Parameter)."""
    crc = 0
    for name, array in sorted(arrays, key=lambda item: item[0]):
        crc = binascii.crc32(name.encode(), crc)
        crc = binascii.crc32(bytes(np.require(array, requirements="C")), crc)
    return crc


def write_safetensors(arrays: Sequence[tuple[str, np.ndarray]], path: Path, metadata: dict[str, str]) -> None:
    """``arrays`` (name, host array) to ``path``: header, then each array's bytes in order; fsynced."""
    ordered = [(name, np.require(array, requirements="C")) for name, array in arrays]
    entries = [layout.TensorEntry(n, a.dtype.name, tuple(a.shape), a.nbytes) for n, a in ordered]
    header = layout.encode_header(entries, dict(metadata, format="ms", **{CRC_KEY: str(crc_num(ordered))}))
    with open(path, "wb") as handle:
        handle.write(header)
        for _, array in ordered:
            handle.write(array.data.cast("B"))
        handle.flush()
        os.fsync(handle.fileno())


def read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """MindSpore's CRC-checked load (Parameters by name) and the header's metadata. The structural check comes
    first, so a truncated file is reported as such (ValueError), not as whatever the loader trips over."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        reason = layout.incomplete_reason(handle, size)
        if reason is not None:
            raise ValueError(reason)
        handle.seek(0)
        metadata = layout.metadata(handle, size)
    params = ms.load_checkpoint(str(path), format="safetensors", crc_check=True)
    return params, metadata
