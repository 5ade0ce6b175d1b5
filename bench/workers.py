"""Long-lived benchmark workers, one framework and task per process (``python -m bench.workers KIND ...``).

Each worker builds its model, runs ``--warmup`` untimed units (the first compiles), prints ``ready`` and the JSON
``{"first_unit_seconds": s}`` (the first unit, compile included: ``bench.execution`` reports it), then runs
one timed unit per ``go`` line on stdin and answers with one JSON line ``{"seconds": s, "images": n}``, until
EOF. Keeping workers alive lets the driver (``bench.cpu_speed``) interleave frameworks unit by unit, so other
load on the machine slows all of them alike; compile time is never timed.

Kinds: ``ms-train`` / ``torch-train`` (one SGD-momentum step with label-smoothing loss on a random batch),
``ms-step`` (the trainer's own step, ``trainer.execution.build_train_step``, in ``--execution`` graph or pynative),
``ms-eval`` / ``torch-eval`` (one forward batch), ``ms-evaluate`` (one pass of ``trainer.evaluate.score`` over
``--data``: the evaluation pipeline, the BN-folded network and the top-k counting, as ``trainer.evaluate`` runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np

ARCH, CLASSES, SIZE = "resnext101_64x4d", 1000, 224
LR, MOMENTUM, WEIGHT_DECAY, SMOOTHING = 0.01, 0.9, 1e-4, 0.1

Unit = Callable[[], int]  # runs one unit of work, returns the images it processed


def _random_batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
    return images, rng.integers(0, CLASSES, batch).astype(np.int32)


def _ms_setup(tuning: str) -> None:
    import mindspore as ms

    from trainer.cpu import CpuTuning, apply_cpu_tuning

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    apply_cpu_tuning(CpuTuning.from_json(tuning) if tuning else CpuTuning())
    ms.set_seed(1)


def ms_train(batch: int, args: argparse.Namespace) -> Unit:
    import mindspore as ms
    from mindspore import nn

    from trainer.loss import LabelSmoothingCrossEntropy
    from trainer.model import build_model

    _ms_setup(args.ms_tuning)
    net = build_model(ARCH, CLASSES)
    optimizer = nn.Momentum(net.trainable_params(), LR, MOMENTUM, weight_decay=WEIGHT_DECAY)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, LabelSmoothingCrossEntropy(CLASSES, SMOOTHING)), optimizer)
    step.set_train()
    images, labels = (ms.Tensor(a) for a in _random_batch(batch))

    def unit() -> int:
        step(images, labels).asnumpy()
        return batch

    return unit


def ms_step(batch: int, args: argparse.Namespace) -> Unit:
    """The trainer's training step (recipe param groups, a learning-rate table) in ``args.execution``."""
    import mindspore as ms
    from mindspore import nn

    from trainer import execution
    from trainer.cpu import CpuTuning, apply_cpu_tuning
    from trainer.loop import param_groups
    from trainer.loss import LabelSmoothingCrossEntropy
    from trainer.model import build_model

    execution.set_mode(args.execution)
    ms.set_device("CPU")
    apply_cpu_tuning(CpuTuning.from_json(args.ms_tuning) if args.ms_tuning else CpuTuning())
    ms.set_seed(1)
    net = build_model(ARCH, CLASSES)
    lrs = ms.Tensor(np.full(10_000, LR, np.float32))
    optimizer = nn.Momentum(param_groups(net, WEIGHT_DECAY), lrs, MOMENTUM)
    loss_fn = LabelSmoothingCrossEntropy(CLASSES, SMOOTHING)
    step = execution.build_train_step(args.execution, net, optimizer, loss_fn, "O0", None, 1)
    images, labels = (ms.Tensor(a) for a in _random_batch(batch))

    def unit() -> int:
        step(images, labels)
        return batch

    return unit


def ms_eval(batch: int, args: argparse.Namespace) -> Unit:
    import mindspore as ms

    from trainer.fold_bn import fold_batchnorm
    from trainer.model import build_model

    _ms_setup(args.ms_tuning)
    net = build_model(ARCH, CLASSES)
    net.set_train(False)
    net = fold_batchnorm(net, enabled=args.fold_bn)
    images = ms.Tensor(_random_batch(batch)[0])

    def unit() -> int:
        net(images).asnumpy()
        return batch

    return unit


def ms_evaluate(batch: int, args: argparse.Namespace) -> Unit:
    from trainer.data import create_eval_dataset, list_classes
    from trainer.evaluate import score
    from trainer.fold_bn import fold_batchnorm
    from trainer.model import build_model

    _ms_setup(args.ms_tuning)
    classes = list_classes(args.data)
    net = build_model(ARCH, CLASSES)
    net.set_train(False)
    net = fold_batchnorm(net, enabled=args.fold_bn)
    dataset = create_eval_dataset(args.data, SIZE, batch, num_workers=2, classes=classes)

    def unit() -> int:
        return int(score(net, dataset, 1)["images"])

    return unit


def _torch_model(threads: int) -> object:
    import torch
    import torchvision

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    return torchvision.models.resnext101_64x4d().to(memory_format=torch.channels_last)


def torch_train(batch: int, args: argparse.Namespace) -> Unit:
    import torch

    model = _torch_model(args.threads)
    model.train()  # type: ignore[attr-defined]
    optimizer = torch.optim.SGD(
        model.parameters(),  # type: ignore[attr-defined]
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=SMOOTHING)
    images, labels = _random_batch(batch)
    x = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels).long()

    def unit() -> int:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)  # type: ignore[operator]
        loss.backward()
        optimizer.step()
        loss.item()
        return batch

    return unit


def torch_eval(batch: int, args: argparse.Namespace) -> Unit:
    import torch

    model = _torch_model(args.threads)
    model.eval()  # type: ignore[attr-defined]
    x = torch.from_numpy(_random_batch(batch)[0]).contiguous(memory_format=torch.channels_last)

    def unit() -> int:
        with torch.inference_mode():
            model(x).sum().item()  # type: ignore[operator]
        return batch

    return unit


KINDS: dict[str, Callable[[int, argparse.Namespace], Unit]] = {
    "ms-train": ms_train,
    "ms-step": ms_step,
    "ms-eval": ms_eval,
    "ms-evaluate": ms_evaluate,
    "torch-train": torch_train,
    "torch-eval": torch_eval,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch intra-op threads")
    parser.add_argument("--ms_tuning", default="", help="trainer.cpu.CpuTuning fields as JSON (default: the trainer's)")
    parser.add_argument("--no-fold-bn", dest="fold_bn", action="store_false", help="ms-eval: keep the BN layers")
    parser.add_argument("--data", default=None, help="ms-evaluate: an ImageNet-layout split")
    parser.add_argument("--execution", default="graph", choices=["graph", "pynative"], help="ms-step: the path")
    args = parser.parse_args(argv)
    unit = KINDS[args.kind](args.batch, args)
    first = None
    for _ in range(args.warmup):
        start = time.perf_counter()
        unit()
        first = time.perf_counter() - start if first is None else first
    print("ready", flush=True)
    print(json.dumps({"first_unit_seconds": first}), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            continue
        start = time.perf_counter()
        images = unit()
        print(json.dumps({"seconds": time.perf_counter() - start, "images": images}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
