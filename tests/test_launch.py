"""The pod launcher (`python -m trainer.launch`) as a process, with a fake trainer.

These tests exercise the launcher's own logic: env validation, rendezvous between launcher processes on
loopback, the env each rank gets, output prefixes and per-rank logs, and the supervisor's exit codes. The trainer
is ``tests/launch_fake_trainer.py`` (selected with JOBCTL_TRAINER_MODULE), which prints lines, exits, hangs or
plays the MindSpore scheduler as its env tells it; the real trainer is covered by its own tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contract.env import EXIT_PERMANENT
from contract.ranktable import build_server, build_table
from contract.rendezvous import Fragment, Rendezvous
from launcher.main import read_env
from launcher.modes import LaunchError

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pod_env(
    tmp_path: Path, index: int = 0, pods: int = 1, config_text: str = "arch: resnext_tiny\n", **overrides: str
) -> dict[str, str]:
    config = tmp_path / "train.yaml"
    config.write_text(config_text)
    (tmp_path / "out").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "FAKE_", "MS_", "RANK_", "DEVICE_"))}
    env.update(
        JOBCTL_JOB_NAME="t",
        JOBCTL_PLATFORM="cpu",
        JOBCTL_LAUNCHER="msrun",
        JOBCTL_NUM_PODS=str(pods),
        JOBCTL_DEVICES_PER_POD="2",
        JOBCTL_MASTER_ADDR="127.0.0.1",
        JOBCTL_MASTER_PORT=overrides.pop("JOBCTL_MASTER_PORT", "") or str(free_port()),
        JOBCTL_JOB_DIR=str(tmp_path / "job"),
        JOBCTL_TRAIN_CONFIG=str(config),
        JOBCTL_DATA_DIR=str(tmp_path / "data"),
        JOBCTL_RENDEZVOUS_TIMEOUT="30",
        JOBCTL_STOP_GRACE="5",
        JOBCTL_TERMINATION_LOG=str(tmp_path / "termination-log"),  # never the host's /dev/termination-log
        JOBCTL_TRAINER_MODULE="launch_fake_trainer",
        JOB_COMPLETION_INDEX=str(index),
        POD_NAME=f"t-{index}",
        POD_IP="127.0.0.1",
        NODE_IP="127.0.0.1",
        PYTHONPATH=f"{TESTS}{os.pathsep}{REPO}",
        FAKE_OUT=str(tmp_path / "out"),
    )
    env.update(overrides)
    return env


class Launcher:
    """A launcher process whose merged stdout+stderr is collected line by line."""

    def __init__(self, env: dict[str, str], *args: str, module: str = "trainer.launch") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            assert self.proc.poll() is None or time.monotonic() < deadline, f"exited without {needle!r}:\n{self.text}"
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s:\n{self.text}"
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"launcher still running after {timeout} s:\n{self.text}") from None
        self.reader.join(5)
        return code


def run(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str]:
    launcher = Launcher(env, *args)
    return launcher.finish(timeout), launcher.text


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def seen_by(tmp_path: Path, rank: int) -> dict:
    return json.loads((tmp_path / "out" / f"rank-{rank}.json").read_text())


# --- input validation ---------------------------------------------------------------------------------------


def test_bad_env_exits_2_naming_every_problem(tmp_path) -> None:
    env = pod_env(tmp_path, JOBCTL_NUM_PODS="two", JOBCTL_PLATFORM="tpu")
    code, text = run(env)
    assert code == 2
    assert "JOBCTL_NUM_PODS='two' is not an integer" in text and "JOBCTL_PLATFORM='tpu' is not one of" in text
    assert not (tmp_path / "job").exists()  # nothing half written


def test_read_env_problems() -> None:
    with pytest.raises(LaunchError, match="JOBCTL_JOB_NAME is not set") as info:
        read_env({"JOBCTL_PLATFORM": "cpu", "JOBCTL_NUM_PODS": "2", "JOB_COMPLETION_INDEX": "2"})
    message = str(info.value)
    assert info.value.code == 2
    assert "JOB_COMPLETION_INDEX='2' must be between 0 and 1" in message
    assert "JOBCTL_DEVICES_PER_POD is not set" in message and "POD_IP is not set" in message
    with pytest.raises(LaunchError, match="ranktable needs JOBCTL_PLATFORM=ascend"):
        read_env({"JOBCTL_PLATFORM": "gpu", "JOBCTL_LAUNCHER": "ranktable"})


def test_bad_trainer_config_exits_2_before_starting_anything(tmp_path) -> None:
    env = pod_env(tmp_path)
    Path(env["JOBCTL_TRAIN_CONFIG"]).write_text("per_batch_size: 0\n")
    code, text = run(env)
    assert code == 2 and "per_batch_size" in text and "started" not in text
    env["JOBCTL_TRAINER_MODULE"] = "trainer.train"  # the real trainer's flags are checked too
    Path(env["JOBCTL_TRAIN_CONFIG"]).write_text("arch: resnext_tiny\n")
    code, text = run(env, "--", "--max_epoch", "0")
    assert code == 2 and "max_epoch" in text


# --- one pod: output, logs, exit codes ----------------------------------------------------------------------


def test_prefixed_output_rank_logs_and_rank_env(tmp_path) -> None:
    env = pod_env(tmp_path)
    code, text = run(env, "--", "--max_steps", "5")
    assert code == 0, text
    for rank in (0, 1):
        assert f"[rank {rank}] rank={rank} step=3/3" in text
        log = (tmp_path / "job" / "logs" / f"rank-{rank}.log").read_text()
        assert log.splitlines() == [f"rank={rank} step={s}/3" for s in (1, 2, 3)] + [f"rank {rank}: done"]
    assert "[sched] all workers finished" in text
    assert "all 2 local rank(s) finished" in (tmp_path / "job" / "logs" / "launcher-0.log").read_text()
    assert (tmp_path / "job" / "rendezvous" / "attempt-0" / "done-0").exists()
    seen = seen_by(tmp_path, 1)
    assert seen["env"] == {
        "RANK_ID": "1",
        "RANK_SIZE": "2",
        "MS_ROLE": "MS_WORKER",
        "MS_SCHED_HOST": "127.0.0.1",
        "MS_SCHED_PORT": env["JOBCTL_MASTER_PORT"],
        "MS_WORKER_NUM": "2",
        "MS_NODE_ID": "1",
        "MS_TOPO_TIMEOUT": "30",
        "JOBCTL_RESTARTS": "0",
        "JOBCTL_MAX_RESTARTS": "0",
        "JOBCTL_LAST_FAILURE": "",
        "JOBCTL_MEMBERS": "0",
    }  # no DEVICE_ID on CPU
    assert seen["argv"] == [
        "--config", env["JOBCTL_TRAIN_CONFIG"], "--data_dir", env["JOBCTL_DATA_DIR"],
        "--ckpt_path", str(tmp_path / "job" / "ckpt"), "--platform", "CPU", "--is_distributed", "--max_steps", "5",
    ]  # fmt: skip


@pytest.mark.parametrize(("rank_exit", "launcher_exit"), [(4, 76), (2, 2), (3, 3), (75, 76), (137, 76)])
def test_failing_rank_stops_the_others_at_once(tmp_path, rank_exit, launcher_exit) -> None:
    """No restarts allowed (JOBCTL_MAX_RESTARTS 0): the first failure fails the Job (76), bad input (2) and a
    permanent failure (3) with their own codes."""
    env = pod_env(tmp_path, FAKE_HANG="1", FAKE_HANG_RANK_1="0", FAKE_LINES_RANK_1="1", FAKE_EXIT=str(rank_exit))
    code, text = run(env)
    assert code == launcher_exit, text
    assert f"rank 1 exited with code {rank_exit}; stopping the other local processes at once" in text
    # Killed, not asked: a group that lost a member has nothing to save, and a rank stuck in a collective with
    # the dead peer would sit out the whole SIGTERM grace period.
    assert "[rank 0] rank 0: SIGTERM" not in text
    marker = tmp_path / "job" / "rendezvous" / "attempt-0" / "failed-0"
    assert marker.read_text().strip() == f"pod 0: rank 1 exited with code {rank_exit}"
    if launcher_exit == 76:
        assert "more than max_restarts=0 allows" in text


def test_a_peer_stuck_in_a_collective_is_killed_at_once(tmp_path) -> None:
    """Rank 0 hangs and ignores SIGTERM (as in a collective with a dead peer): no 30 s grace when the group broke."""
    env = pod_env(tmp_path, JOBCTL_STOP_GRACE="30", FAKE_HANG_RANK_0="1", FAKE_IGNORE_TERM_RANK_0="1", FAKE_EXIT="1")
    start = time.monotonic()
    code, text = run(env)
    assert code == 76, text
    assert "did not stop within" not in text and time.monotonic() - start < 20


def test_stall_timeout_kills_a_silent_group(tmp_path) -> None:
    env = pod_env(tmp_path, FAKE_HANG="1", FAKE_LINES="1", JOBCTL_STALL_TIMEOUT="2")
    start = time.monotonic()
    code, text = run(env)
    assert code == 76
    assert "no output from any local rank for 2 s (JOBCTL_STALL_TIMEOUT=2)" in text
    assert time.monotonic() - start < 15
    assert (tmp_path / "job" / "rendezvous" / "attempt-0" / "failed-0").exists()


def test_sigterm_is_forwarded_and_exits_143(tmp_path) -> None:
    launcher = Launcher(pod_env(tmp_path, FAKE_HANG="1"))
    launcher.wait_for("[rank 1] rank=1 step=3/3")
    launcher.wait_for("[rank 0] rank=0 step=3/3")
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.finish() == 143
    for rank in (0, 1):
        assert f"[rank {rank}] rank {rank}: SIGTERM, saving and stopping" in launcher.text
    assert "stopped by SIGTERM" in (tmp_path / "job" / "rendezvous" / "attempt-0" / "failed-0").read_text()


def test_ranks_stopped_by_a_peer_rejoin_in_place(tmp_path) -> None:
    code, text = run(pod_env(tmp_path, FAKE_EXIT_RESTART_0="143", JOBCTL_MAX_RESTARTS="1"))
    assert code == 0, text
    assert "a peer stopped the group" in text and "restarting the group in place" in text
    assert "attempt 1: all 1 pod(s) joined; world size 2; restart 1 of 1" in text


def test_a_failing_rank_restarts_the_group_in_place(tmp_path) -> None:
    """The pod stays: the launcher stops its ranks, meets the group in the next attempt and starts them again."""
    env = pod_env(tmp_path, FAKE_EXIT_RANK_1_RESTART_0="1", FAKE_LINES_RANK_1_RESTART_0="1", JOBCTL_MAX_RESTARTS="2")
    code, text = run(env)
    assert code == 0, text
    assert "rank 1 exited with code 1; stopping the other local processes at once" in text
    assert "attempt 0 ended (rank 1 exited with code 1); restarting the group in place" in text
    assert "attempt 1: all 1 pod(s) joined; world size 2; restart 1 of 2 after attempt 0: pod 0: rank 1" in text
    seen = seen_by(tmp_path, 1)["env"]  # the second start's view
    assert (seen["JOBCTL_RESTARTS"], seen["JOBCTL_MAX_RESTARTS"]) == ("1", "2")
    assert seen["JOBCTL_LAST_FAILURE"] == "attempt 0: pod 0: rank 1 exited with code 1"


def test_a_rank_failing_on_every_start_fails_the_job_with_each_reason(tmp_path) -> None:
    env = pod_env(tmp_path, FAKE_EXIT_RANK_1="4", FAKE_LINES_RANK_1="0", JOBCTL_MAX_RESTARTS="2")
    code, text = run(env)
    assert code == 76, text  # the rendered Job's podFailurePolicy fails the Job on it
    assert text.count("restarting the group in place") == 2
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith("the group failed 3 time(s), more than max_restarts=2 allows")
    for attempt in (0, 1, 2):
        assert f"attempt {attempt}: pod 0: rank 1 exited with code 4" in message


def test_a_permanent_failure_of_a_rank_fails_the_pod_at_once(tmp_path) -> None:
    """Issues 24.3/24.9: a full volume or a diverged loss (trainer exit 3) is not retried in place three times:
    the pod exits 3 at once (FailJob) and its termination message is the rank's one line."""
    env = pod_env(tmp_path, FAKE_EXIT_RANK_1=str(EXIT_PERMANENT), FAKE_LINES_RANK_1="0", JOBCTL_MAX_RESTARTS="2")
    code, text = run(env)
    assert code == EXIT_PERMANENT, text
    assert "restarting the group in place" not in text
    assert (tmp_path / "termination-log").read_text() == "rank 1 exited with code 3"


