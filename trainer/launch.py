"""The pod entry point (``python -m trainer.launch [-- extra trainer args]``): rendezvous, start, supervise.

Inputs are env vars (docs/INTERFACES.md, "Pod contract"). The launcher meets its peers on the shared volume
(trainer.rendezvous), starts one trainer per device (plus the MindSpore scheduler on pod 0 in dynamic-cluster
mode; after building the HCCL rank table from the pods' fragments in rank-table mode; after Ascend's
hccl-controller has completed its table in controller mode), merges their output with ``[rank N] `` prefixes
into its stdout and ``<job_dir>/logs/rank-<N>.log``, and turns what happens to the group into an exit code:
0 all local ranks done, 2 bad input, 143 this pod got SIGTERM, 75 the group changed (rejoin), else a failure.

Pure Python (no MindSpore import): it must start fast and run where the trainer's import would fail.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

from trainer.config import ConfigError, build, load_file, parse_args
from trainer.ranktable import (
    RankTable,
    RankTableError,
    build_server,
    parse_device_range,
    parse_hccn_conf,
    read_device_annotation,
)
from trainer.rendezvous import Fragment, GroupCompleted, Rendezvous, RendezvousError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_GROUP_CHANGED, EXIT_TERMINATED = 0, 1, 2, 75, 143
PLATFORMS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}
# dyncluster: MindSpore scheduler + workers; ranktable: the pods build the HCCL table; controller: Ascend's
# hccl-controller writes it into a ConfigMap. "msrun" (jobctl's spec name for the dynamic cluster) is an alias.
LAUNCHERS = ("dyncluster", "ranktable", "controller")
RANK_TABLE_LAUNCHERS = ("ranktable", "controller")
CONTROLLER_TABLE = "/user/serverid/devindex/config/hccl.json"
DEFAULT_TRAINER = "trainer.train"
# Variables a trainer must only get from this launcher (stale values in the pod env would mislead MindSpore).
DISTRIBUTED_VARS = (
    "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM", "MS_NODE_ID", "MS_TOPO_TIMEOUT",
    "RANK_ID", "RANK_SIZE", "DEVICE_ID", "RANK_TABLE_FILE",
)  # fmt: skip
POLL_SECONDS = 0.2
T = TypeVar("T")
GROUP_CHECK_SECONDS = 1.0


class LaunchError(Exception):
    """Stops the launcher with ``code`` after printing the message (one paragraph)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --- the environment ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchEnv:
    job_name: str
    platform: str  # cpu | gpu | ascend
    launcher: str  # dyncluster | ranktable
    num_pods: int
    devices_per_pod: int
    master_addr: str
    master_port: int
    job_dir: Path
    train_config: Path
    data_dir: str
    val_dir: str | None
    rendezvous_timeout: float
    stall_timeout: float
    stop_grace: float
    pod_index: int
    pod_name: str
    pod_ip: str
    node_ip: str
    trainer_module: str
    annotations_file: Path
    hccn_conf: Path
    visible_devices: str | None
    controller_table: Path  # where Ascend's hccl-controller's ConfigMap puts hccl.json (controller mode)
    run_id: str  # the Job's uid: keys the rendezvous directory per submission

    @property
    def world_size(self) -> int:
        return self.num_pods * self.devices_per_pod

    def global_rank(self, local_index: int) -> int:
        return self.pod_index * self.devices_per_pod + local_index


