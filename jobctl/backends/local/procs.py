"""Which processes belong to a local job, read from /proc (Linux): a pid in state.json may be stale.

A pod's process group belongs to the job while its leader has the start time recorded in state.json, or while a
member carries the job's environment marker (``JOBCTL_JOB_DIR`` = the job directory, which every pod process and
its children inherit). A reused pid has neither, so a stale state.json never gets an unrelated group signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contract.env import Var

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None when gone."""
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, it names one process for good."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _live(fields: list[str] | None) -> bool:
    return fields is not None and fields[0] not in ("Z", "X")


def _marker(pid: int) -> str | None:
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = f"{Var.JOB_DIR}=".encode()
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def job_groups(job_root: Path, pods: Iterable[dict[str, Any]]) -> list[int]:
    """The process groups of recorded pods that still hold a live process of this job."""
    wanted = {int(p["pid"]): p.get("start_ticks") for p in pods if p.get("pid")}
    if not wanted:
        return []
    found: set[int] = set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if not _live(fields) or fields is None or int(fields[2]) not in wanted:
            continue
        group = int(fields[2])
        leader_is_ours = pid == group and wanted[group] is not None and int(fields[19]) == wanted[group]
        if leader_is_ours or _marker(pid) == str(job_root):
            found.add(group)
    return sorted(found)


def stop_groups(job_root: Path, pods: list[dict[str, Any]], grace: float, poll: float = 0.2) -> None:
    """SIGTERM the job's pod groups (the trainers save and exit 143), SIGKILL what is left after ``grace``."""
    groups = job_groups(job_root, pods)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(poll)
        groups = job_groups(job_root, pods)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children, grandchildren, ...), whichever group or session they joined."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if _live(fields) and fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_pod(pid: int) -> None:
    """What a lost node does to a pod: SIGKILL at once to its process group and its whole process tree (a
    process that left the group included), with no SIGTERM first, so nothing is saved."""
    tree = descendants(pid)  # before the kill: the orphans' parent becomes init
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for member in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
