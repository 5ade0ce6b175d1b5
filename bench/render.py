"""Render + strict validation time per job size (`python -m bench.render`; part of `make bench`).

Target: 1024 devices in under 1 s. The first call pays for loading the version's schemas (once per process, as in
one `jobctl submit`); the table shows the median of repeated runs after that.
"""

from __future__ import annotations

import statistics
import sys
import time

from jobctl.render import DEFAULT_KUBE_VERSION, render
from jobctl.spec import validate_spec
from jobctl.validate import validate_objects

SIZES = (8, 64, 512, 1024, 4096)
REPEATS = 20
TARGET_SECONDS = 1.0


def render_and_validate(devices: int, version: str) -> float:
    start = time.perf_counter()
    spec = validate_spec({"name": f"bench-{devices}", "platform": "ascend", "devices": devices})
    validate_objects(render(spec, version), version)
    return time.perf_counter() - start


def main() -> int:
    version = DEFAULT_KUBE_VERSION
    print(f"render + strict validation (Kubernetes {version}, Ascend, 8 devices per pod)")
    first = render_and_validate(SIZES[0], version)
    print(f"first call, loading the schemas: {first * 1000:.1f} ms")
    print(f"{'devices':>8} {'pods':>6} {'median ms':>10}")
    timings = {}
    for devices in SIZES:
        timings[devices] = statistics.median(render_and_validate(devices, version) for _ in range(REPEATS))
        print(f"{devices:>8} {devices // 8:>6} {timings[devices] * 1000:>10.1f}")
    worst_1024 = first + timings[1024]
    met = worst_1024 < TARGET_SECONDS
    print(
        f"target: 1024 devices < {TARGET_SECONDS:g} s including the schema load: {worst_1024:.3f} s, "
        f"{'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
