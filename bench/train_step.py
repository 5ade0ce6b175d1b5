"""CPU training throughput of ResNeXt101-64x4d at batch 8, 224 px (``make bench``; not a test).

Measures, each in its own process so oneDNN sees its own ``ONEDNN_MAX_CPU_ISA``:
1. the trainer: ``python -m trainer.train`` on a small generated 224-px dataset for a few steps; its own
   steady-state img/s (first step, the compile, excluded);
2. a bare MindSpore step (``TrainOneStepCell`` of the same model, random data) with the fast path
   (``ONEDNN_MAX_CPU_ISA=AVX2``);
3. the same bare step without it (oneDNN's default ISA; slow, ~45 s/step here; ``--no-slow`` skips it);
then prints the ratios (target: trainer >= 0.97x the bare fast step) and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainer.progress import read_status

ARCH, BATCH, SIZE, CLASSES = "resnext101_64x4d", 8, 224, 1000
ISA_VAR = "ONEDNN_MAX_CPU_ISA"


def bare_step(warmup: int, steps: int) -> float:
    """img/s of TrainOneStepCell(model + cross entropy, Momentum) on one random batch, after ``warmup`` steps."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from trainer.model import build_model

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    ms.set_seed(1)
    net = build_model(ARCH, CLASSES)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), 0.01, 0.9, weight_decay=1e-4)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)
    step.set_train()
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.normal(size=(BATCH, 3, SIZE, SIZE)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, CLASSES, BATCH).astype(np.int32))
    for _ in range(warmup):
        step(images, labels).asnumpy()
    start = time.perf_counter()
    for _ in range(steps):
        step(images, labels).asnumpy()
    return BATCH * steps / (time.perf_counter() - start)


def run_bare(fast: bool, warmup: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != ISA_VAR}
    if fast:
        env[ISA_VAR] = "AVX2"
    cmd = [sys.executable, "-m", "bench.train_step", "--bare", "--warmup", str(warmup), "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["img_per_sec"])


def make_data(root: Path) -> Path:
    """A small 224-px-trainable dataset (the step time, not the data, is measured)."""
    synth = ["--out", str(root), "--classes", "4", "--per_class", "8", "--size", "256", "--quiet"]
    subprocess.run([sys.executable, "-m", "trainer.data", "synth", *synth], check=True)
    return root / "train"


def run_trainer(steps: int, data: Path, ckpt: Path) -> float:
    """The trainer's own steady-state img/s (status.json; the progress line rounds it to 0.1)."""
    args = ["--data_dir", str(data), "--ckpt_path", str(ckpt), "--platform", "CPU"]
    args += ["--arch", ARCH, "--num_classes", str(CLASSES), "--image_size", str(SIZE)]
    args += ["--per_batch_size", str(BATCH), "--max_steps", str(steps), "--num_parallel_workers", "2"]
    args += ["--ckpt_interval", str(10 * steps)]  # one save, at the end, outside the timed steps
    env = {k: v for k, v in os.environ.items() if k != ISA_VAR}  # the trainer applies its default fast path
    proc = subprocess.run([sys.executable, "-m", "trainer.train", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"trainer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    status = read_status(ckpt / "status.json") or {}
    if status.get("state") != "completed" or not status.get("img_per_sec"):
        raise RuntimeError(f"the trainer left no steady-state img/s in status.json ({status}):\n{proc.stdout[-3000:]}")
    return float(status["img_per_sec"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (the first one compiles)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved trainer/bare pairs (medians)")
    parser.add_argument("--no-slow", dest="slow", action="store_false", help="skip the default-ISA bare step")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # internal: one bare measurement
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps({"img_per_sec": bare_step(args.warmup, args.steps)}))
        return 0

    trainer_runs, fast_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as tmp:
        data = make_data(Path(tmp) / "synth")
        for i in range(args.repeat):  # interleaved, so a machine busy with other work slows both alike
            trainer_runs.append(run_trainer(args.warmup + args.steps, data, Path(tmp) / f"ckpt-{i}"))
            fast_runs.append(run_bare(True, args.warmup, args.steps))
    trainer, fast = statistics.median(trainer_runs), statistics.median(fast_runs)
    slow = run_bare(False, args.warmup, args.steps) if args.slow else None
    results = {"trainer": trainer, "bare_fast": fast, "bare_default": slow}
    print(
        f"{ARCH}, batch {BATCH}, {SIZE} px, CPU ({os.cpu_count()} cores), "
        f"{args.steps} timed steps, median of {args.repeat} run(s):"
    )
    print(f"  trainer (fast path, data pipeline included)  {trainer:7.2f} img/s")
    print(f"  bare step, {ISA_VAR}=AVX2                {fast:7.2f} img/s")
    if slow is not None:
        print(f"  bare step, default ISA                       {slow:7.2f} img/s")
    ratios = {"trainer_vs_bare_fast": trainer / fast, "fast_vs_default": fast / slow if slow else None}
    print(f"  trainer / bare fast = {ratios['trainer_vs_bare_fast']:.3f} (target >= 0.97)")
    if slow:
        print(f"  bare fast / bare default = {fast / slow:.2f}x")
    runs = {"trainer_runs": trainer_runs, "bare_fast_runs": fast_runs}
    print(json.dumps({"arch": ARCH, "batch": BATCH, "image_size": SIZE, **results, **ratios, **runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
