"""`make compat`: the trainer on each supported MindSpore release, in both execution paths.

For every release in pyproject's ``[tool.resnext-jobs] compat-mindspore`` (or ``--versions``): a throwaway venv
``/tmp/compat-<version>`` with that MindSpore, NumPy < 2 and the trainer's other run-time packages (the trainer
itself runs from this checkout through PYTHONPATH), then per execution path a short 2-rank CPU run of
``resnext_tiny`` on generated data: train 6 steps (a checkpoint every 3), resume to 10, evaluate the run directory.
graph writes ``.ckpt``, pynative ``.safetensors``, so both formats are read back by resume and eval on every release.
Prints a table (release x path: ok, or the step that failed and its last error line) and exits 1 if any failed.
Not part of ``make test`` or CI (which test the default release only): it downloads ~1 GB per release.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"graph": "ckpt", "pynative": "safetensors"}  # execution path -> the checkpoint format it is run with
RUNTIME = ["numpy>=1.26,<2", "pillow>=10.0", "tensorboardX>=2.6", "pydantic>=2.6", "pyyaml>=6.0"]
COMMON = ["--platform", "cpu", "--arch", "resnext_tiny", "--image_size", "32", "--per_batch_size", "8"]
COMMON += ["--num_parallel_workers", "1", "--lr", "0.05", "--log_interval", "2", "--ckpt_interval", "3"]
STEP_TIMEOUT = 600


class Failed(Exception):
    """One step of a check failed; the message is the table cell."""


def releases() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["tool"]["resnext-jobs"]["compat-mindspore"])


def venv_for(version: str, log: Path) -> Path:
    """/tmp/compat-<version> with MindSpore ``version``; reused when it already has it."""
    venv = Path(f"/tmp/compat-{version}")
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mindspore, sys; sys.stdout.write(mindspore.__version__)"]
    if python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout == version:
        return python
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out)
        pip = [str(python), "-m", "pip", "install", "-q", f"mindspore=={version}", *RUNTIME]
        if subprocess.run(pip, stdout=out, stderr=out).returncode != 0:
            raise Failed(f"install: pip could not install mindspore=={version} (see {log})")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "ONEDNN_MAX_CPU_ISA": "AVX2", "GLOG_v": "3", **extra}


def last_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("[WARNING]", "[INFO]"))]
    errors = [line for line in lines if re.search(r"error|Error|Exception|failed", line)]
    return (errors or lines or ["(no output)"])[-1].strip()[:160]


def train(python: Path, data: Path, ckpt: Path, path: str, steps: int) -> str:
    """A 2-rank run (scheduler + 2 workers on loopback) to ``steps`` global steps; rank 0's output."""
    cluster = {"MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": str(free_port()), "MS_WORKER_NUM": "2"}
    args = [str(python), "-m", "trainer.train", "--data_dir", str(data / "train"), "--ckpt_path", str(ckpt)]
    args += [*COMMON, "--is_distributed", "--execution", path, "--ckpt_format", PATHS[path]]
    args += ["--max_steps", str(steps), "--max_epoch", "10"]
    roles = [{"MS_ROLE": "MS_SCHED"}] + [{"MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(r)} for r in (0, 1)]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(**cluster, **r))
        for r in roles
    ]
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=STEP_TIMEOUT)[0])
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise Failed(f"timed out after {STEP_TIMEOUT} s") from None
    for proc, output in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise Failed(f"exit {proc.returncode}: {last_error(output)}")
    return outputs[1]


def check(python: Path, data: Path, work: Path, path: str) -> str:
    """train -> resume -> eval for one path; 'ok (...)' or raises Failed naming the step."""
    ckpt = work / path
    shutil.rmtree(ckpt, ignore_errors=True)  # a fresh run: the resume below must continue this one
    try:
        train(python, data, ckpt, path, steps=6)
    except Failed as exc:
        raise Failed(f"train: {exc}") from None
    try:
        resumed = train(python, data, ckpt, path, steps=10)
    except Failed as exc:
        raise Failed(f"resume: {exc}") from None
    match = re.search(r"resuming from (\S+) at step (\d+)", resumed)
    if match is None or match[2] != "6" or not match[1].endswith(PATHS[path]):
        raise Failed(f"resume: did not resume from step 6 of a .{PATHS[path]} file ({last_error(resumed)})")
    cmd = [str(python), "-m", "trainer.evaluate", "--data_dir", str(data / "val"), "--pretrained", str(ckpt)]
    done = subprocess.run([*cmd, "--num_parallel_workers", "1"], capture_output=True, text=True, env=env())
    if done.returncode != 0:
        raise Failed(f"eval: exit {done.returncode}: {last_error(done.stderr + done.stdout)}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return f"ok (step {result['step']}, top-1 {result['top1']:.2f})"


def run_release(version: str, work: Path) -> dict[str, str]:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "install.log"
    try:
        python = venv_for(version, log)
    except Failed as exc:
        return dict.fromkeys(PATHS, str(exc))
    data = work / "data"
    if not data.exists():
        synth = [str(python), "-m", "trainer.data", "synth", "--out", str(data), "--quiet"]
        synth += ["--classes", "4", "--per_class", "16", "--size", "32"]
        subprocess.run(synth, check=True, env=env(), capture_output=True)
    row = {}
    for path in PATHS:
        try:
            row[path] = check(python, data, work, path)
        except Failed as exc:
            row[path] = f"FAILED {exc}"
        print(f"mindspore {version} {path}: {row[path]}", flush=True)
    return row


def table(rows: dict[str, dict[str, str]]) -> str:
    width = max(len(cell) for row in rows.values() for cell in row.values())
    header = f"{'MindSpore':<10} " + " ".join(f"{p + ' (' + PATHS[p] + ')':<{width}}" for p in PATHS)
    lines = [header, "-" * len(header)]
    lines += [f"{v:<10} " + " ".join(f"{row[p]:<{width}}" for p in PATHS) for v, row in rows.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make compat", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--versions", nargs="*", default=None, help="default: pyproject's compat-mindspore")
    parser.add_argument("--work", default="/tmp/compat-runs", help="data, checkpoints and install logs")
    args = parser.parse_args(argv)
    rows = {v: run_release(v, Path(args.work) / v) for v in (args.versions or releases())}
    print(table(rows))
    return 0 if all(cell.startswith("ok") for row in rows.values() for cell in row.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
