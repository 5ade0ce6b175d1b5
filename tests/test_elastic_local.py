"""Elastic data parallel end to end on the local backend (issue 20's "done when").

A 3-pod x 1-rank resnext_tiny job with min_devices 2: `jobctl fault --pod 2 --down` takes pod 2 away as a lost
node does; the two survivors notice (heartbeats), wait shrink_after, train as a group of 2 with the same global
batch; when the pod comes back (`--up`: the test decides when, so the 2-pod segment always trains; bench.elastic
times the issue's `--for 45s`) the group saves at a step boundary and grows back to 3 without losing a step, and
the job completes its planned steps. A job that is not elastic waits for the lost pod and fails with the reason.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from contract.lines import parse_resumed
from contract.metrics import SEGMENT_KIND, read_history
from jobctl.backends.base import COMPLETE, FAILED
from jobctl.backends.local.backend import LocalBackend
from jobctl.jobdir import JobDir
from jobctl.render import render
from jobctl.spec import load_spec
from tests.test_local_backend import JOBCTL, e2e_env
from tests.test_local_fault import jobctl as jobctl_in_process
from tests.test_local_fault import laptop  # noqa: F401  (an autouse fixture: no cluster, the fake trainer's path)
from tests.test_recovery_local import text_of, wait_until

PER_BATCH = 4  # global batch 12: 4 per rank on 3 pods, 6 on 2
STEPS_PER_EPOCH = 64 // (PER_BATCH * 3)  # the `dataset` fixture: 64 images
EPOCHS = 40  # 200 steps: the group of 2 trains ~15-60 of them before the grow (0.1 s a step here)
PROGRESS = re.compile(r"\[rank 0\] rank=0 epoch=\d+/\d+ step=(\d+)/")
# Generous: detection (15 s heartbeat timeout) + shrink_after + starting MindSpore on a shared 2-core machine.
TRAINING_ON_2_SECONDS = 240


def submit_elastic(name: str, dataset: Path, shared: Path) -> JobDir:
    cmd = [*JOBCTL, "submit", "--backend", "local", "--platform", "cpu", "--devices", "3", "--name", name]
    cmd += ["--devices-per-node", "1", "--min-devices", "2", "--shrink-after", "5", "--max-restarts", "5"]
    cmd += ["--data", str(dataset), "--shared", str(shared), "--replace"]
    for key_value in (
        "arch=resnext_tiny",
        "image_size=32",
        f"per_batch_size={PER_BATCH}",
        f"max_epoch={EPOCHS}",
        f"T_max={EPOCHS}",
        "ckpt_interval=100000",
        "snapshot_interval=1",
        "eval_interval=1000",
        "log_interval=1",
        "num_parallel_workers=1",
    ):
        cmd += ["--set", key_value]
    done = subprocess.run(cmd, env=e2e_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return JobDir.of(shared, name)


def segments(job_dir: JobDir) -> list[dict[str, Any]]:
    return [r for r in read_history(job_dir.metrics_file) if r["kind"] == SEGMENT_KIND]


def trained_after(job_dir: JobDir, marker: str) -> bool:
    """Rank 0 logged a step after the newest line containing ``marker`` in pod 0's log."""
    text = text_of(job_dir.local_dir / "pod-0.log")
    at = text.rfind(marker)
    return at >= 0 and PROGRESS.search(text, at) is not None