class _EnvReader:
    """Collects every problem with the env so the message names them all at once."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None, hint: str = "") -> str:
        value = self.environ.get(name, "").strip()
        if value:
            return value
        if default is None:
            self.problems.append(f"{name} is not set{hint}")
            return ""
        return default

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self.text(name, default, f" (one of {', '.join(choices)})").lower()
        if value and value not in choices:
            self.problems.append(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def number(
        self, name: str, default: float | str | None, low: float, high: float = float("inf"), whole: bool = True
    ) -> Any:
        raw = self.text(name, None if default is None else str(default))
        if not raw:
            return low
        try:
            value = int(raw) if whole else float(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not {'an integer' if whole else 'a number'}")
            return low
        if not low <= value <= high:
            bounds = f">= {low:g}" if high == float("inf") else f"between {low:g} and {high:g}"
            self.problems.append(f"{name}={raw!r} must be {bounds}")
            return low
        return value


def read_env(environ: Mapping[str, str]) -> LaunchEnv:
    """The pod contract's env as a LaunchEnv, or a LaunchError(code 2) naming every missing or bad variable."""
    r = _EnvReader(environ)
    platform = r.choice("JOBCTL_PLATFORM", tuple(PLATFORMS))
    launcher = r.choice("JOBCTL_LAUNCHER", (*LAUNCHERS, "msrun"), "ranktable" if platform == "ascend" else "dyncluster")
    launcher = "dyncluster" if launcher == "msrun" else launcher
    if launcher in RANK_TABLE_LAUNCHERS and platform not in ("ascend", ""):
        r.problems.append(f"JOBCTL_LAUNCHER={launcher} needs JOBCTL_PLATFORM=ascend (got {platform}); use dyncluster")
    num_pods = r.number("JOBCTL_NUM_PODS", None, 1)
    index_default = "0" if num_pods == 1 else None
    pod_index = r.number("JOB_COMPLETION_INDEX", index_default, 0, max(num_pods - 1, 0))
    host = socket.gethostname()
    pod_ip = r.text("POD_IP", "" if launcher in RANK_TABLE_LAUNCHERS else None, " (downward API status.podIP)")
    node_ip = r.text("NODE_IP", pod_ip, " (downward API status.hostIP)")
    if launcher in RANK_TABLE_LAUNCHERS and not node_ip:
        r.problems.append("NODE_IP is not set (downward API status.hostIP); the rank table's server_id needs it")
    env = LaunchEnv(
        job_name=r.text("JOBCTL_JOB_NAME"),
        platform=platform,
        launcher=launcher,
        num_pods=num_pods,
        devices_per_pod=r.number("JOBCTL_DEVICES_PER_POD", None, 1),
        master_addr=r.text("JOBCTL_MASTER_ADDR", None if launcher == "dyncluster" else ""),
        master_port=r.number("JOBCTL_MASTER_PORT", 8118, 1, 65535),
        job_dir=Path(r.text("JOBCTL_JOB_DIR")),
        train_config=Path(r.text("JOBCTL_TRAIN_CONFIG")),
        data_dir=r.text("JOBCTL_DATA_DIR"),
        val_dir=r.text("JOBCTL_VAL_DIR", "") or None,
        rendezvous_timeout=r.number("JOBCTL_RENDEZVOUS_TIMEOUT", 600, 1, whole=False),
        stall_timeout=r.number("JOBCTL_STALL_TIMEOUT", 1800, 1, whole=False),
        stop_grace=r.number("JOBCTL_STOP_GRACE", 30, 0, whole=False),
        pod_index=pod_index,
        pod_name=r.text("POD_NAME", host),
        pod_ip=pod_ip,
        node_ip=node_ip,
        trainer_module=r.text("JOBCTL_TRAINER_MODULE", DEFAULT_TRAINER),
        annotations_file=Path(r.text("JOBCTL_ANNOTATIONS_FILE", "/etc/podinfo/annotations")),
        hccn_conf=Path(r.text("JOBCTL_HCCN_CONF", "/etc/hccn.conf")),
        visible_devices=r.text("ASCEND_VISIBLE_DEVICES", "") or None,
        controller_table=Path(r.text("RANK_TABLE_FILE", CONTROLLER_TABLE)),
        run_id=r.text("JOBCTL_RUN_ID", ""),
    )
    if r.problems:
        raise LaunchError(
            "the pod environment is incomplete: " + "; ".join(r.problems) + ". These variables come from the "
            "rendered Job (jobctl render) or the local backend; fix the spec or set them by hand.",
            EXIT_BAD_INPUT,
        )
    return env


