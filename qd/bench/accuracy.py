"""Accuracy on the real drawings vendored in qd/datasets/quickdraw_fruit_real.

`python -m qd.bench accuracy` runs stratified k-fold cross-validation of the course's models, the best
public design and BestModel through qd.core.train.fit, and prints one table: the final-step model's
accuracy on each held-out fold, its mean, the mean under noise and horizontal flips, the median
training CPU time (time.process_time) and wall time per fold, and the checkpoint size.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys

import yaml

from qd.bench.load import LOAD_NOTE, least_disturbed, load_cell
from qd.core.defaults import DEFAULTS
from qd.core.errors import exit_on_user_error


def _protocol(name: str, lr: float, batch_size: int, steps: int) -> dict:
    cfg = copy.deepcopy(DEFAULTS["convnet"])
    cfg["model"] = {"name": name}
    cfg["optimizer"]["lr"] = lr
    cfg["train"].update(batch_size=batch_size, steps=steps)
    return cfg


def bench_configs() -> dict[str, dict]:
    """Each benchmarked model's training config: the course's, the public design's, BestModel's defaults,
    and BestModel trained with run.sh's course line (--LR 0.01 --bs 100 --epochs 2000)."""
    densenet = copy.deepcopy(DEFAULTS["densenet"])
    densenet["train"].update(batch_size=100, steps=1500)
    run_sh = copy.deepcopy(DEFAULTS["bestmodel"])
    run_sh["optimizer"]["lr"] = 0.01
    run_sh["train"].update(batch_size=100, steps=2000)
    return {
        "densenet": densenet,
        "convnet": _protocol("convnet", 1e-3, 100, 1500),
        "public": _protocol("public", 0.01, 400, 2000),
        "bestmodel": copy.deepcopy(DEFAULTS["bestmodel"]),
        "bestmodel-run.sh": run_sh,
    }


def accuracy(args: argparse.Namespace) -> None:
    from qd.bench.folds import perturbed, public_registered, run_fold, split_of, stratified_folds
    from qd.datasets.real import load_real

    images, labels = load_real()
    configs = bench_configs()
    flags = {"optimizer.lr": args.lr, "train.batch_size": args.batch, "train.steps": args.steps}
    overrides = {"train.threads": args.threads, **{k: v for k, v in flags.items() if v is not None}, **args.set}
    for name in args.models:
        for key, value in overrides.items():
            section, _, option = key.partition(".")
            configs[name][section][option] = value
    fold = stratified_folds(labels, args.folds, args.seed)
    results: dict[str, list[dict]] = {m: [] for m in args.models}
    with public_registered():
        for k in range(args.folds):
            test = fold == k
            train_split, views = split_of(images[~test], labels[~test]), perturbed(images[test], seed=k)
            for name in args.models:
                run = functools.partial(run_fold, configs[name], train_split, views, labels[test])
                r, load = least_disturbed(run, args.retries)
                results[name].append({**r, "load": load})
                print(f"fold {k + 1}/{args.folds} {name}: {r['acc']:.4f} in {r['cpu_s']:.0f} s", file=sys.stderr)
    print(f"\n{args.folds}-fold CV, seed {args.seed}, {len(labels)} real drawings; final-step models, "
          f"{args.threads} thread(s)")  # fmt: skip
    print(format_table(results, configs, args.folds))
    print(LOAD_NOTE)


def key_value(text: str) -> tuple[str, object]:
    """`section.option=value` (value read as YAML: 24, 0.5, true, a string) for --set."""
    key, sep, value = text.partition("=")
    section, dot, option = key.partition(".")
    if not (sep and dot and option) or section not in DEFAULTS["bestmodel"]:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; expected SECTION.OPTION=VALUE with SECTION one of {', '.join(DEFAULTS['bestmodel'])}"
        )
    return key, yaml.safe_load(value)


def format_table(results: dict[str, list[dict]], configs: dict[str, dict], folds: int) -> str:
    header = ["model", "lr", "batch", "steps", *(f"fold{k + 1}" for k in range(folds))]
    header += ["mean", "noise", "hflip", "cpu_s", "wall_s", "bytes", "load"]
    rows = [header]
    for name, runs in results.items():
        mean = {key: statistics.fmean(r[key] for r in runs) for key in ("acc", "noise", "hflip")}
        cfg = configs[name]
        rows.append([
            name, f"{cfg['optimizer']['lr']:g}", str(cfg["train"]["batch_size"]), str(cfg["train"]["steps"]),
            *(f"{r['acc']:.4f}" for r in runs),
            *(f"{mean[key]:.4f}" for key in ("acc", "noise", "hflip")),
            *(f"{statistics.median(r[key] for r in runs):.0f}" for key in ("cpu_s", "wall_s")), f"{runs[0]['bytes']:,}",
            load_cell([r["load"] for r in runs]),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m qd.bench accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the fold split (default 0)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--models",
        type=lambda s: s.split(","),
        default=["densenet", "convnet", "public", "bestmodel"],
        help="some of densenet,convnet,public,bestmodel,bestmodel-run.sh (default: the first four)",
    )
    p.add_argument("--steps", type=int, help="train every model this many steps instead of its protocol's")
    p.add_argument("--lr", type=float, help="every model's learning rate instead of its protocol's")
    p.add_argument("--batch", type=int, help="every model's batch size instead of its protocol's")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    p.add_argument("--retries", type=int, default=1, help="reruns of a fold trained under load (default 1)")
    p.add_argument(
        "--set",
        type=key_value,
        action="append",
        default=[],
        metavar="SECTION.OPTION=VALUE",
        help="a config override for every model benchmarked, e.g. --set model.width=24 (repeatable)",
    )
    args = p.parse_args(argv)
    args.set = dict(args.set)
    if unknown := set(args.models) - set(bench_configs()):
        p.error(f"--models: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(bench_configs())}")
    with exit_on_user_error():
        accuracy(args)
