"""The training run, in the order it happens (``python -m trainer.train`` parses the config, then calls
:func:`train`):

1. :func:`build_run`      check every input, then build data, model, loss and optimizer (nothing written yet)
2. :func:`resume`         restore the newest valid checkpoint, or initialise from ``--pretrained``
3. :func:`open_status`    rank 0 prepares the checkpoint directory and ``status.json``
4. :func:`train_loop`     steps (or sink chunks) that log progress, then, when due,
5. :class:`Checkpointer` (a snapshot at the step boundary, written in the background) and :func:`validate`
6. :func:`stop_run` on an agreed SIGTERM, else :func:`finish_run`; both wait for the save in flight

MindSpore is imported at module level: import this module only after ``trainer.cpu.apply_cpu_fast_path``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import nn

from contract.ckpt_names import format_of
from contract.config import ConfigError, TrainConfig
from contract.env import Var
from contract.files import DiskFullError
from contract.group import Group, rank_batch
from contract.imagefolder import too_few_classes
from contract.layout import STATUS_FILE
from contract.lines import format_resumed, format_saved, format_trainer_line
from contract.metrics import History, TensorBoard, format_validation, history_paths, log_record_line
from contract.progress import (
    ThroughputMeter,
    format_progress,
    read_status,
    restarts_from_env,
    write_status,
)
from trainer import checkpoint as ckpt
from trainer import compile_cache, execution, order
from trainer import snapshot as snapshots
from trainer.async_save import BackgroundSaver, lower_priority
from trainer.checkpoint import Checkpoint
from trainer.data import DataError, create_eval_dataset, create_train_dataset, data_workers, list_classes
from trainer.distributed import all_reduce_max, all_reduce_sum, init_distributed
from trainer.divergence import DivergedError, DivergenceGuard
from trainer.loss import LabelSmoothingCrossEntropy
from trainer.model import build_model
from trainer.run import Inputs, Run, log
from trainer.schedule import learning_rates
from trainer.scoring import score

LOG_SECONDS = 60.0  # a progress line at least this often, so a slow run still shows (and feeds the stall timer)
STATUS_SECONDS = 10.0  # progress-only status.json rewrites at most this often (each one is an fsync on the volume)
SINK_STEPS_MAX = 32  # steps per device-side chunk in sink mode (also the stop-agreement granularity)


def train(cfg: TrainConfig) -> str:
    """One run of ``cfg``; returns the final state, ``completed`` or ``stopped`` (after SIGTERM)."""
    log(f"trainer pid {os.getpid()}: MindSpore loaded")  # recovery timing: the process start ends here
    path = execution.resolve(cfg.execution)
    execution.set_mode(path)
    rank, group_size = init_distributed(cfg)
    if group_size == 0:  # the dynamic-cluster scheduler: init() returned after the workers finished
        log("scheduler: all workers finished")
        return "completed"
    group = Group.from_environ(os.environ, world_size=group_size)  # GroupError: bad input
    execution.join_data_parallel(path, group_size)  # graph only; before the training cell is built
    ms.set_seed(cfg.seed)  # identical on every rank: identical initial weights
    run = build_run(cfg, rank=rank, group=group, path=path)
    use_compile_cache(run)
    start_step = resume(run)
    status = open_status(run, start_step=start_step)
    status.history = open_history(run, start_step=start_step)
    saving = Checkpointer(run, status)
    try:
        return train_loop(run, status, saving, start_step=start_step)
    except Exception as exc:
        saving.close()  # a save in flight still ends cleanly: renamed into place, or its temporary removed
        status.mark_failed(str(exc) if isinstance(exc, DivergedError | DiskFullError) else None)
        raise
    finally:
        status.history.close()


# 1. Build the run ----------------------------------------------------------------------------------------------


def is_checkpoint_file(path: Path) -> bool:
    """A checkpoint of either format, not a snapshot (which a resume may also come from)."""
    return format_of(path.name) is not None


def check_inputs(cfg: TrainConfig, rank: int) -> Inputs:
    """The class folders, and the checkpoint to resume from (newest valid; bad ones set aside by rank 0) or the
    pretrained one; ConfigError/CheckpointError before anything is built."""
    classes = list_classes(cfg.data_dir)
    problem = too_few_classes(Path(cfg.data_dir), classes)
    if problem:  # DataError: exit 2, so the Job fails at once instead of restarting into the same error
        raise DataError(problem)
    num_classes = cfg.num_classes or len(classes)
    if num_classes < len(classes):
        raise ConfigError(
            f"num_classes={num_classes} but {cfg.data_dir} has {len(classes)} class folders; "
            "raise num_classes or leave it unset"
        )
    if cfg.val_dir and list_classes(cfg.val_dir) != classes:
        raise ConfigError(f"val_dir {cfg.val_dir} has other class folders than data_dir {cfg.data_dir}")
    try:
        restarts = restarts_from_env(os.environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    began = time.perf_counter()
    found, source = resume_state(cfg, rank)
    read_seconds = time.perf_counter() - began
    if found is not None:
        ckpt.check_matches(found, cfg.arch, classes, "checkpoint")
    pretrained = None
    if found is None and cfg.pretrained:
        pretrained = ckpt.load(cfg.pretrained)
        ckpt.check_matches(pretrained, cfg.arch, None, "--pretrained checkpoint")
    return Inputs(classes, num_classes, found, pretrained, restarts, read_seconds=read_seconds, source=source)


def resume_state(cfg: TrainConfig, rank: int) -> tuple[Checkpoint | None, str | None]:
    """The snapshot the launchers agreed on (launcher.recovery), else the newest valid checkpoint."""
    choice = snapshots.resume_choice(os.environ)
    if choice is not None:
        try:
            return snapshots.load(choice.path), choice.source
        except ckpt.CheckpointError as exc:
            log(format_trainer_line(rank, f"skipping {exc}; resuming from the newest checkpoint instead"))
    found = ckpt.newest_valid(cfg.ckpt_path, log=lambda m: log(format_trainer_line(rank, m)), set_aside_bad=rank == 0)
    return found, f"checkpoint {found.path}" if found is not None else None


def build_run(cfg: TrainConfig, rank: int, group: Group, path: str = execution.GRAPH) -> Run:
    """This rank's share of the data (every epoch the same number of steps: drop_remainder), the model, the loss
    and an optimizer whose per-step learning rate follows its own ``global_step``. The recipe is the full job's
    whatever the group (elastic data parallel): its global batch, split over the ranks there, and its LR."""
    inputs = check_inputs(cfg, rank)
    workers = data_workers(cfg.num_parallel_workers)
    group_size = group.world_size
    dataset, classes = create_train_dataset(
        cfg.data_dir,
        image_size=cfg.image_size,
        batch_size=rank_batch(cfg.per_batch_size * group.full_world_size, group_size),
        rank=rank,
        group_size=group_size,
        num_workers=workers,
        seed=cfg.seed,
        classes=inputs.classes,
        color_jitter=cfg.color_jitter,
    )
    inputs.classes = classes  # the dataset's label order (the same folders)
    steps_per_epoch = dataset.get_dataset_size()
    if steps_per_epoch < 1:
        raise ConfigError(f"per_batch_size={cfg.per_batch_size}: not one global batch in {cfg.data_dir}; lower it")
    planned_steps = steps_per_epoch * cfg.max_epoch
    net = build_model(cfg.arch, inputs.num_classes)
    loss_fn = LabelSmoothingCrossEntropy(inputs.num_classes, cfg.label_smooth_factor if cfg.label_smooth else 0.0)
    lrs = learning_rates(
        base_lr=cfg.effective_lr(group.full_world_size),
        scheduler=cfg.lr_scheduler,
        steps_per_epoch=steps_per_epoch,
        max_epoch=cfg.max_epoch,
        warmup_epochs=cfg.warmup_epochs,
        T_max=cfg.effective_T_max(),
        eta_min=cfg.eta_min,
        lr_epochs=cfg.lr_epochs,
        lr_gamma=cfg.lr_gamma,
    )
    amp_level = cfg.effective_amp_level()
    scale_manager, optimizer_scale = loss_scaling(cfg, amp_level)
    optimizer = nn.Momentum(
        param_groups(net, cfg.weight_decay), ms.Tensor(lrs), cfg.momentum, loss_scale=optimizer_scale
    )
    step = execution.build_train_step(path, net, optimizer, loss_fn, amp_level, scale_manager, group_size)
    val_dataset = None
    if cfg.val_dir:
        val_dataset = create_eval_dataset(
            cfg.val_dir,
            image_size=cfg.image_size,
            batch_size=cfg.eval_batch_size or cfg.per_batch_size,
            rank=rank,
            group_size=group_size,
            num_workers=workers,
            resize=cfg.eval_resize,
            classes=classes,
        )
    return Run(
        cfg=cfg,
        rank=rank,
        group=group,
        inputs=inputs,
        dataset=dataset,
        val_dataset=val_dataset,
        steps_per_epoch=steps_per_epoch,
        total_steps=min(planned_steps, cfg.max_steps or planned_steps),
        net=net,
        train_net=step.cell,
        step=step,
        optimizer=optimizer,
        lrs=lrs,
        amp_level=amp_level,
        scale_manager=scale_manager,
    )


def use_compile_cache(run: Run) -> None:
    """When the launcher enables MindSpore's compile cache, scope it to this graph (see trainer.compile_cache)."""
    identity = dict(
        compile_cache.config_identity(run.cfg.flat()),
        mindspore=ms.__version__,
        execution=run.step.execution,
        num_classes=run.inputs.num_classes,
        group_size=run.group_size,
        rank_batch=run.rank_batch,
        lr_steps=len(run.lrs),
    )
    path = compile_cache.scope(os.environ, identity)
    if path is not None:
        found = compile_cache.holds_a_graph(path, run.rank)
        run.log(f"compile cache {path}: {'reusing the graph there' if found else 'empty; the graph is saved there'}")


