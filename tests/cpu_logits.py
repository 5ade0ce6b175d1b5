"""Helper for test_cpu_tuning: writes resnext_tiny's logits (eval mode, BN folded or not) and two training steps'
losses to an .npz, under the CPU settings of this process (``python tests/cpu_logits.py OUT [--fold]``).
Each run is its own process because ``ONEDNN_MAX_CPU_ISA`` and the runtime threads are fixed once per process."""

from __future__ import annotations

import sys

import mindspore as ms
import numpy as np
from mindspore import nn

from trainer.fold_bn import fold_batchnorm
from trainer.loss import LabelSmoothingCrossEntropy
from trainer.model import build_model

CLASSES, SIZE = 5, 48


def tiny(seed: int) -> nn.Cell:
    ms.set_seed(seed)
    net = build_model("resnext_tiny", CLASSES)
    rng = np.random.default_rng(seed)
    for name, param in net.parameters_and_names():
        if name.endswith(("moving_mean", "beta")):
            param.set_data(ms.Tensor(rng.normal(0, 0.5, param.shape).astype(np.float32)))
        elif name.endswith(("moving_variance", "gamma")):
            param.set_data(ms.Tensor(rng.uniform(0.3, 2.0, param.shape).astype(np.float32)))
    return net


def main(out: str, fold: bool) -> None:
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    rng = np.random.default_rng(1)
    images = ms.Tensor(rng.normal(size=(4, 3, SIZE, SIZE)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, CLASSES, 4).astype(np.int32))
    net = tiny(3)
    net.set_train(False)
    logits = fold_batchnorm(net, enabled=fold)(images).asnumpy()
    train = tiny(3)
    optimizer = nn.Momentum(train.trainable_params(), 0.01, 0.9, weight_decay=1e-4)
    step = nn.TrainOneStepCell(nn.WithLossCell(train, LabelSmoothingCrossEntropy(CLASSES, 0.1)), optimizer)
    step.set_train()
    losses = [step(images, labels).asnumpy() for _ in range(2)]  # the second loss sees the first update
    np.savez(out, logits=logits, losses=np.array(losses))


if __name__ == "__main__":
    main(sys.argv[1], "--fold" in sys.argv[2:])
