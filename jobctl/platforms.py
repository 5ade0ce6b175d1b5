"""Per-platform pod-rendering facts, kept as data (sources: the Ascend/GPU-on-Kubernetes reference notes).

Two tables, no branching on names: ``contract.accelerators`` holds what differs per accelerator (resource
name, devices per node and the device counts a node takes, node labels, annotation keys, rank-table version, base
image), importable by the launcher; this module holds what differs per platform family for the pod: default
per-device CPU/memory/shared memory, environment presets, tolerations, read-only host paths and launch modes.

All platforms run as uid/gid 1000 by default (JobSpec.run_as_user): Ascend images run as HwHiAiUser (uid 1000),
whose group owns the davinci devices on hosts set up the usual way; GPU and CPU have no such constraint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contract import accelerators
from contract.accelerators import Accelerator

# The families and launch modes are the pod contract's.
from contract.env import (
    FAMILIES,
    TRAINER_PLATFORM,
    Family,
    Launcher,
    TrainerPlatform,
)

PlatformName = Family
PLATFORMS: tuple[PlatformName, ...] = FAMILIES

# The image `make image` builds for a platform is resnext-jobs-<platform>:<IMAGE_TAG> (Makefile TAG).
IMAGE_TAG = "0.1.0"
IMAGE_REPOSITORY = "resnext-jobs-{platform}"
REGISTRY_ENV = "JOBCTL_REGISTRY"

# Defaults of the PVCs k8s/ creates, and its namespaces: GPU and CPU jobs run where Pod Security enforces
# "restricted"; Ascend jobs, which need the five read-only driver hostPaths below, in a namespace of their own
# (k8s/namespace.yaml says what each one admits).
DEFAULT_NAMESPACE = "mindspore-jobs"
ASCEND_NAMESPACE = "mindspore-jobs-ascend"
DEFAULT_DATA_CLAIM = "imagenet"
DEFAULT_SHARED_CLAIM = "jobctl-shared"

MASTER_PORT_NAME = "scheduler"
CONTAINER_NAME = "trainer"

# Trainers save a checkpoint after SIGTERM (~0.7 GB for ResNeXt101-64x4d), which can take minutes on network
# storage. (The root filesystem stays writable: MindSpore writes kernel caches and logs under $HOME and the cwd.)
TERMINATION_GRACE_SECONDS = 300


@dataclass(frozen=True)
class HostPath:
    """A read-only hostPath mount; `kind` is the hostPath type, so a node without it fails visibly at start."""

    name: str
    path: str
    kind: Literal["Directory", "File"]


@dataclass(frozen=True)
class PlatformInfo:
    name: PlatformName
    # Ascend's plugin wants requests = limits; NVIDIA's takes limits (requests default to them).
    device_in_requests: bool
    # Defaults per device (one trainer process each), scaled by devices per pod.
    cpu_per_device: int
    memory_gi_per_device: int
    shm_gi_per_device: int
    env: tuple[tuple[str, str], ...]
    tolerations: tuple[dict[str, str], ...] = ()
    host_paths: tuple[HostPath, ...] = ()
    # Ascend reads the device plugin's annotation through a downward-API file.
    podinfo_volume: bool = False
    launchers: tuple[Launcher, ...] = ("msrun",)
    default_launcher: Launcher = "msrun"
    # The namespace a spec of this family defaults to (its Pod Security level is k8s/namespace.yaml's).
    namespace: str = DEFAULT_NAMESPACE
    # Only CPU pods may run as root (spec allow_root): the device runtimes' users own the devices.
    root_allowed: bool = False

    @property
    def trainer_platform(self) -> TrainerPlatform:
        return TRAINER_PLATFORM[self.name]

    @property
    def accelerators(self) -> tuple[str, ...]:
        """The accelerators of this family a spec may name (the first table's entries)."""
        return accelerators.names_of(self.name)

    @property
    def default_accelerator(self) -> str:
        return accelerators.DEFAULT_FOR_FAMILY[self.name]


ASCEND = PlatformInfo(
    name="ascend",
    device_in_requests=True,
    cpu_per_device=12,
    memory_gi_per_device=32,
    shm_gi_per_device=4,
    env=(
        # HCCL's socket timeout defaults to 120 s (EI0006 on slow starts); the rendezvous may take minutes.
        ("HCCL_CONNECT_TIMEOUT", "600"),
        ("HCCL_EXEC_TIMEOUT", "1800"),
        # HCCL's own IP allow-list needs every peer's IP before the pods exist; the job's NetworkPolicy (only
        # its own pods may connect) takes its place.
        ("HCCL_WHITELIST_DISABLE", "1"),
        ("GLOG_v", "2"),
    ),
    # Without Ascend Docker Runtime these are what the CANN runtime reads (cann-container-image README); with it
    # they are mounted twice, read-only, which is harmless. /etc/hccn.conf holds the device IPs (rank table).
    host_paths=(
        HostPath("ascend-driver", "/usr/local/Ascend/driver", "Directory"),
        HostPath("ascend-dcmi", "/usr/local/dcmi", "Directory"),
        HostPath("npu-smi", "/usr/local/bin/npu-smi", "File"),
        HostPath("hccn-conf", "/etc/hccn.conf", "File"),
        HostPath("ascend-install-info", "/etc/ascend_install.info", "File"),
    ),
    podinfo_volume=True,
    launchers=("ranktable", "msrun", "controller"),
    default_launcher="ranktable",
    namespace=ASCEND_NAMESPACE,
)

GPU = PlatformInfo(
    name="gpu",
    device_in_requests=False,
    cpu_per_device=8,
    memory_gi_per_device=32,
    shm_gi_per_device=4,
    env=(
        ("NCCL_SOCKET_IFNAME", "eth0"),
        ("NCCL_DEBUG", "WARN"),
    ),
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
)

CPU = PlatformInfo(
    name="cpu",
    device_in_requests=False,
    cpu_per_device=2,
    memory_gi_per_device=8,
    shm_gi_per_device=1,
    env=(
        # A GPU-less pod running on a GPU node would otherwise see every GPU (NVIDIA device plugin README).
        ("NVIDIA_VISIBLE_DEVICES", "void"),
    ),
    root_allowed=True,
)

PLATFORM_INFO: dict[str, PlatformInfo] = {p.name: p for p in (ASCEND, GPU, CPU)}


def platform_info(name: str) -> PlatformInfo:
    return PLATFORM_INFO[name]


def accelerator_of(platform: str, name: str | None) -> Accelerator:
    """The accelerator entry a spec resolves to (its own, or its family's default)."""
    return accelerators.accelerator(name or platform_info(platform).default_accelerator)
