"""Learnability: the synthetic set is neither trivial nor noise; the dense net learns real drawings."""

import numpy as np
import pytest
import torch

from conftest import tiny_config
from qd.core.data import Split, standardise
from qd.core.train import fit, train
from qd.datasets.synth import write_synthetic


@pytest.mark.slow
def test_course_densenet_defaults_land_between_60_and_97_percent_on_the_synthetic_set(tmp_path):
    data = write_synthetic(tmp_path / "synthetic", seed=0, sizes=(24000, 3600, 600))
    cfg = tiny_config("densenet", data, steps=2000)
    cfg["optimizer"]["lr"] = 1e-4  # run.sh's dense-net line: --LR 0.0001 --bs 100 --epochs 2000
    cfg["train"]["eval_every"] = 100
    metrics = train(cfg, tmp_path / "d.log", tmp_path / "d.pt")
    assert 0.60 <= metrics["best_dev_acc"] <= 0.97, metrics["best_dev_acc"]


def test_densenet_scores_at_least_75_percent_on_held_out_real_drawings(real_dir):
    """Training seeds 0-2 give 0.808-0.821 (0.8125 at seed 0, the one used) on these 480 held-out drawings, a
    standard error of 0.018: the floor lies 3.5 of them below."""
    images, labels = np.load(real_dir / "images.npy"), np.load(real_dir / "labels.npy").astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    held_out, rest = order[: len(order) // 5], order[len(order) // 5 :]
    cfg = tiny_config("densenet", real_dir, steps=1500)
    cfg["train"]["eval_every"] = 1500  # one evaluation: the final model on the held-out fifth

    def split(rows: np.ndarray) -> Split:
        return Split(standardise(images[rows]), torch.from_numpy(labels[rows]))

    result = fit(cfg, split(rest), split(held_out))
    assert result.history[-1]["dev_acc"] >= 0.75, result.history[-1]["dev_acc"]
