"""What each launch mode needs before the trainers start, and the processes it starts.

msrun: MindSpore's dynamic cluster (the group's first member runs the scheduler; the others wait until its port
answers).
ranktable: every member builds the same HCCL rank table from the members' fragments.
Ranks come from the attempt's group (contract.group): a pod's position among the members, not its index.
controller: Ascend's hccl-controller writes the table into a ConfigMap; this pod runs the ranks of its server.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from contract.env import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_GROUP_CHANGED, EXIT_TERMINATED, PodEnv, Var
from contract.group import Group
from contract.lines import SCHEDULER_LABEL, rank_label
from contract.ranktable import (
    RankTable,
    RankTableError,
    build_server,
    fragment_devices,
    parse_device_range,
    parse_hccn_conf,
    read_device_annotation,
)
from contract.rendezvous import Rendezvous
from launcher.processes import LocalProcess, child_env
from launcher.supervisor import StopSignal


class LaunchError(Exception):
    """Stops the launcher with ``code`` after printing the message (one paragraph)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE, in_place: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.in_place = in_place  # False: restarting in this pod cannot help (its view of the shared volume)


def _rank_process(
    env: PodEnv, command: list[str], rank: int, extra: dict[str, str], attempt: Mapping[str, str]
) -> LocalProcess:
    return LocalProcess(
        rank_label(rank), command, child_env({**attempt, **extra}), env.layout.rank_log(rank), rank=rank
    )


# --- rank tables (ranktable, controller) --------------------------------------------------------------------


def ascend_devices(env: PodEnv) -> tuple[str, list[dict[str, str]]]:
    """(server_id, devices with their NPU IPs): the device plugin's annotation, else hccn.conf + visible devices."""
    try:
        server = read_device_annotation(env.annotations_file, fallback_server_id=env.node_ip)
        if server is None:
            try:
                text = env.hccn_conf.read_text()
            except OSError as exc:
                raise LaunchError(
                    f"no device-plugin annotation in {env.annotations_file} and cannot read {env.hccn_conf} "
                    f"({exc.strerror}); mount the downward-API annotations volume or the host's /etc/hccn.conf",
                    EXIT_BAD_INPUT,
                ) from None
            ips = parse_hccn_conf(text, str(env.hccn_conf))
            visible = (
                parse_device_range(env.visible_devices) if env.visible_devices else list(range(env.devices_per_pod))
            )
            # No device-set rule: the device plugin chose these devices.
            server = build_server(env.node_ip, ips, visible)
    except RankTableError as exc:
        raise LaunchError(str(exc), EXIT_BAD_INPUT) from None
    devices = fragment_devices(server)  # with an A3 server's super pod and super-device ids
    if len(devices) != env.devices_per_pod:
        raise LaunchError(
            f"this pod has {len(devices)} Ascend device(s) ({', '.join(d['device_id'] for d in devices)}) but "
            f"{Var.DEVICES_PER_POD}={env.devices_per_pod}; the device request and --devices must match",
            EXIT_BAD_INPUT,
        )
    return server.server_id, devices


def ranktable_processes(
    env: PodEnv,
    command: list[str],
    table_path: Path,
    attempt: Mapping[str, str],
    ranks: Sequence[int] | None = None,
    group: Group | None = None,
) -> list[LocalProcess]:
    """One process per device: DEVICE_ID is the index inside the container, RANK_ID the table's rank (given by the
    controller's table, else from the group)."""
    group = group or Group.full(env.num_pods, env.devices_per_pod)
    procs = []
    for i in range(env.devices_per_pod):
        rank = group.rank(env.pod_index, i) if ranks is None else ranks[i]
        extra = {
            Var.RANK_TABLE_FILE: str(table_path),
            "RANK_ID": str(rank),
            "RANK_SIZE": str(group.world_size if ranks is None else env.world_size),
            "DEVICE_ID": str(i),
        }
        procs.append(_rank_process(env, command, rank, extra, attempt))
    return procs


def _read_controller_table(path: Path) -> tuple[RankTable | None, str]:
    try:
        text = path.read_text()
        completed = json.loads(text).get("status") == "completed"
    except (OSError, ValueError, AttributeError) as exc:  # absent, half-synced or not an object yet
        return None, str(exc)
    if not completed:
        return None, "its status is not completed yet"
    try:
        return RankTable.from_json(text, source=f"rank table {path}"), ""
    except RankTableError as exc:  # a completed table HCCL would refuse: waiting cannot help
        raise LaunchError(
            f"{exc}; the table was written by the Ascend operator / hccl-controller", EXIT_BAD_INPUT
        ) from None


