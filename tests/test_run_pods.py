"""docker/run_pods.py, the containers runner of the one pod interpreter, against a stand-in docker client that
prints its arguments: each pod's `docker run` carries the interpreted env, mounts and command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        assert f"[pod {index}] --hostname\n[pod {index}] smoke-{index}\n" in out
        assert f"[pod {index}] JOB_COMPLETION_INDEX={index}\n" in out and f"[pod {index}] POD_IP=127.0.0.1\n" in out
    shared = tmp_path / "shared" / "jobs" / "smoke"
    assert f"type=bind,source={shared},target=/shared/jobs/smoke" in out and shared.is_dir()
    assert "trainer.launch" in out
