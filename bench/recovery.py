"""Recovery time on the local backend: from a killed rank to training again (``python -m bench.recovery``).

A 2-pod x 1-rank resnext_tiny job (``jobctl submit --backend local``) trains until it has a checkpoint; then one
process of pod 1 gets SIGKILL and the bench follows both pods' logs (``<job>/local/pod-<i>.log``), stamping each
line as it arrives (polled every 20 ms), until the first progress line after a ``resuming from`` line. Paths:

- ``pod``: kill pod 1's launcher (the pod process): the pod is replaced, as when a node dies;
- ``in-place``: kill pod 1's trainer (rank 1): whatever the launcher does about it, in place or via a new pod.

Each path runs twice in one job: without the compile cache (the bench empties ``<job>/compile-cache`` before the
kill) and with it (the cache the first recovery left). If the launcher does not enable MindSpore's compile cache
itself, the bench enables it for the job's processes through their env (``MS_COMPILER_CACHE_*``); the trainer's
``compile cache ...: reusing|empty`` line says what the resumed attempt actually did. The total is split into:
detection (kill -> the first launcher/jobctl line), stopping the survivors (-> the last launcher ``exit N`` or
``restarting the group in place`` before the new attempt), rendezvous (-> the last ``all N pod(s) joined``), process
start (-> the trainer's ``MindSpore loaded`` line: spawn, interpreter, imports), set-up (cluster, data, model),
checkpoint load and graph compile (the trainer's own figures) and the first step (-> its progress line). The
machine may be shared with other work: repeat (``--repeat``) to see the spread. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import synth
from contract.env import COMPILE_CACHE_ENABLE, COMPILE_CACHE_PATH
from contract.layout import JobLayout
from contract.progress import parse_progress

BIN = Path(sys.executable).parent
JOB = "recovery-bench"
POLL = 0.02
TRAIN = ["arch=resnext_tiny", "image_size=32", "per_batch_size=16", "max_epoch=1000", "T_max=2", "lr=0.1"]
TRAIN += ["log_interval=1", "ckpt_interval=5", "num_parallel_workers=1"]
CACHE_DIR = "compile-cache"
PHASES = (
    "detection",
    "stop_survivors",
    "rendezvous",
    "process_start",
    "setup",
    "checkpoint_load",
    "graph_compile",
    "first_step",
)


@dataclass
class Follower:
    """New lines of the pods' logs, stamped (monotonic) as they arrive."""

    logs: list[Path]
    offsets: dict[Path, int] = field(default_factory=dict)
    lines: list[tuple[float, int, str]] = field(default_factory=list)  # (arrival, pod, line)

    def skip_to_end(self) -> None:
        self.offsets = {p: p.stat().st_size if p.exists() else 0 for p in self.logs}
        self.lines.clear()

    def poll(self) -> None:
        now = time.monotonic()
        for pod, path in enumerate(self.logs):
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            self.lines += [(now, pod, raw.decode("utf-8", "replace")) for raw in complete.splitlines()]

    def wait_for(self, pattern: str, timeout: float, after: float = 0.0) -> tuple[float, int, str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.poll()
            for item in self.lines[seen:]:
                if item[0] >= after and regex.search(item[2]):
                    return item
            seen = len(self.lines)
            time.sleep(POLL)
        tail = "\n".join(line for _, _, line in self.lines[-40:])
        raise RuntimeError(f"no line matching {pattern!r} within {timeout:g} s; last lines:\n{tail}")


def jobctl(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(BIN / "jobctl"), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"jobctl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def submit(shared: Path, data: Path, layout: JobLayout) -> None:
    env = dict(os.environ)
    env.setdefault(COMPILE_CACHE_ENABLE, "1")  # unless the launcher sets its own (it then wins in the trainer's env)
    env.setdefault(COMPILE_CACHE_PATH, str(layout.root / CACHE_DIR))
    args = ["submit", "--backend", "local", "--platform", "cpu", "--devices", "2", "--devices-per-node", "1"]
    args += ["--name", JOB, "--data", str(data), "--shared", str(shared), "--replace", "--max-restarts", "10"]
    for item in TRAIN:
        args += ["--set", item]
    jobctl(*args, env=env)


def victim_pid(path: str, layout: JobLayout, follower: Follower) -> int:
    if path == "pod":
        state = json.loads((layout.local_dir / "state.json").read_text())
        return int(state["pods"][1]["pid"])
    started = [
        m for _, pod, line in follower.lines if pod == 1 and (m := re.search(r"started rank 1 \(pid (\d+)\)", line))
    ]
    if not started:
        text = (layout.local_dir / "pod-1.log").read_text(errors="replace")
        started = list(re.finditer(r"started rank 1 \(pid (\d+)\)", text))
    return int(started[-1][1])


def recover(
    path: str, layout: JobLayout, follower: Follower, cached: bool, timeout: float, show_timeline: bool
) -> dict[str, Any]:
    """Kill, then time the phases up to the first progress line of the resumed attempt."""
    follower.wait_for(r"\[rank 0\] .*step=\d+/", timeout)  # training (again)
    follower.wait_for(r"saved \S+\.ckpt", timeout)  # a checkpoint to resume from
    if not cached:
        shutil.rmtree(layout.root / CACHE_DIR, ignore_errors=True)
    follower.poll()
    pid = victim_pid(path, layout, follower)
    follower.skip_to_end()
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    detected = follower.wait_for(r"^\[(launcher|jobctl)\]", timeout, after=killed)
    resumed = follower.wait_for(r"resuming from \S+ at step", timeout, after=killed)
    progress = follower.wait_for(r"\[rank \d\] rank=\d epoch=", timeout, after=resumed[0])
    lines = follower.lines
    if show_timeline:
        for stamp, pod, line in lines:
            if stamp <= progress[0] and not parse_progress(line):
                print(f"    {stamp - killed:7.2f} s  pod {pod}  {line[:150]}")
    return {"path": path, "cache": cached, **phases(lines, killed, detected[0], progress)}


def phases(lines: list[tuple[float, int, str]], killed: float, detected: float, progress: Any) -> dict[str, Any]:
    def last(pattern: str, before: float) -> float | None:
        found = [t for t, _, line in lines if t <= before and re.search(pattern, line)]
        return found[-1] if found else None

    def figure(pattern: str) -> float:
        found = [float(m[1]) for t, _, line in lines if t <= progress[0] and (m := re.search(pattern, line))]
        return found[-1] if found else 0.0

    rank = progress[1]
    joined = last(r"\[launcher\] attempt \d+: all \d+ pod\(s\) joined", progress[0]) or detected
    # The survivors are down: their launcher exits (pod path, old launchers) or restarts the group in place.
    survivors_down = r"\[launcher\] (exit \d+|attempt \d+ ended \(.*\); restarting the group in place)$"
    stopped = max(detected, last(survivors_down, joined) or detected)
    up = last(rf"\[rank {rank}\] trainer pid \d+: MindSpore loaded", progress[0]) or joined
    resumed = last(rf"\[rank {rank}\] rank=\d loaded checkpoint in", progress[0]) or up
    compiled = last(rf"\[rank {rank}\] rank=\d compiled the train graph in", progress[0]) or resumed
    load = figure(r"loaded checkpoint in ([\d.]+) s")
    compile_s = figure(r"compiled the train graph in ([\d.]+) s")
    cache_lines = [line for t, _, line in lines if t <= progress[0] and "compile cache" in line]
    return {
        "total": progress[0] - killed,
        "detection": detected - killed,
        "stop_survivors": stopped - detected,
        "rendezvous": joined - stopped,
        "process_start": up - joined,
        "setup": resumed - up - load,
        "checkpoint_load": load,
        "graph_compile": compile_s,
        "first_step": progress[0] - compiled,
        "between_load_and_compile": compiled - resumed - compile_s,
        "cache_seen": cache_lines[-1].split("compile cache ", 1)[1] if cache_lines else "no compile cache line",
    }


def make_data(root: Path) -> Path:
    return synth(root, classes=10, per_class=40, size=64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--paths", default="pod,in-place", help="comma-separated: pod, in-place")
    parser.add_argument("--repeat", type=int, default=1, help="kills per path and cache setting")
    parser.add_argument("--timeline", action="store_true", help="print each recovery's log lines, timed")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per phase")
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        data = make_data(Path(tmp) / "synth")
        shared = Path(tmp) / "shared"
        layout = JobLayout.of(shared, JOB)
        for path in args.paths.split(","):
            submit(shared, data, layout)
            follower = Follower([layout.local_dir / "pod-0.log", layout.local_dir / "pod-1.log"])
            try:
                for _ in range(args.repeat):
                    for cached in (False, True):
                        runs.append(recover(path, layout, follower, cached, args.timeout, args.timeline))
                        print(json.dumps(runs[-1]), flush=True)
            finally:
                subprocess.run([str(BIN / "jobctl"), "delete", JOB, "--backend", "local", "--shared", str(shared)])
    report(runs)
    return 0


def report(runs: list[dict[str, Any]]) -> None:
    print("recovery on the local backend, 2 pods x 1 rank, resnext_tiny (machine shared: median, min-max)")
    summary: dict[str, Any] = {}
    for path in dict.fromkeys(r["path"] for r in runs):
        for cached in (False, True):
            mine = [r for r in runs if r["path"] == path and r["cache"] == cached]
            if not mine:
                continue
            key = f"{path}/{'cache' if cached else 'no-cache'}"
            summary[key] = {k: _spread([r[k] for r in mine]) for k in ("total", *PHASES)}
            cells = "  ".join(f"{k} {summary[key][k]}" for k in ("total", *PHASES))
            print(f"  {key:18s} {cells}")
            print(f"  {'':18s} the resumed attempt's compile cache: {mine[-1]['cache_seen']}")
    print(json.dumps({"runs": runs, "summary": summary}))


def _spread(values: list[float]) -> str:
    median = statistics.median(values)
    return f"{median:.2f}" if len(values) == 1 else f"{median:.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    sys.exit(main())
