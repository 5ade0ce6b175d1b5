"""The local backend: rendered pods as local process groups, the Job controller's rules, and end-to-end runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobctl.backends.base import COMPLETE, FAILED, BackendError
from jobctl.backends.local.backend import LocalBackend
from jobctl.backends.local.pods import FailureRules, parse_indexes, plan_pods, training_job
from jobctl.jobdir import JobDir
from jobctl.render import render
from jobctl.spec import JobSpec, load_spec

JOBCTL = [sys.executable, "-m", "jobctl"]

# A pod whose exit codes come from a list, one per attempt: it counts its attempts in the job directory, so
# the test also checks that JOBCTL_JOB_DIR was mapped to the local shared directory.
ATTEMPTS_SCRIPT = """
import os, sys, time
index = os.environ["JOB_COMPLETION_INDEX"]
codes = os.environ["CODES_" + index].split(",")
counter = os.path.join(os.environ["JOBCTL_JOB_DIR"], "attempts-" + index)
attempt = len(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "a").write("x")
print(f"[rank {index}] attempt {attempt}", flush=True)
code = codes[min(attempt, len(codes) - 1)]
if code == "sleep":
    time.sleep(120)
sys.exit(int(code))
"""


def make_spec(
    tmp_path: Path, name: str = "unit", devices: int = 1, per_node: int | None = None, **extra: Any
) -> JobSpec:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True, exist_ok=True)
    (data / "val").mkdir(exist_ok=True)
    flags = {
        "name": name,
        "platform": "cpu",
        "devices": devices,
        "devices_per_node": per_node,
        "data.host_path": str(data),
        "shared.host_path": str(tmp_path / "shared"),
        **extra,
    }
    return load_spec(None, flags, [])


def with_command(objects: list[dict[str, Any]], env: dict[str, str]) -> list[dict[str, Any]]:
    """The rendered objects with the container's command swapped for the attempts script."""
    container = training_job(objects)["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", ATTEMPTS_SCRIPT]
    container["env"] += [{"name": k, "value": v} for k, v in env.items()]
    return objects


def run_job(
    tmp_path: Path, codes: list[str], max_restarts: int = 3, kube_version: str = "1.29"
) -> tuple[LocalBackend, str]:
    spec = make_spec(tmp_path, devices=len(codes), per_node=1, max_restarts=max_restarts)
    objects = with_command(render(spec, kube_version), {f"CODES_{i}": c for i, c in enumerate(codes)})
    backend = LocalBackend(tmp_path / "shared")
    backend.submit(spec, objects, resume=False, replace=False)
    return backend, spec.name


def local_state(backend: LocalBackend, name: str) -> dict[str, Any]:
    state = backend.read_state(backend.job_dir(name))
    assert state is not None
    return state


def test_plan_maps_pod_env_and_volumes_to_local_values(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, devices=4, per_node=2)
    objects = render(spec)
    job_dir = JobDir.of(tmp_path / "shared", spec.name)
    plans = plan_pods(objects, job_dir, tmp_path / "shared", 4242)
    assert [p.name for p in plans] == ["unit-0", "unit-1"]
    env = plans[1].env
    assert env["JOB_COMPLETION_INDEX"] == "1" and env["POD_NAME"] == "unit-1"
    assert env["POD_IP"] == env["NODE_IP"] == env["JOBCTL_MASTER_ADDR"] == "127.0.0.1"
    assert env["JOBCTL_MASTER_PORT"] == "4242"
    assert env["JOBCTL_JOB_DIR"] == str(job_dir.root)
    assert env["JOBCTL_DATA_DIR"] == str(tmp_path / "data" / "train")
    assert env["JOBCTL_VAL_DIR"] == str(tmp_path / "data" / "val")
    train_yaml = Path(env["JOBCTL_TRAIN_CONFIG"])
    assert train_yaml.is_file() and "ckpt_path" not in yaml.safe_load(train_yaml.read_text())  # a flag, from the env
    assert plans[0].argv == [sys.executable, "-m", "trainer.launch"]


