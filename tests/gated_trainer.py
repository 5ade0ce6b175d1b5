"""``python tests/gated_trainer.py GATE_DIR PLAN TRAINER_ARGS...``: trainer.train with one checkpoint write the test
controls, so a save is "in flight" for exactly as long as the test wants (tests only; the trainer has no hook).

PLAN is ``block:N`` or ``enospc:N`` and acts on the N-th ``mindspore.save_checkpoint`` call:
- ``block``: MindSpore writes the temporary in full, then the call touches ``GATE_DIR/blocked-N`` and blocks (before
  the fsync and the rename) until ``GATE_DIR/release`` exists. A kill meanwhile leaves the temporary behind.
- ``enospc``: a 1000-byte temporary is written and the call fails as a full volume does (ENOSPC).
"""

from __future__ import annotations

import errno
import sys
import time
from pathlib import Path
from typing import Any

from trainer.cpu import apply_cpu_fast_path

apply_cpu_fast_path("CPU", True)  # before MindSpore loads, as trainer.train does

import mindspore as ms  # noqa: E402

from trainer.train import main  # noqa: E402

GATE, PLAN, ARGV = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
KIND, _, NTH = PLAN.partition(":")
real_save = ms.save_checkpoint
calls = 0


def gated_save(save_obj: Any, ckpt_file_name: str, **kwargs: Any) -> None:
    global calls
    calls += 1
    if calls != int(NTH):
        return real_save(save_obj, ckpt_file_name, **kwargs)
    if KIND == "enospc":
        Path(ckpt_file_name).with_suffix(".tmp").write_bytes(b"\x0a" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")
    real_save(save_obj, ckpt_file_name, **kwargs)
    (GATE / f"blocked-{calls}").touch()
    while not (GATE / "release").exists():  # the slow volume: the test decides when the write may end
        time.sleep(0.02)
    return None


ms.save_checkpoint = gated_save  # trainer.checkpoint calls it as ms.save_checkpoint
sys.exit(main(ARGV))
