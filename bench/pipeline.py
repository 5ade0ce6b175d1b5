"""Input-pipeline throughput: ``trainer.data.create_train_dataset`` against a bare fused MindSpore pipeline.

``python -m bench.pipeline`` writes ~512 synthetic 500x375 JPEGs (q90) to a temporary folder, then runs both
pipelines in interleaved trials (order alternating, 2 workers, batch 32, 224 px) and prints steady-state
images/s (the first batch of each trial, i.e. worker start-up, is not timed), CPU use and the ratio of medians.
Target: ours >= 0.95x the bare pipeline.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.data import MEAN, STD, create_train_dataset, scan_images, write_synthetic

TARGET = 0.95


def _bare(data_dir: Path, image_size: int, batch: int, workers: int) -> Any:
    """ImageFolderDataset + RandomCropDecodeResize + flip + Normalize + HWC2CHW, nothing else."""
    import mindspore.dataset as ds
    import mindspore.dataset.vision as V

    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.RETURN)  # MindSpore's default
    dataset = ds.ImageFolderDataset(str(data_dir), num_parallel_workers=workers, shuffle=True)
    ops = [
        V.RandomCropDecodeResize(image_size, scale=(0.08, 1.0), ratio=(0.75, 1.333)),
        V.RandomHorizontalFlip(prob=0.5),
        V.Normalize(mean=MEAN, std=STD),
        V.HWC2CHW(),
    ]
    return dataset.map(ops, input_columns="image", num_parallel_workers=workers).batch(batch, drop_remainder=True)


def _ours(data_dir: Path, image_size: int, batch: int, workers: int) -> Any:
    dataset, _ = create_train_dataset(data_dir, image_size, batch, num_workers=workers)
    return dataset


def _trial(build: Callable[[], Any], epochs: int) -> tuple[float, float]:
    """Images/s and busy cores over all batches after the first."""
    dataset = build()
    iterator = dataset.create_tuple_iterator(output_numpy=True, num_epochs=epochs)
    images, start, cpu0 = 0, 0.0, 0.0
    for epoch in range(epochs):
        for i, (image, _label) in enumerate(iterator):
            if epoch == 0 and i == 0:
                start, cpu0 = time.perf_counter(), _cpu_seconds()
                continue
            images += image.shape[0]
    wall = time.perf_counter() - start
    return images / wall, (_cpu_seconds() - cpu0) / wall


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # MindSpore's dataset workers are threads of this process
    return usage.ru_utime + usage.ru_stime


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} [{min(values):.1f}-{max(values):.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--data", default=None, help="reuse this folder of class folders instead of generating one")
    args = parser.parse_args(argv)
    if min(args.images, args.trials, args.epochs, args.batch, args.workers) < 1 or args.images < args.batch:
        parser.exit(2, "error: --images, --trials, --epochs, --batch and --workers must be >= 1, images >= batch\n")
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        if args.data:
            data_dir = Path(args.data)
        else:
            t0 = time.perf_counter()
            classes = 8
            root = write_synthetic(Path(tmp) / "d", classes, -(-args.images // classes), 500, 375, val_per_class=0)
            data_dir = root / "train"
            files = list(data_dir.rglob("*.JPEG"))
            kib = sum(f.stat().st_size for f in files) / len(files) / 1024
            took = time.perf_counter() - t0
            print(f"dataset: {len(files)} JPEGs 500x375 q90, mean {kib:.0f} KiB, written in {took:.1f} s")
        t0 = time.perf_counter()
        scan = scan_images(data_dir)
        scan_s = time.perf_counter() - t0
        per_file = 1e6 * scan_s / scan.num_images
        print(f"unreadable-image scan: {scan.num_images} files in {scan_s:.2f} s ({per_file:.0f} us/file)")

        pipelines: dict[str, Callable[[], Any]] = {
            "bare fused MindSpore": lambda: _bare(data_dir, args.image_size, args.batch, args.workers),
            "trainer.data (ours)": lambda: _ours(data_dir, args.image_size, args.batch, args.workers),
        }
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        cores: dict[str, list[float]] = {name: [] for name in pipelines}
        names = list(pipelines)
        for trial in range(args.trials):
            for name in names if trial % 2 == 0 else names[::-1]:
                rate, busy = _trial(pipelines[name], args.epochs)
                rates[name].append(rate)
                cores[name].append(busy)
                print(f"trial {trial + 1}/{args.trials}  {name:22s} {rate:8.1f} img/s  {busy:.2f} cores", flush=True)

    print(f"\nsteady-state img/s, median [min-max] over {args.trials} trials x {args.epochs} epochs,")
    print(f"batch {args.batch}, {args.workers} workers, {args.image_size} px:")
    for name in names:
        print(f"  {name:22s} {_summary(rates[name])}  busy cores {statistics.median(cores[name]):.2f}")
    ratio = statistics.median(rates[names[1]]) / statistics.median(rates[names[0]])
    per_core = [statistics.median(r / c for r, c in zip(rates[n], cores[n], strict=True)) for n in names]
    verdict = "meets" if ratio >= TARGET else "BELOW"
    core_ratio = per_core[1] / per_core[0]
    print(f"ratio ours/bare = {ratio:.3f} ({verdict} the {TARGET:.2f}x target); per busy core {core_ratio:.3f}")
    print("(other processes on the machine move the absolute figures; the per-core ratio is the steadier one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
