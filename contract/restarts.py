"""The group's restart budget, read from the rendezvous: every attempt that ended in a failure is a restart.

In-place restarts (a trainer died, its pod lives: the launchers rejoin the next attempt) and pod replacements (a
launcher or node is gone: the replacement opens the next attempt) both start a new attempt, so counting failed
attempts counts both, the same on every pod. A stop by SIGTERM (preemption, deletion) is not a failure, nor is an
elastic group's stop to grow back (its members saved a checkpoint so that a standby pod can join).
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.env import PodEnv, Var
from contract.rendezvous import Rendezvous

SIGTERM_STOP = "stopped by SIGTERM"
GROW_STOP = "stopped to grow the group"  # an elastic group's members saved and stopped so that a standby joins
_NOT_FAILURES = (SIGTERM_STOP, GROW_STOP)
_REASON_CHARS = 300


@dataclass(frozen=True)
class RestartRecord:
    count: int  # restarts so far
    history: tuple[str, ...]  # "attempt K: why it ended", one per restart, oldest first

    @property
    def last(self) -> str | None:
        return self.history[-1] if self.history else None

    def trainer_env(self, env: PodEnv) -> dict[str, str]:
        """What each trainer reports in status.json."""
        last = self.last or ""
        return {Var.RESTARTS: str(self.count), Var.MAX_RESTARTS: str(env.max_restarts), Var.LAST_FAILURE: last}

    def spent(self, env: PodEnv) -> bool:
        return self.count > env.max_restarts

    def spent_message(self, env: PodEnv, here: str = "") -> str:
        """Every counted attempt's reason, and ``here``: what this pod saw last, should the volume have refused the
        markers that carry it to the others."""
        shown = "; ".join(self.history[-5:])
        if here and here not in shown:
            shown += f"; this pod last saw: {here[:_REASON_CHARS]}"
        return (
            f"the group failed {self.count} time(s), more than max_restarts={env.max_restarts} allows; giving up "
            f"({shown}). Fix the cause (each attempt's reason above) or raise max_restarts"
        )


def restart_record(rendezvous: Rendezvous, before: int) -> RestartRecord:
    """The restarts that led to attempt ``before`` (its earlier attempts that ended in a failure)."""
    history = []
    for attempt in range(before):
        reasons = rendezvous.failures(attempt)
        if reasons and all(any(stop in reason for stop in _NOT_FAILURES) for reason in reasons):
            continue  # preempted, deleted or grown: the trainers saved; not the group's fault
        if not reasons and rendezvous.done_pods(attempt):
            continue
        why = reasons[0] if reasons else "a pod was lost without a word (killed or its node gone)"
        history.append(f"attempt {attempt}: {why[:_REASON_CHARS]}")
    return RestartRecord(len(history), tuple(history))
