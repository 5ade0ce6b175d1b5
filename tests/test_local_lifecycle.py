"""The local job's life around its controller: honest restart counts, one winner of racing submits, orphaned pods
after the controller died, and `delete` stopping only the job's own processes (the real launcher runs the fake
trainer of tests/launch_fake_trainer.py, so no MindSpore is involved)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobctl.backends.base import COMPLETE, RUNNING
from jobctl.backends.local.backend import LocalBackend
from jobctl.backends.local.pods import training_job
from jobctl.render import render
from jobctl.spec import JobSpec, load_spec

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
JOBCTL = [sys.executable, "-m", "jobctl"]
pytestmark = pytest.mark.slow


def make_spec(tmp_path: Path, name: str = "life") -> JobSpec:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True, exist_ok=True)
    (data / "val").mkdir(exist_ok=True)
    flags = {
        "name": name,
        "platform": "cpu",
        "devices": 1,
        "data.host_path": str(data),
        "shared.host_path": str(tmp_path / "shared"),
    }
    return load_spec(None, flags, [])


@pytest.fixture(autouse=True)
def fake_trainer_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake trainers' folder reaches the pods through this machine's env, which local pods inherit: a host path
    in a pod's own env would be read as a pod path (under /tmp: the pod's scratch emptyDir) if the checkout is there."""
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{REPO}")


def fake_trainer_objects(spec: JobSpec, **fake: str) -> list[dict[str, Any]]:
    """The rendered objects, whose launcher runs the fake trainer with FAKE_<KEY> settings."""
    objects = render(spec)
    container = training_job(objects)["spec"]["template"]["spec"]["containers"][0]
    env = {
        "JOBCTL_TRAINER_MODULE": "launch_fake_trainer",
        "JOBCTL_STOP_GRACE": "5",
        **{f"FAKE_{key}": value for key, value in fake.items()},
    }
    container["env"] += [{"name": k, "value": v} for k, v in env.items()]
    return objects


