"""`jobctl plot`: one PNG of a job's training curves from its metrics history (contract.metrics).

Four panels against the global step: loss (log scale), learning rate, throughput, validation top-1/top-5; every
restart is a dashed line across all four. matplotlib (the `plot` extra) is imported only here, with Agg.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.metrics import ATTEMPT_KINDS, best_validation, effective
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


def _series(records: list[dict[str, Any]], kind: str, field: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], float(r[field])) for r in records if r["kind"] == kind and r.get(field) is not None]
    return [s for s, _ in points], [v for _, v in points]


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
    if resumes:
        loss.legend(loc="upper right")
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
