"""The training sample order: a function of (seed, epoch, global step) only, never of the number of ranks.

Epoch ``e`` (0-based) is a permutation of the readable images drawn from a generator seeded by ``(seed, e)``; its
first ``steps_per_epoch x global_batch`` images are its global batches in turn (the tail that does not fill one is
dropped, as ``drop_remainder`` does), and rank ``r`` of a ``W``-rank group takes the ``r``-th contiguous
``global_batch / W`` of each. So the images of a global step are the same whether 2 or 6 ranks train it, and a
group resized between two steps neither repeats nor skips one (elastic data parallel, contract.group).

:class:`TrainSampler` feeds that order to MindSpore's pipeline one epoch at a time (an index array per epoch per
rank: cheap for ImageNet's 1.28 M images); it counts the epochs it has served from the one it was pointed at
(:func:`seek`), and MindSpore's ``set_init_step`` skips the batches of that epoch already trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mindspore.dataset as ds
import numpy as np

from contract.group import rank_batch


@dataclass(frozen=True, eq=False)
class TrainOrder:
    """Which images each global step trains on. ``indices``: the readable images in ImageFolderDataset order."""

    indices: np.ndarray
    global_batch: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return len(self.indices) // self.global_batch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The images of epoch ``epoch`` (0-based), global batch after global batch."""
        permuted = np.random.default_rng([self.seed, epoch]).permutation(self.indices)
        return permuted[: self.steps_per_epoch * self.global_batch]

    def rank_indices(self, epoch: int, rank: int, world: int) -> np.ndarray:
        """Rank ``rank``'s images of epoch ``epoch`` in a ``world``-rank group, its share of each step in turn."""
        share = rank_batch(self.global_batch, world)
        steps = self.epoch_order(epoch).reshape(self.steps_per_epoch, self.global_batch)
        return steps[:, rank * share : (rank + 1) * share].ravel()


class TrainSampler(ds.Sampler):
    """One rank's share of :class:`TrainOrder`, an epoch per ``__iter__`` (MindSpore calls it once per epoch,
    ahead of time, skipped epochs included)."""

    def __init__(self, order: TrainOrder, rank: int, world: int) -> None:
        self.order, self.rank, self.world = order, rank, world
        self.share = rank_batch(order.global_batch, world)
        self.epoch = 0  # the epoch the next __iter__ serves
        super().__init__()  # num_samples = len(self): MindSpore never iterates the sampler to count it

    def __len__(self) -> int:
        return self.order.steps_per_epoch * self.share

    def __iter__(self) -> Iterator[int]:
        indices = self.order.rank_indices(self.epoch, self.rank, self.world)
        self.epoch += 1
        return iter(indices.tolist())


def train_sampler(dataset: Any) -> TrainSampler:
    """The TrainSampler at the leaf of a training pipeline (create_train_dataset's)."""
    node = dataset
    while not isinstance(getattr(node, "sampler", None), TrainSampler):
        if len(node.children) != 1:
            raise TypeError("not a training pipeline of trainer.data.create_train_dataset")
        node = node.children[0]
    return node.sampler


def seek(dataset: Any, step: int, align: int = 1) -> int:
    """Point the pipeline's next iterator at global step ``step`` (rounded down to a multiple of ``align`` within
    its epoch): its sampler starts at that step's epoch and MindSpore skips the batches of that epoch already
    trained (without decoding them). Returns the epoch."""
    sampler = train_sampler(dataset)
    sampler.epoch, skip = divmod(step, sampler.order.steps_per_epoch)
    dataset.set_init_step(skip - skip % align)
    return sampler.epoch


def batches_from(dataset: Any, step: int, epochs: int) -> Iterator[tuple[Any, Any]]:
    """Batches from global step ``step`` to the end of epoch ``epochs``, across epoch boundaries (a MindSpore
    iterator raises StopIteration at the end of each epoch; its reset to a step needs a finite epoch count)."""
    first = seek(dataset, step)
    iterator = dataset.create_tuple_iterator(num_epochs=max(1, epochs - first))
    while True:
        yield from iterator
