"""ImageNet-style input pipelines (one folder per class) and a small synthetic dataset for tests and demos.

Training follows the seed: fused ``RandomCropDecodeResize`` (decode only the crop), horizontal flip, the model
zoo's ``RandomColorAdjust(0.4, 0.4, 0.4)`` (config key ``color_jitter``; the seed README leaves it out), Normalize,
HWC2CHW, whole global batches only, in an order that does not depend on the number of ranks (trainer.order).
Evaluation decodes, resizes, centre-crops and keeps the last partial batch so every image is scored exactly once.

Unreadable images never stop a run. Two layers:

1. ``scan_images`` reads each file's first and last bytes (empty, wrong magic number, JPEG without its end
   marker) and confirms suspects with a full Pillow decode. Both pipelines leave the files it finds out of their
   samplers, and it logs and counts them. This is not optional: MindSpore 2.10's JPEG decoder dies with SIGFPE
   (whatever the error mode) on a JPEG truncated inside its headers, and its non-fused ``Decode`` writes
   ``./abnormal_image.jpg`` into the working directory on every failure.
2. MindSpore's ``ErrorSamplesMode`` catches what the scan misses (files that decode in Pillow but not in
   MindSpore): training uses REPLACE (a bad sample is replaced by a healthy one, so every rank keeps the same
   number of steps per epoch and the per-step learning-rate array stays aligned); evaluation uses SKIP. The mode
   is process-global in MindSpore, so once a training pipeline exists in a process, REPLACE stays on for every
   pipeline of that process.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from PIL import Image

from contract.config import ZOO_COLOR_JITTER
from contract.imagefolder import EXTENSIONS, class_dirs, image_names
from trainer.bars import progress_bar

log = logging.getLogger(__name__)

# The seed's normalisation (ImageNet RGB statistics), applied to 0-255 pixels.
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# First two bytes of each format, and the bytes a complete file ends with (None: no fixed ending).
_FORMATS = {b"\xff\xd8": b"\xff\xd9", b"\x89P": b"IEND\xaeB`\x82", b"BM": None}
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_SEGMENTS = 32  # segments walked looking for the SOF before giving up (the end-marker check still runs)
_SCAN_THREADS = 16  # the scan is I/O-bound (two small reads per file); threads hide the latency of a network volume


class DataError(ValueError):
    """A dataset directory the trainer cannot use; the message names the directory and the fix."""


# --------------------------------------------------------------------------------------------------------------
# Class folders and the unreadable-image scan


def _class_dirs(data_dir: Path) -> list[str]:
    if not data_dir.is_dir():
        hint = "it does not exist" if not data_dir.exists() else "it is not a directory"
        raise DataError(f"data directory {data_dir}: {hint}; point data_dir/val_dir at a folder of class folders")
    return class_dirs(data_dir)


def data_workers(requested: int) -> int:
    """MindSpore refuses more pipeline workers than CPU cores; the seed's 8 would fail on small nodes."""
    return max(1, min(requested, os.cpu_count() or 1))


def list_classes(data_dir: str | os.PathLike[str]) -> list[str]:
    """Sorted class-folder names of ``data_dir`` (class index = position), or DataError if it holds no images."""
    root = Path(data_dir)
    classes = _class_dirs(root)
    if not classes:
        raise DataError(
            f"data directory {root} has no class folders; expected {root}/<class>/<image>.JPEG "
            "(ImageNet layout: one sub-folder per class)"
        )
    if not any(image_names(root / c) for c in classes):
        raise DataError(
            f"data directory {root} has {len(classes)} class folder(s) but no images "
            f"(looked for {', '.join(sorted({e.lower() for e in EXTENSIONS}))}); check the path and the file names"
        )
    return classes


