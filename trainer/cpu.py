"""The CPU fast path: cap oneDNN at AVX2 so k>1 convolutions use its gemm kernels (pure Python).

MindSpore's bundled oneDNN runs grouped/k>1 convolutions on NCHW through its reference kernel on AVX-512
machines; with ``ONEDNN_MAX_CPU_ISA=AVX2`` they go to ``gemm:jit`` instead, ~6x faster with identical results
(``shared/reference/cpu-convolution.md``). oneDNN reads the variable once, when MindSpore loads it, so this must
run before ``import mindspore``.
"""

from __future__ import annotations

import os
import sys

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