def loss_scaling(cfg: TrainConfig, amp_level: str) -> tuple[Any, float]:
    """The loss-scale manager (None for fp32) and the scale the optimizer divides gradients by."""
    if amp_level == "O0" and not cfg.is_dynamic_loss_scale:
        # fp32 gradients do not underflow: a fixed scale would change nothing but cost a pass over every gradient.
        return None, 1.0
    if cfg.is_dynamic_loss_scale:  # the cell unscales: the optimizer must not scale again
        return ms.DynamicLossScaleManager(init_loss_scale=65536, scale_factor=2, scale_window=2000), 1.0
    # The seed's fixed scale: gradients are scaled by S in the cell and divided by S in the optimizer.
    return ms.FixedLossScaleManager(cfg.loss_scale, drop_overflow_update=False), cfg.loss_scale


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


# 2. Resume -----------------------------------------------------------------------------------------------------


def resume(run: Run) -> int:
    """Restore the chosen checkpoint (weights, BN statistics, moments, global_step) or initialise the weights from
    ``--pretrained``; returns the global step to start at, which every rank must share."""
    start_step = 0
    found, pretrained = run.inputs.resume, run.inputs.pretrained
    if found is not None:
        began = time.perf_counter()
        ckpt.restore_training_state(run.train_net, found)
        restore = time.perf_counter() - began
        start_step = found.step
        is_checkpoint = is_checkpoint_file(found.path)
        where = f"{found.path} at step {start_step}" if is_checkpoint else run.inputs.source
        run.log(format_resumed(str(where), found.epoch))
        read = run.inputs.read_seconds
        what = "checkpoint" if is_checkpoint else "snapshot"
        run.log(f"loaded {what} in {read + restore:.2f} s (read {read:.2f} s, restore {restore:.2f} s)")
        if found.meta.get("steps_per_epoch") != run.steps_per_epoch:
            run.log(f"note: {run.steps_per_epoch} steps/epoch now, {found.meta.get('steps_per_epoch')} before")
        global_step = int(run.optimizer.global_step.asnumpy()[0])
        if global_step != start_step:
            run.log(f"note: optimizer global_step {global_step} != {start_step}")
    elif pretrained is not None:
        not_loaded = ckpt.load_weights(run.net, pretrained)
        run.log(f"initialised from {pretrained.path}; not loaded: {', '.join(not_loaded) or 'none'}")
    steps = all_reduce_sum(np.array([start_step]), run.group_size)
    if run.group_size > 1 and steps[0] != start_step * run.group_size:
        raise RuntimeError(f"ranks resumed from different steps (rank {run.rank}: {start_step}); is ckpt_path shared?")
    return start_step


