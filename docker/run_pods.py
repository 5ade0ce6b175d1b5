"""Run a rendered Indexed Job's pods as local Docker containers, the way the kubelet would, over loopback.

    python docker/run_pods.py RENDERED.json --volume /shared=DIR --volume /data=DIR [--timeout S] [--docker BIN]

RENDERED.json is `jobctl render -o json` output (a list of objects, or a List). This is the containers runner of
the one interpreter of a rendered pod (jobctl.backends.local.interpreter, which the local backend's processes runner
shares): every pod index becomes one `docker run --network host` with the interpreted command, env and mounts
(ConfigMap and downward-API files, a `--volume` path's host directory, else a hostPath's own path); Memory emptyDirs
become tmpfs / --shm-size. Pod 0's address (JOBCTL_MASTER_ADDR) is 127.0.0.1, and the scheduler port is replaced
by a free one, since other jobs on a shared machine may hold the fixed port. All pods run at once; when one fails
the others are stopped.
Exit 0 when every pod exited 0, 1 when a pod failed or timed out, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The contract and the interpreter are pure standard library: importable from the checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from contract.env import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, Var
from jobctl.backends.base import BackendError
from jobctl.backends.local.interpreter import LOCALHOST, Mount, Volumes, interpret

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


def bytes_of(quantity: str) -> int:
    match = _QUANTITY.match(str(quantity))
    if not match:
        raise BadInput(f"emptyDir sizeLimit {quantity!r} is not a plain Kubernetes quantity such as 1Gi")
    return int(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def mount_args(mounts: list[Mount]) -> list[str]:
    """docker run flags for the interpreted volumeMounts."""
    args: list[str] = []
    for mount in mounts:
        if mount.source is None:  # an emptyDir: Docker's own
            empty = mount.empty_dir or {}
            if mount.path == "/dev/shm":
                args += [f"--shm-size={bytes_of(empty['sizeLimit'])}"] if empty.get("sizeLimit") else []
            else:
                args += ["--tmpfs", mount.path] if empty.get("medium") == "Memory" else ["--volume", mount.path]
            continue
        ro = ",readonly" if mount.read_only else ""
        args += ["--mount", f"type=bind,source={mount.source.resolve()},target={mount.path}{ro}"]
    return args


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
    return args


def plan(objects: list[dict[str, Any]], host_dirs: dict[str, Path], scratch: Path, docker: str) -> list[Pod]:
    """One `docker run` argv per pod index of the rendered Indexed Job."""
    pods = interpret(objects, Volumes(scratch=scratch, host_dirs=host_dirs))
    template = pods[0].template
    shared = mount_args(pods[0].mounts) + security_args(template)
    if pods[0].working_dir:
        shared += ["--workdir", pods[0].working_dir]
    port = str(free_port())
    planned = []
    for pod in pods:
        env = {**pod.env, Var.MASTER_ADDR: LOCALHOST}
        if Var.MASTER_PORT in env:
            env[Var.MASTER_PORT] = port
        container_name = f"{pod.name}-{time.time_ns() % 10**9}"
        argv = [docker, "run", "--rm", "--name", container_name, "--network", "host", "--hostname", pod.name]
        argv += [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        argv += [*shared, "--entrypoint", pod.command[0], pod.image, *pod.command[1:]]
        planned.append(Pod(pod.index, container_name, argv))
    return planned


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
        except (BadInput, BackendError) as exc:
            print(f"run_pods: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (KeyError, TypeError, ValueError) as exc:
            print(f"run_pods: {args.rendered} is not a rendered Job as jobctl writes it ({exc!r})", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"run_pods: starting {len(pods)} pod(s)", flush=True)
        return run(pods, args.docker, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
