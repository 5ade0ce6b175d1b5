"""The ResNeXt family: exact parameter counts, shapes, grouped convs, initialisation, FLOPs, CLI."""

import os

# oneDNN's gemm path for k>1 convolutions (6x faster on CPU); must be set before MindSpore runs a kernel.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from contract.config import ARCH_NAMES
from trainer.model import ARCHS, ZeroPad1, build_model, count_params, forward_flops


def _params(net: ms.nn.Cell) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy() for p in net.get_parameters()}


@pytest.fixture(scope="module")
def resnext101() -> ms.nn.Cell:
    return build_model("resnext101_64x4d", 1000)  # built, never run (a forward at 224 px takes ~20 s here)


def test_arch_names_are_the_configs() -> None:
    assert tuple(ARCHS) == ARCH_NAMES


def test_resnext101_64x4d_matches_torchvision(resnext101: ms.nn.Cell) -> None:
    assert count_params(resnext101) == 83_455_272
    shapes = {p.name: p.shape for p in resnext101.trainable_params()}
    # Bottleneck inner widths 256/512/1024/2048 and 64 groups of 4/8/16/32 channels.
    for stage, width in enumerate((256, 512, 1024, 2048), start=1):
        assert shapes[f"layer{stage}.0.conv2.weight"] == (width, width // 64, 3, 3)
        assert shapes[f"layer{stage}.0.conv3.weight"] == (width if stage > 1 else 256, width, 1, 1)
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer3.22.conv2.weight"] == (1024, 16, 3, 3)
    assert shapes["fc.weight"] == (1000, 2048)
    assert shapes["fc.bias"] == (1000,)
    assert "layer4.2.bn3.gamma" in shapes and "layer2.0.downsample.1.beta" in shapes


def test_grouped_convs_are_native_and_strided_on_3x3(resnext101: ms.nn.Cell) -> None:
    cells = dict(resnext101.cells_and_names())
    for name in ("layer1.0", "layer2.0", "layer3.5", "layer4.0"):
        block = cells[name]
        assert block.conv2.group == 64
        assert block.conv1.stride == (1, 1)
    assert cells["layer2.0"].conv2.stride == (2, 2)
    assert cells["layer2.0.downsample.0"].stride == (2, 2)
    assert cells["layer2.1"].downsample is None


def test_model_zoo_initialisation(resnext101: ms.nn.Cell) -> None:
    params = _params(resnext101)
    bn3 = [n for n in params if n.endswith(".bn3.gamma")]
    assert len(bn3) == 3 + 4 + 23 + 3
    assert all(not params[n].any() for n in bn3)
    assert (params["layer1.0.bn2.gamma"] == 1).all() and (params["layer1.0.bn2.beta"] == 0).all()
    assert (params["layer1.0.downsample.1.gamma"] == 1).all()
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (Cout * k * k)).
    for name in ("conv1.weight", "layer3.0.conv2.weight", "layer3.0.conv1.weight"):
        w = params[name]
        expected = np.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))
        assert abs(w.mean()) < 0.05 * expected
        assert w.std() == pytest.approx(expected, rel=0.05)
    # Dense: MindSpore's (= PyTorch's) default uniform init, bound 1/sqrt(fan_in).
    fc = params["fc.weight"]
    assert np.abs(fc).max() <= 1 / np.sqrt(2048) + 1e-7
    assert fc.std() == pytest.approx(1 / np.sqrt(3 * 2048), rel=0.05)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_tiny_forward_any_input_size(size: int) -> None:
    net = build_model("resnext_tiny", 7)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))
    out = net(x).asnumpy()
    assert out.shape == (2, 7)
    assert np.isfinite(out).all()


def test_stem_and_pool_take_224_to_56() -> None:
    net = build_model("resnext_tiny", 3)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32))
    stem = net.relu(net.bn1(net.conv1(x)))
    assert stem.shape == (1, 16, 112, 112)
    pooled = net.maxpool(net.pool_pad(stem)).asnumpy()
    assert pooled.shape == (1, 16, 56, 56)
    # Zero padding equals PyTorch's -inf padding because the stem output is >= 0: compare with a numpy max-pool.
    padded = np.pad(stem.asnumpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    np.testing.assert_allclose(pooled, windows.max(axis=(-2, -1)), rtol=0, atol=0)


def test_tiny_is_the_same_topology_narrower() -> None:
    net = build_model("resnext_tiny", 10)
    shapes = {p.name: p.shape for p in net.trainable_params()}
    assert shapes["conv1.weight"] == (16, 3, 7, 7)
    # 4 groups of 4 channels in stage 1, doubling per stage like the big models.
    assert shapes["layer1.0.conv2.weight"] == (16, 4, 3, 3)
    assert shapes["layer4.0.conv2.weight"] == (128, 32, 3, 3)
    assert shapes["fc.weight"] == (10, 512)
    assert count_params(net) == 364_634


def test_resnext50_forward_and_count() -> None:
    net = build_model("resnext50", 10)  # alias from contract.config
    assert count_params(net) == 25_028_904 - 2048 * 990 - 990  # torchvision's count with a 10-class head
    net.set_train(False)
    out = net(ms.Tensor(np.zeros((1, 3, 32, 32), np.float32)))
    assert out.shape == (1, 10)


def test_forward_flops_are_twice_the_macs() -> None:
    # torchvision: 15.46 / 4.23 GMACs ("GFLOPS") at 224 px; reference/performance.md: 30.9 GFLOP.
    assert forward_flops("resnext101_64x4d") / 1e9 == pytest.approx(30.92, rel=0.005)
    assert forward_flops("resnext50_32x4d") / 1e9 == pytest.approx(8.46, rel=0.005)
    # Conv cost scales with the pixel count; only the Dense layer does not.
    dense = 2 * 2048 * 1000
    ratio = (forward_flops("resnext101_64x4d", image_size=448) - dense) / (forward_flops("resnext101_64x4d") - dense)
    assert ratio == pytest.approx(4.0, rel=1e-6)


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(ValueError, match="resnext101_64x4d"):
        build_model("resnet50", 10)


def test_cli_prints_params_and_gflops() -> None:
    cmd = [sys.executable, "-m", "trainer.model", "--arch", "resnext_tiny", "--num_classes", "10", "--image_size", "64"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    assert "params=364,634" in done.stdout
    assert "forward_gflops=" in done.stdout
    bad = subprocess.run([*cmd[:3], "--arch", "vgg"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "unknown architecture 'vgg'" in bad.stderr


def test_zero_pad_is_a_one_pixel_zero_border() -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 7)).astype(np.float32)
    out = ZeroPad1()(ms.Tensor(x)).asnumpy()
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))))
