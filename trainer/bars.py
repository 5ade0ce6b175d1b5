"""Progress bars for long interactive work (dataset generation, evaluation): drawn on stderr only when it is a
terminal, so pod logs and CI keep their one-line formats. Pure Python (rich)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

Advance = Callable[[], None]


def _nothing() -> None:
    pass


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """Yields a function to call once per unit done; a no-op unless ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
