"""How long a user waits for a command's first answer: its --help, and the refusals that need only the config.

    python -m qd.bench helptime              # every command of help_commands() and config_checks(): the median of 5
    python -m qd.bench helptime --repeat 9

Each command runs as a user runs it, a fresh `python ...` in an empty folder, its output thrown away; its row
carries the load other processes put on the machine (qd.bench.load): a row timed under load is timed again
(--retries). The targets, on an idle machine: HELP_S for --help (arguments are parsed before heavy imports: torch,
pandas, matplotlib, optuna), CHECK_S for a refusal the config alone shows (before torch, optuna and the data; the
CUDA device is torch's to say).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time

from qd import ROOT

HELP_S, CHECK_S = 1.0, 1.5
MODELS = ("densenet", "convnet", "bestmodel")


def help_commands() -> list[list[str]]:
    """Every command's --help, as arguments to python: `-m qd <command>`, `-m qd.bench <benchmark>`, main_<m>.py."""
    from qd.__main__ import COMMANDS
    from qd.bench.__main__ import BENCHMARKS

    return ([["-m", "qd", name, "--help"] for name in COMMANDS] + [["-m", "qd.bench", name, "--help"] for name in
            BENCHMARKS] + [[str(ROOT / f"main_{m}.py"), "--help"] for m in MODELS])  # fmt: skip


def config_checks() -> list[list[str]]:
    """Refusals that need only the config (exit 2), as arguments to python."""
    import torch

    main = str(ROOT / "main_densenet.py")
    checks = [[main, "+sweep=densenet_lr", "data=real_sample", "hydra.sweeper.storage=nowhere"],
              [main, "+sweep=densenet_lr", "data=real_sample", "+launcher=slurm"],
              [main, "optimizer.lr=abc"], [main, "train.stpes=50"], [main, "model=bestmodel"],
              [main, "optimizer.lr=1e-3"]]  # the last: no datasets/ here  # fmt: skip
    return checks + ([] if torch.cuda.is_available() else [[main, "data=real_sample", "train.device=cuda"]])


def seconds(argv: list[str], repeat: int, status: int) -> float:
    """The median wall time of `repeat` runs of `python <argv>` in an empty folder, each to exit `status`."""
    from qd.bench.speed import checkout_env

    env = checkout_env()
    times = []
    with tempfile.TemporaryDirectory() as empty:
        for _ in range(repeat):
            start = time.perf_counter()
            result = subprocess.run([sys.executable, *argv], cwd=empty, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)  # fmt: skip
            times.append(time.perf_counter() - start)
            if result.returncode != status:
                last = (result.stderr.strip().splitlines() or ["no message"])[-1]
                raise SystemExit(f"error: python {' '.join(argv)} exited {result.returncode}, not {status}: {last}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.bench helptime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command; the median counts (default 5)")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a row timed under load (default 1)")
    args = parser.parse_args(argv)
    from qd.bench.load import LOAD_NOTE, least_disturbed, load_cell

    rows = [(c, HELP_S, 0) for c in help_commands()] + [(c, CHECK_S, 2) for c in config_checks()]
    print(f"| command | seconds (median of {args.repeat}) | target | load |\n| --- | --- | --- | --- |")
    slow = []
    for command, target, status in rows:
        wall, load = least_disturbed(functools.partial(seconds, command, args.repeat, status), args.retries)
        shown = "python " + " ".join(a.removeprefix(f"{ROOT}/") for a in command)
        print(f"| `{shown}` | {wall:.2f} | {target:g} | {load_cell([load])} |", flush=True)
        if wall > target:
            slow.append(shown)
    print(LOAD_NOTE)
    print(f"\n{len(slow)} of {len(rows)} over their target" + (f": {', '.join(slow)}" if slow else ""))
