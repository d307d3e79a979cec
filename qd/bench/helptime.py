"""How long each command takes to answer --help: the seconds a user waits before reading its options.

    python -m qd.bench helptime              # every command of commands(), 5 tries each: the median
    python -m qd.bench helptime --repeat 9

Each command runs as a user runs it, a fresh `python ... --help` from the repository's root, its output thrown
away; its row carries the load other processes put on the machine (qd.bench.load): a row timed under load is
timed again (--retries). The target is TARGET_S on an idle machine: arguments are parsed before heavy imports
(torch, pandas, matplotlib, optuna).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time

from qd import ROOT

TARGET_S = 1.0


def commands() -> list[list[str]]:
    """Every command line timed, as arguments to python: `-m qd <command> --help`, `-m qd.bench <benchmark> --help`."""
    from qd.__main__ import COMMANDS
    from qd.bench.__main__ import BENCHMARKS

    return [["-m", "qd", name, "--help"] for name in COMMANDS] + [
        ["-m", "qd.bench", name, "--help"] for name in BENCHMARKS
    ]


def seconds(argv: list[str], repeat: int) -> float:
    """The median wall time of `repeat` runs of `python <argv>`; a run that fails is one line."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise SystemExit(f"error: python {' '.join(argv)} exited {result.returncode}: {last}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.bench helptime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command; the median counts (default 5)")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a row timed under load (default 1)")
    args = parser.parse_args(argv)
    from qd.bench.load import LOAD_NOTE, least_disturbed, load_cell  # torch: after the arguments, as it asks of all

    print(f"| command | seconds (median of {args.repeat}) | load |\n| --- | --- | --- |")
    slow = []
    for command in commands():
        wall, load = least_disturbed(functools.partial(seconds, command, args.repeat), args.retries)
        shown = f"python {' '.join(command)}"
        print(f"| `{shown}` | {wall:.2f} | {load_cell([load])} |", flush=True)
        if wall > TARGET_S:
            slow.append(shown)
    print(LOAD_NOTE)
    print(f"\n{len(slow)} of {len(commands())} over {TARGET_S:g} s" + (f": {', '.join(slow)}" if slow else ""))
