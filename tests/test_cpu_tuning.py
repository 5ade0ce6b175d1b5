"""The CPU speed-ups change speed, not numbers: resnext_tiny's logits and training losses with and without each
adopted change (the oneDNN ISA cap, BN folding for inference) agree to 1e-5 (relative), each in its own process
(the ISA is fixed once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.cpu import FAST_ISA, ISA_VAR, CpuTuning

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "cpu_logits.py"


def run(out: Path, *args: str, isa: str | None = FAST_ISA) -> dict[str, np.ndarray]:
    env = {k: v for k, v in os.environ.items() if k != ISA_VAR}
    if isa is not None:
        env[ISA_VAR] = isa
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, str(HELPER), str(out), *args], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


def assert_close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for key in ("logits", "losses"):
        scale = np.abs(b[key]).max()
        assert scale > 0.1
        assert np.abs(a[key] - b[key]).max() <= 1e-5 * scale, key


def test_isa_cap_changes_no_result(tmp_path: Path) -> None:
    capped = run(tmp_path / "avx2.npz")
    default = run(tmp_path / "default.npz", isa=None)
    assert_close(capped, default)


def test_bn_folding_changes_no_logit(tmp_path: Path) -> None:
    folded = run(tmp_path / "fold.npz", "--fold")
    plain = run(tmp_path / "plain.npz")
    assert_close(folded, plain)


def test_unknown_tuning_field_is_named() -> None:
    with pytest.raises(ValueError, match="jit_lvl"):
        CpuTuning.from_json('{"jit_lvl": "O0"}')
