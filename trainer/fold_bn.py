"""BatchNorm folded into the preceding convolution, for inference (evaluate, export).

In eval mode a BatchNorm is a per-channel affine map ``y = (x - mean) * gamma / sqrt(var + eps) + beta``, so
``bn(conv(x, W))`` equals ``conv(x, W * s) + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``: exact up to
fp32 rounding (the factors are computed in float64). Every conv of ResNeXt is followed by a BN, so folding removes
all 104 BN layers of ResNeXt101 from the inference graph. Training needs the unfolded network (batch statistics),
so this refuses a network in training mode. The folded network keeps torchvision parameter names for the convs
(``layer1.0.conv1.weight``, plus ``.bias``); it is not meant to be saved as a trainer checkpoint.
"""

from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn

from trainer.model import Bottleneck, ResNeXt

# Folding is on by default for inference; ``fold_batchnorm(net, enabled=False)`` keeps the BN layers.
FOLD_BN_DEFAULT = True


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased copy of ``conv`` whose output equals ``bn(conv(x))`` for a BN in eval mode."""
    gamma = bn.gamma.asnumpy().astype(np.float64)
    beta = bn.beta.asnumpy().astype(np.float64)
    mean = bn.moving_mean.asnumpy().astype(np.float64)
    var = bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + float(bn.eps))
    weight = conv.weight.asnumpy().astype(np.float64) * scale.reshape(-1, 1, 1, 1)
    bias = beta - mean * scale
    if conv.has_bias:
        bias = bias + conv.bias.asnumpy().astype(np.float64) * scale
    return nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        pad_mode=conv.pad_mode,
        padding=conv.padding,
        dilation=conv.dilation,
        group=conv.group,
        has_bias=True,
        weight_init=Tensor(weight.astype(np.float32)),
        bias_init=Tensor(bias.astype(np.float32)),
        data_format=conv.data_format,
    )


def _fold_pair(owner: nn.Cell, conv_name: str, bn_name: str) -> None:
    setattr(owner, conv_name, folded_conv(getattr(owner, conv_name), getattr(owner, bn_name)))
    setattr(owner, bn_name, nn.Identity())


def _fold_block(block: Bottleneck) -> None:
    for index in (1, 2, 3):
        _fold_pair(block, f"conv{index}", f"bn{index}")
    if block.downsample is not None:
        conv, bn = block.downsample[0], block.downsample[1]
        block.downsample = nn.SequentialCell([folded_conv(conv, bn)])


def fold_batchnorm(net: nn.Cell, enabled: bool = FOLD_BN_DEFAULT) -> nn.Cell:
    """Fold every BN of a ResNeXt in eval mode into its conv, in place; returns ``net`` (unchanged if not enabled)."""
    if not enabled:
        return net
    if not isinstance(net, ResNeXt):
        raise TypeError(f"fold_batchnorm expects a trainer.model.ResNeXt, got {type(net).__name__}")
    if net.training:
        raise ValueError("fold_batchnorm is for inference: call net.set_train(False) first (training needs the BNs)")
    if net.compile_cache:  # GRAPH mode keeps running the graph it compiled, so a later fold would change nothing
        raise ValueError("fold_batchnorm must run before the network's first call (its graph is already compiled)")
    _fold_pair(net, "conv1", "bn1")
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in stage:
            _fold_block(block)
    # New cells carry bare parameter names ("weight"); give each its path so graphs and exports see unique names.
    for name, param in net.parameters_and_names():
        param.name = name
    net.set_train(False)
    return net
