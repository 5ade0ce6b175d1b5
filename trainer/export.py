"""Export a trainer checkpoint for inference.

``python -m trainer.export --device_target P --ckpt_file CKPT --file_format MINDIR|ONNX|AIR
[--file_name F] [--batch_size N]``: architecture, class count and image size come from the checkpoint; the
input is ``[N, 3, S, S]`` float32 (normalised as in evaluation). AIR needs Ascend. Exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from contract.config import ConfigError, build
from contract.env import EXIT_BAD_INPUT, EXIT_OK
from trainer.cpu import apply_cpu_fast_path

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.export", description="export a checkpoint")
    parser.add_argument("--device_target", "--platform", dest="device_target", default="CPU")
    parser.add_argument("--ckpt_file", required=True)
    parser.add_argument("--file_format", default="MINDIR", type=str.upper, help="MINDIR, ONNX or AIR")
    parser.add_argument("--file_name", default=None, help="output path without suffix (default: next to ckpt)")
    parser.add_argument("--batch_size", type=int, default=1)
    return parser.parse_args(argv)


def export(ckpt_file: str, file_format: str, file_name: str | None, batch_size: int) -> Path:
    """Build the checkpoint's network, load its weights and write ``file_name`` + the format's suffix."""
    import mindspore as ms
    import numpy as np

    from trainer.checkpoint import CheckpointError, load, load_weights
    from trainer.fold_bn import fold_batchnorm
    from trainer.model import build_model

    ckpt = load(ckpt_file)
    meta = ckpt.meta
    net = build_model(meta["arch"], int(meta["num_classes"]))
    missing = load_weights(net, ckpt)
    if missing:
        raise CheckpointError(f"checkpoint {ckpt_file} lacks weights for {', '.join(missing[:5])}")
    net.set_train(False)
    net = fold_batchnorm(net)  # the exported graph has no BN: exact in fp32 up to rounding
    size = int(meta["image_size"])
    example = ms.Tensor(np.zeros((batch_size, 3, size, size), dtype=np.float32))
    base = file_name or str(Path(ckpt_file).with_suffix(""))
    ms.export(net, example, file_name=base, file_format=file_format)
    out = Path(base if base.endswith(FORMATS[file_format]) else base + FORMATS[file_format])
    if not out.is_file():
        raise RuntimeError(f"MindSpore reported no error but {out} was not written")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        cfg = build({"platform": args.device_target}, source="export arguments")
        if args.file_format not in FORMATS:
            raise ConfigError(f"--file_format {args.file_format!r} is not one of {', '.join(FORMATS)}")
        if args.file_format == "AIR" and cfg.platform != "Ascend":
            raise ConfigError("AIR export needs Ascend (--device_target Ascend); use MINDIR or ONNX on CPU/GPU")
        if args.batch_size < 1:
            raise ConfigError(f"--batch_size must be >= 1, not {args.batch_size}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    apply_cpu_fast_path(cfg.platform, cfg.cpu_fast_conv)  # before MindSpore is imported

    import mindspore as ms

    from trainer.checkpoint import CheckpointError

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device(cfg.platform)
    try:
        out = export(args.ckpt_file, args.file_format, args.file_name, args.batch_size)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(out)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
