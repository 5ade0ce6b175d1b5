"""Checkpoint stall of ResNeXt101-64x4d on CPU, batch 8, 224 px (``make bench``; not a test).

Runs ``python -m trainer.train`` twice on a small generated dataset, saving every ``--interval`` steps, once with
``async_save: false`` (the step waits for the write) and once with background saves (the default). Each progress
line (``log_interval: 1``) is timestamped as it arrives, so a step's time is the gap between two lines; the save
after step s falls into the gap s -> s+1. Printed side by side: the normal step (median of the gaps outside save
windows), the saving step, their ratio (target < 1.10 with background saves), the steps while a background write
is still going (it competes for the CPU), and the save's size, host copy and write time from the trainer's
``saved ...`` lines. The machine may be shared: each figure comes with its spread (min-max). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.data import synth
from bench.workers import ARCH, CLASSES, SIZE
from contract.progress import parse_progress
from trainer.cpu import ISA_VAR

BATCH = 8  # the figure: ResNeXt101-64x4d, batch 8, 224 px

SAVED_RE = re.compile(r"saved \S+ \((?P<mb>[\d.]+) MB in (?P<write>[\d.]+) s, (?P<how>in the background|synchronously)")
COPY_RE = re.compile(r"after a (?P<copy>[\d.]+) s copy")


def make_data(root: Path) -> Path:
    return synth(root, classes=4, per_class=8, size=256) / "train"


def timed_lines(argv: list[str], env: dict[str, str]) -> list[tuple[float, str]]:
    """The trainer's stdout lines with their arrival time (monotonic seconds)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    lines = [(time.monotonic(), line.rstrip("\n")) for line in proc.stdout]
    if proc.wait() != 0:
        tail = "\n".join(line for _, line in lines[-30:])
        raise RuntimeError(f"trainer failed ({proc.returncode}):\n{tail}")
    return lines


def run_trainer(data: Path, ckpt: Path, steps: int, interval: int, background: bool) -> dict[str, list[float]]:
    args = ["--data_dir", str(data), "--ckpt_path", str(ckpt), "--platform", "CPU", "--arch", ARCH]
    args += ["--num_classes", str(CLASSES), "--image_size", str(SIZE), "--per_batch_size", str(BATCH)]
    args += ["--max_steps", str(steps), "--ckpt_interval", str(interval), "--log_interval", "1"]
    args += ["--num_parallel_workers", "2", "--keep_checkpoint_max", "2", "--async_save", str(background).lower()]
    env = {k: v for k, v in os.environ.items() if k != ISA_VAR} | {"PYTHONUNBUFFERED": "1", "GLOG_v": "3"}
    lines = timed_lines([sys.executable, "-m", "trainer.train", *args], env)
    return measure(lines, interval, steps)


def measure(lines: list[tuple[float, str]], interval: int, steps: int) -> dict[str, list[float]]:
    """Step gaps by kind: ``saving`` (the gap a save falls into), ``during`` (a background write still going),
    ``normal``; the first step (compile) and the final save (after the last step) are left out."""
    at: dict[int, float] = {}
    saves: list[tuple[float, re.Match[str], str]] = []
    for stamp, line in lines:
        progress = parse_progress(line)
        if progress:
            at.setdefault(int(progress["step"]), stamp)
        elif (match := SAVED_RE.search(line)) is not None:
            saves.append((stamp, match, line))
    saving_steps = [s for s in range(interval, steps, interval) if s in at]
    windows = [(at[s], min((t for t, _, _ in saves if t > at[s]), default=at[s])) for s in saving_steps]
    kinds: dict[str, list[float]] = {"normal": [], "saving": [], "during": []}
    for step in range(2, steps):  # the gap step -> step + 1
        if step not in at or step + 1 not in at:
            continue
        gap = at[step + 1] - at[step]
        if step in saving_steps:
            kinds["saving"].append(gap)
        elif any(begin < at[step] < done for begin, done in windows):
            kinds["during"].append(gap)
        else:
            kinds["normal"].append(gap)
    in_loop = [(m, line) for stamp, m, line in saves if stamp < at.get(steps, float("inf"))]
    return {
        **kinds,
        "size_mb": [float(m["mb"]) for m, _ in in_loop],
        "write_s": [float(m["write"]) for m, _ in in_loop],
        "copy_s": [float(c["copy"]) for _, line in in_loop if (c := COPY_RE.search(line))],
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.2f} s ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_stall", description=__doc__)
    parser.add_argument("--steps", type=int, default=9, help="steps per run (the first one compiles)")
    parser.add_argument("--interval", type=int, default=3, help="steps between checkpoints")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-stall-") as tmp:
        data = make_data(Path(tmp) / "synth")
        for name, background in (("sync", False), ("background", True)):
            results[name] = run_trainer(data, Path(tmp) / f"ckpt-{name}", args.steps, args.interval, background)
    print(f"{ARCH}, batch {BATCH}, {SIZE} px, CPU ({os.cpu_count()} cores, shared with other work): median (min-max)")
    ratios = {}
    for name, r in results.items():
        ratios[name] = _median(r["saving"]) / _median(r["normal"])
        print(f"  {name:10s} normal step {spread(r['normal'])}   saving step {spread(r['saving'])}")
        print(f"  {'':10s} saving / normal = {ratios[name]:.3f}; steps while a write goes on {spread(r['during'])}")
        size = f"{_median(r['size_mb']):.0f} MB" if r["size_mb"] else "size -"
        print(f"  {'':10s} save: {size}, write {spread(r['write_s'])}, host copy {spread(r['copy_s'])}")
    print(f"  target: background saving / normal < 1.10 -> {'met' if ratios['background'] < 1.10 else 'NOT met'}")
    print(json.dumps({"arch": ARCH, "batch": BATCH, "image_size": SIZE, "ratios": ratios, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
