"""The one interpreter of a rendered pod: what the kubelet would give each index of the rendered Indexed Job on a
one-node cluster (env with ``$(VAR)`` expansion, downward-API fields, Secret and ConfigMap references, volumes with
``subPath``), for two runners: local processes (jobctl.backends.local.pods) and containers (docker/run_pods.py).

Standard library and the contract only: docker/run_pods.py imports it from a checkout without installing anything.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import names
from contract.env import Var
from jobctl.backends.base import BackendError

LOCALHOST = "127.0.0.1"
# Where the local backend finds Secrets: one folder per Secret, one file per key (a mounted Secret's layout).
LOCAL_SECRETS_ENV = "JOBCTL_LOCAL_SECRETS"
_VAR_REF = re.compile(r"\$\$|\$\((\w+)\)")


@dataclass(frozen=True)
class Mount:
    """A volumeMount: ``source`` is the host folder or file behind it (after subPath); None for an emptyDir the
    runner provides itself (``empty_dir`` then holds its spec)."""

    path: str
    source: Path | None
    read_only: bool = False
    empty_dir: dict[str, Any] | None = None


@dataclass
class Pod:
    """One index of the rendered Job as the kubelet would run it."""

    index: int
    name: str
    env: dict[str, str]
    command: list[str]
    mounts: list[Mount]
    image: str
    working_dir: str | None
    template: dict[str, Any]


def find_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def training_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = find_kind(objects, "Job")
    if len(jobs) != 1:
        raise BackendError(f"expected exactly one Job among the rendered objects, found {len(jobs)}", 2)
    return jobs[0]


def local_secret_dir(secret: str) -> Path:
    """The local stand-in of a Secret: $JOBCTL_LOCAL_SECRETS/<secret>/ (BackendError, exit 2, without it)."""
    root = os.environ.get(LOCAL_SECRETS_ENV, "").strip()
    folder = Path(root).expanduser() / secret if root else None
    if folder is None or not folder.is_dir():
        where = f"{folder} is not a folder" if folder else f"{LOCAL_SECRETS_ENV} is not set"
        raise BackendError(
            f"the job uses Secret {secret!r}, which the local backend cannot read from a cluster ({where}); set "
            f"{LOCAL_SECRETS_ENV}=DIR with one file per key in DIR/{secret}/ (the layout of a mounted Secret)",
            exit_code=2,
        )
    return folder


def _secret_value(secret: str, key: str, env_name: str = "") -> str:
    try:
        folder = local_secret_dir(secret)
    except BackendError as exc:
        raise BackendError(f"env {env_name}: {exc.message}" if env_name else exc.message, exc.exit_code) from None
    path = folder / key
    try:
        return path.read_text().rstrip("\n")
    except OSError as exc:
        raise BackendError(f"Secret {secret!r} key {key!r}: cannot read {path}: {exc.strerror}", exit_code=2) from None


def _secret_env(secret: str) -> dict[str, str]:
    files = sorted(p for p in local_secret_dir(secret).iterdir() if p.is_file() and not p.name.startswith("."))
    return {p.name: _secret_value(secret, p.name) for p in files}


def field_value(field_path: str, index: int, pod_name: str, namespace: str, job_name: str, job_uid: str) -> str:
    """A downward-API field of pod ``index`` on a one-node cluster (its IPs are loopback)."""
    values = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "metadata.uid": str(uuid.uuid5(uuid.UUID(job_uid), pod_name)),
        "spec.nodeName": socket.gethostname(),
    }
    values.update(dict.fromkeys(("status.podIP", "status.hostIP", "status.podIPs", "status.hostIPs"), LOCALHOST))
    job_labels = {"job-completion-index": str(index), "controller-uid": job_uid, "job-name": job_name}
    for key, value in job_labels.items():
        for prefix in ("batch.kubernetes.io/", ""):
            values[f"metadata.labels['{prefix}{key}']"] = value
            values[f"metadata.annotations['{prefix}{key}']"] = value
    if field_path not in values:
        raise BackendError(f"the downward-API field {field_path} cannot be given to a local pod", 2)
    return values[field_path]


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ is a literal $, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


def _env(container: dict[str, Any], config_maps: dict[str, dict[str, str]], ident: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {Var.POD_INDEX: str(ident["index"])}
    for source in container.get("envFrom", []):
        env.update(config_maps.get(source.get("configMapRef", {}).get("name", ""), {}))
        if "secretRef" in source:
            env.update(_secret_env(source["secretRef"]["name"]))
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var or not source:
            env[var["name"]] = expand(str(var.get("value", "")), env)
        elif "fieldRef" in source:
            env[var["name"]] = field_value(source["fieldRef"]["fieldPath"], **ident)
        elif "secretKeyRef" in source:
            env[var["name"]] = _secret_value(source["secretKeyRef"]["name"], source["secretKeyRef"]["key"], var["name"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = config_maps.get(ref["name"], {}).get(ref["key"], "")
        else:
            raise BackendError(
                f"env var {var['name']} of the rendered pod uses {sorted(source)}, which a local pod cannot be given; "
                "run this job with --backend k8s",
                2,
            )
    return env


def _config_map_files(volume: dict[str, Any], data: dict[str, str], target: Path) -> Path:
    """The ConfigMap's keys (or its `items`) as files, the way a configMap volume shows them."""
    items = volume["configMap"].get("items") or [{"key": key, "path": key} for key in data]
    for item in items:
        if item["key"] in data:
            (target / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (target / item["path"]).write_text(data[item["key"]])
    target.mkdir(parents=True, exist_ok=True)
    return target


def _downward_files(template: dict[str, Any], volume: dict[str, Any], target: Path) -> Path:
    """annotations / labels files of a downwardAPI volume (`key="value"` lines, as the kubelet writes them)."""
    target.mkdir(parents=True, exist_ok=True)
    for item in volume["downwardAPI"].get("items", []):
        field = item.get("fieldRef", {}).get("fieldPath", "")
        if field not in ("metadata.annotations", "metadata.labels"):
            raise BackendError(f"a downwardAPI volume asks for {field}, which a local pod cannot be given", 2)
        values = template.get("metadata", {}).get(field.split(".")[1], {})
        (target / item["path"]).write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(values.items())))
    return target


