"""The launcher's output merging under faults: a log file that cannot be written never stops stdout."""

from __future__ import annotations

import errno
import io
import sys
import textwrap

from contract.layout import JobLayout
from launcher.output import Output
from launcher.processes import LocalProcess


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
