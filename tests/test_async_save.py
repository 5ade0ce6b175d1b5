"""Background checkpoint saves: the writer (pure) and trainer.train on CPU with a save the test holds in flight
(tests/gated_trainer.py): kill -9 mid-save, a second save due, SIGTERM mid-save, a full volume, sync mode."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.ckpt_files import list_checkpoints, newest_complete
from contract.files import DiskFullError
from contract.progress import read_status
from trainer.async_save import BackgroundSaver

ROOT = Path(__file__).resolve().parents[1]
GATED = ROOT / "tests" / "gated_trainer.py"
COMMON = ["--platform", "cpu", "--arch", "resnext_tiny", "--image_size", "32", "--per_batch_size", "16"]
COMMON += ["--num_parallel_workers", "1", "--lr", "0.1", "--log_interval", "1", "--ckpt_interval", "5"]
ENDLESS = ["--max_epoch", "1000", "--T_max", "2"]  # never ends while the test waits
DEADLINE = 120.0


# The writer on its own -----------------------------------------------------------------------------------------


def test_one_write_in_flight_and_its_error_reaches_the_caller() -> None:
    messages: list[str] = []
    saver = BackgroundSaver(background=True, log=messages.append)
    gate = threading.Event()
    saver.start("the checkpoint of step 5", gate.wait)
    assert saver.writing == "the checkpoint of step 5"
    saver.check()  # still writing: nothing to report
    threading.Timer(0.1, gate.set).start()
    saver.wait(reason="the checkpoint of step 10 is due")
    assert messages[0] == (
        "the checkpoint of step 10 is due while the checkpoint of step 5 is still being written: waiting for it"
    )
    assert re.fullmatch(r"waited \d+\.\d\d s for the checkpoint of step 5", messages[1])

    def full() -> None:
        raise DiskFullError("/ckpt", "saving x.ckpt", errno.ENOSPC)

    saver.start("the checkpoint of step 10", full)
    with pytest.raises(DiskFullError, match=r"no space left on /ckpt while saving x\.ckpt"):
        saver.wait()
    saver.check()  # reported once


def test_close_lets_the_write_finish_and_drops_its_error() -> None:
    saver = BackgroundSaver(background=True, log=print)
    finished = threading.Event()

    def slow_failure() -> None:
        finished.set()
        raise OSError("late")

    saver.start("x", slow_failure)
    saver.close()
    assert finished.is_set() and saver.writing is None
    saver.check()


def test_synchronous_mode_writes_inline() -> None:
    saver = BackgroundSaver(background=False, log=print)
    seen: list[str] = []
    saver.start("x", lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name] and saver.writing is None


# The trainer with a save held in flight -----------------------------------------------------------------------


class Trainer:
    """A gated trainer process whose output goes to a file the test reads while it runs."""

    def __init__(self, data: Path, tmp: Path, plan: str, *extra: str) -> None:
        self.ckpt, self.gate, self.out = tmp / "ckpt", tmp / "gate", tmp / "out.log"
        self.gate.mkdir()
        argv = [sys.executable, str(GATED), str(self.gate), plan, "--data_dir", str(data / "train")]
        argv += ["--ckpt_path", str(self.ckpt), *COMMON, *extra]
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def output(self) -> str:
        return self.out.read_text()

    def wait_for(self, what: str, found: object) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if callable(found) and found():
                return
            assert self.proc.poll() is None, f"trainer ended while waiting for {what}: {self.output()[-3000:]}"
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.output()[-3000:]}")

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        self.wait_for(pattern, lambda: re.search(pattern, self.output()))
        match = re.search(pattern, self.output())
        assert match
        return match

    def release(self) -> None:
        (self.gate / "release").touch()

    def finish(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=DEADLINE)
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def trainers() -> Iterator[list[Trainer]]:
    started: list[Trainer] = []
    yield started
    for trainer in started:
        trainer.kill()


def saving_step_10(data: Path, tmp_path: Path, trainers: list[Trainer]) -> Trainer:
    """An endless run whose second save (step 10) is held in flight by the gate."""
    trainer = Trainer(data, tmp_path, "block:2", *ENDLESS)
    trainers.append(trainer)
    trainer.wait_for("the save of step 10 in flight", (trainer.gate / "blocked-2").exists)
    return trainer


def loads(paths: list[Path]) -> list[int]:
    script = "import sys\nfrom trainer.checkpoint import load\nprint([load(p).step for p in sys.argv[1:]])\n"
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return [int(s) for s in re.findall(r"\d+", done.stdout.strip().splitlines()[-1])]


@pytest.mark.slow
def test_kill_9_during_a_background_save_resumes_from_the_previous_checkpoint(
    data: Path, tmp_path: Path, trainers: list[Trainer]
) -> None:
    trainer = saving_step_10(data, tmp_path, trainers)
    trainer.wait_for_line(r"step=13/")  # training goes on while step 10 is written
    os.kill(trainer.proc.pid, signal.SIGKILL)
    trainer.proc.communicate()
    ckpt = trainer.ckpt
    assert [p.name for p in list_checkpoints(ckpt)] == ["resnext_tiny-1_5.ckpt"]
    assert [p.name for p in ckpt.glob(".tmp-*")] == [f".tmp-{trainer.proc.pid}-resnext_tiny-1_10.ckpt"]
    assert newest_complete(ckpt) == ckpt / "resnext_tiny-1_5.ckpt"  # what jobctl and eval would pick
    argv = [sys.executable, "-m", "trainer.train", "--data_dir", str(data / "train"), "--ckpt_path", str(ckpt)]
    rerun = subprocess.run(
        [*argv, *COMMON, *ENDLESS, "--max_steps", "7"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=DEADLINE,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert re.search(r"resuming from \S+resnext_tiny-1_5.ckpt at step 5", rerun.stdout)
    assert f"removed the temporary .tmp-{trainer.proc.pid}-resnext_tiny-1_10.ckpt" in rerun.stdout
    assert not list(ckpt.glob(".tmp-*"))
    assert loads(list_checkpoints(ckpt)) == [5, 7]


@pytest.mark.slow
def test_a_save_due_while_one_is_in_flight_waits_and_says_so(
    data: Path, tmp_path: Path, trainers: list[Trainer]
) -> None:
    trainer = Trainer(data, tmp_path, "block:2", *ENDLESS, "--max_steps", "20")
    trainers.append(trainer)
    trainer.wait_for_line(
        r"rank=0 the checkpoint of step 15 is due while the checkpoint of step 10 is still being written: "
        r"waiting for it"
    )
    assert "step=16/" not in trainer.output()  # it waits, the writes do not pile up
    trainer.release()
    code, err = trainer.finish()
    assert code == 0, trainer.output()[-3000:] + err[-3000:]
    out = trainer.output()
    assert re.search(r"rank=0 waited \d+\.\d\d s for the checkpoint of step 10", out)
    saved = re.findall(r"saved \S+-(\d+_\d+)\.ckpt \([\d.]+ MB in [\d.]+ s, in the background", out)
    assert saved == ["1_5", "1_10", "1_15", "1_20"]
    assert loads(list_checkpoints(trainer.ckpt)) == [5, 10, 15, 20]
    status = read_status(trainer.ckpt / "status.json")
    assert status is not None and status["checkpoint"] == str(trainer.ckpt / "resnext_tiny-1_20.ckpt")


@pytest.mark.slow
def test_sigterm_while_a_save_is_in_flight_exits_143_once_it_is_in_place(
    data: Path, tmp_path: Path, trainers: list[Trainer]
) -> None:
    trainer = saving_step_10(data, tmp_path, trainers)
    trainer.proc.send_signal(signal.SIGTERM)
    # The stop step's save (or step 15's, if the signal landed late) waits for the write of step 10.
    trainer.wait_for_line(r"is due while the checkpoint of step 10 is still being written: waiting for it")
    assert trainer.proc.poll() is None  # still running: the write of step 10 is not done
    assert not (trainer.ckpt / "resnext_tiny-1_10.ckpt").exists()
    trainer.release()
    code, err = trainer.finish()
    assert code == 143, trainer.output()[-3000:] + err[-3000:]
    stop = int(re.findall(r"SIGTERM: stopping at step (\d+)", trainer.output())[0])
    stop_file = trainer.ckpt / f"resnext_tiny-{-(-stop // 25)}_{stop}.ckpt"
    assert loads([trainer.ckpt / "resnext_tiny-1_10.ckpt", stop_file]) == [10, stop]
    status = read_status(trainer.ckpt / "status.json")
    assert status is not None and status["state"] == "stopped" and status["checkpoint"] == str(stop_file)


@pytest.mark.slow
def test_a_full_volume_in_a_background_save_is_one_error_line(
    data: Path, tmp_path: Path, trainers: list[Trainer]
) -> None:
    trainer = Trainer(data, tmp_path, "enospc:2", *ENDLESS)
    trainers.append(trainer)
    code, err = trainer.finish()
    assert code == 1, trainer.output()[-3000:] + err[-3000:]
    line = err.strip()
    assert line == f"error: no space left on {trainer.ckpt} while saving resnext_tiny-1_10.ckpt", err[-3000:]
    assert not list(trainer.ckpt.glob(".tmp-*"))
    assert loads(list_checkpoints(trainer.ckpt)) == [5]
    status = read_status(trainer.ckpt / "status.json")
    assert status is not None and status["state"] == "failed"
    assert status["checkpoint"] == str(trainer.ckpt / "resnext_tiny-1_5.ckpt")


@pytest.mark.slow
def test_async_save_off_saves_on_the_training_thread(data: Path, tmp_path: Path, trainers: list[Trainer]) -> None:
    trainer = Trainer(data, tmp_path, "block:2", *ENDLESS, "--max_steps", "12", "--async_save", "false")
    trainers.append(trainer)
    trainer.wait_for("the save of step 10 in flight", (trainer.gate / "blocked-2").exists)
    assert "step=11/" not in trainer.output()  # the training thread is the one writing
    trainer.release()
    code, err = trainer.finish()
    assert code == 0, err[-3000:]
    assert re.findall(r"saved \S+-(\d+_\d+)\.ckpt \([\d.]+ MB in [\d.]+ s, synchronously\)", trainer.output()) == [
        "1_5",
        "1_10",
        "1_12",
    ]
