"""Label-smoothing cross entropy, as the model zoo's ``crossentropy.py`` defines it."""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


class LabelSmoothingCrossEntropy(nn.Cell):
    """Mean cross entropy of ``logits [N, K]`` against smoothed one-hot ``labels [N]`` (int32).

    The target puts ``1 - eps`` on the true class and ``eps / (K - 1)`` on each other class. That is the model
    zoo's distribution (the seed recipe this project reproduces); PyTorch and mindcv spread ``eps / K`` over all
    classes instead (true class ``1 - eps + eps / K``), a slightly weaker smoothing. ``smooth_factor = 0`` is plain
    cross entropy. The loss is computed in float32 whatever the logits' dtype, so fp16 (AMP O2/O3) logits do not
    lose precision in the softmax.
    """

    def __init__(self, num_classes: int, smooth_factor: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"LabelSmoothingCrossEntropy: num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"LabelSmoothingCrossEntropy: smooth_factor must be in [0, 1), got {smooth_factor}")
        self.num_classes = num_classes
        self.on_value = ms.Tensor(1.0 - smooth_factor, ms.float32)
        self.off_value = ms.Tensor(smooth_factor / (num_classes - 1), ms.float32)
        self.cross_entropy = nn.SoftmaxCrossEntropyWithLogits(sparse=False, reduction="mean")

    def construct(self, logits: ms.Tensor, labels: ms.Tensor) -> ms.Tensor:
        target = ops.one_hot(labels, self.num_classes, self.on_value, self.off_value)
        return self.cross_entropy(ops.cast(logits, ms.float32), target)