def test_a_full_shared_volume_fails_the_pod_for_good(tmp_path, tmpfs) -> None:
    """Issue 24.9: no room on the shared volume for the rendezvous: exit 3 (FailJob) with one error line, not a
    failure a replacement pod would retry."""
    volume = tmpfs("shared", "64k")
    (volume / "filler").write_bytes(b"\0" * (64 * 1024))  # the volume is full from the start
    code, text = run(pod_env(tmp_path, JOBCTL_JOB_DIR=str(volume / "jobs" / "t")))
    assert code == EXIT_PERMANENT, text
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    assert "Traceback" not in text and len(errors) == 1 and "no space left on" in errors[0], text
    assert "no space left on" in (tmp_path / "termination-log").read_text()


def test_peer_failure_marker_stops_the_ranks_and_rejoins(tmp_path) -> None:
    env = pod_env(tmp_path, pods=2, FAKE_HANG_RESTART_0="1", JOBCTL_DEVICES_PER_POD="1", JOBCTL_MAX_RESTARTS="1")
    peer = Rendezvous(tmp_path / "job", 1)
    launcher = Launcher(env)
    launcher.wait_for("joining the rendezvous")
    peer.meet(Fragment(1), 2, time.monotonic() + 20)
    launcher.wait_for("[rank 0] rank=0 step=3/3")
    peer.mark_failed("pod 1: rank 1 exited with code 1")
    launcher.wait_for("restarting the group in place")
    assert "pod(s) 1 marked attempt 0 failed: pod 1: rank 1 exited with code 1" in launcher.text
    launcher.wait_for("joining the rendezvous in", timeout=30)
    peer.meet(Fragment(1), 2, time.monotonic() + 20)  # the peer comes back too
    assert peer.attempt == 1
    launcher.wait_for("attempt 1: all 2 pod(s) joined")
    peer.mark_done()


