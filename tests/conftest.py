"""Test-wide settings and fixtures.

MindSpore's bundled oneDNN reads ONEDNN_MAX_CPU_ISA once, when it loads: capped at AVX2 it runs k>1 convolutions
through its gemm path (about 6x faster on this kind of CPU, identical results). Set it before any test imports
MindSpore, and let subprocesses inherit it. A value the caller set wins.
"""

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ logging: errors only, so test output stays readable


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``tmpfs(name, size)`` mounts a real size-limited tmpfs at ``tmp_path/name`` (a full disk for real; needs
    root and mount permission, else the test is skipped); all are unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        volume = tmp_path / name
        volume.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(volume)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(volume)
        return volume

    yield mount
    for volume in mounted:
        subprocess.run(["umount", "-l", str(volume)], check=False)


@pytest.fixture
def double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The Kubernetes API stand-in (tests/k8s_double.py) with KUBECONFIG pointing at it."""
    from tests.k8s_double import KubeDouble

    with KubeDouble(minor="31") as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.delenv("JOBCTL_BACKEND", raising=False)
        yield server


def _synth(root: Path, *args: str) -> Path:
    import sys

    subprocess.run([sys.executable, "-m", "trainer.data", "synth", "--out", str(root), *args, "--quiet"], check=True)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 classes x 40 images of 64 px (train/ and val/): one trainer process, 25 steps of 16 per epoch at 32 px."""
    return _synth(tmp_path_factory.mktemp("synth"), "--classes", "10", "--per_class", "40", "--size", "64")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 16 images of 32 px: the local backend's end-to-end jobs."""
    return _synth(tmp_path_factory.mktemp("synth"), "--classes", "4", "--per_class", "16", "--size", "32")
