"""trainer.export: ONNX and MINDIR of a resnext_tiny checkpoint give MindSpore's logits; AIR is refused off Ascend."""

from __future__ import annotations

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # before mindspore loads (see trainer.cpu)

import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import onnxruntime as ort
import pytest
from mindspore import nn

from trainer import checkpoint as ckpt
from trainer.model import build_model

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES = 32, 4

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ms.set_seed(3)
    net = build_model("resnext_tiny", CLASSES)
    # Non-trivial BN statistics and biases, so a wrong inference graph would show.
    for name, param in net.parameters_and_names():
        if name.endswith(("moving_mean", "beta", "bias")):
            param.set_data(ms.Tensor(np.random.default_rng(0).normal(0, 0.1, param.shape).astype(np.float32)))
    meta = {"arch": "resnext_tiny", "epoch": 1, "step": 1, "image_size": SIZE, "num_classes": CLASSES}
    meta["classes"] = [f"c{i}" for i in range(CLASSES)]
    return ckpt.save(net, tmp_path_factory.mktemp("export") / "resnext_tiny-1_1.ckpt", meta)


def reference_logits(path: Path, images: np.ndarray) -> np.ndarray:
    net: nn.Cell = build_model("resnext_tiny", CLASSES)
    assert ckpt.load_weights(net, ckpt.load(path)) == []
    net.set_train(False)
    return net(ms.Tensor(images)).asnumpy()


def export(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "trainer.export", "--device_target", "CPU", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_onnx_matches_mindspore(checkpoint: Path, tmp_path: Path) -> None:
    result = export(
        "--ckpt_file", str(checkpoint), "--file_format", "onnx", "--file_name", str(tmp_path / "m"), "--batch_size", "2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "m.onnx")
    images = np.random.default_rng(1).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: images})
    expected = reference_logits(checkpoint, images)
    assert onnx_logits.shape == (2, CLASSES)
    np.testing.assert_allclose(onnx_logits, expected, rtol=1e-3, atol=1e-4)


def test_mindir_matches_mindspore(checkpoint: Path, tmp_path: Path) -> None:
    result = export("--ckpt_file", str(checkpoint), "--file_format", "MINDIR", "--batch_size", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    mindir = checkpoint.with_suffix(".mindir")  # default: next to the checkpoint
    assert mindir.is_file()
    images = np.random.default_rng(2).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    graph = nn.GraphCell(ms.load(str(mindir)))
    np.testing.assert_allclose(
        graph(ms.Tensor(images)).asnumpy(), reference_logits(checkpoint, images), rtol=1e-4, atol=1e-5
    )


def test_air_needs_ascend_and_bad_input_exits_2(checkpoint: Path, tmp_path: Path) -> None:
    air = export("--ckpt_file", str(checkpoint), "--file_format", "AIR")
    assert air.returncode == 2 and "Ascend" in air.stderr
    unknown = export("--ckpt_file", str(checkpoint), "--file_format", "TFLITE")
    assert unknown.returncode == 2 and "TFLITE" in unknown.stderr
    missing = export("--ckpt_file", str(tmp_path / "none.ckpt"), "--file_format", "ONNX")
    assert missing.returncode == 2 and "none.ckpt" in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_folder_exports_its_newest_valid_checkpoint_into_output_dir(
    checkpoint: Path, tmp_path: Path
) -> None:
    """The cluster export Job's call: the job's ckpt/ mounted read-only, the file written under export/."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / checkpoint.name).write_bytes(checkpoint.read_bytes())
    (folder / "resnext_tiny-2_2.ckpt").write_bytes(b"truncated")  # newer, unreadable: skipped, not renamed
    folder.chmod(0o555)
    try:
        result = export("--ckpt_file", str(folder), "--file_format", "ONNX", "--output_dir", str(tmp_path / "export"))
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr[-3000:]
    written = tmp_path / "export" / "resnext_tiny-1_1.onnx"
    assert result.stdout.strip().splitlines()[-1] == str(written)
    assert "resnext_tiny-2_2.ckpt" in result.stderr and sorted(p.name for p in folder.iterdir()) == [
        "resnext_tiny-1_1.ckpt",
        "resnext_tiny-2_2.ckpt",
    ]
    ort.InferenceSession(str(written), providers=["CPUExecutionProvider"])
    both = export("--ckpt_file", str(folder), "--output_dir", str(tmp_path), "--file_name", str(tmp_path / "m"))
    assert both.returncode == 2 and "--output_dir" in both.stderr
