"""Run a rendered Indexed Job's pods as local Docker containers, the way the kubelet would, over loopback.

    python docker/run_pods.py RENDERED.json --volume /shared=DIR --volume /data=DIR [--timeout S] [--docker BIN]

RENDERED.json is `jobctl render -o json` output (a list of objects, or a List). Every pod index becomes one
`docker run --network host` with the container's command, env and mounts: ConfigMaps are written to files, volumes
mounted at a `--volume` path come from that host directory (else a hostPath's own path), Memory emptyDirs become
tmpfs / --shm-size, other emptyDirs anonymous volumes (writable, seeded from the image, removed with the
container); a read-only root filesystem is `docker run --read-only`. Downward-API env resolves as on one node:
POD_IP and NODE_IP are 127.0.0.1, pod 0's address (JOBCTL_MASTER_ADDR) is 127.0.0.1, and the scheduler port is
replaced by a free one, since other jobs on a shared machine may hold the fixed port. All pods run at once; when
one fails the others are stopped.
Exit 0 when every pod exited 0, 1 when a pod failed or timed out, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The pod contract is pure standard library: importable from the checkout without installing anything.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.launcher.contract import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, Var

LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 30
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_QUANTITY_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_QUANTITY_FACTORS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


class BadInput(Exception):
    """The rendered objects ask for something a single Docker host cannot provide."""


@dataclass(frozen=True)
class Pod:
    index: int
    name: str
    argv: list[str]


def load_objects(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the rendered objects {path}: {exc}; pass `jobctl render -o json` output") from exc
    objects = data.get("items", [data]) if isinstance(data, dict) else data
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise BadInput(f"{path} is not a list of Kubernetes objects; pass `jobctl render -o json` output")
    return objects


def find_one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o.get("kind") == kind and name in (None, o.get("metadata", {}).get("name"))]
    if len(found) != 1:
        what = f"{kind} {name}" if name else kind
        raise BadInput(f"the rendered objects hold {len(found)} × {what}, need exactly one")
    return found[0]


def bytes_of(quantity: str) -> int:
    match = _QUANTITY.match(str(quantity))
    if not match:
        raise BadInput(f"emptyDir sizeLimit {quantity!r} is not a plain Kubernetes quantity such as 1Gi")
    return int(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PodIdentity:
    """What the API server and the Job controller would have stamped on pod ``index``."""

    index: int
    name: str
    namespace: str
    job_name: str
    job_uid: str  # one per run of this script, like a Job object's uid


def resolve_env(entry: dict[str, Any], pod: PodIdentity) -> str:
    """An env entry's value as the kubelet would give it to the pod on a one-node cluster."""
    if "valueFrom" not in entry:
        return str(entry.get("value", ""))
    path = entry["valueFrom"].get("fieldRef", {}).get("fieldPath")
    values = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": str(uuid.uuid5(uuid.UUID(pod.job_uid), pod.name)),
        "status.podIP": LOOPBACK,
        "status.hostIP": LOOPBACK,
    }
    job_labels = {"job-completion-index": str(pod.index), "controller-uid": pod.job_uid, "job-name": pod.job_name}
    for key, value in job_labels.items():
        for prefix in ("batch.kubernetes.io/", ""):
            values[f"metadata.labels['{prefix}{key}']"] = value
            values[f"metadata.annotations['{prefix}{key}']"] = value
    if path not in values:
        raise BadInput(f"env {entry['name']} comes from {entry['valueFrom']}, which this runner cannot resolve")
    return values[path]


def write_config_map(objects: list[dict[str, Any]], source: dict[str, Any], root: Path) -> Path:
    """The ConfigMap's keys (or its `items`) as files, the way a configMap volume shows them."""
    name = source["name"]
    data: dict[str, str] = find_one(objects, "ConfigMap", name).get("data", {})
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    target = root / f"configmap-{name}"
    for item in items:
        if item["key"] not in data:
            raise BadInput(f"configMap volume {name} asks for key {item['key']}, which the ConfigMap lacks")
        (target / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (target / item["path"]).write_text(data[item["key"]])
    return target


def write_downward(template: dict[str, Any], source: dict[str, Any], root: Path, name: str) -> Path:
    """annotations / labels files of a downwardAPI volume (`key="value"` lines, as the kubelet writes them)."""
    target = root / f"downward-{name}"
    target.mkdir(parents=True, exist_ok=True)
    for item in source.get("items", []):
        field = item.get("fieldRef", {}).get("fieldPath", "")
        if field not in ("metadata.annotations", "metadata.labels"):
            raise BadInput(f"downwardAPI volume {name} asks for {field}, which this runner cannot provide")
        values = template.get("metadata", {}).get(field.split(".")[1], {})
        (target / item["path"]).write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(values.items())))
    return target


