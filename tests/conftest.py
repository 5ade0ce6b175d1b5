"""Test-wide settings.

MindSpore's bundled oneDNN reads ONEDNN_MAX_CPU_ISA once, when it loads: capped at AVX2 it runs k>1 convolutions
through its gemm path (about 6x faster on this kind of CPU, identical results). Set it before any test imports
MindSpore, and let subprocesses inherit it. A value the caller set wins.
"""

import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ logging: errors only, so test output stays readable
