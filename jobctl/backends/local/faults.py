"""A rehearsed lost node (`jobctl fault`, local backend): the CLI's request to the local controller.

A lost node takes its pods' processes (SIGKILL, nothing saved) and their emptyDirs with it, and the Job
controller's replacement pod stays Pending until a node can take it. `jobctl fault NAME --pod I --down [--for D]`
writes ``local/faults/pod-<I>.json`` (atomically); the controller reads it at each loop step, kills the pod's
processes once per request (``id``) and holds its replacement back until ``until`` (``None``: until `jobctl fault
NAME --pod I --up`, which rewrites the file with the same id and ``until`` = now). The file stays as the record of
the last request; the controller keeps what it applied in state.json (a held pod's ``fault``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobctl.jobdir import JobDir, write_atomic

_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def fault_file(job_dir: JobDir, index: int) -> Path:
    """Where the CLI asks the controller to take pod ``index`` down (and the one home of that path)."""
    return job_dir.local_dir / "faults" / f"pod-{index}.json"


@dataclass(frozen=True)
class Fault:
    """One request: pod ``pod`` down from now until ``until`` (UTC, whole seconds), or until `--up` if None."""

    pod: int
    id: str
    until: datetime | None

    @classmethod
    def down(cls, pod: int, seconds: float | None, now: datetime | None = None) -> Fault:
        end = (now or datetime.now(UTC)) + timedelta(seconds=seconds or 0)
        if end.microsecond:  # whole seconds, rounded up: the hold lasts at least what was asked
            end = end.replace(microsecond=0) + timedelta(seconds=1)
        return cls(pod, uuid.uuid4().hex, None if seconds is None else end)

    def up(self, now: datetime | None = None) -> Fault:
        """The same request, its hold ending now."""
        return Fault(self.pod, self.id, (now or datetime.now(UTC)).replace(microsecond=0))

    def over(self, now: datetime | None = None) -> bool:
        return self.until is not None and (now or datetime.now(UTC)) >= self.until

    def describe(self, job_name: str) -> str:
        """What status shows for the held pod."""
        if self.until is None:
            return f"down (fault) until `jobctl fault {job_name} --pod {self.pod} --up`, then replaced"
        return f"down (fault) until {self.until.strftime('%H:%M:%SZ')}, then replaced"

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "id": self.id, "until": None if self.until is None else self.until.strftime(_STAMP)}

    @classmethod
    def from_json(cls, value: Any) -> Fault:
        """The inverse of :meth:`to_json`; ValueError on anything else."""
        if not isinstance(value, dict) or not isinstance(value.get("pod"), int) or not isinstance(value.get("id"), str):
            raise ValueError(f"not a fault record: {value!r}")
        until = value.get("until")
        if until is not None and not isinstance(until, str):
            raise ValueError(f"fault record: until {until!r} is not a UTC time")
        when = None if until is None else datetime.strptime(until, _STAMP).replace(tzinfo=UTC)
        return cls(value["pod"], value["id"], when)


def format_fault(fault: Fault) -> str:
    return json.dumps(fault.to_json()) + "\n"


def parse_fault(text: str) -> Fault:
    return Fault.from_json(json.loads(text))


def write_fault(job_dir: JobDir, fault: Fault) -> None:
    write_atomic(fault_file(job_dir, fault.pod), format_fault(fault))


def read_fault(job_dir: JobDir, index: int) -> Fault | None:
    """Pod ``index``'s last request; None when there is none (or it cannot be read: a request is all or nothing)."""
    try:
        return parse_fault(fault_file(job_dir, index).read_text())
    except (OSError, ValueError):
        return None
