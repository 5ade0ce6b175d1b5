"""Recovery from any survivor: the launchers agree on the newest state among their pods' in-memory snapshots and
the checkpoints on the shared volume, and every rank starts from it (protocol: docs/INTERFACES.md).

1. Before joining an attempt, each launcher checks its pod's snapshot (contract.snapshot_file: magic, header CRC,
   size, payload CRC); a half-written or damaged one is removed with a line saying so, so the previous one is used.
   Its fragment carries ``snapshot: {step, checksum, bytes}`` (or null).
2. With every fragment in, each launcher computes the same :class:`Plan`: the newest snapshot step if it is at least
   the newest complete checkpoint's step, else the checkpoint (the trainer then resumes as without snapshots).
3. A pod holding a snapshot of that step gives its ranks its own file. If some pod lacks it, the holder with the
   lowest index copies its file to ``<job>/recovery/<run id>/attempt-<K>/snapshot-pod-<i>-step-<S>.bin`` (temporary,
   fsync, rename) before starting its ranks; the others wait for that file and give it to their ranks.
4. The trainers get ``JOBCTL_RESUME_FROM`` (the file) and ``JOBCTL_RESUME_SOURCE`` ("snapshot of pod 1 at step 812");
   the first local rank of each pod gets ``JOBCTL_SNAPSHOT_WRITE`` (the pod's snapshot directory).

Pure Python; no MindSpore.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import snapshot_file
from contract.ckpt_files import incomplete_reason, list_checkpoints
from contract.ckpt_names import parse_checkpoint_name
from contract.env import EXIT_GROUP_CHANGED, EXIT_TERMINATED, PodEnv, Var
from contract.files import fresh_listdir
from contract.rendezvous import Fragment, Rendezvous
from launcher.processes import LocalProcess

POLL_SECONDS = 0.1


class RecoveryError(RuntimeError):
    """The state the group agreed on cannot be reached; ``code`` is the launcher's exit code for it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def local_snapshot(directory: Path | None, say: Callable[[str], None]) -> dict[str, Any] | None:
    """This pod's usable snapshot as its fragment carries it, or None. Half-written and damaged files are removed
    (with a line saying so): the previous snapshot, or the checkpoints, are used instead."""
    if directory is None:
        return None
    for tmp in snapshot_file.temporaries(directory):
        say(f"skipping the half-written snapshot {tmp} (its writer was stopped during the copy); removed it")
        tmp.unlink(missing_ok=True)
    path = directory / snapshot_file.NAME
    if not path.exists():
        say(f"no snapshot in this pod's memory ({directory})")
        return None
    began = time.monotonic()
    try:
        header, _ = snapshot_file.read_header(path, verify=True)
    except snapshot_file.SnapshotError as exc:
        say(f"skipping {exc}; removed it")
        path.unlink(missing_ok=True)
        return None
    say(
        f"snapshot in this pod's memory: step {header.step}, checksum {header.checksum}, "
        f"{header.payload_bytes / 1e6:.1f} MB (checked in {time.monotonic() - began:.2f} s)"
    )
    return {"step": header.step, "checksum": header.checksum, "bytes": header.payload_bytes}


def newest_checkpoint(ckpt_dir: Path) -> tuple[int, str] | None:
    """(step, file name) of the newest complete rank-0 checkpoint (the trainer's CRC load stays the authority)."""
    for path in reversed(list_checkpoints(ckpt_dir)):
        parsed = parse_checkpoint_name(path.name)
        if parsed is not None and incomplete_reason(path) is None:
            return parsed.step, path.name
    return None


@dataclass(frozen=True)
class Plan:
    """The state every rank of an attempt starts from; every launcher computes the same one."""

    step: int | None  # the snapshot step, or None: the newest checkpoint (or a fresh start)
    holders: tuple[int, ...] = ()  # pods whose own memory holds a snapshot of that step
    checkpoint: tuple[int, str] | None = None

    @property
    def publisher(self) -> int | None:
        return self.holders[0] if self.holders else None

    def source(self, pod: int) -> str:
        return f"snapshot of pod {pod} at step {self.step}"

    def describe(self) -> str:
        if self.step is not None:
            return f"the {self.source(self.holders[0])} (held by pod(s) {', '.join(map(str, self.holders))})"
        if self.checkpoint is not None:
            return f"checkpoint {self.checkpoint[1]} at step {self.checkpoint[0]} (no newer snapshot in any pod)"
        return "the start (no snapshot in any pod, no checkpoint)"


