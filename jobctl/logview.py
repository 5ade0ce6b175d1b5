"""The human view of a job's merged log: what `jobctl logs` prints of the lines a backend writes.

The launcher prefixes each line with its source (contract.lines); this reader drops what is data, not text for a
person (rank 0's ``metrics {json}`` attempt records, contract.metrics), keeps one progress line per step (global
rank 0's) unless every rank's is asked for, and implements ``--tail N`` (kubectl: the last N lines of what is
there, then, with --follow, every new line).
"""

from __future__ import annotations

from collections import deque
from typing import TextIO

from contract.metrics import is_log_record
from contract.progress import parse_progress

MERGED_VIEW_RANK = 0  # the rank whose progress lines the merged view shows (one line per step)


def human_line(line: str, all_ranks: bool) -> bool:
    """Whether `jobctl logs` shows a line: never a metrics record; another rank's progress only with all_ranks."""
    if is_log_record(line):
        return False
    progress = None if all_ranks else parse_progress(line)
    return progress is None or progress.get("rank", MERGED_VIEW_RANK) == MERGED_VIEW_RANK


class LogView:
    """A text sink in front of ``out``: backends write whole lines and flush after each read round; the first
    flush ends the backlog, so ``tail`` keeps the last N lines of it and later lines pass as they come."""

    def __init__(self, out: TextIO, *, all_ranks: bool = False, tail: int | None = None) -> None:
        self.out = out
        self.all_ranks = all_ranks
        self.backlog: deque[str] | None = deque(maxlen=tail) if tail is not None else None
        self.partial = ""

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if not human_line(line, self.all_ranks):
            return
        if self.backlog is not None:
            self.backlog.append(line)
        else:
            self.out.write(line + "\n")

    def flush(self) -> None:
        if self.backlog is not None:
            self.out.writelines(line + "\n" for line in self.backlog)
            self.backlog = None
        self.out.flush()

    def close(self) -> None:
        if self.partial:
            self._line(self.partial)
        self.partial = ""
        self.flush()
