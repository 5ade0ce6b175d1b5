"""The trainer in an elastic job's shrunk group (JOBCTL_MEMBERS from the launcher): the full job's global batch
split over the ranks there, the full job's learning rate, the group in status.json, the segment record in
metrics.jsonl and rank 0's log, and a group that cannot work refused as bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.config import parse_args
from contract.group import Group, GroupError
from contract.metrics import history_from_log, read_history
from contract.progress import parse_progress, read_status

ROOT = Path(__file__).resolve().parents[1]
# 10 classes x 40 images (the `data` fixture); per device of the full 3-pod job: 4, so a global batch of 12.
COMMON = ["--platform", "cpu", "--arch", "resnext_tiny", "--image_size", "32", "--per_batch_size", "4"]
COMMON += ["--num_parallel_workers", "1", "--log_interval", "1", "--warmup_epochs", "0", "--snapshot_interval", "0"]
SHRUNK = {"JOBCTL_NUM_PODS": "3", "JOBCTL_DEVICES_PER_POD": "1", "JOBCTL_MEMBERS": "1"}  # pods 0 and 2 missing


def trainer(data: Path, job_dir: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "trainer.train", "--data_dir", str(data / "train"), "--ckpt_path"]
    cmd += [str(job_dir / "ckpt"), *COMMON, *extra]
    environ = {**os.environ, "JOBCTL_JOB_DIR": str(job_dir), **env}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=environ)


@pytest.mark.slow
def test_a_shrunk_group_keeps_the_full_jobs_recipe_and_says_so(data: Path, tmp_path: Path) -> None:
    job_dir = tmp_path / "rx"
    done = trainer(data, job_dir, "--max_steps", "3", **SHRUNK)
    assert done.returncode == 0, done.stderr[-3000:]
    # 400 images / global batch 12 = 33 steps per epoch, whatever the group; one rank takes all 12.
    assert "training resnext_tiny on CPU x1 of 3 (pods 1): 10 classes, 33 steps/epoch, steps 0->3, global batch 12" in (
        done.stdout
    )
    lrs = [p["lr"] for p in map(parse_progress, done.stdout.splitlines()) if p]
    assert lrs[0] == pytest.approx(0.05 * 12 / 64, rel=1e-4)  # the seed's rule for the full job's 3 devices
    group = {"devices": 1, "full_devices": 3, "members": [1], "missing": [0, 2]}
    status = read_status(job_dir / "ckpt" / "status.json")
    assert status is not None and status["group"] == group and status["rank_size"] == 1
    segment = {"kind": "segment", "step": 0, "epoch": 0, "devices": 1, "full_devices": 3, "members": [1]}
    for records in (read_history(job_dir / "metrics.jsonl"), history_from_log(done.stdout.splitlines())):
        assert [r["kind"] for r in records][:2] == ["start", "segment"]
        assert {k: records[1][k] for k in segment} == segment


@pytest.mark.slow
def test_a_group_that_disagrees_with_mindspore_is_bad_input(data: Path, tmp_path: Path) -> None:
    done = trainer(data, tmp_path / "rx", **{**SHRUNK, "JOBCTL_MEMBERS": "0,1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: JOBCTL_MEMBERS=0,1 means 2 device(s) but MindSpore's group has 1")
    )
    assert not (tmp_path / "rx").exists()


def test_a_global_batch_the_group_cannot_split_is_refused_before_anything_is_built(data: Path, tmp_path: Path) -> None:
    from trainer.loop import build_run

    cfg = parse_args(["--data_dir", str(data / "train"), "--ckpt_path", str(tmp_path / "ckpt"), *COMMON])
    cfg = cfg.model_copy(update={"per_batch_size": 3})  # 3 per device x 3 pods = 9: not over 2 ranks
    with pytest.raises(GroupError, match="the global batch 9 cannot be split evenly over 2 device"):
        build_run(cfg, rank=0, group=Group((0, 2), 3, 1))
    assert not (tmp_path / "ckpt").exists()
