"""Shared-volume rendezvous: attempts, fragments, markers, and concurrent pods converging on one attempt."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest

import contract.rendezvous as rendezvous_module
from contract.ranktable import RankTable
from contract.rendezvous import Fragment, GroupChanged, GroupCompleted, Rendezvous, RendezvousTimeout


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def test_join_and_wait_for_all(tmp_path) -> None:
    pods = [Rendezvous(tmp_path, i, poll_seconds=0.01) for i in range(3)]
    for i in (2, 0, 1):
        assert pods[i].join(Fragment(i, pod_ip=f"10.0.0.{i}")) == 0
    fragments = pods[1].wait_for_all(3, soon())
    assert [f.pod_index for f in fragments] == [0, 1, 2]
    assert [f.pod_ip for f in fragments] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    stored = json.loads((tmp_path / "rendezvous" / "attempt-0" / "pod-2.json").read_text())
    assert stored["pod_index"] == 2 and stored["hostname"] and stored["time"]


def test_a_resubmitted_job_never_meets_the_earlier_submission(tmp_path) -> None:
    old = Rendezvous(tmp_path, 0, poll_seconds=0.01, run_id="uid-old")
    old.join(Fragment(0))
    old.mark_failed("pod 0: crashed")
    new = Rendezvous(tmp_path, 0, poll_seconds=0.01, run_id="uid-new")
    assert new.join(Fragment(0)) == 0  # attempt 0 of its own run, not attempt 1 after the old failure
    assert new.group_failed() is None
    assert (tmp_path / "rendezvous" / "uid-new" / "attempt-0" / "pod-0.json").exists()


def test_timeout_names_the_missing_pods(tmp_path) -> None:
    pod = Rendezvous(tmp_path, 1, poll_seconds=0.01)
    pod.join(Fragment(1))
    with pytest.raises(RendezvousTimeout, match=r"attempt 0: pod\(s\) 0, 2 did not join in time \(have 1 of 3\)"):
        pod.wait_for_all(3, soon(0.1))


def test_replacement_pod_moves_the_group_to_a_new_attempt(tmp_path) -> None:
    a, b = Rendezvous(tmp_path, 0, poll_seconds=0.01), Rendezvous(tmp_path, 1, poll_seconds=0.01)
    a.join(Fragment(0))
    b.join(Fragment(1))
    a.wait_for_all(2, soon())
    assert a.group_failed() is None
    replacement = Rendezvous(tmp_path, 1, poll_seconds=0.01)  # pod 1 died and came back
    assert replacement.join(Fragment(1, pod_ip="10.0.0.9")) == 1
    assert "newer attempt 1" in (a.group_failed() or "")
    with pytest.raises(GroupChanged):
        a.wait_for_all(2, soon())
    rejoined = Rendezvous(tmp_path, 0, poll_seconds=0.01)
    assert rejoined.join(Fragment(0)) == 1
    fragments = rejoined.wait_for_all(2, soon())
    assert fragments[1].pod_ip == "10.0.0.9"  # only attempt 1's fragments, never attempt 0's


def test_a_fragment_written_into_a_superseded_attempt_moves_on(tmp_path, monkeypatch) -> None:
    """The race: another pod creates attempt 1 while this pod is writing its fragment into attempt 0."""
    Rendezvous(tmp_path, 1).join(Fragment(1))
    original = rendezvous_module.write_atomic

    def racing_write(path: Path, text: str) -> None:
        original(path, text)
        if path.parent.name == "attempt-0":
            Rendezvous(tmp_path, 1).join(Fragment(1))  # pod 1 is replaced right now: it opens attempt 1

    monkeypatch.setattr(rendezvous_module, "write_atomic", racing_write)
    pod = Rendezvous(tmp_path, 0)
    assert pod.join(Fragment(0)) == 1
    assert sorted(pod.fragments()) == [0, 1]


def test_failure_marker_is_seen_by_peers_and_closes_the_attempt(tmp_path) -> None:
    a, b = Rendezvous(tmp_path, 0), Rendezvous(tmp_path, 1)
    a.join(Fragment(0))
    b.join(Fragment(1))
    b.mark_failed("rank 1 exited with code 1")
    assert a.group_failed() == "pod(s) 1 marked attempt 0 failed: rank 1 exited with code 1"
    assert b.group_failed() is None  # its own marker is not news to itself
    assert Rendezvous(tmp_path, 0).join(Fragment(0)) == 1


def test_meet_follows_the_group_to_the_newer_attempt(tmp_path) -> None:
    a = Rendezvous(tmp_path, 0, poll_seconds=0.01)
    a.join(Fragment(0))
    Rendezvous(tmp_path, 1).join(Fragment(1))
    Rendezvous(tmp_path, 1).join(Fragment(1))  # pod 1 replaced before pod 0 finished waiting: attempt 1
    fragments = a.meet(Fragment(0), 2, soon())
    assert a.attempt == 1 and [f.pod_index for f in fragments] == [0, 1]


def test_a_completed_attempt_tells_a_late_replacement_to_stop(tmp_path) -> None:
    a, b = Rendezvous(tmp_path, 0), Rendezvous(tmp_path, 1)
    a.join(Fragment(0))
    b.join(Fragment(1))
    a.mark_done()
    with pytest.raises(GroupCompleted, match="attempt 0 was already completed by pod"):
        Rendezvous(tmp_path, 1).join(Fragment(1))
    # A pod that did not take part (a new group after the job dir was reused) starts a new attempt instead.
    assert Rendezvous(tmp_path, 0).join(Fragment(0)) == 1


def test_every_pod_writes_the_same_rank_table(tmp_path) -> None:
    devices = [[{"device_id": str(d), "device_ip": f"192.168.{p}.{d}"} for d in (0, 1)] for p in range(2)]
    pods = [Rendezvous(tmp_path, i) for i in range(2)]
    for i, pod in enumerate(pods):
        pod.join(Fragment(i, node_ip=f"10.0.0.{i + 1}", server_id=f"10.0.0.{i + 1}", devices=devices[i]))
    texts = []
    for pod in pods:
        path, table = pod.write_rank_table(pod.wait_for_all(2, soon()))
        assert path.parent == tmp_path / "rendezvous" / "attempt-0"
        texts.append(path.read_text())
    assert texts[0] == texts[1]
    table = RankTable.from_json(texts[0])
    assert [(s.server_id, [d.rank_id for d in s.device]) for s in table.server_list] == [
        ("10.0.0.1", ["0", "1"]),
        ("10.0.0.2", ["2", "3"]),
    ]


def _meet(job_dir: str, index: int, pods: int, start: float, results: multiprocessing.Queue) -> None:
    time.sleep(max(0.0, start - time.time()) + random.uniform(0, 0.05))
    rendezvous = Rendezvous(job_dir, index, poll_seconds=0.02)
    fragments = rendezvous.meet(Fragment(index), pods, time.monotonic() + 30)
    results.put((index, rendezvous.attempt, [f.pod_index for f in fragments]))


def _race(ctx: Any, tmp_path: Path, pods: int, start: float) -> list[Any]:
    """Every pod meets the group in its own process, all released at ``start``; their (index, attempt, seen)."""
    results = ctx.Queue()
    procs = [ctx.Process(target=_meet, args=(str(tmp_path), i, pods, start, results)) for i in range(pods)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in range(pods)]
    for proc in procs:
        proc.join(timeout=10)
        assert proc.exitcode == 0
    return outcomes


@pytest.mark.slow
def test_concurrent_pods_converge_on_one_attempt(tmp_path) -> None:
    """Eight pod processes start at once, three times over (every round replaces the whole group)."""
    ctx = multiprocessing.get_context("fork")
    pods = 8
    for round_ in range(3):
        outcomes = _race(ctx, tmp_path, pods, start=time.time() + 0.3)
        attempts = {attempt for _, attempt, _ in outcomes}
        assert len(attempts) == 1, f"round {round_}: pods ended in attempts {attempts}"
        assert all(seen == list(range(pods)) for _, _, seen in outcomes)
    assert attempts == {2}


@pytest.mark.slow
def test_replacements_racing_a_failed_attempt_converge(tmp_path) -> None:
    """A group fails (marker) and every pod rejoins at a random moment, racing the others' mkdir."""
    ctx = multiprocessing.get_context("fork")
    pods = 6
    for i in range(pods):
        Rendezvous(tmp_path, i).join(Fragment(i))
    Rendezvous(tmp_path, 3).mark_failed("rank 3 died")
    outcomes = _race(ctx, tmp_path, pods, start=time.time() + 0.2)
    assert {attempt for _, attempt, _ in outcomes} == {1}
    assert sorted(p.name for p in Path(tmp_path, "rendezvous").iterdir()) == ["attempt-0", "attempt-1"]
