"""`jobctl fault`: a lost node rehearsed on a local job. The pod's processes die at once, its replacement waits out
the hold (or `--up`), then starts with empty emptyDirs and without counting against backoffLimit; bad input is one
line, exit 2, nothing written. The real launcher runs the fake trainer (tests/launch_fake_trainer.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jobctl.backends.base import COMPLETE, RUNNING
from jobctl.backends.local.backend import LocalBackend
from jobctl.backends.local.faults import Fault, fault_file, format_fault, parse_fault, read_fault
from jobctl.backends.local.pods import DISRUPTION_TARGET, FailureRules, pod_volumes_dir, training_job
from jobctl.cli import app
from jobctl.render import render
from jobctl.spec import JobSpec, load_spec
from tests.test_local_lifecycle import until

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
runner = CliRunner()


@pytest.fixture(autouse=True)
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cluster configured; the fake trainer reaches the pods through this machine's env (see
    test_local_lifecycle: a host path under /tmp in a pod's own env would be mapped to the pod's scratch)."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    for name in ("KUBERNETES_SERVICE_HOST", "JOBCTL_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{REPO}")


def jobctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def one_line_refusal(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def submit(tmp_path: Path, name: str = "lost", **fake: str) -> tuple[LocalBackend, JobSpec, list[str]]:
    """A 2-pod CPU job (one device per pod) whose launchers run the fake trainer with FAKE_<KEY> settings."""
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True, exist_ok=True)
    (data / "val").mkdir(exist_ok=True)
    flags = {"name": name, "platform": "cpu", "devices": 2, "devices_per_node": 1, "data.host_path": str(data)}
    spec = load_spec(None, {**flags, "shared.host_path": str(tmp_path / "shared")}, [])
    objects = render(spec)
    container = training_job(objects)["spec"]["template"]["spec"]["containers"][0]
    env = {"JOBCTL_TRAINER_MODULE": "launch_fake_trainer", "JOBCTL_STOP_GRACE": "5"}
    env.update({f"FAKE_{key}": value for key, value in fake.items()})
    container["env"] += [{"name": k, "value": v} for k, v in env.items()]
    backend = LocalBackend(tmp_path / "shared")
    backend.submit(spec, objects, resume=False, replace=False)
    return backend, spec, ["--backend", "local", "--shared", str(backend.shared)]


def pod_processes(job_root: Path, index: int) -> set[int]:
    """Live processes of one pod (launcher, trainer, scheduler), by the environment every one of them inherits."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        ours = env.get("JOBCTL_JOB_DIR") == str(job_root) and env.get("JOB_COMPLETION_INDEX") == str(index)
        if ours and state not in ("Z", "X"):
            found.add(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def pod_state(backend: LocalBackend, name: str, index: int) -> dict[str, Any]:
    state = backend.read_state(backend.job_dir(name)) or {"pods": [{}] * (index + 1)}
    return dict(state["pods"][index])


def running_again(backend: LocalBackend, name: str, old: set[int]) -> bool:
    pod = pod_state(backend, name, 1)
    return pod.get("phase") == RUNNING and pod.get("pid") not in (None, *old)


def take_down_pod_1(tmp_path: Path, *extra: str) -> tuple[LocalBackend, JobSpec, list[str], set[int], float]:
    """A running 2-pod job, a marker in pod 1's /dev/shm, then `jobctl fault lost --pod 1 --down *extra`."""
    backend, spec, flags = submit(tmp_path, LINES="100000", INTERVAL="0.1")
    job_dir = backend.job_dir(spec.name)
    until(lambda: (job_dir.logs_dir / "rank-1.log").is_file() and len(pod_processes(job_dir.root, 1)) >= 2, "pod 1")
    victims = pod_processes(job_dir.root, 1)
    shm = pod_volumes_dir(job_dir, 1) / "dev_shm"
    (shm / "jobctl-snapshot").mkdir(parents=True, exist_ok=True)
    (shm / "jobctl-snapshot" / "marker").write_text("the old pod's memory")
    result = jobctl("fault", spec.name, "--pod", "1", "--down", *extra, *flags)
    assert result.exit_code == 0, result.output
    return backend, spec, flags, victims, time.monotonic()


def test_a_lost_pod_dies_at_once_and_its_replacement_waits_for_the_hold(tmp_path: Path) -> None:
    backend, spec, flags, victims, downed = take_down_pod_1(tmp_path, "--for", "5s")
    job_dir = backend.job_dir(spec.name)
    try:
        until(lambda: not pod_processes(job_dir.root, 1), "pod 1's processes to die", timeout=2.5)
        assert not any(Path(f"/proc/{pid}").exists() and pid in pod_processes(job_dir.root, 1) for pid in victims)
        held = until(lambda: pod_state(backend, spec.name, 1).get("fault"), "the hold in state.json", timeout=3)
        assert held["pod"] == 1 and held["until"] is not None
        shown = jobctl("status", spec.name, *flags)
        assert shown.exit_code == 0, shown.output
        assert "pod 1: down (fault) until " in shown.stdout and ", then replaced" in shown.stdout, shown.stdout
        until(lambda: running_again(backend, spec.name, victims), "the replacement of pod 1", timeout=15)
        waited = time.monotonic() - downed
        pod = pod_state(backend, spec.name, 1)
        assert pod["started"] >= held["until"], f"the replacement started at {pod['started']}, inside the hold"
        assert waited >= 4, f"the replacement started {waited:.1f} s after the fault, inside the 5 s hold"
        assert pod["exit_codes"][-1] == 137 and pod["fault"] is None, pod
        assert pod["failures"] == 0, "a pod lost with its node carries DisruptionTarget, which the policy ignores"
        assert not (pod_volumes_dir(job_dir, 1) / "dev_shm" / "jobctl-snapshot").exists(), "emptyDirs not emptied"
        assert "down (fault)" not in jobctl("status", spec.name, *flags).stdout
        assert "lost (jobctl fault)" in (job_dir.local_dir / "pod-1.log").read_text()
    finally:
        backend.delete(spec.name)


def test_up_ends_a_hold_without_a_duration(tmp_path: Path) -> None:
    backend, spec, flags, victims, _ = take_down_pod_1(tmp_path)
    job_dir = backend.job_dir(spec.name)
    try:
        until(lambda: not pod_processes(job_dir.root, 1), "pod 1's processes to die", timeout=2.5)
        time.sleep(3)  # far past the restart delay: only the hold keeps the replacement back
        assert not pod_processes(job_dir.root, 1) and not running_again(backend, spec.name, victims)
        shown = jobctl("status", spec.name, *flags).stdout
        assert f"pod 1: down (fault) until `jobctl fault {spec.name} --pod 1 --up`, then replaced" in shown, shown
        one_line_refusal(jobctl("fault", spec.name, "--pod", "0", "--up", *flags), "pod 0", "not down")
        brought = time.monotonic()
        result = jobctl("fault", spec.name, "--pod", "1", "--up", *flags)
        assert result.exit_code == 0, result.output
        until(lambda: running_again(backend, spec.name, victims), "the replacement after --up", timeout=10)
        assert time.monotonic() - brought < 5
    finally:
        backend.delete(spec.name)


def test_bad_input_is_refused_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    backend, spec, flags = submit(tmp_path, name="done", LINES="1")
    assert backend.wait(spec.name, for_phase=None, timeout=60) == COMPLETE
    job_dir = backend.job_dir(spec.name)
    one_line_refusal(jobctl("fault", "nosuch", "--pod", "0", "--down", *flags), "nosuch")
    one_line_refusal(jobctl("fault", spec.name, "--pod", "2", "--down", *flags), "--pod 2", "0-1")
    one_line_refusal(jobctl("fault", spec.name, "--pod", "-1", "--down", *flags), "--pod -1", "0-1")
    one_line_refusal(jobctl("fault", spec.name, "--pod", "1", "--down", *flags), "Complete")
    one_line_refusal(jobctl("fault", spec.name, "--pod", "1", "--up", *flags), "Complete")
    for text in ("soon", "5", "0s", "1d"):
        one_line_refusal(jobctl("fault", spec.name, "--pod", "1", "--down", "--for", text, *flags), "--for", text)
    one_line_refusal(jobctl("fault", spec.name, "--pod", "1", "--up", "--for", "5s", *flags), "--for")
    one_line_refusal(jobctl("fault", spec.name, "--pod", "1", *flags), "--down", "--up")
    assert not (job_dir.local_dir / "faults").exists()


def test_the_cluster_backend_refuses_with_the_kubectl_way(tmp_path: Path) -> None:
    result = jobctl("fault", "any", "--pod", "0", "--down", "--for", "45s", "--backend", "k8s", "-n", "ns")
    one_line_refusal(result, "local backend only", "kubectl cordon <node>", "--grace-period=0 --force", "drain")


def test_the_fault_file_round_trips_and_a_torn_one_is_no_request(tmp_path: Path) -> None:
    now = datetime(2026, 12, 3, 23, 40, 20, 500000, tzinfo=UTC)
    fault = Fault.down(2, 45, now=now)
    assert fault.until == datetime(2026, 12, 3, 23, 41, 6, tzinfo=UTC)  # rounded up: at least the 45 s asked
    assert Fault.down(2, 45, now=now.replace(microsecond=0)).until == datetime(2026, 12, 3, 23, 41, 5, tzinfo=UTC)
    assert parse_fault(format_fault(fault)) == fault
    assert parse_fault(format_fault(Fault.down(0, None))).until is None
    assert fault.describe("j") == "down (fault) until 23:41:06Z, then replaced"
    assert not fault.over(now + timedelta(seconds=45)) and fault.over(now + timedelta(seconds=45.5))
    assert fault.up(now).id == fault.id and fault.up(now).over(now)
    job_dir = LocalBackend(tmp_path).job_dir("j")
    fault_file(job_dir, 2).parent.mkdir(parents=True)
    for torn in ('{"pod": 2, "id": "x", "until": "23:41"}', '{"pod": 2', json.dumps({"id": "x"})):
        fault_file(job_dir, 2).write_text(torn)
        assert read_fault(job_dir, 2) is None


def test_a_pod_lost_with_its_node_does_not_count_under_the_rendered_policy() -> None:
    spec = load_spec(None, {"name": "p", "platform": "cpu", "devices": 2, "devices_per_node": 1}, [])
    rules = FailureRules.from_job(training_job(render(spec)))
    assert rules.action(137, frozenset({DISRUPTION_TARGET})) == "Ignore"
    assert rules.action(137) == "Count"
    assert rules.action(2, frozenset({DISRUPTION_TARGET})) == "FailJob"  # the first matching rule wins


def test_kill_pod_reaches_a_process_that_left_the_pod_group() -> None:
    import subprocess
    import sys

    from jobctl.backends.local.procs import descendants, kill_pod

    spawn = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True);"
        "time.sleep(60)"
    )
    pod = subprocess.Popen([sys.executable, "-c", spawn], start_new_session=True)
    (escaped,) = until(lambda: descendants(pod.pid), "the child in its own session")
    try:
        assert os.getpgid(escaped) != pod.pid
        kill_pod(pod.pid)
        assert pod.wait(timeout=5) == -9
        until(lambda: gone(escaped), "the escaped child to die", timeout=5)
    finally:
        pod.kill()
        if not gone(escaped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(escaped, signal.SIGKILL)