# 3. Status -----------------------------------------------------------------------------------------------------


class Status:
    """status.json on rank 0 (other ranks keep the fields only); fields per docs/INTERFACES.md. The training
    thread and the checkpoint writer both update it, so each update is one locked step."""

    def __init__(self, path: Path, enabled: bool, **static: Any) -> None:
        self.path, self.enabled = path, enabled
        self.fields: dict[str, Any] = {"loss": None, "lr": None, "img_per_sec": None, "eta_seconds": None}
        self.fields.update({"checkpoint": None, "best": None}, **static)
        self.written = 0.0
        self.history = History(None)  # rank 0's metrics history (open_history)
        self.lock = threading.RLock()

    def update(self, **fields: Any) -> None:
        """A change of state, checkpoint or best: written at once."""
        with self.lock:
            self.fields.update(fields)
            if self.enabled:
                write_status(self.path, **self.fields)
                self.written = time.monotonic()

    def progress(self, **fields: Any) -> None:
        """Step, loss, speed: kept, and written when the last write is STATUS_SECONDS old."""
        with self.lock:
            self.fields.update(fields)
            if time.monotonic() - self.written >= STATUS_SECONDS:
                self.update()

    def mark_failed(self, reason: str | None = None) -> None:
        """Best effort on the way out: the volume may be the reason for the failure."""
        with contextlib.suppress(OSError):
            self.update(state="failed", reason=reason)


