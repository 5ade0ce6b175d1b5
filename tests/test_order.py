"""The training sample order (trainer.order): a function of (seed, epoch, global step) only, so an elastic group
of any size trains the same images at each step, and a resume (resized or not) continues the order exactly."""

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract.group import GroupError
from trainer.data import MEAN, STD, create_train_dataset
from trainer.order import TrainOrder, batches_from

GLOBAL_BATCH = 12
WORLDS = (1, 2, 3, 4, 6)
IMAGES = 40  # 3 global batches of 12 per epoch, 4 images left over each epoch
EPOCHS = 3


def test_every_group_size_trains_the_same_images_at_each_step() -> None:
    order = TrainOrder(np.arange(3, 3 + 150), GLOBAL_BATCH, seed=7)  # 150 images: 12 steps, 6 left over
    assert order.steps_per_epoch == 12
    for epoch in range(2):
        steps = order.epoch_order(epoch).reshape(12, GLOBAL_BATCH)
        for world in WORLDS:
            shares = [order.rank_indices(epoch, rank, world).reshape(12, -1) for rank in range(world)]
            assert all(share.shape == (12, GLOBAL_BATCH // world) for share in shares)
            union = np.concatenate(shares, axis=1)
            np.testing.assert_array_equal(np.sort(union, axis=1), np.sort(steps, axis=1))
    first, second = order.epoch_order(0), order.epoch_order(1)
    assert len(set(first.tolist())) == 144 and set(first.tolist()) <= set(range(3, 153))  # no image twice
    assert not np.array_equal(first, second) and not np.array_equal(np.sort(first), first)  # shuffled, anew
    np.testing.assert_array_equal(TrainOrder(np.arange(3, 153), GLOBAL_BATCH, seed=7).epoch_order(1), second)
    with pytest.raises(GroupError, match="cannot be split evenly over 5"):
        order.rank_indices(0, 0, 5)


def _identity_images(root: Path) -> Path:
    """IMAGES single-colour PNGs in 4 class folders: image i (in ImageFolderDataset order) has red = 5 * i, which
    survives crop, resize and flip, so a pixel names the image."""
    for i in range(IMAGES):
        folder = root / f"class_{i // 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (5 * i, 0, 0)).save(folder / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _identity_images(tmp_path_factory.mktemp("order") / "train")


def _steps(root: Path, world: int, start: int) -> list[list[int]]:
    """The sorted images of each global step from ``start`` to the end of EPOCHS epochs, the ranks' shares
    joined, read from the pipeline's pixels; also checks each rank gets its share."""
    batches = []
    for rank in range(world):
        dataset, _ = create_train_dataset(
            root, 16, GLOBAL_BATCH // world, rank=rank, group_size=world, num_workers=2, seed=3, color_jitter=0.0
        )
        assert dataset.get_dataset_size() == 3  # steps/epoch, whatever the group size
        stream = batches_from(dataset, start, EPOCHS)
        batches.append([next(stream) for _ in range(3 * EPOCHS - start)])
    steps = []
    for per_rank in zip(*batches, strict=True):
        images = []
        for image, _ in per_rank:
            red = image.asnumpy()[:, 0, :, :] * STD[0] + MEAN[0]
            assert np.allclose(red, red[:, :1, :1], atol=0.05)  # one colour per image
            images += [round(value / 5) for value in red[:, 0, 0].tolist()]
        assert len(images) == GLOBAL_BATCH
        steps.append(sorted(images))
    return steps


def test_the_pipeline_order_does_not_depend_on_the_group_and_resumes_exactly(identity: Path) -> None:
    whole = _steps(identity, 2, 0)
    for epoch in range(EPOCHS):
        seen = [i for step in whole[3 * epoch : 3 * epoch + 3] for i in step]
        assert len(set(seen)) == 36  # no image twice within an epoch
    assert whole[:3] != whole[3:6]  # each epoch its own order
    assert _steps(identity, 4, 0) == whole
    assert _steps(identity, 3, 1) == whole[1:]  # resumed mid-epoch 1 with another group size
    assert _steps(identity, 1, 4) == whole[4:]  # and mid-epoch 2
    assert _steps(identity, 6, 6) == whole[6:]  # and at the start of epoch 3