def decide(fragments: Sequence[Fragment], checkpoint: tuple[int, str] | None) -> Plan:
    """The newest state anywhere: a snapshot when its step is at least the newest checkpoint's (memory is quicker
    to read than the shared volume), else the checkpoint."""
    held = {f.pod_index: int(f.snapshot["step"]) for f in fragments if f.snapshot}
    best = max(held.values(), default=None)
    if best is None or (checkpoint is not None and checkpoint[0] > best):
        return Plan(None, checkpoint=checkpoint)
    return Plan(best, tuple(sorted(pod for pod, step in held.items() if step == best)), checkpoint)


@dataclass
class Recovery:
    """One pod's part in the protocol for one attempt."""

    env: PodEnv
    rendezvous: Rendezvous
    say: Callable[[str], None]
    should_stop: Callable[[], bool]

    def prepare(self, fragments: Sequence[Fragment], deadline: float) -> dict[str, str]:
        """Agree on the state and make it reachable from this pod; the env for this attempt's trainers."""
        env = self.env
        if env.pod_index == 0:
            self._remove_earlier_copies()
        plan = decide(fragments, newest_checkpoint(env.layout.ckpt_dir))
        self.say(f"attempt {self.rendezvous.attempt} resumes from {plan.describe()}")
        if plan.step is None or env.snapshot_dir is None:
            return {}
        name = f"snapshot-pod-{plan.publisher}-step-{plan.step}.bin"
        shared = self.folder / f"attempt-{self.rendezvous.attempt}" / name
        lacking = len(plan.holders) < len(fragments)
        if env.pod_index in plan.holders:
            own = env.snapshot_dir / snapshot_file.NAME
            if lacking and env.pod_index == plan.publisher:
                began = time.monotonic()
                snapshot_file.copy(own, shared)
                self.say(f"copied this pod's snapshot for the pods without it to {shared} in "
                         f"{time.monotonic() - began:.2f} s")  # fmt: skip
            return self._resume_env(own, plan.source(env.pod_index))
        self.say(f"this pod has no snapshot of step {plan.step}: waiting for pod {plan.publisher}'s copy {shared}")
        self._wait_for(shared, deadline)
        assert plan.publisher is not None
        return self._resume_env(shared, plan.source(plan.publisher))

    @property
    def folder(self) -> Path:
        """``<job>/recovery/<run id>``: one folder per submission, as the rendezvous."""
        root = self.env.layout.recovery_dir
        return root / self.env.run_id if self.env.run_id else root

    def _resume_env(self, path: Path, source: str) -> dict[str, str]:
        return {Var.RESUME_FROM: str(path), Var.RESUME_SOURCE: source}

    def _wait_for(self, path: Path, deadline: float) -> None:
        while not _appeared(path, self.env.layout.root):
            if self.should_stop():
                raise RecoveryError("got SIGTERM while waiting for a survivor's snapshot", EXIT_TERMINATED)
            changed = self.rendezvous.group_failed()
            if changed:
                raise RecoveryError(f"the group changed while waiting for a survivor's snapshot: {changed}",
                                    EXIT_GROUP_CHANGED)  # fmt: skip
            if time.monotonic() >= deadline:
                raise RecoveryError(
                    f"the survivor's snapshot {path} did not appear within {Var.RENDEZVOUS_TIMEOUT}="
                    f"{self.env.rendezvous_timeout:g} s; check that pod's launcher log and the shared volume's space",
                    1,
                )
            time.sleep(POLL_SECONDS)

    def _remove_earlier_copies(self) -> None:
        """Copies for earlier attempts: every rank of those attempts has loaded them or is gone."""
        folder = self.folder
        keep = f"attempt-{self.rendezvous.attempt}"
        if folder.is_dir():
            for old in folder.iterdir():
                if old.name != keep:
                    shutil.rmtree(old, ignore_errors=True)


def _appeared(path: Path, root: Path) -> bool:
    """Whether ``path`` (below ``root``) is there, by fresh listings of each folder from ``root`` down: an NFS
    client may answer a lookup, "no such name" too, from its cache for up to its cache time (docs: "The shared
    volume"); a fresh listing shows a survivor's copy at once."""
    folder = root
    for part in path.relative_to(root).parts:
        try:
            if part not in fresh_listdir(folder):
                return False
        except FileNotFoundError:
            return False
        folder = folder / part
    return True


def with_writer(env: PodEnv, procs: list[LocalProcess]) -> list[LocalProcess]:
    """The pod's first rank writes the pod's snapshots (one copy per pod: the ranks hold the same state)."""
    first = next((p for p in procs if p.is_rank), None)
    if first is not None and env.snapshot_dir is not None:
        first.env[Var.SNAPSHOT_WRITE] = str(env.snapshot_dir)
    return procs
