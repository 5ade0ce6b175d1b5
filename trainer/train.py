"""The training loop: ``python -m trainer.train --data_dir DIR --platform CPU|GPU|Ascend [...]``.

Read :func:`train` top to bottom: check inputs, build data/model/loss/optimizer, resume, then a per-step loop
(per sink chunk on GPU/Ascend) that logs, checkpoints, validates and stops cleanly on SIGTERM.

MindSpore is imported only after the config is parsed, because the CPU fast path (``ONEDNN_MAX_CPU_ISA``)
must be in the environment before oneDNN loads.

Exit codes: 0 done, 2 bad input or config (nothing written), 143 stopped by SIGTERM after saving, 1 other failure.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from trainer.config import ConfigError, TrainConfig, parse_args
from trainer.cpu import apply_cpu_fast_path
from trainer.progress import ThroughputMeter, format_progress, read_status, write_status

if TYPE_CHECKING:
    from mindspore import nn

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 143
STATUS_FILE = "status.json"
LOG_SECONDS = 60.0  # a progress line at least this often, so a slow run still shows (and feeds the stall timer)
STATUS_SECONDS = 10.0  # progress-only status.json rewrites at most this often (each one is an fsync on the volume)
SINK_STEPS_MAX = 32  # steps per device-side chunk in sink mode (also the stop-agreement granularity)


def log(message: str) -> None:
    print(message, flush=True)


class StopRequest:
    """SIGTERM sets a flag; the loop acts on it at the next step boundary (never mid-step)."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


class Status:
    """status.json on rank 0 (other ranks keep nothing); fields per docs/INTERFACES.md."""

    current: Status | None = None  # the run's status, so main() can mark it failed

    def __init__(self, path: Path, enabled: bool, **static: Any) -> None:
        self.path, self.enabled = path, enabled
        Status.current = self
        self.fields: dict[str, Any] = {"loss": None, "lr": None, "img_per_sec": None, "eta_seconds": None}
        self.fields.update({"checkpoint": None, "best": None}, **static)
        self.written = 0.0

    def update(self, **fields: Any) -> None:
        """A change of state, checkpoint or best: written at once."""
        self.fields.update(fields)
        if self.enabled:
            write_status(self.path, **self.fields)
            self.written = time.monotonic()

    def progress(self, **fields: Any) -> None:
        """Step, loss, speed: kept, and written when the last write is STATUS_SECONDS old."""
        self.fields.update(fields)
        if time.monotonic() - self.written >= STATUS_SECONDS:
            self.update()


def describe_scale(cfg: TrainConfig, manager: object) -> str:
    if manager is None:
        return "none (fp32)"
    return "dynamic" if cfg.is_dynamic_loss_scale else f"fixed {cfg.loss_scale:g}"