# --- two pods -----------------------------------------------------------------------------------------------


def test_two_pods_dynamic_cluster(tmp_path) -> None:
    port = free_port()
    pod0 = Launcher(pod_env(tmp_path, 0, pods=2, JOBCTL_MASTER_PORT=str(port)))
    # Pod 1 finds the scheduler by name (DNS in a cluster) and waits for its port.
    pod1 = Launcher(pod_env(tmp_path, 1, pods=2, JOBCTL_MASTER_PORT=str(port), JOBCTL_MASTER_ADDR="localhost"))
    assert pod1.finish() == 0, pod1.text
    assert pod0.finish() == 0, pod0.text
    assert "[sched] all workers finished" in pod0.text  # the fake scheduler saw all 4 workers come and go
    assert f"scheduler localhost (127.0.0.1:{port}) answers" in pod1.text
    for rank in range(4):
        env = seen_by(tmp_path, rank)["env"]
        assert (env["RANK_ID"], env["MS_NODE_ID"], env["RANK_SIZE"], env["MS_WORKER_NUM"]) == (
            str(rank),
            str(rank),
            "4",
            "4",
        )
        assert env["MS_SCHED_HOST"] == "127.0.0.1"
    assert "[rank 3] rank=3 step=3/3" in pod1.text and "[rank 3]" not in pod0.text
    assert sorted(p.name for p in (tmp_path / "job" / "logs").iterdir()) == [
        "launcher-0.log", "launcher-1.log", "rank-0.log", "rank-1.log", "rank-2.log", "rank-3.log", "scheduler.log",
    ]  # fmt: skip


