"""The job lifecycle commands: status, list, logs, wait, delete, eval and plot."""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from jobctl import output
from jobctl.backends.base import COMPLETE, FAILED, BackendError
from jobctl.cli.common import (
    WAIT_BAR_SECONDS,
    BackendName,
    BackendOpt,
    ContextOpt,
    NameArg,
    NamespaceOpt,
    OutputOpt,
    SharedOpt,
    WaitFor,
    app,
    bad_input,
    fail_cleanly,
    make_backend,
    resolve_backend,
)  # fmt: skip
from jobctl.output import Format

if TYPE_CHECKING:
    from jobctl.spec import JobSpec


@app.command()
@fail_cleanly
def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
    out: OutputOpt = Format.table,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until the job ends")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between refreshes")] = 5.0,
) -> None:
    """Per-rank pods, training progress, best top-1, a loss sparkline and the newest checkpoint; why a job is
    Pending or Failed. With --watch: refreshed in place until the job ends (plain lines when not a terminal)."""
    runner = make_backend(backend, namespace, context, shared)
    if watch:
        from jobctl.watch import watch_status

        watch_status(lambda: runner.status(name), interval, sys.stdout, terminal=sys.stdout.isatty())
        return
    info = runner.status(name)
    if out is Format.table:
        output.status_view(info)
    else:
        output.dump(info.to_dict(), out)


@app.command("list")
@fail_cleanly
def list_(
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
    out: OutputOpt = Format.table,
) -> None:
    """The jobs of a namespace (k8s) or under --shared (local)."""
    jobs = make_backend(backend, namespace, context, shared).list_jobs()
    if out is Format.table:
        output.job_table(jobs)
    else:
        output.dump([job.to_dict() for job in jobs], out)


@app.command()
@fail_cleanly
def logs(
    name: NameArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the job ends")] = False,
    rank: Annotated[int | None, typer.Option("--rank", min=0, help="only this global rank")] = None,
    all_ranks: Annotated[
        bool, typer.Option("--all-ranks", help="every rank's progress lines, not only rank 0's")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", min=0, help="only the last N lines (then new ones with -f)")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="only lines newer than this (5s, 2m, 1h, 1h30m), as kubectl; cluster only"),
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """The job's output, each line prefixed with its source (rank N, launcher): one progress line per step
    (rank 0's; --all-ranks for every rank's), or one rank's lines with --rank."""
    from jobctl.logview import LogView

    since_seconds = None if since is None else parse_since(since)
    runner = make_backend(backend, namespace, context, shared)
    if rank is not None:
        ranks = runner.load_spec(name).devices
        if rank >= ranks:
            raise BackendError(f"--rank {rank}: job {name} has ranks 0-{ranks - 1}; pass one of them", exit_code=2)
    view = LogView(sys.stdout, all_ranks=all_ranks or rank is not None, tail=tail)
    try:
        runner.logs(name, typing.cast(TextIO, view), follow=follow, rank=rank, since=since_seconds)
    finally:
        view.close()


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_since(text: str, flag: str = "--since") -> int:
    """kubectl's --since: a duration such as 5s, 2m, 1h or 1h30m, in whole seconds (at least 1); ``flag`` names
    the option in the error (`jobctl fault --for` takes the same durations)."""
    match = _DURATION.fullmatch(text.strip())
    if not match or not any(match.groups()):
        raise bad_input(f"{flag} {text!r}: not a duration; pass a number with a unit, such as 30s, 5m, 2h or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total < 1:
        raise bad_input(f"{flag} {text!r}: the duration must be at least 1s")
    return total


@app.command()
@fail_cleanly
def wait(
    name: NameArg,
    for_: Annotated[WaitFor, typer.Option("--for", help="complete or failed")] = WaitFor.complete,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="seconds (default: no limit)")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """Block until the job is Complete or Failed; exit 0 if it reached --for, 1 otherwise or on timeout."""
    wanted = COMPLETE if for_ is WaitFor.complete else FAILED
    runner = make_backend(backend, namespace, context, shared)
    if sys.stderr.isatty():  # a person is watching: a bar of the training steps
        from jobctl.watch import wait_with_bar

        phase = wait_with_bar(lambda: runner.status(name), wanted, WAIT_BAR_SECONDS, timeout, sys.stderr)
    else:
        phase = runner.wait(name, for_phase=wanted, timeout=timeout)
    output.note(f"job {name}: {phase}")
    if phase != wanted:
        raise typer.Exit(1)


@app.command()
@fail_cleanly
def delete(
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """Stop and delete a job (its pods, Service and ConfigMaps; on a cluster also its eval/export Jobs and its
    TensorBoard); the job directory with checkpoints stays."""
    make_backend(backend, namespace, context, shared).delete(name)
    output.note(f"job {name} deleted")


@app.command("eval")
@fail_cleanly
def eval_(
    name: NameArg,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="latest, or a checkpoint path")] = "latest",
    data: Annotated[
        str | None, typer.Option("--data", help="validation set (default: the job's val/); k8s: an in-pod path")
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
    out: OutputOpt = Format.table,
) -> None:
    """Top-1/top-5 of a job's checkpoint (a one-device Job on k8s, a local process with --backend local)."""
    runner = make_backend(backend, namespace, context, shared)
    spec = runner.load_spec(name)
    if data is not None and resolve_backend(backend, context) is BackendName.local:
        data = str(Path(data).expanduser().resolve())
    result = runner.evaluate(spec, checkpoint, data)
    if out is Format.table:
        output.eval_view(result)
    else:
        output.dump(result, out)


@app.command()
@fail_cleanly
def plot(
    name: NameArg,
    destination: Annotated[Path | None, typer.Option("--output", "-o", help="PNG file (default: NAME.png)")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    backend: BackendOpt = None,
    shared: SharedOpt = None,
) -> None:
    """One PNG of a job's training curves (loss, learning rate, throughput, validation top-1/top-5 against the
    global step, restarts marked) from its metrics history; prints the file's path."""
    from jobctl.backends.base import JobNotFound
    from jobctl.plot import plot_history, require_matplotlib, title_of
    from jobctl.spec import train_config

    require_matplotlib()  # before any work: the missing extra is the first thing to say
    runner = make_backend(backend, namespace, context, shared)
    records = runner.history(name)
    if not records:
        raise BackendError(f"job {name} has no metrics history yet (metrics.jsonl); its trainer has not started")
    try:
        spec: JobSpec | None = runner.load_spec(name)
    except JobNotFound:
        spec = None
    title = title_of(records, name, train_config(spec).arch if spec else None, spec.devices if spec else None)
    path = plot_history(records, title, destination or Path(f"{name}.png"))
    print(path.resolve())
