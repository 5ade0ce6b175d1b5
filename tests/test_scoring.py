"""trainer.scoring: top-k arithmetic (shared by validation in the loop and trainer.evaluate)."""

from __future__ import annotations

import numpy as np

from trainer.scoring import topk_correct


def test_topk_by_hand() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [0.7, 0.1, 0.2], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]], dtype=np.float32)
    labels = np.array([1, 2, 0, 1])
    assert topk_correct(logits, labels, 1) == 1  # row 0
    assert topk_correct(logits, labels, 2) == 3  # rows 0, 1 and 3
    assert topk_correct(logits, labels, 5) == 4  # k capped at the 3 classes: every row


def test_top2_without_ties() -> None:
    logits = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    assert topk_correct(logits, np.array([1, 1]), 2) == 1
    assert topk_correct(logits, np.array([2, 2]), 2) == 1
    assert topk_correct(logits, np.array([0, 3]), 1) == 2
