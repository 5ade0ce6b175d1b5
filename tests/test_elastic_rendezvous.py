"""The rendezvous of elastic jobs and every job's heartbeats: members published once, the shrink after
shrink_after, standbys, the grow marker, lost peers. Pods are threads or objects here; tests/test_elastic_launch.py
runs launcher processes."""

from __future__ import annotations

import errno
import threading
import time

import pytest

import contract.rendezvous as rendezvous_module
from contract.rendezvous import (
    MEMBERS_FILE,
    Fragment,
    GroupChanged,
    GroupCompleted,
    PeerWatch,
    Rendezvous,
    RendezvousTimeout,
    Standby,
    format_heartbeat,
    parse_heartbeat,
)
from contract.restarts import GROW_STOP, SIGTERM_STOP, restart_record


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def pod(tmp_path, index: int) -> Rendezvous:
    return Rendezvous(tmp_path, index, poll_seconds=0.01)


def test_members_are_published_once_under_a_race(tmp_path) -> None:
    """Eight threads publish different member lists at the same instant: one wins, everybody reads the winner."""
    pods = [pod(tmp_path, i) for i in range(8)]
    for i, p in enumerate(pods):
        p.join(Fragment(i))
    barrier, seen = threading.Barrier(len(pods)), {}

    def publish(i: int) -> None:
        barrier.wait()
        seen[i] = pods[i].publish_members(sorted({0, i}))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(pods))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 8 and len(set(seen.values())) == 1, seen
    attempt = tmp_path / "rendezvous" / "attempt-0"
    assert sorted(p.name for p in attempt.iterdir() if "members" in p.name) == [MEMBERS_FILE]  # no temporary left
    assert pods[3].members() == next(iter(seen.values()))


def test_members_on_a_volume_without_hard_links(tmp_path, monkeypatch) -> None:
    """os.link refused (SMB, some FUSE drivers): an exclusive create publishes once; an empty file (being written)
    reads as not published yet."""

    def no_links(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(rendezvous_module.os, "link", no_links)
    a, b = pod(tmp_path, 0), pod(tmp_path, 1)
    a.join(Fragment(0))
    b.join(Fragment(1))
    assert a.publish_members([0]) == (0,)
    assert b.publish_members([0, 1]) == (0,)  # the first publication wins
    empty = tmp_path / "rendezvous" / "attempt-1"
    empty.mkdir()
    (empty / MEMBERS_FILE).write_text("")
    assert a.members(1) is None


def test_all_pods_there_publish_the_full_group_at_once(tmp_path) -> None:
    pods = [pod(tmp_path, i) for i in range(3)]
    for i, p in enumerate(pods):
        p.join(Fragment(i, pod_ip=f"10.0.0.{i}"))
    fragments = pods[1].wait_for_members(3, 2, shrink_after=60, deadline=soon())
    assert [f.pod_ip for f in fragments] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert pods[0].members() == (0, 1, 2)


def test_the_group_shrinks_after_shrink_after_then_a_latecomer_is_a_standby(tmp_path) -> None:
    a, b = pod(tmp_path, 0), pod(tmp_path, 2)
    a.join(Fragment(0))
    b.join(Fragment(2))
    began = time.monotonic()
    fragments = a.wait_for_members(3, 2, shrink_after=0.3, deadline=soon())
    assert time.monotonic() - began >= 0.3  # it waited for pod 1 first
    assert [f.pod_index for f in fragments] == [0, 2]
    assert [f.pod_index for f in b.wait_for_members(3, 2, shrink_after=60, deadline=soon())] == [0, 2]
    late = pod(tmp_path, 1)
    with pytest.raises(Standby) as standby:
        late.meet_members(Fragment(1), 3, 2, shrink_after=0, deadline=soon())
    assert standby.value.members == (0, 2) and late.attempt == 0
    assert a.newcomers((0, 2), 3) == [1]  # the members see its request to come back


def test_no_shrink_below_min_pods(tmp_path) -> None:
    lone = pod(tmp_path, 1)
    lone.join(Fragment(1))
    with pytest.raises(RendezvousTimeout) as timeout:
        lone.wait_for_members(3, 2, shrink_after=0.05, deadline=soon(0.3), devices_per_pod=4)
    message = str(timeout.value)
    assert "pod(s) 0, 2 did not join in time (have 1 of 3" in message
    assert "at least 2 pod(s), min_devices=8" in message and "JOBCTL_RENDEZVOUS_TIMEOUT" in message
    assert lone.members() is None


def test_a_standby_joins_the_next_attempt_when_the_members_grow(tmp_path) -> None:
    members = [pod(tmp_path, i) for i in range(2)]
    for i, p in enumerate(members):
        p.join(Fragment(i))
    members[0].publish_members([0, 1])
    standby = pod(tmp_path, 2)
    with pytest.raises(Standby):
        standby.meet_members(Fragment(2), 3, 2, 0, soon())
    waiting: dict[str, BaseException] = {}

    def wait() -> None:
        try:
            standby.wait_as_standby()
        except BaseException as exc:  # what ended the wait, checked below
            waiting["ended"] = exc

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    assert thread.is_alive()  # no deadline: it waits while the members train
    for p in members:
        p.mark_failed(f"pod {p.pod_index}: {GROW_STOP} (pod(s) 2 waiting to join)")
    thread.join(5)
    assert isinstance(waiting.get("ended"), GroupChanged)
    results: dict[int, list[int]] = {}

    def meet(p: Rendezvous) -> None:
        fragments = p.meet_members(Fragment(p.pod_index), 3, 2, 60, soon())
        results[p.pod_index] = [f.pod_index for f in fragments]

    threads = [threading.Thread(target=meet, args=(p,)) for p in [*members, standby]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1, 2]}
    assert standby.attempt == 1
    # Growing is not a restart; a SIGTERM stop is not either; a lost pod is.
    assert restart_record(standby, 1).count == 0
    members[0].mark_failed(f"pod 0: {SIGTERM_STOP}")
    members[1].mark_failed("pod 2 lost: no heartbeat for 15 s (its node or launcher is gone)")
    record = restart_record(standby, 2)
    assert record.count == 1 and record.history == ("attempt 1: pod 0: stopped by SIGTERM",)


