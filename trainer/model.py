"""The ResNeXt family (torchvision layout, model-zoo init) for MindSpore 2.x.

One code path for every architecture: a 7x7/2 stem, a 3x3/2 max-pool, four stages of grouped bottlenecks
(stride on the grouped 3x3, as the model zoo and torchvision do), global average pooling and a Dense head.
Grouped convolutions are native ``nn.Conv2d(group=G)`` on every backend (the current model zoo silently builds
32 groups on Ascend; we never do). Parameter names follow torchvision (``layer1.0.conv2.weight``,
``layer1.0.bn3.gamma``, ``layer1.0.downsample.0.weight``, ``fc.weight``) because checkpoints are keyed by them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from contract.config import ARCH_ALIASES

EXPANSION = 4  # bottleneck output channels = planes * 4


@dataclass(frozen=True)
class ArchSpec:
    """A ResNeXt variant.

    Stage ``i`` has ``planes = stem_width * 2**i`` (64/128/256/512 for the zoo models), a grouped 3x3 of
    ``int(planes * width_per_group / stem_width) * groups`` channels (torchvision's formula, which divides by 64 =
    the zoo stem width) and ``planes * 4`` output channels. A narrower stem therefore narrows the whole network
    while keeping ``width_per_group`` = channels per group in the first stage.
    """

    layers: tuple[int, int, int, int]
    groups: int
    width_per_group: int
    stem_width: int = 64

    def stage_planes(self, stage: int) -> int:
        return self.stem_width * 2**stage

    def stage_width(self, stage: int) -> int:
        return int(self.stage_planes(stage) * self.width_per_group / self.stem_width) * self.groups


ARCHS: dict[str, ArchSpec] = {
    "resnext101_64x4d": ArchSpec((3, 4, 23, 3), groups=64, width_per_group=4),
    "resnext101_32x4d": ArchSpec((3, 4, 23, 3), groups=32, width_per_group=4),
    "resnext50_32x4d": ArchSpec((3, 4, 6, 3), groups=32, width_per_group=4),
    # For tests and the CPU demo: one block per stage, 4 groups x 4 channels in stage 1, a 16-channel stem.
    "resnext_tiny": ArchSpec((1, 1, 1, 1), groups=4, width_per_group=4, stem_width=16),
}


def resolve_arch(arch: str) -> ArchSpec:
    """The spec for a name or alias (``resnext101``), or a ValueError that lists the known names."""
    name = ARCH_ALIASES.get(arch, arch)
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[name]


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # Kaiming-normal, fan_out, ReLU gain: std = sqrt(2 / (out_ch * k * k)), as the model zoo's re-init does.
    return nn.Conv2d(
        in_ch,
        out_ch,
        kernel,
        stride=stride,
        pad_mode="pad",
        padding=kernel // 2,
        group=groups,
        has_bias=False,
        weight_init=HeNormal(mode="fan_out", nonlinearity="relu"),
    )


def _bn(channels: int, zero_gamma: bool = False) -> nn.BatchNorm2d:
    # PyTorch's defaults (eps 1e-5, running-stat momentum 0.1 = MindSpore momentum 0.9).
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9, gamma_init="zeros" if zero_gamma else "ones")


class ZeroPad1(nn.Cell):
    """One pixel of zeros around H and W, by concatenation: same values as ``ops.Pad``, whose CPU kernel took
    ~0.5 s per batch of 8 at the stem's 64x112x112 (4% of a forward pass; concatenation is ~2x faster)."""

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        n, c, h, w = x.shape
        rows = ops.zeros((n, c, 1, w), x.dtype)
        x = ops.concat((rows, x, rows), 2)
        cols = ops.zeros((n, c, h + 2, 1), x.dtype)
        return ops.concat((cols, x, cols), 3)