def trainer_command(env: LaunchEnv, extra_args: Sequence[str]) -> list[str]:
    argv = [
        sys.executable, "-m", env.trainer_module,
        "--config", str(env.train_config),
        "--data_dir", env.data_dir,
        "--ckpt_path", str(env.job_dir / "ckpt"),
        "--platform", PLATFORMS[env.platform],
        "--is_distributed",
    ]  # fmt: skip
    if env.val_dir:
        argv += ["--val_dir", env.val_dir]
    return argv + list(extra_args)


def check_train_config(env: LaunchEnv, command: Sequence[str]) -> None:
    """Validate the trainer's config exactly as the trainer will see it, before anything starts."""
    try:
        if env.trainer_module == DEFAULT_TRAINER:
            parse_args(list(command[3:]), prog="trainer.train")
        else:  # another module (eval) has its own flags; the config file must still be a valid TrainConfig
            values = load_file(env.train_config)
            values.update(platform=PLATFORMS[env.platform], data_dir=env.data_dir, is_distributed=True)
            build(values, source=f"trainer config {env.train_config}")
    except ConfigError as exc:
        raise LaunchError(f"{exc} (JOBCTL_TRAIN_CONFIG={env.train_config})", EXIT_BAD_INPUT) from None
    except SystemExit as exc:  # argparse already printed what is wrong with the extra arguments
        raise LaunchError(f"bad trainer arguments after '--': {' '.join(command[3:])}", EXIT_BAD_INPUT) from exc


# --- output -------------------------------------------------------------------------------------------------


