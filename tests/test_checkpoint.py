"""trainer.checkpoint: atomic self-describing files, newest valid for resume, pruning, partial loads."""

from __future__ import annotations

import errno
import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # before mindspore loads (see trainer.cpu)

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from contract.files import DiskFullError
from trainer import checkpoint as ckpt

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")


def small_net(classes: int = 3) -> nn.Cell:
    return nn.SequentialCell(
        [nn.Conv2d(3, 4, 3, has_bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Dense(256, classes)]
    )


def train_net(steps: int) -> tuple[nn.Cell, nn.Momentum]:
    ms.set_seed(0)
    net = small_net()
    opt = nn.Momentum(net.trainable_params(), ms.Tensor(np.full(10, 0.1, np.float32)), 0.9)
    step = nn.TrainOneStepCell(
        nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")), opt
    )
    x = ms.Tensor(np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32))
    y = ms.Tensor(np.array([0, 2], np.int32))
    for _ in range(steps):
        step(x, y)
    return step, opt


def meta(step: int, arch: str = "resnext_tiny") -> dict[str, object]:
    return {"arch": arch, "epoch": 1, "step": step, "image_size": 8, "num_classes": 3, "classes": ["a", "b", "c"]}


def test_names_and_listing(tmp_path: Path) -> None:
    assert ckpt.checkpoint_name("resnext_tiny", 2, 40) == "resnext_tiny-2_40.ckpt"
    assert ckpt.checkpoint_name("resnext_tiny", 2, 40, rank=1) == "resnext_tiny-2_40-rank1.ckpt"
    for name in ["resnext_tiny-10_100.ckpt", "resnext_tiny-2_20.ckpt", "resnext_tiny-2_20-rank1.ckpt", "best.ckpt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".tmp-1-resnext_tiny-3_30.ckpt").write_bytes(b"x")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["resnext_tiny-2_20.ckpt", "resnext_tiny-10_100.ckpt"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path, rank=1)] == ["resnext_tiny-2_20-rank1.ckpt"]
    ckpt.remove_stale_temporaries(tmp_path)
    assert not list(tmp_path.glob(".tmp-*"))


def test_save_is_self_describing_and_leaves_no_temporary(tmp_path: Path) -> None:
    net, _ = train_net(2)
    path = ckpt.save(net, tmp_path / "resnext_tiny-1_2.ckpt", meta(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnext_tiny-1_2.ckpt"]
    loaded = ckpt.load(path)
    assert loaded.step == 2 and loaded.epoch == 1 and loaded.meta["classes"] == ["a", "b", "c"]
    assert "moments.0.weight" in loaded.params and "global_step" in loaded.params


def test_newest_valid_skips_reports_and_sets_aside_corrupt(tmp_path: Path) -> None:
    net, _ = train_net(1)
    good = ckpt.save(net, tmp_path / "resnext_tiny-1_5.ckpt", meta(5))
    data = good.read_bytes()
    (tmp_path / "resnext_tiny-1_6.ckpt").write_bytes(data[: len(data) // 2])  # truncated mid-write
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # a flipped bit: caught by the CRC
    (tmp_path / "resnext_tiny-1_7.ckpt").write_bytes(bytes(flipped))
    messages: list[str] = []
    found = ckpt.newest_valid(tmp_path, log=messages.append)
    assert found is not None and found.path == good
    assert len(messages) == 2 and "resnext_tiny-1_7.ckpt" in messages[0] and "resnext_tiny-1_6.ckpt" in messages[1]
    assert messages[1].endswith("set aside as resnext_tiny-1_6.ckpt.corrupt"), messages
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "resnext_tiny-1_5.ckpt",
        "resnext_tiny-1_6.ckpt.corrupt",
        "resnext_tiny-1_7.ckpt.corrupt",
    ]
    again = ckpt.newest_valid(tmp_path, log=messages.append)
    assert again is not None and again.path == good and len(messages) == 2  # not chosen again
    assert ckpt.newest_valid(tmp_path / "missing") is None


def test_other_ranks_report_but_leave_the_files(tmp_path: Path) -> None:
    net, _ = train_net(1)
    good = ckpt.save(net, tmp_path / "resnext_tiny-1_5.ckpt", meta(5))
    (tmp_path / "resnext_tiny-1_6.ckpt").write_bytes(good.read_bytes()[:100])
    messages: list[str] = []
    assert ckpt.newest_valid(tmp_path, log=messages.append, set_aside_bad=False).path == good  # type: ignore[union-attr]
    assert (tmp_path / "resnext_tiny-1_6.ckpt").is_file() and "set aside" not in messages[0]


def saved_steps(directory: Path, steps: tuple[int, ...]) -> list[Path]:
    net, _ = train_net(1)
    return [ckpt.save(net, directory / ckpt.checkpoint_name("resnext_tiny", 1, s), meta(s)) for s in steps]


def test_prune_keeps_newest_and_best(tmp_path: Path) -> None:
    saved_steps(tmp_path, (10, 20, 30, 40))
    (tmp_path / ckpt.BEST_NAME).write_bytes(b"x")
    removed = ckpt.prune(tmp_path, keep=2)
    assert [p.name for p in removed] == ["resnext_tiny-1_10.ckpt", "resnext_tiny-1_20.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.ckpt",
        "resnext_tiny-1_30.ckpt",
        "resnext_tiny-1_40.ckpt",
    ]


def test_prune_counts_only_complete_checkpoints_and_keeps_the_one_just_saved(tmp_path: Path) -> None:
    # The case: the newest (step 40) was truncated, the run resumed from 30 and saved 35.
    first, _, third, newest = saved_steps(tmp_path, (10, 20, 30, 40))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (just_saved,) = saved_steps(tmp_path, (35,))
    messages: list[str] = []
    removed = ckpt.prune(tmp_path, keep=2, saved=just_saved, log=messages.append)
    assert [p.name for p in removed] == ["resnext_tiny-1_10.ckpt", "resnext_tiny-1_20.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "resnext_tiny-1_30.ckpt",
        "resnext_tiny-1_35.ckpt",
        "resnext_tiny-1_40.ckpt.corrupt",
    ]
    assert len(messages) == 1 and "resnext_tiny-1_40.ckpt" in messages[0] and "set aside" in messages[0]
    assert ckpt.load(third).step == 30 and ckpt.load(just_saved).step == 35
    assert not first.exists()


def test_out_of_space_while_saving_is_one_error_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (earlier,) = saved_steps(tmp_path, (10,))
    real_save = ms.save_checkpoint

    def full_disk(cell: nn.Cell, name: str, **kwargs: object) -> None:
        # As MindSpore does: it writes <name minus .ckpt>.tmp, and the volume fills up halfway.
        Path(name).with_suffix(".tmp").write_bytes(earlier.read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.ms, "save_checkpoint", full_disk)
    net, _ = train_net(1)
    with pytest.raises(DiskFullError) as caught:
        ckpt.save(net, tmp_path / "resnext_tiny-1_20.ckpt", meta(20))
    assert str(caught.value) == f"no space left on {tmp_path} while saving resnext_tiny-1_20.ckpt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnext_tiny-1_10.ckpt"]
    assert ckpt.load(earlier).step == 10
    monkeypatch.setattr(ckpt.ms, "save_checkpoint", real_save)


def test_start_up_clean_up_removes_mindspore_temporaries_too(tmp_path: Path) -> None:
    for name in (".tmp-7-resnext_tiny-1_20.ckpt", ".tmp-7-resnext_tiny-1_20.tmp", "resnext_tiny-1_10.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    removed = ckpt.remove_stale_temporaries(tmp_path)
    assert len(removed) == 2 and [p.name for p in tmp_path.iterdir()] == ["resnext_tiny-1_10.ckpt"]


def test_restore_brings_back_moments_and_global_step(tmp_path: Path) -> None:
    trained, opt = train_net(3)
    path = ckpt.save(trained, tmp_path / "resnext_tiny-1_3.ckpt", meta(3))
    fresh, fresh_opt = train_net(0)
    ckpt.restore_training_state(fresh, ckpt.load(path))
    assert int(fresh_opt.global_step.asnumpy()[0]) == 3
    for mine, theirs in zip(fresh_opt.moments, opt.moments, strict=True):
        np.testing.assert_array_equal(mine.asnumpy(), theirs.asnumpy())
    for mine, theirs in zip(fresh.trainable_params(), trained.trainable_params(), strict=True):
        np.testing.assert_array_equal(mine.asnumpy(), theirs.asnumpy())


def test_wrong_architecture_and_classes_are_refused(tmp_path: Path) -> None:
    net, _ = train_net(0)
    loaded = ckpt.load(ckpt.save(net, tmp_path / "resnext50_32x4d-1_1.ckpt", meta(1, arch="resnext50_32x4d")))
    with pytest.raises(ckpt.CheckpointError, match=r"resnext50_32x4d.*resnext_tiny"):
        ckpt.check_matches(loaded, "resnext_tiny", None, "checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="classes"):
        ckpt.check_matches(loaded, "resnext50_32x4d", ["a", "b"], "checkpoint")
    ckpt.check_matches(loaded, "resnext50_32x4d", ["a", "b", "c"], "checkpoint")


def test_load_weights_skips_a_head_of_another_size(tmp_path: Path) -> None:
    net, _ = train_net(1)
    loaded = ckpt.load(ckpt.save(net, tmp_path / "resnext_tiny-1_1.ckpt", meta(1)))
    other = small_net(classes=5)
    missing = ckpt.load_weights(other, loaded)
    assert sorted(missing) == ["3.bias", "3.weight"]
    np.testing.assert_array_equal(other.parameters_dict()["0.weight"].asnumpy(), loaded.params["0.weight"].asnumpy())


def test_unreadable_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "nope.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    ms.save_checkpoint(small_net(), str(foreign))
    with pytest.raises(ckpt.CheckpointError, match="no trainer metadata"):
        ckpt.load(foreign)


def test_a_snapshot_is_a_copy_taken_at_the_boundary_and_its_buffer_is_reused(tmp_path: Path) -> None:
    net, _ = train_net(2)
    snap = ckpt.snapshot(net)
    at_two = {name: array.copy() for name, array in snap.arrays}
    steps_more(net, 2)  # the live parameters move on; the snapshot does not
    assert any(not np.array_equal(at_two[p.name], p.asnumpy()) for p in net.trainable_params())
    path = ckpt.save(snap, tmp_path / "resnext_tiny-1_2.ckpt", meta(2))
    loaded = ckpt.load(path)
    for name, array in at_two.items():
        np.testing.assert_array_equal(loaded.params[name].asnumpy(), array)
    assert int(loaded.params["global_step"].asnumpy()[0]) == 2
    again = ckpt.snapshot(net, reuse=snap)
    assert again is snap and int(dict(again.arrays)["global_step"][0]) == 4


def steps_more(step_cell: nn.Cell, steps: int) -> None:
    x = ms.Tensor(np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32))
    y = ms.Tensor(np.array([1, 0], np.int32))
    for _ in range(steps):
        step_cell(x, y)
