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
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import yaml
from torch import nn

from qd.bench.load import LOAD_NOTE, least_disturbed, load_cell
from qd.core.accuracies import acc_and_loss
from qd.core.checkpoint import serialized
from qd.core.data import IMAGE_SIDE, N_CLASSES, Split, standardise
from qd.core.defaults import DEFAULTS
from qd.core.errors import exit_on_user_error
from qd.core.models import MODELS
from qd.core.train import checkpoint_meta, fit
from qd.datasets.real import load_real


class PublicNet(nn.Module):
    """The best public design: two 4x4 and two 3x3 convolutions, no activations between its linears."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 4), nn.ReLU(), nn.Conv2d(8, 8, 4), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(144, 100), nn.Linear(100, N_CLASSES),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE))


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


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each image: every class split as evenly as possible over the k folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        fold[rows] = np.arange(len(rows)) % k
    return fold


def perturbed(images: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
    """Standardised held-out images: clean, with Gaussian noise of std a tenth of each image's range, flipped."""
    x = torch.from_numpy(images).float()
    spread = (x.amax(dim=(1, 2)) - x.amin(dim=(1, 2)))[:, None, None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * spread / 10
    return {
        "acc": standardise(x.numpy()),
        "noise": standardise((x + noise).numpy()),
        "hflip": standardise(images[..., ::-1]),
    }


@contextmanager
def _public_registered() -> Iterator[None]:
    """Let train() build the public design while the benchmark runs."""
    MODELS["public"] = PublicNet
    try:
        yield
    finally:
        del MODELS["public"]


def split_of(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(standardise(images), torch.from_numpy(labels))


def run_fold(cfg: dict, train_split: Split, views: dict[str, torch.Tensor], labels: np.ndarray) -> dict:
    """Train on one fold through qd.core.train.fit and score the final-step model on the held-out fold."""
    cfg = copy.deepcopy(cfg)
    # One evaluation, after the last step, on the held-out fold: the kept model is the final one, not the fold's best.
    cfg["train"]["eval_every"] = cfg["train"]["steps"]
    start = time.process_time()
    result = fit(cfg, train_split, Split(views["acc"], torch.from_numpy(labels)))
    cpu = time.process_time() - start
    scores = {name: acc_and_loss(result.model, x, labels)[0] for name, x in views.items()}
    size = len(serialized(result.model, cfg["model"], checkpoint_meta(cfg, result), cfg["train"]["half_storage"]))
    return {**scores, "cpu_s": cpu, "wall_s": result.train_time_s, "bytes": size}


def accuracy(args: argparse.Namespace) -> None:
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
    with _public_registered():
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
