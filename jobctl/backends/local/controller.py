"""The local Job controller: a detached process that plays Kubernetes' Job controller for one local job.

``python -m jobctl.backends.local.controller run <job_dir>`` (its own session, started by ``jobctl submit
--backend local``) runs every index of the rendered Job as a local "pod", starts a new pod for a failed index under
the Job's rules (``podFailurePolicy``: exit 2 → FailJob, 75 → Ignore; ``backoffLimit``), and records the job's and
pods' state in ``<job_dir>/local/state.json`` for the other commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from contract.env import exit_code_of
from contract.files import utc_timestamp
from jobctl.backends.base import (
    COMPLETE,
    FAILED,
    PENDING,
    RUNNING,
)
from jobctl.backends.local.pods import (
    MAX_GRACE_SECONDS,
    POLL_SECONDS,
    RESTART_DELAY_SECONDS,
    FailureRules,
    PodState,
    free_port,
    parse_indexes,
    plan_pods,
    termination_log,
    training_job,
)
from jobctl.jobdir import JobDir, write_atomic

STATE_WRITE_TRIES = 10
RESERVE_BYTES = 256 * 1024  # the final state on a full volume: the trainers' clean-up may free space in a moment


class LocalJobController:
    """Runs one job's pods as local process groups under the rendered Job's rules; state in local/state.json."""

    def __init__(self, job_dir: JobDir, objects: list[dict[str, Any]], shared: Path) -> None:
        self.job_dir = job_dir
        self.job = training_job(objects)
        self.rules = FailureRules.from_job(self.job)
        grace = self.job["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", MAX_GRACE_SECONDS)
        self.grace = min(float(grace), MAX_GRACE_SECONDS)
        self.port = free_port()
        self.plans = plan_pods(objects, job_dir, shared, self.port)
        self.pods = [PodState(plan.index, plan.name) for plan in self.plans]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restart_at: dict[int, float] = {}
        self.failures = 0
        self.phase = PENDING
        self.reason: str | None = None
        self.message: str | None = None
        self.started = utc_timestamp()
        self.finished: str | None = None
        self.stopping = False  # we signalled the pods: their exits are ours, not failures
        self.delete_requested = False
        self.state_write_failed = False

    # state.json --------------------------------------------------------------------------------------

    def write_state(self) -> bool:
        """Record the state; False (said once in controller.log) when the volume refuses the write."""
        state = {
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "controller_pid": os.getpid(),
            "master_port": self.port,
            "failures": self.failures,
            "backoff_limit": self.rules.backoff_limit,
            "started": self.started,
            "finished": self.finished,
            "pods": [vars(pod) for pod in self.pods],
        }
        try:
            write_atomic(self.job_dir.local_dir / "state.json", json.dumps(state, indent=2) + "\n")
        except OSError as exc:
            if not self.state_write_failed:  # controller.log is on the same volume: saying so may fail too
                with contextlib.suppress(OSError):
                    print(f"[jobctl] cannot write state.json ({exc}); retrying at the next change", file=sys.stderr)
            self.state_write_failed = True
            return False
        self.state_write_failed = False
        return True

    def write_final_state(self) -> None:
        for _ in range(STATE_WRITE_TRIES):
            if self.write_state():
                return
            self.reserve.unlink(missing_ok=True)  # a full volume: the space kept for this moment
            time.sleep(1.0)

    # pods --------------------------------------------------------------------------------------------

    @property
    def reserve(self) -> Path:
        """Space kept on the shared volume for the final state.json, should the job fill the volume."""
        return self.job_dir.local_dir / "state.reserve"

    def keep_reserve(self) -> None:
        with contextlib.suppress(OSError):
            self.reserve.write_bytes(bytes(RESERVE_BYTES))

    def pod_log(self, index: int) -> Path:
        return self.job_dir.local_dir / f"pod-{index}.log"

    def start(self, index: int) -> None:
        plan, pod = self.plans[index], self.pods[index]
        plan.cwd.mkdir(parents=True, exist_ok=True)
        message = termination_log(self.job_dir, index)
        message.unlink(missing_ok=True)  # a new container, a new message
        message.parent.mkdir(parents=True, exist_ok=True)
        with self.pod_log(index).open("ab") as log:
            attempt = len(pod.exit_codes) + 1
            with contextlib.suppress(OSError):  # a full volume must not stop the pod from starting
                log.write(f"[jobctl] pod {plan.name} attempt {attempt} starting at {utc_timestamp()}\n".encode())
                log.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **plan.env}
            proc = subprocess.Popen(
                plan.argv,
                env=env,
                cwd=plan.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stopping it reaches the trainers too
            )
        self.procs[index] = proc
        pod.pid, pod.phase, pod.started = proc.pid, RUNNING, utc_timestamp()

    def signal_pods(self, sig: int) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        """SIGTERM every running pod's group, SIGKILL what is left after the grace period."""
        self.stopping = True
        self.signal_pods(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self.procs and time.monotonic() < deadline:
            self.reap()
            time.sleep(POLL_SECONDS)
        self.signal_pods(signal.SIGKILL)
        while self.procs:
            self.reap()
            time.sleep(POLL_SECONDS / 4)

    def reap(self) -> list[tuple[int, int]]:
        """Finished pods as (index, exit code); their state is updated."""
        done = []
        for index, proc in list(self.procs.items()):
            returncode = proc.poll()
            if returncode is None:
                continue
            del self.procs[index]
            code = exit_code_of(returncode)
            pod = self.pods[index]
            pod.exit_codes.append(code)
            pod.pid = None
            pod.phase = "Succeeded" if code == 0 else FAILED
            pod.message = _read_message(termination_log(self.job_dir, index)) if code else None
            done.append((index, code))
        return done

    def fail(self, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = FAILED, reason, message
        self.stop_all()  # the final state is written once every pod has stopped, as the Job controller does

    def handle_exit(self, index: int, code: int) -> None:
        pod = self.pods[index]
        if code == 0 or self.stopping:
            return
        action = self.rules.action(code)
        described = f"pod {pod.name} exited with code {code}" + (f" ({pod.message})" if pod.message else "")
        if action in ("FailJob", "FailIndex"):
            self.fail("PodFailurePolicy", f"{described}, which fails the job at once (podFailurePolicy {action})")
            return
        if action == "Count":
            pod.failures += 1
            self.failures += 1
            used = pod.failures if self.rules.per_index else self.failures
            if used > self.rules.backoff_limit:
                self.fail(
                    "BackoffLimitExceeded",
                    f"{described}; {used} failures exceed backoffLimit {self.rules.backoff_limit} (max_restarts)",
                )
                return
        pod.restarts += 1
        pod.phase = PENDING
        self.restart_at[index] = time.monotonic() + RESTART_DELAY_SECONDS

    def succeeded(self) -> bool:
        """All indexes succeeded, or a successPolicy rule (succeededIndexes / succeededCount) is met."""
        done = {pod.index for pod in self.pods if pod.phase == "Succeeded"}
        if len(done) == len(self.pods):
            return True
        for rule in (self.job["spec"].get("successPolicy") or {}).get("rules", []):
            indexes = parse_indexes(rule["succeededIndexes"]) if "succeededIndexes" in rule else set(done)
            count = int(rule.get("succeededCount", len(indexes)))
            if indexes <= done and len(indexes & done) >= count:
                return True
        return False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "delete_requested", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "delete_requested", True))
        try:
            self.keep_reserve()
            for index in range(len(self.plans)):
                self.start(index)
            self.phase = RUNNING
            self.write_state()
            while self.phase == RUNNING:
                self.step()
                time.sleep(POLL_SECONDS)
        except Exception as exc:  # never leave pods running without a controller
            self.fail("ControllerError", f"the local controller failed: {exc!r} (see local/controller.log)")
            raise
        finally:
            self.finished = utc_timestamp()
            self.write_final_state()
        return 0 if self.phase == COMPLETE else 1

    def step(self) -> None:
        """One pass of the controller: reap, apply the failure rules, start replacements, check success."""
        if self.delete_requested:
            self.fail("Deleted", "the job was deleted (jobctl delete)")
            return
        changed = False
        for index, code in self.reap():
            changed = True
            self.handle_exit(index, code)
            if self.phase != RUNNING:
                return
        for index, when in list(self.restart_at.items()):
            if time.monotonic() >= when:
                del self.restart_at[index]
                self.start(index)
                changed = True
        if self.succeeded():
            self.phase, self.reason, self.message = COMPLETE, "Completed", "the job's success criteria are met"
            self.stop_all()  # as the Job controller does once a successPolicy is met
        elif changed:
            self.write_state()


def _read_message(path: Path) -> str | None:
    """The launcher's one-line reason, as Kubernetes shows a container's termination message."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return text.splitlines()[-1][:1000] if text else None


def run_controller(root: Path) -> int:
    job_dir = JobDir(root)
    meta = json.loads((job_dir.local_dir / "job.json").read_text())
    return LocalJobController(job_dir, meta["objects"], Path(meta["shared"])).run()


# The backend (runs in the CLI) -----------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True if pid is a live (not zombie) controller; between fork and exec its cmdline is still the CLI's."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"jobctl" in cmdline


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "run":
        print("usage: python -m jobctl.backends.local.controller run JOB_DIR", file=sys.stderr)
        return 2
    return run_controller(Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
