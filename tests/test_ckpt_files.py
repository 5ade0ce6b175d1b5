"""contract.ckpt_files (pure): one lister, the cheap truncation check on real MindSpore files, set-aside files
invisible to every lister (the trainer's and jobctl's)."""

from __future__ import annotations

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # before mindspore loads (see trainer.cpu)

from pathlib import Path

import mindspore as ms
import pytest
from mindspore import nn

from contract.ckpt_files import incomplete_reason, list_checkpoints, newest_complete, set_aside
from contract.ckpt_names import parse_checkpoint_name
from jobctl.jobdir import JobDir


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A checkpoint as the trainer saves it (crc_check=True, an appended string), several parameters."""
    path = tmp_path_factory.mktemp("real") / "x.ckpt"
    net = nn.SequentialCell([nn.Conv2d(3, 4, 3, has_bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Dense(256, 3)])
    ms.save_checkpoint(net, str(path), append_dict={"step_num": 5, "trainer_meta": '{"arch": "a"}'}, crc_check=True)
    return path.read_bytes()


def test_a_whole_checkpoint_passes_and_every_truncation_is_caught(real_ckpt: bytes, tmp_path: Path) -> None:
    path = tmp_path / "a-1_1.ckpt"
    path.write_bytes(real_ckpt)
    assert incomplete_reason(path) is None
    for size in range(len(real_ckpt)):  # every byte at which a write could have stopped
        path.write_bytes(real_ckpt[:size])
        assert incomplete_reason(path) is not None, size
    path.write_bytes(b"not a checkpoint at all")
    assert "no checkpoint record" in str(incomplete_reason(path))
    assert "cannot read" in str(incomplete_reason(tmp_path / "missing.ckpt"))


def test_listing_excludes_temporaries_best_and_set_aside_files(tmp_path: Path) -> None:
    names = ["a-10_100.ckpt", "a-2_20.ckpt", "a-2_20-rank1.ckpt", "best.ckpt", "a-3_30.ckpt.corrupt"]
    names += [".tmp-1-a-4_40.ckpt", ".tmp-1-a-4_40.tmp", "a-5_50.ckpt.eval.json"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["a-2_20.ckpt", "a-10_100.ckpt"]
    assert [p.name for p in list_checkpoints(tmp_path, rank=1)] == ["a-2_20-rank1.ckpt"]
    assert parse_checkpoint_name("a-3_30.ckpt.corrupt") is None
    assert list_checkpoints(tmp_path / "missing") == []


def test_set_aside_hides_a_file_from_every_lister(real_ckpt: bytes, tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job")
    job.create()
    for name in ("a-1_10.ckpt", "a-2_20.ckpt"):
        (job.ckpt_dir / name).write_bytes(real_ckpt)
    moved = set_aside(job.ckpt_dir / "a-2_20.ckpt")
    assert moved == job.ckpt_dir / "a-2_20.ckpt.corrupt" and moved.read_bytes() == real_ckpt
    assert [c.step for c in job.checkpoints()] == [10]
    assert [p.name for p in list_checkpoints(job.ckpt_dir)] == ["a-1_10.ckpt"]
    assert set_aside(job.ckpt_dir / "a-2_20.ckpt") is None  # already gone (another rank was first)


def test_status_names_the_newest_complete_checkpoint(real_ckpt: bytes, tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job")
    job.create()
    for name in ("a-1_10.ckpt", "a-2_20.ckpt"):
        (job.ckpt_dir / name).write_bytes(real_ckpt)
    (job.ckpt_dir / "a-2_20.ckpt").write_bytes(real_ckpt[: len(real_ckpt) // 2])  # truncate -s 50%
    newest = job.newest_checkpoint()
    assert newest is not None and newest.path.name == "a-1_10.ckpt" and (newest.epoch, newest.step) == (1, 10)
    assert (job.ckpt_dir / "a-2_20.ckpt").is_file()  # status only reads
    messages: list[str] = []
    assert newest_complete(job.ckpt_dir, log=messages.append) == job.ckpt_dir / "a-1_10.ckpt"
    assert len(messages) == 1 and "a-2_20.ckpt: truncated" in messages[0]
