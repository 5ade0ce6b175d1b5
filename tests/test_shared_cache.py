"""Every cross-pod handoff with each pod behind its own NFS-like caching view of the shared volume.

``jobctl submit --backend local --shared-cache T`` gives each local pod its own view (jobctl.cachedfs: attributes,
lookups both ways and listings cached for T, close-to-open contents), and a "third node" view of the same volume
serves `jobctl status` and `jobctl eval`. The third view is warmed while the job runs and keeps what it learnt for
far longer than the job lasts, so its listings of ckpt/ are stale for sure: what it reports must still be the
newest checkpoint. Needs FUSE (see tests/test_cachedfs.py): without it these fail with the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobctl.backends.base import COMPLETE
from jobctl.backends.local.backend import LocalBackend
from jobctl.backends.local.pods import view_mountpoint
from jobctl.cachedfs import CachedView, is_mounted
from jobctl.jobdir import JobDir

pytestmark = pytest.mark.slow
JOBCTL = [sys.executable, "-m", "jobctl"]
POD_CACHE = "30s"  # what the issue asks to survive; fresh listings make it cost nothing
THIRD_CACHE = 3600.0  # the third node remembers its first look at ckpt/ for the whole test


def env() -> dict[str, str]:
    return {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "JOBCTL_STOP_GRACE": "3"}


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    path = tmp_path / "shared"
    path.mkdir()
    return path


@pytest.fixture
def third(tmp_path: Path, shared: Path) -> Iterator[Path]:
    """Another node's view of the shared volume, for status and eval."""
    with CachedView(shared, tmp_path / "node-3", THIRD_CACHE, log=tmp_path / "node-3.log") as view:
        yield view.mountpoint


def submit(name: str, dataset: Path, shared: Path, epochs: int, *extra: str) -> JobDir:
    cmd = [*JOBCTL, "submit", "--backend", "local", "--platform", "cpu", "--devices", "2", "--name", name]
    cmd += ["--devices-per-node", "1", "--data", str(dataset), "--shared", str(shared), "--shared-cache", POD_CACHE]
    for key_value in ("arch=resnext_tiny", "image_size=32", "per_batch_size=8", f"max_epoch={epochs}"):
        cmd += ["--set", key_value]
    cmd += ["--set", f"T_max={epochs}", "--set", "ckpt_interval=2", "--set", "num_parallel_workers=1"]
    # The checkpoint handoffs are under test: no in-memory snapshots (tests/test_recovery_local.py has those).
    cmd += ["--set", "snapshot_interval=0", *extra]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return JobDir.of(shared, name)


