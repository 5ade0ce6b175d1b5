"""Small file helpers shared by the trainer, the launcher and jobctl (pure Python: no MindSpore, no I/O at import).

- :func:`write_atomic`: readers (another pod, ``jobctl status``) see the old file or the new one, never half of
  one, and the new one survives a crash once the call returns.
- :func:`utc_timestamp`: the one timestamp format of status files and logs (ISO 8601 UTC, seconds).
- :class:`DiskFullError`: a write that ran out of space or quota, reported as one line instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """No space (or quota) left on ``directory`` while doing ``what``; ``str()`` is the one-line message."""

    def __init__(self, directory: str | Path, what: str, code: int = errno.ENOSPC) -> None:
        super().__init__(code, f"no space left on {directory} while {what}")

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


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