class Bottleneck(nn.Cell):
    """1x1 reduce -> grouped 3x3 (carries the stride) -> 1x1 expand, plus an identity or projection shortcut."""

    def __init__(self, in_ch: int, width: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, width, 1)
        self.bn1 = _bn(width)
        self.conv2 = _conv(width, width, 3, stride=stride, groups=groups)
        self.bn2 = _bn(width)
        self.conv3 = _conv(width, out_ch, 1)
        # Zero gamma: each residual branch starts as identity, which stabilises early training (zoo recipe).
        self.bn3 = _bn(out_ch, zero_gamma=True)
        self.relu = nn.ReLU()
        self.downsample: nn.SequentialCell | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.SequentialCell([_conv(in_ch, out_ch, 1, stride=stride), _bn(out_ch)])

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXt(nn.Cell):
    def __init__(self, spec: ArchSpec, num_classes: int) -> None:
        super().__init__()
        self.conv1 = _conv(3, spec.stem_width, 7, stride=2)
        self.bn1 = _bn(spec.stem_width)
        self.relu = nn.ReLU()
        # 3x3/2 max-pool with 1 px of padding (224 -> 56 overall). The input is post-ReLU (>= 0), so padding with
        # zeros is exactly PyTorch's -inf padding; an explicit pad + "valid" pool avoids nn.MaxPool2d(pad_mode="pad"),
        # which MindSpore implements with MaxPool3DWithArgmax (not exportable to ONNX).
        self.pool_pad = ZeroPad1()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        in_ch = spec.stem_width
        stages = []
        for stage, blocks in enumerate(spec.layers):
            out_ch = spec.stage_planes(stage) * EXPANSION
            cells = []
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                cells.append(Bottleneck(in_ch, spec.stage_width(stage), out_ch, stride, spec.groups))
                in_ch = out_ch
            stages.append(nn.SequentialCell(cells))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # Dense keeps MindSpore's default init, which is PyTorch's nn.Linear default: weight HeUniform(a=sqrt(5))
        # = U(+-1/sqrt(fan_in)), bias U(+-1/sqrt(fan_in)) (the model zoo's first-pass init for Dense as well).
        self.fc = nn.Dense(in_ch, num_classes, has_bias=True)

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.pool_pad(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.mean(axis=(2, 3))
        return self.fc(x)


def build_model(arch: str, num_classes: int) -> nn.Cell:
    """A freshly initialised ResNeXt; ``arch`` is a name from ARCHS (or an alias from contract.config)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
    return ResNeXt(resolve_arch(arch), num_classes)


def count_params(net: nn.Cell) -> int:
    """Trainable parameters (BatchNorm running statistics are not trainable)."""
    total = 0
    for param in net.trainable_params():
        size = 1
        for dim in param.shape:
            size *= dim
        total += size
    return total


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _conv_flops(in_ch: int, out_ch: int, kernel: int, groups: int, out_hw: int) -> int:
    return 2 * out_ch * (in_ch // groups) * kernel * kernel * out_hw * out_hw


def forward_flops(arch: str, num_classes: int = 1000, image_size: int = 224) -> int:
    """Analytic forward FLOPs per image: 2 x multiply-accumulates of every conv and the Dense layer.

    BatchNorm, ReLU, pooling and additions are left out (as torchvision/fvcore do); they are < 1% here.
    """
    spec = resolve_arch(arch)
    size = _out_size(image_size, 7, 2, 3)
    flops = _conv_flops(3, spec.stem_width, 7, 1, size)
    size = _out_size(size, 3, 2, 1)
    in_ch = spec.stem_width
    for stage, blocks in enumerate(spec.layers):
        width, out_ch = spec.stage_width(stage), spec.stage_planes(stage) * EXPANSION
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            out = _out_size(size, 3, stride, 1)
            flops += _conv_flops(in_ch, width, 1, 1, size)
            flops += _conv_flops(width, width, 3, spec.groups, out)
            flops += _conv_flops(width, out_ch, 1, 1, out)
            if stride != 1 or in_ch != out_ch:
                flops += _conv_flops(in_ch, out_ch, 1, 1, out)
            in_ch, size = out_ch, out
    return flops + 2 * in_ch * num_classes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainer.model", description="Parameter and FLOP counts")
    parser.add_argument("--arch", default="resnext101_64x4d", help=f"one of {', '.join(ARCHS)}")
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--image_size", type=int, default=224)
    args = parser.parse_args(argv)
    try:
        resolve_arch(args.arch)
        if args.num_classes < 1 or args.image_size < 16:
            raise ValueError(
                f"--num_classes must be >= 1 and --image_size >= 16 (got {args.num_classes}, {args.image_size})"
            )
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    net = build_model(args.arch, args.num_classes)
    gflops = forward_flops(args.arch, args.num_classes, args.image_size) / 1e9
    print(f"arch={ARCH_ALIASES.get(args.arch, args.arch)} num_classes={args.num_classes} image_size={args.image_size}")
    print(f"params={count_params(net):,} forward_gflops={gflops:.4g} train_gflops~{3 * gflops:.4g} (per image)")


if __name__ == "__main__":
    main()