def until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll a condition that other processes make true; fail naming it after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def trainer_pids(job_root: Path) -> list[int]:
    """The job's trainer (worker) processes, found by their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            env = environ_of(int(entry.name))
            if env.get("JOBCTL_JOB_DIR") == str(job_root) and env.get("MS_ROLE") == "MS_WORKER":
                found.append(int(entry.name))
    return found


def rank_log_has(path: Path, needle: str) -> bool:
    try:
        return needle in path.read_text(errors="replace")
    except OSError:
        return False


def test_restarts_are_zero_while_running_and_one_after_a_kill(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    backend = LocalBackend(tmp_path / "shared")
    backend.submit(spec, fake_trainer_objects(spec, LINES="100000", INTERVAL="0.1"), resume=False, replace=False)
    job_dir = backend.job_dir(spec.name)
    try:
        until(lambda: rank_log_has(job_dir.root / "logs" / "rank-0.log", "step=3/"), "the trainer's third line")
        fresh = backend.status(spec.name)
        assert fresh.phase == RUNNING and fresh.restarts == 0 and fresh.last_restart is None, fresh
        listed = {info.name: info for info in backend.list_jobs()}[spec.name]
        assert listed.restarts == 0 and listed.last_restart is None
        (victim,) = until(lambda: trainer_pids(job_dir.root), "the trainer process")
        os.kill(victim, signal.SIGKILL)
        until(lambda: [p for p in trainer_pids(job_dir.root) if p != victim], "the trainer restarted in place")
        after = backend.status(spec.name)
        assert after.phase == RUNNING and after.restarts == 1, after
        assert after.last_restart is not None and after.last_restart.startswith("attempt 0:"), after.last_restart
        assert "SIGKILL" in after.last_restart or "-9" in after.last_restart or "137" in after.last_restart
        shown = subprocess.run(
            [*JOBCTL, "status", spec.name, "-o", "json", "--backend", "local", "--shared", str(backend.shared)],
            capture_output=True,
            text=True,
        )
        assert shown.returncode == 0 and json.loads(shown.stdout)["restarts"] == 1, shown.stderr
    finally:
        backend.delete(spec.name)


def orphaned(tmp_path: Path, **fake: str) -> tuple[LocalBackend, str, Path]:
    """A job whose controller was killed -9 once its trainer printed its first line; its pods run on."""
    spec = make_spec(tmp_path)
    objects = fake_trainer_objects(spec, **fake)
    container = training_job(objects)["spec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if env["name"] == "JOBCTL_TRAINER_MODULE":
            env["value"] = "status_trainer"
    backend = LocalBackend(tmp_path / "shared")
    backend.submit(spec, objects, resume=False, replace=False)
    job_dir = backend.job_dir(spec.name)
    rank_log = job_dir.root / "logs" / "rank-0.log"
    until(lambda: rank_log_has(rank_log, "step=1/"), "the trainer's first line")
    controller = backend.controller_pid(job_dir)
    assert controller is not None
    os.kill(controller, signal.SIGKILL)
    until(lambda: stat_state(controller) in ("Z", "gone"), "the controller gone")
    return backend, spec.name, rank_log


def test_orphaned_pods_that_finish_report_their_status_json(tmp_path: Path) -> None:
    backend, name, rank_log = orphaned(tmp_path, LINES="20", INTERVAL="0.1")
    assert backend.status(name).phase == RUNNING, "the pods still run"
    waited = subprocess.run(
        [*JOBCTL, "wait", name, "--backend", "local", "--shared", str(backend.shared), "--timeout", "120"],
        capture_output=True,
        text=True,
    )
    assert rank_log_has(rank_log, "done"), "wait returned only once the orphaned trainer finished"
    assert waited.returncode == 0, waited.stdout + waited.stderr
    info = backend.status(name)
    assert info.phase == COMPLETE and info.explanation and "status.json" in info.explanation


def test_delete_of_orphaned_pods_sends_sigterm_first(tmp_path: Path) -> None:
    backend, name, rank_log = orphaned(tmp_path, LINES="100000", INTERVAL="0.1")
    backend.delete(name)
    assert rank_log_has(rank_log, "SIGTERM, saving and stopping"), "the trainer was asked to save and stop"
    assert not trainer_pids(backend.job_dir(name).root)


def test_delete_never_signals_a_process_that_is_no_longer_the_jobs(tmp_path: Path) -> None:
    """Pids in a stale state.json / controller.pid now name other processes: a stranger in its own group (like a
    pod) and another job's controller (a "jobctl" command line). Neither may be signalled."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True)
    other_controller = subprocess.Popen([*sleeper, "jobctl.backends.local.controller", "run", str(tmp_path / "x")])
    try:
        job_dir = backend_job_dir(tmp_path, "stale")
        pods = [{"index": 0, "name": "stale-0", "phase": RUNNING, "pid": stranger.pid, "start_ticks": 1}]
        state = {"phase": RUNNING, "controller_pid": other_controller.pid, "pods": pods}
        (job_dir.local_dir / "state.json").write_text(json.dumps(state))
        (job_dir.local_dir / "controller.pid").write_text(f"{other_controller.pid}\n")
        LocalBackend(tmp_path / "shared").delete("stale")
        assert stranger.poll() is None, "a pid from a stale state.json was signalled"
        assert other_controller.poll() is None, "a stale controller.pid was signalled"
        assert not job_dir.local_dir.exists()
    finally:
        for proc in (stranger, other_controller):
            proc.kill()
            proc.wait()


def backend_job_dir(tmp_path: Path, name: str) -> Any:
    job_dir = LocalBackend(tmp_path / "shared").job_dir(name)
    job_dir.local_dir.mkdir(parents=True)
    return job_dir


def test_status_after_a_resume_hides_the_previous_runs_progress(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, name="again")
    backend = LocalBackend(tmp_path / "shared")
    job_dir = backend.job_dir(spec.name)
    job_dir.create()
    (job_dir.ckpt_dir / "resnext_tiny-1_10.ckpt").write_bytes(b"\x0a\x00" + b"crc_num" + bytes(10))
    old = {"state": "stopped", "epoch": 1, "max_epoch": 4, "step": 10, "total_steps": 40}
    old["updated"] = "2026-01-01T00:00:00Z"  # the previous run's
    job_dir.status_file.write_text(json.dumps(old))
    objects = render(spec)
    container = training_job(objects)["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", "import time; time.sleep(60)"]
    backend.submit(spec, objects, resume=True, replace=False)
    try:
        info = until(lambda: (i := backend.status(spec.name)).phase == RUNNING and i, "the resumed job running")
        assert info.progress is None, info.progress
        assert info.explanation and info.explanation.startswith("resuming"), info.explanation
    finally:
        backend.delete(spec.name)


def stat_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "gone"
