"""Rendezvous on the shared volume: the pods of one group agree on an attempt number and meet there.

Layout: ``<job_dir>/rendezvous/attempt-<K>/`` holds ``pod-<i>.json`` fragments, ``failed-<i>`` and ``done-<i>``
markers, ``alive-<i>`` heartbeats (a launcher rewrites its own while its pod is in the attempt; a member whose file
stops changing for PEER_TIMEOUT is lost) and, in an elastic job, ``members.json``: the pods that train in the
attempt, published once (the first exclusive create wins; a pod not listed there is a standby).

A joining pod takes the newest attempt unless that attempt is closed for it (a failure marker, a done marker, or
its own fragment already there, i.e. it replaces a pod of that attempt); then it creates the next
attempt. ``mkdir`` is the atomic decision: racing pods either create the next attempt or find it created, and
re-examine the newest one, so they all converge on one K. A pod that wrote its fragment into an attempt that has
since been superseded moves on, and so does one that is waiting when that happens. Fragments and markers are
written to a temporary name and renamed, so a reader never sees half a file. Nothing from an earlier attempt is
ever read.

On NFS each node caches directory listings for up to ``acdirmax`` (60 s by default), which would delay every step
of the protocol by that much. Every listing here is therefore taken fresh (``contract.files.fresh_listdir``): the
pod first creates and removes a probe file of its own in the directory, a change its client made itself, after
which the client reads the listing from the server again (Linux NFS invalidates a directory's cached pages when
its own create or unlink there changes the directory). Probe names match none of the patterns below. Where the
probe cannot be written (a read-only or full volume) the listing may be up to the cache time old: that delays a
decision, it never changes one (the attempt number is decided by ``mkdir``).

Pure Python; no MindSpore.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract.env import Var
from contract.files import fresh_listdir, utc_timestamp, write_atomic
from contract.ranktable import RankTable, build_table, server_from_fragment

_ATTEMPT = re.compile(r"^attempt-(\d+)$")
_FRAGMENT = re.compile(r"^pod-(\d+)\.json$")
_MARKER = re.compile(r"^(failed|done)-(\d+)$")
_HEARTBEAT = re.compile(r"^alive-(\d+)$")
MEMBERS_FILE = "members.json"
HEARTBEAT_SECONDS = 2.0  # how often a launcher rewrites its alive-<i>
# A volume without hard links (SMB, some FUSE drivers): members.json is created with O_EXCL instead.
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV)
PEER_TIMEOUT = 15.0  # a member whose alive-<i> has not changed for this long is lost (its node or launcher is gone)


class RendezvousError(RuntimeError):
    """The group could not meet; the message says which pods and what to check."""


class RendezvousTimeout(RendezvousError):
    pass


class GroupChanged(RendezvousError):
    """A peer failed or a newer attempt exists: this pod must rejoin."""


class GroupCompleted(RendezvousError):
    """This pod's attempt already finished (a peer marked it done): nothing is left to run."""


class Standby(Exception):
    """An elastic job's attempt trains without this pod (``members``); it waits to join the next attempt."""

    def __init__(self, attempt: int, members: tuple[int, ...]) -> None:
        super().__init__(f"attempt {attempt} trains with pod(s) {_names(list(members))}")
        self.attempt = attempt
        self.members = members


def format_heartbeat(count: int, when: str) -> str:
    """``alive-<i>``'s content: a counter and a UTC time. Peers compare contents, never mtimes (NFS caches
    attributes; close-to-open gives a fresh content)."""
    return f"{count} {when}\n"


def parse_heartbeat(text: str) -> tuple[int, str] | None:
    count, _, when = text.strip().partition(" ")
    return (int(count), when) if count.isdigit() and when else None


