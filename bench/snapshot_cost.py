"""What in-memory snapshots cost a training step: ResNeXt101-64x4d on CPU, batch 8, 224 px
(``python -m bench.snapshot_cost``; not a test).

Runs ``python -m trainer.train`` three times on a small generated dataset with checkpoints out of the way
(``ckpt_interval`` beyond the run): without snapshots, with a snapshot every step, and with the default interval
(the trainer's pacer: the shortest whose measured cost stays under 3% of a step). The snapshot writer is the
trainer itself (``JOBCTL_SNAPSHOT_WRITE`` pointing at a folder in ``/dev/shm``, as the launcher gives a pod's first
rank). Each progress line (``log_interval: 1``) is timestamped as it arrives; a run's step time is the mean gap
between them after the first (compile) step, so the snapshots' cost is spread over the steps as training pays it.
Printed: each run's mean step (with its spread), the ratio to the run without (target <= 1.03 for the default),
the interval the pacer chose, and the snapshot's size and host copy. Last line: JSON.

``--parts`` (no training: minutes instead of an hour on a loaded 2-core machine) times a snapshot's pieces on the
real ResNeXt101-64x4d training network: the host copy on the training thread (into fresh and into reused memory),
the write to /dev/shm off it (CRC + copy; fresh and reused pages) and the restore's read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.checkpoint_stall import BATCH, make_data, timed_lines
from bench.workers import ARCH, CLASSES, SIZE
from contract.env import Var
from contract.progress import parse_progress
from trainer.cpu import ISA_VAR

RUNS = {"none": "0", "every step": "1", "default": None}
INTERVAL_RE = re.compile(r"snapshot interval now (\d+) step\(s\): a snapshot costs ([\d.]+) s \(copy ([\d.]+) s\)")
FIRST_RE = re.compile(r"first snapshot of step \d+ in \S+ \((?P<mb>[\d.]+) MB in (?P<write>[\d.]+) s")


def run(data: Path, ckpt: Path, steps: int, interval: str | None, shm: Path) -> dict[str, Any]:
    args = ["--data_dir", str(data), "--ckpt_path", str(ckpt), "--platform", "CPU", "--arch", ARCH]
    args += ["--num_classes", str(CLASSES), "--image_size", str(SIZE), "--per_batch_size", str(BATCH)]
    args += ["--max_steps", str(steps), "--ckpt_interval", "100000", "--log_interval", "1"]
    args += ["--num_parallel_workers", "2"]
    if interval is not None:
        args += ["--snapshot_interval", interval]
    env = {k: v for k, v in os.environ.items() if k != ISA_VAR} | {"PYTHONUNBUFFERED": "1", "GLOG_v": "3"}
    env[Var.SNAPSHOT_WRITE] = str(shm)
    lines = timed_lines([sys.executable, "-m", "trainer.train", *args], env)
    at: dict[int, float] = {}
    for stamp, line in lines:
        progress = parse_progress(line)
        if progress:
            at.setdefault(int(progress["step"]), stamp)
    gaps = [at[s + 1] - at[s] for s in range(1, steps) if s in at and s + 1 in at]
    text = "\n".join(line for _, line in lines)
    chosen = [(int(m[1]), float(m[2]), float(m[3])) for m in INTERVAL_RE.finditer(text)]
    first = FIRST_RE.search(text)
    return {
        "gaps": gaps,
        "mean": statistics.fmean(gaps) if gaps else float("nan"),
        "intervals": chosen,
        "size_mb": float(first["mb"]) if first else None,
        "write_s": float(first["write"]) if first else None,
    }


def parts(repeat: int) -> dict[str, list[float]]:
    """Seconds per piece of a snapshot of the real training network (no step is run)."""
    import time

    import mindspore as ms
    from mindspore import nn

    from trainer import checkpoint as ckpt
    from trainer import snapshot as snapshots
    from trainer.loop import param_groups
    from trainer.loss import LabelSmoothingCrossEntropy
    from trainer.model import build_model

    net = build_model(ARCH, CLASSES)
    optimizer = nn.Momentum(param_groups(net, 1e-4), ms.Tensor([0.1] * 1000, ms.float32), 0.9)
    train_net = ms.amp.build_train_network(net, optimizer, LabelSmoothingCrossEntropy(CLASSES, 0.1), level="O0")
    found: dict[str, list[float]] = {"copy_fresh": [], "copy_reused": [], "write_fresh": [], "write_reused": []}
    found["load"] = []
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-", dir="/dev/shm") as shm:
        buffer = None
        for i in range(repeat):
            began = time.perf_counter()
            buffer = ckpt.snapshot(train_net, reuse=buffer)
            found["copy_reused" if i else "copy_fresh"].append(time.perf_counter() - began)
            began = time.perf_counter()
            snapshots.write(Path(shm), buffer, {"step": i + 1, "epoch": 1}, pod=0)
            found["write_reused" if i > 1 else "write_fresh"].append(time.perf_counter() - began)
        began = time.perf_counter()
        snapshots.load(Path(shm) / "snapshot.bin")
        found["load"].append(time.perf_counter() - began)
        found["mb"] = [buffer.nbytes / 1e6] if buffer is not None else []
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot_cost", description=__doc__)
    parser.add_argument("--steps", type=int, default=16, help="steps per run (the first one compiles)")
    parser.add_argument("--parts", action="store_true", help="time a snapshot's pieces only (no training)")
    parser.add_argument("--repeat", type=int, default=5, help="snapshots taken with --parts")
    args = parser.parse_args(argv)
    if args.parts:
        found = parts(args.repeat)
        print(f"{ARCH} training state, {found['mb'][0]:.0f} MB, CPU ({os.cpu_count()} cores, shared with other work)")
        for name, values in found.items():
            if name != "mb":
                print(f"  {name:13s} {statistics.median(values):.3f} s (min {min(values):.3f}, n={len(values)})")
        print(json.dumps({"arch": ARCH, **found}))
        return 0
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        data = make_data(Path(tmp) / "synth")
        with tempfile.TemporaryDirectory(prefix="bench-snapshot-", dir="/dev/shm") as shm:
            for name, interval in RUNS.items():
                results[name] = run(data, Path(tmp) / f"ckpt-{len(results)}", args.steps, interval, Path(shm) / name)
    base = results["none"]["mean"]
    print(f"{ARCH}, batch {BATCH}, {SIZE} px, CPU ({os.cpu_count()} cores, shared with other work)")
    for name, r in results.items():
        gaps = r["gaps"]
        low, high = (min(gaps), max(gaps)) if gaps else (float("nan"), float("nan"))
        ratio = r["mean"] / base
        print(f"  {name:10s} mean step {r['mean']:.3f} s ({low:.2f}-{high:.2f}, n={len(gaps)}) = {ratio:.3f}x")
        if r["size_mb"]:
            print(f"  {'':10s} snapshot {r['size_mb']:.0f} MB, first write {r['write_s']:.2f} s (writer thread)")
        for interval, cost, copy in r["intervals"]:
            print(f"  {'':10s} pacer: interval {interval} (a snapshot cost {cost:.3f} s, host copy {copy:.3f} s)")
    ratio = results["default"]["mean"] / base
    print(f"  target: default / none <= 1.03 -> {'met' if ratio <= 1.03 else 'NOT met'} ({ratio:.3f})")
    print(json.dumps({"arch": ARCH, "batch": BATCH, "ratios": {k: r["mean"] / base for k, r in results.items()},
                      **results}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
