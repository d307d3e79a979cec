"""`python -m qd.bench accuracy|speed|sweep|pruning|search|cuda|helptime [options]` (each with its own --help)."""

from __future__ import annotations

import importlib
import sys

from qd.core.closed_pipe import quiet_on_closed_pipe

BENCHMARKS = {
    "accuracy": ("qd.bench.accuracy", "k-fold cross-validated accuracy, CPU time and checkpoint size, real drawings"),
    "speed": ("qd.bench.speed", "speed and peak memory against the course starter"),
    "sweep": ("qd.bench.sweep", "a 16-trial sweep on 2 workers: its wall time against its trials' training"),
    "pruning": ("qd.bench.pruning", "the same sweep without a pruner and with each pruner"),
    "search": ("qd.bench.search", "a preset's sweep from 5 seeds against a reference: trials wasted, best found"),
    "cuda": ("qd.bench.cuda", "each model from one seed on the GPU (CUDA or MPS) and on the CPU: do they agree?"),
    "helptime": ("qd.bench.helptime", "how long each command takes to answer --help"),
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m qd.bench <benchmark> [options]\n\nbenchmarks:")
        print("\n".join(f"  {name:<9} {about}" for name, (_, about) in BENCHMARKS.items()))
    elif argv[0] not in BENCHMARKS:
        print(f"error: python -m qd.bench: unknown benchmark {argv[0]!r}; expected one of {', '.join(BENCHMARKS)}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    else:
        importlib.import_module(BENCHMARKS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    with quiet_on_closed_pipe():
        main(sys.argv[1:])