class Output:
    """Serialises prefixed lines onto stdout; copies each process's lines into its own log file."""

    def __init__(self, log_dir: Path, pod_index: int) -> None:
        self.log_dir = log_dir
        self.lock = threading.Lock()
        log_dir.mkdir(parents=True, exist_ok=True)
        # Open for the launcher's lifetime; the process exit closes it.
        self.launcher_log = open(log_dir / f"launcher-{pod_index}.log", "a", buffering=1)  # noqa: SIM115

    def emit(self, prefix: str, line: str, log: IO[str] | None) -> None:
        with self.lock:
            try:
                sys.stdout.write(f"{prefix}{line}\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # nobody reads our stdout any more; the log files still get everything
            if log is not None:
                log.write(line + "\n")

    def say(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.emit("[launcher] ", message, None)
        with self.lock:
            self.launcher_log.write(f"{stamp} {message}\n")


# --- local processes ----------------------------------------------------------------------------------------


def _die_with_launcher() -> None:
    """In the child: get SIGKILL if the launcher dies, so no orphaned trainer holds a port or a device."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a shell or container runtime reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class LocalProcess:
    """One trainer rank or the scheduler, with the thread that copies its output."""

    label: str  # "rank 3" or "sched"
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    is_rank: bool = True
    popen: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    log: IO[str] | None = field(default=None, repr=False)

    def poll(self) -> int | None:
        assert self.popen is not None
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)


class Supervisor:
    """Starts the local processes and turns what happens to them and to the group into an exit code."""

    def __init__(self, env: LaunchEnv, out: Output, rendezvous: Rendezvous, stop: StopSignal) -> None:
        self.env = env
        self.out = out
        self.rendezvous = rendezvous
        self.stop = stop
        self.procs: list[LocalProcess] = []
        self.last_output = time.monotonic()

    def start(self, procs: Sequence[LocalProcess]) -> None:
        """Spawn every process first, then the output threads (a fork with threads running is unsafe)."""
        for proc in procs:
            proc.log = open(proc.log_path, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
            proc.popen = subprocess.Popen(
                proc.argv,
                env=proc.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_launcher if sys.platform.startswith("linux") else None,
            )
            self.procs.append(proc)
            self.out.say(f"started {proc.label} (pid {proc.popen.pid}), log {proc.log_path}")
        self.last_output = time.monotonic()
        for proc in procs:
            proc.pump = threading.Thread(target=self._pump, args=(proc,), daemon=True)
            proc.pump.start()

    def _pump(self, proc: LocalProcess) -> None:
        assert proc.popen is not None and proc.popen.stdout is not None
        prefix = "[sched] " if not proc.is_rank else f"[{proc.label}] "
        for raw in proc.popen.stdout:
            if proc.is_rank:
                self.last_output = time.monotonic()
            self.out.emit(prefix, raw.decode("utf-8", "replace").rstrip("\r\n"), proc.log)

    @property
    def ranks(self) -> list[LocalProcess]:
        return [p for p in self.procs if p.is_rank]

    def run(self) -> int:
        next_group_check = time.monotonic() + GROUP_CHECK_SECONDS
        while True:
            if self.stop.count:
                return self._terminated()
            for proc in self.ranks:
                code = proc.poll()
                if code is not None and code != 0:
                    return self._rank_failed(proc, exit_code_of(code))
            if all(p.poll() == 0 for p in self.ranks):
                return self._completed()
            for proc in self.procs:
                if not proc.is_rank and (code := proc.poll()) is not None and code != 0:
                    return self._rank_failed(proc, exit_code_of(code))
            now = time.monotonic()
            if now >= next_group_check:
                next_group_check = now + GROUP_CHECK_SECONDS
                reason = self.rendezvous.group_failed()
                if reason:
                    self.out.say(f"the group changed: {reason}; stopping local ranks to rejoin")
                    self.stop_all()
                    return EXIT_GROUP_CHANGED
            idle = now - self.last_output
            if idle > self.env.stall_timeout:
                message = (
                    f"no output from any local rank for {idle:.0f} s "
                    f"(JOBCTL_STALL_TIMEOUT={self.env.stall_timeout:g}); a collective is probably hung "
                    "(a peer died or the network is cut); stopping the group"
                )
                self.out.say(message)
                self.stop_all()
                self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {message}")
                return EXIT_FAILURE
            time.sleep(POLL_SECONDS)

    def _rank_failed(self, proc: LocalProcess, code: int) -> int:
        if code == EXIT_TERMINATED and not self.stop.count:
            self.out.say(f"{proc.label} stopped (exit 143) without this pod being signalled: a peer stopped the group")
            self.stop_all()
            return EXIT_GROUP_CHANGED
        self.out.say(f"{proc.label} exited with code {code}; stopping the other local processes")
        self.stop_all()
        self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {proc.label} exited with code {code}")
        if code == EXIT_BAD_INPUT:
            return EXIT_BAD_INPUT
        return code if 0 < code < 256 and code not in (EXIT_GROUP_CHANGED, EXIT_TERMINATED) else EXIT_FAILURE

    def _completed(self) -> int:
        scheduler = [p for p in self.procs if not p.is_rank]
        # The scheduler exits once every worker, on every pod, has finalised; the peers may still be finishing.
        patience = self.env.rendezvous_timeout
        self._wait(scheduler, patience, interruptible=True)
        for proc in scheduler:
            if proc.poll() is None:
                self.out.say(f"{proc.label} still running {patience:g} s after the workers; stopping it")
        self._stop(scheduler)
        self.rendezvous.mark_done()
        self._flush()
        self.out.say(f"all {len(self.ranks)} local rank(s) finished")
        return EXIT_OK

    def _terminated(self) -> int:
        """SIGTERM: the trainers save and exit 143; a second signal kills them."""
        self.out.say("got SIGTERM: asking the local ranks to save and stop (a second signal kills them)")
        for proc in self.ranks:
            proc.signal(signal.SIGTERM)
        killed = False
        while any(p.poll() is None for p in self.ranks):
            if self.stop.count > 1 and not killed:
                self.out.say("second signal: killing the local ranks")
                for proc in self.ranks:
                    proc.signal(signal.SIGKILL)
                killed = True
            time.sleep(POLL_SECONDS)
        if all(p.poll() == 0 for p in self.ranks):
            return self._completed()  # they had finished anyway
        codes = {p.label: exit_code_of(p.poll() or 0) for p in self.ranks}
        self._stop([p for p in self.procs if not p.is_rank])
        self.rendezvous.mark_failed(f"pod {self.env.pod_index}: stopped by SIGTERM")
        self._flush()
        self.out.say(f"local ranks stopped: {codes}")
        return EXIT_TERMINATED

    def stop_all(self) -> None:
        """Ranks first (SIGTERM, then SIGKILL after the grace period), then the scheduler they may still need."""
        self._stop(self.ranks)
        self._stop([p for p in self.procs if not p.is_rank])
        self._flush()

    def _stop(self, procs: Sequence[LocalProcess]) -> None:
        for proc in procs:
            proc.signal(signal.SIGTERM)
        if not self._wait(procs, self.env.stop_grace):
            for proc in procs:
                if proc.poll() is None:
                    self.out.say(f"{proc.label} did not stop within {self.env.stop_grace:g} s; killing it")
                    proc.signal(signal.SIGKILL)
            self._wait(procs, 10.0)

    def _wait(self, procs: Sequence[LocalProcess], seconds: float, interruptible: bool = False) -> bool:
        """True when all have exited; False after ``seconds`` (or at a SIGTERM, if ``interruptible``)."""
        deadline = time.monotonic() + seconds
        while any(p.poll() is None for p in procs):
            if time.monotonic() >= deadline or (interruptible and self.stop.count):
                return False
            time.sleep(POLL_SECONDS / 2)
        return True

    def _flush(self) -> None:
        """Let the output threads copy what is left (bounded: a grandchild may hold the pipe open)."""
        for proc in self.procs:
            if proc.pump is not None:
                proc.pump.join(timeout=2.0)


class StopSignal:
    """Counts SIGTERM/SIGINT; the main loop acts on it (handlers only record)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1


# --- the launch modes ---------------------------------------------------------------------------------------


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARS}
    env["PYTHONUNBUFFERED"] = "1"  # line-by-line output: prefixes, log files and the stall timer rely on it
    # MindSpore's C++ log at its default level prints ~100 cluster warnings per rank, which buries the progress
    # lines in `kubectl logs`; errors only, unless the job's env asks for more (spec env GLOG_v=2).
    env.setdefault("GLOG_v", "3")
    env.update(extra)
    return env


def ascend_devices(env: LaunchEnv) -> tuple[str, list[dict[str, str]]]:
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
            # No 910 ring check: the device plugin chose these devices, and 910B servers have no such rule.
            server = build_server(env.node_ip, ips, visible, check_groups_910=False)
    except RankTableError as exc:
        raise LaunchError(str(exc), EXIT_BAD_INPUT) from None
    devices = [{"device_id": d.device_id, "device_ip": d.device_ip} for d in server.device]
    if len(devices) != env.devices_per_pod:
        raise LaunchError(
            f"this pod has {len(devices)} Ascend device(s) ({', '.join(d['device_id'] for d in devices)}) but "
            f"JOBCTL_DEVICES_PER_POD={env.devices_per_pod}; the device request and --devices must match",
            EXIT_BAD_INPUT,
        )
    return server.server_id, devices


def ranktable_processes(
    env: LaunchEnv, command: list[str], table_path: Path, ranks: Sequence[int] | None = None
) -> list[LocalProcess]:
    """One process per device: DEVICE_ID is the index inside the container, RANK_ID the table's rank."""
    procs = []
    for i in range(env.devices_per_pod):
        rank = env.global_rank(i) if ranks is None else ranks[i]
        extra = {
            "RANK_TABLE_FILE": str(table_path),
            "RANK_ID": str(rank),
            "RANK_SIZE": str(env.world_size),
            "DEVICE_ID": str(i),
        }
        procs.append(
            LocalProcess(f"rank {rank}", command, _child_env(extra), env.job_dir / "logs" / f"rank-{rank}.log")
        )
    return procs


def controller_ranks(env: LaunchEnv, deadline: float, stop: StopSignal) -> list[int]:
    """Wait for hccl-controller's table to be completed; this pod's ranks are those of its server (NODE_IP)."""
    path, problem = env.controller_table, ""
    while True:
        if stop.count:
            raise LaunchError("got SIGTERM while waiting for the hccl-controller's rank table", EXIT_TERMINATED)
        try:
            text = path.read_text()
            if json.loads(text).get("status") == "completed":
                table = RankTable.from_json(text, source=f"rank table {path}")
                break
            problem = "its status is not completed yet"
        except (OSError, ValueError, AttributeError) as exc:  # absent, half-synced or not an object yet
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"the hccl-controller's rank table {path} was not completed within JOBCTL_RENDEZVOUS_TIMEOUT="
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
            f"JOBCTL_NUM_PODS={env.num_pods} x JOBCTL_DEVICES_PER_POD={env.devices_per_pod}; the device requests "
            "and the table must agree",
            EXIT_BAD_INPUT,
        )
    return ranks