def test_two_pods_rank_table(tmp_path) -> None:
    annotation = {
        "pod_name": "t-0",
        "server_id": "10.0.0.11",
        "devices": [{"device_id": "5", "device_ip": "192.168.101.5"}, {"device_id": "4", "device_ip": "192.168.100.4"}],
    }
    annotations = tmp_path / "annotations"
    annotations.write_text(
        f'other="x"\nascend.kubectl.kubernetes.io/ascend-910-configuration={json.dumps(json.dumps(annotation))}\n'
    )
    hccn = tmp_path / "hccn.conf"
    hccn.write_text("".join(f"address_{d}=192.168.{100 + d}.12\nnetmask_{d}=255.255.255.0\n" for d in range(8)))
    common = {"JOBCTL_PLATFORM": "ascend", "JOBCTL_LAUNCHER": "ranktable", "JOBCTL_HCCN_CONF": str(hccn)}
    pod0 = Launcher(pod_env(tmp_path, 0, pods=2, JOBCTL_ANNOTATIONS_FILE=str(annotations), **common))
    pod1 = Launcher(
        pod_env(
            tmp_path,
            1,
            pods=2,
            JOBCTL_ANNOTATIONS_FILE=str(tmp_path / "none"),
            ASCEND_VISIBLE_DEVICES="6,7",
            NODE_IP="10.0.0.12",
            **common,
        )
    )
    assert pod0.finish() == 0, pod0.text
    assert pod1.finish() == 0, pod1.text
    seen = [seen_by(tmp_path, rank) for rank in range(4)]
    assert all(s["table"] == seen[0]["table"] for s in seen)
    assert [(s["server_id"], [(d["device_id"], d["device_ip"], d["rank_id"]) for d in s["device"]])
            for s in seen[0]["table"]["server_list"]] == [
        ("10.0.0.11", [("4", "192.168.100.4", "0"), ("5", "192.168.101.5", "1")]),
        ("10.0.0.12", [("6", "192.168.106.12", "2"), ("7", "192.168.107.12", "3")]),
    ]  # fmt: skip
    for rank, s in enumerate(seen):
        assert (s["env"]["RANK_ID"], s["env"]["RANK_SIZE"], s["env"]["DEVICE_ID"]) == (str(rank), "4", str(rank % 2))
        assert "MS_ROLE" not in s["env"]
        assert Path(s["env"]["RANK_TABLE_FILE"]).parent == tmp_path / "job" / "rendezvous" / "attempt-0"
        assert s["argv"][s["argv"].index("--platform") + 1] == "Ascend"


