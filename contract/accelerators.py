"""Per-accelerator facts, as data: one entry per device kind jobctl renders for and the launcher builds tables for.

Pure (no I/O): jobctl (spec checks, rendering, ``ranktable build/merge``) and the launcher (rank tables) import it.
Adding an Ascend generation or a GPU type is one entry in ACCELERATORS plus tests; nothing branches on a name.

Sources (what could not be checked without the hardware is said in the README's cluster section):
- resource name, node labels, ``ring-controller.atlas`` values: mind-cluster ``docs/en/scheduling/api/k8s.md`` and
  the ``accelerator-type`` table of its AscendJob docs (module, module-910b-8, module-910b-16, module-a3-16-super-pod).
- device counts one pod may take: Ascend/ascend-for-volcano's per-node plugins: ``module910x8`` refuses 3, 5, 6, 7;
  ``module910bx8`` takes 1-8; ``module910bx16`` refuses 9, 11, 13, 15; A3 takes the powers of two up to 16.
- which 910 device sets HCCL accepts on one server: the two 4-chip HCCS rings (0-3, 4-7); cross-ring 4-device sets
  made of one pair per ring at the same positions (e.g. 0,1,4,5) as HCCL itself accepts them.
- rank-table versions: mind-cluster ``docs/en/scheduling/api/hccl.json_file_description.md`` (A2 and older 1.0,
  A3 1.2 with ``super_device_id`` and ``super_pod_list``).
- device-plugin annotation keys: ascend-device-plugin ``pkg/common/proto.go`` and mind-cluster's plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from contract.env import Family

ANNOTATION_PREFIX = "ascend.kubectl.kubernetes.io/"
ANNOTATION_910 = ANNOTATION_PREFIX + "ascend-910-configuration"
ANNOTATION_NPU = ANNOTATION_PREFIX + "ascend-npu-configuration"
# Every key any plugin version writes, in the order the launcher looks for them.
ANNOTATION_KEYS = (ANNOTATION_910, ANNOTATION_NPU)

RankTableVersion = Literal["1.0", "1.2"]
RANK_TABLE_V1_0: RankTableVersion = "1.0"
RANK_TABLE_V1_2: RankTableVersion = "1.2"

# Label MindCluster's components and Volcano's Ascend plugin read (on the Job, the pod template and rings-config).
RING_CONTROLLER_LABEL = "ring-controller.atlas"
ACCELERATOR_LABEL = "accelerator"
ACCELERATOR_TYPE_LABEL = "accelerator-type"
HOST_ARCH_LABEL = "host-arch"
# No upstream node label names an A3 super pod (the device plugin reports super_pod_id in its annotation only), so
# A3 placement keys on this label by default: set it on each node to its super-pod id (npu-smi info -t spod-info),
# or pass --topology with your cluster's own key.
SUPER_POD_LABEL = "jobctl.io/super-pod"


@dataclass(frozen=True)
class NodeType:
    """One kind of server of an accelerator: how many devices it has and which counts one pod may take there."""

    devices: int
    accepted_counts: tuple[int, ...]
    # The ``accelerator-type`` node label value (None: the generation has no such label, e.g. GPUs).
    accelerator_type: str | None = None


@dataclass(frozen=True)
class Accelerator:
    name: str
    family: Family
    description: str
    # Extended resource of one device (None: no device plugin).
    resource: str | None
    node_types: tuple[NodeType, ...]
    # Device-plugin annotation keys, preferred first (Ascend).
    annotation_keys: tuple[str, ...] = ()
    rank_table_version: RankTableVersion | None = None
    # Node labels every node of this accelerator carries (the accelerator-type label comes from the node type).
    node_labels: tuple[tuple[str, str], ...] = ()
    ring_controller: str | None = None
    # Base image of the trainer image for this accelerator (make image BASE_IMAGE=...).
    base_image: str | None = None
    # 910: the device sets of one server must respect its two HCCS rings.
    ring_size: int | None = None
    # Default topology key for placing all pods of a multi-node job in one domain (A3: the super pod).
    default_topology: str | None = None

    @property
    def default_devices_per_node(self) -> int:
        return self.node_types[0].devices

    @property
    def max_devices_per_node(self) -> int:
        return max(t.devices for t in self.node_types)

    @property
    def accepted_counts(self) -> tuple[int, ...]:
        return tuple(sorted({n for t in self.node_types for n in t.accepted_counts}))

    @property
    def server_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({t.devices for t in self.node_types}))

    def node_type_for(self, devices_per_pod: int) -> NodeType | None:
        """The smallest server kind that takes this many devices in one pod, or None."""
        return next((t for t in self.node_types if devices_per_pod in t.accepted_counts), None)

    def node_selector(self, devices_per_pod: int) -> dict[str, str]:
        labels = dict(self.node_labels)
        node_type = self.node_type_for(devices_per_pod)
        if node_type is not None and node_type.accelerator_type:
            labels[ACCELERATOR_TYPE_LABEL] = node_type.accelerator_type
        return labels

    def device_set_problem(self, devices: Sequence[int], server_devices: int) -> str | None:
        """Why HCCL refuses these devices of one server of ``server_devices`` devices, or None when it accepts them."""
        chosen = sorted(set(devices))
        if any(d >= server_devices for d in chosen):
            return f"devices {chosen}: one {self.description} server has devices 0-{server_devices - 1} only"
        node_type = next((t for t in self.node_types if t.devices == server_devices), None)
        if node_type is None or len(chosen) not in node_type.accepted_counts:
            counts = ", ".join(map(str, node_type.accepted_counts if node_type else self.accepted_counts))
            takes = f"one {self.description} server takes {counts} devices in one job"
            return f"devices {chosen}: {takes}, not {len(chosen)}"
        if self.ring_size and len(chosen) < server_devices and tuple(chosen) not in ring_sets(self.ring_size):
            return (
                f"devices {chosen} do not form an HCCL ring on one {self.description} server: use devices within 0-3 "
                "or within 4-7, a 4-device set of the same two positions in each ring (e.g. 0,1,4,5), or all of 0-7"
            )
        return None


def ring_sets(ring_size: int) -> frozenset[tuple[int, ...]]:
    """Device sets HCCL accepts on a two-ring server smaller than the whole server: any subset of one ring of size
    1, 2 or 4 (a whole ring), and 4-device sets pairing the same two positions of both rings (0,1,4,5; 0,2,4,6...)."""
    rings = [tuple(range(r * ring_size, (r + 1) * ring_size)) for r in range(2)]
    sets: set[tuple[int, ...]] = set()
    for ring in rings:
        for size in (1, 2, ring_size):
            sets.update(combinations(ring, size))
    for a, b in combinations(range(ring_size), 2):
        sets.add((a, b, a + ring_size, b + ring_size))
    return frozenset(sets)


_ASCEND_NODE_LABELS = (("accelerator", "huawei-Ascend910"),)

ACCELERATORS: tuple[Accelerator, ...] = (
    Accelerator(
        name="cpu",
        family="cpu",
        description="CPU",
        resource=None,
        # A "device" on CPU is one trainer process; more than 64 per pod only adds contention.
        node_types=(NodeType(64, tuple(range(1, 65))),),
    ),
    Accelerator(
        name="gpu",
        family="gpu",
        description="NVIDIA GPU",
        resource="nvidia.com/gpu",
        # Common servers hold 8 GPUs; HGX-2/DGX-2 class nodes 16.
        node_types=(NodeType(8, tuple(range(1, 9))), NodeType(16, tuple(range(1, 17)))),
    ),
    Accelerator(
        name="910",
        family="ascend",
        description="Atlas 800 (Ascend 910)",
        resource="huawei.com/Ascend910",
        node_types=(NodeType(8, (1, 2, 4, 8), "module"),),
        annotation_keys=(ANNOTATION_910, ANNOTATION_NPU),
        rank_table_version=RANK_TABLE_V1_0,
        node_labels=_ASCEND_NODE_LABELS,
        ring_controller="ascend-910",
        base_image="ascendai/cann:8.0.0-910-ubuntu22.04-py3.10",
        ring_size=4,
    ),
    Accelerator(
        name="910b",
        family="ascend",
        description="Atlas 800T A2 (Ascend 910B)",
        resource="huawei.com/Ascend910",
        node_types=(
            NodeType(8, tuple(range(1, 9)), "module-910b-8"),
            NodeType(16, (*range(1, 9), 10, 12, 14, 16), "module-910b-16"),
        ),
        annotation_keys=(ANNOTATION_NPU, ANNOTATION_910),
        rank_table_version=RANK_TABLE_V1_0,
        node_labels=(*_ASCEND_NODE_LABELS, (HOST_ARCH_LABEL, "huawei-arm")),
        ring_controller="ascend-910b",
        base_image="ascendai/cann:9.1.0-910b-ubuntu22.04-py3.11",
    ),
    Accelerator(
        name="a3",
        family="ascend",
        description="Atlas 900 A3 SuperPoD",
        resource="huawei.com/Ascend910",
        node_types=(NodeType(16, (1, 2, 4, 8, 16), "module-a3-16-super-pod"),),
        annotation_keys=(ANNOTATION_NPU, ANNOTATION_910),
        rank_table_version=RANK_TABLE_V1_2,
        node_labels=(*_ASCEND_NODE_LABELS, (HOST_ARCH_LABEL, "huawei-arm")),
        ring_controller="ascend-910b",
        base_image="ascendai/cann:9.1.0-a3-ubuntu22.04-py3.11",
        default_topology=SUPER_POD_LABEL,
    ),
)

BY_NAME: dict[str, Accelerator] = {a.name: a for a in ACCELERATORS}
# The accelerator a platform family gets when the spec names none (910B: what MindSpore 2.10's CANN supports best).
DEFAULT_FOR_FAMILY: dict[Family, str] = {"cpu": "cpu", "gpu": "gpu", "ascend": "910b"}


def names_of(family: Family) -> tuple[str, ...]:
    return tuple(a.name for a in ACCELERATORS if a.family == family)


def accelerator(name: str) -> Accelerator:
    """The entry of ``name``; KeyError names the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown accelerator {name!r}; known: {', '.join(BY_NAME)}") from None


def rank_table_accelerators() -> tuple[str, ...]:
    return tuple(a.name for a in ACCELERATORS if a.rank_table_version)
