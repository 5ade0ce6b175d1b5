"""contract.progress: the progress line round trip, durations, throughput and status.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract.progress import (
    ThroughputMeter,
    format_duration,
    format_progress,
    parse_duration,
    parse_progress,
    read_status,
    restarts_from_env,
    write_status,
)

LINE = "rank=0 epoch=3/150 step=1200/187650 loss=4.1234 lr=0.049000 img/s=196.3 eta=1d02h03m"


def test_format_matches_the_contract_exactly() -> None:
    eta = 86400 + 2 * 3600 + 3 * 60
    assert format_progress(0, 3, 150, 1200, 187650, 4.12341, 0.049, 196.31, eta) == LINE


def test_parse_tolerates_prefix_and_suffix() -> None:
    parsed = parse_progress(f"[rank 1] 2026-01-01 {LINE} trailing")
    assert parsed == {
        "rank": 0,
        "epoch": 3,
        "max_epoch": 150,
        "step": 1200,
        "total_steps": 187650,
        "loss": 4.1234,
        "lr": 0.049,
        "img_per_sec": 196.3,
        "eta_seconds": 86400 + 2 * 3600 + 3 * 60,
    }


def test_parse_unknown_speed_and_rejects_other_lines() -> None:
    line = format_progress(2, 1, 2, 1, 10, 2.0, 0.1, None, None)
    assert line.endswith("img/s=- eta=-")
    parsed = parse_progress(line)
    assert parsed is not None and parsed["img_per_sec"] is None and parsed["eta_seconds"] is None
    assert parse_progress("rank=0 saved /x/y.ckpt") is None
    assert parse_progress("rank=0 epoch=1/2 step=3/4 loss=nan? lr=x img/s=1 eta=1s") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42, "42s"), (185, "3m05s"), (7380, "2h03m"), (93780, "1d02h03m"), (None, "-"), (-1, "-")],
)
def test_duration_round_trip(seconds: int | None, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds is not None and seconds >= 0:
        assert parse_duration(text) == seconds
    assert parse_duration("soon") is None


def test_meter_excludes_the_first_step() -> None:
    meter = ThroughputMeter(skip=1)
    meter.step_done(64, now=100.0)  # the first (compile) step ends here: the clock starts now
    assert meter.img_per_sec is None
    meter.step_done(64, now=100.5)
    meter.step_done(64, now=101.0)
    assert meter.img_per_sec == pytest.approx(128.0)
    assert meter.eta_seconds(256) == pytest.approx(2.0)


def test_status_is_atomic_json(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    assert read_status(path) is None
    written = write_status(path, state="running", step=3, best=None)
    assert read_status(path) == written
    assert written["updated"].endswith("Z") and written["state"] == "running"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left behind
    with pytest.raises(ValueError, match="state"):
        write_status(path, state="exploded")
    assert json.loads(path.read_text())["step"] == 3
    path.write_text("[1, 2]")
    assert read_status(path) is None


def test_progress_imports_no_mindspore() -> None:
    code = "import sys, contract.progress, trainer.cpu; sys.exit('mindspore' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_paused_time_is_not_training_time(monkeypatch) -> None:
    clock = iter([5.0, 25.0])  # perf_counter inside paused(): enters at 5 s, leaves at 25 s
    monkeypatch.setattr("contract.progress.time.perf_counter", lambda: next(clock))
    meter = ThroughputMeter(skip=1)
    meter.step_done(8, now=0.0)  # the compile step: starts the clock
    with meter.paused():  # 20 s of validation
        pass
    meter.step_done(8, now=26.0)  # 6 s of training after the 20 s pause
    assert meter.img_per_sec == pytest.approx(8 / 6.0)


def test_restarts_come_from_the_launcher_env() -> None:
    assert restarts_from_env({}) == {"count": 0, "max": None, "last": None}
    env = {"JOBCTL_RESTARTS": "3", "JOBCTL_MAX_RESTARTS": "10", "JOBCTL_LAST_FAILURE": " rank 5 exited with code 137 "}
    assert restarts_from_env(env) == {"count": 3, "max": 10, "last": "rank 5 exited with code 137"}
    assert restarts_from_env({"JOBCTL_MAX_RESTARTS": "0", "JOBCTL_LAST_FAILURE": ""})["max"] == 0
    with pytest.raises(ValueError, match=r"JOBCTL_MAX_RESTARTS='-1' is not a whole number"):
        restarts_from_env({"JOBCTL_MAX_RESTARTS": "-1"})
