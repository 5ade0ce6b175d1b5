"""Field checks of what a spec may ask of a shared cluster: host paths, secret references, egress networks.

Each raises ValueError inside the models' validators (the spec turns it into one SpecError paragraph). Whole-spec
policy (the k8s backend's host-path roots, the warnings) is jobctl.security, above the models.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Iterable, Mapping

from contract import env as contract
from contract import layout
from jobctl.spec.names import DNS_1123_SUBDOMAIN
from jobctl.strict_yaml import short_repr

# Host paths no pod may mount, nor any folder under or above them (`/var` holds /var/run/docker.sock).
FORBIDDEN_HOST_PATHS = (
    "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/var/run", "/var/lib/kubelet", "/var/lib/docker",
    "/var/lib/containerd", "/var/lib/etcd", "/bin", "/sbin", "/lib", "/lib64", "/usr/bin", "/usr/sbin",
)  # fmt: skip
# Where a data or shared host path may live on the k8s backend: the admin's list, os.pathsep-separated.
HOST_PATH_ROOTS_ENV = "JOBCTL_HOST_PATH_ROOTS"
DEFAULT_HOST_PATH_ROOTS = ("/mnt/jobctl",)

# Secret and key names (a Secret's data key: the ConfigMap/Secret key grammar).
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# In-pod paths jobctl mounts itself: a secret volume may not sit on, under or above one of them.
RESERVED_MOUNTS = (
    layout.SHARED_MOUNT,
    contract.DATA_MOUNT,
    contract.CONFIG_MOUNT,
    contract.PODINFO_MOUNT,
    contract.SHM_MOUNT,
    contract.HCCN_CONF,
    contract.CONTROLLER_RANKTABLE_MOUNT,
    contract.TERMINATION_LOG,
    "/usr/local/Ascend",
    "/usr/local/dcmi",
    "/usr/local/bin/npu-smi",
    "/etc/ascend_install.info",
)


def _overlaps(path: str, other: str) -> bool:
    """`path` is `other`, inside it or above it."""
    return path == other or path.startswith(other.rstrip("/") + "/") or other.startswith(path.rstrip("/") + "/")


def normalized_path(value: str, field: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or value == "/" or ".." in parts or any(c in value for c in "\n\0"):
        raise ValueError(f"{field} {short_repr(value)} must be an absolute path other than / without '..'")
    return "/" + posixpath.normpath(value).lstrip("/")  # normpath keeps a leading //


def check_host_path(value: str) -> str:
    """A data or shared host path: never a system folder, a runtime socket or a folder holding one."""
    path = normalized_path(value, "host_path")
    if path == "/" or path.endswith(".sock") or any(_overlaps(path, bad) for bad in FORBIDDEN_HOST_PATHS):
        system = ", ".join(FORBIDDEN_HOST_PATHS[:9])
        raise ValueError(
            f"host_path {short_repr(value)} is refused: jobctl never mounts /, system folders ({system}, ...), "
            "container-runtime sockets or a folder holding them; put the data under a folder of its own (the k8s "
            f"backend allows ${HOST_PATH_ROOTS_ENV}, default {':'.join(DEFAULT_HOST_PATH_ROOTS)}) or use a PVC"
        )
    return path


def host_path_roots(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    raw = environ.get(HOST_PATH_ROOTS_ENV, "").strip()
    if not raw:
        return DEFAULT_HOST_PATH_ROOTS
    return tuple(normalized_path(p.strip(), HOST_PATH_ROOTS_ENV) for p in raw.split(os.pathsep) if p.strip())


def _check_secret_name(name: str, field: str) -> str:
    if len(name) > 253 or not DNS_1123_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{field}: {short_repr(name)} is not a Secret name (lowercase letters, digits, '-', '.')")
    return name


def parse_secret_ref(name: str, ref: str) -> tuple[str, str]:
    """`SECRET/KEY` -> (secret, key); ValueError naming the env variable otherwise."""
    secret, sep, key = ref.partition("/")
    if not sep or not key or len(key) > 253 or not SECRET_KEY.fullmatch(key):
        raise ValueError(
            f"secret_env.{name}: {short_repr(ref)} is not SECRET/KEY (a Secret's name and one of its keys), "
            f"e.g. --secret-env {name}=wandb/api-key"
        )
    return _check_secret_name(secret, f"secret_env.{name}"), key


def check_secret_names(names: Iterable[str], field: str) -> None:
    seen: set[str] = set()
    for name in names:
        _check_secret_name(name, field)
        if name in seen:
            raise ValueError(f"{field}: Secret {name} is listed twice")
        seen.add(name)


def check_secret_volumes(volumes: Mapping[str, str]) -> dict[str, str]:
    """SECRET -> normalised mount path: absolute, clear of jobctl's own mounts and of each other."""
    checked: dict[str, str] = {}
    for secret, path in volumes.items():
        _check_secret_name(secret, "secret_volumes")
        mount = normalized_path(path, f"secret_volumes.{secret}")
        clash = next((m for m in RESERVED_MOUNTS if _overlaps(mount, m)), None)
        clash = clash or next((p for p in checked.values() if _overlaps(mount, p)), None)
        if clash:
            raise ValueError(
                f"secret_volumes.{secret}: {mount} overlaps {clash}, which is already mounted; choose a folder of "
                "its own such as /var/run/secrets/<name>"
            )
        checked[secret] = mount
    return checked


def check_cidrs(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    for value in values:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise ValueError(
                f"egress_cidrs: {short_repr(value)} is not a network such as 10.0.0.0/8 or 2001:db8::/32"
            ) from None
    return values
