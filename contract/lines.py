"""Log lines one side writes and another parses, each ``format_x`` beside its ``parse_x`` (the progress line is
contract.progress, the validation line and metrics records contract.metrics).

- the trainer's own prefix ``rank=R `` on each line it prints;
- the launcher's prefixes on its stdout: ``[rank N] `` for a rank's lines, ``[launcher] `` for its own;
- the launcher's ``attempt K: all P pod(s) joined; world size W[; restart R of M after <why>]`` line (jobctl status
  shows R, M and why);
- rank 0's ``saved <checkpoint> (...)`` line (jobctl status shows the newest checkpoint).
"""

from __future__ import annotations

import re

LAUNCHER_PREFIX = "[launcher] "
_RANK_PREFIX = re.compile(r"^\[rank (\d+)\] ")
_JOINED = re.compile(
    r"attempt (\d+): all (\d+) pod\(s\) joined; world size (\d+)(?:; restart (\d+) of (\d+) after (.*))?$"
)
_SAVED = re.compile(r"rank=0 saved (\S+)")


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


def format_joined(attempt: int, pods: int, world_size: int, restarts: int, max_restarts: int, last: str | None) -> str:
    """The launcher's line when every pod joined an attempt; the restart part only after a restart."""
    line = f"attempt {attempt}: all {pods} pod(s) joined; world size {world_size}"
    return f"{line}; restart {restarts} of {max_restarts} after {last}" if restarts else line


def parse_restart(line: str) -> tuple[int, int, str] | None:
    """(restarts, budget, why) of a joined line written after a restart; None for any other line."""
    match = _JOINED.search(line)
    if match is None or match.group(4) is None:
        return None
    return int(match.group(4)), int(match.group(5)), match.group(6)


def format_saved(checkpoint: str, detail: str) -> str:
    """The trainer's message (after ``rank=R ``) once a checkpoint file is complete."""
    return f"saved {checkpoint} ({detail})"


def parse_saved(line: str) -> str | None:
    """The checkpoint of rank 0's ``saved`` line (any prefix before it), else None."""
    match = _SAVED.search(line)
    return match.group(1) if match else None