@dataclass(frozen=True)
class Volumes:
    """Where the pod's volumes come from on this machine: ``host_dirs`` by mount path (run_pods' --volume),
    ``claim_dir`` for any PVC (the local backend's shared folder), ``scratch`` for ConfigMap and downward-API
    files (and emptyDirs when ``empty_dirs``: processes have no tmpfs of their own)."""

    scratch: Path
    host_dirs: Mapping[str, Path]
    claim_dir: Path | None = None
    empty_dirs: bool = False


def _volume_root(mount: dict[str, Any]) -> str | None:
    """Where the volume's root would be mounted: the mount path less its subPath, when it ends with it."""
    path, sub = mount["mountPath"].rstrip("/"), str(mount.get("subPath") or "").strip("/")
    return path[: -len(sub) - 1] if sub and path.endswith("/" + sub) else None


def name_of(volume: dict[str, Any]) -> str:
    return str(volume["configMap"]["name"])


def _mount(
    mount: dict[str, Any], volume: dict[str, Any], objects: list[dict[str, Any]], where: Volumes, template: dict
) -> Mount:
    path, name, read_only = mount["mountPath"].rstrip("/") or "/", mount["name"], bool(mount.get("readOnly"))
    source: Path | None
    if "emptyDir" in volume and not where.empty_dirs:
        return Mount(path, None, read_only, volume["emptyDir"])
    if "configMap" in volume:
        data: dict[str, str] = next(
            (cm.get("data", {}) for cm in find_kind(objects, "ConfigMap") if cm["metadata"]["name"] == name_of(volume)),
            {},
        )
        source = _config_map_files(volume, data, where.scratch / "volumes" / name)
    elif "downwardAPI" in volume:
        source = _downward_files(template, volume, where.scratch / "volumes" / name)
    elif "secret" in volume:
        source = local_secret_dir(volume["secret"]["secretName"])
    elif path in where.host_dirs:
        source = where.host_dirs[path]
    elif (root := _volume_root(mount)) is not None and root in where.host_dirs:
        source = where.host_dirs[root]  # --volume /shared=DIR for /shared/jobs/<name> (subPath jobs/<name>)
        (source / mount["subPath"]).mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath
    elif "hostPath" in volume:
        source = Path(volume["hostPath"]["path"])
    elif "persistentVolumeClaim" in volume and where.claim_dir is not None:
        source = where.claim_dir
    elif "emptyDir" in volume:
        source = where.scratch / "volumes" / name
        source.mkdir(parents=True, exist_ok=True)
    else:
        raise BackendError(f"volume {name} at {path} needs a host folder: pass --volume {path}=DIR", 2)
    return Mount(path, source / mount["subPath"] if mount.get("subPath") else source, read_only)


def interpret(objects: list[dict[str, Any]], where: Volumes) -> list[Pod]:
    """Every index of the rendered Indexed Job, as the kubelet would run it (BackendError, exit 2, on what a
    local pod cannot be given)."""
    job = training_job(objects)
    job_name, namespace = job["metadata"]["name"], job["metadata"].get("namespace", "default")
    job_uid = job["metadata"].get("uid") or str(uuid.uuid4())  # the API server's, on a Job that was created
    template = job["spec"]["template"]
    containers = template["spec"]["containers"]
    if len(containers) != 1:
        raise BackendError(f"Job {job_name} has {len(containers)} containers; a local pod runs exactly one", 2)
    container = containers[0]
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in find_kind(objects, "ConfigMap")}
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    mounts = []
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise BackendError(f"volumeMount {mount['name']} at {mount['mountPath']} names no volume of the pod", 2)
        mounts.append(_mount(mount, volumes[mount["name"]], objects, where, template))
    pods = []
    for index in range(int(job["spec"].get("completions", 1))):
        pod_name = names.pod_hostname(job_name, index)
        ident = {"index": index, "pod_name": pod_name, "namespace": namespace, "job_name": job_name, "job_uid": job_uid}
        env = _env(container, config_maps, ident)
        command = [expand(arg, env) for arg in container.get("command", []) + container.get("args", [])]
        if not command:
            raise BackendError(f"Job {job_name}'s container sets no command; the rendered Job must carry it", 2)
        image, working_dir = container.get("image", ""), container.get("workingDir")
        pods.append(Pod(index, pod_name, env, command, mounts, image, working_dir, template))
    return pods
