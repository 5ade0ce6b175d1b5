"""A job's logs: its pods' lines, or followed until the Job ends over re-attachable streams (where a stream got
to, so a new one neither repeats nor loses lines).

Follow streams end while the pod still runs (the kubelet's streaming idle timeout, API-server restarts, load
balancers' idle timeouts). jobctl asks for ``timestamps=true`` and re-attaches with ``sinceSeconds`` (the Python
client has no ``sinceTime``: kubernetes-client/python#1351) reaching back a margin before the last line seen;
the lines up to that line's timestamp are dropped again here.
"""

from __future__ import annotations

import contextlib
import math
import queue
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from jobctl.backends.base import FINISHED, BackendError, keep_line
from jobctl.backends.k8s.client import Client
from jobctl.backends.k8s.readers import CONTAINER, current, job_phase, pod_index

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


def write_logs(client: Client, name: str, out: TextIO, *, follow: bool, index: int | None, rank: int | None) -> None:
    """Write the job's pods' log lines (of one pod index and rank when given); with follow, until the Job ends."""
    if not follow:
        for pod in current(client.pods_of(name)):
            if index is None or pod_index(pod) == index:
                for line in client.available_log(pod.metadata.name) or []:
                    if keep_line(line, rank):
                        out.write(line + "\n")
        return
    follow_job(client, name, out, index, rank)


def follow_job(client: Client, name: str, out: TextIO, index: int | None, rank: int | None) -> None:
    """Stream every pod of the job (re-attaching to cut streams and replacement pods) until the Job ends."""
    lines: queue.Queue[str] = queue.Queue()
    followed: dict[str, threading.Thread] = {}
    while True:
        job = client.read_job_or_none(name)
        if job is None:
            client.note(f"Job {name} was deleted (TTL cleanup or a delete): treating it as finished")
        for pod in client.pods_of(name) if job is not None else []:
            pod_name = pod.metadata.name
            started = pod.status is not None and pod.status.phase in ("Running", "Succeeded", "Failed")
            if pod_name in followed or not started or (index is not None and pod_index(pod) != index):
                continue
            thread = threading.Thread(target=stream_pod, args=(client, pod_name, lines), daemon=True)
            thread.start()
            followed[pod_name] = thread
        finished = job is None or job_phase(job) in FINISHED
        if finished:
            for thread in followed.values():
                thread.join(timeout=10)
        while not lines.empty():
            line = lines.get()
            if keep_line(line, rank):
                out.write(line + "\n")
        out.flush()
        if finished:
            return
        client.sleep(client.poll_seconds)


def stream_pod(client: Client, pod: str, lines: queue.Queue[str]) -> None:
    """Follow one pod's log; while the pod runs, re-attach whenever the stream ends (idle timeouts, API
    server restarts, resets), resuming after the last line delivered. Ends when the pod is done or gone."""
    cursor = LogCursor()
    last_read = False
    while True:
        since = cursor.attach()
        with contextlib.suppress(Exception):  # a cut stream, a reset, a timeout: re-attach below
            response = client.core.read_namespaced_pod_log(
                pod,
                client.namespace,
                container=CONTAINER,
                follow=True,
                timestamps=True,
                _preload_content=False,
                _request_timeout=client.stream_timeout,
                **({"since_seconds": since} if since is not None else {}),
            )
            for raw in iter_lines(response, keep_partial=last_read):
                line = cursor.admit(raw)
                if line is not None:
                    lines.put(line)
        if last_read:
            return
        state = pod_state(client, pod)
        if state == "gone":
            return
        last_read = state == "done"  # one more read for what the container wrote before it ended
        if not last_read:
            client.sleep(client.poll_seconds)


def pod_state(client: Client, pod: str) -> str:
    """ "running" (or not started), "done" or "gone"."""
    try:
        found = client.get("read pod", client.core.read_namespaced_pod, pod, client.namespace)
    except BackendError:
        return "running"  # try again later; the Job's end stops the follower
    if found is None:
        return "gone"
    return "done" if found.status and found.status.phase in ("Succeeded", "Failed") else "running"