def test_ranktable_device_count_mismatch_exits_2(tmp_path) -> None:
    hccn = tmp_path / "hccn.conf"
    hccn.write_text("address_0=192.168.100.1\naddress_1=192.168.101.1\n")
    env = pod_env(
        tmp_path, JOBCTL_PLATFORM="ascend", JOBCTL_HCCN_CONF=str(hccn), JOBCTL_ANNOTATIONS_FILE=str(tmp_path / "x"),
        ASCEND_VISIBLE_DEVICES="0", JOBCTL_DEVICES_PER_POD="2", JOBCTL_LAUNCHER="ranktable",
    )  # fmt: skip
    code, text = run(env)
    assert code == 2 and "this pod has 1 Ascend device(s) (0) but JOBCTL_DEVICES_PER_POD=2" in text


def test_replacement_pod_moves_the_group_to_a_new_attempt(tmp_path) -> None:
    port = str(free_port())
    hang = {"FAKE_HANG_RESTART_0": "1", "JOBCTL_MASTER_PORT": port, "JOBCTL_DEVICES_PER_POD": "1"}
    hang["JOBCTL_MAX_RESTARTS"] = "1"
    pod0 = Launcher(pod_env(tmp_path, 0, pods=2, **hang))
    pod1 = Launcher(pod_env(tmp_path, 1, pods=2, **hang))
    pod1.wait_for("[rank 1] rank=1 step=3/3")
    old_rank = int(re.search(r"started rank 1 \(pid (\d+)\)", pod1.text).group(1))  # type: ignore[union-attr]
    pod1.proc.kill()  # pod 1 dies hard; its rank dies with it (PR_SET_PDEATHSIG)
    pod1.finish()
    finish = {"JOBCTL_MASTER_PORT": port, "JOBCTL_DEVICES_PER_POD": "1", "JOBCTL_MAX_RESTARTS": "1"}
    replacement = Launcher(pod_env(tmp_path, 1, pods=2, **finish))
    # Pod 0 stays: it sees the newer attempt, stops its rank and meets the replacement there, in place.
    assert pod0.finish() == 0, pod0.text
    assert "the group changed: a newer attempt 1 exists" in pod0.text
    assert not alive(old_rank)
    assert replacement.finish() == 0, replacement.text
    assert "attempt 1: all 2 pod(s) joined" in pod0.text and "attempt 1: all 2 pod(s) joined" in replacement.text
    assert "restart 1 of 1 after attempt 0: a pod was lost" in pod0.text


