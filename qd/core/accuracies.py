"""The course's accuracy functions (shipped in the submission as accuracies.py).

Evaluation runs in eval mode under torch.no_grad() in large batches, then restores the model's mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TRAIN_SAMPLE = 4000
EVAL_BATCH = 256  # small batches keep activations in cache and under glibc's mmap threshold


def accuracy(y: np.ndarray | torch.Tensor, y_hat: np.ndarray | torch.Tensor) -> float:
    """Fraction of positions where the labels `y` equal the predictions `y_hat`."""
    y, y_hat = np.asarray(y), np.asarray(y_hat)
    if y.shape != y_hat.shape:
        raise ValueError(f"accuracy: {y.shape[0]} labels but {y_hat.shape[0]} predictions")
    return float((y == y_hat).mean())


def _as_tensor(a: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(a).to(device)


@torch.no_grad()
def scores(model: nn.Module, data: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Class scores (N, 6) for prepared images, in eval mode and batches of EVAL_BATCH."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = _as_tensor(data, device)
    out = torch.cat([model(batch) for batch in x.split(EVAL_BATCH)])
    model.train(was_training)
    return out


def acc_and_loss_tensors(
    model: nn.Module, data: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and mean cross-entropy of `model` on all of `data`, as 0-d tensors on the model's device."""
    logits = scores(model, data)
    y = _as_tensor(labels, logits.device).long()
    return (logits.argmax(1) == y).float().mean(), nn.functional.cross_entropy(logits, y)


def acc_and_loss(
    model: nn.Module, data: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of `model` on all of `data`."""
    accuracy, loss = acc_and_loss_tensors(model, data, labels)
    return accuracy.item(), loss.item()


def approx_train_acc_and_loss(
    model: nn.Module,
    train_data: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Accuracy and loss on TRAIN_SAMPLE training images drawn at random without replacement."""
    idx = torch.randperm(len(train_data), generator=generator)[:TRAIN_SAMPLE]
    x, y = torch.as_tensor(train_data), torch.as_tensor(train_labels)
    return acc_and_loss(model, x.index_select(0, idx.to(x.device)), y.index_select(0, idx.to(y.device)))


def dev_acc_and_loss(
    model: nn.Module, dev_data: np.ndarray | torch.Tensor, dev_labels: np.ndarray | torch.Tensor
) -> tuple[float, float]:
    """Accuracy and loss on the whole dev set."""
    return acc_and_loss(model, dev_data, dev_labels)
