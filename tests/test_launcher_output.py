"""The launcher's output merging under faults: a log file that cannot be written never stops stdout."""

from __future__ import annotations

import errno
import io
import sys
import textwrap

from contract.layout import JobLayout
from contract.lines import format_prefix, parse_rank_prefix, rank_label, strip_rank_prefix
from contract.progress import parse_progress
from launcher.output import Output
from launcher.processes import LocalProcess, child_env


class FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_log_volume_keeps_stdout_flowing(tmp_path, capsys) -> None:
    out = Output(JobLayout(tmp_path / "job"), 0)
    out.launcher_log = FullDisk()
    for i in range(3):
        out.emit("[rank 0] ", f"line {i}", FullDisk())
    out.say("still here")
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("[rank 0]")] == [f"[rank 0] line {i}" for i in range(3)]
    assert "[launcher] still here" in printed
    notices = [line for line in printed if "cannot write a log file" in line]
    assert len(notices) == 1 and "No space left on device" in notices[0]  # said once, not per line


def test_the_pump_survives_a_failing_write_and_keeps_the_error_line(tmp_path, capsys) -> None:
    """An output thread that dies on one bad write would drop every later line of that rank."""
    script = textwrap.dedent(
        """
        import sys
        print("step 1", flush=True)
        print("error: per_batch_size=64 is larger than this rank's share", flush=True)
        sys.stdout.write("no newline at the end")
        """
    )
    out = Output(JobLayout(tmp_path / "job"), 0)
    proc = LocalProcess("rank 1", [sys.executable, "-c", script], {}, tmp_path / "rank-1.log")
    proc.spawn()
    proc.log = FullDisk()
    proc.start_pump(out)
    assert proc.popen is not None and proc.popen.wait(30) == 0
    assert proc.pump is not None
    proc.pump.join(30)
    printed = capsys.readouterr().out.splitlines()
    assert "[rank 1] step 1" in printed
    assert "[rank 1] no newline at the end" in printed  # an unterminated last line is still a whole line
    assert (
        proc.describe_exit(2) == "rank 1 exited with code 2: error: per_batch_size=64 is larger than this rank's share"
    )


MINDSPORE_INFO = (
    "[INFO] DISTRIBUTED(15643,7fe30519a6c0,python3):2026-12-03-20:15:52.968.485 "
    "[mindspore/ccsrc/cluster/rpc/core/communicator/tcp_client.cc:367] Start] Event base dispatch success!"
)
MINDSPORE_WARNING = "[WARNING] ME(15643:140,MainProcess):2026-12-03-20:15:52.968.485 [mindspore/x.py:1] deprecated"


def _run_rank(tmp_path, rank: int, lines: list[str]) -> list[str]:
    """One real rank process printing ``lines``; returns what its log file got."""
    script = "import sys\nfor line in sys.argv[1:]: print(line, flush=True)\n"
    out = Output(JobLayout(tmp_path / "job"), 0)
    log = tmp_path / f"rank-{rank}.log"
    proc = LocalProcess(rank_label(rank), [sys.executable, "-c", script, *lines], {}, log, rank=rank)
    proc.spawn()
    proc.start_pump(out)
    assert proc.popen is not None and proc.popen.wait(30) == 0
    assert proc.pump is not None
    proc.pump.join(30)
    return log.read_text().splitlines()


def test_the_merged_view_shows_rank_0s_progress_once_and_no_mindspore_chatter(tmp_path, capsys) -> None:
    """Issue 23.5: stdout (make demo, jobctl logs, kubectl logs) gets one progress line per step, rank 0's, and no
    MindSpore INFO/WARNING line; each rank's log file keeps every line."""
    progress = "rank={r} epoch=1/2 step=4/8 loss=1.2818 lr=0.012500 img/s=153.4 eta=0s"
    validation = "rank={r} epoch=1/2 step=4/8 validation top1=0.4750 top5=1.0000 images=40"
    routine = "rank={r} training resnext_tiny on CPU x2"
    error = "error: loss diverged at step 4"
    logged = {}
    for rank in (0, 1):
        lines = [line.format(r=rank) for line in (progress, validation, routine)]
        logged[rank] = _run_rank(tmp_path, rank, [*lines, MINDSPORE_INFO, MINDSPORE_WARNING, error])
    printed = capsys.readouterr().out.splitlines()
    ranked = [line for line in printed if parse_rank_prefix(line) is not None]
    shown = [(parse_rank_prefix(line), strip_rank_prefix(line)) for line in ranked]
    assert [rest for rank, rest in shown if parse_progress(rest)] == [progress.format(r=0)]
    assert [rest for rank, rest in shown if "validation" in rest] == [validation.format(r=0)]
    assert (1, routine.format(r=1)) in shown and (1, error) in shown  # what is not per-step still shows
    assert not [line for line in printed if "DISTRIBUTED" in line or "ME(" in line]
    for rank in (0, 1):  # the rank files keep everything
        assert progress.format(r=rank) in logged[rank] and MINDSPORE_INFO in logged[rank]
        assert MINDSPORE_WARNING in logged[rank] and error in logged[rank]


def test_the_rank_prefix_parses_back() -> None:
    line = format_prefix(rank_label(12)) + "x y"
    assert (parse_rank_prefix(line), strip_rank_prefix(line)) == (12, "x y")
    assert parse_rank_prefix("[sched] ready") is None and parse_rank_prefix("[jobctl] pod x") is None


def test_mindspore_logs_to_stderr_at_error_level_unless_the_job_asks(monkeypatch) -> None:
    monkeypatch.delenv("GLOG_v", raising=False)
    monkeypatch.delenv("GLOG_logtostderr", raising=False)
    assert {k: child_env({})[k] for k in ("GLOG_v", "GLOG_logtostderr")} == {"GLOG_v": "3", "GLOG_logtostderr": "1"}
    monkeypatch.setenv("GLOG_v", "1")
    assert child_env({})["GLOG_v"] == "1"
