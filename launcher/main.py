"""The pod entry point (``python -m trainer.launch [-- extra trainer args]``): rendezvous, start, supervise.

Inputs are env vars (contract.env; docs/INTERFACES.md, "Pod contract"). The launcher meets its peers
on the shared volume, starts one trainer per device (plus the MindSpore scheduler on pod 0 in msrun mode; after
building the HCCL rank table from the pods' fragments in ranktable mode; after Ascend's hccl-controller has
completed its table in controller mode), merges their output with ``[rank N] `` prefixes into its stdout and
``<job_dir>/logs/rank-<N>.log``, and turns what happens to the group into an exit code: 0 all local ranks done,
2 bad input, 143 this pod got SIGTERM, 75 the group changed (rejoin), else a failure. Why it failed goes to the
termination-message file, which Kubernetes shows in the pod's status (and jobctl status).

Pure Python (no MindSpore import): it must start fast and run where the trainer's import would fail.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from contract.config import ConfigError, build, load_file, parse_args
from contract.env import (
    COMPILE_CACHE_ENABLE,
    COMPILE_CACHE_PATH,
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_GROUP_CHANGED,
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_RESTARTS_SPENT,
    EXIT_TERMINATED,
    FAIL_JOB_EXIT_CODES,
    TRAINER_MODULE,
    ContractError,
    PodEnv,
    Var,
)
from contract.files import is_disk_full
from contract.group import Group, format_members
from contract.lines import format_joined
from contract.ranktable import RankTableError
from contract.rendezvous import (
    Fragment,
    GroupChanged,
    GroupCompleted,
    Rendezvous,
    RendezvousError,
    Standby,
)
from contract.restarts import RestartRecord, restart_record
from launcher.modes import (
    LaunchError,
    ascend_devices,
    controller_ranks,
    msrun_processes,
    ranktable_processes,
    wait_for_scheduler,
)
from launcher.output import Output
from launcher.recovery import Recovery, RecoveryError, local_snapshot, with_writer
from launcher.supervisor import PodSupervisor, StopSignal

T = TypeVar("T")
TERMINATION_MESSAGE_BYTES = 4096  # the kubelet keeps at most this much of the file


def read_env(environ: dict[str, str] | os._Environ[str]) -> PodEnv:
    try:
        env = PodEnv.from_environ(environ, hostname=socket.gethostname())
    except ContractError as exc:
        raise LaunchError(str(exc), EXIT_BAD_INPUT) from None
    if env.elastic and env.launcher == "controller":
        raise LaunchError(
            f"{Var.MIN_PODS}={env.min_pods} of {Var.NUM_PODS}={env.num_pods} makes an elastic job, but "
            f"{Var.LAUNCHER}=controller cannot resize its group (Ascend's hccl-controller builds one rank table for "
            "all the job's pods); use the ranktable launcher for an elastic Ascend job, or drop min_devices",
            EXIT_BAD_INPUT,
        )
    return env


def trainer_command(env: PodEnv, extra_args: Sequence[str]) -> list[str]:
    """The trainer's argv: the launch keys come from the pod env (never from train.yaml)."""
    argv = [
        sys.executable, "-m", env.trainer_module,
        "--config", str(env.train_config),
        "--data_dir", env.data_dir,
        "--ckpt_path", str(env.layout.ckpt_dir),
        "--platform", env.trainer_platform,
        "--is_distributed",
    ]  # fmt: skip
    if env.val_dir:
        argv += ["--val_dir", env.val_dir]
    return argv + list(extra_args)


