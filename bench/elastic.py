"""Elastic data parallel on the local backend: a lost pod, the group training without it, its return
(``python -m bench.elastic``).

A 3-pod x 1-rank resnext_tiny job with ``min_devices: 2`` (``jobctl submit --backend local``) trains until it has a
few steps; then ``jobctl fault JOB --pod 2 --down --for 45s`` takes pod 2 away as a lost node does (its processes
killed, its memory gone, its replacement held back). The bench follows the pods' logs (each line stamped as it
arrives, polled every 20 ms, as bench.recovery does) and reports:

- the shrink: fault -> the survivors notice (their first ``pod 2 lost`` line) -> they publish a smaller group
  (``pods 0,1 of 3 joined``: the missing pod's ``shrink_after`` wait included) -> the first progress line of the
  2-pod group; the finished steps lost (the newest step rank 0 logged before the fault minus the step resumed at);
- the grow-back: pod 2's replacement joins (its ``joining the rendezvous`` line) -> the group of 2 stops at a
  step boundary after saving -> all 3 pods joined -> the first progress line of the full group; steps lost
  (must be 0: the group saves first);
- accuracy: a second job, the same recipe and seed without the fault, trained side by side to the same step;
  the per-step loss of both runs from metrics.jsonl: the mean and largest |ln(resized) - ln(unresized)| and the
  mean loss of the last 10 steps of each, as a ratio.

The machine may be shared with other work (2 cores here): process start and MindSpore set-up dominate the times.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.recovery import Follower, jobctl, make_data
from contract.layout import JobLayout
from contract.metrics import effective, read_history

JOB, BASELINE = "elastic-bench", "elastic-base"
PODS, MIN_DEVICES, LOST_POD = 3, 2, 2
EPOCHS = 24
STEPS_PER_EPOCH = 16  # 400 images / global batch 24: 384 steps
TRAIN = ["arch=resnext_tiny", "image_size=32", "per_batch_size=8", f"max_epoch={EPOCHS}", f"T_max={EPOCHS}", "lr=0.1"]
TRAIN += ["log_interval=1", "num_parallel_workers=1", "ckpt_interval=100000", "snapshot_interval=1"]
TRAIN += ["eval_interval=1000"]
PROGRESS = r"\[rank 0\] rank=0 epoch=\d+/\d+ step=(\d+)/"


def submit(name: str, shared: Path, data: Path, shrink_after: float, elastic: bool) -> None:
    args = ["submit", "--name", name, "--backend", "local", "--platform", "cpu", "--devices", str(PODS)]
    args += ["--devices-per-node", "1", "--data", str(data), "--shared", str(shared), "--replace"]
    args += ["--max-restarts", "10"]
    if elastic:
        args += ["--min-devices", str(MIN_DEVICES), "--shrink-after", str(round(shrink_after))]
    for item in TRAIN:
        args += ["--set", item]
    jobctl(*args)


def last_step_before(follower: Follower, stamp: float) -> int:
    steps = [int(m[1]) for t, _, line in follower.lines if t <= stamp and (m := re.search(PROGRESS, line))]
    return max(steps, default=0)


def resumed_step(follower: Follower, after: float) -> tuple[float, int]:
    found = follower.wait_for(r"\[rank 0\] rank=0 resuming from .* at step (\d+)", 600, after=after)
    return found[0], int(re.search(r"at step (\d+)", found[2])[1])  # type: ignore[index]


def shrink(follower: Follower, shared: Path, hold: float, timeout: float) -> dict[str, Any]:
    """Fault pod 2; time the survivors' way to training as a group of 2."""
    for _ in range(5):
        follower.wait_for(PROGRESS, timeout, after=time.monotonic())
    follower.poll()
    began = time.monotonic()
    jobctl("fault", JOB, "--pod", str(LOST_POD), "--down", "--for", f"{hold:g}s", "--backend", "local",
           "--shared", str(shared))  # fmt: skip
    before = last_step_before(follower, time.monotonic())  # what rank 0 had logged when the pod was gone
    noticed = follower.wait_for(rf"\[launcher\] .*pod {LOST_POD} lost", timeout, after=began)
    joined = follower.wait_for(r"\[launcher\] attempt \d+: pods 0,1 of 3 joined", timeout, after=began)
    at, step = resumed_step(follower, began)
    trained = follower.wait_for(PROGRESS, timeout, after=at)
    return {
        "detect": noticed[0] - began,
        "shrink": joined[0] - noticed[0],
        "restart": trained[0] - joined[0],
        "to_training_on_2": trained[0] - began,
        "steps_lost": max(0, before - step),
        "resumed_at": step,
        "fault_at": began,
    }


def grow(follower: Follower, since: float, timeout: float) -> dict[str, Any]:
    """Pod 2 returns: time its way back into the group, and the steps lost (none: the group saves first)."""
    back = follower.wait_for(r"joining the rendezvous", timeout, after=since)
    while back[1] != LOST_POD:
        back = follower.wait_for(r"joining the rendezvous", timeout, after=back[0] + 1e-6)
    joined = follower.wait_for(r"\[launcher\] attempt \d+: all 3 pod\(s\) joined", timeout, after=back[0])
    before = last_step_before(follower, joined[0])
    at, step = resumed_step(follower, back[0])
    trained = follower.wait_for(PROGRESS, timeout, after=at)
    return {
        "rejoin": joined[0] - back[0],
        "restart": trained[0] - joined[0],
        "to_training_on_3": trained[0] - back[0],
        "steps_lost": max(0, before - step),
        "resumed_at": step,
    }


