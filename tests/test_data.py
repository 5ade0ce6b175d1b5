"""Input pipelines, class folders, unreadable images and the synthetic dataset."""

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image

from trainer.data import (
    DataError,
    create_eval_dataset,
    create_train_dataset,
    eval_indices,
    list_classes,
    main,
    scan_images,
    write_synthetic,
)

CLASSES = 4


def _rows(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


def _pixels(root: Path, split: str, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for label, name in enumerate(list_classes(root / split)):
        for path in sorted((root / split / name).iterdir()):
            with Image.open(path) as img:
                xs.append(np.asarray(img.convert("RGB").resize((size, size)), np.float32).ravel())
            ys.append(label)
    return np.stack(xs), np.array(ys)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_synthetic(tmp_path_factory.mktemp("data") / "synth", CLASSES, 12, 48, val_per_class=11, seed=5)
    (root / "val" / "class_2" / "class_2_00003.JPEG").unlink()  # 43 validation images: not a multiple of 8
    return root


@pytest.fixture(scope="module")
def with_corrupt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = write_synthetic(tmp_path_factory.mktemp("bad") / "synth", 2, 10, 32, val_per_class=0, seed=2)
    good = (root / "train" / "class_0" / "class_0_00000.JPEG").read_bytes()
    bad = [root / "train" / "class_0" / "broken_garbage.JPEG", root / "train" / "class_1" / "broken_truncated.JPEG"]
    bad[0].write_bytes(b"this is not an image" * 20)
    bad[1].write_bytes(good[: len(good) // 2])
    bad.append(root / "train" / "class_1" / "broken_empty.JPEG")
    bad[2].write_bytes(b"")
    png = root / "train" / "class_0" / "ok.png"
    Image.open(root / "train" / "class_0" / "class_0_00001.JPEG").save(png)
    bad.append(root / "train" / "class_0" / "broken_truncated.png")
    bad[3].write_bytes(png.read_bytes()[:-100])
    # Bytes after the end marker are common in the wild and decode fine: must not be flagged.
    (root / "train" / "class_1" / "padded.JPEG").write_bytes(good + b"\0" * 64)
    return root / "train", bad


def test_list_classes_sorted_and_errors(tmp_path: Path) -> None:
    for name in ("b", "a", "C", ".cache"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "x.JPEG").write_bytes(b"")
    assert list_classes(tmp_path) == ["C", "a", "b"]
    with pytest.raises(DataError, match="does not exist"):
        list_classes(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        list_classes(tmp_path / "empty")
    (tmp_path / "only_text" / "k").mkdir(parents=True)
    (tmp_path / "only_text" / "k" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        list_classes(tmp_path / "only_text")


def test_train_batches(synth: Path) -> None:
    dataset, classes = create_train_dataset(synth / "train", image_size=32, batch_size=8, num_workers=2, seed=3)
    assert classes == [f"class_{i}" for i in range(CLASSES)]
    assert dataset.get_dataset_size() == 48 // 8
    rows = _rows(dataset)
    assert len(rows) == 6
    for image, label in rows:
        assert image.shape == (8, 3, 32, 32) and image.dtype == np.float32
        assert label.shape == (8,) and label.dtype == np.int32
    labels = np.concatenate([label for _, label in rows])
    assert sorted(np.bincount(labels, minlength=CLASSES)) == [12] * CLASSES  # one epoch = every image once
    pixels = np.concatenate([image for image, _ in rows])
    assert -2.2 < pixels.min() < 0 < pixels.max() < 2.7  # normalised with the ImageNet mean/std


def test_train_shards_split_the_epoch(synth: Path) -> None:
    # 48 images over 3 ranks = 16 each = 2 whole batches of 6 (4 images per rank dropped, like the seed).
    counts = []
    for rank in range(3):
        dataset, _ = create_train_dataset(synth / "train", 32, 6, rank=rank, group_size=3, num_workers=2)
        assert dataset.get_dataset_size() == 2
        counts.append(sum(len(label) for _, label in _rows(dataset)))
    assert counts == [12, 12, 12]


def test_train_refuses_a_batch_larger_than_the_shard(synth: Path) -> None:
    with pytest.raises(DataError, match=r"one global batch of 128 \(64 per rank x 2 rank\(s\)\); lower per_batch_size"):
        create_train_dataset(synth / "train", 32, 64, rank=0, group_size=2)
    with pytest.raises(DataError, match="rank 2 is outside a group of 2"):
        create_train_dataset(synth / "train", 32, 4, rank=2, group_size=2)


def test_eval_scores_every_image_once(synth: Path) -> None:
    classes = list_classes(synth / "train")
    dataset = create_eval_dataset(synth / "val", 40, 8, num_workers=2, classes=classes)
    rows = _rows(dataset)
    assert [len(label) for _, label in rows] == [8, 8, 8, 8, 8, 3]
    assert rows[0][0].shape == (8, 3, 40, 40) and rows[0][0].dtype == np.float32
    labels = np.concatenate([label for _, label in rows])
    np.testing.assert_array_equal(np.bincount(labels), [11, 11, 10, 11])


@pytest.mark.parametrize("resize", ["square", "shorter"])
def test_eval_shards_partition_the_images(synth: Path, resize: Literal["square", "shorter"]) -> None:
    per_rank = []
    for rank in range(3):
        dataset = create_eval_dataset(synth / "val", 32, 8, rank=rank, group_size=3, num_workers=2, resize=resize)
        per_rank.append(np.concatenate([label for _, label in _rows(dataset)]))
    assert [len(p) for p in per_rank] == [15, 14, 14]  # no padding duplicates, no drops
    np.testing.assert_array_equal(np.bincount(np.concatenate(per_rank)), [11, 11, 10, 11])


def test_eval_refuses_unknown_class_folders(synth: Path) -> None:
    with pytest.raises(DataError, match="class_3 that the model's 3 classes do not include"):
        create_eval_dataset(synth / "val", 32, 8, classes=["class_0", "class_1", "class_2"])


def test_unreadable_images_are_counted_and_left_out(
    with_corrupt: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, bad = with_corrupt
    monkeypatch.chdir(tmp_path)  # MindSpore's Decode dumps "./abnormal_image.jpg" on failures: must not happen
    scan = scan_images(train)
    assert scan.num_images == 26
    assert sorted(scan.unreadable) == sorted(str(p) for p in bad)
    assert len(scan.readable_indices) == 22

    dataset = create_eval_dataset(train, 32, 5, num_workers=2)
    assert sum(len(label) for _, label in _rows(dataset)) == 22 == len(eval_indices(scan, 0, 1))

    # Training shards the 22 readable images: 11 per rank = 2 batches of 5.
    seen = 0
    for rank in range(2):
        dataset, _ = create_train_dataset(train, 32, 5, rank=rank, group_size=2, num_workers=2)
        rows = _rows(dataset)
        assert len(rows) == dataset.get_dataset_size() == 2
        assert all(np.isfinite(image).all() for image, _ in rows)
        seen += sum(len(label) for _, label in rows)
    assert seen == 20
    assert not list(tmp_path.iterdir())


def test_synth_is_learnable(synth: Path) -> None:
    # Nearest class mean on raw 16x16 pixels: a weak classifier must beat chance (25%) by far.
    train_x, train_y = _pixels(synth, "train")
    val_x, val_y = _pixels(synth, "val")
    means = np.stack([train_x[train_y == c].mean(axis=0) for c in range(CLASSES)])
    predicted = ((val_x[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (predicted == val_y).mean() >= 0.8


def test_synth_is_deterministic_and_replaces_only_its_own_output(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", 3, 2, 24, val_per_class=1, seed=9)
    b = write_synthetic(tmp_path / "b", 3, 2, 24, val_per_class=1, seed=9)
    c = write_synthetic(tmp_path / "c", 3, 2, 24, val_per_class=1, seed=10)
    files = sorted(p.relative_to(a) for p in a.rglob("*.JPEG"))
    assert len(files) == 9
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)
    assert main(["synth", "--out", str(a), "--classes", "2", "--per_class", "1", "--size", "16", "--quiet"]) == 0
    assert len(list(a.rglob("*.JPEG"))) == 2 + 2 * 10

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    assert main(["synth", "--out", str(precious), "--quiet"]) == 2
    assert [p.name for p in precious.iterdir()] == ["keep.txt"]
    assert main(["synth", "--out", str(tmp_path / "x"), "--classes", "1"]) == 2
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "precious"]  # no temporary left over


def test_synth_cli(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "trainer.data", "synth", "--out", str(tmp_path / "d"), "--classes", "10"]
    done = subprocess.run([*cmd, "--per_class", "40", "--size", "64"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "d" / "train").rglob("*.JPEG"))) == 400
    assert list_classes(tmp_path / "d" / "val") == [f"class_{i}" for i in range(10)]


def write_png_bomb(path: Path, side: int = 100_000) -> None:
    """A valid PNG whose header claims side x side pixels (CRCs right, data tiny): it passes magic-number and
    end-marker checks, Pillow refuses it as a decompression bomb, MindSpore refuses to decode it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 49)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


COUNT_ROWS = """
import sys
from trainer.data import create_eval_dataset, create_train_dataset
train, val, mode = sys.argv[1:]
if mode == "validation":  # as in the trainer: the training pipeline exists first (MindSpore's REPLACE mode)
    create_train_dataset(train, 32, 4, num_workers=1)
rows = create_eval_dataset(val, 32, 4, num_workers=1).create_tuple_iterator(output_numpy=True, num_epochs=1)
print(sum(len(label) for _, label in rows))
"""


def test_an_image_with_an_absurd_header_is_skipped_and_counted_alike_in_validation_and_eval(tmp_path: Path) -> None:
    """Issue 24.7: a PNG named .JPEG claiming 100000² passed the quick scan; MindSpore replaced it silently during
    validation (102 images) and skipped it in `jobctl eval` (101). The scan now flags it: both count the same
    readable images, and both log the skipped one."""
    root = write_synthetic(tmp_path / "synth", 2, 8, 32, val_per_class=5, seed=4)
    bomb = root / "val" / "class_1" / "class_1_99999.JPEG"
    write_png_bomb(bomb)
    scan = scan_images(root / "val")
    assert scan.unreadable == (str(bomb),) and scan.num_images == 11
    # This tree's trainer package (the subprocess runs in tmp_path, where MindSpore may drop files).
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    counts = {}
    for mode in ("validation", "eval"):
        cmd = [sys.executable, "-c", COUNT_ROWS, str(root / "train"), str(root / "val"), mode]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        counts[mode] = int(done.stdout.split()[-1])
        assert f"1 unreadable image(s) in {root / 'val'} are left out: {bomb}" in done.stderr, done.stderr[-2000:]
    assert counts == {"validation": 10, "eval": 10}


def test_the_scan_reads_the_claimed_size_of_jpeg_and_png_cheaply(tmp_path: Path) -> None:
    from trainer.data import _header_pixels

    Image.new("RGB", (40, 30)).save(tmp_path / "a.JPEG", quality=90)
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    for name in ("a.JPEG", "a.png"):
        with open(tmp_path / name, "rb") as f:
            assert _header_pixels(f.read(24), f) == 1200, name
    write_png_bomb(tmp_path / "bomb.JPEG")
    with open(tmp_path / "bomb.JPEG", "rb") as f:
        assert _header_pixels(f.read(24), f) == 100_000**2


def test_the_model_zoo_colour_jitter_is_on_by_default_and_can_be_turned_off(synth: Path) -> None:
    """Issue 23.4: training applies RandomColorAdjust(0.4, 0.4, 0.4) as the model zoo did (color_jitter=0: off)."""
    import mindspore.dataset as ds

    def first_batch(**kwargs: float) -> np.ndarray:
        ds.config.set_seed(7)
        dataset, _ = create_train_dataset(synth / "train", 32, 8, num_workers=1, seed=3, **kwargs)
        return _rows(dataset)[0][0]

    plain, jittered, default = first_batch(color_jitter=0.0), first_batch(color_jitter=0.4), first_batch()
    assert np.array_equal(first_batch(color_jitter=0.0), plain)  # the same stream without the jitter
    assert not np.allclose(plain, jittered) and np.array_equal(default, jittered)