# The smallest file that passes the trainer's truncation check: one empty record and the CRC trailer.
# One empty record and MindSpore's CRC trailer over it: complete, and intact (status checks the CRC too).
COMPLETE_CKPT = b"\x0a\x00" + b"crc_num" + zlib.crc32(b"\x0a\x00").to_bytes(10, "big")


def test_job_dir_finds_the_newest_step_checkpoint(tmp_path: Path) -> None:
    job_dir = JobDir.of(tmp_path, "j")
    job_dir.create()
    for name in ("a-9_90.ckpt", "a-10_100.ckpt", "a-10_100-rank1.ckpt", "best.ckpt", ".a-11_110.ckpt.tmp"):
        (job_dir.ckpt_dir / name).write_bytes(COMPLETE_CKPT)
    newest = job_dir.newest_checkpoint()
    assert newest is not None and newest.path.name == "a-10_100.ckpt" and (newest.epoch, newest.step) == (10, 100)
    assert [c.step for c in job_dir.checkpoints()] == [90, 100]


def test_failure_rules_follow_the_rendered_pod_failure_policy(tmp_path: Path) -> None:
    rules = FailureRules.from_job(training_job(render(make_spec(tmp_path, max_restarts=5))))
    assert rules.backoff_limit == 5 and not rules.per_index
    codes = (2, 3, 75, 1, 137, 143)  # 3: a permanent failure (full volume, diverged loss)
    assert [rules.action(code) for code in codes] == ["FailJob", "FailJob", "Ignore", "Count", "Count", "Count"]
    assert parse_indexes("0,2-4") == {0, 2, 3, 4}


def test_rejoin_exits_are_free_and_failures_count(tmp_path: Path) -> None:
    backend, name = run_job(tmp_path, ["75,1,0"], max_restarts=1)
    assert backend.wait(name, for_phase=None, timeout=30) == COMPLETE
    state = local_state(backend, name)
    pod = state["pods"][0]
    assert pod["exit_codes"] == [75, 1, 0] and pod["restarts"] == 2 and state["failures"] == 1


def test_exit_2_fails_the_job_at_once_and_stops_the_others(tmp_path: Path) -> None:
    backend, name = run_job(tmp_path, ["sleep", "2"])
    assert backend.wait(name, for_phase=None, timeout=30) == FAILED
    state = local_state(backend, name)
    assert state["reason"] == "PodFailurePolicy" and "unit-1 exited with code 2" in state["message"]
    assert [p["exit_codes"] for p in state["pods"]] == [[143], [2]]
    info = backend.status(name)
    assert info.explanation is not None and info.explanation.startswith("PodFailurePolicy")


def test_backoff_limit_fails_the_job(tmp_path: Path) -> None:
    backend, name = run_job(tmp_path, ["1"], max_restarts=1)
    assert backend.wait(name, for_phase=None, timeout=30) == FAILED
    state = local_state(backend, name)
    assert state["reason"] == "BackoffLimitExceeded" and state["pods"][0]["exit_codes"] == [1, 1]


def test_success_policy_completes_when_index_0_succeeds(tmp_path: Path) -> None:
    backend, name = run_job(tmp_path, ["0", "sleep"], kube_version="1.33")
    assert backend.wait(name, for_phase=None, timeout=30) == COMPLETE
    assert [p["exit_codes"] for p in local_state(backend, name)["pods"]] == [[0], [143]]


