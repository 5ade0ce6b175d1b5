"""trainer.evaluate: top-k arithmetic, and the CLI on a short real training run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.evaluate import table

ROOT = Path(__file__).resolve().parents[1]


def test_table_lists_every_result() -> None:
    rows = [{"checkpoint": "/x/resnext_tiny-1_5.ckpt", "step": 5, "top1": 0.5, "top5": 0.875, "images": 8}]
    text = table(rows)
    assert "resnext_tiny-1_5.ckpt" in text and "50.00%" in text and "87.50%" in text


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "synth"
    synth = ["--out", str(data), "--classes", "10", "--per_class", "40", "--size", "64", "--quiet"]
    subprocess.run([sys.executable, "-m", "trainer.data", "synth", *synth], check=True, cwd=ROOT)
    ckpt = root / "ckpt"
    args = ["--data_dir", str(data / "train"), "--ckpt_path", str(ckpt), "--platform", "CPU", "--arch", "resnext_tiny"]
    args += ["--image_size", "32", "--per_batch_size", "16", "--max_epoch", "3", "--T_max", "3", "--lr", "0.1"]
    args += ["--num_parallel_workers", "1"]
    result = subprocess.run([sys.executable, "-m", "trainer.train", *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return data, ckpt


def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "trainer.evaluate", "--platform", "cpu", "--per_batch_size", "32", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.slow
def test_directory_means_its_newest_checkpoint(run_dir: tuple[Path, Path]) -> None:
    data, ckpt = run_dir
    out = ckpt.parent / "job-eval"
    result = evaluate("--data_dir", str(data / "val"), "--pretrained", str(ckpt), "--output_dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["checkpoint"] == str(ckpt / "resnext_tiny-3_75.ckpt")
    assert summary["images"] == 100  # every val image, although 100 is no multiple of the batch (32)
    assert summary["top1"] >= 0.3 and summary["top5"] >= summary["top1"]
    assert any("resnext_tiny-3_75.ckpt" in line and "%" in line for line in lines[:-1])  # the table
    written = json.loads((ckpt / "resnext_tiny-3_75.ckpt.eval.json").read_text())
    assert written == summary
    assert json.loads((out / "resnext_tiny-3_75.json").read_text()) == summary  # a job's eval/ directory


@pytest.mark.slow
def test_all_evaluates_each_checkpoint(run_dir: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = run_dir
    copy = tmp_path / "ckpt"
    shutil.copytree(ckpt, copy)
    result = evaluate("--data_dir", str(data / "val"), "--pretrained", str(copy), "--all")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    steps = [r["step"] for r in summary["all"]]
    assert steps == [25, 50, 75]
    assert summary["top1"] == max(r["top1"] for r in summary["all"])
    assert all((copy / f"{Path(r['checkpoint']).name}.eval.json").is_file() for r in summary["all"])


@pytest.mark.slow
def test_bad_input_exits_2(run_dir: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = run_dir
    missing = evaluate("--data_dir", str(data / "val"), "--pretrained", str(tmp_path / "none.ckpt"))
    assert missing.returncode == 2 and "none.ckpt" in missing.stderr
    fewer = tmp_path / "val"
    shutil.copytree(data / "val", fewer)
    shutil.rmtree(fewer / "class_9")
    mismatch = evaluate("--data_dir", str(fewer), "--pretrained", str(ckpt / "resnext_tiny-3_75.ckpt"))
    assert mismatch.returncode == 2 and "class" in mismatch.stderr, mismatch.stderr[-2000:]
    assert not list(fewer.rglob("*.eval.json"))
    platform = evaluate("--data_dir", str(data / "val"), "--pretrained", str(ckpt), "--platform", "tpu")
    assert platform.returncode == 2 and "platform" in platform.stderr


@pytest.mark.slow
def test_a_truncated_newest_checkpoint_is_set_aside_and_the_previous_one_scored(
    run_dir: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = run_dir
    copy = tmp_path / "ckpt"
    shutil.copytree(ckpt, copy)
    newest = copy / "resnext_tiny-3_75.ckpt"
    newest.chmod(0o600)  # MindSpore leaves its checkpoints read-only
    with newest.open("r+b") as handle:  # truncate -s 50%
        handle.truncate(newest.stat().st_size // 2)
    result = evaluate("--data_dir", str(data / "val"), "--pretrained", str(copy))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["checkpoint"] == str(copy / "resnext_tiny-2_50.ckpt")
    assert f"skipping checkpoint {newest} is unreadable" in result.stderr
    assert "set aside as resnext_tiny-3_75.ckpt.corrupt" in result.stderr
    assert not newest.exists() and (copy / "resnext_tiny-3_75.ckpt.corrupt").is_file()
