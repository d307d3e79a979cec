"""The course starter as a student completes it: the speed benchmark's baseline.

Per-image float64 standardisation in a Python loop, `np.random.choice` for every batch, an evaluation every
100 steps on 4,000 random training images and the whole dev set with autograd on and the model in training
mode, prediction one image at a time. It runs qd's models (qd.core.models), so only the pipeline differs.
This module imports only what the starter's own processes would (torch, numpy, the models), so that its
whole-process rows pay no more imports than the starter does: `python -m qd.bench.starter train|predict ...`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qd.core.data import FILES
from qd.core.models import TooSimpleConvNN, TwoLayerDenseNet

MODELS = {"densenet": TwoLayerDenseNet, "convnet": TooSimpleConvNN}


def baseline_load(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A split as the starter prepares it: each image standardised in float64, one at a time."""
    image_name, label_name = FILES[split]
    images = np.load(Path(data_dir, image_name))
    x = np.empty((len(images), images[0].size))
    for i, image in enumerate(images):
        pixels = image.reshape(-1).astype(np.float64)
        std = pixels.std()
        x[i] = (pixels - pixels.mean()) / (std if std > 0 else 1.0)  # the starter's NaN for a blank image: 0
    return x, np.load(Path(data_dir, label_name)) if label_name else None


def _baseline_acc_and_loss(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    logits = model(torch.from_numpy(x.astype(np.float32)))
    loss = F.cross_entropy(logits, torch.from_numpy(y.astype(np.int64)))
    return float((y == torch.max(logits, 1)[1].numpy()).mean()), loss.item()


def baseline_train(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    dev: tuple[np.ndarray, np.ndarray],
    steps: int,
    out: Path,
    lr: float = 1e-3,
) -> float:
    """The starter's training loop (Adam, batch 100); writes `out`.log and the state_dict to `out`.pt; returns
    the best dev accuracy."""
    (x, y), (dev_x, dev_y) = train, dev
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best = 0.0
    with open(out.with_suffix(".log"), "w") as log:
        log.write("step,train_loss,train_acc,dev_loss,dev_acc\n")
        for step in range(steps):
            i = np.random.choice(len(x), size=100, replace=False)
            logits = model(torch.from_numpy(x[i].astype(np.float32)))
            loss = F.cross_entropy(logits, torch.from_numpy(y[i].astype(np.int64)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 100 == 0:
                idx = np.random.choice(len(x), min(4000, len(x)), replace=False)
                train_acc, _ = _baseline_acc_and_loss(model, x[idx], y[idx])
                dev_acc, dev_loss = _baseline_acc_and_loss(model, dev_x, dev_y)
                best = max(best, dev_acc)
                log.write(f"{step},{loss.item()},{train_acc},{dev_loss},{dev_acc}\n")
    torch.save(model.state_dict(), out.with_suffix(".pt"))
    return best


def baseline_predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The starter's prediction: one image at a time."""
    preds = []
    for example in x:
        model.eval()
        logits = model(torch.from_numpy(example.astype(np.float32)).view(1, -1))
        preds.append(torch.max(logits, 1)[1].item())
    return np.array(preds)


def train_process(name: str, data_dir: str, weights: str, lr: str, steps: str) -> None:
    """The starter's `--mode train`: load and standardise train and dev, train, save the state_dict to `weights`."""
    torch.manual_seed(0)
    np.random.seed(0)
    data = [baseline_load(data_dir, split) for split in ("train", "dev")]
    baseline_train(MODELS[name](), *data, int(steps), Path(weights).with_suffix(""), float(lr))


def predict_process(name: str, weights: str, data_dir: str, predictions_file: str) -> None:
    """The starter's `--mode predict`: load the state_dict, standardise the test set, predict, write."""
    model = MODELS[name]()
    model.load_state_dict(torch.load(weights, weights_only=True))
    x, _ = baseline_load(data_dir, "test")
    np.savetxt(predictions_file, baseline_predict(model, x), fmt="%d")


if __name__ == "__main__":
    {"train": train_process, "predict": predict_process}[sys.argv[1]](*sys.argv[2:])
