"""Launcher-agnostic process-group setup and the small collectives the training loop needs.

Environments (see docs/INTERFACES.md): a dynamic cluster (``MS_ROLE``/``MS_SCHED_HOST``/... set by msrun or by
``trainer.launch``; CPU, GPU, Ascend), an HCCL rank table (``RANK_TABLE_FILE``/``RANK_ID``/``DEVICE_ID``;
Ascend), or a single process. In a dynamic cluster one extra process runs the same command with
``MS_ROLE=MS_SCHED``: ``communication.init()`` makes it the scheduler. In MindSpore 2.10 (checked on CPU) that
call serves the workers and ends the process itself (exit 0) once they have all unregistered, so it never
returns; if a worker dies it raises RuntimeError after the heartbeat timeout. The callers therefore call
:func:`init_distributed` before reading data or writing anything, and treat a return for the scheduler
(older/newer versions) as "done, exit 0".
"""

from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.communication import get_group_size, get_rank, init

from contract.config import TrainConfig

SCHEDULER_ROLE = "MS_SCHED"


class DistributedError(ValueError):
    """The distributed environment is incomplete; the message names the missing variables."""


def is_scheduler() -> bool:
    return os.environ.get("MS_ROLE") == SCHEDULER_ROLE


def _device_id() -> int | None:
    raw = os.environ.get("DEVICE_ID")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise DistributedError(f"DEVICE_ID must be a device number, not {raw!r}")
    return int(raw)


def _select_device(platform: str) -> None:
    device_id = _device_id()
    if platform == "CPU" or device_id is None:
        ms.set_device(platform)  # device 0, or the one msrun / the dynamic cluster assigns
    else:
        ms.set_device(platform, device_id)


def init_distributed(cfg: TrainConfig) -> tuple[int, int]:
    """Select the device and, when ``cfg.is_distributed``, join the process group; returns (rank, group_size).
    Set the execution mode first (``trainer.execution.set_mode``).

    For the scheduler process this returns (-1, 0) after the cluster has finished.
    """
    if not cfg.is_distributed:
        _select_device(cfg.platform)
        return 0, 1
    if "MS_ROLE" in os.environ:
        missing = [v for v in ("MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM") if not os.environ.get(v)]
        if missing:
            raise DistributedError(f"dynamic cluster: MS_ROLE is set but {', '.join(missing)} is not; set them")
    elif os.environ.get("RANK_TABLE_FILE"):
        if cfg.platform != "Ascend":
            raise DistributedError(f"RANK_TABLE_FILE is an Ascend (HCCL) launcher, but platform is {cfg.platform}")
    else:
        raise DistributedError(
            "--is_distributed needs a launcher environment: MS_ROLE/MS_SCHED_HOST/MS_SCHED_PORT/MS_WORKER_NUM "
            "(msrun or trainer.launch) or RANK_TABLE_FILE/RANK_ID/DEVICE_ID (Ascend); none is set"
        )
    _select_device(cfg.platform)
    init()
    if is_scheduler():
        return -1, 0
    # No parallel context here: graph training sets its own (trainer.execution.join_data_parallel); PyNative
    # training, evaluation and the collectives below need none.
    return get_rank(), get_group_size()


class _AllReduce(nn.Cell):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.reduce = ops.AllReduce(op=op)

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        return self.reduce(x)


_cells: dict[str, _AllReduce] = {}


def _all_reduce(values: np.ndarray, op: str) -> np.ndarray:
    cell = _cells.setdefault(op, _AllReduce(op))
    return cell(ms.Tensor(values)).asnumpy()


def all_reduce_max(flag: int, group_size: int) -> int:
    """1 if any rank passes a non-zero ``flag``, else 0 (the stop agreement); no communication for one process.

    A maximum over 0/1 flags, computed as a sum because MindSpore's CPU AllReduce supports only SUM.
    """
    if group_size <= 1:
        return int(bool(flag))
    return int(_all_reduce(np.array([int(bool(flag))], dtype=np.float32), ops.ReduceOp.SUM)[0] > 0)


def all_reduce_sum(values: np.ndarray, group_size: int) -> np.ndarray:
    """Element-wise sum over all ranks (evaluation counts)."""
    if group_size <= 1:
        return values
    return _all_reduce(values.astype(np.float32), ops.ReduceOp.SUM)
