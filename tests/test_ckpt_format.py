"""ckpt_format safetensors: the layout (pure), MindSpore and the safetensors library reading our files, the
truncation scan and set-aside for both formats alike, resume state, and the converter's round trip."""

from __future__ import annotations

import json
import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # before mindspore loads (see trainer.cpu)

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from contract import safetensors_layout
from contract.ckpt_files import incomplete_reason, list_checkpoints, newest_complete
from contract.ckpt_names import best_name, checkpoint_name, format_of, parse_checkpoint_name
from tests.test_checkpoint import meta, train_net
from trainer import checkpoint as ckpt
from trainer import convert

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained cell's checkpoint as the trainer writes a safetensors one."""
    net, _ = train_net(2)
    return ckpt.save(net, tmp_path_factory.mktemp("st") / "resnext_tiny-1_2.safetensors", meta(2))


def test_names_of_both_formats() -> None:
    assert checkpoint_name("a", 2, 40, fmt="safetensors") == "a-2_40.safetensors"
    assert checkpoint_name("a", 2, 40, 1, "safetensors") == "a-2_40-rank1.safetensors"
    assert best_name("safetensors") == "best.safetensors" and best_name() == ckpt.BEST_NAME == "best.ckpt"
    parsed = parse_checkpoint_name("a-2_40-rank1.safetensors")
    assert parsed is not None and (parsed.step, parsed.rank, parsed.format) == (40, 1, "safetensors")
    assert format_of("x.ckpt") == "ckpt" and format_of("x.safetensors") == "safetensors" and format_of("x.pt") is None
    assert parse_checkpoint_name("a-2_40.safetensors.corrupt") is None


def test_listing_merges_both_formats_by_step(tmp_path: Path) -> None:
    for name in ("a-1_10.ckpt", "a-2_20.safetensors", "a-3_30.ckpt", "best.safetensors", ".tmp-1-a-4_40.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["a-1_10.ckpt", "a-2_20.safetensors", "a-3_30.ckpt"]


def test_layout_round_trip_and_every_truncation_is_caught(tmp_path: Path) -> None:
    entries = [
        safetensors_layout.TensorEntry("w", "float32", (2, 3), 24),
        safetensors_layout.TensorEntry("s", "int32", (), 4),
    ]
    data = safetensors_layout.encode_header(entries, {"trainer_meta": "{}"}) + bytes(range(28))
    path = tmp_path / "a-1_1.safetensors"
    path.write_bytes(data)
    assert incomplete_reason(path) is None
    with open(path, "rb") as handle:
        assert safetensors_layout.metadata(handle, len(data)) == {"trainer_meta": "{}"}
    for size in range(len(data)):  # every byte at which a write could have stopped
        path.write_bytes(data[:size])
        assert incomplete_reason(path) is not None, size
    path.write_bytes(data + b"\0")
    assert "1 bytes after the data" in str(incomplete_reason(path))
    path.write_bytes(b"\xff" * 64)
    assert "implausible" in str(incomplete_reason(path))


def test_mindspore_and_the_safetensors_library_read_our_files(saved: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(saved), framework="np") as handle:
        header = handle.metadata()
        assert json.loads(header["trainer_meta"])["step"] == 2 and header["format"] == "ms"
        assert "moments.0.weight" in set(handle.keys()) and handle.get_tensor("momentum").shape == ()
    params = ms.load_checkpoint(str(saved), format="safetensors", crc_check=True)
    loaded = ckpt.load(saved)
    assert loaded.step == 2 and loaded.meta["classes"] == ["a", "b", "c"]
    assert set(params) == set(loaded.params) and "global_step" in params


def test_truncated_and_flipped_safetensors_are_set_aside_like_ckpt(saved: Path, tmp_path: Path) -> None:
    good = tmp_path / saved.name
    good.write_bytes(saved.read_bytes())
    data = good.read_bytes()
    (tmp_path / "resnext_tiny-1_6.safetensors").write_bytes(data[: len(data) - 100])  # truncated mid-write
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF  # a flipped bit in the data: caught by MindSpore's CRC
    (tmp_path / "resnext_tiny-1_7.safetensors").write_bytes(bytes(flipped))
    assert newest_complete(tmp_path) == tmp_path / "resnext_tiny-1_7.safetensors"  # the scan cannot see a flip
    messages: list[str] = []
    found = ckpt.newest_valid(tmp_path, log=messages.append)
    assert found is not None and found.path == good, messages
    assert "crc" in messages[0].lower() and "truncated at byte" in messages[1], messages
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "resnext_tiny-1_2.safetensors",
        "resnext_tiny-1_6.safetensors.corrupt",
        "resnext_tiny-1_7.safetensors.corrupt",
    ]


