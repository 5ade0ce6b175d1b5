"""docker/run_pods.py (the image smoke test's kubelet stand-in) runs a rendered pod as the kubelet would: read-only
root filesystem, the pod's emptyDirs writable, its volumes where the Job mounts them."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

from jobctl.render import render
from jobctl.spec import validate_spec

RUN_PODS = Path(__file__).resolve().parents[1] / "docker" / "run_pods.py"


def load_run_pods() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_pods", RUN_PODS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_pods"] = module
    spec.loader.exec_module(module)
    return module


def test_pods_run_read_only_with_the_pods_writable_mounts(tmp_path: Path) -> None:
    run_pods = load_run_pods()
    job = validate_spec({"name": "smoke", "platform": "cpu", "devices": 2, "devices_per_node": 1})
    host = {"/shared": tmp_path / "shared", "/data": tmp_path / "data"}
    for folder in host.values():
        folder.mkdir()
    host["/shared"].chmod(0o2775)
    pods = run_pods.plan(render(job), host, tmp_path / "scratch", "docker")
    assert len(pods) == 2
    for pod in pods:
        argv = pod.argv
        assert "--read-only" in argv
        pairs = set(itertools.pairwise(argv))
        assert {("--volume", "/tmp"), ("--volume", "/workspace"), ("--workdir", "/workspace")} <= pairs
        assert any(a.startswith("--shm-size=") for a in argv)
        shared = next(a for a in argv if a.startswith("type=bind") and a.endswith("target=/shared/jobs/smoke"))
        assert "readonly" not in shared and f"source={tmp_path / 'shared' / 'jobs' / 'smoke'}" in shared
        assert ("--env", "HOME=/tmp") in pairs and ("--env", "TMPDIR=/tmp") in pairs
    # `--volume /shared=DIR` is the volume's root: the job's subPath folder is made there as the kubelet makes it.
    assert (tmp_path / "shared" / "jobs" / "smoke").stat().st_mode & 0o7777 == 0o2775
