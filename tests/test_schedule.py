"""Per-step learning rates: hand-computed values and the model zoo's lr_generator.py algorithm."""

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.schedule import learning_rates


def _zoo(base, scheduler, spe, max_epoch, warmup_epochs, T_max, eta_min, lr_epochs, gamma) -> np.ndarray:
    """The model zoo's warmup_cosine_annealing_lr / warmup_step_lr, step by step, as an independent reference."""
    total, warmup = int(max_epoch * spe), int(warmup_epochs * spe)
    counter = Counter(m * spe for m in lr_epochs)
    out, lr = [], base
    for i in range(total):
        if i < warmup:
            lr = base * (i + 1) / warmup
        elif scheduler == "cosine_annealing":
            lr = eta_min + (base - eta_min) * (1 + math.cos(math.pi * (i // spe) / T_max)) / 2
        else:
            lr = lr * gamma ** counter[i]
        out.append(lr)
    return np.array(out, dtype=np.float32)


def test_warmup_then_epoch_stair_cosine() -> None:
    lr = learning_rates(0.1, "cosine_annealing", steps_per_epoch=10, max_epoch=5, warmup_epochs=1, T_max=5)
    assert lr.dtype == np.float32 and lr.shape == (50,)
    assert lr[0] == pytest.approx(0.01)  # base * 1 / 10, starting from 0
    assert lr[4] == pytest.approx(0.05)
    assert lr[9] == pytest.approx(0.1)  # warmup ends exactly at base
    assert lr[10] == pytest.approx(0.1 * (1 + math.cos(math.pi / 5)) / 2)  # 0.0904508
    assert lr[10] == lr[19]  # constant within an epoch
    assert lr[49] == pytest.approx(0.00954915, rel=1e-5)  # epoch 4: 0.1 * (1 + cos(4 pi / 5)) / 2


def test_cosine_reaches_eta_min_at_t_max() -> None:
    lr = learning_rates(1.0, "cosine_annealing", steps_per_epoch=1, max_epoch=3, T_max=2, eta_min=0.1)
    np.testing.assert_allclose(lr, [1.0, 0.55, 0.1], rtol=1e-6)


def test_no_warmup_starts_at_base() -> None:
    lr = learning_rates(0.4, "cosine_annealing", steps_per_epoch=3, max_epoch=2, warmup_epochs=0, T_max=150)
    assert lr[0] == pytest.approx(0.4)


def test_fractional_warmup() -> None:
    lr = learning_rates(1.0, "cosine_annealing", steps_per_epoch=10, max_epoch=2, warmup_epochs=0.5, T_max=2)
    np.testing.assert_allclose(lr[:6], [0.2, 0.4, 0.6, 0.8, 1.0, 1.0], rtol=1e-6)
    assert lr[10] == pytest.approx(0.5)


@pytest.mark.parametrize("scheduler", ["step", "exponential"])
def test_step_boundaries(scheduler: str) -> None:
    lr = learning_rates(1.0, scheduler, steps_per_epoch=2, max_epoch=6, lr_epochs=[2, 4], lr_gamma=0.1)
    np.testing.assert_allclose(lr, [1.0] * 4 + [0.1] * 4 + [0.01] * 4, rtol=1e-6)


def test_step_boundary_inside_warmup_is_ignored_like_the_zoo() -> None:
    lr = learning_rates(1.0, "step", steps_per_epoch=2, max_epoch=4, warmup_epochs=2, lr_epochs=[1, 3], lr_gamma=0.1)
    np.testing.assert_allclose(lr, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.1, 0.1], rtol=1e-6)


def test_seed_recipe_length_and_end() -> None:
    # ImageNet at global batch 64: 20,018 steps per epoch, 150 epochs.
    lr = learning_rates(0.05, "cosine_annealing", 20018, 150, warmup_epochs=1, T_max=150)
    assert lr.shape == (20018 * 150,)
    assert lr[-1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 149 / 150)) / 2)  # ~5.5e-6
    assert lr.max() == pytest.approx(0.05)


@settings(max_examples=40, deadline=None)
@given(
    scheduler=st.sampled_from(["cosine_annealing", "exponential", "step"]),
    spe=st.integers(1, 7),
    max_epoch=st.integers(1, 12),
    warmup=st.sampled_from([0, 0.5, 1, 2.5]),
    t_max=st.integers(1, 15),
    eta_min=st.sampled_from([0.0, 1e-4]),
    lr_epochs=st.lists(st.integers(0, 12), max_size=4, unique=True).map(sorted),
)
def test_matches_the_zoo_algorithm(scheduler, spe, max_epoch, warmup, t_max, eta_min, lr_epochs) -> None:
    args = (0.1, scheduler, spe, max_epoch, warmup, t_max, eta_min, lr_epochs, 0.3)
    ours = learning_rates(*args)
    np.testing.assert_allclose(ours, _zoo(*args), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(ours, learning_rates(*args))  # resume indexes it: must be deterministic


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scheduler": "linear"}, "scheduler"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"base_lr": 0.0}, "base_lr"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    args = {"base_lr": 0.1, "scheduler": "cosine_annealing", "steps_per_epoch": 2, "max_epoch": 2} | kwargs
    with pytest.raises(ValueError, match=field):
        learning_rates(**args)