def test_pruning_sets_aside_a_truncated_safetensors_file(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    (tmp_path / "resnext_tiny-1_1.ckpt").write_bytes(b"")
    for step in (2, 3, 4):
        (tmp_path / f"resnext_tiny-1_{step}.safetensors").write_bytes(data if step != 3 else data[:-1])
    messages: list[str] = []
    removed = ckpt.prune(tmp_path, keep=1, log=messages.append)
    assert [p.name for p in removed] == ["resnext_tiny-1_2.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "resnext_tiny-1_1.ckpt.corrupt",
        "resnext_tiny-1_3.safetensors.corrupt",
        "resnext_tiny-1_4.safetensors",
    ]


def test_restore_from_safetensors_brings_back_the_training_state(saved: Path) -> None:
    _, opt = train_net(2)
    fresh, fresh_opt = train_net(0)
    ckpt.restore_training_state(fresh, ckpt.load(saved))
    assert int(fresh_opt.global_step.asnumpy()[0]) == 2
    for mine, theirs in zip(fresh_opt.moments, opt.moments, strict=True):
        np.testing.assert_array_equal(mine.asnumpy(), theirs.asnumpy())


def test_convert_round_trip_keeps_every_parameter_and_the_metadata(saved: Path, tmp_path: Path) -> None:
    assert convert.main([str(saved), "--to", "ckpt", "--out", str(tmp_path / "ckpt")]) == 0
    as_ckpt = tmp_path / "ckpt" / "resnext_tiny-1_2.ckpt"
    assert convert.main([str(tmp_path / "ckpt"), "--to", "safetensors", "--out", str(tmp_path / "back")]) == 0
    back = tmp_path / "back" / "resnext_tiny-1_2.safetensors"
    original, middle, final = (ckpt.load(p) for p in (saved, as_ckpt, back))
    assert original.meta == middle.meta == final.meta
    names = set(original.params)
    assert names <= set(middle.params) and names == set(final.params)
    for name in names:
        np.testing.assert_array_equal(original.params[name].asnumpy(), final.params[name].asnumpy())
        np.testing.assert_array_equal(original.params[name].asnumpy(), middle.params[name].asnumpy())


def test_convert_refuses_bad_input_with_exit_2(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert convert.main([str(saved), "--to", "safetensors"]) == 2
    assert "already safetensors" in capsys.readouterr().err
    assert convert.main([str(tmp_path / "missing"), "--to", "ckpt"]) == 2
    (tmp_path / "resnext_tiny-1_9.safetensors").write_bytes(saved.read_bytes()[:-5])
    assert convert.main([str(tmp_path / "resnext_tiny-1_9.safetensors"), "--to", "ckpt"]) == 2
    assert "is unreadable (truncated at byte" in capsys.readouterr().err
    assert not (tmp_path / "resnext_tiny-1_9.ckpt").exists()


def test_status_checks_a_safetensors_crc_as_mindspore_does(saved: Path, tmp_path: Path) -> None:
    """`jobctl status`'s pure CRC check (no MindSpore) accepts what MindSpore's loader accepts and names a flipped
    bit, so status never shows a safetensors checkpoint that resume and eval would set aside."""
    from contract.ckpt_files import crc_mismatch

    good = tmp_path / saved.name
    good.write_bytes(saved.read_bytes())
    assert crc_mismatch(good) is None
    ms.load_checkpoint(str(good), format="safetensors", crc_check=True)  # MindSpore agrees
    flipped = bytearray(saved.read_bytes())
    flipped[-10] ^= 0xFF
    bad = tmp_path / "resnext_tiny-1_7.safetensors"
    bad.write_bytes(bytes(flipped))
    assert "CRC" in (crc_mismatch(bad) or "")
    with pytest.raises(ValueError):
        ms.load_checkpoint(str(bad), format="safetensors", crc_check=True)
