"""Top-1/top-5 of trainer checkpoints: ``python -m trainer.evaluate --data_dir DIR --platform P --pretrained X``.

``X`` is a checkpoint, or a directory (its newest valid checkpoint; ``--all``: each one, oldest first). The
architecture, image size and classes come from the checkpoint. Prints a table and, as the last stdout line,
one JSON object (``top1``, ``top5`` as fractions, ``images``, ``checkpoint``; with ``--all`` the best one plus
``all``); each result is also written next to its checkpoint as ``<ckpt>.eval.json``. An unreadable checkpoint
of a directory is reported on stderr (``skipping checkpoint ... is unreadable (...); set aside as <name>.corrupt``)
and renamed so nothing chooses it again. Exit 2 on bad input, 1 when the volume is full.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.config import ConfigError, TrainConfig, build
from contract.env import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from contract.files import DiskFullError, write_atomic
from trainer.bars import progress_bar
from trainer.cpu import apply_cpu_fast_path
from trainer.scoring import score

if TYPE_CHECKING:
    from trainer.checkpoint import Checkpoint


def checkpoints_to_score(target: str, every: bool, owner: bool) -> Iterator[Checkpoint]:
    """The checkpoint file itself, or a directory's newest valid checkpoint (``every``: each valid one, oldest
    first). Unreadable ones in a directory are reported and, on the rank that owns the files, set aside."""
    from trainer.checkpoint import CheckpointError, list_checkpoints, load, newest_valid, set_aside_if_corrupt

    path = Path(target)
    if path.is_file():
        yield load(path)
        return
    if not path.is_dir():
        raise CheckpointError(f"--pretrained {target} is neither a checkpoint file nor a directory")
    if not list_checkpoints(path):
        raise CheckpointError(f"--pretrained {target} holds no <arch>-<epoch>_<step>.ckpt|.safetensors checkpoints")
    if not every:
        newest = newest_valid(path, log=_report, set_aside_bad=owner)
        if newest is None:
            raise CheckpointError(f"no readable checkpoint at {target}")
        yield newest
        return
    for candidate in list_checkpoints(path):
        try:
            yield load(candidate)
        except CheckpointError as exc:
            _report(f"skipping {exc}{set_aside_if_corrupt(candidate, exc, owner)}")


def _report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def evaluate_one(ckpt: Checkpoint, data_dir: str, cfg: TrainConfig, rank: int, group_size: int) -> dict[str, Any]:
    from trainer.checkpoint import CheckpointError, network_from_checkpoint
    from trainer.data import create_eval_dataset, data_workers, list_classes
    from trainer.fold_bn import fold_batchnorm

    meta = ckpt.meta
    classes = list(meta["classes"])
    found = list_classes(data_dir)
    if found != classes:
        raise CheckpointError(
            f"the class folders of {data_dir} ({len(found)}) differ from the {len(classes)} classes checkpoint "
            f"{ckpt.path} was trained on; evaluate it on a split of the same dataset"
        )
    net = fold_batchnorm(network_from_checkpoint(ckpt))  # exact in fp32 up to rounding; no BN in the graph
    dataset = create_eval_dataset(
        data_dir,
        image_size=int(meta["image_size"]),
        batch_size=cfg.eval_batch_size or cfg.per_batch_size,
        rank=rank,
        group_size=group_size,
        num_workers=data_workers(cfg.num_parallel_workers),
        resize=meta.get("config", {}).get("eval_resize", "square"),
        classes=classes,
    )
    start = time.perf_counter()
    with progress_bar(f"scoring {ckpt.path.name}", dataset.get_dataset_size(), enabled=rank == 0) as advance:
        result = score(net, dataset, group_size, on_batch=advance)
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

    from trainer.checkpoint import CheckpointError
    from trainer.distributed import init_distributed

    ms.set_context(mode=ms.GRAPH_MODE)
    rank, group_size = init_distributed(cfg)
    if group_size == 0:  # dynamic-cluster scheduler
        return EXIT_OK
    results: list[dict[str, Any]] = []
    for ckpt in checkpoints_to_score(args.pretrained, args.all, owner=rank == 0):
        result = evaluate_one(ckpt, args.data_dir, cfg, rank, group_size)
        if rank == 0:
            write_result(result, ckpt.path, args.output_dir)
        results.append(result)
    if not results:
        raise CheckpointError(f"no readable checkpoint at {args.pretrained}")
    if rank == 0:
        print(table(results))
        best = max(results, key=lambda r: r["top1"])
        print(json.dumps(dict(best, all=results) if args.all else best), flush=True)
    return EXIT_OK


def write_result(result: dict[str, Any], checkpoint: Path, output_dir: str | None) -> None:
    """``<checkpoint>.eval.json`` next to it and, with ``output_dir`` (a job's eval/), ``<stem>.json`` there."""
    text = json.dumps(result, indent=2) + "\n"
    try:
        write_atomic(f"{checkpoint}.eval.json", text)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not output_dir:
            raise
        # An eval Job mounts the job's checkpoints read-only: the copy in output_dir is the one that counts.
        _report(f"note: cannot write {checkpoint}.eval.json ({exc.strerror}); the result is in {output_dir}")
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(output_dir) / f"{checkpoint.stem}.json", text)


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
    except DiskFullError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
