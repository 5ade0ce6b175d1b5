"""Following a job until it ends: `jobctl status --watch` (a live view on a terminal, plain lines elsewhere) and
`jobctl wait`'s progress bar (a terminal only)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobctl import output
from jobctl.backends.base import FINISHED, UNKNOWN, JobInfo, WaitTimeout

Fetch = Callable[[], JobInfo]


def ended(info: JobInfo) -> bool:
    """Complete, Failed, or Unknown (a local job whose controller is gone: nothing will change any more)."""
    return info.phase in FINISHED or info.phase == UNKNOWN


def poll(
    fetch: Fetch, interval: float, until: Callable[[JobInfo], bool], timeout: float | None = None
) -> Iterator[JobInfo]:
    """The job's status every ``interval`` seconds, the last one being the first that satisfies ``until``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = fetch()
        yield info
        if until(info):
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"job {info.name} is still {info.phase} after {timeout:g} s")
        time.sleep(interval)


def watch_status(fetch: Fetch, interval: float, out: TextIO, terminal: bool) -> JobInfo:
    """Refresh the status view in place until the job ends; plain lines (one per change) when not a terminal."""
    info: JobInfo | None = None
    if terminal:
        console = Console(file=out, highlight=False)
        with Live(console=console, auto_refresh=False, transient=False) as live:
            for info in poll(fetch, interval, ended):
                live.update(output.status_renderable(info), refresh=True)
    else:
        said = ""
        for info in poll(fetch, interval, ended):
            line = output.status_summary(info)
            news = line.split(" ", 1)[1]  # without the clock
            if news != said:
                print(line, file=out, flush=True)
                said = news
    assert info is not None  # poll yields at least once
    return info


def wait_with_bar(fetch: Fetch, wanted: str, interval: float, timeout: float | None, err: TextIO) -> str:
    """`jobctl wait` on a terminal: a bar of the training steps until the job ends or reaches ``wanted``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    info: JobInfo | None = None
    with Progress(*columns, console=Console(file=err), transient=False) as bar:
        task = bar.add_task("waiting", total=None)
        for info in poll(fetch, interval, lambda i: ended(i) or i.phase == wanted, timeout):
            progress = info.progress or {}
            loss = f" loss {progress['loss']:.4f}" if progress.get("loss") is not None else ""
            bar.update(
                task,
                description=f"{info.name} {info.phase}{loss}",
                completed=progress.get("step") or 0,
                total=progress.get("total_steps") or None,
            )
    assert info is not None
    return info.phase