def _check_classes(data_dir: Path, classes: Sequence[str] | None) -> list[str]:
    found = list_classes(data_dir)
    if classes is None:
        return found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        # ImageFolderDataset would silently give such folders another class's label.
        raise DataError(
            f"data directory {data_dir} has class folder(s) {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''} that the model's {len(classes)} classes do not include; "
            "use a validation set with the training set's class folders"
        )
    return list(classes)


def _header_pixels(head: bytes, f: IO[bytes]) -> int | None:
    """Width x height as the file's header claims it (PNG's IHDR, JPEG's SOF marker), if found cheaply."""
    if head[:2] == b"\x89P":
        return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big") if len(head) >= 24 else None
    if head[:2] != b"\xff\xd8":
        return None
    f.seek(2)
    for _ in range(_JPEG_SEGMENTS):  # APPn/DQT/DHT... segments come first; each says its own length
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        if marker[1] in _JPEG_SOF:
            size = f.read(5)  # precision, height, width
            return int.from_bytes(size[1:3], "big") * int.from_bytes(size[3:5], "big") if len(size) == 5 else None
        f.seek(int.from_bytes(marker[2:4], "big") - 2, os.SEEK_CUR)
    return None


def _looks_unreadable(path: Path) -> bool:
    """Cheap check (a few small reads: magic number, claimed size, end marker); a suspect is confirmed by decoding
    it fully with Pillow. A header claiming more than Pillow's MAX_IMAGE_PIXELS is a suspect: MindSpore refuses to
    decode such a file (and would silently substitute another image in training)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:2] in _FORMATS:
                pixels = _header_pixels(head, f)
                ending = _FORMATS[head[:2]]
                if pixels is not None and pixels > (Image.MAX_IMAGE_PIXELS or pixels):
                    pass  # a decompression bomb or a corrupt header: Pillow decides below
                elif ending is None:
                    return False
                else:
                    f.seek(max(0, os.fstat(f.fileno()).st_size - len(ending)))
                    if f.read(len(ending)) == ending:
                        return False
    except OSError:
        return True
    try:
        with Image.open(path) as img:
            img.load()  # a truncated JPEG or trailing padding after the end marker: decode decides
        return False
    except Exception:  # Pillow raises many types for bad data
        return True


@dataclass(frozen=True)
class ImageScan:
    """What ``scan_images`` found in one directory."""

    data_dir: str
    num_images: int  # every image file, counted the way ImageFolderDataset counts them
    unreadable_indices: tuple[int, ...] = field(default=())  # positions in ImageFolderDataset's order
    unreadable: tuple[str, ...] = field(default=())  # their paths

    @property
    def num_unreadable(self) -> int:
        return len(self.unreadable)

    @property
    def readable_indices(self) -> list[int]:
        bad = set(self.unreadable_indices)
        return [i for i in range(self.num_images) if i not in bad]


def _scan_class(class_dir: Path) -> tuple[int, list[tuple[int, str]]]:
    names = image_names(class_dir) if class_dir.is_dir() else []
    return len(names), [(i, str(class_dir / n)) for i, n in enumerate(names) if _looks_unreadable(class_dir / n)]


@lru_cache(maxsize=16)
def _scan(data_dir: str, classes: tuple[str, ...]) -> ImageScan:
    root = Path(data_dir)
    # ImageFolderDataset reads folders in name order (whatever their labels), files in name order within each.
    with ThreadPoolExecutor(_SCAN_THREADS) as pool:
        per_class = list(pool.map(_scan_class, [root / name for name in sorted(classes)]))
    offset, indices, paths = 0, [], []
    for count, bad in per_class:
        indices += [offset + i for i, _ in bad]
        paths += [p for _, p in bad]
        offset += count
    if paths:
        log.warning(
            "%d unreadable image(s) in %s are left out: %s%s",
            len(paths),
            data_dir,
            ", ".join(paths[:5]),
            " ..." if len(paths) > 5 else "",
        )
    return ImageScan(data_dir, offset, tuple(indices), tuple(paths))


def scan_images(data_dir: str | os.PathLike[str], classes: Sequence[str] | None = None) -> ImageScan:
    """Find unreadable images (cached per process, so the pipelines and the trainer share one scan).

    Two small reads per file, in parallel over class folders; suspects are decoded fully with Pillow.
    """
    root = Path(data_dir)
    return _scan(str(root), tuple(_check_classes(root, classes)))


# --------------------------------------------------------------------------------------------------------------
# MindSpore pipelines


def _tolerate_bad_samples(training: bool) -> None:
    import mindspore.dataset as ds

    replace = ds.config.ErrorSamplesMode.REPLACE
    if training:
        ds.config.set_error_samples_mode(replace)
    elif ds.config.get_error_samples_mode() != replace:
        ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.SKIP)


def _check_shard(rank: int, group_size: int, batch_size: int, image_size: int, num_workers: int) -> None:
    if group_size < 1 or not 0 <= rank < group_size:
        raise DataError(f"rank {rank} is outside a group of {group_size}; rank must be in [0, group_size)")
    if batch_size < 1 or image_size < 16 or num_workers < 1:
        raise DataError(
            f"batch_size ({batch_size}), image_size ({image_size}) and num_workers ({num_workers}) must be "
            "positive (image_size >= 16)"
        )


def create_train_dataset(
    data_dir: str | os.PathLike[str],
    image_size: int,
    batch_size: int,
    rank: int = 0,
    group_size: int = 1,
    num_workers: int = 8,
    seed: int = 1,
    classes: Sequence[str] | None = None,
    color_jitter: float = ZOO_COLOR_JITTER,
) -> tuple[Any, list[str]]:
    """The seed's training pipeline for this rank's share: ``(dataset, classes)``.

    Each row is ``image float32 [batch_size, 3, image_size, image_size]``, ``label int32 [batch_size]``; the
    global batch is ``batch_size x group_size``. The order is :class:`trainer.order.TrainOrder`'s: new every
    epoch, a function of (seed, epoch, step) only, so ``dataset.get_dataset_size()`` (batches per epoch, the same
    on every rank) and the images of each global step do not depend on ``group_size``. Iterate it with
    :func:`trainer.order.batches_from` to start anywhere. ``seed`` also fixes the augmentation stream.
    ``color_jitter`` > 0 adds the model zoo's ``RandomColorAdjust`` (brightness, contrast and saturation each by
    up to that fraction) after the flip.
    """
    import mindspore.dataset as ds
    import mindspore.dataset.vision as V

    from trainer.order import TrainOrder, TrainSampler

    _check_shard(rank, group_size, batch_size, image_size, num_workers)
    root = Path(data_dir)
    names = _check_classes(root, classes)
    scan = scan_images(root, names)  # every rank needs the whole list to split the readable images the same way
    global_batch = batch_size * group_size
    readable = np.delete(np.arange(scan.num_images), list(scan.unreadable_indices))
    order = TrainOrder(readable, global_batch, seed)
    if order.steps_per_epoch < 1:
        raise DataError(
            f"{root} has {len(order.indices)} readable images: fewer than one global batch of {global_batch} "
            f"({batch_size} per rank x {group_size} rank(s)); lower per_batch_size or add images"
        )
    _tolerate_bad_samples(training=True)
    ds.config.set_seed(seed)
    dataset = ds.ImageFolderDataset(
        str(root),
        num_parallel_workers=num_workers,
        sampler=TrainSampler(order, rank, group_size),
        class_indexing={c: i for i, c in enumerate(names)},
        extensions=list(EXTENSIONS),
    )
    image_ops = [
        V.RandomCropDecodeResize(image_size, scale=(0.08, 1.0), ratio=(0.75, 1.333)),
        V.RandomHorizontalFlip(prob=0.5),
        *([V.RandomColorAdjust(color_jitter, color_jitter, color_jitter)] if color_jitter > 0 else []),
        V.Normalize(mean=MEAN, std=STD),
        V.HWC2CHW(),
    ]
    # Labels come out of ImageFolderDataset as int32 already: no TypeCast stage.
    dataset = dataset.map(image_ops, input_columns="image", num_parallel_workers=num_workers)
    return dataset.batch(batch_size, drop_remainder=True), names


def eval_resize_size(image_size: int) -> int:
    """The resize before the centre crop: 256 for 224 (ratio 0.875), scaled for other sizes."""
    return round(image_size * 256 / 224)


def eval_indices(scan: ImageScan, rank: int, group_size: int) -> list[int]:
    """This rank's images in ImageFolderDataset order: every ``group_size``-th from ``rank``, minus unreadable
    ones. The shards partition the readable images exactly (no padding duplicates, no drops)."""
    bad = set(scan.unreadable_indices)
    return [i for i in range(rank, scan.num_images, group_size) if i not in bad]


def create_eval_dataset(
    data_dir: str | os.PathLike[str],
    image_size: int,
    batch_size: int,
    rank: int = 0,
    group_size: int = 1,
    num_workers: int = 8,
    resize: Literal["square", "shorter"] = "square",
    classes: Sequence[str] | None = None,
) -> Any:
    """The evaluation pipeline for this rank's share of ``data_dir``.

    ``resize="square"`` is the seed (``Resize((256, 256))``, aspect ratio not kept); ``"shorter"`` resizes the
    shorter side to 256 (torchvision/mindcv). The last batch may be partial. Shards may differ by one image,
    and each rank's images are ``eval_indices(scan_images(...), rank, group_size)``, so
    ``len(eval_indices(...))`` is the number of rows this rank will score.
    """
    import mindspore.dataset as ds
    import mindspore.dataset.vision as V

    _check_shard(rank, group_size, batch_size, image_size, num_workers)
    if resize not in ("square", "shorter"):
        raise DataError(f"eval resize must be 'square' or 'shorter', got {resize!r}")
    root = Path(data_dir)
    names = _check_classes(root, classes)
    scan = scan_images(root, names)
    indices = eval_indices(scan, rank, group_size)
    if not indices:
        raise DataError(
            f"{root} has {scan.num_images} images ({scan.num_unreadable} unreadable): none left for rank {rank} "
            f"of {group_size}; evaluate with fewer ranks"
        )
    _tolerate_bad_samples(training=False)
    whole = group_size == 1 and not scan.unreadable_indices
    dataset = ds.ImageFolderDataset(
        str(root),
        num_parallel_workers=num_workers,
        shuffle=False if whole else None,
        sampler=None if whole else ds.SubsetSampler(indices),
        class_indexing={c: i for i, c in enumerate(names)},
        extensions=list(EXTENSIONS),
    )
    side = eval_resize_size(image_size)
    image_ops = [
        V.Decode(),
        V.Resize((side, side) if resize == "square" else side),
        V.CenterCrop(image_size),
        V.Normalize(mean=MEAN, std=STD),
        V.HWC2CHW(),
    ]
    dataset = dataset.map(image_ops, input_columns="image", num_parallel_workers=num_workers)
    return dataset.batch(batch_size, drop_remainder=False)


# --------------------------------------------------------------------------------------------------------------
# Synthetic dataset: `python -m trainer.data synth --out ROOT ...`


def _class_style(index: int, num_classes: int) -> tuple[np.ndarray, float, float]:
    """A class's colour (hue around the wheel), stripe angle and stripe frequency: distinct per class."""
    hue = index / num_classes
    rgb = np.array(
        [0.5 + 0.45 * math.cos(2 * math.pi * (hue - shift)) for shift in (0.0, 1 / 3, 2 / 3)], dtype=np.float32
    )
    angle = math.pi * ((index * 0.6180339887) % 1.0)
    cycles = 2.0 + (index % 4)  # stripes per image width
    return rgb, angle, cycles


