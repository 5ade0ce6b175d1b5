"""The metrics history (contract.metrics): metrics.jsonl and TensorBoard files of real trainer runs, kill -9 and
resume, and the history rebuilt from a log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.group import Group
from contract.metrics import (
    History,
    TensorBoard,
    device_changes,
    effective,
    format_validation,
    history_from_log,
    history_paths,
    log_record_line,
    parse_records,
    parse_validation,
    read_history,
)
from contract.progress import format_progress, parse_progress

ROOT = Path(__file__).resolve().parents[1]
# 10 classes x 40 images, trained at 32 px: 25 steps of 16 per epoch on one process (as tests/test_train.py).
COMMON = ["--platform", "cpu", "--arch", "resnext_tiny", "--image_size", "32", "--per_batch_size", "16"]
COMMON += ["--num_parallel_workers", "1", "--lr", "0.1", "--log_interval", "5"]


def trainer_command(data: Path, job_dir: Path, *extra: str) -> list[str]:
    ckpt = ["--ckpt_path", str(job_dir / "ckpt"), "--val_dir", str(data / "val")]
    return [sys.executable, "-m", "trainer.train", "--data_dir", str(data / "train"), *ckpt, *COMMON, *extra]


def job_env(job_dir: Path, restarts: int = 0) -> dict[str, str]:
    """As the launcher starts a trainer: the job directory and the restarts so far."""
    return {**os.environ, "JOBCTL_JOB_DIR": str(job_dir), "JOBCTL_RESTARTS": str(restarts)}


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard itself shows: its own reader, restarts purged as it purges them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(log_dir))
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


@pytest.mark.slow
def test_a_run_records_every_progress_line_and_validation(data: Path, tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "rx"
    cmd = trainer_command(data, job_dir, "--max_epoch", "2", "--T_max", "2")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=job_env(job_dir))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    progress = [p for p in map(parse_progress, result.stdout.splitlines()) if p]
    validations = [v for v in map(parse_validation, result.stdout.splitlines()) if v]
    records = read_history(job_dir / "metrics.jsonl")
    assert [r["kind"] for r in records if r["kind"] in ("start", "resume")] == ["start"]
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in train] == [p["step"] for p in progress] == list(range(5, 51, 5))
    assert [r["loss"] for r in train] == pytest.approx([p["loss"] for p in progress], abs=1e-4)
    assert [(r["step"], r["top1"]) for r in val] == [
        (v["step"], pytest.approx(v["top1"], abs=1e-4)) for v in validations
    ]
    assert len(val) == 2 and all(r["restarts"] == 0 and r["images"] == 100 for r in val)
    assert records[0]["arch"] == "resnext_tiny" and records[0]["rank_size"] == 1
    scalars = tensorboard_scalars(job_dir / "tensorboard")
    timed = sum(p["img_per_sec"] is not None for p in progress)  # a line before any timed step has none
    assert {tag: len(points) for tag, points in scalars.items()} == {
        "train/loss": 10,
        "train/lr": 10,
        "train/img_per_sec": timed,
        "val/top1": 2,
        "val/top5": 2,
        "devices": 1,  # the segment record: the whole job's one device from step 0
    }
    assert scalars["devices"] == [(0, 1.0)]
    assert [step for step, _ in scalars["val/top1"]] == [25, 50]
    assert history_from_log(result.stdout.splitlines())[0] == records[0]  # the attempt record is in the log too


@pytest.mark.slow
def test_kill_9_and_resume_appends_a_marked_resume_and_no_second_curve(data: Path, tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "rx"
    metrics = job_dir / "metrics.jsonl"
    # Checkpoints every 10 steps, so the kill comes after a checkpoint with records past it.
    cmd = trainer_command(data, job_dir, "--max_epoch", "3", "--T_max", "3", "--ckpt_interval", "10")
    first = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=job_env(job_dir),
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not any(r["kind"] == "val" for r in read_history(metrics)):  # validation flushes at once
        assert first.poll() is None and time.monotonic() < deadline, "no validation record appeared"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = metrics.read_bytes()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=job_env(job_dir, 1))
    assert second.returncode == 0, second.stdout[-3000:]
    after = metrics.read_bytes()
    assert after.startswith(before), "earlier lines were rewritten"
    records = read_history(metrics)
    attempts = [r for r in records if r["kind"] in ("start", "resume")]
    assert [r["kind"] for r in attempts] == ["start", "resume"]
    resume = attempts[1]
    assert resume["restarts"] == 1 and resume["checkpoint"].endswith(f"_{resume['step']}.ckpt")
    assert f"resuming from {resume['checkpoint']} at step {resume['step']}" in second.stdout
    segment, *later = records[records.index(resume) + 1 :]
    assert segment["kind"] == "segment" and segment["step"] == resume["step"] and segment["devices"] == 1
    assert later and all(r["step"] > resume["step"] and r["restarts"] == 1 for r in later)
    steps = [r["step"] for r in effective(records) if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 75  # monotonic: the redone steps are one curve
    assert len(steps) == 15
    scalars = tensorboard_scalars(job_dir / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == steps  # TensorBoard purges the killed attempt's tail too
    assert [s for s, _ in scalars["val/top1"]] == [25, 50, 75]


def test_history_lives_in_the_job_directory_or_next_to_status(tmp_path: Path) -> None:
    assert history_paths("/x/ckpt", {"JOBCTL_JOB_DIR": "/shared/jobs/rx"}) == (
        Path("/shared/jobs/rx/metrics.jsonl"),
        Path("/shared/jobs/rx/tensorboard"),
    )
    assert history_paths("/x/ckpt", {}) == (Path("/x/ckpt/metrics.jsonl"), Path("/x/ckpt/tensorboard"))


def test_appends_are_batched_and_never_glued_to_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind":"train","step":1')  # a writer killed mid-line
    history = History(path, flush_seconds=3600)
    history.attempt(0, 0, checkpoint=None)
    history.train(5, 1, loss=2.0, lr=0.1, img_per_sec=None, eta_seconds=None)
    assert [r["kind"] for r in read_history(path)] == ["start"]  # train records wait for the cadence
    history.close()
    assert [r["kind"] for r in read_history(path)] == ["start", "train"]
    assert path.read_text().splitlines()[0] == '{"kind":"train","step":1'


def test_an_attempt_record_supersedes_the_steps_it_redoes() -> None:
    records = [
        {"kind": "start", "step": 0},
        *({"kind": "train", "step": s} for s in (5, 10, 15)),
        {"kind": "resume", "step": 10},
        *({"kind": "train", "step": s} for s in (15, 20)),
    ]
    assert [(r["kind"], r["step"]) for r in effective(records)] == [
        ("start", 0),
        ("train", 5),
        ("train", 10),
        ("resume", 10),
        ("train", 15),
        ("train", 20),
    ]


def test_history_from_a_pod_log_with_rank_prefixes() -> None:
    attempt = {"kind": "resume", "step": 10, "epoch": 0, "checkpoint": "/shared/c.ckpt", "restarts": 2}
    line0 = format_progress(0, 1, 2, 15, 50, 2.5, 0.1, 300.0, 20.0)
    lines = [
        f"[rank 0] rank=0 metrics {json.dumps(attempt)}",
        f"[rank 0] {line0}",
        f"[rank 1] {format_progress(1, 1, 2, 15, 50, 2.6, 0.1, 300.0, 20.0)}",
        f"[rank 0] rank=0 {format_validation(1, 2, 25, 50, {'top1': 0.5, 'top5': 0.9, 'images': 100})}",
        f"[rank 1] rank=1 {format_validation(1, 2, 25, 50, {'top1': 0.5, 'top5': 0.9, 'images': 100})}",
    ]
    records = history_from_log(lines)
    assert records == [
        attempt,
        {"kind": "train", "step": 15, "epoch": 1, "loss": 2.5, "lr": 0.1, "img_per_sec": 300.0, "eta_seconds": 20,
         "restarts": 2},
        {"kind": "val", "step": 25, "epoch": 1, "top1": 0.5, "top5": 0.9, "images": 100, "restarts": 2},
    ]  # fmt: skip


def test_segment_records_say_the_devices_of_each_attempt_in_the_file_the_log_and_tensorboard(tmp_path: Path) -> None:
    """Elastic data parallel: after each attempt record a segment record names the devices it trains with; it is
    read back from metrics.jsonl and from rank 0's log alike, a later attempt at the same step supersedes it, and
    TensorBoard gets a `devices` scalar at its step."""
    path, logged = tmp_path / "metrics.jsonl", []
    attempts = [(0, Group.full(3, 2)), (40, Group((0, 2), 3, 2)), (40, Group((0,), 3, 2)), (90, Group.full(3, 2))]
    for number, (step, group) in enumerate(attempts):
        history = History(path, TensorBoard(tmp_path / f"tb{number}"), restarts=number)  # a file per attempt
        logged.append(f"[rank 0] rank=0 {log_record_line(history.attempt(step, step // 30, checkpoint=None))}")
        logged.append(f"[rank 0] rank=0 {log_record_line(history.segment(step, step // 30, group))}")
        history.close()
    records = read_history(path)
    segments = [r for r in records if r["kind"] == "segment"]
    assert [(r["step"], r["devices"], r["full_devices"], r["members"]) for r in segments] == [
        (0, 6, 6, [0, 1, 2]),
        (40, 4, 6, [0, 2]),
        (40, 2, 6, [0]),
        (90, 6, 6, [0, 1, 2]),
    ]
    assert all(r["epoch"] == r["step"] // 30 and "time" in r for r in segments)
    assert history_from_log(logged) == records
    kept = effective(records)
    assert [(r["step"], r["devices"]) for r in kept if r["kind"] == "segment"] == [(0, 6), (40, 2), (90, 6)]
    assert [(r["step"], r["devices"]) for r in device_changes(kept)] == [(40, 2), (90, 6)]
    assert [r["step"] for r in device_changes([{**segments[1], "step": 0}])] == [0]  # started shrunk: a change
    assert parse_records(['{"kind":"segment","step":3}']) == []  # a segment without its counts is no record
    scalars = [tensorboard_scalars(tmp_path / f"tb{number}")["devices"] for number in range(4)]
    assert scalars == [[(0, 6.0)], [(40, 4.0)], [(40, 2.0)], [(90, 6.0)]]


@pytest.mark.slow
def test_every_record_is_on_disk_before_its_progress_line_is_printed(data: Path, tmp_path: Path) -> None:
    """Issue 23.6: records were appended every ~10 s, so a crash lost the steps before it from metrics.jsonl and
    TensorBoard. Now each is written (and fsynced) before its line is printed: kill -9 right after a line, and its
    step is there."""
    job_dir = tmp_path / "jobs" / "rx"
    cmd = trainer_command(data, job_dir, "--max_epoch", "1000", "--T_max", "2")
    run = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=job_env(job_dir),
        start_new_session=True,
    )  # fmt: skip
    assert run.stdout is not None
    seen = None
    for line in run.stdout:
        progress = parse_progress(line)
        if progress is not None and progress["step"] >= 15:
            seen = progress["step"]
            os.killpg(run.pid, signal.SIGKILL)
            break
    run.wait(60)
    assert seen is not None, "no progress line"
    steps = [r["step"] for r in read_history(job_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == list(range(5, seen + 1, 5)), steps
    assert [s for s, _ in tensorboard_scalars(job_dir / "tensorboard")["train/loss"]] == steps
