"""Progress reporting shared by the trainer and jobctl (pure Python: no MindSpore).

One progress line per ``log_interval`` steps, built by :func:`format_progress` and read back by
:func:`parse_progress`::

    rank=0 epoch=3/150 step=1200/187650 loss=4.1234 lr=0.049000 img/s=196.3 eta=1d02h03m

and ``status.json`` in the checkpoint directory, rewritten atomically by :func:`write_status`; its ``restarts``
field comes from the launcher's env (:func:`restarts_from_env`), its ``group`` from the trainer's group
(``contract.group.Group.to_record``).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from contract.env import Var
from contract.files import finite_or_none, strict_json, utc_timestamp, write_atomic

STATES = ("starting", "running", "completed", "failed", "stopped")
UNKNOWN = "-"  # shown for img/s and ETA until a steady-state step has been timed

_PROGRESS_RE = re.compile(
    r"rank=(?P<rank>\d+) epoch=(?P<epoch>\d+)/(?P<max_epoch>\d+) step=(?P<step>\d+)/(?P<total_steps>\d+)"
    r" loss=(?P<loss>\S+) lr=(?P<lr>\S+) img/s=(?P<img_per_sec>\S+) eta=(?P<eta>\S+)"
)
_DURATION_RE = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def format_duration(seconds: float | None) -> str:
    """Compact duration: ``1d02h03m``, ``2h03m``, ``3m05s``, ``42s``; ``-`` when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return UNKNOWN
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def parse_duration(text: str) -> int | None:
    """Inverse of :func:`format_duration` (to its precision); None for ``-`` or anything unreadable."""
    match = _DURATION_RE.match(text)
    if text == UNKNOWN or not text or not match:
        return None
    parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def format_progress(
    rank: int,
    epoch: int,
    max_epoch: int,
    step: int,
    total_steps: int,
    loss: float,
    lr: float,
    img_per_sec: float | None,
    eta_seconds: float | None,
) -> str:
    """The progress line; ``epoch`` is 1-based (the epoch the step belongs to), ``step`` the global step done."""
    speed = UNKNOWN if img_per_sec is None else f"{img_per_sec:.1f}"
    return (
        f"rank={rank} epoch={epoch}/{max_epoch} step={step}/{total_steps} loss={loss:.4f} lr={lr:.6f} "
        f"img/s={speed} eta={format_duration(eta_seconds)}"
    )


def parse_progress(line: str) -> dict[str, Any] | None:
    """Fields of a progress line anywhere in ``line`` (e.g. after ``[rank 1] `` or a timestamp); else None."""
    match = _PROGRESS_RE.search(line)
    if not match:
        return None
    g = match.groupdict()
    try:
        return {
            "rank": int(g["rank"]),
            "epoch": int(g["epoch"]),
            "max_epoch": int(g["max_epoch"]),
            "step": int(g["step"]),
            "total_steps": int(g["total_steps"]),
            "loss": float(g["loss"]),
            "lr": float(g["lr"]),
            "img_per_sec": None if g["img_per_sec"] == UNKNOWN else float(g["img_per_sec"]),
            "eta_seconds": parse_duration(g["eta"]),
        }
    except ValueError:
        return None


class ThroughputMeter:
    """Steady-state images/second: the clock starts when step ``skip`` ends, so graph compile and pipeline
    warm-up (the first step) are not counted."""

    def __init__(self, skip: int = 1) -> None:
        self._skip = skip
        self._steps = 0
        self._start: float | None = None
        self._last: float | None = None
        self._images = 0

    def step_done(self, images: int, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self._steps += 1
        if self._steps <= self._skip:
            self._start = now
            return
        if self._start is None:  # skip == 0: time from construction's first call
            self._start = now
            return
        self._images += images
        self._last = now

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (validation) is not training time: the clock's start moves forward by it."""
        began = time.perf_counter()
        try:
            yield
        finally:
            if self._start is not None:
                self._start += time.perf_counter() - began

    @property
    def img_per_sec(self) -> float | None:
        if self._start is None or self._last is None or self._last <= self._start:
            return None
        return self._images / (self._last - self._start)

    def eta_seconds(self, remaining_images: int) -> float | None:
        speed = self.img_per_sec
        return None if speed is None else remaining_images / speed


def write_status(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Atomically write status.json with ``fields`` plus ``updated`` (ISO 8601 UTC); returns what was written.

    A full volume raises :class:`contract.files.DiskFullError`."""
    state = fields.get("state")
    if state is not None and state not in STATES:
        raise ValueError(f"status state must be one of {', '.join(STATES)}, not {state!r}")
    record = dict(fields)
    record["updated"] = utc_timestamp()
    write_atomic(path, strict_json(record, indent=2, sort_keys=True) + "\n")
    return finite_or_none(record)


def restarts_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """status.json's ``restarts``: ``{"count", "max", "last"}`` from the env the launcher gives every trainer
    (unset: count 0, max and last null). ValueError naming the variable when a number is not one."""

    def whole(name: str) -> int | None:
        raw = environ.get(name, "").strip()
        if not raw:
            return None
        if not raw.isdigit():
            raise ValueError(f"{name}={raw!r} is not a whole number >= 0; it is set by trainer.launch, unset it")
        return int(raw)

    last = environ.get(Var.LAST_FAILURE, "").strip()
    return {"count": whole(Var.RESTARTS) or 0, "max": whole(Var.MAX_RESTARTS), "last": last or None}


def read_status(path: str | Path) -> dict[str, Any] | None:
    """status.json as a dict; None if it does not exist or is not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
