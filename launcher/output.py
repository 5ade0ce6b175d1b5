"""The launcher's output: ranks' lines with ``[rank N] `` prefixes on stdout, each process's own log file.

Writing a log file can fail (a full shared volume); that never stops stdout, which is what ``kubectl logs`` shows.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO

from contract.files import utc_timestamp
from contract.layout import JobLayout
from contract.lines import LAUNCHER_PREFIX


class Output:
    """Serialises whole lines onto stdout; copies each process's lines into its own log file."""

    def __init__(self, layout: JobLayout, pod_index: int) -> None:
        self.lock = threading.Lock()
        self.log_failures = 0
        layout.logs_dir.mkdir(parents=True, exist_ok=True)
        # Open for the launcher's lifetime; the process exit closes it.
        self.launcher_log: IO[str] | None = open(layout.launcher_log(pod_index), "a", buffering=1)  # noqa: SIM115

    def emit(self, prefix: str, line: str, log: IO[str] | None) -> None:
        with self.lock:
            try:
                sys.stdout.write(f"{prefix}{line}\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # nobody reads our stdout any more; the log files still get everything
            if log is not None:
                self._write_log(log, line + "\n")

    def say(self, message: str) -> None:
        self.emit(LAUNCHER_PREFIX, message, None)
        with self.lock:
            if self.launcher_log is not None:
                self._write_log(self.launcher_log, f"{utc_timestamp()} {message}\n")

    def _write_log(self, log: IO[str], text: str) -> None:
        try:
            log.write(text)
        except (OSError, ValueError) as exc:
            self.log_failures += 1
            if self.log_failures == 1:  # once: the condition (e.g. a full volume) is the news, not each line
                sys.stdout.write(f"[launcher] cannot write a log file ({exc}); stdout keeps everything\n")
                sys.stdout.flush()


def open_log(path: Path) -> IO[str] | None:
    """A process's log file, or None when it cannot be opened (its lines still reach stdout)."""
    try:
        return open(path, "a", buffering=1)  # lives as long as the process
    except OSError:
        return None
