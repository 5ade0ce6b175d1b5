"""The launcher's side of elastic data parallel and of lost peers: ranks and rank tables of a shrunk group, the
controller mode refused, a peer lost by its heartbeat, and three launcher processes that shrink to two when one is
killed and grow back to three when it returns. The trainer is tests/launch_fake_trainer.py; the launchers that lose
a peer run with short heartbeat timings (tests/quick_heartbeat_launcher.py)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from contract.group import Group
from contract.ranktable import RankTable
from contract.rendezvous import Fragment, Rendezvous
from launcher.main import read_env
from launcher.modes import LaunchError, msrun_processes, ranktable_processes
from tests.test_launch import Launcher, free_port, pod_env, seen_by

QUICK = "quick_heartbeat_launcher"


def _ranks(procs: list) -> list[tuple[str, ...]]:
    keys = ("RANK_ID", "RANK_SIZE", "MS_NODE_ID", "MS_WORKER_NUM", "MS_ROLE")
    return [tuple(p.env.get(k, "") for k in keys) for p in procs]


def test_msrun_ranks_of_a_shrunk_group(tmp_path) -> None:
    env = read_env(pod_env(tmp_path, 2, pods=3, JOBCTL_MIN_PODS="2"))
    procs = msrun_processes(env, ["trainer"], "10.0.0.1", {}, Group((0, 2), 3, 2))
    assert _ranks(procs) == [("2", "4", "2", "4", "MS_WORKER"), ("3", "4", "3", "4", "MS_WORKER")]
    # Without pod 0 the group's first member runs the scheduler and holds rank 0.
    env = read_env(pod_env(tmp_path, 1, pods=3, JOBCTL_MIN_PODS="2"))
    procs = msrun_processes(env, ["trainer"], "10.0.0.2", {}, Group((1, 2), 3, 2))
    assert _ranks(procs) == [
        ("", "4", "", "4", "MS_SCHED"),
        ("0", "4", "0", "4", "MS_WORKER"),
        ("1", "4", "1", "4", "MS_WORKER"),
    ]


def test_ranktable_ranks_of_a_shrunk_group(tmp_path) -> None:
    ascend = {"JOBCTL_PLATFORM": "ascend", "JOBCTL_LAUNCHER": "ranktable", "JOBCTL_MIN_PODS": "2"}
    env = read_env(pod_env(tmp_path, 2, pods=3, **ascend))
    procs = ranktable_processes(env, ["trainer"], tmp_path / "table.json", {}, group=Group((1, 2), 3, 2))
    assert [(p.env["RANK_ID"], p.env["RANK_SIZE"], p.env["DEVICE_ID"]) for p in procs] == [
        ("2", "4", "0"),
        ("3", "4", "1"),
    ]


def test_the_rank_table_holds_the_members_only(tmp_path) -> None:
    pods = [Rendezvous(tmp_path, i, poll_seconds=0.01) for i in range(3)]
    for i in (0, 2):
        devices = [{"device_id": str(d), "device_ip": f"192.168.{i}.{d}"} for d in (0, 1)]
        pods[i].join(Fragment(i, node_ip=f"10.0.0.{i + 1}", server_id=f"10.0.0.{i + 1}", devices=devices))
    members = pods[2].wait_for_members(3, 2, shrink_after=0, deadline=time.monotonic() + 10)
    pods[1].join(Fragment(1, node_ip="10.0.0.2", server_id="10.0.0.2", devices=[{"device_id": "0"}]))  # standby
    path, table = pods[2].write_rank_table(members)
    parsed = RankTable.from_json(path.read_text())
    assert table.rank_size == 4 and parsed.server_count == "2"
    assert [(s.server_id, [d.rank_id for d in s.device]) for s in parsed.server_list] == [
        ("10.0.0.1", ["0", "1"]),
        ("10.0.0.3", ["2", "3"]),
    ]


def test_controller_mode_is_refused_for_an_elastic_job(tmp_path) -> None:
    env = pod_env(tmp_path, 0, pods=2, JOBCTL_PLATFORM="ascend", JOBCTL_LAUNCHER="controller", JOBCTL_MIN_PODS="1")
    with pytest.raises(LaunchError) as info:
        read_env(env)
    assert info.value.code == 2
    assert "JOBCTL_MIN_PODS=1 of JOBCTL_NUM_PODS=2 makes an elastic job" in str(info.value)
    assert "JOBCTL_LAUNCHER=controller cannot resize" in str(info.value)
    read_env({**env, "JOBCTL_MIN_PODS": "2"})  # not elastic: controller mode as before


@pytest.mark.slow
def test_a_peer_whose_heartbeat_stops_is_lost(tmp_path) -> None:
    """Pod 1's launcher beats, then falls silent (its node is gone): pod 0 stops its ranks within PEER_TIMEOUT,
    marks the attempt failed and waits for pod 1 in the next attempt (not elastic: the existing timeout)."""
    env = pod_env(
        tmp_path, 0, pods=2, FAKE_HANG="1", JOBCTL_DEVICES_PER_POD="1", JOBCTL_RENDEZVOUS_TIMEOUT="3",
        JOBCTL_MAX_RESTARTS="1", QUICK_PEER_TIMEOUT="2",
    )  # fmt: skip
    launcher = Launcher(env, module=QUICK)
    peer = Rendezvous(tmp_path / "job", 1, poll_seconds=0.05)
    peer.meet(Fragment(1), 2, time.monotonic() + 20)
    beating = threading.Event()

    def beat() -> None:
        count = 0
        while not beating.wait(0.2):
            peer.beat(count)
            count += 1

    thread = threading.Thread(target=beat)
    thread.start()
    launcher.wait_for("[rank 0] rank=0 step=3/3")
    time.sleep(3)  # beyond the timeout: a peer that beats is not lost
    assert "lost" not in launcher.text
    beating.set()
    thread.join()
    silent = time.monotonic()
    launcher.wait_for("pod 1 lost: no heartbeat for 2 s (its node or launcher is gone)", timeout=15)
    assert time.monotonic() - silent < 6
    launcher.wait_for("restarting the group in place")
    marker = tmp_path / "job" / "rendezvous" / "attempt-0" / "failed-0"
    assert marker.read_text().strip() == "pod 1 lost: no heartbeat for 2 s (its node or launcher is gone)"
    assert launcher.finish() == 76, launcher.text
    assert "attempt 1: pod(s) 1 did not join in time" in launcher.text


def _elastic(tmp_path: Path, index: int, port: int) -> dict[str, str]:
    return pod_env(
        tmp_path, index, pods=3, FAKE_HANG="1", JOBCTL_DEVICES_PER_POD="1", JOBCTL_MIN_PODS="2",
        JOBCTL_SHRINK_AFTER="1", JOBCTL_MAX_RESTARTS="3", JOBCTL_MASTER_PORT=str(port),
    )  # fmt: skip


@pytest.mark.slow
def test_three_pods_shrink_when_one_is_killed_and_grow_back_when_it_returns(tmp_path) -> None:
    port = free_port()
    pods = [Launcher(_elastic(tmp_path, i, port), module=QUICK) for i in range(3)]
    for i, pod in enumerate(pods):
        pod.wait_for(f"[rank {i}] rank={i} step=3/3")
    assert "attempt 0: all 3 pod(s) joined; world size 3" in pods[0].text
    pods[2].proc.kill()  # its node is gone: no marker, its heartbeat stops
    pods[2].finish()
    shrunk = "attempt 1: pods 0,1 of 3 joined; world size 2 (elastic: pod 2 missing); restart 1 of 3 after"
    for i in (0, 1):
        pods[i].wait_for("pod 2 lost: no heartbeat for", timeout=15)
        pods[i].wait_for(shrunk, timeout=15)
        pods[i].wait_for(f"{shrunk} attempt 0: pod 2 lost")
    for i in (0, 1):  # the two train on as a group of two
        deadline = time.monotonic() + 20
        while pods[i].text.count(f"[rank {i}] rank={i} step=3/3") < 2:
            assert time.monotonic() < deadline, pods[i].text
            time.sleep(0.05)
        seen = seen_by(tmp_path, i)["env"]
        assert (seen["RANK_ID"], seen["RANK_SIZE"], seen["MS_WORKER_NUM"], seen["JOBCTL_MEMBERS"]) == (
            str(i), "2", "2", "0,1"
        )  # fmt: skip
    back = Launcher(_elastic(tmp_path, 2, port), module=QUICK)
    back.wait_for("pod 2: the group trains without this pod (members 0,1); waiting to join at its next step boundary")
    for i in (0, 1):
        pods[i].wait_for(f"[rank {i}] rank {i}: SIGTERM, saving and stopping", timeout=15)
        pods[i].wait_for("attempt 2: all 3 pod(s) joined; world size 3; restart 1 of 3 after attempt 0", timeout=20)
    back.wait_for("attempt 2: all 3 pod(s) joined; world size 3", timeout=20)
    back.wait_for("[rank 2] rank=2 step=3/3")
    seen = seen_by(tmp_path, 2)["env"]
    assert (seen["RANK_SIZE"], seen["JOBCTL_MEMBERS"], seen["JOBCTL_RESTARTS"]) == ("3", "0,1,2", "1")
    grow = (tmp_path / "job" / "rendezvous" / "attempt-1" / "failed-0").read_text()
    assert grow.strip() == "pod 0: stopped to grow the group (pod(s) 2 waiting to join)"
    for pod in (*pods[:2], back):
        pod.proc.send_signal(signal.SIGTERM)
    for pod in (*pods[:2], back):
        assert pod.finish() == 143, pod.text


@pytest.mark.slow
def test_a_group_without_pod_0_runs_the_scheduler_on_its_first_member(tmp_path) -> None:
    """Pods 1 and 2 of 3 train as a group (pod 0 never comes): pod 1 holds rank 0 and the scheduler, pod 2 reaches it
    by pod 1's IP from its fragment (the master address names pod 0, which is not there)."""
    port = free_port()
    common = {
        "JOBCTL_DEVICES_PER_POD": "1", "JOBCTL_MIN_PODS": "2", "JOBCTL_SHRINK_AFTER": "0.5",
        "JOBCTL_MASTER_PORT": str(port), "JOBCTL_MASTER_ADDR": "t-0.invalid",
    }  # fmt: skip
    pods = [Launcher(pod_env(tmp_path, i, pods=3, **common)) for i in (1, 2)]
    for pod in pods:
        assert pod.finish() == 0, pod.text
        assert "attempt 0: pods 1,2 of 3 joined; world size 2 (elastic: pod 0 missing)" in pod.text
    assert "[sched] all workers finished" in pods[0].text
    assert f"scheduler 127.0.0.1 (127.0.0.1:{port}) answers" in pods[1].text
    for rank in (0, 1):
        seen = seen_by(tmp_path, rank)["env"]
        assert (seen["RANK_SIZE"], seen["MS_WORKER_NUM"], seen["JOBCTL_MEMBERS"]) == ("2", "2", "1,2")
    assert "[rank 0] rank=0 step=3/3" in pods[0].text and "[rank 1] rank=1 step=3/3" in pods[1].text