def param_groups(net: nn.Cell, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/dense weights only: none on BN gamma/beta and biases (as the seed)."""
    params = net.trainable_params()
    exempt = ("bias", "gamma", "beta")
    no_decay = [p for p in params if p.name.endswith(exempt)]
    decay = [p for p in params if not p.name.endswith(exempt)]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"order_params": params},
    ]


def sink_chunk(steps_per_epoch: int) -> int:
    """The largest divisor of the epoch length up to SINK_STEPS_MAX, so chunks never straddle epochs."""
    return max(d for d in range(1, min(SINK_STEPS_MAX, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def data_workers(requested: int) -> int:
    """MindSpore refuses more pipeline workers than CPU cores; the seed's 8 would fail on small nodes."""
    return max(1, min(requested, os.cpu_count() or 1))


def endless(dataset: Any) -> Iterator[tuple[Any, Any]]:
    """Batches across epoch boundaries (a MindSpore iterator raises StopIteration at the end of each epoch)."""
    iterator = dataset.create_tuple_iterator(num_epochs=-1)
    while True:
        yield from iterator


def train(cfg: TrainConfig) -> int:
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from trainer import checkpoint as ckpt
    from trainer.data import create_eval_dataset, create_train_dataset, list_classes
    from trainer.distributed import all_reduce_max, all_reduce_sum, init_distributed
    from trainer.evaluate import score
    from trainer.loss import LabelSmoothingCrossEntropy
    from trainer.model import build_model
    from trainer.schedule import learning_rates

    ms.set_context(mode=ms.GRAPH_MODE)
    rank, group_size = init_distributed(cfg)
    if group_size == 0:  # the dynamic-cluster scheduler: init() returned after the workers finished
        log("scheduler: all workers finished")
        return EXIT_OK
    ms.set_seed(cfg.seed)  # identical on every rank: identical initial weights
    ckpt_dir = Path(cfg.ckpt_path)
    writes_checkpoints = rank == 0 or not cfg.is_save_on_master

    # 1. Check every input before anything is written.
    classes = list_classes(cfg.data_dir)
    num_classes = cfg.num_classes or len(classes)
    if num_classes < len(classes):
        raise ConfigError(
            f"num_classes={num_classes} but {cfg.data_dir} has {len(classes)} class folders; "
            "raise num_classes or leave it unset"
        )
    if cfg.val_dir and list_classes(cfg.val_dir) != classes:
        raise ConfigError(f"val_dir {cfg.val_dir} has other class folders than data_dir {cfg.data_dir}")
    resume = ckpt.newest_valid(ckpt_dir, log=lambda m: log(f"rank={rank} {m}"))
    if resume is not None:
        ckpt.check_matches(resume, cfg.arch, classes, "checkpoint")
    pretrained = None
    if resume is None and cfg.pretrained:
        pretrained = ckpt.load(cfg.pretrained)
        ckpt.check_matches(pretrained, cfg.arch, None, "--pretrained checkpoint")

    # 2. Data: this rank's shard; every epoch has the same number of steps (drop_remainder).
    dataset, classes = create_train_dataset(
        cfg.data_dir,
        cfg.image_size,
        cfg.per_batch_size,
        rank,
        group_size,
        data_workers(cfg.num_parallel_workers),
        cfg.seed,
        classes,
    )
    steps_per_epoch = dataset.get_dataset_size()
    if steps_per_epoch < 1:
        raise ConfigError(
            f"per_batch_size={cfg.per_batch_size} is larger than this rank's share of {cfg.data_dir}; lower it"
        )
    planned_steps = steps_per_epoch * cfg.max_epoch
    total_steps = min(planned_steps, cfg.max_steps or planned_steps)
    global_batch = cfg.per_batch_size * group_size

    # 3. Model, loss, optimizer with a per-step learning rate driven by the optimizer's global_step.
    net = build_model(cfg.arch, num_classes)
    loss_fn = LabelSmoothingCrossEntropy(num_classes, cfg.label_smooth_factor if cfg.label_smooth else 0.0)
    lrs = learning_rates(
        cfg.effective_lr(group_size),
        cfg.lr_scheduler,
        steps_per_epoch,
        cfg.max_epoch,
        cfg.warmup_epochs,
        cfg.T_max,
        cfg.eta_min,
        cfg.lr_epochs,
        cfg.lr_gamma,
    )
    amp_level = cfg.effective_amp_level()
    scale_manager: Any
    if amp_level == "O0" and not cfg.is_dynamic_loss_scale:
        # fp32 gradients do not underflow: a fixed scale would change nothing but cost a pass over every gradient.
        scale_manager, optimizer_scale = None, 1.0
    elif cfg.is_dynamic_loss_scale:  # the cell unscales: the optimizer must not scale again
        scale_manager = ms.DynamicLossScaleManager(init_loss_scale=65536, scale_factor=2, scale_window=2000)
        optimizer_scale = 1.0
    else:  # the seed's fixed scale: gradients are scaled by S in the cell and divided by S in the optimizer
        scale_manager = ms.FixedLossScaleManager(cfg.loss_scale, drop_overflow_update=False)
        optimizer_scale = cfg.loss_scale
    optimizer = nn.Momentum(
        param_groups(net, cfg.weight_decay), ms.Tensor(lrs), cfg.momentum, loss_scale=optimizer_scale
    )
    train_net = ms.amp.build_train_network(net, optimizer, loss_fn, level=amp_level, loss_scale_manager=scale_manager)

    # 4. Resume (an existing checkpoint wins) or initialise from --pretrained.
    start_step = 0
    if resume is not None:
        ckpt.restore_training_state(train_net, resume)
        start_step = resume.step
        log(f"rank={rank} resuming from {resume.path} at step {start_step} (epoch {resume.epoch})")
        if resume.meta.get("steps_per_epoch") != steps_per_epoch:
            log(f"rank={rank} note: {steps_per_epoch} steps/epoch now, {resume.meta.get('steps_per_epoch')} before")
        if int(optimizer.global_step.asnumpy()[0]) != start_step:
            log(f"rank={rank} note: optimizer global_step {int(optimizer.global_step.asnumpy()[0])} != {start_step}")
    elif pretrained is not None:
        not_loaded = ckpt.load_weights(net, pretrained)
        log(f"rank={rank} initialised from {pretrained.path}; not loaded: {', '.join(not_loaded) or 'none'}")
    if group_size > 1 and all_reduce_sum(np.array([start_step]), group_size)[0] != start_step * group_size:
        raise RuntimeError(f"ranks resumed from different steps (rank {rank}: {start_step}); is ckpt_path shared?")

    val_dataset = None
    if cfg.val_dir:
        val_dataset = create_eval_dataset(
            cfg.val_dir,
            cfg.image_size,
            cfg.eval_batch_size or cfg.per_batch_size,
            rank,
            group_size,
            data_workers(cfg.num_parallel_workers),
            cfg.eval_resize,
            classes,
        )

    # From here on rank 0 writes: the checkpoint directory and status.json.
    if writes_checkpoints:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(ckpt_dir)
    status = Status(
        ckpt_dir / STATUS_FILE,
        enabled=rank == 0,
        state="starting",
        epoch=start_step // steps_per_epoch,
        max_epoch=cfg.max_epoch,
        step=start_step,
        total_steps=total_steps,
        rank_size=group_size,
    )
    previous = read_status(ckpt_dir / STATUS_FILE) if resume is not None else None
    best = previous.get("best") if previous else None
    status.update(best=best, checkpoint=str(resume.path) if resume else None)
    stop = StopRequest()

    def save(step: int) -> None:
        epoch = math.ceil(step / steps_per_epoch)
        if writes_checkpoints:
            name = ckpt.checkpoint_name(cfg.arch, epoch, step, 0 if cfg.is_save_on_master else rank)
            path = ckpt.save(train_net, ckpt_dir / name, checkpoint_meta(epoch, step))
            ckpt.prune(ckpt_dir, cfg.keep_checkpoint_max, 0 if cfg.is_save_on_master else rank)
            log(f"rank={rank} saved {path}")
            status.update(checkpoint=str(path))

    def checkpoint_meta(epoch: int, step: int) -> dict[str, Any]:
        return {
            "arch": cfg.arch,
            "image_size": cfg.image_size,
            "num_classes": num_classes,
            "classes": classes,
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": steps_per_epoch,
            "rank_size": group_size,
            "config": cfg.flat(),
        }

    def validate(epoch: int, step: int) -> None:
        nonlocal best
        assert val_dataset is not None
        net.set_train(False)
        result = score(net, val_dataset, group_size)
        net.set_train(True)
        log(
            f"rank={rank} epoch={epoch}/{cfg.max_epoch} step={step}/{total_steps} validation "
            f"top1={result['top1']:.4f} top5={result['top5']:.4f} images={result['images']}"
        )
        if rank == 0 and (best is None or result["top1"] > best["top1"]):
            path = ckpt.save(train_net, ckpt_dir / ckpt.BEST_NAME, dict(checkpoint_meta(epoch, step), **result))
            best = {"top1": result["top1"], "checkpoint": str(path)}
            status.update(best=best)

    # 5. The loop: one step (or one sink chunk) at a time so every rank can agree to stop at the same step.
    chunk = sink_chunk(steps_per_epoch) if cfg.effective_sink() else 1
    run_steps: Any = ms.data_sink(train_net, dataset, sink_size=chunk) if chunk > 1 else None
    batches = None if run_steps else endless(dataset)
    meter = ThroughputMeter(skip=1)
    last_line = time.monotonic()
    step = start_step
    saved_step = start_step if resume is not None else -1
    status.update(state="running")
    log(
        f"rank={rank} training {cfg.arch} on {cfg.platform} x{group_size}: {len(classes)} classes, "
        f"{steps_per_epoch} steps/epoch, steps {start_step}->{total_steps}, global batch {global_batch}, "
        f"amp {amp_level}, loss scale {describe_scale(cfg, scale_manager)}, "
        f"sink {f'{chunk} steps' if run_steps else 'off'}"
    )
    while step < total_steps:
        epoch = step // steps_per_epoch + 1  # 1-based epoch this step belongs to
        n = min(chunk, total_steps - step)
        if run_steps is not None and n == chunk:
            loss = float(run_steps().asnumpy())
        else:
            if batches is None:  # a short tail in sink mode (max_steps): finish it step by step
                batches = endless(dataset)
            loss = 0.0
            for _ in range(n):
                images, labels = next(batches)
                loss = float(train_net(images, labels).asnumpy())
        step += n
        meter.step_done(global_batch * n)
        eta = meter.eta_seconds((total_steps - step) * global_batch)
        lr = float(lrs[step - 1])
        status.progress(epoch=epoch, step=step, loss=loss, lr=lr, img_per_sec=meter.img_per_sec, eta_seconds=eta)
        if step % cfg.log_interval < n or step == total_steps or time.monotonic() - last_line >= LOG_SECONDS:
            log(format_progress(rank, epoch, cfg.max_epoch, step, total_steps, loss, lr, meter.img_per_sec, eta))
            last_line = time.monotonic()
        epoch_done = step % steps_per_epoch == 0
        interval_due = step % cfg.ckpt_interval < n if cfg.ckpt_interval else epoch_done
        if interval_due or step == total_steps:
            save(step)
            saved_step = step
        if val_dataset is not None and epoch_done and epoch % cfg.eval_interval == 0:
            with meter.paused():
                validate(epoch, step)
        if all_reduce_max(int(stop.requested), group_size):
            log(f"rank={rank} SIGTERM: stopping at step {step}")
            if saved_step != step:
                save(step)
            status.update(state="stopped", epoch=epoch, step=step)
            return EXIT_STOPPED
    if val_dataset is not None and step % steps_per_epoch != 0:  # max_steps ended mid-epoch
        validate(math.ceil(step / steps_per_epoch), step)
    if saved_step != step:
        save(step)
    status.update(state="completed", step=step, eta_seconds=0)
    log(f"rank={rank} done: {step} steps")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_args(argv, prog="python -m trainer.train")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    apply_cpu_fast_path(cfg.platform, cfg.cpu_fast_conv)  # before MindSpore is imported (in train)

    from trainer.checkpoint import CheckpointError
    from trainer.data import DataError
    from trainer.distributed import DistributedError

    try:
        return train(cfg)
    except (ConfigError, DataError, CheckpointError, DistributedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:
        traceback.print_exc()
        if Status.current is not None:
            Status.current.update(state="failed")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