def check_train_config(env: PodEnv, command: Sequence[str]) -> None:
    """Validate the trainer's config exactly as the trainer will see it, before anything starts."""
    try:
        if env.trainer_module == TRAINER_MODULE:
            parse_args(list(command[3:]), prog=TRAINER_MODULE)
        else:  # another module (eval) has its own flags; the config file must still be a valid TrainConfig
            values = load_file(env.train_config)
            values.update(platform=env.trainer_platform, data_dir=env.data_dir, is_distributed=True)
            build(values, source=f"trainer config {env.train_config}")
    except ConfigError as exc:
        raise LaunchError(f"{exc} ({Var.TRAIN_CONFIG}={env.train_config})", EXIT_BAD_INPUT) from None
    except SystemExit as exc:  # argparse already printed what is wrong with the extra arguments
        raise LaunchError(f"bad trainer arguments after '--': {' '.join(command[3:])}", EXIT_BAD_INPUT) from exc


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


def permanent_code(exc: OSError) -> int:
    """A full or read-only volume stays so for every replacement pod: EXIT_PERMANENT (FailJob), not a retry."""
    return EXIT_PERMANENT if is_disk_full(exc) or exc.errno == errno.EROFS else EXIT_FAILURE


def _marking_failures(rendezvous: Rendezvous, env: PodEnv, wait: Callable[[], T]) -> T:
    """Run a wait; if it fails or is stopped, tell the peers (a group change needs no marker: it is the news)."""
    try:
        return wait()
    except LaunchError as exc:
        if exc.code != EXIT_GROUP_CHANGED:
            rendezvous.mark_failed(f"pod {env.pod_index}: {exc}")
        raise


def _meet(env: PodEnv, rendezvous: Rendezvous, out: Output, stop: StopSignal) -> tuple[list[Fragment], Group, float]:
    """The members' fragments, the group and the attempt's deadline; a standby waits here for the next attempt."""
    if env.launcher == "ranktable":
        server_id, devices = ascend_devices(env)  # before joining: a pod without devices must not hold the group
    else:
        server_id, devices = env.node_ip, [{"device_id": str(i)} for i in range(env.devices_per_pod)]
    snapshot = local_snapshot(env.snapshot_dir, out.say)
    fragment = Fragment(
        env.pod_index, env.pod_name, env.pod_ip, env.node_ip, server_id=server_id, devices=devices, snapshot=snapshot
    )
    out.say(f"pod {env.pod_index}/{env.num_pods} ({env.pod_name}) joining the rendezvous in {rendezvous.root}")
    while True:
        deadline = time.monotonic() + env.rendezvous_timeout  # afresh after a standby's wait
        try:
            fragments = _meet_once(env, rendezvous, fragment, stop, deadline)
        except Standby as standby:
            _stand_by(env, rendezvous, out, stop, standby)
            continue
        members = tuple(f.pod_index for f in fragments)
        return fragments, Group(members, env.num_pods, env.devices_per_pod), deadline


def _meet_once(
    env: PodEnv, rendezvous: Rendezvous, fragment: Fragment, stop: StopSignal, deadline: float
) -> list[Fragment]:
    should_stop = lambda: stop.count > 0  # noqa: E731
    try:
        if env.elastic:
            return rendezvous.meet_members(
                fragment, env.num_pods, env.fewest_pods, env.shrink_after, deadline, should_stop, env.devices_per_pod
            )
        return rendezvous.meet(fragment, env.num_pods, deadline, should_stop=should_stop)
    except GroupCompleted:
        raise
    except OSError as exc:  # a full or read-only shared volume: no attempt can be joined from this pod
        raise LaunchError(
            f"cannot join the rendezvous in {rendezvous.root}: {exc.strerror or exc}; free space on the shared "
            "volume (old checkpoints, compile-cache/) or give the job a larger one",
            permanent_code(exc),
            in_place=False,
        ) from None
    except RendezvousError as exc:
        if stop.count:
            rendezvous.mark_failed(f"pod {env.pod_index}: stopped by SIGTERM during the rendezvous")
            raise LaunchError("stopped by SIGTERM during the rendezvous", EXIT_TERMINATED) from None
        rendezvous.mark_failed(f"pod {env.pod_index}: {exc}")
        raise LaunchError(str(exc)) from None


