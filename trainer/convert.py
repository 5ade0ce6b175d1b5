"""Convert trainer checkpoints between the two formats:
``python -m trainer.convert SRC --to ckpt|safetensors [--out DIR]``.

``SRC`` is a checkpoint file or a run directory (every ``<arch>-<epoch>_<step>[-rank<N>]`` checkpoint and
``best.*`` of the other format). Each file is read CRC-checked (``trainer.checkpoint.load``) and written atomically
with the same name and the new suffix, into ``--out`` (default: next to it), with every parameter (weights, BN
statistics, moments, global_step) and ``trainer_meta``: the result resumes, evaluates and exports like the original.
Prints each written path. Exit 2 on bad input (an unreadable or foreign file, a missing path), 1 on a full volume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from contract.ckpt_names import SUFFIXES, format_of, parse_checkpoint_name
from contract.env import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from contract.files import DiskFullError

_SKIPPED = ("epoch_num", "step_num")  # written again by every .ckpt save, from trainer_meta


class ConvertError(ValueError):
    """Bad input: the message names the path and the fix."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.convert", description="convert trainer checkpoints")
    parser.add_argument("source", help="a checkpoint file, or a run directory (its checkpoints of the other format)")
    parser.add_argument("--to", required=True, choices=sorted(SUFFIXES), help="the format to write")
    parser.add_argument("--out", default=None, help="directory to write into (default: next to each source)")
    return parser.parse_args(argv)


def sources(source: Path, target_format: str) -> list[Path]:
    """The files to convert: the file itself, or a directory's checkpoints and best.* not yet in the target."""
    if source.is_file():
        found = format_of(source.name)
        if found is None:
            raise ConvertError(f"{source} is not a checkpoint (.ckpt or .safetensors); pass a checkpoint file")
        if found == target_format:
            raise ConvertError(f"{source} is already {target_format}; pick the other --to")
        return [source]
    if not source.is_dir():
        raise ConvertError(f"{source} does not exist; pass a checkpoint file or a run directory")
    found_files = [
        path
        for path in sorted(source.iterdir())
        if path.is_file()
        and format_of(path.name) not in (None, target_format)
        and (parse_checkpoint_name(path.name) or path.stem == "best")
    ]
    if not found_files:
        raise ConvertError(f"{source} holds no checkpoint to convert to {target_format}")
    return found_files


def convert(path: Path, target_format: str, out_dir: Path | None) -> Path:
    """Write ``path``'s parameters and metadata as ``target_format``; the written path."""
    from trainer import checkpoint as ckpt

    loaded = ckpt.load(path)  # CRC-checked; CheckpointError (bad input) otherwise
    arrays = [
        (name, value.asnumpy())
        for name, value in loaded.params.items()
        if name not in (ckpt.META_KEY, *_SKIPPED) and hasattr(value, "asnumpy")
    ]
    target = (out_dir or path.parent) / (path.name[: -len(SUFFIXES[format_of(path.name) or "ckpt"])])
    target = target.with_name(target.name + SUFFIXES[target_format])
    meta = {k: v for k, v in loaded.meta.items() if k != "format_version"}
    return ckpt.save(ckpt.Snapshot(arrays), target, meta)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from trainer.checkpoint import CheckpointError

    out_dir = Path(args.out) if args.out else None
    try:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        for path in sources(Path(args.source), args.to):
            print(convert(path, args.to, out_dir), flush=True)
    except (ConvertError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DiskFullError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