def _standby(tmp_path: Path) -> tuple[Launcher, Rendezvous]:
    """Pod 0 (a Rendezvous here) trains alone; pod 1's launcher comes late and waits as a standby."""
    member = Rendezvous(tmp_path / "job", 0, poll_seconds=0.05)
    member.join(Fragment(0))
    assert member.publish_members([0]) == (0,)
    launcher = Launcher(pod_env(tmp_path, 1, pods=2, JOBCTL_MIN_PODS="1", JOBCTL_DEVICES_PER_POD="1"))
    launcher.wait_for("pod 1: the group trains without this pod (members 0); waiting to join at its next step boundary")
    return launcher, member


@pytest.mark.slow
def test_a_standby_stopped_by_sigterm_withdraws_and_marks_nothing(tmp_path) -> None:
    launcher, member = _standby(tmp_path)
    assert member.newcomers((0,), 2) == [1]
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.finish() == 143, launcher.text
    assert member.newcomers((0,), 2) == [] and member.group_failed() is None  # pod 0 trains on, undisturbed
    assert "started rank" not in launcher.text


@pytest.mark.slow
def test_a_standby_ends_when_the_members_complete(tmp_path) -> None:
    launcher, member = _standby(tmp_path)
    time.sleep(1)  # no deadline: it waits
    assert launcher.proc.poll() is None
    member.mark_done()
    assert launcher.finish() == 0, launcher.text
    assert "attempt 0 was completed by pod(s) 0; nothing to do" in launcher.text
