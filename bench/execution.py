"""Training throughput of the two execution paths: ``python -m bench.execution [--rounds N] [--batch B]``.

ResNeXt101-64x4d, batch 8, 224 px, fp32 on CPU: the trainer's own step (``trainer.execution.build_train_step``:
the recipe's parameter groups, momentum, label smoothing) in GRAPH_MODE and in PyNative with the step compiled by
``mindspore.jit``, each in a long-lived ``bench.workers ms-step`` process, one step each in turn (interleaved, so
load on the machine slows both alike). Reports img/s (median, range, per-round ratio) and the compile time of each:
the first step's time, compile included, less a steady step. One process each: no collectives (the gradient
all-reduce of 2+ ranks is timed by the end-to-end runs, not here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.cpu_speed import Worker, interleave, summary

PATHS = ("graph", "pynative")


def measure(rounds: int, batch: int, log_path: Path) -> dict[str, object]:
    workers: list[Worker] = []
    with open(log_path, "w+") as log:
        try:
            for path in PATHS:  # started one after the other: their compiles do not overlap
                args = ["ms-step", "--execution", path, "--batch", str(batch), "--warmup", "2"]
                workers.append(Worker(path, args, log))
            figures = interleave(workers, rounds)
        finally:
            for worker in workers:
                worker.close()
    result: dict[str, object] = {"batch": batch, "rounds": rounds}
    for worker in workers:
        speed = summary(figures[worker.name])
        step = batch / speed["median"]
        first = worker.first_unit_seconds or 0.0
        result[worker.name] = dict(speed, first_step_s=first, compile_s=max(first - step, 0.0))
    ratios = [p / g for g, p in zip(figures["graph"], figures["pynative"], strict=True)]
    result["pynative_over_graph"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return result


def report(result: dict[str, object]) -> str:
    lines = [f"ResNeXt101-64x4d train step, batch {result['batch']}, CPU fp32, {result['rounds']} interleaved rounds"]
    for path in PATHS:
        r = result[path]
        assert isinstance(r, dict)
        lines.append(
            f"  {path:<9} {r['median']:6.2f} img/s [{r['min']:.2f}-{r['max']:.2f}]   "
            f"compile {r['compile_s']:6.1f} s (first step {r['first_step_s']:.1f} s)"
        )
    ratio = result["pynative_over_graph"]
    assert isinstance(ratio, dict)
    lines.append(f"  pynative/graph per round: {ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.execution", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-execution-") as tmp:
        result = measure(args.rounds, args.batch, Path(tmp) / "workers.log")
    print(report(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
