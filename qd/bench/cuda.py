"""Does qd train the same on a GPU? Each model from one seed on the GPU (CUDA, else Apple's MPS) and on the CPU.

    python -m qd.bench cuda              # 200 steps a model; fails when the dev accuracies differ by > 2 points

Trains densenet, convnet and bestmodel with their defaults on four fifths of the 2,400 real drawings
(a stratified split, seed 0) and scores the held-out fifth, once on each device, and prints both dev
accuracies and training times, with the load other processes put on the machine (qd.bench.load; a run under
load is run again once). Without a GPU it says so and compares nothing.
"""

from __future__ import annotations

import argparse
import copy
import functools
from typing import TYPE_CHECKING

from qd.bench.load import least_disturbed, load_cell
from qd.core.defaults import DEFAULTS

if TYPE_CHECKING:
    from qd.core.data import Split

MODELS = ("densenet", "convnet", "bestmodel")
TOLERANCE = 0.02  # largest accepted difference of dev accuracy between the devices


def run(model: str, device: str, steps: int, train: Split, dev: Split) -> tuple[float, float]:
    """Dev accuracy and training seconds of `model` trained `steps` on `device`."""
    from qd.core.train import fit

    cfg = copy.deepcopy(DEFAULTS[model])
    cfg["train"].update(steps=steps, eval_every=steps, device=device)
    result = fit(cfg, train, dev)
    return result.best_dev_acc, result.train_time_s


def compare(steps: int, device: str = "cuda") -> list[str]:
    """Print the table of each model on the CPU and on `device`; return the models whose accuracies disagree."""
    import torch

    from qd.bench.folds import split_of, stratified_folds
    from qd.datasets.real import load_real

    images, labels = load_real()
    held_out = stratified_folds(labels, 5, seed=0) == 0
    train, dev = split_of(images[~held_out], labels[~held_out]), split_of(images[held_out], labels[held_out])
    name = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"{name} against the CPU, {steps} steps a model, seed 0, {int(held_out.sum())} held-out real drawings\n")
    print(f"| model | CPU dev acc | {device} dev acc | difference (points) | CPU s | {device} s | agrees | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    disagree = []
    for model in MODELS:
        on = [least_disturbed(functools.partial(run, model, d, steps, train, dev), retries=1) for d in ("cpu", device)]
        ((cpu_acc, cpu_s), cpu_load), ((acc, seconds), load) = on
        gap = abs(acc - cpu_acc)
        if gap > TOLERANCE:
            disagree.append(model)
        print(f"| {model} | {cpu_acc:.4f} | {acc:.4f} | {100 * gap:.1f} | {cpu_s:.1f} | {seconds:.1f} "
              f"| {'no' if gap > TOLERANCE else 'yes'} | {load_cell([cpu_load, load])} |")  # fmt: skip
    return disagree


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qd.bench cuda", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps a model (default 200)")
    args = parser.parse_args(argv)
    import torch  # after the arguments, so that --help answers at once

    from qd.core.runtime import resolve_device

    device = resolve_device("auto").type
    if device == "cpu":
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"no CUDA or MPS device here (torch {torch.__version__}, {built}): nothing to compare")
        return
    shown = {"cuda": "CUDA", "mps": "MPS"}[device]
    if disagree := compare(args.steps, device):
        raise SystemExit(f"\n{shown} and CPU disagree by more than {100 * TOLERANCE:.0f} points for "
                         f"{', '.join(disagree)}")  # fmt: skip
    print(f"\n{shown} and CPU agree within {100 * TOLERANCE:.0f} points for every model")
