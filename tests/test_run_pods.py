"""docker/run_pods.py, the containers runner of the one pod interpreter, against a stand-in docker client that
prints its arguments: each pod's `docker run` carries the interpreted env, mounts and command."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from jobctl.render import render
from jobctl.spec import validate_spec

ROOT = Path(__file__).resolve().parents[1]


def test_two_pods_become_two_docker_runs(tmp_path: Path) -> None:
    spec = validate_spec({"name": "smoke", "platform": "cpu", "devices": 2, "devices_per_node": 1})
    rendered = tmp_path / "rendered.json"
    rendered.write_text(json.dumps(render(spec, "1.31")))
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    docker.chmod(0o755)
    (tmp_path / "shared").mkdir()
    (tmp_path / "data").mkdir()
    args = ["--volume", f"/shared={tmp_path / 'shared'}", "--volume", f"/data={tmp_path / 'data'}"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "run_pods.py"), str(rendered), *args, "--docker", str(docker)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # a checkout is enough: run_pods imports the interpreter from it
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "run_pods: exit codes [0, 0]" in out
    for index in (0, 1):
        # The two pods print at once: read each pod's lines on their own.
        argv = [line.removeprefix(f"[pod {index}] ") for line in out.splitlines() if line.startswith(f"[pod {index}] ")]
        assert argv[argv.index("--hostname") + 1] == f"smoke-{index}"
        assert f"JOB_COMPLETION_INDEX={index}" in argv and "POD_IP=127.0.0.1" in argv
    shared = tmp_path / "shared" / "jobs" / "smoke"
    assert f"type=bind,source={shared},target=/shared/jobs/smoke" in out and shared.is_dir()
    assert "trainer.launch" in out


def load_run_pods() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_pods", ROOT / "docker" / "run_pods.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_pods"] = module
    spec.loader.exec_module(module)
    return module


def test_pods_run_read_only_with_the_pods_writable_mounts(tmp_path: Path) -> None:
    """readOnlyRootFilesystem → --read-only; the scratch and workdir emptyDirs → writable anonymous volumes; the
    job's subPath folder is made in the volume's root with the root's owner and mode, as the kubelet makes it."""
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
        assert "readonly" not in shared
        assert ("--env", "HOME=/tmp") in pairs and ("--env", "TMPDIR=/tmp") in pairs
    assert (tmp_path / "shared" / "jobs" / "smoke").stat().st_mode & 0o7777 == 0o2775
