"""trainer.train end to end on CPU with resnext_tiny: learning, 2 workers, kill -9, SIGTERM, corrupt checkpoints,
bad input. Each test starts real trainer processes on a small generated dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.progress import parse_progress, read_status

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 10 classes x 40 images at 64 px, trained at 32 px: 25 steps of 16 per epoch on one process.
COMMON = ["--platform", "cpu", "--arch", "resnext_tiny", "--image_size", "32", "--per_batch_size", "16"]
COMMON += ["--num_parallel_workers", "1", "--lr", "0.1", "--log_interval", "5"]
STEPS_PER_EPOCH = 25


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def train_args(data: Path, ckpt: Path, script: str | None = None) -> list[str]:
    """``python -m trainer.train``, or ``python -c script`` (one that ends by calling trainer.train's main)."""
    program = ["-m", "trainer.train"] if script is None else ["-c", script]
    return [sys.executable, *program, "--data_dir", str(data / "train"), "--ckpt_path", str(ckpt)]


def run(data: Path, ckpt: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [*train_args(data, ckpt), *COMMON, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


def start(data: Path, ckpt: Path, *extra: str, script: str | None = None, **extra_env: str) -> subprocess.Popen[str]:
    cmd = [*train_args(data, ckpt, script), *COMMON, *extra]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env(**extra_env),
        start_new_session=True,  # its own process group: kill -9 reaches the dataset workers too
    )


def wait_for_checkpoint(ckpt: Path, proc: subprocess.Popen[str], timeout: float = 90) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(ckpt.glob("resnext_tiny-*_*.ckpt"))
        if found:
            return found[0]
        assert proc.poll() is None, f"trainer ended before its first checkpoint: {proc.communicate()[0][-3000:]}"
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def resumed_step(output: str) -> int | None:
    match = re.search(r"resuming from \S+ at step (\d+)", output)
    return int(match[1]) if match else None


def last_progress(output: str) -> dict[str, object]:
    lines = [p for p in map(parse_progress, output.splitlines()) if p]
    assert lines, output[-3000:]
    return lines[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    ckpt = tmp_path_factory.mktemp("run") / "ckpt"
    args = ("--val_dir", str(data / "val"), "--max_epoch", "4", "--T_max", "4", "--keep_checkpoint_max", "3")
    return ckpt, run(data, ckpt, *args)


def test_learns_generated_data(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    ckpt, result = trained
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    status = read_status(ckpt / "status.json")
    assert status is not None and status["state"] == "completed"
    assert status["step"] == status["total_steps"] == 4 * STEPS_PER_EPOCH
    assert status["best"]["top1"] >= 0.3, status  # 3x chance on 10 classes
    assert status["img_per_sec"] > 0 and status["rank_size"] == 1
    assert status["restarts"] == {"count": 0, "max": None, "last": None}  # not started by a launcher
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == [
        "best.ckpt",
        "metrics.jsonl",  # run by hand (no JOBCTL_JOB_DIR): the history sits next to status.json
        "resnext_tiny-2_50.ckpt",
        "resnext_tiny-3_75.ckpt",
        "resnext_tiny-4_100.ckpt",
        "status.json",
        "tensorboard",
    ]
    tops = [float(m) for m in re.findall(r"validation top1=([\d.]+)", result.stdout)]
    assert len(tops) == 4 and max(tops) == pytest.approx(status["best"]["top1"], abs=1e-4)
    line = last_progress(result.stdout)
    assert line["step"] == 100 and line["epoch"] == 4 and line["max_epoch"] == 4


def test_rerun_of_a_finished_run_resumes_and_does_nothing(
    trained: tuple[Path, subprocess.CompletedProcess[str]], data: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained[0], ckpt)
    before = sorted(p.name for p in ckpt.iterdir())
    result = run(data, ckpt, "--max_epoch", "4", "--T_max", "4", "--keep_checkpoint_max", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert resumed_step(result.stdout) == 100
    assert sorted(p.name for p in ckpt.iterdir()) == before


def test_corrupt_newest_checkpoint_is_reported_and_skipped(
    trained: tuple[Path, subprocess.CompletedProcess[str]], data: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained[0], ckpt)
    newest = ckpt / "resnext_tiny-4_100.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    result = run(data, ckpt, "--max_epoch", "4", "--T_max", "4", "--keep_checkpoint_max", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(
        r"skipping checkpoint \S+resnext_tiny-4_100.ckpt is unreadable .*set aside as resnext_tiny-4_100.ckpt.corrupt",
        result.stdout,
    )
    assert resumed_step(result.stdout) == 75
    assert last_progress(result.stdout)["step"] == 100
    assert read_status(ckpt / "status.json")["state"] == "completed"  # type: ignore[index]
    # The truncated file is kept for a person to look at; pruning counted only the valid ones (keep 2).
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == [
        "best.ckpt",
        "metrics.jsonl",
        "resnext_tiny-3_75.ckpt",
        "resnext_tiny-4_100.ckpt",
        "resnext_tiny-4_100.ckpt.corrupt",
        "status.json",
        "tensorboard",
    ], names


# A run that cannot end while the test waits (1000 epochs): the signal always lands mid-run; --max_steps ends the
# rerun at the step the assertions expect.
ENDLESS = ("--max_epoch", "1000", "--T_max", "2")


def test_kill_9_then_rerun_resumes_from_the_last_checkpoint(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    proc = start(data, ckpt, *ENDLESS, "--ckpt_interval", "5")
    wait_for_checkpoint(ckpt, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    saved = [int(p.stem.rsplit("_", 1)[1]) for p in ckpt.glob("resnext_tiny-*_*.ckpt")]
    assert saved and max(saved) < 2 * STEPS_PER_EPOCH, "the first run saved past the rerun's end"
    result = run(data, ckpt, *ENDLESS, "--ckpt_interval", "5", "--max_steps", str(2 * STEPS_PER_EPOCH))
    assert result.returncode == 0, result.stderr[-3000:]
    assert resumed_step(result.stdout) == max(saved) > 0
    assert last_progress(result.stdout)["step"] == 2 * STEPS_PER_EPOCH
    assert "resnext_tiny-2_50.ckpt" in {p.name for p in ckpt.iterdir()}
    assert not list(ckpt.glob(".tmp-*"))


def test_sigterm_saves_the_stop_step_and_exits_143(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    args = (*ENDLESS, "--ckpt_interval", "7")
    proc = start(data, ckpt, *args)
    wait_for_checkpoint(ckpt, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output[-3000:]
    stop = int(re.findall(r"SIGTERM: stopping at step (\d+)", output)[0])
    epoch = -(-stop // STEPS_PER_EPOCH)
    assert (ckpt / f"resnext_tiny-{epoch}_{stop}.ckpt").is_file()
    status = read_status(ckpt / "status.json")
    assert status is not None and status["state"] == "stopped" and status["step"] == stop
    result = run(data, ckpt, *args, "--max_steps", str(stop + 10))
    assert result.returncode == 0 and resumed_step(result.stdout) == stop, result.stdout[-3000:]
    assert last_progress(result.stdout)["step"] == stop + 10


def start_cluster(data: Path, ckpt: Path, *extra: str, script: str | None = None) -> list[subprocess.Popen[str]]:
    cluster = {"MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": str(free_port()), "MS_WORKER_NUM": "2"}
    args = ("--is_distributed", *extra)
    procs = [start(data, ckpt, *args, script=script, MS_ROLE="MS_SCHED", **cluster)]
    for rank in (0, 1):
        procs.append(start(data, ckpt, *args, script=script, MS_ROLE="MS_WORKER", MS_NODE_ID=str(rank), **cluster))
    return procs


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            raise
        results.append((proc.returncode, output))
    return results


def test_two_workers_hold_identical_parameters_and_moments(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    # is_save_on_master=false: rank 1 also writes its state, as resnext_tiny-1_12-rank1.ckpt (rank 0's name + -rank1).
    results = finish(start_cluster(data, ckpt, "--max_epoch", "1", "--T_max", "1", "--is_save_on_master", "false"))
    for code, output in results:
        assert code == 0, output[-3000:]
    for rank, (_, output) in enumerate(results[1:]):
        line = last_progress(output)
        assert (line["rank"], line["step"], line["total_steps"]) == (rank, 12, 12)  # 400 images / 2 ranks / 16
    status = read_status(ckpt / "status.json")
    assert status is not None and status["rank_size"] == 2 and status["state"] == "completed"
    script = (
        "import sys, json, numpy as np, mindspore as ms\n"
        "a, b = (ms.load_checkpoint(p) for p in sys.argv[1:])\n"
        "trained = [k for k in a if not k.endswith(('moving_mean', 'moving_variance')) and hasattr(a[k], 'asnumpy')]\n"
        "same = [k for k in trained if np.array_equal(a[k].asnumpy(), b[k].asnumpy())]\n"
        "print(json.dumps({'trained': trained, 'same': same}))\n"
    )
    files = [str(ckpt / "resnext_tiny-1_12.ckpt"), str(ckpt / "resnext_tiny-1_12-rank1.ckpt")]
    out = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, check=True, env=env())
    compared = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(k.startswith("moments.") for k in compared["trained"]) and "global_step" in compared["trained"]
    assert len(compared["trained"]) > 50 and compared["same"] == compared["trained"]


def test_sigterm_to_one_worker_stops_both_at_the_same_step(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    procs = start_cluster(data, ckpt, *ENDLESS, "--ckpt_interval", "4")
    wait_for_checkpoint(ckpt, procs[1])
    procs[2].send_signal(signal.SIGTERM)  # only rank 1, as when Kubernetes evicts one pod
    (sched_code, _), (code0, out0), (code1, out1) = finish(procs)
    assert (code0, code1) == (143, 143), out0[-2000:] + out1[-2000:]
    steps = {int(re.findall(r"SIGTERM: stopping at step (\d+)", out)[0]) for out in (out0, out1)}
    assert len(steps) == 1
    stop = steps.pop()
    assert (ckpt / f"resnext_tiny-{-(-stop // 12)}_{stop}.ckpt").is_file()  # 12 steps per epoch on 2 ranks
    assert sched_code in (0, 143)


def test_status_reports_the_restarts_the_launcher_passes(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    failure = "rank 1 exited with code 137"
    restarts = {"JOBCTL_RESTARTS": "2", "JOBCTL_MAX_RESTARTS": "5", "JOBCTL_LAST_FAILURE": failure}
    proc = start(data, ckpt, "--max_steps", "2", **restarts)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    status = read_status(ckpt / "status.json")
    assert status is not None and status["restarts"] == {"count": 2, "max": 5, "last": failure}
    bad = start(data, tmp_path / "bad", "--max_steps", "2", JOBCTL_RESTARTS="two")
    output, _ = bad.communicate(timeout=120)
    assert bad.returncode == 2 and "error: JOBCTL_RESTARTS='two' is not a whole number" in output, output[-3000:]
    assert not (tmp_path / "bad").exists()


def test_the_compile_cache_is_reused_by_a_rerun_and_never_by_another_graph(data: Path, tmp_path: Path) -> None:
    # MindSpore alone would load the 10-class graph into the 12-class run (and fail in ApplyMomentum).
    cache = {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": str(tmp_path / "cache")}
    outputs = []
    for name, classes in (("a", "10"), ("b", "10"), ("c", "12")):
        proc = start(data, tmp_path / name, "--max_steps", "2", "--num_classes", classes, **cache)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output[-3000:]
        outputs.append(output)
    used = [re.findall(r"compile cache (\S+): (reusing|empty)", out)[0] for out in outputs]
    assert [how for _, how in used] == ["empty", "reusing", "empty"]
    assert used[0][0] == used[1][0] != used[2][0]
    assert all(Path(path).parent == tmp_path / "cache" for path, _ in used)


def test_bad_input_exits_2_and_writes_nothing(
    trained: tuple[Path, subprocess.CompletedProcess[str]], data: Path, tmp_path: Path
) -> None:
    missing = run(data, tmp_path / "a", "--data_dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope" in missing.stderr, missing.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(data, tmp_path / "a", "--data_dir", str(empty)).returncode == 2
    one_class = tmp_path / "one"
    shutil.copytree(data / "train" / "class_0", one_class / "class_0")
    single = run(data, tmp_path / "a", "--data_dir", str(one_class))  # issue 24.5: exit 2 (FailJob), one line
    assert single.returncode == 2 and "Traceback" not in single.stderr, single.stderr[-2000:]
    assert single.stderr.strip().splitlines()[-1].startswith(f"error: data directory {one_class} has 1 class folder")
    invalid = run(data, tmp_path / "a", "--lr", "-1")
    assert invalid.returncode == 2 and "lr" in invalid.stderr
    unknown = run(data, tmp_path / "a", "--config", str(write(tmp_path / "c.yaml", "learning_rate: 0.1\n")))
    assert unknown.returncode == 2 and "learning_rate" in unknown.stderr
    assert not (tmp_path / "a").exists()
    # A checkpoint directory of another architecture: refused, and left exactly as it was.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(trained[0] / "resnext_tiny-4_100.ckpt", other / "resnext50_32x4d-4_100.ckpt")
    wrong = run(data, other, "--arch", "resnext50_32x4d")
    assert wrong.returncode == 2 and "architecture" in wrong.stderr, wrong.stderr[-2000:]
    assert [p.name for p in other.iterdir()] == ["resnext50_32x4d-4_100.ckpt"]


def test_pretrained_initialises_only_a_fresh_run(
    trained: tuple[Path, subprocess.CompletedProcess[str]], data: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    pretrained = str(trained[0] / "resnext_tiny-4_100.ckpt")
    first = run(data, ckpt, "--pretrained", pretrained, "--max_steps", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"initialised from {pretrained}; not loaded: none" in first.stdout
    assert resumed_step(first.stdout) is None
    again = run(data, ckpt, "--pretrained", pretrained, "--max_steps", "5")
    assert again.returncode == 0 and resumed_step(again.stdout) == 3, again.stdout[-3000:]
    assert "initialised from" not in again.stdout  # the run's own checkpoint wins


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_fast_cpu_convolution_is_in_effect(data: Path, tmp_path: Path) -> None:
    proc = start(data, tmp_path / "ckpt", "--max_steps", "1", ONEDNN_VERBOSE="1")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-2000:]
    kernels = set(re.findall(r"convolution,([^,]+),", output))
    assert kernels == {"x64:gemm:jit"}, kernels  # no reference kernels
    code = "import sys, trainer.train; sys.exit('mindspore' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_a_full_volume_is_one_error_line_and_leaves_every_checkpoint_loadable(data: Path, tmpfs) -> None:
    ckpt = tmpfs("volume", "3m") / "ckpt"  # room for one checkpoint
    result = run(data, ckpt, *ENDLESS, "--ckpt_interval", "5", "--keep_checkpoint_max", "10")
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-3000:]  # EXIT_PERMANENT: FailJob
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip()  # one line: no traceback, no MindSpore guess about permissions
    assert re.fullmatch(rf"error: no space left on {ckpt} while saving resnext_tiny-\d+_\d+\.ckpt", line), line
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(".")]  # no temporary of the failed save
    saved = sorted(str(p) for p in ckpt.glob("resnext_tiny-*.ckpt"))
    assert saved, "the volume should hold at least the first checkpoint"
    script = "import sys\nfrom trainer.checkpoint import load\nprint([load(p).step for p in sys.argv[1:]])\n"
    loaded = subprocess.run([sys.executable, "-c", script, *saved], capture_output=True, text=True, env=env(), cwd=ROOT)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    status = read_status(ckpt / "status.json")
    assert status is not None and status["state"] == "failed"
