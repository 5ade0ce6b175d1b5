"""Entry point of a training run: ``python -m trainer.train --data_dir DIR --platform CPU|GPU|Ascend [...]``.

Parses the config, puts the CPU fast path (``ONEDNN_MAX_CPU_ISA``) into the environment before oneDNN loads, then
runs :func:`trainer.loop.train` (read that module top to bottom: build, resume, loop, checkpoint, validate,
stop) and maps its outcome to the exit code.

Exit codes: 0 done, 2 bad input or config (nothing written), 3 a permanent failure that a restart cannot fix (a
full volume: one line on stderr, ``error: no space left on <dir> while saving <checkpoint>``; a diverged loss:
``error: loss diverged at step S ...``), 143 stopped by SIGTERM after saving, 1 other failure.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from contract.config import ConfigError, parse_args
from contract.env import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, EXIT_PERMANENT, EXIT_TERMINATED
from contract.files import DiskFullError, disk_full_cause
from contract.group import GroupError
from trainer.cpu import apply_cpu_fast_path


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = parse_args(argv, prog="python -m trainer.train")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    apply_cpu_fast_path(cfg.platform, cfg.cpu_fast_conv)  # before MindSpore is imported (by trainer.loop)

    from trainer.checkpoint import CheckpointError
    from trainer.data import DataError
    from trainer.distributed import DistributedError
    from trainer.divergence import DivergedError
    from trainer.loop import train

    try:
        state = train(cfg)
    except (ConfigError, DataError, CheckpointError, DistributedError, GroupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DiskFullError, DivergedError) as exc:  # permanent: a restart would fail the same way
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_PERMANENT
    except Exception as exc:
        full = disk_full_cause(exc)
        if full is not None:  # a full volume under another write (TensorBoard, a library): still one line
            where = Path(full.filename).parent if full.filename else "the volume"
            message = f"error: no space left on {where} ({full.strerror}); free space or use a larger volume"
            print(message, file=sys.stderr, flush=True)
            return EXIT_PERMANENT
        traceback.print_exc()
        return EXIT_FAILURE
    return EXIT_TERMINATED if state == "stopped" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