def fault(name: str, shared: Path, *args: str) -> None:
    cmd = [*JOBCTL, "fault", name, "--pod", "2", *args, "--backend", "local", "--shared", str(shared)]
    done = subprocess.run(cmd, env=e2e_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_an_elastic_job_trains_on_without_a_lost_pod_and_grows_back(tmp_path: Path, dataset: Path) -> None:
    shared, name = tmp_path / "shared", "elastic"
    job_dir = submit_elastic(name, dataset, shared)
    pod0 = job_dir.local_dir / "pod-0.log"
    wait_until("5 steps on 3 pods", lambda: len(PROGRESS.findall(text_of(pod0))) >= 5, 300)
    downed = time.monotonic()
    fault(name, shared, "--down")
    wait_until("training on 2 pods", lambda: trained_after(job_dir, "pods 0,1 of 3 joined"), TRAINING_ON_2_SECONDS)
    to_two = time.monotonic() - downed
    fault(name, shared, "--up")
    wait_until("training on 3 pods again", lambda: trained_after(job_dir, "all 3 pod(s) joined; world size 3; "), 300)
    backend = LocalBackend(shared)
    phase = backend.wait(name, for_phase=None, timeout=600)
    logs = "\n".join(text_of(job_dir.local_dir / f"pod-{i}.log") for i in range(3))
    assert phase == COMPLETE, logs[-9000:]
    text = text_of(pod0)
    total = STEPS_PER_EPOCH * EPOCHS
    assert f"step={total}/{total}" in text
    # metrics.jsonl: the world size of each segment, full -> shrunk -> full.
    sizes = [(r["devices"], r["full_devices"]) for r in segments(job_dir)]
    assert [d for d, _ in sizes if d == 2] and sizes[0] == (3, 3) and sizes[-1] == (3, 3), sizes
    assert (2, 3) in sizes and sizes.index((2, 3)) < len(sizes) - 1, sizes
    # The same global batch and step count in every segment (the recipe does not move with the group).
    batches = re.findall(r"steps/epoch, steps \d+->(\d+), global batch (\d+)", text)
    assert batches and set(batches) == {(str(total), str(PER_BATCH * 3))}, batches
    assert "x2 of 3 (pods 0,1)" in text
    # No finished step lost at the planned grow-back: the full group resumes at the newest step logged before it.
    grow_at = text.find("stopped to grow the group")
    assert grow_at > text.find("pods 0,1 of 3 joined") > 0, "the 2-pod group saved and stopped to grow back"
    assert "did not stop within" not in logs, "a rank was killed during the grow (then it counts as a failure)"
    assert "restart 2 of" not in text, "only the lost pod counts as a restart, not the grow"
    before = max(int(s) for s in PROGRESS.findall(text[:grow_at]))
    resumed = [p for line in text[grow_at:].splitlines() if (p := parse_resumed(line))]
    assert resumed and resumed[0][2] >= before, (before, resumed[:1])
    print(f"fault -> training on 2 pods: {to_two:.1f} s")


def submit_rigid(tmp_path: Path) -> tuple[LocalBackend, Any, list[str]]:
    """A 2-pod job that is not elastic, its launchers running the fake trainer; a short rendezvous timeout and one
    restart, so the wait for the lost pod ends within the test."""
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "val").mkdir()
    flags = {"name": "rigid", "platform": "cpu", "devices": 2, "devices_per_node": 1, "data.host_path": str(data)}
    flags |= {"shared.host_path": str(tmp_path / "shared"), "rendezvous_timeout": 10, "max_restarts": 1}
    spec = load_spec(None, flags, [])
    objects = render(spec)
    container = objects_container(objects)
    env = {"JOBCTL_TRAINER_MODULE": "launch_fake_trainer", "FAKE_LINES": "100000", "FAKE_INTERVAL": "0.1"}
    container["env"] += [{"name": k, "value": v} for k, v in env.items()]
    backend = LocalBackend(tmp_path / "shared")
    backend.submit(spec, objects, resume=False, replace=False)
    return backend, spec, ["--backend", "local", "--shared", str(backend.shared)]


def objects_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    job = next(o for o in objects if o["kind"] == "Job")
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def test_a_job_that_is_not_elastic_waits_for_the_lost_pod_then_fails_with_the_reason(tmp_path: Path) -> None:
    backend, spec, flags = submit_rigid(tmp_path)
    job_dir = backend.job_dir(spec.name)
    wait_until("pod 1 running", lambda: (job_dir.logs_dir / "rank-1.log").is_file(), 60)
    result = jobctl_in_process("fault", spec.name, "--pod", "1", "--down", *flags)
    assert result.exit_code == 0, result.output
    pod0 = job_dir.local_dir / "pod-0.log"
    wait_until("the lost pod noticed", lambda: "pod 1 lost: no heartbeat" in text_of(pod0), 60)
    phase = backend.wait(spec.name, for_phase=None, timeout=spec.rendezvous_timeout + 120)
    assert phase == FAILED, text_of(pod0)[-3000:]
    assert "pod(s) 1 did not join in time" in text_of(pod0)
    shown = jobctl_in_process("status", spec.name, *flags)
    assert "did not join in time" in shown.stdout, shown.stdout