def synth_image(index: int, num_classes: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 picture of class ``index``: class-coloured oriented stripes with a random phase, a
    randomly placed disc of the complementary colour, brightness jitter and noise. Colour and stripe direction
    survive random crops and flips, so the classes stay learnable under the training augmentation."""
    rgb, angle, cycles = _class_style(index, num_classes)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height)
    angle += rng.normal(0.0, 0.1)
    phase = rng.uniform(0, 2 * math.pi)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * cycles * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    img = rgb[None, None, :] * (0.55 + 0.45 * stripes[..., None])
    cx, cy, r = rng.uniform(0.2, 0.8) * width / max(width, height), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
    cy *= height / max(width, height)
    disc = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
    img[disc] = 1.0 - rgb
    img *= rng.uniform(0.85, 1.15)
    img += rng.normal(0.0, 0.05, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def write_synthetic(
    out: str | os.PathLike[str],
    num_classes: int,
    per_class: int,
    width: int,
    height: int | None = None,
    val_per_class: int = 10,
    seed: int = 1,
    quality: int = 90,
    on_image: Callable[[], None] | None = None,
) -> Path:
    """Write ``out/train/<class>/*.JPEG`` and ``out/val/<class>/*.JPEG`` (deterministic for a seed).

    Written into a temporary sibling first and renamed into place, so ``out`` is never half written. An
    existing ``out`` is replaced only if it is an earlier synthetic dataset (has ``synth.json``) or empty.
    """
    root = Path(out)
    height = height or width
    if num_classes < 2 or per_class < 1 or val_per_class < 0 or min(width, height) < 16 or not 1 <= quality <= 100:
        raise DataError(
            f"synth: need classes >= 2, per_class >= 1, val_per_class >= 0, size >= 16 "
            f"(got classes={num_classes}, per_class={per_class}, val_per_class={val_per_class}, "
            f"size={width}x{height})"
        )
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / "synth.json").is_file())):
        raise DataError(f"synth: {root} exists and is not an earlier synthetic dataset; choose an empty --out")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        digits = len(str(num_classes - 1))
        for split, count, split_id in (("train", per_class, 0), ("val", val_per_class, 1)):
            for c in range(num_classes):
                class_dir = tmp / split / f"class_{c:0{digits}d}"
                class_dir.mkdir(parents=True)
                for i in range(count):
                    rng = np.random.default_rng([seed, split_id, c, i])
                    pixels = synth_image(c, num_classes, width, height, rng)
                    Image.fromarray(pixels).save(class_dir / f"{class_dir.name}_{i:05d}.JPEG", quality=quality)
                    if on_image is not None:
                        on_image()
        meta = {"classes": num_classes, "per_class": per_class, "val_per_class": val_per_class, "seed": seed}
        (tmp / "synth.json").write_text(json.dumps({**meta, "width": width, "height": height}) + "\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _synth_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.data synth", description="write a learnable dataset")
    parser.add_argument("--out", required=True, help="root folder; gets train/ and val/")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per_class", type=int, default=40, help="training images per class")
    parser.add_argument("--val_per_class", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="image width and height in pixels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    total = args.classes * (args.per_class + args.val_per_class)
    try:
        with progress_bar("writing images", total, enabled=not args.quiet) as advance:
            root = write_synthetic(
                args.out,
                args.classes,
                args.per_class,
                args.size,
                val_per_class=args.val_per_class,
                seed=args.seed,
                on_image=advance,
            )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: synth: cannot write {args.out}: {exc.strerror}; choose a writable --out", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"wrote {args.classes} classes x ({args.per_class} train + {args.val_per_class} val) images of "
            f"{args.size}x{args.size} to {root}/train and {root}/val"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "synth":
        print("usage: python -m trainer.data synth --out ROOT [--classes K] [--per_class N] ...", file=sys.stderr)
        return 2
    return _synth_command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
