"""The local Job controller: a detached process that plays Kubernetes' Job controller for one local job.

``python -m jobctl.backends.local.controller run <job_dir>`` (its own session, started by ``jobctl submit
--backend local``) runs every index of the rendered Job as a local "pod", starts a new pod for a failed index under
the Job's rules (``podFailurePolicy``: exit 2 → FailJob, 75 → Ignore; ``backoffLimit``), and records the job's and
pods' state in ``<job_dir>/local/state.json`` for the other commands. It also plays a lost node on request
(`jobctl fault`, jobctl.backends.local.faults): the pod killed outright, its replacement held back for a while.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
from jobctl.backends.local.faults import Fault, read_fault
from jobctl.backends.local.pods import (
    DISRUPTION_TARGET,
    MAX_GRACE_SECONDS,
    POLL_SECONDS,
    RESTART_DELAY_SECONDS,
    FailureRules,
    PodState,
    free_port,
    parse_indexes,
    plan_pods,
    pod_volumes_dir,
    termination_log,
    training_job,
    view_mountpoint,
)
from jobctl.backends.local.procs import kill_pod, start_ticks
from jobctl.cachedfs import CachedView, ViewError
from jobctl.jobdir import JobDir, write_atomic

STATE_WRITE_TRIES = 10
RESERVE_BYTES = 256 * 1024  # the final state on a full volume: the trainers' clean-up may free space in a moment


class LocalJobController:
    """Runs one job's pods as local process groups under the rendered Job's rules; state in local/state.json."""

    def __init__(self, job_dir: JobDir, objects: list[dict[str, Any]], shared: Path, shared_cache: float = 0.0) -> None:
        self.job_dir = job_dir
        self.shared = shared
        # > 0: each pod sees the shared volume through its own caching view (jobctl.cachedfs), mounted for the
        # pod's life; the controller itself plays the API server and reads the real directory.
        self.shared_cache = shared_cache
        self.views: dict[int, CachedView] = {}
        self.job = training_job(objects)
        self.rules = FailureRules.from_job(self.job)
        grace = self.job["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", MAX_GRACE_SECONDS)
        self.grace = min(float(grace), MAX_GRACE_SECONDS)
        self.port = free_port()
        self.plans = plan_pods(objects, job_dir, shared, self.port, views=shared_cache > 0)
        self.pods = [PodState(plan.index, plan.name) for plan in self.plans]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restart_at: dict[int, float] = {}
        self.held: dict[int, Fault] = {}  # pods taken down by `jobctl fault`, until their hold ends
        self.applied: dict[int, str] = {}  # the id of each pod's last fault request acted on (each kills once)
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
        fresh_volumes(self.job_dir, index)  # a new pod starts with empty emptyDirs: the old one's memory is gone
        message = termination_log(self.job_dir, index)
        message.unlink(missing_ok=True)  # a new container, a new message
        message.parent.mkdir(parents=True, exist_ok=True)
        if self.shared_cache > 0:  # a new pod on a "node" of its own: a new view, with cold caches
            view = CachedView(
                self.shared,
                view_mountpoint(self.job_dir, index),
                self.shared_cache,
                log=self.job_dir.local_dir / f"view-{index}.log",
            )
            self.views[index] = view.start()
        with self.pod_log(index).open("ab") as log:
            # Counted as Kubernetes' restartCount (from 0); "attempt" is the launcher's word for a group attempt.
            restarts = len(pod.exit_codes)
            with contextlib.suppress(OSError):  # a full volume must not stop the pod from starting
                log.write(f"[jobctl] pod {plan.name} starting (restarts {restarts}) at {utc_timestamp()}\n".encode())
                log.flush()
            proc = subprocess.Popen(
                plan.argv,
                env=plan.process_env(),
                cwd=plan.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stopping it reaches the trainers too
            )
        self.procs[index] = proc
        pod.pid, pod.phase, pod.started = proc.pid, RUNNING, utc_timestamp()
        pod.start_ticks = start_ticks(proc.pid)

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
            self.stop_view(index)
            code = exit_code_of(returncode)
            pod = self.pods[index]
            pod.exit_codes.append(code)
            pod.pid = pod.start_ticks = None
            pod.phase = "Succeeded" if code == 0 else FAILED
            pod.message = _read_message(termination_log(self.job_dir, index)) if code else None
            done.append((index, code))
        return done

    def stop_view(self, index: int) -> None:
        view = self.views.pop(index, None)
        if view is not None:
            view.stop()

    def fail(self, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = FAILED, reason, message
        self.stop_all()  # the final state is written once every pod has stopped, as the Job controller does

    def handle_exit(self, index: int, code: int) -> None:
        pod = self.pods[index]
        if code == 0 or self.stopping:
            return
        # A pod lost with its node carries DisruptionTarget: the rendered podFailurePolicy ignores it (no count).
        action = self.rules.action(code, frozenset({DISRUPTION_TARGET}) if index in self.held else frozenset())
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

    # `jobctl fault`: a lost node -----------------------------------------------------------------------

    def apply_faults(self) -> bool:
        """Act on new fault requests (kill the pod, hold its replacement) and on moved hold ends; True if any."""
        changed = False
        for pod in self.pods:
            fault = read_fault(self.job_dir, pod.index)
            if fault is None or fault.pod != pod.index:
                continue
            if self.applied.get(pod.index) != fault.id:
                self.applied[pod.index] = fault.id
                changed = self.take_down(pod.index, fault) or changed
            elif pod.index in self.held and self.held[pod.index] != fault:  # `--up`: the same request, ending now
                self.held[pod.index] = fault
                pod.fault = fault.to_json()
                changed = True
        return changed

    def take_down(self, index: int, fault: Fault) -> bool:
        """Kill pod ``index`` as its lost node would (its exit is reaped at the next pass) and hold it down."""
        pod = self.pods[index]
        if pod.phase == "Succeeded":  # Kubernetes does not run a succeeded index again
            self.say(index, f"fault ignored: pod {pod.name} has already succeeded")
            return False
        proc = self.procs.get(index)
        if proc is not None:
            kill_pod(proc.pid)
        self.held[index], pod.fault = fault, fault.to_json()
        self.say(index, f"pod {pod.name} lost (jobctl fault): killed; {fault.describe(self.job_dir.name)}")
        return True

    def holding(self, index: int) -> bool:
        """True while pod ``index``'s replacement must wait; at the end of the hold the pod is no longer held."""
        fault = self.held.get(index)
        if fault is None:
            return False
        if not fault.over():
            return True
        del self.held[index]
        self.pods[index].fault = None
        return False

    def say(self, index: int, text: str) -> None:
        """A line in the pod's log and in controller.log."""
        line = f"[jobctl] {text} at {utc_timestamp()}"
        with contextlib.suppress(OSError):
            print(line, file=sys.stderr, flush=True)
            with self.pod_log(index).open("a") as log:
                log.write(line + "\n")

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
        except ViewError as exc:  # a pod's view could not be mounted (FUSE gone since submit checked it)
            self.fail("SharedCacheError", str(exc))
        except Exception as exc:  # never leave pods running without a controller
            self.fail("ControllerError", f"the local controller failed: {exc!r} (see local/controller.log)")
            raise
        finally:
            for index in list(self.views):
                self.stop_view(index)
            self.finished = utc_timestamp()
            self.write_final_state()
        return 0 if self.phase == COMPLETE else 1

    def step(self) -> None:
        """One pass of the controller: act on fault requests, reap, apply the failure rules, start replacements
        (none for a pod held down), check success."""
        if self.delete_requested:
            self.fail("Deleted", "the job was deleted (jobctl delete)")
            return
        changed = self.apply_faults()
        for index, code in self.reap():
            changed = True
            self.handle_exit(index, code)
            if self.phase != RUNNING:
                return
        for index, when in list(self.restart_at.items()):
            if time.monotonic() >= when and not self.holding(index):
                del self.restart_at[index]
                self.start(index)
                changed = True
        if self.succeeded():
            self.phase, self.reason, self.message = COMPLETE, "Completed", "the job's success criteria are met"
            self.stop_all()  # as the Job controller does once a successPolicy is met
        elif changed:
            self.write_state()


def fresh_volumes(job_dir: JobDir, index: int) -> None:
    """Empty every emptyDir of pod ``index`` (keeping the directories the plan maps its mounts to)."""
    root = pod_volumes_dir(job_dir, index)
    if not root.is_dir():
        return
    for volume in root.iterdir():
        shutil.rmtree(volume, ignore_errors=True)
        volume.mkdir()


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
    shared_cache = float(meta.get("shared_cache") or 0.0)
    return LocalJobController(job_dir, meta["objects"], Path(meta["shared"]), shared_cache).run()


# The backend (runs in the CLI) -----------------------------------------------------------------------------


def process_alive(pid: int, job_root: Path | None = None) -> bool:
    """True if pid is a live (not zombie) controller, of the job at ``job_root`` when given: a stale
    controller.pid may name another job's controller by now. (controller.pid is written after the exec.)"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    ours = any(b"jobctl" in part for part in cmdline) and (job_root is None or str(job_root).encode() in cmdline)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and ours


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "run":
        print("usage: python -m jobctl.backends.local.controller run JOB_DIR", file=sys.stderr)
        return 2
    return run_controller(Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
