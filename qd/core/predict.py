"""The one prediction function, and writing a predictions file (one class id a line) atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qd.core.accuracies import scores
from qd.core.checkpoint import load_model
from qd.core.cpu import memory_format
from qd.core.data import load_split
from qd.core.errors import QDError
from qd.core.fsutil import atomic_write_text
from qd.core.runtime import configure_cpu, resolve_device


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class ids (N,) int64 for standardised images, batched, in eval mode."""
    return scores(model, x).argmax(1).cpu().numpy()


def write_predictions(path: str | os.PathLike, labels: np.ndarray) -> None:
    path = Path(path)
    if path.is_dir():
        raise QDError(f"--predictionsFile {path}: is a folder; expected a file path")
    atomic_write_text(path, "".join(f"{int(v)}\n" for v in labels))


def predict_file(
    weights: str | os.PathLike,
    data_dir: str | os.PathLike,
    predictions_file: str | os.PathLike,
    expect: str | None = None,
) -> np.ndarray:
    """Predict the test images of `data_dir` with a checkpoint and write the predictions file."""
    configure_cpu()
    device = resolve_device("auto")
    model, _ = load_model(weights, expect=expect, device=device)
    model.to(memory_format=memory_format("auto", device))
    labels = predict(model, load_split(data_dir, "test").x)
    write_predictions(predictions_file, labels)
    return labels