def dyncluster_processes(env: LaunchEnv, command: list[str], sched_host: str) -> list[LocalProcess]:
    common = {
        "MS_SCHED_HOST": sched_host,
        "MS_SCHED_PORT": str(env.master_port),
        "MS_WORKER_NUM": str(env.world_size),
        "MS_TOPO_TIMEOUT": str(int(env.rendezvous_timeout)),
        "RANK_SIZE": str(env.world_size),
    }
    procs = []
    if env.pod_index == 0:
        sched_env = _child_env({**common, "MS_ROLE": "MS_SCHED"})
        procs.append(LocalProcess("sched", command, sched_env, env.job_dir / "logs" / "scheduler.log", is_rank=False))
    for i in range(env.devices_per_pod):
        rank = env.global_rank(i)
        extra = {**common, "MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(rank), "RANK_ID": str(rank)}
        if env.platform != "cpu":
            extra["DEVICE_ID"] = str(i)
        procs.append(
            LocalProcess(f"rank {rank}", command, _child_env(extra), env.job_dir / "logs" / f"rank-{rank}.log")
        )
    return procs


def wait_for_scheduler(env: LaunchEnv, rendezvous: Rendezvous, stop: StopSignal, deadline: float) -> str:
    """Resolve JOBCTL_MASTER_ADDR (DNS may lag behind the pod) and wait until the scheduler port answers."""
    last_error = ""
    while True:
        if stop.count:
            raise LaunchError("got SIGTERM while waiting for the scheduler", EXIT_TERMINATED)
        reason = rendezvous.group_failed()
        if reason:
            raise LaunchError(f"the group changed while waiting for the scheduler: {reason}", EXIT_GROUP_CHANGED)
        try:
            ip = ""  # resolved on every try: a replaced pod 0 has a new IP, and DNS may lag behind it
            infos = socket.getaddrinfo(env.master_addr, env.master_port, socket.AF_INET, socket.SOCK_STREAM)
            ip = str(infos[0][4][0])
            with socket.create_connection((ip, env.master_port), timeout=2.0):
                return ip
        except OSError as exc:
            last_error = f"{'cannot resolve' if not ip else f'no answer from {ip}:{env.master_port}'}: {exc}"
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"the scheduler at {env.master_addr}:{env.master_port} did not answer within "
                f"JOBCTL_RENDEZVOUS_TIMEOUT={env.rendezvous_timeout:g} s ({last_error}); check pod 0's log and that "
                "the headless Service publishes not-ready addresses",
                EXIT_FAILURE,
            )
        time.sleep(0.5)


