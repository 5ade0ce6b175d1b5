"""A stand-in for ``trainer.train`` that the launcher tests start through JOBCTL_TRAINER_MODULE.

It exists to test the launcher's supervisor (prefixes, log files, exit codes, signals, rendezvous), not training.
Behaviour comes from env vars; ``FAKE_<NAME>_RANK_<N>`` overrides ``FAKE_<NAME>`` for global rank N, and
``FAKE_<NAME>_RESTART_<K>`` / ``FAKE_<NAME>_RANK_<N>_RESTART_<K>`` override both after K restarts (JOBCTL_RESTARTS):
  FAKE_LINES      progress lines to print (default 3)      FAKE_INTERVAL  seconds between lines (default 0.05)
  FAKE_EXIT       exit code after the lines (default 0)    FAKE_HANG      1: go silent and hang after the lines
  FAKE_IGNORE_TERM 1: ignore SIGTERM (the launcher must SIGKILL)
  FAKE_OUT        directory: each rank writes rank-<N>.json with its argv, distributed env and rank table
With MS_ROLE=MS_SCHED it plays the MindSpore scheduler: listens on MS_SCHED_HOST:MS_SCHED_PORT and exits once
MS_WORKER_NUM workers have connected and gone. Workers (MS_ROLE=MS_WORKER) stay connected while they run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

RANK = os.environ.get("RANK_ID", "")
RESTARTS = os.environ.get("JOBCTL_RESTARTS", "0")


def setting(name: str, default: str) -> str:
    for key in (f"{name}_RANK_{RANK}_RESTART_{RESTARTS}", f"{name}_RESTART_{RESTARTS}", f"{name}_RANK_{RANK}", name):
        if f"FAKE_{key}" in os.environ:
            return os.environ[f"FAKE_{key}"]
    return default


STOP = {"requested": False}


def on_sigterm(signum: int, frame: object) -> None:
    # Like the real trainer: the handler only records; the loop acts at the next boundary. Printing here could
    # land between a print's text and its newline and run two lines together.
    STOP["requested"] = True


def pause(seconds: float) -> None:
    """Sleep, but stop as the real trainer does (save, exit 143) once SIGTERM has arrived."""
    deadline = time.monotonic() + seconds
    while True:
        if STOP["requested"]:
            print(f"rank {RANK}: SIGTERM, saving and stopping", flush=True)
            sys.exit(143)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.02))


def scheduler() -> None:
    workers = int(os.environ["MS_WORKER_NUM"])
    with socket.create_server((os.environ["MS_SCHED_HOST"], int(os.environ["MS_SCHED_PORT"]))) as server:
        print(f"scheduler listening for {workers} workers", flush=True)
        seen: list[socket.socket] = []
        while len(seen) < workers:
            conn, _ = server.accept()
            if conn.recv(16) == b"worker":  # bare TCP probes from launchers send nothing
                seen.append(conn)
            else:
                conn.close()
        for conn in seen:
            conn.recv(16)  # returns when that worker exits
        print("all workers finished", flush=True)


def connect_to_scheduler() -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            conn = socket.create_connection((os.environ["MS_SCHED_HOST"], int(os.environ["MS_SCHED_PORT"])), 2)
            conn.sendall(b"worker")
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def record() -> None:
    out = os.environ.get("FAKE_OUT")
    if not out:
        return
    names = ("RANK_ID", "RANK_SIZE", "DEVICE_ID", "RANK_TABLE_FILE", "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT",
             "MS_WORKER_NUM", "MS_NODE_ID", "MS_TOPO_TIMEOUT", "JOBCTL_RESTARTS", "JOBCTL_MAX_RESTARTS",
             "JOBCTL_LAST_FAILURE", "JOBCTL_MEMBERS")  # fmt: skip
    table_file = os.environ.get("RANK_TABLE_FILE")
    data = {
        "argv": sys.argv[1:],
        "env": {n: os.environ[n] for n in names if n in os.environ},
        "table": json.loads(Path(table_file).read_text()) if table_file else None,
    }
    Path(out, f"rank-{RANK}.json").write_text(json.dumps(data))


def main() -> int:
    if setting("IGNORE_TERM", "0") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        scheduler()
        return 0
    conn = connect_to_scheduler() if os.environ.get("MS_ROLE") == "MS_WORKER" else None
    record()
    lines, interval = int(setting("LINES", "3")), float(setting("INTERVAL", "0.05"))
    for step in range(1, lines + 1):
        print(f"rank={RANK} step={step}/{lines}", flush=True)
        pause(interval)
    if setting("HANG", "0") == "1":
        while True:
            pause(1)
    print(f"rank {RANK}: done", file=sys.stderr, flush=True)
    if conn is not None:
        conn.close()
    return int(setting("EXIT", "0"))


if __name__ == "__main__":
    sys.exit(main())
