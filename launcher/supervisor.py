"""Supervises one pod's local processes and turns what happens to them and to the group into an exit code.

At each group check (every GROUP_CHECK_SECONDS) it reads the rendezvous: a peer's failure marker or a newer attempt
stops the local processes at once; so does a member whose heartbeat stopped (lost: its node or launcher is gone);
and in an elastic group without some pods, a standby's fragment (or a peer's grow marker) makes the ranks save and
stop at a step boundary so that the group grows back in the next attempt.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence

from contract.env import (
    EXIT_FAILURE,
    EXIT_GROUP_CHANGED,
    EXIT_OK,
    EXIT_TERMINATED,
    FAIL_JOB_EXIT_CODES,
    PodEnv,
    Var,
    exit_code_of,
)
from contract.group import Group, format_members
from contract.rendezvous import PeerWatch, Rendezvous
from contract.restarts import GROW_STOP, SIGTERM_STOP
from launcher.heartbeat import Heartbeat
from launcher.output import Output
from launcher.processes import LocalProcess

POLL_SECONDS = 0.2
GROUP_CHECK_SECONDS = 1.0
# A grow is a planned stop with no deadline pressing (unlike preemption's stop grace): the ranks save and leave
# MindSpore's cluster, which took over 3 s on a loaded 2-core machine; killing them then turns the grow into a failure.
GROW_WAIT_SECONDS = 120.0


class StopSignal:
    """Counts SIGTERM/SIGINT; the main loop acts on it (handlers only record)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1


