"""Top-1/top-5 scoring of a network on an evaluation dataset, shared by the training loop's validation and
``trainer.evaluate``. Imports only NumPy at module level (MindSpore comes in with the network and dataset)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mindspore import nn
    from mindspore.dataset import Dataset


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits (k capped at the class count)."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels.reshape(-1, 1)).any(axis=1).sum())


def score(
    net: nn.Cell, dataset: Dataset, group_size: int, on_batch: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Top-1/top-5 over every image of the (sharded) dataset, summed over all ranks (``on_batch``: a progress
    bar's tick)."""
    from trainer.distributed import all_reduce_sum

    counts = np.zeros(3, dtype=np.float64)  # top1 hits, top5 hits, images
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        logits = net(images).asnumpy().astype(np.float32)
        truth = labels.asnumpy()
        counts += (topk_correct(logits, truth, 1), topk_correct(logits, truth, 5), len(truth))
        if on_batch is not None:
            on_batch()
    top1, top5, seen = (round(float(v)) for v in all_reduce_sum(counts, group_size))
    return {"top1": top1 / max(seen, 1), "top5": top5 / max(seen, 1), "images": seen}
