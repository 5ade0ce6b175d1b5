"""MindSpore against PyTorch on this CPU, ResNeXt101-64x4d, fp32 (``make bench``; not a test).

Side by side in one run, interleaved unit by unit (round-robin, order rotated each round) so that other load on
the machine slows every variant alike:
- training, batch 8, 224 px: the trainer (``python -m trainer.train``, data pipeline included; its steady-state
  img/s from status.json, one full run per round), a bare MindSpore step, PyTorch channels_last (torchvision's
  ``resnext101_64x4d``, random weights, SGD momentum, label-smoothing loss);
- evaluation, batch 8 and 32: ``trainer.evaluate``'s scoring pass (eval pipeline, BN-folded net, top-k), a bare
  MindSpore forward (BN folded), the same without folding (``--no-fold-variant``), PyTorch channels_last.
Prints img/s (median [min-max]), each ratio to PyTorch (median [min-max] of the per-round ratios), the share of
the compute ceiling (``--peak_gflops`` over FLOPs per image) and, as the last line, one JSON object. PyTorch comes
from the bench-only extra (``pip install -e '.[bench]'``); without it the PyTorch rows are skipped and the output
says so. ``--variant NAME=JSON`` adds MindSpore workers with other ``trainer.cpu.CpuTuning`` settings (A/B).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from bench.data import synth
from bench.workers import ARCH, CLASSES, SIZE
from contract.progress import read_status
from trainer.cpu import CpuTuning

TRAIN_BATCH = 8
# numpy's 4096^3 fp32 matmul on this 2-core machine (shared/reference/performance.md, section 2d).
PEAK_GFLOPS = 204.1
MISSING_TORCH = "PyTorch is not installed: PyTorch rows skipped (pip install -e '.[bench]' adds it)"


class Worker:
    """One ``bench.workers`` process: warmed when started, then one timed unit per ``run()``."""

    def __init__(self, name: str, args: list[str], log: IO[str]) -> None:
        self.name = name
        cmd = [sys.executable, "-m", "bench.workers", *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        if self._line() != "ready":
            raise RuntimeError(f"bench worker {name} did not start ({' '.join(cmd)}); see {log.name}")
        self.first_unit_seconds: float | None = json.loads(self._line())["first_unit_seconds"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def run(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self._line()
        if not line:
            raise RuntimeError(f"bench worker {self.name} exited (code {self.proc.wait()})")
        done = json.loads(line)
        return float(done["images"]) / float(done["seconds"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def make_data(root: Path) -> Path:
    """A small 4-class dataset of 256-px JPEGs: 8 train and 16 val images per class."""
    return synth(root, classes=4, per_class=8, size=256, val_per_class=16)


def run_trainer(steps: int, data: Path, ckpt: Path) -> float:
    """The trainer's own steady-state img/s (status.json; the progress line rounds it to 0.1)."""
    args = ["--data_dir", str(data), "--ckpt_path", str(ckpt), "--platform", "CPU"]
    args += ["--arch", ARCH, "--num_classes", str(CLASSES), "--image_size", str(SIZE)]
    args += ["--per_batch_size", str(TRAIN_BATCH), "--max_steps", str(steps), "--num_parallel_workers", "2"]
    args += ["--ckpt_interval", str(10 * steps)]  # one save, at the end, outside the timed steps
    proc = subprocess.run([sys.executable, "-m", "trainer.train", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"trainer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    status = read_status(ckpt / "status.json") or {}
    if status.get("state") != "completed" or not status.get("img_per_sec"):
        raise RuntimeError(f"the trainer left no steady-state img/s in status.json ({status}):\n{proc.stdout[-3000:]}")
    return float(status["img_per_sec"])


def interleave(workers: list[Worker], rounds: int, extra: dict[str, Any] | None = None) -> dict[str, list[float]]:
    """``rounds`` round-robin passes, one unit per worker per pass; ``extra`` maps a name to a callable turn."""
    turns: list[tuple[str, Any]] = [(w.name, w.run) for w in workers] + list((extra or {}).items())
    figures: dict[str, list[float]] = {name: [] for name, _ in turns}
    for r in range(rounds):
        for name, turn in turns[r % len(turns) :] + turns[: r % len(turns)]:
            figures[name].append(turn())
    return figures


def phase(specs: dict[str, list[str]], rounds: int, log: IO[str], extra: dict[str, Any] | None = None) -> dict:
    """Start (and warm) each worker in turn, interleave them, stop them; figures per name."""
    workers: list[Worker] = []
    try:
        for name, args in specs.items():
            workers.append(Worker(name, args, log))
        return interleave(workers, rounds, extra)
    finally:
        for worker in workers:
            worker.close()


def summary(runs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


def report(title: str, figures: dict[str, list[float]], gflop_per_image: float, peak: float) -> dict[str, Any]:
    """Print one table; returns its figures with ratios to PyTorch and ceiling shares."""
    ceiling = peak / gflop_per_image
    torch_runs = figures.get("pytorch_channels_last")
    torch_median = statistics.median(torch_runs) if torch_runs else None
    print(f"{title} (ceiling {ceiling:.2f} img/s = {peak:.0f} GFLOP/s / {gflop_per_image:.1f} GFLOP per image)")
    out: dict[str, Any] = {}
    for name, runs in figures.items():
        row: dict[str, Any] = summary(runs)
        row["ceiling_share"] = row["median"] / ceiling
        ratio = "—"
        if torch_runs and torch_median:
            # Per-round ratios: both ran back to back, so a round's machine-wide slowdown cancels out.
            per_round = [mine / theirs for mine, theirs in zip(runs, torch_runs, strict=False)]
            row["vs_pytorch"] = statistics.median(per_round)
            row["vs_pytorch_rounds"] = per_round
            ratio = f"{row['vs_pytorch']:.2f}x [{min(per_round):.2f}-{max(per_round):.2f}]"
        print(
            f"  {name:<26} {row['median']:6.2f} img/s [{row['min']:.2f}-{row['max']:.2f}]  {ratio:>19} PyTorch  "
            f"{100 * row['ceiling_share']:3.0f}% of ceiling"
        )
        out[name] = {**row, "runs": runs}
    return out


def _ms_args(kind: str, batch: int, context: str, *more: str) -> list[str]:
    return [kind, "--batch", str(batch), "--ms_tuning", context, *more]


def train_phase(args: argparse.Namespace, data: Path, tmp: Path, log: IO[str]) -> dict[str, list[float]]:
    specs = {"mindspore_bare_step": _ms_args("ms-train", TRAIN_BATCH, args.ms_tuning)}
    for name, context in args.variant:
        specs[f"mindspore_bare_{name}"] = _ms_args("ms-train", TRAIN_BATCH, context)
    if args.torch:
        specs["pytorch_channels_last"] = ["torch-train", "--batch", str(TRAIN_BATCH)]
    runs = iter(range(args.rounds))
    trainer = {"trainer": lambda: run_trainer(args.trainer_steps, data / "train", tmp / f"ckpt-{next(runs)}")}
    return phase(specs, args.rounds, log, trainer if args.trainer else None)


def eval_phase(args: argparse.Namespace, batch: int, data: Path, log: IO[str]) -> dict[str, list[float]]:
    specs = {"trainer_evaluate": _ms_args("ms-evaluate", batch, args.ms_tuning, "--data", str(data / "val"))}
    specs["mindspore_bare_forward"] = _ms_args("ms-eval", batch, args.ms_tuning)
    if args.no_fold_variant:
        specs["mindspore_forward_no_fold"] = _ms_args("ms-eval", batch, args.ms_tuning, "--no-fold-bn")
    for name, context in args.variant:
        specs[f"mindspore_forward_{name}"] = _ms_args("ms-eval", batch, context)
    if args.torch:
        specs["pytorch_channels_last"] = ["torch-eval", "--batch", str(batch)]
    return phase(specs, args.rounds, log)


def _variant(text: str) -> tuple[str, str]:
    name, _, context = text.partition("=")
    CpuTuning.from_json(context)  # fail early on a bad field
    return name, context


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_speed", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one unit per variant each)")
    parser.add_argument("--trainer_steps", type=int, default=4, help="steps per trainer run (the first is excluded)")
    parser.add_argument("--eval_batches", default="8,32", help="comma-separated evaluation batch sizes")
    parser.add_argument("--peak_gflops", type=float, default=PEAK_GFLOPS, help="fp32 matmul peak of this CPU")
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the training phase")
    parser.add_argument("--no-eval", dest="eval", action="store_false", help="skip the evaluation phases")
    parser.add_argument("--no-trainer", dest="trainer", action="store_false", help="skip the full trainer runs")
    parser.add_argument("--no-fold-variant", action="store_true", help="also time the forward without BN folding")
    parser.add_argument("--ms_tuning", default="", help="CpuTuning fields (JSON) for the MindSpore workers")
    parser.add_argument("--no-torch", dest="want_torch", action="store_false", help="skip PyTorch")
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        help="NAME=JSON: an extra MindSpore worker with these CpuTuning fields",
    )
    args = parser.parse_args(argv)
    args.torch = (
        args.want_torch
        and importlib.util.find_spec("torch") is not None
        and importlib.util.find_spec("torchvision") is not None
    )
    return args


def main(argv: list[str] | None = None) -> int:
    from trainer.cpu import apply_cpu_fast_path

    args = parse(argv)
    apply_cpu_fast_path("CPU", True)  # the workers inherit the trainer's CPU default
    from trainer.model import forward_flops  # imports MindSpore: after the fast path

    forward = forward_flops(ARCH, CLASSES, SIZE) / 1e9
    print(f"{ARCH}, fp32, {SIZE} px, {os.cpu_count()} cores, {args.rounds} interleaved rounds")
    if not args.torch:
        print(MISSING_TORCH if args.want_torch else "PyTorch rows skipped (--no-torch)")
    results: dict[str, Any] = {"arch": ARCH, "pytorch": args.torch, "peak_gflops": args.peak_gflops}
    with tempfile.TemporaryDirectory(prefix="bench-cpu-speed-") as tmp, open(Path(tmp) / "workers.log", "w+") as log:
        data = make_data(Path(tmp) / "synth")
        try:
            if args.train:
                figures = train_phase(args, data, Path(tmp), log)
                results[f"train_b{TRAIN_BATCH}"] = report(
                    f"training, batch {TRAIN_BATCH}", figures, 3 * forward, args.peak_gflops
                )
            for batch in [int(b) for b in args.eval_batches.split(",") if b] if args.eval else []:
                figures = eval_phase(args, batch, data, log)
                results[f"eval_b{batch}"] = report(f"evaluation, batch {batch}", figures, forward, args.peak_gflops)
        except RuntimeError:
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
            raise
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
