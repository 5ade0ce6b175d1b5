"""The group of an attempt: which of the job's pods train in it, and what that means for ranks and batches.

A job that is not elastic always trains with all its pods. An elastic job (``min_pods < num_pods``) may train with
fewer, whole pods only: the launchers publish the members of each attempt (contract.rendezvous), every rank's
global rank is its pod's position among the members times the devices per pod plus its local index, and the
global batch stays the recipe's (``per_batch_size`` x the job's full device count), split evenly over the ranks
that are there. Pure Python; no MindSpore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract.env import Var


class GroupError(ValueError):
    """A group or a batch split that cannot work; the message names the values and the fix."""


def format_members(members: Sequence[int]) -> str:
    """``0,1,3``: the members as the launcher passes them to each trainer (``JOBCTL_MEMBERS``)."""
    return ",".join(str(m) for m in members)


def parse_members(text: str) -> tuple[int, ...]:
    try:
        members = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GroupError(f"{Var.MEMBERS}={text!r} is not a comma-separated list of pod indices") from None
    if not members or list(members) != sorted(set(members)) or members[0] < 0:
        raise GroupError(f"{Var.MEMBERS}={text!r} must list distinct pod indices in ascending order")
    return members


@dataclass(frozen=True)
class Group:
    """The pods training in one attempt (ascending pod indices) out of the job's ``num_pods``."""

    members: tuple[int, ...]
    num_pods: int
    devices_per_pod: int

    def __post_init__(self) -> None:
        if not self.members or any(not 0 <= m < self.num_pods for m in self.members):
            raise GroupError(f"group members {list(self.members)} are not pods of a {self.num_pods}-pod job")

    @classmethod
    def full(cls, num_pods: int, devices_per_pod: int) -> Group:
        return cls(tuple(range(num_pods)), num_pods, devices_per_pod)

    @property
    def world_size(self) -> int:
        return len(self.members) * self.devices_per_pod

    @property
    def full_world_size(self) -> int:
        return self.num_pods * self.devices_per_pod

    @property
    def is_full(self) -> bool:
        return len(self.members) == self.num_pods

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(p for p in range(self.num_pods) if p not in self.members)

    @property
    def first(self) -> int:
        """The pod that runs MindSpore's scheduler (msrun) and holds global rank 0."""
        return self.members[0]

    def rank(self, pod_index: int, local_index: int) -> int:
        """The global rank of a pod's ``local_index``-th device: its position among the members decides."""
        return self.members.index(pod_index) * self.devices_per_pod + local_index

    def describe(self) -> str:
        """``devices: 4/6 (pod(s) 2 missing)`` as status and the launcher say it."""
        size = f"{self.world_size}/{self.full_world_size}"
        if self.is_full:
            return size
        return f"{size} (pod(s) {format_members(self.missing)} missing)"

    def to_record(self) -> dict[str, Any]:
        """The group as status.json's ``group`` and a metrics ``segment`` record carry it (read: from_record)."""
        return {
            "devices": self.world_size,
            "full_devices": self.full_world_size,
            "members": list(self.members),
            "missing": list(self.missing),
        }

    @classmethod
    def from_record(cls, value: Any) -> Group | None:
        """The group of a status.json ``group`` or a ``segment`` record; None when there is none or it does not add
        up (a trainer that predates it, a file edited by hand): status then shows the devices as before."""
        if not isinstance(value, dict):
            return None
        members, devices, full = value.get("members"), value.get("devices"), value.get("full_devices")
        if not isinstance(members, list) or not members or not all(type(m) is int for m in members):
            return None
        if type(devices) is not int or type(full) is not int or devices < 1 or devices % len(members):
            return None
        per_pod = devices // len(members)
        try:
            group = cls(tuple(members), full // per_pod, per_pod)
        except GroupError:
            return None
        return group if group.full_world_size == full and list(group.members) == sorted(set(members)) else None

    def to_env(self) -> dict[str, str]:
        """What the launcher tells each trainer of its group (the pod env carries the job's full size)."""
        return {Var.MEMBERS: format_members(self.members)}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], world_size: int) -> Group:
        """The trainer's group: the launcher's ``JOBCTL_MEMBERS`` with the pod env's sizes; without them (a trainer
        run by hand, a single process) the full group of ``world_size`` devices."""
        text = environ.get(Var.MEMBERS, "").strip()
        try:
            num_pods = int(environ.get(Var.NUM_PODS, "") or 0)
            per_pod = int(environ.get(Var.DEVICES_PER_POD, "") or 0)
        except ValueError:
            num_pods = per_pod = 0
        if not text or num_pods < 1 or per_pod < 1:
            return cls.full(1, world_size)
        group = cls(parse_members(text), num_pods, per_pod)
        if group.world_size != world_size:
            raise GroupError(
                f"{Var.MEMBERS}={text} means {group.world_size} device(s) but MindSpore's group has {world_size}; "
                "the launcher and the trainer disagree (a trainer started by hand with a stale environment?)"
            )
        return group


def rank_batch(global_batch: int, world_size: int) -> int:
    """Each rank's share of the global batch; a split that leaves a remainder is refused (it would change the
    recipe)."""
    if world_size < 1 or global_batch % world_size:
        raise GroupError(
            f"the global batch {global_batch} cannot be split evenly over {world_size} device(s); choose min_devices "
            "so that every group size the job may shrink to divides the global batch"
        )
    return global_batch // world_size


def group_sizes(num_pods: int, min_pods: int, devices_per_pod: int) -> list[int]:
    """Every device count an elastic job may train with, largest first (whole pods only)."""
    return [pods * devices_per_pod for pods in range(num_pods, min_pods - 1, -1)]


def unsplittable_sizes(global_batch: int, num_pods: int, min_pods: int, devices_per_pod: int) -> list[int]:
    """The group sizes between the full job and ``min_pods`` pods over which the global batch does not split."""
    return [size for size in group_sizes(num_pods, min_pods, devices_per_pod) if global_batch % size]
