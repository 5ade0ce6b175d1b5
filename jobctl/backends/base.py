"""What every backend offers the CLI, and the records it returns.

A backend takes a validated JobSpec and its rendered objects and runs them somewhere (Kubernetes, or local
process groups). Errors it raises are :class:`BackendError` with a message for people and an exit code
(2: the input was wrong, 1: something failed).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from contract.group import Group
from contract.lines import parse_rank_prefix, parse_restart, strip_rank_prefix

if TYPE_CHECKING:
    from jobctl.spec import JobSpec

# Job phases shown to people, the same words for both backends.
PENDING, RUNNING, COMPLETE, FAILED, UNKNOWN = "Pending", "Running", "Complete", "Failed", "Unknown"
FINISHED = (COMPLETE, FAILED)

LOSS_TREND_POINTS = 40  # losses in status's sparkline


class BackendError(Exception):
    """A failure to report as one paragraph; ``exit_code`` 2 for bad input, 1 for anything else."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class JobNotFound(BackendError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


class WaitTimeout(BackendError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


@dataclass
class PodInfo:
    """One pod (= one job index) of a job."""

    index: int
    name: str
    phase: str
    restarts: int = 0
    node: str | None = None
    exit_code: int | None = None
    reason: str | None = None


@dataclass
class JobInfo:
    """A job's state as `jobctl status` and `jobctl list` show it."""

    name: str
    namespace: str
    phase: str
    platform: str = ""
    devices: int = 0
    pods_total: int = 0
    restarts: int = 0  # the group's restarts (in place or with new pods), else the pods' replacements
    max_restarts: int | None = None
    last_restart: str | None = None  # what ended the last failed attempt
    created: str | None = None
    pods: list[PodInfo] = field(default_factory=list)
    progress: dict[str, Any] | None = None
    checkpoint: str | None = None
    explanation: str | None = None
    best: dict[str, Any] | None = None  # {"top1", "step", "checkpoint"}: the best validation so far
    # The newest training losses of the history, oldest first; None where the loss was not finite (diverged).
    loss_trend: list[float | None] = field(default_factory=list)
    # The group training now (elastic jobs): {"devices", "full_devices", "members", "missing"} (Group.to_record).
    group: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """The operations the CLI needs; each backend maps them onto its runtime."""

    name: str

    @abstractmethod
    def submit(self, spec: JobSpec, objects: list[dict[str, Any]], *, resume: bool, replace: bool) -> str:
        """Create the job; returns what to tell the user (how to follow it)."""

    @abstractmethod
    def status(self, name: str) -> JobInfo: ...

    @abstractmethod
    def list_jobs(self) -> list[JobInfo]: ...

    @abstractmethod
    def logs(self, name: str, out: TextIO, *, follow: bool, rank: int | None, since: int | None = None) -> None:
        """Write the job's log lines (``[rank N]`` prefixed) to out; with follow, until the job finishes; with
        ``since``, only those of the last ``since`` seconds (a backend without line times refuses it)."""

    @abstractmethod
    def wait(self, name: str, *, for_phase: str | None, timeout: float | None) -> str:
        """Block until the job is Complete or Failed (or ``for_phase``); returns the phase reached."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def load_spec(self, name: str) -> JobSpec:
        """The job's resolved spec as submitted (kept after the job itself is cleaned up)."""

    @abstractmethod
    def evaluate(self, spec: JobSpec, checkpoint: str, data: str | None) -> dict[str, Any]:
        """Run trainer.evaluate on a checkpoint of the job; returns its JSON result (top1, top5, ...)."""

    @abstractmethod
    def history(self, name: str) -> list[dict[str, Any]]:
        """The job's metrics history records (contract.metrics), in the order written; [] when there are none yet."""


def rank_of_line(line: str) -> int | None:
    """The global rank a launcher output line belongs to (its ``[rank N] `` prefix), if any."""
    return parse_rank_prefix(line)


def keep_line(line: str, rank: int | None) -> bool:
    return rank is None or rank_of_line(line) == rank


def latest_progress(lines: Iterable[str]) -> dict[str, Any] | None:
    """The newest trainer progress line among ``lines`` (rank 0 preferred), parsed."""
    from contract.progress import parse_progress

    newest: dict[str, Any] | None = None
    for line in lines:
        parsed = parse_progress(line)
        if parsed is not None and parsed.get("rank", 0) == 0:
            newest = parsed
    return newest


def latest_restart(lines: Iterable[str]) -> tuple[int, int, str] | None:
    """(restarts, budget, why) from the newest launcher line ``attempt K: ...; restart R of M after <why>``."""
    newest = None
    for line in lines:
        newest = parse_restart(line) or newest
    return newest


def add_history_summary(info: JobInfo, records: list[dict[str, Any]], best_checkpoint: str | None) -> None:
    """The best validation, the newest losses and (unless status.json gave it) the newest group of ``records`` into
    ``info``, with the step a shrunk group took its size at (status shows them)."""
    from contract.metrics import SEGMENT_KIND, best_validation, device_changes, effective

    kept = effective(records)
    segments = [group for r in kept if r["kind"] == SEGMENT_KIND and (group := Group.from_record(r)) is not None]
    if info.group is None and segments:
        info.group = segments[-1].to_record()
    changes = device_changes(kept)
    shrunk = info.group is not None and info.group.get("devices") != info.group.get("full_devices")
    if info.group is not None and shrunk and changes and changes[-1]["devices"] == info.group["devices"]:
        info.group["since_step"] = changes[-1]["step"]  # where the group took its present size
    best = best_validation(kept)
    if best is not None:
        info.best = {"top1": best["top1"], "step": best["step"], "checkpoint": best_checkpoint}
    losses = [r.get("loss") for r in kept if r["kind"] == "train"][-LOSS_TREND_POINTS:]
    info.loss_trend = [float(v) if isinstance(v, int | float) else None for v in losses]  # null: not finite


def last_json_line(text: str) -> dict[str, Any] | None:
    """trainer.evaluate's result: the last stdout line that is a JSON object (rank prefixes tolerated)."""
    for raw in reversed(text.splitlines()):
        line = strip_rank_prefix(raw).strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def spec_from_yaml(text: str, source: str) -> JobSpec:
    """A JobSpec from its resolved YAML (spec.yaml in the job directory or the ConfigMap)."""
    import yaml

    from jobctl import strict_yaml
    from jobctl.spec import SpecError, validate_spec

    try:  # the loader spec files get: a record edited by hand is held to the same rules
        values = strict_yaml.load(text)
        if not isinstance(values, dict):
            raise BackendError(f"the stored spec {source} is not a mapping of spec fields")
        return validate_spec(values)
    except yaml.YAMLError as exc:
        raise BackendError(f"the stored spec {source} is not valid YAML: {strict_yaml.describe(exc)}") from None
    except SpecError as exc:
        raise BackendError(f"the stored spec {source} no longer validates: {exc}") from None
