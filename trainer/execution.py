"""The two ways a training step runs (the ``execution`` key), chosen once per run:

- ``graph``: ``GRAPH_MODE``; data parallel through ``set_auto_parallel_context(DATA_PARALLEL)``, which makes the
  training cell insert the gradient all-reduce itself; dataset sink on Ascend/GPU. MindSpore retires this static-graph
  parallel API after 2.11 (its 2.11 release notes, section 日落提醒: 2.11 is the last release that has it).
- ``pynative``: ``PYNATIVE_MODE`` with the whole step (forward, backward, gradient all-reduce, optimizer) compiled
  by ``mindspore.jit`` (ast capture, ``ms_backend``, jit_level O0); gradients averaged across ranks by an explicit
  ``nn.DistributedGradReducer`` (mean over the world group) and the overflow flag of dynamic loss scaling all-reduced
  by the training cell. It never calls ``set_auto_parallel_context``. No dataset sink.

Both build the same training cell (``mindspore.amp.build_train_network``: the same AMP level, loss scaling and
optimizer, so the same parameter names and checkpoints); only how it is reduced and run differs. ``auto`` is graph
while the installed MindSpore still has static-graph parallel, else pynative.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mindspore as ms
from mindspore import nn

GRAPH, PYNATIVE = "graph", "pynative"
STATIC_GRAPH_PARALLEL_LAST = (2, 11)  # the last MindSpore release with set_auto_parallel_context data parallel
JIT_LEVEL = "O0"  # O1 (fusion) measured slower on CPU for this model (README, CPU levers)
# Named, not left to the release: 2.7/2.8 default to GE on Atlas training-series (910) devices, which works only in
# GRAPH_MODE; 2.9 deprecates GE. ms_backend runs the jit graph on Ascend, GPU and CPU alike.
JIT_BACKEND = "ms_backend"


def version_tuple(version: str) -> tuple[int, int]:
    """``2.10.0`` / ``2.11.0rc1`` -> (2, 10); an unparsable version counts as new."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (99, 0)


def resolve(requested: str, version: str = ms.__version__) -> str:
    """The execution path a run uses: ``auto`` is graph up to the last release with static-graph parallel."""
    if requested != "auto":
        return requested
    return GRAPH if version_tuple(version) <= STATIC_GRAPH_PARALLEL_LAST else PYNATIVE


def set_mode(execution: str) -> None:
    """The global execution mode; call it before the process group and any cell exist."""
    ms.set_context(mode=ms.GRAPH_MODE if execution == GRAPH else ms.PYNATIVE_MODE)


def join_data_parallel(execution: str, group_size: int) -> None:
    """Graph only: the static-graph data-parallel context, read by the training cell when it is built (its gradient
    all-reduce). PyNative averages gradients itself (:func:`build_train_step`)."""
    if execution == GRAPH and group_size > 1:
        ms.set_auto_parallel_context(
            parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=group_size
        )


@dataclass
class TrainStep:
    """The training cell (its parameters are what a checkpoint holds) and how one step of it is called."""

    execution: str
    cell: nn.Cell
    call: Callable[..., Any]

    def __call__(self, images: Any, labels: Any) -> float:
        return first_output(self.call(images, labels))

    def compile(self, images: Any, labels: Any) -> float | None:
        """Compile the step before the first one: graph compiles on its own and returns None; a jit step compiles
        inside its first call, so that call is the first step and its loss is returned."""
        if self.execution == GRAPH:
            self.cell.compile(images, labels)
            return None
        return self(images, labels)


def first_output(output: Any) -> float:
    """The loss of a step: loss-scaling cells return (loss, overflow, scale)."""
    loss = output[0] if isinstance(output, tuple) else output
    return float(loss.asnumpy())


def build_train_step(
    execution: str,
    net: nn.Cell,
    optimizer: nn.Optimizer,
    loss_fn: nn.Cell,
    amp_level: str,
    scale_manager: Any,
    group_size: int,
) -> TrainStep:
    """The training cell of ``net`` for ``execution``. Graph: the parallel context (set before) makes the cell
    reduce its gradients. PyNative: the cell gets an explicit mean all-reduce of the gradients when there are
    several ranks, and its construct is compiled by ``mindspore.jit``."""
    cell = ms.amp.build_train_network(net, optimizer, loss_fn, level=amp_level, loss_scale_manager=scale_manager)
    if execution == GRAPH:
        return TrainStep(GRAPH, cell, cell)
    if group_size > 1:
        average_gradients(cell, group_size)
    return TrainStep(PYNATIVE, cell, ms.jit(cell, jit_level=JIT_LEVEL, backend=JIT_BACKEND))


def average_gradients(cell: nn.Cell, group_size: int) -> None:
    """Give a TrainOneStepCell (or its loss-scaling subclass) what the DATA_PARALLEL context would have: a mean
    all-reduce of the gradients over the world group, and an all-reduced overflow flag."""
    cell.reducer_flag = True
    cell.mean, cell.degree = True, group_size
    cell.grad_reducer = nn.DistributedGradReducer(cell.weights, mean=True, degree=group_size)
    if hasattr(cell, "is_distributed"):  # TrainOneStepWithLossScaleCell: every rank skips an overflowing step
        cell.is_distributed = True
