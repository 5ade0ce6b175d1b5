"""Checkpoint writes off the training thread (pure Python: no MindSpore).

The training thread takes a snapshot at a step boundary and hands the write to :class:`BackgroundSaver`, which runs
it on one worker thread. At most one write is in flight: the next one first waits for it, and says so. A write's
failure (a full volume) is kept and re-raised on the training thread at the next boundary (:meth:`check`), so it
ends the run exactly as a synchronous save would. With ``background=False`` every write runs inline.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

Write = Callable[[], None]
# A checkpoint write (serialising and checksumming hundreds of MB) competes with the training step for the host's
# CPU; on CPU training every core is busy, so the writer thread steps back (Linux nice is per thread).
WRITER_NICE_DELTA = 10


def lower_priority() -> None:
    """Lower the calling thread's CPU priority (best effort: only Linux has per-thread nice values)."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + WRITER_NICE_DELTA))


class BackgroundSaver:
    def __init__(self, background: bool, log: Callable[[str], None]) -> None:
        self.background, self.log = background, log
        self._thread: threading.Thread | None = None
        self._writing = ""  # what the write in flight is, for the log
        self._error: BaseException | None = None

    @property
    def writing(self) -> str | None:
        """What the write in flight saves, or None."""
        return self._writing if self._thread is not None and self._thread.is_alive() else None

    def check(self) -> None:
        """At a step boundary: re-raise the failure of a finished write."""
        if self._thread is not None and not self._thread.is_alive():
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait(self, reason: str = "") -> None:
        """Block until the write in flight is done (logged with ``reason``: what waits), then :meth:`check`."""
        busy = self.writing
        if busy is not None and self._thread is not None:
            if reason:
                self.log(f"{reason} while {busy} is still being written: waiting for it")
            began = time.monotonic()
            self._thread.join()
            if reason:
                self.log(f"waited {time.monotonic() - began:.2f} s for {busy}")
        self.check()

    def start(self, what: str, write: Write) -> None:
        """Run ``write`` (which saves ``what``) in the background, after waiting for the write in flight."""
        self.wait(reason=f"{what} is due")
        if not self.background:
            write()
            return
        self._writing = what
        # Not a daemon: an interpreter that exits on another error still lets the write finish (or fail) cleanly.
        self._thread = threading.Thread(target=self._run, args=(write,), name="checkpoint-writer")
        self._thread.start()

    def close(self) -> None:
        """On the way out after another failure: let the write in flight finish; its own error is dropped."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._error = None

    def _run(self, write: Write) -> None:
        try:
            write()
        except BaseException as exc:  # handed to the training thread, which decides what it means
            self._error = exc
