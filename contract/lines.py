"""Log lines one side writes and another parses, each ``format_x`` beside its ``parse_x`` (the progress line is
contract.progress, the validation line and metrics records contract.metrics).

- the trainer's own prefix ``rank=R `` on each line it prints;
- the launcher's prefixes on its stdout: ``[rank N] `` for a rank's lines, ``[sched] `` for MindSpore's scheduler,
  ``[launcher] `` for its own (the merged view: rank MERGED_VIEW_RANK's progress only);
- the launcher's ``attempt K: all P pod(s) joined; world size W[; restart R of M after <why>]`` line, or for an
  elastic group without some pods ``attempt K: pods 0,1 of P joined; world size W (elastic: pod 2 missing)[; ...]``
  (jobctl status shows the group, R, M and why);
- rank 0's ``saved <checkpoint> (...)`` line (jobctl status shows the newest checkpoint);
- each rank's ``resuming from <where> (epoch E)`` line, where is ``<checkpoint> at step S`` or ``snapshot of pod P
  at step S`` (the recovery tests and bench.recovery read the step and the source).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from contract.group import format_members, parse_members

LAUNCHER_PREFIX = "[launcher] "
SCHEDULER_LABEL = "sched"  # MindSpore's scheduler process (msrun mode): its lines are `[sched] ...`
# The launcher's stdout is the merged view a person follows (make demo, jobctl logs, kubectl logs): it shows the
# progress and validation lines of this rank only (every rank prints one per step) and no MindSpore INFO/WARNING
# log line; each rank's log file (JobLayout.rank_log) keeps every line (launcher.output.merged_view_keeps).
MERGED_VIEW_RANK = 0
_RANK_PREFIX = re.compile(r"^\[rank (\d+)\] ")
_JOINED = re.compile(
    r"attempt (\d+): (?:all (\d+) pod\(s\)|pods? ([\d,]+) of (\d+)) joined; world size (\d+)"
    r"(?: \(elastic: pods? [\d,]+ missing\))?(?:; restart (\d+) of (\d+) after (.*))?$"
)
_SAVED = re.compile(r"rank=0 saved (\S+)")
_RESUMED = re.compile(r"rank=(\d+) resuming from (.+ at step (\d+)) \(epoch \d+\)$")


def rank_label(rank: int) -> str:
    """A rank's label in the launcher (its process, its exit code, its prefix)."""
    return f"rank {rank}"


def format_prefix(label: str) -> str:
    """The launcher's prefix for a process's lines: ``[rank 3] ``, ``[sched] ``."""
    return f"[{label}] "


def parse_rank_prefix(line: str) -> int | None:
    """The global rank a launcher output line belongs to (its ``[rank N] `` prefix), if any."""
    match = _RANK_PREFIX.match(line)
    return int(match.group(1)) if match else None


def strip_rank_prefix(line: str) -> str:
    return _RANK_PREFIX.sub("", line)


def format_trainer_line(rank: int, message: str) -> str:
    """A line the trainer prints: ``rank=R <message>``."""
    return f"rank={rank} {message}"


@dataclass(frozen=True)
class Joined:
    """What a joined line says: the attempt, its members among the job's pods, the world size, the restarts."""

    attempt: int
    members: tuple[int, ...]
    num_pods: int
    world_size: int
    restarts: int = 0
    max_restarts: int = 0
    last: str | None = None

    @property
    def restart(self) -> tuple[int, int, str] | None:
        return (self.restarts, self.max_restarts, self.last) if self.last is not None else None


def format_joined(
    attempt: int,
    pods: int,
    world_size: int,
    restarts: int,
    max_restarts: int,
    last: str | None,
    members: Sequence[int] | None = None,
) -> str:
    """The launcher's line when the group of an attempt has met; the members only when some pods are missing
    (an elastic job), the restart part only after a restart."""
    if members is None or len(members) == pods:
        line = f"attempt {attempt}: all {pods} pod(s) joined; world size {world_size}"
    else:
        missing = [p for p in range(pods) if p not in members]
        line = (
            f"attempt {attempt}: {_pods(members)} of {pods} joined; world size {world_size} "
            f"(elastic: {_pods(missing)} missing)"
        )
    return f"{line}; restart {restarts} of {max_restarts} after {last}" if restarts else line


def _pods(pods: Sequence[int]) -> str:
    return f"pod{'s' if len(pods) > 1 else ''} {format_members(pods)}"


def parse_joined(line: str) -> Joined | None:
    """A joined line (any prefix before ``attempt``), full or elastic; None for any other line."""
    match = _JOINED.search(line)
    if match is None:
        return None
    attempt, full, members, of, world, restarts, budget, why = match.groups()
    num_pods = int(full or of)
    group = tuple(range(num_pods)) if full else parse_members(members)
    if restarts is None:
        return Joined(int(attempt), group, num_pods, int(world))
    return Joined(int(attempt), group, num_pods, int(world), int(restarts), int(budget), why)


def parse_restart(line: str) -> tuple[int, int, str] | None:
    """(restarts, budget, why) of a joined line written after a restart; None for any other line."""
    joined = parse_joined(line)
    return joined.restart if joined is not None else None


def format_saved(checkpoint: str, detail: str) -> str:
    """The trainer's message (after ``rank=R ``) once a checkpoint file is complete."""
    return f"saved {checkpoint} ({detail})"


def parse_saved(line: str) -> str | None:
    """The checkpoint of rank 0's ``saved`` line (any prefix before it), else None."""
    match = _SAVED.search(line)
    return match.group(1) if match else None


def format_resumed(where: str, epoch: int) -> str:
    """The trainer's message (after ``rank=R ``) when it restored a state: ``where`` ends in ``at step S``."""
    return f"resuming from {where} (epoch {epoch})"


def parse_resumed(line: str) -> tuple[int, str, int] | None:
    """(rank, where, step) of a ``resuming from`` line (any prefix before ``rank=``), else None."""
    match = _RESUMED.search(line)
    return (int(match.group(1)), match.group(2), int(match.group(3))) if match else None