def _stand_by(env: PodEnv, rendezvous: Rendezvous, out: Output, stop: StopSignal, standby: Standby) -> None:
    """Wait without a deadline while the members train; return to join the next attempt. The fragment stays in the
    attempt: it is this pod's request to come back (the members grow at their next step boundary)."""
    out.say(
        f"pod {env.pod_index}: the group trains without this pod (members {format_members(standby.members)}); "
        "waiting to join at its next step boundary"
    )
    try:
        rendezvous.wait_as_standby(should_stop=lambda: stop.count > 0)
    except GroupChanged as exc:
        out.say(f"attempt {standby.attempt} is over ({exc}); joining the next one")
    except GroupCompleted:
        raise
    except RendezvousError:  # stopped: a standby marks nothing (the members train on) and withdraws its request
        rendezvous.withdraw()
        raise LaunchError("stopped by SIGTERM while waiting as a standby", EXIT_TERMINATED) from None


def _start(
    env: PodEnv,
    supervisor: PodSupervisor,
    command: list[str],
    fragments: list[Fragment],
    deadline: float,
    record: RestartRecord,
) -> None:
    """Recover, then start this pod's processes as its launch mode wants; ``fragments``: the members' only."""
    rendezvous, out, stop, group = supervisor.rendezvous, supervisor.out, supervisor.stop, supervisor.group
    recovery = Recovery(env, rendezvous, out.say, should_stop=lambda: stop.count > 0)
    resume = _marking_failures(rendezvous, env, lambda: _recover(recovery, fragments, deadline))
    attempt = {**record.trainer_env(env), **_compile_cache_env(env), **resume, **group.to_env()}
    if env.launcher == "ranktable":
        try:
            table_path, table = rendezvous.write_rank_table(fragments)
        except RankTableError as exc:
            rendezvous.mark_failed(f"pod {env.pod_index}: {exc}")
            raise LaunchError(f"cannot build the rank table: {exc}") from None
        out.say(f"rank table for {table.rank_size} device(s) on {table.server_count} server(s): {table_path}")
        supervisor.start(with_writer(env, ranktable_processes(env, command, table_path, attempt, group=group)))
    elif env.launcher == "controller":
        ranks = _marking_failures(rendezvous, env, lambda: controller_ranks(env, deadline, stop, out.say))
        out.say(f"hccl-controller's rank table {env.controller_table}: this pod runs ranks {ranks}")
        supervisor.start(with_writer(env, ranktable_processes(env, command, env.controller_table, attempt, ranks)))
    elif env.pod_index == group.first:
        supervisor.start(with_writer(env, msrun_processes(env, command, env.pod_ip, attempt, group)))
    else:
        # The master address names pod 0; a group without it reaches its first member by that pod's IP.
        host = env.master_addr if group.first == 0 else fragments[0].pod_ip
        sched_ip = _marking_failures(rendezvous, env, lambda: wait_for_scheduler(env, rendezvous, stop, deadline, host))
        out.say(f"scheduler {host} ({sched_ip}:{env.master_port}) answers")
        supervisor.start(with_writer(env, msrun_processes(env, command, sched_ip, attempt, group)))


def _recover(recovery: Recovery, fragments: list[Fragment], deadline: float) -> dict[str, str]:
    try:
        return recovery.prepare(fragments, deadline)
    except RecoveryError as exc:
        raise LaunchError(str(exc), exc.code) from None
    except OSError as exc:  # the survivor's copy cannot be written or read: the shared volume
        raise LaunchError(f"cannot pass a survivor's snapshot through the shared volume: {exc}") from None


def _compile_cache_env(env: PodEnv) -> dict[str, str]:
    """MindSpore's graph cache on the shared volume, for restarts and resubmissions; each trainer scopes it to its
    graph (trainer.compile_cache). A job's own MS_COMPILER_CACHE_* env (spec env) wins."""
    if COMPILE_CACHE_ENABLE in os.environ:
        return {}
    return {COMPILE_CACHE_ENABLE: "1", COMPILE_CACHE_PATH: str(env.layout.compile_cache_dir)}


