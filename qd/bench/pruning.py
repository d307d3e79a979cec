"""Does pruning pay? The same sweep without a pruner and with each pruner, from several sampler seeds.

    python -m qd.bench pruning --trials 20 --steps 150 --data real_sample --seeds 3
    python -m qd.bench pruning --model densenet --pruners median      # its preset, densenet_lr; one pruner

Every sweep runs the model's preset (PRESETS) from one sampler seed, each in a fresh study, as subprocesses; CPU
time is that of the sweep process and all its children. Each carries the load other processes put on the
machine (qd.bench.load): a sweep run under load is run again (--retries). A pruner meets the target when,
summed over the seeds, its sweeps took at most 60% of the CPU time of the sweeps without one, and its best dev
accuracy lies on average within 0.5 points of theirs. A sweep that fails is one line: its last line on stderr.
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


def run_sweep(workdir: Path, args: argparse.Namespace, seed: int, pruning: str) -> dict:
    """One sweep, in a fresh folder of `workdir`; returns its best dev accuracy, CPU seconds and trial states."""
    workdir = Path(tempfile.mkdtemp(dir=workdir))
    storage = f"sqlite:///{workdir}/bench.db"
    command = [
        sys.executable, str(ROOT / f"main_{args.model}.py"), f"+sweep={PRESETS[args.model]}", f"data={args.data}",
        f"hydra.sweeper.n_trials={args.trials}", f"train.steps={args.steps}", f"train.eval_every={args.eval_every}",
        f"hydra.sweeper.study_name={pruning}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={workdir}/{pruning}", f"hydra.sweeper.sampler.seed={seed}", *PRUNERS[pruning](args),
    ]  # fmt: skip
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
    return {"best": study.best_value, "cpu": cpu, "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL")}  # fmt: skip


# Each pruner (conf/pruning/) at the bench's scale: the median pruner waits for `--startup` trials and `--warmup`
# steps; successive halving and Hyperband judge from the first evaluation (train.eval_every, `--eval-every`) to the
# last step.
PRUNERS = {
    "none": lambda args: ["pruning=none"],
    "median": lambda args: [
        "pruning=median",
        f"pruning.n_startup_trials={args.startup}",
        f"pruning.n_warmup_steps={args.warmup}",
    ],
    "halving": lambda args: ["pruning=halving"],
    "hyperband": lambda args: ["pruning=hyperband"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.bench pruning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bestmodel", choices=list(PRESETS),
                        help="whose preset the sweeps run (bestmodel; densenet's is densenet_lr)")  # fmt: skip
    parser.add_argument("--data", default="real_sample", help="a data config: course, synthetic, real_sample")
    parser.add_argument("--pruners", type=pruner_list, default=["median", "halving", "hyperband"],
                        help="comma-separated, each against no pruner (default median,halving,hyperband)")  # fmt: skip
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=15)
    parser.add_argument("--startup", type=int, default=5, help="trials the median pruner lets finish first")
    parser.add_argument("--warmup", type=int, default=45, help="steps before the median pruner may prune")
    parser.add_argument("--seeds", type=int, default=3, help="sweeps of each pruner, one a sampler seed from 0")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a sweep taken under load (default 1)")
    args = parser.parse_args(argv)
    from qd.bench.load import LOAD_NOTE, least_disturbed  # torch: after the arguments, so that --help answers at once

    runs: dict[str, list[dict]] = {mode: [] for mode in ("none", *args.pruners)}
    total = args.seeds * len(runs)
    with exit_on_user_error(), tempfile.TemporaryDirectory(prefix="qd-pruning-") as tmp:
        for seed in range(args.seeds):
            for mode in runs:
                result, load = least_disturbed(functools.partial(run_sweep, Path(tmp), args, seed, mode), args.retries)
                runs[mode].append({**result, "seed": seed, "load": load})
                done = sum(map(len, runs.values()))
                print(f"sweep {done} of {total} (seed {seed}, {mode}): best {result['best']:.4f}, {result['cpu']:.0f} "
                      "CPU s", file=sys.stderr, flush=True)  # fmt: skip
    print(f"{args.trials}-trial {args.model} sweeps, {args.steps} steps a trial, evaluated every {args.eval_every}, "
          f"data={args.data}, seeds 0 to {args.seeds - 1}\n")  # fmt: skip
    print(pruning_table(runs))
    print(LOAD_NOTE)
    print()
    for line in verdicts(runs):
        print(line)


def pruner_list(text: str) -> list[str]:
    pruners = [p.strip() for p in text.split(",") if p.strip()]
    if not pruners or set(pruners) - (set(PRUNERS) - {"none"}):
        raise argparse.ArgumentTypeError(f"got {text!r}; expected a comma-separated list of median, halving, hyperband")
    return pruners


def pruning_table(runs: dict[str, list[dict]]) -> str:
    """Markdown: a row a sweep, by seed: its trial states, best dev accuracy, CPU time (against the sweep of the
    same seed without a pruner) and load."""
    from qd.bench.load import load_cell

    rows = ["| seed | pruner | complete | pruned | failed | best dev acc | CPU s | CPU vs none | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for i, base in enumerate(runs["none"]):
        for mode, sweeps in runs.items():
            r = sweeps[i]
            rows.append(f"| {r['seed']} | {mode} | {r['complete']} | {r['pruned']} | {r['failed']} | {r['best']:.4f} | "
                        f"{r['cpu']:.0f} | {r['cpu'] / base['cpu']:.2f} | {load_cell([r['load']])} |")  # fmt: skip
    return "\n".join(rows)


def verdicts(runs: dict[str, list[dict]]) -> list[str]:
    """A line a pruner: its mean gap to the unpruned best and its CPU ratio over the seeds, against the target."""
    lines, base = [], runs["none"]
    for mode, sweeps in runs.items():
        if mode == "none":
            continue
        gap = sum(b["best"] - r["best"] for b, r in zip(base, sweeps, strict=True)) / len(base)
        ratio = sum(r["cpu"] for r in sweeps) / sum(b["cpu"] for b in base)
        ok = gap <= TARGET_ACC_GAP and ratio <= TARGET_CPU_RATIO
        verdict = "meets" if ok else "misses"
        lines.append(f"{mode}: best accuracy {100 * gap:+.2f} points behind on average, CPU ratio {ratio:.2f}: "
                     f"{verdict} the target (within 0.5 points in at most 60% of the CPU)")  # fmt: skip
    return lines
