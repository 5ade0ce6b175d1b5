"""This pod's heartbeat in its attempt: ``alive-<i>`` rewritten every HEARTBEAT_SECONDS, from the moment the group
has met until the attempt ends (recovery, scheduler waits and saves included), so that the peers can tell a pod
whose node or launcher is gone (contract.rendezvous.PeerWatch) from one that is merely slow."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from contract import rendezvous as rendezvous_module
from contract.rendezvous import Rendezvous


class Heartbeat:
    """A thread that beats while the ``with`` block runs; :meth:`paused` keeps it from writing (around a fork)."""

    def __init__(self, rendezvous: Rendezvous) -> None:
        self.rendezvous = rendezvous
        self._lock = threading.Lock()  # held for each write
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self.rendezvous.beat(0)  # at once: a peer already supervising sees this pod from the start
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def _run(self) -> None:
        count = 1
        # The interval is read at each beat: tests shorten it through the module constant.
        while not self._done.wait(rendezvous_module.HEARTBEAT_SECONDS):
            with self._lock:
                self.rendezvous.beat(count)
            count += 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No write while the block runs: a child forked meanwhile must not inherit a lock the writer holds."""
        with self._lock:
            yield
