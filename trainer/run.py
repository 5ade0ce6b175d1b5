"""What a training run is made of, built once by :func:`trainer.loop.build_run` and read by every step after it
(the loop, the stepper and the checkpointer), and the one log writer of the trainer's lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mindspore import nn

from contract.config import TrainConfig
from contract.group import Group, format_members, rank_batch
from contract.lines import format_trainer_line
from trainer import execution
from trainer.checkpoint import Checkpoint


def log(message: str) -> None:
    print(message, flush=True)


@dataclass
class Inputs:
    """What is checked before anything is built or written."""

    classes: list[str]
    num_classes: int
    resume: Checkpoint | None
    pretrained: Checkpoint | None
    restarts: dict[str, Any]  # status.json's "restarts", from the launcher's env
    read_seconds: float = 0.0  # reading and CRC-checking the checkpoint to resume from
    source: str | None = None  # where the resumed state comes from: "snapshot of pod 1 at step 812" / "checkpoint ..."


@dataclass
class Run:
    """Everything built before the first step; the steps below read it and never rebind it."""

    cfg: TrainConfig
    rank: int
    group: Group  # the pods training in this attempt (all of them unless an elastic job shrank)
    inputs: Inputs
    dataset: Any
    val_dataset: Any | None
    steps_per_epoch: int
    total_steps: int
    net: nn.Cell
    train_net: nn.Cell
    step: execution.TrainStep  # how one step of train_net runs (graph, or PyNative + jit)
    optimizer: nn.Momentum
    lrs: np.ndarray
    amp_level: str
    scale_manager: Any

    @property
    def ckpt_dir(self) -> Path:
        return Path(self.cfg.ckpt_path)

    @property
    def group_size(self) -> int:
        """The ranks training now (MindSpore's group): the collectives' and the batch split's world."""
        return self.group.world_size

    @property
    def global_batch(self) -> int:
        """The recipe's: per_batch_size per device of the full job, whatever the group."""
        return self.cfg.per_batch_size * self.group.full_world_size

    @property
    def rank_batch(self) -> int:
        return rank_batch(self.global_batch, self.group_size)

    @property
    def writes_checkpoints(self) -> bool:
        return self.rank == 0 or not self.cfg.is_save_on_master

    @property
    def file_rank(self) -> int:
        """The rank in this process's checkpoint names (0 when only rank 0 saves)."""
        return 0 if self.cfg.is_save_on_master else self.rank

    def describe_group(self) -> str:
        """``4 of 6 (pods 0,2)`` when an elastic job trains without some of its pods, else ``6``."""
        group = self.group
        if group.is_full:
            return str(group.world_size)
        return f"{group.world_size} of {group.full_world_size} (pods {format_members(group.members)})"

    def log(self, message: str) -> None:
        log(format_trainer_line(self.rank, message))

    def meta(self, epoch: int, step: int) -> dict[str, Any]:
        """The ``trainer_meta`` of a checkpoint saved at ``step``."""
        return {
            "arch": self.cfg.arch,
            "image_size": self.cfg.image_size,
            "num_classes": self.inputs.num_classes,
            "classes": self.inputs.classes,
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "rank_size": self.group_size,
            "config": self.cfg.flat(),
        }
