"""Per-step learning rates, as the model zoo's ``lr_generator.py`` computes them (pure numpy, no MindSpore).

The trainer passes the whole array to the optimizer and resumes by indexing it with the global step, so the
values depend only on the arguments (no state, no randomness).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCHEDULERS = ("cosine_annealing", "exponential", "step")


def _check(name: str, ok: bool, got: object, want: str) -> None:
    if not ok:
        raise ValueError(f"learning-rate schedule: {name} must be {want}, got {got!r}")


def learning_rates(
    base_lr: float,
    scheduler: str,
    steps_per_epoch: int,
    max_epoch: int,
    warmup_epochs: float = 0.0,
    T_max: int = 150,
    eta_min: float = 0.0,
    lr_epochs: Sequence[int] = (30, 60, 90, 120),
    lr_gamma: float = 0.1,
) -> np.ndarray:
    """One float32 learning rate per global step, ``steps_per_epoch * max_epoch`` of them.

    - warmup (first ``int(warmup_epochs * steps_per_epoch)`` steps, from 0): ``base * (i + 1) / warmup_steps``;
    - ``cosine_annealing``: ``eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2`` where
      ``e = i // steps_per_epoch`` is the absolute epoch (constant within an epoch, like the zoo);
    - ``exponential`` / ``step`` (the zoo's ``warmup_step_lr``): ``base * gamma**k`` where ``k`` counts the
      ``lr_epochs`` boundaries reached at or after the end of warmup (the zoo ignores boundaries inside warmup).
    """
    _check("scheduler", scheduler in SCHEDULERS, scheduler, f"one of {', '.join(SCHEDULERS)}")
    _check("base_lr", base_lr > 0, base_lr, "> 0")
    _check("steps_per_epoch", steps_per_epoch >= 1, steps_per_epoch, ">= 1 (is the dataset smaller than a batch?)")
    _check("max_epoch", max_epoch >= 1, max_epoch, ">= 1")
    _check("warmup_epochs", warmup_epochs >= 0, warmup_epochs, ">= 0")
    _check("T_max", T_max >= 1, T_max, ">= 1")
    _check("eta_min", eta_min >= 0, eta_min, ">= 0")
    _check("lr_gamma", 0 < lr_gamma <= 1, lr_gamma, "in (0, 1]")

    total = steps_per_epoch * max_epoch
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    step = np.arange(total, dtype=np.int64)
    if scheduler == "cosine_annealing":
        epoch = step // steps_per_epoch
        lr = eta_min + (base_lr - eta_min) * (1.0 + np.cos(math.pi * epoch / T_max)) / 2.0
    else:
        boundaries = np.array([e * steps_per_epoch for e in lr_epochs], dtype=np.int64)
        boundaries = boundaries[boundaries >= warmup_steps]
        reached = (step[:, None] >= boundaries[None, :]).sum(axis=1)
        lr = base_lr * np.power(lr_gamma, reached, dtype=np.float64)
    if warmup_steps:
        head = step[:warmup_steps]
        lr[:warmup_steps] = base_lr * (head + 1) / warmup_steps
    return lr.astype(np.float32)
