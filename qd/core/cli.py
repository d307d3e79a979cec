"""The course command line of every main_<model>.py: `--mode train|predict` and the course's flags.

It needs only torch and numpy. In the repository, main_<model>.py sends any other arguments (Hydra
overrides) to the Hydra app instead (qd/main.py); in code.zip, main_<model>.py is this alone.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

from qd.core.defaults import DEFAULTS
from qd.core.errors import FLAG_KEYS, disk_error, disk_errors, exit_on_user_error
from qd.core.fsutil import atomic_path

COURSE_FLAGS = ("--mode", "--weights", "--predictionsFile", *FLAG_KEYS)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a mistake told in one line naming the flag, not after the usage (--help shows that)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def course_parser(model: str) -> argparse.ArgumentParser:
    defaults = DEFAULTS[model]
    p = OneLineParser(
        prog=f"main_{model}.py",
        description=f"Train or apply the {model} classifier. Hydra overrides work too: see --help without --mode.",
    )
    p.add_argument("--mode", required=True, choices=("train", "predict"))
    p.add_argument("--LR", type=float, help="learning rate (required to train)")
    p.add_argument("--bs", type=int, help="batch size (required to train)")
    p.add_argument("--epochs", type=int, help="number of optimisation STEPS (required to train)")
    p.add_argument("--weights", help="a .pt checkpoint (required to predict)")
    p.add_argument("--predictionsFile", help="where predictions go (required to predict)")
    for flag in ("--dataDir", "--logDir", "--modelSaveDir"):
        section, key = FLAG_KEYS[flag].split(".")
        p.add_argument(flag, default=defaults[section][key], help=f"default: {defaults[section][key]}")
    return p


def is_course_command(argv: list[str]) -> bool:
    """Whether `argv` is for the course command line (no arguments, or any course flag)."""
    return not argv or any(a.split("=")[0] in COURSE_FLAGS for a in argv)


def course_overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides the course flags given stand for, e.g. `optimizer.lr=0.001`."""
    given = {key: getattr(args, flag[2:]) for flag, key in FLAG_KEYS.items()}
    return [f"{key}={value}" for key, value in given.items() if value is not None]


def course_config(model: str, args: argparse.Namespace) -> dict:
    """The config the course flags select: the frozen defaults of conf/<model>.yaml plus the flags."""
    cfg = copy.deepcopy(DEFAULTS[model])
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag[2:])
        if value is not None:
            section, name = key.split(".")
            cfg[section][name] = value
    return cfg


def unique_stem(folders: list[Path], model: str) -> str:
    """`<YYYYmmddHHMM>_<model>`, with a counter if a run this minute already used the name."""
    stamp = time.strftime("%Y%m%d%H%M")
    stem, n = f"{stamp}_{model}", 1
    while any(list(folder.glob(f"{stem}.*")) for folder in folders):
        n += 1
        stem = f"{stamp}_{model}_{n}"
    return stem


def run_train(model: str, args: argparse.Namespace) -> dict:
    """Train with the course flags: the dated log and checkpoint, the run's record beside the checkpoint
    (`<stem>.json`), and the checkpoint copied to `<model>.pt`, which run.sh's predictions read."""
    from qd.core.job import run_job

    cfg = course_config(model, args)
    log_dir, model_dir = Path(cfg["paths"]["log_dir"]), Path(cfg["paths"]["model_dir"])
    stem = unique_stem([log_dir, model_dir], model)
    log, checkpoint, record_file = log_dir / f"{stem}.log", model_dir / f"{stem}.pt", model_dir / f"{stem}.json"
    info = {"job_dir": str(model_dir.resolve()), "run": stem, "overrides": course_overrides(args)}
    latest = model_dir / f"{model}.pt"
    try:
        record = run_job(cfg, log, checkpoint, record_file, info)
        with atomic_path(latest) as tmp:
            shutil.copyfile(checkpoint, tmp)
    except OSError as e:  # a full or forbidden disk: what this run left (each file whole), what it did not touch
        left = [str(p) for p in (log, checkpoint, record_file) if p.exists()]
        untouched = f"; {latest} is as it was" if latest.exists() else ""
        error = disk_error(e, log, f"kept {', '.join(left) or 'nothing of this run'}{untouched}")
        if error is None:
            raise
        raise error from None
    print(
        f"{model}: best dev accuracy {record['best_dev_acc']:.4f} at step {record['best_step']}; "
        f"wrote {checkpoint} (also {latest}, the run's record {stem}.json) and {log}"
    )
    return record


def parse_args(model: str, argv: list[str]) -> argparse.Namespace:
    """The course flags of `argv`; a missing flag that the mode requires is argparse's error (exit 2)."""
    parser = course_parser(model)
    args = parser.parse_args(argv)
    needed = ("LR", "bs", "epochs") if args.mode == "train" else ("weights", "predictionsFile")
    missing = [f"--{n}" for n in needed if getattr(args, n) is None]
    if missing:
        parser.error(f"the following arguments are required to {args.mode}: {', '.join(missing)}")
    return args


def main(model: str, argv: list[str] | None = None) -> None:
    """The course command line of main_<model>.py, on `argv` (default: the process's arguments)."""
    run(model, parse_args(model, sys.argv[1:] if argv is None else argv))


def run(model: str, args: argparse.Namespace) -> None:
    """Train or predict as the parsed course flags `args` say; when it is done, end the process (exit_now)."""
    with exit_on_user_error(course=True):
        if args.mode == "train":
            run_train(model, args)
        else:
            from qd.core.predict import predict_file

            with disk_errors(args.predictionsFile, "nothing written"):
                labels = predict_file(args.weights, args.dataDir, args.predictionsFile, expect=model)
            print(f"{model}: wrote {len(labels)} predictions to {args.predictionsFile}")
    exit_now()


def exit_now() -> None:
    """End the process at once, its files written and closed: flush the output and skip the interpreter's
    teardown of torch's modules, 0.3-0.7 s a course process (torch._dynamo's, which torch's optimizers import,
    the most), during which nothing is left to do."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
