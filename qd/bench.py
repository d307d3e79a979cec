"""Benchmarks on the shared real drawings.

`python -m qd.bench accuracy` runs stratified k-fold cross-validation of the course's models, the best
public design and BestModel through qd.train.train, and prints one table: the final-step model's
accuracy on each held-out fold, its mean, the mean under noise and horizontal flips, the median
training CPU time (time.process_time) and wall time per fold, and the checkpoint size.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from qd import IMAGE_SIDE, N_CLASSES
from qd.accuracies import acc_and_loss
from qd.checkpoint import read_checkpoint
from qd.data import FILES, REAL_SAMPLE, check_images, check_labels, save_npy, standardise
from qd.defaults import DEFAULTS
from qd.errors import exit_on_user_error
from qd.models import MODELS, build_model
from qd.train import train


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


def write_fold(out: Path, images: np.ndarray, labels: np.ndarray, test: np.ndarray) -> Path:
    """A course-shaped folder: the other folds train; the held-out fold is both dev and test."""
    for split, rows in (("train", ~test), ("dev", test), ("test", test)):
        image_name, label_name = FILES[split]
        save_npy(out / image_name, images[rows])
        if label_name:
            save_npy(out / label_name, labels[rows])
    return out


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


def _rebuild(path: Path) -> nn.Module:
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])
    return model


@contextmanager
def _public_registered() -> Iterator[None]:
    """Let train() build the public design while the benchmark runs."""
    MODELS["public"] = PublicNet
    try:
        yield
    finally:
        del MODELS["public"]


def run_fold(cfg: dict, data_dir: Path, work: Path, views: dict[str, torch.Tensor], labels: np.ndarray) -> dict:
    """Train on one fold through qd.train.train and score the final-step model on the held-out fold."""
    cfg = copy.deepcopy(cfg)
    cfg["data"]["dir"] = str(data_dir)
    # One evaluation, after the last step: the kept checkpoint is the final model, not the fold's best.
    cfg["train"]["eval_every"] = cfg["train"]["steps"]
    start = time.process_time()
    metrics = train(cfg, work / "run.log", work / "run.pt")
    cpu = time.process_time() - start
    model = _rebuild(work / "run.pt")
    scores = {name: acc_and_loss(model, x, labels)[0] for name, x in views.items()}
    return {**scores, "cpu_s": cpu, "wall_s": metrics["train_time_s"], "bytes": metrics["checkpoint_bytes"]}


def accuracy(args: argparse.Namespace) -> None:
    images_path, labels_path = REAL_SAMPLE / "images.npy", REAL_SAMPLE / "labels.npy"
    images = check_images(np.load(images_path), images_path).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    labels = check_labels(np.load(labels_path), labels_path, len(images))
    configs = bench_configs()
    flags = {"optimizer.lr": args.lr, "train.batch_size": args.batch, "train.steps": args.steps}
    overrides = {"train.threads": args.threads, **{k: v for k, v in flags.items() if v is not None}, **args.set}
    for name in args.models:
        for key, value in overrides.items():
            section, _, option = key.partition(".")
            configs[name][section][option] = value
    fold = stratified_folds(labels, args.folds, args.seed)
    results: dict[str, list[dict]] = {m: [] for m in args.models}
    with tempfile.TemporaryDirectory() as tmp, _public_registered():
        for k in range(args.folds):
            test = fold == k
            data_dir = write_fold(Path(tmp, f"fold{k}"), images, labels, test)
            views = perturbed(images[test], seed=k)
            for name in args.models:
                work = Path(tmp, f"{name}{k}")
                results[name].append(run_fold(configs[name], data_dir, work, views, labels[test]))
                r = results[name][-1]
                print(f"fold {k + 1}/{args.folds} {name}: {r['acc']:.4f} in {r['cpu_s']:.0f} s", file=sys.stderr)
    print(f"\n{args.folds}-fold CV, seed {args.seed}, {len(labels)} real drawings; final-step models, "
          f"{args.threads} thread(s)")  # fmt: skip
    print(format_table(results, configs, args.folds))


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
    header += ["mean", "noise", "hflip", "cpu_s", "wall_s", "bytes"]
    rows = [header]
    for name, runs in results.items():
        mean = {key: statistics.fmean(r[key] for r in runs) for key in ("acc", "noise", "hflip")}
        cfg = configs[name]
        rows.append([
            name, f"{cfg['optimizer']['lr']:g}", str(cfg["train"]["batch_size"]), str(cfg["train"]["steps"]),
            *(f"{r['acc']:.4f}" for r in runs),
            *(f"{mean[key]:.4f}" for key in ("acc", "noise", "hflip")),
            *(f"{statistics.median(r[key] for r in runs):.0f}" for key in ("cpu_s", "wall_s")), f"{runs[0]['bytes']:,}",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


# Benchmarks with a module (and command line) of their own: python -m qd.bench speed|pruning ...
DELEGATED = {"speed": "qd.speed", "pruning": "qd.pruning_bench"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="python -m qd.bench",
        description=__doc__.split("\n\n")[0],
        epilog="also: speed, pruning (see --help of each)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("accuracy", help="k-fold cross-validated accuracy, CPU time and checkpoint size")
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
    p.add_argument(
        "--set",
        type=key_value,
        action="append",
        default=[],
        metavar="SECTION.OPTION=VALUE",
        help="a config override for every model benchmarked, e.g. --set model.width=24 (repeatable)",
    )
    p.set_defaults(run=accuracy)
    args = parser.parse_args(argv)
    args.set = dict(args.set)
    if unknown := set(args.models) - set(bench_configs()):
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(bench_configs())}")
    with exit_on_user_error():
        args.run(args)


if __name__ == "__main__":
    main()
