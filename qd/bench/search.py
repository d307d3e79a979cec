"""Does a preset's sweep spend its trials well? Its sweep from several sampler seeds on the real drawings at the
course's scale, each against a reference on the same data.

    python -m qd.bench search                                  # densenet_lr: 5 seeds of 20 trials, a 25-point grid
    python -m qd.bench search --preset convnet --reference-trials 60
    python -m qd.bench search --steps 20 --trials 4 --seeds 2 --grid 3   # a toy's scale (the tests')

The reference for densenet_lr is a grid of its learning rate, log-spaced over the preset's range (its best trial);
for another preset, the best of one long sweep of it (--reference-trials, seed 1000). Each row is one sweep: its
trials that did not train (diverged, or not learning), its best dev accuracy after its first 5, 10 and 20 trials,
how far that after 10 lies below the reference, its CPU seconds (the sweep and all its processes) and the load
other processes put on the machine (qd.bench.load). Each sweep runs as a subprocess in a study of its own.
"""

from __future__ import annotations

import argparse
import functools
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from qd import ROOT
from qd.core.errors import QDError, exit_on_user_error

CHECKPOINTS = (5, 10, 20)  # a row's best after this many trials
TARGET_DIVERGED, TARGET_GAP, TARGET_SEEDS = 0.20, 0.01, 0.8  # densenet_lr's targets: of its trials, points, seeds


def sweep(workdir: Path, args: argparse.Namespace, name: str, extra: list[str]) -> dict:
    """One sweep of the preset (`extra` overrides added), in a fresh folder of `workdir`: its trials' outcomes and
    values in trial order, and its CPU seconds."""
    from qd.bench.pruning import PRESETS, children_cpu

    model = next(m for m, p in PRESETS.items() if p == args.preset)
    folder = Path(tempfile.mkdtemp(dir=workdir))
    storage = f"sqlite:///{folder}/bench.db"
    command = [sys.executable, str(ROOT / f"main_{model}.py"), f"+sweep={args.preset}", f"data={args.data}",
               f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={folder}/runs",
               *([f"train.steps={args.steps}", f"train.eval_every={max(1, args.steps // 10)}"] if args.steps else []),
               *(["+launcher=parallel", f"hydra.launcher.n_jobs={args.workers}"] if args.workers > 1 else []),
               *extra]  # fmt: skip
    before = children_cpu()
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu = children_cpu() - before
    if result.returncode not in (0, 1):  # 1: every trial of the sweep failed or diverged; its study tells
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise QDError(
            f"the {args.preset} sweep {name} failed (exit {result.returncode}): {last.removeprefix('error: ')}"
        )
    from qd.experiment.lean_optuna import optuna
    from qd.experiment.outcomes import INTERRUPTED, OUTCOME

    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    return {"cpu": cpu, "trials": [(t.user_attrs.get(OUTCOME, t.state.name.lower()), t.value) for t in trials
                                   if t.user_attrs.get(OUTCOME) != INTERRUPTED]}  # fmt: skip


def best_after(trials: list[tuple[str, float | None]], n: int) -> float | None:
    """The best dev accuracy of the first `n` trials that trained; None where none did."""
    values = [v for outcome, v in trials[:n] if outcome == "complete" and v is not None]
    return max(values) if values else None


def reference(workdir: Path, args: argparse.Namespace) -> tuple[str, float]:
    """What the sweeps are measured against: the grid's best (densenet_lr), or the best of a long sweep."""
    if args.preset == "densenet_lr":
        low, high = args.lr_range
        grid = [low * (high / low) ** (i / (args.grid - 1)) for i in range(args.grid)]
        choices = ", ".join(f"{lr:.6g}" for lr in grid)
        # Its points as a choice, as many trials as points: no set is drawn twice while one is left, so each runs once
        run = sweep(workdir, args, "grid", [f"optimizer.lr=choice({choices})", f"hydra.sweeper.n_trials={args.grid}"])
        what = f"the best of a {args.grid}-point log grid of optimizer.lr from {low:g} to {high:g}"
    else:
        run = sweep(workdir, args, "reference", [f"hydra.sweeper.n_trials={args.reference_trials}",
                                                 "hydra.sweeper.sampler.seed=1000"])  # fmt: skip
        what = f"the best of a {args.reference_trials}-trial sweep (seed 1000)"
    best = best_after(run["trials"], len(run["trials"]))
    if best is None:
        raise QDError(f"the reference ({what}) holds no trial that trained")
    return what, best


