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