def launch(env: PodEnv, rendezvous: Rendezvous, command: list[str], out: Output, stop: StopSignal) -> tuple[int, str]:
    """One attempt, (exit code, reason): meet the group, start this pod's processes, supervise them."""
    try:
        fragments, group, deadline = _meet(env, rendezvous, out, stop)
    except GroupCompleted as exc:
        out.say(str(exc))
        return EXIT_OK, ""
    assert rendezvous.attempt is not None
    record = restart_record(rendezvous, rendezvous.attempt)
    if record.spent(env):  # every pod of this attempt reads the same record and gives up with it
        return EXIT_RESTARTS_SPENT, record.spent_message(env)
    joined = format_joined(
        rendezvous.attempt, env.num_pods, group.world_size, record.count, env.max_restarts, record.last, group.members
    )
    out.say(joined)
    supervisor = PodSupervisor(env, out, rendezvous, stop, group)
    with supervisor.heartbeat:  # from now until the attempt ends: the peers watch it
        _start(env, supervisor, command, fragments, deadline, record)
        code = supervisor.run()
    return code, supervisor.reason


def run_attempts(env: PodEnv, command: list[str], out: Output, stop: StopSignal) -> tuple[int, str]:
    """Attempts in this pod until the job completes, fails for good, or this pod is stopped.

    A failed attempt (a local rank died, a peer failed, the group hung) restarts in place: this pod's launcher
    stays, stops its processes at once and meets the group again in the next attempt, within the restart budget.
    """
    rendezvous = Rendezvous(env.job_dir, env.pod_index, run_id=env.run_id)
    while True:
        try:
            code, reason = launch(env, rendezvous, command, out, stop)
        except LaunchError as exc:
            code, reason = exc.code, f"error: {exc}"
            out.say(reason)
            if not exc.in_place:
                return code, reason
        if code in (EXIT_OK, EXIT_TERMINATED, *FAIL_JOB_EXIT_CODES) or rendezvous.attempt is None:
            return code, reason
        if stop.count:
            return EXIT_TERMINATED, "stopped by SIGTERM"
        record = restart_record(rendezvous, rendezvous.attempt + 1)
        if record.spent(env):
            return EXIT_RESTARTS_SPENT, record.spent_message(env, here=reason)
        out.say(f"attempt {rendezvous.attempt} ended ({reason}); restarting the group in place")


def write_termination_message(env: PodEnv | None, reason: str) -> None:
    """Kubernetes shows this file's text as the container's termination message (kubectl describe, jobctl status)."""
    path = env.termination_log if env is not None else None  # rendered pods name Kubernetes' file
    if path is None or not reason:
        return
    with contextlib.suppress(OSError):
        path.write_bytes(reason.encode("utf-8", "replace")[:TERMINATION_MESSAGE_BYTES])


def main(argv: Sequence[str] | None = None) -> int:
    stop = StopSignal()
    stop.install()
    env: PodEnv | None = None
    try:
        extra = _split_argv(sys.argv[1:] if argv is None else argv)
        env = read_env(os.environ)
        command = trainer_command(env, extra)
        check_train_config(env, command)
        try:
            out = Output(env.layout, env.pod_index)
        except OSError as exc:
            raise LaunchError(
                f"cannot write logs under {Var.JOB_DIR}={env.job_dir}: {exc}; is the shared volume mounted?",
                permanent_code(exc),
            ) from None
    except LaunchError as exc:
        print(f"[launcher] error: {exc}", file=sys.stderr, flush=True)
        write_termination_message(env, f"error: {exc}")
        return exc.code
    code, reason = run_attempts(env, command, out, stop)
    if code == EXIT_RESTARTS_SPENT:
        out.say(f"error: {reason}")
    write_termination_message(env, reason)
    out.say(f"exit {code}")
    return code