def _create_exclusive(path: Path, text: str) -> None:
    """O_CREAT|O_EXCL (exclusive on NFS too); a reader may find it empty for an instant (members() waits then)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def format_members_file(members: Sequence[int]) -> str:
    return json.dumps({"members": list(members)}) + "\n"


def parse_members_file(text: str, source: str) -> tuple[int, ...]:
    try:
        members = tuple(int(m) for m in json.loads(text)["members"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RendezvousError(f"unreadable {source}: {exc}; it is written once by a launcher, never by hand") from None
    if not members or list(members) != sorted(set(members)):
        raise RendezvousError(f"{source} lists {list(members)}: expected distinct pod indices in ascending order")
    return members


@dataclass(frozen=True)
class Fragment:
    """What one pod tells the others: who it is and which devices it brings."""

    pod_index: int
    pod_name: str = ""
    pod_ip: str = ""
    node_ip: str = ""
    hostname: str = field(default_factory=socket.gethostname)
    server_id: str = ""
    # [{"device_id": "0", "device_ip": "192.168.100.101"}, ...]; device_ip only on Ascend.
    devices: list[dict[str, str]] = field(default_factory=list)
    # This pod's in-memory snapshot: {"step": S, "checksum": "<crc32 hex>", "bytes": N} or None (launcher.recovery).
    snapshot: dict[str, Any] | None = None
    time: str = field(default_factory=utc_timestamp)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fragment:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Rendezvous:
    """One pod's view of ``<job_dir>/rendezvous``. Call :meth:`join`, then :meth:`wait_for_all`."""

    def __init__(self, job_dir: str | Path, pod_index: int, poll_seconds: float = 0.5, run_id: str = "") -> None:
        # One directory per submission (the Job's uid): a re-submitted job never meets an earlier one's attempts.
        self.root = Path(job_dir) / "rendezvous" / run_id if run_id else Path(job_dir) / "rendezvous"
        self.pod_index = pod_index
        self.poll_seconds = poll_seconds
        self.attempt: int | None = None
        self.probe = f".probe-{pod_index}-{os.getpid()}"  # this process's own: no other writer, nothing parses it

    # --- reading the directory --------------------------------------------------------------------------

    def attempts(self) -> list[int]:
        try:
            names = fresh_listdir(self.root, self.probe)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _ATTEMPT.match(n)))

    def newest(self) -> int | None:
        found = self.attempts()
        return found[-1] if found else None

    def attempt_dir(self, attempt: int | None = None) -> Path:
        k = self.attempt if attempt is None else attempt
        if k is None:
            raise RendezvousError("this pod has not joined an attempt yet")
        return self.root / f"attempt-{k}"

    def _listing(self, attempt: int | None = None) -> list[str]:
        """The names in an attempt's directory, listed fresh; [] before it exists."""
        try:
            return fresh_listdir(self.attempt_dir(attempt), self.probe)
        except FileNotFoundError:
            return []

    def _markers(self, attempt: int, kind: str) -> list[int]:
        names = self._listing(attempt)
        return sorted(int(m.group(2)) for n in names if (m := _MARKER.match(n)) and m.group(1) == kind)

    def failed_pods(self, attempt: int | None = None) -> list[int]:
        return self._markers(self._k(attempt), "failed")

    def done_pods(self, attempt: int | None = None) -> list[int]:
        return self._markers(self._k(attempt), "done")

    def _k(self, attempt: int | None) -> int:
        k = self.attempt if attempt is None else attempt
        if k is None:
            raise RendezvousError("this pod has not joined an attempt yet")
        return k

    def fragments(self, attempt: int | None = None) -> dict[int, Fragment]:
        """Pod index -> fragment, from this pod's attempt only."""
        d = self.attempt_dir(attempt)
        found: dict[int, Fragment] = {}
        for name in self._listing(attempt):
            if m := _FRAGMENT.match(name):
                try:
                    found[int(m.group(1))] = Fragment.from_dict(json.loads((d / name).read_text()))
                except (OSError, json.JSONDecodeError, TypeError) as exc:
                    raise RendezvousError(f"unreadable fragment {d / name}: {exc}") from exc
        return found

    # --- joining ------------------------------------------------------------------------------------------

    def join(self, fragment: Fragment) -> int:
        """Enter the newest open attempt (creating the next one if needed) and publish this pod's fragment."""
        if fragment.pod_index != self.pod_index:
            raise ValueError(f"fragment is for pod {fragment.pod_index}, this rendezvous is pod {self.pod_index}")
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            k = self.newest()
            if k is None:
                self._create(0)
                continue
            d = self.attempt_dir(k)
            mine = (d / f"pod-{self.pod_index}.json").exists()
            failed, done = self.failed_pods(k), self.done_pods(k)
            if mine and done and not failed and self.pod_index not in done:
                # A peer finished this attempt after this pod's previous incarnation stopped: training is over.
                raise GroupCompleted(f"attempt {k} was already completed by pod(s) {_names(done)}; nothing to do")
            if mine or failed or done:
                self._create(k + 1)
                continue
            write_atomic(d / f"pod-{self.pod_index}.json", fragment.to_json())
            if self.newest() != k:
                continue  # superseded while writing: the creator of k+1 will not come back to k
            self.attempt = k
            return k

    def _create(self, attempt: int) -> None:
        with contextlib.suppress(FileExistsError):  # another pod made the same decision first
            (self.root / f"attempt-{attempt}").mkdir()

    def group_failed(self) -> str | None:
        """Why this pod's group is over (a peer's failure marker, a newer attempt), or None."""
        k = self._k(None)
        newest = self.newest()
        if newest is not None and newest > k:
            return f"a newer attempt {newest} exists (a peer restarted or a pod was replaced)"
        failed = [i for i in self.failed_pods() if i != self.pod_index]
        if failed:
            return f"pod(s) {_names(failed)} marked attempt {k} failed: {self._reason(failed[0])}"
        return None

    def _reason(self, pod: int, attempt: int | None = None) -> str:
        try:
            return (self.attempt_dir(attempt) / f"failed-{pod}").read_text().strip() or "no reason given"
        except OSError:
            return "no reason given"

    def failures(self, attempt: int) -> list[str]:
        """The failure markers' reasons of one attempt (what ended it), by pod index."""
        return [self._reason(pod, attempt) for pod in self._markers(attempt, "failed")]

    def wait_for_all(
        self, expected_pods: int, deadline: float, should_stop: Callable[[], bool] = lambda: False
    ) -> list[Fragment]:
        """All fragments of this attempt ordered by pod index, or a timeout naming the missing pods.

        ``deadline`` is a ``time.monotonic()`` value. Raises GroupChanged if the group moves on meanwhile.
        """
        while True:
            found = {i: f for i, f in self.fragments().items() if i < expected_pods}
            changed = self.group_failed()
            if changed:
                raise GroupChanged(changed)
            if len(found) == expected_pods:
                return [found[i] for i in range(expected_pods)]
            if should_stop():
                raise RendezvousError("stopped while waiting for the other pods")
            if time.monotonic() >= deadline:
                missing = [i for i in range(expected_pods) if i not in found]
                raise RendezvousTimeout(
                    f"attempt {self.attempt}: pod(s) {_names(missing)} did not join in time "
                    f"(have {_names(sorted(found)) or 'none'} of {expected_pods}); check that those pods are "
                    f"scheduled and running (kubectl describe pod), or raise {Var.RENDEZVOUS_TIMEOUT}"
                )
            time.sleep(self.poll_seconds)

    def meet(
        self, fragment: Fragment, expected_pods: int, deadline: float, should_stop: Callable[[], bool] = lambda: False
    ) -> list[Fragment]:
        """join + wait_for_all, rejoining whenever the group moves to a newer attempt before it is complete."""
        while True:
            self.join(fragment)
            try:
                return self.wait_for_all(expected_pods, deadline, should_stop)
            except GroupChanged:
                continue

    # --- members (elastic jobs) -----------------------------------------------------------------------------

    def members(self, attempt: int | None = None) -> tuple[int, ...] | None:
        """The published members of the attempt, or None while nobody has published them."""
        d = self.attempt_dir(attempt)
        try:
            if MEMBERS_FILE not in fresh_listdir(d, self.probe):
                return None
            text = (d / MEMBERS_FILE).read_text()
        except FileNotFoundError:
            return None
        if not text.strip():  # an exclusive create (no hard links on this volume) still being written
            return None
        return parse_members_file(text, str(d / MEMBERS_FILE))

    def publish_members(self, members: Sequence[int]) -> tuple[int, ...] | None:
        """Publish once: the temporary is linked to the final name, which fails if a peer published first (atomic
        on NFS too). Returns the winner's members, which every pod then uses (None: not readable yet, ask again)."""
        d = self.attempt_dir()
        text = format_members_file(members)
        tmp = d / f".members-{self.pod_index}-{os.getpid()}.tmp"
        write_atomic(tmp, text)
        try:
            os.link(tmp, d / MEMBERS_FILE)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            _create_exclusive(d / MEMBERS_FILE, text)
        finally:
            tmp.unlink(missing_ok=True)
        return self.members()

    def wait_for_members(
        self,
        num_pods: int,
        min_pods: int,
        shrink_after: float,
        deadline: float,
        should_stop: Callable[[], bool] = lambda: False,
        devices_per_pod: int = 1,
    ) -> list[Fragment]:
        """The members' fragments (ordered) once members.json is published: by a pod that saw all ``num_pods``
        fragments, or ``min_pods`` or more after ``shrink_after`` seconds (or at the deadline). Raises Standby when
        this pod is not a member, GroupChanged if the group moves on, RendezvousTimeout below ``min_pods``."""
        started = time.monotonic()
        while True:
            changed = self.group_failed()
            if changed:
                raise GroupChanged(changed)
            found = {i: f for i, f in self.fragments().items() if i < num_pods}
            members = self.members()
            now = time.monotonic()
            waited = now - started >= shrink_after or now >= deadline
            if members is None and (len(found) == num_pods or (waited and len(found) >= min_pods)):
                members = self.publish_members(sorted(found))
            if members is not None:
                if self.pod_index not in members:
                    raise Standby(self._k(None), members)
                if all(m in found for m in members):
                    return [found[m] for m in members]
            if should_stop():
                raise RendezvousError("stopped while waiting for the other pods")
            if now >= deadline:
                missing = [i for i in range(num_pods) if i not in found]
                raise RendezvousTimeout(
                    f"attempt {self.attempt}: pod(s) {_names(missing)} did not join in time (have "
                    f"{_names(sorted(found)) or 'none'} of {num_pods}; this elastic job trains with at least "
                    f"{min_pods} pod(s), min_devices={min_pods * devices_per_pod}); check that those pods are "
                    f"scheduled and running (kubectl describe pod), or raise {Var.RENDEZVOUS_TIMEOUT} or lower "
                    "min_devices"
                )
            time.sleep(self.poll_seconds)

    def meet_members(
        self,
        fragment: Fragment,
        num_pods: int,
        min_pods: int,
        shrink_after: float,
        deadline: float,
        should_stop: Callable[[], bool] = lambda: False,
        devices_per_pod: int = 1,
    ) -> list[Fragment]:
        """join + wait_for_members (an elastic job's meet), rejoining whenever the group moves to a newer attempt
        before its members are published; Standby propagates."""
        while True:
            self.join(fragment)
            try:
                return self.wait_for_members(num_pods, min_pods, shrink_after, deadline, should_stop, devices_per_pod)
            except GroupChanged:
                continue

    def wait_as_standby(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Wait, without a deadline, while the members train without this pod (its fragment stays: the members see
        it and grow). Raises GroupChanged when the attempt is over (rejoin), GroupCompleted when the members
        finished, RendezvousError at ``should_stop``."""
        while True:
            changed = self.group_failed()
            if changed:
                raise GroupChanged(changed)
            done = self.done_pods()
            if done:
                raise GroupCompleted(f"attempt {self.attempt} was completed by pod(s) {_names(done)}; nothing to do")
            if should_stop():
                raise RendezvousError("stopped while waiting as a standby")
            time.sleep(self.poll_seconds)

    def withdraw(self) -> None:
        """Remove this pod's fragment (a standby that is stopped: the members need not grow for it)."""
        with contextlib.suppress(OSError):
            (self.attempt_dir() / f"pod-{self.pod_index}.json").unlink()

    def newcomers(self, members: Sequence[int], num_pods: int) -> list[int]:
        """Pods with a fragment in this attempt that are not among its members: standbys asking to come back."""
        return sorted(i for i in self.fragments() if i < num_pods and i not in members)

    # --- heartbeats -------------------------------------------------------------------------------------------

    def beat(self, count: int) -> bool:
        """Rewrite this pod's ``alive-<i>``; False when the volume refuses the write (the next beat retries)."""
        return self._mark(f"alive-{self.pod_index}", format_heartbeat(count, utc_timestamp()))

    def heartbeats(self) -> dict[int, str]:
        """Pod index -> the content of its ``alive-<i>`` in this attempt (read, not stat'ed)."""
        d = self.attempt_dir()
        found: dict[int, str] = {}
        for name in self._listing():
            if m := _HEARTBEAT.match(name):
                with contextlib.suppress(OSError):
                    found[int(m.group(1))] = (d / name).read_text()
        return found

    # --- markers ------------------------------------------------------------------------------------------

    def mark_failed(self, reason: str) -> bool:
        """Tell the peers this pod's group is broken (they stop and rejoin a newer attempt). False when the volume
        refuses the write (full): the peers then learn it from the collective, the stall timer or a newer attempt."""
        return self._mark(f"failed-{self.pod_index}", reason.strip() + "\n")

    def mark_done(self) -> bool:
        return self._mark(f"done-{self.pod_index}", "")

    def _mark(self, name: str, text: str) -> bool:
        if self.attempt is None:
            return False
        try:
            write_atomic(self.attempt_dir() / name, text)
        except OSError:
            return False
        return True

    # --- Ascend rank table ----------------------------------------------------------------------------------

    def write_rank_table(self, fragments: list[Fragment]) -> tuple[Path, RankTable]:
        """The same table on every pod (servers by pod index, then device order), in this attempt's directory."""
        servers = [
            server_from_fragment(f.server_id or f.node_ip, f.devices)
            for f in sorted(fragments, key=lambda f: f.pod_index)
        ]
        table = build_table(servers)
        path = self.attempt_dir() / f"hccl-pod-{self.pod_index}.json"
        write_atomic(path, table.to_json())
        return path, table


class PeerWatch:
    """Which peers' heartbeats stopped: a peer is lost when its ``alive-<i>`` content has not changed for
    ``timeout`` seconds, counted from this watch's start at the earliest (a peer still starting is not lost)."""

    def __init__(self, peers: Sequence[int], timeout: float | None = None, now: float | None = None) -> None:
        self.timeout = PEER_TIMEOUT if timeout is None else timeout
        start = time.monotonic() if now is None else now
        self.seen: dict[int, tuple[str | None, float]] = {p: (None, start) for p in peers}

    def lost(self, beats: Mapping[int, str], now: float | None = None) -> list[tuple[int, float]]:
        """(pod, seconds without a change) of each lost peer, given the heartbeats just read."""
        now = time.monotonic() if now is None else now
        lost = []
        for pod, (content, since) in self.seen.items():
            current = beats.get(pod)
            if current is not None and current != content:
                self.seen[pod] = (current, now)
            elif now - since >= self.timeout:
                lost.append((pod, now - since))
        return lost


def _names(pods: list[int]) -> str:
    return ", ".join(str(p) for p in pods)