class PodSupervisor:
    """Starts the local processes; :meth:`run` returns the pod's exit code and sets :attr:`reason`."""

    def __init__(
        self, env: PodEnv, out: Output, rendezvous: Rendezvous, stop: StopSignal, group: Group | None = None
    ) -> None:
        self.env = env
        self.out = out
        self.rendezvous = rendezvous
        self.stop = stop
        self.group = group or Group.full(env.num_pods, env.devices_per_pod)
        self.heartbeat = Heartbeat(rendezvous)  # the caller runs the attempt inside ``with supervisor.heartbeat``
        self.procs: list[LocalProcess] = []
        self.reason = ""  # why the pod ended other than by completing: the termination message

    @property
    def ranks(self) -> list[LocalProcess]:
        return [p for p in self.procs if p.is_rank]

    @property
    def helpers(self) -> list[LocalProcess]:
        return [p for p in self.procs if not p.is_rank]

    def start(self, procs: Sequence[LocalProcess]) -> None:
        """Spawn every process first, then the output threads (a fork with threads running is unsafe)."""
        with self.heartbeat.paused():
            for proc in procs:
                proc.spawn()
                self.procs.append(proc)
        for proc in procs:
            assert proc.popen is not None
            self.out.say(f"started {proc.label} (pid {proc.popen.pid}), log {proc.log_path}")
        for proc in procs:
            proc.last_output = time.monotonic()
            proc.start_pump(self.out)

    def run(self) -> int:
        next_group_check = time.monotonic() + GROUP_CHECK_SECONDS
        peers = PeerWatch([m for m in self.group.members if m != self.env.pod_index])
        while True:
            if self.stop.count:
                return self._terminated()
            failed = self._first_failed(self.ranks)
            if failed is not None:
                return self._process_failed(failed, exit_code_of(failed.poll() or 0))
            if all(p.poll() == 0 for p in self.ranks):
                return self._completed()
            failed = self._first_failed(self.helpers)
            if failed is not None:
                return self._process_failed(failed, exit_code_of(failed.poll() or 0))
            now = time.monotonic()
            if now >= next_group_check:
                next_group_check = now + GROUP_CHECK_SECONDS
                code = self._check_group(peers)
                if code is not None:
                    return code
            idle = now - max(p.last_output for p in self.ranks)
            if idle > self.env.stall_timeout:
                return self._stalled(idle)
            time.sleep(POLL_SECONDS)

    def _check_group(self, peers: PeerWatch) -> int | None:
        """The exit code when the group is over for this pod (changed, a member lost, growing), else None."""
        growing = self._growing()
        if growing:  # before the markers: a peer's grow marker must not kill ranks that are saving
            return self._grow(growing)
        reason = self.rendezvous.group_failed()
        if reason:
            self.out.say(f"the group changed: {reason}; stopping the local processes at once")
            self.stop_now()
            return self._ended(EXIT_GROUP_CHANGED, f"the group changed: {reason}")
        lost = peers.lost(self.rendezvous.heartbeats())
        if lost:
            lost = [(pod, idle) for pod, idle in lost if pod not in self.rendezvous.done_pods()]
        if not lost:
            return None
        pod, idle = lost[0]
        message = f"pod {pod} lost: no heartbeat for {idle:.0f} s (its node or launcher is gone)"
        self.out.say(f"{message}; stopping the local processes at once")
        self.rendezvous.mark_failed(message)  # first: the other members learn it at their next check
        self.stop_now()
        return self._ended(EXIT_GROUP_CHANGED, message)

    def _growing(self) -> str:
        """Why this shrunk group should grow back (a standby's fragment, a peer's grow marker), or ""."""
        if self.group.is_full:
            return ""
        newcomers = self.rendezvous.newcomers(self.group.members, self.env.num_pods)
        if newcomers:
            return f"pod(s) {format_members(newcomers)} waiting to join"
        assert self.rendezvous.attempt is not None
        markers = self.rendezvous.failures(self.rendezvous.attempt)
        return "a peer stops the group to grow it back" if any(GROW_STOP in m for m in markers) else ""

    def _grow(self, why: str) -> int:
        """Ask the local ranks to save and stop at a step boundary (SIGTERM: they agree on the step), wait for them
        without acting on the peers' markers, and close the attempt with a grow marker (not a restart)."""
        self.out.say(
            f"{why}: asking the local ranks to save and stop at a step boundary; the group grows back to "
            f"{self.env.num_pods} pod(s) in the next attempt"
        )
        for proc in self.ranks:
            proc.signal(signal.SIGTERM)
        patience = max(self.env.stop_grace, GROW_WAIT_SECONDS)
        if not self._wait(self.ranks, patience):
            for proc in self.ranks:
                if proc.poll() is None:
                    self.out.say(f"{proc.label} did not stop within {patience:g} s; killing it")
                    proc.signal(signal.SIGKILL)
            self._wait(self.ranks, 10.0)
        if all(p.poll() == 0 for p in self.ranks):
            return self._completed()  # they had finished anyway
        failed = next((p for p in self.ranks if exit_code_of(p.poll() or 0) not in (0, EXIT_TERMINATED)), None)
        if failed is not None:  # it did not save: a failure like any other
            return self._process_failed(failed, exit_code_of(failed.poll() or 0))
        self._stop(self.helpers)
        self._flush()
        if self.stop.count:
            self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {SIGTERM_STOP}")
            return self._ended(EXIT_TERMINATED, SIGTERM_STOP)
        reason = f"{GROW_STOP} ({why})"
        self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {reason}")
        self.out.say(f"local ranks saved and stopped: {reason}")
        return self._ended(EXIT_GROUP_CHANGED, reason)

    @staticmethod
    def _first_failed(procs: Sequence[LocalProcess]) -> LocalProcess | None:
        return next((p for p in procs if (p.poll() or 0) != 0), None)

    def _ended(self, code: int, reason: str) -> int:
        self.reason = reason
        return code

    def _stalled(self, idle: float) -> int:
        message = (
            f"no output from any local rank for {idle:.0f} s ({Var.STALL_TIMEOUT}={self.env.stall_timeout:g}); "
            "a collective is probably hung (a peer died or the network is cut); stopping the group"
        )
        self.out.say(message)
        self.stop_now()
        self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {message}")
        return self._ended(EXIT_FAILURE, message)

    def _process_failed(self, proc: LocalProcess, code: int) -> int:
        if code == EXIT_TERMINATED and not self.stop.count:
            growing = self._growing()
            if growing:  # a peer asked its ranks to stop and they all agreed on the step: let the others save too
                return self._grow(growing)
            self.out.say(f"{proc.label} stopped (exit 143) without this pod being signalled: a peer stopped the group")
            self.stop_now()
            return self._ended(EXIT_GROUP_CHANGED, f"{proc.label} was stopped by a peer")
        self.out.say(f"{proc.label} exited with code {code}; stopping the other local processes at once")
        self.stop_now()
        reason = proc.describe_exit(code)
        self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {reason}")
        if code in FAIL_JOB_EXIT_CODES:  # bad input, a full volume, a diverged loss: the pod passes it on as is
            return self._ended(code, reason)
        passed_on = 0 < code < 256 and code not in (EXIT_GROUP_CHANGED, EXIT_TERMINATED)
        return self._ended(code if passed_on else EXIT_FAILURE, reason)

    def _completed(self) -> int:
        # The scheduler exits once every worker, on every pod, has finalised; the peers may still be finishing.
        patience = self.env.rendezvous_timeout
        self._wait(self.helpers, patience, interruptible=True)
        for proc in self.helpers:
            if proc.poll() is None:
                self.out.say(f"{proc.label} still running {patience:g} s after the workers; stopping it")
        self._stop(self.helpers)
        self.rendezvous.mark_done()
        self._flush()
        self.out.say(f"all {len(self.ranks)} local rank(s) finished")
        return EXIT_OK

    def _terminated(self) -> int:
        """SIGTERM: the trainers save and exit 143; a second signal kills them."""
        self.out.say("got SIGTERM: asking the local ranks to save and stop (a second signal kills them)")
        for proc in self.ranks:
            proc.signal(signal.SIGTERM)
        killed = False
        while any(p.poll() is None for p in self.ranks):
            if self.stop.count > 1 and not killed:
                self.out.say("second signal: killing the local ranks")
                for proc in self.ranks:
                    proc.signal(signal.SIGKILL)
                killed = True
            time.sleep(POLL_SECONDS)
        if all(p.poll() == 0 for p in self.ranks):
            return self._completed()  # they had finished anyway
        codes = {p.label: exit_code_of(p.poll() or 0) for p in self.ranks}
        self._stop(self.helpers)
        self.rendezvous.mark_failed(f"pod {self.env.pod_index}: {SIGTERM_STOP}")
        self._flush()
        self.out.say(f"local ranks stopped: {codes}")
        return self._ended(EXIT_TERMINATED, SIGTERM_STOP)

    def stop_now(self) -> None:
        """SIGKILL every local process: a group that lost a member has nothing to save, and ranks stuck in a
        collective with the dead peer would never act on SIGTERM (the grace is for preemption, where they save)."""
        for proc in self.procs:
            proc.signal(signal.SIGKILL)
        self._wait(self.procs, 10.0)
        self._flush()

    def _stop(self, procs: Sequence[LocalProcess]) -> None:
        for proc in procs:
            proc.signal(signal.SIGTERM)
        if not self._wait(procs, self.env.stop_grace):
            for proc in procs:
                if proc.poll() is None:
                    self.out.say(f"{proc.label} did not stop within {self.env.stop_grace:g} s; killing it")
                    proc.signal(signal.SIGKILL)
            self._wait(procs, 10.0)

    def _wait(self, procs: Sequence[LocalProcess], seconds: float, interruptible: bool = False) -> bool:
        """True when all have exited; False after ``seconds`` (or at a SIGTERM, if ``interruptible``)."""
        deadline = time.monotonic() + seconds
        while any(p.poll() is None for p in procs):
            if time.monotonic() >= deadline or (interruptible and self.stop.count):
                return False
            time.sleep(POLL_SECONDS / 2)
        return True

    def _flush(self) -> None:
        """Let the output threads copy what is left (bounded: a grandchild may hold the pipe open)."""
        for proc in self.procs:
            if proc.pump is not None:
                proc.pump.join(timeout=2.0)
