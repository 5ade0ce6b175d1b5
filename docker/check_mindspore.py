"""Build-time check of a slimmed MindSpore: it imports, and on CPU one training step runs.

Runs in the image build right after slim_mindspore.py, so an image whose MindSpore lacks a library it needs fails
to build instead of failing in a pod. GPU and Ascend builds have no device, so they check the import only (the
device plugins are checked by slim_mindspore.py's link check); CPU also compiles and runs one GRAPH-mode step of a
conv + BatchNorm + dense net with Momentum, the same kernels ResNeXt uses, on MindSpore's CPU backend.

    python check_mindspore.py cpu|gpu|ascend
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

PLATFORMS = ("cpu", "gpu", "ascend")


def one_cpu_step() -> float:
    """One training step on the CPU backend; returns the loss."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    net = nn.SequentialCell(
        nn.Conv2d(3, 8, 3, group=1, has_bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, group=4, has_bias=False),  # grouped, as in ResNeXt
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dense(8, 4),
    )
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), optimizer)
    images = ms.Tensor(np.random.default_rng(0).standard_normal((4, 3, 16, 16), dtype=np.float32))
    labels = ms.Tensor(np.array([0, 1, 2, 3], dtype=np.int32))
    return float(step(images, labels).asnumpy())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in PLATFORMS:
        print(f"usage: check_mindspore.py {'|'.join(PLATFORMS)}", file=sys.stderr)
        return 2
    platform = args[0]
    try:
        import mindspore
    except Exception as exc:  # any import failure is the finding
        print(f"check_mindspore: {platform}: import mindspore failed: {exc!r}", file=sys.stderr)
        return 1
    print(f"check_mindspore: {platform}: import mindspore {mindspore.__version__}: ok")
    if platform != "cpu":
        return 0
    # MindSpore writes rank_*/ and kernel_meta/ into the working directory: keep them out of the image.
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            loss = one_cpu_step()
        except Exception as exc:
            print(f"check_mindspore: cpu: a training step failed: {exc!r}", file=sys.stderr)
            return 1
    if not math.isfinite(loss):
        print(f"check_mindspore: cpu: a training step gave loss {loss}", file=sys.stderr)
        return 1
    print(f"check_mindspore: cpu: one training step: loss {loss:.4f}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
