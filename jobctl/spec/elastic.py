"""Elastic data parallel in the spec: ``min_devices`` (the fewest devices, in whole pods, a job trains with while a
node is lost; unset = ``devices``, not elastic) and ``shrink_after`` (seconds the pods wait for a missing one before
training without it).

Each check raises ValueError inside the model's validator (the spec turns it into one SpecError paragraph). The
group sizes and the batch split are contract.group's: the trainer splits the same global batch the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contract.env import DEFAULT_SHRINK_AFTER
from contract.group import group_sizes, unsplittable_sizes


def is_elastic(devices: int, min_devices: int | None) -> bool:
    """Whether the group may shrink below all its pods: min_devices set and below devices."""
    return min_devices is not None and min_devices < devices


@dataclass(frozen=True)
class ElasticFields:
    """The spec's values the checks read (resolved: per_pod, launcher and the trainer's per_batch_size)."""

    devices: int
    per_pod: int
    min_devices: int | None
    shrink_after: int | None
    launcher: str
    max_restarts: int
    rendezvous_timeout: int
    per_batch_size: int

    @property
    def pods(self) -> int:
        return self.devices // self.per_pod

    @property
    def elastic(self) -> bool:
        return is_elastic(self.devices, self.min_devices)


def check_elastic(f: ElasticFields) -> None:
    """ValueError naming the field and the fix when min_devices/shrink_after cannot work for this job."""
    if f.min_devices is None:
        if f.shrink_after is not None:
            raise ValueError(
                f"shrink_after: {f.shrink_after} does nothing without min_devices (the job is not elastic: it always "
                "waits for all its pods); set --min-devices below --devices to let it shrink, or drop shrink_after"
            )
        return
    _check_range(f)
    if not f.elastic:
        return
    if f.launcher == "controller":
        raise ValueError(
            f"min_devices: {f.min_devices} (below devices {f.devices}) needs a launcher that can resize the group; "
            "launcher controller takes its rank table from Ascend's hccl-controller, which always lists every pod; "
            "use --launcher ranktable (the default) or msrun, or drop min_devices"
        )
    if f.max_restarts < 1:
        raise ValueError(
            f"max_restarts: 0 with min_devices {f.min_devices}: an elastic job survives a lost node by restarting "
            "the group without it (and again when it returns), and each loss counts as a restart; set "
            "--max-restarts 1 or more, or drop min_devices"
        )
    shrink = f.shrink_after if f.shrink_after is not None else DEFAULT_SHRINK_AFTER
    if shrink >= f.rendezvous_timeout:
        raise ValueError(
            f"shrink_after: {shrink} s is not below rendezvous_timeout {f.rendezvous_timeout} s: the rendezvous "
            "would give up before the group shrinks; lower shrink_after or raise rendezvous_timeout"
        )
    _check_batch(f)


def _check_range(f: ElasticFields) -> None:
    assert f.min_devices is not None
    if f.min_devices > f.devices:
        raise ValueError(
            f"min_devices: {f.min_devices} is more than devices {f.devices}; use at most {f.devices} (= devices: "
            "not elastic), or drop min_devices"
        )
    if f.min_devices < f.devices and f.pods == 1:
        raise ValueError(
            f"min_devices: {f.min_devices} with one pod of {f.devices} devices: a job shrinks by whole pods, so a "
            "single-pod job cannot; drop min_devices, or spread the devices over several pods with "
            "--devices-per-node"
        )
    if f.min_devices % f.per_pod:
        whole = ", ".join(str(size) for size in reversed(group_sizes(f.pods, 1, f.per_pod)[1:]))
        raise ValueError(
            f"min_devices: {f.min_devices} is not a whole number of pods ({f.per_pod} devices per pod, "
            f"devices_per_node); a job shrinks by whole pods: use one of {whole}"
        )


def _check_batch(f: ElasticFields) -> None:
    """Every group size down to min_devices must split the recipe's global batch evenly."""
    assert f.min_devices is not None
    global_batch = f.per_batch_size * f.devices
    min_pods = f.min_devices // f.per_pod
    bad = unsplittable_sizes(global_batch, f.pods, min_pods, f.per_pod)
    if not bad:
        return
    sizes = ", ".join(map(str, bad))
    fixes = []
    fewest = working_min_devices(global_batch, f.pods, f.per_pod)
    if fewest is not None:
        fixes.append(f"--min-devices {fewest}")
    fixes.append(f"--set per_batch_size={splitting_batch(f.per_batch_size, f.devices, f.pods, min_pods, f.per_pod)}")
    raise ValueError(
        f"min_devices: {f.min_devices}: the global batch {global_batch} (per_batch_size {f.per_batch_size} x "
        f"devices {f.devices}) does not split evenly over {sizes} device(s), a group size the job may shrink to "
        f"(the trainer keeps the global batch and splits it over the devices there); use {' or '.join(fixes)}"
    )


def working_min_devices(global_batch: int, pods: int, per_pod: int) -> int | None:
    """The fewest devices (whole pods, below the full job) down to which every group size splits the batch."""
    best = None
    for min_pods in range(pods - 1, 0, -1):
        if unsplittable_sizes(global_batch, pods, min_pods, per_pod):
            break
        best = min_pods * per_pod
    return best


def splitting_batch(per_batch: int, devices: int, pods: int, min_pods: int, per_pod: int) -> int:
    """The nearest per_batch_size at or above ``per_batch`` whose global batch every group size splits."""
    sizes = group_sizes(pods, min_pods, per_pod)
    need = math.lcm(*sizes)
    step = need // math.gcd(need, devices)  # per_batch x devices is a multiple of need iff per_batch is of step
    return -(-per_batch // step) * step


def shrunk_batch_note(f: ElasticFields) -> str | None:
    """What shrinking costs each device, for render/submit to say (None: not elastic)."""
    if not f.elastic or f.min_devices is None:
        return None
    full = f.per_batch_size
    shrunk = full * f.devices // f.min_devices
    return (
        f"note: elastic: trains on {f.min_devices} to {f.devices} devices; the global batch stays "
        f"{full * f.devices}, so each device takes {full} images a step at full size and up to {shrunk} while shrunk "
        "to min_devices: check that this fits in a device's memory"
    )
