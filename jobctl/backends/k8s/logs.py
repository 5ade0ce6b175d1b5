"""Re-attachable pod log streams: where a stream got to, so a new one neither repeats nor loses lines.

Follow streams end while the pod still runs (the kubelet's streaming idle timeout, API-server restarts, load
balancers' idle timeouts). jobctl asks for ``timestamps=true`` and re-attaches with ``sinceSeconds`` (the Python
client has no ``sinceTime``: kubernetes-client/python#1351) reaching back a margin before the last line seen;
the lines up to that line's timestamp are dropped again here.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

# Node clocks and this machine's differ; re-reading a few minutes too many costs little, missing lines is worse.
SINCE_MARGIN_SECONDS = 300
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ")


def parse_stamp(line: str) -> tuple[tuple[int, int], str] | None:
    """((epoch seconds, nanoseconds), text) of a ``timestamps=true`` log line, or None without a timestamp."""
    match = _STAMP.match(line)
    if not match:
        return None
    base, fraction, zone = match.groups()
    when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    nanos = int((fraction or "0").ljust(9, "0"))
    return (int(when.timestamp()), nanos), line[match.end() :]


class LogCursor:
    """The newest timestamp delivered and how many lines carried it (several lines can share one)."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None
        self.count = 0
        self.replayed = 0

    def attach(self) -> int | None:
        """Start a new stream; returns its ``since_seconds`` (None: from the start)."""
        self.replayed = 0
        if self.last is None:
            return None
        return max(1, math.ceil(time.time() - self.last[0]) + SINCE_MARGIN_SECONDS)

    def admit(self, line: str) -> str | None:
        """The line without its timestamp if it is new, else None."""
        parsed = parse_stamp(line)
        if parsed is None:
            return line
        stamp, text = parsed
        if self.last is not None and stamp < self.last:
            return None
        if stamp == self.last:
            self.replayed += 1
            if self.replayed <= self.count:
                return None
            self.count += 1
            return text
        self.last, self.count, self.replayed = stamp, 1, 1
        return text


def iter_lines(response: Any, keep_partial: bool) -> Iterator[str]:
    """The lines of a streamed (``_preload_content=False``) response. An unterminated last line is kept only
    with ``keep_partial`` (the final read of a finished container); otherwise the next attach reads it whole."""
    buffer = b""
    try:
        for chunk in response.stream(4096, decode_content=True):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
    finally:
        response.release_conn()
    if buffer and keep_partial:
        yield buffer.decode("utf-8", "replace")
