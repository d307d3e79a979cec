"""One fold of the accuracy bench (qd.bench.accuracy): the stratified split, the perturbed held-out views, the public
design, and a fold's training and scores. torch is imported here, so that the bench's command line answers --help
at once."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from qd.core.accuracies import acc_and_loss
from qd.core.checkpoint import serialized
from qd.core.data import IMAGE_SIDE, N_CLASSES, Split, standardise
from qd.core.models import MODELS
from qd.core.train import checkpoint_meta, fit


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
def public_registered() -> Iterator[None]:
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