def wait_for_checkpoint(job_dir: JobDir, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not job_dir.has_checkpoints():
        assert time.monotonic() < deadline, (job_dir.local_dir / "pod-0.log").read_text()[-3000:]
        time.sleep(0.2)


def warm(third: Path, name: str) -> None:
    """The third node looks at the job once: it now caches ckpt/'s listing (with at most the first checkpoint)."""
    info = LocalBackend(third).status(name)
    assert info.checkpoint is not None


def finish(shared: Path, name: str) -> list[str]:
    backend = LocalBackend(shared)
    phase = backend.wait(name, for_phase=None, timeout=300)
    logs = [(backend.job_dir(name).local_dir / f"pod-{i}.log").read_text() for i in (0, 1)]
    assert phase == COMPLETE, logs[0][-3000:] + logs[1][-3000:]
    return logs


def newest_on_the_volume(shared: Path, name: str) -> str:
    names = [p.name for p in JobDir.of(shared, name).ckpt_dir.glob("resnext_tiny-*_*.ckpt")]
    return max(names, key=lambda n: int(re.findall(r"_(\d+)\.ckpt$", n)[0]))


def status_and_eval_from(third: Path, name: str, dataset: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    flags = ["--backend", "local", "--shared", str(third), "-o", "json"]
    status = subprocess.run([*JOBCTL, "status", name, *flags], env=env(), capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    cmd = [*JOBCTL, "eval", name, *flags, "--data", str(dataset / "val")]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(status.stdout), json.loads(done.stdout)


def test_start_then_status_and_eval_from_a_third_view(dataset: Path, shared: Path, third: Path) -> None:
    job_dir = submit("start", dataset, shared, 3)
    wait_for_checkpoint(job_dir)
    warm(third, "start")
    logs = finish(shared, "start")
    assert "/jobctl-views/" in logs[0] and "/jobctl-views/" in logs[1]  # each pod wrote through its own view
    newest = newest_on_the_volume(shared, "start")
    assert newest == "resnext_tiny-3_12.ckpt"
    listed = os.listdir(JobDir.of(third, "start").ckpt_dir)
    assert newest not in listed, "the third view's listing is stale (else this test proves nothing)"
    status, result = status_and_eval_from(third, "start", dataset)
    assert status["phase"] == COMPLETE and Path(status["checkpoint"]).name == newest, status
    assert Path(result["checkpoint"]).name == newest, result


def test_in_place_restart_under_caching_views(dataset: Path, shared: Path, third: Path) -> None:
    """kill -9 of pod 1's trainer: both launchers see the failure marker, meet in attempt 1 in their pods, and
    every rank resumes from the newest checkpoint (no older one than pod 0 saw)."""
    job_dir = submit("inplace", dataset, shared, 5)
    wait_for_checkpoint(job_dir)
    warm(third, "inplace")
    saved = job_dir.newest_checkpoint()
    assert saved is not None
    worker = re.findall(r"started rank 1 \(pid (\d+)\)", (job_dir.local_dir / "pod-1.log").read_text())[-1]
    killed = time.monotonic()
    os.kill(int(worker), 9)
    logs = finish(shared, "inplace")
    for rank, log in enumerate(logs):
        steps = [int(s) for s in re.findall(rf"\[rank {rank}\] rank={rank} resuming from \S+ at step (\d+)", log)]
        assert steps and steps[0] >= saved.step, log[-3000:]
    assert "restarting the group in place" in logs[1]
    state = LocalBackend(shared).read_state(job_dir)
    assert state is not None and [pod["exit_codes"] for pod in state["pods"]] == [[0], [0]]
    print(f"in-place restart with {POD_CACHE} views: job done {time.monotonic() - killed:.1f} s after the kill")
    status, result = status_and_eval_from(third, "inplace", dataset)
    newest = newest_on_the_volume(shared, "inplace")
    assert Path(status["checkpoint"]).name == newest and Path(result["checkpoint"]).name == newest
    assert status["restarts"] == 1


def test_pod_replacement_under_caching_views(dataset: Path, shared: Path) -> None:
    """kill -9 of pod 1's launcher: its view goes with it, a new pod gets a new (cold) view, pod 0 waits in place."""
    job_dir = submit("replace", dataset, shared, 5)
    wait_for_checkpoint(job_dir)
    saved = job_dir.newest_checkpoint()
    assert saved is not None
    state = LocalBackend(shared).read_state(job_dir)
    assert state is not None
    os.kill(int(state["pods"][1]["pid"]), 9)
    logs = finish(shared, "replace")
    state = LocalBackend(shared).read_state(job_dir)
    assert state is not None and state["pods"][1]["exit_codes"] == [137, 0]
    assert "restart 1 of 3 after attempt 0" in logs[0]
    for rank, log in enumerate(logs):
        steps = [int(s) for s in re.findall(rf"\[rank {rank}\] rank={rank} resuming from \S+ at step (\d+)", log)]
        assert steps and steps[0] >= saved.step, log[-3000:]
    assert not any(is_mounted(view_mountpoint(job_dir, index)) for index in (0, 1)), "views unmounted at the end"


def test_rank_table_assembly_under_caching_views(tmp_path: Path) -> None:
    """Two Ascend launchers (rank-table mode, fake device info and trainer) behind their own views caching for an
    hour: pod 1 starts after pod 0 has listed the attempt; pod 0's rendezvous still sees pod 1's fragment at once
    (fresh listings), both build the same table in the same attempt, well within the cache time."""
    from tests.test_launch import Launcher, pod_env, seen_by

    real = tmp_path / "real"
    real.mkdir()
    annotation = {
        "pod_name": "t-0",
        "server_id": "10.0.0.11",
        "devices": [{"device_id": "4", "device_ip": "192.168.100.4"}],
    }
    annotations = tmp_path / "annotations"
    annotations.write_text(
        f"ascend.kubectl.kubernetes.io/ascend-910-configuration={json.dumps(json.dumps(annotation))}\n"
    )
    hccn = tmp_path / "hccn.conf"
    hccn.write_text("".join(f"address_{d}=192.168.{100 + d}.12\nnetmask_{d}=255.255.255.0\n" for d in range(8)))
    common = {"JOBCTL_PLATFORM": "ascend", "JOBCTL_LAUNCHER": "ranktable", "JOBCTL_HCCN_CONF": str(hccn)}
    common |= {"JOBCTL_DEVICES_PER_POD": "1", "JOBCTL_RENDEZVOUS_TIMEOUT": "60"}
    with (
        CachedView(real, tmp_path / "node-0", 3600, log=tmp_path / "node-0.log") as node0,
        CachedView(real, tmp_path / "node-1", 3600, log=tmp_path / "node-1.log") as node1,
    ):
        env0 = pod_env(tmp_path, 0, pods=2, JOBCTL_ANNOTATIONS_FILE=str(annotations), **common)
        env0["JOBCTL_JOB_DIR"] = str(node0.mountpoint / "job")
        started = time.monotonic()
        pod0 = Launcher(env0)
        pod0.wait_for("joining the rendezvous")
        while not list((real / "job" / "rendezvous").glob("attempt-0/pod-0.json")):  # pod 0 waits in attempt 0
            assert pod0.proc.poll() is None, pod0.text
            time.sleep(0.05)
        env1 = pod_env(tmp_path, 1, pods=2, JOBCTL_ANNOTATIONS_FILE=str(tmp_path / "none"), **common)
        env1 |= {"JOBCTL_JOB_DIR": str(node1.mountpoint / "job"), "ASCEND_VISIBLE_DEVICES": "6", "NODE_IP": "10.0.0.12"}
        env1["JOBCTL_MASTER_PORT"] = env0["JOBCTL_MASTER_PORT"]
        pod1 = Launcher(env1)
        assert pod0.finish() == 0, pod0.text
        assert pod1.finish() == 0, pod1.text
        took = time.monotonic() - started
    seen = [seen_by(tmp_path, rank) for rank in range(2)]
    assert seen[0]["table"] == seen[1]["table"]
    servers = [(s["server_id"], [d["device_id"] for d in s["device"]]) for s in seen[0]["table"]["server_list"]]
    assert servers == [("10.0.0.11", ["4"]), ("10.0.0.12", ["6"])]
    tables = [Path(s["env"]["RANK_TABLE_FILE"]) for s in seen]
    assert [t.parent.name for t in tables] == ["attempt-0", "attempt-0"], "one attempt: no group formed twice"
    assert tables[0].is_relative_to(node0.mountpoint) and tables[1].is_relative_to(node1.mountpoint)
    assert sorted(p.name for p in (real / "job" / "rendezvous").iterdir()) == ["attempt-0"]
    assert took < 120, f"the start took {took:.1f} s: the rendezvous waited for a cached listing to expire"


def test_the_rendezvous_sees_its_peers_at_once_through_hour_long_caches(tmp_path: Path) -> None:
    """Listings cached for an hour: every rendezvous listing is taken fresh (a probe file of the pod's own), so
    fragments, failure markers and newer attempts are seen at once; a plain listing of the same view is stale."""
    from contract.rendezvous import Fragment, Rendezvous

    real = tmp_path / "real"
    real.mkdir()
    with (
        CachedView(real, tmp_path / "node-0", 3600, log=tmp_path / "node-0.log") as node0,
        CachedView(real, tmp_path / "node-1", 3600, log=tmp_path / "node-1.log") as node1,
    ):
        pod0 = Rendezvous(node0.mountpoint / "job", 0, poll_seconds=0.05, run_id="run")
        pod1 = Rendezvous(node1.mountpoint / "job", 1, poll_seconds=0.05, run_id="run")
        assert pod0.join(Fragment(0)) == 0
        assert list(pod0.fragments()) == [0]
        assert os.listdir(pod0.attempt_dir()) == ["pod-0.json"]  # node 0 now caches this listing for an hour
        assert pod1.join(Fragment(1)) == 0
        assert os.listdir(pod0.attempt_dir()) == ["pod-0.json"], "the view caches (else this test proves nothing)"
        began = time.monotonic()
        assert [f.pod_index for f in pod0.wait_for_all(2, began + 5)] == [0, 1]
        assert pod1.mark_failed("pod 1: rank 1 exited with code 137")
        assert pod0.group_failed() is not None and "rank 1 exited" in str(pod0.group_failed())
        assert pod1.join(Fragment(1)) == 1  # pod 1 restarts in place: attempt 0 is closed for it
        assert pod0.group_failed() == "a newer attempt 1 exists (a peer restarted or a pod was replaced)"
        assert pod0.join(Fragment(0)) == 1
        assert [f.pod_index for f in pod1.wait_for_all(2, time.monotonic() + 5)] == [0, 1]
        assert time.monotonic() - began < 5
        leftovers = [p.name for p in (real / "job" / "rendezvous" / "run").rglob(".probe-*")]
        assert leftovers == []


def test_heartbeats_and_members_are_seen_at_once_through_hour_long_caches(tmp_path: Path) -> None:
    """A peer's heartbeat is read by its content (close-to-open), never by attributes the view caches for an hour: a
    beating peer is never lost, a silent one is lost after the timeout; members.json, published once by an
    exclusive link, is read by every view at once."""
    from contract.rendezvous import Fragment, PeerWatch, Rendezvous

    real = tmp_path / "real"
    real.mkdir()
    with (
        CachedView(real, tmp_path / "node-0", 3600, log=tmp_path / "node-0.log") as node0,
        CachedView(real, tmp_path / "node-1", 3600, log=tmp_path / "node-1.log") as node1,
    ):
        pod0 = Rendezvous(node0.mountpoint / "job", 0, poll_seconds=0.05, run_id="run")
        pod1 = Rendezvous(node1.mountpoint / "job", 1, poll_seconds=0.05, run_id="run")
        pod0.join(Fragment(0))
        pod1.join(Fragment(1))
        assert pod1.publish_members([0, 1]) == (0, 1)
        assert pod0.publish_members([0]) == (0, 1)  # the first publication wins, in both views
        watch = PeerWatch([1], timeout=1.0)
        pod1.beat(0)
        assert 1 in pod0.heartbeats()
        for count in range(1, 16):  # 1.5 s of beats: never lost
            pod1.beat(count)
            assert watch.lost(pod0.heartbeats()) == []
            time.sleep(0.1)
        began = time.monotonic()
        while not watch.lost(pod0.heartbeats()):
            assert time.monotonic() - began < 3
            time.sleep(0.05)
        assert time.monotonic() - began >= 0.9