def test_controller_mode_waits_for_the_completed_table(tmp_path) -> None:
    table = tmp_path / "hccl.json"
    table.write_text('{"status": "initializing"}')
    env = pod_env(
        tmp_path,
        JOBCTL_PLATFORM="ascend",
        JOBCTL_LAUNCHER="controller",
        RANK_TABLE_FILE=str(table),
        NODE_IP="10.0.0.12",
    )
    launcher = Launcher(env)
    launcher.wait_for(f"waiting for the hccl-controller's rank table {table} (its status is not completed yet)")
    assert "started rank" not in launcher.text  # it read the unfinished table and waits for the controller
    servers = [build_server("10.0.0.12", {0: "192.168.100.12", 1: "192.168.101.12"})]
    table.write_text(build_table(servers).to_json())
    assert launcher.finish() == 0, launcher.text
    assert "this pod runs ranks [0, 1]" in launcher.text
    for rank in (0, 1):
        assert seen_by(tmp_path, rank)["env"]["RANK_TABLE_FILE"] == str(table)
        assert seen_by(tmp_path, rank)["env"]["DEVICE_ID"] == str(rank)


def test_real_trainer_two_pods_dynamic_cluster(tmp_path) -> None:
    """The real trainer (MindSpore CPU) on 2 pods x 1 device through the launcher: ~40 s on 2 shared cores."""
    pytest.importorskip("mindspore")
    data = tmp_path / "data"
    synth = ["synth", "--out", str(data), "--classes", "4", "--per_class", "16", "--size", "32"]
    subprocess.run(
        [sys.executable, "-m", "trainer.data", *synth],
        check=True,
        capture_output=True,
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
    )
    port = str(free_port())
    common = {
        "JOBCTL_TRAINER_MODULE": "trainer.train",
        "JOBCTL_DEVICES_PER_POD": "1",
        "JOBCTL_MASTER_PORT": port,
        "JOBCTL_DATA_DIR": str(data / "train"),
        "JOBCTL_RENDEZVOUS_TIMEOUT": "120",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    config = "arch: resnext_tiny\nimage_size: 32\nper_batch_size: 8\nmax_epoch: 1\nnum_parallel_workers: 1\n"
    envs = [pod_env(tmp_path, i, pods=2, config_text=config, **common) for i in (0, 1)]
    pods = [Launcher(env, "--", "--max_steps", "4") for env in envs]
    codes = [pod.finish(timeout=180) for pod in pods]
    assert codes == [0, 0], "\n".join(pod.text for pod in pods)
    assert re.search(r"^\[rank 0\] rank=0 epoch=1/1 step=4/4 loss=", pods[0].text, re.M)
    # Rank 1's progress lines stay in its log file: the merged views show one line per step, rank 0's.
    assert not re.search(r"^\[rank 1\] rank=1 epoch=", pods[1].text, re.M)
    rank_1_log = (tmp_path / "job" / "logs" / "rank-1.log").read_text()
    assert re.search(r"^rank=1 epoch=1/1 step=4/4 loss=", rank_1_log, re.M)
    assert json.loads((tmp_path / "job" / "ckpt" / "status.json").read_text())["state"] == "completed"


def test_rendezvous_timeout_names_the_missing_pod(tmp_path) -> None:
    code, text = run(pod_env(tmp_path, 0, pods=2, JOBCTL_RENDEZVOUS_TIMEOUT="1"))
    assert code == 76
    assert "attempt 0: pod(s) 1 did not join in time (have 0 of 2)" in text
    assert (tmp_path / "job" / "rendezvous" / "attempt-0" / "failed-0").exists()


def test_scheduler_that_never_answers_is_a_clear_failure(tmp_path) -> None:
    env = pod_env(tmp_path, 1, pods=2, JOBCTL_RENDEZVOUS_TIMEOUT="2", JOBCTL_DEVICES_PER_POD="1")
    Rendezvous(tmp_path / "job", 0).join(Fragment(0))  # pod 0 joined but its scheduler never listens
    code, text = run(env)
    assert code == 76
    assert f"the scheduler at 127.0.0.1:{env['JOBCTL_MASTER_PORT']} did not answer within" in text
    assert "no answer from 127.0.0.1" in text
