"""Small file helpers shared by the trainer, the launcher and jobctl (pure Python: no MindSpore, no I/O at import).

- :func:`write_atomic`: readers (another pod, ``jobctl status``) see the old file or the new one, never half of
  one, and the new one survives a crash once the call returns.
- :func:`utc_timestamp`: the one timestamp format of status files and logs (ISO 8601 UTC, seconds).
- :class:`DiskFullError`: a write that ran out of space or quota, reported as one line instead of a traceback.
- :func:`fresh_listdir`: a directory listing that a caching NFS client takes from the server, not from its cache.
- :func:`strict_json`: what we write as JSON is JSON (a non-finite float, e.g. a diverged loss, becomes null).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """No space (or quota) left on ``directory`` while doing ``what``; ``str()`` is the one-line message."""

    def __init__(self, directory: str | Path, what: str, code: int = errno.ENOSPC) -> None:
        super().__init__(code, f"no space left on {directory} while {what}")

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error behind ``exc`` (itself, or its cause/context chain), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if is_disk_full(current):
            return current  # type: ignore[return-value]  # is_disk_full checked the type
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf), at any depth of dicts, lists and tuples, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def strict_json(value: Any, **dumps: Any) -> str:
    """``json.dumps`` that never writes ``NaN``/``Infinity`` (not JSON: strict parsers refuse them): null instead."""
    return json.dumps(finite_or_none(value), allow_nan=False, **dumps)


def utc_timestamp() -> str:
    """Now as ``2026-01-31T12:34:56Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file in ``path``'s directory, fsync it, rename it over ``path`` and fsync the
    directory. The temporary is removed on any failure; running out of space raises :class:`DiskFullError`."""
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(target.parent, f"writing {target.name}", exc.errno or errno.ENOSPC) from exc
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    fsync_dir(target.parent)


def fresh_listdir(directory: str | Path, probe: str = "") -> list[str]:
    """``os.listdir`` that a caching NFS client answers from the server: it first creates and removes a probe file
    (``probe``, default ``.probe-<pid>``; a name no reader parses) in the directory, and a Linux NFS client drops a
    directory's cached listing after its own change there (other nodes' new files show at once, not after
    acdirmin..acdirmax). Where the probe cannot be written (read-only or full volume) the listing may be as old as
    the cache time. FileNotFoundError as listdir's."""
    path = Path(directory) / (probe or f".probe-{os.getpid()}")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except FileNotFoundError:
        raise
    except OSError:
        pass
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return os.listdir(directory)
