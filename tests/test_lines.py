"""Every line one side writes and another parses: the writer's output, as it reaches the reader (behind the
launcher's ``[rank N] `` prefix where it passes through the launcher), is read back by the reader."""

from __future__ import annotations

from pathlib import Path

from contract.ckpt_names import checkpoint_name, parse_checkpoint_name
from contract.lines import (
    LAUNCHER_PREFIX,
    Joined,
    format_joined,
    format_prefix,
    format_resumed,
    format_saved,
    format_trainer_line,
    parse_joined,
    parse_rank_prefix,
    parse_restart,
    parse_resumed,
    parse_saved,
    rank_label,
    strip_rank_prefix,
)
from contract.metrics import (
    History,
    format_validation,
    history_from_log,
    log_record_line,
    parse_validation,
    read_history,
)
from contract.progress import format_progress, parse_progress, read_status, write_status
from jobctl.backends.base import keep_line, last_json_line, latest_restart


def through_launcher(rank: int, line: str) -> str:
    return format_prefix(rank_label(rank)) + line


def test_rank_prefix() -> None:
    line = through_launcher(5, "rank=5 hello")
    assert parse_rank_prefix(line) == 5 and strip_rank_prefix(line) == "rank=5 hello"
    assert keep_line(line, 5) and not keep_line(line, 4) and keep_line(line, None)
    assert parse_rank_prefix(LAUNCHER_PREFIX + "attempt 0: ...") is None


def test_saved_line() -> None:
    ckpt = "/shared/jobs/rx/ckpt/resnext101_64x4d-1_100.ckpt"
    line = through_launcher(0, format_trainer_line(0, format_saved(ckpt, "98.1 MB in 0.40 s, synchronously")))
    assert parse_saved(line) == ckpt
    assert parse_saved(through_launcher(1, format_trainer_line(1, format_saved(ckpt, "x")))) is None  # rank 0's only


def test_resumed_line() -> None:
    from_snapshot = through_launcher(1, format_trainer_line(1, format_resumed("snapshot of pod 0 at step 812", 3)))
    assert parse_resumed(from_snapshot) == (1, "snapshot of pod 0 at step 812", 812)
    from_checkpoint = format_trainer_line(0, format_resumed("/shared/jobs/a/ckpt/resnext_tiny-2_8.ckpt at step 8", 2))
    assert parse_resumed(from_checkpoint) == (0, "/shared/jobs/a/ckpt/resnext_tiny-2_8.ckpt at step 8", 8)


def test_joined_line_carries_the_restart() -> None:
    first = LAUNCHER_PREFIX + format_joined(0, 2, 16, 0, 3, None)
    assert parse_restart(first) is None
    why = "attempt 1: rank 5 exited with code 137"
    again = LAUNCHER_PREFIX + format_joined(2, 2, 16, 2, 3, why)
    assert parse_restart(again) == (2, 3, why)
    assert latest_restart([first, again, "[rank 0] rank=0 something"]) == (2, 3, why)


def test_joined_line_of_a_full_and_of_a_shrunk_group() -> None:
    full = LAUNCHER_PREFIX + format_joined(0, 3, 6, 0, 3, None, members=[0, 1, 2])
    assert full == LAUNCHER_PREFIX + "attempt 0: all 3 pod(s) joined; world size 6"  # unchanged for full groups
    assert parse_joined(full) == Joined(0, (0, 1, 2), 3, 6)
    why = "attempt 2: pod 2 lost: no heartbeat for 15 s (its node or launcher is gone)"
    shrunk = format_joined(3, 3, 4, 1, 3, why, members=[0, 1])
    assert (
        shrunk == f"attempt 3: pods 0,1 of 3 joined; world size 4 (elastic: pod 2 missing); restart 1 of 3 after {why}"
    )
    assert parse_joined(LAUNCHER_PREFIX + shrunk) == Joined(3, (0, 1), 3, 4, 1, 3, why)
    assert parse_restart(shrunk) == (1, 3, why)
    one = format_joined(4, 4, 2, 0, 3, None, members=[3])
    assert one == "attempt 4: pod 3 of 4 joined; world size 2 (elastic: pods 0,1,2 missing)"
    assert parse_joined(one) == Joined(4, (3,), 4, 2) and parse_restart(one) is None
    assert parse_joined("[rank 0] rank=0 attempt 3: pods of 3 joined") is None


def test_progress_line() -> None:
    line = through_launcher(0, format_progress(0, 2, 150, 120, 187650, 4.1234, 0.049, 196.3, 93780))
    parsed = parse_progress(line)
    assert parsed is not None
    assert (parsed["epoch"], parsed["step"], parsed["loss"], parsed["img_per_sec"]) == (2, 120, 4.1234, 196.3)


def test_validation_line() -> None:
    result = {"top1": 0.7512, "top5": 0.9231, "images": 50000}
    line = through_launcher(0, format_trainer_line(0, format_validation(3, 150, 300, 187650, result)))
    parsed = parse_validation(line)
    assert parsed is not None and parsed["step"] == 300 and parsed["top1"] == result["top1"]


def test_attempt_record_logged_and_rebuilt() -> None:
    record = {"kind": "resume", "step": 100, "epoch": 1, "checkpoint": "/c/x.ckpt"}
    line = through_launcher(0, format_trainer_line(0, log_record_line(record)))
    rebuilt = history_from_log([line])
    assert rebuilt and {k: rebuilt[0][k] for k in record} == record


def test_metrics_records_written_and_read(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    history = History(path)
    history.attempt(step=0, epoch=1, checkpoint=None)
    history.train(step=10, epoch=1, loss=4.5, lr=0.1, img_per_sec=100.0)
    history.validation(step=10, epoch=1, result={"top1": 0.1, "top5": 0.3, "images": 40})
    history.flush()
    kinds = [(r["kind"], r["step"]) for r in read_history(path)]
    assert kinds == [("start", 0), ("train", 10), ("val", 10)]


def test_status_json(tmp_path: Path) -> None:
    written = write_status(tmp_path / "status.json", state="running", step=7, total_steps=10)
    assert read_status(tmp_path / "status.json") == written


def test_checkpoint_name() -> None:
    parsed = parse_checkpoint_name(checkpoint_name("resnext_tiny", 3, 120, rank=2))
    assert parsed is not None and (parsed.arch, parsed.epoch, parsed.step, parsed.rank) == ("resnext_tiny", 3, 120, 2)


def test_eval_result_line() -> None:
    assert last_json_line(through_launcher(0, '{"top1": 0.5}') + "\n[launcher] done") == {"top1": 0.5}
