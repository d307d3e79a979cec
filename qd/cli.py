"""The course command line of every main_<model>.py, and the switch to Hydra overrides.

Course flags (`--mode train --LR 1e-3 --bs 64 --epochs 500`) need only torch and numpy; any other
arguments (`optimizer.lr=1e-3`, `-m +sweep=densenet_lr`, `--cfg job`, `--help`) go to Hydra.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path

from qd.defaults import DEFAULTS
from qd.errors import QDError, exit_on_user_error
from qd.fsutil import atomic_path

# Course flag -> (config section, key).
FLAG_KEYS = {
    "LR": ("optimizer", "lr"),
    "bs": ("train", "batch_size"),
    "epochs": ("train", "steps"),
    "dataDir": ("data", "dir"),
    "logDir": ("paths", "log_dir"),
    "modelSaveDir": ("paths", "model_dir"),
}
COURSE_FLAGS = ("--mode", "--weights", "--predictionsFile", *(f"--{f}" for f in FLAG_KEYS))


def course_parser(model: str) -> argparse.ArgumentParser:
    defaults = DEFAULTS[model]
    p = argparse.ArgumentParser(
        prog=f"main_{model}.py",
        description=f"Train or apply the {model} classifier. Hydra overrides work too: see --help without --mode.",
    )
    p.add_argument("--mode", required=True, choices=("train", "predict"))
    p.add_argument("--LR", type=float, help="learning rate (required to train)")
    p.add_argument("--bs", type=int, help="batch size (required to train)")
    p.add_argument("--epochs", type=int, help="number of optimisation STEPS (required to train)")
    p.add_argument("--weights", help="a .pt checkpoint (required to predict)")
    p.add_argument("--predictionsFile", help="where predictions go (required to predict)")
    for flag in ("dataDir", "logDir", "modelSaveDir"):
        section, key = FLAG_KEYS[flag]
        p.add_argument(f"--{flag}", default=defaults[section][key], help=f"default: {defaults[section][key]}")
    return p


def course_config(model: str, args: argparse.Namespace) -> dict:
    """The config the course flags select: the frozen defaults of conf/<model>.yaml plus the flags."""
    cfg = copy.deepcopy(DEFAULTS[model])
    for flag, (section, key) in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            cfg[section][key] = value
    return cfg


def unique_stem(folders: list[Path], model: str) -> str:
    """`<YYYYmmddHHMM>_<model>`, with a counter if a run this minute already used the name."""
    stamp = time.strftime("%Y%m%d%H%M")
    stem, n = f"{stamp}_{model}", 1
    while any(list(folder.glob(f"{stem}.*")) for folder in folders):
        n += 1
        stem = f"{stamp}_{model}_{n}"
    return stem


def run_train(model: str, cfg: dict) -> dict:
    from qd.data import ensure_data
    from qd.train import train

    ensure_data(cfg["data"])
    log_dir, model_dir = Path(cfg["paths"]["log_dir"]), Path(cfg["paths"]["model_dir"])
    stem = unique_stem([log_dir, model_dir], model)
    checkpoint = model_dir / f"{stem}.pt"
    metrics = train(cfg, log_dir / f"{stem}.log", checkpoint)
    with atomic_path(model_dir / f"{model}.pt") as tmp:
        shutil.copyfile(checkpoint, tmp)
    print(
        f"{model}: best dev accuracy {metrics['best_dev_acc']:.4f} at step {metrics['best_step']}; "
        f"wrote {checkpoint} (also {model_dir / f'{model}.pt'}) and {metrics['log']}"
    )
    return metrics


def run_course(model: str, argv: list[str]) -> None:
    parser = course_parser(model)
    args = parser.parse_args(argv)
    needed = ("LR", "bs", "epochs") if args.mode == "train" else ("weights", "predictionsFile")
    missing = [f"--{n}" for n in needed if getattr(args, n) is None]
    if missing:
        parser.error(f"the following arguments are required to {args.mode}: {', '.join(missing)}")
    with exit_on_user_error():
        if args.mode == "train":
            run_train(model, course_config(model, args))
        else:
            from qd.predict import predict_file

            labels = predict_file(args.weights, args.dataDir, args.predictionsFile, expect=model)
            print(f"{model}: wrote {len(labels)} predictions to {args.predictionsFile}")


def main(model: str, argv: list[str] | None = None) -> None:
    """Entry point of main_<model>.py."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a.split("=")[0] in COURSE_FLAGS for a in argv):
        run_course(model, argv)
        return
    with exit_on_user_error():
        try:
            from qd.app import run_hydra
        except ImportError as e:
            raise QDError(f"Hydra overrides need hydra-core ({e}); course flags (--mode ...) work without it") from None
    run_hydra(model, argv)