def controller_ranks(env: PodEnv, deadline: float, stop: StopSignal, say: Callable[[str], None]) -> list[int]:
    """Wait for hccl-controller's table to be completed; this pod's ranks are those of its server (NODE_IP)."""
    path, said = env.controller_table, False
    while True:
        if stop.count:
            raise LaunchError("got SIGTERM while waiting for the hccl-controller's rank table", EXIT_TERMINATED)
        table, problem = _read_controller_table(path)
        if table is not None:
            break
        if not said:
            say(f"waiting for the hccl-controller's rank table {path} ({problem})")
            said = True
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"the hccl-controller's rank table {path} was not completed within {Var.RENDEZVOUS_TIMEOUT}="
                f"{env.rendezvous_timeout:g} s ({problem}); check that the controller runs and that the Job, pod "
                "template and rings-config ConfigMap carry the ring-controller.atlas label"
            )
        time.sleep(1.0)
    servers = [s for s in table.server_list if s.server_id == env.node_ip or getattr(s, "host_ip", None) == env.node_ip]
    if len(servers) != 1:
        raise LaunchError(
            f"rank table {path} has {len(servers)} server(s) with server_id {env.node_ip} (this pod's NODE_IP); "
            "expected exactly one (two pods of the job on one node? add podAntiAffinity)"
        )
    ranks = [int(d.rank_id) for d in servers[0].device]
    if len(ranks) != env.devices_per_pod or table.rank_size != env.world_size:
        raise LaunchError(
            f"rank table {path} has {table.rank_size} device(s), {len(ranks)} on this server, but the job has "
            f"{Var.NUM_PODS}={env.num_pods} x {Var.DEVICES_PER_POD}={env.devices_per_pod}; the device requests "
            "and the table must agree",
            EXIT_BAD_INPUT,
        )
    return ranks


# --- dynamic cluster (msrun) --------------------------------------------------------------------------------


def msrun_processes(
    env: PodEnv, command: list[str], sched_host: str, attempt: Mapping[str, str], group: Group | None = None
) -> list[LocalProcess]:
    """The group's first member runs the scheduler too; every rank is numbered by its pod's place in the group."""
    group = group or Group.full(env.num_pods, env.devices_per_pod)
    common = {
        "MS_SCHED_HOST": sched_host,
        "MS_SCHED_PORT": str(env.master_port),
        "MS_WORKER_NUM": str(group.world_size),
        "MS_TOPO_TIMEOUT": str(int(env.rendezvous_timeout)),
        "RANK_SIZE": str(group.world_size),
    }
    procs = []
    if env.pod_index == group.first:
        sched_env = child_env({**common, "MS_ROLE": "MS_SCHED"})
        procs.append(LocalProcess(SCHEDULER_LABEL, command, sched_env, env.layout.scheduler_log, is_rank=False))
    for i in range(env.devices_per_pod):
        rank = group.rank(env.pod_index, i)
        extra = {**common, "MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(rank), "RANK_ID": str(rank)}
        if env.family != "cpu":
            extra["DEVICE_ID"] = str(i)
        procs.append(_rank_process(env, command, rank, extra, attempt))
    return procs


def wait_for_scheduler(
    env: PodEnv, rendezvous: Rendezvous, stop: StopSignal, deadline: float, host: str | None = None
) -> str:
    """Resolve the scheduler's host (the master address by default; DNS may lag behind the pod) and wait until the
    scheduler port answers. ``host``: the first member's pod IP when the first member is not pod 0 (the master
    address names pod 0)."""
    host = host or env.master_addr
    last_error = ""
    while True:
        if stop.count:
            raise LaunchError("got SIGTERM while waiting for the scheduler", EXIT_TERMINATED)
        reason = rendezvous.group_failed()
        if reason:
            raise LaunchError(f"the group changed while waiting for the scheduler: {reason}", EXIT_GROUP_CHANGED)
        ip = ""  # resolved on every try: a replaced pod 0 has a new IP, and DNS may lag behind it
        try:
            infos = socket.getaddrinfo(host, env.master_port, socket.AF_INET, socket.SOCK_STREAM)
            ip = str(infos[0][4][0])
            with socket.create_connection((ip, env.master_port), timeout=2.0):
                return ip
        except OSError as exc:
            last_error = f"{'cannot resolve' if not ip else f'no answer from {ip}:{env.master_port}'}: {exc}"
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"the scheduler at {host}:{env.master_port} did not answer within "
                f"{Var.RENDEZVOUS_TIMEOUT}={env.rendezvous_timeout:g} s ({last_error}); check the first member's log "
                "and that the headless Service publishes not-ready addresses",
                EXIT_FAILURE,
            )
        time.sleep(0.5)
