"""Local processes the launcher starts: trainer ranks and the MindSpore scheduler, with their output threads."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from contract.lines import format_prefix
from contract.progress import parse_progress
from launcher.output import Output, open_log

# Variables a trainer must only get from this launcher (stale values in the pod env would mislead MindSpore).
DISTRIBUTED_VARS = (
    "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM", "MS_NODE_ID", "MS_TOPO_TIMEOUT",
    "RANK_ID", "RANK_SIZE", "DEVICE_ID", "RANK_TABLE_FILE",
)  # fmt: skip
# A line that says why a process failed: the trainer's "error: ..." or the last line of a Python traceback.
_ERROR_LINE = re.compile(r"^(error: |[A-Za-z_.]*(Error|Exception): )")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARS}
    env["PYTHONUNBUFFERED"] = "1"  # line-by-line output: prefixes, log files and the stall timer rely on it
    # MindSpore's C++ log at its default level prints ~100 cluster warnings per rank, which buries the progress
    # lines in `kubectl logs`; errors only, unless the job's env asks for more (spec env GLOG_v=2).
    env.setdefault("GLOG_v", "3")
    env.update(extra)
    return env


def _die_with_launcher() -> None:
    """In the child: get SIGKILL if the launcher dies, so no orphaned trainer holds a port or a device."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class LocalProcess:
    """One trainer rank or the scheduler, with the thread that copies its output."""

    label: str  # "rank 3" or "sched"
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    is_rank: bool = True
    popen: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    log: IO[str] | None = field(default=None, repr=False)
    last_error: str = ""  # the newest line that says why it failed
    last_step: int | None = None  # the global step of its newest progress line
    last_output: float = field(default_factory=time.monotonic)

    @property
    def prefix(self) -> str:
        return format_prefix(self.label)

    def spawn(self) -> None:
        self.log = open_log(self.log_path)
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_launcher if sys.platform.startswith("linux") else None,
        )

    def start_pump(self, out: Output) -> None:
        self.pump = threading.Thread(target=self._pump, args=(out,), daemon=True)
        self.pump.start()

    def _pump(self, out: Output) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        # readline returns an unterminated last line at EOF; emit terminates every line, so nothing runs together.
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.last_output = time.monotonic()
            if _ERROR_LINE.match(line):
                self.last_error = line
            elif (progress := parse_progress(line)) is not None:
                self.last_step = progress["step"]
            try:
                out.emit(self.prefix, line, self.log)
            except Exception as exc:  # never lose the rest of a rank's output to one bad write
                with contextlib.suppress(Exception):
                    out.say(f"{self.label}: dropped a line ({exc})")

    def poll(self) -> int | None:
        assert self.popen is not None
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def describe_exit(self, code: int) -> str:
        """``rank 1 exited with code 2: error: ...`` — the reason a person needs first."""
        at = f" at step {self.last_step}" if self.last_step is not None else ""
        return f"{self.label} exited with code {code}{at}" + (f": {self.last_error}" if self.last_error else "")
