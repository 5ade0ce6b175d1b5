"""Label-smoothing cross entropy against a numpy reference (the model zoo's eps / (K - 1) distribution)."""

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import mindspore as ms
import numpy as np
import pytest

from trainer.loss import LabelSmoothingCrossEntropy


def _reference(logits: np.ndarray, labels: np.ndarray, eps: float) -> float:
    k = logits.shape[1]
    target = np.full(logits.shape, eps / (k - 1), dtype=np.float64)
    target[np.arange(len(labels)), labels] = 1.0 - eps
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(target * log_softmax).sum(axis=1).mean())


def _run(cell: ms.nn.Cell, logits: np.ndarray, labels: np.ndarray) -> ms.Tensor:
    """Run in graph mode: MindSpore 2.10's PyNative path hits a NumPy-2 ABI error on the first reduction of a
    process (SystemError "returned a result with an exception set"); the trainer runs in graph mode anyway."""

    @ms.jit
    def compiled(x: ms.Tensor, y: ms.Tensor) -> ms.Tensor:
        return cell(x, y)

    return compiled(ms.Tensor(logits), ms.Tensor(labels))


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return (rng.standard_normal((6, 5)) * 3).astype(np.float32), rng.integers(0, 5, 6).astype(np.int32)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_matches_numpy(batch: tuple[np.ndarray, np.ndarray], eps: float) -> None:
    logits, labels = batch
    loss = _run(LabelSmoothingCrossEntropy(num_classes=5, smooth_factor=eps), logits, labels)
    assert loss.shape == ()
    assert float(loss) == pytest.approx(_reference(logits, labels, eps), rel=1e-5)


def test_zero_smoothing_is_plain_cross_entropy(batch: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = batch
    ours = _run(LabelSmoothingCrossEntropy(5, 0.0), logits, labels)
    plain = _run(ms.nn.CrossEntropyLoss(), logits, labels)
    assert float(ours) == pytest.approx(float(plain), rel=1e-6)


def test_smoothing_is_eps_over_k_minus_1_not_eps_over_k(batch: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = batch
    ours = float(_run(LabelSmoothingCrossEntropy(5, 0.1), logits, labels))
    pytorch_style = float(_run(ms.nn.CrossEntropyLoss(label_smoothing=0.1), logits, labels))
    assert ours != pytest.approx(pytorch_style, rel=1e-4)


def test_fp16_logits_are_computed_in_fp32(batch: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = batch
    half = logits.astype(np.float16)
    loss = _run(LabelSmoothingCrossEntropy(5, 0.1), half, labels)
    assert loss.dtype == ms.float32
    assert float(loss) == pytest.approx(_reference(half.astype(np.float32), labels, 0.1), rel=1e-5)


@pytest.mark.parametrize(("k", "eps"), [(1, 0.1), (10, 1.0), (10, -0.1)])
def test_bad_arguments(k: int, eps: float) -> None:
    with pytest.raises(ValueError, match=r"num_classes|smooth_factor"):
        LabelSmoothingCrossEntropy(k, eps)
