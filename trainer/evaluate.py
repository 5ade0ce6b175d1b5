"""Top-1/top-5 of trainer checkpoints: ``python -m trainer.evaluate --data_dir DIR --platform P --pretrained X``.

``X`` is a checkpoint, or a directory (its newest valid checkpoint; ``--all``: each one, oldest first). The
architecture, image size and classes come from the checkpoint. Prints a table and, as the last stdout line,
one JSON object (``top1``, ``top5`` as fractions, ``images``, ``checkpoint``; with ``--all`` the best one plus
``all``); each result is also written next to its checkpoint as ``<ckpt>.eval.json``. Exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import ConfigError, TrainConfig, build
from trainer.cpu import apply_cpu_fast_path
from trainer.progress import atomic_write_text

if TYPE_CHECKING:
    from mindspore import nn
    from mindspore.dataset import Dataset

    from trainer.checkpoint import Checkpoint

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits (k capped at the class count)."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels.reshape(-1, 1)).any(axis=1).sum())


def score(net: nn.Cell, dataset: Dataset, group_size: int) -> dict[str, Any]:
    """Top-1/top-5 over every image of the (sharded) dataset, summed over all ranks."""
    from trainer.distributed import all_reduce_sum

    counts = np.zeros(3, dtype=np.float64)  # top1 hits, top5 hits, images
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        logits = net(images).asnumpy().astype(np.float32)
        truth = labels.asnumpy()
        counts += (topk_correct(logits, truth, 1), topk_correct(logits, truth, 5), len(truth))
    top1, top5, seen = (round(float(v)) for v in all_reduce_sum(counts, group_size))
    return {"top1": top1 / max(seen, 1), "top5": top5 / max(seen, 1), "images": seen}


def resolve(target: str, every: bool) -> list[Path]:
    """The checkpoint file itself, or a directory's newest (``every``: all) step checkpoints, oldest first."""
    from trainer.checkpoint import CheckpointError, list_checkpoints

    path = Path(target)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"--pretrained {target} is neither a checkpoint file nor a directory")
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"--pretrained {target} holds no <arch>-<epoch>_<step>.ckpt checkpoints")
    return found


def evaluate_one(ckpt: Checkpoint, data_dir: str, cfg: TrainConfig, rank: int, group_size: int) -> dict[str, Any]:
    from trainer.checkpoint import CheckpointError, load_weights
    from trainer.data import create_eval_dataset, list_classes
    from trainer.fold_bn import fold_batchnorm
    from trainer.model import build_model
    from trainer.train import data_workers

    meta = ckpt.meta
    classes = list(meta["classes"])
    found = list_classes(data_dir)
    if found != classes:
        raise CheckpointError(
            f"the class folders of {data_dir} ({len(found)}) differ from the {len(classes)} classes checkpoint "
            f"{ckpt.path} was trained on; evaluate it on a split of the same dataset"
        )
    net = build_model(meta["arch"], int(meta["num_classes"]))
    missing = load_weights(net, ckpt)
    if missing:
        raise CheckpointError(f"checkpoint {ckpt.path} lacks weights for {', '.join(missing[:5])}")
    net.set_train(False)
    net = fold_batchnorm(net)  # exact in fp32 up to rounding; no BN in the inference graph
    resize = meta.get("config", {}).get("eval_resize", "square")
    dataset = create_eval_dataset(
        data_dir,
        int(meta["image_size"]),
        cfg.eval_batch_size or cfg.per_batch_size,
        rank,
        group_size,
        data_workers(cfg.num_parallel_workers),
        resize,
        classes,
    )
    start = time.perf_counter()
    result = score(net, dataset, group_size)
    seconds = time.perf_counter() - start
    return {
        "checkpoint": str(ckpt.path),
        "arch": meta["arch"],
        "image_size": int(meta["image_size"]),
        "step": int(meta["step"]),
        **result,
        "img_per_sec": round(result["images"] / seconds, 1) if seconds > 0 else None,
    }


def table(results: list[dict[str, Any]]) -> str:
    header = f"{'checkpoint':<48} {'step':>8} {'top1':>8} {'top5':>8} {'images':>8}"
    rows = [
        f"{Path(r['checkpoint']).name:<48} {r['step']:>8} {100 * r['top1']:>7.2f}% {100 * r['top5']:>7.2f}% "
        f"{r['images']:>8}"
        for r in results
    ]
    return "\n".join([header, "-" * len(header), *rows])


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description="top-1/top-5 of checkpoints")
    parser.add_argument("--data_dir", required=True, help="split in ImageNet folder layout")
    parser.add_argument("--platform", "--device_target", dest="platform", default="CPU")
    parser.add_argument("--pretrained", required=True, help="checkpoint file or directory")
    parser.add_argument("--all", action="store_true", help="every checkpoint of the directory")
    parser.add_argument("--per_batch_size", type=int, default=None)
    parser.add_argument("--num_parallel_workers", type=int, default=None)
    parser.add_argument("--is_distributed", action="store_true")
    parser.add_argument(
        "--output_dir", default=None, help="also write each result as <checkpoint stem>.json here (a job's eval/)"
    )
    args = parser.parse_args(argv)
    values: dict[str, Any] = {"platform": args.platform, "data_dir": args.data_dir}
    values["is_distributed"] = args.is_distributed
    if args.per_batch_size is not None:
        values["per_batch_size"] = args.per_batch_size
    if args.num_parallel_workers is not None:
        values["num_parallel_workers"] = args.num_parallel_workers
    return args, build(values, source="evaluate arguments")


def run(args: argparse.Namespace, cfg: TrainConfig) -> int:
    import mindspore as ms

    from trainer.checkpoint import CheckpointError, load
    from trainer.distributed import init_distributed

    ms.set_context(mode=ms.GRAPH_MODE)
    rank, group_size = init_distributed(cfg)
    if group_size == 0:  # dynamic-cluster scheduler
        return EXIT_OK
    paths = resolve(args.pretrained, args.all)
    if not args.all and Path(args.pretrained).is_dir():
        paths = paths[::-1]  # newest first: the first that loads is the one
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            ckpt = load(path)
        except CheckpointError as exc:
            print(f"skipping {exc}", file=sys.stderr, flush=True)
            continue
        result = evaluate_one(ckpt, args.data_dir, cfg, rank, group_size)
        if rank == 0:
            text = json.dumps(result, indent=2) + "\n"
            atomic_write_text(f"{path}.eval.json", text)
            if args.output_dir:
                Path(args.output_dir).mkdir(parents=True, exist_ok=True)
                atomic_write_text(Path(args.output_dir) / f"{Path(path).stem}.json", text)
        results.append(result)
        if not args.all:
            break
    if not results:
        raise CheckpointError(f"no readable checkpoint at {args.pretrained}")
    if rank == 0:
        print(table(results))
        best = max(results, key=lambda r: r["top1"])
        print(json.dumps(dict(best, all=results) if args.all else best), flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, cfg = parse(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    apply_cpu_fast_path(cfg.platform, cfg.cpu_fast_conv)  # before MindSpore is imported (in run)

    from trainer.checkpoint import CheckpointError
    from trainer.data import DataError
    from trainer.distributed import DistributedError

    try:
        return run(args, cfg)
    except (ConfigError, DataError, CheckpointError, DistributedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
