"""Generated datasets for the benches (trainer.data synth): the step time, not the data, is measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def synth(root: Path, *, classes: int, per_class: int, size: int, val_per_class: int | None = None) -> Path:
    """``root`` with ``train/`` and ``val/`` class folders of ``size``-px JPEGs."""
    args = ["--out", str(root), "--classes", str(classes), "--per_class", str(per_class), "--size", str(size)]
    if val_per_class is not None:
        args += ["--val_per_class", str(val_per_class)]
    subprocess.run([sys.executable, "-m", "trainer.data", "synth", *args, "--quiet"], check=True)
    return root