def row(seed: int, run: dict, ref: float, load: float) -> dict:
    trials = run["trials"]
    return {"seed": seed, "trials": len(trials), "diverged": sum(o == "diverged" for o, _ in trials),
            **{f"best@{n}": best_after(trials, n) for n in CHECKPOINTS},
            "gap": None if best_after(trials, 10) is None else ref - best_after(trials, 10),
            "cpu": run["cpu"], "load": load}  # fmt: skip


def table(rows: list[dict]) -> str:
    """Markdown: one row a seed."""
    from qd.bench.load import load_cell

    def acc(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = ["| seed | trials | did not train | best after 5 | best after 10 | best after 20 | below the reference "
             "after 10 (points) | CPU s | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        gap = "-" if r["gap"] is None else f"{100 * r['gap']:.2f}"
        lines.append(f"| {r['seed']} | {r['trials']} | {r['diverged']} | {acc(r['best@5'])} | {acc(r['best@10'])} | "
                     f"{acc(r['best@20'])} | {gap} | {r['cpu']:.0f} | {load_cell([r['load']])} |")  # fmt: skip
    return "\n".join(lines)


def verdict(rows: list[dict]) -> str:
    """Whether densenet_lr's targets are met: at most 20% of all trials did not train, and the best after 10
    trials lies within 1 point of the reference for at least 80% of the seeds (4 of 5)."""
    trials, diverged = sum(r["trials"] for r in rows), sum(r["diverged"] for r in rows)
    close = sum(r["gap"] is not None and r["gap"] <= TARGET_GAP for r in rows)
    ok = diverged <= TARGET_DIVERGED * trials and close >= math.ceil(TARGET_SEEDS * len(rows))
    return (f"{diverged} of {trials} trials did not train ({100 * diverged / max(trials, 1):.0f}%); the best after 10 "
            f"within 1 point of the reference for {close} of {len(rows)} seeds: {'meets' if ok else 'misses'} the "
            "target (at most 20% did not train, within 1 point for 4 of 5 seeds)")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.bench search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="densenet_lr", choices=["densenet_lr", "convnet", "bestmodel"])
    parser.add_argument("--data", default="real_sample", help="a data config: real_sample (default), synthetic, course")
    parser.add_argument("--seeds", type=int, default=5, help="sweeps, one a sampler seed from 0 (default 5)")
    parser.add_argument("--trials", type=int, default=20, help="trials a sweep (default 20)")
    parser.add_argument("--steps", type=int, default=0, help="steps a trial (default: the preset's, the course's)")
    parser.add_argument("--grid", type=int, default=25, help="densenet_lr: the reference grid's points (default 25)")
    parser.add_argument("--reference-trials", type=int, default=60, help="another preset: the long sweep's trials")
    parser.add_argument("--workers", type=int, default=1, help="trials in parallel (+launcher=parallel) (default 1)")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a sweep taken under load (default 1)")
    args = parser.parse_args(argv)
    from qd.bench.load import LOAD_NOTE, least_disturbed  # after the arguments, so that --help answers at once
    from qd.bench.speed import cpu_header
    from qd.core.cpu import describe_cpu

    args.lr_range = learning_rates(args.preset)
    with exit_on_user_error(), tempfile.TemporaryDirectory(prefix="qd-search-") as tmp:
        what, ref = reference(Path(tmp), args)
        rows = []
        for seed in range(args.seeds):
            seeded = [f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.n_trials={args.trials}"]
            run, load = least_disturbed(functools.partial(sweep, Path(tmp), args, f"seed{seed}", seeded), args.retries)
            rows.append(row(seed, run, ref, load))
    scale = f"{args.steps} steps a trial" if args.steps else "the course's steps"
    print(f"{args.preset}: {args.seeds} sweeps of {args.trials} trials, {scale}, data={args.data}, "
          f"{args.workers} in flight\nreference: {what}: {ref:.4f}\n")  # fmt: skip
    print(table(rows))
    print(LOAD_NOTE)
    if args.preset == "densenet_lr":
        print(f"\n{verdict(rows)}")
    print(f"\n{cpu_header(describe_cpu())}")


def learning_rates(preset: str) -> tuple[float, float] | None:
    """densenet_lr's range of the learning rate, as its preset searches it."""
    if preset != "densenet_lr":
        return None
    import yaml

    expression = yaml.safe_load((ROOT / "sweeps" / f"{preset}.yaml").read_text())["hydra"]["sweeper"]["params"]
    from qd.experiment.search import parse_overrides

    (distribution,) = parse_overrides([f"optimizer.lr={expression['optimizer.lr']}"])[0].values()
    return distribution.low, distribution.high
