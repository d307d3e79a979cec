"""Does pruning pay? The same sweep with and without the median pruner, best accuracy and CPU time.

    python -m qd.bench pruning --trials 20 --steps 150 --data real_sample
    python -m qd.bench pruning --model densenet      # its preset, densenet_lr

Both sweeps run the model's preset (PRESETS) from the same sampler seed, each in a fresh study, as
subprocesses; CPU time is that of the sweep process and all its children. Each carries the load other
processes put on the machine (qd.bench.load): a sweep run under load is run again (--retries). A sweep that
fails is one line: its last line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from qd import ROOT
from qd.core.errors import QDError, exit_on_user_error

TARGET_CPU_RATIO, TARGET_ACC_GAP = 0.60, 0.005
PRESETS = {"densenet": "densenet_lr", "convnet": "convnet", "bestmodel": "bestmodel"}  # each model's sweeps/ preset


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(workdir: Path, args: argparse.Namespace, pruning: str) -> dict:
    """One sweep, in a fresh folder of `workdir`; returns its best dev accuracy, CPU seconds and trial states."""
    workdir = Path(tempfile.mkdtemp(dir=workdir))
    storage = f"sqlite:///{workdir}/bench.db"
    command = [
        sys.executable, str(ROOT / f"main_{args.model}.py"), f"+sweep={PRESETS[args.model]}", f"data={args.data}",
        f"hydra.sweeper.n_trials={args.trials}", f"train.steps={args.steps}", f"train.eval_every={args.eval_every}",
        f"hydra.sweeper.study_name={pruning}", f"hydra.sweeper.storage={storage}", f"pruning.name={pruning}",
        f"hydra.sweep.dir={workdir}/{pruning}", f"hydra.sweeper.sampler.seed={args.seed}",
    ]  # fmt: skip
    if pruning == "median":
        command += [f"++pruning.n_startup_trials={args.startup}", f"++pruning.n_warmup_steps={args.warmup}"]
    before = children_cpu()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu = children_cpu() - before
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise QDError(
            f"the {args.model} sweep with pruner {pruning} failed (exit {result.returncode}): "
            f"{last.removeprefix('error: ')}"
        )
    from qd.experiment.lean_optuna import optuna

    study = optuna.load_study(study_name=pruning, storage=storage)
    states = [t.state.name for t in study.trials]
    return {
        "best": study.best_value,
        "cpu": cpu,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.bench pruning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bestmodel", choices=list(PRESETS),
                        help="whose preset the sweeps run (bestmodel; densenet's is densenet_lr)")  # fmt: skip
    parser.add_argument("--data", default="real_sample", help="a data config: course, synthetic, real_sample")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=15)
    parser.add_argument("--startup", type=int, default=5, help="trials the median pruner lets finish first")
    parser.add_argument("--warmup", type=int, default=45, help="steps before a trial may be pruned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retries", type=int, default=1, help="reruns of a sweep taken under load (default 1)")
    args = parser.parse_args(argv)
    from qd.bench.load import LOAD_NOTE, least_disturbed  # torch: after the arguments, so that --help answers at once

    runs = {}
    with exit_on_user_error(), tempfile.TemporaryDirectory(prefix="qd-pruning-") as tmp:
        for mode in ("none", "median"):
            result, load = least_disturbed(functools.partial(run_sweep, Path(tmp), args, mode), args.retries)
            runs[mode] = {**result, "load": load}
    print(f"{args.trials}-trial {args.model} sweep, {args.steps} steps a trial, data={args.data}, seed {args.seed}\n")
    print(pruning_table(runs))
    print(LOAD_NOTE)
    gap = runs["none"]["best"] - runs["median"]["best"]
    ratio = runs["median"]["cpu"] / runs["none"]["cpu"]
    ok = gap <= TARGET_ACC_GAP and ratio <= TARGET_CPU_RATIO
    print(f"\nbest accuracy {100 * gap:+.2f} points behind, CPU ratio {ratio:.2f}: "
          f"{'meets' if ok else 'misses'} the target (within 0.5 points in at most 60% of the CPU time)")  # fmt: skip


def pruning_table(runs: dict[str, dict]) -> str:
    """Markdown: each sweep's trial states, best dev accuracy, CPU time (against the sweep without a pruner) and
    load."""
    from qd.bench.load import load_cell

    rows = ["| pruner | complete | pruned | failed | best dev acc | CPU s | CPU vs none | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for mode, r in runs.items():
        rows.append(f"| {mode} | {r['complete']} | {r['pruned']} | {r['failed']} | {r['best']:.4f} | {r['cpu']:.0f} "
                    f"| {r['cpu'] / runs['none']['cpu']:.2f} | {load_cell([r['load']])} |")  # fmt: skip
    return "\n".join(rows)
