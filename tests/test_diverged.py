"""Issue 24.3: a diverged run stops early with a clear reason, what we write as JSON is JSON (a NaN loss is null),
and every reader (status, its sparkline, the plot) survives non-finite and null values."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contract.env import EXIT_PERMANENT, FAIL_JOB_EXIT_CODES
from contract.metrics import History, read_history
from contract.progress import read_status, write_status
from jobctl.backends.base import JobInfo, add_history_summary
from jobctl.output import SPARK_NOT_FINITE, Format, dump, history_lines, sparkline

ROOT = Path(__file__).resolve().parents[1]


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN/Infinity, as every strict JSON parser (jq, Go, JavaScript) does."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_status_json_and_metrics_jsonl_are_strict_json(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    written = write_status(status, state="running", loss=math.nan, lr=math.inf, best={"top1": -math.inf})
    assert strict_loads(status.read_text())["loss"] is None
    assert (written["loss"], written["lr"], written["best"]) == (None, None, {"top1": None})
    assert read_status(status) == written
    metrics = tmp_path / "metrics.jsonl"
    history = History(metrics)
    history.attempt(0, 0, checkpoint=None)
    history.train(5, 1, loss=math.nan, lr=0.1, img_per_sec=math.inf, eta_seconds=None)
    history.close()
    records = [strict_loads(line) for line in metrics.read_text().splitlines()]
    assert (records[-1]["loss"], records[-1]["img_per_sec"], records[-1]["lr"]) == (None, None, 0.1)


def test_status_readers_survive_nan_infinity_and_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`jobctl status NAME` crashed with a traceback in the loss sparkline of a diverged run."""
    assert (
        sparkline([1.0, math.nan, 0.5, None, math.inf]) == f"█{SPARK_NOT_FINITE}▁{SPARK_NOT_FINITE}{SPARK_NOT_FINITE}"
    )
    assert sparkline([math.nan, None]) == SPARK_NOT_FINITE * 2
    # A history written by an older trainer holds NaN tokens; a new one holds null.
    metrics = tmp_path / "metrics.jsonl"
    lines = ['{"kind":"start","step":0,"epoch":0,"restarts":0}']
    lines += [f'{{"kind":"train","step":{s},"epoch":1,"loss":{v},"restarts":0}}' for s, v in ((1, 2.5), (2, "NaN"))]
    lines += ['{"kind":"train","step":3,"epoch":1,"loss":null,"restarts":0}']
    metrics.write_text("\n".join(lines) + "\n")
    info = JobInfo(name="d", namespace="local", phase="Failed")
    add_history_summary(info, read_history(metrics), None)
    assert info.loss_trend[0] == 2.5 and math.isnan(info.loss_trend[1]) and info.loss_trend[2] is None  # type: ignore[arg-type]
    assert any(line.startswith("loss: ") for line in history_lines(info))
    info.progress = {"loss": math.nan}
    dump(info.to_dict(), Format.json)  # `status -o json`
    assert strict_loads(capsys.readouterr().out)["loss_trend"] == [2.5, None, None]


def test_plot_draws_a_diverged_history(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from jobctl.plot import PlotTitle, plot_history

    records: list[dict[str, Any]] = [{"kind": "start", "step": 0, "epoch": 0, "restarts": 0}]
    for step in range(1, 30):
        loss = 2.0 / step if step < 20 else (math.nan if step % 2 else None)
        records.append({"kind": "train", "step": step, "epoch": 1, "loss": loss, "lr": 0.1, "img_per_sec": 10.0})
    out = plot_history(records, PlotTitle("d", "resnext_tiny", 1), tmp_path / "d.png")
    assert out.stat().st_size > 10_000


def test_a_diverged_run_is_a_permanent_failure_of_the_job() -> None:
    assert EXIT_PERMANENT in FAIL_JOB_EXIT_CODES  # the Job's podFailurePolicy: FailJob, no restart loop


@pytest.mark.slow
def test_a_diverging_run_stops_early_with_the_reason(tmp_path: Path, dataset: Path) -> None:
    """lr=1e8 sends the loss to inf then NaN within a few steps: the run stops after diverge_steps non-finite
    steps (not at the end, Complete at chance accuracy), exit 3, status.json failed with the reason, no traceback,
    and no checkpoint of NaN weights."""
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "trainer.train", "--data_dir", str(dataset / "train"), "--ckpt_path", str(ckpt)]
    cmd += ["--platform", "cpu", "--arch", "resnext_tiny", "--image_size", "32", "--per_batch_size", "8"]
    cmd += ["--num_parallel_workers", "1", "--log_interval", "1", "--max_epoch", "50", "--lr", "1e8"]
    cmd += ["--diverge_steps", "3", "--ckpt_interval", "1"]
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == EXIT_PERMANENT, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: loss diverged at step ") and "diverge_steps=3" in error, error
    first_bad = int(error.split("at step ")[1].split(":")[0])
    status = strict_loads((ckpt / "status.json").read_text())
    assert status["state"] == "failed" and status["reason"] == error.removeprefix("error: ")
    assert status["step"] == first_bad + 2 < status["total_steps"]  # stopped early
    saved = sorted(int(p.stem.split("_")[-1]) for p in ckpt.glob("resnext_tiny-*.ckpt"))
    assert saved and max(saved) < first_bad  # no checkpoint of the non-finite steps
    records = [strict_loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in records if r["kind"] == "train" and r["step"] >= first_bad] == [None] * 3


def test_the_guard_counts_consecutive_non_finite_steps_and_sink_chunks() -> None:
    from trainer.divergence import DivergedError, DivergenceGuard

    guard = DivergenceGuard(limit=5)
    guard.check(math.nan, step=1, count=1, lr=0.1)
    guard.check(math.inf, step=2, count=1, lr=0.1)
    guard.check(2.0, step=3, count=1, lr=0.1)  # a finite loss in between: the count starts again
    assert (guard.bad_steps, guard.first_bad) == (0, None)
    guard.check(math.nan, step=7, count=4, lr=0.1)  # a sink chunk of 4 steps whose last loss is NaN
    assert (guard.bad_steps, guard.first_bad) == (4, 4)
    with pytest.raises(DivergedError, match=r"^loss diverged at step 4: nan for 8 consecutive step\(s\)"):
        guard.check(math.nan, step=11, count=4, lr=0.1)