def mount_args(
    objects: list[dict[str, Any]], template: dict[str, Any], host_dirs: dict[str, Path], scratch: Path
) -> list[str]:
    """docker run flags for the container's volumeMounts."""
    pod = template["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    args: list[str] = []
    for mount in pod["containers"][0].get("volumeMounts", []):
        path, volume = mount["mountPath"], volumes.get(mount["name"])
        if volume is None:
            raise BadInput(f"volumeMount {mount['name']} at {path} names no volume of the pod")
        ro = ",readonly" if mount.get("readOnly") else ""
        if "emptyDir" in volume:
            limit = volume["emptyDir"].get("sizeLimit")
            if path == "/dev/shm":
                args += [f"--shm-size={bytes_of(limit)}"] if limit else []
            else:
                args += ["--tmpfs", path] if volume["emptyDir"].get("medium") == "Memory" else ["--volume", path]
            continue
        if "configMap" in volume:
            source = write_config_map(objects, volume["configMap"], scratch)
        elif "downwardAPI" in volume:
            source = write_downward(template, volume["downwardAPI"], scratch, mount["name"])
        elif _volume_root(mount) in host_dirs:  # `--volume /shared=DIR`: the volume's root; a subPath picks a folder
            source = host_dirs[_volume_root(mount)]
        elif "hostPath" in volume:
            source = Path(volume["hostPath"]["path"])
        else:
            raise BadInput(
                f"volume {mount['name']} at {path} ({volume}) needs a host directory: pass --volume {path}=DIR"
            )
        source = _sub_path(source, mount["subPath"]) if mount.get("subPath") else source
        args += ["--mount", f"type=bind,source={source.resolve()},target={path}{ro}"]
    return args


def _sub_path(root: Path, sub: str) -> Path:
    """The subPath folder of a volume, created if missing (as the kubelet does) with the owner and mode of the
    volume's root, so the pod's user can write where it could write in the root."""
    target, stat = root / sub, root.stat()
    for folder in [*reversed(target.relative_to(root).parents[:-1]), target.relative_to(root)]:
        path = root / folder
        if not path.exists():
            path.mkdir()
            os.chown(path, stat.st_uid, stat.st_gid)
            path.chmod(stat.st_mode & 0o7777)
    return target


def _volume_root(mount: dict[str, Any]) -> str:
    """Where the volume's root would be mounted: a mount of subPath jobs/x at /shared/jobs/x has its root at /shared
    (jobctl mounts a job's folder of the shared volume at the folder's own path)."""
    path, sub = mount["mountPath"].rstrip("/"), mount.get("subPath", "").strip("/")
    return path[: -len(sub) - 1] or "/" if sub and path.endswith("/" + sub) else path


def security_args(template: dict[str, Any]) -> list[str]:
    pod_ctx = template["spec"].get("securityContext", {})
    ctx = {**pod_ctx, **template["spec"]["containers"][0].get("securityContext", {})}
    args: list[str] = []
    if "runAsUser" in ctx:
        args += ["--user", f"{ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}"]
    if "ALL" in ctx.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if ctx.get("readOnlyRootFilesystem"):
        args += ["--read-only"]  # the pod's emptyDirs (/tmp, /workspace) are its only writable places off volumes
    return args


def plan(objects: list[dict[str, Any]], host_dirs: dict[str, Path], scratch: Path, docker: str) -> list[Pod]:
    """One `docker run` argv per pod index of the rendered Indexed Job."""
    job = find_one(objects, "Job")
    job_name, namespace = job["metadata"]["name"], job["metadata"].get("namespace", "default")
    template = job["spec"]["template"]
    containers = template["spec"]["containers"]
    if len(containers) != 1:
        raise BadInput(f"Job {job_name} has {len(containers)} containers; this runner runs exactly one per pod")
    container = containers[0]
    command = list(container.get("command", [])) + list(container.get("args", []))
    if not command:
        raise BadInput(f"Job {job_name}'s container sets no command; the rendered Job must carry it")
    shared = mount_args(objects, template, host_dirs, scratch) + security_args(template)
    if container.get("workingDir"):
        shared += ["--workdir", container["workingDir"]]
    port, job_uid = str(free_port()), str(uuid.uuid4())
    pods = []
    for index in range(int(job["spec"].get("completions", 1))):
        pod_name = f"{job_name}-{index}"
        identity = PodIdentity(index, pod_name, namespace, job_name, job_uid)
        env = {e["name"]: resolve_env(e, identity) for e in container.get("env", [])}
        env.update({Var.POD_INDEX: str(index), Var.MASTER_ADDR: LOOPBACK})
        if Var.MASTER_PORT in env:
            env[Var.MASTER_PORT] = port
        container_name = f"{pod_name}-{time.time_ns() % 10**9}"
        argv = [docker, "run", "--rm", "--name", container_name, "--network", "host", "--hostname", pod_name]
        argv += [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        argv += [*shared, "--entrypoint", command[0], container["image"], *command[1:]]
        pods.append(Pod(index, container_name, argv))
    return pods


def stream(pod: Pod, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        print(f"[pod {pod.index}] {line}", end="", flush=True)


def run(pods: list[Pod], docker: str, timeout: float) -> int:
    """Start every pod, stream their output, stop the rest when one fails; the first failure decides."""
    processes = [subprocess.Popen(p.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in pods]
    readers = [
        threading.Thread(target=stream, args=(p, proc), daemon=True) for p, proc in zip(pods, processes, strict=True)
    ]
    for reader in readers:
        reader.start()
    deadline, failed = time.monotonic() + timeout, ""
    while any(proc.poll() is None for proc in processes):
        bad = [
            (p, proc.returncode) for p, proc in zip(pods, processes, strict=True) if proc.returncode not in (None, 0)
        ]
        if bad or time.monotonic() > deadline:
            failed = f"pod {bad[0][0].index} exited {bad[0][1]}" if bad else f"timed out after {timeout:.0f} s"
            break
        time.sleep(0.5)
    if failed:
        running = [p.name for p, proc in zip(pods, processes, strict=True) if proc.poll() is None]
        if running:
            subprocess.run([docker, "stop", "--time", str(STOP_GRACE_SECONDS), *running], capture_output=True)
    for proc in processes:
        proc.wait()
    for reader in readers:
        reader.join()
    codes = [proc.returncode for proc in processes]
    failed = failed or next((f"pod {i} exited {c}" for i, c in enumerate(codes) if c != 0), "")
    print(f"run_pods: exit codes {codes}" + (f"; failed: {failed}" if failed else ""), flush=True)
    return EXIT_FAILURE if failed else EXIT_OK


def parse_volume(text: str) -> tuple[str, Path]:
    mount, sep, directory = text.partition("=")
    if not sep or not mount.startswith("/") or not Path(directory).is_dir():
        raise argparse.ArgumentTypeError(f"--volume {text!r}: want MOUNT_PATH=EXISTING_HOST_DIR, e.g. /shared=./shared")
    return mount, Path(directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_pods.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("rendered", type=Path, help="`jobctl render -o json` output")
    parser.add_argument("--volume", type=parse_volume, action="append", default=[], help="MOUNT_PATH=HOST_DIR")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole job")
    parser.add_argument("--docker", default="docker", help="the docker client")
    args = parser.parse_args(argv)
    if shutil.which(args.docker) is None:
        print(f"run_pods: the docker client {args.docker!r} is not on PATH; pass --docker", file=sys.stderr)
        return EXIT_BAD_INPUT
    with tempfile.TemporaryDirectory(prefix="run-pods-") as scratch:
        Path(scratch).chmod(0o755)  # the containers' user reads the ConfigMap files
        try:
            pods = plan(load_objects(args.rendered), dict(args.volume), Path(scratch), args.docker)
        except BadInput as exc:
            print(f"run_pods: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (KeyError, TypeError, ValueError) as exc:
            print(f"run_pods: {args.rendered} is not a rendered Job as jobctl writes it ({exc!r})", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"run_pods: starting {len(pods)} pod(s)", flush=True)
        return run(pods, args.docker, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
