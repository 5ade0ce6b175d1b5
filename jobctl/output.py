"""Printing for the CLI: rich tables for people, YAML/JSON for programs, errors as one paragraph on stderr."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from contract import group as training_group
from contract.files import strict_json
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
        print(strict_json(data, indent=2, default=str))  # a diverged loss is null, not NaN
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")


def age(created: str | None) -> str:
    if not created:
        return "-"
    from contract.progress import format_duration

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


def objects_table(objects: list[dict[str, Any]]) -> None:
    """`render -o table`: one row per rendered object (kind, name, a one-line summary)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("KIND", "NAME", "SUMMARY"):
        table.add_column(column)
    for obj in objects:
        table.add_row(obj["kind"], obj["metadata"]["name"], object_summary(obj))
    stdout.print(table)


def object_summary(obj: dict[str, Any]) -> str:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Job":
        pod = spec.get("template", {}).get("spec", {})
        images = sorted({c.get("image", "") for c in pod.get("containers", [])})
        return f"{spec.get('completions', 1)} pod(s), backoffLimit {spec.get('backoffLimit', '-')}, {', '.join(images)}"
    if obj["kind"] in ("ConfigMap", "Secret"):
        return "keys: " + ", ".join(sorted(obj.get("data") or {}))
    if obj["kind"] == "Service":
        ports = ", ".join(str(p.get("port")) for p in spec.get("ports", []))
        return f"clusterIP {spec.get('clusterIP', 'auto')}" + (f", ports {ports}" if ports else "")
    return ", ".join(f"{key}" for key in spec)[:80] if spec else ""


SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


SPARK_NOT_FINITE = "×"  # a NaN/inf loss (a diverging run) or one recorded as null


def sparkline(values: list[float | None]) -> str:
    """One block character per value, scaled between the smallest and the largest finite one; a non-finite or
    missing value is SPARK_NOT_FINITE."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return SPARK_NOT_FINITE * len(values)
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    top = len(SPARK_BLOCKS) - 1
    return "".join(
        SPARK_BLOCKS[round((v - low) / span * top)] if v is not None and math.isfinite(v) else SPARK_NOT_FINITE
        for v in values
    )


def progress_line(job: JobInfo) -> str:
    from contract.progress import format_duration

    progress = job.progress
    if not progress:
        return "progress: no progress line yet"
    speed = "-" if progress.get("img_per_sec") is None else f"{progress['img_per_sec']:.1f}"
    loss = "-" if progress.get("loss") is None else f"{progress['loss']:.4f}"  # status.json before the first step
    return (
        f"progress: epoch {progress['epoch']}/{progress['max_epoch']}  step {progress['step']}/"
        f"{progress['total_steps']}  loss {loss}  img/s {speed}  "
        f"ETA {format_duration(progress.get('eta_seconds'))}"
    )


def group_line(job: JobInfo) -> str | None:
    """``devices: 4/6 (pod(s) 2 missing), shrunk at step S; last failure: ...`` (Group.describe's words) for a job whose
    trainer reports its group; None otherwise (status shows the devices as before)."""
    group = training_group.Group.from_record(job.group)
    if group is None:
        return None
    line = f"devices: {group.describe()}"
    if not group.is_full:
        since = job.group.get("since_step") if job.group else None
        line += ", shrunk" + (f" at step {since}" if isinstance(since, int) else "")
        line += f"; last failure: {job.last_restart}" if job.last_restart else ""
    return line


def history_lines(job: JobInfo) -> list[str]:
    """Best top-1 (and its checkpoint), the loss sparkline and the restarts."""
    lines = []
    if job.best:
        where = f"  {job.best['checkpoint']}" if job.best.get("checkpoint") else ""
        lines.append(f"best top-1: {job.best['top1'] * 100:.2f}% at step {job.best['step']}{where}")
    if job.loss_trend:
        trend = job.loss_trend
        ends = " -> ".join("-" if v is None else f"{v:.4f}" for v in (trend[0], trend[-1]))
        lines.append(f"loss: {sparkline(trend)}  {ends} (last {len(trend)} lines)")
    budget = f"/{job.max_restarts}" if job.max_restarts is not None else ""
    lines.append(f"restarts: {job.restarts}{budget}" + (f", last: {job.last_restart}" if job.last_restart else ""))
    return lines


def status_renderable(job: JobInfo) -> RenderableType:
    head = Text.from_markup(
        f"[bold]{job.name}[/bold]  namespace {job.namespace}  [bold]{job.phase}[/bold]  {job.platform or '-'}  "
        f"{job.devices} devices in {job.pods_total} pod(s)  age {age(job.created)}"
    )
    lines: list[RenderableType] = [head, Text(progress_line(job))]
    lines += [Text(line) for line in (group_line(job), *history_lines(job)) if line]
    lines.append(Text(f"newest checkpoint: {job.checkpoint or '-'}"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("INDEX", "POD", "PHASE", "RESTARTS", "NODE", "EXIT", "REASON"):
        table.add_column(column)
    for pod in job.pods:
        exit_code = "-" if pod.exit_code is None else str(pod.exit_code)
        table.add_row(
            str(pod.index), pod.name, pod.phase, str(pod.restarts), pod.node or "-", exit_code, pod.reason or "-"
        )
    lines.append(table)
    if job.explanation:
        lines.append(Text(f"why: {job.explanation}"))
    return Group(*lines)


def status_view(job: JobInfo) -> None:
    stdout.print(status_renderable(job))


def status_summary(job: JobInfo) -> str:
    """One plain line per refresh of `status --watch` when stdout is not a terminal."""
    best = f"  best top-1 {job.best['top1'] * 100:.2f}%" if job.best else ""
    return f"{utc_clock()} {job.name} {job.phase}  {progress_line(job).removeprefix('progress: ')}{best}"


def utc_clock() -> str:
    return datetime.now(UTC).strftime("%H:%M:%SZ")


def eval_view(result: dict[str, Any]) -> None:
    top1, top5 = float(result.get("top1", 0.0)), float(result.get("top5", 0.0))
    stdout.print(
        f"top-1 {top1:.4f} ({top1 * 100:.2f}%)  top-5 {top5:.4f} ({top5 * 100:.2f}%)  "
        f"images {result.get('images', '-')}  checkpoint {result.get('checkpoint', '-')}"
    )