def losses(layout: JobLayout) -> dict[int, float]:
    return {r["step"]: float(r["loss"]) for r in effective(read_history(layout.metrics_file)) if r["kind"] == "train"}


def segments(layout: JobLayout) -> list[tuple[int, int]]:
    return [(r["step"], r["devices"]) for r in read_history(layout.metrics_file) if r["kind"] == "segment"]


def compare(resized: dict[int, float], unresized: dict[int, float]) -> dict[str, float]:
    """Step by step (rank 0's loss is over its own share of the batch: 8 of 24 images on 3 pods, 12 on 2, so single
    steps are noisy) and by epoch means (the curve)."""
    steps = sorted(set(resized) & set(unresized))
    gaps = [abs(math.log(resized[s]) - math.log(unresized[s])) for s in steps]
    epochs = sorted({(s - 1) // STEPS_PER_EPOCH for s in steps})
    mean_of = lambda run, e: statistics.fmean(run[s] for s in steps if (s - 1) // STEPS_PER_EPOCH == e)  # noqa: E731
    epoch_gaps = [abs(math.log(mean_of(resized, e)) - math.log(mean_of(unresized, e))) for e in epochs]
    tail = steps[-10:]
    return {
        "steps_compared": len(steps),
        "mean_abs_log_gap": statistics.fmean(gaps),
        "max_abs_log_gap": max(gaps),
        "epoch_mean_abs_log_gap": statistics.fmean(epoch_gaps),
        "epoch_max_abs_log_gap": max(epoch_gaps),
        "last10_resized": statistics.fmean(resized[s] for s in tail),
        "last10_unresized": statistics.fmean(unresized[s] for s in tail),
    }


def wait_complete(name: str, shared: Path, timeout: float) -> None:
    jobctl("wait", name, "--backend", "local", "--shared", str(shared), "--timeout", f"{timeout:g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.elastic", description=__doc__)
    parser.add_argument("--hold", type=float, default=45.0, help="seconds pod 2 stays down (jobctl fault --for)")
    parser.add_argument("--shrink-after", type=float, default=5.0, help="the job's shrink_after")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-elastic-") as tmp:
        data = make_data(Path(tmp) / "synth")
        shared = Path(tmp) / "shared"
        layout, base = JobLayout.of(shared, JOB), JobLayout.of(shared, BASELINE)
        submit(JOB, shared, data, args.shrink_after, elastic=True)
        follower = Follower([layout.local_dir / f"pod-{i}.log" for i in range(PODS)])
        lost = shrink(follower, shared, args.hold, args.timeout)
        fault_at = lost.pop("fault_at")
        print(json.dumps({"shrink": lost}), flush=True)
        back = grow(follower, fault_at, args.timeout)
        print(json.dumps({"grow": back}), flush=True)
        wait_complete(JOB, shared, 3600)
        submit(BASELINE, shared, data, args.shrink_after, elastic=False)
        wait_complete(BASELINE, shared, 3600)
        curve = compare(losses(layout), losses(base))
        seen = segments(layout)
    report(lost, back, curve, seen)
    return 0


def report(lost: dict[str, Any], back: dict[str, Any], curve: dict[str, float], seen: list[tuple[int, int]]) -> None:
    print(f"elastic data parallel on the local backend, {PODS} pods x 1 rank, resnext_tiny, min_devices {MIN_DEVICES}")
    print(
        f"  lost pod {LOST_POD}: noticed {lost['detect']:.2f} s, smaller group {lost['shrink']:.2f} s later, "
        f"training on 2 after {lost['to_training_on_2']:.2f} s in all; finished steps lost {lost['steps_lost']}"
    )
    print(
        f"  pod {LOST_POD} back: all 3 joined {back['rejoin']:.2f} s after it joined, training on 3 after "
        f"{back['to_training_on_3']:.2f} s in all; finished steps lost {back['steps_lost']}"
    )
    print(f"  segments (step, devices): {seen}")
    print(
        f"  loss, resized vs unresized over {curve['steps_compared']} steps: mean |ln ratio| "
        f"{curve['mean_abs_log_gap']:.3f}, max {curve['max_abs_log_gap']:.3f}; epoch means: mean |ln ratio| "
        f"{curve['epoch_mean_abs_log_gap']:.3f}, max {curve['epoch_max_abs_log_gap']:.3f}; last 10 steps "
        f"{curve['last10_resized']:.4f} vs {curve['last10_unresized']:.4f} "
        f"(ratio {curve['last10_resized'] / curve['last10_unresized']:.3f})"
    )
    print(json.dumps({"shrink": lost, "grow": back, "loss": curve, "segments": seen}))


if __name__ == "__main__":
    sys.exit(main())