def test_a_standby_stops_when_the_members_complete(tmp_path) -> None:
    member, standby = pod(tmp_path, 0), pod(tmp_path, 1)
    member.join(Fragment(0))
    member.publish_members([0])
    with pytest.raises(Standby):
        standby.meet_members(Fragment(1), 2, 1, 0, soon())
    member.mark_done()
    with pytest.raises(GroupCompleted, match="attempt 0 was completed by pod"):
        standby.wait_as_standby()


def test_a_stopped_standby_withdraws_its_request(tmp_path) -> None:
    member, standby = pod(tmp_path, 0), pod(tmp_path, 1)
    member.join(Fragment(0))
    member.publish_members([0])
    with pytest.raises(Standby):
        standby.meet_members(Fragment(1), 2, 1, 0, soon())
    standby.withdraw()
    assert member.newcomers((0,), 2) == [] and member.group_failed() is None


def test_heartbeat_format_and_parse() -> None:
    assert parse_heartbeat(format_heartbeat(7, "2026-12-03T23:00:00Z")) == (7, "2026-12-03T23:00:00Z")
    assert parse_heartbeat("") is None and parse_heartbeat("x 1") is None


def test_a_peer_whose_heartbeat_stops_is_lost_within_the_timeout(tmp_path) -> None:
    a, b, c = pod(tmp_path, 0), pod(tmp_path, 1), pod(tmp_path, 2)
    for p in (a, b, c):
        p.join(Fragment(p.pod_index))
    watch = PeerWatch([1, 2], timeout=0.5)
    b.beat(0)
    assert watch.lost(a.heartbeats()) == []  # pod 2 has not beaten yet, but it is still starting
    deadline = soon(5)
    count = 1
    while not (lost := watch.lost(a.heartbeats())):
        b.beat(count)  # pod 1 beats on; pod 2 never does
        count += 1
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [p for p, _ in lost] == [2] and 0.5 <= lost[0][1] < 1.5
    stalled = time.monotonic()
    while not (lost := watch.lost(a.heartbeats())) or lost[0][0] != 1:
        c.beat(count)
        count += 1
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert 0.4 <= time.monotonic() - stalled < 1.5  # pod 1 stopped beating: lost after the timeout, not before


def test_peer_watch_counts_from_its_start() -> None:
    watch = PeerWatch([1], timeout=15, now=100.0)
    assert watch.lost({}, now=114.0) == []
    assert watch.lost({1: "0 t"}, now=114.5) == []
    assert watch.lost({1: "0 t"}, now=129.0) == []
    assert watch.lost({1: "0 t"}, now=129.5) == [(1, 15.0)]