def open_status(run: Run, start_step: int) -> Status:
    """From here on rank 0 writes: the checkpoint directory (left-over temporaries removed) and status.json,
    keeping the best result of the run being resumed."""
    if run.writes_checkpoints:
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        for path in ckpt.remove_stale_temporaries(run.ckpt_dir):
            run.log(f"removed the temporary {path.name} of an interrupted save")
    status = Status(
        run.ckpt_dir / STATUS_FILE,
        enabled=run.rank == 0,
        state="starting",
        reason=None,
        epoch=start_step // run.steps_per_epoch,
        max_epoch=run.cfg.max_epoch,
        step=start_step,
        total_steps=run.total_steps,
        rank_size=run.group_size,
        group=run.group.to_record(),
        restarts=run.inputs.restarts,
        resumed_from=run.inputs.source,
    )
    found = run.inputs.resume
    previous = read_status(run.ckpt_dir / STATUS_FILE) if found is not None else None
    newest = str(found.path) if found and is_checkpoint_file(found.path) else (previous or {}).get("checkpoint")
    status.update(best=previous.get("best") if previous else None, checkpoint=newest)
    return status


def open_history(run: Run, start_step: int) -> History:
    """Rank 0 appends to metrics.jsonl and TensorBoard files (contract.metrics), starting with this attempt's
    record, which it also logs: on a cluster `jobctl plot` rebuilds the history from rank 0's log."""
    if run.rank != 0:
        return History(None)
    metrics_file, tensorboard_dir = history_paths(run.cfg.ckpt_path)
    tensorboard = TensorBoard(tensorboard_dir) if TensorBoard.available() else None
    if tensorboard is None:
        run.log("note: tensorboardX is not installed, so no TensorBoard files (pip install 'resnext-jobs[train]')")
    history = History(metrics_file, tensorboard, restarts=run.inputs.restarts["count"])
    found = run.inputs.resume
    record = history.attempt(
        start_step,
        epoch=start_step // run.steps_per_epoch,
        checkpoint=str(found.path) if found and is_checkpoint_file(found.path) else None,
        source=run.inputs.source,
        last_failure=os.environ.get(Var.LAST_FAILURE) or None,
        arch=run.cfg.arch,
        rank_size=run.group_size,
        total_steps=run.total_steps,
        max_epoch=run.cfg.max_epoch,
    )
    run.log(log_record_line(record))
    run.log(log_record_line(history.segment(start_step, epoch=start_step // run.steps_per_epoch, group=run.group)))
    return history


# 4. The loop ---------------------------------------------------------------------------------------------------


def train_loop(run: Run, status: Status, saving: Checkpointer, start_step: int) -> str:
    """One step (or one sink chunk) at a time, so every rank can agree to stop at the same step."""
    stop = StopRequest()
    stepper = Stepper(run, start_step)
    progress = ProgressReport(run, status)
    divergence = DivergenceGuard(run.cfg.diverge_steps)
    step = start_step
    saved_step = start_step if run.inputs.resume is not None else -1
    status.update(state="running")
    run.log(describe_run(run, start_step=start_step, stepper=stepper))
    while step < run.total_steps:
        epoch = step // run.steps_per_epoch + 1  # 1-based epoch this step belongs to
        n = min(stepper.chunk, run.total_steps - step)
        began, busy = time.perf_counter(), saving.busy
        loss = stepper.run_steps(n, step)
        step += n
        saving.check()  # a background save that failed ends the run here, as a synchronous one would have
        saving.timed(time.perf_counter() - began, n, busy)
        progress.steps_done(epoch=epoch, step=step, count=n, loss=loss)
        divergence.check(loss, step=step, count=n, lr=float(run.lrs[step - 1]))
        if checkpoint_due(run, step=step, count=n) and divergence.bad_steps == 0:  # never save NaN weights
            saving.save_step(step)
            saved_step = step
        else:
            saving.snapshot_step(step)
        if run.val_dataset is not None and step % run.steps_per_epoch == 0 and epoch % run.cfg.eval_interval == 0:
            with progress.meter.paused():
                validate(run, saving, epoch=epoch, step=step)
        if all_reduce_max(int(stop.requested), run.group_size):
            return stop_run(run, status, saving, epoch=epoch, step=step, saved=saved_step == step)
    return finish_run(run, status, saving, step=step, saved=saved_step == step)


class StopRequest:
    """SIGTERM sets a flag; the loop acts on it at the next step boundary (never mid-step)."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


class Stepper:
    """Runs training steps: a device-side chunk of ``chunk`` steps in sink mode (graph only), else one batch at a
    time through ``run.step`` (graph, or PyNative + jit: trainer.execution)."""

    def __init__(self, run: Run, start_step: int) -> None:
        self.step, self.dataset, self.log = run.step, run.dataset, run.log
        sink = run.cfg.effective_sink() and run.step.execution == execution.GRAPH
        self.chunk = sink_chunk(run.steps_per_epoch) if sink else 1
        # The data position: the pipeline starts at the batch of start_step (MindSpore skips the batches done
        # without running their transforms); a sink at the chunk boundary at or before it (sink steps end on one).
        self.epochs = run.cfg.max_epoch
        self.sink: Any = None
        self.batches: Iterator[tuple[Any, Any]] | None = None
        if self.chunk > 1:
            order.seek(run.dataset, start_step, align=self.chunk)  # before the sink reads the pipeline
            self.sink = ms.data_sink(run.train_net, run.dataset, sink_size=self.chunk)
        else:
            self.batches = order.batches_from(run.dataset, start_step, self.epochs)
        self.compiled = False

    def run_steps(self, count: int, step: int) -> float:
        """``count`` steps after global step ``step``; the loss of the last one."""
        if self.sink is not None and count == self.chunk:
            began = time.perf_counter()
            loss = execution.first_output(self.sink())
            if not self.compiled:  # the sink graph compiles inside its first call
                self.log(f"ran the first sink chunk (graph compile included) in {time.perf_counter() - began:.2f} s")
                self.compiled = True
            return loss
        if self.batches is None:  # a short tail in sink mode (max_steps): finish it step by step
            self.batches = order.batches_from(self.dataset, step, self.epochs)
        loss = 0.0
        for _ in range(count):
            images, labels = next(self.batches)
            first = None if self.compiled else self.compile(images, labels)
            loss = self.step(images, labels) if first is None else first
        return loss

    def compile(self, images: Any, labels: Any) -> float | None:
        """Compile the step on its own where MindSpore can (graph; the call after it reuses it), so recovery time
        can be split up; a jit step compiles inside its first call, which is then the step (its loss returned)."""
        began = time.perf_counter()
        loss = self.step.compile(images, labels)
        what = "the train graph" if loss is None else "the train step (mindspore.jit, first step included)"
        self.log(f"compiled {what} in {time.perf_counter() - began:.2f} s")
        self.compiled = True
        return loss


def sink_chunk(steps_per_epoch: int) -> int:
    """The largest divisor of the epoch length up to SINK_STEPS_MAX, so chunks never straddle epochs."""
    return max(d for d in range(1, min(SINK_STEPS_MAX, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


class ProgressReport:
    """The progress line every ``log_interval`` steps (and at least every LOG_SECONDS), and status.json's
    progress fields; the meter times steady-state steps only."""

    def __init__(self, run: Run, status: Status) -> None:
        self.run, self.status = run, status
        self.meter = ThroughputMeter(skip=1)
        self.last_line = time.monotonic()

    def steps_done(self, epoch: int, step: int, count: int, loss: float) -> None:
        run, meter = self.run, self.meter
        meter.step_done(run.global_batch * count)
        eta = meter.eta_seconds((run.total_steps - step) * run.global_batch)
        lr = float(run.lrs[step - 1])
        self.status.progress(epoch=epoch, step=step, loss=loss, lr=lr, img_per_sec=meter.img_per_sec, eta_seconds=eta)
        due = step % run.cfg.log_interval < count or step == run.total_steps
        if due or time.monotonic() - self.last_line >= LOG_SECONDS:
            line = format_progress(
                rank=run.rank,
                epoch=epoch,
                max_epoch=run.cfg.max_epoch,
                step=step,
                total_steps=run.total_steps,
                loss=loss,
                lr=lr,
                img_per_sec=meter.img_per_sec,
                eta_seconds=eta,
            )
            # The record first: once the line is out, the step is in metrics.jsonl (and TensorBoard) for good.
            self.status.history.train(step, epoch, loss=loss, lr=lr, img_per_sec=meter.img_per_sec, eta_seconds=eta)
            log(line)
            self.last_line = time.monotonic()


def describe_run(run: Run, start_step: int, stepper: Stepper) -> str:
    cfg = run.cfg
    if run.scale_manager is None:
        scale = "none (fp32)"
    else:
        scale = "dynamic" if cfg.is_dynamic_loss_scale else f"fixed {cfg.loss_scale:g}"
    return (
        f"training {cfg.arch} on {cfg.platform} x{run.describe_group()}: {len(run.inputs.classes)} classes, "
        f"{run.steps_per_epoch} steps/epoch, steps {start_step}->{run.total_steps}, global batch {run.global_batch}, "
        f"amp {run.amp_level}, loss scale {scale}, sink {f'{stepper.chunk} steps' if stepper.sink else 'off'}, "
        f"execution {run.step.execution}"
    )


# 5. Checkpoint and validate ------------------------------------------------------------------------------------


def checkpoint_due(run: Run, step: int, count: int) -> bool:
    """Every ``ckpt_interval`` steps (0: every epoch), and at the last step."""
    due = step % run.cfg.ckpt_interval < count if run.cfg.ckpt_interval else step % run.steps_per_epoch == 0
    return due or step == run.total_steps


class Checkpointer:
    """Step checkpoints and best.ckpt of the ranks that save. With ``async_save`` the parameters are copied to host
    memory at the step boundary and written (temporary, fsync, rename, prune) on the writer thread while training
    goes on; at most one write is in flight. status.json names a checkpoint only once it is in place."""

    def __init__(self, run: Run, status: Status) -> None:
        self.run, self.status = run, status
        self.saver = BackgroundSaver(background=run.cfg.async_save, log=run.log)
        best = status.fields.get("best")
        self.best_top1: float | None = best["top1"] if best else None  # also counts a best.ckpt still being written
        self.buffer: ckpt.Snapshot | None = None  # host memory reused by every snapshot
        self.snapshot_dir = snapshots.writer_dir(os.environ) if run.cfg.snapshot_interval != 0 else None
        self.pacer = snapshots.SnapshotPacer(run.cfg.snapshot_interval, run.log) if self.snapshot_dir else None
        self.snapshots_written = 0

    def check(self) -> None:
        self.saver.check()

    @property
    def busy(self) -> bool:
        return self.saver.writing is not None

    def timed(self, seconds: float, steps: int, busy: bool) -> None:
        """A step's (or chunk's) duration, for the snapshot pacer."""
        if self.pacer is not None:
            self.pacer.step_done(seconds, steps, busy)

    def snapshot_step(self, step: int) -> None:
        """A snapshot into the pod's memory when one is due; skipped while the previous write is still going."""
        if self.pacer is None or not self.pacer.due(step) or self.busy:
            return
        epoch = math.ceil(step / self.run.steps_per_epoch)
        self._save(f"the snapshot of step {step}", None, self.run.meta(epoch, step), None, snapshot=True)

    def save_step(self, step: int) -> None:
        """``<arch>-<epoch>_<step>.<ckpt_format>``, then keep only the newest ``keep_checkpoint_max``."""
        run = self.run
        if not run.writes_checkpoints:
            self.snapshot_step(step)
            return
        epoch = math.ceil(step / run.steps_per_epoch)
        path = run.ckpt_dir / ckpt.checkpoint_name(run.cfg.arch, epoch, step, run.file_rank, run.cfg.ckpt_format)

        def done(saved: Path) -> None:
            ckpt.prune(run.ckpt_dir, run.cfg.keep_checkpoint_max, run.file_rank, saved=saved, log=run.log)
            self.status.update(checkpoint=str(saved))

        self._save(f"the checkpoint of step {step}", path, run.meta(epoch, step), done, snapshot=self.pacer is not None)

    def save_best(self, epoch: int, step: int, result: dict[str, Any]) -> None:
        """best.ckpt on rank 0 when ``result`` beats the best so far (of this run and the one it resumed)."""
        if self.run.rank != 0 or (self.best_top1 is not None and result["top1"] <= self.best_top1):
            return
        self.best_top1 = result["top1"]

        def done(saved: Path) -> None:
            self.status.update(best={"top1": result["top1"], "checkpoint": str(saved)})

        meta = dict(self.run.meta(epoch, step), **result)
        best = ckpt.best_name(self.run.cfg.ckpt_format)
        self._save(f"{best} of step {step}", self.run.ckpt_dir / best, meta, done, snapshot=False)

    def _save(
        self, what: str, path: Path | None, meta: dict[str, Any], done: Callable[[Path], None] | None, snapshot: bool
    ) -> None:
        """One host copy at the step boundary feeds the pod's snapshot and the checkpoint (one copy, not two)."""
        self.saver.wait(reason=f"{what} is due")  # first: never two snapshots in memory
        began = time.perf_counter()
        source: nn.Cell | ckpt.Snapshot = self.run.train_net
        if self.saver.background or snapshot:  # the previous write is done (waited above): its buffer is free again
            source = self.buffer = ckpt.snapshot(self.run.train_net, reuse=self.buffer)
        copied = time.perf_counter() - began
        if snapshot and self.pacer is not None:
            self.pacer.taken(int(meta["step"]), copied)

        def write() -> None:
            if snapshot and isinstance(source, ckpt.Snapshot):
                self._write_snapshot(source, meta)
            if path is None or done is None:
                return
            if self.saver.background:
                lower_priority()  # this thread only: the snapshot above was written at full speed
            began = time.perf_counter()
            saved = ckpt.save(source, path, meta)
            done(saved)
            size = saved.stat().st_size / 1e6
            how = f"in the background, after a {copied:.2f} s copy" if self.saver.background else "synchronously"
            self.run.log(format_saved(str(saved), f"{size:.1f} MB in {time.perf_counter() - began:.2f} s, {how}"))

        self.saver.start(what, write)

    def _write_snapshot(self, source: ckpt.Snapshot, meta: dict[str, Any]) -> None:
        """On the writer thread. A failure (pod memory full) turns snapshots off; training goes on."""
        assert self.snapshot_dir is not None
        began = time.perf_counter()
        try:
            header = snapshots.write(self.snapshot_dir, source, meta, pod=snapshots.pod_index(os.environ))
        except OSError as exc:
            self.run.log(f"cannot write a snapshot into {self.snapshot_dir} ({exc}); snapshots off for this attempt")
            self.pacer = None
            return
        if not self.snapshots_written:
            self.run.log(f"first {snapshots.describe(header, time.perf_counter() - began, self.snapshot_dir)}")
        self.snapshots_written += 1

    def finish(self) -> None:
        """Before the run ends: the save in flight is in place (or its failure raised)."""
        self.saver.wait()

    def close(self) -> None:
        self.saver.close()


def validate(run: Run, saving: Checkpointer, epoch: int, step: int) -> None:
    """Top-1/top-5 on the validation split (all ranks); rank 0 keeps the best as best.ckpt."""
    assert run.val_dataset is not None
    run.net.set_train(False)
    result = score(run.net, run.val_dataset, run.group_size)
    run.net.set_train(True)
    run.log(format_validation(epoch, run.cfg.max_epoch, step, run.total_steps, result))
    saving.status.history.validation(step, epoch, result)
    saving.save_best(epoch, step, result)


# 6. Stop -------------------------------------------------------------------------------------------------------


def stop_run(run: Run, status: Status, saving: Checkpointer, epoch: int, step: int, saved: bool) -> str:
    """Every rank agreed on SIGTERM at ``step``: save it (if not yet), wait until it is in place, and stop."""
    run.log(f"SIGTERM: stopping at step {step}")
    if not saved:
        saving.save_step(step)
    saving.finish()
    status.update(state="stopped", epoch=epoch, step=step)
    return "stopped"


def finish_run(run: Run, status: Status, saving: Checkpointer, step: int, saved: bool) -> str:
    """The last step: validate a partial last epoch (max_steps), save, wait for the writes, mark it completed."""
    if run.val_dataset is not None and step % run.steps_per_epoch != 0:
        validate(run, saving, epoch=math.ceil(step / run.steps_per_epoch), step=step)
    if not saved:
        saving.save_step(step)
    saving.finish()
    status.update(state="completed", step=step, eta_seconds=0)
    run.log(f"done: {step} steps")
    return "completed"
