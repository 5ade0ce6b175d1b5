"""A local job's curves end to end: the trainer writes the history into the job directory, `status --watch`
follows the job until it ends, `status` shows best top-1 and the loss sparkline, `plot` draws the PNG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.metrics import effective, read_history
from jobctl.backends.base import JobInfo
from jobctl.output import sparkline
from jobctl.watch import watch_status
from tests.plot_checks import assert_is_a_real_plot

ROOT = Path(__file__).resolve().parents[1]
JOBCTL = [sys.executable, "-m", "jobctl"]


def jobctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    return subprocess.run([*JOBCTL, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.slow
def test_a_local_job_is_watched_to_its_end_then_plotted(tmp_path: Path, dataset: Path) -> None:
    shared = tmp_path / "shared"
    flags = ["--backend", "local", "--shared", str(shared)]
    sets = ["arch=resnext_tiny", "image_size=32", "per_batch_size=8", "max_epoch=3", "T_max=3", "log_interval=2"]
    sets += ["num_parallel_workers=1"]
    submitted = jobctl(
        "submit", "--platform", "cpu", "--devices", "1", "--name", "curves", "--data", str(dataset), *flags,
        *(arg for kv in sets for arg in ("--set", kv)),
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    watched = jobctl("status", "curves", "--watch", "--interval", "0.5", *flags, timeout=300)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    assert lines and "curves Complete" in lines[-1], watched.stdout  # it ended because the job ended
    assert len(lines) == len(set(line.split(" ", 1)[1] for line in lines)), "a line per change, not per refresh"

    job_dir = shared / "jobs" / "curves"
    records = read_history(job_dir / "metrics.jsonl")  # the job directory, not the checkpoint directory
    assert [r["kind"] for r in records][:1] == ["start"] and (job_dir / "tensorboard").is_dir()
    train = [r for r in effective(records) if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(2, 25, 2))  # 8 steps/epoch x 3, a line every 2
    status = json.loads(jobctl("status", "curves", *flags, "-o", "json").stdout)
    best = max((r for r in records if r["kind"] == "val"), key=lambda r: r["top1"])
    assert status["best"]["top1"] == best["top1"] and status["best"]["checkpoint"].endswith("best.ckpt")
    assert status["loss_trend"] == [r["loss"] for r in train]
    table = jobctl("status", "curves", *flags).stdout
    assert sparkline(status["loss_trend"]) in table and f"best top-1: {best['top1'] * 100:.2f}%" in table

    plotted = jobctl("plot", "curves", *flags, "-o", str(tmp_path / "curves.png"))
    assert plotted.returncode == 0, plotted.stderr
    assert plotted.stdout.strip() == str(tmp_path / "curves.png")
    assert_is_a_real_plot(tmp_path / "curves.png")


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    code = "import sys\nsys.modules['matplotlib'] = None\nsys.argv = ['jobctl', 'plot', 'x', '--backend', 'local']\n"
    code += "from jobctl.cli import main\nmain()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "pip install 'resnext-jobs[plot]'" in result.stderr and "Traceback" not in result.stderr


def test_watch_prints_a_line_per_change_and_stops_when_the_job_ends(tmp_path: Path) -> None:
    phases = iter(["Pending", "Running", "Running", "Running", "Complete", "never read"])
    steps = iter([None, 1, 1, 2, 2])

    def fetch() -> JobInfo:
        info = JobInfo(name="rx", namespace="local", phase=next(phases))
        step = next(steps)
        if step is not None:
            info.progress = {"epoch": 1, "max_epoch": 1, "step": step, "total_steps": 2, "loss": 1.0}
        return info

    out = tmp_path / "out.txt"
    with out.open("w") as handle:
        last = watch_status(fetch, 0.01, handle, terminal=False)
    assert last.phase == "Complete"
    lines = out.read_text().splitlines()
    assert [line.split()[2] for line in lines] == ["Pending", "Running", "Running", "Complete"]


def test_the_plot_keeps_gaps_as_gaps() -> None:
    """Issue 23.6: no line across a restart (an attempt record) or across missing steps (records lost to a crash
    before they were written through): a NaN point breaks the matplotlib line there."""
    import math

    from jobctl.plot import _series

    def train(step: int) -> dict[str, object]:
        return {"kind": "train", "step": step, "epoch": 1, "loss": 1.0 / step}

    records = [{"kind": "start", "step": 0}, *map(train, (5, 10, 15, 20, 45, 50))]
    records += [{"kind": "resume", "step": 50}, *map(train, (55, 60))]
    steps, values = _series(effective(records), "train", "loss")
    breaks = [s for s, v in zip(steps, values, strict=True) if math.isnan(v)]
    assert breaks[0] == 0 and 20 < breaks[1] < 45 and breaks[2] == 50 and len(breaks) == 3, (steps, values)
    drawn = [s for s, v in zip(steps, values, strict=True) if not math.isnan(v)]
    assert drawn == [5, 10, 15, 20, 45, 50, 55, 60]


def test_the_plot_marks_each_change_of_the_device_count(tmp_path: Path) -> None:
    """Elastic data parallel: a dotted line across every panel and a `4/6 devices` label where the device count
    changes (from the segment records), none where an attempt keeps the count."""
    from jobctl.plot import PlotTitle, mark_resizes, plot_history, require_matplotlib

    def segment(step: int, devices: int) -> dict[str, object]:
        return {"kind": "segment", "step": step, "epoch": 0, "devices": devices, "full_devices": 6, "members": []}

    def train(step: int) -> dict[str, object]:
        return {"kind": "train", "step": step, "epoch": 0, "loss": 2.0 / step, "lr": 0.1, "img_per_sec": 50.0}

    records = [{"kind": "start", "step": 0}, segment(0, 6), *map(train, range(5, 45, 5))]
    records += [{"kind": "resume", "step": 40}, segment(40, 4), *map(train, range(45, 85, 5))]
    records += [{"kind": "resume", "step": 80}, segment(80, 4), *map(train, range(85, 125, 5))]
    records += [{"kind": "resume", "step": 120}, segment(120, 6), *map(train, range(125, 165, 5))]
    plt = require_matplotlib()
    figure, axes = plt.subplots(2, 2)
    panels = list(axes.flat)
    assert mark_resizes(panels, effective(records)) == ["4/6 devices", "6/6 devices"]
    for panel in panels:
        dotted = [line.get_xdata()[0] for line in panel.get_lines() if line.get_linestyle() == ":"]
        assert dotted == [40, 120]
    assert [t.get_text().strip() for t in panels[0].texts] == ["4/6 devices", "6/6 devices"]
    plt.close(figure)
    png = plot_history(records, PlotTitle("rx", "resnext_tiny", 6), tmp_path / "resized.png")
    assert_is_a_real_plot(png)