# --- main ---------------------------------------------------------------------------------------------------


def _split_argv(argv: Sequence[str]) -> list[str]:
    if not argv:
        return []
    if argv[0] == "--":
        return list(argv[1:])
    if argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(EXIT_OK)
    raise LaunchError(
        f"unexpected argument {argv[0]!r}; the launcher reads env vars (docs/INTERFACES.md) and passes anything "
        "after '--' to the trainer",
        EXIT_BAD_INPUT,
    )


def _marking_failures(rendezvous: Rendezvous, env: LaunchEnv, wait: Callable[[], T]) -> T:
    """Run a wait; if it fails or is stopped, tell the peers (a group change needs no marker: it is the news)."""
    try:
        return wait()
    except LaunchError as exc:
        if exc.code != EXIT_GROUP_CHANGED:
            rendezvous.mark_failed(f"pod {env.pod_index}: {exc}")
        raise


def launch(env: LaunchEnv, command: list[str], out: Output, stop: StopSignal) -> int:
    rendezvous = Rendezvous(env.job_dir, env.pod_index, run_id=env.run_id)
    deadline = time.monotonic() + env.rendezvous_timeout
    if env.launcher == "ranktable":
        server_id, devices = ascend_devices(env)  # before joining: a pod without devices must not hold the group
    else:
        server_id, devices = env.node_ip, [{"device_id": str(i)} for i in range(env.devices_per_pod)]
    fragment = Fragment(env.pod_index, env.pod_name, env.pod_ip, env.node_ip, server_id=server_id, devices=devices)
    out.say(f"pod {env.pod_index}/{env.num_pods} ({env.pod_name}) joining the rendezvous in {rendezvous.root}")
    try:
        fragments = rendezvous.meet(fragment, env.num_pods, deadline, should_stop=lambda: stop.count > 0)
    except GroupCompleted as exc:
        out.say(str(exc))
        return EXIT_OK
    except RendezvousError as exc:
        if stop.count:
            rendezvous.mark_failed(f"pod {env.pod_index}: stopped by SIGTERM during the rendezvous")
            return EXIT_TERMINATED
        rendezvous.mark_failed(f"pod {env.pod_index}: {exc}")
        raise LaunchError(str(exc)) from None
    out.say(f"attempt {rendezvous.attempt}: all {env.num_pods} pod(s) joined; world size {env.world_size}")

    supervisor = Supervisor(env, out, rendezvous, stop)
    if env.launcher == "ranktable":
        try:
            table_path, table = rendezvous.write_rank_table(fragments)
        except RankTableError as exc:
            rendezvous.mark_failed(f"pod {env.pod_index}: {exc}")
            raise LaunchError(f"cannot build the rank table: {exc}") from None
        out.say(f"rank table for {table.rank_size} device(s) on {table.server_count} server(s): {table_path}")
        supervisor.start(ranktable_processes(env, command, table_path))
    elif env.launcher == "controller":
        ranks = _marking_failures(rendezvous, env, lambda: controller_ranks(env, deadline, stop))
        out.say(f"hccl-controller's rank table {env.controller_table}: this pod runs ranks {ranks}")
        supervisor.start(ranktable_processes(env, command, env.controller_table, ranks))
    elif env.pod_index == 0:
        supervisor.start(dyncluster_processes(env, command, env.pod_ip))
    else:
        sched_ip = _marking_failures(rendezvous, env, lambda: wait_for_scheduler(env, rendezvous, stop, deadline))
        out.say(f"scheduler {env.master_addr} ({sched_ip}:{env.master_port}) answers")
        supervisor.start(dyncluster_processes(env, command, sched_ip))
    return supervisor.run()


def main(argv: Sequence[str] | None = None) -> int:
    stop = StopSignal()
    stop.install()
    try:
        extra = _split_argv(sys.argv[1:] if argv is None else argv)
        env = read_env(os.environ)
        command = trainer_command(env, extra)
        check_train_config(env, command)
        try:
            out = Output(env.job_dir / "logs", env.pod_index)
        except OSError as exc:
            raise LaunchError(
                f"cannot write logs under JOBCTL_JOB_DIR={env.job_dir}: {exc}; is the shared volume mounted?"
            ) from None
    except LaunchError as exc:
        print(f"[launcher] error: {exc}", file=sys.stderr, flush=True)
        return exc.code
    try:
        code = launch(env, command, out, stop)
    except LaunchError as exc:
        out.say(f"error: {exc}")
        code = exc.code
    out.say(f"exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
