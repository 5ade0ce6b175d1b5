"""The CPU fast path: cap oneDNN at AVX2 so k>1 convolutions use its gemm kernels (pure Python).

MindSpore's bundled oneDNN runs grouped/k>1 convolutions on NCHW through its reference kernel on AVX-512
machines; with ``ONEDNN_MAX_CPU_ISA=AVX2`` they go to ``gemm:jit`` instead, ~6x faster with identical results
(``shared/reference/cpu-convolution.md``). oneDNN reads the variable once, when MindSpore loads it, so this must
run before ``import mindspore``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

ISA_VAR = "ONEDNN_MAX_CPU_ISA"
FAST_ISA = "AVX2"


def apply_cpu_fast_path(platform: str, enabled: bool) -> bool:
    """Set ONEDNN_MAX_CPU_ISA=AVX2 for a CPU run unless the user set it; True if the fast path is in effect."""
    if platform != "CPU" or not enabled:
        return False
    if ISA_VAR not in os.environ:
        if "mindspore" in sys.modules:
            raise RuntimeError(f"{ISA_VAR} must be set before mindspore is imported; call apply_cpu_fast_path first")
        os.environ[ISA_VAR] = FAST_ISA
    return os.environ[ISA_VAR].upper() == FAST_ISA


@dataclass(frozen=True)
class CpuTuning:
    """MindSpore runtime settings to try on CPU (``None``: MindSpore's own default), A/B-tested with
    ``python -m bench.cpu_speed --variant NAME=JSON``. None of them beat MindSpore's defaults on the 2-core bench
    machine (README, CPU speed), so the trainer applies none; the fast path above is the adopted CPU default.
    """

    jit_level: str | None = None  # GRAPH-mode compile level, "O0" or "O1"
    op_threads: int | None = None  # CPU kernel threads (MindSpore's default is 25, capped by the cores)
    bind_cores: bool = False  # pin the runtime's threads to cores

    @classmethod
    def from_json(cls, text: str) -> CpuTuning:
        """Fields from a JSON object, e.g. ``{"jit_level": "O0"}`` (the bench's variants)."""
        values = json.loads(text or "{}")
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown CPU tuning field(s) {', '.join(unknown)}; known: {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**values)


def apply_cpu_tuning(tuning: CpuTuning) -> None:
    """Apply ``tuning`` once, after ``import mindspore`` and before the first graph is built."""
    import mindspore as ms

    if tuning.jit_level is not None:
        ms.set_context(jit_config={"jit_level": tuning.jit_level})
    if tuning.op_threads is not None:
        ms.device_context.cpu.op_tuning.threads_num(tuning.op_threads)
    if tuning.bind_cores:
        ms.runtime.set_cpu_affinity(True)
