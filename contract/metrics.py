"""The metrics history of a run (pure Python: jobctl reads it; MindSpore is never imported here).

Rank 0 appends one JSON record per line to ``<job dir>/metrics.jsonl`` (docs/INTERFACES.md has the schema):

- ``start`` / ``resume``: an attempt begins at ``step`` (``resume`` when it continues a checkpoint or follows a
  failed attempt); it supersedes every earlier record with a larger step, so a restart is one visible event
  and the re-done steps are not a second curve (:func:`effective`);
- ``train``: one per progress line (loss, lr, img/s, ETA);
- ``val``: one per validation (top-1, top-5, images);
- ``segment``: right after each attempt record, the devices that attempt trains with (``devices`` of
  ``full_devices``, the member pods): an elastic job's group changes only between attempts.

Lines are only ever appended, each as it happens (fsynced). The same records mirror into TensorBoard
event files under ``<job dir>/tensorboard/`` (tensorboardX, imported only when a run starts). On a cluster the
history is rebuilt from rank 0's log: its progress and validation lines plus ``metrics {json}`` lines for the
attempt and segment records (:func:`history_from_log`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from contract.env import Var
from contract.files import strict_json, utc_timestamp
from contract.group import Group
from contract.layout import JobLayout
from contract.progress import parse_progress

ATTEMPT_KINDS = ("start", "resume")
SEGMENT_KIND = "segment"  # rank 0 at each (re)start: the group it trains with (devices, full_devices, members)
KINDS = (*ATTEMPT_KINDS, "train", "val", SEGMENT_KIND)
LOG_TAG = "metrics"  # rank 0's log line for an attempt or segment record: `rank=0 metrics {json}`
# TensorBoard scalar name per record field.
TRAIN_SCALARS = {"loss": "train/loss", "lr": "train/lr", "img_per_sec": "train/img_per_sec"}
VAL_SCALARS = {"top1": "val/top1", "top5": "val/top5"}
SEGMENT_SCALARS = {"devices": "devices"}
SCALARS = {"train": TRAIN_SCALARS, "val": VAL_SCALARS, SEGMENT_KIND: SEGMENT_SCALARS}

_VALIDATION_RE = re.compile(
    r"rank=(?P<rank>\d+) epoch=(?P<epoch>\d+)/\d+ step=(?P<step>\d+)/\d+ validation "
    r"top1=(?P<top1>[\d.]+) top5=(?P<top5>[\d.]+) images=(?P<images>\d+)"
)
_LOG_RECORD_RE = re.compile(rf"rank=0 {LOG_TAG} (\{{.*\}})\s*$")


def format_validation(epoch: int, max_epoch: int, step: int, total_steps: int, result: dict[str, Any]) -> str:
    """The validation log line (after the ``rank=N`` prefix), read back by :func:`parse_validation`."""
    return (
        f"epoch={epoch}/{max_epoch} step={step}/{total_steps} validation "
        f"top1={result['top1']:.4f} top5={result['top5']:.4f} images={result['images']}"
    )


def parse_validation(line: str) -> dict[str, Any] | None:
    match = _VALIDATION_RE.search(line)
    if not match:
        return None
    g = match.groupdict()
    return {
        "rank": int(g["rank"]),
        "epoch": int(g["epoch"]),
        "step": int(g["step"]),
        "top1": float(g["top1"]),
        "top5": float(g["top5"]),
        "images": int(g["images"]),
    }


def history_paths(ckpt_path: str | Path, environ: Mapping[str, str] = os.environ) -> tuple[Path, Path]:
    """(metrics.jsonl, tensorboard/) of the job directory the launcher names (JOBCTL_JOB_DIR); a trainer run by
    hand keeps them in its checkpoint directory, next to status.json."""
    job_dir = environ.get(Var.JOB_DIR, "").strip()
    layout = JobLayout(Path(job_dir)) if job_dir else JobLayout(Path(ckpt_path))
    return layout.metrics_file, layout.tensorboard_dir


class History:
    """Rank 0's writer of metrics.jsonl and the TensorBoard files; ``enabled=False`` (other ranks) records nothing.

    Each record is appended (and fsynced) and the event file flushed as it happens, so a crash, a kill -9 or a
    group stop loses no record written before it: one small write per progress line (every ``log_interval``
    steps). ``flush_seconds`` > 0 batches train records instead (validation and attempt records always go at once).
    """

    def __init__(
        self, path: Path | None, tensorboard: TensorBoard | None = None, restarts: int = 0, flush_seconds: float = 0
    ) -> None:
        self.path, self.tensorboard, self.restarts = path, tensorboard, restarts
        self.flush_seconds = flush_seconds
        self.pending: list[dict[str, Any]] = []
        self.flushed = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def attempt(self, step: int, epoch: int, checkpoint: str | None, **facts: Any) -> dict[str, Any]:
        """The first record of an attempt; returns it (the trainer also logs it for `jobctl plot` on a cluster)."""
        kind = "resume" if checkpoint is not None or facts.get("source") or self.restarts > 0 else "start"
        record = self._record(kind, step, epoch, checkpoint=checkpoint, **facts)
        if self.tensorboard is not None:
            self.tensorboard.open(purge_from=step + 1)
        self.add(record, urgent=True)
        return record

    def segment(self, step: int, epoch: int, group: Group) -> dict[str, Any]:
        """The devices this attempt trains with, after its attempt record; returns it (logged like that one)."""
        fields = {"devices": group.world_size, "full_devices": group.full_world_size, "members": list(group.members)}
        record = self._record(SEGMENT_KIND, step, epoch, **fields)
        self.add(record, urgent=True)
        return record

    def train(self, step: int, epoch: int, **fields: Any) -> None:
        self.add(self._record("train", step, epoch, **fields))

    def validation(self, step: int, epoch: int, result: dict[str, Any]) -> None:
        fields = {key: result[key] for key in ("top1", "top5", "images")}
        self.add(self._record("val", step, epoch, **fields), urgent=True)

    def add(self, record: dict[str, Any], urgent: bool = False) -> None:
        if not self.enabled:
            return
        self.pending.append(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)
        if urgent or time.monotonic() - self.flushed >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Append the buffered records (one write, fsynced) and flush the event file."""
        self.flushed = time.monotonic()
        if self.path is None or not self.pending:
            return
        text = "".join(strict_json(r, separators=(",", ":")) + "\n" for r in self.pending)
        try:
            self._append(self.path, text)
        except OSError as exc:  # the history is for people: a failed append is retried, never fatal
            print(f"warning: cannot append to {self.path}: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return
        self.pending.clear()
        if self.tensorboard is not None:
            self.tensorboard.flush()

    @staticmethod
    def _append(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as handle:
            if handle.tell() > 0:  # a killed writer may have left half a line: never glue onto it
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    text = "\n" + text
            handle.write(text.encode())
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        self.flush()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _record(self, kind: str, step: int, epoch: int, **fields: Any) -> dict[str, Any]:
        fields = {k: _compact(v) for k, v in fields.items()}
        return {
            "kind": kind,
            "step": step,
            "epoch": epoch,
            **fields,
            "restarts": self.restarts,
            "time": utc_timestamp(),
        }


def _compact(value: Any) -> Any:
    """Floats to 7 significant digits: a float32 learning rate is 0.02, not 0.019999999552965164."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


class TensorBoard:
    """Scalars of the history as TensorBoard event files, written synchronously with tensorboardX's event-file
    writer (its SummaryWriter queues events in a thread whose flush() does not drain the queue, so a killed run
    would lose up to a minute of events; here a flush is a flush). Each attempt writes its own file, which starts
    with a session start at ``purge_from``: TensorBoard then hides the earlier attempts' events from that step on,
    as it does for any restarted run."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    @staticmethod
    def available() -> bool:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            return False
        return True

    def open(self, purge_from: int) -> None:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The pid in the name: two attempts starting in the same second must not share a file.
        self.writer = EventsWriter(str(self.log_dir / "events"), filename_suffix=f".{os.getpid()}")
        start = SessionLog(status=SessionLog.START)
        self.writer.write_event(Event(wall_time=time.time(), step=purge_from, session_log=start))

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        for field, tag in SCALARS.get(record["kind"], {}).items():
            if record.get(field) is not None:
                summary = scalar(tag, float(record[field]))
                self.writer.write_event(Event(wall_time=time.time(), step=record["step"], summary=summary))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# Reading ---------------------------------------------------------------------------------------------------


def parse_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records of metrics.jsonl lines; a line that is not a record (half written by a killed run) is skipped."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if _is_record(record):
            records.append(record)
    return records


def _is_record(record: Any) -> bool:
    if not isinstance(record, dict) or record.get("kind") not in KINDS or not isinstance(record.get("step"), int):
        return False
    return record["kind"] != SEGMENT_KIND or all(isinstance(record.get(k), int) for k in ("devices", "full_devices"))


def read_history(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records in file order; [] when it does not exist yet."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return parse_records(text.splitlines())


def effective(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as it stands: each attempt record drops the earlier records past its step (work the restart
    redid), so the steps of train and val records never go back, and an earlier attempt's segment at its step
    (the new attempt's segment follows it)."""
    kept: list[dict[str, Any]] = []
    for record in records:
        if record["kind"] in ATTEMPT_KINDS:
            step = record["step"]
            kept = [r for r in kept if r["step"] < step or (r["step"] == step and r["kind"] != SEGMENT_KIND)]
        kept.append(record)
    return kept


def device_changes(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The segment records (of an :func:`effective` history) where the device count changes: the first one only
    when it is not the full job."""
    changes: list[dict[str, Any]] = []
    devices: int | None = None
    for record in records:
        if record["kind"] == SEGMENT_KIND:
            if record["devices"] != (record["full_devices"] if devices is None else devices):
                changes.append(record)
            devices = record["devices"]
    return changes


def log_record_line(record: dict[str, Any]) -> str:
    """An attempt or segment record as rank 0 logs it (after ``rank=0``)."""
    return f"{LOG_TAG} {strict_json(record, separators=(',', ':'))}"


def is_log_record(line: str) -> bool:
    """Whether a log line (any prefix before ``rank=0``) is a record of :func:`log_record_line`: data
    for jobctl, not a line for a person."""
    return _LOG_RECORD_RE.search(line) is not None


def history_from_log(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The history rebuilt from rank 0's log lines (a pod log, ``[rank N]`` prefixes allowed): attempt records
    and segment records from ``metrics {json}`` lines, train records from progress lines, val records from
    validation lines."""
    records: list[dict[str, Any]] = []
    restarts = 0
    for line in lines:
        logged = _LOG_RECORD_RE.search(line)
        if logged:
            found = parse_records([logged.group(1)])
            records += found
            restarts = int(found[0].get("restarts", restarts)) if found else restarts
            continue
        progress = parse_progress(line)
        if progress is not None:
            if progress["rank"] == 0:
                fields = {k: progress[k] for k in ("loss", "lr", "img_per_sec", "eta_seconds")}
                records.append({"kind": "train", "step": progress["step"], "epoch": progress["epoch"], **fields})
                records[-1]["restarts"] = restarts
            continue
        validation = parse_validation(line)
        if validation is not None and validation.pop("rank") == 0:
            records.append({"kind": "val", **validation, "restarts": restarts})
    return records


def best_validation(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The val record with the highest top-1 (the first of equals, as best.ckpt keeps it)."""
    best = None
    for record in records:
        if record["kind"] == "val" and (best is None or record["top1"] > best["top1"]):
            best = record
    return best
