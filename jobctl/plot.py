"""`jobctl plot`: one PNG of a job's training curves from its metrics history (contract.metrics).

Four panels against the global step: loss (log scale), learning rate, throughput, validation top-1/top-5; every
restart is a dashed line across all four, every change of an elastic job's device count a dotted one labelled
``4/6 devices``, and no curve is drawn across a restart or across missing steps.
matplotlib (the `plot` extra) is imported only here, with Agg.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.metrics import ATTEMPT_KINDS, best_validation, device_changes, effective
from jobctl.backends.base import BackendError

PLOT_EXTRA = "pip install 'resnext-jobs[plot]'"


@dataclass(frozen=True)
class PlotTitle:
    job: str
    arch: str | None
    devices: int | None


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend, or one clear error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise BackendError(f"jobctl plot needs matplotlib, which is not installed; {PLOT_EXTRA}", exit_code=2) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def title_of(records: list[dict[str, Any]], job: str, arch: str | None, devices: int | None) -> PlotTitle:
    """What the spec says, else what the history's newest attempt record says."""
    attempts = [r for r in records if r["kind"] in ATTEMPT_KINDS]

    def newest(field: str) -> Any:
        return next((r[field] for r in reversed(attempts) if r.get(field) is not None), None)

    return PlotTitle(job, arch or newest("arch"), devices or newest("rank_size"))


GAP_FACTOR = 3  # a step distance this many times the usual spacing of the records means records are missing


def _series(records: list[dict[str, Any]], kind: str, field: str) -> tuple[list[float], list[float]]:
    """Steps and values of ``field`` in ``kind`` records, with a NaN point (matplotlib breaks the line there)
    where an attempt ended (a start/resume record) or steps are missing (a gap far wider than the usual spacing),
    so no line is drawn across a restart or a crash. A null or non-finite value is a break as well."""
    points: list[tuple[float, float]] = []
    for record in records:
        if record["kind"] in ATTEMPT_KINDS:
            points.append((float(record["step"]), math.nan))
        elif record["kind"] == kind:
            value = record.get(field)
            points.append((float(record["step"]), float(value) if isinstance(value, int | float) else math.nan))
    steps = [s for s, v in points if not math.isnan(v)]
    spacing = statistics.median(b - a for a, b in itertools.pairwise(steps)) if len(steps) > 2 else None
    xs: list[float] = []
    ys: list[float] = []
    last: float | None = None
    for step, value in points:
        if math.isnan(value):
            xs.append(step)
            ys.append(math.nan)
            last = None
            continue
        if last is not None and spacing and step - last > GAP_FACTOR * spacing:
            xs.append((step + last) / 2)
            ys.append(math.nan)
        xs.append(step)
        ys.append(value)
        last = step
    return xs, ys


def _heading(title: PlotTitle, records: list[dict[str, Any]]) -> str:
    parts = [f"job {title.job}", title.arch or "arch unknown"]
    if title.devices:
        parts.append(f"{title.devices} device{'s' if title.devices != 1 else ''}")
    best = best_validation(records)
    parts.append(f"best top-1 {best['top1'] * 100:.2f}% (step {best['step']})" if best else "no validation yet")
    restarts = sum(1 for r in records if r["kind"] == "resume")
    if restarts:
        parts.append(f"{restarts} restart{'s' if restarts != 1 else ''}")
    return "  ·  ".join(parts)


def mark_resizes(axes: Any, records: list[dict[str, Any]]) -> list[str]:
    """A dotted line across every panel where the device count changes, labelled on the loss and throughput
    panels (the throughput is the curve a resize moves); returns the labels."""
    labels = []
    for number, change in enumerate(device_changes(records)):
        label = f"{change['devices']}/{change['full_devices']} devices"
        labels.append(label)
        for index, axis in enumerate(axes):
            legend = "devices changed" if number == 0 and index == 0 else None
            axis.axvline(change["step"], color="tab:brown", linestyle=":", linewidth=1.2, label=legend)
            if index in (0, 2):  # loss, throughput
                place = axis.get_xaxis_transform()  # x in steps, y as a fraction of the panel's height
                axis.text(change["step"], 0.97, f" {label}", transform=place, fontsize=8, va="top", color="tab:brown")
    return labels


def plot_history(records: list[dict[str, Any]], title: PlotTitle, destination: Path) -> Path:
    """Write the PNG; returns its path. ``records`` in file order (superseded steps are dropped here)."""
    plt = require_matplotlib()
    from matplotlib import ticker

    kept = effective(records)
    if not any(r["kind"] == "train" for r in kept):
        raise BackendError(f"job {title.job} has no training progress in its metrics history yet; try again later")
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, constrained_layout=True)
    loss, lr, speed, val = axes.flat
    loss.plot(*_series(kept, "train", "loss"), color="tab:blue", linewidth=1.2)
    loss.set(yscale="log", title="training loss (log scale)")
    for axis in (loss.yaxis.set_major_formatter, loss.yaxis.set_minor_formatter):  # 2.5, not 2.5×10⁰
        axis(ticker.FormatStrFormatter("%.3g"))
    lr.plot(*_series(kept, "train", "lr"), color="tab:purple", linewidth=1.2)
    lr.set(title="learning rate")
    lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    speed.plot(*_series(kept, "train", "img_per_sec"), color="tab:green", linewidth=1.2)
    speed.set(title="throughput (images/s, all devices)", ylim=(0, None))
    for field, color in (("top1", "tab:red"), ("top5", "tab:orange")):
        steps, values = _series(kept, "val", field)
        val.plot(steps, [v * 100 for v in values], marker="o", markersize=3, color=color, label=f"top-{field[-1]}")
    val.set(title="validation accuracy (%)", ylim=(0, 100))
    val.legend(loc="lower right")
    resumes = [r for r in kept if r["kind"] == "resume"]
    for axis in axes.flat:
        axis.grid(True, alpha=0.3)
        for number, resume in enumerate(resumes):
            label = "restart" if number == 0 and axis is loss else None
            axis.axvline(resume["step"], color="gray", linestyle="--", linewidth=1, label=label)
    resized = mark_resizes(list(axes.flat), kept)
    if resumes or resized:
        loss.legend(loc="lower left")  # the resize labels sit at the top
    for axis in (speed, val):
        axis.set_xlabel("global step")
    figure.suptitle(_heading(title, kept), fontsize=11)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(destination, dpi=80)
    except OSError as exc:
        raise BackendError(f"-o {destination}: cannot write it: {exc.strerror}", exit_code=2) from None
    finally:
        plt.close(figure)
    return destination