def test_logs_status_and_delete_from_another_process(tmp_path: Path) -> None:
    backend, name = run_job(tmp_path, ["sleep", "sleep"])
    shared = ["--backend", "local", "--shared", str(tmp_path / "shared")]
    deadline = time.monotonic() + 20
    while backend.status(name).phase != "Running" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    status = subprocess.run([*JOBCTL, "status", name, "-o", "json", *shared], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["phase"] == "Running" and [p["phase"] for p in info["pods"]] == ["Running", "Running"]
    logs = subprocess.run([*JOBCTL, "logs", name, "--rank", "1", *shared], capture_output=True, text=True)
    assert logs.stdout.splitlines() == ["[rank 1] attempt 0"]
    pids = [p["pid"] for p in local_state(backend, name)["pods"]]
    deleted = subprocess.run([*JOBCTL, "delete", name, *shared], capture_output=True, text=True)
    assert deleted.returncode == 0, deleted.stderr
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not backend.job_dir(name).local_dir.exists() and backend.job_dir(name).spec_file.is_file()
    gone = subprocess.run([*JOBCTL, "status", name, *shared], capture_output=True, text=True)
    assert gone.returncode == 1 and f"job {name} was deleted" in gone.stderr and "Traceback" not in gone.stderr
    assert "checkpoint(s)" in gone.stderr and str(backend.job_dir(name).root) in gone.stderr


def test_an_unmappable_pod_is_refused_before_anything_starts(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    objects = render(spec)
    secret = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    training_job(objects)["spec"]["template"]["spec"]["containers"][0]["env"].append(secret)
    backend = LocalBackend(tmp_path / "shared")
    with pytest.raises(BackendError, match="TOKEN"):
        backend.submit(spec, objects, resume=False, replace=False)
    assert not backend.job_dir(spec.name).exists(), "nothing half written"


def test_submit_refuses_a_job_directory_with_checkpoints(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    job_dir = JobDir.of(tmp_path / "shared", spec.name)
    job_dir.create()
    (job_dir.ckpt_dir / "resnext_tiny-1_10.ckpt").write_bytes(b"x")
    cmd = [*JOBCTL, "submit", "--backend", "local", "--platform", "cpu", "--name", spec.name]
    cmd += ["--data", str(tmp_path / "data"), "--shared", str(tmp_path / "shared")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2 and "--resume" in result.stderr and "Traceback" not in result.stderr
    assert not job_dir.local_dir.exists(), "nothing started"


# End to end: the real launcher and trainer on 2 CPU workers -------------------------------------------------


def e2e_env() -> dict[str, str]:
    # The launcher's SIGTERM→SIGKILL grace for its ranks: a rank blocked in a collective never answers SIGTERM.
    return {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "JOBCTL_STOP_GRACE": "3"}


def submit_e2e(name: str, dataset: Path, shared: Path, epochs: int, *extra: str) -> subprocess.Popen[str]:
    cmd = [*JOBCTL, "submit", "--backend", "local", "--platform", "cpu", "--devices", "2", "--name", name]
    cmd += ["--data", str(dataset), "--shared", str(shared), "--replace", *extra]
    for key_value in (
        "arch=resnext_tiny",
        "image_size=32",
        "per_batch_size=8",
        f"max_epoch={epochs}",
        f"T_max={epochs}",
        "ckpt_interval=2",
        "snapshot_interval=0",  # these jobs resume from checkpoints (tests/test_recovery_local.py: from snapshots)
        "num_parallel_workers=1",
    ):
        cmd += ["--set", key_value]
    return subprocess.Popen(cmd, env=e2e_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def two_pods_past_a_checkpoint(name: str, dataset: Path, shared: Path, *extra: str, timeout: float = 180) -> JobDir:
    """A 2 pod x 1 worker job, once it has saved its first checkpoint. 5 epochs of 4 steps, a checkpoint every 2:
    the run outlasts that checkpoint by 18 steps and 5 validations, so a kill right after it lands on a running
    process even when this test is starved of CPU for a while."""
    proc = submit_e2e(name, dataset, shared, 5, "--devices-per-node", "1", *extra)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    job_dir = JobDir.of(shared, name)
    deadline = time.monotonic() + timeout
    while not job_dir.has_checkpoints() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_dir.has_checkpoints(), (job_dir.local_dir / "pod-0.log").read_text()[-3000:]
    return job_dir


def evaluate(name: str, shared: Path, dataset: Path) -> dict[str, Any]:
    cmd = [*JOBCTL, "eval", name, "--backend", "local", "--shared", str(shared), "--data", str(dataset / "val")]
    result = subprocess.run([*cmd, "-o", "json"], env=e2e_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.slow
def test_two_cpu_workers_train_then_eval(tmp_path: Path, dataset: Path) -> None:
    shared = tmp_path / "shared"
    proc = submit_e2e("e2e", dataset, shared, 2, "--wait")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "[rank 0] rank=0 epoch=2/2 step=8/8" in out and "[rank 1]" in out, "merged, prefixed logs streamed"
    # Issue 23.5: one progress line per step (rank 0's) and no MindSpore INFO/WARNING line in the merged view...
    assert "[rank 1] rank=1 epoch=" not in out and not re.search(r"\] \[(INFO|WARNING)\] ", out), out[-3000:]
    job_dir = JobDir.of(shared, "e2e")
    assert job_dir.spec_file.is_file() and sorted(job_dir.rank_logs()) == [0, 1]
    # ...while rank 1's file keeps its lines, and `logs --rank 1` reads it.
    shown = subprocess.run([*JOBCTL, "logs", "e2e", "--rank", "1", "--backend", "local", "--shared", str(shared)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "[rank 1] rank=1 epoch=2/2 step=8/8" in shown.stdout, shown.stdout[-2000:]
    status = LocalBackend(shared).status("e2e")
    assert status.phase == COMPLETE and status.progress is not None and status.progress["step"] == 8
    assert status.checkpoint is not None and status.checkpoint.endswith("resnext_tiny-2_8.ckpt")
    result = evaluate("e2e", shared, dataset)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0 and result["images"] == 40
    assert Path(result["checkpoint"]).name == "resnext_tiny-2_8.ckpt"

    # A truncated newest checkpoint: status, eval and (later) resume all pass over it to the previous one.
    newest = job_dir.ckpt_dir / "resnext_tiny-2_8.ckpt"
    os.truncate(newest, newest.stat().st_size // 2)
    status = LocalBackend(shared).status("e2e")
    assert status.checkpoint is not None and status.checkpoint.endswith("resnext_tiny-2_6.ckpt")
    cmd = [*JOBCTL, "eval", "e2e", "--backend", "local", "--shared", str(shared), "--data", str(dataset / "val")]
    done = subprocess.run([*cmd, "-o", "json"], env=e2e_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)["checkpoint"]).name == "resnext_tiny-2_6.ckpt"
    assert (
        f"skipping checkpoint {newest}" in done.stderr and "set aside as resnext_tiny-2_8.ckpt.corrupt" in done.stderr
    )
    assert (job_dir.ckpt_dir / "resnext_tiny-2_8.ckpt.corrupt").is_file() and not newest.exists()


@pytest.mark.slow
def test_a_killed_trainer_restarts_the_group_in_place(tmp_path: Path, dataset: Path) -> None:
    """Two local pods of one CPU worker each, PyNative + jit with safetensors checkpoints (the graph path and .ckpt
    are the other end-to-end tests'): kill -9 pod 1's trainer; no pod is replaced, the group resumes."""
    shared = tmp_path / "shared"
    pynative = ("--set", "execution=pynative", "--set", "ckpt_format=safetensors")
    job_dir = two_pods_past_a_checkpoint("kill", dataset, shared, *pynative)
    pod_logs = [job_dir.local_dir / f"pod-{index}.log" for index in (0, 1)]
    saved = job_dir.newest_checkpoint()
    assert saved is not None
    worker = re.findall(r"started rank 1 \(pid (\d+)\)", pod_logs[1].read_text())[-1]
    try:
        os.kill(int(worker), 9)
    except ProcessLookupError:
        pytest.fail("rank 1 ended before it could be killed; raise max_epoch so the run outlasts the first checkpoint")
    backend = LocalBackend(shared)
    assert backend.wait("kill", for_phase=None, timeout=240) == COMPLETE, pod_logs[1].read_text()[-3000:]
    text = pod_logs[0].read_text()
    resumed = [int(step) for step in re.findall(r"\[rank 0\] rank=0 resuming from \S+ at step (\d+)", text)]
    assert resumed and resumed[0] >= saved.step, text[-3000:]  # at most ckpt_interval finished steps lost
    assert "rank=0 epoch=5/5 step=20/20" in text and "execution pynative" in text
    assert re.search(r"resuming from \S+\.safetensors at step", text)
    assert "restarting the group in place" in pod_logs[1].read_text()
    pods = local_state(backend, "kill")["pods"]
    assert [pod["exit_codes"] for pod in pods] == [[0], [0]]  # no pod was replaced
    assert [pod["restarts"] for pod in pods] == [0, 0]
    info = backend.status("kill")  # the group's restarts, as the launchers count them
    assert (info.restarts, info.max_restarts) == (1, 3)
    assert info.last_restart is not None and "rank 1 exited with code 137" in info.last_restart
    result = evaluate("kill", shared, dataset)
    assert result["images"] == 40 and result["checkpoint"].endswith("resnext_tiny-5_20.safetensors")


@pytest.mark.slow
def test_a_killed_launcher_replaces_its_pod(tmp_path: Path, dataset: Path) -> None:
    """kill -9 of pod 1's launcher: that pod is replaced (counted), pod 0 waits for it in place, the job completes."""
    shared = tmp_path / "shared"
    job_dir = two_pods_past_a_checkpoint("killpod", dataset, shared)
    backend = LocalBackend(shared)
    launcher = next(pod["pid"] for pod in local_state(backend, "killpod")["pods"] if pod["index"] == 1)
    os.kill(int(launcher), 9)
    assert backend.wait("killpod", for_phase=None, timeout=240) == COMPLETE
    pods = local_state(backend, "killpod")["pods"]
    assert pods[0]["exit_codes"] == [0] and pods[1]["exit_codes"] == [137, 0]
    assert "restart 1 of 3 after attempt 0" in (job_dir.local_dir / "pod-0.log").read_text()


def test_a_one_class_dataset_is_refused_at_submit(tmp_path: Path) -> None:
    """Issue 24.5: every rank died with a ValueError traceback and the group restarted three times; the local
    backend sees the data, so it refuses at once (exit 2) and writes nothing."""
    spec = make_spec(tmp_path, name="oneclass")
    (tmp_path / "data" / "train" / "cat").mkdir()
    for i in range(20):
        (tmp_path / "data" / "train" / "cat" / f"{i}.JPEG").write_bytes(b"")
    backend = LocalBackend(tmp_path / "shared")
    with pytest.raises(BackendError, match=r"1 class folder \(cat\); training needs at least 2 classes") as info:
        backend.submit(spec, render(spec), resume=False, replace=False)
    assert info.value.exit_code == 2
    assert not (tmp_path / "shared" / "jobs" / "oneclass").exists()


def test_a_batch_larger_than_a_ranks_share_is_refused_at_submit(tmp_path: Path) -> None:
    """The local backend sees the data: the pods' "per_batch_size is larger than this rank's share" comes first."""
    spec = make_spec(tmp_path, name="bigbatch", devices=2, per_node=1, train={"per_batch_size": 16})
    for cls in ("a", "b"):
        (tmp_path / "data" / "train" / cls).mkdir()
        for i in range(10):
            (tmp_path / "data" / "train" / cls / f"{i}.JPEG").write_bytes(b"")
    backend = LocalBackend(tmp_path / "shared")
    with pytest.raises(
        BackendError, match=r"train.per_batch_size: 16 .* \(20 images over 2 device\(s\) = 10 per rank"
    ) as info:
        backend.submit(spec, render(spec), resume=False, replace=False)
    assert info.value.exit_code == 2
    assert not (tmp_path / "shared" / "jobs" / "bigbatch").exists()  # nothing of it written


def test_the_final_state_is_recorded_even_when_the_volume_refuses_writes_for_a_while(tmp_path, monkeypatch) -> None:
    """A full shared volume must not leave the job Unknown: the controller retries its final state.json."""
    from jobctl.backends.local import controller as local_controller

    spec = make_spec(tmp_path, name="fullvol")
    job_dir = JobDir.of(tmp_path / "shared", spec.name)
    job_dir.local_dir.mkdir(parents=True)
    controller = local_controller.LocalJobController(job_dir, render(spec), tmp_path / "shared")
    real_write, refusals = local_controller.write_atomic, iter(range(2))

    def full_for_two_writes(path: Path, text: str) -> None:
        if next(refusals, None) is not None:
            raise OSError(28, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(local_controller, "write_atomic", full_for_two_writes)
    controller.phase, controller.reason, controller.message = FAILED, "BackoffLimitExceeded", "pod fullvol-0 failed"
    controller.write_final_state()
    state = json.loads((job_dir.local_dir / "state.json").read_text())
    assert (state["phase"], state["reason"]) == (FAILED, "BackoffLimitExceeded")


@pytest.mark.slow
def test_a_full_shared_volume_fails_the_job_with_the_reason(tmpfs, dataset: Path) -> None:
    """Saves fill the volume: the trainer says so in one line and the job fails at once (issue 24.9: exit 3,
    FailJob; no in-place restart loop) with the reason, short, in `jobctl status`; nothing dies with a traceback
    and the earlier checkpoint stays loadable."""
    small_shared = tmpfs("shared", "5m")  # the compile cache (0.9 MB), one checkpoint (2.9 MB), small files; not two
    cmd = [*JOBCTL, "submit", "--backend", "local", "--platform", "cpu", "--devices", "2", "--name", "full"]
    cmd += ["--data", str(dataset), "--shared", str(small_shared), "--max-restarts", "1", "--wait"]
    for key_value in ("arch=resnext_tiny", "image_size=32", "per_batch_size=8", "max_epoch=1000", "T_max=1000"):
        cmd += ["--set", key_value]
    cmd += ["--set", "ckpt_interval=2", "--set", "keep_checkpoint_max=100", "--set", "num_parallel_workers=1"]
    cmd += ["--set", "snapshot_interval=0"]  # local pods keep /dev/shm under the job folder: checkpoints only
    done = subprocess.run(cmd, env=e2e_env(), capture_output=True, text=True, timeout=420)
    assert done.returncode != 0, done.stdout[-2000:]
    status = subprocess.run(
        [*JOBCTL, "status", "full", "--backend", "local", "--shared", str(small_shared), "-o", "json"],
        env=e2e_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    info = json.loads(status.stdout)
    assert info["phase"] == FAILED, status.stdout
    assert "no space left on" in json.dumps(info), status.stdout  # the trainer's line reached status
    # Failed at once: no in-place restart, no pod replaced, one short reason (was 3 restarts and ~1,450 chars).
    assert "restarting the group in place" not in done.stdout and "[launcher] attempt 1" not in done.stdout
    assert [pod["restarts"] for pod in info["pods"]] == [0] and [pod["exit_code"] for pod in info["pods"]] == [3]
    assert len(info["explanation"]) < 400, info["explanation"]
    assert "Traceback" not in done.stdout + done.stderr
    job_dir = JobDir.of(small_shared, "full")
    assert job_dir.newest_checkpoint() is not None
    assert not [p.name for p in job_dir.ckpt_dir.iterdir() if p.name.startswith(".tmp-")]
