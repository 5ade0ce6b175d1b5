"""A diverged run (pure Python): the loss NaN or infinite for ``diverge_steps`` consecutive steps stops the run as
failed, since a restart from the last checkpoint would diverge the same way (``python -m trainer.train`` exits
EXIT_PERMANENT, so the Job fails instead of restarting). Mature trainers stop early the same way."""

from __future__ import annotations

import math


class DivergedError(RuntimeError):
    """The loss was not finite for ``diverge_steps`` consecutive steps: a restart would diverge again."""


class DivergenceGuard:
    """Counts consecutive steps whose loss is NaN or infinite; at ``limit`` the run stops as failed. A sink chunk
    reports only its last loss, so a non-finite one counts the whole chunk."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bad_steps = 0
        self.first_bad: int | None = None  # the first step of the current non-finite run

    def check(self, loss: float, step: int, count: int, lr: float) -> None:
        if math.isfinite(loss):
            self.bad_steps, self.first_bad = 0, None
            return
        if self.first_bad is None:
            self.first_bad = step - count + 1
        self.bad_steps += count
        if self.bad_steps >= self.limit:
            raise DivergedError(
                f"loss diverged at step {self.first_bad}: {loss} for {self.bad_steps} consecutive step(s) "
                f"(diverge_steps={self.limit}); lower lr (now {lr:g}) or check the data, then resubmit"
            )
