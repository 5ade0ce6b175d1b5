"""Printing for the CLI: rich tables for people, YAML/JSON for programs, errors as one paragraph on stderr."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from jobctl.backends.base import JobInfo


class Format(StrEnum):
    """-o: a table for people, YAML or JSON for programs."""

    table = "table"
    yaml = "yaml"
    json = "json"


stdout = Console(highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One paragraph on stderr, prefixed so it stands out in CI logs."""
    print(f"jobctl: error: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dump(data: Any, fmt: Format) -> None:
    """Machine-readable output on stdout (YAML unless fmt is json)."""
    if fmt is Format.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")


def age(created: str | None) -> str:
    if not created:
        return "-"
    from trainer.progress import format_duration

    try:
        stamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return format_duration((datetime.now(UTC) - stamp).total_seconds())


def job_table(jobs: list[JobInfo]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "NAMESPACE", "STATUS", "PLATFORM", "PODS×DEV", "RESTARTS", "AGE"):
        table.add_column(column)
    for job in jobs:
        per_pod = job.devices // job.pods_total if job.pods_total else 0
        shape = f"{job.pods_total}×{per_pod}" if job.pods_total else "-"
        table.add_row(
            job.name, job.namespace, job.phase, job.platform or "-", shape, str(job.restarts), age(job.created)
        )
    stdout.print(table)


def status_view(job: JobInfo) -> None:
    from trainer.progress import format_duration

    stdout.print(f"[bold]{job.name}[/bold]  namespace {job.namespace}  [bold]{job.phase}[/bold]", end="")
    stdout.print(f"  {job.platform or '-'}  {job.devices} devices in {job.pods_total} pod(s)  age {age(job.created)}")
    progress = job.progress
    if progress:
        speed = "-" if progress.get("img_per_sec") is None else f"{progress['img_per_sec']:.1f}"
        stdout.print(
            f"progress: epoch {progress['epoch']}/{progress['max_epoch']}  step {progress['step']}/"
            f"{progress['total_steps']}  loss {progress['loss']:.4f}  img/s {speed}  "
            f"ETA {format_duration(progress.get('eta_seconds'))}"
        )
    else:
        stdout.print("progress: no progress line yet")
    stdout.print(f"newest checkpoint: {job.checkpoint or '-'}")
    if job.restarts or job.max_restarts is not None:
        budget = f"/{job.max_restarts}" if job.max_restarts is not None else ""
        stdout.print(f"restarts: {job.restarts}{budget}" + (f", last: {job.last_restart}" if job.last_restart else ""))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("INDEX", "POD", "PHASE", "RESTARTS", "NODE", "EXIT", "REASON"):
        table.add_column(column)
    for pod in job.pods:
        exit_code = "-" if pod.exit_code is None else str(pod.exit_code)
        table.add_row(
            str(pod.index), pod.name, pod.phase, str(pod.restarts), pod.node or "-", exit_code, pod.reason or "-"
        )
    stdout.print(table)
    if job.explanation:
        stdout.print(f"why: {job.explanation}")


def eval_view(result: dict[str, Any]) -> None:
    top1, top5 = float(result.get("top1", 0.0)), float(result.get("top5", 0.0))
    stdout.print(
        f"top-1 {top1:.4f} ({top1 * 100:.2f}%)  top-5 {top5:.4f} ({top5 * 100:.2f}%)  "
        f"images {result.get('images', '-')}  checkpoint {result.get('checkpoint', '-')}"
    )
