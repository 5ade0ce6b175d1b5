"""BatchNorm folding for inference: same logits as the unfolded eval-mode network, no BN left, misuse refused."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from trainer.fold_bn import fold_batchnorm
from trainer.model import build_model

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")
CLASSES = 5


def eval_net(arch: str = "resnext_tiny") -> nn.Cell:
    """A network with non-trivial BN statistics and affine parameters (identical on every call)."""
    ms.set_seed(7)
    net = build_model(arch, CLASSES)
    rng = np.random.default_rng(0)
    for name, param in net.parameters_and_names():
        if name.endswith(("moving_mean", "beta")):
            param.set_data(ms.Tensor(rng.normal(0, 0.5, param.shape).astype(np.float32)))
        elif name.endswith(("moving_variance", "gamma")):  # includes the zero-initialised bn3 gammas
            param.set_data(ms.Tensor(rng.uniform(0.3, 2.0, param.shape).astype(np.float32)))
    net.set_train(False)
    return net


def images(size: int, batch: int = 3) -> ms.Tensor:
    return ms.Tensor(np.random.default_rng(1).normal(size=(batch, 3, size, size)).astype(np.float32))


@pytest.mark.parametrize(("arch", "size"), [("resnext_tiny", 64), ("resnext_tiny", 35), ("resnext50_32x4d", 32)])
def test_folded_logits_match_eval_mode_to_1e5(arch: str, size: int) -> None:
    x = images(size)
    reference = eval_net(arch)(x).asnumpy()
    folded = fold_batchnorm(eval_net(arch))(x).asnumpy()
    assert np.abs(reference).max() > 0.5  # the BN statistics matter at this scale
    assert np.abs(folded - reference).max() <= 1e-5 * np.abs(reference).max()
    assert (folded.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_no_batchnorm_left_and_convs_carry_the_shift() -> None:
    net = fold_batchnorm(eval_net())
    cells = dict(net.cells_and_names())
    assert not [name for name, cell in cells.items() if isinstance(cell, nn.BatchNorm2d)]
    convs = [cell for cell in cells.values() if isinstance(cell, nn.Conv2d)]
    assert len(convs) == 1 + 4 * 3 + 4  # stem, three per block, one downsample per stage
    assert all(conv.has_bias for conv in convs)
    names = [param.name for param in net.get_parameters()]
    assert len(names) == len(set(names))
    assert "layer1.0.conv2.bias" in names and "layer2.0.downsample.0.weight" in names


def test_weights_are_scaled_per_output_channel() -> None:
    reference = eval_net()
    conv, bn = reference.layer1[0].conv2, reference.layer1[0].bn2
    scale = bn.gamma.asnumpy() / np.sqrt(bn.moving_variance.asnumpy() + bn.eps)
    folded = fold_batchnorm(eval_net()).layer1[0].conv2
    np.testing.assert_allclose(folded.weight.asnumpy(), conv.weight.asnumpy() * scale[:, None, None, None], rtol=1e-6)
    shift = bn.beta.asnumpy() - bn.moving_mean.asnumpy() * scale
    np.testing.assert_allclose(folded.bias.asnumpy(), shift, rtol=1e-6, atol=1e-7)


def test_training_mode_and_compiled_networks_are_refused() -> None:
    training = build_model("resnext_tiny", CLASSES)
    training.set_train(True)
    with pytest.raises(ValueError, match="set_train"):
        fold_batchnorm(training)
    used = eval_net()
    used(images(32))
    with pytest.raises(ValueError, match="first call"):
        fold_batchnorm(used)


def test_disabled_keeps_the_network() -> None:
    net = eval_net()
    assert fold_batchnorm(net, enabled=False) is net
    assert isinstance(net.bn1, nn.BatchNorm2d)
